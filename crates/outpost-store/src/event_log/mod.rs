//! [`EmbeddedEventLog`]: the durable, partitioned telemetry log in segment files, implementing
//! [`outpost_core::EventLog`].
//!
//! Layout: `<dir>/<hub>/<partition>/<first offset, 20 digits>.seg`, plus a `LOCK` file in `<dir>`
//! that keeps a second instance out. A record's offset is its byte position in the partition
//! (segment base offset + position in the file): stable across restarts, strictly increasing.
//!
//! * `record`: the record format and its CRC-32C.
//! * `segment`: one segment file, its sparse index, and the record cursor.
//! * `partition`: a partition's shared state and its group-commit writer.
//! * `recovery`: opening partitions, cutting torn tails, creating and removing hub directories.
//! * `read`: finding a position and reading records.
//! * `retention`: dropping old segments.

mod partition;
mod read;
mod record;
mod recovery;
mod retention;
mod segment;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use outpost_core::{
    AppendedEvent, Clock, EventLog, LogPosition, PartitionInfo, Retention, StoreError, StoredEvent,
    SystemClock,
};
use outpost_model::{HubName, LogName, Timestamp};
use parking_lot::RwLock;
use time::OffsetDateTime;

use self::partition::{Counters, PartitionHandle, PartitionShared, WriterContext};
use crate::error::from_join_error;

/// Tuning of an [`EmbeddedEventLog`].
#[derive(Debug, Clone)]
pub struct EventLogOptions {
    /// A segment is closed and a new one started once it would grow past this many bytes
    /// (default 64 MiB). Retention drops whole segments.
    pub segment_bytes: u64,
    /// A writer stops adding queued appends to a batch past this many bytes (default 8 MiB).
    pub max_batch_bytes: usize,
    /// The largest payload accepted (default 1 MiB, the Event Hubs limit).
    pub max_payload_bytes: usize,
    /// Appends a partition queues before callers wait for room (default 1,024).
    pub queue_depth: usize,
    /// Distance in bytes between sparse index entries (default 16 KiB).
    pub index_interval_bytes: u64,
    /// The most partitions a hub may have (default 1,024).
    pub max_partitions: u32,
    /// Stamps enqueued times.
    pub clock: Arc<dyn Clock>,
    /// Makes every sync fail (tests of the failure path).
    #[cfg(test)]
    pub(crate) fail_syncs: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for EventLogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            max_batch_bytes: 8 * 1024 * 1024,
            max_payload_bytes: 1024 * 1024,
            queue_depth: 1024,
            index_interval_bytes: 16 * 1024,
            max_partitions: 1024,
            clock: Arc::new(SystemClock),
            #[cfg(test)]
            fail_syncs: Arc::default(),
        }
    }
}

/// What the log's writers have done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventLogStats {
    /// Records appended (acknowledged as durable).
    pub records: u64,
    /// Batches committed.
    pub batches: u64,
    /// `fdatasync` calls on segments and directories made by writers.
    pub syncs: u64,
}

/// The embedded event log: segment files under one directory, one group-commit writer per
/// partition.
///
/// Cheap to clone. Appends resolve once their records are synced to disk; reads see synced
/// records only. Calls need a tokio runtime (file I/O runs on the blocking pool); `open` does not.
#[derive(Debug, Clone)]
pub struct EmbeddedEventLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    options: Arc<EventLogOptions>,
    hubs: RwLock<HashMap<LogName, Arc<[Arc<PartitionHandle>]>>>,
    /// Serializes hub creation and removal.
    admin: tokio::sync::Mutex<()>,
    /// The writers' counters and the directory lock.
    context: Arc<WriterContext>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for partitions in self.hubs.get_mut().values() {
            for partition in partitions.iter() {
                partition.signal_stop();
            }
        }
    }
}

impl EmbeddedEventLog {
    /// Opens (creating it when missing) the event log in `dir`, recovering every partition: torn
    /// tails of last segments are cut.
    ///
    /// Blocks on file I/O: call it at startup or from a blocking task.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the directory cannot be used or another instance has it
    /// open, [`StoreError::Corrupt`] when a partition cannot be recovered.
    pub fn open(dir: &Path, options: EventLogOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| io_error("create event log directory", dir, &error))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| io_error("open lock file", &lock_path, &error))?;
        lock.try_lock().map_err(|error| match error {
            std::fs::TryLockError::WouldBlock => StoreError::Unavailable(format!(
                "the event log in {} is open in another process or instance",
                dir.display()
            )),
            std::fs::TryLockError::Error(error) => io_error("lock", &lock_path, &error),
        })?;

        let options = Arc::new(options);
        let context = Arc::new(WriterContext {
            counters: Counters::default(),
            _lock: lock,
        });
        let mut hubs = HashMap::new();
        let entries = std::fs::read_dir(dir).map_err(|error| io_error("list event log", dir, &error))?;
        for entry in entries {
            let entry = entry.map_err(|error| io_error("list event log", dir, &error))?;
            let path = entry.path();
            let is_dir = entry
                .file_type()
                .map_err(|error| io_error("inspect", &path, &error))?
                .is_dir();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_dir {
                continue;
            }
            if name.ends_with(".creating") || name.ends_with(".deleting") {
                recovery::remove_leftover(&path)?;
                continue;
            }
            let Ok(hub) = LogName::new(&name) else {
                tracing::warn!(dir = %path.display(), "ignoring a directory that is not a hub's");
                continue;
            };
            let partitions = open_hub(&hub, &path, &options, &context)?;
            hubs.insert(hub, partitions);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                options,
                hubs: RwLock::new(hubs),
                admin: tokio::sync::Mutex::new(()),
                context,
            }),
        })
    }

    /// Returns what the writers have done since the log was opened.
    pub fn stats(&self) -> EventLogStats {
        let counters = &self.inner.context.counters;
        EventLogStats {
            records: counters.records.load(Ordering::Relaxed),
            batches: counters.batches.load(Ordering::Relaxed),
            syncs: counters.syncs.load(Ordering::Relaxed),
        }
    }

    /// Stops every writer after it has written what is queued, and waits for them. Appends
    /// afterwards fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        let hubs: Vec<_> = self.inner.hubs.read().values().cloned().collect();
        for partitions in hubs {
            for partition in partitions.iter() {
                partition.stop().await;
            }
        }
    }

    /// Returns the handle of one partition.
    fn partition(&self, hub: &LogName, partition: u32) -> Result<Arc<PartitionHandle>, StoreError> {
        let hubs = self.inner.hubs.read();
        let partitions = hubs.get(hub).ok_or(StoreError::NotFound)?;
        let index = usize::try_from(partition).map_err(|_| StoreError::NotFound)?;
        partitions.get(index).cloned().ok_or(StoreError::NotFound)
    }

    /// Runs `work` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| from_join_error(&error))?
    }
}

/// Opens every partition of the hub stored in `dir`.
fn open_hub(
    hub: &LogName,
    dir: &Path,
    options: &Arc<EventLogOptions>,
    context: &Arc<WriterContext>,
) -> Result<Arc<[Arc<PartitionHandle>]>, StoreError> {
    let mut ids = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|error| io_error("list hub", dir, &error))?;
    for entry in entries {
        let entry = entry.map_err(|error| io_error("list hub", dir, &error))?;
        match entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        {
            Some(id) => ids.push(id),
            None => {
                tracing::warn!(dir = %dir.display(), entry = ?entry.file_name(), "ignoring a stray entry")
            }
        }
    }
    ids.sort_unstable();
    if ids.is_empty()
        || ids
            .iter()
            .enumerate()
            .any(|(position, id)| *id as usize != position)
    {
        return Err(StoreError::Corrupt(format!(
            "{} must hold partitions 0 to n-1, found {ids:?}",
            dir.display()
        )));
    }
    let interval = options.index_interval_bytes;
    let mut partitions = Vec::with_capacity(ids.len());
    for id in ids {
        let partition_dir = dir.join(id.to_string());
        let state = recovery::open_partition(hub, id, &partition_dir, interval)?;
        let shared = PartitionShared::new(hub.clone(), id, partition_dir, options.clone(), state);
        partitions.push(Arc::new(PartitionHandle::new(Arc::new(shared), context.clone())));
    }
    Ok(partitions.into())
}

#[async_trait]
impl EventLog for EmbeddedEventLog {
    async fn ensure_partitions(&self, hub: &LogName, partition_count: u32) -> Result<(), StoreError> {
        let _admin = self.inner.admin.lock().await;
        if let Some(existing) = self.inner.hubs.read().get(hub) {
            if existing.len() == partition_count as usize {
                return Ok(());
            }
            return Err(StoreError::Conflict);
        }
        if partition_count == 0 || partition_count > self.inner.options.max_partitions {
            return Err(StoreError::Backend(format!(
                "a hub has 1 to {} partitions, not {partition_count}",
                self.inner.options.max_partitions
            )));
        }
        let root = self.inner.dir.clone();
        let options = self.inner.options.clone();
        let context = self.inner.context.clone();
        let name = hub.clone();
        let partitions = Self::blocking(move || {
            recovery::create_hub_dirs(&root, &name, partition_count)?;
            open_hub(&name, &root.join(name.as_str()), &options, &context)
        })
        .await?;
        self.inner.hubs.write().insert(hub.clone(), partitions);
        Ok(())
    }

    async fn drop_log(&self, log: &LogName) -> Result<(), StoreError> {
        let _admin = self.inner.admin.lock().await;
        let partitions = self.inner.hubs.write().remove(log).ok_or(StoreError::NotFound)?;
        for partition in partitions.iter() {
            partition.stop().await;
        }
        let root = self.inner.dir.clone();
        let name = log.clone();
        Self::blocking(move || recovery::remove_hub_dirs(&root, &name)).await
    }

    async fn drop_hub(&self, hub: &HubName) -> Result<(), StoreError> {
        let _admin = self.inner.admin.lock().await;
        let removed: Vec<_> = {
            let mut logs = self.inner.hubs.write();
            let names: Vec<LogName> = logs
                .keys()
                .filter(|log| log.hub_name() == *hub)
                .cloned()
                .collect();
            names
                .into_iter()
                .filter_map(|name| logs.remove(&name).map(|partitions| (name, partitions)))
                .collect()
        };
        if removed.is_empty() {
            return Err(StoreError::NotFound);
        }
        for (name, partitions) in removed {
            for partition in partitions.iter() {
                partition.stop().await;
            }
            let root = self.inner.dir.clone();
            Self::blocking(move || recovery::remove_hub_dirs(&root, &name)).await?;
        }
        Ok(())
    }

    async fn append(
        &self,
        hub: &LogName,
        partition: u32,
        payloads: Vec<Bytes>,
    ) -> Result<Vec<AppendedEvent>, StoreError> {
        let handle = self.partition(hub, partition)?;
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let limit = self
            .inner
            .options
            .max_payload_bytes
            .min(record::MAX_PAYLOAD_BYTES);
        if let Some(payload) = payloads.iter().find(|payload| payload.len() > limit) {
            return Err(StoreError::Backend(format!(
                "an event payload of {} bytes exceeds the limit of {limit} bytes",
                payload.len()
            )));
        }
        handle.append(payloads).await
    }

    async fn read(
        &self,
        hub: &LogName,
        partition: u32,
        from: LogPosition,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let handle = self.partition(hub, partition)?;
        Self::blocking(move || read::read(&handle.shared, from, max_events, max_bytes)).await
    }

    async fn partition_info(&self, hub: &LogName, partition: u32) -> Result<PartitionInfo, StoreError> {
        let handle = self.partition(hub, partition)?;
        let state = handle.shared.state.read();
        let begin_sequence_number = state
            .segments
            .first()
            .map_or(state.next_seq, |first| first.base_seq());
        Ok(PartitionInfo {
            begin_sequence_number,
            last: state.last,
        })
    }

    fn watch(&self, hub: &LogName, partition: u32) -> Result<tokio::sync::watch::Receiver<u64>, StoreError> {
        Ok(self.partition(hub, partition)?.shared.next_seq.subscribe())
    }

    async fn apply_retention(&self, retention: Retention, now: Timestamp) -> Result<u64, StoreError> {
        let Some(now) = now.datetime() else {
            return Ok(0);
        };
        let now_ms = millis_floor(now);
        let partitions: Vec<Arc<PartitionHandle>> = self
            .inner
            .hubs
            .read()
            .values()
            .flat_map(|partitions| partitions.iter().cloned())
            .collect();
        Self::blocking(move || {
            let mut dropped = 0;
            for partition in partitions {
                dropped += retention::apply(&partition.shared, retention, now_ms)?;
            }
            Ok(dropped)
        })
        .await
    }
}

/// Returns the error for a failed file operation: the operation, the path and the cause.
pub(crate) fn io_error(operation: &str, path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("failed to {operation} {}: {error}", path.display()))
}

/// Syncs a directory, making the creation, renaming or removal of its entries durable.
///
/// # Errors
/// An I/O error.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| io_error("sync directory", dir, &error))
}

/// Returns Unix milliseconds, rounded down.
pub(crate) fn millis_floor(at: OffsetDateTime) -> i64 {
    let millis = at.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

/// Returns Unix milliseconds, rounded up; "never" is before everything.
pub(crate) fn millis_ceil(at: Timestamp) -> i64 {
    let Some(at) = at.datetime() else {
        return i64::MIN;
    };
    let nanos = at.unix_timestamp_nanos();
    let millis = -((-nanos).div_euclid(1_000_000));
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

/// Returns the timestamp of Unix milliseconds ("never" when out of range).
pub(crate) fn timestamp_of(ms: i64) -> Timestamp {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_or(Timestamp::NEVER, Timestamp::from_datetime)
}

#[cfg(test)]
mod tests;
