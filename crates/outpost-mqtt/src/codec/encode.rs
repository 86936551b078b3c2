//! The encoder: one [`Packet`] appended to a buffer, after the same checks the decoder makes.

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::packet::{
    ConnAck, Connect, ConnectReturnCode, MAX_FIELD_LEN, MAX_REMAINING_LENGTH, PROTOCOL_LEVEL, PROTOCOL_NAME,
    Packet, PacketId, PacketType, Publish, QoS, SubAck, Subscribe, Unsubscribe,
};
use super::topic::{validate_topic_filter, validate_topic_name};

/// Appends the wire form of `packet` to `buf`.
///
/// The whole packet is sized and checked first, then `buf` reserves its exact length once and the fields
/// are written in order: the PUBLISH payload is copied exactly once, into `buf`.
///
/// # Errors
///
/// Returns an [`EncodeError`] for a packet the decoder would reject (a field over 65535 bytes, a topic
/// with wildcards, a QoS 1 PUBLISH without packet identifier, …) or one whose remaining length exceeds
/// 268,435,455 bytes. `buf` is unchanged on error.
pub fn encode(packet: &Packet, buf: &mut BytesMut) -> Result<(), EncodeError> {
    validate(packet)?;
    let remaining_length = remaining_length(packet);
    if remaining_length > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge { remaining_length });
    }
    buf.reserve(1 + remaining_length_len(remaining_length) + remaining_length);
    buf.put_u8(first_byte(packet));
    put_remaining_length(buf, remaining_length);
    put_body(packet, buf);
    Ok(())
}

impl Packet {
    /// Returns the number of bytes [`encode`] appends for this packet, fixed header included.
    ///
    /// Computed from field lengths without validating them: meaningful only for a packet that encodes.
    pub fn encoded_len(&self) -> usize {
        let remaining_length = remaining_length(self);
        1 + remaining_length_len(remaining_length) + remaining_length
    }
}

/// Returns the first byte of the fixed header: packet type and flags (§2.2.1, §2.2.2).
fn first_byte(packet: &Packet) -> u8 {
    let packet_type = packet.packet_type();
    let flags = match packet {
        // MQTT 3.1.1 §3.3.1: DUP bit 3, QoS bits 2–1, RETAIN bit 0.
        Packet::Publish(publish) => {
            u8::from(publish.dup) << 3 | publish.qos.as_u8() << 1 | u8::from(publish.retain)
        }
        _ => packet_type.required_flags().unwrap_or(0),
    };
    (packet_type as u8) << 4 | flags
}

/// Returns the size of the remaining length field for `value` (§2.2.3): 1 to 4 bytes.
fn remaining_length_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` as a remaining length (§2.2.3): seven bits per byte, least significant first, the high
/// bit saying another byte follows.
fn put_remaining_length(buf: &mut BytesMut, mut value: usize) {
    debug_assert!(value <= MAX_REMAINING_LENGTH);
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// Returns the bytes a length-prefixed field takes on the wire (§1.5.3).
fn field_len(len: usize) -> usize {
    2 + len
}

/// Returns the remaining length of `packet`: variable header plus payload (§2.2.3).
fn remaining_length(packet: &Packet) -> usize {
    match packet {
        Packet::Connect(connect) => {
            field_len(connect.protocol_name.len())
                + 1 // protocol level
                + 1 // connect flags
                + 2 // keep alive
                + field_len(connect.client_id.len())
                + connect.will.as_ref().map_or(0, |will| field_len(will.topic.len()) + field_len(will.payload.len()))
                + connect.username.as_ref().map_or(0, |username| field_len(username.len()))
                + connect.password.as_ref().map_or(0, |password| field_len(password.len()))
        }
        Packet::ConnAck(_) => 2,
        Packet::Publish(publish) => {
            field_len(publish.topic.len()) + publish.packet_id.map_or(0, |_| 2) + publish.payload.len()
        }
        Packet::PubAck(_)
        | Packet::PubRec(_)
        | Packet::PubRel(_)
        | Packet::PubComp(_)
        | Packet::UnsubAck(_) => 2,
        Packet::Subscribe(subscribe) => {
            2 + subscribe
                .filters
                .iter()
                .map(|(filter, _)| field_len(filter.len()) + 1)
                .sum::<usize>()
        }
        Packet::SubAck(suback) => 2 + suback.return_codes.len(),
        Packet::Unsubscribe(unsubscribe) => {
            2 + unsubscribe
                .filters
                .iter()
                .map(|filter| field_len(filter.len()))
                .sum::<usize>()
        }
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
    }
}

/// Checks `packet` against the rules the decoder enforces, so that what encodes always decodes.
fn validate(packet: &Packet) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(connect) => validate_connect(connect),
        Packet::ConnAck(connack) => validate_connack(connack),
        Packet::Publish(publish) => validate_publish(publish),
        Packet::Subscribe(subscribe) => validate_subscribe(subscribe),
        Packet::SubAck(suback) => validate_suback(suback),
        Packet::Unsubscribe(unsubscribe) => validate_unsubscribe(unsubscribe),
        Packet::PubAck(_)
        | Packet::PubRec(_)
        | Packet::PubRel(_)
        | Packet::PubComp(_)
        | Packet::UnsubAck(_)
        | Packet::PingReq
        | Packet::PingResp
        | Packet::Disconnect => Ok(()),
    }
}

/// Checks a binary field fits its two-byte length prefix (§1.5.3).
fn check_binary(field: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > MAX_FIELD_LEN {
        return Err(EncodeError::FieldTooLong { field, len });
    }
    Ok(())
}

/// Checks a UTF-8 string field: fits its length prefix and has no U+0000 (§1.5.3).
fn check_string(field: &'static str, value: &str) -> Result<(), EncodeError> {
    check_binary(field, value.len())?;
    if value.contains('\0') {
        return Err(EncodeError::NullCharacter { field });
    }
    Ok(())
}

fn validate_connect(connect: &Connect) -> Result<(), EncodeError> {
    if connect.protocol_name != PROTOCOL_NAME || connect.protocol_level != PROTOCOL_LEVEL {
        return Err(EncodeError::UnsupportedProtocol {
            name: connect.protocol_name.clone(),
            level: connect.protocol_level,
        });
    }
    check_string("client identifier", &connect.client_id)?;
    if let Some(will) = &connect.will {
        validate_topic_name(&will.topic).map_err(EncodeError::InvalidTopicName)?;
        check_binary("will message", will.payload.len())?;
    }
    if let Some(username) = &connect.username {
        check_string("user name", username)?;
    }
    if let Some(password) = &connect.password {
        check_binary("password", password.len())?;
    }
    // MQTT 3.1.1 §3.1.2.9: a password needs a user name.
    if connect.password.is_some() && connect.username.is_none() {
        return Err(EncodeError::PasswordWithoutUsername);
    }
    Ok(())
}

fn validate_connack(connack: &ConnAck) -> Result<(), EncodeError> {
    // MQTT 3.1.1 §3.2.2.2: a refusing CONNACK MUST set Session Present to 0.
    if connack.session_present && connack.return_code != ConnectReturnCode::Accepted {
        return Err(EncodeError::SessionPresentOnRefusal);
    }
    Ok(())
}

fn validate_publish(publish: &Publish) -> Result<(), EncodeError> {
    validate_topic_name(&publish.topic).map_err(EncodeError::InvalidTopicName)?;
    match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, Some(_)) => return Err(EncodeError::UnexpectedPacketId),
        (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
            return Err(EncodeError::MissingPacketId(publish.qos.as_u8()));
        }
        _ => {}
    }
    // MQTT 3.1.1 §3.3.1.1: "The DUP flag MUST be set to 0 for all QoS 0 messages".
    if publish.dup && publish.qos == QoS::AtMostOnce {
        return Err(EncodeError::DupWithQoS0);
    }
    Ok(())
}

fn validate_subscribe(subscribe: &Subscribe) -> Result<(), EncodeError> {
    if subscribe.filters.is_empty() {
        return Err(EncodeError::NoTopicFilters(PacketType::Subscribe));
    }
    for (filter, _) in &subscribe.filters {
        validate_topic_filter(filter).map_err(EncodeError::InvalidTopicFilter)?;
    }
    Ok(())
}

fn validate_suback(suback: &SubAck) -> Result<(), EncodeError> {
    if suback.return_codes.is_empty() {
        return Err(EncodeError::NoReturnCodes);
    }
    Ok(())
}

fn validate_unsubscribe(unsubscribe: &Unsubscribe) -> Result<(), EncodeError> {
    if unsubscribe.filters.is_empty() {
        return Err(EncodeError::NoTopicFilters(PacketType::Unsubscribe));
    }
    for filter in &unsubscribe.filters {
        validate_topic_filter(filter).map_err(EncodeError::InvalidTopicFilter)?;
    }
    Ok(())
}

/// Writes a length-prefixed field; its length has been checked by [`validate`].
fn put_field(buf: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(bytes.len() <= MAX_FIELD_LEN);
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}

fn put_packet_id(buf: &mut BytesMut, packet_id: PacketId) {
    buf.put_u16(packet_id.get());
}

/// Writes the variable header and payload of a validated packet.
fn put_body(packet: &Packet, buf: &mut BytesMut) {
    match packet {
        Packet::Connect(connect) => put_connect(connect, buf),
        Packet::ConnAck(connack) => {
            buf.put_u8(u8::from(connack.session_present));
            buf.put_u8(connack.return_code.as_u8());
        }
        Packet::Publish(publish) => {
            put_field(buf, publish.topic.as_bytes());
            if let Some(packet_id) = publish.packet_id {
                put_packet_id(buf, packet_id);
            }
            buf.put_slice(&publish.payload);
        }
        Packet::PubAck(packet_id)
        | Packet::PubRec(packet_id)
        | Packet::PubRel(packet_id)
        | Packet::PubComp(packet_id)
        | Packet::UnsubAck(packet_id) => put_packet_id(buf, *packet_id),
        Packet::Subscribe(subscribe) => {
            put_packet_id(buf, subscribe.packet_id);
            for (filter, qos) in &subscribe.filters {
                put_field(buf, filter.as_bytes());
                buf.put_u8(qos.as_u8());
            }
        }
        Packet::SubAck(suback) => {
            put_packet_id(buf, suback.packet_id);
            for code in &suback.return_codes {
                buf.put_u8(code.as_u8());
            }
        }
        Packet::Unsubscribe(unsubscribe) => {
            put_packet_id(buf, unsubscribe.packet_id);
            for filter in &unsubscribe.filters {
                put_field(buf, filter.as_bytes());
            }
        }
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => {}
    }
}

/// CONNECT variable header (§3.1.2) and payload (§3.1.3).
fn put_connect(connect: &Connect, buf: &mut BytesMut) {
    put_field(buf, connect.protocol_name.as_bytes());
    buf.put_u8(connect.protocol_level);
    // MQTT 3.1.1 §3.1.2.3 figure 3.4: user name, password, will retain, will QoS (2 bits), will flag,
    // clean session, reserved (always 0).
    let mut flags = u8::from(connect.clean_session) << 1;
    if let Some(will) = &connect.will {
        flags |= 0b0000_0100 | will.qos.as_u8() << 3 | u8::from(will.retain) << 5;
    }
    flags |= u8::from(connect.password.is_some()) << 6 | u8::from(connect.username.is_some()) << 7;
    buf.put_u8(flags);
    buf.put_u16(connect.keep_alive);
    put_field(buf, connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        put_field(buf, will.topic.as_bytes());
        put_field(buf, &will.payload);
    }
    if let Some(username) = &connect.username {
        put_field(buf, username.as_bytes());
    }
    if let Some(password) = &connect.password {
        put_field(buf, password);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn remaining_length_boundaries_encode_to_the_spec_bytes() {
        // MQTT 3.1.1 §2.2.3 table 2.4.
        let cases: [(usize, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (value, bytes) in cases {
            let mut buf = BytesMut::new();
            put_remaining_length(&mut buf, value);
            assert_eq!(&buf[..], bytes, "{value}");
            assert_eq!(remaining_length_len(value), bytes.len(), "{value}");
        }
    }

    #[test]
    fn publish_over_the_remaining_length_limit_is_refused_and_buf_untouched() {
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".to_owned(),
            packet_id: None,
            payload: Bytes::from(vec![0u8; MAX_REMAINING_LENGTH - 2]),
        });
        let mut buf = BytesMut::from(&b"xy"[..]);
        assert_eq!(
            encode(&packet, &mut buf),
            Err(EncodeError::PacketTooLarge {
                remaining_length: MAX_REMAINING_LENGTH + 1
            })
        );
        assert_eq!(&buf[..], b"xy");
    }

    #[test]
    fn publish_encoding_reserves_once() {
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "devices/dev1/messages/events/".to_owned(),
            packet_id: PacketId::new(1),
            payload: Bytes::from(vec![7u8; 10_000]),
        });
        let mut buf = BytesMut::new();
        encode(&packet, &mut buf).expect("valid publish");
        assert_eq!(buf.len(), packet.encoded_len());
        assert_eq!(
            buf.capacity(),
            packet.encoded_len(),
            "exactly one reservation of the exact size"
        );
    }
}
