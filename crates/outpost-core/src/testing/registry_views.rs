//! Conformance bodies: modules, listing and isolation, counts.

use super::*;
use crate::{Expected, HubStore, RegistryStore};

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
