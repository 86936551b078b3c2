//! Blobs of routed containers (`~routed/<container>/…`, written by message routing's storage
//! endpoints) in the embedded blob store: outside the upload quota and never expired.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use async_trait::async_trait;
use bytes::Bytes;
use outpost_core::blobs::{BlobError, BlobStore, BlobWrite, ByteSource, Condition, ContentSettings};
use outpost_core::routing::storage::routed_blob_name;
use outpost_model::Timestamp;
use outpost_store::EmbeddedBlobStore;

struct OneChunk(Option<Bytes>);

#[async_trait]
impl ByteSource for OneChunk {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BlobError> {
        Ok(self.0.take())
    }
}

fn body(size: usize) -> OneChunk {
    OneChunk(Some(Bytes::from(vec![7u8; size])))
}

/// An upload's write: the hub's quota is 2000 bytes.
fn upload(now: Timestamp) -> BlobWrite {
    BlobWrite {
        content: ContentSettings::default(),
        condition: Condition::default(),
        max_blob_bytes: 2000,
        max_hub_bytes: 2000,
        max_block_bytes: 2000,
        max_uncommitted_blocks: 5,
        now,
    }
}

/// A routed file's write, as `BlobContainerTarget` makes it (no quota).
fn routed(now: Timestamp) -> BlobWrite {
    BlobWrite {
        max_blob_bytes: u64::MAX,
        max_hub_bytes: u64::MAX,
        ..upload(now)
    }
}

#[tokio::test]
async fn routed_blobs_do_not_count_against_the_upload_quota() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    let archive = routed_blob_name("archive", "hub/0/2026/11/26/08/05");
    store
        .put_blob("hub", &archive, &mut body(1800), &routed(Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(store.usage("hub").await.unwrap(), 0);
    // 1800 routed bytes leave the whole 2000-byte quota to uploads.
    store
        .put_blob("hub", "dev1/a.bin", &mut body(1500), &upload(Timestamp::now()))
        .await
        .unwrap();
    let over = store
        .put_blob("hub", "dev1/b.bin", &mut body(600), &upload(Timestamp::now()))
        .await;
    assert!(
        matches!(over, Err(BlobError::QuotaExceeded { limit: 2000 })),
        "{over:?}"
    );
    // Rewriting and deleting a routed blob leave the uploads' count alone.
    store
        .put_blob("hub", &archive, &mut body(900), &routed(Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(store.usage("hub").await.unwrap(), 1500);
    let second = routed_blob_name("archive", "hub/1/2026/11/26/08/05");
    store
        .put_blob("hub", &second, &mut body(10), &routed(Timestamp::now()))
        .await
        .unwrap();
    assert!(store.delete("hub", &second).await.unwrap());
    assert_eq!(store.usage("hub").await.unwrap(), 1500);
    // The count rebuilt from disk agrees.
    drop(store);
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    assert_eq!(store.usage("hub").await.unwrap(), 1500);
    assert_eq!(
        store.properties("hub", &archive).await.unwrap().unwrap().size,
        900
    );
}

#[tokio::test]
async fn retention_never_deletes_routed_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    let old = Timestamp::from_unix_seconds(1_000_000);
    let archive = routed_blob_name("archive", "hub/0/2026/11/26/08/05");
    store
        .put_blob("hub", &archive, &mut body(10), &routed(old))
        .await
        .unwrap();
    store
        .put_blob("hub", "dev1/old.bin", &mut body(10), &upload(old))
        .await
        .unwrap();
    let cutoff = Timestamp::from_unix_seconds(2_000_000);
    let count = store.sweep("hub", cutoff, cutoff).await.unwrap();
    assert_eq!(count.blobs, 1);
    assert!(store.properties("hub", "dev1/old.bin").await.unwrap().is_none());
    assert!(store.properties("hub", &archive).await.unwrap().is_some());
    assert_eq!(store.usage("hub").await.unwrap(), 0);
}
