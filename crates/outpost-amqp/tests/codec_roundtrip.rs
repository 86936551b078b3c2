//! Property tests of the codec: `decode(encode(x)) == x` for arbitrary values (bounded depth),
//! performatives, SASL bodies, messages and frames, whatever the read boundaries; arbitrary and mutated
//! bytes never make a decoder panic, and whatever decodes survives re-encoding ([`fuzz_round_trip`]).
//!
//! Strategies are the `arb_*` functions of `strategies`. 256 cases per property.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod strategies;

use bytes::{Bytes, BytesMut};
use outpost_amqp::{
    Frame, FrameBody, FrameDecoder, Message, Performative, SaslFrame, Value, encode_frame, fuzz_round_trip,
};
use proptest::prelude::*;
use strategies::{arb_bytes, arb_message, arb_performative, arb_sasl, arb_value};

fn encoded_value(value: &Value) -> Bytes {
    let mut buf = BytesMut::new();
    value.encode(&mut buf);
    buf.freeze()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn values_round_trip(value in arb_value()) {
        let mut encoded = encoded_value(&value);
        let decoded = Value::decode(&mut encoded).unwrap();
        prop_assert!(encoded.is_empty());
        prop_assert_eq!(decoded, value);
    }

    #[test]
    fn performatives_round_trip_as_full_lists(performative in arb_performative()) {
        let mut buf = BytesMut::new();
        performative.encode(&mut buf);
        let value = Value::decode(&mut buf.freeze()).unwrap();
        let Value::Described(described) = &value else { panic!("not described") };
        let Value::List(fields) = &described.value else { panic!("not a list") };
        let expected = match &performative {
            Performative::Open(_) => 10,
            Performative::Begin(_) => 8,
            Performative::Attach(_) => 14,
            Performative::Flow(_) | Performative::Transfer(_) => 11,
            Performative::Disposition(_) => 6,
            Performative::Detach(_) => 3,
            Performative::End(_) | Performative::Close(_) => 1,
        };
        prop_assert_eq!(fields.len(), expected, "every field is written");
        prop_assert_eq!(Performative::try_from_value(value).unwrap(), performative);
    }

    #[test]
    fn sasl_bodies_round_trip(sasl in arb_sasl()) {
        let mut buf = BytesMut::new();
        sasl.encode(&mut buf);
        let value = Value::decode(&mut buf.freeze()).unwrap();
        prop_assert_eq!(SaslFrame::try_from_value(value).unwrap(), sasl);
    }

    #[test]
    fn messages_round_trip(message in arb_message()) {
        let encoded = message.to_bytes();
        let decoded = Message::decode(encoded.clone()).unwrap();
        prop_assert_eq!(&decoded, &message);
        fuzz_round_trip(&encoded);
    }

    #[test]
    fn frames_round_trip_whatever_the_read_boundaries(
        frames in prop::collection::vec(
            (any::<u16>(), prop_oneof![
                Just(FrameBody::Heartbeat),
                (arb_performative(), arb_bytes(64)).prop_map(|(performative, payload)| FrameBody::Amqp { performative, payload }),
                arb_sasl().prop_map(FrameBody::Sasl),
            ]).prop_map(|(channel, body)| Frame { channel, body }),
            1..4,
        ),
        chunk in 1..64usize,
    ) {
        let mut encoded = BytesMut::new();
        for frame in &frames {
            encode_frame(&mut encoded, frame);
        }
        let mut decoder = FrameDecoder::new(u32::MAX);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in encoded.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_round_trip(&data);
    }

    #[test]
    fn mutated_frames_never_panic(
        performative in arb_performative(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = BytesMut::new();
        outpost_amqp::encode_amqp_frame(&mut buf, 0, &performative, b"payload");
        let mut bytes = buf.to_vec();
        for (index, byte) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= byte;
        }
        fuzz_round_trip(&bytes);
        fuzz_round_trip(&bytes[..cut.index(bytes.len())]);
        // The performative alone, mutated, through the value and message decoders.
        fuzz_round_trip(&bytes[8..]);
    }
}
