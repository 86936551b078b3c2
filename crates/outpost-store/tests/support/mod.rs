//! The hub core over the embedded store (in memory), a temporary event log and blob store: what
//! the store-backed integration tests start from.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, reason = "test code")]

use std::sync::Arc;

use outpost_core::{Backends, C2dSettings, Outpost, SystemClock};
use outpost_model::{Hub, TwinLimits};
use outpost_store::{EmbeddedEventLog, EmbeddedStore, EventLogOptions};

/// A started core with its default hub; the directories live as long as it.
pub struct Core {
    pub outpost: Outpost,
    pub hub: Arc<Hub>,
    pub store: EmbeddedStore,
    pub dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Starts the core on a fresh in-memory store with the default hub `host` of `partitions`.
pub async fn start(host: &str, partitions: u32) -> Core {
    let store = EmbeddedStore::in_memory().unwrap();
    let events_dir = tempfile::tempdir().unwrap();
    let blobs_dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        hubs: Arc::new(store.clone()),
        registry: Arc::new(store.clone()),
        events: Arc::new(EmbeddedEventLog::open(events_dir.path(), EventLogOptions::default()).unwrap()),
        c2d: Arc::new(store.clone()),
        service_bound: Arc::new(store.clone()),
        jobs: Arc::new(store.clone()),
        routing: Arc::new(store.clone()),
        blobs: Arc::new(outpost_store::EmbeddedBlobStore::open(blobs_dir.path()).unwrap()),
        clock: Arc::new(SystemClock),
    };
    let outpost = Outpost::start(backends, TwinLimits::default(), C2dSettings::default())
        .await
        .unwrap();
    let hub = outpost
        .ensure_default_hub(host, partitions)
        .await
        .unwrap()
        .unwrap();
    Core {
        outpost,
        hub,
        store,
        dirs: (events_dir, blobs_dir),
    }
}
