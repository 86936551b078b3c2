//! The scheduled-job conformance suite of `outpost-core` (jobs and their device records), run
//! against both flavours of the embedded store: in memory, and in a file in a temporary
//! directory.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod in_memory {
    outpost_core::jobs_conformance_suite!(
        outpost_store::EmbeddedStore::in_memory().expect("open an in-memory store")
    );
}

mod on_disk {
    outpost_core::jobs_conformance_suite!(with_guard: {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store = outpost_store::EmbeddedStore::open(&dir.path().join("outpost.redb")).expect("open the store");
        (store, dir)
    });
}
