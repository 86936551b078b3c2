//! Cloud-to-device messages: the per-identity queue port, its message and feedback types
//! (wire contract §2.5, §4, §6). Delivery is peek-lock: a message is locked for a receiver,
//! then completed, abandoned (unlocked for redelivery) or rejected; expired messages and those
//! delivered too often are dead-lettered and reported as feedback.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outpost_model::{DeviceId, HubName, ModuleId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Who a cloud-to-device message is for: a device, or a module's input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct C2dTarget {
    /// The device.
    pub device: DeviceId,
    /// The module, for module input messages.
    pub module: Option<ModuleId>,
}

/// The feedback a sender asks for (`iothub-ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FeedbackAck {
    /// No feedback.
    #[default]
    None,
    /// Feedback when the message is completed.
    Positive,
    /// Feedback when the message expires, is rejected or is delivered too often.
    Negative,
    /// Both.
    Full,
}

/// A cloud-to-device message as the service sent it. Backends choose their own encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2dMessage {
    /// `message-id`.
    pub message_id: Option<String>,
    /// `correlation-id`.
    pub correlation_id: Option<String>,
    /// `user-id`.
    pub user_id: Option<String>,
    /// `to`: `/devices/<id>/messages/devicebound`.
    pub to: String,
    /// `content-type`.
    pub content_type: Option<String>,
    /// `content-encoding`.
    pub content_encoding: Option<String>,
    /// Absolute expiry; the message is dead-lettered after it.
    pub expiry: Timestamp,
    /// The feedback asked for.
    pub ack: FeedbackAck,
    /// Application properties in the sender's order.
    pub application_properties: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// When the hub accepted it.
    pub enqueued_time: Timestamp,
}

/// A message in a queue, with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Position in the identity's queue; increasing, never reused.
    pub sequence_number: u64,
    /// The message.
    pub message: C2dMessage,
    /// How many times it was handed to a receiver.
    pub delivery_count: u32,
    /// The current lock, if the message is locked.
    pub lock: Option<C2dLock>,
}

/// A peek-lock on a queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2dLock {
    /// The token the receiver settles with (an HTTP ETag, an AMQP delivery).
    pub token: String,
    /// When the lock lapses and the message becomes deliverable again.
    pub until: Timestamp,
}

/// Why a message left its queue without being completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadReason {
    /// Its expiry passed.
    Expired,
    /// It was delivered `max_delivery_count` times without being completed.
    DeliveryCountExceeded,
}

/// What [`CloudToDeviceQueue::lock_next`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockOutcome {
    /// The message now locked for the receiver, if any is deliverable.
    pub locked: Option<QueuedMessage>,
    /// Messages removed on the way because they were dead.
    pub dead: Vec<(QueuedMessage, DeadReason)>,
}

/// Limits of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most messages one identity's queue holds (Azure: 50).
    pub max_depth: usize,
    /// Deliveries after which an uncompleted message is dead-lettered (Azure: 10).
    pub max_delivery_count: u32,
}

/// Per-identity cloud-to-device queues with peek-lock delivery, durable across restarts.
#[async_trait]
pub trait CloudToDeviceQueue: Send + Sync + 'static {
    /// Appends a message to the target's queue; returns its sequence number.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the queue already holds `limits.max_depth` messages.
    async fn enqueue(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        message: &C2dMessage,
        limits: QueueLimits,
    ) -> Result<u64, StoreError>;

    /// Locks the oldest deliverable message (unlocked, or its lock lapsed) for `lock_for`,
    /// bumping its delivery count and issuing a fresh token. On the way, removes and returns
    /// messages that expired before `now` or already reached `limits.max_delivery_count`.
    async fn lock_next(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        now: Timestamp,
        lock_for: Duration,
        limits: QueueLimits,
    ) -> Result<LockOutcome, StoreError>;

    /// Removes a locked message (delivered). The lock must still be held.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown token or a lapsed lock.
    async fn complete(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        token: &str,
        now: Timestamp,
    ) -> Result<QueuedMessage, StoreError>;

    /// Unlocks a locked message so that it is delivered again.
    ///
    /// # Errors
    /// As [`CloudToDeviceQueue::complete`].
    async fn abandon(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        token: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Removes a locked message without delivering it (dead-lettered as rejected).
    ///
    /// # Errors
    /// As [`CloudToDeviceQueue::complete`].
    async fn reject(
        &self,
        hub: &HubName,
        target: &C2dTarget,
        token: &str,
        now: Timestamp,
    ) -> Result<QueuedMessage, StoreError>;

    /// Releases every lock of every queue (a single node's connections are gone after a restart).
    async fn release_all_locks(&self) -> Result<(), StoreError>;

    /// Removes every message of the target's queue and returns them.
    async fn purge(&self, hub: &HubName, target: &C2dTarget) -> Result<Vec<QueuedMessage>, StoreError>;

    /// Returns how many messages the target's queue holds.
    async fn depth(&self, hub: &HubName, target: &C2dTarget) -> Result<usize, StoreError>;

    /// Removes messages that expired before `now` from every queue of the hub and returns them
    /// with their targets (for `Expired` feedback), at most `max` per call.
    async fn sweep_expired(
        &self,
        hub: &HubName,
        now: Timestamp,
        max: usize,
    ) -> Result<Vec<(C2dTarget, QueuedMessage)>, StoreError>;

    /// Removes every queue of the hub.
    async fn drop_hub(&self, hub: &HubName) -> Result<(), StoreError>;
}
