//! Telemetry links (wire reference §3): the device's messages go through the same core path as
//! MQTT telemetry (`Telemetry::send`: `iothub-*` stamps, the device's partition, group commit) and
//! are settled `accepted` only once durable. A writer task per link appends in arrival order,
//! everything that queued up while the previous batch synced at once.

use std::sync::Arc;

use outpost_core::{DeviceIdentity, OutgoingMessage, Telemetry};
use outpost_model::MAX_MESSAGE_BYTES;
use tokio::sync::mpsc;

use super::wire::telemetry_message;
use super::{DEVICE_CREDIT, DeviceFeed, Kind};
use crate::definitions::{DeliveryState, Error, condition};
use crate::door::connection::{Connection, Feed};
use crate::engine::{Delivery, DeliveryId, LinkId};
use crate::message::Message;

/// Most messages appended in one batch.
const MAX_BATCH: usize = 64;

/// A telemetry link: where its messages go to be stored.
#[derive(Debug)]
pub(super) struct TelemetryLink {
    /// To the writer task; as deep as the link's credit, so never full.
    tx: mpsc::Sender<(Option<DeliveryId>, OutgoingMessage)>,
}

impl TelemetryLink {
    /// Starts the link's writer task. It ends once the link is gone and what it holds is stored.
    pub(super) fn start(
        telemetry: Arc<Telemetry>,
        identity: DeviceIdentity,
        link: LinkId,
        feed: mpsc::Sender<Feed>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(DEVICE_CREDIT as usize);
        tokio::spawn(write(telemetry, identity, link, rx, feed));
        Self { tx }
    }
}

async fn write(
    telemetry: Arc<Telemetry>,
    identity: DeviceIdentity,
    link: LinkId,
    mut rx: mpsc::Receiver<(Option<DeliveryId>, OutgoingMessage)>,
    feed: mpsc::Sender<Feed>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (deliveries, messages): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let stored = match telemetry.send(&identity, messages).await {
            Ok(_) => true,
            Err(error) => {
                // Never accepted when not durable: the device sends it again.
                tracing::warn!(device = %identity.device_id, %error, "amqp telemetry not stored");
                false
            }
        };
        let stored = Feed::Device(DeviceFeed::Stored {
            link,
            deliveries,
            stored,
        });
        if feed.send(stored).await.is_err() {
            return;
        }
    }
}

impl Connection {
    /// A telemetry message: mapped and queued for the writer, or rejected at once.
    pub(super) fn on_telemetry(&mut self, delivery: Delivery) {
        let unsettled = (!delivery.settled).then_some(delivery.delivery_id);
        let message = match Message::decode(delivery.message.clone()) {
            Ok(message) => telemetry_message(message)
                .map_err(|description| Error::new(condition::DECODE_ERROR, description)),
            Err(error) => Err(Error::new(condition::DECODE_ERROR, error.to_string())),
        };
        let refused = match message {
            Ok(message) if message.body.len() > MAX_MESSAGE_BYTES => Error::new(
                condition::MESSAGE_SIZE_EXCEEDED,
                format!("the message body is larger than {MAX_MESSAGE_BYTES} bytes"),
            ),
            Ok(message) => {
                let Some(Kind::Telemetry(link)) = self.bound(delivery.link).map(|bound| &bound.kind) else {
                    return;
                };
                match link.tx.try_send((unsettled, message)) {
                    Ok(()) => return,
                    Err(_) => Error::new(condition::INTERNAL_ERROR, "the message cannot be stored now"),
                }
            }
            Err(error) => error,
        };
        tracing::debug!(condition = %refused.condition, "amqp telemetry rejected");
        self.settle_device_delivery(&delivery, DeliveryState::Rejected { error: Some(refused) });
    }

    /// A batch of a telemetry link is durable (or failed): its deliveries are settled and their
    /// credit given back.
    pub(super) fn on_stored(&mut self, link: LinkId, deliveries: &[Option<DeliveryId>], stored: bool) {
        if !self.links.contains_key(&link) {
            return;
        }
        for delivery in deliveries.iter().flatten() {
            let state = if stored {
                DeliveryState::Accepted
            } else {
                DeliveryState::Rejected {
                    error: Some(Error::new(
                        condition::INTERNAL_ERROR,
                        "the message could not be stored",
                    )),
                }
            };
            let _ = self.engine.settle(link, *delivery, state);
        }
        let credit = u32::try_from(deliveries.len()).unwrap_or(u32::MAX);
        let _ = self.engine.grant_credit(link, credit);
    }
}
