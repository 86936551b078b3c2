//! Whole servers started in-process on loopback: HTTPS with the development CA, host-name
//! routing across hubs over real TLS, certificate re-issue for new hubs, and a restart that
//! keeps every hub, policy, device, module, twin and key.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use outpost_auth::{KeyEncoding, ServiceConnectionString};
use outpost_server::{OutpostConfig, Server};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;

fn config(data_dir: &Path) -> OutpostConfig {
    let mut config = OutpostConfig {
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    config.https.listen = "127.0.0.1:0".parse().unwrap();
    config.operator.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    config.amqp.listen = "127.0.0.1:0".parse().unwrap();
    config
}

fn client_config(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_pem).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Sends one request over HTTP/1.1, through TLS (verifying `host` against the dev CA) when
/// `tls` is given.
async fn send(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    host: &str,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut request = Request::builder().method(method).uri(path).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let payload = body
        .map(|b| Bytes::from(serde_json::to_vec(&b).unwrap()))
        .unwrap_or_default();
    if !payload.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(payload)).unwrap();
    let response = match tls {
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.clone());
            let stream = connector
                .connect(ServerName::try_from(host.to_owned()).unwrap(), tcp)
                .await
                .unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
        None => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
    };
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn sas(connection_string: &str) -> String {
    let cs: ServiceConnectionString = connection_string.parse().unwrap();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    outpost_auth::sign(
        &cs.host_name,
        &cs.key,
        KeyEncoding::Base64Decoded,
        expiry,
        Some(&cs.key_name),
    )
}

struct Operator {
    addr: SocketAddr,
    token: String,
}

impl Operator {
    fn of(server: &Server, data_dir: &Path) -> Self {
        let token = std::fs::read_to_string(data_dir.join(outpost_server::OPERATOR_TOKEN_FILE)).unwrap();
        Self {
            addr: server.operator_addr,
            token: token.trim().to_owned(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let auth = ("authorization", format!("Bearer {}", self.token));
        send(self.addr, None, "127.0.0.1", method, path, &[auth], body).await
    }

    async fn connection_string(&self, hub: &str) -> String {
        let (_, body) = self
            .call(Method::GET, &format!("/hubs/{hub}/connection-string"), None)
            .await;
        body["connectionString"].as_str().unwrap().to_owned()
    }
}

const V: &str = "api-version=2021-04-12";

#[tokio::test]
async fn hubs_are_routed_by_host_name_over_tls_and_everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path())).await.unwrap();
    assert!(
        dir.path()
            .join(outpost_server::OPERATOR_ENDPOINT_FILE)
            .try_exists()
            .unwrap()
    );
    let tls = client_config(server.ca_path.as_ref().unwrap());
    let operator = Operator::of(&server, dir.path());
    let owner_a = server.owner_connection_string().unwrap();
    assert_eq!(owner_a, operator.connection_string("localhost").await);
    let auth_a = [("authorization", sas(&owner_a))];

    let (status, device) = send(
        server.https_addr,
        Some(&tls),
        "localhost",
        Method::PUT,
        &format!("/devices/dev1?{V}"),
        &auth_a,
        Some(json!({"deviceId": "dev1"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{device}");
    let (status, _) = send(
        server.https_addr,
        Some(&tls),
        "localhost",
        Method::PUT,
        &format!("/devices/dev1/modules/m1?{V}"),
        &auth_a,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let patch = json!({"tags": {"site": "north"}, "properties": {"desired": {"rate": 10}}});
    let (status, twin) = send(
        server.https_addr,
        Some(&tls),
        "localhost",
        Method::PATCH,
        &format!("/twins/dev1?{V}"),
        &auth_a,
        Some(patch),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // A second hub: the development certificate is re-issued to cover its host name.
    let (status, _) = operator
        .call(Method::POST, "/hubs", Some(json!({"name": "plant1"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let owner_b = operator.connection_string("plant1").await;
    let auth_b = [("authorization", sas(&owner_b))];
    let (status, _) = send(
        server.https_addr,
        Some(&tls),
        "plant1.localhost",
        Method::GET,
        &format!("/devices?{V}"),
        &auth_a,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "hub A's token on hub B");
    let (status, devices) = send(
        server.https_addr,
        Some(&tls),
        "plant1.localhost",
        Method::GET,
        &format!("/devices?{V}"),
        &auth_b,
        None,
    )
    .await;
    assert_eq!((status, devices), (StatusCode::OK, json!([])));

    server.shutdown().await;
    assert!(
        !dir.path()
            .join(outpost_server::OPERATOR_ENDPOINT_FILE)
            .try_exists()
            .unwrap()
    );

    let server = Server::start(&config(dir.path())).await.unwrap();
    let operator = Operator::of(&server, dir.path());
    assert_eq!(
        operator.connection_string("localhost").await,
        owner_a,
        "policy keys survive"
    );
    assert_eq!(operator.connection_string("plant1").await, owner_b);
    let (_, hubs) = operator.call(Method::GET, "/hubs", None).await;
    assert_eq!(hubs.as_array().unwrap().len(), 2);
    let (status, again) = send(
        server.https_addr,
        Some(&tls),
        "localhost",
        Method::GET,
        &format!("/devices/dev1?{V}"),
        &auth_a,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, device, "identity, keys and etag survive");
    let (_, twin_again) = send(
        server.https_addr,
        Some(&tls),
        "localhost",
        Method::GET,
        &format!("/twins/dev1?{V}"),
        &auth_a,
        None,
    )
    .await;
    assert_eq!(twin_again, twin);
    let (status, module) = send(
        server.https_addr,
        Some(&tls),
        "localhost",
        Method::GET,
        &format!("/devices/dev1/modules/m1?{V}"),
        &auth_a,
        None,
    )
    .await;
    assert_eq!(
        (status, module["moduleId"].as_str()),
        (StatusCode::OK, Some("m1"))
    );
    let (status, _) = send(
        server.https_addr,
        Some(&tls),
        "plant1.localhost",
        Method::GET,
        &format!("/devices?{V}"),
        &auth_b,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await;
}
