//! Webhook endpoints: each batch is one HTTP POST of a JSON array of events in the Event Grid
//! event schema, shaped the way Azure IoT Hub publishes to Event Grid (`DeviceTelemetry`,
//! `DeviceConnected`/`DeviceDisconnected`, `DeviceCreated`/`DeviceDeleted`), so a receiver
//! written for Azure's Event Grid subscription works unchanged. Sources Event Grid has no type
//! for get `Microsoft.Devices.DeviceTwinChanged`, `…DeviceJobChanged` and `…FileUploaded`.
//!
//! The mapping is pure ([`event_grid_events`]); [`WebhookSink`] sends through the
//! [`WebhookClient`] port and dead-letters through a [`StorageTarget`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use outpost_model::{EndpointName, HubName, Message, Timestamp};
use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::model::{RoutingSource, WebhookEndpoint};
use super::sink::{
    BatchPolicy, DeliveryError, EndpointSink, RoutedBatch, RoutedEvent, StorageTarget, WebhookClient,
    WebhookRequest,
};

/// Largest batch body (Event Grid's limit on one request: 1 MiB).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Longest time a batch waits for more events before it is posted.
pub const MAX_BATCH_WAIT: Duration = Duration::from_secs(1);
/// How long a POST may take (Event Grid waits 30 s for a webhook's answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The resource-group segment of [`topic`]: Outpost has no Azure subscription.
const SUBSCRIPTION: &str = "OUTPOST";

/// How a webhook endpoint's delivery worker batches: `maxEventsPerBatch` events, 1 MiB of
/// bodies, 1 s.
pub fn batch_policy(settings: &WebhookEndpoint) -> BatchPolicy {
    BatchPolicy {
        max_events: usize::try_from(settings.max_events_per_batch.max(1)).unwrap_or(usize::MAX),
        max_bytes: MAX_BATCH_BYTES,
        max_wait: MAX_BATCH_WAIT,
    }
}

/// Returns the events' `topic`: Azure's resource path
/// `/SUBSCRIPTIONS/<sub>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/<HUB>`, with
/// `OUTPOST` as the subscription and the hub's host name as the resource group (upper case, as
/// Azure writes it), so the hub name stays the ninth `/` segment and two servers differ.
pub fn topic(hub_host: &str, hub: &HubName) -> String {
    format!(
        "/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/{}/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/{}",
        hub_host.to_ascii_uppercase(),
        hub.as_str().to_ascii_uppercase()
    )
}

/// What an event is, by `iothub-message-source` and `opType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A device or module message (`Telemetry`, and anything not a known system source).
    Telemetry,
    /// `deviceConnectionStateEvents`, `opType` other than `deviceDisconnected`.
    Connected,
    /// `deviceConnectionStateEvents`, `opType` `deviceDisconnected`.
    Disconnected,
    /// `deviceLifecycleEvents`, `opType` `createDeviceIdentity` (or any other non-delete).
    Created,
    /// `deviceLifecycleEvents`, `opType` `deleteDeviceIdentity`/`deleteModuleIdentity`.
    Deleted,
    /// `twinChangeEvents` (Outpost's type: Event Grid has none).
    TwinChanged,
    /// `deviceJobLifecycleEvents` (Outpost's type).
    JobChanged,
    /// `fileUploadNotifications` (Outpost's type).
    FileUploaded,
}

impl EventKind {
    /// Returns the kind of a routed message.
    pub fn of(message: &Message) -> Self {
        let op = application_property(message, "opType").unwrap_or_default();
        match RoutingSource::from_message_source(&message.annotations.message_source) {
            Some(RoutingSource::DeviceConnectionStateEvents)
                if op.eq_ignore_ascii_case("deviceDisconnected") =>
            {
                Self::Disconnected
            }
            Some(RoutingSource::DeviceConnectionStateEvents) => Self::Connected,
            Some(RoutingSource::DeviceLifecycleEvents) if op.to_ascii_lowercase().starts_with("delete") => {
                Self::Deleted
            }
            Some(RoutingSource::DeviceLifecycleEvents) => Self::Created,
            Some(RoutingSource::TwinChangeEvents) => Self::TwinChanged,
            Some(RoutingSource::DeviceJobLifecycleEvents) => Self::JobChanged,
            Some(RoutingSource::FileUploadNotifications) => Self::FileUploaded,
            Some(RoutingSource::DeviceMessages) | None => Self::Telemetry,
        }
    }

    /// The `eventType`.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Telemetry => "Microsoft.Devices.DeviceTelemetry",
            Self::Connected => "Microsoft.Devices.DeviceConnected",
            Self::Disconnected => "Microsoft.Devices.DeviceDisconnected",
            Self::Created => "Microsoft.Devices.DeviceCreated",
            Self::Deleted => "Microsoft.Devices.DeviceDeleted",
            Self::TwinChanged => "Microsoft.Devices.DeviceTwinChanged",
            Self::JobChanged => "Microsoft.Devices.DeviceJobChanged",
            Self::FileUploaded => "Microsoft.Devices.FileUploaded",
        }
    }
}

/// Returns an event's `id`: a UUID (version 8) built from the hub name's FNV-1a hash, the
/// partition and the sequence number, so a batch delivered again carries the same ids and
/// receivers can deduplicate (Event Grid's advice).
pub fn event_id(hub: &HubName, partition: u32, sequence_number: u64) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in hub.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Version 8 in the high nibble of byte 6, variant 0b10 on top of the low half; partitions
    // take 14 bits and sequence numbers 48, far above what a log holds.
    let high = (hash & !0xf000) | 0x8000;
    let low = (0b10 << 62) | ((u64::from(partition) & 0x3fff) << 48) | (sequence_number & 0xffff_ffff_ffff);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

fn application_property<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .application_properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// `devices/<deviceId>`, or `devices/<deviceId>/<moduleId>` for a module (as Azure's module
/// telemetry events read).
fn subject(message: &Message) -> String {
    let annotations = &message.annotations;
    match &annotations.module_id {
        Some(module) => format!("devices/{}/{module}", annotations.device_id),
        None => format!("devices/{}", annotations.device_id),
    }
}

/// Whether the body is JSON text as Azure decides it: `contentType` `application/json` and
/// `contentEncoding` UTF-8, both case-insensitive.
fn is_json_utf8(message: &Message) -> bool {
    let properties = &message.properties;
    let json = properties
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    let utf8 = properties
        .content_encoding
        .as_deref()
        .is_some_and(|ce| ce.eq_ignore_ascii_case("utf-8") || ce.eq_ignore_ascii_case("utf8"));
    json && utf8
}

/// The body as JSON when it parses, else its base64 text (Azure: "If this is not set, then IoT
/// Hub will write the messages in base 64 encoded format").
fn body_value(message: &Message, json: bool) -> Value {
    if json && let Ok(value) = serde_json::from_slice::<Value>(&message.body) {
        return value;
    }
    Value::String(BASE64.encode(&message.body))
}

fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// Application properties as an object in the sender's order (a repeated name keeps its first
/// value: a JSON object cannot hold both).
fn application_properties(message: &Message) -> Value {
    let mut map = Map::new();
    for (key, value) in &message.application_properties {
        if !map.contains_key(key) {
            map.insert(key.clone(), text(value));
        }
    }
    Value::Object(map)
}

/// `systemProperties` with the names the Event Hubs-compatible endpoint uses for the same
/// annotations (Azure's telemetry events: `iothub-content-type`, `iothub-connection-device-id`…).
fn system_properties(message: &Message) -> Value {
    let p = &message.properties;
    let a = &message.annotations;
    let enqueued = a.enqueued_time.to_string();
    let fields: [(&str, Option<&str>); 16] = [
        ("message-id", p.message_id.as_deref()),
        ("correlation-id", p.correlation_id.as_deref()),
        ("user-id", p.user_id.as_deref()),
        ("to", p.to.as_deref()),
        ("absolute-expiry-time", p.expiry_time.as_deref()),
        ("iothub-content-type", p.content_type.as_deref()),
        ("iothub-content-encoding", p.content_encoding.as_deref()),
        ("iothub-connection-device-id", Some(a.device_id.as_str())),
        ("iothub-connection-module-id", a.module_id.as_deref()),
        ("iothub-connection-auth-method", Some(a.auth_method.as_str())),
        (
            "iothub-connection-auth-generation-id",
            Some(a.auth_generation_id.as_str()),
        ),
        ("iothub-enqueuedtime", Some(enqueued.as_str())),
        ("iothub-message-source", Some(a.message_source.as_str())),
        ("iothub-interface-id", p.interface_id.as_deref()),
        ("dt-subject", p.subject.as_deref()),
        ("iothub-outputname", p.output_name.as_deref()),
    ];
    let map = fields
        .into_iter()
        .filter_map(|(name, value)| {
            value
                .filter(|v| !v.is_empty())
                .map(|v| (name.to_owned(), text(v)))
        })
        .collect();
    Value::Object(map)
}

/// The identity fields every system event's data carries: `hubName`, `deviceId`, `moduleId`.
fn identity(map: &mut Map<String, Value>, hub: &HubName, message: &Message) {
    map.insert("hubName".into(), text(hub.as_str()));
    map.insert("deviceId".into(), text(&message.annotations.device_id));
    if let Some(module) = &message.annotations.module_id {
        map.insert("moduleId".into(), text(module));
    }
}

/// The connection-state sequence number: the one the event's body carries (Azure's
/// `{"sequenceNumber": "…"}`), else the event's log position as 64 hex digits (a device's events
/// share one partition, so it still increases).
fn connection_sequence_number(body: &Value, event: &RoutedEvent) -> String {
    match body.get("sequenceNumber").and_then(Value::as_str) {
        Some(number) => number.to_owned(),
        None => format!("{:064X}", event.sequence_number),
    }
}

fn data(kind: EventKind, hub: &HubName, event: &RoutedEvent) -> Value {
    let message = &event.message;
    let mut map = Map::new();
    if kind == EventKind::Telemetry {
        map.insert("properties".into(), application_properties(message));
        map.insert("systemProperties".into(), system_properties(message));
        map.insert("body".into(), body_value(message, is_json_utf8(message)));
        return Value::Object(map);
    }
    // System events always carry JSON bodies.
    let body = body_value(message, true);
    if matches!(kind, EventKind::Connected | EventKind::Disconnected) {
        let mut info = Map::new();
        info.insert(
            "sequenceNumber".into(),
            Value::String(connection_sequence_number(&body, event)),
        );
        map.insert("deviceConnectionStateEventInfo".into(), Value::Object(info));
        identity(&mut map, hub, message);
        return Value::Object(map);
    }
    let key = match kind {
        EventKind::JobChanged => "job",
        EventKind::FileUploaded => "fileUpload",
        _ => "twin",
    };
    map.insert(key.into(), body);
    identity(&mut map, hub, message);
    if let Some(op) = application_property(message, "opType") {
        map.insert("opType".into(), text(op));
    }
    if let Some(at) = application_property(message, "operationTimestamp") {
        map.insert("operationTimestamp".into(), text(at));
    }
    Value::Object(map)
}

/// `eventTime`: when the operation happened for system events (`operationTimestamp`), when the
/// hub enqueued the message otherwise.
fn event_time(kind: EventKind, message: &Message) -> String {
    let operation = (kind != EventKind::Telemetry)
        .then(|| application_property(message, "operationTimestamp"))
        .flatten()
        .and_then(|at| at.parse::<Timestamp>().ok())
        .filter(|at| !at.is_never());
    operation.unwrap_or(message.annotations.enqueued_time).to_string()
}

/// Maps one routed event to an Event Grid event (`id`, `topic`, `subject`, `eventType`,
/// `eventTime`, `data`, `dataVersion`, `metadataVersion`, in the order of Azure's samples;
/// telemetry has `dataVersion` `""` as Azure sends it, other events `"1"`).
pub fn event_grid_event(topic: &str, hub: &HubName, event: &RoutedEvent) -> Value {
    let kind = EventKind::of(&event.message);
    let mut map = Map::new();
    map.insert(
        "id".into(),
        Value::String(event_id(hub, event.partition, event.sequence_number)),
    );
    map.insert("topic".into(), text(topic));
    map.insert("subject".into(), Value::String(subject(&event.message)));
    map.insert("eventType".into(), text(kind.event_type()));
    map.insert(
        "eventTime".into(),
        Value::String(event_time(kind, &event.message)),
    );
    map.insert("data".into(), data(kind, hub, event));
    let data_version = if kind == EventKind::Telemetry { "" } else { "1" };
    map.insert("dataVersion".into(), text(data_version));
    map.insert("metadataVersion".into(), text("1"));
    Value::Object(map)
}

/// Maps a batch to its Event Grid events, in log order.
pub fn event_grid_events(hub_host: &str, batch: &RoutedBatch) -> Vec<Value> {
    let topic = topic(hub_host, &batch.hub);
    batch
        .events
        .iter()
        .map(|event| event_grid_event(&topic, &batch.hub, event))
        .collect()
}

/// Returns whether a webhook's answer delivered the batch: 2xx is delivered; 408, 429 and 5xx
/// mean "try again later"; any other status (other 4xx, an unfollowed 3xx) refuses the batch.
///
/// # Errors
/// [`DeliveryError::Unavailable`] or [`DeliveryError::Rejected`] naming the status.
pub fn classify_status(status: u16) -> Result<(), DeliveryError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(DeliveryError::Unavailable(format!(
            "the webhook answered {status}"
        ))),
        _ => Err(DeliveryError::Rejected(format!("the webhook answered {status}"))),
    }
}

/// What the sink remembers of the batch it is retrying on one partition (for the delivery
/// count header and the dead-letter record).
#[derive(Debug, Clone)]
struct Attempts {
    first_sequence: u64,
    count: u32,
    last_status: Option<u16>,
    last_outcome: String,
    last_time: Timestamp,
}

/// A webhook endpoint.
#[derive(Debug)]
pub struct WebhookSink {
    endpoint: EndpointName,
    hub_host: String,
    url: String,
    headers: Vec<(String, String)>,
    retry_window: Option<Duration>,
    client: Arc<dyn WebhookClient>,
    dead_letters: Arc<dyn StorageTarget>,
    attempts: Mutex<HashMap<u32, Attempts>>,
}

impl WebhookSink {
    /// A sink posting to `settings.url` through `client`, dead-lettering to `dead_letters`.
    pub fn new(
        hub_host: &str,
        endpoint: &EndpointName,
        settings: &WebhookEndpoint,
        client: Arc<dyn WebhookClient>,
        dead_letters: Arc<dyn StorageTarget>,
    ) -> Self {
        Self {
            endpoint: endpoint.clone(),
            hub_host: hub_host.to_owned(),
            url: settings.url.clone(),
            headers: settings
                .headers
                .iter()
                .map(|header| (header.name.clone(), header.value.clone()))
                .collect(),
            retry_window: (settings.dead_letter_after_seconds > 0)
                .then(|| Duration::from_secs(u64::from(settings.dead_letter_after_seconds))),
            client,
            dead_letters,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the name a dead-lettered batch is written under:
    /// `<endpoint>/<partition>/<first sequence number>.json`.
    pub fn dead_letter_name(&self, batch: &RoutedBatch) -> String {
        let first = batch.events.first().map_or(0, |event| event.sequence_number);
        format!("{}/{}/{first}.json", self.endpoint, batch.partition)
    }

    /// Counts a new attempt at `batch` and returns how many came before it.
    fn begin_attempt(&self, batch: &RoutedBatch) -> u32 {
        let first = batch.events.first().map_or(0, |event| event.sequence_number);
        let mut attempts = self.attempts.lock();
        let entry = attempts.entry(batch.partition).or_insert_with(|| Attempts {
            first_sequence: first,
            count: 0,
            last_status: None,
            last_outcome: String::new(),
            last_time: Timestamp::NEVER,
        });
        if entry.first_sequence != first {
            *entry = Attempts {
                first_sequence: first,
                count: 0,
                last_status: None,
                last_outcome: String::new(),
                last_time: Timestamp::NEVER,
            };
        }
        let before = entry.count;
        entry.count = entry.count.saturating_add(1);
        before
    }

    fn end_attempt(&self, batch: &RoutedBatch, status: Option<u16>, outcome: &Result<(), DeliveryError>) {
        let mut attempts = self.attempts.lock();
        match outcome {
            Ok(()) => {
                attempts.remove(&batch.partition);
            }
            Err(error) => {
                if let Some(entry) = attempts.get_mut(&batch.partition) {
                    entry.last_status = status;
                    entry.last_outcome = error.to_string();
                    entry.last_time = Timestamp::now();
                }
            }
        }
    }
}

fn to_bytes(value: &impl serde::Serialize) -> Result<Bytes, DeliveryError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|error| DeliveryError::Rejected(format!("the batch cannot be encoded: {error}")))
}

#[async_trait]
impl EndpointSink for WebhookSink {
    async fn deliver(&self, batch: &RoutedBatch) -> Result<(), DeliveryError> {
        let body = to_bytes(&event_grid_events(&self.hub_host, batch))?;
        let delivery_count = self.begin_attempt(batch);
        // Event Grid's delivery headers, then the endpoint's own.
        let mut headers = vec![
            ("aeg-event-type".to_owned(), "Notification".to_owned()),
            (
                "aeg-subscription-name".to_owned(),
                self.endpoint.as_str().to_ascii_uppercase(),
            ),
            ("aeg-delivery-count".to_owned(), delivery_count.to_string()),
            ("aeg-metadata-version".to_owned(), "1".to_owned()),
        ];
        headers.extend(self.headers.iter().cloned());
        let request = WebhookRequest {
            url: self.url.clone(),
            headers,
            content_type: "application/json".into(),
            body,
            timeout: REQUEST_TIMEOUT,
        };
        let (status, outcome) = match self.client.post(request).await {
            Ok(status) => (Some(status), classify_status(status)),
            Err(error) => (None, Err(error)),
        };
        self.end_attempt(batch, status, &outcome);
        outcome
    }

    /// Writes the batch as Event Grid dead-letters it: each event with `deadLetterReason`,
    /// `deliveryAttempts`, `lastDeliveryOutcome`, `lastHttpStatusCode`, `publishTime` and
    /// `lastDeliveryAttemptTime`, as one JSON array.
    async fn dead_letter(&self, batch: &RoutedBatch, reason: &str) -> Result<(), DeliveryError> {
        let first = batch.events.first().map_or(0, |event| event.sequence_number);
        let attempts = self
            .attempts
            .lock()
            .get(&batch.partition)
            .filter(|attempts| attempts.first_sequence == first)
            .cloned();
        let (count, status, outcome, time) = attempts
            .map_or((0, None, String::new(), Timestamp::NEVER), |a| {
                (a.count, a.last_status, a.last_outcome, a.last_time)
            });
        let topic = topic(&self.hub_host, &batch.hub);
        let events: Vec<Value> = batch
            .events
            .iter()
            .map(|event| {
                let mut value = event_grid_event(&topic, &batch.hub, event);
                if let Value::Object(map) = &mut value {
                    map.insert("deadLetterReason".into(), text(reason));
                    map.insert("deliveryAttempts".into(), Value::from(count));
                    map.insert("lastDeliveryOutcome".into(), Value::String(outcome.clone()));
                    map.insert("lastHttpStatusCode".into(), Value::from(status.unwrap_or(0)));
                    map.insert(
                        "publishTime".into(),
                        Value::String(event.message.annotations.enqueued_time.to_string()),
                    );
                    map.insert("lastDeliveryAttemptTime".into(), Value::String(time.to_string()));
                }
                value
            })
            .collect();
        self.dead_letters
            .write(&self.dead_letter_name(batch), to_bytes(&events)?)
            .await?;
        self.attempts.lock().remove(&batch.partition);
        Ok(())
    }

    fn retry_window(&self) -> Option<Duration> {
        self.retry_window
    }
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
