//! Operator routes for a hub's CA certificates (IoT Hub's "certificates"): devices with
//! `certificateAuthority` authentication chain to them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use outpost_auth::CaCertificate;
use outpost_model::Hub;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};
use crate::request::AzureJson;

#[derive(Debug, Deserialize)]
pub(crate) struct CertificatePath {
    hub: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutCertificate {
    /// The PEM text of the CA certificate.
    certificate: String,
}

fn summaries(hub: &Hub) -> Value {
    let items: Vec<Value> = hub
        .certificates
        .iter()
        .map(|certificate| match CaCertificate::from_pem(&certificate.pem) {
            Ok(parsed) => json!({
                "name": certificate.name,
                "subject": parsed.subject(),
                "thumbprint": parsed.thumbprint().as_str(),
                "expiry": outpost_model::Timestamp::from_unix_seconds(parsed.not_after_unix()).to_string(),
                "isVerified": true,
            }),
            Err(_) => json!({ "name": certificate.name, "isVerified": false }),
        })
        .collect();
    Value::Array(items)
}

/// `GET /hubs/{hub}/certificates`.
pub(crate) async fn list(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    Ok(Json(summaries(&hub)))
}

/// `PUT /hubs/{hub}/certificates/{name}` with `{"certificate": "<PEM>"}`.
pub(crate) async fn put(
    State(state): State<OperatorState>,
    Path(path): Path<CertificatePath>,
    AzureJson(request): AzureJson<PutCertificate>,
) -> Result<Json<Value>, ApiError> {
    let hub = state
        .outpost
        .hubs
        .put_certificate(&path.hub, &path.name, &request.certificate)
        .await?;
    tracing::info!(hub = %hub.name, certificate = %path.name, "ca certificate registered");
    Ok(Json(summaries(&hub)))
}

/// `DELETE /hubs/{hub}/certificates/{name}`.
pub(crate) async fn delete(
    State(state): State<OperatorState>,
    Path(path): Path<CertificatePath>,
) -> Result<StatusCode, ApiError> {
    state
        .outpost
        .hubs
        .delete_certificate(&path.hub, &path.name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
