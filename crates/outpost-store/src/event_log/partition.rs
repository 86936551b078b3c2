//! One partition: the state readers share, and the writer that appends with group commit.
//!
//! Appends go through a bounded channel to the partition's writer task (started on the first
//! append). The writer takes everything queued (up to `max_batch_bytes`), stamps the batch with
//! one enqueued time, encodes it into one buffer, writes it at the end of the active segment and
//! calls `fdatasync` once, on the blocking pool. Only then does it make the records visible to
//! readers, bump the partition's watch channel and answer every waiter. While one batch syncs,
//! the next one queues up, so batches grow with load; each partition has its own writer, so the
//! syncs of different partitions run at the same time.
//!
//! A failed write or sync fails every waiter of the batch and poisons the partition: after a
//! failed `fdatasync` the page cache may claim bytes the disk lost, so the partition refuses
//! appends until the log is reopened and recovery has looked at the file again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use outpost_core::{AppendedEvent, StoreError};
use outpost_model::LogName;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::record::{self, HEADER_LEN};
use super::segment::{RecordMeta, Segment};
use super::{EventLogOptions, from_join_error, io_error, millis_floor, sync_dir, timestamp_of};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

/// Counters shared by every writer of a log.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub syncs: AtomicU64,
}

/// What every writer of a log shares: the counters, and the lock on the log directory, which
/// stays held until the last writer has ended (so a reopened log never meets a writer of the
/// previous instance still draining its queue).
#[derive(Debug)]
pub(crate) struct WriterContext {
    pub counters: Counters,
    pub _lock: std::fs::File,
}

/// What readers see of a partition; changed only by its writer (appends) and by retention
/// (dropping the oldest segments).
#[derive(Debug)]
pub(crate) struct PartitionState {
    /// Segments by ascending base offset; the last one is the active segment.
    pub segments: Vec<Arc<Segment>>,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    /// The newest durable record.
    pub last: Option<AppendedEvent>,
}

/// A partition's shared state.
#[derive(Debug)]
pub(crate) struct PartitionShared {
    pub hub: LogName,
    pub id: u32,
    pub dir: PathBuf,
    pub options: Arc<EventLogOptions>,
    pub state: RwLock<PartitionState>,
    /// The next sequence number, published after every synced batch.
    pub next_seq: watch::Sender<u64>,
    /// Serializes retention runs on this partition.
    pub retention: Mutex<()>,
}

impl PartitionShared {
    /// Returns the state a log opened on disk starts from.
    pub(crate) fn new(
        hub: LogName,
        id: u32,
        dir: PathBuf,
        options: Arc<EventLogOptions>,
        state: PartitionState,
    ) -> Self {
        let (next_seq, _) = watch::channel(state.next_seq);
        Self {
            hub,
            id,
            dir,
            options,
            state: RwLock::new(state),
            next_seq,
            retention: Mutex::new(()),
        }
    }
}

/// A request to the writer: payloads to append in order, and where to send the outcome.
#[derive(Debug)]
struct AppendRequest {
    payloads: Vec<Bytes>,
    bytes: usize,
    reply: oneshot::Sender<Result<Vec<AppendedEvent>, StoreError>>,
}

/// The writer's side of the handle: not started, running, or stopped for good.
#[derive(Debug)]
enum WriterSlot {
    Idle(Box<Writer>),
    Running {
        sender: mpsc::Sender<AppendRequest>,
        task: JoinHandle<()>,
    },
    Stopped,
}

/// The cloneable entry point to a partition: its shared state and its writer.
#[derive(Debug)]
pub(crate) struct PartitionHandle {
    pub shared: Arc<PartitionShared>,
    writer: Mutex<WriterSlot>,
    stop: CancellationToken,
}

impl PartitionHandle {
    /// Returns the handle of a partition whose writer will start on the first append.
    pub(crate) fn new(shared: Arc<PartitionShared>, context: Arc<WriterContext>) -> Self {
        let writer = Writer::new(&shared, context);
        Self {
            shared,
            writer: Mutex::new(WriterSlot::Idle(Box::new(writer))),
            stop: CancellationToken::new(),
        }
    }

    /// Appends `payloads` and waits until they are durable.
    ///
    /// # Cancel safety
    /// Once queued, the payloads are written even if the caller stops waiting.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the write or sync failed (or failed before: the
    /// partition is poisoned) or the writer stopped.
    pub(crate) async fn append(&self, payloads: Vec<Bytes>) -> Result<Vec<AppendedEvent>, StoreError> {
        let sender = self.sender()?;
        let bytes = payloads.iter().map(|payload| payload.len() + HEADER_LEN).sum();
        let (reply, outcome) = oneshot::channel();
        let request = AppendRequest {
            payloads,
            bytes,
            reply,
        };
        sender.send(request).await.map_err(|_| self.stopped())?;
        outcome.await.map_err(|_| self.stopped())?
    }

    /// Returns the writer's channel, starting the writer task on first use.
    fn sender(&self) -> Result<mpsc::Sender<AppendRequest>, StoreError> {
        let mut slot = self.writer.lock();
        let writer = match std::mem::replace(&mut *slot, WriterSlot::Stopped) {
            WriterSlot::Running { sender, task } => {
                let cloned = sender.clone();
                *slot = WriterSlot::Running { sender, task };
                return Ok(cloned);
            }
            WriterSlot::Stopped => return Err(self.stopped()),
            WriterSlot::Idle(writer) => writer,
        };
        let (sender, receiver) = mpsc::channel(self.shared.options.queue_depth.max(1));
        let max_batch_bytes = self.shared.options.max_batch_bytes;
        let task = tokio::spawn(run_writer(writer, receiver, self.stop.clone(), max_batch_bytes));
        *slot = WriterSlot::Running {
            sender: sender.clone(),
            task,
        };
        Ok(sender)
    }

    /// Stops the writer after it has written what is queued, and waits for it.
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        let slot = std::mem::replace(&mut *self.writer.lock(), WriterSlot::Stopped);
        if let WriterSlot::Running { task, .. } = slot
            && let Err(error) = task.await
        {
            tracing::warn!(
                hub = %self.shared.hub,
                partition = self.shared.id,
                %error,
                "the event log writer ended abnormally"
            );
        }
    }

    /// Asks the writer to stop without waiting (for `Drop`).
    pub(crate) fn signal_stop(&self) {
        self.stop.cancel();
    }

    /// Returns the error for appends to a stopped writer.
    fn stopped(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "the writer of partition {} of hub '{}' has stopped",
            self.shared.id, self.shared.hub
        ))
    }
}

/// How many times the writer yields while requests keep arriving before it commits a batch.
const MAX_GATHER_YIELDS: usize = 4;

/// Receives requests, groups them into batches and hands each batch to the blocking pool.
async fn run_writer(
    writer: Box<Writer>,
    mut receiver: mpsc::Receiver<AppendRequest>,
    stop: CancellationToken,
    max_batch_bytes: usize,
) {
    let mut writer = Some(writer);
    let mut stopping = false;
    loop {
        let first = if stopping {
            receiver.recv().await
        } else {
            tokio::select! {
                request = receiver.recv() => request,
                () = stop.cancelled() => {
                    // Write what is queued, then end.
                    stopping = true;
                    receiver.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        // Gather before committing: the first request woke this task, and connections that are
        // runnable in the same scheduler tick are about to queue theirs. Yielding lets them, so
        // one fdatasync covers them all instead of each paying its own (at full load: 4× fewer
        // syncs, +35–48 % D2C throughput, docs/benchmarks/results.md). When nothing more
        // arrives the loop ends after one yield, which costs microseconds.
        let mut queued = receiver.len();
        for _ in 0..MAX_GATHER_YIELDS {
            tokio::task::yield_now().await;
            let now = receiver.len();
            if now == queued {
                break;
            }
            queued = now;
        }
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while bytes < max_batch_bytes {
            match receiver.try_recv() {
                Ok(request) => {
                    bytes += request.bytes;
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        writer = commit(writer, batch).await;
    }
}

/// Writes and syncs one batch on the blocking pool, then answers its waiters. Returns the writer,
/// or `None` when the blocking task panicked and took it along.
async fn commit(writer: Option<Box<Writer>>, mut batch: Vec<AppendRequest>) -> Option<Box<Writer>> {
    let Some(mut writer) = writer else {
        for request in batch {
            let _ = request.reply.send(Err(StoreError::Unavailable(
                "the partition writer failed earlier; reopen the event log".into(),
            )));
        }
        return None;
    };
    let payloads: Vec<Vec<Bytes>> = batch
        .iter_mut()
        .map(|request| std::mem::take(&mut request.payloads))
        .collect();
    let task = tokio::task::spawn_blocking(move || {
        let outcome = writer.write_batch(&payloads);
        (writer, outcome, payloads)
    });
    match task.await {
        Ok((writer, Ok(events), payloads)) => {
            let mut events = events.into_iter();
            for (request, payloads) in batch.into_iter().zip(&payloads) {
                let answer: Vec<AppendedEvent> = events.by_ref().take(payloads.len()).collect();
                // A waiter that gave up does not care.
                let _ = request.reply.send(Ok(answer));
            }
            Some(writer)
        }
        Ok((writer, Err(reason), _)) => {
            for request in batch {
                let _ = request.reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
            Some(writer)
        }
        Err(error) => {
            tracing::error!(%error, "an event log writer task failed");
            for request in batch {
                let _ = request.reply.send(Err(from_join_error(&error)));
            }
            None
        }
    }
}

/// The writer's own state: the active segment and where the next record goes. Moved into the
/// blocking pool for every batch.
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<PartitionShared>,
    context: Arc<WriterContext>,
    active: Arc<Segment>,
    /// Bytes written to the active segment (all of them synced after a successful batch).
    active_len: u64,
    next_seq: u64,
    last_ms: i64,
    /// Why the partition refuses appends, after a failed write or sync.
    poisoned: Option<String>,
    buf: Vec<u8>,
}

/// Records written into one segment during a batch, to publish once everything is synced.
#[derive(Debug)]
struct Touched {
    segment: Arc<Segment>,
    len: u64,
    records: Vec<RecordMeta>,
}

impl Writer {
    /// Returns the writer positioned at the end of the partition's durable records.
    fn new(shared: &Arc<PartitionShared>, context: Arc<WriterContext>) -> Self {
        let state = shared.state.read();
        let active = state
            .segments
            .last()
            .cloned()
            .expect("a partition always has an active segment");
        let last_ms = state
            .last
            .and_then(|last| last.enqueued_time.datetime())
            .map_or(i64::MIN, millis_floor);
        let active_len = active.len();
        let next_seq = state.next_seq;
        drop(state);
        Self {
            shared: shared.clone(),
            context,
            active,
            active_len,
            next_seq,
            last_ms,
            poisoned: None,
            buf: Vec::new(),
        }
    }

    /// Writes the batch, syncs it, and publishes it to readers; returns where each record went.
    /// On failure the partition is poisoned and nothing is published.
    fn write_batch(&mut self, requests: &[Vec<Bytes>]) -> Result<Vec<AppendedEvent>, String> {
        if let Some(reason) = &self.poisoned {
            return Err(format!(
                "{reason}; the partition refuses appends until the log is reopened"
            ));
        }
        match self.write_and_sync(requests) {
            Ok((events, touched)) => {
                self.publish(&events, touched);
                Ok(events)
            }
            Err(error) => {
                let reason = match error {
                    StoreError::Unavailable(reason) | StoreError::Backend(reason) => reason,
                    other => other.to_string(),
                };
                tracing::error!(
                    hub = %self.shared.hub,
                    partition = self.shared.id,
                    error = %reason,
                    "an event log write failed; the partition refuses appends until reopened"
                );
                self.poisoned = Some(reason.clone());
                Err(reason)
            }
        }
    }

    /// Encodes, writes and syncs the batch, rolling to new segments as they fill up.
    fn write_and_sync(
        &mut self,
        requests: &[Vec<Bytes>],
    ) -> Result<(Vec<AppendedEvent>, Vec<Touched>), StoreError> {
        let segment_bytes = self.shared.options.segment_bytes;
        let now_ms = self
            .shared
            .options
            .clock
            .now()
            .datetime()
            .map_or(self.last_ms, millis_floor);
        // Enqueued times never go backwards within a partition, even if the clock does.
        let ms = now_ms.max(self.last_ms);
        let enqueued_time = timestamp_of(ms);
        let count = requests.iter().map(Vec::len).sum();
        let mut events = Vec::with_capacity(count);
        let mut touched = Vec::new();
        let mut records = Vec::with_capacity(count);
        // The buffer starts at `self.active_len` in the active segment.
        self.buf.clear();
        for payload in requests.iter().flatten() {
            let record_len = (HEADER_LEN + payload.len()) as u64;
            let mut pos = self.active_len + self.buf.len() as u64;
            if pos > 0 && pos + record_len > segment_bytes {
                self.write_buf()?;
                self.sync_active()?;
                touched.push(Touched {
                    segment: self.active.clone(),
                    len: pos,
                    records: std::mem::take(&mut records),
                });
                self.roll(pos)?;
                pos = 0;
            }
            record::encode(&mut self.buf, self.next_seq, ms, payload);
            records.push(RecordMeta {
                seq: self.next_seq,
                pos,
                ms,
                len: record_len,
            });
            events.push(AppendedEvent {
                sequence_number: self.next_seq,
                offset: self.active.base_offset() + pos,
                enqueued_time,
            });
            self.next_seq += 1;
        }
        self.write_buf()?;
        self.sync_active()?;
        touched.push(Touched {
            segment: self.active.clone(),
            len: self.active_len,
            records,
        });
        self.last_ms = ms;
        Ok((events, touched))
    }

    /// Writes the encoded buffer at the end of the active segment.
    fn write_buf(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.active
            .file()
            .write_all_at(&self.buf, self.active_len)
            .map_err(|error| io_error("write segment", self.active.path(), &error))?;
        self.active_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes the active segment's data durable.
    fn sync_active(&self) -> Result<(), StoreError> {
        #[cfg(test)]
        if self
            .shared
            .options
            .fail_syncs
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(io_error(
                "sync segment",
                self.active.path(),
                &std::io::Error::other("injected fdatasync failure"),
            ));
        }
        self.context.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.active
            .file()
            .sync_data()
            .map_err(|error| io_error("sync segment", self.active.path(), &error))
    }

    /// Starts a new active segment after the current one, which ends at `len` and is synced.
    fn roll(&mut self, len: u64) -> Result<(), StoreError> {
        let base_offset = self.active.base_offset() + len;
        let segment = Segment::create(&self.shared.dir, base_offset, self.next_seq)?;
        // The new file's directory entry must be durable before anything in it is acknowledged.
        sync_dir(&self.shared.dir)?;
        self.context.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.active = Arc::new(segment);
        self.active_len = 0;
        Ok(())
    }

    /// Makes a synced batch visible: indexes it, adds new segments, bumps the watch channel.
    fn publish(&self, events: &[AppendedEvent], touched: Vec<Touched>) {
        let interval = self.shared.options.index_interval_bytes;
        let mut state = self.shared.state.write();
        for part in touched {
            part.segment.publish(part.len, &part.records, interval);
            let known = state
                .segments
                .last()
                .is_some_and(|last| Arc::ptr_eq(last, &part.segment));
            if !known {
                state.segments.push(part.segment);
            }
        }
        if let Some(last) = events.last() {
            state.last = Some(*last);
        }
        state.next_seq = self.next_seq;
        drop(state);
        self.context
            .counters
            .records
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.context.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.next_seq.send_replace(self.next_seq);
    }
}
