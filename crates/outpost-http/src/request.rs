//! Request extractors shared by the service routes: the authenticated caller, the
//! `api-version` check, `If-Match`, and JSON bodies parsed into Azure errors.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use outpost_core::query::DEFAULT_PAGE_ITEMS;
use outpost_core::{Caller, ErrorCode};
use outpost_model::Hub;
use serde::de::DeserializeOwned;

use crate::ServiceState;
use crate::error::ApiError;

/// Largest request body the service API reads (bulk requests of 100 devices fit easily).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Inserted by the operator API before it forwards a request to the service routes: the
/// request is the operator's, on this hub. Clients cannot set request extensions.
#[derive(Debug, Clone)]
pub(crate) struct OperatorHub(pub Arc<Hub>);

/// The TLS client's certificate chain (DER, leaf first), put on each request by the HTTPS
/// listener so that X.509 devices authenticate over HTTPS and WebSockets.
#[derive(Debug, Clone, Default)]
pub struct ClientCertificates(pub Arc<Vec<Vec<u8>>>);

/// A route's `{id}`, by name: a request the operator API forwards carries its own path
/// parameters too, so positional `Path<String>` would not fit.
#[derive(Debug, serde::Deserialize)]
pub struct IdPath {
    /// The `{id}` segment.
    pub id: String,
}

/// The authenticated caller of a service request.
#[derive(Debug)]
pub struct ServiceCaller(pub Caller);

impl FromRequestParts<ServiceState> for ServiceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ServiceState) -> Result<Self, Self::Rejection> {
        check_api_version(parts.uri.query())?;
        if let Some(OperatorHub(hub)) = parts.extensions.get::<OperatorHub>() {
            return Ok(Self(Caller::operator(hub.clone())));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| parts.uri.host());
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let now = state.outpost.clock.now();
        Ok(Self(state.outpost.hubs.authenticate_service(
            host,
            authorization,
            now,
        )?))
    }
}

/// Checks the `api-version` query parameter: it must be present and look like an Azure API
/// version (`YYYY-MM-DD`, optionally `-preview`). Versions Outpost does not know are accepted,
/// as the API surface it serves is the same for every version SDKs send.
pub(crate) fn check_api_version(query: Option<&str>) -> Result<(), ApiError> {
    let version = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "api-version")
        .map(|(_, value)| value);
    let Some(version) = version else {
        return Err(ApiError::new(
            ErrorCode::InvalidProtocolVersion,
            "the api-version query parameter is required",
        ));
    };
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let well_formed = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !well_formed {
        let shown: String = version.chars().take(40).collect();
        return Err(ApiError::new(
            ErrorCode::InvalidProtocolVersion,
            format!("'{shown}' is not a valid api-version"),
        ));
    }
    Ok(())
}

/// Reads Azure's paging headers (wire contract §5.2): the page size `x-ms-max-item-count`
/// (default [`DEFAULT_PAGE_ITEMS`]) and the token `x-ms-continuation` of the previous page.
///
/// # Errors
/// `ArgumentInvalid` for a page size that is not a positive number.
pub fn paging(headers: &HeaderMap) -> Result<(usize, Option<&str>), ApiError> {
    let page_size = match headers.get("x-ms-max-item-count") {
        None => DEFAULT_PAGE_ITEMS,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .filter(|size| *size > 0)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ArgumentInvalid,
                    "x-ms-max-item-count must be a positive number",
                )
            })?,
    };
    let continuation = headers
        .get("x-ms-continuation")
        .and_then(|value| value.to_str().ok())
        .filter(|token| !token.is_empty());
    Ok((page_size, continuation))
}

/// Returns the `If-Match` header, if any.
pub fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
}

/// A JSON request body; parse failures and oversized bodies become Azure errors.
#[derive(Debug)]
pub struct AzureJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AzureJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_body(request.into_body()).await
    }
}

impl<T: DeserializeOwned> AzureJson<T> {
    /// Reads and parses a body taken from a request whose head a handler keeps.
    ///
    /// # Errors
    /// An Azure error for an oversized, empty or malformed body.
    pub async fn from_body(body: axum::body::Body) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
            ApiError::new(
                ErrorCode::MessageTooLarge,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        })?;
        parse_json(&bytes).map(Self)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ArgumentNull,
            "the request body is empty",
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("the request body is not valid: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_must_be_present_and_date_shaped() {
        assert!(check_api_version(Some("api-version=2021-04-12")).is_ok());
        assert!(check_api_version(Some("top=3&api-version=2019-10-01")).is_ok());
        assert!(check_api_version(Some("api-version=2030-01-01-preview")).is_ok());
        assert!(check_api_version(None).is_err());
        assert!(check_api_version(Some("api-version=latest")).is_err());
        assert!(check_api_version(Some("api-version=")).is_err());
    }
}
