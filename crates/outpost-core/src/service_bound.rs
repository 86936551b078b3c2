//! Service-bound queues: records the hub keeps per hub for a back end to receive (wire contract §6),
//! the delivery feedback of cloud-to-device messages and the file-upload notifications. A receiver
//! takes records, and puts back the ones it did not complete so the next receiver gets them in
//! order.
//!
//! Held in memory and bounded: when a hub's queue is full the oldest record is dropped, so an
//! absent receiver cannot grow the server without limit (docs/compatibility.md).

use std::collections::{HashMap, VecDeque};

use outpost_model::HubName;
use parking_lot::Mutex;
use tokio::sync::watch;

/// A per-hub, bounded queue of records for service-side receivers.
#[derive(Debug)]
pub struct ServiceBoundQueue<T> {
    records: Mutex<HashMap<HubName, VecDeque<T>>>,
    /// Bumped whenever records become available, so that waiting receivers look again.
    added: watch::Sender<u64>,
    /// Records kept per hub.
    max_records: usize,
}

impl<T> ServiceBoundQueue<T> {
    /// An empty queue keeping at most `max_records` per hub (at least one).
    pub fn new(max_records: usize) -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
            added: watch::Sender::new(0),
            max_records: max_records.max(1),
        }
    }

    /// Appends a record for `hub`'s receivers, dropping the hub's oldest when full.
    pub fn push(&self, hub: &HubName, record: T) {
        {
            let mut records = self.records.lock();
            let queue = records.entry(hub.clone()).or_default();
            if queue.len() >= self.max_records {
                queue.pop_front();
            }
            queue.push_back(record);
        }
        self.added.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Takes up to `max` of `hub`'s records, oldest first.
    pub fn take(&self, hub: &HubName, max: usize) -> Vec<T> {
        let mut records = self.records.lock();
        let Some(queue) = records.get_mut(hub) else {
            return Vec::new();
        };
        let count = max.min(queue.len());
        queue.drain(..count).collect()
    }

    /// Puts records taken with [`take`](Self::take) back in front of the hub's queue, in their
    /// order (a receiver abandoned them or went away before completing them), and wakes the
    /// receivers. Records beyond the bound are dropped, the oldest first.
    pub fn put_back(&self, hub: &HubName, taken: Vec<T>) {
        if taken.is_empty() {
            return;
        }
        {
            let mut records = self.records.lock();
            let queue = records.entry(hub.clone()).or_default();
            for record in taken.into_iter().rev() {
                queue.push_front(record);
            }
            while queue.len() > self.max_records {
                queue.pop_front();
            }
        }
        self.added.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Returns a receiver that changes whenever records of any hub become available (pushed or
    /// put back); then [`take`](Self::take) finds them.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.added.subscribe()
    }

    /// Forgets a deleted hub's records.
    pub fn drop_hub(&self, hub: &HubName) {
        self.records.lock().remove(hub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(name: &str) -> HubName {
        HubName::new(name).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn records_come_out_in_order_and_put_back_records_first() {
        let queue = ServiceBoundQueue::new(10);
        let (a, b) = (hub("a-hub"), hub("b-hub"));
        for n in 0..5 {
            queue.push(&a, n);
        }
        queue.push(&b, 100);
        let taken = queue.take(&a, 3);
        assert_eq!(taken, vec![0, 1, 2]);
        queue.put_back(&a, taken);
        assert_eq!(queue.take(&a, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(queue.take(&b, 10), vec![100], "hubs are separate");
        assert!(queue.take(&a, 10).is_empty());
    }

    #[test]
    fn a_full_queue_drops_its_oldest_record() {
        let queue = ServiceBoundQueue::new(3);
        let a = hub("a-hub");
        for n in 0..5 {
            queue.push(&a, n);
        }
        assert_eq!(queue.take(&a, 10), vec![2, 3, 4]);
    }

    #[test]
    fn pushing_wakes_watchers() {
        let queue = ServiceBoundQueue::new(3);
        let watcher = queue.watch();
        assert!(!watcher.has_changed().unwrap_or(true));
        queue.push(&hub("a-hub"), 1);
        assert!(watcher.has_changed().unwrap_or(false));
    }
}
