//! Partition receivers of the Event Hubs-compatible endpoint (wire reference §7.4): the attach
//! (address, consumer group, authorization, start position, epoch, runtime metric) and the reader
//! task that feeds a link from the event log as the receiver gives credit. The task also watches
//! the hub: when the receiver's consumer group (or the hub) is deleted, the link is detached with
//! `amqp:not-found`.

use std::sync::Arc;

use outpost_core::{Clock, EventLog, Hubs, LogPosition};
use outpost_model::HubName;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::AbortHandle;

use super::connection::{Connection, Feed, LinkRole, LinkState, unix_now};
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
        if !address.eventhub.eq_ignore_ascii_case(hub.name.as_str()) {
            return self.reject(
                link,
                condition::NOT_FOUND,
                format!("the messaging entity '{}' was not found", address.eventhub),
            );
        }
        if hub.consumer_group(&address.consumer_group).is_none() {
            return self.reject(
                link,
                condition::NOT_FOUND,
                entity_not_found(&hub.host_name, hub.name.as_str(), &address.consumer_group),
            );
        }
        if address.partition >= hub.partition_count {
            return self.reject(
                link,
                condition::NOT_FOUND,
                format!("the partition '{}' was not found", address.partition),
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
        let watch = match log.watch(&hub.name, address.partition) {
            Ok(watch) => watch,
            Err(error) => {
                tracing::warn!(hub = %hub.name, %error, "amqp partition receiver: cannot watch the log");
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
            hub: hub.name.clone(),
            partition: address.partition,
            link,
            permits: permits.clone(),
            tx: self.feed_tx.clone(),
            runtime_metric: runtime_metric.then(|| self.context.clock.clone()),
        };
        let guard = GroupGuard {
            hubs: self.context.hubs.clone(),
            hub: hub.name.clone(),
            host: hub.host_name.clone(),
            consumer_group: address.consumer_group.clone(),
            link,
            orders: self.orders_tx.clone(),
        };
        let task = tokio::spawn(async move {
            tokio::select! {
                () = reader.run(from, skip, watch) => {}
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

/// Detaches a receiver whose consumer group (or hub) is deleted, through its connection's orders.
struct GroupGuard {
    hubs: Arc<Hubs>,
    hub: HubName,
    host: String,
    consumer_group: String,
    link: LinkId,
    orders: mpsc::UnboundedSender<DetachOrder>,
}

impl GroupGuard {
    async fn run(self, mut changes: watch::Receiver<u64>) {
        while changes.changed().await.is_ok() {
            let exists = self
                .hubs
                .by_name(self.hub.as_str())
                .is_some_and(|hub| hub.consumer_group(&self.consumer_group).is_some());
            if !exists {
                tracing::debug!(hub = %self.hub, consumer_group = %self.consumer_group, "consumer group deleted: receiver detached");
                let description = entity_not_found(&self.host, self.hub.as_str(), &self.consumer_group);
                let _ = self.orders.send(DetachOrder {
                    link: self.link,
                    error: Error::new(condition::NOT_FOUND, description),
                });
                return;
            }
        }
        // The hubs are gone (the server stops): the reader goes on until the connection ends.
        std::future::pending::<()>().await;
    }
}

/// Reads a partition for one receiver link and hands its events to the connection, one permit
/// (the receiver's credit) per event.
struct Reader {
    log: Arc<dyn EventLog>,
    hub: HubName,
    partition: u32,
    link: LinkId,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<Feed>,
    /// With the runtime metric: the clock that stamps its retrieval time.
    runtime_metric: Option<Arc<dyn Clock>>,
}

impl Reader {
    async fn run(self, mut from: LogPosition, mut skip: Skip, mut watch: tokio::sync::watch::Receiver<u64>) {
        loop {
            let events = match self
                .log
                .read(&self.hub, self.partition, from, READ_BATCH, READ_BYTES)
                .await
            {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(hub = %self.hub, partition = self.partition, %error, "amqp partition read failed");
                    let _ = self.tx.send(Feed::Failed(self.link)).await;
                    return;
                }
            };
            if events.is_empty() {
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { return },
                    () = self.tx.closed() => return,
                }
                continue;
            }
            // One look at the partition's newest event per batch read (wire reference §7.4).
            let runtime = match &self.runtime_metric {
                Some(clock) => match self.log.partition_info(&self.hub, self.partition).await {
                    Ok(info) => Some(RuntimeInfo::new(&info, clock.now())),
                    Err(error) => {
                        tracing::debug!(hub = %self.hub, %error, "amqp runtime metric unavailable");
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
                let Ok(permit) = self.permits.acquire().await else {
                    return;
                };
                permit.forget();
                if self
                    .tx
                    .send(Feed::Event(self.link, event_message(&event, runtime.as_ref())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
