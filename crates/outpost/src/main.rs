//! The `outpost` binary: `outpost serve` runs the hub; the admin verbs (mirroring `az iot hub`)
//! talk to a running server through its operator API, found from the data dir.
//!
//! * `serve`: configuration, logging, start, graceful stop on SIGINT/SIGTERM.
//! * `client`: the operator API client (endpoint and token read from the data dir).
//! * `admin`: `hub`, `device-identity`, `module-identity` and `twin` verbs.
//! * `import_export`: `device-identity export|import`, registry import and export jobs.
//! * `consumer_groups`: `hub consumer-group`, the built-in endpoint's consumer groups.
//! * `jobs`: `job create|show|list|cancel`, scheduled jobs.
//! * `monitor`: `monitor-events`, tailing a hub's built-in endpoint.
//! * `routing`: `route`, `routing-endpoint`, `message-enrichment`, message routing.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program prints"
)]

mod admin;
mod client;
mod consumer_groups;
mod import_export;
mod jobs;
mod monitor;
mod routing;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A self-hosted IoT hub, wire-compatible with Azure IoT Hub.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every verb takes.
#[derive(Debug, Clone, Args)]
struct GlobalArgs {
    /// Configuration file (default: ./outpost.toml when it exists).
    #[arg(long, global = true, env = "OUTPOST_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Output format of admin verbs.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Readable text.
    Human,
    /// JSON, for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the hub.
    Serve(serve::ServeArgs),
    /// Shows the effective configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manages hubs (tenants) on this server.
    Hub {
        #[command(subcommand)]
        command: admin::HubCommand,
    },
    /// Manages device identities (mirrors `az iot hub device-identity`).
    DeviceIdentity {
        #[command(subcommand)]
        command: admin::DeviceCommand,
    },
    /// Manages module identities (mirrors `az iot hub module-identity`).
    ModuleIdentity {
        #[command(subcommand)]
        command: admin::ModuleCommand,
    },
    /// Device messaging (mirrors `az iot device`): `c2d-message send|purge`.
    Device {
        #[command(subcommand)]
        command: admin::DeviceMessagingCommand,
    },
    /// Prints device-to-cloud messages as they arrive (mirrors `az iot hub monitor-events`).
    MonitorEvents(monitor::MonitorArgs),
    /// Shows and updates device and module twins (mirrors `az iot hub device-twin`).
    Twin {
        #[command(subcommand)]
        command: admin::TwinCommand,
    },
    /// Message routes, the fallback route and route tests (mirrors `az iot hub route`).
    Route {
        #[command(subcommand)]
        command: routing::RouteCommand,
    },
    /// Custom routing endpoints and their health (mirrors `az iot hub routing-endpoint`).
    RoutingEndpoint {
        #[command(subcommand)]
        command: routing::EndpointCommand,
    },
    /// Message enrichments (mirrors `az iot hub message-enrichment`).
    MessageEnrichment {
        #[command(subcommand)]
        command: routing::EnrichmentCommand,
    },
    /// Scheduled twin updates and direct methods over many devices (mirrors `az iot hub job`).
    Job {
        #[command(subcommand)]
        command: jobs::JobCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Prints the configuration after the file, the environment and flags are applied.
    Show(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(&cli.global, &args).await,
        Command::Config {
            command: ConfigCommand::Show(args),
        } => {
            let config = serve::load_config(&cli.global, &args)?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Hub { command } => admin::hub(&cli.global, command).await,
        Command::DeviceIdentity { command } => admin::device(&cli.global, command).await,
        Command::ModuleIdentity { command } => admin::module(&cli.global, command).await,
        Command::Twin { command } => admin::twin(&cli.global, command).await,
        Command::Job { command } => jobs::job(&cli.global, command).await,
        Command::Route { command } => routing::route(&cli.global, command).await,
        Command::RoutingEndpoint { command } => routing::endpoint(&cli.global, command).await,
        Command::MessageEnrichment { command } => routing::enrichment(&cli.global, command).await,
        Command::Device { command } => admin::device_messaging(&cli.global, command).await,
        Command::MonitorEvents(args) => monitor::monitor_events(&cli.global, args).await,
    }
}
