//! Configurations: automatic device management and IoT Edge deployments (wire contract §5.2
//! "configurations", §5.3 "Configuration"): `GET /configurations?top=N`,
//! `GET/PUT/DELETE /configurations/{id}` with `If-Match` and ETags,
//! `POST /configurations/testQueries` and `POST /devices/{id}/applyConfigurationContent`.
//! Status codes are those the SDKs accept: PUT 201 on create and 200 on update, DELETE and
//! apply 204.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use outpost_core::configurations::{ConfigurationSpec, ContentSpec, QueriesTestInput};
use outpost_model::DeviceId;
use serde::Deserialize;
use serde_json::Value;

use crate::ServiceState;
use crate::error::ApiError;
use crate::request::{AzureJson, IdPath, ServiceCaller, if_match};

/// Returns the configuration routes (`testQueries` is a static segment, so it wins over `{id}`).
pub fn routes() -> axum::Router<ServiceState> {
    axum::Router::new()
        .route("/configurations", get(list))
        .route("/configurations/", get(list))
        .route("/configurations/testQueries", post(test_queries))
        .route("/configurations/{id}", get(get_one).put(put).delete(delete))
        .route("/devices/{id}/applyConfigurationContent", post(apply_content))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    top: Option<usize>,
}

/// A JSON response with the configuration's quoted `ETag` header.
fn with_etag(status: StatusCode, configuration: Value) -> Response {
    let etag = configuration
        .get("etag")
        .and_then(Value::as_str)
        .and_then(|etag| HeaderValue::from_str(&format!("\"{etag}\"")).ok());
    let mut response = (status, Json(configuration)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

async fn list(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let configurations = state.outpost.configurations.list(&caller, query.top).await?;
    Ok(Json(configurations).into_response())
}

async fn get_one(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<IdPath>,
) -> Result<Response, ApiError> {
    let configuration = state.outpost.configurations.get(&caller, &path.id).await?;
    Ok(with_etag(StatusCode::OK, configuration))
}

async fn put(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<IdPath>,
    headers: HeaderMap,
    AzureJson(spec): AzureJson<ConfigurationSpec>,
) -> Result<Response, ApiError> {
    let (configuration, created) = state
        .outpost
        .configurations
        .put(&caller, &path.id, spec, if_match(&headers))
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(status, configuration))
}

async fn delete(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<IdPath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state
        .outpost
        .configurations
        .delete(&caller, &path.id, if_match(&headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_queries(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    AzureJson(input): AzureJson<QueriesTestInput>,
) -> Result<Response, ApiError> {
    let result = state.outpost.configurations.test_queries(&caller, &input)?;
    Ok(Json(result).into_response())
}

async fn apply_content(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(path): Path<IdPath>,
    AzureJson(content): AzureJson<ContentSpec>,
) -> Result<StatusCode, ApiError> {
    let device = DeviceId::new(&path.id)?;
    state
        .outpost
        .configurations
        .apply_content(&caller, &device, content)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
