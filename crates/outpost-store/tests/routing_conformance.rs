//! The routing-store conformance suite of `outpost-core` (configurations, delivery checkpoints),
//! run against the embedded store in memory and on disk.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod in_memory {
    outpost_core::routing_store_conformance_suite!(
        outpost_store::EmbeddedStore::in_memory().expect("open an in-memory store")
    );
}

mod on_disk {
    outpost_core::routing_store_conformance_suite!(with_guard: {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store = outpost_store::EmbeddedStore::open(&dir.path().join("outpost.redb")).expect("open the store");
        (store, dir)
    });
}
