//! Message routing: every device message and system event goes through the hub's routes to its
//! endpoints, at least once (`docs/routing.md`).
//!
//! * [`model`]: the configuration (endpoints, routes, fallback, enrichments) and its checks.
//! * [`router`]: evaluation: which endpoints a message goes to, with which enrichments.
//! * [`events`]: the system events (twin changes, lifecycle, connection state, device jobs, file
//!   uploads) in Azure's shapes.
//! * [`sink`]: what endpoints take ([`EndpointSink`]) and the ports they write through.
//! * [`delivery`]: one worker per endpoint and ingest partition: read from a durable checkpoint,
//!   batch, deliver, retry with back-off, dead-letter; endpoint health.
//! * [`stream`], [`storage`], [`webhook`]: the endpoint kinds.
//! * [`store`]: the [`RoutingStore`] port (configuration, checkpoints).
//!
//! Routing happens once, when the hub accepts a message: [`Routing::stamp`] writes the chosen
//! endpoints into the message (`Message::deliveries`) before it is appended to the hub's log. The
//! built-in endpoint serves the messages stamped `events`; every other endpoint's worker reads the
//! log from its checkpoint and takes the messages stamped with its name.

pub mod delivery;
pub mod events;
pub mod model;
pub mod router;
pub mod sink;
pub mod storage;
pub mod storage_names;
pub mod store;
pub mod stream;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use outpost_model::{Hub, HubName, LogName, Message, partition_for};
use parking_lot::RwLock;
use serde_json::Value;

pub use delivery::{EndpointHealth, EndpointPorts, HealthStatus};
pub use model::{Endpoint, EndpointKind, Enrichment, Route, RoutingConfig, RoutingSource};
pub use router::Router;
pub use sink::{
    BatchPolicy, DeliveryError, EndpointSink, RoutedBatch, RoutedEvent, StorageTarget, WebhookClient,
};
pub use store::{MemoryRoutingStore, RoutingStore};

use crate::presence::IdentityKey;
use crate::{Clock, CoreError, EventLog, Hubs, Registry};

/// The routing service of every hub.
pub struct Routing {
    store: Arc<dyn RoutingStore>,
    log: Arc<dyn EventLog>,
    hubs: Arc<Hubs>,
    registry: Arc<Registry>,
    routers: RwLock<HashMap<HubName, Arc<Router>>>,
    /// Serializes configuration changes (read, check, write, restart workers).
    admin: tokio::sync::Mutex<()>,
    delivery: delivery::Deliveries,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing").finish_non_exhaustive()
    }
}

impl Routing {
    /// Loads every hub's routing configuration (Azure's default for hubs without one).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn load(
        store: Arc<dyn RoutingStore>,
        log: Arc<dyn EventLog>,
        hubs: Arc<Hubs>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, CoreError> {
        let mut routers = HashMap::new();
        for hub in hubs.list() {
            if let Some(config) = store.routing_config(&hub.name).await? {
                routers.insert(hub.name.clone(), Arc::new(Router::new(config)));
            }
        }
        let delivery = delivery::Deliveries::new(store.clone(), log.clone(), clock);
        let routing = Arc::new(Self {
            store,
            log,
            hubs,
            registry: registry.clone(),
            routers: RwLock::new(routers),
            admin: tokio::sync::Mutex::new(()),
            delivery,
        });
        registry.events.connect(&routing);
        Ok(routing)
    }

    /// Returns the hub's compiled routes (Azure's default when none were configured).
    pub fn router(&self, hub: &HubName) -> Arc<Router> {
        if let Some(router) = self.routers.read().get(hub) {
            return router.clone();
        }
        static DEFAULT: OnceLock<Arc<Router>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| Arc::new(Router::new(RoutingConfig::default())))
            .clone()
    }

    /// Returns the hub's routing configuration.
    pub fn config(&self, hub: &HubName) -> RoutingConfig {
        self.router(hub).config().clone()
    }

    /// Starts the delivery workers of every hub's endpoints, writing through `ports`. Until
    /// then messages for custom endpoints wait in the log.
    pub async fn start_delivery(&self, ports: EndpointPorts) {
        self.delivery.set_ports(ports);
        for hub in self.hubs.list() {
            let router = self.router(&hub.name);
            self.delivery.reconcile(&hub, router.config()).await;
        }
    }

    /// Stops every delivery worker and waits for them (server shutdown): a worker stops when
    /// idle or between retries, never between a delivery and its checkpoint.
    pub async fn stop_delivery(&self) {
        self.delivery.stop_all().await;
    }

    /// Returns the health of the hub's endpoints (custom ones; the built-in endpoint is served
    /// from the log directly and always healthy).
    pub fn health(&self, hub: &HubName) -> Vec<EndpointHealth> {
        self.delivery.health(hub)
    }

    /// Returns the health of every hub's endpoints (for `/metrics`).
    pub fn all_health(&self) -> Vec<(HubName, EndpointHealth)> {
        self.delivery.all_health()
    }

    /// Checks and stores a hub's whole routing configuration, then applies it: new messages are
    /// routed by it at once; workers of removed endpoints stop and forget their checkpoints;
    /// new endpoints start at the end of the log (Azure: routes apply to messages that arrive
    /// after the change).
    ///
    /// # Errors
    /// `ArgumentInvalid` for a configuration that fails [`RoutingConfig::validate`]; `HubNotFound`;
    /// storage failures.
    pub async fn set_config(
        &self,
        hub_name: &str,
        config: RoutingConfig,
    ) -> Result<RoutingConfig, CoreError> {
        let _admin = self.admin.lock().await;
        self.set_config_locked(hub_name, config).await
    }

    /// Changes a hub's configuration with `change` (read, modify, check, write as one step:
    /// concurrent changes all stay).
    ///
    /// # Errors
    /// What `change` returns, and as [`Routing::set_config`].
    pub async fn update_config(
        &self,
        hub: &HubName,
        change: impl FnOnce(&mut RoutingConfig) -> Result<(), CoreError>,
    ) -> Result<RoutingConfig, CoreError> {
        let _admin = self.admin.lock().await;
        let mut config = self.config(hub);
        change(&mut config)?;
        self.set_config_locked(hub.as_str(), config).await
    }

    async fn set_config_locked(
        &self,
        hub_name: &str,
        config: RoutingConfig,
    ) -> Result<RoutingConfig, CoreError> {
        let hub = self
            .hubs
            .by_name(hub_name)
            .ok_or_else(|| CoreError::HubNotFound(hub_name.to_owned()))?;
        config.validate(&hub.name, &hub.host_name)?;
        let previous = self.config(&hub.name);
        // Streams first: a route may only point at a log that exists.
        for endpoint in &config.endpoints {
            if let EndpointKind::EventStream { partition_count, .. } = endpoint.kind {
                let log = LogName::stream(&hub.name, &endpoint.name);
                self.log
                    .ensure_partitions(&log, partition_count)
                    .await
                    .map_err(|error| match error {
                        crate::StoreError::Conflict => CoreError::InvalidArgument(format!(
                            "event stream '{}' exists with another partition count; delete it first",
                            endpoint.name
                        )),
                        other => other.into(),
                    })?;
            }
        }
        // A new endpoint starts at the log's end: save its checkpoints before routing to it.
        for endpoint in &config.endpoints {
            if previous.endpoint(endpoint.name.as_str()).is_none() {
                self.delivery.start_at_end(&hub, &endpoint.name).await?;
            }
        }
        self.store.put_routing_config(&hub.name, &config).await?;
        self.routers
            .write()
            .insert(hub.name.clone(), Arc::new(Router::new(config.clone())));
        self.delivery.reconcile(&hub, &config).await;
        for removed in previous
            .endpoints
            .iter()
            .filter(|old| config.endpoint(old.name.as_str()).is_none())
        {
            self.store
                .delete_checkpoints(&hub.name, removed.name.as_str())
                .await?;
            // A deleted stream's events go with it (its readers see the entity disappear).
            if matches!(removed.kind, EndpointKind::EventStream { .. }) {
                let log = LogName::stream(&hub.name, &removed.name);
                if let Err(error) = self.log.drop_log(&log).await {
                    tracing::warn!(hub = %hub.name, stream = %removed.name, %error, "deleted stream's log not removed");
                }
            }
        }
        Ok(config)
    }

    /// Forgets a deleted hub's routing (its logs go with the hub's event log).
    pub fn drop_hub(&self, hub: &HubName) {
        self.routers.write().remove(hub);
        self.delivery.stop_hub(hub);
    }

    /// Routes a device's messages: stamps each with its deliveries. Loads the sender's twin
    /// only when a route or enrichment reads `$twin`.
    pub async fn stamp(&self, hub: &Hub, sender: &IdentityKey, messages: &mut [Message]) {
        let router = self.router(&hub.name);
        let twin = if router.needs_twin(RoutingSource::DeviceMessages) {
            self.registry.routing_twin(sender).await
        } else {
            None
        };
        for message in messages {
            message.deliveries = router.route(hub.name.as_str(), message, twin.as_ref());
        }
    }

    /// Routes a system event and appends it to the hub's log when a route takes it; resolves
    /// once it is durable. Failures are logged, never returned: the operation that caused the
    /// event has already happened.
    pub async fn publish(&self, hub_name: &HubName, source: RoutingSource, build: impl FnOnce() -> Message) {
        let router = self.router(hub_name);
        if !router.wants(source) {
            return;
        }
        let Some(hub) = self.hubs.by_name(hub_name.as_str()) else {
            return;
        };
        let mut message = build();
        let twin = if router.needs_twin(source) {
            let key = event_identity(&hub, &message);
            match key {
                Some(key) => self.registry.routing_twin(&key).await,
                None => None,
            }
        } else {
            None
        };
        message.deliveries = router.route(hub.name.as_str(), &message, twin.as_ref());
        if message.deliveries.is_empty() {
            return;
        }
        let partition = outpost_model::DeviceId::new(&message.annotations.device_id)
            .map_or(0, |device| partition_for(&device, hub.partition_count));
        if let Err(error) = self
            .log
            .append(&LogName::hub(&hub.name), partition, vec![message.encode()])
            .await
        {
            tracing::warn!(hub = %hub.name, source = source.message_source(), %error, "system event not stored");
        }
    }

    /// Evaluates a route's condition against a sample message and twin without sending anything
    /// (`outpost route test`, Azure's `az iot hub message-route test`).
    ///
    /// # Errors
    /// `ArgumentInvalid` when the condition does not parse.
    pub fn test_condition(
        condition: &str,
        message: &Message,
        twin: Option<&Value>,
    ) -> Result<bool, CoreError> {
        let condition = outpost_query::Condition::parse(condition)
            .map_err(|error| CoreError::InvalidArgument(format!("the condition is invalid: {error}")))?;
        Ok(Router::condition_holds(&condition, message, twin))
    }
}

/// The identity a system event is about, for its `$twin`.
fn event_identity(hub: &Hub, message: &Message) -> Option<IdentityKey> {
    let device = outpost_model::DeviceId::new(&message.annotations.device_id).ok()?;
    let module = match &message.annotations.module_id {
        Some(module) => Some(outpost_model::ModuleId::new(module).ok()?),
        None => None,
    };
    Some(IdentityKey {
        hub: hub.name.clone(),
        device,
        module,
    })
}

/// How the registry and other services reach routing to publish system events without owning
/// it (routing reads twins through the registry, so the link is set after both exist).
#[derive(Clone, Default)]
pub struct EventPublisher(Arc<OnceLock<Weak<Routing>>>);

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher").finish_non_exhaustive()
    }
}

impl EventPublisher {
    /// Links the publisher to the routing service.
    pub fn connect(&self, routing: &Arc<Routing>) {
        let _ = self.0.set(Arc::downgrade(routing));
    }

    /// Publishes a system event (built only when a route wants its source).
    pub async fn publish(&self, hub: &HubName, source: RoutingSource, build: impl FnOnce() -> Message) {
        if let Some(routing) = self.0.get().and_then(Weak::upgrade) {
            routing.publish(hub, source, build).await;
        }
    }

    /// Returns whether a route of the hub reads `source` (to skip work for events nobody wants).
    pub fn wants(&self, hub: &HubName, source: RoutingSource) -> bool {
        self.0
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|routing| routing.router(hub).wants(source))
    }
}

impl Registry {
    /// Returns an identity's twin as `$twin` reads it, or `None` when it cannot be read.
    pub(crate) async fn routing_twin(&self, key: &IdentityKey) -> Option<Value> {
        match self.load_identity(key).await {
            Ok((_, record)) => Some(record.twin_json()),
            Err(error) => {
                tracing::debug!(device = %key.device, %error, "routing: twin unavailable, $twin is undefined");
                None
            }
        }
    }
}
