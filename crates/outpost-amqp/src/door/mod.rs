//! The hub-facing side of the AMQP door: the async connection driver of the built-in Event
//! Hubs-compatible endpoint (wire reference §7). It owns a stream (TLS or plain TCP), feeds the
//! sans-IO [`Engine`](crate::engine::Engine) and answers its events against the hub core: the
//! codec and the engine stay pure.
//!
//! What a connection serves:
//!
//! | what | how |
//! |---|---|
//! | SASL | `ANONYMOUS` and `MSSBCBS` (authorization follows on `$cbs`), `PLAIN` with a SAS token as password; no SASL at all (a bare AMQP header) too |
//! | hub | picked by the open's hostname, the SASL hostname, or the host of the first token (like the HTTP API by `Host`); a token for another hub is refused |
//! | `$cbs` | `put-token`: a SAS token of a policy with `ServiceConnect`, signed with the key's text (Event Hubs) or the decoded key (IoT Hub); answered with `status-code` 200, or 401 |
//! | `$management` | `READ` of `com.microsoft:eventhub` and `com.microsoft:partition` |
//! | receivers | `[amqps://<host>/]<hub>/ConsumerGroups/$Default/Partitions/<n>` with the selector filter, events read from the [`EventLog`] as the receiver gives credit |
//!
//! The event hub's name is the hub's name, as `outpost hub connection-string --eventhub` prints it.
//!
//! | epoch receivers | `com.microsoft:epoch` (long): a higher (or equal) epoch takes the partition of the hub's consumer group from lower-epoch and non-epoch receivers on any connection, detached with `amqp:link:stolen`; a lower epoch, or no epoch while an epoch receiver holds it, is refused with `amqp:link:stolen` |
//!
//! Not yet (TODO(#5)): the `amqp:link:redirect` of IoT Hub connection strings (§7.7), other consumer groups, the receiver
//! runtime metric, service-side C2D and feedback links (§6).

mod auth;
mod connection;
mod device;
mod epoch;
mod eventhub;
mod partition;
mod requests;
mod service;

use std::sync::Arc;

use outpost_core::{Clock, EventLog, Hubs, Outpost};

pub use connection::serve_connection;
pub use epoch::Receivers;

use crate::engine::EngineConfig;

/// What every connection of the endpoint shares.
#[derive(Clone)]
pub struct DoorContext {
    /// The hubs (host names, policies).
    pub hubs: Arc<Hubs>,
    /// The telemetry log the receivers read.
    pub log: Arc<dyn EventLog>,
    /// Wall-clock time (token expiry).
    pub clock: Arc<dyn Clock>,
    /// The engine's limits.
    pub engine: EngineConfig,
    /// The partition receivers of all connections (epoch receivers).
    pub receivers: Arc<Receivers>,
    /// The hub's services (cloud-to-device, telemetry, twins, methods) for service and device links.
    pub outpost: Outpost,
}

impl std::fmt::Debug for DoorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorContext")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}
