//! Operator routes over a hub's event logs: partition state and a long-polling read, which
//! `outpost monitor-events` tails. They show what the Event Hubs-compatible endpoint serves: the
//! hub's log as the built-in endpoint (only messages routed to `events`, with that endpoint's
//! enrichments), or with `endpoint=<stream>` a custom event stream's log. Messages are rendered as
//! JSON with the names the Event Hubs endpoint uses for them (AMQP property names, `iothub-*` and
//! `x-opt-*` annotations).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::IntoResponse;
use base64::Engine as _;
use outpost_core::routing::EndpointKind;
use outpost_core::{ErrorCode, LogPosition, StoredEvent};
use outpost_model::{EndpointName, Hub, LogName, Message, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};

/// Longest a read waits for new events.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most events one read returns.
const MAX_EVENTS: usize = 1000;
/// The response header of a read naming the sequence number to read from next: past the records
/// the built-in endpoint does not serve, which the answer leaves out.
pub const NEXT_SEQUENCE_NUMBER: &str = "outpost-next-sequence-number";

/// Which log a request reads: the hub's as the built-in endpoint, or a custom event stream's.
#[derive(Debug, Deserialize)]
pub(crate) struct EndpointQuery {
    /// `events` (default) or the name of a custom event stream.
    endpoint: Option<String>,
}

/// A log as an endpoint serves it.
struct Served {
    log: LogName,
    partition_count: u32,
    /// The hub's log: only messages routed to `events`.
    built_in: bool,
}

fn served_log(state: &OperatorState, hub: &Hub, endpoint: Option<&str>) -> Result<Served, ApiError> {
    let built_in = Served {
        log: LogName::hub(&hub.name),
        partition_count: hub.partition_count,
        built_in: true,
    };
    let Some(name) = endpoint.filter(|name| !name.eq_ignore_ascii_case(EndpointName::BUILT_IN)) else {
        return Ok(built_in);
    };
    let router = state.outpost.routing.router(&hub.name);
    match router
        .config()
        .endpoint(name)
        .map(|endpoint| (&endpoint.name, &endpoint.kind))
    {
        Some((stream, EndpointKind::EventStream { partition_count, .. })) => Ok(Served {
            log: LogName::stream(&hub.name, stream),
            partition_count: *partition_count,
            built_in: false,
        }),
        _ => Err(ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("hub '{}' has no event stream '{name}'", hub.name),
        )),
    }
}

/// `GET /hubs/{hub}/partitions[?endpoint=<stream>]`: the state of every partition.
pub(crate) async fn partitions(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
    Query(query): Query<EndpointQuery>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &name)?;
    let served = served_log(&state, &hub, query.endpoint.as_deref())?;
    let log = state.outpost.telemetry.log();
    let mut out = Vec::new();
    for partition in 0..served.partition_count {
        let info = log
            .partition_info(&served.log, partition)
            .await
            .map_err(outpost_core::CoreError::from)?;
        out.push(json!({
            "partition": partition.to_string(),
            "beginSequenceNumber": info.begin_sequence_number,
            "lastEnqueuedSequenceNumber": info.last.map(|last| last.sequence_number),
            "lastEnqueuedOffset": info.last.map(|last| last.offset.to_string()),
            "lastEnqueuedTimeUtc": info.last.map(|last| last.enqueued_time.to_string()),
            "isEmpty": info.last.is_none(),
        }));
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadQuery {
    partition: u32,
    /// First sequence number to return.
    from_sequence_number: Option<u64>,
    /// Or: first event enqueued at or after this time (RFC 3339).
    from_enqueued_time: Option<String>,
    max: Option<usize>,
    /// Milliseconds to wait for an event when none is there yet.
    wait_ms: Option<u64>,
    /// `events` (default) or a custom event stream.
    endpoint: Option<String>,
}

/// `GET /hubs/{hub}/events?partition=P&fromSequenceNumber=N&max=M&waitMs=W[&endpoint=E]`: the
/// events the endpoint serves from there; records it does not serve are passed over (the reply's
/// `outpost-next-sequence-number` header says where to go on).
pub(crate) async fn read(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let hub = find_hub(&state, &name)?;
    let served = served_log(&state, &hub, query.endpoint.as_deref())?;
    if query.partition >= served.partition_count {
        return Err(ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("hub '{name}' has no partition {}", query.partition),
        ));
    }
    let mut from = match (&query.from_sequence_number, &query.from_enqueued_time) {
        (Some(sequence), _) => LogPosition::SequenceNumber(*sequence),
        (None, Some(time)) => LogPosition::EnqueuedTime(time.parse::<Timestamp>().map_err(|_| {
            ApiError::new(
                ErrorCode::ArgumentInvalid,
                "fromEnqueuedTime is not an RFC 3339 time",
            )
        })?),
        (None, None) => LogPosition::SequenceNumber(0),
    };
    let max = query.max.unwrap_or(100).clamp(1, MAX_EVENTS);
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let log = state.outpost.telemetry.log();
    let mut watch = log
        .watch(&served.log, query.partition)
        .map_err(outpost_core::CoreError::from)?;
    let deadline = tokio::time::Instant::now() + wait;
    let reply = |next: u64, events: Vec<Value>| {
        let header = HeaderValue::from(next);
        (
            [(HeaderName::from_static(NEXT_SEQUENCE_NUMBER), header)],
            Json(Value::Array(events)),
        )
    };
    loop {
        // Everything before `end` was durable before the read: an empty read from a time means
        // the next event is at `end` or later.
        let end = *watch.borrow_and_update();
        let events = log
            .read(&served.log, query.partition, from, max, 4 * 1024 * 1024)
            .await
            .map_err(outpost_core::CoreError::from)?;
        let next = match (events.last(), from) {
            (Some(last), _) => last.position.sequence_number.saturating_add(1),
            (None, LogPosition::SequenceNumber(sequence)) => sequence,
            (None, _) => end,
        };
        let rendered: Vec<Value> = events
            .iter()
            .filter_map(|event| served_json(event, served.built_in))
            .collect();
        if !rendered.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(reply(next, rendered));
        }
        from = LogPosition::SequenceNumber(next);
        if !events.is_empty() {
            // Only records the endpoint does not serve: read on.
            continue;
        }
        // Woken by the next durable append, or by the deadline.
        if tokio::time::timeout_at(deadline, watch.changed()).await.is_err() {
            return Ok(reply(next, Vec::new()));
        }
    }
}

/// Renders a stored event as the built-in endpoint (`built_in`) or a stream serves it; `None`
/// when the built-in endpoint does not serve it (routed elsewhere only).
fn served_json(event: &StoredEvent, built_in: bool) -> Option<Value> {
    match Message::decode(event.payload.clone()) {
        Ok(message) if built_in => {
            let delivery = message.delivery(EndpointName::BUILT_IN)?;
            if delivery.enrichments.is_empty() {
                Some(message_json(event, &message))
            } else {
                message
                    .for_endpoint(EndpointName::BUILT_IN)
                    .map(|message| message_json(event, &message))
            }
        }
        Ok(message) => Some(message_json(event, &message)),
        Err(_) => Some(event_json(event)),
    }
}

/// The `x-opt-*` annotations of a stored event.
fn position_annotations(event: &StoredEvent) -> Map<String, Value> {
    let position = event.position;
    let mut annotations = Map::new();
    annotations.insert("x-opt-sequence-number".into(), json!(position.sequence_number));
    annotations.insert("x-opt-offset".into(), json!(position.offset.to_string()));
    annotations.insert(
        "x-opt-enqueued-time".into(),
        json!(position.enqueued_time.to_string()),
    );
    annotations
}

/// Renders a stored event as it is stored: body (UTF-8 text when it is, else base64), properties,
/// annotations; a record that is no message is marked `outpost-undecodable`.
pub fn event_json(event: &StoredEvent) -> Value {
    match Message::decode(event.payload.clone()) {
        Ok(message) => message_json(event, &message),
        Err(_) => {
            let mut annotations = position_annotations(event);
            annotations.insert("outpost-undecodable".into(), json!(true));
            json!({ "annotations": annotations })
        }
    }
}

/// Renders `message`, stored as `event`.
fn message_json(event: &StoredEvent, message: &Message) -> Value {
    let mut annotations = position_annotations(event);
    let stamps = &message.annotations;
    annotations.insert("iothub-connection-device-id".into(), json!(stamps.device_id));
    if let Some(module) = &stamps.module_id {
        annotations.insert("iothub-connection-module-id".into(), json!(module));
    }
    annotations.insert("iothub-connection-auth-method".into(), json!(stamps.auth_method));
    annotations.insert(
        "iothub-connection-auth-generation-id".into(),
        json!(stamps.auth_generation_id),
    );
    annotations.insert(
        "iothub-enqueuedtime".into(),
        json!(stamps.enqueued_time.to_string()),
    );
    annotations.insert("iothub-message-source".into(), json!(stamps.message_source));
    let p = &message.properties;
    let mut system = Map::new();
    for (name, value) in [
        ("message-id", &p.message_id),
        ("correlation-id", &p.correlation_id),
        ("user-id", &p.user_id),
        ("to", &p.to),
        ("content-type", &p.content_type),
        ("content-encoding", &p.content_encoding),
        ("absolute-expiry-time", &p.expiry_time),
        ("iothub-interface-id", &p.interface_id),
        ("iothub-outputname", &p.output_name),
        ("dt-subject", &p.subject),
    ] {
        if let Some(value) = value {
            system.insert(name.into(), json!(value));
        }
    }
    let application: Map<String, Value> = message
        .application_properties
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let payload = match std::str::from_utf8(&message.body) {
        Ok(text) => json!(text),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(&message.body) }),
    };
    json!({
        "origin": stamps.device_id,
        "module": stamps.module_id.clone().unwrap_or_default(),
        "payload": payload,
        "properties": { "system": system, "application": application },
        "annotations": annotations,
    })
}
