//! A cloud-to-device message as the service SDKs send it on `/messages/devicebound` (wire reference
//! §6), turned into the hub's [`C2dMessage`]: the destination from `properties.to`, the system
//! properties, `iothub-ack`, the custom application properties and the body. Pure: the link code
//! enqueues what this returns.

use bytes::Bytes;
use outpost_core::{C2dDestination, C2dMessage, FeedbackAck};
use outpost_model::{DeviceId, Timestamp};

use super::super::text::{id_text, percent_decode, property_text};
use crate::definitions::{Error, condition};
use crate::message::{Message, MessageId};

/// Azure's limit on a cloud-to-device message body (64 KiB).
pub(super) const MAX_BODY: usize = 64 * 1024;

/// The application property that asks for feedback (wire reference §2.5, §6).
const ACK: &str = "iothub-ack";

/// Why a message sent on `/messages/devicebound` cannot be queued. Each maps to the condition the
/// delivery is rejected with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum C2dMessageError {
    /// No `properties.to`.
    #[error("the message has no 'to' property naming the device")]
    NoDestination,
    /// `to` is not `/devices/<id>/messages/devicebound`.
    #[error("'{0}' is not /devices/<id>/messages/devicebound")]
    BadDestination(String),
    /// `to` names a module: the hub queues messages for devices only; modules get theirs on inputs.
    #[error(
        "cloud-to-device messages to modules are not supported; modules receive messages on their inputs"
    )]
    ModuleDestination,
    /// A system property of a type the hub cannot keep (e.g. a non-UTF-8 user id).
    #[error("the message's {0} is not text")]
    BadProperty(&'static str),
    /// `iothub-ack` is not none, positive, negative or full.
    #[error("iothub-ack must be none, positive, negative or full, not '{0}'")]
    BadAck(String),
    /// A custom application property that is not a scalar.
    #[error("application property '{0}' must be a string or a number")]
    BadApplicationProperty(String),
    /// The body is an amqp-sequence or a non-binary amqp-value.
    #[error("the body must be data sections")]
    BadBody,
    /// The body is larger than Azure's 64 KiB.
    #[error("the message body is {0} bytes; cloud-to-device messages are at most 65536")]
    TooLarge(usize),
}

impl C2dMessageError {
    /// The AMQP error the delivery is rejected with.
    pub(super) fn to_amqp(&self) -> Error {
        let condition = match self {
            Self::ModuleDestination => condition::NOT_IMPLEMENTED,
            Self::TooLarge(_) => condition::MESSAGE_SIZE_EXCEEDED,
            Self::BadBody => condition::DECODE_ERROR,
            _ => condition::INVALID_FIELD,
        };
        Error::new(condition, self.to_string())
    }
}

/// Maps a decoded message to where it goes and what is queued. `to` is set by the core from the
/// destination; the enqueued time and the default expiry too.
pub(super) fn c2d_message(message: Message) -> Result<(C2dDestination, C2dMessage), C2dMessageError> {
    let properties = message.properties.unwrap_or_default();
    let to = properties.to.ok_or(C2dMessageError::NoDestination)?;
    let device = destination(&to)?;
    let text = |bytes: Bytes, what| {
        String::from_utf8(bytes.to_vec()).map_err(|_| C2dMessageError::BadProperty(what))
    };
    let id = |id: MessageId, what| id_text(&id).ok_or(C2dMessageError::BadProperty(what));
    let message_id = properties
        .message_id
        .map(|message_id| id(message_id, "message id"))
        .transpose()?;
    let correlation_id = properties
        .correlation_id
        .map(|correlation_id| id(correlation_id, "correlation id"))
        .transpose()?;
    let user_id = properties.user_id.map(|id| text(id, "user id")).transpose()?;
    let expiry = properties
        .absolute_expiry_time
        .map_or(Timestamp::NEVER, |at| Timestamp::from_unix_millis(at.0));
    let mut ack = FeedbackAck::None;
    let mut application_properties = Vec::new();
    for (key, value) in message.application_properties.unwrap_or_default() {
        let Some(value) = property_text(&value) else {
            return Err(C2dMessageError::BadApplicationProperty(key));
        };
        if key.eq_ignore_ascii_case(ACK) {
            ack = match value.to_ascii_lowercase().as_str() {
                "none" => FeedbackAck::None,
                "positive" => FeedbackAck::Positive,
                "negative" => FeedbackAck::Negative,
                "full" => FeedbackAck::Full,
                _ => return Err(C2dMessageError::BadAck(value)),
            };
            // Kept as `ack`: the doors put it back as `iothub-ack` (wire reference §2.5).
            continue;
        }
        application_properties.push((key, value));
    }
    let body = message.body.data_bytes().ok_or(C2dMessageError::BadBody)?;
    if body.len() > MAX_BODY {
        return Err(C2dMessageError::TooLarge(body.len()));
    }
    let message = C2dMessage {
        message_id,
        correlation_id,
        user_id,
        to: String::new(),
        content_type: properties.content_type.map(|s| s.into_string()),
        content_encoding: properties.content_encoding.map(|s| s.into_string()),
        expiry,
        ack,
        application_properties,
        body,
        enqueued_time: Timestamp::NEVER,
    };
    Ok((C2dDestination::device(device), message))
}

/// The device of `/devices/<id>/messages/devicebound` (the id URL-encoded by Node, raw by Python).
fn destination(to: &str) -> Result<DeviceId, C2dMessageError> {
    let bad = || C2dMessageError::BadDestination(to.to_owned());
    let path = to.trim_end_matches('/');
    let path = path.strip_prefix('/').unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    let segment = |i: usize, name: &str| parts.get(i).is_some_and(|p| p.eq_ignore_ascii_case(name));
    match parts.len() {
        4 if segment(0, "devices") && segment(2, "messages") && segment(3, "devicebound") => {
            let id = percent_decode(parts[1]).unwrap_or_else(|| parts[1].to_owned());
            DeviceId::new(&id).map_err(|_| bad())
        }
        6 if segment(0, "devices")
            && segment(2, "modules")
            && segment(4, "messages")
            && segment(5, "devicebound") =>
        {
            Err(C2dMessageError::ModuleDestination)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::message::{Body, Properties};
    use crate::value::Timestamp as AmqpTimestamp;
    use crate::value::Value;

    fn message(to: &str) -> Message {
        Message {
            properties: Some(Properties {
                to: Some(to.into()),
                ..Properties::default()
            }),
            ..Message::with_data(Bytes::from_static(b"hello device"))
        }
    }

    #[test]
    fn node_message_maps_every_property() {
        let uuid = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        ];
        let sent = Message {
            properties: Some(Properties {
                message_id: Some(MessageId::String("c2d-1".into())),
                correlation_id: Some(MessageId::Uuid(uuid)),
                user_id: Some(Bytes::from_static(b"ops")),
                to: Some("/devices/dev%3Aone%2B/messages/devicebound".into()),
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                absolute_expiry_time: Some(AmqpTimestamp(1_800_000_000_000)),
                ..Properties::default()
            }),
            application_properties: Some(vec![
                ("iothub-ack".into(), Value::from("Full")),
                ("k".into(), Value::from("v")),
                ("n".into(), Value::Int(3)),
            ]),
            ..Message::with_data(Bytes::from_static(b"{\"cmd\":1}"))
        };
        let (destination, message) = c2d_message(sent).unwrap();
        assert_eq!(
            destination,
            C2dDestination::device(DeviceId::new("dev:one+").unwrap())
        );
        assert_eq!(message.message_id.as_deref(), Some("c2d-1"));
        assert_eq!(
            message.correlation_id.as_deref(),
            Some("12345678-9abc-4def-8123-456789abcdef")
        );
        assert_eq!(message.user_id.as_deref(), Some("ops"));
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(message.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(message.expiry.unix_millis(), Some(1_800_000_000_000));
        assert_eq!(message.ack, FeedbackAck::Full);
        assert_eq!(
            message.application_properties,
            vec![("k".to_owned(), "v".to_owned()), ("n".to_owned(), "3".to_owned())]
        );
        assert_eq!(&message.body[..], b"{\"cmd\":1}");
    }

    #[test]
    fn python_message_defaults() {
        let (destination, message) = c2d_message(message("/devices/py-dev/messages/devicebound")).unwrap();
        assert_eq!(destination.device.as_str(), "py-dev");
        assert_eq!(message.ack, FeedbackAck::None);
        assert!(
            message.expiry.is_never(),
            "the core applies the default time to live"
        );
        assert_eq!(message.message_id, None);
        assert_eq!(&message.body[..], b"hello device");
    }

    #[test]
    fn destinations() {
        assert!(c2d_message(message("devices/d1/Messages/DeviceBound/")).is_ok());
        assert_eq!(
            c2d_message(message("/devices/d1/modules/m1/messages/devicebound")).unwrap_err(),
            C2dMessageError::ModuleDestination
        );
        for bad in [
            "/devices/d1/messages/events",
            "/devices//messages/devicebound",
            "/messages/devicebound",
            "",
        ] {
            assert!(
                matches!(c2d_message(message(bad)), Err(C2dMessageError::BadDestination(_))),
                "{bad}"
            );
        }
        let mut no_to = message("x");
        no_to.properties = None;
        assert_eq!(c2d_message(no_to).unwrap_err(), C2dMessageError::NoDestination);
        // A bad escape is taken literally (device ids may contain '%').
        assert_eq!(
            c2d_message(message("/devices/a%zz/messages/devicebound"))
                .unwrap()
                .0
                .device
                .as_str(),
            "a%zz"
        );
    }

    #[test]
    fn malformed_messages_are_refused_with_their_condition() {
        let mut bad_ack = message("/devices/d1/messages/devicebound");
        bad_ack.application_properties = Some(vec![("iothub-ack".into(), Value::from("sometimes"))]);
        let error = c2d_message(bad_ack).unwrap_err();
        assert_eq!(error.to_amqp().condition.as_str(), condition::INVALID_FIELD);

        let mut compound = message("/devices/d1/messages/devicebound");
        compound.application_properties = Some(vec![("k".into(), Value::List(vec![]))]);
        assert_eq!(
            c2d_message(compound).unwrap_err(),
            C2dMessageError::BadApplicationProperty("k".into())
        );

        let mut sequence = message("/devices/d1/messages/devicebound");
        sequence.body = Body::Sequence(vec![vec![Value::Int(1)]]);
        assert_eq!(
            c2d_message(sequence).unwrap_err().to_amqp().condition.as_str(),
            condition::DECODE_ERROR
        );

        let mut large = message("/devices/d1/messages/devicebound");
        large.body = Body::Data(vec![Bytes::from(vec![0; MAX_BODY]), Bytes::from_static(b"x")]);
        assert_eq!(
            c2d_message(large).unwrap_err().to_amqp().condition.as_str(),
            condition::MESSAGE_SIZE_EXCEEDED
        );

        let mut user = message("/devices/d1/messages/devicebound");
        if let Some(properties) = user.properties.as_mut() {
            properties.user_id = Some(Bytes::from_static(b"\xff"));
        }
        assert_eq!(
            c2d_message(user).unwrap_err(),
            C2dMessageError::BadProperty("user id")
        );
    }

    #[test]
    fn bodies_and_ids() {
        let mut two = message("/devices/d1/messages/devicebound");
        two.body = Body::Data(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
        assert_eq!(&c2d_message(two).unwrap().1.body[..], b"abcd");
        let mut value = message("/devices/d1/messages/devicebound");
        value.body = Body::Value(Value::from("text"));
        assert_eq!(&c2d_message(value).unwrap().1.body[..], b"text");
        let mut ulong = message("/devices/d1/messages/devicebound");
        ulong.properties.as_mut().unwrap().message_id = Some(MessageId::Ulong(7));
        assert_eq!(c2d_message(ulong).unwrap().1.message_id.as_deref(), Some("7"));
        let mut sequence = message("/devices/d1/messages/devicebound");
        sequence.body = Body::Sequence(vec![vec![Value::Int(1)]]);
        assert!(c2d_message(sequence).is_err());
    }
}
