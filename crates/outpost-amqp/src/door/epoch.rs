//! Epoch (exclusive) receivers (wire reference §7.4): who holds each partition of each consumer
//! group of each entity (the hub's event hub and its custom event streams), across the connections
//! of the endpoint. A receiver attaching with
//! `com.microsoft:epoch` takes the partition from receivers with a lower or equal epoch, or without
//! one: they are detached with `amqp:link:stolen`. A receiver with a lower epoch than the holder's,
//! or without an epoch while an epoch receiver holds the partition, is refused with
//! `amqp:link:stolen` too (the condition the Event Hubs clients map to `ConsumerDisconnectedError` /
//! `ReceiverDisconnectedError`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use outpost_model::HubName;
use tokio::sync::mpsc;

use crate::definitions::{Error, condition};
use crate::engine::LinkId;

/// An order to a connection: detach one of its links with this error.
#[derive(Debug)]
pub(super) struct DetachOrder {
    /// The link.
    pub(super) link: LinkId,
    /// Why (`amqp:link:stolen`).
    pub(super) error: Error,
}

/// A partition of a consumer group of one of a hub's entities (its own log or a custom event
/// stream), entity and group lower-cased: both are matched case-insensitively. The entity is part
/// of the key so that a stream's receivers and the hub's never take each other's partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PartitionKey {
    pub(super) hub: HubName,
    pub(super) entity: String,
    pub(super) consumer_group: String,
    pub(super) partition: u32,
}

#[derive(Debug)]
struct Holder {
    connection: u64,
    link: LinkId,
    epoch: Option<i64>,
    orders: mpsc::UnboundedSender<DetachOrder>,
}

/// The receivers of every partition, shared by the connections of the endpoint.
#[derive(Debug, Default)]
pub struct Receivers {
    holders: Mutex<HashMap<PartitionKey, Vec<Holder>>>,
    next_connection: AtomicU64,
}

impl Receivers {
    /// Returns a new connection's identifier.
    pub(super) fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionKey, Vec<Holder>>> {
        self.holders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a receiver on `key`, taking the partition from the receivers it outranks (they are
    /// ordered detached through their connection's channel).
    ///
    /// # Errors
    /// The `amqp:link:stolen` error to refuse the attach with, when an epoch receiver outranks it.
    pub(super) fn claim(
        &self,
        key: PartitionKey,
        connection: u64,
        link: LinkId,
        epoch: Option<i64>,
        orders: &mpsc::UnboundedSender<DetachOrder>,
    ) -> Result<(), Error> {
        let mut holders = self.lock();
        let entries = holders.entry(key).or_default();
        let highest = entries.iter().filter_map(|holder| holder.epoch).max();
        match (epoch, highest) {
            (Some(epoch), Some(highest)) if highest > epoch => {
                return Err(Error::new(
                    condition::STOLEN,
                    format!(
                        "Receiver with a higher epoch of '{highest}' already exists. Receiver with epoch \
                         '{epoch}' cannot be created. Make sure you are creating receiver with increasing \
                         epoch value to ensure connectivity, or ensure all old epoch receivers are closed \
                         or disconnected."
                    ),
                ));
            }
            (None, Some(highest)) => {
                return Err(Error::new(
                    condition::STOLEN,
                    format!(
                        "At least one receiver for the endpoint is created with epoch of '{highest}', and \
                         so non-epoch receiver is not allowed. Either reconnect with a higher epoch, or \
                         make sure all epoch receivers are closed or disconnected."
                    ),
                ));
            }
            _ => {}
        }
        if let Some(epoch) = epoch {
            for holder in entries.drain(..) {
                let current = holder.epoch.unwrap_or(0);
                let _ = holder.orders.send(DetachOrder {
                    link: holder.link,
                    error: Error::new(
                        condition::STOLEN,
                        format!(
                            "New receiver with higher epoch of '{epoch}' is created hence current receiver \
                             with epoch '{current}' is getting disconnected. If you are recreating the \
                             receiver, make sure a higher epoch is used."
                        ),
                    ),
                });
            }
        }
        entries.push(Holder {
            connection,
            link,
            epoch,
            orders: orders.clone(),
        });
        Ok(())
    }

    /// Forgets a receiver (its link ended).
    pub(super) fn release(&self, key: &PartitionKey, connection: u64, link: LinkId) {
        let mut holders = self.lock();
        if let Some(entries) = holders.get_mut(key) {
            entries.retain(|holder| !(holder.connection == connection && holder.link == link));
            if entries.is_empty() {
                holders.remove(key);
            }
        }
    }

    /// Forgets every receiver of a connection (it ended).
    pub(super) fn release_connection(&self, connection: u64) {
        let mut holders = self.lock();
        holders.retain(|_, entries| {
            entries.retain(|holder| holder.connection != connection);
            !entries.is_empty()
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    fn key() -> PartitionKey {
        entity_key("myhub")
    }

    fn entity_key(entity: &str) -> PartitionKey {
        PartitionKey {
            hub: HubName::new("myhub").unwrap(),
            entity: entity.into(),
            consumer_group: "$default".into(),
            partition: 0,
        }
    }

    #[test]
    fn a_stream_and_the_hub_hold_their_partitions_apart() {
        let receivers = Receivers::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        receivers.claim(key(), 1, LinkId(1), Some(5), &tx).unwrap();
        // The same consumer group and partition of a stream: no steal, no refusal.
        receivers
            .claim(entity_key("alerts"), 1, LinkId(2), None, &tx)
            .unwrap();
        receivers
            .claim(entity_key("alerts"), 1, LinkId(3), Some(1), &tx)
            .unwrap();
        let order = rx.try_recv().unwrap();
        assert_eq!(
            order.link,
            LinkId(2),
            "only the stream's own non-epoch receiver is stolen"
        );
        assert!(rx.try_recv().is_err());
        assert!(receivers.claim(key(), 1, LinkId(4), Some(4), &tx).is_err());
    }

    #[test]
    fn higher_epochs_take_partitions_and_lower_ones_are_refused() {
        let receivers = Receivers::default();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        // Two non-epoch receivers share the partition.
        receivers.claim(key(), 1, LinkId(1), None, &tx1).unwrap();
        receivers.claim(key(), 1, LinkId(2), None, &tx1).unwrap();
        // An epoch receiver kicks both.
        receivers.claim(key(), 2, LinkId(1), Some(1), &tx2).unwrap();
        assert_eq!(rx1.try_recv().unwrap().link, LinkId(1));
        let order = rx1.try_recv().unwrap();
        assert_eq!(order.link, LinkId(2));
        assert_eq!(order.error.condition.as_str(), condition::STOLEN);
        // Non-epoch and lower epochs are refused.
        let refused = receivers.claim(key(), 1, LinkId(3), None, &tx1).unwrap_err();
        assert_eq!(refused.condition.as_str(), condition::STOLEN);
        assert!(receivers.claim(key(), 1, LinkId(4), Some(0), &tx1).is_err());
        // A higher one takes it.
        receivers.claim(key(), 1, LinkId(5), Some(2), &tx1).unwrap();
        let order = rx2.try_recv().unwrap();
        assert_eq!(order.link, LinkId(1));
        assert!(order.error.description.as_deref().unwrap().contains("'2'"));
        // Once released, anyone may attach.
        receivers.release(&key(), 1, LinkId(5));
        receivers.claim(key(), 2, LinkId(6), None, &tx2).unwrap();
        receivers.release_connection(2);
        assert!(receivers.lock().is_empty());
    }
}
