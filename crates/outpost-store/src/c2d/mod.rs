//! [`CloudToDeviceQueue`] on redb, in the same database as the registry: one queue per device
//! and per module, peek-lock delivery, every write one durable transaction.
//!
//! * `layout`: the tables (messages, expiry index, sequence counters) and their key ranges.
//! * `record`: the binary record of a queued message (delivery header, then the message).
//! * `queue`: the transaction bodies.
//!
//! Decisions where the port is silent:
//! * `enqueue` needs the hub to exist ([`StoreError::ParentMissing`] otherwise), as devices do,
//!   so a message racing `drop_hub` cannot outlive its hub. It does not check the device: the
//!   service does, and deleting a device does not (yet) purge its queue here.
//! * A message whose expiry is [`Timestamp::NEVER`] never expires. A message expires when
//!   `expiry < now`; a lock lapses when `until <= now`.
//! * Expiry is checked before locks: an expired message is removed even while locked, and its
//!   token is then unknown. A message that reached `max_delivery_count` is only dead-lettered once
//!   its last lock lapsed or was abandoned.
//! * Lock tokens are version 4 UUIDs, hyphenated and lowercase; only that exact spelling settles.
//! * Sequence numbers start at 1 per target and survive purges and restarts; `drop_hub`
//!   forgets them with the hub.
//! * Messages are returned as stored, with their lock (held, or lapsed for dead ones).
//! * An idle `lock_next` (nothing deliverable, nothing dead) only reads: polls cost no commit.

mod layout;
mod queue;
mod record;

use std::time::Duration;

use async_trait::async_trait;
use outpost_core::{
    C2dMessage, C2dTarget, CloudToDeviceQueue, LockOutcome, QueueLimits, QueuedMessage, StoreError,
};
use outpost_model::{HubName, ModuleId, Timestamp};

use self::layout::{TargetKey, now_ticks, ticks};
use self::record::Lock;
use crate::store::EmbeddedStore;

pub(crate) use self::queue::remove_hub_queues;

/// The owned parts of a target key, moved into a blocking task.
#[derive(Debug, Clone)]
struct OwnedTarget {
    hub: HubName,
    target: C2dTarget,
}

impl OwnedTarget {
    fn new(hub: &HubName, target: &C2dTarget) -> Self {
        Self {
            hub: hub.clone(),
            target: target.clone(),
        }
    }

    fn key(&self) -> TargetKey<'_> {
        TargetKey {
            hub: self.hub.as_str(),
            device: self.target.device.as_str(),
            module: self.target.module.as_ref().map_or("", ModuleId::as_str),
        }
    }
}

#[async_trait]
impl CloudToDeviceQueue for EmbeddedStore {
    async fn enqueue(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        message: &C2dMessage,
        limits: QueueLimits,
    ) -> Result<u64, StoreError> {
        let owned = OwnedTarget::new(hub, target);
        let stored = record::encode(message)?;
        self.write(move |tx| queue::enqueue(tx, owned.key(), &stored, limits.max_depth))
            .await
    }

    async fn lock_next(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        now: Timestamp,
        lock_for: Duration,
        limits: QueueLimits,
    ) -> Result<LockOutcome, StoreError> {
        let until = lock_until(now, lock_for)?;
        let now = now_ticks(now);
        let max_delivery_count = limits.max_delivery_count;
        let owned = OwnedTarget::new(hub, target);
        let probe = owned.clone();
        let has_work = self
            .read(move |tx| queue::lock_next_has_work(tx, probe.key(), now, max_delivery_count))
            .await?;
        if !has_work {
            return Ok(LockOutcome::default());
        }
        self.write(move |tx| {
            let lock = Lock {
                token: record::new_token(),
                until,
            };
            queue::lock_next(tx, owned.key(), now, lock, max_delivery_count)
        })
        .await
    }

    async fn complete(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        token: &str,
        now: Timestamp,
    ) -> Result<QueuedMessage, StoreError> {
        let token = record::parse_token(token).ok_or(StoreError::NotFound)?;
        let (owned, now) = (OwnedTarget::new(hub, target), now_ticks(now));
        self.write(move |tx| queue::take_locked(tx, owned.key(), token, now))
            .await
    }

    async fn abandon(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        token: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let token = record::parse_token(token).ok_or(StoreError::NotFound)?;
        let (owned, now) = (OwnedTarget::new(hub, target), now_ticks(now));
        self.write(move |tx| queue::unlock(tx, owned.key(), token, now))
            .await
    }

    async fn reject(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        token: &str,
        now: Timestamp,
    ) -> Result<QueuedMessage, StoreError> {
        // Same removal as `complete`: which feedback follows is the caller's business.
        self.complete(hub, target, token, now).await
    }

    async fn release_all_locks(&self) -> Result<(), StoreError> {
        self.write(queue::release_all_locks).await
    }

    async fn purge(&self, hub: &HubName, target: &C2dTarget) -> Result<Vec<QueuedMessage>, StoreError> {
        let owned = OwnedTarget::new(hub, target);
        self.write(move |tx| queue::purge(tx, owned.key())).await
    }

    async fn depth(&self, hub: &HubName, target: &C2dTarget) -> Result<usize, StoreError> {
        let owned = OwnedTarget::new(hub, target);
        self.read(move |tx| queue::depth(tx, owned.key())).await
    }

    async fn sweep_expired(
        &self,
        hub: &HubName,
        now: Timestamp,
        max: usize,
    ) -> Result<Vec<(C2dTarget, QueuedMessage)>, StoreError> {
        let hub = hub.clone();
        let now = now_ticks(now);
        self.write(move |tx| queue::sweep_expired(tx, hub.as_str(), now, max))
            .await
    }

    async fn drop_hub(&self, hub: &HubName) -> Result<(), StoreError> {
        let hub = hub.clone();
        self.write(move |tx| remove_hub_queues(tx, hub.as_str())).await
    }
}

/// Returns when a lock taken at `now` for `lock_for` lapses, in ticks.
///
/// # Errors
/// [`StoreError::Backend`] when `now` is "never" or the lock would end past year 9999: both are
/// caller bugs, not conditions a receiver can meet.
fn lock_until(now: Timestamp, lock_for: Duration) -> Result<i64, StoreError> {
    let until = now
        .datetime()
        .zip(time::Duration::try_from(lock_for).ok())
        .and_then(|(now, lock_for)| now.checked_add(lock_for))
        .ok_or_else(|| {
            StoreError::Backend("a cloud-to-device lock needs a time and a bounded duration".into())
        })?;
    ticks(Timestamp::from_datetime(until))
        .ok_or_else(|| StoreError::Backend("a cloud-to-device lock ends out of range".into()))
}

#[cfg(test)]
mod tests;
