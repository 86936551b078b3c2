//! Property tests of the codec: `decode(encode(p)) == p` for arbitrary valid packets, whatever the read
//! boundaries; arbitrary and mutated bytes never make the decoder panic, and whatever it yields survives
//! re-encoding (the iotedge `mqtt3-fuzz` invariant, [`fuzz_round_trip`]); topic matching laws (§4.7).
//!
//! Strategies are `arb_*` functions, as in iotedge's `mqtt3/src/proptest.rs`. 256 cases per property.

use bytes::{Bytes, BytesMut};
use outpost_mqtt::codec::{
    ConnAck, Connect, ConnectReturnCode, Decoder, Packet, PacketId, Publish, QoS, SubAck, SubAckReturnCode,
    Subscribe, Unsubscribe, Will, encode, fuzz_round_trip, topic_matches,
};
use proptest::prelude::*;
use proptest::sample::Index;

fn arb_qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn arb_packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|id| PacketId::new(id).expect("range starts at 1"))
}

/// Any UTF-8 string without U+0000 (§1.5.3), up to 16 characters.
fn arb_string() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("no U+0000", |c| *c != '\0'), 0..16)
        .prop_map(String::from_iter)
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// One topic level: no separator, no wildcard, no U+0000; mostly ASCII, sometimes anything else.
fn arb_level() -> impl Strategy<Value = String> {
    let ascii = "[a-zA-Z0-9$%&=._-]{0,8}".boxed();
    let any = prop::collection::vec(
        any::<char>().prop_filter("plain level character", |c| !matches!(c, '\0' | '/' | '+' | '#')),
        0..6,
    )
    .prop_map(String::from_iter)
    .boxed();
    prop_oneof![3 => ascii, 1 => any]
}

fn arb_topic_name() -> impl Strategy<Value = String> {
    prop::collection::vec(arb_level(), 1..6)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topic names are not empty", |name| !name.is_empty())
}

fn arb_topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => arb_level(), 1 => Just("+".to_owned())];
    (prop::collection::vec(level, 0..6), any::<bool>())
        .prop_map(|(mut levels, multi)| {
            if multi || levels.is_empty() {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("topic filters are not empty", |filter| !filter.is_empty())
}

fn arb_will() -> impl Strategy<Value = Will> {
    (arb_topic_name(), arb_bytes(32), arb_qos(), any::<bool>()).prop_map(|(topic, payload, qos, retain)| {
        Will {
            topic,
            payload,
            qos,
            retain,
        }
    })
}

fn arb_connect() -> impl Strategy<Value = Connect> {
    let credentials = prop::option::of((arb_string(), prop::option::of(arb_bytes(32))));
    (
        arb_string(),
        any::<bool>(),
        any::<u16>(),
        prop::option::of(arb_will()),
        credentials,
    )
        .prop_map(|(client_id, clean_session, keep_alive, will, credentials)| {
            let (username, password) = match credentials {
                Some((username, password)) => (Some(username), password),
                None => (None, None),
            };
            Connect {
                protocol_name: "MQTT".to_owned(),
                protocol_level: 4,
                clean_session,
                keep_alive,
                client_id,
                will,
                username,
                password,
            }
        })
}

fn arb_connack() -> impl Strategy<Value = ConnAck> {
    (0..=5u8, any::<bool>()).prop_map(|(code, session_present)| {
        let return_code = ConnectReturnCode::from_u8(code).expect("codes 0 to 5 exist");
        // §3.2.2.2: session present only on acceptance.
        ConnAck {
            session_present: session_present && code == 0,
            return_code,
        }
    })
}

fn arb_publish() -> impl Strategy<Value = Publish> {
    (
        arb_qos(),
        any::<bool>(),
        any::<bool>(),
        arb_topic_name(),
        arb_packet_id(),
        arb_bytes(300),
    )
        .prop_map(|(qos, dup, retain, topic, packet_id, payload)| {
            let qos0 = qos == QoS::AtMostOnce;
            Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: if qos0 { None } else { Some(packet_id) },
                payload,
            }
        })
}

fn arb_subscribe() -> impl Strategy<Value = Subscribe> {
    (
        arb_packet_id(),
        prop::collection::vec((arb_topic_filter(), arb_qos()), 1..6),
    )
        .prop_map(|(packet_id, filters)| Subscribe { packet_id, filters })
}

fn arb_suback() -> impl Strategy<Value = SubAck> {
    let code = prop_oneof![
        arb_qos().prop_map(SubAckReturnCode::Success),
        Just(SubAckReturnCode::Failure)
    ];
    (arb_packet_id(), prop::collection::vec(code, 1..8)).prop_map(|(packet_id, return_codes)| SubAck {
        packet_id,
        return_codes,
    })
}

fn arb_unsubscribe() -> impl Strategy<Value = Unsubscribe> {
    (arb_packet_id(), prop::collection::vec(arb_topic_filter(), 1..6))
        .prop_map(|(packet_id, filters)| Unsubscribe { packet_id, filters })
}

/// Any valid MQTT 3.1.1 packet, every kind equally likely.
fn arb_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        arb_connect().prop_map(Packet::Connect),
        arb_connack().prop_map(Packet::ConnAck),
        arb_publish().prop_map(Packet::Publish),
        arb_packet_id().prop_map(Packet::PubAck),
        arb_packet_id().prop_map(Packet::PubRec),
        arb_packet_id().prop_map(Packet::PubRel),
        arb_packet_id().prop_map(Packet::PubComp),
        arb_subscribe().prop_map(Packet::Subscribe),
        arb_suback().prop_map(Packet::SubAck),
        arb_unsubscribe().prop_map(Packet::Unsubscribe),
        arb_packet_id().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

fn encoded(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(packet, &mut buf).expect("generated packets are valid");
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_of_encode_is_the_packet(packet in arb_packet()) {
        let mut buf = encoded(&packet);
        prop_assert_eq!(buf.len(), packet.encoded_len());
        let decoded = Decoder::default().decode(&mut buf);
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn packet_stream_decodes_in_order_whatever_the_read_sizes(
        packets in prop::collection::vec(arb_packet(), 1..8),
        read_size in 1usize..64,
    ) {
        let mut wire = BytesMut::new();
        for packet in &packets {
            encode(packet, &mut wire).expect("generated packets are valid");
        }
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in wire.chunks(read_size) {
            buf.extend_from_slice(chunk);
            while let Some(packet) = decoder.decode(&mut buf).expect("a valid stream decodes") {
                decoded.push(packet);
            }
        }
        prop_assert_eq!(decoded, packets);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn valid_packets_satisfy_the_fuzz_invariant(packet in arb_packet()) {
        fuzz_round_trip(&encoded(&packet));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_decodes_round_trips(
        data in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        fuzz_round_trip(&data);
    }

    #[test]
    fn mutated_packets_never_panic_and_what_decodes_round_trips(
        packet in arb_packet(),
        position in any::<Index>(),
        byte in any::<u8>(),
        cut in any::<Index>(),
    ) {
        let mut wire = encoded(&packet).to_vec();
        let at = position.index(wire.len());
        wire[at] = byte;
        fuzz_round_trip(&wire);
        fuzz_round_trip(&wire[..cut.index(wire.len())]);
    }

    #[test]
    fn a_topic_name_used_as_filter_matches_itself(name in arb_topic_name()) {
        prop_assert!(topic_matches(&name, &name));
    }

    #[test]
    fn multi_level_wildcard_matches_every_topic_not_starting_with_dollar(name in arb_topic_name()) {
        prop_assert_eq!(topic_matches("#", &name), !name.starts_with('$'));
    }

    #[test]
    fn replacing_levels_by_wildcards_keeps_the_match(name in arb_topic_name(), mask in any::<u64>(), cut in any::<Index>()) {
        let levels: Vec<&str> = name.split('/').collect();
        let filter: Vec<&str> = levels
            .iter()
            .enumerate()
            .map(|(index, level)| if mask >> (index % 64) & 1 == 1 { "+" } else { level })
            .collect();
        let dollar_guard = name.starts_with('$') && filter[0] == "+";
        prop_assert_eq!(topic_matches(&filter.join("/"), &name), !dollar_guard);
        // Cutting the filter after some levels and ending it with `#` still matches.
        let keep = cut.index(filter.len());
        let mut cut_filter = filter[..keep].to_vec();
        cut_filter.push("#");
        let dollar_guard = name.starts_with('$') && matches!(cut_filter[0], "+" | "#");
        prop_assert_eq!(topic_matches(&cut_filter.join("/"), &name), !dollar_guard);
    }
}
