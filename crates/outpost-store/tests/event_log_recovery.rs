//! What only the on-disk event log promises: events survive closing and reopening, torn or
//! corrupt tails are cut on open (and appends continue at the right sequence number and
//! offset), corruption in older segments is reported rather than panicked on, and concurrent
//! appenders keep their order. The SIGKILL test is `event_log_crash.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use outpost_core::testing::{event_payloads, hub_name, read_all_events};
use outpost_core::{AppendedEvent, EventLog as _, LogPosition, StoreError, StoredEvent};
use outpost_model::LogName;
use outpost_store::EmbeddedEventLog;
use outpost_store::event_log::EventLogOptions;

fn options(segment_bytes: u64) -> EventLogOptions {
    EventLogOptions {
        segment_bytes,
        index_interval_bytes: 256,
        ..EventLogOptions::default()
    }
}

fn open(dir: &Path, segment_bytes: u64) -> EmbeddedEventLog {
    EmbeddedEventLog::open(dir, options(segment_bytes)).expect("open the event log")
}

/// Closes the log (waiting for its writers) and drops it.
async fn close(log: EmbeddedEventLog) {
    log.close().await;
    drop(log);
}

/// Returns the segment files of a partition, oldest first.
fn segment_files(dir: &Path, hub: &LogName, partition: u32) -> Vec<PathBuf> {
    let partition_dir = dir.join(hub.as_str()).join(partition.to_string());
    let mut files: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .expect("list partition")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    files.sort();
    files
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

async fn append_one_by_one(
    log: &EmbeddedEventLog,
    hub: &LogName,
    partition: u32,
    count: usize,
) -> Vec<AppendedEvent> {
    let mut appended = Vec::new();
    for payload in event_payloads("event", count) {
        appended.extend(log.append(hub, partition, vec![payload]).await.expect("append"));
    }
    appended
}

#[tokio::test]
async fn events_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let log = open(dir.path(), 512);
    let hub = LogName::hub(&hub_name("plant"));
    log.ensure_partitions(&hub, 2).await.expect("ensure partitions");
    let zero = append_one_by_one(&log, &hub, 0, 60).await;
    log.append(&hub, 1, event_payloads("one", 5))
        .await
        .expect("append");
    let before = [
        read_all_events(&log, &hub, 0).await,
        read_all_events(&log, &hub, 1).await,
    ];
    let info = log.partition_info(&hub, 0).await.expect("info");
    assert!(
        segment_files(dir.path(), &hub, 0).len() > 2,
        "512-byte segments roll"
    );
    close(log).await;

    let log = open(dir.path(), 512);
    let after = [
        read_all_events(&log, &hub, 0).await,
        read_all_events(&log, &hub, 1).await,
    ];
    assert_eq!(after, before);
    assert_eq!(log.partition_info(&hub, 0).await.expect("info"), info);
    assert_eq!(*log.watch(&hub, 0).expect("watch").borrow(), 60);
    let next = log
        .append(&hub, 0, event_payloads("next", 1))
        .await
        .expect("append");
    assert_eq!(next[0].sequence_number, 60);
    assert!(next[0].offset > zero[59].offset);
    assert!(next[0].enqueued_time >= zero[59].enqueued_time);
    log.ensure_partitions(&hub, 2)
        .await
        .expect("the reopened hub keeps its partitions");
}

#[tokio::test]
async fn reads_find_every_position_in_sealed_and_active_segments_after_reopen() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let log = open(dir.path(), 1000);
    let hub = LogName::hub(&hub_name("plant"));
    log.ensure_partitions(&hub, 1).await.expect("ensure partitions");
    let mut appended = Vec::new();
    for batch in 0..30 {
        appended.extend(
            log.append(&hub, 0, event_payloads(&format!("b{batch}"), 7))
                .await
                .expect("append"),
        );
        if batch % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    close(log).await;
    // Reopened: older segments are indexed lazily, on first use.
    let log = open(dir.path(), 1000);
    assert!(segment_files(dir.path(), &hub, 0).len() > 3);
    let first_of = |events: Vec<StoredEvent>| events.first().map(|event| event.position);
    for (i, event) in appended.iter().enumerate() {
        let read = |from| log.read(&hub, 0, from, 1, 1 << 20);
        assert_eq!(
            first_of(read(LogPosition::SequenceNumber(i as u64)).await.expect("read")),
            Some(*event)
        );
        assert_eq!(
            first_of(read(LogPosition::Offset(event.offset)).await.expect("read")),
            Some(*event)
        );
        let by_time = appended
            .iter()
            .find(|other| other.enqueued_time >= event.enqueued_time)
            .copied();
        assert_eq!(
            first_of(
                read(LogPosition::EnqueuedTime(event.enqueued_time))
                    .await
                    .expect("read")
            ),
            by_time
        );
    }
}

/// Appends ten events, closes the log, damages the last segment with `damage`, reopens, and
/// returns the log, what was appended, and the events read back.
async fn reopen_after(
    dir: &Path,
    damage: impl FnOnce(&Path, &[AppendedEvent]),
) -> (EmbeddedEventLog, Vec<AppendedEvent>, Vec<StoredEvent>) {
    let hub = LogName::hub(&hub_name("plant"));
    let log = open(dir, 1 << 20);
    log.ensure_partitions(&hub, 1).await.expect("ensure partitions");
    let appended = append_one_by_one(&log, &hub, 0, 10).await;
    close(log).await;
    let last_segment = segment_files(dir, &hub, 0).pop().expect("a segment");
    damage(&last_segment, &appended);
    let log = open(dir, 1 << 20);
    let events = read_all_events(&log, &hub, 0).await;
    (log, appended, events)
}

#[tokio::test]
async fn a_torn_last_record_is_cut_and_appends_continue_in_its_place() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let (log, appended, events) = reopen_after(dir.path(), |segment, _| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(segment)
            .expect("open");
        file.set_len(file_len(segment) - 5).expect("truncate");
    })
    .await;
    assert_eq!(events.len(), 9);
    assert_eq!(
        events.iter().map(|event| event.position).collect::<Vec<_>>(),
        appended[..9]
    );
    let hub = LogName::hub(&hub_name("plant"));
    let next = log
        .append(&hub, 0, event_payloads("next", 1))
        .await
        .expect("append");
    assert_eq!(next[0].sequence_number, 9);
    assert_eq!(
        next[0].offset, appended[9].offset,
        "the cut record's place is reused"
    );
    assert_eq!(
        log.partition_info(&hub, 0).await.expect("info").last,
        Some(next[0])
    );
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let mut end = 0;
    let (log, appended, events) = reopen_after(dir.path(), |segment, _| {
        end = file_len(segment);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(segment)
            .expect("open");
        file.write_all(&[0xab; 100]).expect("append garbage");
    })
    .await;
    assert_eq!(
        events.iter().map(|event| event.position).collect::<Vec<_>>(),
        appended
    );
    let next = log
        .append(&LogName::hub(&hub_name("plant")), 0, event_payloads("next", 1))
        .await
        .expect("append");
    assert_eq!((next[0].sequence_number, next[0].offset), (10, end));
}

#[tokio::test]
async fn a_flipped_byte_in_the_last_record_is_detected_and_cut() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let (log, appended, events) = reopen_after(dir.path(), |segment, appended| {
        let mut bytes = std::fs::read(segment).expect("read");
        let last_record = usize::try_from(appended[9].offset).expect("small");
        let middle = last_record + (bytes.len() - last_record) / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(segment, bytes).expect("write");
    })
    .await;
    assert_eq!(
        events.iter().map(|event| event.position).collect::<Vec<_>>(),
        appended[..9]
    );
    let next = log
        .append(&LogName::hub(&hub_name("plant")), 0, event_payloads("next", 1))
        .await
        .expect("append");
    assert_eq!((next[0].sequence_number, next[0].offset), (9, appended[9].offset));
}

#[tokio::test]
async fn a_torn_first_record_of_a_new_segment_takes_numbers_from_the_segment_before() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let hub = LogName::hub(&hub_name("plant"));
    let log = open(dir.path(), 1024);
    log.ensure_partitions(&hub, 1).await.expect("ensure partitions");
    let appended = append_one_by_one(&log, &hub, 0, 40).await;
    close(log).await;
    let segments = segment_files(dir.path(), &hub, 0);
    let last_segment = segments.last().expect("segments");
    let in_last = appended
        .iter()
        .filter(|event| event.offset >= last_segment_base(last_segment))
        .count();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(last_segment)
        .expect("open");
    file.set_len(3).expect("tear the first record");
    drop(file);

    let log = open(dir.path(), 1024);
    let kept = appended.len() - in_last;
    let info = log.partition_info(&hub, 0).await.expect("info");
    assert_eq!(info.last, Some(appended[kept - 1]));
    let next = log
        .append(&hub, 0, event_payloads("next", 1))
        .await
        .expect("append");
    assert_eq!(next[0].sequence_number, kept as u64);
    assert_eq!(next[0].offset, appended[kept].offset);
    assert_eq!(read_all_events(&log, &hub, 0).await.len(), kept + 1);
}

fn last_segment_base(path: &Path) -> u64 {
    let stem = path.file_stem().and_then(|stem| stem.to_str()).expect("name");
    stem.parse().expect("a base offset")
}

#[tokio::test]
async fn corruption_in_an_older_segment_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let hub = LogName::hub(&hub_name("plant"));
    let log = open(dir.path(), 1024);
    log.ensure_partitions(&hub, 1).await.expect("ensure partitions");
    append_one_by_one(&log, &hub, 0, 40).await;
    close(log).await;
    let first = segment_files(dir.path(), &hub, 0).remove(0);
    let mut bytes = std::fs::read(&first).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&first, bytes).expect("write");

    let log = open(dir.path(), 1024);
    let read = log
        .read(&hub, 0, LogPosition::SequenceNumber(0), 100, 1 << 20)
        .await;
    assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    let tail = log
        .read(&hub, 0, LogPosition::SequenceNumber(39), 1, 1 << 20)
        .await;
    assert_eq!(tail.expect("the last segment is fine").len(), 1);
}

#[tokio::test]
async fn an_open_log_cannot_be_opened_again() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let _log = open(dir.path(), 1 << 20);
    let again = EmbeddedEventLog::open(dir.path(), EventLogOptions::default());
    assert!(matches!(again, Err(StoreError::Unavailable(_))), "{again:?}");
}

#[tokio::test]
async fn retention_keeps_the_active_segment_and_its_effect_survives_reopen() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let hub = LogName::hub(&hub_name("plant"));
    let log = open(dir.path(), 512);
    log.ensure_partitions(&hub, 1).await.expect("ensure partitions");
    let appended = append_one_by_one(&log, &hub, 0, 60).await;
    let far_future = outpost_model::Timestamp::from_unix_seconds(
        appended[59].enqueued_time.unix_seconds().expect("a real time") + 86_400,
    );
    let retention = outpost_core::Retention {
        max_age: Duration::from_secs(1),
        max_bytes_per_partition: u64::MAX,
    };
    let dropped = log
        .apply_retention(retention, far_future)
        .await
        .expect("retention");
    assert!(dropped > 0 && dropped < 60, "dropped {dropped}");
    assert_eq!(
        segment_files(dir.path(), &hub, 0).len(),
        1,
        "only the active segment is left"
    );
    let info = log.partition_info(&hub, 0).await.expect("info");
    assert_eq!(info.begin_sequence_number, dropped);
    assert_eq!(info.last, Some(appended[59]));
    assert_eq!(
        log.apply_retention(retention, far_future)
            .await
            .expect("retention"),
        0
    );
    close(log).await;

    let log = open(dir.path(), 512);
    assert_eq!(log.partition_info(&hub, 0).await.expect("info"), info);
    let remaining = read_all_events(&log, &hub, 0).await;
    assert_eq!(remaining.len() as u64, 60 - dropped);
    assert_eq!(
        remaining[0].position,
        appended[usize::try_from(dropped).expect("small")]
    );
    let next = log
        .append(&hub, 0, event_payloads("next", 1))
        .await
        .expect("append");
    assert_eq!(next[0].sequence_number, 60);
}

#[tokio::test]
async fn dropping_a_hub_removes_its_directory_for_good() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let hub = LogName::hub(&hub_name("plant"));
    let log = open(dir.path(), 1 << 20);
    log.ensure_partitions(&hub, 2).await.expect("ensure partitions");
    append_one_by_one(&log, &hub, 1, 3).await;
    log.drop_hub(&hub.hub_name()).await.expect("drop hub");
    assert!(!dir.path().join("plant").try_exists().expect("stat"));
    close(log).await;
    let log = open(dir.path(), 1 << 20);
    let info = log.partition_info(&hub, 0).await;
    assert!(matches!(info, Err(StoreError::NotFound)), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_appends_from_fifty_tasks_to_four_partitions_keep_their_order() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let log = open(dir.path(), 16 * 1024);
    let hub = LogName::hub(&hub_name("plant"));
    log.ensure_partitions(&hub, 4).await.expect("ensure partitions");
    let tasks: Vec<_> = (0..50u32)
        .map(|task| {
            let (log, hub) = (log.clone(), hub.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..20u32 {
                    let partition = (task + i) % 4;
                    let payload = Bytes::from(format!("{task}:{i}"));
                    let appended = log.append(&hub, partition, vec![payload]).await.expect("append");
                    acknowledged.push((partition, appended[0]));
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = HashMap::new();
    for (task, handle) in tasks.into_iter().enumerate() {
        acknowledged.insert(task as u32, handle.await.expect("task"));
    }
    let stats = log.stats();
    assert_eq!(stats.records, 1000);
    assert!(stats.batches <= 1000);

    let mut total = 0;
    for partition in 0..4 {
        let events = read_all_events(&log, &hub, partition).await;
        total += events.len();
        let mut last_i: HashMap<u32, u32> = HashMap::new();
        for (expected_seq, event) in events.iter().enumerate() {
            assert_eq!(event.position.sequence_number, expected_seq as u64, "no gaps");
            let text = std::str::from_utf8(&event.payload).expect("utf-8");
            let (task, i) = text.split_once(':').expect("task:i");
            let (task, i): (u32, u32) = (task.parse().expect("task"), i.parse().expect("i"));
            assert_eq!((task + i) % 4, partition);
            if let Some(previous) = last_i.insert(task, i) {
                assert!(previous < i, "task {task}: {previous} before {i}");
            }
            let acked = acknowledged[&task][i as usize];
            assert_eq!(acked, (partition, event.position), "acknowledged where stored");
        }
    }
    assert_eq!(total, 1000);
}

/// Connections woken in the same scheduler tick share one commit: the writer gathers what they
/// queue before it syncs. On one worker thread (the benchmark's server has one core) the writer,
/// woken by the first append, would otherwise run next (tokio's LIFO slot) and commit that
/// append nearly alone: 2 commits per round here without gathering, 1 (rarely 2) with it.
#[test]
fn appends_woken_together_share_one_commit() {
    const ROUNDS: u64 = 10;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let log = open(dir.path(), 1 << 20);
        let hub = LogName::hub(&hub_name("plant"));
        log.ensure_partitions(&hub, 1).await.expect("ensure partitions");
        log.append(&hub, 0, event_payloads("warm-up", 1))
            .await
            .expect("append");
        let before = log.stats();
        for _ in 0..ROUNDS {
            let start = std::sync::Arc::new(tokio::sync::Barrier::new(51));
            let tasks: Vec<_> = (0..50)
                .map(|task| {
                    let (log, hub, start) = (log.clone(), hub.clone(), start.clone());
                    tokio::spawn(async move {
                        start.wait().await;
                        log.append(&hub, 0, event_payloads(&format!("task {task}"), 1))
                            .await
                            .expect("append");
                    })
                })
                .collect();
            start.wait().await;
            for task in tasks {
                task.await.expect("task");
            }
        }
        let after = log.stats();
        assert_eq!(after.records - before.records, 50 * ROUNDS);
        let batches = after.batches - before.batches;
        assert!(
            batches <= ROUNDS * 3 / 2,
            "{ROUNDS} rounds of 50 appends woken together took {batches} commits"
        );
    });
}
