//! TLS front door: the development CA on disk, the HTTPS listener against a real rustls client,
//! and certificate hot reload.
#![allow(
    clippy::unwrap_used,
    reason = "allow-unwrap-in-tests does not reach the fixture functions of an integration test"
)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use outpost_server::https::{ConnectionLimits, serve_http, serve_https};
use outpost_server::tls::{
    CertificateFiles, DevCa, ReloadingCertResolver, server_config, server_config_with_optional_client_certs,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsConnector, client::TlsStream};
use tokio_util::sync::CancellationToken;
use x509_parser::extensions::GeneralName;

const HTTP11: &[&[u8]] = &[b"http/1.1"];

// ---- fixtures -------------------------------------------------------------------------------

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn ensure(ca: &DevCa, dir: &Path, hosts: &[&str]) -> bool {
    ca.ensure_server_cert(dir, &names(hosts)).unwrap()
}

/// Creates a dev CA in `<root>/ca` and a server certificate for `hosts` in `<root>/<server>`.
fn dev_pki(root: &Path, server: &str, hosts: &[&str]) -> (DevCa, CertificateFiles) {
    let ca = DevCa::load_or_create(&root.join("ca")).unwrap();
    let dir = root.join(server);
    assert!(ca.ensure_server_cert(&dir, &names(hosts)).unwrap());
    (ca, DevCa::server_files(&dir))
}

fn client_config(ca_pem: &Path, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    client_config_with_cert(ca_pem, versions, None)
}

fn client_config_with_cert(
    ca_pem: &Path,
    versions: &[&'static SupportedProtocolVersion],
    client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(first_cert(ca_pem)).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn trusting(ca_pem: &Path) -> Arc<ClientConfig> {
    client_config(ca_pem, rustls::DEFAULT_VERSIONS)
}

fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

fn is_name_mismatch(err: &io::Error) -> bool {
    matches!(
        rustls_error(err),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ))
    )
}

fn first_cert(pem_file: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(pem_file).unwrap();
    rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap()
}

/// Returns the DNS and IP subject alternative names of the leaf in `cert_pem`.
fn sans(cert_pem: &Path) -> (Vec<String>, Vec<String>) {
    let leaf = first_cert(cert_pem);
    let (_, x509) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let san = x509.subject_alternative_name().unwrap().unwrap().value;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for name in &san.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
            }
            GeneralName::IPAddress(b) => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
            _ => {}
        }
    }
    (dns, ips.iter().map(IpAddr::to_string).collect())
}

#[cfg(unix)]
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
}

#[cfg(not(unix))]
fn assert_private(_path: &Path) {}

fn copy_files(from: &CertificateFiles, to: &CertificateFiles) {
    std::fs::copy(&from.cert, &to.cert).unwrap();
    std::fs::copy(&from.key, &to.key).unwrap();
}

fn leaf_of(files: &CertificateFiles) -> CertificateDer<'static> {
    first_cert(&files.cert)
}

/// Runs a TLS handshake over loopback TCP, the server side on Outpost's stream; returns the
/// client's result and, on success, the server side's peer leaf certificate.
async fn handshake_on_loopback(
    server: Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> io::Result<Option<Vec<u8>>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let client_side = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut stream = TlsConnector::from(client).connect(server_name, tcp).await?;
        // TLS 1.3: a refused client certificate is only reported once the client reads.
        stream.write_all(b"ping").await?;
        let mut pong = [0u8; 4];
        stream.read_exact(&mut pong).await?;
        Ok::<_, io::Error>(())
    };
    let server_side = async {
        let (tcp, _) = listener.accept().await?;
        let mut stream = outpost_server::tls::accept(tcp, server).await?;
        let mut ping = [0u8; 4];
        stream.read_exact(&mut ping).await?;
        stream.write_all(b"pong").await?;
        stream.flush().await?;
        Ok::<_, io::Error>(stream.peer_chain().into_iter().next())
    };
    let (client_result, server_result) = tokio::join!(client_side, server_side);
    client_result?;
    server_result
}

fn router() -> Router {
    Router::new()
        .route(
            "/host",
            get(|headers: HeaderMap| async move {
                headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/upgrade",
            get(|mut request: axum::extract::Request| async move {
                let on_upgrade = hyper::upgrade::on(&mut request);
                tokio::spawn(async move {
                    let mut io = TokioIo::new(on_upgrade.await.unwrap());
                    io.write_all(b"upgraded").await.unwrap();
                });
                let response = hyper::Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
                let response = response.header(CONNECTION, "upgrade").header(UPGRADE, "echo");
                response.body(axum::body::Body::empty()).unwrap()
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        )
}

struct TestServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<io::Result<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start_server(resolver: Arc<ReloadingCertResolver>, limits: ConnectionLimits) -> TestServer {
    let tls = server_config(resolver, HTTP11).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve_https(listener, tls, router(), limits, cancel.clone()));
    TestServer { addr, cancel, task }
}

async fn connect(
    addr: SocketAddr,
    name: &str,
    config: &Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(Arc::clone(config))
        .connect(server_name, tcp)
        .await
}

async fn connect_ok(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> TlsStream<TcpStream> {
    connect(addr, name, config).await.unwrap()
}

/// Connects expecting the client to reject the server certificate's names.
async fn assert_name_rejected(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) {
    let err = connect(addr, name, config).await.unwrap_err();
    assert!(is_name_mismatch(&err), "{err:?}");
}

/// Serves a fresh dev server certificate for `hosts` over HTTPS.
async fn serve_dev(root: &Path, hosts: &[&str], limits: ConnectionLimits) -> (DevCa, TestServer) {
    let (ca, files) = dev_pki(root, "tls", hosts);
    let resolver = Arc::new(ReloadingCertResolver::new(files).unwrap());
    (ca, start_server(resolver, limits).await)
}

/// Sends one HTTP/1.1 GET over `stream`; returns status and body.
async fn get_over<S>(stream: S, path: &str, host: &str) -> (StatusCode, String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(HOST, host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn get_host(addr: SocketAddr, config: Arc<ClientConfig>) -> (StatusCode, String) {
    let stream = connect_ok(addr, "localhost", &config).await;
    get_over(stream, "/host", "localhost").await
}

/// Asserts the server closes `tcp` within five seconds.
async fn assert_closed_by_server(mut tcp: TcpStream) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "server kept the connection open");
}

// ---- development CA -----------------------------------------------------------------------

#[tokio::test]
async fn reloaded_ca_issues_server_certs_that_chain_to_the_original_ca_pem() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let first = DevCa::load_or_create(&ca_dir).unwrap();
    let original_pem = std::fs::read(first.ca_pem_path()).unwrap();
    assert_private(&ca_dir.join("ca.key"));
    drop(first);

    let reloaded = DevCa::load_or_create(&ca_dir).unwrap();
    assert_eq!(
        std::fs::read(reloaded.ca_pem_path()).unwrap(),
        original_pem,
        "ca.pem was rewritten"
    );
    let server_dir = tmp.path().join("server");
    assert!(ensure(&reloaded, &server_dir, &["hub.example.test"]));

    // The client trusts only a copy of the ca.pem written by the first instance.
    let trusted = tmp.path().join("trusted-ca.pem");
    std::fs::write(&trusted, &original_pem).unwrap();
    let resolver = Arc::new(ReloadingCertResolver::new(DevCa::server_files(&server_dir)).unwrap());
    let server = server_config(resolver, HTTP11).unwrap();
    handshake_on_loopback(server, trusting(&trusted), "hub.example.test")
        .await
        .unwrap();
}

#[tokio::test]
async fn ca_certificate_has_the_documented_subject_usages_and_validity() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(tmp.path()).unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(ca.ca_cert_der()).unwrap();

    let subject = x509.subject();
    let cn = subject.iter_common_name().next().unwrap().as_str().unwrap();
    let org = subject.iter_organization().next().unwrap().as_str().unwrap();
    assert_eq!((cn, org), ("Outpost Development CA", "Outpost"));
    assert!(x509.is_ca());
    let usage = x509.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign());

    let now = time::OffsetDateTime::now_utc();
    let not_before = x509.validity().not_before.to_datetime();
    let not_after = x509.validity().not_after.to_datetime();
    assert!(now - not_before >= time::Duration::hours(23), "{not_before}");
    assert!(not_after - now >= time::Duration::days(3650), "{not_after}");
}

#[tokio::test]
async fn missing_ca_pem_is_recreated_from_the_key_and_earlier_server_certs_still_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, files) = dev_pki(tmp.path(), "server", &["hub.example.test"]);
    std::fs::remove_file(ca.ca_pem_path()).unwrap();
    drop(ca);

    let ca = DevCa::load_or_create(&tmp.path().join("ca")).unwrap();
    assert!(!ensure(&ca, &tmp.path().join("server"), &["hub.example.test"]));
    let resolver = Arc::new(ReloadingCertResolver::new(files).unwrap());
    let server = server_config(resolver, HTTP11).unwrap();
    handshake_on_loopback(server, trusting(ca.ca_pem_path()), "hub.example.test")
        .await
        .unwrap();
}

#[test]
fn ensure_server_cert_issues_once_and_reissues_when_a_host_name_is_added() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(&tmp.path().join("ca")).unwrap();
    let dir = tmp.path().join("tls");
    let files = DevCa::server_files(&dir);

    assert!(
        ensure(&ca, &dir, &["hub.example.test"]),
        "missing cert not issued"
    );
    assert_private(&files.key);
    let (dns, ips) = sans(&files.cert);
    assert_eq!(dns, ["hub.example.test", "localhost"]);
    assert_eq!(ips, ["127.0.0.1", "::1"]);
    let pem = std::fs::read(&files.cert).unwrap();
    assert_eq!(
        rustls_pemfile::certs(&mut pem.as_slice()).count(),
        2,
        "server.pem is leaf + ca"
    );

    let leaf = leaf_of(&files);
    let (_, x509) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let cn = x509.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "hub.example.test");
    assert!(x509.extended_key_usage().unwrap().unwrap().value.server_auth);
    assert!(x509.key_usage().unwrap().unwrap().value.digital_signature());
    assert!(!x509.is_ca());

    // Same names, a subset, or different case: nothing to do, file untouched.
    assert!(!ensure(&ca, &dir, &["hub.example.test"]));
    assert!(!ensure(&ca, &dir, &["localhost", "::1"]));
    assert!(!ensure(&ca, &dir, &["HUB.example.test"]));
    assert_eq!(std::fs::read(&files.cert).unwrap(), pem);

    let added = names(&["hub.example.test", "plant1.example.test", "192.0.2.7"]);
    assert!(
        ca.ensure_server_cert(&dir, &added).unwrap(),
        "new host name not covered"
    );
    assert_private(&files.key);
    let (dns, ips) = sans(&files.cert);
    assert_eq!(dns, ["hub.example.test", "plant1.example.test", "localhost"]);
    assert_eq!(ips, ["192.0.2.7", "127.0.0.1", "::1"]);
    assert!(!ca.ensure_server_cert(&dir, &added).unwrap());
}

#[test]
fn ensure_server_cert_reissues_when_the_cert_is_from_another_ca_or_the_key_does_not_match() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, other) = (tmp.path().join("tls"), tmp.path().join("other"));
    let first = DevCa::load_or_create(&tmp.path().join("ca1")).unwrap();
    assert!(ensure(&first, &dir, &["hub.example.test"]));

    let second = DevCa::load_or_create(&tmp.path().join("ca2")).unwrap();
    assert!(
        ensure(&second, &dir, &["hub.example.test"]),
        "cert of another ca was kept"
    );
    assert!(!ensure(&second, &dir, &["hub.example.test"]));

    assert!(ensure(&second, &other, &["hub.example.test"]));
    std::fs::copy(other.join("server.key"), dir.join("server.key")).unwrap();
    assert!(
        ensure(&second, &dir, &["hub.example.test"]),
        "mismatched key was kept"
    );
}

#[test]
fn ensure_server_cert_rejects_an_invalid_host_name() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(tmp.path()).unwrap();
    let err = ca
        .ensure_server_cert(&tmp.path().join("tls"), &names(&["not a host"]))
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid host name \"not a host\"");
}

#[test]
fn mismatched_certificate_and_key_files_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ca, a) = dev_pki(tmp.path(), "a", &["a.example.test"]);
    let (_ca, b) = dev_pki(tmp.path(), "b", &["b.example.test"]);
    let mixed = CertificateFiles {
        cert: a.cert,
        key: b.key,
    };
    let err = outpost_server::tls::load_certified_key(&mixed).unwrap_err();
    assert!(
        matches!(err, outpost_server::tls::TlsError::KeyMismatch { .. }),
        "{err:?}"
    );
}

// ---- HTTPS listener -----------------------------------------------------------------------

#[tokio::test]
async fn https_request_over_dev_ca_chain_gets_200_with_host_and_peer_address() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, server) = serve_dev(tmp.path(), &["hub.example.test"], ConnectionLimits::default()).await;

    let (status, body) = get_host(server.addr, trusting(ca.ca_pem_path())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "localhost"));

    let stream = connect_ok(server.addr, "hub.example.test", &trusting(ca.ca_pem_path())).await;
    let client_addr = stream.get_ref().0.local_addr().unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = get_over(stream, "/peer", "hub.example.test").await;
    assert_eq!((status, body), (StatusCode::OK, client_addr.to_string()));
}

#[tokio::test]
async fn connection_upgrade_hands_the_tls_stream_to_the_handler() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, server) = serve_dev(tmp.path(), &[], ConnectionLimits::default()).await;
    let stream = connect_ok(server.addr, "localhost", &trusting(ca.ca_pem_path())).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection.with_upgrades());
    let request = Request::get("/upgrade")
        .header(HOST, "localhost")
        .header(CONNECTION, "upgrade");
    let request = request
        .header(UPGRADE, "echo")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);

    let mut upgraded = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    let mut received = [0u8; 8];
    upgraded.read_exact(&mut received).await.unwrap();
    assert_eq!(&received, b"upgraded");
}

#[tokio::test]
async fn tls12_only_client_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, server) = serve_dev(tmp.path(), &[], ConnectionLimits::default()).await;

    let config = client_config(ca.ca_pem_path(), &[&rustls::version::TLS12]);
    let stream = connect_ok(server.addr, "localhost", &config).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(get_over(stream, "/host", "localhost").await.0, StatusCode::OK);
}

#[tokio::test]
async fn server_name_not_in_the_certificate_fails_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, server) = serve_dev(tmp.path(), &["hub.example.test"], ConnectionLimits::default()).await;

    assert_name_rejected(server.addr, "not-covered.example", &trusting(ca.ca_pem_path())).await;
    assert_eq!(
        get_host(server.addr, trusting(ca.ca_pem_path())).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn garbage_and_aborted_connections_do_not_affect_the_next_client() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, server) = serve_dev(tmp.path(), &[], ConnectionLimits::default()).await;

    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_closed_by_server(plain).await;

    let mut noise = TcpStream::connect(server.addr).await.unwrap();
    noise
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x00, 0x00])
        .await
        .unwrap();
    drop(noise);
    drop(TcpStream::connect(server.addr).await.unwrap());

    assert_eq!(
        get_host(server.addr, trusting(ca.ca_pem_path())).await.0,
        StatusCode::OK
    );
    assert!(!server.task.is_finished());
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        handshake_timeout: Duration::from_millis(200),
        ..ConnectionLimits::default()
    };
    let (_ca, server) = serve_dev(tmp.path(), &[], limits).await;
    assert_closed_by_server(TcpStream::connect(server.addr).await.unwrap()).await;
}

#[tokio::test]
async fn full_listener_makes_new_clients_wait_until_a_connection_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        max_connections: 1,
        handshake_timeout: Duration::from_secs(30),
    };
    let (ca, server) = serve_dev(tmp.path(), &[], limits).await;

    // Holds the only slot: accepted, stuck in the handshake.
    let holder = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = tokio::spawn(get_host(server.addr, trusting(ca.ca_pem_path())));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "second client was served while the listener was full"
    );

    drop(holder);
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_then_refuses_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, mut server) = serve_dev(tmp.path(), &[], ConnectionLimits::default()).await;

    let stream = connect_ok(server.addr, "localhost", &trusting(ca.ca_pem_path())).await;
    let in_flight = tokio::spawn(get_over(stream, "/slow", "localhost"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.cancel.cancel();

    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
    let stopped = tokio::time::timeout(Duration::from_secs(10), &mut server.task).await;
    stopped.unwrap().unwrap().unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "listener still accepts after shutdown"
    );
}

#[tokio::test]
async fn plain_http_listener_passes_the_peer_address_and_stops_on_cancel() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve_http(listener, router(), cancel.clone()));

    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap().to_string();
    assert_eq!(get_over(tcp, "/peer", "localhost").await, (StatusCode::OK, local));
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

// ---- hot reload ---------------------------------------------------------------------------

struct ReloadFixture {
    ca: DevCa,
    /// The files served: a copy of certificate A for `alpha.example.test`.
    live: CertificateFiles,
    /// Certificate B for `bravo-longer.example.test`, to copy over `live`.
    b: CertificateFiles,
    resolver: Arc<ReloadingCertResolver>,
    server: TestServer,
}

async fn reload_fixture(root: &Path) -> ReloadFixture {
    let (ca, a) = dev_pki(root, "a", &["alpha.example.test"]);
    let b_dir = root.join("b");
    assert!(ensure(&ca, &b_dir, &["bravo-longer.example.test"]));
    let b = DevCa::server_files(&b_dir);
    let live = DevCa::server_files(&root.join("live"));
    std::fs::create_dir_all(root.join("live")).unwrap();
    copy_files(&a, &live);
    let resolver = Arc::new(ReloadingCertResolver::new(live.clone()).unwrap());
    let server = start_server(Arc::clone(&resolver), ConnectionLimits::default()).await;
    ReloadFixture {
        ca,
        live,
        b,
        resolver,
        server,
    }
}

#[tokio::test]
async fn reload_now_serves_the_replaced_certificate_to_new_handshakes() {
    let tmp = tempfile::tempdir().unwrap();
    let f = reload_fixture(tmp.path()).await;
    let client = trusting(f.ca.ca_pem_path());
    connect_ok(f.server.addr, "alpha.example.test", &client).await;
    assert_name_rejected(f.server.addr, "bravo-longer.example.test", &client).await;

    copy_files(&f.b, &f.live);
    f.resolver.reload_now().unwrap();

    let stream = connect_ok(f.server.addr, "bravo-longer.example.test", &client).await;
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(served, leaf_of(&f.b));
    assert_name_rejected(f.server.addr, "alpha.example.test", &client).await;
}

#[tokio::test]
async fn watcher_picks_up_a_replaced_certificate_within_a_few_polls() {
    let tmp = tempfile::tempdir().unwrap();
    let f = reload_fixture(tmp.path()).await;
    let cancel = CancellationToken::new();
    let watcher = Arc::clone(&f.resolver).spawn_watcher(Duration::from_millis(50), cancel.clone());

    copy_files(&f.b, &f.live);
    let client = trusting(f.ca.ca_pem_path());
    let mut picked_up = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if connect(f.server.addr, "bravo-longer.example.test", &client)
            .await
            .is_ok()
        {
            picked_up = true;
            break;
        }
    }
    assert!(picked_up, "watcher did not reload within 2 s");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), watcher)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn failed_reload_keeps_serving_the_previous_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let f = reload_fixture(tmp.path()).await;

    let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    std::fs::write(&f.live.cert, broken).unwrap();
    assert!(f.resolver.reload().is_err());
    assert!(
        !f.resolver.reload().unwrap(),
        "an unchanged broken file is retried on every poll"
    );
    assert!(f.resolver.reload_now().is_err());

    connect_ok(f.server.addr, "alpha.example.test", &trusting(f.ca.ca_pem_path())).await;
}

// ---- optional client certificates ---------------------------------------------------------

#[tokio::test]
async fn optional_client_certificate_is_exposed_as_the_peer_leaf() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, files) = dev_pki(tmp.path(), "tls", &[]);
    let resolver = Arc::new(ReloadingCertResolver::new(files).unwrap());
    let server = server_config_with_optional_client_certs(resolver, &[]).unwrap();

    // A self-signed device certificate, as used with thumbprint authentication.
    let device_key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["device-1".to_owned()]).unwrap();
    let device_cert = params.self_signed(&device_key).unwrap().der().clone();
    let device_key = PrivateKeyDer::Pkcs8(device_key.serialize_der().into());

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let anonymous = client_config(ca.ca_pem_path(), &[version]);
        let peer = handshake_on_loopback(server.clone(), anonymous, "localhost")
            .await
            .unwrap();
        assert_eq!(peer, None, "{version:?}");

        let identity = Some((device_cert.clone(), device_key.clone_key()));
        let with_cert = client_config_with_cert(ca.ca_pem_path(), &[version], identity);
        let peer = handshake_on_loopback(server.clone(), with_cert, "localhost")
            .await
            .unwrap();
        assert_eq!(peer.as_deref(), Some(device_cert.as_ref()), "{version:?}");
    }
}
