//! The resumable decoder: bytes in, one [`Packet`] out, every spec rule checked on the way.

use bytes::{Buf, Bytes, BytesMut};

use super::error::DecodeError;
use super::packet::{
    ConnAck, Connect, ConnectReturnCode, MAX_REMAINING_LENGTH, PROTOCOL_LEVEL, PROTOCOL_NAME, Packet,
    PacketId, PacketType, Publish, QoS, SubAck, SubAckReturnCode, Subscribe, Unsubscribe, Will,
};
use super::topic::{validate_topic_filter, validate_topic_name};

/// The default limit on the size of one packet: a 256 KiB IoT Hub message (wire reference §2.4) with a
/// topic of the maximum length and its headers fits, with room to spare.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 384 * 1024;

/// Decodes MQTT 3.1.1 control packets from a byte buffer, resuming across partial reads.
///
/// The decoder is cheap to create and keeps no state between calls besides its limit: a partial packet
/// stays in the caller's buffer until the rest arrives.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_packet_size: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PACKET_SIZE)
    }
}

impl Decoder {
    /// Returns a decoder that rejects packets larger than `max_packet_size` bytes, fixed header included.
    pub const fn new(max_packet_size: usize) -> Self {
        Self { max_packet_size }
    }

    /// Returns the largest packet, fixed header included, this decoder accepts.
    pub const fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Returns the next complete packet, or `None` if `buf` holds only part of one.
    ///
    /// On `Ok(Some(_))` exactly one packet's bytes are consumed from the front of `buf`. On `Ok(None)`
    /// nothing is consumed and, once the fixed header is known, `buf` has reserved room for the rest of the
    /// packet. Binary fields (PUBLISH payload, will payload, password) are slices of `buf`'s storage, not
    /// copies.
    ///
    /// # Errors
    ///
    /// Returns a [`DecodeError`] for bytes that break MQTT 3.1.1. The fixed header is checked (type,
    /// flags, remaining length, size limit) as soon as its bytes are present, before the body is buffered.
    /// After an error the connection must be closed: how much of `buf` was consumed is unspecified.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet_type = check_first_byte(first)?;
        let Some((remaining_length, length_len)) = read_remaining_length(&buf[1..])? else {
            return Ok(None);
        };
        let header_len = 1 + length_len;
        let size = header_len + remaining_length;
        if size > self.max_packet_size {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if let Some(expected) = packet_type.fixed_remaining_length() {
            check_fixed_length(packet_type, remaining_length, expected)?;
        }
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        let mut packet = buf.split_to(size).freeze();
        packet.advance(header_len);
        decode_body(packet_type, first & 0x0F, Reader { bytes: packet }).map(Some)
    }
}

/// Checks the first byte of the fixed header: packet type (§2.2.1) and flags (§2.2.2).
fn check_first_byte(first: u8) -> Result<PacketType, DecodeError> {
    let packet_type = PacketType::from_u8(first >> 4).ok_or(DecodeError::ReservedPacketType(first >> 4))?;
    let flags = first & 0x0F;
    match packet_type.required_flags() {
        // MQTT 3.1.1 §2.2.2: "If invalid flags are received, the receiver MUST close the Network Connection".
        Some(required) if flags != required => Err(DecodeError::InvalidFlags { packet_type, flags }),
        Some(_) => Ok(packet_type),
        None => {
            let (dup, qos) = publish_flags(flags)?;
            // MQTT 3.1.1 §3.3.1.1: "The DUP flag MUST be set to 0 for all QoS 0 messages".
            if dup && qos == QoS::AtMostOnce {
                return Err(DecodeError::DupWithQoS0);
            }
            Ok(packet_type)
        }
    }
}

/// Splits PUBLISH flags into DUP and QoS (§3.3.1.1, §3.3.1.2).
fn publish_flags(flags: u8) -> Result<(bool, QoS), DecodeError> {
    let qos_bits = (flags >> 1) & 0b11;
    // MQTT 3.1.1 §3.3.1.2: "A PUBLISH Packet MUST NOT have both QoS bits set to 1".
    let qos = QoS::from_u8(qos_bits).ok_or(DecodeError::InvalidQoS(qos_bits))?;
    Ok((flags & 0b1000 != 0, qos))
}

/// Reads the remaining length (§2.2.3) from the bytes after the first one. Returns the value and the
/// number of bytes it used, or `None` if those bytes are not all there yet.
///
/// A non-minimal encoding (`0x80 0x00` for 0) is accepted: MQTT 3.1.1, unlike 5.0 (§1.5.5), does not
/// forbid it.
fn read_remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (index, &byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            debug_assert!(value <= MAX_REMAINING_LENGTH);
            return Ok(Some((value, index + 1)));
        }
    }
    // MQTT 3.1.1 §2.2.3: "The maximum number of bytes in the Remaining Length field is four".
    if bytes.len() >= 4 {
        Err(DecodeError::RemainingLengthTooLong)
    } else {
        Ok(None)
    }
}

/// Checks the remaining length of a packet type whose body has a fixed size, before it is buffered.
fn check_fixed_length(packet_type: PacketType, actual: usize, expected: usize) -> Result<(), DecodeError> {
    match actual.checked_sub(expected) {
        None => Err(DecodeError::BodyTooShort),
        Some(0) => Ok(()),
        Some(count) => Err(DecodeError::TrailingBytes { packet_type, count }),
    }
}

/// Decodes the variable header and payload of a packet whose fixed header has been checked.
fn decode_body(packet_type: PacketType, flags: u8, mut body: Reader) -> Result<Packet, DecodeError> {
    let packet = match packet_type {
        PacketType::Connect => Packet::Connect(decode_connect(&mut body)?),
        PacketType::ConnAck => Packet::ConnAck(decode_connack(&mut body)?),
        PacketType::Publish => return decode_publish(flags, body).map(Packet::Publish),
        PacketType::PubAck => Packet::PubAck(body.packet_id()?),
        PacketType::PubRec => Packet::PubRec(body.packet_id()?),
        PacketType::PubRel => Packet::PubRel(body.packet_id()?),
        PacketType::PubComp => Packet::PubComp(body.packet_id()?),
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(&mut body)?),
        PacketType::SubAck => Packet::SubAck(decode_suback(&mut body)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(decode_unsubscribe(&mut body)?),
        PacketType::UnsubAck => Packet::UnsubAck(body.packet_id()?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect,
    };
    body.finish(packet_type)?;
    Ok(packet)
}

/// CONNECT (§3.1).
fn decode_connect(body: &mut Reader) -> Result<Connect, DecodeError> {
    // MQTT 3.1.1 §3.1.2.1–§3.1.2.2: protocol name "MQTT", level 4. MQTT 3.1 clients send "MQIsdp" level 3;
    // they, and clients asking for another level, get CONNACK 1 rather than a silent close.
    let name = body.binary()?;
    let level = body.u8()?;
    match (&name[..], level) {
        (b"MQTT", PROTOCOL_LEVEL) => {}
        (b"MQTT" | b"MQIsdp", level) if level != PROTOCOL_LEVEL => {
            return Err(DecodeError::UnsupportedProtocolLevel(level));
        }
        _ => {
            return Err(DecodeError::InvalidProtocolName(
                String::from_utf8_lossy(&name).into_owned(),
            ));
        }
    }

    let flags = body.u8()?;
    // MQTT 3.1.1 §3.1.2.3: "The Server MUST validate that the reserved flag in the CONNECT Control Packet is
    // set to zero and disconnect the Client if it is not zero".
    if flags & 0b0000_0001 != 0 {
        return Err(DecodeError::ReservedConnectFlag);
    }
    let clean_session = flags & 0b0000_0010 != 0;
    let will_flag = flags & 0b0000_0100 != 0;
    let will_qos_bits = (flags >> 3) & 0b11;
    let will_retain = flags & 0b0010_0000 != 0;
    let password_flag = flags & 0b0100_0000 != 0;
    let username_flag = flags & 0b1000_0000 != 0;
    // MQTT 3.1.1 §3.1.2.6, §3.1.2.7: with the will flag at 0, will QoS and will retain MUST be 0.
    if !will_flag && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    // MQTT 3.1.1 §3.1.2.6: "[will QoS] MUST NOT be 3 (0x03)".
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidQoS(will_qos_bits))?;
    // MQTT 3.1.1 §3.1.2.9: "If the User Name Flag is set to 0, the Password Flag MUST be set to 0".
    if password_flag && !username_flag {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = body.u16()?;

    // MQTT 3.1.1 §3.1.3: client identifier, will topic, will message, user name, password, in that order.
    let client_id = body.string()?;
    let will = if will_flag {
        let topic = body.string()?;
        validate_topic_name(&topic).map_err(DecodeError::InvalidTopicName)?;
        let payload = body.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if username_flag { Some(body.string()?) } else { None };
    let password = if password_flag { Some(body.binary()?) } else { None };

    Ok(Connect {
        protocol_name: PROTOCOL_NAME.to_owned(),
        protocol_level: PROTOCOL_LEVEL,
        clean_session,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

/// CONNACK (§3.2).
fn decode_connack(body: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = body.u8()?;
    // MQTT 3.1.1 §3.2.2.1: "Bits 7-1 are reserved and MUST be set to 0".
    if flags & 0b1111_1110 != 0 {
        return Err(DecodeError::ReservedConnAckFlags(flags));
    }
    let session_present = flags & 1 != 0;
    let code = body.u8()?;
    let return_code = ConnectReturnCode::from_u8(code).ok_or(DecodeError::ReservedConnectReturnCode(code))?;
    // MQTT 3.1.1 §3.2.2.2: "If a server sends a CONNACK packet containing a non-zero return code it MUST set
    // Session Present to 0".
    if session_present && return_code != ConnectReturnCode::Accepted {
        return Err(DecodeError::SessionPresentOnRefusal);
    }
    Ok(ConnAck {
        session_present,
        return_code,
    })
}

/// PUBLISH (§3.3). The payload is whatever follows the variable header, possibly nothing.
fn decode_publish(flags: u8, mut body: Reader) -> Result<Publish, DecodeError> {
    let (dup, qos) = publish_flags(flags)?;
    let retain = flags & 1 != 0;
    let topic = body.string()?;
    // MQTT 3.1.1 §3.3.2.1: "The Topic Name in the PUBLISH Packet MUST NOT contain wildcard characters".
    validate_topic_name(&topic).map_err(DecodeError::InvalidTopicName)?;
    // MQTT 3.1.1 §3.3.2.2: the packet identifier is present only when QoS is 1 or 2.
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(body.packet_id()?)
    };
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        payload: body.into_rest(),
    })
}

/// SUBSCRIBE (§3.8).
fn decode_subscribe(body: &mut Reader) -> Result<Subscribe, DecodeError> {
    let packet_id = body.packet_id()?;
    let mut filters = Vec::new();
    while !body.is_empty() {
        let filter = body.string()?;
        validate_topic_filter(&filter).map_err(DecodeError::InvalidTopicFilter)?;
        let options = body.u8()?;
        // MQTT 3.1.1 §3.8.3.1: "The Server MUST treat a SUBSCRIBE packet as malformed and close the Network
        // Connection if any of Reserved bits in the payload are non-zero, or QoS is not 0,1 or 2".
        if options & 0b1111_1100 != 0 {
            return Err(DecodeError::ReservedRequestedQoSBits(options));
        }
        let qos = QoS::from_u8(options).ok_or(DecodeError::InvalidQoS(options))?;
        filters.push((filter, qos));
    }
    // MQTT 3.1.1 §3.8.3: "The payload of a SUBSCRIBE packet MUST contain at least one Topic Filter / QoS
    // pair. A SUBSCRIBE packet with no payload is a protocol violation".
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
    }
    Ok(Subscribe { packet_id, filters })
}

/// SUBACK (§3.9).
fn decode_suback(body: &mut Reader) -> Result<SubAck, DecodeError> {
    let packet_id = body.packet_id()?;
    let mut return_codes = Vec::with_capacity(body.len());
    while !body.is_empty() {
        let code = body.u8()?;
        // MQTT 3.1.1 §3.9.3: "Return Codes other than 0x00, 0x01, 0x02 and 0x80 are reserved and MUST NOT
        // be used".
        return_codes.push(SubAckReturnCode::from_u8(code).ok_or(DecodeError::InvalidSubAckReturnCode(code))?);
    }
    if return_codes.is_empty() {
        return Err(DecodeError::NoReturnCodes);
    }
    Ok(SubAck {
        packet_id,
        return_codes,
    })
}

/// UNSUBSCRIBE (§3.10).
fn decode_unsubscribe(body: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let packet_id = body.packet_id()?;
    let mut filters = Vec::new();
    while !body.is_empty() {
        let filter = body.string()?;
        validate_topic_filter(&filter).map_err(DecodeError::InvalidTopicFilter)?;
        filters.push(filter);
    }
    // MQTT 3.1.1 §3.10.3: "The Payload of an UNSUBSCRIBE packet MUST contain at least one Topic Filter".
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
    }
    Ok(Unsubscribe { packet_id, filters })
}

/// A cursor over one packet's body. Every read checks the bytes are there: running out is
/// [`DecodeError::BodyTooShort`], never a panic, and no allocation is sized before its bytes are present.
struct Reader {
    bytes: Bytes,
}

impl Reader {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.bytes.is_empty() {
            return Err(DecodeError::BodyTooShort);
        }
        Ok(self.bytes.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.bytes.len() < 2 {
            return Err(DecodeError::BodyTooShort);
        }
        Ok(self.bytes.get_u16())
    }

    fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        // MQTT 3.1.1 §2.3.1: packet identifiers are non-zero.
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// Reads a two-byte length and that many bytes (§1.5.3 strings, §3.1.3 binary fields), without copying.
    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if self.bytes.len() < len {
            return Err(DecodeError::BodyTooShort);
        }
        Ok(self.bytes.split_to(len))
    }

    /// Reads a UTF-8 encoded string (§1.5.3): well-formed and without U+0000.
    fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let text = std::str::from_utf8(&raw).map_err(DecodeError::InvalidUtf8)?;
        // MQTT 3.1.1 §1.5.3: "A UTF-8 encoded string MUST NOT include an encoding of the null character
        // U+0000".
        if text.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        Ok(text.to_owned())
    }

    fn into_rest(self) -> Bytes {
        self.bytes
    }

    /// Checks the body has been read to its end: the remaining length must match the fields exactly.
    fn finish(self, packet_type: PacketType) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { packet_type, count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
        Decoder::default().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn remaining_length_boundaries_decode() {
        // MQTT 3.1.1 §2.2.3 table 2.4: the smallest and largest value of each encoded length.
        let cases: [(&[u8], usize); 8] = [
            (&[0x00], 0),
            (&[0x7F], 127),
            (&[0x80, 0x01], 128),
            (&[0xFF, 0x7F], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F], 268_435_455),
        ];
        for (bytes, value) in cases {
            assert_eq!(
                read_remaining_length(bytes),
                Ok(Some((value, bytes.len()))),
                "{value}"
            );
        }
    }

    #[test]
    fn remaining_length_of_five_bytes_is_rejected_before_the_fifth_arrives() {
        assert_eq!(
            read_remaining_length(&[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::RemainingLengthTooLong)
        );
        assert_eq!(
            read_remaining_length(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::RemainingLengthTooLong)
        );
        assert_eq!(
            decode_all(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::RemainingLengthTooLong)
        );
    }

    #[test]
    fn partial_remaining_length_waits_for_more_bytes() {
        assert_eq!(read_remaining_length(&[]), Ok(None));
        assert_eq!(read_remaining_length(&[0x80]), Ok(None));
        assert_eq!(read_remaining_length(&[0xFF, 0xFF, 0xFF]), Ok(None));
    }

    #[test]
    fn non_minimal_remaining_length_is_accepted() {
        assert_eq!(read_remaining_length(&[0x80, 0x00]), Ok(Some((0, 2))));
        assert_eq!(decode_all(&[0xC0, 0x80, 0x00]), Ok(Some(Packet::PingReq)));
    }

    #[test]
    fn oversized_packet_is_rejected_from_its_fixed_header_alone() {
        // A PUBLISH declaring 2,097,152 bytes: only the 5-byte fixed header is present.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
        let result = Decoder::new(1024).decode(&mut buf);
        assert_eq!(
            result,
            Err(DecodeError::PacketTooLarge {
                size: 2_097_157,
                max: 1024
            })
        );
        assert!(buf.capacity() < 1024, "the body must not be reserved");
    }

    #[test]
    fn packet_of_exactly_the_limit_is_accepted() {
        // PUBLISH QoS 0, topic "a", 3-byte payload: 2 + 1 + 3 = 6 bytes of body, 8 in all.
        let bytes = [0x30, 0x06, 0x00, 0x01, b'a', 1, 2, 3];
        assert!(matches!(
            Decoder::new(8).decode(&mut BytesMut::from(&bytes[..])),
            Ok(Some(_))
        ));
        assert_eq!(
            Decoder::new(7).decode(&mut BytesMut::from(&bytes[..])),
            Err(DecodeError::PacketTooLarge { size: 8, max: 7 })
        );
    }

    #[test]
    fn incomplete_body_reserves_room_for_the_rest() {
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x08, 0x00][..]); // remaining length 1024
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 4, "nothing is consumed");
        assert!(buf.capacity() >= 3 + 1024);
    }

    #[test]
    fn fixed_size_packet_with_wrong_length_is_rejected_before_its_body() {
        // PINGREQ declaring 100 bytes, none of which have arrived.
        assert_eq!(
            decode_all(&[0xC0, 100]),
            Err(DecodeError::TrailingBytes {
                packet_type: PacketType::PingReq,
                count: 100
            })
        );
        // PUBACK declaring 1 byte.
        assert_eq!(decode_all(&[0x40, 1]), Err(DecodeError::BodyTooShort));
    }

    #[test]
    fn publish_payload_is_a_slice_of_the_read_buffer() {
        let mut buf = BytesMut::from(&[0x30, 0x06, 0x00, 0x01, b'a', 1, 2, 3][..]);
        let start = buf.as_ptr() as usize;
        let Ok(Some(Packet::Publish(publish))) = Decoder::default().decode(&mut buf) else {
            panic!("expected a PUBLISH");
        };
        assert_eq!(publish.payload.as_ptr() as usize, start + 5);
    }
}
