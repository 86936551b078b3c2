//! System events as routing sources, in Azure's shapes (`docs/routing.md`): twin changes, device
//! and module lifecycle, connection state, device jobs finishing, and file uploads.
//!
//! Shapes follow Azure's "IoT Hub non-telemetry event schemas" page
//! (learn.microsoft.com/azure/iot-hub/iot-hub-non-telemetry-event-schema): every event carries
//! `content-type: application/json`, `content-encoding: utf-8`, a unique `correlation-id`,
//! `user-id` = the hub name, `iothub-connection-device-id` (and `-module-id` for modules),
//! `iothub-message-source`, and the application properties `hubName`, `deviceId`, `moduleId`
//! (modules only), `operationTimestamp`, `opType` and `iothub-message-schema`. Azure's captured
//! system events carry no `iothub-connection-auth-method`/`-auth-generation-id`: both stay empty.
//!
//! The builders do no I/O (only the correlation id is random); the `Registry` helpers and
//! [`ConnectionEvents`] publish them through the [`EventPublisher`], which builds an event only
//! when a route reads its source.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use outpost_model::{
    Annotations, DeviceId, HubName, Message, ModuleId, SystemProperties, Timestamp, Twin, TwinSection,
    TwinUpdate,
};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{EventPublisher, RoutingSource};
use crate::file_upload::FileNotification;
use crate::jobs::DeviceJobRecord;
use crate::jobs::DeviceJobStatus;
use crate::presence::IdentityKey;
use crate::registry::Registry;
use crate::twins::TwinWrite;
use crate::{DeviceRecord, ModuleRecord};

/// `iothub-message-schema` of twin change events.
pub const TWIN_CHANGE_SCHEMA: &str = "twinChangeNotification";
/// `iothub-message-schema` of lifecycle events.
pub const LIFECYCLE_SCHEMA: &str = "deviceLifecycleNotification";
/// `iothub-message-schema` of connection state events.
pub const CONNECTION_STATE_SCHEMA: &str = "deviceConnectionStateNotification";
/// `iothub-message-schema` of device job events (Outpost's name: Azure documents none).
pub const DEVICE_JOB_SCHEMA: &str = "deviceJobLifecycleNotification";
/// `iothub-message-schema` of file upload events (Outpost's own source).
pub const FILE_UPLOAD_SCHEMA: &str = "fileUploadNotification";
/// `opType` of file upload events.
pub const FILE_UPLOADED: &str = "fileUploaded";

/// Connection state events waiting to be appended; past this a burst drops events (logged)
/// rather than growing memory.
const CONNECTION_QUEUE: usize = 10_000;

/// Builds one system event about `key`.
fn event(
    source: RoutingSource,
    schema: &str,
    op_type: &str,
    key: &IdentityKey,
    at: Timestamp,
    body: &Value,
) -> Message {
    let hub = key.hub.as_str();
    let mut application_properties = vec![
        ("hubName".to_owned(), hub.to_owned()),
        ("deviceId".to_owned(), key.device.to_string()),
    ];
    if let Some(module) = &key.module {
        application_properties.push(("moduleId".to_owned(), module.to_string()));
    }
    application_properties.extend([
        ("operationTimestamp".to_owned(), at.to_string()),
        ("opType".to_owned(), op_type.to_owned()),
        ("iothub-message-schema".to_owned(), schema.to_owned()),
    ]);
    Message {
        properties: SystemProperties {
            correlation_id: Some(correlation_id()),
            user_id: Some(hub.to_owned()),
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            ..SystemProperties::default()
        },
        application_properties,
        annotations: Annotations {
            device_id: key.device.to_string(),
            module_id: key.module.as_ref().map(ToString::to_string),
            auth_method: String::new(),
            auth_generation_id: String::new(),
            enqueued_time: at,
            message_source: source.message_source().into(),
        },
        deliveries: Vec::new(),
        // Serialising a `Value` cannot fail.
        body: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    }
}

/// A unique event id, hexadecimal like Azure's (`4d1f1e2e74f`).
fn correlation_id() -> String {
    let random: u64 = outpost_model::new_generation_id().parse().unwrap_or_default();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{:x}", random ^ COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The twin as lifecycle events and `replaceTwin` carry it: ids, twin etag, version, tags and
/// properties with their metadata (Azure's examples have no status or connection fields).
pub fn twin_document(key: &IdentityKey, twin: &Twin) -> Value {
    let mut out = Map::new();
    out.insert("deviceId".into(), json!(key.device));
    if let Some(module) = &key.module {
        out.insert("moduleId".into(), json!(module));
    }
    out.insert("etag".into(), json!(twin.etag()));
    out.insert("version".into(), json!(twin.version));
    if !twin.tags.is_empty() {
        out.insert("tags".into(), Value::Object(twin.tags.clone()));
    }
    out.insert("properties".into(), twin.properties_json());
    Value::Object(out)
}

/// What a twin write changed.
#[derive(Debug, Clone, Copy)]
pub enum TwinChange<'a> {
    /// A service patch (`updateTwin`): the tags and desired properties as the caller sent them.
    Patch {
        /// Tags patch.
        tags: Option<&'a Map<String, Value>>,
        /// Desired properties patch.
        desired: Option<&'a Map<String, Value>>,
    },
    /// A device's reported properties patch (`updateTwin`).
    Reported(&'a Map<String, Value>),
    /// A service replace of tags and desired properties (`replaceTwin`).
    Replace,
}

impl<'a> TwinChange<'a> {
    /// The change a service twin write made.
    pub fn service(update: &'a TwinUpdate, mode: TwinWrite) -> Self {
        match mode {
            TwinWrite::Patch => Self::Patch {
                tags: update.tags.as_ref(),
                desired: update.desired.as_ref(),
            },
            TwinWrite::Replace => Self::Replace,
        }
    }
}

/// The members of a patch a twin keeps (the `$metadata`/`$version` SDKs echo are dropped).
fn plain(patch: &Map<String, Value>) -> Map<String, Value> {
    patch
        .iter()
        .filter(|(key, _)| !key.starts_with('$'))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The metadata of the nodes a patch touched: the node's own `$lastUpdated…` members, then the
/// touched children (a removed member has none).
fn touched_metadata(metadata: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = metadata
        .iter()
        .filter(|(key, _)| key.starts_with('$'))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (key, value) in patch.iter().filter(|(key, _)| !key.starts_with('$')) {
        match (metadata.get(key), value) {
            (Some(Value::Object(child)), Value::Object(child_patch)) => {
                out.insert(key.clone(), Value::Object(touched_metadata(child, child_patch)));
            }
            (Some(child), _) => {
                out.insert(key.clone(), child.clone());
            }
            (None, _) => {}
        }
    }
    out
}

/// A section's delta: the changed members, their `$metadata` and the section's new `$version`.
fn section_delta(section: &TwinSection, patch: &Map<String, Value>) -> Value {
    let mut out = plain(patch);
    out.insert(
        "$metadata".into(),
        Value::Object(touched_metadata(&section.metadata, patch)),
    );
    out.insert("$version".into(), json!(section.version));
    Value::Object(out)
}

/// The body of an `updateTwin` event: the twin's new `version`, the changed tags, and the
/// changed properties with their metadata and the section's `$version` (Azure's example).
pub fn twin_update_body(twin: &Twin, change: &TwinChange<'_>) -> Value {
    let mut out = Map::new();
    out.insert("version".into(), json!(twin.version));
    let mut properties = Map::new();
    match change {
        TwinChange::Patch { tags, desired } => {
            if let Some(tags) = tags {
                out.insert("tags".into(), Value::Object(plain(tags)));
            }
            if let Some(desired) = desired {
                properties.insert("desired".into(), section_delta(&twin.desired, desired));
            }
        }
        TwinChange::Reported(reported) => {
            properties.insert("reported".into(), section_delta(&twin.reported, reported));
        }
        TwinChange::Replace => {}
    }
    if !properties.is_empty() {
        out.insert("properties".into(), Value::Object(properties));
    }
    Value::Object(out)
}

/// A twin change event (`twinChangeEvents`): `updateTwin` with the delta, or `replaceTwin`
/// with the whole twin. `twin` is the twin as written.
pub fn twin_changed(key: &IdentityKey, at: Timestamp, twin: &Twin, change: &TwinChange<'_>) -> Message {
    let (op_type, body) = match change {
        TwinChange::Replace => ("replaceTwin", twin_document(key, twin)),
        _ => ("updateTwin", twin_update_body(twin, change)),
    };
    event(
        RoutingSource::TwinChangeEvents,
        TWIN_CHANGE_SCHEMA,
        op_type,
        key,
        at,
        &body,
    )
}

/// A lifecycle change of an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// The identity was created.
    Created,
    /// The identity was deleted.
    Deleted,
}

/// A lifecycle event (`deviceLifecycleEvents`). Devices and modules alike use
/// `createDeviceIdentity`/`deleteDeviceIdentity`; a module's event adds `moduleId` (the Azure
/// page: "Both modules and devices use the createDeviceIdentity and deleteDeviceIdentity…").
/// The body is the twin (as it was just before a delete).
pub fn lifecycle(key: &IdentityKey, at: Timestamp, change: Lifecycle, twin: &Twin) -> Message {
    let op_type = match change {
        Lifecycle::Created => "createDeviceIdentity",
        Lifecycle::Deleted => "deleteDeviceIdentity",
    };
    let body = twin_document(key, twin);
    event(
        RoutingSource::DeviceLifecycleEvents,
        LIFECYCLE_SCHEMA,
        op_type,
        key,
        at,
        &body,
    )
}

/// A connection state event (`deviceConnectionStateEvents`): `deviceConnected` or
/// `deviceDisconnected`, body `{"sequenceNumber": "<64 hex digits>"}`.
pub fn connection_state(key: &IdentityKey, at: Timestamp, connected: bool, sequence_number: &str) -> Message {
    let op_type = if connected {
        "deviceConnected"
    } else {
        "deviceDisconnected"
    };
    let body = json!({ "sequenceNumber": sequence_number });
    event(
        RoutingSource::DeviceConnectionStateEvents,
        CONNECTION_STATE_SCHEMA,
        op_type,
        key,
        at,
        &body,
    )
}

/// The `opType` of a finished device job: `deviceJobCompleted`, `deviceJobFailed` or
/// `deviceJobCanceled` (Azure documents no shape for this source; the names follow the DeviceJob
/// `status` values). `None` while the device's part is not finished.
pub fn device_job_op_type(status: DeviceJobStatus) -> Option<&'static str> {
    match status {
        DeviceJobStatus::Completed => Some("deviceJobCompleted"),
        DeviceJobStatus::Failed => Some("deviceJobFailed"),
        DeviceJobStatus::Canceled => Some("deviceJobCanceled"),
        DeviceJobStatus::Pending | DeviceJobStatus::Running => None,
    }
}

/// A device job event (`deviceJobLifecycleEvents`) of a finished device record; the body is the
/// DeviceJob JSON `SELECT * FROM devices.jobs` returns. `None` for an unfinished record or a
/// device id that is not valid.
pub fn device_job_finished(hub: &HubName, at: Timestamp, record: &DeviceJobRecord) -> Option<Message> {
    let op_type = device_job_op_type(record.status)?;
    let key = IdentityKey {
        hub: hub.clone(),
        device: DeviceId::new(&record.device_id).ok()?,
        module: None,
    };
    let body = record.to_json();
    Some(event(
        RoutingSource::DeviceJobLifecycleEvents,
        DEVICE_JOB_SCHEMA,
        op_type,
        &key,
        at,
        &body,
    ))
}

/// A file upload event (`fileUploadNotifications`, Outpost's source): `opType` `fileUploaded`,
/// the body the file notification queue carries (wire contract §6).
pub fn file_uploaded(key: &IdentityKey, at: Timestamp, notification: &FileNotification) -> Message {
    let body = serde_json::to_value(notification).unwrap_or(Value::Null);
    event(
        RoutingSource::FileUploadNotifications,
        FILE_UPLOAD_SCHEMA,
        FILE_UPLOADED,
        key,
        at,
        &body,
    )
}

/// Windows file time (100 ns ticks since 1601-01-01) of `at`.
fn file_time(at: Timestamp) -> u64 {
    const UNIX_EPOCH_TICKS: i128 = 116_444_736_000_000_000;
    at.datetime()
        .map(|at| at.unix_timestamp_nanos() / 100 + UNIX_EPOCH_TICKS)
        .and_then(|ticks| u64::try_from(ticks).ok())
        .unwrap_or_default()
}

/// The `sequenceNumber` of connection state events, in Azure's form: 64 upper-case hex digits,
/// strictly increasing in string order. Azure's (`000000000000000001D8713FF7E08514000000020000…07`)
/// reads as 16 zeros, a Windows file time (an epoch days before the event) and a counter; Outpost
/// writes 16 zeros, the file time this server started, 8 zeros and a 24-digit counter, so numbers
/// keep increasing across restarts.
#[derive(Debug)]
pub struct ConnectionSequence {
    epoch: u64,
    next: AtomicU64,
}

impl ConnectionSequence {
    /// A sequence whose epoch is `start`.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            epoch: file_time(start),
            next: AtomicU64::new(1),
        }
    }

    /// Returns the next number.
    pub fn next_number(&self) -> String {
        let counter = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016X}{:016X}{:08X}{:024X}", 0_u64, self.epoch, 0_u32, counter)
    }
}

impl Default for ConnectionSequence {
    fn default() -> Self {
        Self::starting_at(Timestamp::now())
    }
}

/// Connection state events of the server's connections: numbered when the connection registers
/// or unregisters (called from synchronous code), appended in that order by one task.
#[derive(Debug, Default)]
pub struct ConnectionEvents {
    sequence: ConnectionSequence,
    publisher: OnceLock<EventPublisher>,
    queue: parking_lot::Mutex<Option<mpsc::Sender<(HubName, Message)>>>,
}

impl ConnectionEvents {
    /// Links to the publisher (the registry's).
    pub fn link(&self, publisher: EventPublisher) {
        let _ = self.publisher.set(publisher);
    }

    /// Records that `key` connected or disconnected, when a route reads connection state events.
    pub fn record(&self, key: &IdentityKey, connected: bool, at: Timestamp) {
        let Some(publisher) = self.publisher.get() else {
            return;
        };
        if !publisher.wants(&key.hub, RoutingSource::DeviceConnectionStateEvents) {
            return;
        }
        let message = connection_state(key, at, connected, &self.sequence.next_number());
        let mut queue = self.queue.lock();
        let sender = match queue.as_ref() {
            Some(sender) if !sender.is_closed() => sender.clone(),
            _ => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let (sender, mut receiver) = mpsc::channel::<(HubName, Message)>(CONNECTION_QUEUE);
                let publisher = publisher.clone();
                runtime.spawn(async move {
                    while let Some((hub, message)) = receiver.recv().await {
                        publisher
                            .publish(&hub, RoutingSource::DeviceConnectionStateEvents, || message)
                            .await;
                    }
                });
                *queue = Some(sender.clone());
                sender
            }
        };
        if sender.try_send((key.hub.clone(), message)).is_err() {
            tracing::warn!(hub = %key.hub, device = %key.device, "connection state event dropped: queue full");
        }
    }
}

impl Registry {
    /// Publishes a lifecycle event of the identity whose twin is `twin`.
    pub(crate) async fn publish_lifecycle(
        &self,
        hub: &HubName,
        device: &DeviceId,
        module: Option<&ModuleId>,
        change: Lifecycle,
        twin: &Twin,
    ) {
        let key = IdentityKey {
            hub: hub.clone(),
            device: device.clone(),
            module: module.cloned(),
        };
        let at = self.now();
        self.events
            .publish(hub, RoutingSource::DeviceLifecycleEvents, || {
                lifecycle(&key, at, change, twin)
            })
            .await;
    }

    /// Publishes the deletion of a device: its modules' first (deleted with it), then its own.
    pub(crate) async fn publish_device_deleted(
        &self,
        hub: &HubName,
        device: &DeviceRecord,
        modules: &[ModuleRecord],
    ) {
        let id = &device.device.device_id;
        for module in modules {
            let module_id = Some(&module.module.module_id);
            self.publish_lifecycle(hub, id, module_id, Lifecycle::Deleted, &module.twin)
                .await;
        }
        self.publish_lifecycle(hub, id, None, Lifecycle::Deleted, &device.twin)
            .await;
    }

    /// Publishes a twin change of `key`; `twin` is the twin as written.
    pub(crate) async fn publish_twin_change(&self, key: &IdentityKey, twin: &Twin, change: TwinChange<'_>) {
        let at = self.now();
        self.events
            .publish(&key.hub, RoutingSource::TwinChangeEvents, || {
                twin_changed(key, at, twin, &change)
            })
            .await;
    }
}

/// Publishes an event for each finished record of a device job write.
pub(crate) async fn publish_device_jobs(
    events: &EventPublisher,
    hub: &HubName,
    at: Timestamp,
    records: &[DeviceJobRecord],
) {
    if !events.wants(hub, RoutingSource::DeviceJobLifecycleEvents) {
        return;
    }
    for record in records {
        if let Some(message) = device_job_finished(hub, at, record) {
            events
                .publish(hub, RoutingSource::DeviceJobLifecycleEvents, || message)
                .await;
        }
    }
}

/// Publishes the upload a device reported done.
pub(crate) async fn publish_file_uploaded(
    events: &EventPublisher,
    identity: &crate::devices::DeviceIdentity,
    at: Timestamp,
    notification: &FileNotification,
) {
    let key = identity.key();
    events
        .publish(&key.hub, RoutingSource::FileUploadNotifications, || {
            file_uploaded(&key, at, notification)
        })
        .await;
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
