//! The built-in blob endpoint: the part of the Azure Blob REST API that the SDKs' upload and
//! download paths use, served on the hub's HTTPS listener under `/fileuploads` (wire contract
//! §4: devices upload to `https://{hostName}/{containerName}/{blobName}{sasToken}`) and under
//! the routed containers, those the hub's storage endpoints write into (`containers`).
//!
//! Operations: Put Blob, Put Block, Put Block List, Get Blob (ranges), Get Blob Properties,
//! Delete Blob, List Blobs, Get Container Properties; routed containers refuse the writes. The
//! hub is the one the `Host` names; every request carries an Azure Storage service SAS for the
//! container, signed with the hub's file-upload key (`Blobs::verify_container_sas`), or, for
//! reads, listing and deletes, an IoT Hub service token with ServiceConnect in `Authorization`
//! (a back end fetching a notified upload).

mod containers;
mod error;
pub(crate) mod operator_sas;
mod xml;

use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use outpost_auth::storage_sas::{SasPermission, StorageSas, StorageSasError};
use outpost_core::blobs::{
    BUILTIN_CONTAINER, BlobError, BlobProperties, ByteSource, Condition, ContentSettings,
};
use outpost_core::{Outpost, Permission};
use outpost_model::Hub;
use percent_encoding::percent_decode_str;

use crate::error::ApiError;
use containers::Container;
use error::StorageError;

pub(crate) use containers::routed_containers;

/// The `x-ms-version` answered when the request sends none.
const DEFAULT_VERSION: &str = "2020-12-06";
/// Largest Put Block List body read (50 000 ids of 64 bytes fit).
const MAX_BLOCK_LIST_BYTES: usize = 8 * 1024 * 1024;
/// Most results of one List Blobs page (Azure's limit).
const MAX_LIST_RESULTS: usize = 5000;

#[derive(Debug, Clone)]
struct BlobState {
    outpost: Outpost,
}

/// Returns the blob endpoint's routes, with their state. They match every first path segment
/// the service API leaves free; a segment that names no container of the hub answers as the
/// service API's unknown paths do, or `404 ContainerNotFound` to a storage client.
pub fn routes(outpost: Outpost) -> Router {
    Router::new()
        .route("/{container}", any(container))
        .route("/{container}/{*blob}", any(blob))
        .with_state(BlobState { outpost })
}

/// A request body read frame by frame.
struct RequestBody(Body);

impl ByteSource for RequestBody {
    // Written out because `async_trait` is not a dependency of this crate: the signature is the
    // one the macro generates for the core's trait.
    fn next_chunk<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>, BlobError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            loop {
                let frame = std::future::poll_fn(|cx| Pin::new(&mut self.0).poll_frame(cx)).await;
                match frame {
                    None => return Ok(None),
                    Some(Err(error)) => return Err(BlobError::BodyAborted(error.to_string())),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => return Ok(Some(data)),
                        // Empty chunks and trailers carry no content.
                        _ => {}
                    },
                }
            }
        })
    }
}

/// The decoded query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        Self(
            query
                .unwrap_or_default()
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(name), decode(value))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What one request is about.
struct Target {
    hub: Arc<Hub>,
    host: String,
    container: Container,
    /// The blob name as the client sent it (percent-encoded), after `/<container>/`.
    raw_blob: String,
    query: Query,
    raw_query: String,
}

/// Why a request names nothing of the endpoint.
enum Miss {
    /// A storage error to answer as is.
    Storage(StorageError),
    /// No such container: answered in the client's terms ([`not_found`]).
    NoContainer,
}

fn target(state: &BlobState, headers: &HeaderMap, uri: &Uri) -> Result<Target, Miss> {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.host())
        .unwrap_or_default()
        .to_owned();
    let path = uri.path().strip_prefix('/').unwrap_or_default();
    let (name, raw_blob) = path.split_once('/').unwrap_or((path, ""));
    // Container names are lowercase letters, digits and hyphens: nothing to decode in them.
    let Some(hub) = state.outpost.hubs.by_host(&host) else {
        // No hub: the upload container answers as before, any other path is unknown.
        return Err(if name == BUILTIN_CONTAINER {
            Miss::Storage(StorageError::resource_not_found())
        } else {
            Miss::NoContainer
        });
    };
    let container = Container::resolve(&state.outpost, &hub, name).ok_or(Miss::NoContainer)?;
    let raw_query = uri.query().unwrap_or_default().to_owned();
    Ok(Target {
        hub,
        host,
        container,
        raw_blob: raw_blob.to_owned(),
        query: Query::parse(Some(&raw_query)),
        raw_query,
    })
}

/// The answer to a path whose first segment names no container of the hub (or no hub): a
/// storage client (`x-ms-version`, or a SAS or `restype`/`comp` in the query) gets Azure
/// Storage's `404 ContainerNotFound`; any other client the service API's unknown-path answer,
/// as before these routes matched every first segment.
fn not_found(headers: &HeaderMap, uri: &Uri) -> Response {
    let query = Query::parse(uri.query());
    let storage_client = headers.contains_key("x-ms-version")
        || ["sig", "restype", "comp"]
            .iter()
            .any(|name| query.get(name).is_some());
    if storage_client {
        finish(
            Err(StorageError::new(
                404,
                "ContainerNotFound",
                "The specified container does not exist.",
            )),
            headers,
        )
    } else {
        ApiError::with_status(StatusCode::NOT_FOUND, "NotFound", "no such resource").into_response()
    }
}

/// Authorizes a request: the SAS in the query, else an IoT Hub service token with
/// ServiceConnect (reads, listing and deletes only). Returns the SAS, whose response-header
/// overrides Get Blob applies.
fn authorize(
    state: &BlobState,
    target: &Target,
    headers: &HeaderMap,
    blob: Option<&str>,
    permission: SasPermission,
) -> Result<Option<StorageSas>, StorageError> {
    if let Some(sas) = StorageSas::parse(&target.raw_query)? {
        state.outpost.blobs.verify_container_sas(
            &target.hub,
            target.container.name(),
            &sas,
            blob,
            permission,
        )?;
        return Ok(Some(sas));
    }
    let Some(authorization) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return Err(StorageError::new(
            401,
            "NoAuthenticationInformation",
            "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
        ));
    };
    if !authorization.starts_with("SharedAccessSignature ") {
        return Err(StorageError::authentication(
            "only shared access signatures are accepted",
        ));
    }
    let now = state.outpost.clock.now();
    let caller = state
        .outpost
        .hubs
        .authenticate_service(Some(&target.host), Some(authorization), now)
        .map_err(|error| StorageError::authentication(error.to_string()))?;
    if caller.hub().name != target.hub.name || caller.require(Permission::ServiceConnect).is_err() {
        return Err(StorageError::from(StorageSasError::PermissionMismatch));
    }
    match permission {
        SasPermission::Read | SasPermission::List | SasPermission::Delete => Ok(None),
        _ => Err(StorageError::from(StorageSasError::PermissionMismatch)),
    }
}

/// `/{container}`: List Blobs and Get Container Properties.
async fn container(State(state): State<BlobState>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let target = match target(&state, &headers, &uri) {
        Ok(target) => target,
        Err(Miss::NoContainer) => return not_found(&headers, &uri),
        Err(Miss::Storage(error)) => return finish(Err(error), &headers),
    };
    let result = async {
        if target.query.get("restype") != Some("container") {
            return Err(StorageError::query_value("restype"));
        }
        match (method, target.query.get("comp")) {
            (Method::GET, Some("list")) => list(&state, &target, &headers).await,
            (Method::GET | Method::HEAD, None) => {
                authorize(&state, &target, &headers, None, SasPermission::List)
                    .or_else(|_| authorize(&state, &target, &headers, None, SasPermission::Read))?;
                let mut response = StatusCode::OK.into_response();
                let out = response.headers_mut();
                out.insert("x-ms-lease-status", HeaderValue::from_static("unlocked"));
                out.insert("x-ms-lease-state", HeaderValue::from_static("available"));
                out.insert("x-ms-has-immutability-policy", HeaderValue::from_static("false"));
                out.insert("x-ms-has-legal-hold", HeaderValue::from_static("false"));
                Ok(response)
            }
            (Method::PUT, None) => Err(StorageError::new(
                409,
                "ContainerAlreadyExists",
                "The specified container already exists.",
            )),
            (_, Some(_)) => Err(StorageError::query_value("comp")),
            _ => Err(StorageError::new(
                405,
                "UnsupportedHttpVerb",
                "The resource doesn't support the specified HTTP verb.",
            )),
        }
    }
    .await;
    finish(result, &headers)
}

async fn list(state: &BlobState, target: &Target, headers: &HeaderMap) -> Result<Response, StorageError> {
    authorize(state, target, headers, None, SasPermission::List)?;
    if target.query.get("delimiter").is_some() {
        return Err(StorageError::new(
            400,
            "UnsupportedQueryParameter",
            "One of the query parameters specified in the request URI is not supported (delimiter).",
        ));
    }
    let max_results = match target.query.get("maxresults") {
        None => None,
        Some(value) => match value.parse::<usize>() {
            Ok(max) if max >= 1 => Some(max),
            _ => {
                return Err(StorageError::new(
                    400,
                    "OutOfRangeQueryParameterValue",
                    "One of the query parameters specified in the request URI is outside the permissible range (maxresults).",
                ));
            }
        },
    };
    let prefix = target.query.get("prefix").unwrap_or_default();
    let marker = target.query.get("marker").filter(|marker| !marker.is_empty());
    let page = target
        .container
        .list(
            &state.outpost.blobs,
            &target.hub,
            prefix,
            marker,
            max_results.unwrap_or(MAX_LIST_RESULTS).min(MAX_LIST_RESULTS),
        )
        .await?;
    let body = xml::enumeration_results(
        &xml::ListRequest {
            endpoint: format!("https://{}/", target.host),
            container: target.container.name(),
            prefix,
            marker,
            max_results,
        },
        &page,
    );
    Ok(([(header::CONTENT_TYPE, "application/xml")], body).into_response())
}

/// `/{container}/{blob}`: every blob operation.
async fn blob(State(state): State<BlobState>, request: Request) -> Response {
    let headers = request.headers().clone();
    let head = request.method() == Method::HEAD;
    let target = match target(&state, &headers, request.uri()) {
        Ok(target) => Ok(target),
        Err(Miss::NoContainer) => {
            let mut response = not_found(&headers, request.uri());
            if head {
                *response.body_mut() = Body::empty();
            }
            return response;
        }
        Err(Miss::Storage(error)) => Err(error),
    };
    let result = match target {
        Ok(target) => blob_operation(&state, target, request).await,
        Err(error) => Err(error),
    };
    let mut response = finish(result, &headers);
    if head {
        // HEAD errors carry no body (the SDKs read x-ms-error-code).
        *response.body_mut() = Body::empty();
    }
    response
}

async fn blob_operation(
    state: &BlobState,
    target: Target,
    request: Request,
) -> Result<Response, StorageError> {
    let (parts, body) = request.into_parts();
    let name = percent_decode_str(&target.raw_blob)
        .decode_utf8()
        .map_err(|_| {
            StorageError::new(
                400,
                "InvalidUri",
                "The requested URI does not represent any resource on the server.",
            )
        })?
        .into_owned();
    outpost_core::blobs::validate_name(&name)?;
    let headers = &parts.headers;
    let comp = target.query.get("comp");
    let blobs = &state.outpost.blobs;
    let hub = &target.hub;
    // The SAS signs the name the client sees; the store keeps routed blobs under `~routed/`.
    let stored = target.container.store_name(&name)?;
    if parts.method == Method::PUT && !target.container.writable() {
        // Only message routing writes a routed container: even a SAS with 'w' gets the answer
        // of a SAS without it (after the SAS itself is checked).
        authorize(state, &target, headers, Some(&name), SasPermission::Write)?;
        return Err(StorageError::new(
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission. Routed containers are written by message routing only.",
        ));
    }
    match (parts.method, comp) {
        (Method::PUT, None) => {
            let mut condition = condition(headers);
            if let Err(error) = authorize(state, &target, headers, Some(&name), SasPermission::Write) {
                // Create ('c') alone may write a new blob but not overwrite one.
                authorize(state, &target, headers, Some(&name), SasPermission::Create).map_err(|_| error)?;
                condition.if_none_match = Some("*".into());
            }
            match header_text(headers, "x-ms-blob-type") {
                Some("BlockBlob") => {}
                Some(_) => {
                    return Err(StorageError::new(
                        400,
                        "InvalidHeaderValue",
                        "Only block blobs are supported (x-ms-blob-type).",
                    ));
                }
                None => {
                    return Err(StorageError::new(
                        400,
                        "MissingRequiredHeader",
                        "An HTTP header that's mandatory for this request is not specified (x-ms-blob-type).",
                    ));
                }
            }
            if let Some(length) = header_text(headers, "content-length").and_then(|v| v.parse::<u64>().ok())
                && length > blobs.settings().max_blob_bytes
            {
                return Err(BlobError::TooLarge {
                    limit: blobs.settings().max_blob_bytes,
                }
                .into());
            }
            let content = content_settings(headers, true);
            let md5 = content.content_md5.clone();
            let blob = blobs
                .put_blob(hub, &stored, &mut RequestBody(body), content, condition)
                .await?;
            let mut response = created(&blob);
            if let Some(md5) = md5.and_then(|md5| HeaderValue::from_str(&md5).ok()) {
                response.headers_mut().insert("content-md5", md5);
            }
            Ok(response)
        }
        (Method::PUT, Some("block")) => {
            authorize(state, &target, headers, Some(&name), SasPermission::Write)?;
            let block_id = target
                .query
                .get("blockid")
                .ok_or_else(|| StorageError::query_value("blockid"))?
                .to_owned();
            blobs
                .put_block(hub, &stored, &block_id, &mut RequestBody(body))
                .await?;
            let mut response = StatusCode::CREATED.into_response();
            response
                .headers_mut()
                .insert("x-ms-request-server-encrypted", HeaderValue::from_static("false"));
            if let Some(md5) = headers.get("content-md5") {
                response.headers_mut().insert("content-md5", md5.clone());
            }
            Ok(response)
        }
        (Method::PUT, Some("blocklist")) => {
            authorize(state, &target, headers, Some(&name), SasPermission::Write)?;
            let bytes = axum::body::to_bytes(body, MAX_BLOCK_LIST_BYTES)
                .await
                .map_err(|_| BlobError::TooLarge {
                    limit: MAX_BLOCK_LIST_BYTES as u64,
                })?;
            let text = std::str::from_utf8(&bytes).map_err(|_| invalid_xml())?;
            let blocks = xml::parse_block_list(text).ok_or_else(invalid_xml)?;
            let blob = blobs
                .put_block_list(
                    hub,
                    &stored,
                    &blocks,
                    content_settings(headers, false),
                    condition(headers),
                )
                .await?;
            Ok(created(&blob))
        }
        (Method::GET | Method::HEAD, None) => {
            let sas = authorize(state, &target, headers, Some(&name), SasPermission::Read)?;
            read(state, hub, &stored, headers, sas.as_ref()).await
        }
        (Method::DELETE, None) => {
            authorize(state, &target, headers, Some(&name), SasPermission::Delete)?;
            blobs.delete(hub, &stored).await?;
            let mut response = StatusCode::ACCEPTED.into_response();
            response
                .headers_mut()
                .insert("x-ms-delete-type-permanent", HeaderValue::from_static("true"));
            Ok(response)
        }
        (Method::PUT | Method::GET | Method::HEAD | Method::DELETE, Some(_)) => {
            Err(StorageError::query_value("comp"))
        }
        _ => Err(StorageError::new(
            405,
            "UnsupportedHttpVerb",
            "The resource doesn't support the specified HTTP verb.",
        )),
    }
}

fn invalid_xml() -> StorageError {
    StorageError::new(
        400,
        "InvalidXmlDocument",
        "XML specified is not syntactically valid.",
    )
}

/// Get Blob and Get Blob Properties.
async fn read(
    state: &BlobState,
    hub: &Hub,
    name: &str,
    headers: &HeaderMap,
    sas: Option<&StorageSas>,
) -> Result<Response, StorageError> {
    let blobs = &state.outpost.blobs;
    let properties = blobs.head(hub, name).await?;
    let condition = condition(headers);
    if let Some(tag) = &condition.if_match
        && tag != "*"
        && tag.trim_matches('"') != properties.etag.trim_matches('"')
    {
        return Err(BlobError::ConditionNotMet.into());
    }
    if let Some(tag) = &condition.if_none_match
        && (tag == "*" || tag.trim_matches('"') == properties.etag.trim_matches('"'))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        blob_headers(&properties, response.headers_mut());
        return Ok(response);
    }
    let range = match header_text(headers, "x-ms-range").or_else(|| header_text(headers, "range")) {
        Some(text) => Some(parse_range(text)?),
        None => None,
    };
    let (properties, reader) = match blobs.read(hub, name, range).await {
        Err(BlobError::InvalidRange) => {
            return Err(StorageError {
                range_size: Some(properties.size),
                ..BlobError::InvalidRange.into()
            });
        }
        other => other?,
    };
    let (status, length) = match range {
        Some((start, end)) => {
            let end = end.min(properties.size.saturating_sub(1));
            (StatusCode::PARTIAL_CONTENT, end - start + 1)
        }
        None => (StatusCode::OK, properties.size),
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024));
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    blob_headers(&properties, out);
    if let Some((start, _)) = range {
        let value = format!("bytes {start}-{}/{}", start + length - 1, properties.size);
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(header::CONTENT_RANGE, value);
        }
        // The stored MD5 is of the whole blob; Azure sends it as x-ms-blob-content-md5 then.
        if let Some(md5) = out.remove("content-md5") {
            out.insert("x-ms-blob-content-md5", md5);
        }
    }
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    for (name, value) in sas.map(StorageSas::response_overrides).unwrap_or_default() {
        if let Ok(value) = HeaderValue::from_str(value) {
            out.insert(name, value);
        }
    }
    Ok(response)
}

/// Parses `bytes=<start>-[<end>]`.
fn parse_range(text: &str) -> Result<(u64, u64), StorageError> {
    let spec = text
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(|| StorageError::header_value("range"))?;
    let (start, end) = spec
        .split_once('-')
        .ok_or_else(|| StorageError::header_value("range"))?;
    let start: u64 = start
        .trim()
        .parse()
        .map_err(|_| StorageError::header_value("range"))?;
    let end = match end.trim() {
        "" => u64::MAX,
        end => end.parse().map_err(|_| StorageError::header_value("range"))?,
    };
    if end < start {
        return Err(StorageError::header_value("range"));
    }
    Ok((start, end))
}

/// The properties headers of Get Blob and Get Blob Properties.
fn blob_headers(blob: &BlobProperties, out: &mut HeaderMap) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            out.insert(name, value);
        }
    };
    set("etag", &blob.etag);
    set("last-modified", &xml::http_date(blob.last_modified));
    set("x-ms-creation-time", &xml::http_date(blob.created));
    set("x-ms-blob-type", "BlockBlob");
    set("accept-ranges", "bytes");
    set("x-ms-server-encrypted", "false");
    set("x-ms-lease-status", "unlocked");
    set("x-ms-lease-state", "available");
    set("x-ms-access-tier", "Hot");
    set("x-ms-access-tier-inferred", "true");
    let content = &blob.content;
    set(
        "content-type",
        content
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream"),
    );
    for (name, value) in [
        ("content-encoding", &content.content_encoding),
        ("content-language", &content.content_language),
        ("content-disposition", &content.content_disposition),
        ("cache-control", &content.cache_control),
        ("content-md5", &content.content_md5),
    ] {
        if let Some(value) = value {
            set(name, value);
        }
    }
    set("content-length", &blob.size.to_string());
}

/// The 201 of Put Blob and Put Block List.
fn created(blob: &BlobProperties) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let out = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&blob.etag) {
        out.insert(header::ETAG, etag);
    }
    if let Ok(date) = HeaderValue::from_str(&xml::http_date(blob.last_modified)) {
        out.insert(header::LAST_MODIFIED, date);
    }
    out.insert("x-ms-request-server-encrypted", HeaderValue::from_static("false"));
    response
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn condition(headers: &HeaderMap) -> Condition {
    Condition {
        if_match: header_text(headers, "if-match").map(str::to_owned),
        if_none_match: header_text(headers, "if-none-match").map(str::to_owned),
    }
}

/// The standard properties of a write: `x-ms-blob-content-*` (Put Block List), falling back to
/// the request's own headers for Put Blob, as Azure does.
fn content_settings(headers: &HeaderMap, put_blob: bool) -> ContentSettings {
    let pick = |blob_header: &str, own: &str| {
        header_text(headers, blob_header)
            .or_else(|| put_blob.then(|| header_text(headers, own)).flatten())
            .map(str::to_owned)
    };
    ContentSettings {
        content_type: pick("x-ms-blob-content-type", "content-type"),
        content_encoding: pick("x-ms-blob-content-encoding", "content-encoding"),
        content_language: pick("x-ms-blob-content-language", "content-language"),
        content_disposition: pick("x-ms-blob-content-disposition", "x-ms-blob-content-disposition"),
        cache_control: pick("x-ms-blob-cache-control", "x-ms-blob-cache-control"),
        content_md5: pick("x-ms-blob-content-md5", "content-md5"),
    }
}

/// Adds the headers every answer carries: `x-ms-request-id` (errors have theirs), `x-ms-version`
/// and the client's `x-ms-client-request-id`.
fn finish(result: Result<Response, StorageError>, request: &HeaderMap) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    let out = response.headers_mut();
    if !out.contains_key("x-ms-request-id")
        && let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
    {
        out.insert("x-ms-request-id", id);
    }
    let version = request
        .get("x-ms-version")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_VERSION));
    out.insert("x-ms-version", version);
    if let Some(id) = request.get("x-ms-client-request-id") {
        out.insert("x-ms-client-request-id", id.clone());
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_azure() {
        assert_eq!(parse_range("bytes=0-33554431").unwrap(), (0, 33_554_431));
        assert_eq!(parse_range("bytes=5-").unwrap(), (5, u64::MAX));
        for bad in ["bytes=-5", "bytes=9-3", "items=0-1", "bytes=a-b", "bytes=0"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
