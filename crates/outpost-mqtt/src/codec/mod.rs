//! A pure MQTT 3.1.1 codec (OASIS standard, 29 October 2014): control packets, a resumable [`Decoder`], an
//! [`encode`] function, and topic name and filter rules. No tokio, no I/O: the connection task owns the
//! socket and the buffers and calls in here.
//!
//! Section numbers in comments (`// MQTT 3.1.1 §3.1.2.3`) are the spec's.
//!
//! # Why our own
//!
//! `mqtt-proto`, the obvious crate, decodes from an `AsyncRead`, copies every string and payload into a
//! fresh allocation and reports failures through one broad error type. Writing the codec ourselves gained:
//! - **zero-copy payloads**: a decoded PUBLISH payload, will message or password is a [`bytes::Bytes`]
//!   slice of the connection's read buffer; encoding copies a payload once, into a buffer reserved to the
//!   packet's exact size;
//! - **limits before allocation**: a packet larger than [`Decoder::max_packet_size`] is refused as soon as
//!   its fixed header (at most 5 bytes) is read, before its body is buffered, and fixed-size packets with a
//!   wrong remaining length are refused just as early; every length field is checked against the bytes
//!   present before anything is allocated for it, so a decoded packet never holds more than the packet's
//!   declared size of data;
//! - **exact errors**: one [`DecodeError`] variant per spec rule, e.g. [`DecodeError::UnsupportedProtocolLevel`]
//!   so the server can answer CONNACK 1 to an MQTT 3.1 client instead of dropping it;
//! - **symmetry**: [`encode`] refuses what [`Decoder::decode`] rejects, so whatever encodes decodes to
//!   itself (checked by property tests and by [`fuzz_round_trip`]);
//! - no async runtime, and only `bytes` and `thiserror` as dependencies.
//!
//! # Layout
//!
//! - `packet`: [`Packet`] and the spec-named types ([`Connect`], [`Publish`], [`PacketId`], [`QoS`], …).
//! - `decode`: [`Decoder`].
//! - `encode`: [`encode`] and [`Packet::encoded_len`].
//! - `topic`: [`validate_topic_name`], [`validate_topic_filter`], [`topic_matches`] (§4.7).
//! - `error`: [`DecodeError`], [`EncodeError`] (and [`TopicError`] from `topic`).
//! - `fuzz`: [`fuzz_round_trip`], the fuzz invariant shared by `cargo fuzz` and the seed-replay test.

#![warn(missing_docs)]

mod decode;
mod encode;
mod error;
mod fuzz;
mod packet;
mod topic;

pub use decode::{DEFAULT_MAX_PACKET_SIZE, Decoder};
pub use encode::encode;
pub use error::{DecodeError, EncodeError};
pub use fuzz::fuzz_round_trip;
pub use packet::{
    ConnAck, Connect, ConnectReturnCode, MAX_FIELD_LEN, MAX_REMAINING_LENGTH, PROTOCOL_LEVEL, PROTOCOL_NAME,
    Packet, PacketId, PacketType, Publish, QoS, SubAck, SubAckReturnCode, Subscribe, Unsubscribe, Will,
};
pub use topic::{TopicError, topic_matches, validate_topic_filter, validate_topic_name};
