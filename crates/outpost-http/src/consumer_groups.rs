//! Operator routes for the consumer groups of a hub's built-in Event Hubs-compatible endpoint,
//! shaped like Azure's resource (`…/eventHubEndpoints/events/ConsumerGroups/<name>`, what
//! `az iot hub consumer-group` manages): `$Default` always exists; up to
//! [`MAX_CONSUMER_GROUPS`](outpost_model::MAX_CONSUMER_GROUPS) in all; names compared
//! case-insensitively. Deleting a group detaches its receivers on the AMQP endpoint.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outpost_model::{ConsumerGroup, ConsumerGroupName};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};

#[derive(Debug, Deserialize)]
pub(crate) struct GroupPath {
    hub: String,
    name: String,
}

/// Azure's resource type of a consumer group.
const RESOURCE_TYPE: &str = "Microsoft.Devices/IotHubs/EventHubEndpoints/ConsumerGroups";

fn resource(hub: &str, group: &ConsumerGroup) -> Value {
    json!({
        "id": format!("/hubs/{hub}/eventHubEndpoints/events/consumerGroups/{}", group.name),
        "name": group.name.as_str(),
        "type": RESOURCE_TYPE,
        "etag": null,
        "properties": {
            "name": group.name.as_str(),
            "created": group.created.to_string(),
        },
    })
}

fn not_found(hub: &str, name: &str) -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("hub '{hub}' has no consumer group '{name}'"),
    )
}

/// `GET /hubs/{hub}/eventHubEndpoints/events/consumerGroups`: `{"value": [...]}`, `$Default`
/// first.
pub(crate) async fn list(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let groups: Vec<Value> = hub
        .consumer_groups()
        .iter()
        .map(|group| resource(hub.name.as_str(), group))
        .collect();
    Ok(Json(json!({ "value": groups })))
}

/// `GET /hubs/{hub}/eventHubEndpoints/events/consumerGroups/{name}`.
pub(crate) async fn get(
    State(state): State<OperatorState>,
    Path(path): Path<GroupPath>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let group = hub
        .consumer_group(&path.name)
        .ok_or_else(|| not_found(hub.name.as_str(), &path.name))?;
    Ok(Json(resource(hub.name.as_str(), &group)))
}

/// `PUT /hubs/{hub}/eventHubEndpoints/events/consumerGroups/{name}` (any body is ignored, as the
/// name is the whole definition): 201 when created, 200 with the existing group otherwise.
pub(crate) async fn put(
    State(state): State<OperatorState>,
    Path(path): Path<GroupPath>,
) -> Result<Response, ApiError> {
    let name = ConsumerGroupName::new(&path.name)?;
    let hub = find_hub(&state, &path.hub)?;
    let (group, created) = state
        .outpost
        .hubs
        .create_consumer_group(hub.name.as_str(), name)
        .await?;
    let status = if created {
        tracing::info!(hub = %hub.name, consumer_group = %group.name, "consumer group created");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(resource(hub.name.as_str(), &group))).into_response())
}

/// `DELETE /hubs/{hub}/eventHubEndpoints/events/consumerGroups/{name}`: 204; `$Default` cannot be
/// deleted (400).
pub(crate) async fn delete(
    State(state): State<OperatorState>,
    Path(path): Path<GroupPath>,
) -> Result<StatusCode, ApiError> {
    let hub = find_hub(&state, &path.hub)?;
    let name = ConsumerGroupName::new(&path.name)?;
    if !name.is_default() && hub.consumer_group(name.as_str()).is_none() {
        return Err(not_found(hub.name.as_str(), &path.name));
    }
    state
        .outpost
        .hubs
        .delete_consumer_group(hub.name.as_str(), name.as_str())
        .await?;
    tracing::info!(hub = %hub.name, consumer_group = %name, "consumer group deleted");
    Ok(StatusCode::NO_CONTENT)
}
