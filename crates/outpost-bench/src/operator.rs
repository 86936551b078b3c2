//! A client for Outpost's operator API (`<data-dir>/operator-endpoint`, bearer token in
//! `<data-dir>/operator-token`): device provisioning and the service REST API forwarded under
//! `/hubs/<hub>/service/…`, plus the event-log reads the end-to-end consumer uses.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// One operator API endpoint; cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Operator {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// Reads the endpoint and token the server wrote into its data directory.
    pub fn from_data_dir(data_dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| -> anyhow::Result<String> {
            let path = data_dir.join(name);
            Ok(std::fs::read_to_string(&path)
                .with_context(|| format!("read {} (is `outpost serve` running?)", path.display()))?
                .trim()
                .to_owned())
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Self {
            base: read("operator-endpoint")?.trim_end_matches('/').to_owned(),
            token: read("operator-token")?,
            http: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1024)
                .build(connector),
        })
    }

    /// Sends `method path` (path starting with `/`, relative to the operator endpoint) with an
    /// optional JSON body; returns the status and the whole response body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(body.unwrap_or_default()))?;
        let response = self
            .http
            .request(request)
            .await
            .context("reach the operator API")?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Like [`Operator::call`] on the hub's service REST API (`/hubs/<hub>/service<path>`).
    pub async fn service(
        &self,
        hub: &str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.call(method, &format!("/hubs/{hub}/service{path}"), body)
            .await
    }
}
