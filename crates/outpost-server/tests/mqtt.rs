//! The MQTT front door end to end over TLS with a minimal client built on Outpost's own codec:
//! CONNECT authentication and CONNACK codes, telemetry acknowledged only once durable, twins,
//! persistent sessions, takeover, keep-alive and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use outpost_auth::{KeyEncoding, SymmetricKey};
use outpost_core::{Caller, DeviceSpec, LogPosition};
use outpost_model::{DeviceId, DeviceStatus, Message, partition_for};
use outpost_mqtt::codec::{
    ConnAck, Connect, ConnectReturnCode, Decoder, Packet, PacketId, Publish, QoS, SubAckReturnCode,
    Subscribe, encode,
};
use outpost_server::{OutpostConfig, Server};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

async fn start(dir: &Path) -> Server {
    let mut config = OutpostConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    config.https.listen = "127.0.0.1:0".parse().unwrap();
    config.operator.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    Server::start(&config).await.unwrap()
}

fn tls(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::fs::read(ca_pem).unwrap().as_slice()) {
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

/// Creates a SAS device and returns its primary key.
async fn create_device(server: &Server, id: &str) -> SymmetricKey {
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let device = server
        .outpost
        .registry
        .put_device(
            &Caller::operator(hub),
            &DeviceId::new(id).unwrap(),
            DeviceSpec::default(),
            None,
        )
        .await
        .unwrap();
    device.authentication.symmetric_key.primary_key.unwrap()
}

fn device_token(device: &str, key: &SymmetricKey, expiry_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let resource = outpost_auth::encode_resource(&format!("localhost/devices/{device}"));
    outpost_auth::sign(
        &resource,
        key,
        KeyEncoding::Base64Decoded,
        (now + expiry_offset) as u64,
        None,
    )
}

struct Client {
    stream: TlsStream<TcpStream>,
    buffer: BytesMut,
    decoder: Decoder,
}

impl Client {
    async fn open(server: &Server) -> Self {
        let tcp = TcpStream::connect(server.mqtt_addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(tls(server.ca_path.as_ref().unwrap()));
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        Self {
            stream,
            buffer: BytesMut::new(),
            decoder: Decoder::new(1 << 20),
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Returns the next packet, or `None` when the server closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        let read = async {
            loop {
                if let Some(packet) = self.decoder.decode(&mut self.buffer).unwrap() {
                    return Some(packet);
                }
                match self.stream.read_buf(&mut self.buffer).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the server answered in time")
    }

    async fn connect(
        server: &Server,
        client_id: &str,
        password: Option<String>,
        clean: bool,
    ) -> (Self, ConnAck) {
        let mut client = Self::open(server).await;
        let connect = Connect {
            protocol_name: "MQTT".into(),
            protocol_level: 4,
            clean_session: clean,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: Some(format!(
                "localhost/{client_id}/?api-version=2021-04-12&DeviceClientType=outpost-test"
            )),
            password: password.map(Bytes::from),
        };
        client.send(Packet::Connect(connect)).await;
        let Some(Packet::ConnAck(connack)) = client.next().await else {
            panic!("no CONNACK")
        };
        (client, connack)
    }

    async fn publish(&mut self, topic: &str, id: u16, payload: &[u8]) {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id: PacketId::new(id),
            payload: Bytes::copy_from_slice(payload),
        };
        self.send(Packet::Publish(publish)).await;
    }

    async fn subscribe(&mut self, filter: &str) -> SubAckReturnCode {
        let subscribe = Subscribe {
            packet_id: PacketId::new(99).unwrap(),
            filters: vec![(filter.into(), QoS::AtLeastOnce)],
        };
        self.send(Packet::Subscribe(subscribe)).await;
        match self.next().await {
            Some(Packet::SubAck(suback)) => suback.return_codes[0],
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Returns the next PUBLISH from the server, skipping PUBACKs.
    async fn next_publish(&mut self) -> Publish {
        loop {
            match self.next().await {
                Some(Packet::Publish(publish)) => return publish,
                Some(Packet::PubAck(_)) => {}
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }
}

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
        .read(&hub.name, partition, LogPosition::SequenceNumber(0), 100, 1 << 20)
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

    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let update =
        outpost_model::TwinUpdate::from_twin_json(&json!({"properties": {"desired": {"rate": 5}}})).unwrap();
    let registry = &server.outpost.registry;
    registry
        .write_device_twin(
            &Caller::operator(hub),
            &DeviceId::new("dev1").unwrap(),
            &update,
            outpost_core::TwinWrite::Patch,
            None,
        )
        .await
        .unwrap();
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
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let update =
        outpost_model::TwinUpdate::from_twin_json(&json!({"properties": {"desired": {"x": 1}}})).unwrap();
    server
        .outpost
        .registry
        .write_device_twin(
            &Caller::operator(hub),
            &DeviceId::new("dev1").unwrap(),
            &update,
            outpost_core::TwinWrite::Patch,
            None,
        )
        .await
        .unwrap();
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
    let offline = server
        .outpost
        .registry
        .invoke_method(&caller, &device, None, call(5, 0))
        .await;
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
    let not_listening = server
        .outpost
        .registry
        .invoke_method(&caller, &device, None, call(5, 0))
        .await;
    assert!(
        matches!(not_listening, Err(CoreError::DeviceNotOnline(_))),
        "{not_listening:?}"
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
        .send(&caller, &device, c2d("m1", "first", FeedbackAck::Full))
        .await
        .unwrap();
    c2d_service
        .send(&caller, &device, c2d("m2", "second", FeedbackAck::None))
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
    client.send(Packet::PubAck(again.packet_id.unwrap())).await;
    let second = client.next_publish().await;
    assert_eq!(second.payload, Bytes::from_static(b"second"));
    client.send(Packet::PubAck(second.packet_id.unwrap())).await;
    client.send(Packet::PingReq).await;
    assert_eq!(client.next().await, Some(Packet::PingResp));
    assert_eq!(c2d_service.depth(&hub.name, &device).await.unwrap(), 0);
    let feedback = c2d_service.take_feedback(&hub.name, 10);
    assert_eq!(feedback.len(), 1, "only m1 asked for feedback");
    assert_eq!(feedback[0].original_message_id, "m1");
    assert_eq!(feedback[0].status_code, outpost_core::FeedbackStatus::Success);

    // A message sent while connected arrives at once.
    c2d_service
        .send(&caller, &device, c2d("m3", "live", FeedbackAck::None))
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
                &device,
                c2d(&format!("m{n}"), "x", FeedbackAck::Negative),
            )
            .await
            .unwrap();
    }
    let full = c2d_service
        .send(&caller, &device, c2d("over", "x", FeedbackAck::None))
        .await;
    assert!(matches!(full, Err(CoreError::QueueFull(_))), "{full:?}");
    assert_eq!(c2d_service.purge(&caller, &device).await.unwrap(), 50);
    assert_eq!(
        c2d_service.take_feedback(&hub.name, 100).len(),
        50,
        "negative acks hear about the purge"
    );
    let unknown = c2d_service
        .send(
            &caller,
            &DeviceId::new("nobody").unwrap(),
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
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let update =
        outpost_model::TwinUpdate::from_twin_json(&json!({"properties": {"desired": {"y": 2}}})).unwrap();
    let registry = &server.outpost.registry;
    registry
        .write_device_twin(
            &Caller::operator(hub),
            &DeviceId::new("dev1").unwrap(),
            &update,
            outpost_core::TwinWrite::Patch,
            None,
        )
        .await
        .unwrap();
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
