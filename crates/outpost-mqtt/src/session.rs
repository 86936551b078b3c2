//! Session state of a connection, kept pure (no I/O): subscriptions, packet identifiers and the
//! keep-alive window; and persistent sessions (clean session = false, MQTT 3.1.1 §3.1.2.4): the subscriptions
//! that survive a reconnect and a server restart, kept through the core's `SessionStore` port.
//! The Azure SDKs subscribe once and never again after reconnecting, so losing them would
//! silence twin notifications, methods and cloud-to-device messages for good.

use std::sync::Arc;

use outpost_core::{SessionStore, StoreError};
use outpost_model::HubName;

use std::time::Duration;

use crate::codec::{PacketId, QoS, SubAckReturnCode, topic_matches};
use crate::topics::{TopicOwner, subscription_allowed};

/// Identifies a session: the hub and the MQTT client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The hub.
    pub hub: HubName,
    /// The client id (`<device>` or `<device>/<module>`).
    pub client_id: String,
}

/// The persistent sessions of this server.
pub struct Sessions {
    store: Arc<dyn SessionStore>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    /// Keeps sessions in `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }

    /// Returns the stored subscriptions of `key` for a new connection, `None` when there is no
    /// session. With `clean_session` the stored session is discarded (§3.1.2.4).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn restore(
        &self,
        key: &SessionKey,
        clean_session: bool,
    ) -> Result<Option<Vec<(String, QoS)>>, StoreError> {
        if clean_session {
            self.store.delete_session(&key.hub, &key.client_id).await?;
            return Ok(None);
        }
        let Some(state) = self.store.load_session(&key.hub, &key.client_id).await? else {
            return Ok(None);
        };
        Ok(Some(decode(&state)))
    }

    /// Records a persistent session's subscriptions as they change, so that a connection taking
    /// over (or the next run of the server) finds them.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn save(&self, key: &SessionKey, subscriptions: &[(String, QoS)]) -> Result<(), StoreError> {
        self.store
            .save_session(&key.hub, &key.client_id, &encode(subscriptions))
            .await
    }
}

/// Encodes subscriptions as `<qos><filter>\n` lines (filters never contain a newline: the codec
/// rejects control characters in topics only partly, so they are length-checked on decode).
fn encode(subscriptions: &[(String, QoS)]) -> Vec<u8> {
    serde_json::to_vec(
        &subscriptions
            .iter()
            .map(|(filter, qos)| (filter.as_str(), qos.as_u8()))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default()
}

/// Decodes stored subscriptions; unreadable state counts as no subscriptions.
fn decode(state: &[u8]) -> Vec<(String, QoS)> {
    let Ok(pairs) = serde_json::from_slice::<Vec<(String, u8)>>(state) else {
        tracing::warn!("unreadable mqtt session state; starting with no subscriptions");
        return Vec::new();
    };
    pairs
        .into_iter()
        .filter_map(|(filter, qos)| QoS::from_u8(qos).map(|qos| (filter, qos)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_round_trip_and_garbage_is_empty() {
        let subscriptions = vec![
            ("$iothub/methods/POST/#".to_owned(), QoS::AtLeastOnce),
            ("a/#".to_owned(), QoS::AtMostOnce),
        ];
        assert_eq!(decode(&encode(&subscriptions)), subscriptions);
        assert!(decode(b"not json").is_empty());
    }
}

/// A connection's subscriptions: the pure rules of SUBSCRIBE and UNSUBSCRIBE (MQTT 3.1.1 §3.8,
/// §3.10) for an IoT Hub identity, with no I/O, so they are tested without sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions {
    filters: Vec<(String, QoS)>,
}

impl Subscriptions {
    /// Starts from restored subscriptions.
    pub fn from_restored(filters: Vec<(String, QoS)>) -> Self {
        Self { filters }
    }

    /// Applies a SUBSCRIBE and returns the SUBACK codes: filters outside the identity's topics
    /// fail (0x80); granted QoS is at most 1, as IoT Hub does not support QoS 2; subscribing to
    /// an existing filter replaces it (§3.8.4).
    pub fn subscribe(&mut self, requested: &[(String, QoS)], owner: TopicOwner<'_>) -> Vec<SubAckReturnCode> {
        requested
            .iter()
            .map(|(filter, qos)| {
                if !subscription_allowed(filter, owner) {
                    return SubAckReturnCode::Failure;
                }
                let granted = (*qos).min(QoS::AtLeastOnce);
                self.filters.retain(|(existing, _)| existing != filter);
                self.filters.push((filter.clone(), granted));
                SubAckReturnCode::Success(granted)
            })
            .collect()
    }

    /// Applies an UNSUBSCRIBE.
    pub fn unsubscribe(&mut self, filters: &[String]) {
        self.filters.retain(|(filter, _)| !filters.contains(filter));
    }

    /// Returns whether a topic the hub publishes matches a subscription.
    pub fn matches(&self, topic: &str) -> bool {
        self.filters
            .iter()
            .any(|(filter, _)| topic_matches(filter, topic))
    }

    /// Returns the filters with their granted QoS.
    pub fn filters(&self) -> &[(String, QoS)] {
        &self.filters
    }
}

/// Packet identifiers of the hub's QoS 1 PUBLISHes on one connection: 1, 2, … 65535, 1, …
/// (§2.3.1: non-zero).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketIds {
    last: u16,
}

impl PacketIds {
    /// Returns the next identifier.
    pub fn next_id(&mut self) -> PacketId {
        self.last = self.last.checked_add(1).unwrap_or(1);
        PacketId::new(self.last).unwrap_or_else(|| unreachable!("identifiers start at 1 and skip 0"))
    }
}

/// Returns how long a connection may stay silent: 1.5 × the keep-alive the client asked for, or
/// `None` for keep-alive 0 (§3.1.2.10).
pub fn keep_alive_window(keep_alive_secs: u16) -> Option<Duration> {
    (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500))
}

#[cfg(test)]
mod state_tests {
    use super::*;

    const DEV: TopicOwner<'static> = TopicOwner {
        device: "dev1",
        module: None,
    };

    #[test]
    fn subscriptions_grant_at_most_qos_1_refuse_foreign_filters_and_replace_duplicates() {
        let mut subscriptions = Subscriptions::default();
        let codes = subscriptions.subscribe(
            &[
                ("devices/dev1/messages/devicebound/#".into(), QoS::ExactlyOnce),
                ("devices/dev2/messages/devicebound/#".into(), QoS::AtLeastOnce),
                ("$iothub/methods/POST/#".into(), QoS::AtMostOnce),
            ],
            DEV,
        );
        assert_eq!(
            codes,
            [
                SubAckReturnCode::Success(QoS::AtLeastOnce),
                SubAckReturnCode::Failure,
                SubAckReturnCode::Success(QoS::AtMostOnce)
            ]
        );
        subscriptions.subscribe(&[("$iothub/methods/POST/#".into(), QoS::AtLeastOnce)], DEV);
        assert_eq!(subscriptions.filters().len(), 2);
        assert!(subscriptions.matches("$iothub/methods/POST/reboot/?$rid=1"));
        assert!(subscriptions.matches("devices/dev1/messages/devicebound/%24.mid=1"));
        subscriptions.unsubscribe(&["$iothub/methods/POST/#".into()]);
        assert!(!subscriptions.matches("$iothub/methods/POST/reboot/?$rid=1"));
    }

    #[test]
    fn packet_ids_skip_zero_when_they_wrap() {
        let mut ids = PacketIds { last: u16::MAX - 1 };
        assert_eq!(ids.next_id().get(), u16::MAX);
        assert_eq!(ids.next_id().get(), 1);
    }

    #[test]
    fn keep_alive_window_is_one_and_a_half_times() {
        assert_eq!(keep_alive_window(60), Some(Duration::from_secs(90)));
        assert_eq!(keep_alive_window(0), None);
    }
}
