//! The fuzz invariants, as ordinary functions: `cargo fuzz` calls them from
//! `fuzz/fuzz_targets/{decode,engine}.rs`, and `tests/codec_fuzz_seeds.rs` replays the checked-in
//! seeds in `fuzz/seeds/` through both on every test run.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::definitions::DeliveryState;
use crate::engine::{Engine, EngineConfig, Event, LinkReply};
use crate::error::AmqpCodecError;
use crate::frame::{
    Frame, FrameDecoder, ProtocolId, decode_protocol_header, encode_amqp_frame, encode_frame,
};
use crate::message::Message;
use crate::performatives::Performative;
use crate::performatives::{Begin, Open};
use crate::sasl::SaslFrame;
use crate::value::Value;

/// Feeds `data` to every decoder of the crate (protocol header, frames, values, performatives, SASL
/// bodies, messages) and checks that whatever decodes re-encodes and decodes back to itself.
///
/// Frames are also re-decoded one byte at a time: a frame must appear exactly when its last byte does.
///
/// # Panics
///
/// Panics when the invariant breaks: that is the bug the fuzzer looks for. Malformed input is not a bug;
/// it must make the decoders return an error, never panic.
pub fn fuzz_round_trip(data: &[u8]) {
    let _header = decode_protocol_header(&mut BytesMut::from(data));
    frames(data);
    let original = data.len();
    if let Ok(value) = Value::decode(&mut Bytes::copy_from_slice(data)) {
        value_round_trip(&value, original);
        if let Ok(performative) = Performative::try_from_value(value.clone()) {
            let mut buf = BytesMut::new();
            performative.encode(&mut buf);
            let len = buf.len();
            let Some(again) = redecode(Value::decode(&mut buf.freeze()), len, original, "performative")
            else {
                return;
            };
            assert_eq!(
                Performative::try_from_value(again).as_ref(),
                Ok(&performative),
                "decode(encode(p)) must be p"
            );
        }
        if let Ok(sasl) = SaslFrame::try_from_value(value) {
            let mut buf = BytesMut::new();
            sasl.encode(&mut buf);
            let len = buf.len();
            if let Some(again) = redecode(Value::decode(&mut buf.freeze()), len, original, "sasl body") {
                assert_eq!(SaslFrame::try_from_value(again).as_ref(), Ok(&sasl));
            }
        }
    }
    if let Ok(message) = Message::decode(Bytes::copy_from_slice(data)) {
        let encoded = message.to_bytes();
        let Some(again) = redecode(
            Message::decode(encoded.clone()),
            encoded.len(),
            original,
            "message",
        ) else {
            return;
        };
        assert_eq!(again, message, "decode(encode(m)) must be m");
        assert_eq!(again.to_bytes(), encoded, "encoding must be canonical");
    }
}

/// Re-decodes an encoding of something decoded from `original` bytes. The decoders' budget of
/// zero-width array elements is proportional to their input's length, and a canonical encoding
/// can be shorter than the input that was accepted (trailing bytes, wider forms than needed): then,
/// and only then, `TooManyElements` is the right answer and there is nothing to compare.
fn redecode<T>(result: Result<T, AmqpCodecError>, encoded: usize, original: usize, what: &str) -> Option<T> {
    match result {
        Ok(decoded) => Some(decoded),
        Err(AmqpCodecError::TooManyElements(_)) if encoded < original => None,
        Err(error) => panic!("an encoded {what} must decode: {error}"),
    }
}

/// Checks `decode(encode(v)) == v` and that the encoding is canonical.
fn value_round_trip(value: &Value, original: usize) {
    let mut buf = BytesMut::new();
    value.encode(&mut buf);
    let encoded = buf.clone().freeze();
    let mut input = buf.freeze();
    let Some(again) = redecode(Value::decode(&mut input), encoded.len(), original, "value") else {
        return;
    };
    assert!(input.is_empty(), "decode must consume exactly one value");
    assert_eq!(&again, value, "decode(encode(v)) must be v");
    let mut twice = BytesMut::new();
    again.encode(&mut twice);
    assert_eq!(twice.freeze(), encoded, "encoding must be canonical");
}

/// Decodes every frame in `data` and round-trips each.
fn frames(data: &[u8]) {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        frame_round_trip(&mut decoder, &frame);
    }
}

fn frame_round_trip(decoder: &mut FrameDecoder, frame: &Frame) {
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, frame);
    let encoded = buf.clone().freeze();
    // A re-encoded frame may exceed the limit (an extended header shrank, a compact list grew).
    if encoded.len() > decoder.max_frame_size() as usize {
        return;
    }
    let again = decoder.decode(&mut buf).expect("a re-encoded frame must decode");
    assert_eq!(again.as_ref(), Some(frame), "decode(encode(f)) must be f");
    assert!(buf.is_empty(), "decode must consume exactly one frame");

    let mut trickle = BytesMut::new();
    for (index, &byte) in encoded.iter().enumerate() {
        trickle.extend_from_slice(&[byte]);
        let result = decoder
            .decode(&mut trickle)
            .expect("a prefix of a valid frame is not an error");
        if index + 1 < encoded.len() {
            assert_eq!(result, None, "a strict prefix must not yield a frame");
            assert_eq!(trickle.len(), index + 1, "a strict prefix must not be consumed");
        } else {
            assert_eq!(result.as_ref(), Some(frame), "the last byte must yield the frame");
            assert!(trickle.is_empty());
        }
    }
}

/// Drives a server [`Engine`] with `data` as the peer's bytes and must never panic. Input that
/// starts with `AMQP` is the whole conversation (headers, SASL); anything else follows an AMQP
/// header, an open and a begin on channel 0, so that single frames (the seeds: attach, flow,
/// transfer, disposition…) reach links at once. The engine's events are answered as a door would
/// (SASL accepted, every link accepted, credit granted, a message sent, deliveries settled, the
/// clock moved on), and the input is fed in reads of 61 bytes, which split frames.
pub fn fuzz_engine(data: &[u8]) {
    let start = Instant::now();
    let mut engine = Engine::new(EngineConfig::default(), start);
    let mut input = BytesMut::new();
    if !data.starts_with(b"AMQP") {
        input.extend_from_slice(&ProtocolId::Amqp.header());
        let open = Performative::from(Open::new("fuzz"));
        encode_amqp_frame(&mut input, 0, &open, &[]);
        let begin = Performative::from(Begin {
            next_outgoing_id: 0,
            incoming_window: 1000,
            outgoing_window: 1000,
            handle_max: Some(7),
            ..Begin::default()
        });
        encode_amqp_frame(&mut input, 0, &begin, &[]);
    }
    let chunk = 61;
    let mut output = BytesMut::new();
    for (tick, piece) in data.chunks(chunk).enumerate() {
        input.extend_from_slice(piece);
        let now = start + Duration::from_millis(u64::try_from(tick).unwrap_or(u64::MAX) * 100);
        engine.handle_input(&mut input, now);
        engine.poll_timers(now);
        while let Some(event) = engine.poll_event() {
            match event {
                Event::SaslInit(_) => {
                    let _ = engine.sasl_outcome(true);
                }
                Event::LinkAttached(attached) => {
                    let _ = engine.accept_link(attached.link, LinkReply::default());
                    let _ = engine.grant_credit(attached.link, 10);
                    let _ = engine.send(attached.link, b"\x00\x53\x77\xa1\x01x", false);
                }
                Event::Delivery(delivery) if !delivery.settled => {
                    let _ = engine.settle(delivery.link, delivery.delivery_id, DeliveryState::Accepted);
                }
                _ => {}
            }
        }
        engine.take_output(&mut output);
        output.clear();
        if engine.is_closed() {
            return;
        }
    }
}
