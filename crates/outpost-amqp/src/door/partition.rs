//! Partition receivers of the Event Hubs-compatible endpoint (wire reference §7.4): the attach
//! (address, entity, consumer group, authorization, start position, epoch, runtime metric) and the
//! reader task that feeds a link from the entity's log as the receiver gives credit: the hub's log
//! as the built-in endpoint (only messages routed to `events`), or a custom event stream's log.
//! The task also watches the hub: when the receiver's entity, consumer group or hub is deleted,
//! the link is detached with `amqp:not-found`.

use std::sync::Arc;
use std::time::Duration;

use outpost_core::routing::Routing;
use outpost_core::{Clock, EventLog, Hubs, LogPosition};
use outpost_model::{HubName, LogName};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::AbortHandle;

use super::connection::{Connection, Feed, LinkRole, LinkState, unix_now};
use super::entity::{Entity, eventhub_not_found, partition_not_found};
use super::epoch::{DetachOrder, PartitionKey};
use super::eventhub::{
    PartitionAddress, RUNTIME_METRIC, RuntimeInfo, Skip, StartPosition, entity_not_found, event_message,
    start_position,
};
use crate::definitions::{Error, condition};
use crate::engine::{LinkAttached, LinkId, LinkReply};
use crate::value::{Symbol, Value};

/// Most events a partition receiver has in flight ahead of the peer's credit.
const MAX_PREFETCH: u32 = 1000;
/// Events read from the log at once.
const READ_BATCH: usize = 64;
/// Bytes read from the log at once (at least one event).
const READ_BYTES: usize = 1024 * 1024;
/// The link property of epoch receivers (wire reference §7.4).
const EPOCH: &str = "com.microsoft:epoch";

/// An epoch: a long from the clients, any integer accepted.
fn epoch_value(value: &Value) -> Option<i64> {
    match value {
        Value::Long(epoch) => Some(*epoch),
        Value::Int(epoch) => Some(i64::from(*epoch)),
        Value::Uint(epoch) => Some(i64::from(*epoch)),
        Value::Ulong(epoch) => i64::try_from(*epoch).ok(),
        _ => None,
    }
}

/// A partition receiver link.
#[derive(Debug)]
pub(super) struct PartitionFeed {
    /// The partition in the receivers registry.
    pub(super) key: PartitionKey,
    /// Permits of the reader task: one per event it may hand over.
    permits: Arc<Semaphore>,
    /// Permits given minus events received.
    granted: u32,
    pub(super) task: Option<AbortHandle>,
}

impl PartitionFeed {
    /// An event of the reader arrived: one permit is used up.
    pub(super) fn received(&mut self) {
        self.granted = self.granted.saturating_sub(1);
    }

    /// The peer's credit changed: the reader may run `credit - queued` events ahead (at most
    /// [`MAX_PREFETCH`]); on drain the permits not used yet are taken back.
    pub(super) fn credit(&mut self, credit: u32, queued: u32, drain: bool) {
        let wanted = credit.saturating_sub(queued).min(MAX_PREFETCH);
        if wanted > self.granted {
            let more = wanted - self.granted;
            self.permits.add_permits(more as usize);
            self.granted = wanted;
        }
        if drain {
            let idle = u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX);
            if let Ok(taken) = self.permits.try_acquire_many(idle) {
                taken.forget();
                self.granted = self.granted.saturating_sub(idle);
            }
        }
    }
}

impl Connection {
    pub(super) async fn attach_partition(
        &mut self,
        attached: &LinkAttached,
        address: PartitionAddress,
        mut state: LinkState,
    ) {
        let link = attached.link;
        self.bind_host(address.host.as_deref());
        let Some(bound) = self.hub.as_ref().map(|hub| hub.name.clone()) else {
            return self.reject(link, condition::NOT_FOUND, "no hub serves this host");
        };
        // Subscribed before the hub is read: a consumer group deleted from now on detaches the link.
        let changes = self.context.hubs.changes();
        // The hub as it is now: consumer groups come and go while connections live.
        let Some(hub) = self.context.hubs.by_name(bound.as_str()) else {
            return self.reject(link, condition::NOT_FOUND, "no hub serves this host");
        };
        let routing = self.context.outpost.routing.clone();
        let Some(entity) = Entity::resolve(&hub, &routing, &address.eventhub) else {
            return self.reject(
                link,
                condition::NOT_FOUND,
                eventhub_not_found(&hub.host_name, &address.eventhub),
            );
        };
        if !entity.has_consumer_group(&hub, &address.consumer_group) {
            return self.reject(
                link,
                condition::NOT_FOUND,
                entity_not_found(&hub.host_name, &entity.name, &address.consumer_group),
            );
        }
        if address.partition >= entity.partition_count {
            return self.reject(
                link,
                condition::NOT_FOUND,
                partition_not_found(&address.partition.to_string(), entity.partition_count),
            );
        }
        let now = unix_now(&self.context);
        let resource = address.resource(&hub.host_name);
        if !self.authorized(&hub.name, &resource, now) {
            return self.reject(
                link,
                condition::UNAUTHORIZED_ACCESS,
                "put a token for the partition first",
            );
        }
        let filter = attached.source.as_ref().and_then(|s| s.filter.as_ref());
        let start = match start_position(filter) {
            Ok(start) => start,
            Err(description) => return self.reject(link, condition::NOT_IMPLEMENTED, description),
        };
        let log = self.context.log.clone();
        let watch = match log.watch(&entity.log, address.partition) {
            Ok(watch) => watch,
            Err(error) => {
                tracing::warn!(log = %entity.log, %error, "amqp partition receiver: cannot watch the log");
                return self.reject(link, condition::INTERNAL_ERROR, "the partition cannot be read");
            }
        };
        let (from, skip) = match start {
            StartPosition::Earliest => (LogPosition::SequenceNumber(0), Skip::Nothing),
            StartPosition::Latest => (LogPosition::SequenceNumber(*watch.borrow()), Skip::Nothing),
            StartPosition::At(position, skip) => (position, skip),
        };
        let key = PartitionKey {
            hub: hub.name.clone(),
            entity: entity.key(),
            consumer_group: address.consumer_group.to_ascii_lowercase(),
            partition: address.partition,
        };
        let epoch = attached
            .properties
            .as_deref()
            .and_then(|properties| crate::composite::lookup(properties, EPOCH))
            .and_then(epoch_value);
        if let Err(error) = self
            .context
            .receivers
            .claim(key.clone(), self.id, link, epoch, &self.orders_tx)
        {
            self.reject_with(link, error);
            return;
        }
        let runtime_metric = attached
            .desired_capabilities
            .as_deref()
            .is_some_and(|desired| desired.iter().any(|c| c.as_str() == RUNTIME_METRIC));
        let reply = LinkReply {
            initial_delivery_count: Some(0),
            properties: attached.properties.clone(),
            // Offered back: the clients then read the delivery annotations (wire reference §7.4).
            offered_capabilities: runtime_metric.then(|| vec![Symbol::from(RUNTIME_METRIC)]),
            ..LinkReply::default()
        };
        if self.engine.accept_link(link, reply).is_err() {
            self.context.receivers.release(&key, self.id, link);
            return;
        }
        let permits = Arc::new(Semaphore::new(0));
        let reader = Reader {
            log,
            name: entity.log.clone(),
            built_in: entity.is_built_in(),
            partition: address.partition,
            link,
            permits: permits.clone(),
            tx: self.feed_tx.clone(),
            runtime_metric: runtime_metric.then(|| self.context.clock.clone()),
        };
        let guard = GroupGuard {
            hubs: self.context.hubs.clone(),
            routing,
            hub: hub.name.clone(),
            host: hub.host_name.clone(),
            entity,
            consumer_group: address.consumer_group.clone(),
            link,
            orders: self.orders_tx.clone(),
        };
        let feed = self.feed_tx.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                ended = reader.run(from, skip, watch) => guard.reader_ended(ended, &feed).await,
                () = guard.run(changes) => {}
            }
        })
        .abort_handle();
        state.role = LinkRole::Partition(PartitionFeed {
            key,
            permits,
            granted: 0,
            task: Some(task),
        });
        self.links.insert(link, state);
    }
}

/// How often a stream receiver looks at the hub's routing for its stream and consumer group
/// (the routing configuration has no change feed; the hub directory has one).
const STREAM_CHECK: Duration = Duration::from_secs(1);

/// Detaches a receiver whose entity, consumer group or hub is deleted, through its connection's
/// orders.
struct GroupGuard {
    hubs: Arc<Hubs>,
    routing: Arc<Routing>,
    hub: HubName,
    host: String,
    entity: Entity,
    consumer_group: String,
    link: LinkId,
    orders: mpsc::UnboundedSender<DetachOrder>,
}

impl GroupGuard {
    async fn run(&self, mut changes: watch::Receiver<u64>) {
        let mut hubs_open = true;
        let mut tick = tokio::time::interval(STREAM_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stream = !self.entity.is_built_in();
        loop {
            tokio::select! {
                changed = changes.changed(), if hubs_open => hubs_open = changed.is_ok(),
                _ = tick.tick(), if stream => {}
                // The hubs are gone (the server stops): the reader goes on until the connection ends.
                () = std::future::pending::<()>(), if !hubs_open && !stream => {}
            }
            if let Some(description) = self.gone() {
                tracing::debug!(hub = %self.hub, entity = %self.entity.name, consumer_group = %self.consumer_group, "entity or consumer group deleted: receiver detached");
                let _ = self.orders.send(DetachOrder {
                    link: self.link,
                    error: Error::new(condition::NOT_FOUND, description),
                });
                return;
            }
        }
    }

    /// The reader stopped: a log that went away (a deleted stream) or cannot be read detaches
    /// the link with `amqp:not-found` when its entity is gone, else with an internal error.
    async fn reader_ended(&self, ended: Ended, feed: &mpsc::Sender<Feed>) {
        let failed = match ended {
            Ended::Connection => return,
            Ended::LogClosed => false,
            Ended::Failed => true,
        };
        if let Some(description) = self.gone() {
            let _ = self.orders.send(DetachOrder {
                link: self.link,
                error: Error::new(condition::NOT_FOUND, description),
            });
        } else if failed {
            let _ = feed.send(Feed::Failed(self.link)).await;
        }
    }

    /// Azure's description of what no longer exists, or `None` while the receiver's entity and
    /// consumer group do. A stream re-created with another partition count is another entity.
    fn gone(&self) -> Option<String> {
        let Some(hub) = self.hubs.by_name(self.hub.as_str()) else {
            return Some(eventhub_not_found(&self.host, &self.entity.name));
        };
        match Entity::resolve(&hub, &self.routing, &self.entity.name) {
            Some(entity)
                if entity.log == self.entity.log && entity.partition_count == self.entity.partition_count =>
            {
                (!entity.has_consumer_group(&hub, &self.consumer_group))
                    .then(|| entity_not_found(&self.host, &entity.name, &self.consumer_group))
            }
            _ => Some(eventhub_not_found(&self.host, &self.entity.name)),
        }
    }
}

/// Reads a partition for one receiver link and hands its events to the connection, one permit
/// (the receiver's credit) per event.
struct Reader {
    log: Arc<dyn EventLog>,
    /// The entity's log.
    name: LogName,
    /// The hub's log, read as the built-in endpoint: only messages routed to `events`.
    built_in: bool,
    partition: u32,
    link: LinkId,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<Feed>,
    /// With the runtime metric: the clock that stamps its retrieval time.
    runtime_metric: Option<Arc<dyn Clock>>,
}

/// Why a reader stopped.
enum Ended {
    /// The connection (or the link) is gone.
    Connection,
    /// The log's writer went away: the log was dropped (a deleted stream) or the server stops.
    LogClosed,
    /// The log could not be read.
    Failed,
}

impl Reader {
    async fn run(
        self,
        mut from: LogPosition,
        mut skip: Skip,
        mut watch: tokio::sync::watch::Receiver<u64>,
    ) -> Ended {
        loop {
            let events = match self
                .log
                .read(&self.name, self.partition, from, READ_BATCH, READ_BYTES)
                .await
            {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(log = %self.name, partition = self.partition, %error, "amqp partition read failed");
                    return Ended::Failed;
                }
            };
            if events.is_empty() {
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { return Ended::LogClosed },
                    () = self.tx.closed() => return Ended::Connection,
                }
                continue;
            }
            // One look at the partition's newest event per batch read (wire reference §7.4).
            let runtime = match &self.runtime_metric {
                Some(clock) => match self.log.partition_info(&self.name, self.partition).await {
                    Ok(info) => Some(RuntimeInfo::new(&info, clock.now())),
                    Err(error) => {
                        tracing::debug!(log = %self.name, %error, "amqp runtime metric unavailable");
                        None
                    }
                },
                None => None,
            };
            for event in events {
                from = LogPosition::SequenceNumber(event.position.sequence_number.saturating_add(1));
                if skip.skips(&event) {
                    continue;
                }
                skip = Skip::Nothing;
                // Records the entity does not serve (routed elsewhere only) take no credit.
                let Some(message) = event_message(&event, self.built_in, runtime.as_ref()) else {
                    continue;
                };
                let Ok(permit) = self.permits.acquire().await else {
                    return Ended::Connection;
                };
                permit.forget();
                if self.tx.send(Feed::Event(self.link, message)).await.is_err() {
                    return Ended::Connection;
                }
            }
        }
    }
}
