//! The webhook client and sink against real HTTP(S) receivers on 127.0.0.1: what is posted,
//! how answers map to delivery outcomes, time-outs, bounded answers, connection reuse, TLS
//! trust, and dead letters written as Event Grid writes them.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use outpost_core::routing::model::WebhookEndpoint;
use outpost_core::routing::sink::{
    DeliveryError, EndpointSink, RoutedBatch, RoutedEvent, StorageTarget, WebhookClient, WebhookRequest,
};
use outpost_core::routing::webhook::{WebhookSink, event_id};
use outpost_http::HyperWebhookClient;
use outpost_model::{Annotations, EndpointName, HubName, Message, SystemProperties, Timestamp};
use outpost_store::DirectoryTarget;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug, Clone, Default)]
struct Hits(Arc<Mutex<Vec<Hit>>>);

impl Hits {
    fn all(&self) -> Vec<Hit> {
        self.0.lock().unwrap().clone()
    }
    fn record(&self, path: String, headers: HeaderMap, body: Bytes) {
        self.0.lock().unwrap().push(Hit { path, headers, body });
    }
}

async fn status(
    State(hits): State<Hits>,
    Path(code): Path<u16>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    hits.record(format!("/status/{code}"), headers, body);
    let code = StatusCode::from_u16(code).unwrap();
    if code.is_redirection() {
        return (code, [("location", "/elsewhere")], "moved").into_response();
    }
    (code, "answered").into_response()
}

async fn elsewhere(State(hits): State<Hits>, headers: HeaderMap, body: Bytes) -> StatusCode {
    hits.record("/elsewhere".into(), headers, body);
    StatusCode::OK
}

async fn big(State(hits): State<Hits>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    hits.record("/big".into(), headers, body);
    vec![b'x'; 8 * 1024 * 1024]
}

/// A receiver: counts connections, records requests.
struct Receiver {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    hits: Hits,
}

impl Receiver {
    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }
}

async fn receiver(tls: Option<TlsAcceptor>, keep_alive: bool) -> Receiver {
    let hits = Hits::default();
    let router = Router::new()
        .route("/status/{code}", post(status))
        .route("/elsewhere", post(elsewhere))
        .route("/big", post(big))
        .with_state(hits.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let (router, tls) = (router.clone(), tls.clone());
            tokio::spawn(async move {
                let service = TowerToHyperService::new(router);
                let mut builder = http1::Builder::new();
                builder.keep_alive(keep_alive);
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    Receiver {
        addr,
        connections,
        hits,
    }
}

fn request(url: String, body: &'static [u8]) -> WebhookRequest {
    WebhookRequest {
        url,
        headers: vec![("x-api-key".into(), "k1".into())],
        content_type: "application/json".into(),
        body: Bytes::from_static(body),
        timeout: Duration::from_secs(10),
    }
}

fn plain_client() -> HyperWebhookClient {
    HyperWebhookClient::new(&[]).unwrap()
}

#[tokio::test]
async fn posts_the_body_and_headers_and_returns_the_status() {
    let receiver = receiver(None, true).await;
    let client = plain_client();
    let url = format!("{}?code=secret", receiver.url("http", "/status/202"));
    let mut posted = request(url, b"[1,2]");
    // Framing headers come from the request itself, never from configuration.
    posted.headers.push(("Content-Type".into(), "text/plain".into()));
    posted.headers.push(("host".into(), "elsewhere.example".into()));
    assert_eq!(client.post(posted).await, Ok(202));
    let hits = receiver.hits.all();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.path, "/status/202");
    assert_eq!(hit.body.as_ref(), b"[1,2]");
    assert_eq!(hit.headers.get_all("content-type").iter().count(), 1);
    assert_eq!(hit.headers["content-type"], "application/json");
    assert_eq!(hit.headers["content-length"], "5");
    assert_eq!(hit.headers["x-api-key"], "k1");
    assert_eq!(hit.headers["host"], receiver.addr.to_string().as_str());
}

#[tokio::test]
async fn statuses_come_back_as_they_are_and_redirects_are_not_followed() {
    let receiver = receiver(None, true).await;
    let client = plain_client();
    for code in [200u16, 204, 301, 400, 404, 429, 500, 503] {
        let url = receiver.url("http", &format!("/status/{code}"));
        assert_eq!(client.post(request(url, b"[]")).await, Ok(code), "{code}");
    }
    assert!(receiver.hits.all().iter().all(|hit| hit.path != "/elsewhere"));
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_as_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and holds connections, reads nothing, answers nothing.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut silent = request(format!("http://{addr}/hook?sig=secret"), b"[]");
    silent.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let outcome = plain_client().post(silent).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    match outcome {
        Err(DeliveryError::Unavailable(reason)) => {
            assert!(reason.contains("did not answer"), "{reason}");
            assert!(
                !reason.contains("secret"),
                "the query stays out of errors: {reason}"
            );
        }
        other => panic!("expected a time-out, got {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_port_is_unavailable_and_a_bad_url_is_rejected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = plain_client();
    let down = client.post(request(format!("http://{addr}/hook"), b"[]")).await;
    assert!(matches!(down, Err(DeliveryError::Unavailable(_))), "{down:?}");
    let bad = client.post(request("gopher://example/".into(), b"[]")).await;
    assert!(matches!(bad, Err(DeliveryError::Rejected(_))), "{bad:?}");
    let mut bad_header = request(format!("http://{addr}/hook"), b"[]");
    bad_header.headers.push(("x-bad".into(), "a\r\nb".into()));
    assert!(matches!(
        client.post(bad_header).await,
        Err(DeliveryError::Rejected(_))
    ));
}

#[tokio::test]
async fn large_answers_are_cut_short_and_the_connection_dropped() {
    let receiver = receiver(None, true).await;
    let client = plain_client();
    assert_eq!(
        client.post(request(receiver.url("http", "/big"), b"[]")).await,
        Ok(200)
    );
    // The connection was not kept (its answer was not read whole): the next post opens another.
    assert_eq!(
        client
            .post(request(receiver.url("http", "/status/200"), b"[]"))
            .await,
        Ok(200)
    );
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connections_are_reused_and_closed_ones_replaced() {
    let keeping = receiver(None, true).await;
    let client = plain_client();
    for _ in 0..5 {
        assert_eq!(
            client
                .post(request(keeping.url("http", "/status/200"), b"[]"))
                .await,
            Ok(200)
        );
    }
    assert_eq!(keeping.connections.load(Ordering::SeqCst), 1);

    let closing = receiver(None, false).await;
    for _ in 0..3 {
        assert_eq!(
            client
                .post(request(closing.url("http", "/status/204"), b"[]"))
                .await,
            Ok(204)
        );
    }
    assert_eq!(closing.connections.load(Ordering::SeqCst), 3);
    assert_eq!(closing.hits.all().len(), 3);
}

/// A CA and a leaf for 127.0.0.1 signed by it: (CA PEM, TLS acceptor).
fn tls_receiver_identity() -> (String, TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key_der)
        .unwrap();
    (ca_cert.pem(), TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn https_receivers_are_trusted_only_through_the_given_ca() {
    let (ca_pem, acceptor) = tls_receiver_identity();
    let receiver = receiver(Some(acceptor), true).await;
    let url = receiver.url("https", "/status/200");
    let trusting = HyperWebhookClient::new(&[b"not pem at all\n", ca_pem.as_bytes()]).unwrap();
    assert_eq!(trusting.post(request(url.clone(), b"[\"tls\"]")).await, Ok(200));
    assert_eq!(receiver.hits.all()[0].body.as_ref(), b"[\"tls\"]");
    let stranger = plain_client().post(request(url, b"[]")).await;
    assert!(
        matches!(stranger, Err(DeliveryError::Unavailable(ref reason)) if reason.contains("TLS")),
        "{stranger:?}"
    );
}

fn telemetry(sequence_number: u64, body: &'static [u8]) -> RoutedEvent {
    RoutedEvent {
        partition: 3,
        sequence_number,
        offset: sequence_number * 100,
        message: Message {
            properties: SystemProperties {
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                ..SystemProperties::default()
            },
            application_properties: vec![("site".into(), "plant-1".into())],
            annotations: Annotations {
                device_id: "dev1".into(),
                module_id: None,
                auth_method: r#"{"scope":"device","type":"sas","issuer":"iothub"}"#.into(),
                auth_generation_id: "1".into(),
                enqueued_time: Timestamp::from_unix_millis(1_795_692_329_123),
                message_source: "Telemetry".into(),
            },
            deliveries: vec![],
            body: Bytes::from_static(body),
        },
    }
}

fn routed(first: u64) -> RoutedBatch {
    RoutedBatch {
        hub: HubName::new("hub1").unwrap(),
        endpoint: EndpointName::new("hook").unwrap(),
        partition: 3,
        events: vec![
            telemetry(first, br#"{"t":1}"#),
            telemetry(first + 1, br#"{"t":2}"#),
        ],
    }
}

fn sink(url: String, dead_letter_after: u32, dead_letters: &std::path::Path) -> WebhookSink {
    let settings: WebhookEndpoint = serde_json::from_value(json!({
        "url": url,
        "headers": [{"name": "x-api-key", "value": "k1"}],
        "deadLetterAfterSeconds": dead_letter_after
    }))
    .unwrap();
    let client: Arc<dyn WebhookClient> = Arc::new(plain_client());
    let target: Arc<dyn StorageTarget> = Arc::new(DirectoryTarget::new(dead_letters));
    WebhookSink::new(
        "hub1.localhost",
        &EndpointName::new("hook").unwrap(),
        &settings,
        client,
        target,
    )
}

#[tokio::test]
async fn the_sink_posts_event_grid_batches_and_maps_statuses() {
    let receiver = receiver(None, true).await;
    let dir = tempfile::tempdir().unwrap();

    let ok = sink(receiver.url("http", "/status/200"), 60, dir.path());
    assert_eq!(ok.retry_window(), Some(Duration::from_secs(60)));
    assert_eq!(ok.deliver(&routed(10)).await, Ok(()));
    let hit = receiver.hits.all().remove(0);
    assert_eq!(hit.headers["aeg-event-type"], "Notification");
    assert_eq!(hit.headers["aeg-subscription-name"], "HOOK");
    assert_eq!(hit.headers["aeg-delivery-count"], "0");
    assert_eq!(hit.headers["x-api-key"], "k1");
    let events: Value = serde_json::from_slice(&hit.body).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "one POST per batch");
    assert_eq!(events[0]["id"], event_id(&HubName::new("hub1").unwrap(), 3, 10));
    assert_eq!(events[0]["eventType"], "Microsoft.Devices.DeviceTelemetry");
    assert_eq!(events[0]["subject"], "devices/dev1");
    assert_eq!(events[1]["data"]["body"], json!({"t": 2}));
    assert_eq!(events[1]["data"]["properties"], json!({"site": "plant-1"}));

    let busy = sink(receiver.url("http", "/status/503"), 0, dir.path());
    assert_eq!(busy.retry_window(), None);
    assert!(matches!(
        busy.deliver(&routed(20)).await,
        Err(DeliveryError::Unavailable(_))
    ));
    let throttled = sink(receiver.url("http", "/status/429"), 0, dir.path());
    assert!(matches!(
        throttled.deliver(&routed(20)).await,
        Err(DeliveryError::Unavailable(_))
    ));
    let refused = sink(receiver.url("http", "/status/400"), 0, dir.path());
    assert!(matches!(
        refused.deliver(&routed(20)).await,
        Err(DeliveryError::Rejected(_))
    ));
    let redirected = sink(receiver.url("http", "/status/307"), 0, dir.path());
    assert!(matches!(
        redirected.deliver(&routed(20)).await,
        Err(DeliveryError::Rejected(_))
    ));
}

#[tokio::test]
async fn retries_count_deliveries_and_dead_letters_keep_the_last_status() {
    let receiver = receiver(None, true).await;
    let dir = tempfile::tempdir().unwrap();
    let failing = sink(receiver.url("http", "/status/500"), 1, dir.path());
    for _ in 0..3 {
        assert!(failing.deliver(&routed(7)).await.is_err());
    }
    let counts: Vec<String> = receiver
        .hits
        .all()
        .iter()
        .map(|hit| hit.headers["aeg-delivery-count"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(counts, ["0", "1", "2"]);

    failing
        .dead_letter(&routed(7), "retry window elapsed")
        .await
        .unwrap();
    let written = std::fs::read(dir.path().join("hook/3/7.json")).unwrap();
    let dead: Value = serde_json::from_slice(&written).unwrap();
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["id"], event_id(&HubName::new("hub1").unwrap(), 3, 7));
    assert_eq!(dead[0]["deadLetterReason"], "retry window elapsed");
    assert_eq!(dead[0]["deliveryAttempts"], 3);
    assert_eq!(dead[0]["lastHttpStatusCode"], 500);
    assert!(dead[0]["lastDeliveryOutcome"].as_str().unwrap().contains("500"));
    assert_eq!(dead[1]["data"]["body"], json!({"t": 2}));

    // The next batch starts counting afresh.
    assert!(failing.deliver(&routed(9)).await.is_err());
    assert_eq!(
        receiver.hits.all().last().unwrap().headers["aeg-delivery-count"],
        "0"
    );

    // A receiver that is down: dead letters say so, with no status.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let down = sink(format!("http://{addr}/hook"), 1, dir.path());
    assert!(matches!(
        down.deliver(&routed(30)).await,
        Err(DeliveryError::Unavailable(_))
    ));
    down.dead_letter(&routed(30), "down").await.unwrap();
    let dead: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("hook/3/30.json")).unwrap()).unwrap();
    assert_eq!(dead[0]["lastHttpStatusCode"], 0);
    assert!(
        dead[0]["lastDeliveryOutcome"]
            .as_str()
            .unwrap()
            .contains("connect")
    );
}

/// Answers one request per connection with 200, without `connection: close`, then hangs up:
/// the client's kept connection goes stale under it.
async fn hanging_up_receiver() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = tcp.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map_or(0, |value| value.trim().parse().unwrap());
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
            counter.fetch_add(1, Ordering::SeqCst);
            drop(tcp);
        }
    });
    (addr, answered)
}

#[tokio::test]
async fn a_kept_connection_the_receiver_closed_is_replaced_transparently() {
    let (addr, answered) = hanging_up_receiver().await;
    let client = plain_client();
    for i in 0..20 {
        let outcome = client.post(request(format!("http://{addr}/hook"), b"[]")).await;
        assert_eq!(outcome, Ok(200), "post {i}");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 20);
}
