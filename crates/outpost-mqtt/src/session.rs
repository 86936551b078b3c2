//! Persistent MQTT sessions (clean session = false, MQTT 3.1.1 §3.1.2.4): what survives a
//! reconnect. Kept in memory: after a server restart devices re-subscribe, and the Azure SDKs
//! always do.

use std::collections::HashMap;

use outpost_model::HubName;
use parking_lot::Mutex;

use crate::codec::QoS;

/// Identifies a session: the hub and the MQTT client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The hub.
    pub hub: HubName,
    /// The client id (`<device>` or `<device>/<module>`).
    pub client_id: String,
}

/// The state a persistent session keeps between connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSession {
    /// Topic filters with their granted QoS.
    pub subscriptions: Vec<(String, QoS)>,
}

/// The persistent sessions of this server.
#[derive(Debug, Default)]
pub struct Sessions {
    stored: Mutex<HashMap<SessionKey, StoredSession>>,
}

impl Sessions {
    /// Returns the stored session of `key` for a new connection. With `clean_session` the stored
    /// session is discarded and `None` returned (§3.1.2.4).
    pub fn restore(&self, key: &SessionKey, clean_session: bool) -> Option<StoredSession> {
        let mut stored = self.stored.lock();
        if clean_session {
            stored.remove(key);
            return None;
        }
        stored.get(key).cloned()
    }

    /// Records a persistent session's subscriptions as they change, so that a connection taking
    /// over from a live one (same client id) finds them at once.
    pub fn save(&self, key: &SessionKey, subscriptions: &[(String, QoS)]) {
        self.stored.lock().insert(
            key.clone(),
            StoredSession {
                subscriptions: subscriptions.to_vec(),
            },
        );
    }
}
