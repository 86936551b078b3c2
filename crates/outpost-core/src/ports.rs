//! What the hub needs from storage. Each port is one consistency boundary; implementations live
//! in the backend crates (`outpost-store` embedded today) and must pass the conformance suite in
//! [`crate::testing`].
//!
//! Writes are compare-and-swap on a store-managed [`Revision`]: callers read a record, change it
//! with the model's rules, and write it back expecting the revision they read. That keeps the
//! ports narrow (no closures across the boundary) and maps onto redb transactions and
//! PostgreSQL `UPDATE … WHERE revision = $n` alike.

use async_trait::async_trait;
use outpost_model::{Device, DeviceId, Hub, HubName, LogName, Module, ModuleId, Timestamp, Twin};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A store-managed counter that changes on every write of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Revision(pub u64);

/// A record together with the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    /// The revision to expect when writing the record back.
    pub revision: Revision,
    /// The record.
    pub value: T,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The record must not exist (create).
    Absent,
    /// The record must exist at exactly this revision (update, conditional delete).
    Revision(Revision),
    /// The record must exist, at any revision (unconditional delete).
    Present,
}

/// A device identity and its twin: one aggregate, written and deleted together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The identity.
    pub device: Device,
    /// The device twin.
    pub twin: Twin,
}

/// A module identity and its twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// The identity.
    pub module: Module,
    /// The module twin.
    pub twin: Twin,
}

/// Device counts of one hub (`GET /statistics/devices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceCounts {
    /// All devices.
    pub total: u64,
    /// Devices whose status is enabled.
    pub enabled: u64,
    /// Devices whose status is disabled.
    pub disabled: u64,
}

/// Hubs and their shared access policies.
#[async_trait]
pub trait HubStore: Send + Sync + 'static {
    /// Returns every hub, ordered by name.
    async fn list_hubs(&self) -> Result<Vec<Hub>, StoreError>;

    /// Stores a new hub.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a hub with the same name exists.
    async fn create_hub(&self, hub: &Hub) -> Result<(), StoreError>;

    /// Replaces an existing hub (policy changes).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the hub does not exist.
    async fn update_hub(&self, hub: &Hub) -> Result<(), StoreError>;

    /// Deletes a hub and every record that belongs to it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the hub does not exist.
    async fn delete_hub(&self, name: &HubName) -> Result<(), StoreError>;
}

/// Device and module identities with their twins, per hub.
#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    /// Returns a device record, or `None`.
    async fn device(&self, hub: &HubName, id: &DeviceId) -> Result<Option<Stored<DeviceRecord>>, StoreError>;

    /// Writes a device record if the stored one matches `expected`; returns the new revision.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the record exists but `expected` is `Absent` or another
    /// revision; [`StoreError::NotFound`] when it is missing but expected to exist;
    /// [`StoreError::ParentMissing`] when the hub does not exist (checked in the same
    /// transaction, so a write racing `delete_hub` leaves no orphan).
    async fn put_device(
        &self,
        hub: &HubName,
        record: &DeviceRecord,
        expected: Expected,
    ) -> Result<Revision, StoreError>;

    /// Deletes a device record and all its modules if the stored one matches `expected`.
    ///
    /// # Errors
    /// As [`RegistryStore::put_device`].
    async fn delete_device(&self, hub: &HubName, id: &DeviceId, expected: Expected)
    -> Result<(), StoreError>;

    /// Returns up to `limit` device records ordered by id, starting after `after` (empty for an
    /// unknown hub).
    async fn list_devices(
        &self,
        hub: &HubName,
        after: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<DeviceRecord>, StoreError>;

    /// Returns the hub's device counts (zeros for an unknown hub).
    async fn device_counts(&self, hub: &HubName) -> Result<DeviceCounts, StoreError>;

    /// Returns a module record, or `None`.
    async fn module(
        &self,
        hub: &HubName,
        device: &DeviceId,
        module: &ModuleId,
    ) -> Result<Option<Stored<ModuleRecord>>, StoreError>;

    /// Writes a module record if the stored one matches `expected`; returns the new revision.
    ///
    /// # Errors
    /// As [`RegistryStore::put_device`], plus [`StoreError::ParentMissing`] when the module's
    /// device does not exist (checked in the same transaction).
    async fn put_module(
        &self,
        hub: &HubName,
        record: &ModuleRecord,
        expected: Expected,
    ) -> Result<Revision, StoreError>;

    /// Deletes a module record if the stored one matches `expected`.
    ///
    /// # Errors
    /// As [`RegistryStore::put_device`].
    async fn delete_module(
        &self,
        hub: &HubName,
        device: &DeviceId,
        module: &ModuleId,
        expected: Expected,
    ) -> Result<(), StoreError>;

    /// Returns every module record of a device, ordered by module id.
    async fn list_modules(&self, hub: &HubName, device: &DeviceId) -> Result<Vec<ModuleRecord>, StoreError>;
}

/// Wall-clock time, injected so that TTLs and schedules are testable.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Returns the current time.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Where a read of a partition starts; the first event at or after the position is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPosition {
    /// The event stored at this byte offset (or the next one after it).
    Offset(u64),
    /// The event with this sequence number (or the next one after it).
    SequenceNumber(u64),
    /// The first event enqueued at or after this time.
    EnqueuedTime(Timestamp),
}

/// Where an appended event was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedEvent {
    /// Per-partition sequence number, from 0, without gaps.
    pub sequence_number: u64,
    /// Byte offset of the event in the partition; strictly increasing, stable across restarts.
    pub offset: u64,
    /// When the log accepted the event (millisecond precision, as Event Hubs reports it).
    pub enqueued_time: Timestamp,
}

/// An event read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Where it is stored.
    pub position: AppendedEvent,
    /// The payload as appended (the core's encoding of a message).
    pub payload: bytes::Bytes,
}

/// The state of one partition (Event Hubs `$management` partition properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionInfo {
    /// Sequence number of the oldest retained event (the next one to be written when empty).
    pub begin_sequence_number: u64,
    /// The newest event, if the partition holds any.
    pub last: Option<AppendedEvent>,
}

/// How long events are kept; whichever limit is reached first drops the oldest segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this are dropped.
    pub max_age: std::time::Duration,
    /// A partition keeps at most this many bytes.
    pub max_bytes_per_partition: u64,
}

/// The durable, partitioned event logs: per hub, the log of every message it accepted (which the
/// built-in Event Hubs-compatible endpoint serves) and one log per custom event stream
/// ([`LogName`]). Partitions are fixed when a log is created; within a partition events keep the
/// order they were appended in.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Makes sure the log's partitions exist (idempotent).
    async fn ensure_partitions(&self, log: &LogName, partition_count: u32) -> Result<(), StoreError>;

    /// Deletes one log (a custom stream whose endpoint was deleted).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown log.
    async fn drop_log(&self, log: &LogName) -> Result<(), StoreError>;

    /// Deletes every partition of the hub's log and of its streams' logs.
    async fn drop_hub(&self, hub: &HubName) -> Result<(), StoreError>;

    /// Appends events to one partition, in order. Resolves only once they are durable on disk
    /// (group commit: concurrent appends share one sync).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown log or partition.
    async fn append(
        &self,
        log: &LogName,
        partition: u32,
        payloads: Vec<bytes::Bytes>,
    ) -> Result<Vec<AppendedEvent>, StoreError>;

    /// Reads up to `max_events` events (and about `max_bytes` of payload, at least one event)
    /// starting at `from`. An empty result means the reader is at the end.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown log or partition.
    async fn read(
        &self,
        log: &LogName,
        partition: u32,
        from: LogPosition,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Returns the state of one partition.
    async fn partition_info(&self, log: &LogName, partition: u32) -> Result<PartitionInfo, StoreError>;

    /// Returns a receiver of the partition's next sequence number, which changes after every
    /// durable append: tailing readers wait on it instead of polling.
    fn watch(&self, log: &LogName, partition: u32) -> Result<tokio::sync::watch::Receiver<u64>, StoreError>;

    /// Drops whole segments past the retention limits; returns how many events were dropped.
    async fn apply_retention(&self, retention: Retention, now: Timestamp) -> Result<u64, StoreError>;
}

/// State a front door keeps per client across connections and restarts (MQTT persistent
/// sessions). The state is opaque here: the front door encodes it.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Returns the stored state of a client, if any.
    async fn load_session(&self, hub: &HubName, client_id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores (replaces) the state of a client.
    async fn save_session(&self, hub: &HubName, client_id: &str, state: &[u8]) -> Result<(), StoreError>;

    /// Removes the state of a client (a clean-session connection).
    async fn delete_session(&self, hub: &HubName, client_id: &str) -> Result<(), StoreError>;
}

/// The service-bound queues a hub keeps for back ends (wire contract §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceBoundKind {
    /// Delivery feedback of cloud-to-device messages.
    Feedback,
    /// File-upload notifications.
    FileNotifications,
}

impl ServiceBoundKind {
    /// The kind's number in storage keys.
    pub fn code(self) -> u8 {
        match self {
            Self::Feedback => 1,
            Self::FileNotifications => 2,
        }
    }
}

/// A stored service-bound record: opaque bytes the queue encodes, numbered per hub and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The hub.
    pub hub: HubName,
    /// The record's number: increasing per hub and kind, never reused while records remain.
    pub number: u64,
    /// The encoded record.
    pub record: Vec<u8>,
}

/// Durable service-bound queues: a record is kept from when the hub acknowledges what produced it
/// until a receiver completes it, across restarts. Removed with the hub.
#[async_trait]
pub trait ServiceBoundStore: Send + Sync + 'static {
    /// Appends `records` to the hub's queue of `kind`, durably; returns their numbers in order.
    ///
    /// # Errors
    /// `ParentMissing` when the hub does not exist.
    async fn append_records(
        &self,
        hub: &HubName,
        kind: ServiceBoundKind,
        records: Vec<Vec<u8>>,
    ) -> Result<Vec<u64>, StoreError>;

    /// Removes records by number (completed or dropped); unknown numbers are ignored.
    async fn remove_records(
        &self,
        hub: &HubName,
        kind: ServiceBoundKind,
        numbers: Vec<u64>,
    ) -> Result<(), StoreError>;

    /// Returns every stored record of `kind`, by hub and then number.
    async fn load_records(&self, kind: ServiceBoundKind) -> Result<Vec<StoredRecord>, StoreError>;
}
