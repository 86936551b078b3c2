//! Direct-method links (wire reference §3): the hub's calls go on the device's receiver link
//! (`IoThub-methodname`, a UUID correlation id, the JSON payload), the device answers on its
//! sender link (`IoThub-status`, the same correlation id). Calls arrive through presence
//! (`DeviceCommand::InvokeMethod`), like MQTT's.

use std::collections::HashMap;

use outpost_core::{MethodInvocation, MethodOutcome};
use tokio::sync::oneshot;

use super::Kind;
use super::wire::{method_answer, method_request};
use crate::definitions::DeliveryState;
use crate::door::connection::Connection;
use crate::engine::{Delivery, LinkId};
use crate::message::Message;

/// The calls sent on a method request link and not answered yet, by correlation id.
#[derive(Debug, Default)]
pub(super) struct MethodCalls {
    pending: HashMap<[u8; 16], oneshot::Sender<MethodOutcome>>,
    next: u64,
}

impl MethodCalls {
    /// A correlation id unique on the link, shaped as a version-4 UUID (the Node SDK turns
    /// 16-byte ids into their UUID text and sends them back as `uuid`).
    fn next_correlation(&mut self) -> [u8; 16] {
        self.next += 1;
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&self.next.to_be_bytes());
        id[6] = 0x40;
        id[8] = 0x80;
        id
    }
}

impl Connection {
    /// Sends a method call to the identity's method request link, or answers `NotListening` when
    /// it has none.
    pub(super) fn call_method(&mut self, links: &[LinkId], call: MethodInvocation) {
        let MethodInvocation {
            name,
            payload,
            respond,
        } = call;
        let target = links.iter().copied().find(|link| {
            matches!(
                self.bound(*link).map(|bound| &bound.kind),
                Some(Kind::MethodRequests(_))
            )
        });
        let Some(link) = target else {
            let _ = respond.send(MethodOutcome::NotListening);
            return;
        };
        let Some(Kind::MethodRequests(calls)) = self.bound_mut(link).map(|bound| &mut bound.kind) else {
            return;
        };
        // Calls whose caller gave up are forgotten before they pile up.
        calls.pending.retain(|_, respond| !respond.is_closed());
        let correlation = calls.next_correlation();
        calls.pending.insert(correlation, respond);
        let message = method_request(&name, correlation, payload.to_string()).to_bytes();
        self.queue(link, message);
    }

    /// A device's answer: handed to the waiting call; answers to unknown or timed-out calls are
    /// dropped, as IoT Hub does.
    pub(super) fn on_method_answer(&mut self, delivery: Delivery) {
        self.settle_device_delivery(&delivery, DeliveryState::Accepted);
        let Some(key) = self.bound(delivery.link).map(|bound| bound.identity.key()) else {
            return;
        };
        let answer = Message::decode(delivery.message)
            .map_err(|_| "not an AMQP message")
            .and_then(|message| method_answer(&message));
        let answer = match answer {
            Ok(answer) => answer,
            Err(reason) => {
                tracing::debug!(device = %key.device, reason, "amqp method answer ignored");
                return;
            }
        };
        let requests = self.identity_links(&key);
        for link in requests {
            if let Some(Kind::MethodRequests(calls)) = self.bound_mut(link).map(|bound| &mut bound.kind)
                && let Some(respond) = calls.pending.remove(&answer.correlation)
            {
                let _ = respond.send(MethodOutcome::answered(answer.status, &answer.payload));
                return;
            }
        }
        tracing::debug!(device = %key.device, "amqp method answer for an unknown call: dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_unique_uuids() {
        let mut calls = MethodCalls::default();
        let first = calls.next_correlation();
        let second = calls.next_correlation();
        assert_ne!(first, second);
        assert_eq!(first[6] >> 4, 4, "version 4");
        assert_eq!(first[8] >> 6, 0b10, "RFC 4122 variant");
    }
}
