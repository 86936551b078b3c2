//! Every MQTT 3.1.1 rule the codec enforces, broken once: the decoder rejects the bytes with the matching
//! [`DecodeError`], and the encoder refuses to produce them with the matching [`EncodeError`].

use bytes::{Bytes, BytesMut};
use outpost_mqtt::codec::{
    ConnAck, Connect, ConnectReturnCode, DecodeError, Decoder, EncodeError, Packet, PacketId, PacketType,
    Publish, QoS, SubAck, Subscribe, TopicError, Unsubscribe, Will, encode,
};

fn decode(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    Decoder::default().decode(&mut BytesMut::from(bytes))
}

/// Builds a packet from a first byte and a body shorter than 128 bytes.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let len = u8::try_from(body.len())
        .ok()
        .filter(|len| *len < 128)
        .expect("short body");
    [&[first, len][..], body].concat()
}

/// Builds a CONNECT with the given protocol name, level, flags and payload; keep-alive 60.
fn connect(name: &[u8], level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let name_len = u8::try_from(name.len()).expect("short name");
    let body = [&[0, name_len][..], name, &[level, flags, 0, 60], payload].concat();
    packet(0x10, &body)
}

/// A CONNECT payload holding only client id "c".
const CLIENT_C: &[u8] = &[0, 1, b'c'];

fn id(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero packet id")
}

// ---- fixed header (§2.2) ----

#[test]
fn reserved_packet_types_are_rejected() {
    assert_eq!(decode(&[0x00, 0x00]), Err(DecodeError::ReservedPacketType(0)));
    assert_eq!(decode(&[0xF0, 0x00]), Err(DecodeError::ReservedPacketType(15)));
    assert_eq!(
        decode(&[0xF0]),
        Err(DecodeError::ReservedPacketType(15)),
        "known from the first byte"
    );
}

#[test]
fn wrong_reserved_flags_are_rejected() {
    let cases = [
        (0x60, PacketType::PubRel, 0b0000),
        (0x80, PacketType::Subscribe, 0b0000),
        (0xA0, PacketType::Unsubscribe, 0b0000),
        (0x63, PacketType::PubRel, 0b0011),
        (0x11, PacketType::Connect, 0b0001),
        (0x42, PacketType::PubAck, 0b0010),
        (0xC8, PacketType::PingReq, 0b1000),
        (0xE1, PacketType::Disconnect, 0b0001),
    ];
    for (first, packet_type, flags) in cases {
        assert_eq!(
            decode(&[first]),
            Err(DecodeError::InvalidFlags { packet_type, flags }),
            "{first:#04x}"
        );
    }
}

#[test]
fn publish_with_qos_3_is_rejected() {
    assert_eq!(decode(&[0x36]), Err(DecodeError::InvalidQoS(3)));
}

#[test]
fn qos0_publish_with_dup_is_rejected() {
    assert_eq!(
        decode(&packet(0x38, &[0, 1, b't'])),
        Err(DecodeError::DupWithQoS0)
    );
}

#[test]
fn remaining_length_of_five_bytes_is_rejected() {
    assert_eq!(
        decode(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        Err(DecodeError::RemainingLengthTooLong)
    );
}

#[test]
fn packet_larger_than_the_limit_is_rejected_before_its_body() {
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x7F][..]);
    let result = Decoder::new(64 * 1024).decode(&mut buf);
    assert_eq!(
        result,
        Err(DecodeError::PacketTooLarge {
            size: 2_097_155,
            max: 65_536
        })
    );
}

#[test]
fn fixed_size_packets_with_extra_bytes_are_rejected() {
    for (first, packet_type) in [
        (0x20, PacketType::ConnAck),
        (0x40, PacketType::PubAck),
        (0x62, PacketType::PubRel),
    ] {
        let result = decode(&packet(first, &[0, 1, 0]));
        assert_eq!(
            result,
            Err(DecodeError::TrailingBytes {
                packet_type,
                count: 1
            }),
            "{packet_type}"
        );
    }
    let result = decode(&[0xE0, 1, 0]);
    assert_eq!(
        result,
        Err(DecodeError::TrailingBytes {
            packet_type: PacketType::Disconnect,
            count: 1
        })
    );
}

// ---- CONNECT (§3.1) ----

#[test]
fn mqtt_3_1_connect_gets_unsupported_protocol_level() {
    // What an MQTT 3.1 client sends: "MQIsdp", level 3. The server answers CONNACK 1 (§3.1.2.2).
    assert_eq!(
        decode(&connect(b"MQIsdp", 3, 0x02, CLIENT_C)),
        Err(DecodeError::UnsupportedProtocolLevel(3))
    );
}

#[test]
fn other_protocol_levels_are_unsupported() {
    assert_eq!(
        decode(&connect(b"MQTT", 5, 0x02, CLIENT_C)),
        Err(DecodeError::UnsupportedProtocolLevel(5))
    );
    assert_eq!(
        decode(&connect(b"MQTT", 3, 0x02, CLIENT_C)),
        Err(DecodeError::UnsupportedProtocolLevel(3))
    );
}

#[test]
fn unknown_protocol_name_is_rejected() {
    assert_eq!(
        decode(&connect(b"MQTX", 4, 0x02, CLIENT_C)),
        Err(DecodeError::InvalidProtocolName("MQTX".to_owned()))
    );
    assert_eq!(
        decode(&connect(b"MQIsdp", 4, 0x02, CLIENT_C)),
        Err(DecodeError::InvalidProtocolName("MQIsdp".to_owned()))
    );
}

#[test]
fn connect_reserved_flag_is_rejected() {
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0x03, CLIENT_C)),
        Err(DecodeError::ReservedConnectFlag)
    );
}

#[test]
fn will_qos_or_retain_without_will_flag_is_rejected() {
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0b0000_1010, CLIENT_C)),
        Err(DecodeError::WillFlagsWithoutWill)
    );
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0b0001_0010, CLIENT_C)),
        Err(DecodeError::WillFlagsWithoutWill)
    );
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0b0010_0010, CLIENT_C)),
        Err(DecodeError::WillFlagsWithoutWill)
    );
}

#[test]
fn will_qos_3_is_rejected() {
    let payload = [CLIENT_C, &[0, 1, b'w', 0, 0]].concat();
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0b0001_1110, &payload)),
        Err(DecodeError::InvalidQoS(3))
    );
}

#[test]
fn will_topic_with_wildcard_is_rejected() {
    let payload = [CLIENT_C, &[0, 3, b'w', b'/', b'#', 0, 0]].concat();
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0b0000_0110, &payload)),
        Err(DecodeError::InvalidTopicName(TopicError::WildcardInTopicName))
    );
}

#[test]
fn password_without_username_is_rejected() {
    let payload = [CLIENT_C, &[0, 1, b'p']].concat();
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0b0100_0010, &payload)),
        Err(DecodeError::PasswordWithoutUsername)
    );
}

#[test]
fn client_id_with_invalid_utf8_is_rejected() {
    let result = decode(&connect(b"MQTT", 4, 0x02, &[0, 2, 0xC3, 0x28]));
    assert!(matches!(result, Err(DecodeError::InvalidUtf8(_))), "{result:?}");
    // An encoded surrogate (U+D800), which §1.5.3 forbids, is not UTF-8 either.
    let result = decode(&connect(b"MQTT", 4, 0x02, &[0, 3, 0xED, 0xA0, 0x80]));
    assert!(matches!(result, Err(DecodeError::InvalidUtf8(_))), "{result:?}");
}

#[test]
fn user_name_with_null_character_is_rejected() {
    let payload = [CLIENT_C, &[0, 3, b'u', 0, b'v']].concat();
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0b1000_0010, &payload)),
        Err(DecodeError::NullCharacter)
    );
}

#[test]
fn connect_field_longer_than_the_body_is_rejected() {
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0x02, &[0, 9, b'c'])),
        Err(DecodeError::BodyTooShort)
    );
    // User name flag set, but the body ends after the client id.
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0b1000_0010, CLIENT_C)),
        Err(DecodeError::BodyTooShort)
    );
}

#[test]
fn connect_with_trailing_bytes_is_rejected() {
    let payload = [CLIENT_C, &[0xAB]].concat();
    assert_eq!(
        decode(&connect(b"MQTT", 4, 0x02, &payload)),
        Err(DecodeError::TrailingBytes {
            packet_type: PacketType::Connect,
            count: 1
        })
    );
}

#[test]
fn empty_client_id_is_left_to_the_server() {
    // §3.1.3.1: the server answers CONNACK 2 to an empty id with clean session 0; that is not the codec's call.
    let result = decode(&connect(b"MQTT", 4, 0x00, &[0, 0]));
    assert!(
        matches!(result, Ok(Some(Packet::Connect(Connect { ref client_id, .. }))) if client_id.is_empty())
    );
}

// ---- CONNACK (§3.2) ----

#[test]
fn connack_reserved_flags_are_rejected() {
    assert_eq!(
        decode(&[0x20, 2, 0x02, 0]),
        Err(DecodeError::ReservedConnAckFlags(0x02))
    );
}

#[test]
fn connack_reserved_return_code_is_rejected() {
    assert_eq!(
        decode(&[0x20, 2, 0, 6]),
        Err(DecodeError::ReservedConnectReturnCode(6))
    );
}

#[test]
fn connack_refusal_with_session_present_is_rejected() {
    assert_eq!(
        decode(&[0x20, 2, 1, 5]),
        Err(DecodeError::SessionPresentOnRefusal)
    );
}

// ---- PUBLISH (§3.3) and acknowledgments ----

#[test]
fn publish_with_empty_topic_is_rejected() {
    assert_eq!(
        decode(&packet(0x30, &[0, 0, b'x'])),
        Err(DecodeError::InvalidTopicName(TopicError::Empty))
    );
}

#[test]
fn publish_topic_with_wildcards_is_rejected() {
    for topic in [&b"a/+"[..], b"#", b"devices/+/messages/events/"] {
        let body = [&[0, topic.len() as u8][..], topic].concat();
        assert_eq!(
            decode(&packet(0x30, &body)),
            Err(DecodeError::InvalidTopicName(TopicError::WildcardInTopicName)),
            "{topic:?}"
        );
    }
}

#[test]
fn publish_topic_with_null_character_is_rejected() {
    assert_eq!(
        decode(&packet(0x30, &[0, 3, b'a', 0, b'b'])),
        Err(DecodeError::NullCharacter)
    );
}

#[test]
fn publish_topic_with_invalid_utf8_is_rejected() {
    let result = decode(&packet(0x30, &[0, 2, b'a', 0xFF]));
    assert!(matches!(result, Err(DecodeError::InvalidUtf8(_))), "{result:?}");
}

#[test]
fn zero_packet_ids_are_rejected() {
    assert_eq!(
        decode(&packet(0x32, &[0, 1, b't', 0, 0])),
        Err(DecodeError::ZeroPacketId)
    );
    assert_eq!(decode(&[0x40, 2, 0, 0]), Err(DecodeError::ZeroPacketId));
    assert_eq!(decode(&[0x62, 2, 0, 0]), Err(DecodeError::ZeroPacketId));
    assert_eq!(decode(&[0xB0, 2, 0, 0]), Err(DecodeError::ZeroPacketId));
    assert_eq!(
        decode(&packet(0x82, &[0, 0, 0, 1, b'a', 0])),
        Err(DecodeError::ZeroPacketId)
    );
}

#[test]
fn qos1_publish_without_room_for_a_packet_id_is_rejected() {
    assert_eq!(
        decode(&packet(0x32, &[0, 1, b't', 0])),
        Err(DecodeError::BodyTooShort)
    );
}

#[test]
fn acknowledgment_shorter_than_a_packet_id_is_rejected() {
    assert_eq!(decode(&[0x40, 1, 0]), Err(DecodeError::BodyTooShort));
    assert_eq!(decode(&[0x20, 0]), Err(DecodeError::BodyTooShort));
}

// ---- SUBSCRIBE (§3.8), SUBACK (§3.9), UNSUBSCRIBE (§3.10) ----

#[test]
fn subscribe_without_filters_is_rejected() {
    assert_eq!(
        decode(&packet(0x82, &[0, 1])),
        Err(DecodeError::NoTopicFilters(PacketType::Subscribe))
    );
}

#[test]
fn subscribe_with_invalid_filters_is_rejected() {
    let cases: [(&[u8], TopicError); 5] = [
        (b"a/#/b", TopicError::MisplacedMultiLevelWildcard),
        (b"a#", TopicError::MisplacedMultiLevelWildcard),
        (b"a+", TopicError::MisplacedSingleLevelWildcard),
        (b"+a/b", TopicError::MisplacedSingleLevelWildcard),
        (b"", TopicError::Empty),
    ];
    for (filter, error) in cases {
        let body = [&[0, 1, 0, filter.len() as u8][..], filter, &[1]].concat();
        assert_eq!(
            decode(&packet(0x82, &body)),
            Err(DecodeError::InvalidTopicFilter(error)),
            "{filter:?}"
        );
    }
}

#[test]
fn subscribe_with_qos_3_is_rejected() {
    assert_eq!(
        decode(&packet(0x82, &[0, 1, 0, 1, b'a', 3])),
        Err(DecodeError::InvalidQoS(3))
    );
}

#[test]
fn subscribe_with_reserved_requested_qos_bits_is_rejected() {
    assert_eq!(
        decode(&packet(0x82, &[0, 1, 0, 1, b'a', 0x81])),
        Err(DecodeError::ReservedRequestedQoSBits(0x81))
    );
}

#[test]
fn subscribe_with_a_dangling_byte_is_rejected() {
    // A filter without its requested QoS byte, then one stray byte after a complete pair.
    assert_eq!(
        decode(&packet(0x82, &[0, 1, 0, 1, b'a'])),
        Err(DecodeError::BodyTooShort)
    );
    assert_eq!(
        decode(&packet(0x82, &[0, 1, 0, 1, b'a', 1, 0])),
        Err(DecodeError::BodyTooShort)
    );
}

#[test]
fn suback_without_return_codes_is_rejected() {
    assert_eq!(decode(&[0x90, 2, 0, 1]), Err(DecodeError::NoReturnCodes));
}

#[test]
fn suback_with_reserved_return_code_is_rejected() {
    assert_eq!(
        decode(&[0x90, 3, 0, 1, 3]),
        Err(DecodeError::InvalidSubAckReturnCode(3))
    );
    assert_eq!(
        decode(&[0x90, 3, 0, 1, 0x81]),
        Err(DecodeError::InvalidSubAckReturnCode(0x81))
    );
}

#[test]
fn unsubscribe_without_filters_is_rejected() {
    assert_eq!(
        decode(&packet(0xA2, &[0, 1])),
        Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe))
    );
}

#[test]
fn unsubscribe_with_invalid_filter_or_stray_byte_is_rejected() {
    assert_eq!(
        decode(&packet(0xA2, &[0, 1, 0, 2, b'#', b'/'])),
        Err(DecodeError::InvalidTopicFilter(
            TopicError::MisplacedMultiLevelWildcard
        ))
    );
    assert_eq!(
        decode(&packet(0xA2, &[0, 1, 0, 1, b'a', 0])),
        Err(DecodeError::BodyTooShort)
    );
}

// ---- error messages (§3.5 of the architecture guide) ----

#[test]
fn error_messages_are_lowercase_without_period() {
    let errors = [
        DecodeError::PacketTooLarge { size: 10, max: 5 }.to_string(),
        DecodeError::UnsupportedProtocolLevel(3).to_string(),
        DecodeError::InvalidTopicName(TopicError::Empty).to_string(),
        EncodeError::FieldTooLong {
            field: "client identifier",
            len: 70_000,
        }
        .to_string(),
        EncodeError::MissingPacketId(1).to_string(),
    ];
    for message in errors {
        assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
    assert_eq!(
        DecodeError::InvalidFlags {
            packet_type: PacketType::PubRel,
            flags: 0
        }
        .to_string(),
        "invalid fixed header flags 0b0000 for PUBREL"
    );
}

// ---- the encoder refuses what the decoder rejects ----

fn encode_err(packet: Packet) -> EncodeError {
    let mut buf = BytesMut::new();
    let error = encode(&packet, &mut buf).expect_err("packet must be refused");
    assert!(buf.is_empty(), "a refused packet writes nothing");
    error
}

fn valid_connect() -> Connect {
    Connect {
        protocol_name: "MQTT".to_owned(),
        protocol_level: 4,
        clean_session: false,
        keep_alive: 60,
        client_id: "dev1".to_owned(),
        will: None,
        username: None,
        password: None,
    }
}

fn publish(qos: QoS, packet_id: Option<PacketId>, topic: &str) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_owned(),
        packet_id,
        payload: Bytes::new(),
    }
}

#[test]
fn encoder_refuses_fields_longer_than_65535_bytes() {
    let long = "x".repeat(65_536);
    let connect = Connect {
        client_id: long.clone(),
        ..valid_connect()
    };
    assert_eq!(
        encode_err(connect.into()),
        EncodeError::FieldTooLong {
            field: "client identifier",
            len: 65_536
        }
    );
    let connect = Connect {
        username: Some("u".to_owned()),
        password: Some(Bytes::from(long.clone().into_bytes())),
        ..valid_connect()
    };
    assert_eq!(
        encode_err(connect.into()),
        EncodeError::FieldTooLong {
            field: "password",
            len: 65_536
        }
    );
    assert_eq!(
        encode_err(publish(QoS::AtMostOnce, None, &long).into()),
        EncodeError::InvalidTopicName(TopicError::TooLong { len: 65_536 })
    );
}

#[test]
fn encoder_refuses_null_characters() {
    let connect = Connect {
        username: Some("a\0".to_owned()),
        ..valid_connect()
    };
    assert_eq!(
        encode_err(connect.into()),
        EncodeError::NullCharacter { field: "user name" }
    );
}

#[test]
fn encoder_refuses_other_protocols() {
    let connect = Connect {
        protocol_name: "MQIsdp".to_owned(),
        protocol_level: 3,
        ..valid_connect()
    };
    assert_eq!(
        encode_err(connect.into()),
        EncodeError::UnsupportedProtocol {
            name: "MQIsdp".to_owned(),
            level: 3
        }
    );
}

#[test]
fn encoder_refuses_password_without_username() {
    let connect = Connect {
        password: Some(Bytes::from_static(b"p")),
        ..valid_connect()
    };
    assert_eq!(encode_err(connect.into()), EncodeError::PasswordWithoutUsername);
}

#[test]
fn encoder_refuses_will_topic_with_wildcard() {
    let will = Will {
        topic: "a/+".to_owned(),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: false,
    };
    let connect = Connect {
        will: Some(will),
        ..valid_connect()
    };
    assert_eq!(
        encode_err(connect.into()),
        EncodeError::InvalidTopicName(TopicError::WildcardInTopicName)
    );
}

#[test]
fn encoder_refuses_inconsistent_publish() {
    assert_eq!(
        encode_err(publish(QoS::AtLeastOnce, None, "t").into()),
        EncodeError::MissingPacketId(1)
    );
    assert_eq!(
        encode_err(publish(QoS::AtMostOnce, Some(id(1)), "t").into()),
        EncodeError::UnexpectedPacketId
    );
    let dup = Publish {
        dup: true,
        ..publish(QoS::AtMostOnce, None, "t")
    };
    assert_eq!(encode_err(dup.into()), EncodeError::DupWithQoS0);
    assert_eq!(
        encode_err(publish(QoS::AtMostOnce, None, "").into()),
        EncodeError::InvalidTopicName(TopicError::Empty)
    );
    assert_eq!(
        encode_err(publish(QoS::AtMostOnce, None, "a/#").into()),
        EncodeError::InvalidTopicName(TopicError::WildcardInTopicName)
    );
}

#[test]
fn encoder_refuses_empty_or_invalid_subscriptions() {
    let empty = Subscribe {
        packet_id: id(1),
        filters: Vec::new(),
    };
    assert_eq!(
        encode_err(empty.into()),
        EncodeError::NoTopicFilters(PacketType::Subscribe)
    );
    let invalid = Subscribe {
        packet_id: id(1),
        filters: vec![("a/#/b".to_owned(), QoS::AtMostOnce)],
    };
    assert_eq!(
        encode_err(invalid.into()),
        EncodeError::InvalidTopicFilter(TopicError::MisplacedMultiLevelWildcard)
    );
    let empty = Unsubscribe {
        packet_id: id(1),
        filters: Vec::new(),
    };
    assert_eq!(
        encode_err(empty.into()),
        EncodeError::NoTopicFilters(PacketType::Unsubscribe)
    );
    let invalid = Unsubscribe {
        packet_id: id(1),
        filters: vec!["a+".to_owned()],
    };
    assert_eq!(
        encode_err(invalid.into()),
        EncodeError::InvalidTopicFilter(TopicError::MisplacedSingleLevelWildcard)
    );
    let empty = SubAck {
        packet_id: id(1),
        return_codes: Vec::new(),
    };
    assert_eq!(encode_err(empty.into()), EncodeError::NoReturnCodes);
}

#[test]
fn encoder_refuses_connack_refusal_with_session_present() {
    let connack = ConnAck {
        session_present: true,
        return_code: ConnectReturnCode::NotAuthorized,
    };
    assert_eq!(encode_err(connack.into()), EncodeError::SessionPresentOnRefusal);
}
