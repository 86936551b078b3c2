//! Conformance bodies: the [`EventLog`] port. A backend runs them all with
//! [`event_log_conformance_suite!`](crate::event_log_conformance_suite), each on a fresh, empty
//! log.
//!
//! Retention drops whole segments (or whatever unit the backend stores), so the retention bodies
//! need a log whose unit is small: the log under test must be configured so that about 40 KiB of
//! events span several units (the embedded log runs with 4 KiB segments).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use outpost_model::{EndpointName, LogName, Timestamp};

use super::{assert_not_found, hub_name};
use crate::{AppendedEvent, EventLog, LogPosition, PartitionInfo, Retention, StoredEvent};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Returns `count` payloads `"<prefix>-<i>"`.
pub fn event_payloads(prefix: &str, count: usize) -> Vec<Bytes> {
    (0..count).map(|i| Bytes::from(format!("{prefix}-{i}"))).collect()
}

/// Creates the hub `name` in the log with `partitions` partitions and returns its name.
pub async fn event_hub<L: EventLog>(log: &L, name: &str, partitions: u32) -> LogName {
    let hub = LogName::hub(&hub_name(name));
    log.ensure_partitions(&hub, partitions)
        .await
        .expect("ensure partitions");
    hub
}

/// Appends `payloads` and returns where they went.
pub async fn append_events<L: EventLog>(
    log: &L,
    hub: &LogName,
    partition: u32,
    payloads: Vec<Bytes>,
) -> Vec<AppendedEvent> {
    log.append(hub, partition, payloads).await.expect("append")
}

/// Reads every event of a partition from `from`, in pages.
pub async fn read_events_from<L: EventLog>(
    log: &L,
    hub: &LogName,
    partition: u32,
    from: LogPosition,
) -> Vec<StoredEvent> {
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut from = from;
    loop {
        let page = log.read(hub, partition, from, 100, 1 << 20).await.expect("read");
        let Some(last) = page.last() else {
            return events;
        };
        from = LogPosition::SequenceNumber(last.position.sequence_number + 1);
        events.extend(page);
    }
}

/// Reads every retained event of a partition.
pub async fn read_all_events<L: EventLog>(log: &L, hub: &LogName, partition: u32) -> Vec<StoredEvent> {
    read_events_from(log, hub, partition, LogPosition::SequenceNumber(0)).await
}

/// Returns the partition's info.
pub async fn info_of<L: EventLog>(log: &L, hub: &LogName, partition: u32) -> PartitionInfo {
    log.partition_info(hub, partition).await.expect("partition info")
}

/// Awaits every future, polling them concurrently on the current task (so that their appends
/// are queued at the same time), and returns their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future completed"))
        .collect()
}

/// Returns `at` moved by `by` (forward when `later`).
fn shifted(at: Timestamp, by: Duration, later: bool) -> Timestamp {
    let at = at.datetime().expect("a real time");
    let by = time::Duration::try_from(by).expect("a small duration");
    Timestamp::from_datetime(if later { at + by } else { at - by })
}

#[track_caller]
fn assert_contiguous_from(events: &[StoredEvent], first: u64) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.position.sequence_number,
            first + i as u64,
            "gap or reorder at {i}"
        );
    }
    for pair in events.windows(2) {
        assert!(
            pair[0].position.offset < pair[1].position.offset,
            "offsets must increase"
        );
        assert!(
            pair[0].position.enqueued_time <= pair[1].position.enqueued_time,
            "enqueued times must not decrease"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// Appended events read back with their positions and payloads, starting from an offset (exact or
/// between two events), a sequence number, or an enqueued time.
pub async fn appended_events_read_back_by_offset_sequence_number_and_time<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 2).await;
    let mut appended = append_events(log, &hub, 1, event_payloads("a", 3)).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    appended.extend(append_events(log, &hub, 1, event_payloads("b", 2)).await);
    let payloads: Vec<Bytes> = event_payloads("a", 3)
        .into_iter()
        .chain(event_payloads("b", 2))
        .collect();

    let all = read_all_events(log, &hub, 1).await;
    assert_eq!(
        all.iter().map(|event| event.position).collect::<Vec<_>>(),
        appended
    );
    assert_eq!(
        all.iter().map(|event| event.payload.clone()).collect::<Vec<_>>(),
        payloads
    );
    assert_contiguous_from(&all, 0);
    assert!(
        appended[3].enqueued_time > appended[2].enqueued_time,
        "5 ms apart"
    );

    let from_offset = read_events_from(log, &hub, 1, LogPosition::Offset(appended[3].offset)).await;
    assert_eq!(from_offset, all[3..]);
    let between = read_events_from(log, &hub, 1, LogPosition::Offset(appended[2].offset + 1)).await;
    assert_eq!(
        between,
        all[3..],
        "an offset inside an event starts at the next one"
    );
    let from_sequence = read_events_from(log, &hub, 1, LogPosition::SequenceNumber(2)).await;
    assert_eq!(from_sequence, all[2..]);
    let from_time =
        read_events_from(log, &hub, 1, LogPosition::EnqueuedTime(appended[3].enqueued_time)).await;
    assert_eq!(from_time, all[3..]);
    let just_after = shifted(appended[0].enqueued_time, Duration::from_micros(100), true);
    let from_just_after = read_events_from(log, &hub, 1, LogPosition::EnqueuedTime(just_after)).await;
    assert_eq!(from_just_after, all[3..], "times are whole milliseconds");
    let from_never = read_events_from(log, &hub, 1, LogPosition::EnqueuedTime(Timestamp::NEVER)).await;
    assert_eq!(from_never, all);
    assert!(read_all_events(log, &hub, 0).await.is_empty());
}

/// Sequence numbers start at 0 in every partition and have no gaps across appends of any size.
pub async fn sequence_numbers_start_at_zero_without_gaps<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 1).await;
    let mut expected = 0;
    for size in [1, 5, 1, 17, 3, 64] {
        let appended = append_events(log, &hub, 0, event_payloads("e", size)).await;
        let numbers: Vec<u64> = appended.iter().map(|event| event.sequence_number).collect();
        assert_eq!(numbers, (expected..expected + size as u64).collect::<Vec<_>>());
        expected += size as u64;
    }
    assert!(
        log.append(&hub, 0, Vec::new())
            .await
            .expect("empty append")
            .is_empty()
    );
    let all = read_all_events(log, &hub, 0).await;
    assert_eq!(all.len() as u64, expected);
    assert_contiguous_from(&all, 0);
}

/// Many appenders at once: every append is acknowledged, each appender's events keep its order
/// in the partition, and the partition has no gaps.
pub async fn concurrent_appenders_keep_their_order_within_a_partition<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 2).await;
    let appenders = (0..20).map(|appender| {
        let hub = &hub;
        async move {
            let mut acknowledged = Vec::new();
            for i in 0..10 {
                let payload = Bytes::from(format!("{appender}:{i}"));
                let appended = append_events(log, hub, appender % 2, vec![payload]).await;
                acknowledged.push(appended[0].sequence_number);
            }
            acknowledged
        }
    });
    let acknowledged = join_all(appenders.collect()).await;
    for numbers in &acknowledged {
        assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "{numbers:?}");
    }
    for partition in 0..2 {
        let all = read_all_events(log, &hub, partition).await;
        assert_eq!(all.len(), 100);
        assert_contiguous_from(&all, 0);
        let mut next = [0u32; 20];
        for event in &all {
            let text = std::str::from_utf8(&event.payload).expect("utf-8");
            let (appender, i) = text.split_once(':').expect("appender:i");
            let appender: usize = appender.parse().expect("number");
            let i: u32 = i.parse().expect("number");
            assert_eq!(appender as u32 % 2, partition);
            assert_eq!(i, next[appender], "appender {appender} out of order");
            next[appender] += 1;
        }
    }
}

/// Partitions have their own sequence numbers and contents.
pub async fn partitions_are_independent<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 3).await;
    let zero = append_events(log, &hub, 0, event_payloads("zero", 4)).await;
    let two = append_events(log, &hub, 2, event_payloads("two", 2)).await;
    assert_eq!(zero[0].sequence_number, 0);
    assert_eq!(two[0].sequence_number, 0);
    assert_eq!(read_all_events(log, &hub, 0).await.len(), 4);
    assert!(read_all_events(log, &hub, 1).await.is_empty());
    let two_read = read_all_events(log, &hub, 2).await;
    assert_eq!(
        two_read
            .iter()
            .map(|event| event.payload.clone())
            .collect::<Vec<_>>(),
        event_payloads("two", 2)
    );
    assert_eq!(info_of(log, &hub, 1).await, PartitionInfo::default());
}

/// `partition_info`: empty before any append, then the newest event and an unchanged beginning.
pub async fn partition_info_follows_appends<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 1).await;
    assert_eq!(
        info_of(log, &hub, 0).await,
        PartitionInfo {
            begin_sequence_number: 0,
            last: None
        }
    );
    append_events(log, &hub, 0, event_payloads("a", 2)).await;
    let appended = append_events(log, &hub, 0, event_payloads("b", 3)).await;
    assert_eq!(
        info_of(log, &hub, 0).await,
        PartitionInfo {
            begin_sequence_number: 0,
            last: appended.last().copied()
        }
    );
}

/// `watch` holds the next sequence number and wakes a waiter after an append.
pub async fn watch_announces_the_next_sequence_number<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 2).await;
    let mut watch = log.watch(&hub, 0).expect("watch");
    assert_eq!(*watch.borrow_and_update(), 0);
    let (changed, _) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(10), watch.changed())
                .await
                .expect("woken within 10 s")
                .expect("the log is alive");
            *watch.borrow_and_update()
        },
        append_events(log, &hub, 0, event_payloads("a", 3)),
    );
    assert_eq!(changed, 3);
    append_events(log, &hub, 0, event_payloads("b", 1)).await;
    assert_eq!(*log.watch(&hub, 0).expect("watch").borrow(), 4);
    assert_eq!(*log.watch(&hub, 1).expect("watch").borrow(), 0);
}

/// Reading at or past the end returns nothing, in an empty and in a filled partition.
pub async fn reads_past_the_end_are_empty<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 1).await;
    let read = |from| log.read(&hub, 0, from, 10, 1 << 20);
    assert!(
        read(LogPosition::SequenceNumber(0))
            .await
            .expect("read")
            .is_empty()
    );
    assert!(read(LogPosition::Offset(0)).await.expect("read").is_empty());
    let appended = append_events(log, &hub, 0, event_payloads("a", 3)).await;
    let last = appended[2];
    let future = shifted(last.enqueued_time, Duration::from_secs(3600), true);
    for from in [
        LogPosition::SequenceNumber(3),
        LogPosition::SequenceNumber(u64::MAX),
        LogPosition::Offset(last.offset + 1),
        LogPosition::Offset(u64::MAX),
        LogPosition::EnqueuedTime(future),
    ] {
        assert!(read(from).await.expect("read").is_empty(), "{from:?}");
    }
}

/// A read returns at most `max_events` events and about `max_bytes` of payload, but at least one
/// event.
pub async fn reads_are_bounded_by_events_and_bytes<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 1).await;
    let payloads: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![i; 100])).collect();
    append_events(log, &hub, 0, payloads).await;
    let read =
        |max_events, max_bytes| log.read(&hub, 0, LogPosition::SequenceNumber(0), max_events, max_bytes);
    assert_eq!(read(4, 1 << 20).await.expect("read").len(), 4);
    assert!(read(0, 1 << 20).await.expect("read").is_empty());
    assert_eq!(read(100, 1).await.expect("read").len(), 1, "at least one event");
    let bounded = read(100, 350).await.expect("read");
    assert!((1..=4).contains(&bounded.len()), "{} events", bounded.len());
}

/// Every call on an unknown hub or partition fails with `NotFound`.
pub async fn unknown_hubs_and_partitions_are_not_found<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 2).await;
    for (hub, partition) in [
        (LogName::hub(&hub_name("ghost")), 0),
        (LogName::hub(&hub_name("plan")), 0),
        (hub.clone(), 2),
    ] {
        assert_not_found(log.append(&hub, partition, event_payloads("a", 1)).await);
        assert_not_found(
            log.read(&hub, partition, LogPosition::SequenceNumber(0), 1, 1)
                .await,
        );
        assert_not_found(log.partition_info(&hub, partition).await);
        assert_not_found(log.watch(&hub, partition));
    }
    assert_not_found(log.drop_hub(&hub_name("ghost")).await);
}

/// `ensure_partitions` again with the same count keeps the events; another count is refused.
pub async fn ensuring_partitions_is_idempotent_and_keeps_the_count<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 2).await;
    append_events(log, &hub, 1, event_payloads("a", 2)).await;
    log.ensure_partitions(&hub, 2).await.expect("ensure again");
    assert_eq!(read_all_events(log, &hub, 1).await.len(), 2);
    let other = log.ensure_partitions(&hub, 4).await;
    assert!(other.is_err(), "changing the partition count must fail");
    assert_not_found(log.partition_info(&hub, 3).await);
}

/// `drop_hub` removes the hub's events and its streams'; a hub created again starts from sequence
/// number 0; other hubs (even with prefix names) keep theirs. A stream is a log of its own.
pub async fn dropping_a_hub_deletes_its_events_only<L: EventLog>(log: &L) {
    let a = event_hub(log, "a", 2).await;
    let ab = event_hub(log, "ab", 2).await;
    let stream = LogName::stream(
        &a.hub_name(),
        &EndpointName::new("alerts").expect("endpoint name"),
    );
    log.ensure_partitions(&stream, 3)
        .await
        .expect("stream partitions");
    append_events(log, &a, 0, event_payloads("a", 3)).await;
    append_events(log, &stream, 2, event_payloads("s", 2)).await;
    append_events(log, &ab, 0, event_payloads("ab", 2)).await;
    assert_eq!(read_all_events(log, &stream, 2).await.len(), 2);
    assert!(
        read_all_events(log, &a, 1).await.is_empty()
            && info_of(log, &stream, 0).await == PartitionInfo::default()
    );
    log.drop_log(&stream).await.expect("drop the stream");
    assert_not_found(log.partition_info(&stream, 2).await);
    assert!(log.partition_info(&a, 0).await.is_ok(), "the hub's log stays");
    log.ensure_partitions(&stream, 3).await.expect("the stream again");
    log.drop_hub(&a.hub_name()).await.expect("drop hub");
    assert_not_found(log.partition_info(&a, 0).await);
    assert_not_found(log.partition_info(&stream, 2).await);
    assert_not_found(log.append(&a, 0, event_payloads("late", 1)).await);
    assert_eq!(read_all_events(log, &ab, 0).await.len(), 2);

    let a = event_hub(log, "a", 1).await;
    assert_eq!(info_of(log, &a, 0).await, PartitionInfo::default());
    assert_eq!(
        append_events(log, &a, 0, event_payloads("new", 1)).await[0].sequence_number,
        0
    );
}

/// Retention by size drops the oldest events (whole units): the beginning moves by the number
/// dropped, the newest event stays, and appends continue where they were.
pub async fn retention_by_size_drops_the_oldest_events<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 2).await;
    for batch in 0..20 {
        let payloads = (0..10).map(|i| Bytes::from(format!("{batch:03}-{i:03}-{}", "x".repeat(180))));
        append_events(log, &hub, 0, payloads.collect()).await;
    }
    append_events(log, &hub, 1, event_payloads("small", 3)).await;
    let before = info_of(log, &hub, 0).await;
    let generous = Retention {
        max_age: Duration::from_secs(86_400),
        max_bytes_per_partition: u64::MAX,
    };
    assert_eq!(
        log.apply_retention(generous, Timestamp::now())
            .await
            .expect("retention"),
        0
    );

    let tight = Retention {
        max_age: Duration::from_secs(86_400),
        max_bytes_per_partition: 8 * 1024,
    };
    let dropped = log
        .apply_retention(tight, Timestamp::now())
        .await
        .expect("retention");
    assert!(dropped > 0 && dropped < 200, "dropped {dropped} of 200");
    let after = info_of(log, &hub, 0).await;
    assert_eq!(after.begin_sequence_number, dropped);
    assert_eq!(after.last, before.last);
    let remaining = read_all_events(log, &hub, 0).await;
    assert_eq!(remaining.len() as u64, 200 - dropped);
    assert_contiguous_from(&remaining, dropped);
    let from_offset = read_events_from(log, &hub, 0, LogPosition::Offset(0)).await;
    assert_eq!(
        from_offset, remaining,
        "an offset before the beginning starts at the beginning"
    );
    assert_eq!(
        read_all_events(log, &hub, 1).await.len(),
        3,
        "small partitions keep everything"
    );
    let next = append_events(log, &hub, 0, event_payloads("next", 1)).await;
    assert_eq!(next[0].sequence_number, 200);
}

/// Retention by age drops events older than `max_age` (whole units) and keeps younger ones.
pub async fn retention_by_age_drops_old_events_only<L: EventLog>(log: &L) {
    let hub = event_hub(log, "plant", 1).await;
    for batch in 0..20 {
        let payloads = (0..10).map(|i| Bytes::from(format!("{batch:03}-{i:03}-{}", "y".repeat(180))));
        append_events(log, &hub, 0, payloads.collect()).await;
    }
    let last = info_of(log, &hub, 0).await.last.expect("events");
    let retention = Retention {
        max_age: Duration::from_secs(60),
        max_bytes_per_partition: u64::MAX,
    };
    let soon = shifted(last.enqueued_time, Duration::from_secs(30), true);
    assert_eq!(log.apply_retention(retention, soon).await.expect("retention"), 0);

    let later = shifted(last.enqueued_time, Duration::from_secs(3600), true);
    let dropped = log.apply_retention(retention, later).await.expect("retention");
    assert!(dropped > 0, "events an hour old must go");
    let info = info_of(log, &hub, 0).await;
    assert_eq!(info.begin_sequence_number, dropped);
    assert_eq!(info.last, Some(last));
    let remaining = read_all_events(log, &hub, 0).await;
    assert_eq!(remaining.len() as u64, 200 - dropped);
    if let Some(first) = remaining.first() {
        assert_eq!(first.position.sequence_number, dropped);
    }
}
