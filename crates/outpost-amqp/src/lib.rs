//! Outpost's AMQP 1.0 door (wire reference §3, §6, §7): the pure codec of OASIS AMQP 1.0 parts 1
//! (types), 2 (transport), 3 (messaging) and 5 (SASL). No tokio, no I/O: the connection engine owns the
//! socket and the buffers and calls in here.
//!
//! Layer: front door. The codec and the engine depend only on `bytes` and `thiserror`; `door`
//! adds tokio and the hub core.
//!
//! Encoding follows the wire reference §7.6: every composite (performatives, SASL bodies, source,
//! target, error, header, properties…) is written as a full list with explicit nulls, because pyamqp
//! cannot parse trimmed lists; decoding accepts short lists and ignores extra fields (AMQP 1.0 §1.4).
//!
//! Modules:
//! - `value`: the type system: [`Value`] (every primitive, list, map, array, described), its bounded
//!   decoder and smallest-encoding encoder.
//! - `definitions`: roles, settle modes, [`Error`], [`Source`], [`Target`], [`DeliveryState`], error
//!   condition symbols.
//! - `performatives`: [`Open`], [`Begin`], [`Attach`], [`Flow`], [`Transfer`], [`Disposition`],
//!   [`Detach`], [`End`], [`Close`] and [`Performative`].
//! - `sasl`: the SASL frame bodies, [`SaslFrame`].
//! - `message`: [`Message`] and its sections, [`MessageId`].
//! - `frame`: protocol headers, the resumable [`FrameDecoder`] and the frame writers.
//! - `error`: [`AmqpCodecError`] and its AMQP condition.
//! - `fuzz`: [`fuzz_round_trip`] and [`fuzz_engine`], the fuzz invariants shared by `cargo fuzz` and
//!   the seed-replay test.
//! - `engine`: the sans-IO connection engine, server side: [`Engine`](engine::Engine) turns bytes and
//!   timestamps into bytes to write and [`Event`](engine::Event)s (headers, SASL, open, sessions, links,
//!   credit, deliveries, idle timeout).
//! - `door`: the hub-facing async connection driver of the Event Hubs-compatible endpoint
//!   ([`serve_connection`](door::serve_connection)): SASL, CBS, `$management`, partition receivers
//!   over the event log. The only module with tokio and the hub core.

#![warn(missing_docs)]

mod composite;
pub mod definitions;
#[cfg(feature = "door")]
pub mod door;
pub mod engine;
mod error;
pub mod frame;
mod fuzz;
pub mod message;
pub mod performatives;
pub mod sasl;
pub mod value;

pub use composite::{CompositeType, Fields, lookup};
pub use definitions::{
    DeliveryState, Error, ReceiverSettleMode, Role, SenderSettleMode, Source, Target, condition,
};
pub use error::AmqpCodecError;
pub use frame::{
    DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LEN, Frame, FrameBody, FrameDecoder, FrameHeader, FrameType,
    MIN_MAX_FRAME_SIZE, ProtocolId, decode_protocol_header, encode_amqp_frame, encode_frame,
    encode_heartbeat, encode_sasl_frame, encode_transfer_frames,
};
pub use fuzz::{fuzz_engine, fuzz_round_trip};
pub use message::{Annotations, ApplicationProperties, Body, Header, Message, MessageId, Properties};
pub use performatives::{Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer};
pub use sasl::{SaslChallenge, SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse};
pub use value::{Array, ArrayType, Described, Descriptor, MAX_DEPTH, Symbol, Timestamp, Value};
