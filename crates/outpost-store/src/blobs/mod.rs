//! [`EmbeddedBlobStore`]: the `BlobStore` port on plain files under `<data_dir>/blobs/<hub>/`
//! (layout and crash rules in `disk`).
//!
//! Bodies stream to a temporary file (never whole in memory), which is fsynced and renamed into
//! place before the call returns: an acknowledged upload is durable. Each hub has an in-memory
//! index (names, sizes, staged blocks) behind a mutex held only for index changes, renames and
//! removals, never while a body streams or a blob is composed from its blocks.

mod disk;

use std::collections::HashMap;
use std::fs;
use std::io::{Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use outpost_core::StoreError;
use outpost_core::blobs::{
    BlobError, BlobPage, BlobProperties, BlobReader, BlobStore, BlobWrite, BlockRef, ByteSource, SweepCount,
};
use outpost_model::Timestamp;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use disk::{Committed, HubIndex, Staging, Trailer};

/// Write buffer of streamed uploads.
const WRITE_BUFFER: usize = 1024 * 1024;

/// The embedded blob store.
#[derive(Debug, Clone)]
pub struct EmbeddedBlobStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    hubs: Mutex<HashMap<String, Arc<Mutex<Option<HubIndex>>>>>,
    generation: AtomicU64,
}

/// Where a block of a Put Block List comes from.
enum Source {
    /// A staged block file (hard-linked into the compose directory).
    Staged(PathBuf, u64),
    /// A range of the committed blob (its file hard-linked).
    Committed(PathBuf, u64, u64),
}

impl EmbeddedBlobStore {
    /// Opens (creating) the store under `root` (`<data_dir>/blobs`). Hubs are loaded, and their
    /// leftovers of a crash cleared, on first use.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::Backend(format!("blob store: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                hubs: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Runs blocking work on `hub`'s loaded index off the runtime.
    async fn with_hub<T: Send + 'static>(
        &self,
        hub: &str,
        work: impl FnOnce(&Inner, &Path, &mut HubIndex) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let hub_dir = self.hub_dir(hub)?;
        let slot = self.inner.hubs.lock().entry(hub.to_owned()).or_default().clone();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = slot.lock();
            if guard.is_none() {
                let index = disk::load_hub(&hub_dir)?;
                inner
                    .generation
                    .fetch_max(index.highest_generation, Ordering::Relaxed);
                *guard = Some(index);
            }
            match guard.as_mut() {
                Some(index) => work(&inner, &hub_dir, index),
                None => Err(BlobError::Store(StoreError::Unavailable("blob index".into()))),
            }
        })
        .await
        .map_err(|error| BlobError::Store(StoreError::Backend(format!("blob task: {error}"))))?
    }

    fn hub_dir(&self, hub: &str) -> Result<PathBuf, BlobError> {
        // Hub names are DNS labels; anything else must not become a path.
        let valid = !hub.is_empty()
            && hub.len() <= 63
            && hub
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(self.inner.root.join(hub))
        } else {
            Err(BlobError::InvalidName(format!("'{hub}' is not a hub name")))
        }
    }

    /// A fresh path in the hub's `tmp/`.
    fn temp_path(&self, hub: &str) -> Result<PathBuf, BlobError> {
        let dir = self.hub_dir(hub)?.join("tmp");
        Ok(dir.join(uuid::Uuid::new_v4().simple().to_string()))
    }

    /// Makes sure the hub is loaded (its `tmp/` exists and holds no leftovers).
    async fn ensure_loaded(&self, hub: &str) -> Result<u64, BlobError> {
        self.with_hub(hub, |_, _, index| Ok(index.usage())).await
    }
}

impl Inner {
    /// A generation above every earlier one, and above the time in microseconds so that ETags
    /// stay unique across restarts even after deletes.
    fn next_generation(&self) -> u64 {
        let now = Timestamp::now()
            .unix_millis()
            .map_or(0, |ms| u64::try_from(ms).unwrap_or(0).saturating_mul(1000));
        let previous = self
            .generation
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
                Some(g.saturating_add(1).max(now))
            })
            .unwrap_or(0);
        previous.saturating_add(1).max(now)
    }
}

/// Streams `body` into a new file at `path`, failing as soon as it passes `limit` bytes (the
/// error `over` says which limit). The file is removed on failure.
async fn stream_to_file(
    path: &Path,
    body: &mut dyn ByteSource,
    limit: u64,
    over: impl Fn() -> BlobError,
) -> Result<(u64, fs::File), BlobError> {
    let result = async {
        let file = tokio::fs::File::create(path).await.map_err(disk::io)?;
        let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut size: u64 = 0;
        while let Some(chunk) = body.next_chunk().await? {
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                return Err(over());
            }
            writer.write_all(&chunk).await.map_err(disk::io)?;
        }
        writer.flush().await.map_err(disk::io)?;
        let file = writer.into_inner();
        // Synced here, off the hub's lock; the commit then only syncs its small trailer.
        file.sync_data().await.map_err(disk::io)?;
        Ok((size, file.into_std().await))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

/// The limit of a streamed body and the error for passing it: the blob (or block) size limit or
/// the room left in the hub's quota, whichever is smaller.
fn body_limit(size_limit: u64, hub_room: u64, hub_limit: u64) -> (u64, impl Fn() -> BlobError) {
    let over = move || {
        if size_limit <= hub_room {
            BlobError::TooLarge { limit: size_limit }
        } else {
            BlobError::QuotaExceeded { limit: hub_limit }
        }
    };
    (size_limit.min(hub_room), over)
}

fn etag(generation: u64) -> String {
    format!("\"0x{generation:016X}\"")
}

#[async_trait]
impl BlobStore for EmbeddedBlobStore {
    async fn put_blob(
        &self,
        hub: &str,
        name: &str,
        body: &mut dyn ByteSource,
        write: &BlobWrite,
    ) -> Result<BlobProperties, BlobError> {
        let key = name.to_owned();
        let (usage, existing) = self
            .with_hub(hub, move |_, _, index| {
                let existing = index.blobs.get(&key).map(|blob| blob.properties.clone());
                Ok((index.usage(), existing))
            })
            .await?;
        // Checked again at commit; failing early spares streaming a body that will be refused.
        write.condition.check_write(existing.as_ref())?;
        let other = usage.saturating_sub(
            existing
                .as_ref()
                .map_or(0, |blob| disk::quota_bytes(name, blob.size)),
        );
        let (limit, over) = body_limit(
            write.max_blob_bytes,
            write.max_hub_bytes.saturating_sub(other),
            write.max_hub_bytes,
        );
        let temp = self.temp_path(hub)?;
        let (size, file) = stream_to_file(&temp, body, limit, over).await?;
        let properties = BlobProperties {
            name: name.to_owned(),
            size,
            created: existing.as_ref().map_or(write.now, |blob| blob.created),
            last_modified: write.now,
            etag: String::new(),
            content: write.content.clone(),
            blocks: Vec::new(),
        };
        let write = write.clone();
        self.with_hub(hub, move |inner, hub_dir, index| {
            commit(inner, hub_dir, index, file, &temp, properties, &write)
        })
        .await
    }

    async fn put_block(
        &self,
        hub: &str,
        name: &str,
        block_id: &str,
        body: &mut dyn ByteSource,
        write: &BlobWrite,
    ) -> Result<u64, BlobError> {
        let (usage, staged, replaced) = {
            let (name, id) = (name.to_owned(), block_id.to_owned());
            self.with_hub(hub, move |_, _, index| {
                let staging = index.staging.get(&name);
                let staged = staging.map_or(0, |staging| staging.blocks.len());
                let replaced = staging.and_then(|staging| staging.blocks.get(&id).copied());
                Ok((index.usage(), staged, replaced))
            })
            .await?
        };
        if replaced.is_none() && staged >= write.max_uncommitted_blocks {
            return Err(BlobError::TooManyBlocks {
                limit: write.max_uncommitted_blocks,
            });
        }
        let (limit, over) = body_limit(
            write.max_block_bytes,
            write
                .max_hub_bytes
                .saturating_sub(usage.saturating_sub(replaced.unwrap_or(0))),
            write.max_hub_bytes,
        );
        let temp = self.temp_path(hub)?;
        let (size, file) = stream_to_file(&temp, body, limit, over).await?;
        let (name, id, now) = (name.to_owned(), block_id.to_owned(), write.now);
        let write = write.clone();
        let staged = self
            .with_hub(hub, move |_, hub_dir, index| {
                drop(file);
                let result = stage_block(hub_dir, index, &name, &id, &temp, size, now, &write);
                if result.is_err() {
                    let _ = fs::remove_file(&temp);
                }
                result
            })
            .await?;
        Ok(staged)
    }

    async fn put_block_list(
        &self,
        hub: &str,
        name: &str,
        blocks: &[BlockRef],
        write: &BlobWrite,
    ) -> Result<BlobProperties, BlobError> {
        self.ensure_loaded(hub).await?;
        let links = self.temp_path(hub)?;
        let (key, refs) = (name.to_owned(), blocks.to_vec());
        let links_dir = links.clone();
        let condition = write.condition.clone();
        // Under the lock: resolve every block and hard-link its file, so that the blob can be
        // composed without the lock while commits, deletes and sweeps go on.
        let (sources, existing) = self
            .with_hub(hub, move |_, _, index| {
                let existing = index.blobs.get(&key).cloned();
                condition.check_write(existing.as_ref().map(|blob| &blob.properties))?;
                let staging = index.staging.get(&key);
                let sources = resolve(&refs, staging, existing.as_ref(), &links_dir)?;
                Ok((sources, existing.map(|blob| blob.properties)))
            })
            .await?;
        let compose = async {
            let total: u64 = sources
                .iter()
                .map(|(_, source)| match source {
                    Source::Staged(_, size) | Source::Committed(_, _, size) => *size,
                })
                .sum();
            if total > write.max_blob_bytes {
                return Err(BlobError::TooLarge {
                    limit: write.max_blob_bytes,
                });
            }
            let temp = self.temp_path(hub)?;
            let mut out = tokio::fs::File::create(&temp).await.map_err(disk::io)?;
            for (_, source) in &sources {
                let (path, offset, size) = match source {
                    Source::Staged(path, size) => (path, 0, *size),
                    Source::Committed(path, offset, size) => (path, *offset, *size),
                };
                let mut input = tokio::fs::File::open(path).await.map_err(disk::io)?;
                input.seek(SeekFrom::Start(offset)).await.map_err(disk::io)?;
                let copied = tokio::io::copy(&mut input.take(size), &mut out)
                    .await
                    .map_err(disk::io)?;
                if copied != size {
                    return Err(BlobError::InvalidBlockList(
                        "a block changed while committing".into(),
                    ));
                }
            }
            out.flush().await.map_err(disk::io)?;
            out.sync_data().await.map_err(disk::io)?;
            Ok((temp, out.into_std().await, total))
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&links).await;
        let (temp, file, size) = compose?;
        let properties = BlobProperties {
            name: name.to_owned(),
            size,
            created: existing.as_ref().map_or(write.now, |blob| blob.created),
            last_modified: write.now,
            etag: String::new(),
            content: write.content.clone(),
            blocks: sources
                .iter()
                .map(|(id, source)| {
                    let size = match source {
                        Source::Staged(_, size) | Source::Committed(_, _, size) => *size,
                    };
                    (id.clone(), size)
                })
                .collect(),
        };
        let write = write.clone();
        self.with_hub(hub, move |inner, hub_dir, index| {
            let committed = commit(inner, hub_dir, index, file, &temp, properties, &write)?;
            if let Some(staging) = index.staging.remove(&committed.name) {
                index.staged_bytes = index
                    .staged_bytes
                    .saturating_sub(staging.blocks.values().sum::<u64>());
                fs::remove_dir_all(&staging.dir).map_err(disk::io)?;
            }
            Ok(committed)
        })
        .await
    }

    async fn properties(&self, hub: &str, name: &str) -> Result<Option<BlobProperties>, BlobError> {
        let name = name.to_owned();
        self.with_hub(hub, move |_, _, index| {
            Ok(index.blobs.get(&name).map(|blob| blob.properties.clone()))
        })
        .await
    }

    async fn read(
        &self,
        hub: &str,
        name: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<(BlobProperties, BlobReader)>, BlobError> {
        let name = name.to_owned();
        // Opened under the lock: an open file keeps its content even if a commit replaces it.
        let opened = self
            .with_hub(hub, move |_, _, index| {
                let Some(blob) = index.blobs.get(&name) else {
                    return Ok(None);
                };
                let file = fs::File::open(&blob.file).map_err(disk::io)?;
                Ok(Some((blob.properties.clone(), file)))
            })
            .await?;
        let Some((properties, mut file)) = opened else {
            return Ok(None);
        };
        let (start, length) = match range {
            None => (0, properties.size),
            Some((start, end)) if start >= properties.size || end < start => {
                return Err(BlobError::InvalidRange);
            }
            Some((start, end)) => (start, end.min(properties.size - 1) - start + 1),
        };
        file.seek(SeekFrom::Start(start)).map_err(disk::io)?;
        let reader: BlobReader = Box::pin(tokio::fs::File::from_std(file).take(length));
        Ok(Some((properties, reader)))
    }

    async fn delete(&self, hub: &str, name: &str) -> Result<bool, BlobError> {
        let name = name.to_owned();
        self.with_hub(hub, move |_, hub_dir, index| {
            let mut existed = false;
            if let Some(staging) = index.staging.remove(&name) {
                index.staged_bytes = index
                    .staged_bytes
                    .saturating_sub(staging.blocks.values().sum::<u64>());
                fs::remove_dir_all(&staging.dir).map_err(disk::io)?;
            }
            if let Some(blob) = index.blobs.remove(&name) {
                index.committed_bytes = index
                    .committed_bytes
                    .saturating_sub(disk::quota_bytes(&name, blob.properties.size));
                fs::remove_file(&blob.file).map_err(disk::io)?;
                disk::sync_dir(&disk::dirs(hub_dir).0)?;
                existed = true;
            }
            Ok(existed)
        })
        .await
    }

    async fn list(
        &self,
        hub: &str,
        prefix: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<BlobPage, BlobError> {
        let (prefix, marker) = (prefix.to_owned(), marker.map(str::to_owned));
        self.with_hub(hub, move |_, _, index| {
            let start = match marker {
                Some(marker) if marker > prefix => marker,
                _ => prefix.clone(),
            };
            let mut matching = index
                .blobs
                .range(start..)
                .take_while(|(name, _)| name.starts_with(&prefix));
            let blobs: Vec<BlobProperties> = matching
                .by_ref()
                .take(max.max(1))
                .map(|(_, blob)| blob.properties.clone())
                .collect();
            let next_marker = matching.next().map(|(name, _)| name.clone());
            Ok(BlobPage { blobs, next_marker })
        })
        .await
    }

    async fn usage(&self, hub: &str) -> Result<u64, BlobError> {
        self.ensure_loaded(hub).await
    }

    async fn sweep(
        &self,
        hub: &str,
        blobs_before: Timestamp,
        blocks_before: Timestamp,
    ) -> Result<SweepCount, BlobError> {
        self.with_hub(hub, move |_, hub_dir, index| {
            let mut count = SweepCount::default();
            let expired: Vec<String> = index
                .blobs
                .iter()
                // Routed containers' files are the user's archive, not uploads: never expired.
                .filter(|(name, blob)| !disk::is_routed(name) && blob.properties.last_modified < blobs_before)
                .map(|(name, _)| name.clone())
                .collect();
            for name in expired {
                if let Some(blob) = index.blobs.remove(&name) {
                    index.committed_bytes = index
                        .committed_bytes
                        .saturating_sub(disk::quota_bytes(&name, blob.properties.size));
                    fs::remove_file(&blob.file).map_err(disk::io)?;
                    count.blobs += 1;
                }
            }
            if count.blobs > 0 {
                disk::sync_dir(&disk::dirs(hub_dir).0)?;
            }
            let stale: Vec<String> = index
                .staging
                .iter()
                .filter(|(_, staging)| staging.touched < blocks_before)
                .map(|(name, _)| name.clone())
                .collect();
            for name in stale {
                if let Some(staging) = index.staging.remove(&name) {
                    index.staged_bytes = index
                        .staged_bytes
                        .saturating_sub(staging.blocks.values().sum::<u64>());
                    count.blocks += staging.blocks.len();
                    fs::remove_dir_all(&staging.dir).map_err(disk::io)?;
                }
            }
            Ok(count)
        })
        .await
    }

    async fn drop_hub(&self, hub: &str) -> Result<(), BlobError> {
        let hub_dir = self.hub_dir(hub)?;
        let slot = self.inner.hubs.lock().remove(hub);
        tokio::task::spawn_blocking(move || {
            // Hold the hub's lock (if loaded) while removing, so no write lands in between.
            let _guard = slot.as_ref().map(|slot| slot.lock());
            match fs::remove_dir_all(&hub_dir) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(disk::io(error)),
                _ => Ok(()),
            }
        })
        .await
        .map_err(|error| BlobError::Store(StoreError::Backend(format!("blob task: {error}"))))?
    }
}

/// Commits a fully written temporary blob file: checks the condition and the hub quota against
/// the current index, appends the trailer, fsyncs, renames it into `blobs/`, fsyncs the
/// directory, and removes the replaced version.
fn commit(
    inner: &Inner,
    hub_dir: &Path,
    index: &mut HubIndex,
    mut file: fs::File,
    temp: &Path,
    mut properties: BlobProperties,
    write: &BlobWrite,
) -> Result<BlobProperties, BlobError> {
    let result = (|| {
        let current = index.blobs.get(&properties.name);
        write
            .condition
            .check_write(current.map(|blob| &blob.properties))?;
        let replaced = current.map_or(0, |blob| {
            disk::quota_bytes(&properties.name, blob.properties.size)
        });
        let after = index
            .usage()
            .saturating_sub(replaced)
            .saturating_add(disk::quota_bytes(&properties.name, properties.size));
        if after > write.max_hub_bytes {
            return Err(BlobError::QuotaExceeded {
                limit: write.max_hub_bytes,
            });
        }
        let generation = inner.next_generation();
        properties.etag = etag(generation);
        if let Some(current) = current {
            properties.created = current.properties.created;
        }
        disk::finish_blob_file(
            &mut file,
            &Trailer {
                generation,
                properties: properties.clone(),
            },
        )?;
        drop(file);
        let (blobs_dir, _, _) = disk::dirs(hub_dir);
        let target = blobs_dir.join(format!("{}.blob", uuid::Uuid::new_v4().simple()));
        fs::rename(temp, &target).map_err(disk::io)?;
        disk::sync_dir(&blobs_dir)?;
        let previous = index.blobs.insert(
            properties.name.clone(),
            Committed {
                file: target,
                generation,
                properties: properties.clone(),
            },
        );
        index.committed_bytes = index
            .committed_bytes
            .saturating_sub(replaced)
            .saturating_add(disk::quota_bytes(&properties.name, properties.size));
        if let Some(previous) = previous {
            fs::remove_file(&previous.file).map_err(disk::io)?;
        }
        Ok(properties)
    })();
    if result.is_err() {
        let _ = fs::remove_file(temp);
    }
    result
}

/// Moves a streamed block into the blob's staging directory (created on its first block).
#[allow(clippy::too_many_arguments, reason = "one call site, all plain values")]
fn stage_block(
    hub_dir: &Path,
    index: &mut HubIndex,
    name: &str,
    id: &str,
    temp: &Path,
    size: u64,
    now: Timestamp,
    write: &BlobWrite,
) -> Result<u64, BlobError> {
    let (_, staging_dir, _) = disk::dirs(hub_dir);
    let replaced = index
        .staging
        .get(name)
        .and_then(|staging| staging.blocks.get(id).copied());
    let count = index.staging.get(name).map_or(0, |staging| staging.blocks.len());
    if replaced.is_none() && count >= write.max_uncommitted_blocks {
        return Err(BlobError::TooManyBlocks {
            limit: write.max_uncommitted_blocks,
        });
    }
    if index
        .usage()
        .saturating_sub(replaced.unwrap_or(0))
        .saturating_add(size)
        > write.max_hub_bytes
    {
        return Err(BlobError::QuotaExceeded {
            limit: write.max_hub_bytes,
        });
    }
    if !index.staging.contains_key(name) {
        let dir = staging_dir.join(uuid::Uuid::new_v4().simple().to_string());
        fs::create_dir(&dir).map_err(disk::io)?;
        let mut name_file = fs::File::create(dir.join("name")).map_err(disk::io)?;
        std::io::Write::write_all(&mut name_file, name.as_bytes()).map_err(disk::io)?;
        name_file.sync_all().map_err(disk::io)?;
        disk::sync_dir(&dir)?;
        disk::sync_dir(&staging_dir)?;
        index.staging.insert(
            name.to_owned(),
            Staging {
                dir,
                blocks: HashMap::new(),
                touched: now,
            },
        );
    }
    let staging = index
        .staging
        .get_mut(name)
        .ok_or_else(|| BlobError::Store(StoreError::Backend("staging vanished".into())))?;
    fs::rename(temp, staging.dir.join(disk::block_file_name(id))).map_err(disk::io)?;
    disk::sync_dir(&staging.dir)?;
    staging.blocks.insert(id.to_owned(), size);
    staging.touched = now;
    index.staged_bytes = index
        .staged_bytes
        .saturating_sub(replaced.unwrap_or(0))
        .saturating_add(size);
    Ok(size)
}

/// Resolves a block list into sources, hard-linking each source file into `links` (Azure's
/// rules: `Latest` prefers the staged block; a missing block makes the list invalid).
fn resolve(
    refs: &[BlockRef],
    staging: Option<&Staging>,
    existing: Option<&Committed>,
    links: &Path,
) -> Result<Vec<(String, Source)>, BlobError> {
    let committed_offsets: HashMap<&str, (u64, u64)> = existing
        .map(|blob| {
            let mut offset = 0;
            blob.properties
                .blocks
                .iter()
                .map(|(id, size)| {
                    let entry = (id.as_str(), (offset, *size));
                    offset += size;
                    entry
                })
                .collect()
        })
        .unwrap_or_default();
    fs::create_dir_all(links).map_err(disk::io)?;
    let mut committed_link = None;
    let mut sources = Vec::with_capacity(refs.len());
    for (n, block) in refs.iter().enumerate() {
        let id = block.id();
        let staged = staging.and_then(|staging| staging.blocks.get(id).map(|size| (staging, *size)));
        let committed = committed_offsets.get(id).copied();
        let use_staged = match block {
            BlockRef::Uncommitted(_) => true,
            BlockRef::Committed(_) => false,
            BlockRef::Latest(_) => staged.is_some(),
        };
        let source = match (use_staged, staged, committed, existing) {
            (true, Some((staging, size)), _, _) => {
                let link = links.join(format!("{n}"));
                fs::hard_link(staging.dir.join(disk::block_file_name(id)), &link).map_err(disk::io)?;
                Source::Staged(link, size)
            }
            (false, _, Some((offset, size)), Some(blob)) => {
                let link = match &committed_link {
                    Some(link) => PathBuf::clone(link),
                    None => {
                        let link = links.join("committed");
                        fs::hard_link(&blob.file, &link).map_err(disk::io)?;
                        committed_link = Some(link.clone());
                        link
                    }
                };
                Source::Committed(link, offset, size)
            }
            _ => {
                return Err(BlobError::InvalidBlockList(format!(
                    "block '{id}' does not exist"
                )));
            }
        };
        sources.push((id.to_owned(), source));
    }
    Ok(sources)
}
