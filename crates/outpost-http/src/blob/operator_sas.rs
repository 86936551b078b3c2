//! `POST /hubs/{hub}/files/sas` on the operator API: mints a SAS URL for the hub's built-in blob
//! endpoint, so that an operator (or a test) can list, read or clean up uploads with the Azure
//! Storage clients. Query: `permissions` (letters of `racwdl`; default `rl`, or `r` with a
//! blob), `blob` (a blob SAS for that blob name instead of a container SAS), `ttlSeconds`
//! (default one hour; zero or negative mints an already expired token, for tests of refusal).

use axum::Json;
use axum::extract::{Path, Query, State};
use outpost_core::ErrorCode;
use outpost_core::blobs::BUILTIN_CONTAINER;
use outpost_model::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};

/// Longest lifetime an operator may ask for: 30 days.
const MAX_TTL_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SasQuery {
    permissions: Option<String>,
    blob: Option<String>,
    ttl_seconds: Option<i64>,
}

/// Mints the SAS: `{"url", "hostName", "containerName", "blobName", "sasToken", "expiry"}`.
pub(crate) async fn mint(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
    Query(query): Query<SasQuery>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let blob = query.blob.filter(|blob| !blob.is_empty());
    if let Some(blob) = &blob {
        outpost_core::blobs::validate_name(blob)
            .map_err(|error| ApiError::new(ErrorCode::ArgumentInvalid, error.to_string()))?;
    }
    let permissions = query
        .permissions
        .unwrap_or_else(|| if blob.is_some() { "r" } else { "rl" }.to_owned());
    if permissions.is_empty() || !permissions.chars().all(|c| "racwdl".contains(c)) {
        return Err(ApiError::new(
            ErrorCode::ArgumentInvalid,
            "permissions must be letters of 'racwdl'",
        ));
    }
    let ttl = query.ttl_seconds.unwrap_or(3600).min(MAX_TTL_SECONDS);
    let now = state.outpost.clock.now().unix_seconds().unwrap_or_default();
    let expiry = Timestamp::from_unix_seconds(now.saturating_add(ttl));
    let sas = state
        .outpost
        .blobs
        .mint_sas(&hub, blob.as_deref(), &permissions, expiry)
        .ok_or_else(|| ApiError::new(ErrorCode::ArgumentInvalid, "the hub has no shared access policy"))?;
    let path = match &blob {
        Some(blob) => format!("{BUILTIN_CONTAINER}/{}", encode_path(blob)),
        None => BUILTIN_CONTAINER.to_owned(),
    };
    Ok(Json(json!({
        "url": format!("https://{}/{path}?{sas}", hub.host_name),
        "hostName": hub.host_name,
        "containerName": BUILTIN_CONTAINER,
        "blobName": blob,
        "sasToken": format!("?{sas}"),
        "expiry": expiry.to_string(),
    })))
}

fn encode_path(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, PATH).to_string()
}

const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
