//! Cloud-to-device links (wire reference §3): the identity's durable queue (the one MQTT delivers
//! from), peek-locked one message per credit by a fetcher task and sent unsettled; the device's
//! outcome settles the lock: `accepted` completes, `rejected` rejects (dead-letter, `Rejected`
//! feedback), `released` and `modified` abandon (delivered again). A module's link delivers its
//! input messages, the input named in `x-opt-input-name`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use outpost_core::{CloudToDevice, CoreError, DeviceIdentity, QueuedMessage};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::wire::c2d_message;
use super::{DeviceFeed, Kind};
use crate::definitions::DeliveryState;
use crate::door::connection::{Connection, Feed};
use crate::engine::{DeliveryId, EngineError, LinkId};

/// Most messages of a link unsettled at once: Azure's queue depth, more could not be locked.
const MAX_IN_FLIGHT: u32 = 50;
/// Wait before locking again after a storage failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A cloud-to-device link.
#[derive(Debug)]
pub(super) struct C2dLink {
    /// A module's input link (the input name goes into `x-opt-input-name`).
    module: bool,
    /// Permits of the fetcher: one per message it may lock.
    permits: Arc<Semaphore>,
    /// Permits given minus messages received.
    granted: u32,
    /// Wakes the fetcher when the queue may hold something new.
    wake: Arc<Notify>,
    /// Stops the fetcher.
    cancel: CancellationToken,
    /// Lock tokens of the messages sent and not yet settled.
    in_flight: HashMap<DeliveryId, String>,
    /// Locked messages waiting for credit or session window.
    parked: VecDeque<QueuedMessage>,
}

impl C2dLink {
    /// Starts the link's fetcher; it locks nothing until the device gives credit.
    pub(super) fn start(
        c2d: Arc<CloudToDevice>,
        identity: DeviceIdentity,
        link: LinkId,
        feed: mpsc::Sender<Feed>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(0));
        let wake = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let module = identity.module_id.is_some();
        let fetcher = Fetcher {
            c2d,
            identity,
            link,
            permits: permits.clone(),
            wake: wake.clone(),
            cancel: cancel.clone(),
            feed,
        };
        tokio::spawn(fetcher.run());
        Self {
            module,
            permits,
            granted: 0,
            wake,
            cancel,
            in_flight: HashMap::new(),
            parked: VecDeque::new(),
        }
    }
}

/// Locks the identity's next messages, one per permit, and hands them to the connection.
struct Fetcher {
    c2d: Arc<CloudToDevice>,
    identity: DeviceIdentity,
    link: LinkId,
    permits: Arc<Semaphore>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    feed: mpsc::Sender<Feed>,
}

impl Fetcher {
    async fn run(self) {
        loop {
            let permit = tokio::select! {
                permit = self.permits.acquire() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = self.cancel.cancelled() => return,
            };
            // Not raced with the cancellation: a message locked by a dropped call would stay
            // locked until its lock lapsed.
            let message = loop {
                match self.c2d.lock_next(&self.identity).await {
                    Ok(Some(message)) if message.lock.is_some() => break message,
                    Ok(_) => {
                        tokio::select! {
                            () = self.wake.notified() => {}
                            () = self.cancel.cancelled() => return,
                        }
                    }
                    Err(error) => {
                        tracing::warn!(device = %self.identity.device_id, %error, "amqp cloud-to-device lock failed");
                        tokio::select! {
                            () = tokio::time::sleep(RETRY_AFTER) => {}
                            () = self.cancel.cancelled() => return,
                        }
                    }
                }
            };
            permit.forget();
            let feed = Feed::Device(DeviceFeed::CloudToDevice {
                link: self.link,
                locked: Box::new((self.identity.clone(), message.clone())),
            });
            if self.cancel.is_cancelled() || self.feed.send(feed).await.is_err() {
                settle(&self.c2d, &self.identity, &message, Outcome::Abandon).await;
                return;
            }
        }
    }
}

/// What the device's outcome does to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    Reject,
    Abandon,
}

/// The outcome of a delivery state (wire reference §3: complete → accepted, reject → rejected,
/// abandon → released); `None` for a state that is not an outcome (AMQP 1.0 §3.4.1 `received`).
fn outcome(state: Option<&DeliveryState>, settled: bool) -> Option<Outcome> {
    match state {
        Some(DeliveryState::Accepted) => Some(Outcome::Complete),
        Some(DeliveryState::Rejected { .. }) => Some(Outcome::Reject),
        Some(DeliveryState::Released | DeliveryState::Modified { .. }) => Some(Outcome::Abandon),
        // Settled without an outcome: nothing was processed, so it is delivered again.
        Some(DeliveryState::Received { .. }) | None => settled.then_some(Outcome::Abandon),
    }
}

async fn settle_token(c2d: &CloudToDevice, identity: &DeviceIdentity, token: &str, outcome: Outcome) {
    let result = match outcome {
        Outcome::Complete => c2d.complete(identity, token).await,
        Outcome::Reject => c2d.reject(identity, token).await,
        Outcome::Abandon => c2d.abandon(identity, token).await,
    };
    match result {
        // The lock lapsed meanwhile: the message is someone else's (or delivered again) now.
        Ok(()) | Err(CoreError::MessageLockLost) => {}
        Err(error) => {
            tracing::warn!(device = %identity.device_id, %error, ?outcome, "amqp cloud-to-device settlement failed");
        }
    }
}

async fn settle(c2d: &CloudToDevice, identity: &DeviceIdentity, message: &QueuedMessage, outcome: Outcome) {
    if let Some(lock) = &message.lock {
        settle_token(c2d, identity, &lock.token, outcome).await;
    }
}

impl Connection {
    fn c2d_link(&mut self, link: LinkId) -> Option<&mut C2dLink> {
        match &mut self.bound_mut(link)?.kind {
            Kind::CloudToDevice(c2d) => Some(c2d),
            _ => None,
        }
    }

    /// Settles locks in a task (storage writes do not hold up the connection); an abandoned
    /// message wakes the fetcher, if any, to deliver it again.
    fn settle_c2d_in_background(
        &self,
        identity: DeviceIdentity,
        tokens: Vec<String>,
        outcome: Outcome,
        wake: Option<Arc<Notify>>,
    ) {
        if tokens.is_empty() {
            return;
        }
        let c2d = self.context.outpost.c2d.clone();
        tokio::spawn(async move {
            for token in tokens {
                settle_token(&c2d, &identity, &token, outcome).await;
            }
            if let Some(wake) = wake {
                wake.notify_one();
            }
        });
    }

    /// The device gave credit: parked messages go out, and the fetcher may lock as many more as
    /// credit allows (at most [`MAX_IN_FLIGHT`] unsettled).
    pub(super) fn on_c2d_credit(&mut self, link: LinkId) {
        self.send_parked(link);
        let credit = self.engine.link_credit(link).unwrap_or(0);
        let Some(c2d) = self.c2d_link(link) else { return };
        let in_flight = u32::try_from(c2d.in_flight.len()).unwrap_or(u32::MAX);
        let parked = u32::try_from(c2d.parked.len()).unwrap_or(u32::MAX);
        let wanted = credit
            .min(MAX_IN_FLIGHT.saturating_sub(in_flight))
            .saturating_sub(parked);
        if wanted > c2d.granted {
            c2d.permits.add_permits((wanted - c2d.granted) as usize);
            c2d.granted = wanted;
        }
    }

    /// The fetcher locked a message of `identity` for `link`.
    pub(super) fn on_c2d_locked(&mut self, link: LinkId, identity: DeviceIdentity, message: QueuedMessage) {
        let Some(c2d) = self.c2d_link(link) else {
            // The link went meanwhile: the message is delivered again, here or elsewhere.
            let tokens = message.lock.map(|lock| lock.token).into_iter().collect();
            self.settle_c2d_in_background(identity, tokens, Outcome::Abandon, None);
            return;
        };
        c2d.granted = c2d.granted.saturating_sub(1);
        c2d.parked.push_back(message);
        self.send_parked(link);
    }

    /// Sends parked messages as far as credit and the session window allow.
    fn send_parked(&mut self, link: LinkId) {
        let settled = self.links.get(&link).is_some_and(|state| state.settled);
        let mut completed = Vec::new();
        let mut refused = Vec::new();
        loop {
            let Some(c2d) = self.c2d_link(link) else { return };
            let Some(message) = c2d.parked.front() else { break };
            let bytes = c2d_message(message, c2d.module).to_bytes();
            let token = message
                .lock
                .as_ref()
                .map(|lock| lock.token.clone())
                .unwrap_or_default();
            match self.engine.send(link, &bytes, settled) {
                Ok(delivery) => {
                    let Some(c2d) = self.c2d_link(link) else { return };
                    c2d.parked.pop_front();
                    if settled {
                        // At-most-once: the device asked for settled deliveries (AMQP 1.0 §2.6.12).
                        completed.push(token);
                    } else {
                        c2d.in_flight.insert(delivery, token);
                    }
                }
                Err(EngineError::NoCredit | EngineError::SessionWindowFull) => break,
                Err(error) => {
                    tracing::debug!(%error, "amqp cloud-to-device message not sent");
                    let Some(c2d) = self.c2d_link(link) else { return };
                    c2d.parked.pop_front();
                    refused.push(token);
                }
            }
        }
        let Some(bound) = self.bound(link) else { return };
        let identity = bound.identity.clone();
        self.settle_c2d_in_background(identity.clone(), completed, Outcome::Complete, None);
        self.settle_c2d_in_background(identity, refused, Outcome::Abandon, None);
    }

    /// The device settled a message.
    pub(super) fn on_c2d_settled(
        &mut self,
        link: LinkId,
        delivery: DeliveryId,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        let Some(outcome) = outcome(state.as_ref(), settled) else {
            return;
        };
        let Some(c2d) = self.c2d_link(link) else { return };
        let Some(token) = c2d.in_flight.remove(&delivery) else {
            return;
        };
        let wake = (outcome == Outcome::Abandon).then(|| c2d.wake.clone());
        let Some(bound) = self.bound(link) else { return };
        let identity = bound.identity.clone();
        self.settle_c2d_in_background(identity, vec![token], outcome, wake);
        // Room under MAX_IN_FLIGHT: the fetcher may lock the next one.
        self.on_c2d_credit(link);
    }

    /// A message was queued for the identity: its links' fetchers look again.
    pub(super) fn wake_c2d(&mut self, links: &[LinkId]) {
        for link in links {
            if let Some(c2d) = self.c2d_link(*link) {
                c2d.wake.notify_one();
            }
        }
    }

    /// The link is gone: the fetcher stops, and what it sent or locked is delivered again.
    pub(super) fn release_c2d(&mut self, identity: &DeviceIdentity, c2d: C2dLink) {
        c2d.cancel.cancel();
        c2d.permits.close();
        let tokens: Vec<String> = c2d
            .in_flight
            .into_values()
            .chain(
                c2d.parked
                    .iter()
                    .filter_map(|message| message.lock.as_ref().map(|lock| lock.token.clone())),
            )
            .collect();
        self.settle_c2d_in_background(identity.clone(), tokens, Outcome::Abandon, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::Error;

    #[test]
    fn delivery_states_map_to_queue_outcomes() {
        assert_eq!(
            outcome(Some(&DeliveryState::Accepted), true),
            Some(Outcome::Complete)
        );
        let rejected = DeliveryState::Rejected {
            error: Some(Error::new("x", "y")),
        };
        assert_eq!(outcome(Some(&rejected), true), Some(Outcome::Reject));
        assert_eq!(
            outcome(Some(&DeliveryState::Released), true),
            Some(Outcome::Abandon)
        );
        let modified = DeliveryState::Modified {
            delivery_failed: true,
            undeliverable_here: false,
            message_annotations: None,
        };
        assert_eq!(outcome(Some(&modified), false), Some(Outcome::Abandon));
        let received = DeliveryState::Received {
            section_number: 0,
            section_offset: 0,
        };
        assert_eq!(outcome(Some(&received), false), None);
        assert_eq!(outcome(None, false), None);
        assert_eq!(outcome(None, true), Some(Outcome::Abandon));
    }
}
