//! The codec's one error type, [`AmqpCodecError`], and the AMQP error condition each variant maps to, so a
//! connection engine can close with the right `error` (AMQP 1.0 §2.7.9 close, §2.8.14 error).

use crate::definitions::condition;
use crate::value::{ArrayType, Descriptor};

/// Says why bytes received are not valid AMQP 1.0, or why a value cannot be built.
///
/// Every decode error is fatal for the connection: the engine closes it with
/// [`condition`](Self::condition) as the error condition (AMQP 1.0 §2.8.15, §2.8.16).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpCodecError {
    /// A value, its size or count field needs more bytes than are present (AMQP 1.0 §1.2).
    #[error("value truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the value needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A format code that AMQP 1.0 does not define (§1.6), or that is not allowed where it appears.
    #[error("invalid format code {0:#04x}")]
    InvalidFormatCode(u8),
    /// Values nest deeper than [`MAX_DEPTH`](crate::value::MAX_DEPTH) levels of lists, maps, arrays
    /// and described types.
    #[error("values nested deeper than {max} levels")]
    NestingTooDeep {
        /// The limit.
        max: usize,
    },
    /// A compound value declares more elements than its size can hold, or its elements do not fill
    /// exactly the declared size (§1.6.22–§1.6.25).
    #[error("compound value of {size} bytes cannot hold {count} elements")]
    InvalidCompoundSize {
        /// The declared size in bytes, count field included.
        size: usize,
        /// The declared element count.
        count: usize,
    },
    /// A map declares an odd number of elements (§1.6.23: keys and values alternate).
    #[error("map with an odd element count {0}")]
    OddMapCount(usize),
    /// An array holds more zero-width elements (e.g. `true` as `0x41`) than the decoder's element budget
    /// allows: refused so that a few bytes cannot make the decoder allocate gigabytes.
    #[error("array of {0} zero-width elements exceeds the element budget")]
    TooManyElements(usize),
    /// A string or symbol is not valid UTF-8 (§1.6.20, §1.6.21; symbols are accepted as UTF-8, a superset
    /// of the ASCII the spec asks for).
    #[error("string is not valid utf-8")]
    InvalidUtf8,
    /// A char is not a Unicode scalar value (§1.6.16).
    #[error("invalid char {0:#x}")]
    InvalidChar(u32),
    /// A descriptor is neither a ulong nor a symbol (§1.5: the only two forms the spec defines).
    #[error("descriptor is neither a ulong nor a symbol")]
    InvalidDescriptor,
    /// A described value was expected but another value was found, e.g. a frame body that is not a
    /// performative.
    #[error("expected {expected}, found a non-described value")]
    NotDescribed {
        /// What was expected.
        expected: &'static str,
    },
    /// A descriptor names no type that may appear here, e.g. an unknown performative or delivery state.
    #[error("unexpected descriptor {found} for {expected}")]
    UnexpectedDescriptor {
        /// What was expected, e.g. `"performative"`.
        expected: &'static str,
        /// The descriptor found.
        found: Descriptor,
    },
    /// A composite type's value is not a list (§1.4: composites are described lists), or a restricted
    /// map type's value is not a map.
    #[error("{composite} is not encoded as a {expected}")]
    InvalidComposite {
        /// The composite's spec name, e.g. `"open"`.
        composite: &'static str,
        /// The encoding it needs, `"list"` or `"map"`.
        expected: &'static str,
    },
    /// A mandatory field of a composite type is absent or null (§1.4).
    #[error("mandatory field {field} of {composite} is missing")]
    MissingField {
        /// The composite's spec name, e.g. `"attach"`.
        composite: &'static str,
        /// The field's spec name, e.g. `"handle"`.
        field: &'static str,
    },
    /// A field holds a value of the wrong type or out of its range, e.g. a `role` that is not a boolean.
    #[error("field {field} of {composite} has an invalid value")]
    InvalidField {
        /// The composite's spec name.
        composite: &'static str,
        /// The field's spec name.
        field: &'static str,
    },
    /// A message is not a valid sequence of sections (§3.2): a section appears twice, body kinds are
    /// mixed, or a value follows the sections.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// An array's elements are not all of its element type (§1.6.24).
    #[error("array element is not a {0:?}")]
    ArrayElementMismatch(ArrayType),
    /// The first bytes of a connection are not a protocol header this codec speaks (AMQP 1.0 §2.2, §5.1,
    /// §5.2). The engine answers with its own header and closes the socket.
    #[error("unsupported protocol header {0:02x?}")]
    UnsupportedProtocolHeader([u8; 8]),
    /// A frame header declares a size below 8 bytes or a data offset outside the frame (§2.3.1).
    #[error("invalid frame header: size {size}, data offset {doff}")]
    InvalidFrameHeader {
        /// The declared frame size.
        size: u32,
        /// The declared data offset, in 4-byte words.
        doff: u8,
    },
    /// A frame is larger than the negotiated max-frame-size (§2.7.1 open, §2.3.1).
    #[error("frame of {size} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The declared frame size.
        size: u32,
        /// The decoder's limit.
        max: u32,
    },
    /// A frame type other than AMQP (0x00) or SASL (0x01) (§2.3.2, §5.3.1).
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// A SASL frame has an empty body (§5.3.1: every SASL frame carries one frame body).
    #[error("sasl frame without a body")]
    EmptySaslFrame,
    /// A SASL frame body is followed by more bytes (§5.3.1: SASL frames carry no payload).
    #[error("{0} bytes after a sasl frame body")]
    TrailingBytes(usize),
    /// A performative cannot fit the peer's max-frame-size even without payload (§2.8.15
    /// `amqp:frame-size-too-small`).
    #[error("performative of {size} bytes does not fit max frame size {max}")]
    PerformativeTooLarge {
        /// The frame size the performative alone needs.
        size: usize,
        /// The max frame size.
        max: u32,
    },
}

impl AmqpCodecError {
    /// Returns the AMQP error condition symbol (§2.8.15, §2.8.16) to close the connection with.
    ///
    /// Type-system and performative errors are `amqp:decode-error`; wrongly typed or out-of-range fields
    /// are `amqp:invalid-field`; frame-level errors are `amqp:connection:framing-error`; a performative
    /// too large to send is `amqp:frame-size-too-small`. An unsupported protocol header happens before
    /// any frame: the engine answers with a protocol header, not a close, and the condition returned is
    /// only informative.
    pub const fn condition(&self) -> &'static str {
        match self {
            Self::Truncated { .. }
            | Self::InvalidFormatCode(_)
            | Self::NestingTooDeep { .. }
            | Self::InvalidCompoundSize { .. }
            | Self::OddMapCount(_)
            | Self::TooManyElements(_)
            | Self::InvalidUtf8
            | Self::InvalidChar(_)
            | Self::InvalidDescriptor
            | Self::NotDescribed { .. }
            | Self::UnexpectedDescriptor { .. }
            | Self::InvalidComposite { .. }
            | Self::MissingField { .. }
            | Self::InvalidMessage(_) => condition::DECODE_ERROR,
            Self::InvalidField { .. } | Self::ArrayElementMismatch(_) => condition::INVALID_FIELD,
            Self::UnsupportedProtocolHeader(_)
            | Self::InvalidFrameHeader { .. }
            | Self::FrameTooLarge { .. }
            | Self::UnknownFrameType(_)
            | Self::EmptySaslFrame
            | Self::TrailingBytes(_) => condition::FRAMING_ERROR,
            Self::PerformativeTooLarge { .. } => condition::FRAME_SIZE_TOO_SMALL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_spec_symbols() {
        assert_eq!(AmqpCodecError::InvalidUtf8.condition(), "amqp:decode-error");
        assert_eq!(
            AmqpCodecError::FrameTooLarge { size: 1, max: 0 }.condition(),
            "amqp:connection:framing-error"
        );
        assert_eq!(
            AmqpCodecError::InvalidField {
                composite: "open",
                field: "channel-max"
            }
            .condition(),
            "amqp:invalid-field"
        );
        assert_eq!(
            AmqpCodecError::PerformativeTooLarge { size: 600, max: 512 }.condition(),
            "amqp:frame-size-too-small"
        );
    }
}
