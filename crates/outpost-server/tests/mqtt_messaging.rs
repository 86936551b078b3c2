//! Messaging over the MQTT front door end to end: direct methods, cloud-to-device delivery and
//! queues, sessions across a server restart, and connections closed by revocation or expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod mqtt_support;

use std::time::Duration;

use bytes::Bytes;
use mqtt_support::{Client, create_device, device_token, patch_desired, start};
use outpost_core::{C2dDestination, Caller, DeviceSpec};
use outpost_model::{DeviceId, DeviceStatus};
use outpost_mqtt::codec::{Packet, QoS};
use serde_json::{Value, json};

/// Calls a direct method on a device as the operator would.
async fn invoke(
    server: &outpost_server::Server,
    caller: &Caller,
    device: &DeviceId,
    call: outpost_core::MethodCall,
) -> Result<outpost_core::MethodResult, outpost_core::CoreError> {
    server
        .outpost
        .registry
        .invoke_method(caller, device, None, call)
        .await
}

#[tokio::test]
async fn direct_methods_reach_the_device_and_time_out_as_azure_does() {
    use outpost_core::{CoreError, MethodCall};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let caller = Caller::operator(hub);
    let device = DeviceId::new("dev1").unwrap();
    let call = |response: u64, connect: u64| MethodCall {
        method_name: "reboot".into(),
        payload: json!({"delay": 5}),
        response_timeout_in_seconds: Some(response),
        connect_timeout_in_seconds: Some(connect),
    };
    let offline = invoke(&server, &caller, &device, call(5, 0)).await;
    assert!(
        matches!(offline, Err(CoreError::DeviceNotOnline(_))),
        "{offline:?}"
    );

    // A call made before the device connects waits up to its connect timeout.
    let registry = server.outpost.registry.clone();
    let (caller2, device2) = (caller.clone(), device.clone());
    let pending = tokio::spawn(async move {
        registry
            .invoke_method(&caller2, &device2, None, call(10, 10))
            .await
    });
    let (mut client, _) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), true).await;
    client.subscribe("$iothub/methods/POST/#").await;
    let request = client.next_publish().await;
    let (path, rid) = request.topic.split_once("/?$rid=").unwrap();
    assert_eq!(path, "$iothub/methods/POST/reboot");
    assert_eq!(
        serde_json::from_slice::<Value>(&request.payload).unwrap(),
        json!({"delay": 5})
    );
    client
        .publish(
            &format!("$iothub/methods/res/201/?$rid={rid}"),
            7,
            br#"{"rebooting": true}"#,
        )
        .await;
    let result = pending.await.unwrap().unwrap();
    assert_eq!((result.status, result.payload), (201, json!({"rebooting": true})));

    // No answer within the response timeout: 504.
    let registry = server.outpost.registry.clone();
    let (caller3, device3) = (caller.clone(), device.clone());
    let unanswered =
        tokio::spawn(async move { registry.invoke_method(&caller3, &device3, None, call(1, 0)).await });
    let _ignored = client.next_publish().await;
    let outcome = unanswered.await.unwrap();
    assert!(matches!(outcome, Err(CoreError::MethodTimeout(_))), "{outcome:?}");

    // Connected but not subscribed to methods: not online.
    let (_other, _) = Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), true).await;
    let not_listening = invoke(&server, &caller, &device, call(5, 0)).await;
    assert!(
        matches!(not_listening, Err(CoreError::DeviceNotOnline(_))),
        "{not_listening:?}"
    );

    // An unknown identity is not found at once, however long the caller would wait for it.
    let ghost = DeviceId::new("ghost").unwrap();
    let unknown = invoke(&server, &caller, &ghost, call(5, 30)).await;
    assert!(
        matches!(unknown, Err(CoreError::DeviceNotFound(_))),
        "{unknown:?}"
    );

    // A deleted identity is gone as soon as the deletion returns, though its connection was
    // listening for methods a moment before (a connected identity is not looked up).
    let (mut listening, _) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), true).await;
    listening.subscribe("$iothub/methods/POST/#").await;
    server
        .outpost
        .registry
        .delete_device(&caller, &device, None)
        .await
        .unwrap();
    let deleted = invoke(&server, &caller, &device, call(5, 0)).await;
    assert!(
        matches!(deleted, Err(CoreError::DeviceNotFound(_))),
        "{deleted:?}"
    );
    server.shutdown().await;
}

fn c2d(message_id: &str, body: &str, ack: outpost_core::FeedbackAck) -> outpost_core::C2dMessage {
    outpost_core::C2dMessage {
        message_id: Some(message_id.into()),
        correlation_id: Some("corr".into()),
        user_id: None,
        to: String::new(),
        content_type: Some("text/plain".into()),
        content_encoding: None,
        expiry: outpost_model::Timestamp::NEVER,
        ack,
        application_properties: vec![("k 1".into(), "v&1".into())],
        body: Bytes::from(body.to_owned()),
        enqueued_time: outpost_model::Timestamp::NEVER,
    }
}

#[tokio::test]
async fn cloud_to_device_messages_are_delivered_in_order_completed_by_puback_and_redelivered_otherwise() {
    use outpost_core::FeedbackAck;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let caller = Caller::operator(hub.clone());
    let device = DeviceId::new("dev1").unwrap();
    let c2d_service = &server.outpost.c2d;
    c2d_service
        .send(
            &caller,
            &C2dDestination::device(device.clone()),
            c2d("m1", "first", FeedbackAck::Full),
        )
        .await
        .unwrap();
    c2d_service
        .send(
            &caller,
            &C2dDestination::device(device.clone()),
            c2d("m2", "second", FeedbackAck::None),
        )
        .await
        .unwrap();

    assert_eq!(c2d_service.depth(&hub.name, &device).await.unwrap(), 2);
    let token = device_token("dev1", &key, 3600);
    let (mut client, _) = Client::connect(&server, "dev1", Some(token.clone()), false).await;
    client.subscribe("devices/dev1/messages/devicebound/#").await;
    let first = client.next_publish().await;
    assert_eq!(first.qos, QoS::AtLeastOnce);
    assert_eq!(first.payload, Bytes::from_static(b"first"));
    let bag = first
        .topic
        .strip_prefix("devices/dev1/messages/devicebound/")
        .unwrap();
    let (system, application) = outpost_mqtt::topics::parse_property_bag(bag).unwrap();
    assert_eq!(system.message_id.as_deref(), Some("m1"));
    assert_eq!(system.correlation_id.as_deref(), Some("corr"));
    assert_eq!(system.to.as_deref(), Some("/devices/dev1/messages/devicebound"));
    assert!(application.contains(&("iothub-ack".to_owned(), "full".to_owned())));
    assert!(application.contains(&("k 1".to_owned(), "v&1".to_owned())));

    // Disconnect without PUBACK: the message is delivered again on the next connection.
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut client, connack) = Client::connect(&server, "dev1", Some(token.clone()), false).await;
    assert!(connack.session_present);
    let again = client.next_publish().await;
    assert_eq!(again.payload, Bytes::from_static(b"first"));
    assert!(again.dup, "a redelivery carries DUP");
    assert!(!first.dup);
    client.send(Packet::PubAck(again.packet_id.unwrap())).await;
    let second = client.next_publish().await;
    assert_eq!(second.payload, Bytes::from_static(b"second"));
    client.send(Packet::PubAck(second.packet_id.unwrap())).await;
    client.send(Packet::PingReq).await;
    assert_eq!(client.next().await, Some(Packet::PingResp));
    assert_eq!(c2d_service.depth(&hub.name, &device).await.unwrap(), 0);
    let feedback = c2d_service
        .feedback()
        .take_completed(&hub.name, 10)
        .await
        .unwrap();
    assert_eq!(feedback.len(), 1, "only m1 asked for feedback");
    assert_eq!(feedback[0].original_message_id, "m1");
    assert_eq!(feedback[0].status_code, outpost_core::FeedbackStatus::Success);

    // A message sent while connected arrives at once.
    c2d_service
        .send(
            &caller,
            &C2dDestination::device(device.clone()),
            c2d("m3", "live", FeedbackAck::None),
        )
        .await
        .unwrap();
    assert_eq!(client.next_publish().await.payload, Bytes::from_static(b"live"));
    server.shutdown().await;
}

#[tokio::test]
async fn cloud_to_device_queues_are_bounded_and_purgeable() {
    use outpost_core::{CoreError, FeedbackAck};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    create_device(&server, "dev1").await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let caller = Caller::operator(hub.clone());
    let device = DeviceId::new("dev1").unwrap();
    let c2d_service = &server.outpost.c2d;
    for n in 0..50 {
        c2d_service
            .send(
                &caller,
                &C2dDestination::device(device.clone()),
                c2d(&format!("m{n}"), "x", FeedbackAck::Negative),
            )
            .await
            .unwrap();
    }
    let full = c2d_service
        .send(
            &caller,
            &C2dDestination::device(device.clone()),
            c2d("over", "x", FeedbackAck::None),
        )
        .await;
    assert!(matches!(full, Err(CoreError::QueueFull(_))), "{full:?}");
    assert_eq!(c2d_service.purge(&caller, &device).await.unwrap(), 50);
    assert_eq!(
        c2d_service.feedback().take(&hub.name, 100).len(),
        50,
        "negative acks hear about the purge"
    );
    let unknown = c2d_service
        .send(
            &caller,
            &C2dDestination::device(DeviceId::new("nobody").unwrap()),
            c2d("m", "x", FeedbackAck::None),
        )
        .await;
    assert!(matches!(unknown, Err(CoreError::DeviceNotFound(_))));
    server.shutdown().await;
}

#[tokio::test]
async fn persistent_sessions_survive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let token = device_token("dev1", &key, 3600);
    let (mut client, _) = Client::connect(&server, "dev1", Some(token.clone()), false).await;
    client.subscribe("$iothub/twin/PATCH/properties/desired/#").await;
    drop(client);
    server.shutdown().await;

    let server = start(dir.path()).await;
    let (mut client, connack) = Client::connect(&server, "dev1", Some(token), false).await;
    assert!(
        connack.session_present,
        "the Python SDK never subscribes again after reconnecting"
    );
    patch_desired(&server, "dev1", json!({"properties": {"desired": {"y": 2}}})).await;
    assert!(
        client
            .next_publish()
            .await
            .topic
            .starts_with("$iothub/twin/PATCH/properties/desired/")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn disabling_deleting_or_token_expiry_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let caller = Caller::operator(hub);
    let device = DeviceId::new("dev1").unwrap();

    let (mut client, _) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), true).await;
    let spec = DeviceSpec {
        status: Some(DeviceStatus::Disabled),
        ..Default::default()
    };
    server
        .outpost
        .registry
        .put_device(&caller, &device, spec, Some("*"))
        .await
        .unwrap();
    assert_eq!(client.next().await, None, "disabled");
    let spec = DeviceSpec {
        status: Some(DeviceStatus::Enabled),
        ..Default::default()
    };
    server
        .outpost
        .registry
        .put_device(&caller, &device, spec, Some("*"))
        .await
        .unwrap();

    let (mut client, _) = Client::connect(&server, "dev1", Some(device_token("dev1", &key, 2)), true).await;
    let started = std::time::Instant::now();
    client.send(Packet::PingReq).await;
    assert_eq!(client.next().await, Some(Packet::PingResp));
    assert_eq!(client.next().await, None, "token expired");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    let (mut client, _) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), true).await;
    server
        .outpost
        .registry
        .delete_device(&caller, &device, None)
        .await
        .unwrap();
    assert_eq!(client.next().await, None, "deleted");
    server.shutdown().await;
}

#[tokio::test]
async fn module_input_messages_arrive_on_the_module_inputs_topic() {
    use outpost_core::{CoreError, FeedbackAck, ModuleSpec};
    use outpost_model::ModuleId;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    create_device(&server, "dev1").await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let caller = Caller::operator(hub.clone());
    let device = DeviceId::new("dev1").unwrap();
    let module = ModuleId::new("filter").unwrap();
    let created = server
        .outpost
        .registry
        .put_module(&caller, &device, &module, ModuleSpec::default(), None)
        .await
        .unwrap();
    let key = created.authentication.symmetric_key.primary_key.unwrap();
    let destination = C2dDestination {
        device: device.clone(),
        module_input: Some((module.clone(), "input1".into())),
    };
    server
        .outpost
        .c2d
        .send(
            &caller,
            &destination,
            c2d("mi1", "to the module", FeedbackAck::None),
        )
        .await
        .unwrap();
    let bad = C2dDestination {
        device: device.clone(),
        module_input: Some((module.clone(), "a/b".into())),
    };
    let refused = server
        .outpost
        .c2d
        .send(&caller, &bad, c2d("x", "x", FeedbackAck::None))
        .await;
    assert!(
        matches!(refused, Err(CoreError::InvalidArgument(_))),
        "{refused:?}"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let resource = outpost_auth::encode_resource("localhost/devices/dev1/modules/filter");
    let token = outpost_auth::sign(
        &resource,
        &key,
        outpost_auth::KeyEncoding::Base64Decoded,
        now + 600,
        None,
    );
    let (mut client, _) = Client::connect(&server, "dev1/filter", Some(token), false).await;
    client.subscribe("devices/dev1/modules/filter/inputs/#").await;
    let delivered = client.next_publish().await;
    assert!(
        delivered
            .topic
            .starts_with("devices/dev1/modules/filter/inputs/input1/"),
        "{}",
        delivered.topic
    );
    assert_eq!(delivered.payload, Bytes::from_static(b"to the module"));
    client.send(Packet::PubAck(delivered.packet_id.unwrap())).await;
    client.send(Packet::PingReq).await;
    assert_eq!(client.next().await, Some(Packet::PingResp));
    let target = outpost_core::C2dTarget {
        device,
        module: Some(module),
    };
    assert_eq!(
        server
            .outpost
            .c2d
            .queue()
            .depth(&hub.name, &target)
            .await
            .unwrap(),
        0
    );
    server.shutdown().await;
}
