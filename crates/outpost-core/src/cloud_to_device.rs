//! Cloud-to-device use cases over the [`CloudToDeviceQueue`] port: sending, delivering with
//! peek-lock, settling, purging, expiring, and the feedback records senders ask for with
//! `iothub-ack` (wire contract §2.5, §6).

use std::sync::Arc;
use std::time::Duration;

use outpost_model::{DeviceId, HubName, ModuleId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::access::{Caller, Permission};
use crate::c2d::{
    C2dMessage, C2dTarget, CloudToDeviceQueue, DeadReason, FeedbackAck, QueueLimits, QueuedMessage,
};
use crate::devices::DeviceIdentity;
use crate::presence::{DeviceCommand, IdentityKey, Presence};
use crate::registry::Registry;
use crate::service_bound::ServiceBoundQueue;
use crate::{Clock, CoreError, StoreError};

/// Limits and defaults of cloud-to-device messaging (Azure's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct C2dSettings {
    /// Queue limits per identity (50 messages, 10 deliveries).
    pub queue: QueueLimits,
    /// Time to live of a message sent without an expiry (1 hour).
    pub default_ttl: Duration,
    /// Longest time to live a sender may ask for (48 hours).
    pub max_ttl: Duration,
    /// How long a delivery stays locked before it is redelivered (1 minute, Azure's HTTP lock).
    pub lock_duration: Duration,
    /// Feedback records kept per hub for the feedback receiver.
    pub max_feedback_records: usize,
}

impl Default for C2dSettings {
    fn default() -> Self {
        Self {
            queue: QueueLimits {
                max_depth: 50,
                max_delivery_count: 10,
            },
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(48 * 3600),
            lock_duration: Duration::from_secs(60),
            max_feedback_records: 10_000,
        }
    }
}

/// Where a cloud-to-device message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2dDestination {
    /// The device.
    pub device: DeviceId,
    /// For module input messages: the module and the input name.
    pub module_input: Option<(ModuleId, String)>,
}

impl C2dDestination {
    /// Returns the destination of a device's own cloud-to-device messages.
    pub fn device(device: DeviceId) -> Self {
        Self {
            device,
            module_input: None,
        }
    }
}

/// The outcome a feedback record reports (`statusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedbackStatus {
    /// The device completed the message.
    Success,
    /// The message expired before it was completed.
    Expired,
    /// The message was delivered too many times without being completed.
    DeliveryCountExceeded,
    /// The device rejected the message.
    Rejected,
    /// The queue was purged.
    Purged,
}

/// One feedback record, in Azure's JSON shape (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackRecord {
    /// The message id of the original message.
    pub original_message_id: String,
    /// A description of the outcome.
    pub description: String,
    /// The outcome.
    pub status_code: FeedbackStatus,
    /// The device's generation id.
    pub device_generation_id: String,
    /// The device.
    pub device_id: String,
    /// When the outcome happened.
    pub enqueued_time_utc: String,
}

/// Cloud-to-device messaging of every hub on the server.
pub struct CloudToDevice {
    queue: Arc<dyn CloudToDeviceQueue>,
    registry: Arc<Registry>,
    presence: Arc<Presence>,
    clock: Arc<dyn Clock>,
    settings: C2dSettings,
    /// Feedback records for the feedback receivers (the AMQP feedback link, §6; the operator API).
    feedback: ServiceBoundQueue<FeedbackRecord>,
}

impl std::fmt::Debug for CloudToDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudToDevice")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn wants_feedback(ack: FeedbackAck, status: FeedbackStatus) -> bool {
    match status {
        FeedbackStatus::Success => matches!(ack, FeedbackAck::Positive | FeedbackAck::Full),
        _ => matches!(ack, FeedbackAck::Negative | FeedbackAck::Full),
    }
}

impl CloudToDevice {
    /// Builds the service; `feedback` is the durable queue of feedback records (opened with
    /// `settings.max_feedback_records`).
    pub fn new(
        queue: Arc<dyn CloudToDeviceQueue>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        settings: C2dSettings,
        feedback: ServiceBoundQueue<FeedbackRecord>,
    ) -> Self {
        let presence = registry.presence().clone();
        Self {
            queue,
            registry,
            presence,
            clock,
            settings,
            feedback,
        }
    }

    /// Returns the settings.
    pub fn settings(&self) -> &C2dSettings {
        &self.settings
    }

    /// Returns the queue port.
    pub fn queue(&self) -> &Arc<dyn CloudToDeviceQueue> {
        &self.queue
    }

    /// Queues a message for a device, or for an input of one of its modules, and wakes the
    /// identity's connection, if any. The destination is kept in `to`
    /// (`/devices/<d>/messages/devicebound` or `/devices/<d>/modules/<m>/inputs/<input>`).
    ///
    /// # Errors
    /// `DeviceNotFound`/`ModuleNotFound`; `DeviceMaximumQueueDepthExceeded` when the queue is
    /// full; argument errors for an expiry in the past or beyond the maximum time to live, or an
    /// input name that is not a topic level.
    pub async fn send(
        &self,
        caller: &Caller,
        destination: &C2dDestination,
        mut message: C2dMessage,
    ) -> Result<(), CoreError> {
        caller.require(Permission::ServiceConnect)?;
        let device = &destination.device;
        let module = match &destination.module_input {
            Some((module, input)) => {
                if input.is_empty() || input.len() > 128 || input.contains(['/', '#', '+', '?', '&']) {
                    return Err(CoreError::InvalidArgument(format!(
                        "'{input}' is not a valid input name"
                    )));
                }
                // Sending needs ServiceConnect only (the `service` policy sends): the identity
                // must exist, reading it is not asked of the caller.
                self.registry.load_module(caller, device, module).await?;
                message.to = format!("/devices/{device}/modules/{module}/inputs/{input}");
                Some(module.clone())
            }
            None => {
                self.registry.load_device(caller, device).await?;
                message.to = format!("/devices/{device}/messages/devicebound");
                None
            }
        };
        let now = self.clock.now();
        message.enqueued_time = now;
        let now_ms = now.unix_millis().unwrap_or_default();
        let max_ms = now_ms + self.settings.max_ttl.as_millis() as i64;
        match message.expiry.unix_millis() {
            None => {
                message.expiry =
                    Timestamp::from_unix_millis(now_ms + self.settings.default_ttl.as_millis() as i64);
            }
            Some(expiry) if expiry <= now_ms => {
                return Err(CoreError::InvalidArgument(
                    "the message's expiry time is in the past".into(),
                ));
            }
            Some(expiry) if expiry > max_ms => {
                return Err(CoreError::InvalidArgument(
                    "the message lives longer than the 48 hour maximum".into(),
                ));
            }
            Some(_) => {}
        }
        let target = C2dTarget {
            device: device.clone(),
            module: module.clone(),
        };
        let hub = &caller.hub().name;
        match self
            .queue
            .enqueue(hub, &target, &message, self.settings.queue)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict) => return Err(CoreError::QueueFull(device.clone())),
            // The hub was deleted while the request ran.
            Err(StoreError::ParentMissing) => return Err(CoreError::HubNotFound(hub.to_string())),
            Err(other) => return Err(other.into()),
        }
        let key = IdentityKey {
            hub: hub.clone(),
            device: device.clone(),
            module,
        };
        self.presence.send(&key, DeviceCommand::CloudToDeviceAvailable);
        Ok(())
    }

    /// Locks the next message for a connected identity, dead-lettering expired and over-delivered
    /// ones on the way.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn lock_next(&self, identity: &DeviceIdentity) -> Result<Option<QueuedMessage>, CoreError> {
        let target = identity.c2d_target();
        let now = self.clock.now();
        let outcome = self
            .queue
            .lock_next(
                &identity.hub.name,
                &target,
                now,
                self.settings.lock_duration,
                self.settings.queue,
            )
            .await?;
        for (dead, reason) in &outcome.dead {
            let status = match reason {
                DeadReason::Expired => FeedbackStatus::Expired,
                DeadReason::DeliveryCountExceeded => FeedbackStatus::DeliveryCountExceeded,
            };
            self.record_identity_feedback(identity, dead, status).await;
        }
        Ok(outcome.locked)
    }

    /// Completes a delivered message (MQTT PUBACK, AMQP accepted, HTTP DELETE).
    ///
    /// # Errors
    /// `DeviceMessageLockLost` for an unknown token or a lapsed lock.
    pub async fn complete(&self, identity: &DeviceIdentity, token: &str) -> Result<(), CoreError> {
        let target = identity.c2d_target();
        let done = self
            .queue
            .complete(&identity.hub.name, &target, token, self.clock.now())
            .await
            .map_err(lock_lost)?;
        self.record_identity_feedback(identity, &done, FeedbackStatus::Success)
            .await;
        Ok(())
    }

    /// Rejects a delivered message: it is removed and, if asked for, reported as `Rejected`.
    ///
    /// # Errors
    /// `DeviceMessageLockLost` for an unknown token or a lapsed lock.
    pub async fn reject(&self, identity: &DeviceIdentity, token: &str) -> Result<(), CoreError> {
        let target = identity.c2d_target();
        let done = self
            .queue
            .reject(&identity.hub.name, &target, token, self.clock.now())
            .await
            .map_err(lock_lost)?;
        self.record_identity_feedback(identity, &done, FeedbackStatus::Rejected)
            .await;
        Ok(())
    }

    /// Abandons a delivered message: it is unlocked and delivered again.
    ///
    /// # Errors
    /// `DeviceMessageLockLost` for an unknown token or a lapsed lock.
    pub async fn abandon(&self, identity: &DeviceIdentity, token: &str) -> Result<(), CoreError> {
        let target = identity.c2d_target();
        self.queue
            .abandon(&identity.hub.name, &target, token, self.clock.now())
            .await
            .map_err(lock_lost)
    }

    /// Removes every message queued for a device (`DELETE /devices/{id}/commands`); returns how
    /// many were removed.
    ///
    /// # Errors
    /// `DeviceNotFound`.
    pub async fn purge(&self, caller: &Caller, device: &DeviceId) -> Result<usize, CoreError> {
        caller.require(Permission::ServiceConnect)?;
        let record = self.registry.device(caller, device).await?;
        let target = C2dTarget {
            device: device.clone(),
            module: None,
        };
        let purged = self.queue.purge(&caller.hub().name, &target).await?;
        for message in &purged {
            self.record_feedback(
                &caller.hub().name,
                device,
                &record.generation_id,
                message,
                FeedbackStatus::Purged,
            )
            .await;
        }
        Ok(purged.len())
    }

    /// Returns how many messages wait for a device.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn depth(&self, hub: &HubName, device: &DeviceId) -> Result<usize, CoreError> {
        let target = C2dTarget {
            device: device.clone(),
            module: None,
        };
        Ok(self.queue.depth(hub, &target).await?)
    }

    /// Dead-letters expired messages of every queue of `hub`; returns how many.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sweep_expired(&self, hub: &HubName) -> Result<usize, CoreError> {
        let expired = self.queue.sweep_expired(hub, self.clock.now(), 1000).await?;
        for (target, message) in &expired {
            // The device may be gone; its generation id is then unknown.
            let generation = match self.registry.store.device(hub, &target.device).await {
                Ok(Some(stored)) => stored.value.device.generation_id,
                _ => String::new(),
            };
            self.record_feedback(hub, &target.device, &generation, message, FeedbackStatus::Expired)
                .await;
        }
        Ok(expired.len())
    }

    /// The hub's feedback records for the feedback receivers.
    pub fn feedback(&self) -> &ServiceBoundQueue<FeedbackRecord> {
        &self.feedback
    }

    async fn record_identity_feedback(
        &self,
        identity: &DeviceIdentity,
        message: &QueuedMessage,
        status: FeedbackStatus,
    ) {
        self.record_feedback(
            &identity.hub.name,
            &identity.device_id,
            &identity.generation_id,
            message,
            status,
        )
        .await;
    }

    /// Records the feedback a message's sender asked for. The message's outcome is already
    /// settled, so a failure to store the record is logged, not returned.
    async fn record_feedback(
        &self,
        hub: &HubName,
        device: &DeviceId,
        generation_id: &str,
        message: &QueuedMessage,
        status: FeedbackStatus,
    ) {
        if !wants_feedback(message.message.ack, status) {
            return;
        }
        let record = FeedbackRecord {
            original_message_id: message.message.message_id.clone().unwrap_or_default(),
            description: format!("{status:?}"),
            status_code: status,
            device_generation_id: generation_id.to_owned(),
            device_id: device.to_string(),
            enqueued_time_utc: self.clock.now().to_string(),
        };
        if let Err(error) = self.feedback.push(hub, record).await {
            tracing::warn!(%hub, %device, error = %error, "feedback record not stored");
        }
    }
}

impl FeedbackRecord {
    /// Encodes a batch of records as the JSON array a feedback message carries (§6, content type
    /// `application/vnd.microsoft.iothub.feedback.json`).
    pub fn batch_json(records: &[Self]) -> Vec<u8> {
        // Plain strings and a unit enum: serialising cannot fail.
        serde_json::to_vec(records).unwrap_or_default()
    }
}

fn lock_lost(error: StoreError) -> CoreError {
    match error {
        StoreError::NotFound => CoreError::MessageLockLost,
        other => other.into(),
    }
}
