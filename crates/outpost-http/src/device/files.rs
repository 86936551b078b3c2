//! File upload (wire contract §4): `POST /devices/{id}/files` `{"blobName": …}` answers the upload
//! slot (correlation id, blob host, container, blob name, SAS token); the device uploads to the
//! blob endpoint and reports the outcome, Python in the body
//! (`POST …/files/notifications` `{"correlationId", "isSuccess", "statusCode", "statusDescription"}`),
//! Node in the path (`POST …/files/notifications/{correlationId}`). Both are answered 204.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outpost_core::{ErrorCode, UploadOutcome};
use serde::Deserialize;

use super::telemetry::DevicePath;
use crate::ServiceState;
use crate::error::ApiError;
use crate::request::AzureJson;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartUpload {
    blob_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadReport {
    correlation_id: Option<String>,
    is_success: Option<bool>,
    #[serde(default)]
    status_code: Option<i64>,
    #[serde(default)]
    status_description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct NotificationPath {
    id: String,
    correlation: String,
}

pub(super) async fn start(
    State(state): State<ServiceState>,
    Path(path): Path<DevicePath>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let identity = super::authenticate(&state, &parts, path.id(), None).await?;
    let AzureJson(start) = AzureJson::<StartUpload>::from_body(body).await?;
    let name = start
        .blob_name
        .ok_or_else(|| ApiError::new(ErrorCode::ArgumentNull, "blobName is required"))?;
    let slot = state.outpost.files.start(&identity, &name)?;
    Ok(Json(slot).into_response())
}

/// `POST …/files/notifications` (Python): the correlation id is in the body.
pub(super) async fn finish(
    State(state): State<ServiceState>,
    Path(path): Path<DevicePath>,
    request: Request,
) -> Result<Response, ApiError> {
    report(&state, path.id(), None, request).await
}

/// `POST …/files/notifications/{correlationId}` (Node): the correlation id is in the path.
pub(super) async fn finish_named(
    State(state): State<ServiceState>,
    Path(path): Path<NotificationPath>,
    request: Request,
) -> Result<Response, ApiError> {
    report(&state, &path.id, Some(&path.correlation), request).await
}

/// Takes a device's upload report; `correlation` from the path wins over the body's.
async fn report(
    state: &ServiceState,
    device: &str,
    correlation: Option<&str>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let identity = super::authenticate(state, &parts, device, None).await?;
    let AzureJson(report) = AzureJson::<UploadReport>::from_body(body).await?;
    let correlation = correlation
        .map(str::to_owned)
        .or_else(|| report.correlation_id.clone())
        .ok_or_else(|| ApiError::new(ErrorCode::ArgumentNull, "correlationId is required"))?;
    state
        .outpost
        .files
        .finish(&identity, &correlation, &outcome(report)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn outcome(report: UploadReport) -> Result<UploadOutcome, ApiError> {
    Ok(UploadOutcome {
        is_success: report
            .is_success
            .ok_or_else(|| ApiError::new(ErrorCode::ArgumentNull, "isSuccess is required"))?,
        status_code: report.status_code.unwrap_or_default(),
        status_description: report.status_description.unwrap_or_default(),
    })
}
