//! A client of the operator API of a running server. Its URL and bearer token are read from the
//! data dir, so admin verbs need no arguments when run next to `outpost serve`.

use std::path::Path;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outpost_server::{OPERATOR_ENDPOINT_FILE, OPERATOR_TOKEN_FILE};
use serde_json::Value;

/// The service API version the CLI speaks when it forwards to the service routes.
const API_VERSION: &str = "2021-04-12";

/// A connection to a running server's operator API.
#[derive(Debug)]
pub struct OperatorClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// A successful response's JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub body: Value,
    /// `outpost-next-sequence-number` of an event read: where the next read starts (past
    /// records the endpoint does not serve).
    pub next_sequence_number: Option<u64>,
}

impl OperatorClient {
    /// Finds the running server of `data_dir`.
    pub fn connect(data_dir: &Path) -> anyhow::Result<Self> {
        let endpoint_file = data_dir.join(OPERATOR_ENDPOINT_FILE);
        let base = std::fs::read_to_string(&endpoint_file)
            .with_context(|| {
                format!(
                    "read {} (is `outpost serve` running with this data dir?)",
                    endpoint_file.display()
                )
            })?
            .trim()
            .to_owned();
        let token_file = data_dir.join(OPERATOR_TOKEN_FILE);
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("read {}", token_file.display()))?
            .trim()
            .to_owned();
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { base, token, http })
    }

    /// Sends a request to the operator API and returns the reply; statuses ≥ 400 become errors
    /// carrying the server's message.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Reply> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("authorization", format!("Bearer {}", self.token));
        let payload = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(body)?)
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(payload)).context("build the request")?;
        let response = self
            .http
            .request(request)
            .await
            .with_context(|| format!("reach {}", self.base))?;
        let status = response.status();
        let next_sequence_number = response
            .headers()
            .get("outpost-next-sequence-number")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("read the reply")?
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_client_error() || status.is_server_error() {
            let message = body
                .get("Message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{status}: {message}");
        }
        Ok(Reply {
            body,
            next_sequence_number,
        })
    }

    /// Calls a service API route of `hub` as the operator.
    pub async fn service(
        &self,
        hub: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let path = format!("/hubs/{hub}/service{path}{separator}api-version={API_VERSION}");
        self.call(method, &path, body).await
    }
}
