//! The conformance suite: one test body per contract of [`HubStore`] and [`RegistryStore`], run
//! against every backend so that they all behave alike (quickwit's `metastore_test_suite!`).
//!
//! Each body is a plain `pub async fn` over `S: HubStore + RegistryStore` that takes a fresh,
//! empty store and panics when the contract is broken. A backend runs them all with
//! [`conformance_suite!`](crate::conformance_suite), which expands to one `#[tokio::test]` per
//! body (the calling crate needs `tokio` with the `macros` and `rt` features):
//!
//! ```ignore
//! mod in_memory {
//!     outpost_core::conformance_suite!(outpost_store::EmbeddedStore::in_memory().unwrap());
//! }
//! mod on_disk {
//!     // `with_guard:` takes `(store, guard)`; the guard (a temporary directory) lives as long
//!     // as the test.
//!     outpost_core::conformance_suite!(with_guard: {
//!         let dir = tempfile::tempdir().unwrap();
//!         (outpost_store::EmbeddedStore::open(&dir.path().join("outpost.redb")).unwrap(), dir)
//!     });
//! }
//! ```
//!
//! Beyond ports.rs, the suite pins down: a device can only be written into an existing hub
//! (`ParentMissing` otherwise), revisions are never reused for a key, concurrent writers
//! expecting one revision see exactly one winner, `list_devices` orders by id in byte order, and
//! records never leak between hubs or devices whose names are prefixes of one another
//! (`a`/`ab`, `d`/`d1`).

use outpost_model::{
    Authentication, Capabilities, ConnectionState, Device, DeviceId, DeviceStatus, Etag, Hub, HubName,
    Module, ModuleId, Timestamp, Twin, new_generation_id,
};

use crate::{
    DeviceCounts, DeviceRecord, Expected, HubStore, ModuleRecord, RegistryStore, Revision, StoreError,
};

mod c2d;
mod devices;
mod event_log;
mod hubs;
mod registry_views;
mod service_bound;

pub use c2d::*;
pub use devices::*;
pub use event_log::*;
pub use hubs::*;
pub use registry_views::*;
pub use service_bound::*;

/// Expands to one `#[tokio::test]` per conformance body, each on a fresh store.
///
/// `conformance_suite!(expr)` builds the store with `expr`; `conformance_suite!(with_guard:
/// expr)` takes `(store, guard)` from `expr` and keeps the guard alive during the test.
#[macro_export]
macro_rules! conformance_suite {
    (@tests $make:expr; $($body:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $body() {
                let (store, _guard) = $make;
                $crate::testing::$body(&store).await;
            }
        )+
    };
    (with_guard: $make:expr) => {
        $crate::conformance_suite!(@tests $make;
            hubs_are_listed_in_name_order,
            creating_an_existing_hub_conflicts,
            updating_a_hub_replaces_it,
            consumer_groups_are_stored_with_their_hub,
            updating_an_unknown_hub_is_not_found,
            deleting_an_unknown_hub_is_not_found,
            deleting_a_hub_removes_its_records_only,
            reading_missing_records_returns_none,
            created_device_reads_back_at_its_revision,
            putting_a_device_into_an_unknown_hub_is_parent_missing,
            creating_an_existing_device_conflicts,
            updating_a_device_at_its_revision_increases_the_revision,
            updating_a_device_at_a_stale_revision_conflicts,
            updating_a_missing_device_is_not_found,
            present_expectation_overwrites_any_revision,
            recreated_device_never_reuses_a_revision,
            concurrent_writers_at_one_revision_let_exactly_one_win,
            deleting_a_device_follows_expectations,
            deleting_a_device_deletes_its_modules,
            putting_a_module_without_its_device_is_parent_missing,
            module_writes_follow_expectations,
            devices_are_listed_in_id_order_and_paged,
            modules_are_listed_in_id_order_for_their_device_only,
            hubs_with_prefix_names_are_isolated,
            counts_follow_creates_status_changes_and_deletes,
            counts_are_per_hub,
        );
    };
    ($make:expr) => {
        $crate::conformance_suite!(with_guard: ($make, ()));
    };
}

/// Expands to one `#[tokio::test]` per event-log conformance body, each on a fresh log.
///
/// `event_log_conformance_suite!(expr)` builds the log with `expr`;
/// `event_log_conformance_suite!(with_guard: expr)` takes `(log, guard)` from `expr` and keeps
/// the guard (a temporary directory) alive during the test.
#[macro_export]
macro_rules! event_log_conformance_suite {
    (@tests $make:expr; $($body:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $body() {
                let (log, _guard) = $make;
                $crate::testing::$body(&log).await;
            }
        )+
    };
    (with_guard: $make:expr) => {
        $crate::event_log_conformance_suite!(@tests $make;
            appended_events_read_back_by_offset_sequence_number_and_time,
            sequence_numbers_start_at_zero_without_gaps,
            concurrent_appenders_keep_their_order_within_a_partition,
            partitions_are_independent,
            partition_info_follows_appends,
            watch_announces_the_next_sequence_number,
            reads_past_the_end_are_empty,
            reads_are_bounded_by_events_and_bytes,
            unknown_hubs_and_partitions_are_not_found,
            ensuring_partitions_is_idempotent_and_keeps_the_count,
            dropping_a_hub_deletes_its_events_only,
            retention_by_size_drops_the_oldest_events,
            retention_by_age_drops_old_events_only,
        );
    };
    ($make:expr) => {
        $crate::event_log_conformance_suite!(with_guard: ($make, ()));
    };
}

/// Expands to one `#[tokio::test]` per cloud-to-device queue conformance body, each on a fresh
/// store (a `CloudToDeviceQueue` that is also a `HubStore`).
///
/// `c2d_conformance_suite!(expr)` builds the store with `expr`;
/// `c2d_conformance_suite!(with_guard: expr)` takes `(store, guard)` from `expr` and keeps the
/// guard (a temporary directory) alive during the test.
#[macro_export]
macro_rules! c2d_conformance_suite {
    (@tests $make:expr; $($body:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $body() {
                let (queue, _guard) = $make;
                $crate::testing::$body(&queue).await;
            }
        )+
    };
    (with_guard: $make:expr) => {
        $crate::c2d_conformance_suite!(@tests $make;
            c2d_messages_are_delivered_in_fifo_order,
            c2d_minimal_and_binary_messages_round_trip,
            c2d_enqueue_beyond_max_depth_conflicts,
            c2d_a_locked_message_is_hidden_until_its_lock_lapses,
            c2d_abandoned_message_is_redelivered_with_its_delivery_count,
            c2d_complete_and_reject_remove_the_message,
            c2d_settling_with_a_wrong_or_lapsed_token_is_not_found,
            c2d_message_delivered_too_often_is_dead_lettered,
            c2d_expired_messages_are_dead_lettered_by_lock_next,
            c2d_purge_returns_every_message,
            c2d_sequence_numbers_are_never_reused,
            c2d_sweep_expired_removes_expired_messages_across_targets,
            c2d_targets_are_isolated,
            c2d_release_all_locks_makes_locked_messages_deliverable,
            c2d_drop_hub_removes_every_queue_of_the_hub,
            c2d_concurrent_receivers_never_share_a_message,
        );
    };
    ($make:expr) => {
        $crate::c2d_conformance_suite!(with_guard: ($make, ()));
    };
}

/// Expands to one `#[tokio::test]` per service-bound conformance body, each on a fresh store (a
/// `ServiceBoundStore` that is also a `HubStore` and `Clone`).
#[macro_export]
macro_rules! service_bound_conformance_suite {
    (@tests $make:expr; $($body:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $body() {
                let (store, _guard) = $make;
                $crate::testing::$body(&store).await;
            }
        )+
    };
    (with_guard: $make:expr) => {
        $crate::service_bound_conformance_suite!(@tests $make;
            service_bound_records_are_numbered_and_kept_per_hub_and_kind,
            service_bound_records_go_with_their_hub,
            service_bound_queue_keeps_what_was_not_completed,
            service_bound_queue_drops_its_oldest_record_when_full,
        );
    };
    ($make:expr) => {
        $crate::service_bound_conformance_suite!(with_guard: ($make, ()));
    };
}

// ---------------------------------------------------------------------------------------------
// Record builders

/// Returns `name` as a hub name.
pub fn hub_name(name: &str) -> HubName {
    HubName::new(name).expect("test hub names are valid")
}

/// Returns `id` as a device id.
pub fn device_id(id: &str) -> DeviceId {
    DeviceId::new(id).expect("test device ids are valid")
}

/// Returns `id` as a module id.
pub fn module_id(id: &str) -> ModuleId {
    ModuleId::new(id).expect("test module ids are valid")
}

/// Returns a hub named `name` at `<name>.outpost.test` with the standard policies.
pub fn hub_named(name: &str) -> Hub {
    Hub::new(hub_name(name), &format!("{name}.outpost.test"), 4).expect("test hubs are valid")
}

/// Returns a new enabled SAS device with fresh keys and an empty twin, as the registry creates
/// one.
pub fn device_record(id: &str) -> DeviceRecord {
    let now = Timestamp::now();
    let device = Device {
        device_id: device_id(id),
        generation_id: new_generation_id(),
        etag: Etag::from_revision(1),
        connection_state: ConnectionState::Disconnected,
        status: DeviceStatus::Enabled,
        status_reason: None,
        connection_state_updated_time: Timestamp::NEVER,
        status_updated_time: now,
        last_activity_time: Timestamp::NEVER,
        cloud_to_device_message_count: 0,
        authentication: Authentication::default()
            .completed(None)
            .expect("default SAS credentials complete"),
        capabilities: Capabilities::default(),
        device_scope: None,
        parent_scopes: Vec::new(),
    };
    DeviceRecord {
        device,
        twin: Twin::new(now),
    }
}

/// Returns `record` with its device disabled.
pub fn disabled_device(mut record: DeviceRecord) -> DeviceRecord {
    record.device.status = DeviceStatus::Disabled;
    record.device.status_reason = Some("disabled by the conformance suite".into());
    record
}

/// Returns `record` with its device enabled.
pub fn enabled_device(mut record: DeviceRecord) -> DeviceRecord {
    record.device.status = DeviceStatus::Enabled;
    record.device.status_reason = None;
    record
}

/// Returns `record` with a changed identity and twin, as an update would leave it.
pub fn changed_device(mut record: DeviceRecord) -> DeviceRecord {
    record.device.cloud_to_device_message_count += 1;
    record.device.etag = Etag::from_revision(record.twin.version + 1);
    record
        .twin
        .tags
        .insert("changed".into(), serde_json::Value::from(record.twin.version));
    record.twin.version += 1;
    record
}

/// Returns a new SAS module `module` of device `device` with fresh keys and an empty twin.
pub fn module_record(device: &str, module: &str) -> ModuleRecord {
    let now = Timestamp::now();
    let module = Module {
        module_id: module_id(module),
        managed_by: None,
        device_id: device_id(device),
        generation_id: new_generation_id(),
        etag: Etag::from_revision(1),
        connection_state: ConnectionState::Disconnected,
        connection_state_updated_time: Timestamp::NEVER,
        last_activity_time: Timestamp::NEVER,
        cloud_to_device_message_count: 0,
        authentication: Authentication::default()
            .completed(None)
            .expect("default SAS credentials complete"),
    };
    ModuleRecord {
        module,
        twin: Twin::new(now),
    }
}

/// Returns `record` with a changed identity and twin.
pub fn changed_module(mut record: ModuleRecord) -> ModuleRecord {
    record.module.managed_by = Some("conformance".into());
    record.twin.version += 1;
    record
}

/// Returns device counts.
pub fn counts(total: u64, enabled: u64, disabled: u64) -> DeviceCounts {
    DeviceCounts {
        total,
        enabled,
        disabled,
    }
}

// ---------------------------------------------------------------------------------------------
// Store shortcuts (each panics when the store fails)

/// Creates the hub `name` and returns its name.
pub async fn create_hub_named<S: HubStore>(store: &S, name: &str) -> HubName {
    store.create_hub(&hub_named(name)).await.expect("create hub");
    hub_name(name)
}

/// Creates `record` in `hub` and returns its revision.
pub async fn create_device<S: RegistryStore>(store: &S, hub: &HubName, record: &DeviceRecord) -> Revision {
    store
        .put_device(hub, record, Expected::Absent)
        .await
        .expect("create device")
}

/// Creates `record` in `hub` and returns its revision.
pub async fn create_module<S: RegistryStore>(store: &S, hub: &HubName, record: &ModuleRecord) -> Revision {
    store
        .put_module(hub, record, Expected::Absent)
        .await
        .expect("create module")
}

/// Returns the ids of the hub's devices listed after `after`, at most `limit`.
pub async fn listed_device_ids<S: RegistryStore>(
    store: &S,
    hub: &HubName,
    after: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let after = after.map(device_id);
    let records = store
        .list_devices(hub, after.as_ref(), limit)
        .await
        .expect("list devices");
    records
        .into_iter()
        .map(|record| record.device.device_id.as_str().to_owned())
        .collect()
}

/// Returns the ids of a device's modules, in listed order.
pub async fn listed_module_ids<S: RegistryStore>(store: &S, hub: &HubName, device: &str) -> Vec<String> {
    let records = store
        .list_modules(hub, &device_id(device))
        .await
        .expect("list modules");
    records
        .into_iter()
        .map(|record| record.module.module_id.as_str().to_owned())
        .collect()
}

/// Returns the hub's device counts.
pub async fn counts_of<S: RegistryStore>(store: &S, hub: &HubName) -> DeviceCounts {
    store.device_counts(hub).await.expect("device counts")
}

/// Returns the names of all hubs, in listed order.
pub async fn listed_hub_names<S: HubStore>(store: &S) -> Vec<String> {
    let hubs = store.list_hubs().await.expect("list hubs");
    hubs.into_iter().map(|hub| hub.name.as_str().to_owned()).collect()
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Conflict)),
        "expected Conflict, got {result:?}"
    );
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "expected NotFound, got {result:?}"
    );
}

#[track_caller]
fn assert_parent_missing<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::ParentMissing)),
        "expected ParentMissing, got {result:?}"
    );
}
