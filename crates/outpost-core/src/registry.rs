//! Registry use cases: device and module identities (wire contract §5.2).
//!
//! `If-Match` rules, shared by every write here: a quoted or bare etag must equal the current
//! one, `*` matches any existing record, and no header means "create" for PUT and
//! "unconditional" for DELETE.

use std::sync::Arc;

use outpost_model::{
    Authentication, Capabilities, ConnectionState, Device, DeviceId, DeviceStatus, Etag, HubName, Module,
    ModuleId, Timestamp, Twin, TwinLimits, new_generation_id,
};
use serde::Deserialize;

use crate::access::{Caller, Permission};
use crate::c2d::{C2dTarget, CloudToDeviceQueue};
use crate::presence::{IdentityKey, Presence};
use crate::routing::events::Lifecycle;
use crate::{
    Clock, CoreError, DeviceCounts, DeviceRecord, Expected, ModuleRecord, RegistryStore, StoreError,
};

/// Largest `top` of `GET /devices` (Azure's limit).
pub const MAX_LIST_DEVICES: usize = 1000;

/// How many times a compare-and-swap write is retried when another writer wins.
pub(crate) const CAS_ATTEMPTS: usize = 16;

/// The writable fields of a device, as a `PUT /devices/{id}` body carries them. Read-only
/// fields that SDKs echo back (`etag`, `generationId`, `connectionState`…) are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    /// Must equal the id in the path when present.
    pub device_id: Option<String>,
    /// Enabled or disabled.
    pub status: Option<DeviceStatus>,
    /// Free text explaining the status.
    pub status_reason: Option<String>,
    /// Credentials; empty keys are generated.
    pub authentication: Option<Authentication>,
    /// Capabilities.
    pub capabilities: Option<Capabilities>,
    /// Edge device scope.
    pub device_scope: Option<String>,
    /// Edge parent scopes.
    pub parent_scopes: Option<Vec<String>>,
}

/// The writable fields of a module, as a `PUT /devices/{id}/modules/{mid}` body carries them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSpec {
    /// Must equal the device id in the path when present.
    pub device_id: Option<String>,
    /// Must equal the module id in the path when present.
    pub module_id: Option<String>,
    /// Who manages the module.
    pub managed_by: Option<String>,
    /// Credentials; empty keys are generated.
    pub authentication: Option<Authentication>,
}

/// Device and module identities of the caller's hub.
pub struct Registry {
    pub(crate) store: Arc<dyn RegistryStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) twin_limits: TwinLimits,
    pub(crate) presence: Arc<Presence>,
    pub(crate) c2d_queue: Arc<dyn CloudToDeviceQueue>,
    /// Device job records, for `FROM devices.jobs` queries (set once by `Outpost::start`).
    pub(crate) job_store: std::sync::OnceLock<Arc<dyn crate::jobs::JobStore>>,
    /// Where twin-change and lifecycle events go (linked by `Routing::load`).
    pub events: crate::routing::EventPublisher,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("twin_limits", &self.twin_limits)
            .finish_non_exhaustive()
    }
}

/// Checks an optional `If-Match` header against the current etag.
pub(crate) fn check_etag(current: &Etag, if_match: Option<&str>) -> Result<(), CoreError> {
    match if_match {
        Some(wanted) if !current.matches_if_match(wanted) => Err(CoreError::PreconditionFailed),
        _ => Ok(()),
    }
}

fn check_path_id(body_id: Option<&str>, path_id: &str, field: &str) -> Result<(), CoreError> {
    match body_id {
        Some(body_id) if !body_id.is_empty() && body_id != path_id => Err(CoreError::InvalidArgument(
            format!("{field} '{body_id}' in the body does not match '{path_id}' in the path"),
        )),
        _ => Ok(()),
    }
}

impl Registry {
    /// Builds the registry service.
    pub fn new(
        store: Arc<dyn RegistryStore>,
        clock: Arc<dyn Clock>,
        twin_limits: TwinLimits,
        presence: Arc<Presence>,
        c2d_queue: Arc<dyn CloudToDeviceQueue>,
    ) -> Self {
        let events = crate::routing::EventPublisher::default();
        presence.link_events(events.clone());
        Self {
            store,
            clock,
            twin_limits,
            presence,
            c2d_queue,
            job_store: std::sync::OnceLock::new(),
            events,
        }
    }

    /// Returns the table of connected identities.
    pub fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    /// Sets the connection state of a device from the presence table (connection state is kept
    /// in memory: after a restart every device is disconnected anyway).
    pub(crate) fn with_presence(&self, hub: &HubName, mut device: Device) -> Device {
        let key = IdentityKey {
            hub: hub.clone(),
            device: device.device_id.clone(),
            module: None,
        };
        if let Some(since) = self.presence.connected_since(&key) {
            device.connection_state = ConnectionState::Connected;
            device.connection_state_updated_time = since;
        }
        device
    }

    /// Closes the connection of a deleted identity and drops its cloud-to-device queue.
    async fn forget_identity(&self, hub: &HubName, device: &DeviceId, module: Option<ModuleId>) {
        let key = IdentityKey {
            hub: hub.clone(),
            device: device.clone(),
            module: module.clone(),
        };
        self.presence.revoke(&key);
        let target = C2dTarget {
            device: device.clone(),
            module,
        };
        if let Err(error) = self.c2d_queue.purge(hub, &target).await {
            tracing::warn!(device = %device, error = %error, "drop the queue of a deleted identity failed");
        }
    }

    /// Sets the connection state of a module from the presence table.
    pub(crate) fn with_module_presence(&self, hub: &HubName, mut module: Module) -> Module {
        let key = IdentityKey {
            hub: hub.clone(),
            device: module.device_id.clone(),
            module: Some(module.module_id.clone()),
        };
        if let Some(since) = self.presence.connected_since(&key) {
            module.connection_state = ConnectionState::Connected;
            module.connection_state_updated_time = since;
        }
        module
    }

    /// Returns the number of connected devices of the caller's hub (`/statistics/service`).
    ///
    /// # Errors
    /// `IotHubUnauthorizedAccess` without ServiceConnect.
    pub fn connected_device_count(&self, caller: &Caller) -> Result<usize, CoreError> {
        caller.require(Permission::ServiceConnect)?;
        Ok(self.presence.connected_device_count(&caller.hub().name))
    }

    /// Returns the current time of the injected clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) async fn load_device(
        &self,
        caller: &Caller,
        id: &DeviceId,
    ) -> Result<crate::Stored<DeviceRecord>, CoreError> {
        self.store
            .device(&caller.hub().name, id)
            .await?
            .ok_or_else(|| CoreError::DeviceNotFound(id.clone()))
    }

    pub(crate) async fn load_module(
        &self,
        caller: &Caller,
        device: &DeviceId,
        module: &ModuleId,
    ) -> Result<crate::Stored<ModuleRecord>, CoreError> {
        self.store
            .module(&caller.hub().name, device, module)
            .await?
            .ok_or_else(|| CoreError::ModuleNotFound {
                device: device.clone(),
                module: module.clone(),
            })
    }

    /// Creates a device (no `If-Match`) or updates one (`If-Match` given), as `PUT /devices/{id}`.
    ///
    /// # Errors
    /// `DeviceAlreadyExists` on create of an existing id, `DeviceNotFound` on update of a missing
    /// one, `PreconditionFailed` on an etag mismatch, validation errors for the body.
    pub async fn put_device(
        &self,
        caller: &Caller,
        id: &DeviceId,
        spec: DeviceSpec,
        if_match: Option<&str>,
    ) -> Result<Device, CoreError> {
        caller.require(Permission::RegistryWrite)?;
        check_path_id(spec.device_id.as_deref(), id.as_str(), "deviceId")?;
        let hub = &caller.hub().name;
        if if_match.is_none() {
            let now = self.now();
            let device = new_device(id.clone(), spec, now)?;
            let record = DeviceRecord {
                device,
                twin: Twin::new(now),
            };
            return match self.store.put_device(hub, &record, Expected::Absent).await {
                Ok(_) => {
                    self.publish_lifecycle(hub, id, None, Lifecycle::Created, &record.twin)
                        .await;
                    Ok(record.device)
                }
                Err(StoreError::Conflict) => Err(CoreError::DeviceAlreadyExists(id.clone())),
                // The hub was deleted while the request ran.
                Err(StoreError::ParentMissing) => Err(CoreError::HubNotFound(hub.to_string())),
                Err(other) => Err(other.into()),
            };
        }
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.load_device(caller, id).await?;
            check_etag(&stored.value.device.etag, if_match)?;
            let mut record = stored.value;
            record.device = updated_device(record.device, spec.clone(), self.now())?;
            match self
                .store
                .put_device(hub, &record, Expected::Revision(stored.revision))
                .await
            {
                Ok(_) => {
                    if record.device.status == DeviceStatus::Disabled {
                        // IoT Hub drops the connections of a device that is disabled.
                        let key = IdentityKey {
                            hub: hub.clone(),
                            device: id.clone(),
                            module: None,
                        };
                        self.presence.revoke(&key);
                    }
                    return Ok(self.with_presence(hub, record.device));
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(CoreError::DeviceNotFound(id.clone())),
                Err(other) => return Err(other.into()),
            }
        }
        Err(CoreError::Contention)
    }

    /// Returns a device.
    ///
    /// # Errors
    /// `DeviceNotFound`.
    pub async fn device(&self, caller: &Caller, id: &DeviceId) -> Result<Device, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let device = self.load_device(caller, id).await?.value.device;
        Ok(self.with_presence(&caller.hub().name, device))
    }

    /// Deletes a device, its modules and twins.
    ///
    /// # Errors
    /// `DeviceNotFound`, `PreconditionFailed`.
    pub async fn delete_device(
        &self,
        caller: &Caller,
        id: &DeviceId,
        if_match: Option<&str>,
    ) -> Result<(), CoreError> {
        caller.require(Permission::RegistryWrite)?;
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.load_device(caller, id).await?;
            check_etag(&stored.value.device.etag, if_match)?;
            let modules = self.store.list_modules(&caller.hub().name, id).await?;
            match self
                .store
                .delete_device(&caller.hub().name, id, Expected::Revision(stored.revision))
                .await
            {
                Ok(()) => {
                    self.publish_device_deleted(&caller.hub().name, &stored.value, &modules)
                        .await;
                    let targets =
                        std::iter::once(None).chain(modules.into_iter().map(|m| Some(m.module.module_id)));
                    for module in targets {
                        self.forget_identity(&caller.hub().name, id, module).await;
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(CoreError::DeviceNotFound(id.clone())),
                Err(other) => return Err(other.into()),
            }
        }
        Err(CoreError::Contention)
    }

    /// Returns up to `top` devices ordered by id (`GET /devices?top=N`).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn list_devices(&self, caller: &Caller, top: usize) -> Result<Vec<Device>, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let limit = top.clamp(1, MAX_LIST_DEVICES);
        let records = self.store.list_devices(&caller.hub().name, None, limit).await?;
        let hub = &caller.hub().name;
        Ok(records
            .into_iter()
            .map(|record| self.with_presence(hub, record.device))
            .collect())
    }

    /// Returns the hub's device counts (`GET /statistics/devices`).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn device_counts(&self, caller: &Caller) -> Result<DeviceCounts, CoreError> {
        caller.require(Permission::RegistryRead)?;
        Ok(self.store.device_counts(&caller.hub().name).await?)
    }

    /// Creates or updates a module, as `PUT /devices/{id}/modules/{mid}`.
    ///
    /// # Errors
    /// As [`Registry::put_device`], with `ModuleAlreadyExistsOnDevice`/`ModuleNotFound`, and
    /// `DeviceNotFound` when the device does not exist.
    pub async fn put_module(
        &self,
        caller: &Caller,
        device_id: &DeviceId,
        module_id: &ModuleId,
        spec: ModuleSpec,
        if_match: Option<&str>,
    ) -> Result<Module, CoreError> {
        caller.require(Permission::RegistryWrite)?;
        check_path_id(spec.device_id.as_deref(), device_id.as_str(), "deviceId")?;
        check_path_id(spec.module_id.as_deref(), module_id.as_str(), "moduleId")?;
        let hub = &caller.hub().name;
        if if_match.is_none() {
            let now = self.now();
            let module = Module {
                module_id: module_id.clone(),
                managed_by: spec.managed_by,
                device_id: device_id.clone(),
                generation_id: new_generation_id(),
                etag: Etag::generate(),
                connection_state: ConnectionState::Disconnected,
                connection_state_updated_time: Timestamp::NEVER,
                last_activity_time: Timestamp::NEVER,
                cloud_to_device_message_count: 0,
                authentication: spec.authentication.unwrap_or_default().completed(None)?,
            };
            let record = ModuleRecord {
                module,
                twin: Twin::new(now),
            };
            return match self.store.put_module(hub, &record, Expected::Absent).await {
                Ok(_) => {
                    let (device, module) = (device_id, Some(module_id));
                    self.publish_lifecycle(hub, device, module, Lifecycle::Created, &record.twin)
                        .await;
                    Ok(record.module)
                }
                Err(StoreError::Conflict) => Err(CoreError::ModuleAlreadyExists {
                    device: device_id.clone(),
                    module: module_id.clone(),
                }),
                Err(StoreError::ParentMissing) => Err(CoreError::DeviceNotFound(device_id.clone())),
                Err(other) => Err(other.into()),
            };
        }
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.load_module(caller, device_id, module_id).await?;
            check_etag(&stored.value.module.etag, if_match)?;
            let mut record = stored.value;
            if let Some(authentication) = spec.authentication.clone() {
                record.module.authentication =
                    authentication.completed(Some(&record.module.authentication))?;
            }
            if spec.managed_by.is_some() {
                record.module.managed_by.clone_from(&spec.managed_by);
            }
            record.module.etag = Etag::generate();
            match self
                .store
                .put_module(hub, &record, Expected::Revision(stored.revision))
                .await
            {
                Ok(_) => return Ok(record.module),
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound | StoreError::ParentMissing) => {
                    return Err(CoreError::ModuleNotFound {
                        device: device_id.clone(),
                        module: module_id.clone(),
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(CoreError::Contention)
    }

    /// Returns a module.
    ///
    /// # Errors
    /// `ModuleNotFound`.
    pub async fn module(
        &self,
        caller: &Caller,
        device_id: &DeviceId,
        module_id: &ModuleId,
    ) -> Result<Module, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let module = self.load_module(caller, device_id, module_id).await?.value.module;
        Ok(self.with_module_presence(&caller.hub().name, module))
    }

    /// Returns every module of a device.
    ///
    /// # Errors
    /// `DeviceNotFound` when the device does not exist.
    pub async fn list_modules(
        &self,
        caller: &Caller,
        device_id: &DeviceId,
    ) -> Result<Vec<Module>, CoreError> {
        caller.require(Permission::RegistryRead)?;
        self.load_device(caller, device_id).await?;
        let records = self.store.list_modules(&caller.hub().name, device_id).await?;
        let hub = &caller.hub().name;
        Ok(records
            .into_iter()
            .map(|record| self.with_module_presence(hub, record.module))
            .collect())
    }

    /// Deletes a module and its twin.
    ///
    /// # Errors
    /// `ModuleNotFound`, `PreconditionFailed`.
    pub async fn delete_module(
        &self,
        caller: &Caller,
        device_id: &DeviceId,
        module_id: &ModuleId,
        if_match: Option<&str>,
    ) -> Result<(), CoreError> {
        caller.require(Permission::RegistryWrite)?;
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.load_module(caller, device_id, module_id).await?;
            check_etag(&stored.value.module.etag, if_match)?;
            let expected = Expected::Revision(stored.revision);
            match self
                .store
                .delete_module(&caller.hub().name, device_id, module_id, expected)
                .await
            {
                Ok(()) => {
                    let (hub, twin) = (&caller.hub().name, &stored.value.twin);
                    self.publish_lifecycle(hub, device_id, Some(module_id), Lifecycle::Deleted, twin)
                        .await;
                    self.forget_identity(&caller.hub().name, device_id, Some(module_id.clone()))
                        .await;
                    return Ok(());
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => {
                    return Err(CoreError::ModuleNotFound {
                        device: device_id.clone(),
                        module: module_id.clone(),
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(CoreError::Contention)
    }
}

/// Builds a new device from a create request.
pub(crate) fn new_device(id: DeviceId, spec: DeviceSpec, now: Timestamp) -> Result<Device, CoreError> {
    let status = spec.status.unwrap_or_default();
    let capabilities = spec.capabilities.unwrap_or_default();
    let generation_id = new_generation_id();
    let device_scope = spec
        .device_scope
        .or_else(|| capabilities.iot_edge.then(|| edge_scope(&id, &generation_id)));
    Ok(Device {
        device_id: id,
        generation_id,
        etag: Etag::generate(),
        connection_state: ConnectionState::Disconnected,
        status,
        status_reason: spec.status_reason,
        connection_state_updated_time: Timestamp::NEVER,
        status_updated_time: if status == DeviceStatus::Enabled {
            Timestamp::NEVER
        } else {
            now
        },
        last_activity_time: Timestamp::NEVER,
        cloud_to_device_message_count: 0,
        authentication: spec.authentication.unwrap_or_default().completed(None)?,
        capabilities,
        device_scope,
        parent_scopes: spec.parent_scopes.unwrap_or_default(),
    })
}

/// Returns the scope Azure generates for an IoT Edge device: children name it as their parent.
fn edge_scope(id: &DeviceId, generation_id: &str) -> String {
    format!("ms-azure-iot-edge://{id}-{generation_id}")
}

/// Applies an update request to an existing device; absent fields keep their values.
pub(crate) fn updated_device(
    mut device: Device,
    spec: DeviceSpec,
    now: Timestamp,
) -> Result<Device, CoreError> {
    if let Some(status) = spec.status {
        if status != device.status {
            device.status_updated_time = now;
        }
        device.status = status;
    }
    if spec.status_reason.is_some() {
        device.status_reason = spec.status_reason;
    }
    if let Some(authentication) = spec.authentication {
        device.authentication = authentication.completed(Some(&device.authentication))?;
    }
    if let Some(capabilities) = spec.capabilities {
        device.capabilities = capabilities;
    }
    if spec.device_scope.is_some() {
        device.device_scope = spec.device_scope;
    }
    if device.capabilities.iot_edge && device.device_scope.is_none() {
        device.device_scope = Some(edge_scope(&device.device_id, &device.generation_id));
    }
    if let Some(parent_scopes) = spec.parent_scopes {
        device.parent_scopes = parent_scopes;
    }
    device.etag = Etag::generate();
    Ok(device)
}
