//! `outpost serve` and the configuration it runs with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use outpost_server::{OutpostConfig, Server};

use crate::GlobalArgs;

/// Flags of `serve` (and `config show`); they override the file and the environment.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS listener (service REST API).
    #[arg(long)]
    https_listen: Option<SocketAddr>,
    /// Address of the MQTT listener.
    #[arg(long)]
    mqtt_listen: Option<SocketAddr>,
    /// Address of the AMQP listener (TLS; the Event Hubs-compatible endpoint).
    #[arg(long)]
    amqp_listen: Option<SocketAddr>,
    /// Address of a plain-TCP AMQP listener (for `UseDevelopmentEmulator=true` clients).
    #[arg(long)]
    amqp_plain_listen: Option<SocketAddr>,
    /// Address of the operator API listener.
    #[arg(long)]
    operator_listen: Option<SocketAddr>,
    /// Host name of the hub created on first start.
    #[arg(long)]
    host_name: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
}

impl ServeArgs {
    /// Returns the flags as if none were given (admin verbs read the configuration too).
    pub fn default_flags() -> Self {
        Self {
            https_listen: None,
            mqtt_listen: None,
            amqp_listen: None,
            amqp_plain_listen: None,
            operator_listen: None,
            host_name: None,
            log_format: None,
        }
    }
}

/// Loads the configuration: file (explicit, or ./outpost.toml when present), then `OUTPOST_*`,
/// then flags.
pub fn load_config(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<OutpostConfig> {
    let path = match &global.config {
        Some(path) => Some(path.clone()),
        None => {
            let default = PathBuf::from("outpost.toml");
            default.try_exists().unwrap_or(false).then_some(default)
        }
    };
    let text = match &path {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?)
        }
        None => None,
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut config = OutpostConfig::load(text.as_deref(), &env).context("load the configuration")?;
    if let Some(data_dir) = &global.data_dir {
        config.data_dir.clone_from(data_dir);
    }
    if let Some(listen) = args.https_listen {
        config.https.listen = listen;
    }
    if let Some(listen) = args.mqtt_listen {
        config.mqtt.listen = listen;
    }
    if let Some(listen) = args.amqp_listen {
        config.amqp.listen = listen;
    }
    if let Some(listen) = args.amqp_plain_listen {
        config.amqp.plain_listen = Some(listen);
    }
    if let Some(listen) = args.operator_listen {
        config.operator.listen = listen;
    }
    if let Some(host_name) = &args.host_name {
        config.hub.default_host_name.clone_from(host_name);
    }
    if let Some(format) = &args.log_format {
        config.log.format.clone_from(format);
    }
    config.validate().context("check the configuration")?;
    Ok(config)
}

fn init_logging(config: &OutpostConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .context("parse the log level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("initialise logging")
}

/// Runs the hub until SIGINT or SIGTERM.
pub async fn serve(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let config = load_config(global, args)?;
    init_logging(&config)?;
    let server = Server::start(&config).await.context("start the server")?;
    {
        println!("Outpost is serving.");
        println!("  HTTPS (service API): {}", server.https_addr);
        println!("  MQTT (devices):      {}", server.mqtt_addr);
        println!("  AMQP (Event Hubs):   {}", server.amqp_addr);
        if let Some(plain) = server.amqp_plain_addr {
            println!("  AMQP, plain:         {plain}");
        }
        println!("  Operator API:        http://{}", server.operator_addr);
        if let Some(connection_string) = server.owner_connection_string() {
            println!("  iothubowner connection string: {connection_string}");
        }
        match &server.ca_path {
            Some(ca) => println!("  CA certificate: {}", ca.display()),
            None => println!("  CA certificate: operator-supplied (tls.cert)"),
        }
    }
    wait_for_stop_signal().await?;
    tracing::info!("stopping");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listen for SIGINT"),
        _ = terminate.recv() => Ok(()),
    }
}
