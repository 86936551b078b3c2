//! The nine performatives of the transport layer (AMQP 1.0 §2.7), descriptors `0x10`–`0x18`, with every
//! field of the spec.
//!
//! Each encodes as a described list with **all** its fields, absent ones as explicit nulls: the Python
//! pyamqp client cannot parse trimmed lists (wire reference §7.6.1). Fields the spec gives a default are
//! `Option`s; `None` goes on the wire as null, which a spec-conforming peer reads as the default but
//! pyamqp does not (§7.6.2): the engine must fill in the fields named in each struct's docs. Boolean
//! fields whose default is `false` are plain `bool`s and are always written explicitly.

use bytes::{Bytes, BytesMut};

use crate::composite::{self, CompositeType, Field, FieldReader, Fields, write_list, write_symbols};
use crate::definitions::{DeliveryState, Error, ReceiverSettleMode, Role, SenderSettleMode, Source, Target};
use crate::error::AmqpCodecError;
use crate::value::{Symbol, Value};

/// Declares a performative's [`CompositeType`].
const fn performative(name: &'static str, symbol: &'static str, code: u64) -> CompositeType {
    CompositeType { name, symbol, code }
}

/// The descriptors of the nine performatives, in code order `0x10`–`0x18`.
pub const PERFORMATIVE_TYPES: [CompositeType; 9] = [
    performative("open", "amqp:open:list", 0x10),
    performative("begin", "amqp:begin:list", 0x11),
    performative("attach", "amqp:attach:list", 0x12),
    performative("flow", "amqp:flow:list", 0x13),
    performative("transfer", "amqp:transfer:list", 0x14),
    performative("disposition", "amqp:disposition:list", 0x15),
    performative("detach", "amqp:detach:list", 0x16),
    performative("end", "amqp:end:list", 0x17),
    performative("close", "amqp:close:list", 0x18),
];

/// A performative: the body of an AMQP frame (§2.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Performative {
    /// Negotiate connection parameters (§2.7.1).
    Open(Open),
    /// Begin a session on a channel (§2.7.2).
    Begin(Begin),
    /// Attach a link to a session (§2.7.3). Boxed: with its source and target it is several times
    /// larger than the other performatives.
    Attach(Box<Attach>),
    /// Update link state (§2.7.4).
    Flow(Flow),
    /// Transfer a message (§2.7.5).
    Transfer(Transfer),
    /// Inform remote peer of delivery state changes (§2.7.6).
    Disposition(Disposition),
    /// Detach the link endpoint from the session (§2.7.7).
    Detach(Detach),
    /// End the session (§2.7.8).
    End(End),
    /// Signal a connection close (§2.7.9).
    Close(Close),
}

impl Performative {
    /// Decodes a performative from the first value of a frame body.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] when `value` is not one of the nine performatives or a field is
    /// invalid.
    pub fn try_from_value(value: Value) -> Result<Self, AmqpCodecError> {
        let (descriptor, value) = composite::split_described(value, "performative")?;
        let Some(code) = composite::code_of(&descriptor, &PERFORMATIVE_TYPES) else {
            return Err(AmqpCodecError::UnexpectedDescriptor {
                expected: "performative",
                found: descriptor,
            });
        };
        let index = usize::try_from(code - 0x10).unwrap_or(0);
        let mut fields = FieldReader::new(PERFORMATIVE_TYPES[index], value)?;
        Ok(match code {
            0x10 => Self::Open(Open::read(&mut fields)?),
            0x11 => Self::Begin(Begin::read(&mut fields)?),
            0x12 => Self::Attach(Box::new(Attach::read(&mut fields)?)),
            0x13 => Self::Flow(Flow::read(&mut fields)?),
            0x14 => Self::Transfer(Transfer::read(&mut fields)?),
            0x15 => Self::Disposition(Disposition::read(&mut fields)?),
            0x16 => Self::Detach(Detach::read(&mut fields)?),
            0x17 => Self::End(End {
                error: fields.optional("error")?,
            }),
            _ => Self::Close(Close {
                error: fields.optional("error")?,
            }),
        })
    }

    /// Appends the performative as a described list of all its fields (wire reference §7.6).
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::Open(open) => open.encode(buf),
            Self::Begin(begin) => begin.encode(buf),
            Self::Attach(attach) => attach.encode(buf),
            Self::Flow(flow) => flow.encode(buf),
            Self::Transfer(transfer) => transfer.encode(buf),
            Self::Disposition(disposition) => disposition.encode(buf),
            Self::Detach(detach) => detach.encode(buf),
            Self::End(end) => write_list(buf, PERFORMATIVE_TYPES[7], 1, |buf| end.error.encode(buf)),
            Self::Close(close) => write_list(buf, PERFORMATIVE_TYPES[8], 1, |buf| close.error.encode(buf)),
        }
    }

    /// Returns the spec name of the performative, e.g. `"attach"`, for logs.
    pub const fn name(&self) -> &'static str {
        let index = match self {
            Self::Open(_) => 0,
            Self::Begin(_) => 1,
            Self::Attach(_) => 2,
            Self::Flow(_) => 3,
            Self::Transfer(_) => 4,
            Self::Disposition(_) => 5,
            Self::Detach(_) => 6,
            Self::End(_) => 7,
            Self::Close(_) => 8,
        };
        PERFORMATIVE_TYPES[index].name
    }
}

/// Implements `From<$type> for Performative`.
macro_rules! into_performative {
    ($($type:ident),*) => {
        $(impl From<$type> for Performative {
            fn from(value: $type) -> Self {
                Self::$type(value)
            }
        })*
    };
}

into_performative!(Open, Begin, Flow, Transfer, Disposition, Detach, End, Close);

impl From<Attach> for Performative {
    fn from(value: Attach) -> Self {
        Self::Attach(Box::new(value))
    }
}

/// Open (§2.7.1, `0x10`, 10 fields): the first frame on a connection, negotiating its parameters.
///
/// When the hub answers an open, it must set `max_frame_size` and `channel_max` explicitly: pyamqp
/// compares them with integers and fails on null (wire reference §7.6.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Open {
    /// The id of the source container. Mandatory.
    pub container_id: String,
    /// The name of the target host (virtual hosting), e.g. the hub's host name.
    pub hostname: Option<String>,
    /// The largest frame the sender accepts (default 4294967295; never below 512, §2.7.1).
    pub max_frame_size: Option<u32>,
    /// The highest channel number the sender may use (default 65535).
    pub channel_max: Option<u16>,
    /// Idle timeout in milliseconds: the sender closes the connection after that long without a frame.
    pub idle_time_out: Option<u32>,
    /// Locales available for outgoing text.
    pub outgoing_locales: Option<Vec<Symbol>>,
    /// Desired locales for incoming text, in decreasing preference.
    pub incoming_locales: Option<Vec<Symbol>>,
    /// Extension capabilities the sender supports.
    pub offered_capabilities: Option<Vec<Symbol>>,
    /// Extension capabilities the sender may use if the receiver supports them.
    pub desired_capabilities: Option<Vec<Symbol>>,
    /// Connection properties, e.g. `product` and `user-agent` from the Event Hubs clients.
    pub properties: Option<Fields>,
}

impl Open {
    /// Returns an open with only `container_id` set.
    pub fn new(container_id: impl Into<String>) -> Self {
        Self {
            container_id: container_id.into(),
            ..Self::default()
        }
    }

    /// Returns the max frame size in effect: the field, or the spec default 4294967295.
    pub fn max_frame_size_or_default(&self) -> u32 {
        self.max_frame_size.unwrap_or(u32::MAX)
    }

    /// Returns the highest channel in effect: the field, or the spec default 65535.
    pub fn channel_max_or_default(&self) -> u16 {
        self.channel_max.unwrap_or(u16::MAX)
    }

    fn read(fields: &mut FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            container_id: fields.mandatory("container-id")?,
            hostname: fields.optional("hostname")?,
            max_frame_size: fields.optional("max-frame-size")?,
            channel_max: fields.optional("channel-max")?,
            idle_time_out: fields.optional("idle-time-out")?,
            outgoing_locales: composite::symbols(fields, "outgoing-locales")?,
            incoming_locales: composite::symbols(fields, "incoming-locales")?,
            offered_capabilities: composite::symbols(fields, "offered-capabilities")?,
            desired_capabilities: composite::symbols(fields, "desired-capabilities")?,
            properties: fields.optional("properties")?,
        })
    }

    /// Appends the open as a described list of all 10 fields.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, PERFORMATIVE_TYPES[0], 10, |buf| {
            self.container_id.encode(buf);
            self.hostname.encode(buf);
            self.max_frame_size.encode(buf);
            self.channel_max.encode(buf);
            self.idle_time_out.encode(buf);
            write_symbols(buf, self.outgoing_locales.as_ref());
            write_symbols(buf, self.incoming_locales.as_ref());
            write_symbols(buf, self.offered_capabilities.as_ref());
            write_symbols(buf, self.desired_capabilities.as_ref());
            self.properties.encode(buf);
        });
    }
}

/// Begin (§2.7.2, `0x11`, 8 fields): starts a session on the frame's channel.
///
/// The hub's begin must set `handle_max` explicitly: pyamqp compares the number of handles with it and
/// fails on null (wire reference §7.6.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Begin {
    /// In a reply, the channel of the peer's begin.
    pub remote_channel: Option<u16>,
    /// The transfer-id of the first transfer the sender will send. Mandatory.
    pub next_outgoing_id: u32,
    /// The initial incoming window of the sender. Mandatory.
    pub incoming_window: u32,
    /// The initial outgoing window of the sender. Mandatory.
    pub outgoing_window: u32,
    /// The highest link handle the sender may use (default 4294967295).
    pub handle_max: Option<u32>,
    /// Extension capabilities the sender supports.
    pub offered_capabilities: Option<Vec<Symbol>>,
    /// Extension capabilities the sender may use if the receiver supports them.
    pub desired_capabilities: Option<Vec<Symbol>>,
    /// Session properties.
    pub properties: Option<Fields>,
}

impl Begin {
    fn read(fields: &mut FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            remote_channel: fields.optional("remote-channel")?,
            next_outgoing_id: fields.mandatory("next-outgoing-id")?,
            incoming_window: fields.mandatory("incoming-window")?,
            outgoing_window: fields.mandatory("outgoing-window")?,
            handle_max: fields.optional("handle-max")?,
            offered_capabilities: composite::symbols(fields, "offered-capabilities")?,
            desired_capabilities: composite::symbols(fields, "desired-capabilities")?,
            properties: fields.optional("properties")?,
        })
    }

    /// Appends the begin as a described list of all 8 fields.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, PERFORMATIVE_TYPES[1], 8, |buf| {
            self.remote_channel.encode(buf);
            self.next_outgoing_id.encode(buf);
            self.incoming_window.encode(buf);
            self.outgoing_window.encode(buf);
            self.handle_max.encode(buf);
            write_symbols(buf, self.offered_capabilities.as_ref());
            write_symbols(buf, self.desired_capabilities.as_ref());
            self.properties.encode(buf);
        });
    }
}

/// Attach (§2.7.3, `0x12`, 14 fields): attaches a link to the session.
///
/// In the hub's reply, set both `source` and `target` (uamqp poisons the session otherwise, wire
/// reference §7.6.3), `initial_delivery_count` when the hub is the sender (pyamqp detaches otherwise,
/// §7.6.2), and preferably `max_message_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attach {
    /// The link's name, unique per direction between two containers. Mandatory.
    pub name: String,
    /// The handle the sender uses for the link in later frames. Mandatory.
    pub handle: u32,
    /// The role of the sender of this attach. Mandatory.
    pub role: Role,
    /// Settlement policy of the link's sender (default mixed).
    pub snd_settle_mode: Option<SenderSettleMode>,
    /// Settlement policy of the link's receiver (default first).
    pub rcv_settle_mode: Option<ReceiverSettleMode>,
    /// The source of messages.
    pub source: Option<Source>,
    /// The target of messages.
    pub target: Option<Target>,
    /// Unsettled delivery states by delivery tag, for link resumption.
    pub unsettled: Option<Vec<(Value, Value)>>,
    /// Whether `unsettled` is incomplete.
    pub incomplete_unsettled: bool,
    /// The sender's initial delivery count; mandatory when the attach comes from the sender.
    pub initial_delivery_count: Option<u32>,
    /// The largest message the link accepts (absent or zero: no limit).
    pub max_message_size: Option<u64>,
    /// Extension capabilities the sender supports.
    pub offered_capabilities: Option<Vec<Symbol>>,
    /// Extension capabilities the sender may use if the receiver supports them.
    pub desired_capabilities: Option<Vec<Symbol>>,
    /// Link properties, e.g. `com.microsoft:channel-correlation-id`, `com.microsoft:epoch` (long).
    pub properties: Option<Fields>,
}

impl Attach {
    /// Returns an attach with the mandatory fields set and every other field absent.
    pub fn new(name: impl Into<String>, handle: u32, role: Role) -> Self {
        Self {
            name: name.into(),
            handle,
            role,
            snd_settle_mode: None,
            rcv_settle_mode: None,
            source: None,
            target: None,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }
    }

    fn read(fields: &mut FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            name: fields.mandatory("name")?,
            handle: fields.mandatory("handle")?,
            role: fields.mandatory("role")?,
            snd_settle_mode: fields.optional("snd-settle-mode")?,
            rcv_settle_mode: fields.optional("rcv-settle-mode")?,
            source: fields.optional("source")?,
            target: fields.optional("target")?,
            unsettled: fields.optional("unsettled")?,
            incomplete_unsettled: fields.or_default("incomplete-unsettled")?,
            initial_delivery_count: fields.optional("initial-delivery-count")?,
            max_message_size: fields.optional("max-message-size")?,
            offered_capabilities: composite::symbols(fields, "offered-capabilities")?,
            desired_capabilities: composite::symbols(fields, "desired-capabilities")?,
            properties: fields.optional("properties")?,
        })
    }

    /// Appends the attach as a described list of all 14 fields.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, PERFORMATIVE_TYPES[2], 14, |buf| {
            self.name.encode(buf);
            self.handle.encode(buf);
            self.role.encode(buf);
            self.snd_settle_mode.encode(buf);
            self.rcv_settle_mode.encode(buf);
            self.source.encode(buf);
            self.target.encode(buf);
            self.unsettled.encode(buf);
            self.incomplete_unsettled.encode(buf);
            self.initial_delivery_count.encode(buf);
            self.max_message_size.encode(buf);
            write_symbols(buf, self.offered_capabilities.as_ref());
            write_symbols(buf, self.desired_capabilities.as_ref());
            self.properties.encode(buf);
        });
    }
}

/// Flow (§2.7.4, `0x13`, 11 fields): updates session windows and, with a handle, link credit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// The next transfer-id expected from the peer (absent before the peer's begin is known).
    pub next_incoming_id: Option<u32>,
    /// The sender's incoming window. Mandatory.
    pub incoming_window: u32,
    /// The transfer-id of the sender's next transfer. Mandatory.
    pub next_outgoing_id: u32,
    /// The sender's outgoing window. Mandatory.
    pub outgoing_window: u32,
    /// The link this flow is about; absent for a session-only flow.
    pub handle: Option<u32>,
    /// The link's delivery count.
    pub delivery_count: Option<u32>,
    /// How many more deliveries the receiver accepts.
    pub link_credit: Option<u32>,
    /// How many deliveries the sender has available.
    pub available: Option<u32>,
    /// Asks the sender to use up all credit.
    pub drain: bool,
    /// Asks the peer to answer with its own flow.
    pub echo: bool,
    /// Link state properties.
    pub properties: Option<Fields>,
}

impl Flow {
    fn read(fields: &mut FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            next_incoming_id: fields.optional("next-incoming-id")?,
            incoming_window: fields.mandatory("incoming-window")?,
            next_outgoing_id: fields.mandatory("next-outgoing-id")?,
            outgoing_window: fields.mandatory("outgoing-window")?,
            handle: fields.optional("handle")?,
            delivery_count: fields.optional("delivery-count")?,
            link_credit: fields.optional("link-credit")?,
            available: fields.optional("available")?,
            drain: fields.or_default("drain")?,
            echo: fields.or_default("echo")?,
            properties: fields.optional("properties")?,
        })
    }

    /// Appends the flow as a described list of all 11 fields.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, PERFORMATIVE_TYPES[3], 11, |buf| {
            self.next_incoming_id.encode(buf);
            self.incoming_window.encode(buf);
            self.next_outgoing_id.encode(buf);
            self.outgoing_window.encode(buf);
            self.handle.encode(buf);
            self.delivery_count.encode(buf);
            self.link_credit.encode(buf);
            self.available.encode(buf);
            self.drain.encode(buf);
            self.echo.encode(buf);
            self.properties.encode(buf);
        });
    }
}

/// Transfer (§2.7.5, `0x14`, 11 fields): one frame of a delivery; the message bytes follow the
/// performative in the frame (the frame's payload).
///
/// A message larger than a frame is split over several transfers with `more` set on all but the last
/// (§2.6.14); [`encode_transfer_frames`](crate::frame::encode_transfer_frames) does the split, and the
/// engine concatenates the payloads before [`Message::decode`](crate::message::Message::decode).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// The link the delivery is on. Mandatory.
    pub handle: u32,
    /// The delivery's id; mandatory on the first transfer of a delivery.
    pub delivery_id: Option<u32>,
    /// The delivery's tag; mandatory on the first transfer of a delivery.
    pub delivery_tag: Option<Bytes>,
    /// The message format: 0 for AMQP messages; mandatory on the first transfer.
    pub message_format: Option<u32>,
    /// Whether the sender settled the delivery (absent on the first transfer: false).
    pub settled: Option<bool>,
    /// More transfers of this delivery follow.
    pub more: bool,
    /// Overrides the link's receiver settle mode for this delivery.
    pub rcv_settle_mode: Option<ReceiverSettleMode>,
    /// The delivery's state at the sender.
    pub state: Option<DeliveryState>,
    /// The transfer resumes a delivery from a previous link.
    pub resume: bool,
    /// The delivery is aborted: its payload is discarded.
    pub aborted: bool,
    /// The receiver may delay acknowledging it.
    pub batchable: bool,
}

impl Transfer {
    fn read(fields: &mut FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            handle: fields.mandatory("handle")?,
            delivery_id: fields.optional("delivery-id")?,
            delivery_tag: fields.optional("delivery-tag")?,
            message_format: fields.optional("message-format")?,
            settled: fields.optional("settled")?,
            more: fields.or_default("more")?,
            rcv_settle_mode: fields.optional("rcv-settle-mode")?,
            state: fields.optional("state")?,
            resume: fields.or_default("resume")?,
            aborted: fields.or_default("aborted")?,
            batchable: fields.or_default("batchable")?,
        })
    }

    /// Appends the transfer as a described list of all 11 fields.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, PERFORMATIVE_TYPES[4], 11, |buf| {
            self.handle.encode(buf);
            self.delivery_id.encode(buf);
            self.delivery_tag.encode(buf);
            self.message_format.encode(buf);
            self.settled.encode(buf);
            self.more.encode(buf);
            self.rcv_settle_mode.encode(buf);
            self.state.encode(buf);
            self.resume.encode(buf);
            self.aborted.encode(buf);
            self.batchable.encode(buf);
        });
    }
}

/// Disposition (§2.7.6, `0x15`, 6 fields): settles or updates the state of a range of deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disposition {
    /// The role of the sender of this disposition. Mandatory.
    pub role: Role,
    /// The first delivery-id of the range. Mandatory.
    pub first: u32,
    /// The last delivery-id of the range (absent: same as `first`).
    pub last: Option<u32>,
    /// The deliveries are settled.
    pub settled: bool,
    /// The deliveries' new state, e.g. accepted.
    pub state: Option<DeliveryState>,
    /// The receiver may delay acknowledging it.
    pub batchable: bool,
}

impl Disposition {
    fn read(fields: &mut FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            role: fields.mandatory("role")?,
            first: fields.mandatory("first")?,
            last: fields.optional("last")?,
            settled: fields.or_default("settled")?,
            state: fields.optional("state")?,
            batchable: fields.or_default("batchable")?,
        })
    }

    /// Appends the disposition as a described list of all 6 fields.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, PERFORMATIVE_TYPES[5], 6, |buf| {
            self.role.encode(buf);
            self.first.encode(buf);
            self.last.encode(buf);
            self.settled.encode(buf);
            self.state.encode(buf);
            self.batchable.encode(buf);
        });
    }
}

/// Detach (§2.7.7, `0x16`, 3 fields): detaches a link, closing it when `closed` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detach {
    /// The link's handle. Mandatory.
    pub handle: u32,
    /// The link is closed, not only detached.
    pub closed: bool,
    /// Why, e.g. `amqp:link:redirect` with the new address in `info` (wire reference §7.7).
    pub error: Option<Error>,
}

impl Detach {
    fn read(fields: &mut FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            handle: fields.mandatory("handle")?,
            closed: fields.or_default("closed")?,
            error: fields.optional("error")?,
        })
    }

    /// Appends the detach as a described list of all 3 fields.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, PERFORMATIVE_TYPES[6], 3, |buf| {
            self.handle.encode(buf);
            self.closed.encode(buf);
            self.error.encode(buf);
        });
    }
}

/// End (§2.7.8, `0x17`, 1 field): ends the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct End {
    /// Why the session ends, if it is an error.
    pub error: Option<Error>,
}

/// Close (§2.7.9, `0x18`, 1 field): closes the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Close {
    /// Why the connection closes, if it is an error, e.g. `amqp:decode-error` from
    /// [`AmqpCodecError::condition`].
    pub error: Option<Error>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn encode(performative: &Performative) -> BytesMut {
        let mut buf = BytesMut::new();
        performative.encode(&mut buf);
        buf
    }

    fn decode(bytes: &[u8]) -> Result<Performative, AmqpCodecError> {
        Performative::try_from_value(Value::decode(&mut Bytes::copy_from_slice(bytes))?)
    }

    #[test]
    fn open_with_only_container_id_is_a_ten_field_list_of_nulls() {
        let buf = encode(&Open::new("c1").into());
        let mut expected = vec![0x00, 0x53, 0x10, 0xc0, 14, 10, 0xa1, 2, b'c', b'1'];
        expected.extend_from_slice(&[0x40; 9]);
        assert_eq!(&buf[..], expected);
        assert_eq!(decode(&buf), Ok(Open::new("c1").into()));
    }

    #[test]
    fn every_performative_writes_all_its_fields() {
        let counts = [
            (Performative::from(Open::new("c")), 10),
            (Begin::default().into(), 8),
            (Attach::new("l", 0, Role::Sender).into(), 14),
            (Flow::default().into(), 11),
            (Transfer::default().into(), 11),
            (
                Disposition {
                    role: Role::Receiver,
                    first: 0,
                    last: None,
                    settled: true,
                    state: Some(DeliveryState::Accepted),
                    batchable: false,
                }
                .into(),
                6,
            ),
            (Detach::default().into(), 3),
            (End::default().into(), 1),
            (Close::default().into(), 1),
        ];
        for (performative, count) in counts {
            let buf = encode(&performative);
            assert_eq!(buf[3], 0xc0, "{}", performative.name());
            assert_eq!(buf[5], count, "{}", performative.name());
            assert_eq!(decode(&buf).as_ref(), Ok(&performative));
        }
    }

    #[test]
    fn short_lists_take_defaults() {
        // rhea's compact open: only container-id.
        assert_eq!(
            decode(&[0x00, 0x53, 0x10, 0xc0, 4, 1, 0xa1, 1, b'c']),
            Ok(Open::new("c").into())
        );
        // A detach with only its handle, and a close with an empty list.
        assert_eq!(
            decode(&[0x00, 0x53, 0x16, 0xc0, 2, 1, 0x43]),
            Ok(Detach::default().into())
        );
        assert_eq!(decode(&[0x00, 0x53, 0x18, 0x45]), Ok(Close::default().into()));
        // An end with an extra, unknown trailing field.
        assert_eq!(
            decode(&[0x00, 0x53, 0x17, 0xc0, 3, 2, 0x40, 0x41]),
            Ok(End::default().into())
        );
    }

    #[test]
    fn missing_mandatory_and_wrong_types_are_errors() {
        assert_eq!(
            decode(&[0x00, 0x53, 0x10, 0x45]),
            Err(AmqpCodecError::MissingField {
                composite: "open",
                field: "container-id"
            })
        );
        // channel-max as a uint instead of a ushort.
        assert_eq!(
            decode(&[0x00, 0x53, 0x10, 0xc0, 8, 4, 0xa1, 1, b'c', 0x40, 0x40, 0x52, 1]),
            Err(AmqpCodecError::InvalidField {
                composite: "open",
                field: "channel-max"
            })
        );
        assert!(matches!(
            decode(&[0x00, 0x53, 0x19, 0x45]),
            Err(AmqpCodecError::UnexpectedDescriptor { .. })
        ));
        assert!(matches!(
            decode(&[0x45]),
            Err(AmqpCodecError::NotDescribed { .. })
        ));
    }

    #[test]
    fn symbolic_performative_descriptors_are_understood() {
        let mut bytes = vec![0x00, 0xa3, 14];
        bytes.extend_from_slice(b"amqp:close:list");
        bytes[2] = 15;
        bytes.push(0x45);
        assert_eq!(decode(&bytes), Ok(Close::default().into()));
    }
}
