//! Operator routes over a hub's event log: partition state and a long-polling read, which
//! `outpost monitor-events` tails. Messages are rendered as JSON with the names the Event Hubs
//! endpoint uses for them (AMQP property names, `iothub-*` and `x-opt-*` annotations).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use base64::Engine as _;
use outpost_core::{ErrorCode, LogPosition, StoredEvent};
use outpost_model::{Message, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::operator::{OperatorState, find_hub};

/// Longest a read waits for new events.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most events one read returns.
const MAX_EVENTS: usize = 1000;

/// `GET /hubs/{hub}/partitions`: the state of every partition.
pub(crate) async fn partitions(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &name)?;
    let log = state.outpost.telemetry.log();
    let mut out = Vec::new();
    for partition in 0..hub.partition_count {
        let info = log
            .partition_info(&hub.name, partition)
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
}

/// `GET /hubs/{hub}/events?partition=P&fromSequenceNumber=N&max=M&waitMs=W`.
pub(crate) async fn read(
    State(state): State<OperatorState>,
    Path(name): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<Value>, ApiError> {
    let hub = find_hub(&state, &name)?;
    if query.partition >= hub.partition_count {
        return Err(ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("hub '{name}' has no partition {}", query.partition),
        ));
    }
    let from = match (&query.from_sequence_number, &query.from_enqueued_time) {
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
        .watch(&hub.name, query.partition)
        .map_err(outpost_core::CoreError::from)?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let events = log
            .read(&hub.name, query.partition, from, max, 4 * 1024 * 1024)
            .await
            .map_err(outpost_core::CoreError::from)?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(Value::Array(events.iter().map(event_json).collect())));
        }
        // Woken by the next durable append, or by the deadline.
        if tokio::time::timeout_at(deadline, watch.changed()).await.is_err() {
            return Ok(Json(Value::Array(Vec::new())));
        }
    }
}

/// Renders a stored event: body (UTF-8 text when it is, else base64), properties, annotations.
pub fn event_json(event: &StoredEvent) -> Value {
    let position = event.position;
    let mut annotations = Map::new();
    annotations.insert("x-opt-sequence-number".into(), json!(position.sequence_number));
    annotations.insert("x-opt-offset".into(), json!(position.offset.to_string()));
    annotations.insert(
        "x-opt-enqueued-time".into(),
        json!(position.enqueued_time.to_string()),
    );
    let Ok(message) = Message::decode(event.payload.clone()) else {
        annotations.insert("outpost-undecodable".into(), json!(true));
        return json!({ "annotations": annotations });
    };
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
