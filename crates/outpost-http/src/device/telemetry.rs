//! `POST /devices/{id}[/modules/{mid}]/messages/events` (wire contract §4): one message with its
//! properties in headers, or, with `Content-Type: application/vnd.microsoft.iothub.json`, a
//! batch `[{"body": "<base64>", "properties": {"iothub-app-k": "v", …}}, …]`. Answered 204 once
//! the messages are durable in the event log; a batch is all or nothing.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use outpost_core::{DeviceIdentity, ErrorCode, OutgoingMessage};
use outpost_model::MAX_MESSAGE_BYTES;
use serde::Deserialize;
use serde_json::Value;

use crate::ServiceState;
use crate::error::ApiError;
use crate::request::MAX_BODY_BYTES;

/// The content type of a batch (wire contract §4).
const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.json";
/// Most messages in one batch.
pub const MAX_BATCH_MESSAGES: usize = 500;
/// The prefix of application properties in headers and batch property names.
const APP_PREFIX: &str = "iothub-app-";

#[derive(Debug, Deserialize)]
pub(super) struct DevicePath {
    id: String,
}

impl DevicePath {
    pub(super) fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ModulePath {
    id: String,
    mid: String,
}

/// One message of a batch.
#[derive(Debug, Deserialize)]
struct BatchItem {
    body: String,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
}

pub(super) async fn send(
    State(state): State<ServiceState>,
    Path(path): Path<DevicePath>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let identity = super::authenticate(&state, &parts, &path.id, None).await?;
    accept(&state, &identity, &parts.headers, body).await
}

pub(super) async fn send_from_module(
    State(state): State<ServiceState>,
    Path(path): Path<ModulePath>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let identity = super::authenticate(&state, &parts, &path.id, Some(&path.mid)).await?;
    accept(&state, &identity, &parts.headers, body).await
}

async fn accept(
    state: &ServiceState,
    identity: &DeviceIdentity,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let batch = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case(BATCH_CONTENT_TYPE)
        });
    let messages = if batch {
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        parse_batch(&bytes)?
    } else {
        let bytes = read_body(body, MAX_MESSAGE_BYTES).await?;
        let mut message = OutgoingMessage {
            body: bytes,
            ..OutgoingMessage::default()
        };
        for (name, value) in headers {
            let value = value.to_str().map_err(|_| {
                ApiError::new(
                    ErrorCode::ArgumentInvalid,
                    format!("the value of header '{name}' is not text"),
                )
            })?;
            apply_property(&mut message, name.as_str(), value);
        }
        vec![message]
    };
    state.outpost.telemetry.send(identity, messages).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reads a request body (chunked or not) of at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::MessageTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    })
}

/// Parses a batch; its decoded bodies together may not exceed one message's limit (Azure limits a
/// batch to 256 KB).
fn parse_batch(bytes: &[u8]) -> Result<Vec<OutgoingMessage>, ApiError> {
    let items: Vec<BatchItem> = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("the batch is not valid: {error}"),
        )
    })?;
    if items.is_empty() || items.len() > MAX_BATCH_MESSAGES {
        return Err(ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!(
                "a batch holds 1 to {MAX_BATCH_MESSAGES} messages, not {}",
                items.len()
            ),
        ));
    }
    let mut total = 0usize;
    let mut messages = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let body = STANDARD.decode(item.body.as_bytes()).map_err(|_| {
            ApiError::new(
                ErrorCode::ArgumentInvalid,
                format!("the body of batch message {index} is not base64"),
            )
        })?;
        total += body.len();
        if total > MAX_MESSAGE_BYTES {
            return Err(ApiError::new(
                ErrorCode::MessageTooLarge,
                format!("the batch's messages are larger than {MAX_MESSAGE_BYTES} bytes together"),
            ));
        }
        let mut message = OutgoingMessage {
            body: Bytes::from(body),
            ..OutgoingMessage::default()
        };
        for (name, value) in &item.properties {
            let Value::String(value) = value else {
                return Err(ApiError::new(
                    ErrorCode::ArgumentInvalid,
                    format!("property '{name}' of batch message {index} is not a string"),
                ));
            };
            apply_property(&mut message, &name.to_ascii_lowercase(), value);
        }
        messages.push(message);
    }
    Ok(messages)
}

/// Maps one header (lower-case name) or batch property onto the message: `iothub-app-*` are
/// application properties, the `iothub-*` names of §4 system properties; other headers
/// (`Authorization`, `User-Agent`, the request's own `iothub-to`) are not part of the message.
fn apply_property(message: &mut OutgoingMessage, name: &str, value: &str) {
    if let Some(key) = name.strip_prefix(APP_PREFIX) {
        if !key.is_empty() {
            message
                .application_properties
                .push((key.to_owned(), value.to_owned()));
        }
        return;
    }
    let system = &mut message.properties;
    let slot = match name {
        "iothub-messageid" => &mut system.message_id,
        "iothub-correlationid" => &mut system.correlation_id,
        "iothub-userid" => &mut system.user_id,
        "iothub-contenttype" => &mut system.content_type,
        "iothub-contentencoding" => &mut system.content_encoding,
        "iothub-expiry" => &mut system.expiry_time,
        "iothub-interface-id" => &mut system.interface_id,
        "dt-subject" => &mut system.subject,
        _ => return,
    };
    *slot = Some(value.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_maps_bodies_and_properties() {
        let batch = br#"[{"body": "YQ=="},{"body": "Yg==", "properties":{"iothub-app-k":"v","iothub-messageid":"m2","dt-subject":"s"}}]"#;
        let messages = parse_batch(batch).unwrap_or_default();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].body.as_ref(), b"a");
        assert_eq!(messages[1].body.as_ref(), b"b");
        assert_eq!(
            messages[1].application_properties,
            vec![("k".to_owned(), "v".to_owned())]
        );
        assert_eq!(messages[1].properties.message_id.as_deref(), Some("m2"));
        assert_eq!(messages[1].properties.subject.as_deref(), Some("s"));
    }

    #[test]
    fn bad_batches_are_refused() {
        for bad in [
            &br#"[{"body": "not base64!"}]"#[..],
            br#"[]"#,
            br#"{"body": "YQ=="}"#,
            br#"[{"body": "YQ==", "properties": {"iothub-app-k": 1}}]"#,
            b"not json",
        ] {
            assert!(parse_batch(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let big = STANDARD.encode(vec![0u8; MAX_MESSAGE_BYTES / 2 + 1]);
        let oversized = format!(r#"[{{"body": "{big}"}},{{"body": "{big}"}}]"#);
        let error = parse_batch(oversized.as_bytes()).err();
        assert_eq!(error.map(|e| e.status()), Some(StatusCode::PAYLOAD_TOO_LARGE));
    }
}
