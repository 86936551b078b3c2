//! Byte-exact vectors for every MQTT 3.1.1 packet kind, in both directions, written by hand from the spec,
//! plus what the Azure device SDKs really send (wire reference §2) and resumption across partial reads.

use bytes::{Bytes, BytesMut};
use outpost_mqtt::codec::{
    ConnAck, Connect, ConnectReturnCode, Decoder, Packet, PacketId, Publish, QoS, SubAck, SubAckReturnCode,
    Subscribe, Unsubscribe, Will, encode,
};

/// Python `azure-iot-device` 2.14.0 user name (wire reference §2.2).
const PYTHON_USERNAME: &str = "localhost/dev1/?api-version=2019-10-01&DeviceClientType=\
    azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%20%400%3Bx86_64%29";
/// The SAS token the Python SDK sends as password (wire reference §2.2).
const PYTHON_PASSWORD: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1\
    &sig=6pSBmE%2Bgufmmb3V7dqTffP6rICmSLk%2Bv%2BfvPjJN8LwQ%3D&se=1795692329";
/// A Python telemetry topic with `$` percent-encoded (wire reference §2.4).
const TELEMETRY_TOPIC: &str = "devices/dev1/messages/events/%24.mid=mid-1&%24.ct=application%2Fjson";

fn id(value: u16) -> PacketId {
    PacketId::new(value).expect("non-zero packet id")
}

/// Asserts `packet` encodes to exactly `wire` and `wire` decodes to exactly `packet`, consuming it all.
fn assert_wire(packet: &Packet, wire: &[u8]) {
    let mut encoded = BytesMut::new();
    encode(packet, &mut encoded).expect("packet encodes");
    assert_eq!(&encoded[..], wire, "encode({packet:?})");
    assert_eq!(packet.encoded_len(), wire.len(), "encoded_len({packet:?})");

    let mut buf = BytesMut::from(wire);
    let decoded = Decoder::default().decode(&mut buf).expect("wire decodes");
    assert_eq!(decoded.as_ref(), Some(packet), "decode({wire:02x?})");
    assert!(buf.is_empty(), "decode consumes the whole packet");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn python_connect() -> Packet {
    Packet::Connect(Connect {
        protocol_name: "MQTT".to_owned(),
        protocol_level: 4,
        clean_session: false,
        keep_alive: 60,
        client_id: "dev1".to_owned(),
        will: None,
        username: Some(PYTHON_USERNAME.to_owned()),
        password: Some(Bytes::from_static(PYTHON_PASSWORD.as_bytes())),
    })
}

fn python_connect_wire() -> Vec<u8> {
    cat(&[
        // Fixed header: CONNECT, remaining length 300 = 0xAC 0x02 (§2.2.3).
        &[0x10, 0xAC, 0x02],
        // Protocol name "MQTT", level 4 (§3.1.2.1, §3.1.2.2).
        &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04],
        // Flags: user name, password, clean session 0 (§3.1.2.3). Keep alive 60 s.
        &[0b1100_0000, 0x00, 0x3C],
        // Client id "dev1".
        &[0x00, 0x04, b'd', b'e', b'v', b'1'],
        // User name, 158 bytes.
        &[0x00, 0x9E],
        PYTHON_USERNAME.as_bytes(),
        // Password, 122 bytes.
        &[0x00, 0x7A],
        PYTHON_PASSWORD.as_bytes(),
    ])
}

fn python_telemetry() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TELEMETRY_TOPIC.to_owned(),
        packet_id: Some(id(1)),
        payload: Bytes::from_static(br#"{"temp":21.5}"#),
    })
}

fn python_telemetry_wire() -> Vec<u8> {
    cat(&[
        // PUBLISH, QoS 1 (flags 0b0010), remaining length 2 + 68 + 2 + 13 = 85.
        &[0x32, 0x55],
        &[0x00, 0x44],
        TELEMETRY_TOPIC.as_bytes(),
        // Packet id 1 (paho's first mid).
        &[0x00, 0x01],
        br#"{"temp":21.5}"#,
    ])
}

#[test]
fn python_sdk_connect_matches_the_wire() {
    assert_wire(&python_connect(), &python_connect_wire());
}

#[test]
fn python_sdk_telemetry_publish_matches_the_wire() {
    assert_wire(&python_telemetry(), &python_telemetry_wire());
}

#[test]
fn minimal_connect_matches_the_wire() {
    let packet = Packet::Connect(Connect {
        protocol_name: "MQTT".to_owned(),
        protocol_level: 4,
        clean_session: true,
        keep_alive: 10,
        client_id: "c".to_owned(),
        will: None,
        username: None,
        password: None,
    });
    assert_wire(
        &packet,
        &[
            0x10,
            13,
            0,
            4,
            b'M',
            b'Q',
            b'T',
            b'T',
            4,
            0b0000_0010,
            0,
            10,
            0,
            1,
            b'c',
        ],
    );
}

#[test]
fn connect_with_every_field_matches_the_wire() {
    let packet = Packet::Connect(Connect {
        protocol_name: "MQTT".to_owned(),
        protocol_level: 4,
        clean_session: true,
        keep_alive: 0x0102,
        client_id: "id".to_owned(),
        will: Some(Will {
            topic: "w/t".to_owned(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        username: Some("u".to_owned()),
        password: Some(Bytes::from_static(&[0xFF, 0x00])),
    });
    let wire = cat(&[
        &[0x10, 31],
        &[0, 4, b'M', b'Q', b'T', b'T', 4],
        // User name, password, will retain, will QoS 1, will flag, clean session.
        &[0b1110_1110, 0x01, 0x02],
        &[0, 2, b'i', b'd'],
        &[0, 3, b'w', b'/', b't'],
        &[0, 3, b'b', b'y', b'e'],
        &[0, 1, b'u'],
        &[0, 2, 0xFF, 0x00],
    ]);
    assert_wire(&packet, &wire);
}

#[test]
fn connect_with_empty_password_differs_from_no_password() {
    let packet = Packet::Connect(Connect {
        protocol_name: "MQTT".to_owned(),
        protocol_level: 4,
        clean_session: false,
        keep_alive: 180,
        client_id: String::new(),
        will: None,
        username: Some(String::new()),
        password: Some(Bytes::new()),
    });
    let wire = [
        0x10,
        16,
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        0b1100_0000,
        0,
        180,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    assert_wire(&packet, &wire);
}

#[test]
fn connack_matches_the_wire() {
    let accepted = ConnAck {
        session_present: false,
        return_code: ConnectReturnCode::Accepted,
    };
    assert_wire(&Packet::ConnAck(accepted), &[0x20, 2, 0, 0]);
    let resumed = ConnAck {
        session_present: true,
        return_code: ConnectReturnCode::Accepted,
    };
    assert_wire(&Packet::ConnAck(resumed), &[0x20, 2, 1, 0]);
    let codes = [
        (ConnectReturnCode::UnacceptableProtocolVersion, 1),
        (ConnectReturnCode::IdentifierRejected, 2),
        (ConnectReturnCode::ServerUnavailable, 3),
        (ConnectReturnCode::BadUserNameOrPassword, 4),
        (ConnectReturnCode::NotAuthorized, 5),
    ];
    for (return_code, byte) in codes {
        let refused = ConnAck {
            session_present: false,
            return_code,
        };
        assert_wire(&Packet::ConnAck(refused), &[0x20, 2, 0, byte]);
    }
}

#[test]
fn qos0_publish_has_no_packet_id() {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a/b".to_owned(),
        packet_id: None,
        payload: Bytes::from_static(b"hi"),
    });
    assert_wire(&packet, &[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']);
}

#[test]
fn qos2_publish_carries_dup_and_retain_flags() {
    let packet = Packet::Publish(Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: "t".to_owned(),
        packet_id: Some(id(0x1234)),
        payload: Bytes::new(),
    });
    assert_wire(&packet, &[0x3D, 5, 0, 1, b't', 0x12, 0x34]);
}

#[test]
fn node_twin_get_publish_matches_the_wire() {
    // Node sends the twin GET with QoS 0 and a one-space payload (wire reference §2.6).
    let topic = "$iothub/twin/GET/?$rid=1";
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.to_owned(),
        packet_id: None,
        payload: Bytes::from_static(b" "),
    });
    assert_wire(&packet, &cat(&[&[0x30, 27, 0, 24], topic.as_bytes(), b" "]));
}

#[test]
fn acknowledgments_match_the_wire() {
    assert_wire(&Packet::PubAck(id(1)), &[0x40, 2, 0, 1]);
    assert_wire(&Packet::PubRec(id(0x0102)), &[0x50, 2, 1, 2]);
    // MQTT 3.1.1 §3.6.1: PUBREL flags are 0b0010.
    assert_wire(&Packet::PubRel(id(0xFFFF)), &[0x62, 2, 0xFF, 0xFF]);
    assert_wire(&Packet::PubComp(id(7)), &[0x70, 2, 0, 7]);
    assert_wire(&Packet::UnsubAck(id(3)), &[0xB0, 2, 0, 3]);
}

#[test]
fn python_sdk_subscribe_matches_the_wire() {
    let packet = Packet::Subscribe(Subscribe {
        packet_id: id(2),
        filters: vec![
            ("devices/dev1/messages/devicebound/#".to_owned(), QoS::AtLeastOnce),
            ("$iothub/twin/res/#".to_owned(), QoS::AtMostOnce),
        ],
    });
    let wire = cat(&[
        // SUBSCRIBE flags 0b0010 (§3.8.1), remaining length 2 + (2 + 35 + 1) + (2 + 18 + 1) = 61.
        &[0x82, 61, 0, 2],
        &[0, 35],
        b"devices/dev1/messages/devicebound/#",
        &[1],
        &[0, 18],
        b"$iothub/twin/res/#",
        &[0],
    ]);
    assert_wire(&packet, &wire);
}

#[test]
fn suback_matches_the_wire() {
    let packet = Packet::SubAck(SubAck {
        packet_id: id(2),
        return_codes: vec![
            SubAckReturnCode::Success(QoS::AtLeastOnce),
            SubAckReturnCode::Failure,
            SubAckReturnCode::Success(QoS::AtMostOnce),
            SubAckReturnCode::Success(QoS::ExactlyOnce),
        ],
    });
    assert_wire(&packet, &[0x90, 6, 0, 2, 1, 0x80, 0, 2]);
}

#[test]
fn unsubscribe_matches_the_wire() {
    let packet = Packet::Unsubscribe(Unsubscribe {
        packet_id: id(3),
        filters: vec!["$iothub/methods/POST/#".to_owned(), "a/+".to_owned()],
    });
    let wire = cat(&[
        // UNSUBSCRIBE flags 0b0010 (§3.10.1), remaining length 2 + (2 + 22) + (2 + 3) = 31.
        &[0xA2, 31, 0, 3],
        &[0, 22],
        b"$iothub/methods/POST/#",
        &[0, 3],
        b"a/+",
    ]);
    assert_wire(&packet, &wire);
}

#[test]
fn empty_packets_match_the_wire() {
    assert_wire(&Packet::PingReq, &[0xC0, 0]);
    assert_wire(&Packet::PingResp, &[0xD0, 0]);
    assert_wire(&Packet::Disconnect, &[0xE0, 0]);
}

#[test]
fn remaining_length_boundaries_round_trip() {
    // Each boundary of §2.2.3 table 2.4 as the remaining length of a QoS 0 PUBLISH (topic "t", so the
    // payload is 3 bytes shorter), except 0, which is a PINGREQ.
    assert_wire(&Packet::PingReq, &[0xC0, 0x00]);
    let boundaries: [(usize, &[u8]); 7] = [
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];
    for (remaining_length, header) in boundaries {
        let payload = Bytes::from(vec![0; remaining_length - 3]);
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".to_owned(),
            packet_id: None,
            payload: payload.clone(),
        });
        let mut encoded = BytesMut::new();
        encode(&packet, &mut encoded).expect("packet encodes");
        assert_eq!(
            &encoded[1..1 + header.len()],
            header,
            "remaining length {remaining_length}"
        );
        assert_eq!(encoded.len(), 1 + header.len() + remaining_length);
        assert_eq!(packet.encoded_len(), encoded.len());
        let decoded = Decoder::new(usize::MAX)
            .decode(&mut encoded)
            .expect("packet decodes");
        assert_eq!(decoded, Some(packet), "remaining length {remaining_length}");
        assert!(encoded.is_empty());
    }
}

#[test]
fn byte_by_byte_input_yields_each_packet_when_its_last_byte_arrives() {
    let connect = python_connect_wire();
    let publish = python_telemetry_wire();
    let stream = cat(&[&connect, &publish, &[0xC0, 0x00]]);
    let packet_ends = [connect.len(), connect.len() + publish.len(), stream.len()];

    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for (index, &byte) in stream.iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        match decoder.decode(&mut buf).expect("valid stream") {
            Some(packet) => {
                assert!(
                    packet_ends.contains(&(index + 1)),
                    "packet yielded early, at byte {index}"
                );
                assert!(buf.is_empty());
                decoded.push(packet);
            }
            None => assert!(
                !packet_ends.contains(&(index + 1)),
                "packet missing at byte {index}"
            ),
        }
    }
    assert_eq!(decoded, [python_connect(), python_telemetry(), Packet::PingReq]);
}

#[test]
fn decode_takes_one_packet_and_leaves_the_next() {
    let mut buf = BytesMut::from(&cat(&[&python_telemetry_wire(), &[0x40, 2, 0]])[..]);
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode(&mut buf), Ok(Some(python_telemetry())));
    assert_eq!(&buf[..], &[0x40, 2, 0], "the partial PUBACK stays");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&[1]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PubAck(id(1)))));
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn empty_buffer_is_incomplete() {
    assert_eq!(Decoder::default().decode(&mut BytesMut::new()), Ok(None));
}

#[test]
fn encode_appends_to_what_the_buffer_holds() {
    let mut buf = BytesMut::from(&b"xy"[..]);
    encode(&Packet::PubAck(id(9)), &mut buf).expect("packet encodes");
    assert_eq!(&buf[..], &[b'x', b'y', 0x40, 2, 0, 9]);
}
