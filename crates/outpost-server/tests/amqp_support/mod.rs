//! A minimal AMQP 1.0 client built on Outpost's own codec, for the Event Hubs-compatible endpoint
//! tests: TLS, SASL ANONYMOUS, links, credit, transfers, CBS and `$management` requests.

#![allow(dead_code, reason = "each test file uses part of the client")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use outpost_amqp::message::{Body, Message, MessageId, Properties};
use outpost_amqp::{
    Attach, Begin, Flow, Frame, FrameBody, FrameDecoder, Open, Performative, ProtocolId, Role, SaslCode,
    SaslFrame, SaslInit, Source, Target, Transfer, Value, encode_amqp_frame, encode_sasl_frame,
};
use outpost_auth::{KeyEncoding, SymmetricKey, encode_resource, sign};
use outpost_server::Server;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::mqtt_support;

pub struct AmqpClient {
    stream: TlsStream<TcpStream>,
    buffer: BytesMut,
    decoder: FrameDecoder,
    next_delivery: u32,
    /// Frames of other links that arrived while waiting for an attach, returned first by `next`.
    pending: std::collections::VecDeque<Frame>,
}

impl AmqpClient {
    /// Connects over TLS, SASL ANONYMOUS, open and begin (channel 0).
    pub async fn connect(server: &Server) -> Self {
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

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn fill(&mut self) {
        let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buffer));
        let n = read.await.expect("the server answered in time").unwrap();
        assert!(n > 0, "the server closed the connection");
    }

    pub async fn expect_header(&mut self, protocol: ProtocolId) {
        while self.buffer.len() < 8 {
            self.fill().await;
        }
        let header = self.buffer.split_to(8);
        assert_eq!(&header[..], &protocol.header());
    }

    pub async fn next(&mut self) -> Frame {
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

    pub async fn next_performative(&mut self) -> Performative {
        loop {
            if let FrameBody::Amqp { performative, .. } = self.next().await.body {
                return performative;
            }
        }
    }

    pub async fn perform(&mut self, performative: Performative) {
        let mut out = BytesMut::new();
        encode_amqp_frame(&mut out, 0, &performative, &[]);
        self.write(&out).await;
    }

    /// Attaches a link and returns the hub's attach.
    pub async fn attach(&mut self, handle: u32, role: Role, source: Source, target: Target) -> Attach {
        self.attach_with(handle, role, source, target, None).await
    }

    /// Attaches a link with link properties and returns the hub's attach.
    pub async fn attach_with(
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

    pub async fn credit(&mut self, handle: u32, credit: u32) {
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

    pub async fn transfer(&mut self, handle: u32, message: &Message) {
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
    pub async fn message_on(&mut self, handle: u32) -> Message {
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
    pub async fn request(&mut self, request_handle: u32, reply_handle: u32, message: Message) -> Message {
        self.transfer(request_handle, &message).await;
        self.message_on(reply_handle).await
    }
}

pub fn text(value: Option<&Value>) -> &str {
    match value {
        Some(Value::String(text)) => text,
        other => panic!("expected a string, got {other:?}"),
    }
}

pub fn map_get<'a>(body: &'a Body, key: &str) -> &'a Value {
    let Body::Value(Value::Map(entries)) = body else {
        panic!("expected a map body, got {body:?}")
    };
    entries
        .iter()
        .find(|(k, _)| matches!(k, Value::String(k) if k == key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {entries:?}"))
}

pub fn put_token(id: MessageId, audience: &str, token: String) -> Message {
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

pub fn read_request(id: u64, kind: &str, hub: &str, partition: Option<u32>) -> Message {
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

pub fn status(reply: &Message) -> &Value {
    reply.application_property("status-code").unwrap()
}

/// An Event Hubs token: signed with the key's text, as the Event Hubs SDKs do (wire reference §1.1).
pub fn eventhub_token(audience: &str, key: &SymmetricKey, policy: &str) -> String {
    let expiry = outpost_model::Timestamp::now().unix_seconds().unwrap() as u64 + 3600;
    sign(
        &encode_resource(audience),
        key,
        KeyEncoding::RawString,
        expiry,
        Some(policy),
    )
}

pub fn selector(expression: &str) -> Source {
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

/// Puts a `service` token for the hub on a fresh connection (CBS links on handles 0 and 1).
pub async fn authorized_client(server: &Server, hub: &outpost_model::Hub) -> AmqpClient {
    client_for_entity(server, hub, hub.name.as_str()).await
}

/// Puts a `service` token scoped to one entity of the hub (`sb://localhost/<entity>`, as a
/// connection string with `EntityPath=<entity>` signs it) on a fresh connection (CBS links on
/// handles 0 and 1).
pub async fn client_for_entity(server: &Server, hub: &outpost_model::Hub, entity: &str) -> AmqpClient {
    let mut client = AmqpClient::connect(server).await;
    client
        .attach(0, Role::Sender, Source::new("$cbs"), Target::new("$cbs"))
        .await;
    client
        .attach(1, Role::Receiver, Source::new("$cbs"), Target::new("cbs-reply"))
        .await;
    client.credit(1, 10).await;
    let audience = format!("sb://localhost/{entity}");
    let token = eventhub_token(&audience, &hub.policy("service").unwrap().primary_key, "service");
    let reply = client
        .request(0, 1, put_token(MessageId::Ulong(1), &audience, token))
        .await;
    assert_eq!(status(&reply), &Value::Int(200));
    client
}

/// Attaches a partition receiver with an epoch (or none).
pub async fn attach_receiver(client: &mut AmqpClient, handle: u32, hub: &str, epoch: Option<i64>) -> Attach {
    let mut source = selector("amqp.annotation.x-opt-offset > '@latest'");
    source.address = Some(format!("{hub}/ConsumerGroups/$Default/Partitions/1"));
    let properties = epoch.map(|epoch| vec![("com.microsoft:epoch".into(), Value::Long(epoch))]);
    client
        .attach_with(handle, Role::Receiver, source, Target::new("r"), properties)
        .await
}

/// Returns the next detach the hub sends, skipping flows and transfers.
pub async fn next_detach(client: &mut AmqpClient) -> outpost_amqp::Detach {
    loop {
        match client.next_performative().await {
            Performative::Detach(detach) => return detach,
            Performative::Flow(_) | Performative::Transfer(_) => {}
            other => panic!("expected detach, got {other:?}"),
        }
    }
}
