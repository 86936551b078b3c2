//! Unit tests of the failure path (injected sync failures) and of the time conversions.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::sync::atomic::AtomicBool;

use outpost_core::testing::{hub_name, join_all};

use super::*;

fn payload(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test]
async fn a_failed_sync_fails_its_waiters_and_poisons_the_partition() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let fail_syncs = Arc::new(AtomicBool::new(false));
    let options = EventLogOptions {
        fail_syncs: fail_syncs.clone(),
        ..EventLogOptions::default()
    };
    let log = EmbeddedEventLog::open(dir.path(), options).expect("open");
    let hub = LogName::hub(&hub_name("plant"));
    log.ensure_partitions(&hub, 2).await.expect("ensure partitions");
    let first = log.append(&hub, 0, vec![payload("kept")]).await.expect("append");

    fail_syncs.store(true, Ordering::SeqCst);
    let attempts = (0..8).map(|i| log.append(&hub, 0, vec![payload(&format!("lost {i}"))]));
    for outcome in join_all(attempts.collect()).await {
        assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "{outcome:?}");
    }
    fail_syncs.store(false, Ordering::SeqCst);
    let refused = log.append(&hub, 0, vec![payload("refused")]).await;
    assert!(
        matches!(&refused, Err(StoreError::Unavailable(reason)) if reason.contains("reopened")),
        "{refused:?}"
    );
    // Nothing that failed became visible; the other partition is unaffected.
    let read = log
        .read(&hub, 0, LogPosition::SequenceNumber(0), 100, 1 << 20)
        .await
        .expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(
        log.partition_info(&hub, 0).await.expect("info").last,
        Some(first[0])
    );
    assert_eq!(*log.watch(&hub, 0).expect("watch").borrow(), 1);
    log.append(&hub, 1, vec![payload("other")])
        .await
        .expect("the other partition appends");

    // Reopening runs recovery; appends continue without a gap after whatever reached the file.
    log.close().await;
    drop(log);
    let log = EmbeddedEventLog::open(dir.path(), EventLogOptions::default()).expect("reopen");
    let appended = log
        .append(&hub, 0, vec![payload("after")])
        .await
        .expect("append after reopen");
    let read = log
        .read(&hub, 0, LogPosition::SequenceNumber(0), 100, 1 << 20)
        .await
        .expect("read");
    assert_eq!(read[0].payload, payload("kept"));
    for (expected, event) in read.iter().enumerate() {
        assert_eq!(event.position.sequence_number, expected as u64);
    }
    assert_eq!(read.last().expect("events").position, appended[0]);
}

#[test]
fn millisecond_conversions_round_the_right_way() {
    let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_400_000).expect("valid");
    assert_eq!(millis_floor(at), 1_700_000_000_123);
    assert_eq!(millis_ceil(Timestamp::from_datetime(at)), 1_700_000_000_124);
    let exact = timestamp_of(1_700_000_000_123);
    assert_eq!(millis_ceil(exact), 1_700_000_000_123);
    assert_eq!(exact.datetime().map(millis_floor), Some(1_700_000_000_123));
    assert_eq!(millis_ceil(Timestamp::NEVER), i64::MIN);
}
