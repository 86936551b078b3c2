//! The hub-facing side of the AMQP door: the async connection driver of the built-in Event
//! Hubs-compatible endpoint (wire reference §7), the service links (§6) and the device links (§3).
//! It owns a stream (TLS or plain TCP), feeds the sans-IO [`Engine`](crate::engine::Engine) and
//! answers its events against the hub core: the codec and the engine stay pure.
//!
//! Modules: `connection` (the loop, link routing by address, per-link send queues, metrics),
//! `links` (the link table, counted), `auth` (SAS claims), `requests` (`$cbs`, `$management`, the
//! redirect), `partition` + `eventhub` + `epoch` (Event Hubs receivers), `service` (C2D send,
//! feedback, file notifications), `device` (telemetry, C2D, twin, methods), `text` (how AMQP
//! values become the hub's text).
//!
//! What a connection serves:
//!
//! | what | how |
//! |---|---|
//! | SASL | `ANONYMOUS` and `MSSBCBS` (authorization follows on `$cbs`), `PLAIN` with a SAS token as password, `EXTERNAL` with a TLS client certificate; no SASL at all (a bare AMQP header) too |
//! | X.509 devices | the TLS client certificate chain: device links of an identity no token covers are authenticated with it (thumbprint or registered CA), as MQTT does |
//! | hub | picked by the open's hostname, the SASL hostname, or the host of the first token (like the HTTP API by `Host`); a token for another hub is refused |
//! | `$cbs` | `put-token`: a SAS token of a policy with `ServiceConnect` (service nodes), signed with the key's text (Event Hubs) or the decoded key (IoT Hub), or of a device or module (its own key, checked against the registry, or a `DeviceConnect` policy: device links only); answered with `status-code` 200, or 401 |
//! | entities | `<hub>`: the hub's log as the built-in endpoint (only messages routed to `events`, with its enrichments); `<stream>`: each custom event stream of the hub's routing, its own log, partitions and consumer groups (`entity`); names case-insensitive |
//! | `$management` | `READ` of `com.microsoft:eventhub` and `com.microsoft:partition` of an entity |
//! | receivers | `[amqps://<host>/]<entity>/ConsumerGroups/<cg>/Partitions/<n>` with the selector filter, events read from the [`EventLog`] as the receiver gives credit; `<cg>` is `$Default`, a consumer group made with the operator API (the hub's entity) or configured on the stream (case-insensitive), else `amqp:not-found`; deleting the group or the stream detaches its receivers with `amqp:not-found` |
//! | epoch receivers | `com.microsoft:epoch` (long): a higher (or equal) epoch takes the partition of the entity's consumer group from lower-epoch and non-epoch receivers on any connection, detached with `amqp:link:stolen`; a lower epoch, or no epoch while an epoch receiver holds it, is refused with `amqp:link:stolen` |
//! | runtime metric | desired capability `com.microsoft:enable-receiver-runtime-metric`: offered back, and every event carries the partition's last enqueued event as delivery annotations |
//! | redirect | a receiver on IoT Hub's `[amqps://<host>/]messages/events/$management` (or `…/ConsumerGroups/<cg>/Partitions/<n>`) with a token for `<host>/messages/events` (SASL PLAIN `<policy>@sas.root.<hub>`): detached with `amqp:link:redirect` to the same node of the event hub (§7.7) |
//!
//! The event hub's name is the hub's name, as `outpost hub connection-string --eventhub` prints it;
//! a custom event stream is the event hub named like the stream (`EntityPath=<stream>`).
//!
//! | service links | `/messages/devicebound` (C2D send), `/messages/serviceBound/feedback`, `/messages/serviceBound/filenotifications`: see `service` |
//! | device links | `/devices/<d>[/modules/<m>]/messages/events`, `…/messages/devicebound`, `…/twin`, `…/methods/devicebound`: see `device` |

mod auth;
mod connection;
mod device;
mod entity;
mod epoch;
mod eventhub;
mod links;
mod partition;
mod requests;
mod service;
mod text;

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
    /// The port of the AMQP over TLS listener, which `amqp:link:redirect` names (wire reference
    /// §7.7).
    pub redirect_port: u16,
}

impl std::fmt::Debug for DoorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorContext")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}
