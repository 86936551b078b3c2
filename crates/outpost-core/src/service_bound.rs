//! Service-bound queues: records the hub keeps per hub for a back end to receive (wire contract §6),
//! the delivery feedback of cloud-to-device messages and the file-upload notifications.
//!
//! A record is durable ([`ServiceBoundStore`]) before whatever produced it is acknowledged, and
//! stays so until a receiver completes it: a receiver [`take`](ServiceBoundQueue::take)s records,
//! then [`complete`](ServiceBoundQueue::complete)s them (removed for good) or
//! [`put_back`](ServiceBoundQueue::put_back)s them (the next receiver gets them, in order). After
//! a restart every record not completed is delivered again (at least once, like Azure).
//!
//! Bounded per hub: when a hub's queue is full its oldest waiting record is dropped, so an absent
//! receiver cannot grow the server without limit (docs/compatibility.md).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use outpost_model::HubName;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::ports::{ServiceBoundKind, ServiceBoundStore};
use crate::{CoreError, StoreError};

/// A record taken from a queue, with the number that completes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken<T> {
    /// The record's number in the store.
    pub number: u64,
    /// The record.
    pub record: T,
}

/// A per-hub, bounded, durable queue of records for service-side receivers.
pub struct ServiceBoundQueue<T> {
    kind: ServiceBoundKind,
    store: Arc<dyn ServiceBoundStore>,
    /// Records waiting for a receiver (taken ones are the receivers' until completed or put back).
    waiting: Mutex<HashMap<HubName, VecDeque<Taken<T>>>>,
    /// Bumped whenever records become available, so that waiting receivers look again.
    added: watch::Sender<u64>,
    /// Records kept waiting per hub.
    max_records: usize,
}

impl<T> std::fmt::Debug for ServiceBoundQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBoundQueue")
            .field("kind", &self.kind)
            .field("max_records", &self.max_records)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> ServiceBoundQueue<T> {
    /// Opens the queue of `kind` with the records `store` holds (kept waiting at most
    /// `max_records` per hub, at least one). Records that no longer decode are logged and
    /// removed.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn open(
        store: Arc<dyn ServiceBoundStore>,
        kind: ServiceBoundKind,
        max_records: usize,
    ) -> Result<Self, CoreError> {
        let mut waiting: HashMap<HubName, VecDeque<Taken<T>>> = HashMap::new();
        let mut undecodable: HashMap<HubName, Vec<u64>> = HashMap::new();
        for stored in store.load_records(kind).await? {
            match serde_json::from_slice(&stored.record) {
                Ok(record) => waiting.entry(stored.hub).or_default().push_back(Taken {
                    number: stored.number,
                    record,
                }),
                Err(error) => {
                    tracing::warn!(hub = %stored.hub, ?kind, number = stored.number, error = %error, "undecodable service-bound record dropped");
                    undecodable.entry(stored.hub).or_default().push(stored.number);
                }
            }
        }
        for (hub, numbers) in undecodable {
            store.remove_records(&hub, kind, numbers).await?;
        }
        let queue = Self {
            kind,
            store,
            waiting: Mutex::new(HashMap::new()),
            added: watch::Sender::new(0),
            max_records: max_records.max(1),
        };
        for (hub, records) in waiting {
            let dropped = queue.bound(&hub, records);
            queue.forget(&hub, dropped).await;
        }
        Ok(queue)
    }

    /// Appends a record for `hub`'s receivers once it is durable, dropping the hub's oldest
    /// waiting one when full.
    ///
    /// # Errors
    /// Storage failures (the record is then not queued); `HubNotFound` for a deleted hub.
    pub async fn push(&self, hub: &HubName, record: T) -> Result<(), CoreError> {
        // Plain data: serialising cannot fail.
        let encoded = serde_json::to_vec(&record).unwrap_or_default();
        let numbers = match self.store.append_records(hub, self.kind, vec![encoded]).await {
            Ok(numbers) => numbers,
            Err(StoreError::ParentMissing) => return Err(CoreError::HubNotFound(hub.to_string())),
            Err(other) => return Err(other.into()),
        };
        let Some(&number) = numbers.first() else {
            return Err(StoreError::Backend("the store numbered no record".into()).into());
        };
        let dropped = self.bound(hub, VecDeque::from([Taken { number, record }]));
        self.forget(hub, dropped).await;
        self.added.send_modify(|count| *count = count.wrapping_add(1));
        Ok(())
    }
}

impl<T> ServiceBoundQueue<T> {
    /// Takes up to `max` of `hub`'s waiting records, oldest first: the caller completes them or
    /// puts them back.
    pub fn take(&self, hub: &HubName, max: usize) -> Vec<Taken<T>> {
        let mut waiting = self.waiting.lock();
        let Some(queue) = waiting.get_mut(hub) else {
            return Vec::new();
        };
        let count = max.min(queue.len());
        queue.drain(..count).collect()
    }

    /// Takes up to `max` of `hub`'s waiting records and completes them at once (a reader that
    /// settles on receipt, such as the operator API).
    ///
    /// # Errors
    /// Storage failures: the records are then put back.
    pub async fn take_completed(&self, hub: &HubName, max: usize) -> Result<Vec<T>, CoreError> {
        let taken = self.take(hub, max);
        let numbers = taken.iter().map(|taken| taken.number).collect();
        if let Err(error) = self.complete(hub, numbers).await {
            self.put_back(hub, taken);
            return Err(error);
        }
        Ok(taken.into_iter().map(|taken| taken.record).collect())
    }

    /// Removes taken records for good (a receiver accepted or rejected them).
    ///
    /// # Errors
    /// Storage failures: the records are then delivered again after a restart.
    pub async fn complete(&self, hub: &HubName, numbers: Vec<u64>) -> Result<(), CoreError> {
        if numbers.is_empty() {
            return Ok(());
        }
        Ok(self.store.remove_records(hub, self.kind, numbers).await?)
    }

    /// Puts taken records back in front of the hub's queue, in their order (a receiver abandoned
    /// them or went away before completing them), and wakes the receivers.
    pub fn put_back(&self, hub: &HubName, taken: Vec<Taken<T>>) {
        if taken.is_empty() {
            return;
        }
        {
            let mut waiting = self.waiting.lock();
            let queue = waiting.entry(hub.clone()).or_default();
            for record in taken.into_iter().rev() {
                queue.push_front(record);
            }
        }
        self.added.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Returns a receiver that changes whenever records of any hub become available (pushed or
    /// put back); then [`take`](Self::take) finds them.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.added.subscribe()
    }

    /// Forgets a deleted hub's records (the store removes them with the hub).
    pub fn drop_hub(&self, hub: &HubName) {
        self.waiting.lock().remove(hub);
    }

    /// Appends to the hub's waiting records; returns the numbers of the oldest ones dropped to
    /// keep within the bound.
    fn bound(&self, hub: &HubName, records: VecDeque<Taken<T>>) -> Vec<u64> {
        let mut waiting = self.waiting.lock();
        let queue = waiting.entry(hub.clone()).or_default();
        queue.extend(records);
        let excess = queue.len().saturating_sub(self.max_records);
        queue.drain(..excess).map(|taken| taken.number).collect()
    }

    /// Removes dropped records from the store; a failure only means they come back after a
    /// restart.
    async fn forget(&self, hub: &HubName, dropped: Vec<u64>) {
        if dropped.is_empty() {
            return;
        }
        tracing::warn!(%hub, kind = ?self.kind, dropped = dropped.len(), "service-bound queue full: oldest records dropped");
        if let Err(error) = self.store.remove_records(hub, self.kind, dropped).await {
            tracing::warn!(%hub, kind = ?self.kind, error = %error, "dropped service-bound records not removed");
        }
    }
}
