//! The codec's errors: [`DecodeError`] for bytes that break the spec, [`EncodeError`] for packets that
//! cannot be put on the wire.

use std::str::Utf8Error;

use super::packet::PacketType;
use super::topic::TopicError;

/// Says why bytes received are not an MQTT 3.1.1 packet. Every variant is a protocol violation after which
/// the server closes the connection (§4.8), except [`UnsupportedProtocolLevel`](Self::UnsupportedProtocolLevel),
/// which the server first answers with CONNACK return code 1 (§3.1.2.2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The fixed header names packet type 0 or 15, both reserved (§2.2.1).
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// The fixed header flags are not the ones the packet type requires (§2.2.2).
    #[error("invalid fixed header flags {flags:#06b} for {packet_type}")]
    InvalidFlags {
        /// The packet type the header names.
        packet_type: PacketType,
        /// The low nibble of the first byte.
        flags: u8,
    },
    /// The remaining length has a continuation bit in its fourth byte (§2.2.3).
    #[error("remaining length is longer than 4 bytes")]
    RemainingLengthTooLong,
    /// The packet, fixed header included, is larger than the decoder accepts. Raised as soon as the fixed
    /// header is known, before the body is buffered.
    #[error("packet of {size} bytes exceeds the {max}-byte limit")]
    PacketTooLarge {
        /// Declared size of the whole packet in bytes.
        size: usize,
        /// The decoder's limit.
        max: usize,
    },
    /// The packet's fields need more bytes than its remaining length declares.
    #[error("packet body is shorter than its fields")]
    BodyTooShort,
    /// The packet's remaining length declares bytes after its last field.
    #[error("{count} unexpected bytes at the end of {packet_type}")]
    TrailingBytes {
        /// The packet type.
        packet_type: PacketType,
        /// How many bytes were left over.
        count: usize,
    },
    /// A QoS field holds 3 (§3.3.1.2, §3.1.2.6, §3.8.3.1).
    #[error("invalid qos {0}")]
    InvalidQoS(u8),
    /// A QoS 0 PUBLISH has the DUP flag set (§3.3.1.1).
    #[error("dup flag set on a qos 0 publish")]
    DupWithQoS0,
    /// A packet identifier is zero (§2.3.1).
    #[error("packet identifier is zero")]
    ZeroPacketId,
    /// A string field is not well-formed UTF-8 (§1.5.3).
    #[error("string is not valid utf-8")]
    InvalidUtf8(#[source] Utf8Error),
    /// A string field contains U+0000 (§1.5.3).
    #[error("string contains the null character")]
    NullCharacter,
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp` (§3.1.2.1).
    #[error("invalid protocol name {0:?}")]
    InvalidProtocolName(String),
    /// The CONNECT asks for a protocol level other than 4, e.g. 3 for MQTT 3.1 (`MQIsdp`). The server answers
    /// CONNACK return code 1 and closes the connection (§3.1.2.2).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// The reserved bit 0 of the CONNECT flags is set (§3.1.2.3).
    #[error("reserved connect flag is set")]
    ReservedConnectFlag,
    /// The CONNECT will QoS or will retain flag is set without the will flag (§3.1.2.6, §3.1.2.7).
    #[error("will qos or will retain set without the will flag")]
    WillFlagsWithoutWill,
    /// The CONNECT password flag is set without the user name flag (§3.1.2.9).
    #[error("password flag set without the user name flag")]
    PasswordWithoutUsername,
    /// A PUBLISH or will topic name is invalid (§3.3.2.1, §4.7).
    #[error("invalid topic name")]
    InvalidTopicName(#[source] TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE topic filter is invalid (§4.7).
    #[error("invalid topic filter")]
    InvalidTopicFilter(#[source] TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE carries no topic filter (§3.8.3, §3.10.3).
    #[error("{0} without topic filters")]
    NoTopicFilters(PacketType),
    /// The reserved upper 6 bits of a SUBSCRIBE requested QoS byte are set (§3.8.3.1).
    #[error("reserved bits set in requested qos byte {0:#04x}")]
    ReservedRequestedQoSBits(u8),
    /// The reserved bits 7–1 of the CONNACK acknowledge flags are set (§3.2.2.1).
    #[error("reserved connack flags set in {0:#04x}")]
    ReservedConnAckFlags(u8),
    /// A CONNACK return code is one of the reserved values 6–255 (§3.2.2.3).
    #[error("reserved connect return code {0}")]
    ReservedConnectReturnCode(u8),
    /// A CONNACK refuses the connection but sets session present (§3.2.2.2).
    #[error("connack refuses the connection but sets session present")]
    SessionPresentOnRefusal,
    /// A SUBACK carries no return code (§3.9.3).
    #[error("suback without return codes")]
    NoReturnCodes,
    /// A SUBACK return code is not 0x00, 0x01, 0x02 or 0x80 (§3.9.3).
    #[error("invalid suback return code {0:#04x}")]
    InvalidSubAckReturnCode(u8),
}

/// Says why a packet cannot be encoded. The encoder refuses exactly what the decoder would reject, so
/// `buf` is left untouched on error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet's remaining length exceeds 268,435,455 bytes (§2.2.3).
    #[error("remaining length of {remaining_length} bytes exceeds the 268435455-byte limit")]
    PacketTooLarge {
        /// The remaining length the packet would need.
        remaining_length: usize,
    },
    /// A string or binary field does not fit its two-byte length prefix (§1.5.3).
    #[error("{field} of {len} bytes exceeds the 65535-byte limit")]
    FieldTooLong {
        /// Which field, e.g. `"client identifier"`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A string field contains U+0000 (§1.5.3).
    #[error("{field} contains the null character")]
    NullCharacter {
        /// Which field, e.g. `"user name"`.
        field: &'static str,
    },
    /// The CONNECT does not name protocol `MQTT` level 4, the only one this codec speaks.
    #[error("protocol {name:?} level {level} is not mqtt 3.1.1")]
    UnsupportedProtocol {
        /// The protocol name of the packet.
        name: String,
        /// The protocol level of the packet.
        level: u8,
    },
    /// A PUBLISH or will topic name is invalid (§3.3.2.1, §4.7).
    #[error("invalid topic name")]
    InvalidTopicName(#[source] TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE topic filter is invalid (§4.7).
    #[error("invalid topic filter")]
    InvalidTopicFilter(#[source] TopicError),
    /// A CONNECT has a password but no user name (§3.1.2.9).
    #[error("password without a user name")]
    PasswordWithoutUsername,
    /// A QoS 1 or 2 PUBLISH has no packet identifier (§2.3.1).
    #[error("qos {0} publish without a packet identifier")]
    MissingPacketId(u8),
    /// A QoS 0 PUBLISH has a packet identifier (§2.3.1).
    #[error("qos 0 publish with a packet identifier")]
    UnexpectedPacketId,
    /// A QoS 0 PUBLISH has the DUP flag set (§3.3.1.1).
    #[error("dup flag set on a qos 0 publish")]
    DupWithQoS0,
    /// A SUBSCRIBE or UNSUBSCRIBE has no topic filter (§3.8.3, §3.10.3).
    #[error("{0} without topic filters")]
    NoTopicFilters(PacketType),
    /// A SUBACK has no return code (§3.9.3).
    #[error("suback without return codes")]
    NoReturnCodes,
    /// A CONNACK refuses the connection but sets session present (§3.2.2.2).
    #[error("connack refuses the connection but sets session present")]
    SessionPresentOnRefusal,
}
