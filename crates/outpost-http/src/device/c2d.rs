//! Cloud-to-device messages over HTTPS (wire contract §4), peek-lock like the other transports:
//! `GET …/messages/devicebound` locks the next message (204 when there is none, 200 with the body,
//! its properties as headers and the lock token as a quoted `ETag`); `DELETE …/{lockToken}`
//! completes it, `DELETE …/{lockToken}?reject` rejects it, `POST …/{lockToken}/abandon` puts it
//! back. An unknown token or a lapsed lock is 412 `DeviceMessageLockLost`.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use outpost_core::{ErrorCode, FeedbackAck, QueuedMessage};
use serde::Deserialize;

use super::telemetry::DevicePath;
use crate::ServiceState;
use crate::error::ApiError;
use crate::request::if_match;

#[derive(Debug, Deserialize)]
pub(super) struct LockPath {
    id: String,
    token: String,
}

pub(super) async fn receive(
    State(state): State<ServiceState>,
    Path(path): Path<DevicePath>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let identity = super::authenticate(&state, &parts, path.id(), None).await?;
    let Some(queued) = state.outpost.c2d.lock_next(&identity).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut response = Response::new(Body::from(queued.message.body.clone()));
    message_headers(&queued, response.headers_mut());
    Ok(response)
}

pub(super) async fn complete_or_reject(
    State(state): State<ServiceState>,
    Path(path): Path<LockPath>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let identity = super::authenticate(&state, &parts, &path.id, None).await?;
    check_if_match(&parts.headers, &path.token)?;
    let reject = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| matches!(pair, "reject" | "reject=" | "reject=true" | "reject=True"));
    if reject {
        state.outpost.c2d.reject(&identity, &path.token).await?;
    } else {
        state.outpost.c2d.complete(&identity, &path.token).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn abandon(
    State(state): State<ServiceState>,
    Path(path): Path<LockPath>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let identity = super::authenticate(&state, &parts, &path.id, None).await?;
    check_if_match(&parts.headers, &path.token)?;
    state.outpost.c2d.abandon(&identity, &path.token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An `If-Match` the SDKs send with the lock token (unquoted, or quoted as the ETag was) must
/// name the same lock as the path.
fn check_if_match(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    match if_match(headers) {
        Some(value) if value.trim_matches('"') != token => Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            "If-Match names another lock token than the path",
        )),
        _ => Ok(()),
    }
}

/// The headers of a delivered message (wire contract §4); properties whose name or value cannot
/// be a header are left out.
fn message_headers(queued: &QueuedMessage, headers: &mut HeaderMap) {
    let message = &queued.message;
    let mut put = |name: &str, value: &str| match (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        (Ok(name), Ok(value)) => {
            headers.insert(name, value);
        }
        _ => tracing::debug!(
            property = name,
            "c2d property not expressible as an http header: left out"
        ),
    };
    if let Some(lock) = &queued.lock {
        put(header::ETAG.as_str(), &format!("\"{}\"", lock.token));
    }
    if let Some(id) = &message.message_id {
        put("iothub-messageid", id);
    }
    put("iothub-to", &message.to);
    put("iothub-expiry", &message.expiry.to_string());
    if let Some(id) = &message.correlation_id {
        put("iothub-correlationid", id);
    }
    if let Some(user) = &message.user_id {
        put("iothub-userid", user);
    }
    if let Some(content_type) = &message.content_type {
        put("iothub-contenttype", content_type);
    }
    if let Some(encoding) = &message.content_encoding {
        put("iothub-contentencoding", encoding);
    }
    let ack = match message.ack {
        FeedbackAck::None => None,
        FeedbackAck::Positive => Some("positive"),
        FeedbackAck::Negative => Some("negative"),
        FeedbackAck::Full => Some("full"),
    };
    if let Some(ack) = ack {
        put("iothub-ack", ack);
    }
    put("iothub-sequencenumber", &queued.sequence_number.to_string());
    put("iothub-enqueuedtime", &message.enqueued_time.to_string());
    put("iothub-deliverycount", &queued.delivery_count.to_string());
    for (key, value) in &message.application_properties {
        put(&format!("iothub-app-{}", key.to_ascii_lowercase()), value);
    }
}
