//! HTTP listeners: HTTPS for devices and services (the IoT Hub REST surface, later WebSockets for
//! MQTT and AMQP), and plain HTTP for the loopback operator API.
//!
//! The HTTPS accept loop is hand-written rather than `axum::serve` because it needs TLS, a cap on
//! concurrent connections, a handshake deadline and per-connection isolation: one bad peer logs
//! at debug and never affects another.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use outpost_http::ClientCertificates;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::{debug, error, info, warn};

use crate::tls::{self, ErrorChain, ServerTlsStream};

/// How long in-flight requests may run after shutdown starts before their connections are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after an accept error that is not about one connection (such as running out of file
/// descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Limits protecting an HTTPS listener from too many or too slow clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; when reached, the listener stops accepting until one closes.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` over HTTPS/1.1 on `listener` until `cancel` fires.
///
/// Handlers can extract the peer address with [`ConnectInfo<SocketAddr>`] and upgrade
/// connections (WebSockets). On cancellation the listener closes at once, in-flight requests get
/// a few seconds to finish, and then the function returns. `tls` should offer ALPN `http/1.1`
/// only, since only HTTP/1.1 is served.
///
/// # Errors
///
/// Currently always returns `Ok`: accept errors are logged and retried, and connection errors
/// only end their own connection.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
) -> io::Result<()> {
    serve_tls(
        "https",
        listener,
        tls,
        limits,
        cancel,
        move |stream, peer, cancel| serve_http1(stream, peer, router.clone(), cancel),
    )
    .await
}

/// Accepts TLS connections on `listener` until `cancel` fires and hands each, after its
/// handshake, to `serve` (one task per connection). Shared by every TLS listener (HTTPS, MQTT).
///
/// At most `limits.max_connections` are served at once: the permit is taken before `accept`, so
/// excess clients wait in the kernel backlog. A handshake must finish within
/// `limits.handshake_timeout`. On cancellation the listener closes at once and the function
/// waits a few seconds for connections to finish.
///
/// # Errors
///
/// Currently always returns `Ok`: accept errors are logged and retried, and connection errors
/// only end their own connection.
pub async fn serve_tls<S, F>(
    name: &'static str,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: ConnectionLimits,
    cancel: CancellationToken,
    serve: S,
) -> io::Result<()>
where
    S: Fn(ServerTlsStream, SocketAddr, CancellationToken) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    // Zero would never accept anything; treat it as one.
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let serve = Arc::new(serve);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, listener = name, "tls listener started");
    }

    loop {
        // Taking the permit before accepting leaves excess clients in the kernel backlog.
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    handle_accept_error(&e, &cancel).await;
                    continue;
                }
            },
        };
        let tls = Arc::clone(&tls);
        let serve = Arc::clone(&serve);
        let cancel = cancel.clone();
        let task = async move {
            let _permit: OwnedSemaphorePermit = permit;
            // Boxed: the handshake's state (a whole TLS connection in progress) would otherwise
            // stay part of the task for the connection's life (docs/benchmarks/results.md).
            // Nor is the TLS stream bound to a name across an await: the stream moves into
            // `serve` inside a closure, so the task does not reserve room for it.
            let handshake = Box::pin(handshake(stream, peer, tls, limits.handshake_timeout, &cancel));
            let served = handshake.await.map(|tls_stream| serve(tls_stream, peer, cancel));
            if let Some(served) = served {
                served.await;
            }
        };
        tracker.spawn(task);
    }

    // Refuse new clients right away instead of leaving them in the backlog during the grace period.
    drop(listener);
    tracker.close();
    // Connections bound their own shutdown by SHUTDOWN_GRACE; the margin covers scheduling.
    if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), tracker.wait())
        .await
        .is_err()
    {
        warn!(
            open = tracker.len(),
            listener = name,
            "connections still open after shutdown grace period"
        );
    }
    Ok(())
}

/// Serves `router` over plain HTTP on `listener` until `cancel` fires, then waits for open
/// connections to finish. Meant for the loopback operator API; handlers can extract
/// [`ConnectInfo<SocketAddr>`].
///
/// # Errors
///
/// Returns the error `axum::serve` reports.
pub async fn serve_http(listener: TcpListener, router: Router, cancel: CancellationToken) -> io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.cancelled_owned())
    .await
}

/// Logs an accept error; waits briefly unless it concerned only the one connection.
async fn handle_accept_error(e: &io::Error, cancel: &CancellationToken) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    ) {
        debug!(error = %e, "accept failed");
        return;
    }
    error!(error = %e, "accept failed");
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
    }
}

/// Completes the TLS handshake of one connection within `timeout`; `None` when it failed.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Option<ServerTlsStream> {
    // Device traffic is small and latency-sensitive.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "set tcp nodelay failed");
    }
    tokio::select! {
        () = cancel.cancelled() => None,
        handshake = tokio::time::timeout(timeout, tls::accept(stream, config)) => match handshake {
            Ok(Ok(tls_stream)) => Some(tls_stream),
            Ok(Err(e)) => {
                debug!(%peer, error = %ErrorChain(&e), "tls handshake failed");
                None
            }
            Err(_elapsed) => {
                debug!(%peer, "tls handshake timed out");
                None
            }
        },
    }
}

/// Serves HTTP/1.1 on one TLS connection until the client leaves or shutdown.
async fn serve_http1(
    tls_stream: ServerTlsStream,
    peer: SocketAddr,
    router: Router,
    cancel: CancellationToken,
) {
    // The client's certificate chain (X.509 devices), for every request on the connection.
    let chain = ClientCertificates(Arc::new(tls_stream.peer_chain()));
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(chain.clone());
        request
    });
    let connection = hyper::server::conn::http1::Builder::new()
        // The timer enables hyper's header read timeout (30 s), which also closes idle
        // keep-alive connections so they do not hold a permit forever.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tls_stream), TowerToHyperService::new(service))
        .with_upgrades();
    let mut connection = pin!(connection);

    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut()).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    debug!(%peer, "closing https connection after shutdown grace period");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %ErrorChain(&e), "https connection ended with error");
    }
}
