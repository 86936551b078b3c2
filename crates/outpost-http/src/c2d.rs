//! Cloud-to-device routes: the service API's queue purge (`DELETE /devices/{id}/commands`) and
//! the operator API's send (what `outpost device c2d-message send` calls, mirroring
//! `az iot device c2d-message send`), and reads of the service-bound queues (feedback records,
//! file-upload notifications) for operators and back ends without an AMQP receiver (the Python
//! service SDK has none). The SDKs' own AMQP sender and receivers are in the AMQP door.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use outpost_core::{C2dDestination, C2dMessage, ErrorCode, FeedbackAck};
use outpost_model::{DeviceId, ModuleId, Timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::ServiceState;
use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};
use crate::request::{AzureJson, ServiceCaller};

#[derive(Debug, Deserialize)]
pub(crate) struct DevicePath {
    id: String,
}

/// `DELETE /devices/{id}/commands`: purges the device's queue.
pub(crate) async fn purge(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<DevicePath>,
) -> Result<Response, ApiError> {
    let device = DeviceId::new(&path.id)?;
    let purged = state.outpost.c2d.purge(&caller, &device).await?;
    Ok(Json(json!({ "totalMessagesPurged": purged, "deviceId": device, "moduleId": null })).into_response())
}

/// A message to send, as the operator API takes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SendRequest {
    /// The body as text.
    data: Option<String>,
    /// Or the body as base64.
    data_base64: Option<String>,
    message_id: Option<String>,
    correlation_id: Option<String>,
    user_id: Option<String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    /// `none`, `positive`, `negative` or `full`.
    ack: Option<String>,
    /// Absolute expiry (RFC 3339); the hub's default time to live otherwise.
    expiry_time_utc: Option<String>,
    /// Application properties.
    #[serde(default)]
    properties: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HubDevicePath {
    hub: String,
    id: String,
}

/// `POST /hubs/{hub}/devices/{id}/messages/devicebound`: queues a message for a device.
pub(crate) async fn send(
    State(state): State<OperatorState>,
    Path(path): Path<HubDevicePath>,
    AzureJson(request): AzureJson<SendRequest>,
) -> Result<Response, ApiError> {
    let destination = C2dDestination::device(DeviceId::new(&path.id)?);
    queue(&state, &path.hub, &destination, request).await
}

/// Queues a message as the operator of `hub`.
async fn queue(
    state: &OperatorState,
    hub: &str,
    destination: &C2dDestination,
    request: SendRequest,
) -> Result<Response, ApiError> {
    let hub = find_hub(state, hub)?;
    let message = message_from(request)?;
    state
        .outpost
        .c2d
        .send(&outpost_core::Caller::operator(hub), destination, message)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModuleInputPath {
    hub: String,
    id: String,
    mid: String,
    input: String,
}

/// `POST /hubs/{hub}/devices/{id}/modules/{mid}/inputs/{input}/messages`: queues a message for
/// an input of a module (what an edge route would deliver).
pub(crate) async fn send_to_module_input(
    State(state): State<OperatorState>,
    Path(path): Path<ModuleInputPath>,
    AzureJson(request): AzureJson<SendRequest>,
) -> Result<Response, ApiError> {
    let destination = C2dDestination {
        device: DeviceId::new(&path.id)?,
        module_input: Some((ModuleId::new(&path.mid)?, path.input)),
    };
    queue(&state, &path.hub, &destination, request).await
}

fn message_from(request: SendRequest) -> Result<C2dMessage, ApiError> {
    let invalid = |text: &str| ApiError::new(ErrorCode::ArgumentInvalid, text.to_owned());
    let body = match (request.data, request.data_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| invalid("dataBase64 is not valid base64"))?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => return Err(invalid("give data or dataBase64, not both")),
    };
    if body.len() > 64 * 1024 {
        return Err(ApiError::new(
            ErrorCode::MessageTooLarge,
            "cloud-to-device messages are at most 64 KiB",
        ));
    }
    let ack = match request.ack.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("none") => FeedbackAck::None,
        Some("positive") => FeedbackAck::Positive,
        Some("negative") => FeedbackAck::Negative,
        Some("full") => FeedbackAck::Full,
        Some(_) => return Err(invalid("ack must be none, positive, negative or full")),
    };
    let expiry = match request.expiry_time_utc {
        Some(text) => text
            .parse::<Timestamp>()
            .map_err(|_| invalid("expiryTimeUtc is not an RFC 3339 time"))?,
        None => Timestamp::NEVER,
    };
    let application_properties = request
        .properties
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => (key, text),
            other => (key, other.to_string()),
        })
        .collect();
    let message = C2dMessage {
        message_id: request.message_id,
        correlation_id: request.correlation_id,
        user_id: request.user_id,
        to: String::new(),
        content_type: request.content_type,
        content_encoding: request.content_encoding,
        expiry,
        ack,
        application_properties,
        body: body.into(),
        enqueued_time: Timestamp::NEVER,
    };
    Ok(message)
}

#[derive(Debug, Deserialize)]
pub(crate) struct TakeQuery {
    max: Option<usize>,
}

impl TakeQuery {
    fn max(&self) -> usize {
        self.max.unwrap_or(100).clamp(1, 1000)
    }
}

/// `GET /hubs/{hub}/feedback`: takes the hub's pending feedback records.
pub(crate) async fn feedback(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
    Query(query): Query<TakeQuery>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &name)?;
    let records = state
        .outpost
        .c2d
        .feedback()
        .take_completed(&hub.name, query.max())
        .await?;
    Ok(Json(records).into_response())
}

/// `GET /hubs/{hub}/file-notifications`: takes the hub's pending file-upload notifications.
pub(crate) async fn file_notifications(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
    Query(query): Query<TakeQuery>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &name)?;
    let notifications = state
        .outpost
        .files
        .notifications()
        .take_completed(&hub.name, query.max())
        .await?;
    Ok(Json(notifications).into_response())
}
