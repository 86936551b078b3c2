//! The built-in Event Hubs-compatible endpoint end to end over TLS, with a minimal AMQP 1.0 client
//! built on Outpost's own codec: SASL ANONYMOUS, CBS put-token (good and bad keys), `$management`
//! READ, and partition receivers reading what an MQTT device sent (from the start and `@latest`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod mqtt_support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_support::{Client, create_device, device_token, start};
use outpost_amqp::message::{Body, Message, MessageId, Properties};
use outpost_amqp::{
    Attach, Begin, Flow, Frame, FrameBody, FrameDecoder, Open, Performative, ProtocolId, Role, SaslCode,
    SaslFrame, SaslInit, Source, Target, Transfer, Value, encode_amqp_frame, encode_sasl_frame,
};
use outpost_auth::{KeyEncoding, SymmetricKey, encode_resource, sign};
use outpost_model::{DeviceId, partition_for};
use outpost_mqtt::codec::{ConnectReturnCode, Packet, PacketId};
use outpost_server::Server;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

struct AmqpClient {
    stream: TlsStream<TcpStream>,
    buffer: BytesMut,
    decoder: FrameDecoder,
    next_delivery: u32,
    /// Frames of other links that arrived while waiting for an attach, returned first by `next`.
    pending: std::collections::VecDeque<Frame>,
}

impl AmqpClient {
    /// Connects over TLS, SASL ANONYMOUS, open and begin (channel 0).
    async fn connect(server: &Server) -> Self {
        let tcp = TcpStream::connect(server.amqp_addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(mqtt_support::tls(server.ca_path.as_ref().unwrap()));
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut client = Self {
            stream,
            buffer: BytesMut::new(),
            decoder: FrameDecoder::new(1 << 20),
            next_delivery: 0,
            pending: std::collections::VecDeque::new(),
        };
        client.write(&ProtocolId::Sasl.header()).await;
        client.expect_header(ProtocolId::Sasl).await;
        let Frame {
            body: FrameBody::Sasl(SaslFrame::Mechanisms(mechanisms)),
            ..
        } = client.next().await
        else {
            panic!("expected sasl-mechanisms")
        };
        assert!(
            mechanisms
                .sasl_server_mechanisms
                .iter()
                .any(|m| m.as_str() == "ANONYMOUS")
        );
        let mut out = BytesMut::new();
        encode_sasl_frame(
            &mut out,
            &SaslFrame::Init(SaslInit {
                mechanism: "ANONYMOUS".into(),
                initial_response: None,
                hostname: Some("localhost".into()),
            }),
        );
        client.write(&out).await;
        let Frame {
            body: FrameBody::Sasl(SaslFrame::Outcome(outcome)),
            ..
        } = client.next().await
        else {
            panic!("expected sasl-outcome")
        };
        assert_eq!(outcome.code, SaslCode::Ok);
        client.write(&ProtocolId::Amqp.header()).await;
        client.expect_header(ProtocolId::Amqp).await;
        client
            .perform(Performative::Open(Open {
                container_id: "outpost-test".into(),
                hostname: Some("localhost".into()),
                max_frame_size: Some(65536),
                channel_max: Some(10),
                ..Open::default()
            }))
            .await;
        assert!(matches!(client.next_performative().await, Performative::Open(_)));
        client
            .perform(Performative::Begin(Begin {
                remote_channel: None,
                next_outgoing_id: 0,
                incoming_window: 10_000,
                outgoing_window: 10_000,
                handle_max: Some(255),
                ..Begin::default()
            }))
            .await;
        assert!(matches!(client.next_performative().await, Performative::Begin(_)));
        client
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) {
        let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buffer));
        let n = read.await.expect("the server answered in time").unwrap();
        assert!(n > 0, "the server closed the connection");
    }

    async fn expect_header(&mut self, protocol: ProtocolId) {
        while self.buffer.len() < 8 {
            self.fill().await;
        }
        let header = self.buffer.split_to(8);
        assert_eq!(&header[..], &protocol.header());
    }

    async fn next(&mut self) -> Frame {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buffer).unwrap() {
                return frame;
            }
            self.fill().await;
        }
    }

    async fn next_performative(&mut self) -> Performative {
        loop {
            if let FrameBody::Amqp { performative, .. } = self.next().await.body {
                return performative;
            }
        }
    }

    async fn perform(&mut self, performative: Performative) {
        let mut out = BytesMut::new();
        encode_amqp_frame(&mut out, 0, &performative, &[]);
        self.write(&out).await;
    }

    /// Attaches a link and returns the hub's attach.
    async fn attach(&mut self, handle: u32, role: Role, source: Source, target: Target) -> Attach {
        self.attach_with(handle, role, source, target, None).await
    }

    /// Attaches a link with link properties and returns the hub's attach.
    async fn attach_with(
        &mut self,
        handle: u32,
        role: Role,
        source: Source,
        target: Target,
        properties: Option<Vec<(outpost_amqp::Symbol, Value)>>,
    ) -> Attach {
        self.perform(Performative::Attach(Box::new(Attach {
            name: format!("link-{handle}"),
            handle,
            role,
            snd_settle_mode: None,
            rcv_settle_mode: None,
            source: Some(source),
            target: Some(target),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: (role == Role::Sender).then_some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties,
        })))
        .await;
        let mut others = std::collections::VecDeque::new();
        loop {
            let frame = self.next().await;
            match &frame.body {
                FrameBody::Amqp {
                    performative: Performative::Attach(attach),
                    ..
                } if attach.handle == handle || attach.name == format!("link-{handle}") => {
                    let attach = (**attach).clone();
                    // Deliveries of links attached earlier may interleave: `next` returns them
                    // first, in the order they came (the loop above drained `pending` into them).
                    self.pending = others;
                    return attach;
                }
                FrameBody::Amqp {
                    performative: Performative::Attach(_) | Performative::Flow(_),
                    ..
                } => {}
                FrameBody::Amqp {
                    performative: Performative::Transfer(transfer),
                    ..
                } if transfer.handle != handle => others.push_back(frame),
                other => panic!("expected attach, got {other:?}"),
            }
        }
    }

    async fn credit(&mut self, handle: u32, credit: u32) {
        self.perform(Performative::Flow(Flow {
            next_incoming_id: Some(0),
            incoming_window: 10_000,
            next_outgoing_id: self.next_delivery,
            outgoing_window: 10_000,
            handle: Some(handle),
            delivery_count: Some(0),
            link_credit: Some(credit),
            ..Flow::default()
        }))
        .await;
    }

    async fn transfer(&mut self, handle: u32, message: &Message) {
        let id = self.next_delivery;
        self.next_delivery += 1;
        let transfer = Transfer {
            handle,
            delivery_id: Some(id),
            delivery_tag: Some(Bytes::copy_from_slice(&id.to_be_bytes())),
            message_format: Some(0),
            settled: Some(true),
            ..Transfer::default()
        };
        let mut out = BytesMut::new();
        encode_amqp_frame(
            &mut out,
            0,
            &Performative::Transfer(transfer),
            &message.to_bytes(),
        );
        self.write(&out).await;
    }

    /// Returns the next message the hub sends on `handle`, skipping other frames.
    async fn message_on(&mut self, handle: u32) -> Message {
        let mut payload = BytesMut::new();
        loop {
            let frame = self.next().await;
            match frame.body {
                FrameBody::Amqp {
                    performative: Performative::Transfer(transfer),
                    payload: part,
                } if transfer.handle == handle => {
                    payload.extend_from_slice(&part);
                    if !transfer.more {
                        return Message::decode(payload.freeze()).unwrap();
                    }
                }
                FrameBody::Amqp {
                    performative: Performative::Detach(detach),
                    ..
                } => panic!("link detached: {detach:?}"),
                _ => {}
            }
        }
    }

    /// Sends a request on `request_handle` and returns the reply on `reply_handle`.
    async fn request(&mut self, request_handle: u32, reply_handle: u32, message: Message) -> Message {
        self.transfer(request_handle, &message).await;
        self.message_on(reply_handle).await
    }
}

fn text(value: Option<&Value>) -> &str {
    match value {
        Some(Value::String(text)) => text,
        other => panic!("expected a string, got {other:?}"),
    }
}

fn map_get<'a>(body: &'a Body, key: &str) -> &'a Value {
    let Body::Value(Value::Map(entries)) = body else {
        panic!("expected a map body, got {body:?}")
    };
    entries
        .iter()
        .find(|(k, _)| matches!(k, Value::String(k) if k == key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {entries:?}"))
}

fn put_token(id: MessageId, audience: &str, token: String) -> Message {
    Message {
        properties: Some(Properties {
            message_id: Some(id),
            to: Some("$cbs".into()),
            reply_to: Some("cbs-reply".into()),
            ..Properties::default()
        }),
        application_properties: Some(vec![
            ("operation".into(), Value::String("put-token".into())),
            ("name".into(), Value::String(audience.into())),
            (
                "type".into(),
                Value::String("servicebus.windows.net:sastoken".into()),
            ),
        ]),
        body: Body::Value(Value::String(token)),
        ..Message::default()
    }
}

fn read_request(id: u64, kind: &str, hub: &str, partition: Option<u32>) -> Message {
    let mut properties = vec![
        ("operation".into(), Value::String("READ".into())),
        ("name".into(), Value::String(hub.into())),
        ("type".into(), Value::String(kind.into())),
    ];
    if let Some(partition) = partition {
        properties.push(("partition".into(), Value::String(partition.to_string())));
    }
    Message {
        properties: Some(Properties {
            message_id: Some(MessageId::Ulong(id)),
            reply_to: Some("mgmt-reply".into()),
            ..Properties::default()
        }),
        application_properties: Some(properties),
        body: Body::Value(Value::String("[]".into())),
        ..Message::default()
    }
}

fn status(reply: &Message) -> &Value {
    reply.application_property("status-code").unwrap()
}

/// An Event Hubs token: signed with the key's text, as the Event Hubs SDKs do (wire reference §1.1).
fn eventhub_token(audience: &str, key: &SymmetricKey, policy: &str) -> String {
    let expiry = outpost_model::Timestamp::now().unix_seconds().unwrap() as u64 + 3600;
    sign(
        &encode_resource(audience),
        key,
        KeyEncoding::RawString,
        expiry,
        Some(policy),
    )
}

fn selector(expression: &str) -> Source {
    let mut source = Source::new("");
    source.filter = Some(vec![(
        "apache.org:selector-filter:string".into(),
        Value::described(
            outpost_amqp::Descriptor::Code(0x0000_468C_0000_0004),
            Value::String(expression.into()),
        ),
    )]);
    source
}

async fn send_telemetry(client: &mut Client, id: u16, body: &str) {
    client
        .publish(
            "devices/dev1/messages/events/%24.mid=m1&kind=test",
            id,
            body.as_bytes(),
        )
        .await;
    assert_eq!(
        client.next().await,
        Some(Packet::PubAck(PacketId::new(id).unwrap()))
    );
}

#[tokio::test]
async fn eventhub_clients_authorize_read_properties_and_receive_device_telemetry() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let hub_name = hub.name.to_string();
    let partition = partition_for(&DeviceId::new("dev1").unwrap(), hub.partition_count);
    let key = create_device(&server, "dev1").await;
    let (mut device, connack) =
        Client::connect(&server, "dev1", Some(device_token("dev1", &key, 3600)), false).await;
    assert_eq!(connack.return_code, ConnectReturnCode::Accepted);
    send_telemetry(&mut device, 1, "{\"n\":1}").await;
    send_telemetry(&mut device, 2, "{\"n\":2}").await;

    let mut client = AmqpClient::connect(&server).await;
    // CBS: sender + receiver, as pyamqp attaches them.
    client
        .attach(0, Role::Sender, Source::new("$cbs"), Target::new("$cbs"))
        .await;
    client
        .attach(1, Role::Receiver, Source::new("$cbs"), Target::new("cbs-reply"))
        .await;
    client.credit(1, 10).await;

    let policy = hub.policy("service").unwrap();
    let audience = format!("sb://localhost/{hub_name}");
    // A wrong key is refused with 401, echoing the uuid message id.
    let wrong = eventhub_token(&audience, &SymmetricKey::generate(), "service");
    let reply = client
        .request(0, 1, put_token(MessageId::Uuid([7; 16]), &audience, wrong))
        .await;
    assert_eq!(status(&reply), &Value::Int(401));
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::Uuid([7; 16]))
    );
    // A policy without ServiceConnect is refused too.
    let registry = hub.policy("registryRead").unwrap();
    let token = eventhub_token(&audience, &registry.primary_key, "registryRead");
    let reply = client
        .request(0, 1, put_token(MessageId::Ulong(1), &audience, token))
        .await;
    assert_eq!(status(&reply), &Value::Int(401));
    // A good one: 200, correlation id of the same AMQP type (ulong).
    let token = eventhub_token(&audience, &policy.primary_key, "service");
    let reply = client
        .request(0, 1, put_token(MessageId::Ulong(2), &audience, token))
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::Ulong(2))
    );

    // $management READ.
    client
        .attach(
            2,
            Role::Sender,
            Source::new("$management"),
            Target::new("$management"),
        )
        .await;
    client
        .attach(
            3,
            Role::Receiver,
            Source::new("$management"),
            Target::new("mgmt-reply"),
        )
        .await;
    client.credit(3, 10).await;
    let reply = client
        .request(2, 3, read_request(10, "com.microsoft:eventhub", &hub_name, None))
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::Ulong(10))
    );
    assert_eq!(map_get(&reply.body, "name"), &Value::String(hub_name.clone()));
    let Value::List(ids) = map_get(&reply.body, "partition_ids") else {
        panic!("partition_ids is a list")
    };
    assert_eq!(ids.len(), hub.partition_count as usize);
    assert_eq!(ids[0], Value::String("0".into()));
    assert!(matches!(map_get(&reply.body, "created_at"), Value::Timestamp(_)));
    let reply = client
        .request(
            2,
            3,
            read_request(11, "com.microsoft:partition", &hub_name, Some(partition)),
        )
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    assert_eq!(
        map_get(&reply.body, "partition"),
        &Value::String(partition.to_string())
    );
    assert_eq!(map_get(&reply.body, "begin_sequence_number"), &Value::Long(0));
    assert_eq!(
        map_get(&reply.body, "last_enqueued_sequence_number"),
        &Value::Long(1)
    );
    assert_eq!(map_get(&reply.body, "is_partition_empty"), &Value::Bool(false));
    assert!(matches!(
        map_get(&reply.body, "last_enqueued_offset"),
        Value::String(_)
    ));
    assert!(matches!(
        map_get(&reply.body, "last_enqueued_time_utc"),
        Value::Timestamp(_)
    ));
    let reply = client
        .request(
            2,
            3,
            read_request(12, "com.microsoft:eventhub", "someotherhub", None),
        )
        .await;
    assert_eq!(status(&reply), &Value::Int(404));

    // A receiver from the start (absolute address, as Python sends it; lower-case consumer group).
    let mut source = selector("amqp.annotation.x-opt-offset > '-1'");
    source.address = Some(format!(
        "amqps://localhost:5671/{hub_name}/ConsumerGroups/$default/Partitions/{partition}"
    ));
    let attach = client
        .attach(4, Role::Receiver, source, Target::new("receiver"))
        .await;
    assert!(attach.source.is_some() && attach.target.is_some());
    assert_eq!(attach.initial_delivery_count, Some(0));
    client.credit(4, 300).await;
    for n in 0..2_i64 {
        let message = client.message_on(4).await;
        assert_eq!(
            message.message_annotation("x-opt-sequence-number"),
            Some(&Value::Long(n))
        );
        assert!(matches!(
            message.message_annotation("x-opt-offset"),
            Some(Value::String(_))
        ));
        assert!(matches!(
            message.message_annotation("x-opt-enqueued-time"),
            Some(Value::Timestamp(_))
        ));
        assert_eq!(
            text(message.message_annotation("iothub-connection-device-id")),
            "dev1"
        );
        assert_eq!(
            text(message.message_annotation("iothub-message-source")),
            "Telemetry"
        );
        assert_eq!(text(message.application_property("kind")), "test");
        assert_eq!(
            message.properties.as_ref().unwrap().message_id,
            Some(MessageId::String("m1".into()))
        );
        assert_eq!(
            message.body,
            Body::Data(vec![Bytes::from(format!("{{\"n\":{}}}", n + 1))])
        );
    }

    // A receiver from @latest (relative address) sees only what comes after it; the first
    // receiver sees it too.
    let mut source = selector("amqp.annotation.x-opt-offset > '@latest'");
    source.address = Some(format!(
        "{hub_name}/ConsumerGroups/$Default/Partitions/{partition}"
    ));
    client
        .attach(5, Role::Receiver, source, Target::new("latest"))
        .await;
    client.credit(5, 10).await;
    send_telemetry(&mut device, 3, "{\"n\":3}").await;
    let message = client.message_on(5).await;
    assert_eq!(
        message.message_annotation("x-opt-sequence-number"),
        Some(&Value::Long(2))
    );
    assert_eq!(message.body, Body::Data(vec![Bytes::from_static(b"{\"n\":3}")]));

    // A receiver by sequence number (exclusive) and an unknown consumer group.
    let mut source = selector("amqp.annotation.x-opt-sequence-number > '1'");
    source.address = Some(format!(
        "{hub_name}/ConsumerGroups/$Default/Partitions/{partition}"
    ));
    client
        .attach(6, Role::Receiver, source, Target::new("by-sequence"))
        .await;
    client.credit(6, 10).await;
    let message = client.message_on(6).await;
    assert_eq!(
        message.message_annotation("x-opt-sequence-number"),
        Some(&Value::Long(2))
    );
    let mut source = Source::new(format!("{hub_name}/ConsumerGroups/nope/Partitions/0"));
    source.filter = None;
    let attach = client
        .attach(7, Role::Receiver, source, Target::new("nope"))
        .await;
    let _ = attach;
    match client.next_performative().await {
        Performative::Detach(detach) => {
            assert_eq!(detach.error.unwrap().condition.as_str(), "amqp:not-found");
        }
        other => panic!("expected detach, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn receivers_need_a_token_and_tokens_of_other_hubs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let hub_name = hub.name.to_string();
    let mut client = AmqpClient::connect(&server).await;
    // No token: the receiver is refused.
    let source = Source::new(format!("{hub_name}/ConsumerGroups/$Default/Partitions/0"));
    client.attach(0, Role::Receiver, source, Target::new("r")).await;
    match client.next_performative().await {
        Performative::Detach(detach) => {
            assert_eq!(
                detach.error.unwrap().condition.as_str(),
                "amqp:unauthorized-access"
            );
        }
        other => panic!("expected detach, got {other:?}"),
    }
    // A token for a host that is no hub.
    client
        .attach(1, Role::Sender, Source::new("$cbs"), Target::new("$cbs"))
        .await;
    client
        .attach(2, Role::Receiver, Source::new("$cbs"), Target::new("cbs-reply"))
        .await;
    client.credit(2, 10).await;
    let policy = hub.policy("iothubowner").unwrap();
    let audience = "sb://elsewhere.example/otherhub";
    let token = eventhub_token(audience, &policy.primary_key, "iothubowner");
    let reply = client
        .request(1, 2, put_token(MessageId::String("a".into()), audience, token))
        .await;
    assert_ne!(status(&reply), &Value::Int(200));
    assert_eq!(
        reply.properties.as_ref().unwrap().correlation_id,
        Some(MessageId::String("a".into()))
    );
    // A valid token of another hub, on a connection opened for `localhost`: refused, and that
    // hub's partitions stay out of reach.
    let other = server
        .outpost
        .create_hub(
            outpost_model::Hub::new(
                outpost_model::HubName::new("other").unwrap(),
                "other.localhost",
                2,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let other_policy = other.policy("iothubowner").unwrap();
    let audience = "sb://other.localhost/other";
    let token = eventhub_token(audience, &other_policy.primary_key, "iothubowner");
    let reply = client
        .request(1, 2, put_token(MessageId::Ulong(5), audience, token))
        .await;
    assert_eq!(status(&reply), &Value::Int(401));
    let source = Source::new("amqps://other.localhost/other/ConsumerGroups/$Default/Partitions/0");
    client.attach(3, Role::Receiver, source, Target::new("r3")).await;
    match client.next_performative().await {
        Performative::Detach(detach) => {
            assert_eq!(detach.error.unwrap().condition.as_str(), "amqp:not-found");
        }
        other => panic!("expected detach, got {other:?}"),
    }
    server.shutdown().await;
}

/// Puts a `service` token for the hub on a fresh connection (CBS links on handles 0 and 1).
async fn authorized_client(server: &Server, hub: &outpost_model::Hub) -> AmqpClient {
    let mut client = AmqpClient::connect(server).await;
    client
        .attach(0, Role::Sender, Source::new("$cbs"), Target::new("$cbs"))
        .await;
    client
        .attach(1, Role::Receiver, Source::new("$cbs"), Target::new("cbs-reply"))
        .await;
    client.credit(1, 10).await;
    let audience = format!("sb://localhost/{}", hub.name);
    let token = eventhub_token(&audience, &hub.policy("service").unwrap().primary_key, "service");
    let reply = client
        .request(0, 1, put_token(MessageId::Ulong(1), &audience, token))
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    client
}

/// Attaches a partition receiver with an epoch (or none).
async fn attach_receiver(client: &mut AmqpClient, handle: u32, hub: &str, epoch: Option<i64>) -> Attach {
    let mut source = selector("amqp.annotation.x-opt-offset > '@latest'");
    source.address = Some(format!("{hub}/ConsumerGroups/$Default/Partitions/1"));
    let properties = epoch.map(|epoch| vec![("com.microsoft:epoch".into(), Value::Long(epoch))]);
    client
        .attach_with(handle, Role::Receiver, source, Target::new("r"), properties)
        .await
}

/// Returns the next detach the hub sends, skipping flows and transfers.
async fn next_detach(client: &mut AmqpClient) -> outpost_amqp::Detach {
    loop {
        match client.next_performative().await {
            Performative::Detach(detach) => return detach,
            Performative::Flow(_) | Performative::Transfer(_) => {}
            other => panic!("expected detach, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_higher_epoch_receiver_steals_the_partition_and_lower_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let hub = server.outpost.hubs.by_host("localhost").unwrap();
    let hub_name = hub.name.to_string();

    // Epoch 1 on a first connection, epoch 2 on a second: the first is detached, stolen.
    let mut first = authorized_client(&server, &hub).await;
    let attach = attach_receiver(&mut first, 2, &hub_name, Some(1)).await;
    assert!(attach.source.is_some());
    let mut second = authorized_client(&server, &hub).await;
    let attach = attach_receiver(&mut second, 2, &hub_name, Some(2)).await;
    assert!(attach.source.is_some());
    let detach = next_detach(&mut first).await;
    assert_eq!(detach.handle, 2);
    assert!(detach.closed);
    let error = detach.error.unwrap();
    assert_eq!(error.condition.as_str(), "amqp:link:stolen");
    let description = error.description.unwrap();
    assert!(description.contains("higher epoch of '2'"), "{description}");
    assert!(description.contains("epoch '1'"), "{description}");

    // Epoch 1 again, and a receiver without an epoch: refused, stolen.
    attach_receiver(&mut first, 3, &hub_name, Some(1)).await;
    let detach = next_detach(&mut first).await;
    assert_eq!(detach.handle, 3);
    assert_eq!(detach.error.unwrap().condition.as_str(), "amqp:link:stolen");
    attach_receiver(&mut first, 4, &hub_name, None).await;
    let detach = next_detach(&mut first).await;
    assert_eq!(detach.handle, 4);
    assert_eq!(detach.error.unwrap().condition.as_str(), "amqp:link:stolen");

    // Once the epoch receiver's connection is gone, the partition is free again.
    drop(second);
    let mut third = authorized_client(&server, &hub).await;
    let mut freed = false;
    for attempt in 0..50_u32 {
        let handle = 2 + attempt * 2;
        let attach = attach_receiver(&mut third, handle, &hub_name, Some(1)).await;
        assert!(attach.source.is_some());
        // A refusal is a detach right after the attach; an accepted link gets none.
        let refused = tokio::time::timeout(Duration::from_millis(200), next_detach(&mut third)).await;
        if refused.is_err() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        freed,
        "the partition was released when the holder's connection ended"
    );
    server.shutdown().await;
}
