//! Operator routes for a hub's message routing (`docs/routing.md`): the whole configuration, its
//! endpoints (and the consumer groups of event streams), routes, the fallback route and
//! enrichments, a route test against a sample message, endpoint health, and the routing rows of
//! `/metrics`. In Azure these live in the resource-manager plane (`…/IotHubs/<hub>` `routing`
//! properties, `routing/routes/$testall|$testnew`, `routingEndpointsHealth`); Outpost keeps them
//! here, in the JSON shape of `outpost_core::routing::model`.
//!
//! Every change goes through
//! [`Routing::update_config`](outpost_core::routing::Routing::update_config): the whole
//! configuration is checked again (names, conditions with their position, references, loops)
//! before it is stored.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use outpost_core::CoreError;
use outpost_core::routing::{Endpoint, EndpointKind, Enrichment, Route, RoutingConfig};
use outpost_model::{ConsumerGroupName, DEFAULT_CONSUMER_GROUP, EndpointName, Hub};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};
use crate::request::AzureJson;

#[path = "routing_health.rs"]
mod health;
#[path = "routing_test_api.rs"]
mod test_api;

pub(crate) use health::{render_metrics, stream_entity};

/// The routing routes, merged into the operator router (behind its token check).
pub(crate) fn routes() -> Router<OperatorState> {
    Router::new()
        .route("/hubs/{hub}/routing", get(get_config).put(put_config))
        .route(
            "/hubs/{hub}/routing/endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/hubs/{hub}/routing/endpoints/{name}",
            get(get_endpoint).put(put_endpoint).delete(delete_endpoint),
        )
        .route(
            "/hubs/{hub}/routing/endpoints/{name}/consumergroups",
            get(list_consumer_groups),
        )
        .route(
            "/hubs/{hub}/routing/endpoints/{name}/consumergroups/{cg}",
            post(add_consumer_group).delete(delete_consumer_group),
        )
        .route("/hubs/{hub}/routing/routes", get(list_routes).post(create_route))
        .route(
            "/hubs/{hub}/routing/routes/{name}",
            get(get_route).put(put_route).delete(delete_route),
        )
        .route(
            "/hubs/{hub}/routing/fallback",
            get(get_fallback).put(put_fallback),
        )
        .route(
            "/hubs/{hub}/routing/enrichments",
            get(list_enrichments).post(create_enrichment),
        )
        .route(
            "/hubs/{hub}/routing/enrichments/{key}",
            get(get_enrichment).put(put_enrichment).delete(delete_enrichment),
        )
        .route("/hubs/{hub}/routing/test", post(test_api::test))
        .route("/hubs/{hub}/routing/health", get(health::health))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NamePath {
    hub: String,
    name: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GroupPath {
    hub: String,
    name: String,
    cg: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct KeyPath {
    hub: String,
    key: String,
}

pub(crate) fn not_found(what: &str, hub: &Hub, name: &str) -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("hub '{}' has no {what} '{name}'", hub.name),
    )
}

fn conflict(message: String) -> ApiError {
    ApiError::with_status(StatusCode::CONFLICT, "Conflict", message)
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(outpost_core::ErrorCode::ArgumentInvalid, message)
}

/// Parses a routing document and refuses keys the model does not know, so that a misspelt
/// optional field (`conditon`, `isEnable`) is an error instead of a silent default — a route
/// whose condition was dropped would take every message. A key may be absent from the model's
/// own rendering only when it holds nothing (`null`, `[]`, `{}`).
///
/// # Errors
/// The serde error, or the path of the first unknown key.
pub fn parse_strict<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, String> {
    let parsed: T = serde_json::from_value(value.clone()).map_err(|error| error.to_string())?;
    let rendered = serde_json::to_value(&parsed).map_err(|error| error.to_string())?;
    match unknown_key(value, &rendered, "") {
        Some(path) => Err(format!("unknown field '{path}'")),
        None => Ok(parsed),
    }
}

fn unknown_key(input: &Value, known: &Value, at: &str) -> Option<String> {
    match (input, known) {
        (Value::Object(input), Value::Object(known)) => input.iter().find_map(|(key, value)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match known.get(key) {
                Some(known) => unknown_key(value, known, &path),
                None if is_empty(value) => None,
                None => Some(path),
            }
        }),
        (Value::Array(input), Value::Array(known)) => input
            .iter()
            .zip(known)
            .enumerate()
            .find_map(|(index, (value, known))| unknown_key(value, known, &format!("{at}[{index}]"))),
        _ => None,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// Reads a body into a routing document, with the path's name filled in (`name` or `key`) and
/// checked against a name the body gives.
fn document<T: DeserializeOwned + Serialize>(
    mut body: Value,
    name_field: Option<(&str, &str)>,
) -> Result<T, ApiError> {
    if let Some((field, name)) = name_field {
        let Value::Object(fields) = &mut body else {
            return Err(bad_request("the request body must be a JSON object".into()));
        };
        match fields.get(field).map(Value::as_str) {
            None => {
                fields.insert(field.to_owned(), Value::String(name.to_owned()));
            }
            Some(Some(given)) if given.eq_ignore_ascii_case(name) => {}
            Some(_) => {
                return Err(bad_request(format!(
                    "the body's {field} does not match '{name}' in the path"
                )));
            }
        }
    }
    parse_strict(&body).map_err(|reason| bad_request(format!("the request body is not valid: {reason}")))
}

/// Changes a hub's configuration through
/// [`Routing::update_config`](outpost_core::routing::Routing::update_config); `change` may
/// refuse with an [`ApiError`] of its own (404, 409), which is returned as is.
async fn update<T>(
    state: &OperatorState,
    hub: &Hub,
    change: impl FnOnce(&mut RoutingConfig) -> Result<T, ApiError>,
) -> Result<(RoutingConfig, T), ApiError> {
    let mut outcome = None;
    let result = state
        .outpost
        .routing
        .update_config(&hub.name, |config| match change(config) {
            Ok(value) => {
                outcome = Some(Ok(value));
                Ok(())
            }
            Err(error) => {
                outcome = Some(Err(error));
                // Only stops the update; the error above is what the caller gets.
                Err(CoreError::InvalidArgument(String::new()))
            }
        })
        .await;
    match (outcome, result) {
        (Some(Err(error)), _) => Err(error),
        (_, Err(error)) => Err(error.into()),
        (Some(Ok(value)), Ok(config)) => Ok((config, value)),
        (None, Ok(_)) => Err(ApiError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerError",
            "the routing configuration was not changed",
        )),
    }
}

fn created_or_ok(created: bool, body: Value) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

// ---- the whole configuration ----

/// `GET /hubs/{hub}/routing`.
async fn get_config(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
) -> Result<Json<RoutingConfig>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    Ok(Json(state.outpost.routing.config(&hub.name)))
}

/// `PUT /hubs/{hub}/routing`: replaces the whole configuration.
async fn put_config(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
    AzureJson(body): AzureJson<Value>,
) -> Result<Json<RoutingConfig>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let config: RoutingConfig = document(body, None)?;
    let config = state
        .outpost
        .routing
        .set_config(hub.name.as_str(), config)
        .await?;
    tracing::info!(hub = %hub.name, routes = config.routes.len(), endpoints = config.endpoints.len(), "routing configuration replaced");
    Ok(Json(config))
}

// ---- endpoints ----

/// `GET /hubs/{hub}/routing/endpoints`: `{"value": [...]}`.
async fn list_endpoints(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let config = state.outpost.routing.config(&hub.name);
    Ok(Json(json!({ "value": config.endpoints })))
}

/// `GET /hubs/{hub}/routing/endpoints/{name}`.
async fn get_endpoint(
    State(state): State<OperatorState>,
    Path(path): Path<NamePath>,
) -> Result<Json<Endpoint>, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let config = state.outpost.routing.config(&hub.name);
    let endpoint = config
        .endpoint(&path.name)
        .ok_or_else(|| not_found("routing endpoint", &hub, &path.name))?;
    Ok(Json(endpoint.clone()))
}

/// Adds or replaces an endpoint; `create_only` refuses an existing name (409). Replacing keeps
/// the kind: turning a stream into a webhook under the same name would silently drop the
/// stream's data, so it must be deleted first (409).
async fn upsert_endpoint(
    state: &OperatorState,
    hub: &Hub,
    endpoint: Endpoint,
    create_only: bool,
) -> Result<Response, ApiError> {
    let name = endpoint.name.to_string();
    let (_, (created, stored)) = update(state, hub, |config| {
        let existing = config
            .endpoints
            .iter_mut()
            .find(|e| e.name.as_str().eq_ignore_ascii_case(&name));
        match existing {
            Some(existing) if create_only => Err(conflict(format!(
                "hub '{}' has a routing endpoint '{}' already",
                hub.name, existing.name
            ))),
            Some(existing) if existing.kind.name() != endpoint.kind.name() => Err(conflict(format!(
                "routing endpoint '{}' is a {} endpoint; delete it before creating a {} endpoint of that name",
                existing.name,
                existing.kind.name(),
                endpoint.kind.name()
            ))),
            Some(existing) => {
                *existing = endpoint.clone();
                Ok((false, endpoint))
            }
            None => {
                config.endpoints.push(endpoint.clone());
                Ok((true, endpoint))
            }
        }
    })
    .await?;
    tracing::info!(hub = %hub.name, endpoint = %stored.name, kind = stored.kind.name(), created, "routing endpoint written");
    Ok(created_or_ok(created, to_json(&stored)))
}

/// `POST /hubs/{hub}/routing/endpoints`: creates an endpoint (409 when the name is taken).
async fn create_endpoint(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let endpoint: Endpoint = document(body, None)?;
    upsert_endpoint(&state, &hub, endpoint, true).await
}

/// `PUT /hubs/{hub}/routing/endpoints/{name}`: creates (201) or replaces (200) an endpoint.
async fn put_endpoint(
    State(state): State<OperatorState>,
    Path(path): Path<NamePath>,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let endpoint: Endpoint = document(body, Some(("name", &path.name)))?;
    upsert_endpoint(&state, &hub, endpoint, false).await
}

/// Who names an endpoint: routes and enrichments.
fn references(config: &RoutingConfig, endpoint: &str) -> Vec<String> {
    let names = |list: &[String]| list.iter().any(|name| name.eq_ignore_ascii_case(endpoint));
    config
        .routes
        .iter()
        .filter(|route| names(&route.endpoint_names))
        .map(|route| format!("route '{}'", route.name))
        .chain(
            config
                .enrichments
                .iter()
                .filter(|enrichment| names(&enrichment.endpoint_names))
                .map(|enrichment| format!("enrichment '{}'", enrichment.key)),
        )
        .collect()
}

/// `DELETE /hubs/{hub}/routing/endpoints/{name}`: 204; 409 while a route or an enrichment names
/// it (Azure refuses the same update).
async fn delete_endpoint(
    State(state): State<OperatorState>,
    Path(path): Path<NamePath>,
) -> Result<StatusCode, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    update(&state, &hub, |config| {
        let index = config
            .endpoints
            .iter()
            .position(|e| e.name.as_str().eq_ignore_ascii_case(&path.name))
            .ok_or_else(|| not_found("routing endpoint", &hub, &path.name))?;
        let users = references(config, &path.name);
        if !users.is_empty() {
            return Err(conflict(format!(
                "routing endpoint '{}' is still used by {}; change or delete those first",
                path.name,
                users.join(", ")
            )));
        }
        config.endpoints.remove(index);
        Ok(())
    })
    .await?;
    tracing::info!(hub = %hub.name, endpoint = %path.name, "routing endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The consumer groups of an event stream, `$Default` first.
fn stream_groups(endpoint: &mut Endpoint) -> Result<&mut Vec<ConsumerGroupName>, ApiError> {
    match &mut endpoint.kind {
        EndpointKind::EventStream { consumer_groups, .. } => Ok(consumer_groups),
        other => Err(bad_request(format!(
            "routing endpoint '{}' is a {} endpoint; only event streams have consumer groups",
            endpoint.name,
            other.name()
        ))),
    }
}

fn find_endpoint<'c>(
    config: &'c mut RoutingConfig,
    hub: &Hub,
    name: &str,
) -> Result<&'c mut Endpoint, ApiError> {
    config
        .endpoints
        .iter_mut()
        .find(|e| e.name.as_str().eq_ignore_ascii_case(name))
        .ok_or_else(|| not_found("routing endpoint", hub, name))
}

/// `GET /hubs/{hub}/routing/endpoints/{name}/consumergroups`: `{"value": ["$Default", ...]}`.
async fn list_consumer_groups(
    State(state): State<OperatorState>,
    Path(path): Path<NamePath>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let mut config = state.outpost.routing.config(&hub.name);
    let endpoint = find_endpoint(&mut config, &hub, &path.name)?;
    let groups = stream_groups(endpoint)?;
    let names: Vec<&str> = std::iter::once(DEFAULT_CONSUMER_GROUP)
        .chain(groups.iter().map(ConsumerGroupName::as_str))
        .collect();
    Ok(Json(json!({ "value": names })))
}

/// `POST /hubs/{hub}/routing/endpoints/{name}/consumergroups/{cg}`: 201 when added, 200 when
/// the stream has it already (names compared case-insensitively; `$Default` always exists).
async fn add_consumer_group(
    State(state): State<OperatorState>,
    Path(path): Path<GroupPath>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let group = ConsumerGroupName::new(&path.cg)?;
    let (_, (created, name)) = update(&state, &hub, |config| {
        let endpoint = find_endpoint(config, &hub, &path.name)?;
        let endpoint_name = endpoint.name.clone();
        let groups = stream_groups(endpoint)?;
        if group.is_default() {
            return Ok((false, (endpoint_name, ConsumerGroupName::default_group())));
        }
        if let Some(existing) = groups.iter().find(|g| g.matches(group.as_str())) {
            return Ok((false, (endpoint_name, existing.clone())));
        }
        groups.push(group.clone());
        Ok((true, (endpoint_name, group.clone())))
    })
    .await?;
    let (endpoint, group) = name;
    if created {
        tracing::info!(hub = %hub.name, %endpoint, consumer_group = %group, "stream consumer group created");
    }
    Ok(created_or_ok(
        created,
        json!({ "endpointName": endpoint.as_str(), "name": group.as_str() }),
    ))
}

/// `DELETE /hubs/{hub}/routing/endpoints/{name}/consumergroups/{cg}`: 204; `$Default` cannot be
/// deleted (400).
async fn delete_consumer_group(
    State(state): State<OperatorState>,
    Path(path): Path<GroupPath>,
) -> Result<StatusCode, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    if path.cg.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP) {
        return Err(bad_request(
            "the $Default consumer group cannot be deleted".into(),
        ));
    }
    update(&state, &hub, |config| {
        let endpoint = find_endpoint(config, &hub, &path.name)?;
        let groups = stream_groups(endpoint)?;
        let before = groups.len();
        groups.retain(|g| !g.matches(&path.cg));
        if groups.len() == before {
            return Err(not_found(
                &format!("consumer group on stream '{}' named", path.name),
                &hub,
                &path.cg,
            ));
        }
        Ok(())
    })
    .await?;
    tracing::info!(hub = %hub.name, endpoint = %path.name, consumer_group = %path.cg, "stream consumer group deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- routes ----

/// `GET /hubs/{hub}/routing/routes`: `{"value": [...]}`.
async fn list_routes(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    Ok(Json(
        json!({ "value": state.outpost.routing.config(&hub.name).routes }),
    ))
}

/// `GET /hubs/{hub}/routing/routes/{name}`.
async fn get_route(
    State(state): State<OperatorState>,
    Path(path): Path<NamePath>,
) -> Result<Json<Route>, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let config = state.outpost.routing.config(&hub.name);
    let route = config
        .route(&path.name)
        .ok_or_else(|| not_found("route", &hub, &path.name))?;
    Ok(Json(route.clone()))
}

async fn upsert_route(
    state: &OperatorState,
    hub: &Hub,
    route: Route,
    create_only: bool,
) -> Result<Response, ApiError> {
    let (_, created) = update(state, hub, |config| {
        match config
            .routes
            .iter_mut()
            .find(|r| r.name.eq_ignore_ascii_case(&route.name))
        {
            Some(existing) if create_only => Err(conflict(format!(
                "hub '{}' has a route '{}' already",
                hub.name, existing.name
            ))),
            Some(existing) => {
                *existing = route.clone();
                Ok(false)
            }
            None => {
                config.routes.push(route.clone());
                Ok(true)
            }
        }
    })
    .await?;
    tracing::info!(hub = %hub.name, route = %route.name, created, "route written");
    Ok(created_or_ok(created, to_json(&route)))
}

/// `POST /hubs/{hub}/routing/routes`: creates a route (409 when the name is taken).
async fn create_route(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let route: Route = document(body, None)?;
    upsert_route(&state, &hub, route, true).await
}

/// `PUT /hubs/{hub}/routing/routes/{name}`: creates (201) or replaces (200) a route.
async fn put_route(
    State(state): State<OperatorState>,
    Path(path): Path<NamePath>,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let route: Route = document(body, Some(("name", &path.name)))?;
    upsert_route(&state, &hub, route, false).await
}

/// `DELETE /hubs/{hub}/routing/routes/{name}`: 204.
async fn delete_route(
    State(state): State<OperatorState>,
    Path(path): Path<NamePath>,
) -> Result<StatusCode, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    update(&state, &hub, |config| {
        let before = config.routes.len();
        config.routes.retain(|r| !r.name.eq_ignore_ascii_case(&path.name));
        if config.routes.len() == before {
            return Err(not_found("route", &hub, &path.name));
        }
        Ok(())
    })
    .await?;
    tracing::info!(hub = %hub.name, route = %path.name, "route deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- fallback route ----

/// The fallback route as Azure shows it (`FallbackRouteProperties`): only `isEnabled` changes.
fn fallback_json(config: &RoutingConfig) -> Value {
    json!({
        "name": "$fallback",
        "source": "DeviceMessages",
        "condition": "true",
        "endpointNames": [EndpointName::BUILT_IN],
        "isEnabled": config.fallback_route.is_enabled,
    })
}

/// `GET /hubs/{hub}/routing/fallback`.
async fn get_fallback(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    Ok(Json(fallback_json(&state.outpost.routing.config(&hub.name))))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FallbackBody {
    is_enabled: bool,
}

/// `PUT /hubs/{hub}/routing/fallback`: `{"isEnabled": bool}`.
async fn put_fallback(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
    AzureJson(body): AzureJson<FallbackBody>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let (config, ()) = update(&state, &hub, |config| {
        config.fallback_route.is_enabled = body.is_enabled;
        Ok(())
    })
    .await?;
    tracing::info!(hub = %hub.name, enabled = body.is_enabled, "fallback route set");
    Ok(Json(fallback_json(&config)))
}

// ---- enrichments ----

/// `GET /hubs/{hub}/routing/enrichments`: `{"value": [...]}`.
async fn list_enrichments(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    Ok(Json(
        json!({ "value": state.outpost.routing.config(&hub.name).enrichments }),
    ))
}

/// `GET /hubs/{hub}/routing/enrichments/{key}`.
async fn get_enrichment(
    State(state): State<OperatorState>,
    Path(path): Path<KeyPath>,
) -> Result<Json<Enrichment>, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let config = state.outpost.routing.config(&hub.name);
    config
        .enrichments
        .iter()
        .find(|e| e.key.eq_ignore_ascii_case(&path.key))
        .map(|e| Json(e.clone()))
        .ok_or_else(|| not_found("enrichment", &hub, &path.key))
}

async fn upsert_enrichment(
    state: &OperatorState,
    hub: &Hub,
    enrichment: Enrichment,
    create_only: bool,
) -> Result<Response, ApiError> {
    let (_, created) = update(state, hub, |config| {
        match config
            .enrichments
            .iter_mut()
            .find(|e| e.key.eq_ignore_ascii_case(&enrichment.key))
        {
            Some(existing) if create_only => Err(conflict(format!(
                "hub '{}' has an enrichment '{}' already",
                hub.name, existing.key
            ))),
            Some(existing) => {
                *existing = enrichment.clone();
                Ok(false)
            }
            None => {
                config.enrichments.push(enrichment.clone());
                Ok(true)
            }
        }
    })
    .await?;
    tracing::info!(hub = %hub.name, key = %enrichment.key, created, "enrichment written");
    Ok(created_or_ok(created, to_json(&enrichment)))
}

/// `POST /hubs/{hub}/routing/enrichments`: creates an enrichment (409 when the key is taken).
async fn create_enrichment(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let enrichment: Enrichment = document(body, None)?;
    upsert_enrichment(&state, &hub, enrichment, true).await
}

/// `PUT /hubs/{hub}/routing/enrichments/{key}`: creates (201) or replaces (200) an enrichment.
async fn put_enrichment(
    State(state): State<OperatorState>,
    Path(path): Path<KeyPath>,
    AzureJson(body): AzureJson<Value>,
) -> Result<Response, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let enrichment: Enrichment = document(body, Some(("key", &path.key)))?;
    upsert_enrichment(&state, &hub, enrichment, false).await
}

/// `DELETE /hubs/{hub}/routing/enrichments/{key}`: 204.
async fn delete_enrichment(
    State(state): State<OperatorState>,
    Path(path): Path<KeyPath>,
) -> Result<StatusCode, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    update(&state, &hub, |config| {
        let before = config.enrichments.len();
        config
            .enrichments
            .retain(|e| !e.key.eq_ignore_ascii_case(&path.key));
        if config.enrichments.len() == before {
            return Err(not_found("enrichment", &hub, &path.key));
        }
        Ok(())
    })
    .await?;
    tracing::info!(hub = %hub.name, key = %path.key, "enrichment deleted");
    Ok(StatusCode::NO_CONTENT)
}
