//! Message routing over the embedded store and event log: routes with conditions stamp messages
//! at ingest, the fallback route keeps the built-in endpoint fed, and the delivery workers copy
//! each custom stream's messages into its own log from durable checkpoints — stopped and started
//! again, they resume where they were without loss or duplicates.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outpost_core::routing::{
    DeliveryError, EndpointKind, EndpointPorts, HealthStatus, Route, RoutingConfig, RoutingSource,
    StorageTarget,
};
use outpost_core::{DeviceAuthMethod, DeviceIdentity, LogPosition, OutgoingMessage, Outpost};
use outpost_model::{DeviceId, EndpointName, Hub, LogName, Message, SystemProperties};

struct Fixture {
    outpost: Outpost,
    hub: Arc<Hub>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Storage targets are not used by streams; any write is a test failure.
#[derive(Debug)]
struct NoStorage;

#[async_trait]
impl StorageTarget for NoStorage {
    async fn write(&self, name: &str, _bytes: Bytes) -> Result<(), DeliveryError> {
        panic!("unexpected storage write of {name}")
    }
}

fn ports() -> EndpointPorts {
    EndpointPorts {
        directory: Arc::new(|_: &Path| Arc::new(NoStorage) as Arc<dyn StorageTarget>),
        blobs: None,
        webhook: None,
        dead_letters: std::env::temp_dir(),
        dead_after: Duration::from_secs(60),
    }
}

impl Fixture {
    async fn new() -> Self {
        let support::Core {
            outpost, hub, dirs, ..
        } = support::start("routing.example.test", 2).await;
        Self {
            outpost,
            hub,
            _dirs: dirs,
        }
    }

    async fn send(&self, device: &str, body: &str, properties: &[(&str, &str)]) {
        let identity = DeviceIdentity {
            hub: self.hub.clone(),
            device_id: DeviceId::new(device).unwrap(),
            module_id: None,
            generation_id: "1".into(),
            auth_method: DeviceAuthMethod::IdentitySas,
            credential_expiry: None,
        };
        let message = OutgoingMessage {
            properties: SystemProperties {
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                ..SystemProperties::default()
            },
            application_properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: Bytes::from(body.to_owned()),
        };
        self.outpost
            .telemetry
            .send(&identity, vec![message])
            .await
            .unwrap();
    }

    /// Every message of every partition of `log`.
    async fn read(&self, log: &LogName, partitions: u32) -> Vec<Message> {
        let mut out = Vec::new();
        for partition in 0..partitions {
            let events = self
                .outpost
                .telemetry
                .log()
                .read(log, partition, LogPosition::SequenceNumber(0), 10_000, 64 << 20)
                .await
                .unwrap();
            out.extend(events.into_iter().map(|e| Message::decode(e.payload).unwrap()));
        }
        out
    }

    async fn wait_for(&self, log: &LogName, partitions: u32, count: usize) -> Vec<Message> {
        for _ in 0..200 {
            let messages = self.read(log, partitions).await;
            if messages.len() >= count {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.read(log, partitions).await
    }
}

fn stream_config() -> RoutingConfig {
    let hot = EndpointName::new("hot").unwrap();
    RoutingConfig {
        endpoints: vec![outpost_core::routing::Endpoint {
            name: hot,
            kind: EndpointKind::EventStream {
                partition_count: 3,
                consumer_groups: Vec::new(),
            },
        }],
        routes: vec![Route {
            name: "hot".into(),
            source: RoutingSource::DeviceMessages,
            condition: "$body.temp > 30 OR level = 'critical'".into(),
            endpoint_names: vec!["hot".into()],
            is_enabled: true,
        }],
        ..RoutingConfig::default()
    }
}

fn bodies(messages: &[Message]) -> Vec<String> {
    let mut out: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn routes_stamp_messages_and_workers_fill_the_stream() {
    let fixture = Fixture::new().await;
    fixture
        .outpost
        .routing
        .set_config(fixture.hub.name.as_str(), stream_config())
        .await
        .unwrap();
    fixture.outpost.routing.start_delivery(ports()).await;
    fixture.send("d1", r#"{"temp":35}"#, &[]).await;
    fixture.send("d2", r#"{"temp":20}"#, &[]).await;
    fixture
        .send("d3", r#"{"temp":10}"#, &[("level", "critical")])
        .await;

    let stream = LogName::stream(&fixture.hub.name, &EndpointName::new("hot").unwrap());
    let routed = fixture.wait_for(&stream, 3, 2).await;
    assert_eq!(bodies(&routed), [r#"{"temp":10}"#, r#"{"temp":35}"#]);
    assert!(
        routed.iter().all(|m| m.deliveries.is_empty()),
        "streams keep no stamps"
    );

    // The hub's log holds all three; only the unmatched one goes to the built-in endpoint.
    let all = fixture.read(&LogName::hub(&fixture.hub.name), 2).await;
    let built_in: Vec<_> = all.iter().filter_map(|m| m.for_endpoint("events")).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(bodies(&built_in), [r#"{"temp":20}"#]);

    let health = fixture.outpost.routing.health(&fixture.hub.name);
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].health_status, HealthStatus::Healthy);
    assert_eq!(health[0].delivered, 2);
}

#[tokio::test]
async fn stopped_workers_resume_from_their_checkpoints_without_loss_or_duplicates() {
    let fixture = Fixture::new().await;
    fixture
        .outpost
        .routing
        .set_config(fixture.hub.name.as_str(), stream_config())
        .await
        .unwrap();
    fixture.outpost.routing.start_delivery(ports()).await;
    let stream = LogName::stream(&fixture.hub.name, &EndpointName::new("hot").unwrap());
    for i in 0..20 {
        fixture
            .send(&format!("d{}", i % 5), &format!(r#"{{"temp":{}}}"#, 40 + i), &[])
            .await;
    }
    assert_eq!(fixture.wait_for(&stream, 3, 20).await.len(), 20);

    fixture.outpost.routing.stop_delivery().await;
    for i in 20..50 {
        fixture
            .send(&format!("d{}", i % 5), &format!(r#"{{"temp":{}}}"#, 40 + i), &[])
            .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fixture.read(&stream, 3).await.len(),
        20,
        "nothing moves while stopped"
    );

    fixture.outpost.routing.start_delivery(ports()).await;
    let routed = fixture.wait_for(&stream, 3, 50).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let routed_again = fixture.read(&stream, 3).await;
    assert_eq!(routed.len(), 50);
    assert_eq!(routed_again.len(), 50, "no duplicates");
    let mut expected: Vec<String> = (0..50).map(|i| format!(r#"{{"temp":{}}}"#, 40 + i)).collect();
    expected.sort();
    assert_eq!(bodies(&routed_again), expected);
}

#[tokio::test]
async fn a_new_endpoint_starts_at_the_end_and_a_removed_one_stops() {
    let fixture = Fixture::new().await;
    fixture.outpost.routing.start_delivery(ports()).await;
    fixture.send("d1", r#"{"temp":99}"#, &[]).await;
    fixture
        .outpost
        .routing
        .set_config(fixture.hub.name.as_str(), stream_config())
        .await
        .unwrap();
    fixture.send("d1", r#"{"temp":98}"#, &[]).await;
    let stream = LogName::stream(&fixture.hub.name, &EndpointName::new("hot").unwrap());
    assert_eq!(bodies(&fixture.wait_for(&stream, 3, 1).await), [r#"{"temp":98}"#]);

    fixture
        .outpost
        .routing
        .set_config(fixture.hub.name.as_str(), RoutingConfig::default())
        .await
        .unwrap();
    assert!(fixture.outpost.routing.health(&fixture.hub.name).is_empty());
    fixture.send("d1", r#"{"temp":97}"#, &[]).await;
    // A removed stream's log goes with it.
    let gone = fixture.outpost.telemetry.log().partition_info(&stream, 0).await;
    assert!(
        matches!(gone, Err(outpost_core::StoreError::NotFound)),
        "{gone:?}"
    );
}

#[tokio::test]
async fn invalid_configurations_are_refused_and_change_nothing() {
    let fixture = Fixture::new().await;
    let mut bad = stream_config();
    bad.routes[0].condition = "$body.temp >".into();
    let error = fixture
        .outpost
        .routing
        .set_config(fixture.hub.name.as_str(), bad)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("column"), "{error}");
    assert_eq!(
        fixture.outpost.routing.config(&fixture.hub.name),
        RoutingConfig::default()
    );
    let mut disabled = RoutingConfig::default();
    disabled.fallback_route.is_enabled = false;
    fixture
        .outpost
        .routing
        .set_config(fixture.hub.name.as_str(), disabled)
        .await
        .unwrap();
    fixture.send("d1", "{}", &[]).await;
    assert!(
        fixture.read(&LogName::hub(&fixture.hub.name), 2).await.is_empty(),
        "no route: dropped"
    );
}
