//! System events as routing sources over the embedded store and event log: twin changes,
//! lifecycle, connection state, device jobs and file uploads land in the hub's log in Azure's
//! shapes when a route reads their source, and not at all when none does.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outpost_core::blobs::{BlobError, ByteSource, Condition, ContentSettings};
use outpost_core::file_upload::UploadOutcome;
use outpost_core::routing::{Route, RoutingConfig, RoutingSource};
use outpost_core::{
    Caller, DeviceAuthMethod, DeviceIdentity, DeviceSpec, IdentityKey, LogPosition, ModuleSpec, Outpost,
    TwinWrite,
};
use outpost_model::{DeviceId, Hub, LogName, Message, ModuleId, Timestamp, TwinUpdate};

use serde_json::{Map, Value, json};

struct Fixture {
    outpost: Outpost,
    hub: Arc<Hub>,
    caller: Caller,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

struct OneChunk(Option<Bytes>);

#[async_trait]
impl ByteSource for OneChunk {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BlobError> {
        Ok(self.0.take())
    }
}

fn route(name: &str, source: RoutingSource, condition: &str) -> Route {
    Route {
        name: name.into(),
        source,
        condition: condition.into(),
        endpoint_names: vec!["events".into()],
        is_enabled: true,
    }
}

fn map(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn property<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .application_properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn body(message: &Message) -> Value {
    serde_json::from_slice(&message.body).unwrap()
}

impl Fixture {
    async fn new(routes: Vec<Route>) -> Self {
        let support::Core {
            outpost, hub, dirs, ..
        } = support::start("events.example.test", 2).await;
        let config = RoutingConfig {
            routes,
            ..RoutingConfig::default()
        };
        outpost
            .routing
            .set_config(hub.name.as_str(), config)
            .await
            .unwrap();
        let caller = Caller::operator(hub.clone());
        Self {
            outpost,
            hub,
            caller,
            _dirs: dirs,
        }
    }

    fn identity(&self, device: &str) -> DeviceIdentity {
        DeviceIdentity {
            hub: self.hub.clone(),
            device_id: DeviceId::new(device).unwrap(),
            module_id: None,
            generation_id: "1".into(),
            auth_method: DeviceAuthMethod::IdentitySas,
            credential_expiry: None,
        }
    }

    /// The system events of the hub's log (telemetry left out), partition by partition.
    async fn events(&self) -> Vec<Message> {
        let mut out = Vec::new();
        for partition in 0..self.hub.partition_count {
            let stored = self
                .outpost
                .telemetry
                .log()
                .read(
                    &LogName::hub(&self.hub.name),
                    partition,
                    LogPosition::SequenceNumber(0),
                    10_000,
                    64 << 20,
                )
                .await
                .unwrap();
            out.extend(
                stored
                    .into_iter()
                    .map(|event| Message::decode(event.payload).unwrap()),
            );
        }
        out.retain(|message| message.annotations.message_source != "Telemetry");
        out
    }

    /// Waits (bounded) for events appended by background tasks.
    async fn events_where(&self, wanted: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        for _ in 0..400 {
            let events = self.events().await;
            if wanted(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.events().await
    }

    async fn create_device(&self, id: &str) -> DeviceId {
        let id = DeviceId::new(id).unwrap();
        let registry = &self.outpost.registry;
        registry
            .put_device(&self.caller, &id, DeviceSpec::default(), None)
            .await
            .unwrap();
        id
    }
}

fn op_types<'a>(events: &'a [Message], source: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|message| message.annotations.message_source == source)
        .filter_map(|message| property(message, "opType"))
        .collect()
}

fn every_source() -> Vec<Route> {
    vec![
        route("twins", RoutingSource::TwinChangeEvents, "true"),
        route("lifecycle", RoutingSource::DeviceLifecycleEvents, "true"),
        route("connections", RoutingSource::DeviceConnectionStateEvents, "true"),
        route("jobs", RoutingSource::DeviceJobLifecycleEvents, "true"),
        route("files", RoutingSource::FileUploadNotifications, "true"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_twin_events_reach_the_log_in_azures_shapes() {
    let hub = Fixture::new(every_source()).await;
    let registry = &hub.outpost.registry;
    let d1 = hub.create_device("d1").await;
    let m1 = ModuleId::new("m1").unwrap();
    registry
        .put_module(&hub.caller, &d1, &m1, ModuleSpec::default(), None)
        .await
        .unwrap();
    let patch = TwinUpdate {
        tags: Some(map(json!({"site": "plant-1"}))),
        desired: Some(map(json!({"fw": "2.0"}))),
    };
    registry
        .write_device_twin(&hub.caller, &d1, &patch, TwinWrite::Patch, None)
        .await
        .unwrap();
    let replacement = TwinUpdate {
        tags: Some(map(json!({"site": "plant-2"}))),
        desired: None,
    };
    registry
        .write_device_twin(&hub.caller, &d1, &replacement, TwinWrite::Replace, None)
        .await
        .unwrap();
    registry
        .patch_reported(&hub.identity("d1"), &map(json!({"temp": 21})))
        .await
        .unwrap();
    registry.delete_module(&hub.caller, &d1, &m1, None).await.unwrap();
    registry.delete_device(&hub.caller, &d1, None).await.unwrap();

    let events = hub.events().await;
    assert_eq!(
        op_types(&events, "deviceLifecycleEvents"),
        [
            "createDeviceIdentity",
            "createDeviceIdentity",
            "deleteDeviceIdentity",
            "deleteDeviceIdentity"
        ]
    );
    assert_eq!(
        op_types(&events, "twinChangeEvents"),
        ["updateTwin", "replaceTwin", "updateTwin"]
    );
    for event in &events {
        assert_eq!(property(event, "hubName"), Some(hub.hub.name.as_str()));
        assert_eq!(property(event, "deviceId"), Some("d1"));
        assert_eq!(event.annotations.device_id, "d1");
        assert_eq!(event.properties.content_type.as_deref(), Some("application/json"));
        assert_eq!(event.properties.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(event.properties.user_id.as_deref(), Some(hub.hub.name.as_str()));
        assert!(
            event.delivery("events").is_some(),
            "routed to the built-in endpoint"
        );
        let timestamp = property(event, "operationTimestamp").unwrap();
        assert!(timestamp.parse::<Timestamp>().is_ok(), "{timestamp}");
    }

    let device_created = &events[0];
    assert_eq!(
        property(device_created, "iothub-message-schema"),
        Some("deviceLifecycleNotification")
    );
    assert_eq!(property(device_created, "moduleId"), None);
    let created = body(device_created);
    assert_eq!(created["deviceId"], "d1");
    assert_eq!(created["etag"], "AAAAAAAAAAE=");
    assert_eq!(created["version"], 1);
    assert_eq!(created["properties"]["desired"]["$version"], 1);

    let module_created = &events[1];
    assert_eq!(property(module_created, "moduleId"), Some("m1"));
    assert_eq!(module_created.annotations.module_id.as_deref(), Some("m1"));
    assert_eq!(body(module_created)["moduleId"], "m1");

    let update = &events[2];
    assert_eq!(
        property(update, "iothub-message-schema"),
        Some("twinChangeNotification")
    );
    let update = body(update);
    assert_eq!(update["version"], 2);
    assert_eq!(update["tags"], json!({"site": "plant-1"}));
    assert_eq!(update["properties"]["desired"]["fw"], "2.0");
    assert_eq!(update["properties"]["desired"]["$version"], 2);
    assert!(update["properties"]["desired"]["$metadata"]["fw"]["$lastUpdated"].is_string());

    let replaced = body(&events[3]);
    assert_eq!(replaced["deviceId"], "d1");
    assert_eq!(replaced["version"], 3);
    assert_eq!(replaced["tags"], json!({"site": "plant-2"}));
    assert_eq!(replaced["properties"]["desired"]["$version"], 3);
    assert!(replaced["properties"]["desired"].get("fw").is_none());

    let reported = body(&events[4]);
    assert_eq!(reported["version"], 4);
    assert_eq!(reported["properties"]["reported"]["temp"], 21);
    assert_eq!(reported["properties"]["reported"]["$version"], 2);

    let module_deleted = &events[5];
    assert_eq!(property(module_deleted, "opType"), Some("deleteDeviceIdentity"));
    assert_eq!(property(module_deleted, "moduleId"), Some("m1"));
    let device_deleted = &events[6];
    assert_eq!(property(device_deleted, "moduleId"), None);
    // The body is the twin as it was when the device was deleted.
    assert_eq!(body(device_deleted)["tags"], json!({"site": "plant-2"}));
    assert_eq!(body(device_deleted)["version"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_state_events_are_numbered_in_order() {
    let hub = Fixture::new(every_source()).await;
    let d1 = hub.create_device("d1").await;
    let presence = hub.outpost.registry.presence();
    let key = |module: Option<&str>| IdentityKey {
        hub: hub.hub.name.clone(),
        device: d1.clone(),
        module: module.map(|m| ModuleId::new(m).unwrap()),
    };
    let first = presence.connect(key(None), Timestamp::now());
    presence.disconnect(&first.key, first.connection);
    let second = presence.connect(key(None), Timestamp::now());
    let module = presence.connect(key(Some("m1")), Timestamp::now());
    // A connection taken over does not unregister the new one: no event.
    presence.disconnect(&first.key, first.connection);
    presence.disconnect(&second.key, second.connection);
    presence.disconnect(&module.key, module.connection);

    let source = "deviceConnectionStateEvents";
    let events = hub
        .events_where(|events| op_types(events, source).len() >= 6)
        .await;
    let connections: Vec<&Message> = events
        .iter()
        .filter(|message| message.annotations.message_source == source)
        .collect();
    let ops: Vec<(&str, Option<&str>)> = connections
        .iter()
        .map(|message| {
            (
                property(message, "opType").unwrap(),
                property(message, "moduleId"),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("deviceConnected", None),
            ("deviceDisconnected", None),
            ("deviceConnected", None),
            ("deviceConnected", Some("m1")),
            ("deviceDisconnected", None),
            ("deviceDisconnected", Some("m1")),
        ]
    );
    let numbers: Vec<String> = connections
        .iter()
        .map(|message| body(message)["sequenceNumber"].as_str().unwrap().to_owned())
        .collect();
    for number in &numbers {
        assert_eq!(number.len(), 64);
        assert!(
            number
                .chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        );
    }
    assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "{numbers:?}");
    for message in &connections {
        assert_eq!(
            property(message, "iothub-message-schema"),
            Some("deviceConnectionStateNotification")
        );
        assert_eq!(property(message, "deviceId"), Some("d1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_device_jobs_and_file_uploads_become_events() {
    let hub = Fixture::new(every_source()).await;
    hub.create_device("d1").await;
    hub.create_device("d2").await;
    let job = json!({
        "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "properties": {"desired": {"fw": 3}}},
        "queryCondition": "deviceId IN ['d1', 'd2']",
        "startTime": Timestamp::now().to_string(),
        "maxExecutionTimeInSeconds": 600,
    });
    hub.outpost.jobs.create(&hub.caller, "job-1", &job).await.unwrap();
    hub.outpost.jobs.tick();

    let identity = hub.identity("d1");
    let files = &hub.outpost.files;
    let slot = files.start(&identity, "report.txt").unwrap();
    hub.outpost
        .blobs
        .put_blob(
            &hub.hub,
            &slot.blob_name,
            &mut OneChunk(Some(Bytes::from_static(b"hello"))),
            ContentSettings::default(),
            Condition::default(),
        )
        .await
        .unwrap();
    let outcome = UploadOutcome {
        is_success: true,
        status_code: 200,
        status_description: "ok".into(),
    };
    files
        .finish(&identity, &slot.correlation_id, &outcome)
        .await
        .unwrap();

    let jobs_source = "deviceJobLifecycleEvents";
    let events = hub
        .events_where(|events| op_types(events, jobs_source).len() >= 2)
        .await;
    let mut job_events: Vec<&Message> = events
        .iter()
        .filter(|message| message.annotations.message_source == jobs_source)
        .collect();
    job_events.sort_by_key(|message| property(message, "deviceId").map(str::to_owned));
    assert_eq!(job_events.len(), 2);
    for (message, device) in job_events.iter().zip(["d1", "d2"]) {
        assert_eq!(property(message, "opType"), Some("deviceJobCompleted"));
        assert_eq!(
            property(message, "iothub-message-schema"),
            Some("deviceJobLifecycleNotification")
        );
        assert_eq!(message.annotations.device_id, device);
        let record = body(message);
        assert_eq!(record["deviceId"], device);
        assert_eq!(record["jobId"], "job-1");
        assert_eq!(record["status"], "completed");
    }
    // The job's twin writes are twin changes too.
    assert_eq!(
        op_types(&events, "twinChangeEvents"),
        ["updateTwin", "updateTwin"]
    );

    let uploads: Vec<&Message> = events
        .iter()
        .filter(|message| message.annotations.message_source == "fileUploadNotifications")
        .collect();
    assert_eq!(uploads.len(), 1);
    let upload = uploads[0];
    assert_eq!(property(upload, "opType"), Some("fileUploaded"));
    assert_eq!(
        property(upload, "iothub-message-schema"),
        Some("fileUploadNotification")
    );
    let notification = body(upload);
    assert_eq!(notification["deviceId"], "d1");
    assert_eq!(notification["blobName"], "d1/report.txt");
    assert_eq!(notification["blobSizeInBytes"], 5);
    // The file-notification queue still gets its notification.
    let queued = files.notifications().take(&hub.hub.name, 10);
    assert_eq!(queued.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_without_a_route_store_nothing_and_conditions_filter() {
    let routes = vec![route(
        "deletions",
        RoutingSource::DeviceLifecycleEvents,
        "opType = 'deleteDeviceIdentity'",
    )];
    let hub = Fixture::new(routes).await;
    let registry = &hub.outpost.registry;
    let d1 = hub.create_device("d1").await;
    let patch = TwinUpdate {
        tags: Some(map(json!({"site": "x"}))),
        desired: None,
    };
    registry
        .write_device_twin(&hub.caller, &d1, &patch, TwinWrite::Patch, None)
        .await
        .unwrap();
    let key = IdentityKey {
        hub: hub.hub.name.clone(),
        device: d1.clone(),
        module: None,
    };
    let connection = registry.presence().connect(key, Timestamp::now());
    registry
        .presence()
        .disconnect(&connection.key, connection.connection);
    registry.delete_device(&hub.caller, &d1, None).await.unwrap();
    // Give a wrongly queued connection event time to land before looking.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let events = hub.events().await;
    assert_eq!(events.len(), 1, "only the deletion is routed: {events:?}");
    assert_eq!(property(&events[0], "opType"), Some("deleteDeviceIdentity"));
    assert_eq!(events[0].annotations.message_source, "deviceLifecycleEvents");
}
