//! MQTT 3.1.1 control packets as plain data, named as in the spec (§2 and §3).
//!
//! The types carry no invariants beyond what Rust's types give (`String` is UTF-8, [`PacketId`] is not zero);
//! the rest of the spec's rules are checked by the decoder on the way in and by [`encode`](super::encode)
//! on the way out, so a packet that encodes always decodes back to itself.

use std::fmt;
use std::num::NonZeroU16;

use bytes::Bytes;

/// The protocol name of MQTT 3.1.1 (§3.1.2.1).
pub const PROTOCOL_NAME: &str = "MQTT";

/// The protocol level of MQTT 3.1.1 (§3.1.2.2).
pub const PROTOCOL_LEVEL: u8 = 4;

/// The largest remaining length the 4-byte variable length encoding can carry (§2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The largest UTF-8 string or binary field: its length prefix is two bytes (§1.5.3).
pub const MAX_FIELD_LEN: usize = 65_535;

/// The fourteen control packet types, with their value in the fixed header (§2.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Client request to connect to the server.
    Connect = 1,
    /// Connect acknowledgment.
    ConnAck = 2,
    /// Publish message.
    Publish = 3,
    /// Publish acknowledgment (QoS 1).
    PubAck = 4,
    /// Publish received (QoS 2, part 1).
    PubRec = 5,
    /// Publish release (QoS 2, part 2).
    PubRel = 6,
    /// Publish complete (QoS 2, part 3).
    PubComp = 7,
    /// Client subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgment.
    SubAck = 9,
    /// Client unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgment.
    UnsubAck = 11,
    /// Ping request.
    PingReq = 12,
    /// Ping response.
    PingResp = 13,
    /// Client is disconnecting.
    Disconnect = 14,
}

impl PacketType {
    /// Returns the packet type for the high nibble of a fixed header, or `None` for the reserved values 0
    /// and 15 (§2.2.1).
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            _ => return None,
        })
    }

    /// Returns the name the spec uses for this packet type, e.g. `"PUBREL"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
        }
    }

    /// Returns the flags the fixed header must carry, or `None` for PUBLISH, whose flags are
    /// DUP, QoS and RETAIN.
    pub(crate) const fn required_flags(self) -> Option<u8> {
        match self {
            Self::Publish => None,
            // MQTT 3.1.1 §2.2.2: "Bits 3,2,1 and 0 of the fixed header of the PUBREL, SUBSCRIBE and
            // UNSUBSCRIBE Control Packets are reserved and MUST be set to 0,0,1 and 0 respectively".
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// Returns the remaining length of the packet types whose size is fixed (§3.2–§3.14).
    pub(crate) const fn fixed_remaining_length(self) -> Option<usize> {
        match self {
            Self::ConnAck | Self::PubAck | Self::PubRec | Self::PubRel | Self::PubComp | Self::UnsubAck => {
                Some(2)
            }
            Self::PingReq | Self::PingResp | Self::Disconnect => Some(0),
            _ => None,
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A packet identifier: two bytes, never zero (§2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// Returns the packet identifier `id`, or `None` for 0, which the spec forbids (§2.3.1).
    pub const fn new(id: u16) -> Option<Self> {
        match NonZeroU16::new(id) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// Returns the identifier as a number.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl From<NonZeroU16> for PacketId {
    fn from(id: NonZeroU16) -> Self {
        Self(id)
    }
}

impl From<PacketId> for u16 {
    fn from(id: PacketId) -> Self {
        id.get()
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A quality of service level (§4.3). Ordered, so `min(requested, supported)` gives the granted level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// QoS 0: delivered at most once, no acknowledgment.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: delivered at least once, acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: delivered exactly once, by the PUBREC/PUBREL/PUBCOMP exchange.
    ExactlyOnce = 2,
}

impl QoS {
    /// Returns the level for its wire value, or `None` for 3 and above (§4.3).
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }

    /// Returns the wire value: 0, 1 or 2.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A CONNECT packet: the first packet a client sends (§3.1).
///
/// The Azure device SDKs send protocol level 4, `clean_session` false, keep-alive 60 s (Python) or 180 s
/// (Node), client id `<deviceId>` or `<deviceId>/<moduleId>`, the SAS token as password and no will
/// (wire reference §2.1–§2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Always [`PROTOCOL_NAME`] in a decoded packet: other names are rejected.
    pub protocol_name: String,
    /// Always [`PROTOCOL_LEVEL`] in a decoded packet: other levels are rejected with
    /// [`DecodeError::UnsupportedProtocolLevel`](super::DecodeError::UnsupportedProtocolLevel).
    pub protocol_level: u8,
    /// Whether the server must discard any previous session of this client (§3.1.2.4).
    pub clean_session: bool,
    /// Keep-alive interval in seconds; 0 turns the mechanism off (§3.1.2.10).
    pub keep_alive: u16,
    /// The client identifier, possibly empty (§3.1.3.1). Whether an empty one is acceptable is the
    /// server's decision (CONNACK 2 when `clean_session` is false), not the codec's.
    pub client_id: String,
    /// The will message, if the will flag is set (§3.1.2.5).
    pub will: Option<Will>,
    /// The user name, if the user name flag is set (§3.1.3.4).
    pub username: Option<String>,
    /// The password, if the password flag is set (§3.1.3.5): binary data, not a string.
    pub password: Option<Bytes>,
}

/// The will message of a CONNECT packet (§3.1.2.5–§3.1.2.7, §3.1.3.2–§3.1.3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// The topic name the will is published to; a topic name, so without wildcards.
    pub topic: String,
    /// The will message body.
    pub payload: Bytes,
    /// The QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
}

/// A CONNACK packet: the server's answer to CONNECT (§3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumes a session it had (§3.2.2.2). Must be false when refusing.
    pub session_present: bool,
    /// Whether the connection is accepted, and if not why (§3.2.2.3).
    pub return_code: ConnectReturnCode,
}

/// The return code of a CONNACK packet (§3.2.2.3, table 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectReturnCode {
    /// 0x00: connection accepted.
    Accepted = 0,
    /// 0x01: the server does not support the protocol level the client asked for.
    UnacceptableProtocolVersion = 1,
    /// 0x02: the client identifier is well-formed UTF-8 but not allowed by the server.
    IdentifierRejected = 2,
    /// 0x03: the network connection was made but the MQTT service is unavailable.
    ServerUnavailable = 3,
    /// 0x04: the user name or password is malformed.
    BadUserNameOrPassword = 4,
    /// 0x05: the client is not authorized to connect. Outpost's answer to a bad SAS token or an unknown or
    /// disabled device (wire reference §2.3).
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// Returns the return code for its wire value, or `None` for the reserved values 6–255.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// Returns the wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A PUBLISH packet (§3.3).
///
/// The payload is a slice of the buffer the packet was decoded from: decoding copies no payload byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Whether this is a re-delivery (§3.3.1.1). Never set with QoS 0.
    pub dup: bool,
    /// The QoS of this delivery (§3.3.1.2).
    pub qos: QoS,
    /// Whether the server keeps this message for future subscribers (§3.3.1.3).
    pub retain: bool,
    /// The topic name: non-empty, without wildcards (§3.3.2.1). Azure topics percent-encode `$` in their
    /// property bags (wire reference §2.4); the codec does not decode them.
    pub topic: String,
    /// Present exactly when `qos` is 1 or 2 (§3.3.2.2).
    pub packet_id: Option<PacketId>,
    /// The application message (§3.3.3), possibly empty.
    pub payload: Bytes,
}

/// A SUBSCRIBE packet (§3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Echoed by the SUBACK.
    pub packet_id: PacketId,
    /// At least one topic filter with its requested QoS (§3.8.3).
    pub filters: Vec<(String, QoS)>,
}

/// A SUBACK packet (§3.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// The identifier of the SUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// One return code per topic filter of the SUBSCRIBE, in order (§3.9.3).
    pub return_codes: Vec<SubAckReturnCode>,
}

/// One return code of a SUBACK (§3.9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubAckReturnCode {
    /// 0x00, 0x01 or 0x02: the subscription is granted with this maximum QoS.
    Success(QoS),
    /// 0x80: the subscription is refused.
    Failure,
}

impl SubAckReturnCode {
    /// Returns the return code for its wire value, or `None` for anything but 0x00–0x02 and 0x80.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x80 => Some(Self::Failure),
            _ => match QoS::from_u8(value) {
                Some(qos) => Some(Self::Success(qos)),
                None => None,
            },
        }
    }

    /// Returns the wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Success(qos) => qos.as_u8(),
            Self::Failure => 0x80,
        }
    }
}

/// An UNSUBSCRIBE packet (§3.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Echoed by the UNSUBACK.
    pub packet_id: PacketId,
    /// At least one topic filter (§3.10.3).
    pub filters: Vec<String>,
}

/// An MQTT 3.1.1 control packet (§2.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (§3.1).
    Connect(Connect),
    /// CONNACK (§3.2).
    ConnAck(ConnAck),
    /// PUBLISH (§3.3).
    Publish(Publish),
    /// PUBACK (§3.4).
    PubAck(PacketId),
    /// PUBREC (§3.5).
    PubRec(PacketId),
    /// PUBREL (§3.6).
    PubRel(PacketId),
    /// PUBCOMP (§3.7).
    PubComp(PacketId),
    /// SUBSCRIBE (§3.8).
    Subscribe(Subscribe),
    /// SUBACK (§3.9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (§3.10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (§3.11).
    UnsubAck(PacketId),
    /// PINGREQ (§3.12).
    PingReq,
    /// PINGRESP (§3.13).
    PingResp,
    /// DISCONNECT (§3.14).
    Disconnect,
}

impl Packet {
    /// Returns the type of this packet.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect => PacketType::Disconnect,
        }
    }
}

impl From<Connect> for Packet {
    fn from(connect: Connect) -> Self {
        Self::Connect(connect)
    }
}

impl From<ConnAck> for Packet {
    fn from(connack: ConnAck) -> Self {
        Self::ConnAck(connack)
    }
}

impl From<Publish> for Packet {
    fn from(publish: Publish) -> Self {
        Self::Publish(publish)
    }
}

impl From<Subscribe> for Packet {
    fn from(subscribe: Subscribe) -> Self {
        Self::Subscribe(subscribe)
    }
}

impl From<SubAck> for Packet {
    fn from(suback: SubAck) -> Self {
        Self::SubAck(suback)
    }
}

impl From<Unsubscribe> for Packet {
    fn from(unsubscribe: Unsubscribe) -> Self {
        Self::Unsubscribe(unsubscribe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_type_round_trips_through_its_nibble() {
        for value in 0..16u8 {
            match PacketType::from_u8(value) {
                Some(packet_type) => assert_eq!(packet_type as u8, value),
                None => assert!(value == 0 || value == 15, "type {value} should exist"),
            }
        }
    }

    #[test]
    fn packet_id_zero_is_refused() {
        assert_eq!(PacketId::new(0), None);
        assert_eq!(PacketId::new(7).map(PacketId::get), Some(7));
    }

    #[test]
    fn qos_three_does_not_exist() {
        assert_eq!(QoS::from_u8(3), None);
        assert_eq!(QoS::from_u8(2), Some(QoS::ExactlyOnce));
        assert!(QoS::AtMostOnce < QoS::AtLeastOnce && QoS::AtLeastOnce < QoS::ExactlyOnce);
    }

    #[test]
    fn suback_return_codes_are_the_three_qos_and_0x80() {
        let valid: Vec<u8> = (0..=255u8)
            .filter(|&b| SubAckReturnCode::from_u8(b).is_some())
            .collect();
        assert_eq!(valid, [0, 1, 2, 0x80]);
        for byte in valid {
            assert_eq!(
                SubAckReturnCode::from_u8(byte).map(SubAckReturnCode::as_u8),
                Some(byte)
            );
        }
    }

    #[test]
    fn connect_return_codes_are_zero_to_five() {
        let valid: Vec<u8> = (0..=255u8)
            .filter(|&b| ConnectReturnCode::from_u8(b).is_some())
            .collect();
        assert_eq!(valid, [0, 1, 2, 3, 4, 5]);
    }
}
