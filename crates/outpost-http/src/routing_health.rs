//! Endpoint health for the operator API (`GET /hubs/{hub}/routing/health`, in the shape of
//! Azure's `routingEndpointsHealth`), the routing rows of `/metrics`, and the Event Hubs entity
//! of a custom stream for `connection-string?eventhub=true&stream=<name>`.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Path, State};
use outpost_core::routing::{EndpointHealth, EndpointKind, HealthStatus, Routing};
use outpost_model::Hub;
use serde_json::{Value, json};

use super::{bad_request, not_found};
use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};

fn status_name(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Unknown => "unknown",
        HealthStatus::Healthy => "healthy",
        HealthStatus::Unhealthy => "unhealthy",
        HealthStatus::Dead => "dead",
    }
}

/// `GET /hubs/{hub}/routing/health`: `{"value": [...]}` in the shape of Azure's
/// `routingEndpointsHealth` list (`endpointId`, `healthStatus`, `lastKnownError`,
/// `lastKnownErrorTime`, `lastSuccessfulSendAttemptTime`, `lastSendAttemptTime`), plus Outpost's
/// `kind` and counters. Every configured custom endpoint is listed; one whose workers have not
/// started (delivery not running yet) is `unknown`.
pub(super) async fn health(
    State(state): State<OperatorState>,
    Path(hub): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &hub)?;
    let routing = &state.outpost.routing;
    let measured = routing.health(&hub.name);
    let rows: Vec<Value> = routing
        .config(&hub.name)
        .endpoints
        .iter()
        .map(|endpoint| {
            let found = measured
                .iter()
                .find(|h| h.endpoint_name.eq_ignore_ascii_case(endpoint.name.as_str()));
            let Some(h) = found else {
                return json!({
                    "endpointId": endpoint.name.as_str(),
                    "healthStatus": "unknown",
                    "kind": endpoint.kind.name(),
                    "delivered": 0, "failures": 0, "deadLettered": 0,
                });
            };
            // Timestamps print in one fixed width (seven fractional digits), so they compare as text.
            let last_attempt = [&h.last_successful_send_attempt_time, &h.last_send_attempt_time]
                .into_iter()
                .flatten()
                .max();
            json!({
                "endpointId": h.endpoint_name,
                "healthStatus": status_name(h.health_status),
                "lastKnownError": h.last_error,
                "lastKnownErrorTime": h.last_send_attempt_time,
                "lastSuccessfulSendAttemptTime": h.last_successful_send_attempt_time,
                "lastSendAttemptTime": last_attempt,
                "kind": h.kind,
                "delivered": h.delivered,
                "failures": h.failures,
                "deadLettered": h.dead_lettered,
            })
        })
        .collect();
    Ok(Json(json!({ "value": rows })))
}

/// A counter of [`EndpointHealth`]: name, help, value.
type Counter = (&'static str, &'static str, fn(&EndpointHealth) -> u64);

/// Appends the routing rows to the `/metrics` text (documented in the routing notes).
pub(crate) fn render_metrics(routing: &Routing, out: &mut String) {
    let all = routing.all_health();
    let labels =
        |hub: &str, endpoint: &str| format!("hub=\"{}\",endpoint=\"{}\"", escape(hub), escape(endpoint));
    out.push_str("# HELP outpost_routing_endpoint_health Routing endpoint status: 1 for the current one.\n");
    out.push_str("# TYPE outpost_routing_endpoint_health gauge\n");
    for (hub, health) in &all {
        let base = labels(hub.as_str(), &health.endpoint_name);
        for status in [
            HealthStatus::Unknown,
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
            HealthStatus::Dead,
        ] {
            let value = u8::from(status == health.health_status);
            let _ = writeln!(
                out,
                "outpost_routing_endpoint_health{{{base},kind=\"{}\",status=\"{}\"}} {value}",
                health.kind,
                status_name(status)
            );
        }
    }
    let counters: [Counter; 3] = [
        (
            "outpost_routing_delivered_total",
            "Messages delivered to a routing endpoint since the server started.",
            |h| h.delivered,
        ),
        (
            "outpost_routing_delivery_failures_total",
            "Failed delivery attempts to a routing endpoint since the server started.",
            |h| h.failures,
        ),
        (
            "outpost_routing_dead_lettered_total",
            "Messages dead-lettered by a routing endpoint since the server started.",
            |h| h.dead_lettered,
        ),
    ];
    for (name, help, pick) in counters {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (hub, health) in &all {
            let _ = writeln!(
                out,
                "{name}{{{}}} {}",
                labels(hub.as_str(), &health.endpoint_name),
                pick(health)
            );
        }
    }
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Event Hubs entity of a hub's custom event stream, for `connection-string?stream=<name>`:
/// the stream's name as configured (404 when the hub has no such stream).
pub(crate) fn stream_entity(state: &OperatorState, hub: &Hub, name: &str) -> Result<String, ApiError> {
    let config = state.outpost.routing.config(&hub.name);
    match config.endpoint(name) {
        Some(endpoint) if matches!(endpoint.kind, EndpointKind::EventStream { .. }) => {
            Ok(endpoint.name.to_string())
        }
        Some(endpoint) => Err(bad_request(format!(
            "routing endpoint '{}' is a {} endpoint, not an event stream",
            endpoint.name,
            endpoint.kind.name()
        ))),
        None => Err(not_found("event stream", hub, name)),
    }
}
