//! A hub core on the in-memory embedded store, with two hubs, driven through the real routers
//! with `Router::oneshot` (no sockets).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(dead_code, reason = "each test file uses part of the fixture")]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use outpost_auth::{KeyEncoding, SymmetricKey};
use outpost_core::{Backends, C2dSettings, Outpost, SystemClock};
use outpost_http::{HubDefaults, OperatorState};
use outpost_model::{Hub, HubName, TwinLimits};
use outpost_store::{EmbeddedEventLog, EmbeddedStore, EventLogOptions};
use serde_json::Value;
use tower::ServiceExt as _;

pub const HUB_A: &str = "localhost";
pub const HUB_B_HOST: &str = "hubb.example.test";
pub const OPERATOR_TOKEN: &str = "operator-secret";

pub struct Fixture {
    pub outpost: Outpost,
    _events_dir: tempfile::TempDir,
    _blobs_dir: tempfile::TempDir,
    pub service: Router,
    pub operator: Router,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Returns the Azure error code of an error reply (`ErrorCode:<Code>;…`).
    pub fn error_code(&self) -> &str {
        let message = self.body["Message"].as_str().unwrap_or_default();
        message
            .strip_prefix("ErrorCode:")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_default()
    }
}

impl Fixture {
    pub async fn new() -> Self {
        let store = EmbeddedStore::in_memory().unwrap();
        let events_dir = tempfile::tempdir().unwrap();
        let events = EmbeddedEventLog::open(events_dir.path(), EventLogOptions::default()).unwrap();
        let blobs_dir = tempfile::tempdir().unwrap();
        let backends = Backends {
            hubs: Arc::new(store.clone()),
            registry: Arc::new(store.clone()),
            events: Arc::new(events),
            c2d: Arc::new(store.clone()),
            jobs: Arc::new(store.clone()),
            routing: Arc::new(store.clone()),
            service_bound: Arc::new(store),
            blobs: Arc::new(outpost_store::EmbeddedBlobStore::open(blobs_dir.path()).unwrap()),
            clock: Arc::new(SystemClock),
        };
        let outpost = Outpost::start(backends, TwinLimits::default(), C2dSettings::default())
            .await
            .unwrap();
        outpost.ensure_default_hub(HUB_A, 4).await.unwrap();
        outpost
            .create_hub(Hub::new(HubName::new("hubb").unwrap(), HUB_B_HOST, 2).unwrap())
            .await
            .unwrap();
        let service = outpost_http::service_router(outpost.clone());
        let operator = outpost_http::operator_router(OperatorState {
            outpost: Arc::new(outpost.clone()),
            token: OPERATOR_TOKEN.into(),
            service: service.clone(),
            defaults: HubDefaults {
                domain: "example.test".into(),
                partition_count: 4,
            },
            hubs_changed: Arc::new(|| Box::pin(async {})),
        });
        Self {
            outpost,
            _events_dir: events_dir,
            _blobs_dir: blobs_dir,
            service,
            operator,
        }
    }

    /// Returns a policy key of a hub.
    pub fn key(&self, host: &str, policy: &str) -> SymmetricKey {
        self.outpost
            .hubs
            .by_host(host)
            .unwrap()
            .policy(policy)
            .unwrap()
            .primary_key
            .clone()
    }

    /// Returns a SAS token for `host` signed with `policy`'s key, valid for an hour.
    pub fn token(&self, host: &str, policy: &str) -> String {
        sign_service_token(host, policy, &self.key(host, policy), now() + 3600)
    }

    /// Sends a service request to `host` with the iothubowner token of that host.
    pub async fn owner(&self, method: Method, host: &str, path: &str, body: Option<Value>) -> Reply {
        let token = self.token(host, "iothubowner");
        self.service_call(method, host, path, Some(&token), body, &[])
            .await
    }

    pub async fn service_call(
        &self,
        method: Method,
        host: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
        self.raw(&self.service, method, host, path, token, body, headers)
            .await
    }

    #[allow(clippy::too_many_arguments, reason = "mirrors the parts of an HTTP request")]
    pub async fn raw(
        &self,
        router: &Router,
        method: Method,
        host: &str,
        path: &str,
        authorization: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path).header("host", host);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json; charset=utf-8");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs a service token the way the Node service SDK does (`sr` = host, `skn` = policy).
pub fn sign_service_token(host: &str, policy: &str, key: &SymmetricKey, expiry: u64) -> String {
    outpost_auth::sign(host, key, KeyEncoding::Base64Decoded, expiry, Some(policy))
}

/// A path with the api-version the SDKs send.
pub fn api(path: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}api-version=2021-04-12")
}
