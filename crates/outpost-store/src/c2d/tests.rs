//! Tests that tamper with the stored bytes: damaged records are `Corrupt`, never a panic, and
//! never quoted; a lone expiry row is dropped by the sweep.

use outpost_core::testing::{
    AZURE_QUEUE_LIMITS, C2D_LOCK_FOR, c2d_message, c2d_time, create_hub_named, depth_of, device_target,
    enqueue_bodies, lock_one, module_target,
};
use outpost_core::{CloudToDeviceQueue as _, StoreError};
use redb::{ReadableDatabase as _, ReadableTableMetadata as _};

use super::layout::{EXPIRY, MESSAGES};
use crate::EmbeddedStore;

/// Overwrites the record of message `sequence` of device `d` of hub `h`.
fn overwrite(store: &EmbeddedStore, module: &str, sequence: u64, bytes: &[u8]) {
    let tx = store.database().begin_write().unwrap();
    tx.open_table(MESSAGES)
        .unwrap()
        .insert(("h", "d", module, sequence), bytes)
        .unwrap();
    tx.commit().unwrap();
}

#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt(message)) => message,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_records_are_corrupt_not_a_panic() {
    let store = EmbeddedStore::in_memory().unwrap();
    let hub = create_hub_named(&store, "h").await;
    let target = device_target("d");
    let numbers = enqueue_bodies(&store, &hub, &target, &["secret-body"]).await;
    overwrite(&store, "", numbers[0], b"\x01\x00");

    let now = c2d_time(0);
    let message = assert_corrupt(
        store
            .lock_next(&hub, &target, now, C2D_LOCK_FOR, AZURE_QUEUE_LIMITS)
            .await,
    );
    assert!(
        message.contains("device 'd'") && message.contains("hub 'h'"),
        "{message}"
    );
    assert_corrupt(store.purge(&hub, &target).await);
    assert_corrupt(store.release_all_locks().await);
    assert_corrupt(
        store
            .complete(&hub, &target, &uuid::Uuid::new_v4().to_string(), now)
            .await,
    );
    // Counting needs no decoding, and dropping the hub still clears the damage.
    assert_eq!(depth_of(&store, &hub, &target).await, 1);
    store.drop_hub(&hub).await.unwrap();
    assert_eq!(depth_of(&store, &hub, &target).await, 0);
}

#[tokio::test]
async fn a_damaged_message_behind_an_intact_header_is_corrupt_and_changes_nothing() {
    let store = EmbeddedStore::in_memory().unwrap();
    let hub = create_hub_named(&store, "h").await;
    let target = module_target("d", "m");
    let message = c2d_message("secret-body", c2d_time(10));
    let number = store
        .enqueue(&hub, &target, &message, AZURE_QUEUE_LIMITS)
        .await
        .unwrap();
    let mut damaged = super::record::encode(&message).unwrap();
    damaged.extend_from_slice(b"secret");
    overwrite(&store, "m", number, &damaged);

    let error = assert_corrupt(
        store
            .lock_next(&hub, &target, c2d_time(0), C2D_LOCK_FOR, AZURE_QUEUE_LIMITS)
            .await,
    );
    assert!(error.contains("module 'm'"), "{error}");
    assert!(!error.contains("secret"), "{error}");
    // The failed lock rolled back: the header still says "never delivered".
    let tx = store.database().begin_read().unwrap();
    let stored = tx.open_table(MESSAGES).unwrap();
    let header = super::record::read_header(stored.get(("h", "d", "m", number)).unwrap().unwrap().value());
    assert_eq!(header.unwrap().delivery_count, 0);
    drop((stored, tx));

    assert_corrupt(store.sweep_expired(&hub, c2d_time(11), 10).await);
}

#[tokio::test]
async fn an_unknown_record_version_is_corrupt() {
    let store = EmbeddedStore::in_memory().unwrap();
    let hub = create_hub_named(&store, "h").await;
    let target = device_target("d");
    let numbers = enqueue_bodies(&store, &hub, &target, &["a"]).await;
    let mut record = super::record::encode(&c2d_message("a", c2d_time(3600))).unwrap();
    record[0] = 2;
    overwrite(&store, "", numbers[0], &record);
    let message = assert_corrupt(
        store
            .lock_next(&hub, &target, c2d_time(0), C2D_LOCK_FOR, AZURE_QUEUE_LIMITS)
            .await,
    );
    assert!(message.contains("version 2"), "{message}");
}

#[tokio::test]
async fn an_expiry_row_without_its_message_is_dropped_by_the_sweep() {
    let store = EmbeddedStore::in_memory().unwrap();
    let hub = create_hub_named(&store, "h").await;
    let target = device_target("d");
    let message = c2d_message("kept", c2d_time(5));
    store
        .enqueue(&hub, &target, &message, AZURE_QUEUE_LIMITS)
        .await
        .unwrap();
    let tx = store.database().begin_write().unwrap();
    tx.open_table(EXPIRY)
        .unwrap()
        .insert(("h", 0, "d", "", 99), ())
        .unwrap();
    tx.commit().unwrap();

    let swept = store.sweep_expired(&hub, c2d_time(6), 10).await.unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].1.message, message);
    let tx = store.database().begin_read().unwrap();
    assert!(tx.open_table(EXPIRY).unwrap().is_empty().unwrap());
}

#[tokio::test]
async fn reads_before_any_message_find_empty_queues() {
    let store = EmbeddedStore::in_memory().unwrap();
    let hub = create_hub_named(&store, "h").await;
    let target = device_target("d");
    assert_eq!(depth_of(&store, &hub, &target).await, 0);
    let outcome = store
        .lock_next(&hub, &target, c2d_time(0), C2D_LOCK_FOR, AZURE_QUEUE_LIMITS)
        .await
        .unwrap();
    assert!(outcome.locked.is_none() && outcome.dead.is_empty());
    enqueue_bodies(&store, &hub, &target, &["a"]).await;
    lock_one(&store, &hub, &target, c2d_time(0)).await;
}
