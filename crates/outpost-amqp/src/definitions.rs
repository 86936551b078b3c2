//! The transport definitions shared by the performatives (AMQP 1.0 §2.8) and the terminus and delivery
//! state types of messaging (§3.4, §3.5): roles, settle modes, [`Error`], [`Source`], [`Target`],
//! [`DeliveryState`], and the error condition symbols.

use bytes::BytesMut;

use crate::composite::{self, CompositeType, FieldReader, Fields, write_list, write_symbols};
use crate::error::AmqpCodecError;
use crate::value::{Symbol, Value, encode};

/// Error condition symbols (AMQP 1.0 §2.8.15–§2.8.18), for [`Error::condition`].
pub mod condition {
    /// §2.8.15: an internal error occurred.
    pub const INTERNAL_ERROR: &str = "amqp:internal-error";
    /// §2.8.15: a peer attempted to work with a remote entity that does not exist.
    pub const NOT_FOUND: &str = "amqp:not-found";
    /// §2.8.15: a peer attempted to work with a remote entity to which it has no access.
    pub const UNAUTHORIZED_ACCESS: &str = "amqp:unauthorized-access";
    /// §2.8.15: data could not be decoded.
    pub const DECODE_ERROR: &str = "amqp:decode-error";
    /// §2.8.15: a peer exceeded its resource allocation.
    pub const RESOURCE_LIMIT_EXCEEDED: &str = "amqp:resource-limit-exceeded";
    /// §2.8.15: the peer tried to use a frame in a manner that is inconsistent with the spec.
    pub const NOT_ALLOWED: &str = "amqp:not-allowed";
    /// §2.8.15: an invalid field was passed in a frame body.
    pub const INVALID_FIELD: &str = "amqp:invalid-field";
    /// §2.8.15: the peer tried to use functionality that is not implemented.
    pub const NOT_IMPLEMENTED: &str = "amqp:not-implemented";
    /// §2.8.15: the client attempted to work with a server entity to which it has no access because
    /// another client is working with it.
    pub const RESOURCE_LOCKED: &str = "amqp:resource-locked";
    /// §2.8.15: the client made a request that was not allowed because some precondition failed.
    pub const PRECONDITION_FAILED: &str = "amqp:precondition-failed";
    /// §2.8.15: a server entity the client is working with has been deleted.
    pub const RESOURCE_DELETED: &str = "amqp:resource-deleted";
    /// §2.8.15: the peer sent a frame that is not permitted in the current state.
    pub const ILLEGAL_STATE: &str = "amqp:illegal-state";
    /// §2.8.15: the peer cannot send a frame because the smallest encoding of the performative with the
    /// currently valid values would be too large to fit within a frame of the agreed maximum frame size.
    pub const FRAME_SIZE_TOO_SMALL: &str = "amqp:frame-size-too-small";
    /// §2.8.16: an operator intervened to close the connection.
    pub const CONNECTION_FORCED: &str = "amqp:connection:forced";
    /// §2.8.16: a valid frame header cannot be formed from the incoming byte stream.
    pub const FRAMING_ERROR: &str = "amqp:connection:framing-error";
    /// §2.8.16: the container is no longer available on the current connection.
    pub const CONNECTION_REDIRECT: &str = "amqp:connection:redirect";
    /// §2.8.17: the peer violated incoming window for the session.
    pub const WINDOW_VIOLATION: &str = "amqp:session:window-violation";
    /// §2.8.17: input was received for a link that was detached with an error.
    pub const ERRANT_LINK: &str = "amqp:session:errant-link";
    /// §2.8.17: an attach was received using a handle that is already in use.
    pub const HANDLE_IN_USE: &str = "amqp:session:handle-in-use";
    /// §2.8.17: a frame referenced a handle that is not currently in use.
    pub const UNATTACHED_HANDLE: &str = "amqp:session:unattached-handle";
    /// §2.8.18: an operator intervened to detach for some reason.
    pub const DETACH_FORCED: &str = "amqp:link:detach-forced";
    /// §2.8.18: the peer sent more message transfers than currently allowed on the link.
    pub const TRANSFER_LIMIT_EXCEEDED: &str = "amqp:link:transfer-limit-exceeded";
    /// §2.8.18: the peer sent a larger message than is supported on the link.
    pub const MESSAGE_SIZE_EXCEEDED: &str = "amqp:link:message-size-exceeded";
    /// §2.8.18: the address provided cannot be resolved to a terminus at the current container.
    pub const LINK_REDIRECT: &str = "amqp:link:redirect";
    /// §2.8.18: the link has been attached elsewhere, causing the existing attachment to be forcibly
    /// closed (Event Hubs epoch receivers, wire reference §7.4).
    pub const STOLEN: &str = "amqp:link:stolen";
}

/// Implements [`composite::Field`] for a type with `try_from_value` and `encode`.
macro_rules! composite_field {
    ($type:ty) => {
        impl composite::Field for $type {
            fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
                Self::try_from_value(value).map_err(Some)
            }

            fn encode(&self, buf: &mut BytesMut) {
                <$type>::encode(self, buf);
            }
        }
    };
}

/// The role of a link endpoint (§2.8.1): `false` on the wire is sender, `true` receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The endpoint sends messages.
    Sender,
    /// The endpoint receives messages.
    Receiver,
}

impl composite::Field for Role {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Bool(false) => Ok(Self::Sender),
            Value::Bool(true) => Ok(Self::Receiver),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::boolean(buf, *self == Self::Receiver);
    }
}

/// Settlement policy for a sender (§2.8.2), a ubyte on the wire. The spec default is `Mixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SenderSettleMode {
    /// 0: the sender sends all deliveries unsettled.
    Unsettled,
    /// 1: the sender sends all deliveries settled (the IoT Hub twin links, wire reference §3).
    Settled,
    /// 2: the sender may send a mixture.
    Mixed,
}

impl composite::Field for SenderSettleMode {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Ubyte(0) => Ok(Self::Unsettled),
            Value::Ubyte(1) => Ok(Self::Settled),
            Value::Ubyte(2) => Ok(Self::Mixed),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::ubyte(buf, *self as u8);
    }
}

/// Settlement policy for a receiver (§2.8.3), a ubyte on the wire. The spec default is `First`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReceiverSettleMode {
    /// 0: the receiver settles spontaneously.
    First,
    /// 1: the receiver settles only after the sender settled (uamqp's C2D sender, wire reference §6).
    Second,
}

impl composite::Field for ReceiverSettleMode {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Ubyte(0) => Ok(Self::First),
            Value::Ubyte(1) => Ok(Self::Second),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::ubyte(buf, *self as u8);
    }
}

/// Details of an error (§2.8.14), carried by detach, end, close and the rejected outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The error condition, e.g. [`condition::NOT_FOUND`]. Mandatory.
    pub condition: Symbol,
    /// A description for a human reader.
    pub description: Option<String>,
    /// Supplementary details, e.g. the `hostname`, `port` and `address` of `amqp:link:redirect`.
    pub info: Option<Fields>,
}

impl Error {
    /// The error type: `amqp:error:list`, `0x1d`.
    pub const TYPE: CompositeType = CompositeType {
        name: "error",
        symbol: "amqp:error:list",
        code: 0x1d,
    };

    /// Returns an error with `condition` and `description` and no info.
    pub fn new(condition: impl Into<Symbol>, description: impl Into<String>) -> Self {
        Self {
            condition: condition.into(),
            description: Some(description.into()),
            info: None,
        }
    }

    /// Decodes an error from a decoded described value.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] when `value` is not an `error` list or its fields are invalid.
    pub fn try_from_value(value: Value) -> Result<Self, AmqpCodecError> {
        let mut fields = FieldReader::described(Self::TYPE, value)?;
        Ok(Self {
            condition: fields.mandatory("condition")?,
            description: fields.optional("description")?,
            info: fields.optional("info")?,
        })
    }

    /// Appends the error as a full 3-field list (wire reference §7.6).
    pub fn encode(&self, buf: &mut BytesMut) {
        use composite::Field;
        write_list(buf, Self::TYPE, 3, |buf| {
            self.condition.encode(buf);
            self.description.encode(buf);
            self.info.encode(buf);
        });
    }
}

composite_field!(Error);

/// Reads an address field (`*address`, §3.5.3): a string, or a symbol from lenient peers.
pub(crate) fn address(
    fields: &mut FieldReader,
    field: &'static str,
) -> Result<Option<String>, AmqpCodecError> {
    Ok(fields.optional::<Address>(field)?.map(|address| address.0))
}

/// An address as read: a string, or a symbol from lenient peers; any other type is an invalid field.
struct Address(String);

impl composite::Field for Address {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::String(address) => Ok(Self(address)),
            Value::Symbol(address) => Ok(Self(address.into_string())),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::string(buf, &self.0);
    }
}

/// The source of a link (§3.5.3): where messages come from, e.g. `/devices/dev1/messages/devicebound`
/// or an Event Hubs partition with a selector filter.
///
/// uamqp requires both source and target in every attach reply (wire reference §7.6.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// The address of the source node.
    pub address: Option<String>,
    /// Terminus durability (§3.5.5): 0 none (default), 1 configuration, 2 unsettled-state.
    pub durable: Option<u32>,
    /// Expiry policy (§3.5.6), e.g. `session-end` (default) or `link-detach`.
    pub expiry_policy: Option<Symbol>,
    /// Seconds the terminus lives after its expiry event (default 0).
    pub timeout: Option<u32>,
    /// Whether the receiver asks the sender to create the node.
    pub dynamic: bool,
    /// Properties of the dynamically created node.
    pub dynamic_node_properties: Option<Fields>,
    /// `move` or `copy` (§3.5.7).
    pub distribution_mode: Option<Symbol>,
    /// Filters by name (§3.5.8), e.g. `apache.org:selector-filter:string` (wire reference §7.4).
    pub filter: Option<Fields>,
    /// The outcome of unsettled deliveries when the link closes.
    pub default_outcome: Option<DeliveryState>,
    /// Descriptors of the outcomes the source supports, e.g. `amqp:accepted:list`.
    pub outcomes: Option<Vec<Symbol>>,
    /// Extension capabilities of the source.
    pub capabilities: Option<Vec<Symbol>>,
}

impl Source {
    /// The source type: `amqp:source:list`, `0x28`.
    pub const TYPE: CompositeType = CompositeType {
        name: "source",
        symbol: "amqp:source:list",
        code: 0x28,
    };

    /// Returns a source with only an address.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: Some(address.into()),
            ..Self::default()
        }
    }

    /// Decodes a source from a decoded described value.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] when `value` is not a `source` list or its fields are invalid.
    pub fn try_from_value(value: Value) -> Result<Self, AmqpCodecError> {
        let mut fields = FieldReader::described(Self::TYPE, value)?;
        Ok(Self {
            address: address(&mut fields, "address")?,
            durable: fields.optional("durable")?,
            expiry_policy: fields.optional("expiry-policy")?,
            timeout: fields.optional("timeout")?,
            dynamic: fields.or_default("dynamic")?,
            dynamic_node_properties: fields.optional("dynamic-node-properties")?,
            distribution_mode: fields.optional("distribution-mode")?,
            filter: fields.optional("filter")?,
            default_outcome: fields.optional("default-outcome")?,
            outcomes: composite::symbols(&mut fields, "outcomes")?,
            capabilities: composite::symbols(&mut fields, "capabilities")?,
        })
    }

    /// Appends the source as a full 11-field list (wire reference §7.6).
    pub fn encode(&self, buf: &mut BytesMut) {
        use composite::Field;
        write_list(buf, Self::TYPE, 11, |buf| {
            self.address.encode(buf);
            self.durable.encode(buf);
            self.expiry_policy.encode(buf);
            self.timeout.encode(buf);
            self.dynamic.encode(buf);
            self.dynamic_node_properties.encode(buf);
            self.distribution_mode.encode(buf);
            self.filter.encode(buf);
            self.default_outcome.encode(buf);
            write_symbols(buf, self.outcomes.as_ref());
            write_symbols(buf, self.capabilities.as_ref());
        });
    }
}

composite_field!(Source);

/// The target of a link (§3.5.4): where messages go, e.g. `/devices/dev1/messages/events` or `$cbs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The address of the target node.
    pub address: Option<String>,
    /// Terminus durability (§3.5.5): 0 none (default), 1 configuration, 2 unsettled-state.
    pub durable: Option<u32>,
    /// Expiry policy (§3.5.6), e.g. `session-end` (default).
    pub expiry_policy: Option<Symbol>,
    /// Seconds the terminus lives after its expiry event (default 0).
    pub timeout: Option<u32>,
    /// Whether the sender asks the receiver to create the node.
    pub dynamic: bool,
    /// Properties of the dynamically created node.
    pub dynamic_node_properties: Option<Fields>,
    /// Extension capabilities of the target.
    pub capabilities: Option<Vec<Symbol>>,
}

impl Target {
    /// The target type: `amqp:target:list`, `0x29`.
    pub const TYPE: CompositeType = CompositeType {
        name: "target",
        symbol: "amqp:target:list",
        code: 0x29,
    };

    /// Returns a target with only an address.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: Some(address.into()),
            ..Self::default()
        }
    }

    /// Decodes a target from a decoded described value.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] when `value` is not a `target` list or its fields are invalid.
    pub fn try_from_value(value: Value) -> Result<Self, AmqpCodecError> {
        let mut fields = FieldReader::described(Self::TYPE, value)?;
        Ok(Self {
            address: address(&mut fields, "address")?,
            durable: fields.optional("durable")?,
            expiry_policy: fields.optional("expiry-policy")?,
            timeout: fields.optional("timeout")?,
            dynamic: fields.or_default("dynamic")?,
            dynamic_node_properties: fields.optional("dynamic-node-properties")?,
            capabilities: composite::symbols(&mut fields, "capabilities")?,
        })
    }

    /// Appends the target as a full 7-field list (wire reference §7.6).
    pub fn encode(&self, buf: &mut BytesMut) {
        use composite::Field;
        write_list(buf, Self::TYPE, 7, |buf| {
            self.address.encode(buf);
            self.durable.encode(buf);
            self.expiry_policy.encode(buf);
            self.timeout.encode(buf);
            self.dynamic.encode(buf);
            self.dynamic_node_properties.encode(buf);
            write_symbols(buf, self.capabilities.as_ref());
        });
    }
}

composite_field!(Target);

/// The state of a delivery (§2.8.4 delivery-state, §3.4 outcomes), as carried by transfer and
/// disposition.
///
/// IoT Hub's settlement mapping (wire reference §3): complete → `Accepted`, reject → `Rejected`,
/// abandon → `Released`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// `0x23` (§3.4.1): how much of the message has been received, to resume a transfer.
    Received {
        /// The section the receiver resumes from.
        section_number: u32,
        /// The offset within that section.
        section_offset: u64,
    },
    /// `0x24` (§3.4.2): the message was processed successfully.
    Accepted,
    /// `0x25` (§3.4.3): the message is invalid and unprocessable.
    Rejected {
        /// Why it was rejected.
        error: Option<Error>,
    },
    /// `0x26` (§3.4.4): the message was not and will not be processed; redeliver it.
    Released,
    /// `0x27` (§3.4.5): the message was modified, but not processed.
    Modified {
        /// Count the transfer as an unsuccessful delivery attempt.
        delivery_failed: bool,
        /// Do not redeliver to this link.
        undeliverable_here: bool,
        /// Annotations to merge into the message's message annotations.
        message_annotations: Option<Fields>,
    },
}

impl DeliveryState {
    /// The five delivery state types.
    pub const TYPES: [CompositeType; 5] = [
        CompositeType {
            name: "received",
            symbol: "amqp:received:list",
            code: 0x23,
        },
        CompositeType {
            name: "accepted",
            symbol: "amqp:accepted:list",
            code: 0x24,
        },
        CompositeType {
            name: "rejected",
            symbol: "amqp:rejected:list",
            code: 0x25,
        },
        CompositeType {
            name: "released",
            symbol: "amqp:released:list",
            code: 0x26,
        },
        CompositeType {
            name: "modified",
            symbol: "amqp:modified:list",
            code: 0x27,
        },
    ];

    /// Decodes a delivery state from a decoded described value.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] when `value` is not one of the five delivery states (transactional
    /// states, §4.5.5, are not supported) or its fields are invalid.
    pub fn try_from_value(value: Value) -> Result<Self, AmqpCodecError> {
        let (descriptor, value) = composite::split_described(value, "delivery-state")?;
        let Some(code) = composite::code_of(&descriptor, &Self::TYPES) else {
            return Err(AmqpCodecError::UnexpectedDescriptor {
                expected: "delivery-state",
                found: descriptor,
            });
        };
        let ty = Self::type_of(code);
        let mut fields = FieldReader::new(ty, value)?;
        Ok(match code {
            0x23 => Self::Received {
                section_number: fields.mandatory("section-number")?,
                section_offset: fields.mandatory("section-offset")?,
            },
            0x24 => Self::Accepted,
            0x25 => Self::Rejected {
                error: fields.optional("error")?,
            },
            0x26 => Self::Released,
            _ => Self::Modified {
                delivery_failed: fields.or_default("delivery-failed")?,
                undeliverable_here: fields.or_default("undeliverable-here")?,
                message_annotations: fields.optional("message-annotations")?,
            },
        })
    }

    fn type_of(code: u64) -> CompositeType {
        let index = usize::try_from(code.saturating_sub(0x23)).unwrap_or(0).min(4);
        Self::TYPES[index]
    }

    /// Appends the state as a full list of its fields (wire reference §7.6); accepted and released have
    /// none and encode as `list0`.
    pub fn encode(&self, buf: &mut BytesMut) {
        use composite::Field;
        match self {
            Self::Received {
                section_number,
                section_offset,
            } => write_list(buf, Self::type_of(0x23), 2, |buf| {
                section_number.encode(buf);
                section_offset.encode(buf);
            }),
            Self::Accepted => write_list(buf, Self::type_of(0x24), 0, |_| {}),
            Self::Rejected { error } => write_list(buf, Self::type_of(0x25), 1, |buf| error.encode(buf)),
            Self::Released => write_list(buf, Self::type_of(0x26), 0, |_| {}),
            Self::Modified {
                delivery_failed,
                undeliverable_here,
                message_annotations,
            } => write_list(buf, Self::type_of(0x27), 3, |buf| {
                delivery_failed.encode(buf);
                undeliverable_here.encode(buf);
                message_annotations.encode(buf);
            }),
        }
    }
}

composite_field!(DeliveryState);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn round_trip_state(state: &DeliveryState) -> Vec<u8> {
        let mut buf = BytesMut::new();
        state.encode(&mut buf);
        let encoded = buf.to_vec();
        let value = Value::decode(&mut buf.freeze()).unwrap();
        assert_eq!(&DeliveryState::try_from_value(value).unwrap(), state);
        encoded
    }

    #[test]
    fn accepted_is_described_list0() {
        assert_eq!(
            round_trip_state(&DeliveryState::Accepted),
            [0x00, 0x53, 0x24, 0x45]
        );
        assert_eq!(
            round_trip_state(&DeliveryState::Released),
            [0x00, 0x53, 0x26, 0x45]
        );
    }

    #[test]
    fn rejected_carries_a_full_error_list() {
        let encoded = round_trip_state(&DeliveryState::Rejected {
            error: Some(Error {
                condition: condition::NOT_FOUND.into(),
                description: None,
                info: None,
            }),
        });
        let mut expected = vec![
            0x00, 0x53, 0x25, 0xc0, 25, 1, 0x00, 0x53, 0x1d, 0xc0, 19, 3, 0xa3, 14,
        ];
        expected.extend_from_slice(b"amqp:not-found");
        expected.extend_from_slice(&[0x40, 0x40]);
        assert_eq!(encoded, expected);
        round_trip_state(&DeliveryState::Received {
            section_number: 1,
            section_offset: 300,
        });
        round_trip_state(&DeliveryState::Modified {
            delivery_failed: true,
            undeliverable_here: false,
            message_annotations: Some(vec![("x-opt-a".into(), Value::Int(1))]),
        });
    }

    #[test]
    fn source_encodes_every_field_and_reads_a_short_list() {
        let source = Source::new("$cbs");
        let mut buf = BytesMut::new();
        source.encode(&mut buf);
        assert_eq!(&buf[..6], [0x00, 0x53, 0x28, 0xc0, 17, 11]);
        assert_eq!(&buf[6..12], [0xa1, 4, b'$', b'c', b'b', b's']);
        // durable..capabilities: null, null, null, false, then six nulls.
        assert_eq!(
            &buf[12..],
            [0x40, 0x40, 0x40, 0x42, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40]
        );
        let short = Bytes::from_static(&[0x00, 0x53, 0x28, 0xc0, 5, 1, 0xa3, 2, b'a', b'b']);
        let value = Value::decode(&mut short.clone()).unwrap();
        assert_eq!(Source::try_from_value(value).unwrap(), Source::new("ab"));
    }

    #[test]
    fn symbolic_descriptors_are_understood() {
        let mut buf = BytesMut::new();
        encode::descriptor(
            &mut buf,
            &crate::value::Descriptor::Symbol("amqp:target:list".into()),
        );
        encode::list(&mut buf, 1, |buf| encode::string(buf, "t"));
        let value = Value::decode(&mut buf.freeze()).unwrap();
        assert_eq!(Target::try_from_value(value).unwrap(), Target::new("t"));
    }
}
