//! The hub core: Outpost's use cases and the storage ports they run on.
//!
//! Layer: above the pure crates (`outpost-model`, `outpost-auth`), below the front doors
//! (`outpost-http`, later MQTT and AMQP) and the backends (`outpost-store`, later PostgreSQL).
//! It must not depend on codecs, axum, or any storage engine: front doors call its services,
//! backends implement its ports.
//!
//! * [`ports`]: storage traits (`HubStore`, `RegistryStore`) and the `Clock`.
//! * [`hubs`]: the hub directory, routing by host name.
//! * [`access`]: SAS authentication of service callers and the permission rules.
//! * [`registry`], [`twins`], [`bulk`]: device, module and twin use cases.
//! * [`metrics`]: Prometheus counters and the timed store decorator.
//! * [`error`]: [`CoreError`] (classified into `ErrorCode`) and [`StoreError`].
//! * [`testing`] (feature `testing`): the conformance suite every backend runs.

pub mod access;
pub mod bulk;
pub mod error;
pub mod hubs;
pub mod metrics;
pub mod ports;
pub mod registry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod twins;

use std::sync::Arc;

pub use access::{Caller, Permission, Principal};
pub use bulk::{BulkItem, BulkOutcome};
pub use error::{AuthFailure, CoreError, StoreError};
pub use hubs::Hubs;
pub use metrics::Metrics;
pub use outpost_model::{ErrorCode, HasErrorCode};
pub use ports::{
    Clock, DeviceCounts, DeviceRecord, Expected, HubStore, ModuleRecord, RegistryStore, Revision, Stored,
    SystemClock,
};
pub use registry::{DeviceSpec, ModuleSpec, Registry};
pub use twins::TwinWrite;

/// The storage backends one server runs on; `outpost-server` builds them from config.
#[derive(Clone)]
pub struct Backends {
    /// Hubs and policies.
    pub hubs: Arc<dyn HubStore>,
    /// Identities and twins.
    pub registry: Arc<dyn RegistryStore>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The hub's services, shared by every front door.
#[derive(Debug, Clone)]
pub struct Outpost {
    /// Every hub on the server.
    pub hubs: Arc<Hubs>,
    /// Identities and twins.
    pub registry: Arc<Registry>,
    /// Server metrics.
    pub metrics: Arc<Metrics>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
}

impl Outpost {
    /// Loads the hub directory and wires the services over `backends`.
    ///
    /// # Errors
    /// When the hub store cannot be read.
    pub async fn start(
        backends: Backends,
        twin_limits: outpost_model::TwinLimits,
    ) -> Result<Self, CoreError> {
        let metrics = Arc::new(Metrics::default());
        let hubs = Arc::new(Hubs::load(backends.hubs).await?);
        let store: Arc<dyn RegistryStore> = Arc::new(metrics::TimedRegistryStore::new(
            backends.registry,
            metrics.clone(),
        ));
        let registry = Arc::new(Registry::new(store, backends.clock.clone(), twin_limits));
        Ok(Self {
            hubs,
            registry,
            metrics,
            clock: backends.clock,
        })
    }
}
