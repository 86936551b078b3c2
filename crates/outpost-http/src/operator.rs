//! The operator API: its own listener (loopback by default), authenticated by the operator
//! token kept in the data dir. It manages hubs (and their consumer groups), prints connection strings, serves `/metrics`,
//! and forwards `/hubs/{hub}/service/…` to the service routes as the operator of that hub (the
//! CLI's device and twin verbs use this).

use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use outpost_auth::{EventHubConnectionString, ServiceConnectionString};
use outpost_core::{ErrorCode, Outpost};
use outpost_model::{Hub, HubName};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::request::{AzureJson, OperatorHub};

/// Called after the set of hubs changed (the server re-issues its development certificate);
/// the operator request completes only after the returned future, so a new hub's host name is
/// covered by the certificate as soon as its creation is acknowledged.
pub type HubsChanged = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Defaults for hubs created through the operator API.
#[derive(Debug, Clone)]
pub struct HubDefaults {
    /// Host names of new hubs default to `<name>.<domain>`.
    pub domain: String,
    /// Partition count of new hubs' built-in endpoint.
    pub partition_count: u32,
}

/// State of the operator routes.
#[derive(Clone)]
pub struct OperatorState {
    /// The hub services (one `Arc`, as in [`crate::ServiceState`]).
    pub outpost: Arc<Outpost>,
    /// The bearer token operators present.
    pub token: Arc<str>,
    /// The service routes, for forwarding.
    pub service: Router,
    /// Defaults for new hubs.
    pub defaults: HubDefaults,
    /// Called after a hub is created or deleted.
    pub hubs_changed: HubsChanged,
}

impl std::fmt::Debug for OperatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorState")
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

/// Returns the operator routes.
pub fn routes(state: OperatorState) -> Router {
    let authenticated = Router::new()
        .route("/hubs", get(list_hubs).post(create_hub))
        .route("/hubs/{hub}", get(get_hub).delete(delete_hub))
        .route("/hubs/{hub}/connection-string", get(connection_string))
        .route("/hubs/{hub}/service/{*rest}", any(forward_to_service))
        .route("/hubs/{hub}/partitions", get(crate::events::partitions))
        .route("/hubs/{hub}/events", get(crate::events::read))
        .route(
            "/hubs/{hub}/devices/{id}/messages/devicebound",
            axum::routing::post(crate::c2d::send),
        )
        .route(
            "/hubs/{hub}/devices/{id}/modules/{mid}/inputs/{input}/messages",
            axum::routing::post(crate::c2d::send_to_module_input),
        )
        .route("/hubs/{hub}/feedback", get(crate::c2d::feedback))
        .route(
            "/hubs/{hub}/file-notifications",
            get(crate::c2d::file_notifications),
        )
        .route("/hubs/{hub}/certificates", get(crate::certificates::list))
        .route(
            "/hubs/{hub}/certificates/{name}",
            axum::routing::put(crate::certificates::put).delete(crate::certificates::delete),
        )
        .route(
            "/hubs/{hub}/eventHubEndpoints/events/consumerGroups",
            get(crate::consumer_groups::list),
        )
        .route(
            "/hubs/{hub}/eventHubEndpoints/events/consumerGroups/{name}",
            get(crate::consumer_groups::get)
                .put(crate::consumer_groups::put)
                .delete(crate::consumer_groups::delete),
        )
        .route(
            "/hubs/{hub}/files/sas",
            axum::routing::post(crate::blob::operator_sas::mint),
        )
        .merge(crate::routing::routes())
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(authenticated)
        .with_state(state)
        .fallback(|| async {
            ApiError::with_status(StatusCode::NOT_FOUND, "NotFound", "no such operator route")
        })
}

async fn require_token(State(state): State<OperatorState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(state.token.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::new(
            ErrorCode::IotHubUnauthorizedAccess,
            "a valid operator token is required",
        )
        .into_response()
    }
}

/// A hub as the operator API shows it (keys only through `connection-string`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HubSummary {
    name: String,
    host_name: String,
    partition_count: u32,
    created: String,
    policies: Vec<PolicySummary>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicySummary {
    key_name: String,
    rights: String,
}

impl From<&Hub> for HubSummary {
    fn from(hub: &Hub) -> Self {
        Self {
            name: hub.name.to_string(),
            host_name: hub.host_name.clone(),
            partition_count: hub.partition_count,
            created: hub.created.to_string(),
            policies: hub
                .policies
                .iter()
                .map(|p| PolicySummary {
                    key_name: p.key_name.to_string(),
                    rights: p.rights.to_string(),
                })
                .collect(),
        }
    }
}

pub(crate) fn find_hub(state: &OperatorState, name: &str) -> Result<Arc<Hub>, ApiError> {
    state
        .outpost
        .hubs
        .by_name(name)
        .ok_or_else(|| ApiError::new(ErrorCode::IotHubNotFound, format!("hub '{name}' not found")))
}

async fn list_hubs(State(state): State<OperatorState>) -> Json<Vec<HubSummary>> {
    Json(
        state
            .outpost
            .hubs
            .list()
            .iter()
            .map(|hub| HubSummary::from(hub.as_ref()))
            .collect(),
    )
}

async fn get_hub(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
) -> Result<Json<HubSummary>, ApiError> {
    Ok(Json(HubSummary::from(find_hub(&state, &name)?.as_ref())))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateHub {
    name: String,
    host_name: Option<String>,
    partition_count: Option<u32>,
}

async fn create_hub(
    State(state): State<OperatorState>,
    AzureJson(request): AzureJson<CreateHub>,
) -> Result<Response, ApiError> {
    let name = HubName::new(&request.name)?;
    let host_name = request
        .host_name
        .unwrap_or_else(|| format!("{name}.{}", state.defaults.domain));
    let partitions = request.partition_count.unwrap_or(state.defaults.partition_count);
    let hub = Hub::new(name, &host_name, partitions)?;
    let hub = state.outpost.create_hub(hub).await?;
    tracing::info!(hub = %hub.name, host = %hub.host_name, "hub created");
    (state.hubs_changed)().await;
    Ok((StatusCode::CREATED, Json(HubSummary::from(hub.as_ref()))).into_response())
}

async fn delete_hub(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.outpost.delete_hub(&name).await?;
    tracing::info!(hub = %name, "hub deleted");
    (state.hubs_changed)().await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionStringQuery {
    policy: Option<String>,
    #[serde(default)]
    eventhub: bool,
    /// With `eventhub`: a custom event stream of the hub instead of the built-in endpoint.
    stream: Option<String>,
}

async fn connection_string(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
    Query(query): Query<ConnectionStringQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hub = find_hub(&state, &name)?;
    let policy_name = query.policy.as_deref().unwrap_or("iothubowner");
    let policy = hub.policy(policy_name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("hub '{name}' has no policy '{policy_name}'"),
        )
    })?;
    let text = if query.eventhub {
        EventHubConnectionString {
            endpoint: format!("sb://{}/", hub.host_name),
            key_name: policy.key_name.to_string(),
            key: policy.primary_key.clone(),
            entity_path: Some(match &query.stream {
                Some(stream) => crate::routing::stream_entity(&state, &hub, stream)?,
                None => hub.name.to_string(),
            }),
            use_development_emulator: false,
        }
        .to_string()
    } else {
        ServiceConnectionString {
            host_name: hub.host_name.clone(),
            key_name: policy.key_name.to_string(),
            key: policy.primary_key.clone(),
        }
        .to_string()
    };
    Ok(Json(serde_json::json!({ "connectionString": text })))
}

async fn forward_to_service(
    State(state): State<OperatorState>,
    Path((hub, _rest)): Path<(String, String)>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &hub)?;
    // Forward the still percent-encoded path: ids may hold characters such as `?` or `%`.
    let raw_path = request.uri().path();
    let rest = raw_path.splitn(5, '/').nth(4).unwrap_or_default();
    let path_and_query = match request.uri().query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    };
    *request.uri_mut() = path_and_query.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            "the forwarded path is not a valid URI",
        )
    })?;
    request.extensions_mut().insert(OperatorHub(hub));
    let response = state.service.clone().oneshot(request).await;
    Ok(response.map_or_else(|never| match never {}, |response| response.map(Body::new)))
}

async fn metrics(State(state): State<OperatorState>) -> Result<Response, ApiError> {
    let mut gauges = Vec::new();
    for hub in state.outpost.hubs.list() {
        let caller = outpost_core::Caller::operator(hub.clone());
        gauges.push(outpost_core::HubGauges {
            hub: hub.name.clone(),
            devices: state.outpost.registry.device_counts(&caller).await?,
            connected_devices: state.outpost.registry.connected_device_count(&caller)?,
        });
    }
    let mut body = state.outpost.metrics.render(&gauges);
    crate::routing::render_metrics(&state.outpost.routing, &mut body);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
