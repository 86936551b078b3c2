//! Delivery workers: one per (hub, custom endpoint, ingest-log partition). A worker reads the
//! hub's log from its durable checkpoint, keeps the messages stamped for its endpoint, batches
//! them by the endpoint's [`BatchPolicy`], hands each batch to the endpoint's sink and saves the
//! checkpoint only after the sink succeeded: every message reaches the endpoint at least once,
//! across crashes. A failing batch is retried with exponential back-off (the endpoint turns
//! unhealthy, then dead after [`EndpointPorts::dead_after`]) and dead-lettered after the sink's
//! retry window where the sink can; workers never wait for one another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_model::{EndpointName, Hub, HubName, LogName, Message, Timestamp};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::model::{Endpoint, EndpointKind, RoutingConfig};
use super::sink::{BatchPolicy, EndpointSink, RoutedBatch, RoutedEvent, StorageTarget, WebhookClient};
use super::store::RoutingStore;
use crate::blobs::BlobStore;
use crate::{Clock, CoreError, EventLog, LogPosition};

/// Events read from the log per call.
const READ_EVENTS: usize = 1000;
/// Bytes read from the log per call (about).
const READ_BYTES: usize = 4 * 1024 * 1024;
/// First retry delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a worker woken by an append waits for more before it reads (bench/run `routing`).
const COALESCE: Duration = Duration::from_millis(5);
/// Longest time between checkpoint writes of a busy worker.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Makes a storage target writing into a directory.
pub type DirectoryTargets = Arc<dyn Fn(&Path) -> Arc<dyn StorageTarget> + Send + Sync>;

/// What endpoints write through; `outpost-server` builds it from the configuration.
#[derive(Clone)]
pub struct EndpointPorts {
    /// A storage target writing into a directory (storage endpoints with `directory`, and
    /// dead letters).
    pub directory: DirectoryTargets,
    /// The built-in blob endpoint's store (storage endpoints with `containerName`).
    pub blobs: Option<Arc<dyn BlobStore>>,
    /// The HTTP client of webhook endpoints.
    pub webhook: Option<Arc<dyn WebhookClient>>,
    /// Where dead-lettered batches go: `<dir>/<hub>/<endpoint>/…`.
    pub dead_letters: PathBuf,
    /// How long an endpoint fails continuously before it is reported dead.
    pub dead_after: Duration,
}

impl std::fmt::Debug for EndpointPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPorts")
            .field("dead_letters", &self.dead_letters)
            .field("dead_after", &self.dead_after)
            .finish_non_exhaustive()
    }
}

/// An endpoint's state as the operator sees it (Azure's endpoint health statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HealthStatus {
    /// Nothing delivered or failed yet.
    Unknown,
    /// The last delivery of every partition succeeded.
    Healthy,
    /// A delivery is failing and being retried.
    Unhealthy,
    /// Deliveries have failed for longer than the dead threshold; still retried.
    Dead,
}

/// One endpoint's health and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealth {
    /// The endpoint's name.
    pub endpoint_name: String,
    /// Its kind (`eventStream`, `storage`, `webhook`).
    pub kind: &'static str,
    /// Its status.
    pub health_status: HealthStatus,
    /// The newest failure, while failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When a delivery last succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_successful_send_attempt_time: Option<String>,
    /// When a delivery last failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_send_attempt_time: Option<String>,
    /// Messages delivered since the server started.
    pub delivered: u64,
    /// Failed delivery attempts since the server started.
    pub failures: u64,
    /// Messages dead-lettered since the server started.
    pub dead_lettered: u64,
}

#[derive(Debug, Default)]
struct HealthState {
    /// Per failing partition: since when, and the newest error.
    failing: HashMap<u32, (Instant, String)>,
    last_success: Option<Timestamp>,
    last_failure: Option<Timestamp>,
    delivered: u64,
    failures: u64,
    dead_lettered: u64,
}

#[derive(Debug)]
struct Health {
    name: String,
    kind: &'static str,
    dead_after: Duration,
    state: Mutex<HealthState>,
}

impl Health {
    fn snapshot(&self) -> EndpointHealth {
        let state = self.state.lock();
        let oldest = state.failing.values().map(|(since, _)| *since).min();
        let status = match oldest {
            Some(since) if since.elapsed() >= self.dead_after => HealthStatus::Dead,
            Some(_) => HealthStatus::Unhealthy,
            None if state.last_success.is_some() => HealthStatus::Healthy,
            None => HealthStatus::Unknown,
        };
        EndpointHealth {
            endpoint_name: self.name.clone(),
            kind: self.kind,
            health_status: status,
            last_error: state
                .failing
                .values()
                .max_by_key(|(since, _)| *since)
                .map(|(_, e)| e.clone()),
            last_successful_send_attempt_time: state.last_success.map(|t| t.to_string()),
            last_send_attempt_time: state.last_failure.map(|t| t.to_string()),
            delivered: state.delivered,
            failures: state.failures,
            dead_lettered: state.dead_lettered,
        }
    }

    fn succeeded(&self, partition: u32, count: usize, now: Timestamp) {
        let mut state = self.state.lock();
        state.failing.remove(&partition);
        state.last_success = Some(now);
        state.delivered += count as u64;
    }

    fn failed(&self, partition: u32, error: String, now: Timestamp) {
        let mut state = self.state.lock();
        state.failures += 1;
        state.last_failure = Some(now);
        state
            .failing
            .entry(partition)
            .and_modify(|(_, last)| last.clone_from(&error))
            .or_insert((Instant::now(), error));
    }

    fn dead_lettered(&self, partition: u32, count: usize) {
        let mut state = self.state.lock();
        state.failing.remove(&partition);
        state.dead_lettered += count as u64;
    }
}

struct Running {
    endpoint: Endpoint,
    health: Arc<Health>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Asks the workers to stop once they are idle or retrying (never between a delivery and
    /// its checkpoint), and returns their handles to wait for.
    fn stop(self) -> Vec<JoinHandle<()>> {
        let _ = self.stop.send(true);
        self.tasks
    }
}

/// Every hub's delivery workers.
pub(crate) struct Deliveries {
    store: Arc<dyn RoutingStore>,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    ports: RwLock<Option<EndpointPorts>>,
    running: Mutex<HashMap<(HubName, String), Running>>,
}

impl Deliveries {
    pub(crate) fn new(store: Arc<dyn RoutingStore>, log: Arc<dyn EventLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            log,
            clock,
            ports: RwLock::new(None),
            running: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn set_ports(&self, ports: EndpointPorts) {
        *self.ports.write() = Some(ports);
    }

    /// Saves checkpoints at the end of every partition of the hub's log for a new endpoint.
    pub(crate) async fn start_at_end(&self, hub: &Hub, endpoint: &EndpointName) -> Result<(), CoreError> {
        let log = LogName::hub(&hub.name);
        for partition in 0..hub.partition_count {
            let next = *self.log.watch(&log, partition)?.borrow();
            self.store
                .put_checkpoint(&hub.name, endpoint.as_str(), partition, next)
                .await?;
        }
        Ok(())
    }

    /// Makes the running workers match the hub's configuration: starts new or changed
    /// endpoints, stops removed ones. Nothing runs before [`Deliveries::set_ports`].
    pub(crate) async fn reconcile(&self, hub: &Hub, config: &RoutingConfig) {
        let Some(ports) = self.ports.read().clone() else {
            return;
        };
        let mut to_start = Vec::new();
        let mut stopped = Vec::new();
        {
            let mut running = self.running.lock();
            let stale: Vec<_> = running
                .iter()
                .filter(|((h, name), worker)| {
                    *h == hub.name
                        && config
                            .endpoint(name)
                            .is_none_or(|endpoint| *endpoint != worker.endpoint)
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in stale {
                if let Some(worker) = running.remove(&key) {
                    stopped.extend(worker.stop());
                }
            }
            for endpoint in &config.endpoints {
                if !running.contains_key(&(hub.name.clone(), endpoint.name.to_string())) {
                    to_start.push(endpoint.clone());
                }
            }
        }
        // A changed endpoint's old workers finish their checkpoint before the new ones read it.
        join_all(stopped).await;
        for endpoint in to_start {
            let health = Arc::new(Health {
                name: endpoint.name.to_string(),
                kind: endpoint.kind.name(),
                dead_after: ports.dead_after,
                state: Mutex::new(HealthState::default()),
            });
            let (stop, stop_rx) = watch::channel(false);
            let tasks = match self
                .spawn_workers(hub, &endpoint, &ports, &health, &stop_rx)
                .await
            {
                Ok(tasks) => tasks,
                Err(error) => {
                    tracing::warn!(hub = %hub.name, endpoint = %endpoint.name, %error, "routing endpoint not started");
                    health.failed(0, error.to_string(), self.clock.now());
                    Vec::new()
                }
            };
            self.running.lock().insert(
                (hub.name.clone(), endpoint.name.to_string()),
                Running {
                    endpoint,
                    health,
                    tasks,
                    stop,
                },
            );
        }
    }

    async fn spawn_workers(
        &self,
        hub: &Hub,
        endpoint: &Endpoint,
        ports: &EndpointPorts,
        health: &Arc<Health>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, CoreError> {
        let (sink, policy) = build_sink(hub, endpoint, ports, &self.log, &self.clock)?;
        let checkpoints: HashMap<u32, u64> = self
            .store
            .checkpoints(&hub.name, endpoint.name.as_str())
            .await?
            .into_iter()
            .collect();
        let log = LogName::hub(&hub.name);
        let mut tasks = Vec::new();
        for partition in 0..hub.partition_count {
            let watch = self.log.watch(&log, partition)?;
            // No checkpoint: an endpoint configured before the server knew it starts at the end.
            let next = checkpoints.get(&partition).copied().unwrap_or(*watch.borrow());
            let worker = Worker {
                hub: hub.name.clone(),
                endpoint: endpoint.name.clone(),
                partition,
                log: self.log.clone(),
                log_name: log.clone(),
                store: self.store.clone(),
                clock: self.clock.clone(),
                sink: sink.clone(),
                policy,
                health: health.clone(),
            };
            tasks.push(tokio::spawn(worker.run(next, watch, stop.clone())));
        }
        Ok(tasks)
    }

    pub(crate) fn stop_hub(&self, hub: &HubName) {
        let mut running = self.running.lock();
        let keys: Vec<_> = running.keys().filter(|(h, _)| h == hub).cloned().collect();
        for key in keys {
            if let Some(worker) = running.remove(&key) {
                drop(worker.stop());
            }
        }
    }

    /// Stops every worker and waits until they have stopped.
    pub(crate) async fn stop_all(&self) {
        let workers: Vec<Running> = self.running.lock().drain().map(|(_, worker)| worker).collect();
        join_all(workers.into_iter().flat_map(Running::stop).collect()).await;
    }

    pub(crate) fn health(&self, hub: &HubName) -> Vec<EndpointHealth> {
        let running = self.running.lock();
        let mut out: Vec<_> = running
            .iter()
            .filter(|((h, _), _)| h == hub)
            .map(|(_, worker)| worker.health.snapshot())
            .collect();
        out.sort_by(|a, b| a.endpoint_name.cmp(&b.endpoint_name));
        out
    }

    pub(crate) fn all_health(&self) -> Vec<(HubName, EndpointHealth)> {
        let running = self.running.lock();
        let mut out: Vec<_> = running
            .iter()
            .map(|((hub, _), worker)| (hub.clone(), worker.health.snapshot()))
            .collect();
        out.sort_by(|a, b| (a.0.as_str(), &a.1.endpoint_name).cmp(&(b.0.as_str(), &b.1.endpoint_name)));
        out
    }
}

/// Builds an endpoint's sink and batch policy.
fn build_sink(
    hub: &Hub,
    endpoint: &Endpoint,
    ports: &EndpointPorts,
    log: &Arc<dyn EventLog>,
    clock: &Arc<dyn Clock>,
) -> Result<(Arc<dyn EndpointSink>, BatchPolicy), CoreError> {
    Ok(match &endpoint.kind {
        EndpointKind::EventStream { partition_count, .. } => (
            Arc::new(super::stream::StreamSink::new(
                log.clone(),
                LogName::stream(&hub.name, &endpoint.name),
                *partition_count,
            )),
            super::stream::StreamSink::batch_policy(),
        ),
        EndpointKind::Storage(storage) => {
            let target: Arc<dyn StorageTarget> = match (&storage.directory, &storage.container_name) {
                (Some(directory), _) => (ports.directory)(Path::new(directory)),
                (None, Some(container)) => {
                    let blobs = ports.blobs.clone().ok_or_else(|| {
                        CoreError::InvalidArgument("this server has no built-in blob endpoint".into())
                    })?;
                    Arc::new(super::storage::BlobContainerTarget::new(
                        blobs,
                        clock.clone(),
                        hub.name.clone(),
                        container,
                    )?)
                }
                (None, None) => {
                    return Err(CoreError::InvalidArgument(format!(
                        "storage endpoint '{}' has no target",
                        endpoint.name
                    )));
                }
            };
            (
                Arc::new(super::storage::StorageSink::new(storage, target, clock.now())?),
                super::storage::batch_policy(storage),
            )
        }
        EndpointKind::Webhook(webhook) => {
            let client = ports
                .webhook
                .clone()
                .ok_or_else(|| CoreError::InvalidArgument("this server has no webhook client".into()))?;
            let dead_letters = (ports.directory)(&ports.dead_letters.join(hub.name.as_str()));
            (
                Arc::new(super::webhook::WebhookSink::new(
                    &hub.host_name,
                    &endpoint.name,
                    webhook,
                    client,
                    dead_letters,
                )),
                super::webhook::batch_policy(webhook),
            )
        }
    })
}

/// One endpoint's reader of one ingest-log partition.
struct Worker {
    hub: HubName,
    endpoint: EndpointName,
    partition: u32,
    log: Arc<dyn EventLog>,
    log_name: LogName,
    store: Arc<dyn RoutingStore>,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn EndpointSink>,
    policy: BatchPolicy,
    health: Arc<Health>,
}

impl Worker {
    async fn run(self, next: u64, mut watch: watch::Receiver<u64>, mut stop: watch::Receiver<bool>) {
        // `cursor`: the next sequence number to read; `checkpoint`: every event before it was
        // delivered or is not for this endpoint (what a restart may skip).
        let mut cursor = next;
        let mut checkpoint = Checkpoint::new(next);
        let mut pending: Vec<RoutedEvent> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut deadline: Option<Instant> = None;
        loop {
            let read = self.log.read(
                &self.log_name,
                self.partition,
                LogPosition::SequenceNumber(cursor),
                READ_EVENTS,
                READ_BYTES,
            );
            let events = match read.await {
                Ok(events) => events,
                Err(error) => {
                    let now = self.clock.now();
                    self.health
                        .failed(self.partition, format!("reading the log: {error}"), now);
                    tokio::select! {
                        () = tokio::time::sleep(MAX_BACKOFF) => continue,
                        _ = stop.changed() => return self.stopped(&checkpoint).await,
                    }
                }
            };
            if events.is_empty() {
                if !pending.is_empty() && deadline.is_none_or(|at| Instant::now() >= at) {
                    if !self.flush(&mut pending, &mut pending_bytes, &mut stop).await {
                        return self.stopped(&checkpoint).await;
                    }
                    checkpoint.done = cursor;
                    deadline = None;
                    continue;
                }
                // Idle: what is done is saved now.
                if checkpoint.unsaved() {
                    self.save(&mut checkpoint).await;
                }
                let until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    changed = watch.changed() => {
                        if changed.is_err() {
                            return self.stopped(&checkpoint).await;
                        }
                        // Woken by an append: let a few more group commits land, so that one
                        // read, one decode pass and one delivery cover many messages.
                        tokio::select! {
                            () = tokio::time::sleep(COALESCE) => {}
                            _ = stop.changed() => return self.stopped(&checkpoint).await,
                        }
                    }
                    () = tokio::time::sleep_until(until) => {}
                    _ = stop.changed() => return self.stopped(&checkpoint).await,
                }
                continue;
            }
            // The log's watch moved at least this far: later changes wake the next wait.
            watch.borrow_and_update();
            for event in events {
                let sequence_number = event.position.sequence_number;
                cursor = sequence_number.saturating_add(1);
                if !Message::is_routed_to(&event.payload, self.endpoint.as_str()) {
                    continue;
                }
                let message = match Message::decode(event.payload.clone()) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(hub = %self.hub, partition = self.partition, sequence_number, %error, "routing: undecodable log record skipped");
                        continue;
                    }
                };
                let Some(message) = message.for_endpoint(self.endpoint.as_str()) else {
                    continue;
                };
                pending_bytes += message.body.len();
                pending.push(RoutedEvent {
                    partition: self.partition,
                    sequence_number,
                    offset: event.position.offset,
                    message,
                });
                if deadline.is_none() {
                    deadline = Some(Instant::now() + self.policy.max_wait);
                }
                if pending.len() >= self.policy.max_events || pending_bytes >= self.policy.max_bytes {
                    if !self.flush(&mut pending, &mut pending_bytes, &mut stop).await {
                        return self.stopped(&checkpoint).await;
                    }
                    checkpoint.done = cursor;
                    deadline = None;
                }
            }
            // Behind the log, reads never come back empty: the batch is cut by its deadline here
            // too (a zero wait sets the deadline to the first event's arrival: at once).
            if !pending.is_empty() && deadline.is_some_and(|at| Instant::now() >= at) {
                if !self.flush(&mut pending, &mut pending_bytes, &mut stop).await {
                    return self.stopped(&checkpoint).await;
                }
                deadline = None;
            }
            if pending.is_empty() {
                checkpoint.done = cursor;
            }
            if checkpoint.due() {
                self.save(&mut checkpoint).await;
            }
        }
    }

    /// Delivers the pending batch until it succeeds or is dead-lettered; `false` when asked to
    /// stop while retrying (the batch stays undelivered and its events before the checkpoint).
    async fn flush(
        &self,
        pending: &mut Vec<RoutedEvent>,
        pending_bytes: &mut usize,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let batch = RoutedBatch {
            hub: self.hub.clone(),
            endpoint: self.endpoint.clone(),
            partition: self.partition,
            events: std::mem::take(pending),
        };
        *pending_bytes = 0;
        let count = batch.events.len();
        let mut backoff = FIRST_BACKOFF;
        let first_failure = Instant::now();
        loop {
            match self.sink.deliver(&batch).await {
                Ok(()) => {
                    self.health.succeeded(self.partition, count, self.clock.now());
                    return true;
                }
                Err(error) => {
                    tracing::debug!(hub = %self.hub, endpoint = %self.endpoint, partition = self.partition, %error, "routing delivery failed; retrying");
                    self.health
                        .failed(self.partition, error.to_string(), self.clock.now());
                    let window = self.sink.retry_window();
                    if window.is_some_and(|window| first_failure.elapsed() >= window) {
                        match self.sink.dead_letter(&batch, &error.to_string()).await {
                            Ok(()) => {
                                tracing::warn!(hub = %self.hub, endpoint = %self.endpoint, count, "routing: batch dead-lettered");
                                self.health.dead_lettered(self.partition, count);
                                return true;
                            }
                            Err(dead) => {
                                tracing::warn!(hub = %self.hub, endpoint = %self.endpoint, error = %dead, "routing: dead-lettering failed");
                            }
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return false,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Saves the checkpoint; a failure is logged and retried at the next save (a lost
    /// checkpoint only means a redelivery).
    async fn save(&self, checkpoint: &mut Checkpoint) {
        let done = checkpoint.done;
        match self
            .store
            .put_checkpoint(&self.hub, self.endpoint.as_str(), self.partition, done)
            .await
        {
            Ok(()) => checkpoint.saved(done),
            Err(error) => {
                tracing::warn!(hub = %self.hub, endpoint = %self.endpoint, %error, "routing checkpoint not saved");
            }
        }
    }

    /// Saves what is done before the worker ends.
    async fn stopped(&self, checkpoint: &Checkpoint) {
        if checkpoint.unsaved() {
            let mut last = *checkpoint;
            self.save(&mut last).await;
        }
    }
}

/// A worker's progress: done in memory, saved at most every [`CHECKPOINT_INTERVAL`] while busy
/// (one durable write per second per worker instead of one per batch), at once when idle or
/// stopping. A crash redelivers at most the last interval's messages: at least once.
#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    done: u64,
    saved: u64,
    saved_at: Instant,
}

impl Checkpoint {
    fn new(at: u64) -> Self {
        Self {
            done: at,
            saved: at,
            saved_at: Instant::now(),
        }
    }

    fn unsaved(&self) -> bool {
        self.done != self.saved
    }

    fn due(&self) -> bool {
        self.unsaved() && self.saved_at.elapsed() >= CHECKPOINT_INTERVAL
    }

    fn saved(&mut self, at: u64) {
        self.saved = at;
        self.saved_at = Instant::now();
    }
}

/// Waits for every task (they end on their own once told to stop).
async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}
