//! Shapes of the system events against Azure's non-telemetry event schema page.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use outpost_model::{DeviceId, HubName, ModuleId, Timestamp, Twin, TwinLimits, TwinUpdate};
use serde_json::{Map, Value, json};

use super::*;
use crate::jobs::{DeviceJobError, JobType};
use crate::routing::Routing;

fn key(module: Option<&str>) -> IdentityKey {
    IdentityKey {
        hub: HubName::new("contoso-routing-hub").unwrap(),
        device: DeviceId::new("contoso-device-3").unwrap(),
        module: module.map(|m| ModuleId::new(m).unwrap()),
    }
}

fn at() -> Timestamp {
    "2022-06-01T22:27:50.2612586Z".parse().unwrap()
}

fn map(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn body(message: &Message) -> Value {
    serde_json::from_slice(&message.body).unwrap()
}

fn property<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .application_properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn every_event_carries_azures_common_properties() {
    let message = lifecycle(&key(Some("module-1")), at(), Lifecycle::Created, &Twin::new(at()));
    let p = &message.properties;
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.content_encoding.as_deref(), Some("utf-8"));
    assert_eq!(p.user_id.as_deref(), Some("contoso-routing-hub"));
    let correlation = p.correlation_id.clone().unwrap();
    assert!(!correlation.is_empty() && correlation.chars().all(|c| c.is_ascii_hexdigit()));
    let other = lifecycle(&key(None), at(), Lifecycle::Created, &Twin::new(at()));
    assert_ne!(
        other.properties.correlation_id, p.correlation_id,
        "correlation ids are unique"
    );
    let a = &message.annotations;
    assert_eq!(a.device_id, "contoso-device-3");
    assert_eq!(a.module_id.as_deref(), Some("module-1"));
    assert_eq!(a.message_source, "deviceLifecycleEvents");
    assert_eq!(a.enqueued_time, at());
    // Azure's captured system events carry no connection auth annotations.
    assert!(a.auth_method.is_empty() && a.auth_generation_id.is_empty());
    assert!(message.deliveries.is_empty());
    let names: Vec<&str> = message
        .application_properties
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "hubName",
            "deviceId",
            "moduleId",
            "operationTimestamp",
            "opType",
            "iothub-message-schema"
        ]
    );
    assert_eq!(property(&message, "hubName"), Some("contoso-routing-hub"));
    assert_eq!(
        property(&message, "operationTimestamp"),
        Some("2022-06-01T22:27:50.2612586Z")
    );
    // A device's events have no moduleId.
    assert_eq!(property(&other, "moduleId"), None);
    assert_eq!(other.annotations.module_id, None);
}

#[test]
fn a_desired_and_tag_patch_is_an_update_twin_delta_like_azures_example() {
    let mut twin = Twin::new(at());
    let first = TwinUpdate {
        tags: Some(map(json!({"site": "a"}))),
        desired: Some(map(json!({"keep": 1, "property1": "old"}))),
    };
    twin.apply_patch(&first, at(), &TwinLimits::default()).unwrap();
    let update = TwinUpdate {
        tags: Some(map(json!({"tag1": "new value"}))),
        desired: Some(map(json!({"property1": "new value", "$version": 4}))),
    };
    twin.apply_patch(&update, at(), &TwinLimits::default()).unwrap();
    let change = TwinChange::service(&update, TwinWrite::Patch);
    let message = twin_changed(&key(Some("module-1")), at(), &twin, &change);
    assert_eq!(property(&message, "opType"), Some("updateTwin"));
    assert_eq!(
        property(&message, "iothub-message-schema"),
        Some("twinChangeNotification")
    );
    assert_eq!(message.annotations.message_source, "twinChangeEvents");
    let stamp = "2022-06-01T22:27:50.2612586Z";
    assert_eq!(
        body(&message),
        json!({
            "version": 3,
            "tags": {"tag1": "new value"},
            "properties": {"desired": {
                "property1": "new value",
                "$metadata": {
                    "$lastUpdated": stamp,
                    "$lastUpdatedVersion": 3,
                    "property1": {"$lastUpdated": stamp, "$lastUpdatedVersion": 3}
                },
                "$version": 3
            }}
        })
    );
}

#[test]
fn a_reported_patch_carries_only_the_touched_nodes_and_removals() {
    let mut twin = Twin::new(at());
    let limits = TwinLimits::default();
    let first = map(json!({"fw": {"version": "1.0", "state": "ok"}, "old": true}));
    twin.apply_reported_patch(&first, at(), &limits).unwrap();
    let patch = map(json!({"fw": {"version": "2.0"}, "old": null}));
    twin.apply_reported_patch(&patch, at(), &limits).unwrap();
    let message = twin_changed(&key(None), at(), &twin, &TwinChange::Reported(&patch));
    assert_eq!(property(&message, "opType"), Some("updateTwin"));
    let body = body(&message);
    assert_eq!(body["version"], 3);
    assert!(body.get("tags").is_none());
    assert!(body["properties"].get("desired").is_none());
    let reported = &body["properties"]["reported"];
    assert_eq!(reported["fw"], json!({"version": "2.0"}));
    assert_eq!(reported["old"], Value::Null, "a removal is sent as null");
    assert_eq!(reported["$version"], 3);
    let metadata = &reported["$metadata"];
    assert!(metadata["$lastUpdated"].is_string());
    assert!(metadata["fw"]["version"]["$lastUpdated"].is_string());
    assert!(
        metadata["fw"].get("state").is_none(),
        "untouched siblings stay out"
    );
    assert!(metadata.get("old").is_none());
}

#[test]
fn a_replace_carries_the_whole_twin() {
    let mut twin = Twin::new(at());
    let update = TwinUpdate {
        tags: Some(map(json!({"site": "b"}))),
        desired: Some(map(json!({"mode": "eco"}))),
    };
    twin.replace(&update, at(), &TwinLimits::default()).unwrap();
    let message = twin_changed(
        &key(None),
        at(),
        &twin,
        &TwinChange::service(&update, TwinWrite::Replace),
    );
    assert_eq!(property(&message, "opType"), Some("replaceTwin"));
    let body = body(&message);
    assert_eq!(body["deviceId"], "contoso-device-3");
    assert!(body.get("moduleId").is_none());
    assert_eq!(body["etag"], twin.etag().as_str());
    assert_eq!(body["version"], 2);
    assert_eq!(body["tags"], json!({"site": "b"}));
    assert_eq!(body["properties"], twin.properties_json());
}

#[test]
fn lifecycle_events_use_the_device_op_types_for_modules_too() {
    let twin = Twin::new(at());
    let created = lifecycle(&key(Some("module-1")), at(), Lifecycle::Created, &twin);
    assert_eq!(property(&created, "opType"), Some("createDeviceIdentity"));
    assert_eq!(property(&created, "moduleId"), Some("module-1"));
    assert_eq!(
        property(&created, "iothub-message-schema"),
        Some("deviceLifecycleNotification")
    );
    let stamp = "2022-06-01T22:27:50.2612586Z";
    assert_eq!(
        body(&created),
        json!({
            "deviceId": "contoso-device-3",
            "moduleId": "module-1",
            "etag": "AAAAAAAAAAE=",
            "version": 1,
            "properties": {
                "desired": {"$metadata": {"$lastUpdated": stamp, "$lastUpdatedVersion": 1}, "$version": 1},
                "reported": {"$metadata": {"$lastUpdated": stamp}, "$version": 1}
            }
        })
    );
    let deleted = lifecycle(&key(None), at(), Lifecycle::Deleted, &twin);
    assert_eq!(property(&deleted, "opType"), Some("deleteDeviceIdentity"));
}

#[test]
fn connection_sequence_numbers_are_64_hex_digits_increasing_across_restarts() {
    let first_run = ConnectionSequence::starting_at("2022-05-26T20:34:16.2994452Z".parse().unwrap());
    let a = first_run.next_number();
    let b = first_run.next_number();
    // The file time of the start sits where Azure's does (its example's epoch, 01D8713FF7E08514).
    assert_eq!(
        a,
        "000000000000000001D8713FF7E0851400000000000000000000000000000001"
    );
    assert_eq!(a.len(), 64);
    assert!(b > a);
    let next_run = ConnectionSequence::starting_at("2022-05-26T20:34:17Z".parse().unwrap());
    assert!(
        next_run.next_number() > b,
        "a later start numbers above the earlier run"
    );

    let message = connection_state(&key(None), at(), false, &b);
    assert_eq!(property(&message, "opType"), Some("deviceDisconnected"));
    assert_eq!(
        property(&message, "iothub-message-schema"),
        Some("deviceConnectionStateNotification")
    );
    assert_eq!(message.annotations.message_source, "deviceConnectionStateEvents");
    assert_eq!(body(&message), json!({"sequenceNumber": b}));
    let connected = connection_state(&key(Some("module-1")), at(), true, &a);
    assert_eq!(property(&connected, "opType"), Some("deviceConnected"));
    assert_eq!(property(&connected, "moduleId"), Some("module-1"));
}

fn device_job(status: DeviceJobStatus) -> DeviceJobRecord {
    DeviceJobRecord {
        device_id: "contoso-device-3".into(),
        job_id: "job-1".into(),
        job_type: JobType::UpdateTwin,
        status,
        start_time_utc: at(),
        end_time_utc: at(),
        created_date_time_utc: at(),
        last_updated_date_time_utc: at(),
        outcome: None,
        error: (status == DeviceJobStatus::Failed).then(|| DeviceJobError {
            code: "JobRunPreconditionFailed".into(),
            description: "offline".into(),
        }),
    }
}

#[test]
fn finished_device_jobs_become_events_with_the_device_job_record() {
    let hub = key(None).hub;
    for (status, op_type) in [
        (DeviceJobStatus::Completed, "deviceJobCompleted"),
        (DeviceJobStatus::Failed, "deviceJobFailed"),
        (DeviceJobStatus::Canceled, "deviceJobCanceled"),
    ] {
        let record = device_job(status);
        let message = device_job_finished(&hub, at(), &record).unwrap();
        assert_eq!(property(&message, "opType"), Some(op_type));
        assert_eq!(
            property(&message, "iothub-message-schema"),
            Some("deviceJobLifecycleNotification")
        );
        assert_eq!(message.annotations.message_source, "deviceJobLifecycleEvents");
        assert_eq!(body(&message), record.to_json());
    }
    assert!(device_job_finished(&hub, at(), &device_job(DeviceJobStatus::Running)).is_none());
    assert!(device_job_finished(&hub, at(), &device_job(DeviceJobStatus::Pending)).is_none());
}

#[test]
fn file_uploads_carry_the_file_notification() {
    let notification = FileNotification {
        device_id: "contoso-device-3".into(),
        blob_uri: "https://hub.example/files/contoso-device-3/a.txt".into(),
        blob_name: "contoso-device-3/a.txt".into(),
        last_updated_time: at().to_string(),
        blob_size_in_bytes: 12,
        enqueued_time_utc: at().to_string(),
    };
    let message = file_uploaded(&key(None), at(), &notification);
    assert_eq!(property(&message, "opType"), Some("fileUploaded"));
    assert_eq!(
        property(&message, "iothub-message-schema"),
        Some("fileUploadNotification")
    );
    assert_eq!(message.annotations.message_source, "fileUploadNotifications");
    assert_eq!(
        serde_json::from_slice::<FileNotification>(&message.body).unwrap(),
        notification
    );
}

#[test]
fn route_conditions_read_event_properties_and_bodies() {
    let mut twin = Twin::new(at());
    let update = TwinUpdate {
        tags: None,
        desired: Some(map(json!({"mode": "eco"}))),
    };
    twin.apply_patch(&update, at(), &TwinLimits::default()).unwrap();
    let message = twin_changed(
        &key(None),
        at(),
        &twin,
        &TwinChange::service(&update, TwinWrite::Patch),
    );
    let holds = |condition: &str| Routing::test_condition(condition, &message, None).unwrap();
    assert!(holds("opType = 'updateTwin'"));
    assert!(holds("$body.properties.desired.mode = 'eco'"));
    assert!(holds(
        "hubName = 'contoso-routing-hub' AND $connectionDeviceId = 'contoso-device-3'"
    ));
    assert!(holds(
        "$contentType = 'application/json' AND $userId = 'contoso-routing-hub'"
    ));
    assert!(!holds("opType = 'replaceTwin'"));
}
