//! Acknowledged appends survive a SIGKILL: the test re-runs this binary as a child process with
//! `CRASH_CHILD_ENV` set; the child (`crash_writer_child`, a no-op otherwise) appends from many
//! tasks and prints every acknowledged append; the parent kills it mid-load and checks the log.
//!
//! A binary of its own: while the child is being spawned it holds copies of the parent's file
//! descriptors until its `exec`, so a test in the same process that closes and reopens an event
//! log could find the directory lock still held (seen once in CI).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_core::EventLog as _;
use outpost_core::testing::{hub_name, read_all_events};
use outpost_model::LogName;
use outpost_store::EmbeddedEventLog;
use outpost_store::event_log::EventLogOptions;

fn open(dir: &Path) -> EmbeddedEventLog {
    let options = EventLogOptions {
        segment_bytes: 32 * 1024,
        index_interval_bytes: 256,
        ..EventLogOptions::default()
    };
    EmbeddedEventLog::open(dir, options).expect("open the event log")
}

/// Set (to the log directory) in the child process only.
const CRASH_CHILD_ENV: &str = "OUTPOST_EVENT_LOG_CRASH_CHILD_DIR";
const CRASH_WRITERS: u32 = 24;
const CRASH_PARTITIONS: u32 = 4;

/// The child: appends from many tasks until killed, printing `ACK writer i partition seq` for
/// every acknowledged event. Does nothing in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_writer_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let log = open(Path::new(&dir));
    let hub = LogName::hub(&hub_name("plant"));
    log.ensure_partitions(&hub, CRASH_PARTITIONS)
        .await
        .expect("ensure partitions");
    for writer in 0..CRASH_WRITERS {
        let (log, hub) = (log.clone(), hub.clone());
        tokio::spawn(async move {
            let partition = writer % CRASH_PARTITIONS;
            // Writers append 1, 2 or 3 events per call.
            let per_call = 1 + writer % 3;
            let mut i = 0u32;
            loop {
                let payloads: Vec<Bytes> = (i..i + per_call)
                    .map(|n| Bytes::from(format!("{writer}:{n}:{}", "p".repeat(200))))
                    .collect();
                let appended = log.append(&hub, partition, payloads).await.expect("append");
                let mut out = std::io::stdout().lock();
                for (k, event) in appended.iter().enumerate() {
                    writeln!(
                        out,
                        "ACK {writer} {} {partition} {}",
                        i + k as u32,
                        event.sequence_number
                    )
                    .expect("print");
                }
                out.flush().expect("flush");
                drop(out);
                i += per_call;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One acknowledged event as the child printed it.
#[derive(Debug, Clone, Copy)]
struct Ack {
    writer: u32,
    i: u32,
    partition: u32,
    seq: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut fields = line.strip_prefix("ACK ")?.split(' ').map(str::parse::<u64>);
    let mut next = || fields.next()?.ok();
    Some(Ack {
        writer: u32::try_from(next()?).ok()?,
        i: u32::try_from(next()?).ok()?,
        partition: u32::try_from(next()?).ok()?,
        seq: next()?,
    })
}

#[test]
fn acknowledged_appends_survive_sigkill_mid_load() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let exe = std::env::current_exe().expect("the test binary");
    let child = Command::new(exe)
        .args(["--exact", "crash_writer_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer child");
    let mut child = KillOnDrop(child);
    let mut stdout = BufReader::new(child.0.stdout.take().expect("piped stdout"));

    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    while acks.len() < 4000 {
        line.clear();
        let read = stdout.read_line(&mut line).expect("read the child's output");
        assert!(read > 0, "the child ended early after {} acks", acks.len());
        assert!(Instant::now() < deadline, "the child is too slow");
        acks.extend(parse_ack(line.trim_end()));
    }
    child.0.kill().expect("SIGKILL the child");
    child.0.wait().expect("reap the child");
    // Everything printed before the kill was acknowledged too.
    for line in stdout.lines() {
        acks.extend(parse_ack(&line.expect("read")));
    }

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let log = open(dir.path());
        let hub = LogName::hub(&hub_name("plant"));
        let mut stored: HashMap<(u32, u64), (u32, u32)> = HashMap::new();
        for partition in 0..CRASH_PARTITIONS {
            let events = read_all_events(&log, &hub, partition).await;
            let mut next_i: HashMap<u32, u32> = HashMap::new();
            for (expected_seq, event) in events.iter().enumerate() {
                assert_eq!(event.position.sequence_number, expected_seq as u64, "no gaps");
                let text = std::str::from_utf8(&event.payload).expect("utf-8");
                let mut fields = text.split(':');
                let writer: u32 = fields.next().expect("writer").parse().expect("writer");
                let i: u32 = fields.next().expect("i").parse().expect("i");
                assert_eq!(writer % CRASH_PARTITIONS, partition);
                let expected_i = next_i.entry(writer).or_insert(0);
                assert_eq!(
                    i, *expected_i,
                    "writer {writer}'s events are in order, without holes"
                );
                *expected_i += 1;
                stored.insert((partition, event.position.sequence_number), (writer, i));
            }
            // The log still takes appends after recovery.
            let next = log
                .append(&hub, partition, vec![Bytes::from_static(b"after")])
                .await
                .expect("append");
            assert_eq!(next[0].sequence_number, events.len() as u64);
        }
        for ack in &acks {
            assert_eq!(
                stored.get(&(ack.partition, ack.seq)),
                Some(&(ack.writer, ack.i)),
                "acknowledged {ack:?} is missing or different"
            );
        }
    });
    assert!(acks.len() >= 4000);
}
