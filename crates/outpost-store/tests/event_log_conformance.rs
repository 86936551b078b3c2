//! The event-log conformance suite of `outpost-core`, run against [`EmbeddedEventLog`] in a
//! temporary directory, with 4 KiB segments so that retention has whole segments to drop.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use outpost_store::EmbeddedEventLog;
use outpost_store::event_log::EventLogOptions;

/// Opens a log with small segments and sparse-index entries in a fresh temporary directory.
fn small_segment_log() -> (EmbeddedEventLog, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let options = EventLogOptions {
        segment_bytes: 4 * 1024,
        index_interval_bytes: 512,
        ..EventLogOptions::default()
    };
    let log = EmbeddedEventLog::open(&dir.path().join("events"), options).expect("open the event log");
    (log, dir)
}

outpost_core::event_log_conformance_suite!(with_guard: small_segment_log());
