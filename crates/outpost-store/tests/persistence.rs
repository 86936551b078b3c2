//! What only the on-disk store promises: records survive closing and reopening the file, and the
//! file cannot be opened twice at once.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use outpost_core::testing::{
    counts, create_device, create_module, device_id, device_record, disabled_device, hub_named, module_id,
    module_record,
};
use outpost_core::{Expected, HubStore as _, RegistryStore as _, StoreError};
use outpost_store::EmbeddedStore;

#[tokio::test]
async fn records_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("outpost.redb");

    let store = EmbeddedStore::open(&path).expect("open the store");
    let created = hub_named("plant");
    store.create_hub(&created).await.expect("create hub");
    let hub = created.name.clone();
    let device = device_record("d");
    let device_revision = create_device(&store, &hub, &device).await;
    create_device(&store, &hub, &disabled_device(device_record("d1"))).await;
    let module = module_record("d", "m");
    let module_revision = create_module(&store, &hub, &module).await;
    drop(store);

    let store = EmbeddedStore::open(&path).expect("reopen the store");
    assert_eq!(store.list_hubs().await.expect("list hubs"), vec![created]);
    let stored = store
        .device(&hub, &device_id("d"))
        .await
        .expect("read device")
        .expect("device exists");
    assert_eq!((stored.revision, stored.value), (device_revision, device.clone()));
    let stored = store
        .module(&hub, &device_id("d"), &module_id("m"))
        .await
        .expect("read module");
    let stored = stored.expect("module exists");
    assert_eq!((stored.revision, stored.value), (module_revision, module));
    assert_eq!(store.device_counts(&hub).await.expect("counts"), counts(2, 1, 1));

    // The revision counter survives too: a recreated device gets a revision never seen before.
    store
        .delete_device(&hub, &device_id("d"), Expected::Present)
        .await
        .expect("delete device");
    drop(store);
    let store = EmbeddedStore::open(&path).expect("reopen the store");
    let recreated = create_device(&store, &hub, &device).await;
    assert!(
        recreated > module_revision,
        "{recreated:?} must be greater than {module_revision:?}"
    );
    assert!(
        store
            .list_modules(&hub, &device_id("d"))
            .await
            .expect("list modules")
            .is_empty()
    );
    assert_eq!(store.device_counts(&hub).await.expect("counts"), counts(2, 1, 1));
}

#[tokio::test]
async fn an_open_file_cannot_be_opened_again() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("outpost.redb");
    let _store = EmbeddedStore::open(&path).expect("open the store");
    let again = EmbeddedStore::open(&path);
    assert!(matches!(again, Err(StoreError::Unavailable(_))), "{again:?}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_without_panicking() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("outpost.redb");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).expect("write garbage");
    let opened = EmbeddedStore::open(&path);
    assert!(opened.is_err(), "garbage must not open as a database");
}
