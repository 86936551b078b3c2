#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use bytes::Bytes;
use outpost_model::{Annotations, EndpointName, HubName, Message, SystemProperties, Timestamp};
use serde_json::{Value, json};

use super::*;

const HOST: &str = "hub1.localhost";
const AUTH: &str = r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#;

fn hub() -> HubName {
    HubName::new("hub1").unwrap()
}

fn message(source: &str, module: Option<&str>, props: &[(&str, &str)], body: &[u8]) -> Message {
    Message {
        properties: SystemProperties::default(),
        application_properties: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        annotations: Annotations {
            device_id: "dev1".into(),
            module_id: module.map(str::to_owned),
            auth_method: AUTH.into(),
            auth_generation_id: "637000000000000000".into(),
            enqueued_time: Timestamp::from_unix_millis(1_795_692_329_123),
            message_source: source.into(),
        },
        deliveries: vec![],
        body: Bytes::copy_from_slice(body),
    }
}

fn system_event(source: &str, module: Option<&str>, op: &str, body: &Value) -> Message {
    let mut message = message(
        source,
        module,
        &[
            ("hubName", "hub1"),
            ("deviceId", "dev1"),
            ("opType", op),
            ("iothub-message-schema", "x"),
            ("operationTimestamp", "2026-11-26T11:13:13.1234567Z"),
        ],
        body.to_string().as_bytes(),
    );
    message.properties.content_type = Some("application/json".into());
    message.properties.content_encoding = Some("utf-8".into());
    message
}

fn batch(messages: Vec<Message>) -> RoutedBatch {
    RoutedBatch {
        hub: hub(),
        endpoint: EndpointName::new("hook").unwrap(),
        partition: 1,
        events: messages
            .into_iter()
            .enumerate()
            .map(|(i, message)| RoutedEvent {
                partition: 1,
                sequence_number: 40 + i as u64,
                offset: 4096 * i as u64,
                message,
            })
            .collect(),
    }
}

fn one(message: Message) -> Value {
    event_grid_events(HOST, &batch(vec![message])).remove(0)
}

#[test]
fn telemetry_with_a_json_body_is_azures_device_telemetry_event() {
    let mut telemetry = message(
        "Telemetry",
        None,
        &[("Status", "Active")],
        br#"{"Weather":{"Temperature":900}}"#,
    );
    telemetry.properties.content_type = Some("Application/JSON".into());
    telemetry.properties.content_encoding = Some("UTF-8".into());
    telemetry.properties.message_id = Some("mid-1".into());
    let event = one(telemetry);
    assert_eq!(
        event,
        json!({
            "id": event_id(&hub(), 1, 40),
            "topic": "/SUBSCRIPTIONS/OUTPOST/RESOURCEGROUPS/HUB1.LOCALHOST/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/HUB1",
            "subject": "devices/dev1",
            "eventType": "Microsoft.Devices.DeviceTelemetry",
            "eventTime": "2026-11-26T11:25:29.1230000Z",
            "data": {
                "properties": {"Status": "Active"},
                "systemProperties": {
                    "message-id": "mid-1",
                    "iothub-content-type": "Application/JSON",
                    "iothub-content-encoding": "UTF-8",
                    "iothub-connection-device-id": "dev1",
                    "iothub-connection-auth-method": AUTH,
                    "iothub-connection-auth-generation-id": "637000000000000000",
                    "iothub-enqueuedtime": "2026-11-26T11:25:29.1230000Z",
                    "iothub-message-source": "Telemetry"
                },
                "body": {"Weather": {"Temperature": 900}}
            },
            "dataVersion": "",
            "metadataVersion": "1"
        })
    );
    // Key order as in Azure's samples.
    let keys: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "topic",
            "subject",
            "eventType",
            "eventTime",
            "data",
            "dataVersion",
            "metadataVersion"
        ]
    );
}

#[test]
fn telemetry_bodies_that_are_not_declared_or_valid_json_are_base64() {
    // No content type: base64, even though the bytes are JSON (Azure's rule).
    let undeclared = one(message("Telemetry", None, &[], br#"{"a":1}"#));
    assert_eq!(undeclared["data"]["body"], json!("eyJhIjoxfQ=="));
    // Declared JSON that does not parse: base64 too, never an error.
    let mut broken = message("Telemetry", None, &[], b"{not json");
    broken.properties.content_type = Some("application/json".into());
    broken.properties.content_encoding = Some("utf-8".into());
    assert_eq!(one(broken)["data"]["body"], json!("e25vdCBqc29u"));
    // JSON but another encoding: base64.
    let mut utf16 = message("Telemetry", None, &[], b"1");
    utf16.properties.content_type = Some("application/json".into());
    utf16.properties.content_encoding = Some("utf-16".into());
    assert_eq!(one(utf16)["data"]["body"], json!("MQ=="));
}

#[test]
fn module_messages_name_the_module_in_subject_and_system_properties() {
    let mut telemetry = message("Telemetry", Some("filter"), &[("a", "1"), ("a", "2")], b"x");
    telemetry.properties.output_name = Some("out1".into());
    let event = one(telemetry);
    assert_eq!(event["subject"], "devices/dev1/filter");
    assert_eq!(
        event["data"]["systemProperties"]["iothub-connection-module-id"],
        "filter"
    );
    assert_eq!(event["data"]["systemProperties"]["iothub-outputname"], "out1");
    // A repeated application property keeps its first value.
    assert_eq!(event["data"]["properties"], json!({"a": "1"}));
}

#[test]
fn connection_state_events_are_device_connected_and_disconnected() {
    let number = "000000000000000001D4132452F67CE200000002000000000000000000000001";
    let connected = one(system_event(
        "deviceConnectionStateEvents",
        None,
        "deviceConnected",
        &json!({"sequenceNumber": number}),
    ));
    assert_eq!(connected["eventType"], "Microsoft.Devices.DeviceConnected");
    assert_eq!(connected["eventTime"], "2026-11-26T11:13:13.1234567Z");
    assert_eq!(connected["dataVersion"], "1");
    assert_eq!(
        connected["data"],
        json!({
            "deviceConnectionStateEventInfo": {"sequenceNumber": number},
            "hubName": "hub1",
            "deviceId": "dev1"
        })
    );
    let disconnected = one(system_event(
        "deviceConnectionStateEvents",
        Some("m1"),
        "deviceDisconnected",
        &json!({}),
    ));
    assert_eq!(disconnected["eventType"], "Microsoft.Devices.DeviceDisconnected");
    assert_eq!(disconnected["subject"], "devices/dev1/m1");
    assert_eq!(disconnected["data"]["moduleId"], "m1");
    // Without a sequence number in the body, the log position stands in (64 hex digits).
    assert_eq!(
        disconnected["data"]["deviceConnectionStateEventInfo"]["sequenceNumber"],
        format!("{:064X}", 40)
    );
}

#[test]
fn lifecycle_events_carry_the_twin() {
    let twin = json!({"deviceId": "dev1", "etag": "AAAAAAAAAAE=", "version": 2, "properties": {"desired": {"$version": 1}}});
    let created = one(system_event(
        "deviceLifecycleEvents",
        None,
        "createDeviceIdentity",
        &twin,
    ));
    assert_eq!(created["eventType"], "Microsoft.Devices.DeviceCreated");
    assert_eq!(created["subject"], "devices/dev1");
    assert_eq!(
        created["data"],
        json!({
            "twin": twin,
            "hubName": "hub1",
            "deviceId": "dev1",
            "opType": "createDeviceIdentity",
            "operationTimestamp": "2026-11-26T11:13:13.1234567Z"
        })
    );
    for op in ["deleteDeviceIdentity", "deleteModuleIdentity"] {
        let deleted = one(system_event("deviceLifecycleEvents", Some("m1"), op, &twin));
        assert_eq!(deleted["eventType"], "Microsoft.Devices.DeviceDeleted", "{op}");
        assert_eq!(deleted["data"]["moduleId"], "m1");
    }
    let module_created = one(system_event(
        "deviceLifecycleEvents",
        Some("m1"),
        "createModuleIdentity",
        &twin,
    ));
    assert_eq!(module_created["eventType"], "Microsoft.Devices.DeviceCreated");
}

#[test]
fn sources_without_an_event_grid_type_get_outposts_types() {
    let delta = json!({"version": 7, "tags": {"site": "a"}});
    let twin = one(system_event("twinChangeEvents", None, "updateTwin", &delta));
    assert_eq!(twin["eventType"], "Microsoft.Devices.DeviceTwinChanged");
    assert_eq!(twin["data"]["twin"], delta);
    assert_eq!(twin["data"]["opType"], "updateTwin");

    let job = json!({"jobId": "j1", "status": "completed"});
    let job_event = one(system_event(
        "deviceJobLifecycleEvents",
        None,
        "jobCompleted",
        &job,
    ));
    assert_eq!(job_event["eventType"], "Microsoft.Devices.DeviceJobChanged");
    assert_eq!(job_event["data"]["job"], job);

    let upload = json!({"deviceId": "dev1", "blobName": "dev1/a.txt", "blobSizeInBytes": 3});
    let mut file = system_event("fileUploadNotifications", None, "", &upload);
    file.application_properties.retain(|(key, _)| key != "opType");
    let file_event = one(file);
    assert_eq!(file_event["eventType"], "Microsoft.Devices.FileUploaded");
    assert_eq!(file_event["data"]["fileUpload"], upload);
    assert!(file_event["data"].get("opType").is_none());
    assert_eq!(file_event["data"]["hubName"], "hub1");

    // A system event whose body is not JSON still maps (base64), and so does an unknown source.
    let mut odd = system_event("twinChangeEvents", None, "updateTwin", &json!(null));
    odd.body = Bytes::from_static(b"\xff");
    assert_eq!(one(odd)["data"]["twin"], "/w==");
    assert_eq!(
        one(message("somethingNew", None, &[], b""))["eventType"],
        "Microsoft.Devices.DeviceTelemetry"
    );
}

#[test]
fn event_ids_are_deterministic_uuids_distinct_per_position() {
    let id = event_id(&hub(), 1, 40);
    assert_eq!(id, event_id(&hub(), 1, 40));
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "8", "version 8: {id}");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "RFC variant: {id}");
    assert_ne!(id, event_id(&hub(), 1, 41));
    assert_ne!(id, event_id(&hub(), 2, 40));
    assert_ne!(id, event_id(&HubName::new("hub2").unwrap(), 1, 40));
    let events = event_grid_events(HOST, &batch(vec![message("Telemetry", None, &[], b"a"); 3]));
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
}

#[test]
fn statuses_are_classified_like_event_grid_retries() {
    for ok in [200, 201, 202, 204, 299] {
        assert_eq!(classify_status(ok), Ok(()), "{ok}");
    }
    for retry in [408, 429, 500, 502, 503, 504, 599] {
        assert!(
            matches!(classify_status(retry), Err(DeliveryError::Unavailable(_))),
            "{retry}"
        );
    }
    for refused in [301, 400, 401, 403, 404, 413] {
        assert!(
            matches!(classify_status(refused), Err(DeliveryError::Rejected(_))),
            "{refused}"
        );
    }
}

#[test]
fn batch_policy_follows_the_endpoint_settings() {
    let settings: WebhookEndpoint =
        serde_json::from_value(json!({"url": "http://x/", "maxEventsPerBatch": 7})).unwrap();
    assert_eq!(
        batch_policy(&settings),
        BatchPolicy {
            max_events: 7,
            max_bytes: 1024 * 1024,
            max_wait: Duration::from_secs(1)
        }
    );
}
