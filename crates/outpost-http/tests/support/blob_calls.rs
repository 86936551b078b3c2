//! Requests to the built-in blob endpoint as the Azure Storage SDKs send them, and their answers
//! (shared by the blob endpoint tests; included with `#[path]`).

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// `x-ms-blob-type: BlockBlob`, which Put Blob needs.
pub const BLOCK_BLOB: (&str, &str) = ("x-ms-blob-type", "BlockBlob");

/// A response: status, headers and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The Azure Storage error code (`x-ms-error-code`), or "".
    pub fn code(&self) -> &str {
        self.headers
            .get("x-ms-error-code")
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `router` as `host`.
pub async fn call(
    router: &Router,
    method: Method,
    host: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status,
        headers,
        body,
    }
}
