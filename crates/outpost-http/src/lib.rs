//! Outpost's HTTP front door (axum): the Azure IoT Hub service REST API on the HTTPS listener,
//! and the operator API on its own listener.
//!
//! Layer: a front door. Depends on `outpost-core` (services, errors), `outpost-model` and
//! `outpost-auth`; never on a storage backend or another front door. Errors are mapped to HTTP
//! once, in [`error`].
//!
//! * [`service`]: devices, modules, twins, bulk, statistics (wire contract §5).
//! * [`registry_jobs`]: import and export jobs (`/jobs/create`, `/jobs`, `/jobs/{id}`).
//! * [`query`]: `POST /devices/query`, the query language with Azure's paging headers.
//! * [`operator`]: hubs, connection strings, metrics, and forwarding to the service routes.
//! * [`device`]: the device side over HTTPS: telemetry, cloud-to-device, file upload (§4).
//! * [`blob`]: the built-in blob endpoint of file uploads (`/fileuploads`, Azure Blob REST API).
//! * [`c2d`]: queue purge, operator send and feedback of cloud-to-device messages.
//! * [`certificates`]: a hub's CA certificates for CA-signed devices.
//! * [`configurations`]: automatic device management and edge deployments (`/configurations`).
//! * [`consumer_groups`]: consumer groups of a hub's built-in Event Hubs-compatible endpoint.
//! * [`events`]: partition state and long-polling reads of the event log (`monitor-events`).
//! * [`request`]: extractors: authenticated caller, api-version, If-Match, JSON bodies.
//! * [`webhook_client`]: the HTTP client routing's webhook endpoints post through.
//! * [`error`]: [`ApiError`], the Azure error body.

pub mod blob;
pub mod c2d;
pub mod certificates;
pub mod configurations;
pub mod consumer_groups;
pub mod device;
pub mod error;
pub mod events;
pub mod jobs;
pub mod operator;
pub mod query;
pub mod registry_jobs;
pub mod request;
pub mod routing;
pub mod service;
pub mod webhook_client;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use outpost_core::Outpost;

pub use error::ApiError;
pub use operator::{HubDefaults, HubsChanged, OperatorState};
pub use request::ClientCertificates;
pub use webhook_client::HyperWebhookClient;

/// State of the service routes.
#[derive(Debug, Clone)]
pub struct ServiceState {
    /// The hub services, behind one `Arc`: axum clones the state for every extractor and
    /// middleware of every request, and `Outpost` is a dozen `Arc`s (6 % of the server's CPU in
    /// the direct-method benchmark went to those clones and drops).
    pub outpost: Arc<Outpost>,
}

/// Returns the router of the HTTPS listener: the service REST API.
pub fn service_router(outpost: Outpost) -> Router {
    let state = ServiceState {
        outpost: Arc::new(outpost),
    };
    service::routes()
        .merge(device::routes())
        .merge(configurations::routes())
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Returns the router of the built-in blob endpoint (file uploads), to merge into the HTTPS
/// listener's router next to [`service_router`].
pub fn blob_router(outpost: Outpost) -> Router {
    let state = ServiceState {
        outpost: Arc::new(outpost.clone()),
    };
    blob::routes(outpost).layer(middleware::from_fn_with_state(state, observe))
}

/// Returns the router of the operator listener.
pub fn operator_router(state: OperatorState) -> Router {
    operator::routes(state)
}

async fn unknown_route() -> ApiError {
    ApiError::with_status(StatusCode::NOT_FOUND, "NotFound", "no such resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "the method is not allowed on this resource",
    )
}

/// Names the API family of a route for metrics (bounded label values).
fn api_family(route: Option<&str>) -> &'static str {
    match route {
        Some("/devices") => "devices",
        Some(route) if route.contains("/messages/") => "device-messages",
        Some(route) if route.starts_with("/devices/{id}/files") => "files",
        Some(route) if route.starts_with("/devices/{id}/modules") => "modules",
        Some("/devices/{id}/commands") => "commands",
        Some(route) if route.starts_with("/devices/") => "device",
        Some(route) if route.ends_with("/methods") => "methods",
        Some(route) if route.starts_with("/twins/") => "twins",
        Some(route) if route.starts_with("/statistics/") => "statistics",
        Some(route) if route.starts_with("/{container}") => "blob",
        Some(route) if route.starts_with("/configurations") => "configurations",
        Some(route) if route.starts_with("/jobs/v2") => "scheduled-jobs",
        Some(route) if route.starts_with("/jobs") => "import-export",
        _ => "unknown",
    }
}

/// Counts every request by API family and status, and logs it without its credentials.
async fn observe(State(state): State<ServiceState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let family = api_family(request.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.outpost.metrics.record_http(family, status);
    tracing::debug!(%method, %path, status, elapsed_us = started.elapsed().as_micros() as u64, "service request");
    response
}
