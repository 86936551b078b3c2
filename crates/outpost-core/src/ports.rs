//! What the hub needs from storage. Each port is one consistency boundary; implementations live
//! in the backend crates (`outpost-store` embedded today) and must pass the conformance suite in
//! [`crate::testing`].
//!
//! Writes are compare-and-swap on a store-managed [`Revision`]: callers read a record, change it
//! with the model's rules, and write it back expecting the revision they read. That keeps the
//! ports narrow (no closures across the boundary) and maps onto redb transactions and
//! PostgreSQL `UPDATE … WHERE revision = $n` alike.

use async_trait::async_trait;
use outpost_model::{Device, DeviceId, Hub, HubName, Module, ModuleId, Timestamp, Twin};
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
