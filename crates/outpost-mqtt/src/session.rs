//! Persistent MQTT sessions (clean session = false, MQTT 3.1.1 §3.1.2.4): the subscriptions
//! that survive a reconnect and a server restart, kept through the core's `SessionStore` port.
//! The Azure SDKs subscribe once and never again after reconnecting, so losing them would
//! silence twin notifications, methods and cloud-to-device messages for good.

use std::sync::Arc;

use outpost_core::{SessionStore, StoreError};
use outpost_model::HubName;

use crate::codec::QoS;

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
