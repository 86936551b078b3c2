//! The messages of device links (wire reference §3), as pure functions: a device's telemetry into
//! the hub's [`OutgoingMessage`], queued cloud-to-device messages, twin requests and answers,
//! desired-property notifications, and method calls and answers.

use bytes::Bytes;
use outpost_core::{FeedbackAck, OutgoingMessage, QueuedMessage};
use outpost_model::SystemProperties;

use super::super::text::{id_text, parse_uuid, property_text};
use crate::message::{Annotations, Body, Header, Message, MessageId, Properties};
use crate::value::{Symbol, Timestamp, Value};

/// The application property naming a module's output (wire reference §3).
const OUTPUT_NAME: &str = "iothub-outputname";
/// The application property of a method call's name (wire reference §3).
pub(super) const METHOD_NAME: &str = "IoThub-methodname";
/// The application property of a method answer's status (wire reference §3).
const METHOD_STATUS: &str = "IoThub-status";
/// The twin resource of desired-property notifications (wire reference §3).
const DESIRED_NOTIFICATIONS: &str = "/notifications/twin/properties/desired";
/// The twin resource of reported-property patches.
const REPORTED: &str = "/properties/reported";

fn annotation_text(message: &Message, key: &str) -> Option<String> {
    message.message_annotation(key).and_then(property_text)
}

/// A device's telemetry message (wire reference §3): properties, application properties (the
/// module output name among them), the `iothub-interface-id` and `dt-subject` annotations, and
/// the body. Fails for a body that is neither data nor a binary or text value.
pub(super) fn telemetry_message(message: Message) -> Result<OutgoingMessage, &'static str> {
    let body = message
        .body
        .data_bytes()
        .ok_or("the body must be data sections")?;
    let p = message.properties.clone().unwrap_or_default();
    let mut properties = SystemProperties {
        message_id: p.message_id.as_ref().and_then(id_text),
        correlation_id: p.correlation_id.as_ref().and_then(id_text),
        user_id: p.user_id.map(|id| String::from_utf8_lossy(&id).into_owned()),
        to: p.to,
        content_type: p.content_type.map(|t| t.as_str().to_owned()),
        content_encoding: p.content_encoding.map(|e| e.as_str().to_owned()),
        expiry_time: p
            .absolute_expiry_time
            .map(|Timestamp(ms)| outpost_model::Timestamp::from_unix_millis(ms).to_string()),
        interface_id: annotation_text(&message, "iothub-interface-id"),
        output_name: None,
        subject: annotation_text(&message, "dt-subject"),
    };
    let mut application_properties = Vec::new();
    for (key, value) in message.application_properties.unwrap_or_default() {
        let Some(value) = property_text(&value) else {
            continue;
        };
        if key == OUTPUT_NAME {
            properties.output_name = Some(value);
        } else {
            application_properties.push((key, value));
        }
    }
    Ok(OutgoingMessage {
        properties,
        application_properties,
        body,
    })
}

fn symbol(name: &str) -> Value {
    Value::Symbol(Symbol::from(name))
}

/// A queued cloud-to-device message as the device receives it (wire reference §3, §6): its
/// properties, `iothub-ack` and the custom properties as application properties, and for a module
/// the input name in `x-opt-input-name`. Sent unsettled; the header counts earlier deliveries.
pub(super) fn c2d_message(queued: &QueuedMessage, module: bool) -> Message {
    let message = &queued.message;
    let ack = match message.ack {
        FeedbackAck::None => None,
        FeedbackAck::Positive => Some("positive"),
        FeedbackAck::Negative => Some("negative"),
        FeedbackAck::Full => Some("full"),
    };
    let application_properties: Vec<(String, Value)> = ack
        .map(|ack| ("iothub-ack".to_owned(), Value::String(ack.to_owned())))
        .into_iter()
        .chain(
            message
                .application_properties
                .iter()
                .map(|(key, value)| (key.clone(), Value::String(value.clone()))),
        )
        .collect();
    let message_annotations: Option<Annotations> = module
        .then(|| message.to.rsplit_once("/inputs/"))
        .flatten()
        .map(|(_, input)| vec![(symbol("x-opt-input-name"), Value::String(input.to_owned()))]);
    Message {
        header: Some(Header {
            durable: true,
            delivery_count: queued.delivery_count.saturating_sub(1),
            first_acquirer: queued.delivery_count <= 1,
            ..Header::default()
        }),
        message_annotations,
        properties: Some(Properties {
            message_id: message.message_id.clone().map(MessageId::String),
            user_id: message.user_id.clone().map(Bytes::from),
            to: Some(message.to.clone()),
            correlation_id: message.correlation_id.clone().map(MessageId::String),
            content_type: message.content_type.as_deref().map(Symbol::from),
            content_encoding: message.content_encoding.as_deref().map(Symbol::from),
            absolute_expiry_time: (!message.expiry.is_never())
                .then(|| message.expiry.unix_millis())
                .flatten()
                .map(Timestamp),
            ..Properties::default()
        }),
        application_properties: (!application_properties.is_empty()).then_some(application_properties),
        body: Body::Data(vec![message.body.clone()]),
        footer: None,
        delivery_annotations: None,
    }
}

/// A twin request of a device (wire reference §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TwinRequest {
    /// `GET`: the twin's desired and reported properties.
    Get,
    /// `PATCH /properties/reported` with the JSON patch.
    PatchReported(Bytes),
    /// `PUT /notifications/twin/properties/desired`.
    Subscribe,
    /// `DELETE /notifications/twin/properties/desired`.
    Unsubscribe,
}

/// Reads a twin request from its `operation` and `resource` annotations.
pub(super) fn twin_request(message: &Message) -> Result<TwinRequest, String> {
    let operation = annotation_text(message, "operation").ok_or("the request has no operation")?;
    let resource = annotation_text(message, "resource");
    let resource = resource.as_deref().map(|r| r.trim_end_matches('/'));
    let is = |expected: &str| resource.is_some_and(|r| r.eq_ignore_ascii_case(expected));
    match operation.to_ascii_uppercase().as_str() {
        "GET" => Ok(TwinRequest::Get),
        "PATCH" if is(REPORTED) => {
            let body = message
                .body
                .data_bytes()
                .ok_or("the patch must be a data section")?;
            Ok(TwinRequest::PatchReported(body))
        }
        "PUT" if is(DESIRED_NOTIFICATIONS) => Ok(TwinRequest::Subscribe),
        "DELETE" if is(DESIRED_NOTIFICATIONS) => Ok(TwinRequest::Unsubscribe),
        _ => Err(format!(
            "unsupported twin operation {operation} on {}",
            resource.unwrap_or("(no resource)")
        )),
    }
}

/// The answer to a twin request: the request's correlation id (same AMQP type), annotations
/// `status` (int) and, when known, `version` (long), and the JSON body as one data section.
pub(super) fn twin_answer(
    correlation_id: Option<MessageId>,
    status: u16,
    version: Option<u64>,
    body: Bytes,
) -> Message {
    let mut annotations = vec![(symbol("status"), Value::Int(i32::from(status)))];
    if let Some(version) = version {
        annotations.push((
            symbol("version"),
            Value::Long(i64::try_from(version).unwrap_or(i64::MAX)),
        ));
    }
    Message {
        message_annotations: Some(annotations),
        properties: Some(Properties {
            correlation_id,
            ..Properties::default()
        }),
        body: Body::Data(vec![body]),
        ..Message::default()
    }
}

/// A desired-property notification: no correlation id, the patch (with `$version`) as the body.
pub(super) fn desired_notification(patch: String) -> Message {
    Message::with_data(patch)
}

/// A method call to the device: its name in `IoThub-methodname`, a UUID correlation id, the JSON
/// payload as the body.
pub(super) fn method_request(name: &str, correlation: [u8; 16], payload: String) -> Message {
    Message {
        properties: Some(Properties {
            message_id: Some(MessageId::Uuid(correlation)),
            correlation_id: Some(MessageId::Uuid(correlation)),
            ..Properties::default()
        }),
        application_properties: Some(vec![(METHOD_NAME.to_owned(), Value::String(name.to_owned()))]),
        body: Body::Data(vec![Bytes::from(payload)]),
        ..Message::default()
    }
}

/// A device's answer to a method call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MethodAnswer {
    /// The call's correlation id.
    pub(super) correlation: [u8; 16],
    /// The status the device returned.
    pub(super) status: i32,
    /// The JSON payload the device returned.
    pub(super) payload: Bytes,
}

/// Reads a method answer: the correlation id as a UUID (the Node SDK sends the call's id back as
/// `uuid`, or as text), `IoThub-status` as an integer (or its text).
pub(super) fn method_answer(message: &Message) -> Result<MethodAnswer, &'static str> {
    let correlation = match message
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.as_ref())
    {
        Some(MessageId::Uuid(bytes)) => *bytes,
        Some(MessageId::String(text)) => parse_uuid(text).ok_or("the correlation id is not a call's")?,
        _ => return Err("the answer has no correlation id"),
    };
    let status = match message.application_property(METHOD_STATUS) {
        Some(Value::Int(status)) => *status,
        Some(Value::Long(status)) => i32::try_from(*status).map_err(|_| "the status is out of range")?,
        Some(Value::Uint(status)) => i32::try_from(*status).map_err(|_| "the status is out of range")?,
        Some(Value::Short(status)) => i32::from(*status),
        Some(Value::String(text)) => text.trim().parse().map_err(|_| "the status is not a number")?,
        _ => return Err("the answer has no IoThub-status"),
    };
    let payload = message
        .body
        .data_bytes()
        .ok_or("the payload must be a data section")?;
    Ok(MethodAnswer {
        correlation,
        status,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use outpost_core::C2dMessage;

    use super::*;

    const UUID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    ];

    /// Encodes and decodes, as the message crosses the wire.
    fn wire(message: &Message) -> Message {
        Message::decode(message.to_bytes()).expect("a message the hub encodes decodes")
    }

    #[test]
    fn telemetry_keeps_properties_annotations_and_body() {
        let message = Message {
            message_annotations: Some(vec![
                (symbol("iothub-interface-id"), Value::String("urn:x".into())),
                (symbol("dt-subject"), Value::String("thermostat1".into())),
            ]),
            properties: Some(Properties {
                message_id: Some(MessageId::Uuid(UUID)),
                correlation_id: Some(MessageId::String("cid-1".into())),
                user_id: Some(Bytes::from_static(b"ops")),
                to: Some("/devices/dev1/messages/events".into()),
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                absolute_expiry_time: Some(Timestamp(1_700_000_000_000)),
                ..Properties::default()
            }),
            application_properties: Some(vec![
                ("alert".into(), Value::String("high temp".into())),
                ("count".into(), Value::Int(3)),
                ("flag".into(), Value::Bool(true)),
                ("skipped".into(), Value::Null),
                (OUTPUT_NAME.into(), Value::String("alerts".into())),
            ]),
            body: Body::Data(vec![Bytes::from_static(b"{\"t\":"), Bytes::from_static(b"21}")]),
            ..Message::default()
        };
        let outgoing = telemetry_message(wire(&message)).expect("telemetry maps");
        let p = &outgoing.properties;
        assert_eq!(
            p.message_id.as_deref(),
            Some("12345678-9abc-4def-8001-020304050607")
        );
        assert_eq!(p.correlation_id.as_deref(), Some("cid-1"));
        assert_eq!(p.user_id.as_deref(), Some("ops"));
        assert_eq!(p.to.as_deref(), Some("/devices/dev1/messages/events"));
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert_eq!(p.content_encoding.as_deref(), Some("utf-8"));
        let expiry = p
            .expiry_time
            .as_deref()
            .and_then(|t| t.parse::<outpost_model::Timestamp>().ok());
        assert_eq!(expiry.and_then(|t| t.unix_millis()), Some(1_700_000_000_000));
        assert_eq!(p.interface_id.as_deref(), Some("urn:x"));
        assert_eq!(p.subject.as_deref(), Some("thermostat1"));
        assert_eq!(p.output_name.as_deref(), Some("alerts"));
        assert_eq!(
            outgoing.application_properties,
            vec![
                ("alert".to_owned(), "high temp".to_owned()),
                ("count".to_owned(), "3".to_owned()),
                ("flag".to_owned(), "true".to_owned()),
            ]
        );
        assert_eq!(outgoing.body, Bytes::from_static(b"{\"t\":21}"));
    }

    #[test]
    fn telemetry_bodies() {
        let plain = telemetry_message(Message::default()).expect("an empty body is a message");
        assert_eq!(plain.body, Bytes::new());
        assert_eq!(plain.properties, SystemProperties::default());
        let text = telemetry_message(Message::with_value(Value::String("hi".into())));
        assert_eq!(text.map(|m| m.body), Ok(Bytes::from_static(b"hi")));
        assert!(telemetry_message(Message::with_value(Value::Int(1))).is_err());
    }

    fn queued(to: &str, ack: FeedbackAck) -> QueuedMessage {
        QueuedMessage {
            sequence_number: 7,
            message: C2dMessage {
                message_id: Some("c2d-1".into()),
                correlation_id: Some("cid".into()),
                user_id: Some("ops".into()),
                to: to.into(),
                content_type: Some("text/plain".into()),
                content_encoding: Some("utf-8".into()),
                expiry: outpost_model::Timestamp::from_unix_millis(1_800_000_000_000),
                ack,
                application_properties: vec![("k".into(), "v".into())],
                body: Bytes::from_static(b"hello device"),
                enqueued_time: outpost_model::Timestamp::from_unix_millis(1_700_000_000_000),
            },
            delivery_count: 2,
            lock: None,
        }
    }

    #[test]
    fn cloud_to_device_messages_carry_properties_and_ack() {
        let message = wire(&c2d_message(
            &queued("/devices/dev1/messages/devicebound", FeedbackAck::Full),
            false,
        ));
        let p = message.properties.clone().unwrap_or_default();
        assert_eq!(p.message_id, Some(MessageId::String("c2d-1".into())));
        assert_eq!(p.correlation_id, Some(MessageId::String("cid".into())));
        assert_eq!(p.user_id, Some(Bytes::from_static(b"ops")));
        assert_eq!(p.to.as_deref(), Some("/devices/dev1/messages/devicebound"));
        assert_eq!(p.content_type, Some(Symbol::from("text/plain")));
        assert_eq!(p.content_encoding, Some(Symbol::from("utf-8")));
        assert_eq!(p.absolute_expiry_time, Some(Timestamp(1_800_000_000_000)));
        assert_eq!(
            message.application_properties,
            Some(vec![
                ("iothub-ack".to_owned(), Value::String("full".into())),
                ("k".to_owned(), Value::String("v".into())),
            ])
        );
        assert_eq!(message.message_annotations, None);
        assert_eq!(message.header.map(|h| h.delivery_count), Some(1));
        assert_eq!(
            message.body,
            Body::Data(vec![Bytes::from_static(b"hello device")])
        );

        let none = wire(&c2d_message(
            &queued("/devices/d/messages/devicebound", FeedbackAck::None),
            false,
        ));
        assert_eq!(
            none.application_properties,
            Some(vec![("k".to_owned(), Value::String("v".into()))])
        );
    }

    #[test]
    fn module_inputs_name_the_input() {
        let message = wire(&c2d_message(
            &queued("/devices/d/modules/m/inputs/input1", FeedbackAck::None),
            true,
        ));
        assert_eq!(
            message.message_annotation("x-opt-input-name"),
            Some(&Value::String("input1".into()))
        );
    }

    fn twin(operation: &str, resource: Option<&str>, body: &'static [u8]) -> Message {
        let mut annotations = vec![(symbol("operation"), Value::String(operation.into()))];
        if let Some(resource) = resource {
            annotations.push((symbol("resource"), Value::String(resource.into())));
        }
        Message {
            message_annotations: Some(annotations),
            properties: Some(Properties {
                correlation_id: Some(MessageId::String("corr".into())),
                ..Properties::default()
            }),
            body: Body::Data(vec![Bytes::from_static(body)]),
            ..Message::default()
        }
    }

    #[test]
    fn twin_requests() {
        assert_eq!(
            twin_request(&wire(&twin("GET", None, b" "))),
            Ok(TwinRequest::Get)
        );
        assert_eq!(
            twin_request(&wire(&twin("PATCH", Some("/properties/reported"), b"{\"fw\":1}"))),
            Ok(TwinRequest::PatchReported(Bytes::from_static(b"{\"fw\":1}")))
        );
        assert_eq!(
            twin_request(&wire(&twin("PUT", Some(DESIRED_NOTIFICATIONS), b" "))),
            Ok(TwinRequest::Subscribe)
        );
        assert_eq!(
            twin_request(&wire(&twin("DELETE", Some(DESIRED_NOTIFICATIONS), b" "))),
            Ok(TwinRequest::Unsubscribe)
        );
        assert!(twin_request(&twin("PATCH", Some("/properties/desired"), b"{}")).is_err());
        assert!(twin_request(&twin("POST", None, b"")).is_err());
        assert!(twin_request(&Message::with_data("x")).is_err());
    }

    #[test]
    fn twin_answers_echo_the_correlation_id() {
        let answer = wire(&twin_answer(
            Some(MessageId::Uuid(UUID)),
            204,
            Some(5),
            Bytes::new(),
        ));
        assert_eq!(
            answer.properties.clone().and_then(|p| p.correlation_id),
            Some(MessageId::Uuid(UUID))
        );
        assert_eq!(answer.message_annotation("status"), Some(&Value::Int(204)));
        assert_eq!(answer.message_annotation("version"), Some(&Value::Long(5)));
        let get = wire(&twin_answer(None, 200, None, Bytes::from_static(b"{}")));
        assert_eq!(get.message_annotation("version"), None);
        assert_eq!(get.body, Body::Data(vec![Bytes::from_static(b"{}")]));
        let notification = wire(&desired_notification("{\"$version\":2}".into()));
        assert_eq!(notification.properties, None);
        assert_eq!(
            notification.body.data_bytes(),
            Some(Bytes::from_static(b"{\"$version\":2}"))
        );
    }

    #[test]
    fn method_calls_and_answers() {
        let call = wire(&method_request("reboot", UUID, "{\"delay\":1}".into()));
        assert_eq!(
            call.application_property(METHOD_NAME),
            Some(&Value::String("reboot".into()))
        );
        assert_eq!(
            call.properties.as_ref().and_then(|p| p.correlation_id.clone()),
            Some(MessageId::Uuid(UUID))
        );
        assert_eq!(call.body.data_bytes(), Some(Bytes::from_static(b"{\"delay\":1}")));

        let answer = |correlation: MessageId, status: Value| Message {
            properties: Some(Properties {
                correlation_id: Some(correlation),
                ..Properties::default()
            }),
            application_properties: Some(vec![(METHOD_STATUS.into(), status)]),
            body: Body::Data(vec![Bytes::from_static(b"\"done\"")]),
            ..Message::default()
        };
        let expected = MethodAnswer {
            correlation: UUID,
            status: 201,
            payload: Bytes::from_static(b"\"done\""),
        };
        assert_eq!(
            method_answer(&wire(&answer(MessageId::Uuid(UUID), Value::Int(201)))),
            Ok(expected.clone())
        );
        assert_eq!(
            method_answer(&wire(&answer(
                MessageId::String(crate::door::text::uuid_text(&UUID)),
                Value::String("201".into())
            ))),
            Ok(expected)
        );
        assert!(method_answer(&answer(MessageId::String("x".into()), Value::Int(200))).is_err());
        assert!(method_answer(&answer(MessageId::Uuid(UUID), Value::Null)).is_err());
    }
}
