//! Starting and stopping one Outpost server: config → embedded backends → services → TLS →
//! listeners. Tests start servers in-process on `127.0.0.1:0` through [`Server::start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_amqp::door::DoorContext;
use outpost_amqp::engine::EngineConfig;
use outpost_auth::ServiceConnectionString;
use outpost_core::routing::EndpointPorts;
use outpost_core::{Backends, C2dSettings, CoreError, EventLog as _, Outpost, Retention, SystemClock};
use outpost_http::{HubDefaults, OperatorState};
use outpost_model::TwinLimits;
use outpost_mqtt::{ConnectThrottle, MqttContext, MqttLimits, Sessions};
use outpost_store::{EmbeddedEventLog, EmbeddedStore, EventLogOptions};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{EventLogConfig, OutpostConfig};
use crate::https::{ConnectionLimits, serve_http, serve_https, serve_tls};
use crate::tls::{
    self, CertificateFiles, DevCa, ErrorChain, ReloadingCertResolver, ServerTlsStream, TlsError,
};

/// Name of the file, in the data dir, holding the operator API's bearer token.
pub const OPERATOR_TOKEN_FILE: &str = "operator-token";
/// Name of the file, in the data dir, holding the operator API's URL while the server runs.
/// It is written after every listener is bound, so its presence means "ready".
pub const OPERATOR_ENDPOINT_FILE: &str = "operator-endpoint";

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data dir or a file in it cannot be used.
    #[error("cannot use {}", path.display())]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The embedded store cannot be opened.
    #[error("cannot open the embedded store")]
    Store(#[source] outpost_core::StoreError),
    /// The hub core failed to start.
    #[error("cannot start the hub core")]
    Core(#[source] CoreError),
    /// The configuration file's `[[routing]]` cannot be applied.
    #[error("cannot apply the routing configuration")]
    Routing(#[source] crate::routing_config::RoutingFileError),
    /// TLS material cannot be created or loaded.
    #[error("cannot set up tls")]
    Tls(#[source] TlsError),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// The directory under the data dir that `file://` import and export containers must be in.
pub const IMPORT_EXPORT_DIR: &str = "import-export";

/// Where routing endpoints' dead-lettered batches go, under the data directory.
pub const DEAD_LETTERS_DIR: &str = "dead-letters";

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The hub services (tests reach into them).
    pub outpost: Outpost,
    /// Where the HTTPS listener is bound.
    pub https_addr: SocketAddr,
    /// Where the MQTT listener is bound.
    pub mqtt_addr: SocketAddr,
    /// Where the AMQP (TLS) listener is bound.
    pub amqp_addr: SocketAddr,
    /// Where the plain-TCP AMQP listener is bound, when configured.
    pub amqp_plain_addr: Option<SocketAddr>,
    /// Where the operator listener is bound.
    pub operator_addr: SocketAddr,
    /// The development CA certificate, when Outpost issues its own certificates.
    pub ca_path: Option<PathBuf>,
    data_dir: PathBuf,
    events: Arc<EmbeddedEventLog>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens the data dir, creates the default hub on first start, sets up TLS and starts the
    /// listeners.
    ///
    /// # Errors
    /// [`ServerError`] when any step fails; nothing keeps running then.
    pub async fn start(config: &OutpostConfig) -> Result<Self, ServerError> {
        let data_dir = config.data_dir.clone();
        create_dir(&data_dir)?;
        let store = EmbeddedStore::open(&data_dir.join("registry.redb")).map_err(ServerError::Store)?;
        let store_for_sessions = store.clone();
        let events = Arc::new(
            EmbeddedEventLog::open(&data_dir.join("events"), EventLogOptions::default())
                .map_err(ServerError::Store)?,
        );
        let backends = Backends {
            hubs: Arc::new(store.clone()),
            registry: Arc::new(store.clone()),
            events: events.clone(),
            c2d: Arc::new(store.clone()),
            service_bound: Arc::new(store.clone()),
            jobs: Arc::new(store.clone()),
            routing: Arc::new(store.clone()),
            blobs: Arc::new(
                outpost_store::EmbeddedBlobStore::open(&data_dir.join("blobs"))
                    .map_err(ServerError::Store)?,
            ),
            clock: Arc::new(SystemClock),
        };
        let blob_settings = config
            .file_upload
            .blob_settings()
            .map_err(|error| ServerError::Core(CoreError::InvalidArgument(error.to_string())))?;
        let outpost = Outpost::start(backends, TwinLimits::default(), C2dSettings::default())
            .await
            .map_err(ServerError::Core)?
            .with_blob_settings(blob_settings)
            .with_configuration_store(Arc::new(store.clone()))
            // `file://` import and export containers live here (docs/compatibility.md).
            .with_import_export_directory(
                // Absolute, as `file://` URIs are.
                std::fs::canonicalize(&data_dir)
                    .unwrap_or_else(|_| data_dir.clone())
                    .join(IMPORT_EXPORT_DIR),
            );
        if let Some(hub) = outpost
            .ensure_default_hub(&config.hub.default_host_name, config.hub.partition_count)
            .await
            .map_err(ServerError::Core)?
        {
            tracing::info!(hub = %hub.name, host = %hub.host_name, "created the default hub");
        }
        crate::routing_config::apply(&outpost, &config.routing)
            .await
            .map_err(ServerError::Routing)?;
        let token = operator_token(&data_dir)?;
        let cancel = CancellationToken::new();

        let (files, dev_ca) = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => (
                CertificateFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                None,
            ),
            _ => {
                let tls_dir = data_dir.join("tls");
                let ca = DevCa::load_or_create(&tls_dir).map_err(ServerError::Tls)?;
                ca.ensure_server_cert(&tls_dir, &outpost.hubs.host_names())
                    .map_err(ServerError::Tls)?;
                (DevCa::server_files(&tls_dir), Some((Arc::new(ca), tls_dir)))
            }
        };
        let resolver = Arc::new(ReloadingCertResolver::new(files).map_err(ServerError::Tls)?);
        let mut tasks = vec![resolver.clone().spawn_watcher(
            Duration::from_secs(config.tls.reload_interval_secs.max(1)),
            cancel.child_token(),
        )];
        // X.509 devices present a client certificate on HTTPS and WebSockets too (optional: SAS
        // devices and services present none).
        let tls_config = tls::server_config_with_optional_client_certs(resolver.clone(), &[b"http/1.1"])
            .map_err(ServerError::Tls)?;
        let resolver_for_mqtt = resolver.clone();
        let resolver_for_amqp = resolver.clone();

        let hubs_changed: outpost_http::HubsChanged = {
            let hubs = outpost.hubs.clone();
            let dev_ca = dev_ca.clone();
            Arc::new(move || {
                let (hubs, dev_ca, resolver) = (hubs.clone(), dev_ca.clone(), resolver.clone());
                Box::pin(async move {
                    let Some((ca, tls_dir)) = dev_ca else { return };
                    // New hub host names must be in the certificate before devices use them;
                    // issuing generates a key and writes files, so it runs off the runtime.
                    let names = hubs.host_names();
                    let issued = tokio::task::spawn_blocking(move || -> Result<(), TlsError> {
                        if ca.ensure_server_cert(&tls_dir, &names)? {
                            resolver.reload_now()?;
                        }
                        Ok(())
                    })
                    .await;
                    match issued {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            let error = ErrorChain(&error);
                            tracing::warn!(error = %error, "re-issue the development certificate failed");
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "re-issue the development certificate failed")
                        }
                    }
                })
            })
        };

        let https_listener = bind(config.https.listen)?;
        let mqtt_listener = bind(config.mqtt.listen)?;
        let mqtt_addr = local_addr(&mqtt_listener, config.mqtt.listen)?;
        let amqp_listener = bind(config.amqp.listen)?;
        let amqp_addr = local_addr(&amqp_listener, config.amqp.listen)?;
        let amqp_plain_listener = match config.amqp.plain_listen {
            Some(addr) => Some(bind(addr)?),
            None => None,
        };
        let amqp_plain_addr = match (&amqp_plain_listener, config.amqp.plain_listen) {
            (Some(listener), Some(addr)) => Some(local_addr(listener, addr)?),
            _ => None,
        };
        let operator_listener = bind(config.operator.listen)?;
        let https_addr = local_addr(&https_listener, config.https.listen)?;
        let operator_addr = local_addr(&operator_listener, config.operator.listen)?;

        let service = outpost_http::service_router(outpost.clone());
        let operator = outpost_http::operator_router(OperatorState {
            outpost: Arc::new(outpost.clone()),
            token: token.into(),
            service: service.clone(),
            defaults: HubDefaults {
                domain: config.hub.domain.clone(),
                partition_count: config.hub.partition_count,
            },
            hubs_changed,
        });
        // Devices may present a client certificate (X.509 authentication); no ALPN, as the SDKs
        // offer none for MQTT.
        let mqtt_tls = tls::server_config_with_optional_client_certs(resolver_for_mqtt, &[])
            .map_err(ServerError::Tls)?;
        let mqtt_context = Arc::new(MqttContext {
            outpost: outpost.clone(),
            sessions: Sessions::new(Arc::new(store_for_sessions)),
            limits: MqttLimits::default(),
            throttle: ConnectThrottle::new(config.mqtt.max_connects_per_second),
        });
        let mqtt_limits = ConnectionLimits {
            max_connections: config.mqtt.max_connections,
            ..Default::default()
        };
        let ws_mqtt_context = mqtt_context.clone();
        let mqtt_cancel = cancel.child_token();
        tasks.push(tokio::spawn(async move {
            let serve = move |stream: ServerTlsStream, _peer, cancel| {
                let chain = stream.peer_chain();
                outpost_mqtt::serve_connection(stream, chain, mqtt_context.clone(), cancel)
            };
            if let Err(error) =
                serve_tls("mqtt", mqtt_listener, mqtt_tls, mqtt_limits, mqtt_cancel, serve).await
            {
                tracing::error!(error = %error, "mqtt listener stopped");
            }
        }));
        // The AMQP door (Event Hubs-compatible endpoint, service and device links): AMQP 1.0 over
        // TLS (ALPN none, as the SDKs offer none; devices may present a client certificate), and
        // optionally plain TCP for development-emulator clients.
        let amqp_tls = tls::server_config_with_optional_client_certs(resolver_for_amqp, &[])
            .map_err(ServerError::Tls)?;
        let amqp_context = Arc::new(DoorContext {
            hubs: outpost.hubs.clone(),
            log: outpost.telemetry.log().clone(),
            clock: outpost.clock.clone(),
            engine: EngineConfig::default(),
            receivers: Default::default(),
            outpost: outpost.clone(),
            redirect_port: amqp_addr.port(),
        });
        let amqp_limits = ConnectionLimits {
            max_connections: config.amqp.max_connections,
            ..Default::default()
        };
        let amqp_cancel = cancel.child_token();
        let context = amqp_context.clone();
        tasks.push(tokio::spawn(async move {
            let serve = move |stream: ServerTlsStream, _peer, cancel| {
                let chain = stream.peer_chain();
                outpost_amqp::door::serve_connection(stream, chain, context.clone(), cancel)
            };
            if let Err(error) =
                serve_tls("amqp", amqp_listener, amqp_tls, amqp_limits, amqp_cancel, serve).await
            {
                tracing::error!(error = %error, "amqp listener stopped");
            }
        }));
        // The REST API and, on the same port, MQTT and AMQP over WebSockets (wire reference §2.1).
        let https_router = service
            .merge(crate::websocket::routes(crate::websocket::WebSocketDoors {
                mqtt: ws_mqtt_context,
                amqp: amqp_context.clone(),
                cancel: cancel.child_token(),
            }))
            // The built-in blob endpoint of file uploads, under /fileuploads only.
            .merge(outpost_http::blob_router(outpost.clone()));
        let limits = ConnectionLimits {
            max_connections: config.https.max_connections,
            ..Default::default()
        };
        let https_cancel = cancel.child_token();
        tasks.push(tokio::spawn(async move {
            if let Err(error) =
                serve_https(https_listener, tls_config, https_router, limits, https_cancel).await
            {
                tracing::error!(error = %error, "https listener stopped");
            }
        }));
        if let Some(listener) = amqp_plain_listener {
            tasks.push(spawn_plain_amqp(
                listener,
                amqp_context,
                config.amqp.max_connections,
                cancel.child_token(),
            ));
        }
        tasks.push(spawn_retention(
            events.clone(),
            &config.event_log,
            cancel.child_token(),
        ));
        tasks.push(spawn_c2d_expiry(outpost.clone(), cancel.child_token()));
        // The scheduled-job scheduler: a tick a second; running jobs stop (and resume next start).
        tasks.push(tokio::spawn(
            outpost
                .jobs
                .clone()
                .drive(Duration::from_secs(1), cancel.child_token().cancelled_owned()),
        ));
        tasks.push(spawn_blob_retention(outpost.clone(), cancel.child_token()));
        // Configurations are applied by a pass per hub after each change and every 10 s.
        tasks.push(
            outpost
                .configurations
                .spawn_reconciler(Duration::from_secs(10), cancel.child_token().cancelled_owned()),
        );
        // Routing endpoints' delivery workers (streams, storage, webhooks) resume from their
        // checkpoints.
        outpost
            .routing
            .start_delivery(endpoint_ports(
                &data_dir,
                &config.endpoints,
                dev_ca.as_ref().map(|(ca, _)| ca.ca_pem_path()),
                outpost.blobs.store().clone(),
            )?)
            .await;
        let operator_cancel = cancel.child_token();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = serve_http(operator_listener, operator, operator_cancel).await {
                tracing::error!(error = %error, "operator listener stopped");
            }
        }));

        let endpoint_file = data_dir.join(OPERATOR_ENDPOINT_FILE);
        write_file(
            &endpoint_file,
            format!("http://{operator_addr}\n").as_bytes(),
            false,
        )?;
        let ca_path = dev_ca.map(|(ca, _)| ca.ca_pem_path().to_path_buf());
        tracing::info!(https = %https_addr, mqtt = %mqtt_addr, amqp = %amqp_addr, operator = %operator_addr, "outpost is serving");
        Ok(Self {
            outpost,
            https_addr,
            mqtt_addr,
            amqp_addr,
            amqp_plain_addr,
            operator_addr,
            ca_path,
            data_dir,
            events,
            cancel,
            tasks,
        })
    }

    /// Returns the connection string of the default (first) hub's `iothubowner` policy.
    pub fn owner_connection_string(&self) -> Option<String> {
        let hub = self.outpost.hubs.list().into_iter().next()?;
        let policy = hub.policy("iothubowner")?;
        let connection_string = ServiceConnectionString {
            host_name: hub.host_name.clone(),
            key_name: policy.key_name.to_string(),
            key: policy.primary_key.clone(),
        };
        Some(connection_string.to_string())
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the listeners.
    pub async fn shutdown(self) {
        // Not ready any more: remove the marker first so that nobody connects to a closing server.
        let _ = std::fs::remove_file(self.data_dir.join(OPERATOR_ENDPOINT_FILE));
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.outpost.routing.stop_delivery().await;
        // Lets the log's writers finish their batches before the process exits.
        self.events.close().await;
    }
}

/// What routing endpoints write through: directories (storage endpoints, dead letters under
/// `<data dir>/dead-letters`), the built-in blob store, and an HTTP client for webhooks that
/// trusts the development CA and `[endpoints] webhook_ca_file`.
fn endpoint_ports(
    data_dir: &std::path::Path,
    config: &crate::config::EndpointsConfig,
    dev_ca_pem: Option<&std::path::Path>,
    blobs: Arc<dyn outpost_core::BlobStore>,
) -> Result<EndpointPorts, ServerError> {
    let mut trusted = Vec::new();
    if let Some(path) = dev_ca_pem.and_then(|path| std::fs::read(path).ok()) {
        trusted.push(path);
    }
    if let Some(path) = &config.webhook_ca_file {
        let pem = std::fs::read(path).map_err(|source| ServerError::DataDir {
            path: path.clone(),
            source,
        })?;
        trusted.push(pem);
    }
    let pems: Vec<&[u8]> = trusted.iter().map(Vec::as_slice).collect();
    let webhook = outpost_http::HyperWebhookClient::new(&pems).map_err(|error| {
        ServerError::Core(CoreError::InvalidArgument(format!(
            "webhook CA certificates: {error}"
        )))
    })?;
    Ok(EndpointPorts {
        directory: Arc::new(|dir: &std::path::Path| {
            Arc::new(outpost_store::DirectoryTarget::new(dir))
                as Arc<dyn outpost_core::routing::StorageTarget>
        }),
        blobs: Some(blobs),
        webhook: Some(Arc::new(webhook)),
        dead_letters: data_dir.join(DEAD_LETTERS_DIR),
        dead_after: Duration::from_secs(config.dead_after_secs.max(1)),
    })
}

/// Serves AMQP over plain TCP (no TLS: `UseDevelopmentEmulator=true` clients), at most
/// `max_connections` at once.
fn spawn_plain_amqp(
    listener: TcpListener,
    context: Arc<DoorContext>,
    max_connections: usize,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, listener = "amqp-plain", "plain listener started");
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
        let tracker = tokio_util::task::TaskTracker::new();
        loop {
            let permit = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::debug!(error = %error, "amqp plain accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (context, cancel) = (context.clone(), cancel.clone());
            tracker.spawn(async move {
                let _permit = permit;
                outpost_amqp::door::serve_connection(stream, Vec::new(), context, cancel).await;
            });
        }
        tracker.close();
        tracker.wait().await;
    })
}

/// Applies the retention limits to the event log every minute.
fn spawn_retention(
    events: Arc<EmbeddedEventLog>,
    config: &EventLogConfig,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let retention = Retention {
        max_age: Duration::from_secs(config.retention_hours.saturating_mul(3600)),
        max_bytes_per_partition: config.max_partition_mib.saturating_mul(1024 * 1024),
    };
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            match events
                .apply_retention(retention, outpost_model::Timestamp::now())
                .await
            {
                Ok(0) => {}
                Ok(dropped) => tracing::info!(dropped, "event log retention dropped old messages"),
                Err(error) => tracing::warn!(error = %error, "event log retention failed"),
            }
        }
    })
}

/// Dead-letters expired cloud-to-device messages every 30 seconds, so that senders asking for
/// feedback hear `Expired` even when the device never connects.
fn spawn_c2d_expiry(outpost: Outpost, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            for hub in outpost.hubs.list() {
                if let Err(error) = outpost.c2d.sweep_expired(&hub.name).await {
                    tracing::warn!(hub = %hub.name, error = %error, "expire cloud-to-device messages failed");
                }
            }
        }
    })
}

/// Deletes uploaded blobs past their retention and stale uncommitted blocks every 10 minutes.
fn spawn_blob_retention(outpost: Outpost, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            match outpost.blobs.sweep(&outpost.hubs.list()).await {
                Ok(count) if count.blobs + count.blocks == 0 => {}
                Ok(count) => tracing::info!(
                    blobs = count.blobs,
                    blocks = count.blocks,
                    "file upload retention deleted old blobs"
                ),
                Err(error) => tracing::warn!(error = %error, "file upload retention failed"),
            }
        }
    })
}

/// Connections the kernel completes and queues for `accept` per listener. `TcpListener::bind`
/// asks for 128: in a storm of 256 concurrent TLS connects that queue overflowed while the core
/// was busy with handshakes (`nstat` TcpExtListenOverflows), and each dropped connect waited the
/// client's 1 s SYN retransmission (p99 connect 1.09 s). Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does on Unix: a restart can rebind while old connections linger.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| ServerError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })
}

fn create_dir(path: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(path).map_err(|source| ServerError::DataDir {
        path: path.to_path_buf(),
        source,
    })?;
    // A stale readiness marker from a killed server must not announce this one early.
    match std::fs::remove_file(path.join(OPERATOR_ENDPOINT_FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(ServerError::DataDir {
            path: path.join(OPERATOR_ENDPOINT_FILE),
            source: error,
        }),
        _ => Ok(()),
    }
}

/// Reads the operator token, creating a random one (mode 0600) on first start.
fn operator_token(data_dir: &Path) -> Result<String, ServerError> {
    let path = data_dir.join(OPERATOR_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_owned()),
        Ok(_) | Err(_) => {
            let bytes: [u8; 32] = rand::random();
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_file(&path, token.as_bytes(), true)?;
            Ok(token)
        }
    }
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), ServerError> {
    use std::io::Write as _;
    let error = |source| ServerError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}
