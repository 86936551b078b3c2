//! Scheduled jobs (wire contract §5.2 "scheduled jobs", §5.3 "JobResponse"):
//! `PUT /jobs/v2/{id}` (a JobRequest → 200 JobResponse), `GET /jobs/v2/{id}`,
//! `POST /jobs/v2/{id}/cancel`, and `GET /jobs/v2/query?jobType=&jobStatus=` with Azure's paging
//! headers (`x-ms-max-item-count`, `x-ms-continuation`).
//!
//! The query answers what Azure sends, a JSON array with `x-ms-item-type` and
//! `x-ms-continuation` headers (the Node SDK's `JobClient.createQuery` and `az iot hub job list`
//! read that). The Python SDK's `query_scheduled_jobs` can only deserialize a QueryResult object
//! (`{type, items, continuationToken}`, it fails on Azure's array); its AutoRest client is
//! recognised by its `User-Agent` and gets that object, with the same headers.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ServiceState;
use crate::error::ApiError;
use crate::request::paging;
use crate::request::{AzureJson, ServiceCaller};

/// Returns the scheduled-job routes. `/jobs/v2/query` is a static path, so it wins over
/// `/jobs/v2/{id}` (a job cannot be named `query`).
pub fn routes() -> Router<ServiceState> {
    Router::new()
        .route("/jobs/v2/query", get(query))
        .route("/jobs/v2/{id}", get(get_job).put(create))
        .route("/jobs/v2/{id}/cancel", post(cancel))
}

async fn create(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(JobPath { id }): Path<JobPath>,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    let job = state.outpost.jobs.create(&caller, &id, &body).await?;
    Ok(Json(job).into_response())
}

async fn get_job(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(JobPath { id }): Path<JobPath>,
) -> Result<Response, ApiError> {
    Ok(Json(state.outpost.jobs.get(&caller, &id).await?).into_response())
}

async fn cancel(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(JobPath { id }): Path<JobPath>,
) -> Result<Response, ApiError> {
    Ok(Json(state.outpost.jobs.cancel(&caller, &id).await?).into_response())
}

/// The job id of the path. A struct, not `Path<String>`: requests the operator API forwards
/// carry its own path parameters too (`hub`, `rest`), which a struct ignores.
#[derive(Debug, Deserialize)]
struct JobPath {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobFilter {
    job_type: Option<String>,
    job_status: Option<String>,
}

/// Whether the client is the Python SDK's AutoRest client (`iothubgatewayserviceapis/<version>`
/// in its User-Agent, wire contract §5.1), which needs the QueryResult object.
fn wants_query_result(headers: &HeaderMap) -> bool {
    headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|agent| {
            let agent = agent.to_ascii_lowercase();
            agent.contains("iothubgatewayserviceapis/") && !agent.contains("azurecli")
        })
}

async fn query(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Query(filter): Query<JobFilter>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (page_size, continuation) = paging(&headers)?;
    let nonempty = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
    let (job_type, job_status) = (nonempty(&filter.job_type), nonempty(&filter.job_status));
    let page = state
        .outpost
        .jobs
        .list(
            &caller,
            job_type.as_deref(),
            job_status.as_deref(),
            continuation,
            page_size,
        )
        .await?;
    let mut response = if wants_query_result(&headers) {
        Json(json!({
            "type": "jobResponse",
            "items": page.items,
            "continuationToken": page.continuation,
        }))
        .into_response()
    } else {
        Json(page.items).into_response()
    };
    let response_headers = response.headers_mut();
    response_headers.insert("x-ms-item-type", HeaderValue::from_static("JobResponse"));
    if let Some(token) = page
        .continuation
        .and_then(|token| HeaderValue::from_str(&token).ok())
    {
        response_headers.insert("x-ms-continuation", token);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_python_autorest_client_gets_the_query_result_object() {
        let agent = |text: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::USER_AGENT, HeaderValue::from_str(text).unwrap());
            wants_query_result(&headers)
        };
        assert!(agent(
            "python/3.11.7 (Linux) msrest/0.7.1 iothubgatewayserviceapis/2021-04-12"
        ));
        assert!(!agent("azure-iothub/1.16.6"));
        assert!(!agent("AZURECLI/2.60 iothubgatewayserviceapis/2021-04-12"));
        assert!(!wants_query_result(&HeaderMap::new()));
    }
}
