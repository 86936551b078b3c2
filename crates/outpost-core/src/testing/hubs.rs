//! Conformance bodies: hubs.

use super::*;
use crate::{HubStore, RegistryStore};

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

/// A hub's consumer groups are stored with it: created, added and removed by `update_hub`.
pub async fn consumer_groups_are_stored_with_their_hub<S: HubStore + RegistryStore>(store: &S) {
    let group = |name: &str| outpost_model::ConsumerGroupName::new(name).expect("valid consumer group");
    let now = outpost_model::Timestamp::now();
    let mut hub = hub_named("plant");
    hub.add_consumer_group(group("readers"), now)
        .expect("add a group");
    store.create_hub(&hub).await.expect("create hub");
    assert_eq!(store.list_hubs().await.expect("list hubs"), vec![hub.clone()]);
    hub.add_consumer_group(group("Archive.v2_x-1"), now)
        .expect("add a group");
    hub.remove_consumer_group("READERS").expect("remove a group");
    store.update_hub(&hub).await.expect("update hub");
    let [stored] = &store.list_hubs().await.expect("list hubs")[..] else {
        panic!("one hub expected");
    };
    let names: Vec<String> = stored
        .consumer_groups()
        .iter()
        .map(|group| group.name.to_string())
        .collect();
    assert_eq!(names, ["$Default", "Archive.v2_x-1"]);
    assert_eq!(stored, &hub);
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
