//! Consumer groups of a hub's built-in endpoint through `outpost_core::Hubs` on the on-disk store:
//! created and deleted under the hubs' write lock, announced on `Hubs::changes`, and still there
//! after the store is closed and reopened (a server restart).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::sync::Arc;

use outpost_core::testing::hub_named;
use outpost_core::{CoreError, HubStore as _, Hubs};
use outpost_model::{ConsumerGroupName, MAX_CONSUMER_GROUPS};
use outpost_store::EmbeddedStore;

fn names(hubs: &Hubs) -> Vec<String> {
    hubs.by_name("plant")
        .expect("the hub")
        .consumer_groups()
        .iter()
        .map(|group| group.name.to_string())
        .collect()
}

fn group(name: &str) -> ConsumerGroupName {
    ConsumerGroupName::new(name).expect("valid name")
}

#[tokio::test]
async fn consumer_groups_survive_a_restart_and_changes_are_announced() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("outpost.redb");
    let store = EmbeddedStore::open(&path).expect("open the store");
    store.create_hub(&hub_named("plant")).await.expect("create hub");
    let hubs = Hubs::load(Arc::new(store)).await.expect("load hubs");
    let mut changes = hubs.changes();

    let (created, new) = hubs
        .create_consumer_group("plant", group("Readers"))
        .await
        .expect("create");
    assert!(new);
    assert_eq!(created.name.as_str(), "Readers");
    assert!(changes.has_changed().expect("the sender lives"));
    changes.mark_unchanged();
    // Same name in another case: the existing group, nothing written.
    let (again, new) = hubs
        .create_consumer_group("plant", group("readers"))
        .await
        .expect("create again");
    assert!(!new);
    assert_eq!(again, created);
    assert!(!changes.has_changed().expect("the sender lives"));
    hubs.create_consumer_group("plant", group("archive"))
        .await
        .expect("create");
    hubs.delete_consumer_group("plant", "ARCHIVE")
        .await
        .expect("delete");
    assert!(changes.has_changed().expect("the sender lives"));
    assert!(matches!(
        hubs.delete_consumer_group("plant", "archive").await,
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(hubs.delete_consumer_group("plant", "$Default").await.is_err());
    assert!(matches!(
        hubs.create_consumer_group("ghost", group("a")).await,
        Err(CoreError::HubNotFound(_))
    ));
    assert_eq!(names(&hubs), ["$Default", "Readers"]);
    drop(hubs);

    let store = EmbeddedStore::open(&path).expect("reopen the store");
    let hubs = Hubs::load(Arc::new(store)).await.expect("load hubs");
    assert_eq!(names(&hubs), ["$Default", "Readers"]);
    assert_eq!(
        hubs.by_name("plant").unwrap().consumer_group("readers"),
        Some(created)
    );
}

#[tokio::test]
async fn concurrent_creations_keep_every_group_up_to_the_limit() {
    let store = EmbeddedStore::in_memory().expect("open the store");
    store.create_hub(&hub_named("plant")).await.expect("create hub");
    let hubs = Arc::new(Hubs::load(Arc::new(store)).await.expect("load hubs"));
    let tasks: Vec<_> = (0..MAX_CONSUMER_GROUPS + 4)
        .map(|n| {
            let hubs = hubs.clone();
            tokio::spawn(async move {
                hubs.create_consumer_group("plant", group(&format!("cg{n}")))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        if task.await.expect("task").is_ok() {
            created += 1;
        }
    }
    // `$Default` counts towards the limit.
    assert_eq!(created, MAX_CONSUMER_GROUPS - 1);
    assert_eq!(names(&hubs).len(), MAX_CONSUMER_GROUPS);
}
