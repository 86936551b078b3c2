//! The MQTT front door end to end over TLS with a minimal client built on Outpost's own codec:
//! CONNECT authentication and CONNACK codes, telemetry acknowledged only once durable, twins,
//! persistent sessions, takeover, keep-alive and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod mqtt_support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_support::{Client, create_device, device_token, patch_desired, start, start_with};
use outpost_auth::SymmetricKey;
use outpost_core::{Caller, DeviceSpec, LogPosition};
use outpost_model::{DeviceId, DeviceStatus, LogName, Message, partition_for};
use outpost_mqtt::codec::{Connect, ConnectReturnCode, Packet, PacketId, QoS, SubAckReturnCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn telemetry_is_acknowledged_in_order_and_stored_with_properties_and_stamps() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let (mut client, connack) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), false).await;
    assert_eq!(connack.return_code, ConnectReturnCode::Accepted);
    assert!(!connack.session_present);
    let bag = "%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&a%2Fb=x%26y%3Dz&alert=high%20temp";
    for id in 1..=20 {
        client
            .publish(
                &format!("devices/dev1/messages/events/{bag}"),
                id,
                format!("{{\"n\":{id}}}").as_bytes(),
            )
            .await;
    }
    for id in 1..=20 {
        assert_eq!(
            client.next().await,
            Some(Packet::PubAck(PacketId::new(id).unwrap())),
            "PUBACKs in order"
        );
    }

    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let partition = partition_for(&DeviceId::new("dev1").unwrap(), hub.partition_count);
    let log = server.outpost.telemetry.log();
    let events = log
        .read(
            &LogName::hub(&hub.name),
            partition,
            LogPosition::SequenceNumber(0),
            100,
            1 << 20,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 20);
    let device = server
        .outpost
        .registry
        .device(&Caller::operator(hub.clone()), &DeviceId::new("dev1").unwrap())
        .await
        .unwrap();
    assert_eq!(device.connection_state, outpost_model::ConnectionState::Connected);
    let operator = Caller::operator(hub.clone());
    assert_eq!(
        server.outpost.registry.connected_device_count(&operator).unwrap(),
        1
    );
    let gauges = [outpost_core::HubGauges {
        hub: hub.name.clone(),
        devices: Default::default(),
        connected_devices: 1,
    }];
    let metrics = server.outpost.metrics.render(&gauges);
    assert!(
        metrics.contains("outpost_telemetry_messages_total{hub=\"localhost\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("outpost_connected_devices{hub=\"localhost\"} 1"),
        "{metrics}"
    );
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event.position.sequence_number, n as u64);
        let message = Message::decode(event.payload.clone()).unwrap();
        assert_eq!(message.body, Bytes::from(format!("{{\"n\":{}}}", n + 1)));
        assert_eq!(message.properties.message_id.as_deref(), Some("mid-1"));
        assert_eq!(
            message.properties.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(
            message.application_properties,
            [
                ("a/b".to_owned(), "x&y=z".to_owned()),
                ("alert".to_owned(), "high temp".to_owned())
            ]
        );
        assert_eq!(message.annotations.device_id, "dev1");
        assert_eq!(message.annotations.auth_generation_id, device.generation_id);
        assert_eq!(message.annotations.message_source, "Telemetry");
        assert!(message.annotations.auth_method.contains(r#""type":"sas""#));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bad_credentials_get_connack_5_and_old_protocols_connack_1() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let wrong = SymmetricKey::generate();
    let cases = [
        ("dev1", Some(device_token("dev1", &wrong, 3600))),
        ("dev1", Some(device_token("dev1", &key, -10))),
        ("dev1", Some(device_token("dev2", &key, 3600))),
        ("nodevice", Some(device_token("nodevice", &key, 3600))),
        ("dev1", Some("not a token".to_owned())),
        ("dev1", None),
    ];
    for (client_id, password) in cases {
        let (mut client, connack) = Client::connect(&server, client_id, password, true).await;
        assert_eq!(
            connack.return_code,
            ConnectReturnCode::NotAuthorized,
            "{client_id}"
        );
        assert_eq!(client.next().await, None, "the server closes after refusing");
    }
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let spec = DeviceSpec {
        status: Some(DeviceStatus::Disabled),
        ..Default::default()
    };
    server
        .outpost
        .registry
        .put_device(
            &Caller::operator(hub),
            &DeviceId::new("dev1").unwrap(),
            spec,
            Some("*"),
        )
        .await
        .unwrap();
    let (_, connack) = Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), true).await;
    assert_eq!(
        connack.return_code,
        ConnectReturnCode::NotAuthorized,
        "disabled device"
    );

    // MQTT 3.1 (protocol level 3) is answered with CONNACK 1 (§3.2.2.3).
    let mut client = Client::open(&server).await;
    let mut raw = BytesMut::new();
    raw.extend_from_slice(&[0x10, 0x12, 0x00, 0x06]);
    raw.extend_from_slice(b"MQIsdp");
    raw.extend_from_slice(&[0x03, 0x02, 0x00, 0x3c, 0x00, 0x04]);
    raw.extend_from_slice(b"dev1");
    client.stream.write_all(&raw).await.unwrap();
    let Some(Packet::ConnAck(connack)) = client.next().await else {
        panic!("no CONNACK")
    };
    assert_eq!(
        connack.return_code,
        ConnectReturnCode::UnacceptableProtocolVersion
    );
    server.shutdown().await;
}

#[tokio::test]
async fn twin_get_reported_patch_and_desired_notification() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let (mut client, _) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), false).await;
    assert_eq!(
        client.subscribe("$iothub/twin/res/#").await,
        SubAckReturnCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        client.subscribe("$iothub/twin/PATCH/properties/desired/#").await,
        SubAckReturnCode::Success(QoS::AtLeastOnce)
    );

    client
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=r1",
            1,
            br#"{"fw": "1.0"}"#,
        )
        .await;
    let response = client.next_publish().await;
    assert_eq!(response.topic, "$iothub/twin/res/204/?$rid=r1&$version=2");

    client.publish("$iothub/twin/GET/?$rid=g1", 2, b" ").await;
    let response = client.next_publish().await;
    assert_eq!(response.topic, "$iothub/twin/res/200/?$rid=g1");
    let twin: Value = serde_json::from_slice(&response.payload).unwrap();
    assert_eq!(
        twin,
        json!({"desired": {"$version": 1}, "reported": {"fw": "1.0", "$version": 2}})
    );

    client
        .publish("$iothub/twin/PATCH/properties/reported/?$rid=r2", 3, b"[1, 2]")
        .await;
    let response = client.next_publish().await;
    assert!(
        response.topic.starts_with("$iothub/twin/res/400/?$rid=r2"),
        "{}",
        response.topic
    );
    let error: Value = serde_json::from_slice(&response.payload).unwrap();
    assert!(
        error["errorCode"].as_u64().is_some(),
        "the Node SDK reads only errorCode"
    );

    patch_desired(&server, "dev1", json!({"properties": {"desired": {"rate": 5}}})).await;
    let notification = client.next_publish().await;
    assert_eq!(
        notification.topic,
        "$iothub/twin/PATCH/properties/desired/?$version=2"
    );
    let patch: Value = serde_json::from_slice(&notification.payload).unwrap();
    assert_eq!(patch, json!({"rate": 5, "$version": 2}));
    server.shutdown().await;
}

#[tokio::test]
async fn persistent_sessions_keep_subscriptions_and_a_second_connection_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let token = device_token("dev1", &key, 3600);
    let (mut first, _) = Client::connect(&server, "dev1", Some(token.clone()), false).await;
    first.subscribe("$iothub/twin/PATCH/properties/desired/#").await;
    let (mut second, connack) = Client::connect(&server, "dev1", Some(token.clone()), false).await;
    assert_eq!(
        first.next().await,
        None,
        "the first connection is closed on takeover"
    );
    assert!(
        connack.session_present,
        "the new connection takes over the live session"
    );
    second.send(Packet::Disconnect).await;
    assert_eq!(second.next().await, None);

    let (mut third, connack) = Client::connect(&server, "dev1", Some(token.clone()), false).await;
    assert!(connack.session_present, "clean session false keeps the session");
    patch_desired(&server, "dev1", json!({"properties": {"desired": {"x": 1}}})).await;
    let notification = third.next_publish().await;
    assert!(
        notification
            .topic
            .starts_with("$iothub/twin/PATCH/properties/desired/"),
        "restored subscription"
    );
    drop(third);
    let (_, connack) = Client::connect(&server, "dev1", Some(token), true).await;
    assert!(!connack.session_present, "clean session true discards it");
    server.shutdown().await;
}

#[tokio::test]
async fn foreign_topics_close_the_connection_and_foreign_filters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let token = device_token("dev1", &key, 3600);
    let (mut client, _) = Client::connect(&server, "dev1", Some(token.clone()), true).await;
    assert_eq!(
        client.subscribe("devices/dev2/messages/devicebound/#").await,
        SubAckReturnCode::Failure
    );
    assert_eq!(client.subscribe("#").await, SubAckReturnCode::Failure);
    client.publish("devices/dev2/messages/events/", 1, b"spoof").await;
    assert_eq!(
        client.next().await,
        None,
        "publishing as another device closes the connection"
    );

    let (mut client, _) = Client::connect(&server, "dev1", Some(token.clone()), true).await;
    client
        .publish("devices/dev1/messages/events/%zz=1", 1, b"x")
        .await;
    assert_eq!(
        client.next().await,
        None,
        "a malformed property bag closes the connection"
    );

    let (mut client, _) = Client::connect(&server, "dev1", Some(token.clone()), true).await;
    client
        .stream
        .write_all(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01])
        .await
        .unwrap();
    assert_eq!(
        client.next().await,
        None,
        "a malformed packet closes the connection"
    );

    // Other connections are unaffected.
    let (mut client, connack) = Client::connect(&server, "dev1", Some(token), true).await;
    assert_eq!(connack.return_code, ConnectReturnCode::Accepted);
    client.send(Packet::PingReq).await;
    assert_eq!(client.next().await, Some(Packet::PingResp));
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let key = create_device(&server, "dev1").await;
    let mut client = Client::open(&server).await;
    let connect = Connect {
        protocol_name: "MQTT".into(),
        protocol_level: 4,
        clean_session: true,
        keep_alive: 1,
        client_id: "dev1".into(),
        will: None,
        username: Some("localhost/dev1/?api-version=2021-04-12".into()),
        password: Some(Bytes::from(device_token("dev1", &key, 3600))),
    };
    client.send(Packet::Connect(connect)).await;
    assert!(matches!(client.next().await, Some(Packet::ConnAck(_))));
    let started = std::time::Instant::now();
    assert_eq!(client.next().await, None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn connects_over_the_hub_rate_get_connack_3() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |config| config.mqtt.max_connects_per_second = 1).await;
    let key = create_device(&server, "dev1").await;
    let token = device_token("dev1", &key, 3600);
    let (_first, connack) = Client::connect(&server, "dev1", Some(token.clone()), true).await;
    assert_eq!(connack.return_code, ConnectReturnCode::Accepted);
    let (_second, connack) = Client::connect(&server, "dev1", Some(token.clone()), true).await;
    assert_eq!(
        connack.return_code,
        ConnectReturnCode::ServerUnavailable,
        "throttled"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_third, connack) = Client::connect(&server, "dev1", Some(token), true).await;
    assert_eq!(
        connack.return_code,
        ConnectReturnCode::Accepted,
        "the bucket refilled"
    );
    server.shutdown().await;
}
