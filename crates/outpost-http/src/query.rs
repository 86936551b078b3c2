//! `POST /devices/query` (wire contract §5): the IoT Hub query language over the hub's twins, with
//! Azure's paging headers: `x-ms-max-item-count` asks for a page size, `x-ms-continuation` carries
//! the token of the previous page; the answer is a JSON array with `x-ms-item-type` (`Twin`,
//! `DeviceJob` or `Raw`) and, when more pages follow, `x-ms-continuation`.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use outpost_core::ErrorCode;
use serde::Deserialize;

use crate::ServiceState;
use crate::error::ApiError;
use crate::request::IdPath;
use crate::request::paging;
use crate::request::{AzureJson, ServiceCaller};

/// The request body.
#[derive(Debug, Deserialize)]
pub(crate) struct QuerySpecification {
    query: Option<String>,
}

/// `POST /devices/{id}` serves only `id` = `query`: the route shares its pattern with the device
/// routes, so a device named `query` keeps its GET, PUT and DELETE.
pub(crate) async fn post_on_device(
    State(state): State<ServiceState>,
    ServiceCaller(caller): ServiceCaller,
    Path(IdPath { id }): Path<IdPath>,
    request: Request,
) -> Result<Response, ApiError> {
    if id != "query" {
        return Err(ApiError::with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the method is not allowed on this resource",
        ));
    }
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let AzureJson(body) = AzureJson::<QuerySpecification>::from_body(body).await?;
    let text = body
        .query
        .ok_or_else(|| ApiError::new(ErrorCode::ArgumentNull, "the query is required"))?;
    let (page_size, continuation) = paging(&headers)?;
    let page = state
        .outpost
        .registry
        .query(&caller, &text, continuation, page_size)
        .await?;
    let mut response = Json(page.items).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-ms-item-type",
        HeaderValue::from_static(page.item_type.as_str()),
    );
    if let Some(token) = page
        .continuation
        .and_then(|token| HeaderValue::from_str(&token).ok())
    {
        headers.insert("x-ms-continuation", token);
    }
    Ok(response)
}
