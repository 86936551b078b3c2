//! The embedded blob store (file uploads): Put Blob, blocks, reads, listing, limits, retention,
//! and what survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use async_trait::async_trait;
use bytes::Bytes;
use outpost_core::blobs::{
    BlobError, BlobStore, BlobWrite, BlockRef, ByteSource, Condition, ContentSettings,
};
use outpost_model::Timestamp;
use outpost_store::EmbeddedBlobStore;
use tokio::io::AsyncReadExt as _;

/// A body delivered in the given chunks.
struct Chunks(Vec<Bytes>);

#[async_trait]
impl ByteSource for Chunks {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BlobError> {
        Ok((!self.0.is_empty()).then(|| self.0.remove(0)))
    }
}

/// A body that fails after its first chunk (the client went away).
struct Aborted(bool);

#[async_trait]
impl ByteSource for Aborted {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BlobError> {
        if std::mem::replace(&mut self.0, true) {
            Err(BlobError::BodyAborted("reset".into()))
        } else {
            Ok(Some(Bytes::from_static(b"partial")))
        }
    }
}

fn body(data: &[u8]) -> Chunks {
    Chunks(data.chunks(3).map(Bytes::copy_from_slice).collect())
}

fn write_at(now: Timestamp) -> BlobWrite {
    BlobWrite {
        content: ContentSettings {
            content_type: Some("text/plain".into()),
            ..ContentSettings::default()
        },
        condition: Condition::default(),
        max_blob_bytes: 1000,
        max_hub_bytes: 2000,
        max_block_bytes: 100,
        max_uncommitted_blocks: 5,
        now,
    }
}

fn write() -> BlobWrite {
    write_at(Timestamp::now())
}

async fn read_all(store: &EmbeddedBlobStore, hub: &str, name: &str, range: Option<(u64, u64)>) -> Vec<u8> {
    let (_, mut reader) = store.read(hub, name, range).await.unwrap().unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    out
}

fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn put_blob_then_read_overwrite_and_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    let first = store
        .put_blob("hub", "dev1/a.txt", &mut body(b"hello world"), &write())
        .await
        .unwrap();
    assert_eq!(first.size, 11);
    assert_eq!(first.content.content_type.as_deref(), Some("text/plain"));
    assert!(first.etag.starts_with("\"0x"), "{}", first.etag);
    assert_eq!(read_all(&store, "hub", "dev1/a.txt", None).await, b"hello world");
    assert_eq!(
        read_all(&store, "hub", "dev1/a.txt", Some((6, 100))).await,
        b"world"
    );
    assert_eq!(read_all(&store, "hub", "dev1/a.txt", Some((0, 3))).await, b"hell");
    assert!(matches!(
        store.read("hub", "dev1/a.txt", Some((11, 20))).await,
        Err(BlobError::InvalidRange)
    ));

    // overwrite=False sends If-None-Match: *.
    let mut no_overwrite = write();
    no_overwrite.condition.if_none_match = Some("*".into());
    assert!(matches!(
        store
            .put_blob("hub", "dev1/a.txt", &mut body(b"x"), &no_overwrite)
            .await,
        Err(BlobError::AlreadyExists)
    ));
    let second = store
        .put_blob("hub", "dev1/a.txt", &mut body(b"bye"), &write())
        .await
        .unwrap();
    assert_ne!(second.etag, first.etag);
    assert_eq!(second.created, first.created);
    assert_eq!(read_all(&store, "hub", "dev1/a.txt", None).await, b"bye");
    assert_eq!(store.usage("hub").await.unwrap(), 3);

    let mut stale = write();
    stale.condition.if_match = Some(first.etag.clone());
    assert!(matches!(
        store.put_blob("hub", "dev1/a.txt", &mut body(b"x"), &stale).await,
        Err(BlobError::ConditionNotMet)
    ));

    assert!(store.delete("hub", "dev1/a.txt").await.unwrap());
    assert!(!store.delete("hub", "dev1/a.txt").await.unwrap());
    assert!(store.properties("hub", "dev1/a.txt").await.unwrap().is_none());
    assert_eq!(store.usage("hub").await.unwrap(), 0);
}

#[tokio::test]
async fn limits_refuse_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    let big = vec![7u8; 1001];
    assert!(matches!(
        store.put_blob("hub", "d/big", &mut body(&big), &write()).await,
        Err(BlobError::TooLarge { limit: 1000 })
    ));
    assert!(matches!(
        store
            .put_blob("hub", "d/aborted", &mut Aborted(false), &write())
            .await,
        Err(BlobError::BodyAborted(_))
    ));
    assert!(matches!(
        store
            .put_block("hub", "d/b", "AAAA", &mut body(&[0u8; 101]), &write())
            .await,
        Err(BlobError::TooLarge { limit: 100 })
    ));
    store
        .put_blob("hub", "d/one", &mut body(&[1u8; 1000]), &write())
        .await
        .unwrap();
    store
        .put_blob("hub", "d/two", &mut body(&[2u8; 900]), &write())
        .await
        .unwrap();
    assert!(matches!(
        store
            .put_blob("hub", "d/three", &mut body(&[3u8; 200]), &write())
            .await,
        Err(BlobError::QuotaExceeded { limit: 2000 })
    ));
    // Overwriting counts the replaced size out.
    store
        .put_blob("hub", "d/two", &mut body(&[2u8; 1000]), &write())
        .await
        .unwrap();
    // A full hub refuses a block with the quota error.
    assert!(matches!(
        store
            .put_block("hub", "d/b", "AAAA", &mut body(&[0u8; 10]), &write())
            .await,
        Err(BlobError::QuotaExceeded { limit: 2000 })
    ));
    assert!(store.properties("hub", "d/aborted").await.unwrap().is_none());
    // Refused and aborted bodies leave no file: only the two committed blobs remain.
    assert_eq!(all_files(dir.path()).len(), 2, "{:?}", all_files(dir.path()));
    // Another hub has its own quota.
    store
        .put_blob("other", "d/one", &mut body(&[1u8; 1000]), &write())
        .await
        .unwrap();
}

#[tokio::test]
async fn blocks_commit_in_list_order_with_azure_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    let w = write();
    for (id, data) in [("QUFB", &b"aaa"[..]), ("QkJC", b"bbbb"), ("Q0ND", b"cc")] {
        let size = store
            .put_block("hub", "d/f", id, &mut body(data), &w)
            .await
            .unwrap();
        assert_eq!(size, data.len() as u64);
    }
    // Staged blocks are invisible until committed.
    assert!(store.properties("hub", "d/f").await.unwrap().is_none());
    assert!(matches!(
        store
            .put_block_list("hub", "d/f", &[BlockRef::Latest("RERE".into())], &w)
            .await,
        Err(BlobError::InvalidBlockList(_))
    ));
    let committed = store
        .put_block_list(
            "hub",
            "d/f",
            &[
                BlockRef::Latest("Q0ND".into()),
                BlockRef::Uncommitted("QUFB".into()),
            ],
            &w,
        )
        .await
        .unwrap();
    assert_eq!(committed.size, 5);
    assert_eq!(read_all(&store, "hub", "d/f", None).await, b"ccaaa");
    // The uncommitted block not listed is gone, so usage is the blob only.
    assert_eq!(store.usage("hub").await.unwrap(), 5);
    assert!(matches!(
        store
            .put_block_list("hub", "d/f", &[BlockRef::Uncommitted("QkJC".into())], &w)
            .await,
        Err(BlobError::InvalidBlockList(_))
    ));
    // Re-commit with a committed block and a new one.
    store
        .put_block("hub", "d/f", "RERE", &mut body(b"dd"), &w)
        .await
        .unwrap();
    store
        .put_block_list(
            "hub",
            "d/f",
            &[
                BlockRef::Committed("QUFB".into()),
                BlockRef::Latest("RERE".into()),
                BlockRef::Latest("Q0ND".into()),
            ],
            &w,
        )
        .await
        .unwrap();
    assert_eq!(read_all(&store, "hub", "d/f", None).await, b"aaaddcc");

    let mut few = write();
    few.max_uncommitted_blocks = 2;
    for id in ["MQ==", "Mg=="] {
        store
            .put_block("hub", "d/g", id, &mut body(b"x"), &few)
            .await
            .unwrap();
    }
    // Replacing a staged block is fine; a third one is not.
    store
        .put_block("hub", "d/g", "MQ==", &mut body(b"y"), &few)
        .await
        .unwrap();
    assert!(matches!(
        store.put_block("hub", "d/g", "Mw==", &mut body(b"x"), &few).await,
        Err(BlobError::TooManyBlocks { limit: 2 })
    ));
}

#[tokio::test]
async fn listing_pages_by_prefix_and_marker() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    for name in ["dev1/a", "dev1/b", "dev1/c", "dev2/a", "dev10/x"] {
        store
            .put_blob("hub", name, &mut body(name.as_bytes()), &write())
            .await
            .unwrap();
    }
    let page = store.list("hub", "dev1/", None, 2).await.unwrap();
    let names: Vec<_> = page.blobs.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["dev1/a", "dev1/b"]);
    assert_eq!(page.next_marker.as_deref(), Some("dev1/c"));
    let page = store
        .list("hub", "dev1/", page.next_marker.as_deref(), 2)
        .await
        .unwrap();
    let names: Vec<_> = page.blobs.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["dev1/c"]);
    assert_eq!(page.next_marker, None);
    let all = store.list("hub", "", None, 5000).await.unwrap();
    assert_eq!(all.blobs.len(), 5);
    assert!(store.list("empty", "", None, 10).await.unwrap().blobs.is_empty());
}

#[tokio::test]
async fn committed_blobs_and_staged_blocks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedBlobStore::open(dir.path()).unwrap();
        store
            .put_blob("hub", "d/kept", &mut body(b"durable"), &write())
            .await
            .unwrap();
        store
            .put_blob("hub", "d/kept", &mut body(b"durable v2"), &write())
            .await
            .unwrap();
        store
            .put_block("hub", "d/staged", "QUFB", &mut body(b"abc"), &write())
            .await
            .unwrap();
    }
    // A crash mid-upload leaves a temporary file; a crash between renaming a new version and
    // removing the old leaves two versions.
    std::fs::write(dir.path().join("hub/tmp/leftover"), b"junk").unwrap();
    let blobs_dir = dir.path().join("hub/blobs");
    let current = std::fs::read_dir(&blobs_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let older = blobs_dir.join("older.blob");
    std::fs::copy(&current, &older).unwrap();

    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    assert_eq!(read_all(&store, "hub", "d/kept", None).await, b"durable v2");
    // Same generation: one of the two copies is kept, the other removed.
    assert_eq!(std::fs::read_dir(&blobs_dir).unwrap().count(), 1);
    assert!(!dir.path().join("hub/tmp/leftover").try_exists().unwrap());
    assert_eq!(store.usage("hub").await.unwrap(), 10 + 3);
    let committed = store
        .put_block_list("hub", "d/staged", &[BlockRef::Latest("QUFB".into())], &write())
        .await
        .unwrap();
    assert_eq!(committed.size, 3);
    assert_eq!(read_all(&store, "hub", "d/staged", None).await, b"abc");
}

#[tokio::test]
async fn names_never_become_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let store = EmbeddedBlobStore::open(&root).unwrap();
    for name in ["../../escape", "/etc/passwd", "d/../../x", "a\\..\\b"] {
        store
            .put_blob("hub", name, &mut body(b"x"), &write())
            .await
            .unwrap();
        store
            .put_block("hub", name, "QUFB", &mut body(b"y"), &write())
            .await
            .unwrap();
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing outside the root"
    );
    for file in all_files(&root) {
        let relative = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        assert!(!relative.contains(".."), "{relative}");
    }
    assert!(matches!(
        store.put_blob("../hub", "x", &mut body(b"x"), &write()).await,
        Err(BlobError::InvalidName(_))
    ));
}

#[tokio::test]
async fn sweep_removes_old_blobs_and_stale_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    let old = Timestamp::from_unix_seconds(1_000_000);
    let recent = Timestamp::from_unix_seconds(2_000_000);
    store
        .put_blob("hub", "d/old", &mut body(b"old"), &write_at(old))
        .await
        .unwrap();
    store
        .put_blob("hub", "d/new", &mut body(b"new"), &write_at(recent))
        .await
        .unwrap();
    store
        .put_block("hub", "d/s1", "QUFB", &mut body(b"s"), &write_at(old))
        .await
        .unwrap();
    store
        .put_block("hub", "d/s2", "QUFB", &mut body(b"s"), &write_at(recent))
        .await
        .unwrap();
    let cutoff = Timestamp::from_unix_seconds(1_500_000);
    let count = store.sweep("hub", cutoff, cutoff).await.unwrap();
    assert_eq!((count.blobs, count.blocks), (1, 1));
    assert!(store.properties("hub", "d/old").await.unwrap().is_none());
    assert!(store.properties("hub", "d/new").await.unwrap().is_some());
    assert_eq!(store.usage("hub").await.unwrap(), 3 + 1);
    store.drop_hub("hub").await.unwrap();
    assert!(!dir.path().join("hub").try_exists().unwrap());
    assert_eq!(store.usage("hub").await.unwrap(), 0);
}

#[tokio::test]
async fn concurrent_overwrites_leave_one_whole_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedBlobStore::open(dir.path()).unwrap();
    let mut tasks = Vec::new();
    for n in 0..8u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let data = vec![n; 300];
            store
                .put_blob("hub", "d/same", &mut body(&data), &write())
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let data = read_all(&store, "hub", "d/same", None).await;
    assert_eq!(data.len(), 300);
    assert!(data.iter().all(|b| *b == data[0]));
    assert_eq!(
        std::fs::read_dir(dir.path().join("hub/blobs")).unwrap().count(),
        1
    );
    assert_eq!(store.usage("hub").await.unwrap(), 300);
}
