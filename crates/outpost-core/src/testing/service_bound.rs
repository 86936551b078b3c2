//! Conformance bodies of [`ServiceBoundStore`], and of the [`ServiceBoundQueue`] over it: records
//! are durable until completed, come back in order after a reopen (a restart), and stay with
//! their hub and kind.

use std::sync::Arc;

use crate::ports::{ServiceBoundKind, ServiceBoundStore};
use crate::service_bound::ServiceBoundQueue;
use crate::{HubStore, StoreError};

use super::{create_hub_named, hub_name};

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

async fn texts<S: ServiceBoundStore>(store: &S, kind: ServiceBoundKind) -> Vec<(String, u64, String)> {
    store
        .load_records(kind)
        .await
        .expect("load records")
        .into_iter()
        .map(|stored| {
            (
                stored.hub.to_string(),
                stored.number,
                String::from_utf8(stored.record).expect("utf-8 records"),
            )
        })
        .collect()
}

/// Appended records are numbered in order per hub and kind, load back by hub then number, and
/// removed ones are gone; kinds and hubs (even prefix-named ones) do not mix.
pub async fn service_bound_records_are_numbered_and_kept_per_hub_and_kind<S: ServiceBoundStore + HubStore>(
    store: &S,
) {
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    let feedback = ServiceBoundKind::Feedback;
    let files = ServiceBoundKind::FileNotifications;
    let first = store
        .append_records(&a, feedback, vec![bytes("f1"), bytes("f2")])
        .await
        .expect("append");
    let second = store
        .append_records(&a, feedback, vec![bytes("f3")])
        .await
        .expect("append");
    assert_eq!(first.len(), 2);
    assert!(
        first[0] < first[1] && first[1] < second[0],
        "{first:?} {second:?}"
    );
    store
        .append_records(&ab, feedback, vec![bytes("g1")])
        .await
        .expect("append");
    store
        .append_records(&a, files, vec![bytes("n1")])
        .await
        .expect("append");

    let loaded = texts(store, feedback).await;
    let seen: Vec<(&str, &str)> = loaded
        .iter()
        .map(|(hub, _, text)| (hub.as_str(), text.as_str()))
        .collect();
    assert_eq!(seen, vec![("a", "f1"), ("a", "f2"), ("a", "f3"), ("ab", "g1")]);
    assert_eq!(texts(store, files).await.len(), 1);

    store
        .remove_records(&a, feedback, vec![first[1], 999_999])
        .await
        .expect("remove, unknown numbers ignored");
    let left: Vec<String> = texts(store, feedback)
        .await
        .into_iter()
        .map(|(_, _, text)| text)
        .collect();
    assert_eq!(left, vec!["f1", "f3", "g1"]);
    let next = store
        .append_records(&a, feedback, vec![bytes("f4")])
        .await
        .expect("append");
    assert!(next[0] > second[0], "numbers are not reused while records remain");
}

/// Records of an unknown hub are refused; deleting a hub removes its records only.
pub async fn service_bound_records_go_with_their_hub<S: ServiceBoundStore + HubStore>(store: &S) {
    let kind = ServiceBoundKind::FileNotifications;
    let missing = store
        .append_records(&hub_name("nohub"), kind, vec![bytes("x")])
        .await;
    assert!(matches!(missing, Err(StoreError::ParentMissing)), "{missing:?}");
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    store
        .append_records(&a, kind, vec![bytes("a1")])
        .await
        .expect("append");
    store
        .append_records(&ab, kind, vec![bytes("ab1")])
        .await
        .expect("append");
    store.delete_hub(&a).await.expect("delete hub");
    let left: Vec<String> = texts(store, kind)
        .await
        .into_iter()
        .map(|(hub, _, _)| hub)
        .collect();
    assert_eq!(left, vec!["ab"]);
}

/// A queue reopened over the store (a restart) delivers every record not completed, in order;
/// completed records are gone and put-back ones come first again.
pub async fn service_bound_queue_keeps_what_was_not_completed<S: ServiceBoundStore + HubStore + Clone>(
    store: &S,
) {
    let hub = create_hub_named(store, "a").await;
    let shared: Arc<dyn ServiceBoundStore> = Arc::new(store.clone());
    let kind = ServiceBoundKind::Feedback;
    let queue: ServiceBoundQueue<String> = ServiceBoundQueue::open(shared.clone(), kind, 100)
        .await
        .expect("open");
    for text in ["one", "two", "three", "four"] {
        queue.push(&hub, text.to_owned()).await.expect("push");
    }
    let taken = queue.take(&hub, 2);
    assert_eq!(
        taken.iter().map(|t| t.record.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    queue
        .complete(&hub, vec![taken[0].number])
        .await
        .expect("complete");
    // "two" is taken and neither completed nor put back: a receiver holds it when the server stops.
    drop(queue);

    let reopened: ServiceBoundQueue<String> =
        ServiceBoundQueue::open(shared, kind, 100).await.expect("reopen");
    let after = reopened.take(&hub, 10);
    assert_eq!(
        after.iter().map(|t| t.record.as_str()).collect::<Vec<_>>(),
        ["two", "three", "four"]
    );
    let (first, rest) = after.split_at(1);
    reopened.put_back(&hub, first.to_vec());
    reopened
        .complete(&hub, rest.iter().map(|t| t.number).collect())
        .await
        .expect("complete");
    assert_eq!(reopened.take_completed(&hub, 10).await.expect("take"), ["two"]);
    assert!(reopened.take(&hub, 10).is_empty());
    assert!(
        store.load_records(kind).await.expect("load").is_empty(),
        "everything completed is removed"
    );
}

/// A full queue drops its oldest waiting record, from the store too.
pub async fn service_bound_queue_drops_its_oldest_record_when_full<
    S: ServiceBoundStore + HubStore + Clone,
>(
    store: &S,
) {
    let hub = create_hub_named(store, "a").await;
    let other = create_hub_named(store, "b").await;
    let shared: Arc<dyn ServiceBoundStore> = Arc::new(store.clone());
    let kind = ServiceBoundKind::FileNotifications;
    let queue: ServiceBoundQueue<u32> = ServiceBoundQueue::open(shared.clone(), kind, 3)
        .await
        .expect("open");
    let watcher = queue.watch();
    for n in 0..5 {
        queue.push(&hub, n).await.expect("push");
    }
    queue.push(&other, 100).await.expect("push");
    assert!(watcher.has_changed().unwrap_or(false), "pushing wakes receivers");
    assert_eq!(store.load_records(kind).await.expect("load").len(), 4);
    let reopened: ServiceBoundQueue<u32> = ServiceBoundQueue::open(shared, kind, 3).await.expect("reopen");
    assert_eq!(reopened.take_completed(&hub, 10).await.expect("take"), [2, 3, 4]);
    assert_eq!(reopened.take_completed(&other, 10).await.expect("take"), [100]);
    let gone = queue.push(&hub_name("nohub"), 1).await;
    assert!(gone.is_err(), "a deleted hub takes no records");
}
