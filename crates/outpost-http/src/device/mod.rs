//! The device side of the HTTPS API (wire contract §4): telemetry, cloud-to-device messages with
//! peek-lock, and file upload, for devices on the HTTP transport (Node `azure-iot-device-http`)
//! and for every device's file uploads (the Python SDK uses HTTPS for those only).
//!
//! Every request authenticates the identity its path names: a SAS token in `Authorization` (the
//! identity's key, or a policy with DeviceConnect) or, without one, the TLS client certificate of
//! an X.509 device. A credential reaches only its own identity's messages and uploads.
//!
//! * [`telemetry`]: `POST …/messages/events`, one message or a JSON batch.
//! * [`c2d`]: `GET …/messages/devicebound`, complete, reject, abandon.
//! * [`files`]: `POST …/files` and `…/files/notifications`.

mod c2d;
mod files;
mod telemetry;

use axum::Router;
use axum::http::header;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use outpost_auth::strip_port;
use outpost_core::{AuthFailure, CoreError, DeviceCredential, DeviceIdentity};
use outpost_model::{DeviceId, ModuleId};

use crate::ServiceState;
use crate::error::ApiError;
use crate::request::{ClientCertificates, check_api_version};

/// Returns the device routes.
pub fn routes() -> Router<ServiceState> {
    Router::new()
        .route("/devices/{id}/messages/events", post(telemetry::send))
        .route(
            "/devices/{id}/modules/{mid}/messages/events",
            post(telemetry::send_from_module),
        )
        .route("/devices/{id}/messages/devicebound", get(c2d::receive))
        .route(
            "/devices/{id}/messages/devicebound/{token}",
            delete(c2d::complete_or_reject),
        )
        .route(
            "/devices/{id}/messages/devicebound/{token}/abandon",
            post(c2d::abandon),
        )
        .route("/devices/{id}/files", post(files::start))
        .route("/devices/{id}/files/notifications", post(files::finish))
        .route(
            "/devices/{id}/files/notifications/{correlation}",
            post(files::finish_named),
        )
}

/// Authenticates the identity a device request's path names (`id`, `mid`).
async fn authenticate(
    state: &ServiceState,
    parts: &Parts,
    device: &str,
    module: Option<&str>,
) -> Result<DeviceIdentity, ApiError> {
    check_api_version(parts.uri.query())?;
    let device = DeviceId::new(device)?;
    let module = module.map(ModuleId::new).transpose()?;
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| parts.uri.host())
        .unwrap_or_default();
    let unauthorized = |failure| ApiError::from(CoreError::Unauthorized(failure));
    let hub = state
        .outpost
        .hubs
        .by_host(strip_port(host))
        .ok_or_else(|| unauthorized(AuthFailure::UnknownPrincipal))?;
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().map_err(|_| unauthorized(AuthFailure::Malformed)))
        .transpose()?;
    let chain = parts.extensions.get::<ClientCertificates>();
    let credential = match (authorization, chain) {
        (Some(token), _) => DeviceCredential::Sas(token),
        (None, Some(ClientCertificates(chain))) if !chain.is_empty() => DeviceCredential::X509(chain),
        (None, _) => return Err(unauthorized(AuthFailure::Missing)),
    };
    let identity = state
        .outpost
        .registry
        .authenticate_device(hub, &device, module.as_ref(), credential)
        .await?;
    Ok(identity)
}
