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
//! (`ParentMissing` otherwise), revisions are never reused for a key, `list_devices` orders by
//! id in byte order, and records never leak between hubs or devices whose names are prefixes of
//! one another (`a`/`ab`, `d`/`d1`).

use outpost_model::{
    Authentication, Capabilities, ConnectionState, Device, DeviceId, DeviceStatus, Etag, Hub, HubName,
    Module, ModuleId, Timestamp, Twin, new_generation_id,
};

use crate::{
    DeviceCounts, DeviceRecord, Expected, HubStore, ModuleRecord, RegistryStore, Revision, StoreError,
};

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

// ---------------------------------------------------------------------------------------------
// Hubs

/// Hubs come back from `list_hubs` ordered by name, as they were created.
pub async fn hubs_are_listed_in_name_order<S: HubStore + RegistryStore>(store: &S) {
    assert!(store.list_hubs().await.expect("list hubs").is_empty());
    let (b, a, c) = (hub_named("b"), hub_named("a"), hub_named("c"));
    for hub in [&b, &a, &c] {
        store.create_hub(hub).await.expect("create hub");
    }
    assert_eq!(store.list_hubs().await.expect("list hubs"), vec![a, b, c]);
}

/// A second hub with the same name is refused and the first one is kept.
pub async fn creating_an_existing_hub_conflicts<S: HubStore + RegistryStore>(store: &S) {
    let first = hub_named("plant");
    store.create_hub(&first).await.expect("create hub");
    assert_conflict(store.create_hub(&hub_named("plant")).await);
    assert_eq!(store.list_hubs().await.expect("list hubs"), vec![first]);
}

/// `update_hub` replaces the stored hub.
pub async fn updating_a_hub_replaces_it<S: HubStore + RegistryStore>(store: &S) {
    let mut hub = hub_named("plant");
    store.create_hub(&hub).await.expect("create hub");
    hub.policies.retain(|policy| policy.key_name.as_str() != "device");
    hub.partition_count = 8;
    store.update_hub(&hub).await.expect("update hub");
    assert_eq!(store.list_hubs().await.expect("list hubs"), vec![hub]);
}

/// `update_hub` of a hub that does not exist fails and creates nothing.
pub async fn updating_an_unknown_hub_is_not_found<S: HubStore + RegistryStore>(store: &S) {
    assert_not_found(store.update_hub(&hub_named("ghost")).await);
    assert!(store.list_hubs().await.expect("list hubs").is_empty());
}

/// `delete_hub` of a hub that does not exist fails.
pub async fn deleting_an_unknown_hub_is_not_found<S: HubStore + RegistryStore>(store: &S) {
    assert_not_found(store.delete_hub(&hub_name("ghost")).await);
    store.create_hub(&hub_named("a")).await.expect("create hub");
    assert_not_found(store.delete_hub(&hub_name("ab")).await);
    store.delete_hub(&hub_name("a")).await.expect("delete hub");
    assert_not_found(store.delete_hub(&hub_name("a")).await);
}

/// Deleting hub `a` removes its devices, modules and counts, and leaves hub `ab` whole; a hub
/// created again under the same name starts empty.
pub async fn deleting_a_hub_removes_its_records_only<S: HubStore + RegistryStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    for hub in [&a, &ab] {
        create_device(store, hub, &device_record("d")).await;
        create_device(store, hub, &disabled_device(device_record("d1"))).await;
        create_module(store, hub, &module_record("d", "m")).await;
        create_module(store, hub, &module_record("d1", "m")).await;
    }
    let kept_device = store.device(&ab, &device_id("d")).await.expect("read device");
    let kept_module = store
        .module(&ab, &device_id("d1"), &module_id("m"))
        .await
        .expect("read module");

    store.delete_hub(&a).await.expect("delete hub");

    assert_eq!(listed_hub_names(store).await, ["ab"]);
    assert!(
        store
            .device(&a, &device_id("d"))
            .await
            .expect("read device")
            .is_none()
    );
    assert!(
        store
            .module(&a, &device_id("d"), &module_id("m"))
            .await
            .expect("read module")
            .is_none()
    );
    assert!(listed_device_ids(store, &a, None, 100).await.is_empty());
    assert!(listed_module_ids(store, &a, "d1").await.is_empty());
    assert_eq!(counts_of(store, &a).await, DeviceCounts::default());

    assert_eq!(listed_device_ids(store, &ab, None, 100).await, ["d", "d1"]);
    assert_eq!(listed_module_ids(store, &ab, "d").await, ["m"]);
    assert_eq!(
        store.device(&ab, &device_id("d")).await.expect("read device"),
        kept_device
    );
    assert_eq!(
        store
            .module(&ab, &device_id("d1"), &module_id("m"))
            .await
            .expect("read module"),
        kept_module
    );
    assert_eq!(counts_of(store, &ab).await, counts(2, 1, 1));

    let a = create_hub_named(store, "a").await;
    assert!(listed_device_ids(store, &a, None, 100).await.is_empty());
    assert!(listed_module_ids(store, &a, "d").await.is_empty());
    assert_eq!(counts_of(store, &a).await, DeviceCounts::default());
}

// ---------------------------------------------------------------------------------------------
// Devices

/// Reading a device or module that was never written returns `None`, not an error.
pub async fn reading_missing_records_returns_none<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    assert!(
        store
            .device(&hub, &device_id("d"))
            .await
            .expect("read device")
            .is_none()
    );
    assert!(
        store
            .module(&hub, &device_id("d"), &module_id("m"))
            .await
            .expect("read module")
            .is_none()
    );
    let unknown = hub_name("ghost");
    assert!(
        store
            .device(&unknown, &device_id("d"))
            .await
            .expect("read device")
            .is_none()
    );
    assert!(listed_device_ids(store, &unknown, None, 10).await.is_empty());
    assert!(listed_module_ids(store, &unknown, "d").await.is_empty());
    assert_eq!(counts_of(store, &unknown).await, DeviceCounts::default());
}

/// A created device reads back equal, at the revision the write returned.
pub async fn created_device_reads_back_at_its_revision<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    let record = device_record("d");
    let revision = create_device(store, &hub, &record).await;
    let stored = store
        .device(&hub, &device_id("d"))
        .await
        .expect("read device")
        .expect("device exists");
    assert_eq!(stored.revision, revision);
    assert_eq!(stored.value, record);
    assert_eq!(
        store.list_devices(&hub, None, 10).await.expect("list devices"),
        vec![record]
    );
}

/// A device cannot be written into a hub that does not exist (no orphans, even when racing
/// `delete_hub`).
pub async fn putting_a_device_into_an_unknown_hub_is_parent_missing<S: HubStore + RegistryStore>(store: &S) {
    let ghost = hub_name("ghost");
    assert_parent_missing(
        store
            .put_device(&ghost, &device_record("d"), Expected::Absent)
            .await,
    );
    assert!(
        store
            .device(&ghost, &device_id("d"))
            .await
            .expect("read device")
            .is_none()
    );
    assert_eq!(counts_of(store, &ghost).await, DeviceCounts::default());
    let ghost = create_hub_named(store, "ghost").await;
    assert!(listed_device_ids(store, &ghost, None, 10).await.is_empty());
}

/// Creating a device that exists fails with `Conflict` and keeps the stored record.
pub async fn creating_an_existing_device_conflicts<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    let first = device_record("d");
    let revision = create_device(store, &hub, &first).await;
    assert_conflict(
        store
            .put_device(&hub, &device_record("d"), Expected::Absent)
            .await,
    );
    let stored = store
        .device(&hub, &device_id("d"))
        .await
        .expect("read device")
        .expect("device exists");
    assert_eq!((stored.revision, stored.value), (revision, first));
    assert_eq!(counts_of(store, &hub).await, counts(1, 1, 0));
}

/// An update expecting the current revision succeeds and returns a greater revision.
pub async fn updating_a_device_at_its_revision_increases_the_revision<S: HubStore + RegistryStore>(
    store: &S,
) {
    let hub = create_hub_named(store, "plant").await;
    let mut record = device_record("d");
    let mut revision = create_device(store, &hub, &record).await;
    for _ in 0..3 {
        record = changed_device(record);
        let next = store
            .put_device(&hub, &record, Expected::Revision(revision))
            .await
            .expect("update device");
        assert!(next > revision, "{next:?} must be greater than {revision:?}");
        revision = next;
        let stored = store
            .device(&hub, &device_id("d"))
            .await
            .expect("read device")
            .expect("device exists");
        assert_eq!(stored.revision, revision);
        assert_eq!(stored.value, record);
    }
}

/// An update expecting a revision that was overwritten fails and changes nothing.
pub async fn updating_a_device_at_a_stale_revision_conflicts<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    let record = device_record("d");
    let first = create_device(store, &hub, &record).await;
    let winner = changed_device(record.clone());
    let second = store
        .put_device(&hub, &winner, Expected::Revision(first))
        .await
        .expect("update device");
    let loser = disabled_device(record);
    assert_conflict(store.put_device(&hub, &loser, Expected::Revision(first)).await);
    let stored = store
        .device(&hub, &device_id("d"))
        .await
        .expect("read device")
        .expect("device exists");
    assert_eq!((stored.revision, stored.value), (second, winner));
    assert_eq!(counts_of(store, &hub).await, counts(1, 1, 0));
}

/// Updates expecting a device that does not exist fail with `NotFound` and create nothing.
pub async fn updating_a_missing_device_is_not_found<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    let record = device_record("d");
    assert_not_found(
        store
            .put_device(&hub, &record, Expected::Revision(Revision(1)))
            .await,
    );
    assert_not_found(store.put_device(&hub, &record, Expected::Present).await);
    assert!(
        store
            .device(&hub, &device_id("d"))
            .await
            .expect("read device")
            .is_none()
    );
    assert_eq!(counts_of(store, &hub).await, DeviceCounts::default());
}

/// `Present` overwrites the device whatever its revision, and still bumps the revision.
pub async fn present_expectation_overwrites_any_revision<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    let record = device_record("d");
    let first = create_device(store, &hub, &record).await;
    let changed = changed_device(record);
    let second = store
        .put_device(&hub, &changed, Expected::Present)
        .await
        .expect("overwrite device");
    assert!(second > first);
    let stored = store
        .device(&hub, &device_id("d"))
        .await
        .expect("read device")
        .expect("device exists");
    assert_eq!((stored.revision, stored.value), (second, changed));
}

/// A device deleted and created again gets a revision greater than any it had, so a writer
/// holding an old revision cannot overwrite the new device.
pub async fn recreated_device_never_reuses_a_revision<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    let record = device_record("d");
    let first = create_device(store, &hub, &record).await;
    let second = store
        .put_device(&hub, &changed_device(record), Expected::Revision(first))
        .await
        .expect("update");
    store
        .delete_device(&hub, &device_id("d"), Expected::Revision(second))
        .await
        .expect("delete device");
    let third = create_device(store, &hub, &device_record("d")).await;
    assert!(third > second, "{third:?} must be greater than {second:?}");
    assert_conflict(
        store
            .put_device(&hub, &device_record("d"), Expected::Revision(first))
            .await,
    );

    store.delete_hub(&hub).await.expect("delete hub");
    let hub = create_hub_named(store, "plant").await;
    let fourth = create_device(store, &hub, &device_record("d")).await;
    assert!(fourth > third, "{fourth:?} must be greater than {third:?}");
}

/// Concurrent creates of one device, then concurrent updates expecting one revision: exactly one
/// of each wins, the others get `Conflict`, and the counts see one device.
pub async fn concurrent_writers_at_one_revision_let_exactly_one_win<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    let records = [
        device_record("d"),
        device_record("d"),
        device_record("d"),
        device_record("d"),
    ];
    let create = |record| store.put_device(&hub, record, Expected::Absent);
    let created = tokio::join!(
        create(&records[0]),
        create(&records[1]),
        create(&records[2]),
        create(&records[3])
    );
    let created = [created.0, created.1, created.2, created.3];
    assert_eq!(
        created.iter().filter(|result| result.is_ok()).count(),
        1,
        "{created:?}"
    );
    assert!(
        created
            .iter()
            .all(|result| matches!(result, Ok(_) | Err(StoreError::Conflict))),
        "{created:?}"
    );
    let stored = store
        .device(&hub, &device_id("d"))
        .await
        .expect("read device")
        .expect("device exists");

    let changed = changed_device(stored.value.clone());
    let disabled = disabled_device(stored.value.clone());
    let update = |record| store.put_device(&hub, record, Expected::Revision(stored.revision));
    let updated = tokio::join!(
        update(&changed),
        update(&disabled),
        update(&changed),
        update(&disabled)
    );
    let updated = [updated.0, updated.1, updated.2, updated.3];
    assert_eq!(
        updated.iter().filter(|result| result.is_ok()).count(),
        1,
        "{updated:?}"
    );
    assert!(
        updated
            .iter()
            .all(|result| matches!(result, Ok(_) | Err(StoreError::Conflict))),
        "{updated:?}"
    );
    let winner = updated.iter().find_map(|result| result.as_ref().ok()).copied();
    let now = store
        .device(&hub, &device_id("d"))
        .await
        .expect("read device")
        .expect("device exists");
    assert_eq!(Some(now.revision), winner);
    assert_eq!(counts_of(store, &hub).await.total, 1);
}

/// `delete_device` honours `Absent`, `Revision` and `Present` like `put_device`.
pub async fn deleting_a_device_follows_expectations<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    let id = device_id("d");
    let record = device_record("d");
    let first = create_device(store, &hub, &record).await;
    let second = store
        .put_device(&hub, &changed_device(record), Expected::Revision(first))
        .await
        .expect("update");

    assert_conflict(store.delete_device(&hub, &id, Expected::Absent).await);
    assert_conflict(store.delete_device(&hub, &id, Expected::Revision(first)).await);
    assert!(store.device(&hub, &id).await.expect("read device").is_some());
    store
        .delete_device(&hub, &id, Expected::Revision(second))
        .await
        .expect("delete device");
    assert!(store.device(&hub, &id).await.expect("read device").is_none());

    assert_not_found(store.delete_device(&hub, &id, Expected::Revision(second)).await);
    assert_not_found(store.delete_device(&hub, &id, Expected::Present).await);

    create_device(store, &hub, &device_record("d")).await;
    store
        .delete_device(&hub, &id, Expected::Present)
        .await
        .expect("delete device");
    assert!(store.device(&hub, &id).await.expect("read device").is_none());
    assert_eq!(counts_of(store, &hub).await, DeviceCounts::default());
}

/// Deleting device `d` deletes its modules, not those of device `d1`; a device created again
/// under the same id has no modules.
pub async fn deleting_a_device_deletes_its_modules<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    create_device(store, &hub, &device_record("d")).await;
    create_device(store, &hub, &device_record("d1")).await;
    for module in ["m1", "m2"] {
        create_module(store, &hub, &module_record("d", module)).await;
    }
    create_module(store, &hub, &module_record("d1", "m1")).await;

    store
        .delete_device(&hub, &device_id("d"), Expected::Present)
        .await
        .expect("delete device");

    assert!(
        store
            .module(&hub, &device_id("d"), &module_id("m1"))
            .await
            .expect("read module")
            .is_none()
    );
    assert!(listed_module_ids(store, &hub, "d").await.is_empty());
    assert_eq!(listed_module_ids(store, &hub, "d1").await, ["m1"]);
    create_device(store, &hub, &device_record("d")).await;
    assert!(listed_module_ids(store, &hub, "d").await.is_empty());
    assert!(
        store
            .module(&hub, &device_id("d"), &module_id("m2"))
            .await
            .expect("read module")
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// Modules

/// A module cannot be written for a device that does not exist in the same hub.
pub async fn putting_a_module_without_its_device_is_parent_missing<S: HubStore + RegistryStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    create_device(store, &ab, &device_record("d")).await;
    create_device(store, &a, &device_record("d1")).await;
    let record = module_record("d", "m");
    assert_parent_missing(store.put_module(&a, &record, Expected::Absent).await);
    assert!(
        store
            .module(&a, &device_id("d"), &module_id("m"))
            .await
            .expect("read module")
            .is_none()
    );
    assert!(listed_module_ids(store, &a, "d").await.is_empty());
    assert_parent_missing(
        store
            .put_module(&hub_name("ghost"), &record, Expected::Absent)
            .await,
    );
}

/// Module writes and deletes honour `Absent`, `Revision` and `Present` like device writes.
pub async fn module_writes_follow_expectations<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    create_device(store, &hub, &device_record("d")).await;
    let (device, module) = (device_id("d"), module_id("m"));
    let record = module_record("d", "m");

    assert_not_found(
        store
            .put_module(&hub, &record, Expected::Revision(Revision(1)))
            .await,
    );
    assert_not_found(store.put_module(&hub, &record, Expected::Present).await);
    let first = create_module(store, &hub, &record).await;
    let stored = store
        .module(&hub, &device, &module)
        .await
        .expect("read module")
        .expect("module exists");
    assert_eq!((stored.revision, &stored.value), (first, &record));
    assert_conflict(
        store
            .put_module(&hub, &module_record("d", "m"), Expected::Absent)
            .await,
    );

    let changed = changed_module(record.clone());
    let second = store
        .put_module(&hub, &changed, Expected::Revision(first))
        .await
        .expect("update module");
    assert!(second > first);
    assert_conflict(store.put_module(&hub, &record, Expected::Revision(first)).await);
    let stored = store
        .module(&hub, &device, &module)
        .await
        .expect("read module")
        .expect("module exists");
    assert_eq!((stored.revision, stored.value), (second, changed.clone()));
    let third = store
        .put_module(&hub, &changed, Expected::Present)
        .await
        .expect("overwrite module");
    assert!(third > second);

    assert_conflict(
        store
            .delete_module(&hub, &device, &module, Expected::Absent)
            .await,
    );
    assert_conflict(
        store
            .delete_module(&hub, &device, &module, Expected::Revision(second))
            .await,
    );
    store
        .delete_module(&hub, &device, &module, Expected::Revision(third))
        .await
        .expect("delete module");
    assert!(
        store
            .module(&hub, &device, &module)
            .await
            .expect("read module")
            .is_none()
    );
    assert_not_found(
        store
            .delete_module(&hub, &device, &module, Expected::Present)
            .await,
    );
    assert_not_found(
        store
            .delete_module(&hub, &device, &module, Expected::Revision(third))
            .await,
    );

    let fourth = create_module(store, &hub, &record).await;
    assert!(fourth > third, "{fourth:?} must be greater than {third:?}");
    assert!(store.device(&hub, &device).await.expect("read device").is_some());
}

// ---------------------------------------------------------------------------------------------
// Listing and isolation

/// `list_devices` orders by id in byte order, starts strictly after `after` (which need not
/// exist) and returns at most `limit` records.
pub async fn devices_are_listed_in_id_order_and_paged<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    for id in ["d2", "a", "d10", "B", "d", "d1"] {
        create_device(store, &hub, &device_record(id)).await;
    }
    let all = ["B", "a", "d", "d1", "d10", "d2"];
    assert_eq!(listed_device_ids(store, &hub, None, 100).await, all);

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = listed_device_ids(store, &hub, after.as_deref(), 4).await;
        assert!(page.len() <= 4);
        let Some(last) = page.last().cloned() else { break };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, all);

    assert_eq!(listed_device_ids(store, &hub, Some("a"), 2).await, ["d", "d1"]);
    assert_eq!(listed_device_ids(store, &hub, Some("c"), 1).await, ["d"]);
    assert_eq!(
        listed_device_ids(store, &hub, Some("d1"), 100).await,
        ["d10", "d2"]
    );
    assert!(listed_device_ids(store, &hub, Some("d2"), 100).await.is_empty());
    assert!(listed_device_ids(store, &hub, Some("z"), 100).await.is_empty());
    assert!(listed_device_ids(store, &hub, None, 0).await.is_empty());
}

/// `list_modules` orders a device's modules by id and never returns another device's modules
/// (`d` vs `d1`) or another hub's (`a` vs `ab`).
pub async fn modules_are_listed_in_id_order_for_their_device_only<S: HubStore + RegistryStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    for device in ["d", "d1"] {
        create_device(store, &a, &device_record(device)).await;
    }
    create_device(store, &ab, &device_record("d")).await;
    for module in ["m2", "M", "m10", "m1"] {
        create_module(store, &a, &module_record("d", module)).await;
    }
    create_module(store, &a, &module_record("d1", "m0")).await;
    create_module(store, &ab, &module_record("d", "x")).await;

    assert_eq!(listed_module_ids(store, &a, "d").await, ["M", "m1", "m10", "m2"]);
    assert_eq!(listed_module_ids(store, &a, "d1").await, ["m0"]);
    assert_eq!(listed_module_ids(store, &ab, "d").await, ["x"]);
    assert!(listed_module_ids(store, &ab, "d1").await.is_empty());
    let records = store
        .list_modules(&a, &device_id("d1"))
        .await
        .expect("list modules");
    let expected = store
        .module(&a, &device_id("d1"), &module_id("m0"))
        .await
        .expect("read module");
    assert_eq!(records, vec![expected.expect("module exists").value]);
}

/// Hubs `a` and `ab` never see each other's devices, whatever the call.
pub async fn hubs_with_prefix_names_are_isolated<S: HubStore + RegistryStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    let b = create_hub_named(store, "b").await;
    create_device(store, &a, &device_record("d")).await;
    create_device(store, &ab, &device_record("d1")).await;
    create_device(store, &ab, &device_record("a")).await;
    create_device(store, &b, &device_record("0")).await;

    assert_eq!(listed_device_ids(store, &a, None, 100).await, ["d"]);
    assert_eq!(listed_device_ids(store, &ab, None, 100).await, ["a", "d1"]);
    assert_eq!(
        listed_device_ids(store, &a, Some("d"), 100).await,
        Vec::<String>::new()
    );
    assert!(
        store
            .device(&a, &device_id("d1"))
            .await
            .expect("read device")
            .is_none()
    );
    assert!(
        store
            .device(&ab, &device_id("d"))
            .await
            .expect("read device")
            .is_none()
    );
    assert_not_found(store.delete_device(&a, &device_id("d1"), Expected::Present).await);
    assert_not_found(
        store
            .put_device(&ab, &device_record("d"), Expected::Present)
            .await,
    );

    // The same id in two hubs is two devices.
    create_device(store, &a, &device_record("d1")).await;
    store
        .delete_device(&a, &device_id("d1"), Expected::Present)
        .await
        .expect("delete device");
    assert!(
        store
            .device(&ab, &device_id("d1"))
            .await
            .expect("read device")
            .is_some()
    );
}

// ---------------------------------------------------------------------------------------------
// Counts

/// Counts follow creates, status changes in either direction, updates that keep the status,
/// failed writes (no change) and deletes.
pub async fn counts_follow_creates_status_changes_and_deletes<S: HubStore + RegistryStore>(store: &S) {
    let hub = create_hub_named(store, "plant").await;
    assert_eq!(counts_of(store, &hub).await, counts(0, 0, 0));

    let mut revisions = Vec::new();
    for id in ["d1", "d2", "d3"] {
        revisions.push(create_device(store, &hub, &device_record(id)).await);
    }
    assert_eq!(counts_of(store, &hub).await, counts(3, 3, 0));

    let d1 = store
        .device(&hub, &device_id("d1"))
        .await
        .expect("read device")
        .expect("device exists");
    let off = disabled_device(d1.value);
    let r1 = store
        .put_device(&hub, &off, Expected::Revision(d1.revision))
        .await
        .expect("disable");
    assert_eq!(counts_of(store, &hub).await, counts(3, 2, 1));

    let r1 = store
        .put_device(&hub, &changed_device(off.clone()), Expected::Revision(r1))
        .await
        .expect("update");
    assert_eq!(counts_of(store, &hub).await, counts(3, 2, 1));

    assert_conflict(
        store
            .put_device(&hub, &device_record("d1"), Expected::Absent)
            .await,
    );
    assert_conflict(
        store
            .put_device(
                &hub,
                &enabled_device(off.clone()),
                Expected::Revision(revisions[0]),
            )
            .await,
    );
    assert_eq!(counts_of(store, &hub).await, counts(3, 2, 1));

    store
        .put_device(&hub, &enabled_device(off), Expected::Revision(r1))
        .await
        .expect("enable");
    assert_eq!(counts_of(store, &hub).await, counts(3, 3, 0));

    create_device(store, &hub, &disabled_device(device_record("d4"))).await;
    assert_eq!(counts_of(store, &hub).await, counts(4, 3, 1));

    store
        .delete_device(&hub, &device_id("d2"), Expected::Revision(revisions[1]))
        .await
        .expect("delete");
    assert_eq!(counts_of(store, &hub).await, counts(3, 2, 1));
    store
        .delete_device(&hub, &device_id("d4"), Expected::Present)
        .await
        .expect("delete");
    assert_eq!(counts_of(store, &hub).await, counts(2, 2, 0));
    assert_not_found(
        store
            .delete_device(&hub, &device_id("d4"), Expected::Present)
            .await,
    );
    assert_eq!(counts_of(store, &hub).await, counts(2, 2, 0));

    for id in ["d1", "d3"] {
        store
            .delete_device(&hub, &device_id(id), Expected::Present)
            .await
            .expect("delete");
    }
    assert_eq!(counts_of(store, &hub).await, counts(0, 0, 0));
}

/// Each hub has its own counts, including hubs whose names are prefixes of one another.
pub async fn counts_are_per_hub<S: HubStore + RegistryStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    create_device(store, &a, &device_record("d")).await;
    create_device(store, &a, &device_record("d1")).await;
    create_device(store, &ab, &disabled_device(device_record("d"))).await;
    assert_eq!(counts_of(store, &a).await, counts(2, 2, 0));
    assert_eq!(counts_of(store, &ab).await, counts(1, 0, 1));

    store
        .delete_device(&ab, &device_id("d"), Expected::Present)
        .await
        .expect("delete");
    assert_eq!(counts_of(store, &a).await, counts(2, 2, 0));
    assert_eq!(counts_of(store, &ab).await, counts(0, 0, 0));
}
