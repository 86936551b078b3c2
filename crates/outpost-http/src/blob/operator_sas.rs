//! `POST /hubs/{hub}/files/sas` on the operator API: mints a SAS URL for the hub's built-in blob
//! endpoint, so that an operator (or a test) can list, read or clean up uploads, or read the
//! files of a storage endpoint, with the Azure Storage clients. Query: `container` (default
//! `fileuploads`; or the `containerName` of one of the hub's storage endpoints), `permissions`
//! (letters of `racwdl`, only `rdl` for a routed container, which routing alone writes; default
//! `rl`, or `r` with a blob), `blob` (a blob SAS for that blob name instead of a container SAS),
//! `ttlSeconds` (default one hour; zero or negative mints an already expired token, for tests of
//! refusal).

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
    container: Option<String>,
    permissions: Option<String>,
    blob: Option<String>,
    ttl_seconds: Option<i64>,
}

/// Mints the SAS: `{"url", "hostName", "containerName", "blobName", "sasToken", "expiry"}`.
/// A container that is neither `fileuploads` nor a storage endpoint's is `400 ArgumentInvalid`.
pub(crate) async fn mint(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
    Query(query): Query<SasQuery>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let container = query
        .container
        .filter(|container| !container.is_empty())
        .unwrap_or_else(|| BUILTIN_CONTAINER.to_owned());
    let routed = container != BUILTIN_CONTAINER;
    if routed && !super::routed_containers(&state.outpost, &hub).contains(&container) {
        return Err(ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!(
                "hub '{}' has no container '{container}': it is '{BUILTIN_CONTAINER}' or the containerName of one of its storage endpoints",
                hub.name
            ),
        ));
    }
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
    if routed && !permissions.chars().all(|c| "rdl".contains(c)) {
        return Err(ApiError::new(
            ErrorCode::ArgumentInvalid,
            "a routed container is written by message routing only: permissions must be letters of 'rdl'",
        ));
    }
    let ttl = query.ttl_seconds.unwrap_or(3600).min(MAX_TTL_SECONDS);
    let now = state.outpost.clock.now().unix_seconds().unwrap_or_default();
    let expiry = Timestamp::from_unix_seconds(now.saturating_add(ttl));
    let sas = state
        .outpost
        .blobs
        .mint_container_sas(&hub, &container, blob.as_deref(), &permissions, expiry)
        .ok_or_else(|| ApiError::new(ErrorCode::ArgumentInvalid, "the hub has no shared access policy"))?;
    let path = match &blob {
        Some(blob) => format!("{container}/{}", encode_path(blob)),
        None => container.clone(),
    };
    Ok(Json(json!({
        "url": format!("https://{}/{path}?{sas}", hub.host_name),
        "hostName": hub.host_name,
        "containerName": container,
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
