//! Device and module records treated alike where the rules are the same (twins): loading by
//! [`IdentityKey`] and changing a twin under compare-and-swap.

use outpost_model::{HubName, Twin};

use crate::presence::IdentityKey;
use crate::registry::{CAS_ATTEMPTS, Registry, check_etag};
use crate::{CoreError, DeviceRecord, Expected, ModuleRecord, Revision, StoreError};

/// A device's or a module's record.
#[derive(Debug, Clone)]
pub(crate) enum IdentityRecord {
    Device(DeviceRecord),
    Module(ModuleRecord),
}

impl IdentityRecord {
    /// Returns the identity's twin.
    pub(crate) fn twin(&self) -> &Twin {
        match self {
            Self::Device(record) => &record.twin,
            Self::Module(record) => &record.twin,
        }
    }

    /// Returns the twin as the service API shows it (what `$twin` reads in routing).
    pub(crate) fn twin_json(&self) -> serde_json::Value {
        match self {
            Self::Device(record) => crate::twins::device_twin_json(record),
            Self::Module(record) => crate::twins::module_twin_json(record),
        }
    }

    fn twin_mut(&mut self) -> &mut Twin {
        match self {
            Self::Device(record) => &mut record.twin,
            Self::Module(record) => &mut record.twin,
        }
    }
}

fn not_found(key: &IdentityKey) -> CoreError {
    match &key.module {
        Some(module) => CoreError::ModuleNotFound {
            device: key.device.clone(),
            module: module.clone(),
        },
        None => CoreError::DeviceNotFound(key.device.clone()),
    }
}

impl Registry {
    /// Loads the record of a device or module.
    pub(crate) async fn load_identity(
        &self,
        key: &IdentityKey,
    ) -> Result<(Revision, IdentityRecord), CoreError> {
        let hub = &key.hub;
        let loaded = match &key.module {
            Some(module) => self
                .store
                .module(hub, &key.device, module)
                .await?
                .map(|s| (s.revision, IdentityRecord::Module(s.value))),
            None => self
                .store
                .device(hub, &key.device)
                .await?
                .map(|s| (s.revision, IdentityRecord::Device(s.value))),
        };
        loaded.ok_or_else(|| not_found(key))
    }

    /// Changes an identity's twin under compare-and-swap: loads the record, checks `if_match`
    /// against the twin etag, applies `change`, and writes it back, retrying when another writer
    /// won. Returns the record as written.
    pub(crate) async fn change_twin(
        &self,
        key: &IdentityKey,
        if_match: Option<&str>,
        change: impl Fn(&mut Twin) -> Result<(), CoreError>,
    ) -> Result<IdentityRecord, CoreError> {
        let hub: &HubName = &key.hub;
        for _ in 0..CAS_ATTEMPTS {
            let (revision, mut record) = self.load_identity(key).await?;
            check_etag(&record.twin().etag(), if_match)?;
            change(record.twin_mut())?;
            let expected = Expected::Revision(revision);
            let written = match &record {
                IdentityRecord::Device(device) => self.store.put_device(hub, device, expected).await,
                IdentityRecord::Module(module) => self.store.put_module(hub, module, expected).await,
            };
            match written {
                Ok(_) => return Ok(record),
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound | StoreError::ParentMissing) => return Err(not_found(key)),
                Err(other) => return Err(other.into()),
            }
        }
        Err(CoreError::Contention)
    }
}
