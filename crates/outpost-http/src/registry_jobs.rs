//! Import and export jobs of the registry (wire contract §5.2): `POST /jobs/create` with Azure's
//! `JobProperties`, `GET /jobs`, `GET /jobs/{id}`, `DELETE /jobs/{id}` (cancel). The work is in
//! `outpost_core::registry_jobs`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use outpost_core::registry_jobs::JobProperties;

use crate::ServiceState;
use crate::error::ApiError;
use crate::request::IdPath;
use crate::request::{AzureJson, ServiceCaller};

/// `POST /jobs/create`: 200 with the job, enqueued.
pub(crate) async fn create(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    AzureJson(request): AzureJson<JobProperties>,
) -> Result<Response, ApiError> {
    Ok(Json(
        state
            .outpost
            .registry_jobs
            .create(&caller, request, &state.outpost.configurations)?,
    )
    .into_response())
}

/// `GET /jobs`: the hub's import and export jobs.
pub(crate) async fn list(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
) -> Result<Response, ApiError> {
    Ok(Json(state.outpost.registry_jobs.list(&caller)?).into_response())
}

/// `GET /jobs/{id}`.
pub(crate) async fn get(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Response, ApiError> {
    Ok(Json(state.outpost.registry_jobs.get(&caller, &id)?).into_response())
}

/// `DELETE /jobs/{id}`: cancels the job; 200 with it (the Python SDK takes 200 or 204).
pub(crate) async fn cancel(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Response, ApiError> {
    Ok(Json(state.outpost.registry_jobs.cancel(&caller, &id)?).into_response())
}
