//! What only the embedded queue promises: messages, their delivery state and the sequence
//! counters survive closing and reopening the file, and a queue needs its hub.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use outpost_core::testing::{
    AZURE_QUEUE_LIMITS, body_of, c2d_message, c2d_time, create_hub_named, depth_of, device_target,
    enqueue_bodies, hub_name, lock_next_at, lock_one, module_target, token_of,
};
use outpost_core::{CloudToDeviceQueue as _, HubStore as _, LockOutcome, StoreError};
use outpost_store::EmbeddedStore;

#[tokio::test]
async fn messages_locks_and_delivery_counts_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("outpost.redb");
    let (device, module) = (device_target("d"), module_target("d", "m"));

    let store = EmbeddedStore::open(&path).expect("open the store");
    let hub = create_hub_named(&store, "plant").await;
    let numbers = enqueue_bodies(&store, &hub, &device, &["one", "two", "three"]).await;
    enqueue_bodies(&store, &hub, &module, &["module"]).await;
    let now = c2d_time(0);
    let first = lock_one(&store, &hub, &device, now).await;
    store
        .abandon(&hub, &device, &token_of(&first), now)
        .await
        .expect("abandon");
    let held = lock_one(&store, &hub, &device, now).await;
    assert_eq!((held.sequence_number, held.delivery_count), (numbers[0], 2));
    drop(store);

    let store = EmbeddedStore::open(&path).expect("reopen the store");
    assert_eq!(depth_of(&store, &hub, &device).await, 3);
    assert_eq!(depth_of(&store, &hub, &module).await, 1);
    // The lock is still held after the reopen: the next receiver gets the second message, and
    // the first receiver can still complete.
    let second = lock_one(&store, &hub, &device, c2d_time(1)).await;
    assert_eq!((body_of(&second), second.delivery_count), ("two".to_owned(), 1));
    let completed = store
        .complete(&hub, &device, &token_of(&held), c2d_time(1))
        .await
        .expect("complete with a token from before the reopen");
    assert_eq!(completed, held);
    drop(store);

    let store = EmbeddedStore::open(&path).expect("reopen the store");
    store.release_all_locks().await.expect("release all locks");
    let purged = store.purge(&hub, &device).await.expect("purge");
    let state: Vec<(u64, String, u32, bool)> = purged
        .iter()
        .map(|message| {
            let locked = message.lock.is_some();
            (
                message.sequence_number,
                body_of(message),
                message.delivery_count,
                locked,
            )
        })
        .collect();
    assert_eq!(
        state,
        [
            (numbers[1], "two".to_owned(), 1, false),
            (numbers[2], "three".to_owned(), 0, false)
        ]
    );
    assert_eq!(purged[1].message, c2d_message("three", c2d_time(3600)));
    drop(store);

    // The counter survived too: the emptied queue never hands out an old number again.
    let store = EmbeddedStore::open(&path).expect("reopen the store");
    let later = enqueue_bodies(&store, &hub, &device, &["four"]).await;
    assert!(later[0] > numbers[2], "{later:?} after {numbers:?}");
    // Expiry rows survived with their messages.
    let swept = store
        .sweep_expired(&hub, c2d_time(3601), 10)
        .await
        .expect("sweep");
    let mut swept: Vec<String> = swept.iter().map(|(_, message)| body_of(message)).collect();
    swept.sort();
    assert_eq!(swept, ["four", "module"]);
}

#[tokio::test]
async fn enqueueing_into_an_unknown_or_deleted_hub_is_parent_missing() {
    let store = EmbeddedStore::in_memory().expect("open the store");
    let target = device_target("d");
    let message = c2d_message("m", c2d_time(3600));
    let refused = store
        .enqueue(&hub_name("ghost"), &target, &message, AZURE_QUEUE_LIMITS)
        .await;
    assert!(matches!(refused, Err(StoreError::ParentMissing)), "{refused:?}");

    // Hub `a` does not lend itself to hub `ab`.
    let a = create_hub_named(&store, "a").await;
    let refused = store
        .enqueue(&hub_name("ab"), &target, &message, AZURE_QUEUE_LIMITS)
        .await;
    assert!(matches!(refused, Err(StoreError::ParentMissing)), "{refused:?}");
    store
        .enqueue(&a, &target, &message, AZURE_QUEUE_LIMITS)
        .await
        .expect("enqueue into an existing hub");

    store.delete_hub(&a).await.expect("delete hub");
    store.drop_hub(&a).await.expect("drop the hub's queues");
    let refused = store.enqueue(&a, &target, &message, AZURE_QUEUE_LIMITS).await;
    assert!(matches!(refused, Err(StoreError::ParentMissing)), "{refused:?}");
    let outcome = lock_next_at(&store, &a, &target, c2d_time(0), AZURE_QUEUE_LIMITS).await;
    assert_eq!(outcome, LockOutcome::default());
}
