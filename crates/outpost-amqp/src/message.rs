//! The AMQP message format (AMQP 1.0 §3.2): a transfer's payload is a sequence of sections, header
//! `0x70`, delivery-annotations `0x71`, message-annotations `0x72`, properties `0x73`,
//! application-properties `0x74`, a body of data `0x75`, amqp-sequence `0x76` or amqp-value `0x77`
//! sections, and footer `0x78`.

use bytes::{Bytes, BytesMut};

use crate::composite::{self, CompositeType, Field, FieldReader, write_list};
use crate::definitions::address;
use crate::error::AmqpCodecError;
use crate::value::decode::Reader;
use crate::value::{Descriptor, Symbol, Timestamp, Value, encode};

/// Annotations (§3.2.10): keys are symbols (or reserved ulongs), values of any type, in wire order. The
/// type of delivery annotations, message annotations and the footer.
pub type Annotations = Vec<(Value, Value)>;

/// Application properties (§3.2.5): string keys, values of simple types, in wire order.
pub type ApplicationProperties = Vec<(String, Value)>;

/// Declares a section's [`CompositeType`].
const fn section(name: &'static str, symbol: &'static str, code: u64) -> CompositeType {
    CompositeType { name, symbol, code }
}

/// The descriptors of the nine message sections, in code order `0x70`–`0x78`.
pub const SECTION_TYPES: [CompositeType; 9] = [
    section("header", "amqp:header:list", 0x70),
    section("delivery-annotations", "amqp:delivery-annotations:map", 0x71),
    section("message-annotations", "amqp:message-annotations:map", 0x72),
    section("properties", "amqp:properties:list", 0x73),
    section("application-properties", "amqp:application-properties:map", 0x74),
    section("data", "amqp:data:binary", 0x75),
    section("amqp-sequence", "amqp:amqp-sequence:list", 0x76),
    section("amqp-value", "amqp:amqp-value:*", 0x77),
    section("footer", "amqp:footer:map", 0x78),
];

/// A message id or correlation id (§3.2.11–§3.2.15), keeping its exact AMQP type.
///
/// The type matters: uamqp drops a reply whose correlation id is not of the request message id's type
/// (wire reference §7.2, §7.6.4), so echo the decoded value as is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// `message-id-ulong`, e.g. uamqp's CBS request counter.
    Ulong(u64),
    /// `message-id-uuid`, e.g. pyamqp's CBS requests and UUID-shaped ids from the Node SDK.
    Uuid([u8; 16]),
    /// `message-id-binary`.
    Binary(Bytes),
    /// `message-id-string`, the most common form.
    String(String),
}

impl Field for MessageId {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Ulong(id) => Ok(Self::Ulong(id)),
            Value::Uuid(id) => Ok(Self::Uuid(id)),
            Value::Binary(id) => Ok(Self::Binary(id)),
            Value::String(id) => Ok(Self::String(id)),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::Ulong(id) => encode::ulong(buf, *id),
            Self::Uuid(id) => encode::uuid(buf, id),
            Self::Binary(id) => encode::binary(buf, id),
            Self::String(id) => encode::string(buf, id),
        }
    }
}

impl From<MessageId> for Value {
    fn from(id: MessageId) -> Self {
        match id {
            MessageId::Ulong(id) => Self::Ulong(id),
            MessageId::Uuid(id) => Self::Uuid(id),
            MessageId::Binary(id) => Self::Binary(id),
            MessageId::String(id) => Self::String(id),
        }
    }
}

/// The header section (§3.2.1, `0x70`, 5 fields): transport headers of the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The message must survive an intermediary's restart.
    pub durable: bool,
    /// Relative priority (default 4).
    pub priority: Option<u8>,
    /// Time to live in milliseconds.
    pub ttl: Option<u32>,
    /// No earlier acquirer has seen the message.
    pub first_acquirer: bool,
    /// Failed earlier delivery attempts.
    pub delivery_count: u32,
}

impl Header {
    fn read(mut fields: FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            durable: fields.or_default("durable")?,
            priority: fields.optional("priority")?,
            ttl: fields.optional("ttl")?,
            first_acquirer: fields.or_default("first-acquirer")?,
            delivery_count: fields.or_default("delivery-count")?,
        })
    }

    fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, SECTION_TYPES[0], 5, |buf| {
            self.durable.encode(buf);
            self.priority.encode(buf);
            self.ttl.encode(buf);
            self.first_acquirer.encode(buf);
            self.delivery_count.encode(buf);
        });
    }
}

/// The properties section (§3.2.4, `0x73`, 13 fields): immutable properties of the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// Identifies the message.
    pub message_id: Option<MessageId>,
    /// The identity of the user who produced the message.
    pub user_id: Option<Bytes>,
    /// The destination address, e.g. `/devices/dev1/messages/devicebound` for C2D.
    pub to: Option<String>,
    /// A summary of the message.
    pub subject: Option<String>,
    /// Where replies go, e.g. the CBS receiver link's address.
    pub reply_to: Option<String>,
    /// The id of the message this one replies to, same AMQP type as the request's `message_id`.
    pub correlation_id: Option<MessageId>,
    /// MIME type of the body, e.g. `application/json`.
    pub content_type: Option<Symbol>,
    /// Content encoding of the body, e.g. `utf-8`.
    pub content_encoding: Option<Symbol>,
    /// When the message expires.
    pub absolute_expiry_time: Option<Timestamp>,
    /// When the message was created.
    pub creation_time: Option<Timestamp>,
    /// The group the message belongs to.
    pub group_id: Option<String>,
    /// The message's position in its group.
    pub group_sequence: Option<u32>,
    /// The group replies go to.
    pub reply_to_group_id: Option<String>,
}

impl Properties {
    fn read(mut fields: FieldReader) -> Result<Self, AmqpCodecError> {
        Ok(Self {
            message_id: fields.optional("message-id")?,
            user_id: fields.optional("user-id")?,
            to: address(&mut fields, "to")?,
            subject: fields.optional("subject")?,
            reply_to: address(&mut fields, "reply-to")?,
            correlation_id: fields.optional("correlation-id")?,
            content_type: fields.optional("content-type")?,
            content_encoding: fields.optional("content-encoding")?,
            absolute_expiry_time: fields.optional("absolute-expiry-time")?,
            creation_time: fields.optional("creation-time")?,
            group_id: fields.optional("group-id")?,
            group_sequence: fields.optional("group-sequence")?,
            reply_to_group_id: fields.optional("reply-to-group-id")?,
        })
    }

    fn encode(&self, buf: &mut BytesMut) {
        write_list(buf, SECTION_TYPES[3], 13, |buf| {
            self.message_id.encode(buf);
            self.user_id.encode(buf);
            self.to.encode(buf);
            self.subject.encode(buf);
            self.reply_to.encode(buf);
            self.correlation_id.encode(buf);
            self.content_type.encode(buf);
            self.content_encoding.encode(buf);
            self.absolute_expiry_time.encode(buf);
            self.creation_time.encode(buf);
            self.group_id.encode(buf);
            self.group_sequence.encode(buf);
            self.reply_to_group_id.encode(buf);
        });
    }
}

/// The body of a message (§3.2): data sections, amqp-sequence sections, or one amqp-value section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// One `data` section (`0x75`) per element: what the IoT Hub SDKs send. An empty vector encodes no
    /// body section at all, and a message without body decodes to it.
    Data(Vec<Bytes>),
    /// One `amqp-sequence` section (`0x76`) per element. An empty vector encodes no body section.
    Sequence(Vec<Vec<Value>>),
    /// One `amqp-value` section (`0x77`), e.g. the CBS put-token string or a `$management` map reply.
    Value(Value),
}

impl Default for Body {
    fn default() -> Self {
        Self::Data(Vec::new())
    }
}

impl Body {
    /// The body as bytes: the data sections joined (the IoT Hub SDKs send one), or an `amqp-value`
    /// of binary, string or null; `None` for other values and sequences.
    pub fn data_bytes(&self) -> Option<Bytes> {
        match self {
            Self::Data(sections) => match sections.as_slice() {
                [] => Some(Bytes::new()),
                [one] => Some(one.clone()),
                many => {
                    let mut joined = BytesMut::new();
                    for section in many {
                        joined.extend_from_slice(section);
                    }
                    Some(joined.freeze())
                }
            },
            Self::Value(Value::Binary(bytes)) => Some(bytes.clone()),
            Self::Value(Value::String(text)) => Some(Bytes::from(text.clone())),
            Self::Value(Value::Null) => Some(Bytes::new()),
            Self::Value(_) | Self::Sequence(_) => None,
        }
    }
}

/// An AMQP message: what a transfer (or several, with `more`) carries (§3.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// The header section.
    pub header: Option<Header>,
    /// The delivery-annotations section (for the next hop only).
    pub delivery_annotations: Option<Annotations>,
    /// The message-annotations section, e.g. `x-opt-sequence-number`, `iothub-*` annotations.
    pub message_annotations: Option<Annotations>,
    /// The properties section.
    pub properties: Option<Properties>,
    /// The application-properties section: the IoT Hub message's custom properties.
    pub application_properties: Option<ApplicationProperties>,
    /// The body.
    pub body: Body,
    /// The footer section.
    pub footer: Option<Annotations>,
}

impl Field for Vec<(String, Value)> {
    fn from_value(value: Value) -> Result<Self, Option<AmqpCodecError>> {
        match value {
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(key, value)| match key {
                    Value::String(key) => Ok((key, value)),
                    _ => Err(None),
                })
                .collect(),
            _ => Err(None),
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        encode::map(buf, self.len(), |buf| {
            for (key, value) in self {
                encode::string(buf, key);
                encode::value(buf, value);
            }
        });
    }
}

/// Converts a section's map value, naming the section when it is not a map or its keys are wrong.
fn map_section<T: Field>(section: CompositeType, value: Value) -> Result<T, AmqpCodecError> {
    T::from_value(value).map_err(|error| {
        error.unwrap_or(AmqpCodecError::InvalidComposite {
            composite: section.name,
            expected: "map",
        })
    })
}

/// Fails with "`what` appears twice" when `slot` is already filled.
fn once<T>(slot: &mut Option<T>, value: T, what: &'static str) -> Result<(), AmqpCodecError> {
    if slot.is_some() {
        return Err(AmqpCodecError::InvalidMessage(what));
    }
    *slot = Some(value);
    Ok(())
}

impl Message {
    /// Returns a message whose body is one data section.
    pub fn with_data(data: impl Into<Bytes>) -> Self {
        Self {
            body: Body::Data(vec![data.into()]),
            ..Self::default()
        }
    }

    /// Returns a message whose body is one amqp-value section.
    pub fn with_value(value: Value) -> Self {
        Self {
            body: Body::Value(value),
            ..Self::default()
        }
    }

    /// Returns the message annotation named `key` (a symbol key).
    pub fn message_annotation(&self, key: &str) -> Option<&Value> {
        let annotations = self.message_annotations.as_ref()?;
        annotations
            .iter()
            .find(|(k, _)| matches!(k, Value::Symbol(symbol) if symbol == key))
            .map(|(_, value)| value)
    }

    /// Returns the application property named `key`.
    pub fn application_property(&self, key: &str) -> Option<&Value> {
        let properties = self.application_properties.as_ref()?;
        properties.iter().find(|(k, _)| k == key).map(|(_, value)| value)
    }

    /// Decodes a complete transfer payload: the concatenated payloads of every transfer of one delivery.
    ///
    /// Data sections are slices of `payload`, not copies. Sections are accepted in any order (the spec
    /// orders them, §3.2, but nothing is gained by refusing a misordered peer); a section other than
    /// data and amqp-sequence may appear once, and body kinds may not be mixed.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] when the payload is not a sequence of valid sections.
    pub fn decode(payload: impl Into<Bytes>) -> Result<Self, AmqpCodecError> {
        let mut input = payload.into();
        let mut reader = Reader::new(&mut input);
        let mut message = Self::default();
        let mut sequence = Vec::new();
        let mut data = Vec::new();
        let mut value = None;
        while !reader.is_empty() {
            let (descriptor, section) = composite::split_described(reader.value()?, "message section")?;
            let Some(code) = composite::code_of(&descriptor, &SECTION_TYPES) else {
                return Err(AmqpCodecError::UnexpectedDescriptor {
                    expected: "message section",
                    found: descriptor,
                });
            };
            let ty = SECTION_TYPES[usize::try_from(code - 0x70).unwrap_or(0)];
            match code {
                0x70 => once(
                    &mut message.header,
                    Header::read(FieldReader::new(ty, section)?)?,
                    "two headers",
                )?,
                0x71 => once(
                    &mut message.delivery_annotations,
                    map_section(ty, section)?,
                    "two delivery-annotations sections",
                )?,
                0x72 => once(
                    &mut message.message_annotations,
                    map_section(ty, section)?,
                    "two message-annotations sections",
                )?,
                0x73 => once(
                    &mut message.properties,
                    Properties::read(FieldReader::new(ty, section)?)?,
                    "two properties sections",
                )?,
                0x74 => once(
                    &mut message.application_properties,
                    map_section(ty, section)?,
                    "two application-properties sections",
                )?,
                0x75 => match section {
                    Value::Binary(bytes) => data.push(bytes),
                    _ => {
                        return Err(AmqpCodecError::InvalidComposite {
                            composite: "data",
                            expected: "binary",
                        });
                    }
                },
                0x76 => match section {
                    Value::List(items) => sequence.push(items),
                    _ => {
                        return Err(AmqpCodecError::InvalidComposite {
                            composite: "amqp-sequence",
                            expected: "list",
                        });
                    }
                },
                0x77 => once(&mut value, section, "two amqp-value sections")?,
                _ => once(&mut message.footer, map_section(ty, section)?, "two footers")?,
            }
        }
        message.body = match (data.is_empty(), sequence.is_empty(), value) {
            (_, true, None) => Body::Data(data),
            (true, false, None) => Body::Sequence(sequence),
            (true, true, Some(value)) => Body::Value(value),
            _ => return Err(AmqpCodecError::InvalidMessage("mixed body sections")),
        };
        Ok(message)
    }

    /// Appends the message's sections in spec order (§3.2); each list section is written with all its
    /// fields (wire reference §7.6).
    pub fn encode(&self, buf: &mut BytesMut) {
        if let Some(header) = &self.header {
            header.encode(buf);
        }
        if let Some(annotations) = &self.delivery_annotations {
            described(buf, 0x71, |buf| annotations.encode(buf));
        }
        if let Some(annotations) = &self.message_annotations {
            described(buf, 0x72, |buf| annotations.encode(buf));
        }
        if let Some(properties) = &self.properties {
            properties.encode(buf);
        }
        if let Some(properties) = &self.application_properties {
            described(buf, 0x74, |buf| properties.encode(buf));
        }
        match &self.body {
            Body::Data(sections) => {
                for data in sections {
                    described(buf, 0x75, |buf| encode::binary(buf, data));
                }
            }
            Body::Sequence(sections) => {
                for items in sections {
                    described(buf, 0x76, |buf| {
                        encode::list(buf, items.len(), |buf| {
                            items.iter().for_each(|item| encode::value(buf, item))
                        });
                    });
                }
            }
            Body::Value(value) => described(buf, 0x77, |buf| encode::value(buf, value)),
        }
        if let Some(footer) = &self.footer {
            described(buf, 0x78, |buf| footer.encode(buf));
        }
    }

    /// Returns the encoded message, ready to be a transfer payload.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

/// Writes a section: its descriptor, then its value written by `value`.
fn described(buf: &mut BytesMut, code: u64, value: impl FnOnce(&mut BytesMut)) {
    encode::descriptor(buf, &Descriptor::Code(code));
    value(buf);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn telemetry_message_round_trips_with_full_properties_list() {
        let message = Message {
            properties: Some(Properties {
                message_id: Some(MessageId::Uuid([7; 16])),
                to: Some("/devices/dev1/messages/events".into()),
                content_type: Some("application/json".into()),
                ..Properties::default()
            }),
            application_properties: Some(vec![("k".into(), Value::from("v"))]),
            message_annotations: Some(vec![(
                Value::Symbol("iothub-interface-id".into()),
                Value::from("x"),
            )]),
            ..Message::with_data(Bytes::from_static(b"{\"t\":1}"))
        };
        let bytes = message.to_bytes();
        // The properties section comes first here and carries all 13 fields.
        let properties_at = bytes.windows(3).position(|w| w == [0x00, 0x53, 0x73]).unwrap();
        assert_eq!(bytes[properties_at + 3], 0xc0);
        assert_eq!(bytes[properties_at + 5], 13);
        let decoded = Message::decode(bytes).unwrap();
        assert_eq!(decoded, message);
        assert_eq!(decoded.application_property("k"), Some(&Value::from("v")));
        assert_eq!(
            decoded.message_annotation("iothub-interface-id"),
            Some(&Value::from("x"))
        );
    }

    #[test]
    fn message_ids_keep_their_amqp_type() {
        for id in [
            MessageId::Ulong(0),
            MessageId::Uuid([1; 16]),
            MessageId::Binary(Bytes::from_static(b"id")),
            MessageId::String("id".into()),
        ] {
            let message = Message {
                properties: Some(Properties {
                    correlation_id: Some(id.clone()),
                    ..Properties::default()
                }),
                ..Message::default()
            };
            let decoded = Message::decode(message.to_bytes()).unwrap();
            assert_eq!(decoded.properties.unwrap().correlation_id, Some(id));
        }
    }

    #[test]
    fn bodies_of_every_kind_round_trip() {
        for body in [
            Body::Data(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]),
            Body::Sequence(vec![vec![Value::Int(1)], vec![]]),
            Body::Value(Value::from("SharedAccessSignature sr=…")),
            Body::Data(vec![]),
        ] {
            let message = Message {
                header: Some(Header {
                    durable: true,
                    ..Header::default()
                }),
                footer: Some(vec![]),
                body,
                ..Message::default()
            };
            assert_eq!(Message::decode(message.to_bytes()), Ok(message));
        }
    }

    #[test]
    fn invalid_section_sequences_are_refused() {
        let data = [0x00, 0x53, 0x75, 0xa0, 1, b'x'];
        let value = [0x00, 0x53, 0x77, 0x40];
        assert_eq!(
            Message::decode([&data[..], &value].concat()),
            Err(AmqpCodecError::InvalidMessage("mixed body sections"))
        );
        assert_eq!(
            Message::decode([&value[..], &value].concat()),
            Err(AmqpCodecError::InvalidMessage("two amqp-value sections"))
        );
        assert!(matches!(
            Message::decode(vec![0x00, 0x53, 0x79, 0x40]),
            Err(AmqpCodecError::UnexpectedDescriptor { .. })
        ));
        assert!(matches!(
            Message::decode(vec![0x00, 0x53, 0x74, 0xc1, 3, 2, 0x43, 0x40]),
            Err(AmqpCodecError::InvalidComposite { .. })
        ));
        assert_eq!(Message::decode(Bytes::new()), Ok(Message::default()));
    }
}
