//! Automatic device management and IoT Edge deployments (wire contract §5.2 "configurations",
//! §5.3 "Configuration"): configurations are stored per hub through the
//! [`ConfigurationStore`] port, and a background reconciler applies their content to the twins
//! their target condition selects.
//!
//! * `model`: the resource, its rules (id, content kinds, immutability, limits), its JSON.
//! * `content`: settings, priority resolution per path, merge patches, edge layers.
//! * `reconcile`: the pass over a hub's twins, system and custom metrics, the background task.
//! * `store`: the port and the in-memory store.
//! * `conformance` (feature `testing`): the port's conformance suite.
//!
//! The reconciler runs outside the twin write path: a pass per hub is woken by every
//! configuration change and runs at a fixed interval otherwise (Azure evaluates every five
//! minutes), so a twin whose tags change is picked up by the next pass.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod content;
pub mod model;
mod reconcile;
mod store;

use std::collections::HashMap;
use std::sync::Arc;

use outpost_model::{DeviceId, HubName};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use model::{
    Configuration, ConfigurationContent, ConfigurationKind, ConfigurationMetrics, ConfigurationSpec,
    ContentSpec, MAX_CONFIGURATIONS_PER_KIND, configuration_json,
};
pub use store::{ConfigurationStore, MemoryConfigurationStore};

use crate::access::{Caller, Permission};
use crate::registry::{CAS_ATTEMPTS, Registry, check_etag};
use crate::{CoreError, Expected, Hubs, StoreError};

/// Most configurations `GET /configurations` returns.
pub const MAX_LIST: usize = 1000;

/// The body of `POST /configurations/testQueries`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueriesTestInput {
    /// A target condition to check.
    pub target_condition: Option<String>,
    /// Custom metric queries to check, by name.
    pub custom_metric_queries: Option<std::collections::BTreeMap<String, String>>,
}

/// Configurations of every hub and their reconciler.
pub struct Configurations {
    store: Arc<dyn ConfigurationStore>,
    registry: Arc<Registry>,
    hubs: Arc<Hubs>,
    state: parking_lot::Mutex<HashMap<HubName, reconcile::HubState>>,
    wake: tokio::sync::Notify,
    pass: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Configurations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configurations").finish_non_exhaustive()
    }
}

fn not_found(id: &str) -> CoreError {
    CoreError::ConfigurationNotFound(id.to_owned())
}

impl Configurations {
    /// Builds the service over a store.
    pub fn new(store: Arc<dyn ConfigurationStore>, registry: Arc<Registry>, hubs: Arc<Hubs>) -> Self {
        Self {
            store,
            registry,
            hubs,
            state: parking_lot::Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns the store.
    pub fn store(&self) -> &Arc<dyn ConfigurationStore> {
        &self.store
    }

    fn render(&self, hub: &HubName, configuration: &Configuration) -> Value {
        let state = self.state.lock();
        let metrics = state.get(hub).and_then(|hub| hub.metrics_of(configuration));
        configuration_json(configuration, metrics)
    }

    /// Creates (no `If-Match`) or updates (`If-Match` given) a configuration, as
    /// `PUT /configurations/{id}`; returns its JSON and whether it was created.
    ///
    /// # Errors
    /// `ConfigurationAlreadyExists` on create of an existing id, `ConfigurationNotFound` on update
    /// of a missing one, `PreconditionFailed` on an etag mismatch, `InvalidArgument` for a body
    /// that breaks a rule, `IotHubQuotaExceeded` past the per-hub quota.
    pub async fn put(
        &self,
        caller: &Caller,
        id: &str,
        spec: ConfigurationSpec,
        if_match: Option<&str>,
    ) -> Result<(Value, bool), CoreError> {
        caller.require(Permission::RegistryWrite)?;
        let hub = &caller.hub().name;
        let now = self.registry.now();
        if if_match.is_none() {
            let configuration = model::new_configuration(id, spec, &self.registry.twin_limits, now)?;
            let family = |kind: ConfigurationKind| kind == ConfigurationKind::Edge;
            let same_family = self
                .store
                .list_configurations(hub)
                .await?
                .iter()
                .filter(|c| family(c.kind()) == family(configuration.kind()))
                .count();
            if same_family >= MAX_CONFIGURATIONS_PER_KIND {
                return Err(CoreError::QuotaExceeded(format!(
                    "the hub has {MAX_CONFIGURATIONS_PER_KIND} {} already",
                    if family(configuration.kind()) {
                        "edge deployments"
                    } else {
                        "device and module configurations"
                    }
                )));
            }
            return match self
                .store
                .put_configuration(hub, &configuration, Expected::Absent)
                .await
            {
                Ok(_) => {
                    self.wake.notify_one();
                    Ok((self.render(hub, &configuration), true))
                }
                Err(StoreError::Conflict) => Err(CoreError::ConfigurationAlreadyExists(id.to_owned())),
                Err(StoreError::ParentMissing) => Err(CoreError::HubNotFound(hub.to_string())),
                Err(other) => Err(other.into()),
            };
        }
        for _ in 0..CAS_ATTEMPTS {
            let stored = self
                .store
                .configuration(hub, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            check_etag(&stored.value.etag(), if_match)?;
            let configuration = model::updated_configuration(stored.value, spec.clone(), now)?;
            match self
                .store
                .put_configuration(hub, &configuration, Expected::Revision(stored.revision))
                .await
            {
                Ok(_) => {
                    self.wake.notify_one();
                    return Ok((self.render(hub, &configuration), false));
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(not_found(id)),
                Err(StoreError::ParentMissing) => return Err(CoreError::HubNotFound(hub.to_string())),
                Err(other) => return Err(other.into()),
            }
        }
        Err(CoreError::Contention)
    }

    /// Returns a configuration with its latest metrics.
    ///
    /// # Errors
    /// `ConfigurationNotFound`.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Value, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let hub = &caller.hub().name;
        let stored = self
            .store
            .configuration(hub, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(self.render(hub, &stored.value))
    }

    /// Returns up to `top` configurations, ordered by id.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self, caller: &Caller, top: Option<usize>) -> Result<Vec<Value>, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let hub = &caller.hub().name;
        let limit = top.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
        let configurations = self.store.list_configurations(hub).await?;
        Ok(configurations
            .iter()
            .take(limit)
            .map(|configuration| self.render(hub, configuration))
            .collect())
    }

    /// Deletes a configuration. Twins keep the values it set; where a lower-priority
    /// configuration sets the same paths, the next pass applies it.
    ///
    /// # Errors
    /// `ConfigurationNotFound`, `PreconditionFailed`.
    pub async fn delete(&self, caller: &Caller, id: &str, if_match: Option<&str>) -> Result<(), CoreError> {
        caller.require(Permission::RegistryWrite)?;
        let hub = &caller.hub().name;
        for _ in 0..CAS_ATTEMPTS {
            let stored = self
                .store
                .configuration(hub, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            check_etag(&stored.value.etag(), if_match)?;
            match self
                .store
                .delete_configuration(hub, id, Expected::Revision(stored.revision))
                .await
            {
                Ok(()) => {
                    self.wake.notify_one();
                    return Ok(());
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(not_found(id)),
                Err(other) => return Err(other.into()),
            }
        }
        Err(CoreError::Contention)
    }

    /// Checks a target condition and custom metric queries (`POST /configurations/testQueries`):
    /// `{"targetConditionError": "", "customMetricQueryErrors": {name: ""}}`, errors as text
    /// with their position, empty where fine.
    ///
    /// # Errors
    /// `IotHubUnauthorizedAccess` without RegistryRead.
    pub fn test_queries(&self, caller: &Caller, input: &QueriesTestInput) -> Result<Value, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let condition = input.target_condition.as_deref().unwrap_or_default();
        // A condition naming devices.modules is a module configuration's.
        let kind = if condition
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("from devices.modules")
        {
            ConfigurationKind::Module
        } else {
            ConfigurationKind::Device
        };
        let condition_error = model::parse_target(condition, kind).err().unwrap_or_default();
        let metric_errors: Map<String, Value> = input
            .custom_metric_queries
            .iter()
            .flatten()
            .map(|(name, query)| {
                let error = model::parse_metric(query).err().unwrap_or_default();
                (name.clone(), Value::String(error))
            })
            .collect();
        Ok(json!({
            "targetConditionError": condition_error,
            "customMetricQueryErrors": metric_errors,
        }))
    }

    /// Applies edge content (`modulesContent`) to one IoT Edge device at once
    /// (`POST /devices/{id}/applyConfigurationContent`): the `$edgeAgent`, `$edgeHub` and named
    /// module identities are created when missing, and every module twin is checked against the
    /// twin limits before any is written.
    ///
    /// # Errors
    /// `DeviceNotFound`; `InvalidArgument` for content without modules, a device that is not an
    /// IoT Edge device, or content over the twin limits.
    pub async fn apply_content(
        &self,
        caller: &Caller,
        device: &DeviceId,
        content: ContentSpec,
    ) -> Result<(), CoreError> {
        caller.require(Permission::RegistryWrite)?;
        let modules = content.modules_content.unwrap_or_default();
        if modules.is_empty() {
            return Err(CoreError::InvalidArgument(
                "modulesContent is required to apply content to an edge device".into(),
            ));
        }
        let modules = content::edge_modules(&modules).map_err(CoreError::InvalidArgument)?;
        let record = self.registry.load_device(caller, device).await?.value;
        if !record.device.capabilities.iot_edge {
            return Err(CoreError::InvalidArgument(format!(
                "device '{device}' is not an IoT Edge device"
            )));
        }
        let layers = modules
            .iter()
            .map(|(name, module)| (name.clone(), content::EdgeModule::layers_of(module)))
            .collect();
        self.apply_edge(caller, device, &layers).await
    }
}
