//! Captured-style byte vectors, built by hand from the spec's encodings and the clients' behaviour in
//! the wire reference (§3, §6, §7): what the Node, pyamqp and uamqp clients send must decode to the
//! expected performatives and messages, and what the hub answers must be the full lists §7.6 requires.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use bytes::{Bytes, BytesMut};
use outpost_amqp::{
    Attach, Begin, Body, Descriptor, Error, FrameBody, FrameDecoder, Message, MessageId, Open, Performative,
    Properties, ProtocolId, Role, SaslFrame, Source, Target, Value, condition, decode_protocol_header,
    encode_amqp_frame, encode_frame, fuzz_round_trip, lookup,
};

fn str8(s: &str) -> Vec<u8> {
    [&[0xa1, s.len() as u8][..], s.as_bytes()].concat()
}

fn sym8(s: &str) -> Vec<u8> {
    [&[0xa3, s.len() as u8][..], s.as_bytes()].concat()
}

fn list8(items: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = items.concat();
    if body.len() < 255 {
        return [&[0xc0, body.len() as u8 + 1, items.len() as u8][..], &body].concat();
    }
    // Too long for list8: list32, as a client would send it.
    let mut out = vec![0xd0];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn map8(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let body: Vec<u8> = pairs
        .iter()
        .flat_map(|(k, v)| [k.clone(), v.clone()].concat())
        .collect();
    [&[0xc1, body.len() as u8 + 1, (pairs.len() * 2) as u8][..], &body].concat()
}

fn sym_array(symbols: &[&str]) -> Vec<u8> {
    let body: Vec<u8> = symbols
        .iter()
        .flat_map(|s| [&[s.len() as u8][..], s.as_bytes()].concat())
        .collect();
    [
        &[0xe0, body.len() as u8 + 2, symbols.len() as u8, 0xa3][..],
        &body,
    ]
    .concat()
}

fn described(code: u8, value: Vec<u8>) -> Vec<u8> {
    [&[0x00, 0x53, code][..], &value].concat()
}

fn frame(frame_type: u8, channel: u16, body: &[u8]) -> Vec<u8> {
    let size = (8 + body.len()) as u32;
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(&[2, frame_type]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(body);
    out
}

const NULL: u8 = 0x40;

fn decode_one(bytes: &[u8]) -> FrameBody {
    fuzz_round_trip(bytes);
    let mut buf = BytesMut::from(bytes);
    let frame = FrameDecoder::default()
        .decode(&mut buf)
        .unwrap()
        .expect("a whole frame");
    assert!(buf.is_empty());
    frame.body
}

/// The Node device SDK (rhea) after TLS: a bare AMQP header, then a compact open whose trailing fields
/// are trimmed (wire reference §3).
#[test]
fn node_sdk_connection_start_decodes() {
    let open = described(
        0x10,
        list8(&[
            str8("3f1c4a0e-8d9b-4a57-9a41-5d7f0e2c6b11"),
            str8("localhost"),
            vec![0x70, 0x00, 0x01, 0x00, 0x00],
            vec![0x60, 0x00, 0x0a],
        ]),
    );
    let mut bytes = b"AMQP\x00\x01\x00\x00".to_vec();
    bytes.extend_from_slice(&frame(0, 0, &open));
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode_protocol_header(&mut buf), Ok(Some(ProtocolId::Amqp)));
    let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
    let FrameBody::Amqp {
        performative: Performative::Open(open),
        payload,
    } = frame.body
    else {
        panic!("not an open")
    };
    assert!(payload.is_empty());
    assert_eq!(open.container_id, "3f1c4a0e-8d9b-4a57-9a41-5d7f0e2c6b11");
    assert_eq!(open.hostname.as_deref(), Some("localhost"));
    assert_eq!(open.max_frame_size, Some(65536));
    assert_eq!(open.channel_max, Some(10));
    assert_eq!(open.idle_time_out, None);
    assert_eq!(open.properties, None);
}

/// pyamqp with SASL ANONYMOUS (wire reference §7.1): SASL header, then sasl-init as a full list.
#[test]
fn pyamqp_sasl_anonymous_decodes() {
    let mut buf = BytesMut::from(&b"AMQP\x03\x01\x00\x00"[..]);
    assert_eq!(decode_protocol_header(&mut buf), Ok(Some(ProtocolId::Sasl)));
    let init = described(
        0x41,
        list8(&[sym8("ANONYMOUS"), vec![0xa0, 0], str8("localhost")]),
    );
    let FrameBody::Sasl(SaslFrame::Init(init)) = decode_one(&frame(1, 0, &init)) else {
        panic!("not a sasl-init")
    };
    assert_eq!(init.mechanism, "ANONYMOUS");
    assert_eq!(init.initial_response, Some(Bytes::new()));
    assert_eq!(init.hostname.as_deref(), Some("localhost"));
}

/// An Event Hubs partition receiver (wire reference §7.4): source with a selector filter described by
/// `0x0000468C00000004`, and a `com.microsoft:epoch` long link property.
#[test]
fn event_hubs_receiver_attach_decodes() {
    let address = "amqps://localhost/hub/ConsumerGroups/$default/Partitions/0";
    let filter_value = [
        &[0x00, 0x80, 0x00, 0x00, 0x46, 0x8c, 0x00, 0x00, 0x00, 0x04][..],
        &str8("amqp.annotation.x-opt-offset > '-1'"),
    ]
    .concat();
    let mut source_fields = vec![str8(address)];
    source_fields.extend(std::iter::repeat_n(vec![NULL], 6));
    source_fields.push(map8(&[(sym8("apache.org:selector-filter:string"), filter_value)]));
    let attach = described(
        0x12,
        list8(&[
            str8("receiver-link-1"),
            vec![0x43],
            vec![0x41],
            vec![0x50, 2],
            vec![0x50, 0],
            described(0x28, list8(&source_fields)),
            described(0x29, list8(&[str8("receiver-link-1")])),
            vec![NULL],
            vec![NULL],
            vec![NULL],
            vec![NULL],
            vec![NULL],
            sym_array(&["com.microsoft:georeplication"]),
            map8(&[(sym8("com.microsoft:epoch"), vec![0x81, 0, 0, 0, 0, 0, 0, 0, 1])]),
        ]),
    );
    let FrameBody::Amqp {
        performative: Performative::Attach(attach),
        ..
    } = decode_one(&frame(0, 1, &attach))
    else {
        panic!("not an attach")
    };
    assert_eq!(attach.role, Role::Receiver);
    assert_eq!(attach.handle, 0);
    let source = attach.source.as_ref().unwrap();
    assert_eq!(source.address.as_deref(), Some(address));
    let filter = lookup(
        source.filter.as_ref().unwrap(),
        "apache.org:selector-filter:string",
    )
    .unwrap();
    let Value::Described(filter) = filter else {
        panic!("filter not described")
    };
    assert_eq!(filter.descriptor, Descriptor::Code(0x0000_468C_0000_0004));
    assert_eq!(filter.value, Value::from("amqp.annotation.x-opt-offset > '-1'"));
    assert_eq!(
        attach.desired_capabilities,
        Some(vec!["com.microsoft:georeplication".into()])
    );
    assert_eq!(
        lookup(attach.properties.as_ref().unwrap(), "com.microsoft:epoch"),
        Some(&Value::Long(1))
    );
}

/// Node device telemetry (wire reference §3): a transfer whose payload is properties (uuid
/// message-id, `to`), application properties and one data section.
#[test]
fn node_telemetry_transfer_decodes() {
    let transfer = described(
        0x14,
        list8(&[vec![0x43], vec![0x43], vec![0xa0, 1, 0], vec![0x43], vec![0x42]]),
    );
    let uuid = [0x12; 16];
    let properties = described(
        0x73,
        list8(&[
            [&[0x98][..], &uuid].concat(),
            vec![NULL],
            str8("/devices/dev1/messages/events"),
        ]),
    );
    let application = described(0x74, map8(&[(str8("temperature-alert"), str8("true"))]));
    let data = described(0x75, [&[0xa0, 13][..], b"{\"temp\":21.5}"].concat());
    let body = [transfer, properties, application, data].concat();
    let FrameBody::Amqp {
        performative: Performative::Transfer(transfer),
        payload,
    } = decode_one(&frame(0, 0, &body))
    else {
        panic!("not a transfer")
    };
    assert_eq!(transfer.delivery_id, Some(0));
    assert_eq!(transfer.settled, Some(false));
    assert!(!transfer.more);
    let message = Message::decode(payload).unwrap();
    let properties = message.properties.as_ref().unwrap();
    assert_eq!(properties.message_id, Some(MessageId::Uuid(uuid)));
    assert_eq!(properties.to.as_deref(), Some("/devices/dev1/messages/events"));
    assert_eq!(
        message.application_property("temperature-alert"),
        Some(&Value::from("true"))
    );
    assert_eq!(
        message.body,
        Body::Data(vec![Bytes::from_static(b"{\"temp\":21.5}")])
    );
}

/// uamqp's CBS put-token has a ulong message-id (wire reference §7.2); the reply's correlation-id must
/// be the same AMQP type, here `ulong0`.
#[test]
fn cbs_reply_echoes_a_ulong_message_id_as_ulong() {
    let request = [
        described(
            0x73,
            list8(&[vec![0x44], vec![NULL], str8("$cbs"), vec![NULL], str8("cbs")]),
        ),
        described(
            0x77,
            str8("SharedAccessSignature sr=localhost&sig=x&se=1&skn=iothubowner"),
        ),
    ]
    .concat();
    let request = Message::decode(request).unwrap();
    let id = request.properties.unwrap().message_id.unwrap();
    assert_eq!(id, MessageId::Ulong(0));
    let reply = Message {
        properties: Some(Properties {
            correlation_id: Some(id),
            ..Properties::default()
        }),
        application_properties: Some(vec![
            ("status-code".into(), Value::Int(200)),
            ("status-description".into(), Value::from("OK")),
        ]),
        ..Message::default()
    };
    let bytes = reply.to_bytes();
    // properties: descriptor, list8 header, then message-id .. reply-to as nulls, correlation-id ulong0.
    assert_eq!(
        &bytes[..12],
        [0x00, 0x53, 0x73, 0xc0, 14, 13, NULL, NULL, NULL, NULL, NULL, 0x44]
    );
}

/// The hub's answers carry every field with explicit values where pyamqp needs them (wire reference
/// §7.6.1, §7.6.2).
#[test]
fn hub_replies_are_full_lists_with_the_fields_pyamqp_needs() {
    let mut buf = BytesMut::new();
    let open = Open {
        max_frame_size: Some(1_048_576),
        channel_max: Some(255),
        ..Open::new("outpost")
    };
    encode_amqp_frame(&mut buf, 0, &open.into(), &[]);
    let mut expected = frame(
        0,
        0,
        &described(
            0x10,
            list8(&[
                str8("outpost"),
                vec![NULL],
                vec![0x70, 0x00, 0x10, 0x00, 0x00],
                vec![0x60, 0x00, 0xff],
                vec![NULL],
                vec![NULL],
                vec![NULL],
                vec![NULL],
                vec![NULL],
                vec![NULL],
            ]),
        ),
    );
    assert_eq!(&buf[..], &expected[..]);

    buf.clear();
    let begin = Begin {
        remote_channel: Some(0),
        next_outgoing_id: 1,
        incoming_window: 5000,
        outgoing_window: 5000,
        handle_max: Some(255),
        ..Begin::default()
    };
    encode_amqp_frame(&mut buf, 0, &begin.into(), &[]);
    expected = frame(
        0,
        0,
        &described(
            0x11,
            list8(&[
                vec![0x60, 0, 0],
                vec![0x52, 1],
                vec![0x70, 0, 0, 0x13, 0x88],
                vec![0x70, 0, 0, 0x13, 0x88],
                vec![0x52, 255],
                vec![NULL],
                vec![NULL],
                vec![NULL],
            ]),
        ),
    );
    assert_eq!(&buf[..], &expected[..]);

    // An attach reply as sender: both terminus, initial delivery count, every one of 14 fields.
    let attach = Attach {
        source: Some(Source::new("$cbs")),
        target: Some(Target::new("$cbs")),
        initial_delivery_count: Some(0),
        max_message_size: Some(1_048_576),
        ..Attach::new("$cbs-receiver", 0, Role::Sender)
    };
    let mut body = BytesMut::new();
    Performative::from(attach.clone()).encode(&mut body);
    assert_eq!(body[5], 14);
    let value = Value::decode(&mut body.freeze()).unwrap();
    assert_eq!(Performative::try_from_value(value), Ok(attach.into()));
}

/// A close with an error from the codec's own condition mapping.
#[test]
fn close_with_a_codec_error_condition_round_trips() {
    let error = outpost_amqp::AmqpCodecError::InvalidUtf8;
    let close = outpost_amqp::Close {
        error: Some(Error::new(error.condition(), "string is not valid utf-8")),
    };
    let frame = outpost_amqp::Frame {
        channel: 0,
        body: FrameBody::Amqp {
            performative: close.into(),
            payload: Bytes::new(),
        },
    };
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, &frame);
    let decoded = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
    assert_eq!(decoded, frame);
    let FrameBody::Amqp {
        performative: Performative::Close(close),
        ..
    } = decoded.body
    else {
        panic!("not a close")
    };
    assert_eq!(close.error.unwrap().condition, condition::DECODE_ERROR);
}
