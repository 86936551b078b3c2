//! Service-bound receivers (wire reference §6): the feedback link and the file-notification link
//! send records of a hub's durable [`ServiceBoundQueue`] unsettled, as credit allows and as soon
//! as they are recorded. `accepted` completes a message's records (removed for good);
//! `released`/`modified` (or the link going away first) puts them back for redelivery, in order;
//! `rejected` removes them too (Azure dead-letters them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use outpost_core::{FeedbackRecord, FileNotification, Outpost, ServiceBoundQueue, Taken};
use outpost_model::HubName;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::{ServiceFeed, ServiceKind, ServiceLink};
use crate::definitions::DeliveryState;
use crate::door::connection::{Connection, Feed, LinkRole, LinkState};
use crate::engine::{DeliveryId, EngineError, LinkId};
use crate::message::{Body, Message, MessageId, Properties};

/// The content type of feedback messages (wire reference §6).
pub(super) const FEEDBACK_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.feedback.json";

/// A record a service-bound link carries.
pub(in crate::door) trait Outbound: Sized + Clone {
    /// The node the records are received from.
    const KIND: ServiceKind;
    /// Most records in one message.
    const MAX_BATCH: usize;
    /// The queue the records come from.
    fn queue(outpost: &Outpost) -> &ServiceBoundQueue<Self>;
    /// The link state, if `link` carries this kind of record.
    fn link(role: &mut ServiceLink) -> Option<&mut OutboundLink<Self>>;
    /// The body of a message carrying `batch`.
    fn body(batch: &[Self]) -> Vec<u8>;
    /// The content type of such a message.
    fn content_type() -> &'static str;
}

impl Outbound for FeedbackRecord {
    const KIND: ServiceKind = ServiceKind::Feedback;
    /// Feedback comes in batches: a JSON array.
    const MAX_BATCH: usize = 100;

    fn queue(outpost: &Outpost) -> &ServiceBoundQueue<Self> {
        outpost.c2d.feedback()
    }

    fn link(role: &mut ServiceLink) -> Option<&mut OutboundLink<Self>> {
        match role {
            ServiceLink::Feedback(link) => Some(link),
            _ => None,
        }
    }

    fn body(batch: &[Self]) -> Vec<u8> {
        FeedbackRecord::batch_json(batch)
    }

    fn content_type() -> &'static str {
        FEEDBACK_CONTENT_TYPE
    }
}

impl Outbound for FileNotification {
    const KIND: ServiceKind = ServiceKind::FileNotifications;
    /// One notification per message: a JSON object.
    const MAX_BATCH: usize = 1;

    fn queue(outpost: &Outpost) -> &ServiceBoundQueue<Self> {
        outpost.files.notifications()
    }

    fn link(role: &mut ServiceLink) -> Option<&mut OutboundLink<Self>> {
        match role {
            ServiceLink::FileNotifications(link) => Some(link),
            _ => None,
        }
    }

    fn body(batch: &[Self]) -> Vec<u8> {
        batch.first().map(FileNotification::to_json).unwrap_or_default()
    }

    fn content_type() -> &'static str {
        "application/json"
    }
}

/// A service-bound receiver's state.
#[derive(Debug)]
pub(in crate::door) struct OutboundLink<T> {
    hub: HubName,
    /// Messages sent and not yet settled, by delivery.
    in_flight: HashMap<DeliveryId, Vec<Taken<T>>>,
    /// Records taken but not sent yet (the session window was full), sent first.
    held: Vec<Taken<T>>,
    /// Records per message; halved when the receiver's max-message-size refuses a batch.
    max_batch: usize,
    /// Wakes the link when records are added.
    task: AbortHandle,
}

impl<T: Outbound> OutboundLink<T> {
    /// The state of a new link of `hub`; a task wakes it through `feed` when records are added.
    pub(super) fn start(outpost: &Outpost, hub: HubName, link: LinkId, feed: mpsc::Sender<Feed>) -> Self {
        let task = tokio::spawn(wake_on_records(T::queue(outpost).watch(), link, feed)).abort_handle();
        Self {
            hub,
            in_flight: HashMap::new(),
            held: Vec::new(),
            max_batch: T::MAX_BATCH,
            task,
        }
    }

    /// Ends the link: what the receiver did not complete goes back, in order, for the next one.
    pub(super) fn forget(self, outpost: &Outpost) {
        self.task.abort();
        let mut batches: Vec<_> = self.in_flight.into_iter().collect();
        batches.sort_by_key(|(delivery, _)| delivery.0);
        let mut records: Vec<Taken<T>> = batches.into_iter().flat_map(|(_, batch)| batch).collect();
        records.extend(self.held);
        T::queue(outpost).put_back(&self.hub, records);
    }
}

impl Connection {
    /// The receiver settled a message of a service-bound link.
    pub(super) async fn settle_outbound<T: Outbound>(
        &mut self,
        link: LinkId,
        delivery: DeliveryId,
        state: Option<DeliveryState>,
    ) {
        let Some(outbound) = self.links.get_mut(&link).and_then(|state| match &mut state.role {
            LinkRole::Service(service) => T::link(service),
            _ => None,
        }) else {
            return;
        };
        let Some(records) = outbound.in_flight.remove(&delivery) else {
            return;
        };
        let hub = outbound.hub.clone();
        let queue = T::queue(&self.context.outpost);
        match state {
            Some(DeliveryState::Accepted | DeliveryState::Rejected { .. }) => {
                if matches!(state, Some(DeliveryState::Rejected { .. })) {
                    tracing::info!(
                        records = records.len(),
                        node = T::KIND.path(),
                        "amqp service-bound message rejected by the receiver: dropped"
                    );
                }
                let numbers = records.iter().map(|taken| taken.number).collect();
                if let Err(error) = queue.complete(&hub, numbers).await {
                    // Still stored: delivered again after a restart (at least once).
                    tracing::warn!(%error, node = T::KIND.path(), "completed service-bound records not removed");
                }
            }
            // Released, modified, or settled without an outcome: delivered again later.
            _ => queue.put_back(&hub, records),
        }
    }

    /// Sends records on a service-bound link while it has credit and records wait.
    pub(super) fn send_outbound<T: Outbound>(&mut self, link: LinkId) {
        let outpost = self.context.outpost.clone();
        while self.engine.link_credit(link).unwrap_or(0) > 0 {
            let Some(LinkState {
                role: LinkRole::Service(service),
                settled,
                ..
            }) = self.links.get_mut(&link)
            else {
                return;
            };
            let settled = *settled;
            let Some(outbound) = T::link(service) else {
                return;
            };
            let batch: Vec<Taken<T>> = if outbound.held.is_empty() {
                T::queue(&outpost).take(&outbound.hub, outbound.max_batch)
            } else {
                let count = outbound.held.len().min(outbound.max_batch);
                outbound.held.drain(..count).collect()
            };
            if batch.is_empty() {
                return;
            }
            let message = outbound_message::<T>(&batch);
            match self.engine.send(link, &message, settled) {
                // A receiver that asked for settled transfers has them once sent.
                Ok(delivery) => {
                    if !settled {
                        outbound.in_flight.insert(delivery, batch);
                    }
                }
                Err(EngineError::MessageTooLarge { .. }) if batch.len() > 1 => {
                    outbound.max_batch = (batch.len() / 2).max(1);
                    outbound.held.splice(0..0, batch);
                }
                Err(EngineError::MessageTooLarge { size, max }) => {
                    tracing::warn!(
                        size,
                        max,
                        node = T::KIND.path(),
                        "amqp service-bound record larger than the receiver accepts: dropped"
                    );
                }
                Err(error) => {
                    if !matches!(error, EngineError::NoCredit | EngineError::SessionWindowFull) {
                        tracing::debug!(%error, "amqp service-bound send failed");
                    }
                    outbound.held.splice(0..0, batch);
                    return;
                }
            }
        }
    }
}

/// Wakes a service-bound link whenever records are added. Records added before the attach are
/// found when the receiver first gives credit.
async fn wake_on_records(mut added: watch::Receiver<u64>, link: LinkId, feed: mpsc::Sender<Feed>) {
    while added.changed().await.is_ok() {
        if feed
            .send(Feed::Service(ServiceFeed::RecordsAvailable(link)))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A service-bound message: the records' JSON in a data section (wire reference §6).
pub(super) fn outbound_message<T: Outbound>(batch: &[Taken<T>]) -> Bytes {
    let records: Vec<T> = batch.iter().map(|taken| taken.record.clone()).collect();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    Message {
        properties: Some(Properties {
            message_id: Some(MessageId::String(format!(
                "{}-{}-{number}",
                T::KIND.label(),
                std::process::id()
            ))),
            to: Some(T::KIND.path().to_owned()),
            content_type: Some(T::content_type().into()),
            content_encoding: Some("utf-8".into()),
            ..Properties::default()
        }),
        body: Body::Data(vec![Bytes::from(T::body(&records))]),
        ..Message::default()
    }
    .to_bytes()
}
