//! The one mapping from Outpost errors to HTTP: status from the Azure error code, and Azure's
//! error body (wire contract §5.1):
//! `{"Message":"ErrorCode:<Code>;<text>","ExceptionMessage":"Tracking ID:<id>-G:0-TimeStamp:<time>"}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use outpost_core::{CoreError, ErrorCode, HasErrorCode};
use outpost_model::{ModelError, Timestamp};

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// Builds an error from a code and a message for the client.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code: code.name(),
            message: message.into(),
        }
    }

    /// Builds an error with an explicit status, for protocol-level failures that have no Azure
    /// code of their own (unknown route, wrong method).
    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// Returns the HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        let code = error.code();
        let message = match &error {
            // Internal details are logged here, where the error is handled, and never sent.
            CoreError::Store(store) => {
                tracing::error!(error = %store, "storage failure while serving a request");
                "the request could not be completed; see the server log".to_owned()
            }
            CoreError::Unauthorized(failure) => {
                tracing::info!(reason = failure.describe(), "request refused");
                error.to_string()
            }
            _ => error.to_string(),
        };
        Self::new(code, message)
    }
}

impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let tracking_id = uuid::Uuid::new_v4().simple().to_string();
        let body = serde_json::json!({
            "Message": format!("ErrorCode:{};{}", self.code, self.message),
            "ExceptionMessage": format!("Tracking ID:{tracking_id}-G:0-TimeStamp:{}", Timestamp::now()),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Ok(code) = HeaderValue::from_str(self.code) {
            response.headers_mut().insert("iothub-errorcode", code);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_not_found_is_a_404_with_the_azure_code() {
        let error = ApiError::new(ErrorCode::DeviceNotFound, "device 'd' not found");
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
        let response = error.into_response();
        assert_eq!(response.headers()["iothub-errorcode"], "DeviceNotFound");
    }
}
