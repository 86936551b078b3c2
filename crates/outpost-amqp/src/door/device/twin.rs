//! Twin links (wire reference §3): requests on the device's sender link (`operation` and
//! `resource` annotations, a correlation id), answered on its receiver link with the same
//! correlation id and the `status` and `version` annotations; desired-property notifications
//! follow on the receiver link without correlation id once the device asked for them (`PUT`).
//! Reads and writes use the same core twin services as MQTT.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use outpost_core::twins::device_twin_error;
use outpost_core::{CoreError, HasErrorCode, IdentityKey};

use super::super::text::uuid_text;
use super::wire::{TwinRequest, desired_notification, twin_answer, twin_request};
use super::{DeviceFeed, Kind};
use crate::definitions::DeliveryState;
use crate::door::connection::{Connection, Feed};
use crate::engine::{Delivery, LinkId};
use crate::message::{Message, MessageId};

/// The answer to a failed twin request: the status, and the error body the Node SDK reads
/// `errorCode`/`message` from (wire reference §2.6, §3).
fn error_answer(correlation: Option<MessageId>, error: &CoreError, now: outpost_model::Timestamp) -> Bytes {
    let body = device_twin_error(error, &tracking_id(now), now).to_string();
    twin_answer(correlation, error.code().http_status(), None, Bytes::from(body)).to_bytes()
}

/// A tracking id for error bodies: unique within the process.
fn tracking_id(now: outpost_model::Timestamp) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    let millis = now.unix_millis().unwrap_or_default();
    bytes[..8].copy_from_slice(&millis.to_be_bytes());
    bytes[8..].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    uuid_text(&bytes).replace('-', "")
}

impl Connection {
    /// A twin request: subscriptions are answered at once, reads and reported patches by a task
    /// (storage does not hold up the connection) whose answer comes back as a feed.
    pub(super) fn on_twin_request(&mut self, delivery: Delivery) {
        self.settle_device_delivery(&delivery, DeliveryState::Accepted);
        let Some(identity) = self.bound(delivery.link).map(|bound| bound.identity.clone()) else {
            return;
        };
        let key = identity.key();
        let Ok(message) = Message::decode(delivery.message) else {
            tracing::debug!(device = %identity.device_id, "amqp twin request is not a message: ignored");
            return;
        };
        let correlation = message
            .properties
            .as_ref()
            .and_then(|properties| properties.correlation_id.clone());
        let now = self.context.clock.now();
        let request = match twin_request(&message) {
            Ok(request) => request,
            Err(description) => {
                let answer = error_answer(correlation, &CoreError::InvalidArgument(description), now);
                return self.send_twin_reply(&key, answer);
            }
        };
        let registry = self.context.outpost.registry.clone();
        let feed = self.feed_tx.clone();
        let answer = move |message: Bytes| async move {
            let _ = feed
                .send(Feed::Device(DeviceFeed::TwinAnswer { key, message }))
                .await;
        };
        match request {
            TwinRequest::Subscribe | TwinRequest::Unsubscribe => {
                let subscribe = request == TwinRequest::Subscribe;
                self.set_desired_notifications(&identity.key(), subscribe);
                let answer = twin_answer(correlation, 200, None, Bytes::new()).to_bytes();
                self.send_twin_reply(&identity.key(), answer);
            }
            TwinRequest::Get => {
                tokio::spawn(async move {
                    let message = match registry.device_side_twin(&identity).await {
                        Ok(twin) => {
                            twin_answer(correlation, 200, None, Bytes::from(twin.to_string())).to_bytes()
                        }
                        Err(error) => error_answer(correlation, &error, now),
                    };
                    answer(message).await;
                });
            }
            TwinRequest::PatchReported(patch) => {
                tokio::spawn(async move {
                    let message = match registry.patch_reported_json(&identity, &patch).await {
                        Ok(version) => twin_answer(correlation, 204, Some(version), Bytes::new()).to_bytes(),
                        Err(error) => error_answer(correlation, &error, now),
                    };
                    answer(message).await;
                });
            }
        }
    }

    fn set_desired_notifications(&mut self, key: &IdentityKey, on: bool) {
        for link in self.identity_links(key) {
            if let Some(Kind::TwinReplies { desired }) = self.bound_mut(link).map(|bound| &mut bound.kind) {
                *desired = on;
            }
        }
    }

    /// Sends a twin answer on the identity's twin reply link; dropped when it has none.
    pub(super) fn send_twin_reply(&mut self, key: &IdentityKey, message: Bytes) {
        let reply = self.identity_links(key).into_iter().find(|link| {
            matches!(
                self.bound(*link).map(|bound| &bound.kind),
                Some(Kind::TwinReplies { .. })
            )
        });
        match reply {
            Some(link) => self.queue(link, message),
            None => tracing::debug!(device = %key.device, "amqp twin answer without a reply link: dropped"),
        }
    }

    /// A desired-properties patch (with `$version`) for the identity's subscribed reply links.
    pub(super) fn notify_desired(&mut self, links: &[LinkId], patch: String) {
        let message = desired_notification(patch).to_bytes();
        for &link in links {
            if matches!(
                self.bound(link).map(|bound| &bound.kind),
                Some(Kind::TwinReplies { desired: true })
            ) {
                self.queue(link, message.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn error_answers_carry_status_and_error_code() {
        let now = outpost_model::Timestamp::from_unix_millis(1_700_000_000_000);
        let error = CoreError::InvalidArgument("bad patch".into());
        let bytes = error_answer(Some(MessageId::String("c".into())), &error, now);
        let answer = Message::decode(bytes).expect("the answer decodes");
        assert_eq!(answer.message_annotation("status"), Some(&Value::Int(400)));
        let body = answer.body.data_bytes().unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"errorCode\":400"), "{text}");
        assert!(text.contains("bad patch"), "{text}");
        assert_ne!(tracking_id(now), tracking_id(now));
    }
}
