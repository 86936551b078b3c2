//! Throughput of the embedded event log ([`EmbeddedEventLog`]) on the real disk.
//!
//! * `append_256B/<n>p/<k>`: `k` concurrent appenders (1, 16, 128), each appending one 256-byte
//!   payload per call and waiting until it is durable (synced), spread over `n` partitions (1 or
//!   4). One iteration is a fixed number of appends per appender; throughput is in records/s.
//!   After each case the bench prints records per fsync from [`EmbeddedEventLog::stats`].
//! * `append_256B/batch_1024`: one appender, 1,024 payloads per call (the team's reference
//!   point: ≈ 290k records/s with a ≈ 4 ms fdatasync).
//! * `read_256B/<r>_readers`: `r` concurrent readers (1, 4), each reading a 100,000-event
//!   partition from the start in pages of 1,000 events.
//!
//! Run: `cargo bench -p outpost-store --bench event_log` (quick:
//! `-- --warm-up-time 1 --measurement-time 3`). Data goes to a temporary directory under
//! `$TMPDIR`, which should be on the disk to measure.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "bench code")]

use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use outpost_core::{EventLog as _, LogPosition};
use outpost_model::LogName;
use outpost_store::EmbeddedEventLog;
use outpost_store::event_log::{EventLogOptions, EventLogStats};

const PAYLOAD_BYTES: usize = 256;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the runtime")
}

/// Opens a fresh log with one hub of `partitions` partitions in a temporary directory.
fn fresh_log(
    runtime: &tokio::runtime::Runtime,
    partitions: u32,
) -> (EmbeddedEventLog, LogName, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let log = EmbeddedEventLog::open(dir.path(), EventLogOptions::default()).expect("open the event log");
    let hub = LogName::new("bench").expect("valid log name");
    runtime
        .block_on(log.ensure_partitions(&hub, partitions))
        .expect("ensure partitions");
    (log, hub, dir)
}

/// Runs `appenders` tasks, each appending `calls` single-payload appends to its partition.
async fn append_round(log: &EmbeddedEventLog, hub: &LogName, appenders: u32, partitions: u32, calls: u32) {
    let payload = Bytes::from(vec![0x5a; PAYLOAD_BYTES]);
    let tasks: Vec<_> = (0..appenders)
        .map(|appender| {
            let (log, hub, payload) = (log.clone(), hub.clone(), payload.clone());
            tokio::spawn(async move {
                for _ in 0..calls {
                    log.append(&hub, appender % partitions, vec![payload.clone()])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("appender");
    }
}

/// Prints records per fsync and records/s between two stats snapshots.
fn report(case: &str, before: EventLogStats, after: EventLogStats, elapsed: Duration) {
    let records = after.records - before.records;
    let syncs = (after.syncs - before.syncs).max(1);
    let batches = (after.batches - before.batches).max(1);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{case}: {records} records, {:.1} records/fsync, {:.1} records/batch, {:.0} records/s overall",
        records as f64 / syncs as f64,
        records as f64 / batches as f64,
        records as f64 / elapsed.as_secs_f64()
    );
}

fn appends(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("append_256B");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for partitions in [1u32, 4] {
        for appenders in [1u32, 16, 128] {
            let calls = match appenders {
                1 => 64,
                16 => 16,
                _ => 4,
            };
            let (log, hub, _dir) = fresh_log(&runtime, partitions);
            group.throughput(Throughput::Elements(u64::from(appenders * calls)));
            let before = log.stats();
            let started = Instant::now();
            group.bench_function(BenchmarkId::new(format!("{partitions}p"), appenders), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            append_round(&log, &hub, appenders, partitions, calls).await;
                        }
                        start.elapsed()
                    })
                });
            });
            report(
                &format!("append_256B/{partitions}p/{appenders}"),
                before,
                log.stats(),
                started.elapsed(),
            );
        }
    }

    let (log, hub, _dir) = fresh_log(&runtime, 1);
    let batch: Vec<Bytes> = (0..1024)
        .map(|_| Bytes::from(vec![0x5a; PAYLOAD_BYTES]))
        .collect();
    group.throughput(Throughput::Elements(1024));
    let before = log.stats();
    let started = Instant::now();
    group.bench_function("batch_1024", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    log.append(&hub, 0, batch.clone()).await.expect("append");
                }
                start.elapsed()
            })
        });
    });
    report("append_256B/batch_1024", before, log.stats(), started.elapsed());
    group.finish();
}

fn reads(c: &mut Criterion) {
    const EVENTS: u64 = 100_000;
    let runtime = runtime();
    let (log, hub, _dir) = fresh_log(&runtime, 1);
    runtime.block_on(async {
        let batch: Vec<Bytes> = (0..1000)
            .map(|_| Bytes::from(vec![0x5a; PAYLOAD_BYTES]))
            .collect();
        for _ in 0..EVENTS / 1000 {
            log.append(&hub, 0, batch.clone()).await.expect("prefill");
        }
    });
    let mut group = c.benchmark_group("read_256B");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for readers in [1u64, 4] {
        group.throughput(Throughput::Elements(EVENTS * readers));
        group.bench_function(BenchmarkId::new("readers", readers), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let tasks: Vec<_> = (0..readers)
                            .map(|_| {
                                let (log, hub) = (log.clone(), hub.clone());
                                tokio::spawn(async move {
                                    let mut next = 0;
                                    loop {
                                        let page = log
                                            .read(&hub, 0, LogPosition::SequenceNumber(next), 1000, 1 << 20)
                                            .await
                                            .expect("read");
                                        let Some(last) = page.last() else { break };
                                        next = last.position.sequence_number + 1;
                                    }
                                    assert_eq!(next, EVENTS);
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("reader");
                        }
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
