//! Errors of the blob endpoint in Azure Storage's terms: status, `x-ms-error-code`, and the XML
//! body `<Error><Code>…</Code><Message>…</Message></Error>` (the SDKs read the header first).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use outpost_auth::storage_sas::StorageSasError;
use outpost_core::StoreError;
use outpost_core::blobs::BlobError;
use outpost_model::Timestamp;

use super::xml;

/// An Azure Storage error answer.
#[derive(Debug)]
pub(crate) struct StorageError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `AuthenticationErrorDetail`, for authentication failures.
    pub detail: Option<String>,
    /// `Content-Range: bytes */<size>` of an unsatisfiable range.
    pub range_size: Option<u64>,
}

impl StorageError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            detail: None,
            range_size: None,
        }
    }

    pub fn header_value(name: &str) -> Self {
        Self::new(
            400,
            "InvalidHeaderValue",
            format!("The value for one of the HTTP headers is not in the correct format ({name})."),
        )
    }

    pub fn query_value(name: &str) -> Self {
        Self::new(
            400,
            "InvalidQueryParameterValue",
            format!(
                "Value for one of the query parameters specified in the request URI is invalid ({name})."
            ),
        )
    }

    pub fn resource_not_found() -> Self {
        Self::new(404, "ResourceNotFound", "The specified resource does not exist.")
    }

    pub fn authentication(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::new(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
            )
        }
    }
}

impl From<StorageSasError> for StorageError {
    fn from(error: StorageSasError) -> Self {
        tracing::info!(reason = %error, "blob request refused");
        match error.code() {
            (_, "AuthenticationFailed") => Self::authentication(error.to_string()),
            (status, code) => Self::new(status, code, error.to_string()),
        }
    }
}

impl From<BlobError> for StorageError {
    fn from(error: BlobError) -> Self {
        let message = error.to_string();
        match error {
            BlobError::NotFound => Self::new(404, "BlobNotFound", "The specified blob does not exist."),
            BlobError::AlreadyExists => {
                Self::new(409, "BlobAlreadyExists", "The specified blob already exists.")
            }
            BlobError::ConditionNotMet => Self::new(412, "ConditionNotMet", message),
            BlobError::TooLarge { .. } => Self::new(413, "RequestBodyTooLarge", message),
            BlobError::QuotaExceeded { .. } => Self::new(413, "QuotaExceeded", message),
            BlobError::TooManyBlocks { .. } => Self::new(409, "BlockCountExceedsLimit", message),
            BlobError::InvalidBlockList(_) => Self::new(400, "InvalidBlockList", message),
            BlobError::InvalidBlockId => Self::query_value("blockid"),
            BlobError::InvalidName(_) => Self::new(400, "InvalidResourceName", message),
            BlobError::InvalidRange => Self::new(
                416,
                "InvalidRange",
                "The range specified is invalid for the current size of the resource.",
            ),
            BlobError::BodyAborted(_) | BlobError::LengthMismatch { .. } => {
                Self::new(400, "InvalidInput", message)
            }
            BlobError::Store(StoreError::Unavailable(reason)) => {
                tracing::warn!(reason = %reason, "blob store unavailable");
                Self::new(
                    503,
                    "ServerBusy",
                    "The server is currently unable to receive requests. Please retry your request.",
                )
            }
            BlobError::Store(store) => {
                tracing::error!(error = %store, "blob store failure");
                Self::new(
                    500,
                    "InternalError",
                    "The server encountered an internal error. Please retry the request.",
                )
            }
        }
    }
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let message = format!(
            "{}\nRequestId:{request_id}\nTime:{}",
            self.message,
            Timestamp::now()
        );
        let body = xml::error_body(self.code, &message, self.detail.as_deref());
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        headers.insert("x-ms-error-code", HeaderValue::from_static(self.code));
        if let Ok(id) = HeaderValue::from_str(&request_id) {
            headers.insert("x-ms-request-id", id);
        }
        if let Some(size) = self.range_size
            && let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            headers.insert(header::CONTENT_RANGE, value);
        }
        response
    }
}
