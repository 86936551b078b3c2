//! Conformance bodies: the [`CloudToDeviceQueue`] port. A backend runs them all with
//! [`c2d_conformance_suite!`](crate::c2d_conformance_suite), each on a fresh, empty store.
//!
//! The bodies are generic over `Q: CloudToDeviceQueue + HubStore` and create every hub they
//! queue into first: a backend may refuse messages for a hub that does not exist (the embedded
//! one does, with `ParentMissing`), and none has to. Time never passes by sleeping: every call
//! gets a fixed [`Timestamp`] (see [`c2d_time`]).
//!
//! Beyond the trait docs, the suite pins down: a message expires when `expiry < now` and never
//! when its expiry is [`Timestamp::NEVER`]; a lock lapses when `until <= now`; a message that
//! reached `max_delivery_count` is dead-lettered only once its last lock is gone; sequence
//! numbers keep increasing after a queue is emptied or purged; and queues never leak between
//! hubs, devices or modules whose names are prefixes of one another (`a`/`ab`, `d`/`d1`, device
//! `d` and its module `m`).

use std::time::Duration;

use bytes::Bytes;
use outpost_model::{HubName, Timestamp};

use super::{assert_conflict, assert_not_found, create_hub_named, device_id, module_id};
use crate::{
    C2dMessage, C2dTarget, CloudToDeviceQueue, DeadReason, FeedbackAck, HubStore, LockOutcome, QueueLimits,
    QueuedMessage,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Azure's limits: 50 messages per queue, 10 deliveries.
pub const AZURE_QUEUE_LIMITS: QueueLimits = QueueLimits {
    max_depth: 50,
    max_delivery_count: 10,
};

/// The lock duration the bodies use.
pub const C2D_LOCK_FOR: Duration = Duration::from_secs(60);

/// Returns the instant `seconds` after the suite's fixed origin (2027-01-15).
pub fn c2d_time(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(1_800_000_000 + seconds)
}

/// Returns the target of device `device`'s own queue.
pub fn device_target(device: &str) -> C2dTarget {
    C2dTarget {
        device: device_id(device),
        module: None,
    }
}

/// Returns the target of module `module` of device `device`.
pub fn module_target(device: &str, module: &str) -> C2dTarget {
    C2dTarget {
        device: device_id(device),
        module: Some(module_id(module)),
    }
}

/// Returns a message with body `body` that expires at `expiry`, every field set.
pub fn c2d_message(body: &str, expiry: Timestamp) -> C2dMessage {
    C2dMessage {
        message_id: Some(format!("id-{body}")),
        correlation_id: Some(format!("corr-{body}")),
        user_id: Some("service".into()),
        to: "/devices/d/messages/devicebound".into(),
        content_type: Some("application/json".into()),
        content_encoding: Some("utf-8".into()),
        expiry,
        ack: FeedbackAck::Full,
        application_properties: vec![("z".into(), "last".into()), ("a".into(), body.into())],
        body: Bytes::from(body.to_owned()),
        enqueued_time: c2d_time(0),
    }
}

/// Returns queue limits.
pub fn queue_limits(max_depth: usize, max_delivery_count: u32) -> QueueLimits {
    QueueLimits {
        max_depth,
        max_delivery_count,
    }
}

/// Enqueues one message per body, expiring an hour after the origin, and returns their
/// sequence numbers.
pub async fn enqueue_bodies<Q: CloudToDeviceQueue>(
    queue: &Q,
    hub: &HubName,
    target: &C2dTarget,
    bodies: &[&str],
) -> Vec<u64> {
    let mut sequence_numbers = Vec::with_capacity(bodies.len());
    for body in bodies {
        let message = c2d_message(body, c2d_time(3600));
        let sequence_number = queue
            .enqueue(hub, target, &message, AZURE_QUEUE_LIMITS)
            .await
            .expect("enqueue");
        sequence_numbers.push(sequence_number);
    }
    sequence_numbers
}

/// Locks the next message at `now` for [`C2D_LOCK_FOR`] with `limits`.
pub async fn lock_next_at<Q: CloudToDeviceQueue>(
    queue: &Q,
    hub: &HubName,
    target: &C2dTarget,
    now: Timestamp,
    limits: QueueLimits,
) -> LockOutcome {
    queue
        .lock_next(hub, target, now, C2D_LOCK_FOR, limits)
        .await
        .expect("lock next")
}

/// Locks the next message at `now` with Azure's limits; panics when none is deliverable or some
/// was dead.
pub async fn lock_one<Q: CloudToDeviceQueue>(
    queue: &Q,
    hub: &HubName,
    target: &C2dTarget,
    now: Timestamp,
) -> QueuedMessage {
    let outcome = lock_next_at(queue, hub, target, now, AZURE_QUEUE_LIMITS).await;
    assert!(
        outcome.dead.is_empty(),
        "unexpected dead messages: {:?}",
        outcome.dead
    );
    outcome.locked.expect("a deliverable message")
}

/// Returns the body of a queued message as text.
pub fn body_of(message: &QueuedMessage) -> String {
    String::from_utf8_lossy(&message.message.body).into_owned()
}

/// Returns the lock token of a locked message.
pub fn token_of(message: &QueuedMessage) -> String {
    message
        .lock
        .as_ref()
        .expect("the message is locked")
        .token
        .clone()
}

/// Returns the depth of the target's queue.
pub async fn depth_of<Q: CloudToDeviceQueue>(queue: &Q, hub: &HubName, target: &C2dTarget) -> usize {
    queue.depth(hub, target).await.expect("depth")
}

fn bodies(messages: &[QueuedMessage]) -> Vec<String> {
    messages.iter().map(body_of).collect()
}

fn dead_bodies(outcome: &LockOutcome) -> Vec<(String, DeadReason)> {
    outcome
        .dead
        .iter()
        .map(|(message, reason)| (body_of(message), *reason))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// Messages come out in the order they went in, with increasing sequence numbers, every field
/// intact, a delivery count of 1 and a lock until `now + lock_for`.
pub async fn c2d_messages_are_delivered_in_fifo_order<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    let empty = lock_next_at(queue, &hub, &target, c2d_time(1), AZURE_QUEUE_LIMITS).await;
    assert_eq!(empty, LockOutcome::default());

    let numbers = enqueue_bodies(queue, &hub, &target, &["one", "two", "three"]).await;
    assert!(numbers.is_sorted_by(|a, b| a < b), "{numbers:?}");
    assert_eq!(depth_of(queue, &hub, &target).await, 3);

    let now = c2d_time(10);
    for (body, number) in ["one", "two", "three"].into_iter().zip(&numbers) {
        let locked = lock_one(queue, &hub, &target, now).await;
        assert_eq!(locked.sequence_number, *number);
        assert_eq!(locked.message, c2d_message(body, c2d_time(3600)));
        assert_eq!(locked.delivery_count, 1);
        let lock = locked.lock.clone().expect("locked");
        assert!(!lock.token.is_empty());
        assert_eq!(lock.until, c2d_time(70));
        let completed = queue
            .complete(&hub, &target, &lock.token, now)
            .await
            .expect("complete");
        assert_eq!(completed.sequence_number, *number);
        assert_eq!(completed.message, locked.message);
    }
    assert_eq!(depth_of(queue, &hub, &target).await, 0);
    let empty = lock_next_at(queue, &hub, &target, now, AZURE_QUEUE_LIMITS).await;
    assert_eq!(empty, LockOutcome::default());
}

/// Messages with no optional field, no properties, an empty or binary body and no expiry read
/// back unchanged.
pub async fn c2d_minimal_and_binary_messages_round_trip<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let hub = create_hub_named(queue, "h").await;
    let target = module_target("d", "m");
    let minimal = C2dMessage {
        message_id: None,
        correlation_id: None,
        user_id: None,
        to: "/devices/d/modules/m/inputs/in".into(),
        content_type: None,
        content_encoding: None,
        expiry: Timestamp::NEVER,
        ack: FeedbackAck::None,
        application_properties: Vec::new(),
        body: Bytes::new(),
        enqueued_time: Timestamp::from_unix_millis(1_800_000_000_123),
    };
    let binary = C2dMessage {
        body: Bytes::from_static(&[0, 0xff, 0x80, b'\n']),
        ack: FeedbackAck::Positive,
        application_properties: vec![("k".into(), String::new()), ("k".into(), "twice".into())],
        ..minimal.clone()
    };
    for message in [&minimal, &binary] {
        queue
            .enqueue(&hub, &target, message, AZURE_QUEUE_LIMITS)
            .await
            .expect("enqueue");
    }
    let purged = queue.purge(&hub, &target).await.expect("purge");
    let messages: Vec<_> = purged.into_iter().map(|queued| queued.message).collect();
    assert_eq!(messages, vec![minimal, binary]);
}

/// A queue holding `max_depth` messages refuses more, dead messages included, until one leaves.
pub async fn c2d_enqueue_beyond_max_depth_conflicts<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    let limits = queue_limits(2, 10);
    let expired = c2d_message("expired", c2d_time(5));
    queue
        .enqueue(&hub, &target, &expired, limits)
        .await
        .expect("enqueue");
    enqueue_bodies(queue, &hub, &target, &["kept"]).await;
    // The expired message has not been removed yet, so it still takes room.
    let refused = queue
        .enqueue(&hub, &target, &c2d_message("refused", c2d_time(3600)), limits)
        .await;
    assert_conflict(refused);
    assert_eq!(depth_of(queue, &hub, &target).await, 2);
    // Another target of the same hub has its own room.
    let other = device_target("d1");
    queue
        .enqueue(&hub, &other, &c2d_message("other", c2d_time(3600)), limits)
        .await
        .expect("enqueue into another queue");

    let outcome = lock_next_at(queue, &hub, &target, c2d_time(10), limits).await;
    assert_eq!(
        dead_bodies(&outcome),
        [("expired".to_owned(), DeadReason::Expired)]
    );
    queue
        .enqueue(&hub, &target, &c2d_message("accepted", c2d_time(3600)), limits)
        .await
        .expect("enqueue after a message left");
    assert_eq!(depth_of(queue, &hub, &target).await, 2);
}

/// A locked message is skipped by the next `lock_next` until its lock lapses (at `until`); then
/// it is delivered again with a higher delivery count and a new token, and the old token is dead.
pub async fn c2d_a_locked_message_is_hidden_until_its_lock_lapses<Q: CloudToDeviceQueue + HubStore>(
    queue: &Q,
) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    enqueue_bodies(queue, &hub, &target, &["first", "second"]).await;

    let first = lock_one(queue, &hub, &target, c2d_time(0)).await;
    assert_eq!(body_of(&first), "first");
    let second = lock_one(queue, &hub, &target, c2d_time(30)).await;
    assert_eq!(body_of(&second), "second");
    let none = lock_next_at(queue, &hub, &target, c2d_time(59), AZURE_QUEUE_LIMITS).await;
    assert_eq!(none, LockOutcome::default());

    let again = lock_one(queue, &hub, &target, c2d_time(60)).await;
    assert_eq!(body_of(&again), "first");
    assert_eq!(again.sequence_number, first.sequence_number);
    assert_eq!(again.delivery_count, 2);
    assert_ne!(token_of(&again), token_of(&first));
    assert_not_found(
        queue
            .complete(&hub, &target, &token_of(&first), c2d_time(61))
            .await,
    );
    queue
        .complete(&hub, &target, &token_of(&again), c2d_time(61))
        .await
        .expect("complete with the new token");
    queue
        .complete(&hub, &target, &token_of(&second), c2d_time(61))
        .await
        .expect("complete the second");
    assert_eq!(depth_of(queue, &hub, &target).await, 0);
}

/// An abandoned message is deliverable at once, before younger ones, keeping its delivery count.
pub async fn c2d_abandoned_message_is_redelivered_with_its_delivery_count<
    Q: CloudToDeviceQueue + HubStore,
>(
    queue: &Q,
) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    enqueue_bodies(queue, &hub, &target, &["first", "second"]).await;
    let now = c2d_time(0);
    let first = lock_one(queue, &hub, &target, now).await;
    queue
        .abandon(&hub, &target, &token_of(&first), now)
        .await
        .expect("abandon");
    assert_not_found(queue.abandon(&hub, &target, &token_of(&first), now).await);
    assert_eq!(depth_of(queue, &hub, &target).await, 2);

    let again = lock_one(queue, &hub, &target, now).await;
    assert_eq!(body_of(&again), "first");
    assert_eq!(again.delivery_count, 2);
    let third = lock_one(queue, &hub, &target, now).await;
    assert_eq!((body_of(&third), third.delivery_count), ("second".to_owned(), 1));
}

/// `complete` and `reject` remove the locked message and return it with its delivery state; the
/// token is unknown afterwards.
pub async fn c2d_complete_and_reject_remove_the_message<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    enqueue_bodies(queue, &hub, &target, &["completed", "rejected", "kept"]).await;
    let now = c2d_time(0);

    let locked = lock_one(queue, &hub, &target, now).await;
    let completed = queue
        .complete(&hub, &target, &token_of(&locked), now)
        .await
        .expect("complete");
    assert_eq!(completed, locked);
    let locked = lock_one(queue, &hub, &target, now).await;
    let rejected = queue
        .reject(&hub, &target, &token_of(&locked), now)
        .await
        .expect("reject");
    assert_eq!(rejected, locked);
    assert_eq!(body_of(&rejected), "rejected");

    for token in [token_of(&completed), token_of(&rejected)] {
        assert_not_found(queue.complete(&hub, &target, &token, now).await);
        assert_not_found(queue.reject(&hub, &target, &token, now).await);
        assert_not_found(queue.abandon(&hub, &target, &token, now).await);
    }
    let remaining = queue.purge(&hub, &target).await.expect("purge");
    assert_eq!(bodies(&remaining), ["kept"]);
}

/// Settling with an unknown token, another target's token or a lapsed lock is `NotFound` and
/// leaves the message in place.
pub async fn c2d_settling_with_a_wrong_or_lapsed_token_is_not_found<Q: CloudToDeviceQueue + HubStore>(
    queue: &Q,
) {
    let hub = create_hub_named(queue, "h").await;
    let (target, other) = (device_target("d"), device_target("d1"));
    enqueue_bodies(queue, &hub, &target, &["mine"]).await;
    enqueue_bodies(queue, &hub, &other, &["theirs"]).await;
    let now = c2d_time(0);
    let mine = lock_one(queue, &hub, &target, now).await;
    let theirs = lock_one(queue, &hub, &other, now).await;

    let unknown = [
        String::new(),
        "not-a-token".to_owned(),
        "00000000-0000-0000-0000-000000000000".to_owned(),
        "6f1c0a9e-3b1d-4c55-9a43-6d2f0e7b8a10".to_owned(),
        token_of(&theirs),
    ];
    for token in &unknown {
        assert_not_found(queue.complete(&hub, &target, token, now).await);
        assert_not_found(queue.reject(&hub, &target, token, now).await);
        assert_not_found(queue.abandon(&hub, &target, token, now).await);
    }
    // The lock lapses at `until`: settling then is too late.
    let lapsed = mine.lock.clone().expect("locked").until;
    let token = token_of(&mine);
    assert_not_found(queue.complete(&hub, &target, &token, lapsed).await);
    assert_not_found(queue.reject(&hub, &target, &token, lapsed).await);
    assert_not_found(queue.abandon(&hub, &target, &token, c2d_time(3000)).await);

    assert_eq!(depth_of(queue, &hub, &target).await, 1);
    assert_eq!(depth_of(queue, &hub, &other).await, 1);
    // Just before it lapses, the lock still settles.
    let in_time = c2d_time(59);
    queue
        .complete(&hub, &other, &token_of(&theirs), in_time)
        .await
        .expect("complete in time");
}

/// A message delivered `max_delivery_count` times is dead-lettered by the next `lock_next` once
/// its last lock is gone, and the next message is locked in the same call.
pub async fn c2d_message_delivered_too_often_is_dead_lettered<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    let limits = queue_limits(50, 2);
    enqueue_bodies(queue, &hub, &target, &["poison", "next"]).await;
    let now = c2d_time(0);
    for delivery in 1..=2 {
        let outcome = lock_next_at(queue, &hub, &target, now, limits).await;
        let locked = outcome.locked.expect("poison is deliverable");
        assert_eq!(
            (body_of(&locked), locked.delivery_count),
            ("poison".to_owned(), delivery)
        );
        if delivery == 1 {
            queue
                .abandon(&hub, &target, &token_of(&locked), now)
                .await
                .expect("abandon");
        }
    }
    // Its last delivery is still locked: not dead yet, and the next message is delivered.
    let outcome = lock_next_at(queue, &hub, &target, c2d_time(1), limits).await;
    assert!(outcome.dead.is_empty(), "{:?}", outcome.dead);
    let next = outcome.locked.expect("next is deliverable");
    assert_eq!(body_of(&next), "next");
    queue
        .abandon(&hub, &target, &token_of(&next), c2d_time(1))
        .await
        .expect("abandon next");

    // The poison message's lock lapses at 60.
    let outcome = lock_next_at(queue, &hub, &target, c2d_time(60), limits).await;
    assert_eq!(
        dead_bodies(&outcome),
        [("poison".to_owned(), DeadReason::DeliveryCountExceeded)]
    );
    assert_eq!(outcome.dead[0].0.delivery_count, 2);
    let locked = outcome.locked.expect("next is deliverable");
    assert_eq!((body_of(&locked), locked.delivery_count), ("next".to_owned(), 2));
    assert_eq!(depth_of(queue, &hub, &target).await, 1);
}

/// `lock_next` removes messages whose expiry is before `now` (even locked ones) and returns them
/// as expired; a message expiring exactly at `now`, or never, is still delivered.
pub async fn c2d_expired_messages_are_dead_lettered_by_lock_next<Q: CloudToDeviceQueue + HubStore>(
    queue: &Q,
) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    for (body, expiry) in [
        ("locked", c2d_time(20)),
        ("soon", c2d_time(10)),
        ("at-now", c2d_time(30)),
        ("never", Timestamp::NEVER),
    ] {
        queue
            .enqueue(&hub, &target, &c2d_message(body, expiry), AZURE_QUEUE_LIMITS)
            .await
            .expect("enqueue");
    }
    let locked = lock_one(queue, &hub, &target, c2d_time(0)).await;
    assert_eq!(body_of(&locked), "locked");

    let outcome = lock_next_at(queue, &hub, &target, c2d_time(30), AZURE_QUEUE_LIMITS).await;
    assert_eq!(
        dead_bodies(&outcome),
        [
            ("locked".to_owned(), DeadReason::Expired),
            ("soon".to_owned(), DeadReason::Expired),
        ]
    );
    let at_now = outcome.locked.expect("a message expiring at now is deliverable");
    assert_eq!(body_of(&at_now), "at-now");
    // The expired message's lock went with it.
    assert_not_found(
        queue
            .complete(&hub, &target, &token_of(&locked), c2d_time(30))
            .await,
    );

    // Centuries later the locked "at-now" has expired, and "never" still has not.
    let far_future = Timestamp::from_unix_seconds(250_000_000_000);
    let outcome = lock_next_at(queue, &hub, &target, far_future, AZURE_QUEUE_LIMITS).await;
    assert_eq!(
        dead_bodies(&outcome),
        [("at-now".to_owned(), DeadReason::Expired)]
    );
    let never = outcome
        .locked
        .expect("a message that never expires is deliverable");
    assert_eq!(body_of(&never), "never");
    assert_eq!(depth_of(queue, &hub, &target).await, 1);
}

/// `purge` removes and returns every message of the target, locked or not, in sequence order;
/// later messages get higher sequence numbers than any purged one.
pub async fn c2d_purge_returns_every_message<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    let numbers = enqueue_bodies(queue, &hub, &target, &["a", "b", "c"]).await;
    let locked = lock_one(queue, &hub, &target, c2d_time(0)).await;

    let purged = queue.purge(&hub, &target).await.expect("purge");
    assert_eq!(bodies(&purged), ["a", "b", "c"]);
    let purged_numbers: Vec<u64> = purged.iter().map(|message| message.sequence_number).collect();
    assert_eq!(purged_numbers, numbers);
    assert_eq!(purged[0].delivery_count, 1);
    assert_eq!(depth_of(queue, &hub, &target).await, 0);
    assert!(queue.purge(&hub, &target).await.expect("purge").is_empty());
    assert_not_found(
        queue
            .complete(&hub, &target, &token_of(&locked), c2d_time(1))
            .await,
    );

    let later = enqueue_bodies(queue, &hub, &target, &["d"]).await;
    assert!(later[0] > numbers[2], "{later:?} after {numbers:?}");
}

/// Sequence numbers keep increasing after the queue empties: a completed message's number is
/// never handed out again.
pub async fn c2d_sequence_numbers_are_never_reused<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    let mut last = 0;
    for round in 0..3 {
        let numbers = enqueue_bodies(queue, &hub, &target, &["x"]).await;
        assert!(numbers[0] > last || round == 0, "{numbers:?} after {last}");
        last = numbers[0];
        let locked = lock_one(queue, &hub, &target, c2d_time(round)).await;
        queue
            .complete(&hub, &target, &token_of(&locked), c2d_time(round))
            .await
            .expect("complete");
    }
}

/// `sweep_expired` removes the hub's expired messages from every queue, at most `max` per call,
/// and returns them with their targets; others, and other hubs, are untouched.
pub async fn c2d_sweep_expired_removes_expired_messages_across_targets<Q: CloudToDeviceQueue + HubStore>(
    queue: &Q,
) {
    let a = create_hub_named(queue, "a").await;
    let ab = create_hub_named(queue, "ab").await;
    let targets = [device_target("d"), device_target("d1"), module_target("d", "m")];
    for hub in [&a, &ab] {
        for (i, target) in targets.iter().enumerate() {
            let offset = i64::try_from(i).expect("small");
            for (body, expiry) in [
                ("old", c2d_time(10 + offset)),
                ("fresh", c2d_time(1000)),
                ("never", Timestamp::NEVER),
            ] {
                queue
                    .enqueue(hub, target, &c2d_message(body, expiry), AZURE_QUEUE_LIMITS)
                    .await
                    .expect("enqueue");
            }
        }
    }
    // A lock does not protect an expired message from the sweep.
    lock_one(queue, &a, &targets[0], c2d_time(0)).await;

    assert!(
        queue
            .sweep_expired(&a, c2d_time(100), 0)
            .await
            .expect("sweep")
            .is_empty()
    );
    let first = queue.sweep_expired(&a, c2d_time(100), 2).await.expect("sweep");
    assert_eq!(first.len(), 2);
    let rest = queue.sweep_expired(&a, c2d_time(100), 10).await.expect("sweep");
    assert_eq!(rest.len(), 1);
    let mut swept: Vec<(C2dTarget, String)> = first
        .iter()
        .chain(&rest)
        .map(|(target, message)| (target.clone(), body_of(message)))
        .collect();
    swept.sort();
    let mut expected: Vec<(C2dTarget, String)> = targets
        .iter()
        .map(|target| (target.clone(), "old".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(swept, expected);
    assert!(
        queue
            .sweep_expired(&a, c2d_time(100), 10)
            .await
            .expect("sweep")
            .is_empty()
    );

    for target in &targets {
        assert_eq!(depth_of(queue, &a, target).await, 2);
        assert_eq!(depth_of(queue, &ab, target).await, 3);
    }
    // A message expiring exactly at `now` is not swept yet.
    assert!(
        queue
            .sweep_expired(&a, c2d_time(1000), 10)
            .await
            .expect("sweep")
            .is_empty()
    );
    let fresh = queue.sweep_expired(&a, c2d_time(1001), 10).await.expect("sweep");
    assert_eq!(fresh.len(), 3);
    assert!(fresh.iter().all(|(_, message)| body_of(message) == "fresh"));
    for target in &targets {
        let left = queue.purge(&a, target).await.expect("purge");
        assert_eq!(bodies(&left), ["never"]);
    }
}

/// Queues of hubs `a`/`ab`, devices `d`/`d1` and device `d`/its module `m` never see each
/// other's messages, depths or tokens.
pub async fn c2d_targets_are_isolated<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let a = create_hub_named(queue, "a").await;
    let ab = create_hub_named(queue, "ab").await;
    let targets = [device_target("d"), device_target("d1"), module_target("d", "m")];
    let mut all = Vec::new();
    for hub in [&a, &ab] {
        for target in &targets {
            let body = format!("{hub}/{}/{:?}", target.device, target.module);
            enqueue_bodies(queue, hub, target, &[body.as_str()]).await;
            all.push((hub.clone(), target.clone(), body));
        }
    }
    let now = c2d_time(0);
    let mut tokens = Vec::new();
    for (hub, target, body) in &all {
        assert_eq!(depth_of(queue, hub, target).await, 1);
        let locked = lock_one(queue, hub, target, now).await;
        assert_eq!(&body_of(&locked), body);
        let none = lock_next_at(queue, hub, target, now, AZURE_QUEUE_LIMITS).await;
        assert_eq!(none, LockOutcome::default());
        tokens.push(token_of(&locked));
    }
    for (i, (hub, target, _)) in all.iter().enumerate() {
        for (j, token) in tokens.iter().enumerate() {
            if i != j {
                assert_not_found(queue.abandon(hub, target, token, now).await);
            }
        }
    }
    let (hub, target, body) = &all[0];
    let purged = queue.purge(hub, target).await.expect("purge");
    assert_eq!(bodies(&purged), [body.as_str()]);
    for (hub, target, _) in &all[1..] {
        assert_eq!(depth_of(queue, hub, target).await, 1);
    }
}

/// `release_all_locks` makes every locked message of every hub deliverable again, keeping the
/// delivery counts; the old tokens are unknown.
pub async fn c2d_release_all_locks_makes_locked_messages_deliverable<Q: CloudToDeviceQueue + HubStore>(
    queue: &Q,
) {
    let a = create_hub_named(queue, "a").await;
    let b = create_hub_named(queue, "b").await;
    let (d, m) = (device_target("d"), module_target("d", "m"));
    enqueue_bodies(queue, &a, &d, &["a-d"]).await;
    enqueue_bodies(queue, &b, &m, &["b-m"]).await;
    let now = c2d_time(0);
    let first = lock_one(queue, &a, &d, now).await;
    let second = lock_one(queue, &b, &m, now).await;

    queue.release_all_locks().await.expect("release all locks");

    assert_not_found(queue.complete(&a, &d, &token_of(&first), now).await);
    assert_not_found(queue.complete(&b, &m, &token_of(&second), now).await);
    let again = lock_one(queue, &a, &d, now).await;
    assert_eq!((body_of(&again), again.delivery_count), ("a-d".to_owned(), 2));
    let again = lock_one(queue, &b, &m, now).await;
    assert_eq!((body_of(&again), again.delivery_count), ("b-m".to_owned(), 2));
    // With no lock anywhere it is a no-op.
    queue.release_all_locks().await.expect("release all locks");
}

/// `drop_hub` removes every queue of the hub (devices and modules, locked or not) and nothing of
/// hub `ab`; the hub's queues work again afterwards.
pub async fn c2d_drop_hub_removes_every_queue_of_the_hub<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let a = create_hub_named(queue, "a").await;
    let ab = create_hub_named(queue, "ab").await;
    let targets = [device_target("d"), device_target("d1"), module_target("d", "m")];
    for hub in [&a, &ab] {
        for target in &targets {
            enqueue_bodies(queue, hub, target, &["x", "y"]).await;
        }
    }
    let locked = lock_one(queue, &a, &targets[0], c2d_time(0)).await;

    queue.drop_hub(&a).await.expect("drop hub");

    for target in &targets {
        assert_eq!(depth_of(queue, &a, target).await, 0);
        assert_eq!(depth_of(queue, &ab, target).await, 2);
    }
    assert_not_found(
        queue
            .complete(&a, &targets[0], &token_of(&locked), c2d_time(1))
            .await,
    );
    assert!(
        queue
            .sweep_expired(&a, c2d_time(10_000), 100)
            .await
            .expect("sweep")
            .is_empty()
    );
    assert_eq!(
        queue
            .sweep_expired(&ab, c2d_time(10_000), 100)
            .await
            .expect("sweep")
            .len(),
        6
    );
    queue.drop_hub(&a).await.expect("dropping an empty hub succeeds");

    enqueue_bodies(queue, &a, &targets[0], &["after"]).await;
    let after = lock_one(queue, &a, &targets[0], c2d_time(2)).await;
    assert_eq!((body_of(&after), after.delivery_count), ("after".to_owned(), 1));
}

/// Receivers locking at the same time each get a different message.
pub async fn c2d_concurrent_receivers_never_share_a_message<Q: CloudToDeviceQueue + HubStore>(queue: &Q) {
    let hub = create_hub_named(queue, "h").await;
    let target = device_target("d");
    enqueue_bodies(queue, &hub, &target, &["1", "2", "3", "4"]).await;
    let now = c2d_time(0);
    let lock = || lock_next_at(queue, &hub, &target, now, AZURE_QUEUE_LIMITS);
    let (a, b, c, d, e) = tokio::join!(lock(), lock(), lock(), lock(), lock());
    let mut locked: Vec<u64> = [a, b, c, d, e]
        .into_iter()
        .filter_map(|outcome| outcome.locked)
        .map(|message| message.sequence_number)
        .collect();
    locked.sort_unstable();
    locked.dedup();
    assert_eq!(locked.len(), 4, "{locked:?}");
}
