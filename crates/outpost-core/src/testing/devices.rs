//! Conformance bodies: device records, revisions and expectations.

use super::*;
use crate::{Expected, HubStore, RegistryStore, StoreError};

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
