//! Bulk registry operations: `POST /devices` with up to 100 import items (wire contract §5.2).
//!
//! Every item is validated before anything is written, so a malformed request writes nothing.
//! Items are then applied one by one; an item that fails at run time (for example `create` of an
//! existing id) is reported in `errors` and the others still apply, as Azure reports per-device
//! errors in `BulkRegistryOperationResult`.

use outpost_model::{
    Authentication, Capabilities, DeviceId, DeviceStatus, HasErrorCode, ModuleId, TwinUpdate,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::CoreError;
use crate::access::{Caller, Permission};
use crate::registry::{DeviceSpec, ModuleSpec, Registry};
use crate::twins::TwinWrite;

/// Most items one bulk request may carry (Azure's limit).
pub const MAX_BULK_ITEMS: usize = 100;

/// One item of a bulk request (Azure's `ExportImportDevice`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkItem {
    /// The device id (`id`; `deviceId` is accepted too).
    #[serde(alias = "deviceId")]
    pub id: String,
    /// The module id, when the item is about a module.
    pub module_id: Option<String>,
    /// What to do (case-insensitive); `createOrUpdate` when absent.
    pub import_mode: Option<String>,
    /// The identity etag for the `…IfMatchETag` modes.
    #[serde(rename = "eTag", alias = "etag")]
    pub e_tag: Option<String>,
    /// The twin etag for `updateTwinIfMatchETag`.
    #[serde(rename = "twinETag", alias = "twinEtag")]
    pub twin_e_tag: Option<String>,
    /// Enabled or disabled.
    pub status: Option<DeviceStatus>,
    /// Free text explaining the status.
    pub status_reason: Option<String>,
    /// Credentials.
    pub authentication: Option<Authentication>,
    /// Capabilities.
    pub capabilities: Option<Capabilities>,
    /// Edge device scope.
    pub device_scope: Option<String>,
    /// Edge parent scopes.
    pub parent_scopes: Option<Vec<String>>,
    /// Who manages a module.
    pub managed_by: Option<String>,
    /// Twin tags to merge.
    pub tags: Option<Map<String, Value>>,
    /// Twin properties (`desired` merged).
    pub properties: Option<Value>,
}

/// The import modes of Azure's `ImportMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImportMode {
    Create,
    CreateOrUpdate,
    CreateOrUpdateIfMatchETag,
    Update,
    UpdateIfMatchETag,
    Delete,
    DeleteIfMatchETag,
    UpdateTwin,
    UpdateTwinIfMatchETag,
}

impl ImportMode {
    fn parse(text: Option<&str>) -> Result<Self, String> {
        let Some(text) = text else {
            return Ok(Self::CreateOrUpdate);
        };
        Ok(match text.to_ascii_lowercase().as_str() {
            "create" => Self::Create,
            "createorupdate" => Self::CreateOrUpdate,
            "createorupdateifmatchetag" => Self::CreateOrUpdateIfMatchETag,
            "update" => Self::Update,
            "updateifmatchetag" => Self::UpdateIfMatchETag,
            "delete" => Self::Delete,
            "deleteifmatchetag" => Self::DeleteIfMatchETag,
            "updatetwin" => Self::UpdateTwin,
            "updatetwinifmatchetag" => Self::UpdateTwinIfMatchETag,
            _ => return Err(format!("unknown importMode '{text}'")),
        })
    }
}

/// A failed item of a bulk request (Azure's `DeviceRegistryOperationError`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkError {
    /// The device id.
    pub device_id: String,
    /// Azure's error code name.
    pub error_code: String,
    /// What went wrong.
    pub error_status: String,
    /// The module id, for module items.
    pub module_id: Option<String>,
    /// The import mode of the item.
    pub operation: String,
}

/// The outcome of a bulk request (Azure's `BulkRegistryOperationResult`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOutcome {
    /// Whether every item succeeded.
    pub is_successful: bool,
    /// The failed items.
    pub errors: Vec<BulkError>,
    /// Warnings (none today).
    pub warnings: Vec<Value>,
}

struct ValidItem {
    device: DeviceId,
    module: Option<ModuleId>,
    mode: ImportMode,
    operation: String,
    item: BulkItem,
    twin: TwinUpdate,
}

fn validate(index: usize, item: BulkItem) -> Result<ValidItem, CoreError> {
    let invalid = |reason: String| CoreError::InvalidArgument(format!("item {index}: {reason}"));
    let device = DeviceId::new(&item.id).map_err(|e| invalid(e.to_string()))?;
    let module = match item.module_id.as_deref().filter(|m| !m.is_empty()) {
        Some(module) => Some(ModuleId::new(module).map_err(|e| invalid(e.to_string()))?),
        None => None,
    };
    let mode = ImportMode::parse(item.import_mode.as_deref()).map_err(invalid)?;
    if matches!(
        mode,
        ImportMode::UpdateIfMatchETag | ImportMode::DeleteIfMatchETag | ImportMode::CreateOrUpdateIfMatchETag
    ) && item.e_tag.is_none()
    {
        return Err(invalid("this importMode needs an eTag".into()));
    }
    if mode == ImportMode::UpdateTwinIfMatchETag && item.twin_e_tag.is_none() {
        return Err(invalid("updateTwinIfMatchETag needs a twinETag".into()));
    }
    if let Some(authentication) = item.authentication.clone() {
        authentication
            .completed(None)
            .map_err(|e| invalid(e.to_string()))?;
    }
    let twin_body = serde_json::json!({ "tags": item.tags, "properties": item.properties });
    let twin = TwinUpdate::from_twin_json(&twin_body).map_err(|e| invalid(e.to_string()))?;
    let operation = item
        .import_mode
        .clone()
        .unwrap_or_else(|| "createOrUpdate".into());
    Ok(ValidItem {
        device,
        module,
        mode,
        operation,
        item,
        twin,
    })
}

impl Registry {
    /// Applies a bulk registry request.
    ///
    /// # Errors
    /// `TooManyDevices` over [`MAX_BULK_ITEMS`]; `ArgumentInvalid` when any item is malformed
    /// (nothing is written then); per-item failures are reported in the outcome instead.
    pub async fn bulk(&self, caller: &Caller, items: Vec<BulkItem>) -> Result<BulkOutcome, CoreError> {
        caller.require(Permission::RegistryWrite)?;
        if items.len() > MAX_BULK_ITEMS {
            return Err(CoreError::TooManyItems(format!(
                "a bulk request carries at most {MAX_BULK_ITEMS} items, not {}",
                items.len()
            )));
        }
        let items = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| validate(i, item))
            .collect::<Result<Vec<_>, _>>()?;
        let mut errors = Vec::new();
        for item in items {
            if let Err(error) = self.apply_bulk_item(caller, &item).await {
                errors.push(BulkError {
                    device_id: item.device.to_string(),
                    error_code: error.code().name().to_owned(),
                    error_status: error.to_string(),
                    module_id: item.module.as_ref().map(ToString::to_string),
                    operation: item.operation.clone(),
                });
            }
        }
        Ok(BulkOutcome {
            is_successful: errors.is_empty(),
            errors,
            warnings: Vec::new(),
        })
    }

    /// Validates and applies one import item (a line of an import job's `devices.txt`); its
    /// failure concerns that item only.
    ///
    /// # Errors
    /// Why the item was refused or failed, as [`Registry::bulk`] reports it per item.
    pub(crate) async fn import_item(
        &self,
        caller: &Caller,
        index: usize,
        item: BulkItem,
    ) -> Result<(), CoreError> {
        let valid = validate(index, item)?;
        self.apply_bulk_item(caller, &valid).await
    }

    async fn apply_bulk_item(&self, caller: &Caller, valid: &ValidItem) -> Result<(), CoreError> {
        let ValidItem {
            device,
            module,
            mode,
            item,
            twin,
            ..
        } = valid;
        let etag = item.e_tag.as_deref();
        let has_twin = twin.tags.is_some() || twin.desired.is_some();
        let exists = match module {
            Some(module) => self
                .store
                .module(&caller.hub().name, device, module)
                .await?
                .is_some(),
            None => self.store.device(&caller.hub().name, device).await?.is_some(),
        };
        let if_match = match mode {
            ImportMode::Create => None,
            ImportMode::CreateOrUpdate | ImportMode::Update if exists => Some("*"),
            ImportMode::CreateOrUpdate | ImportMode::Update => None,
            ImportMode::CreateOrUpdateIfMatchETag if !exists => None,
            ImportMode::CreateOrUpdateIfMatchETag | ImportMode::UpdateIfMatchETag => etag,
            ImportMode::Delete | ImportMode::DeleteIfMatchETag => {
                let if_match = if *mode == ImportMode::Delete { None } else { etag };
                return match module {
                    Some(module) => self.delete_module(caller, device, module, if_match).await,
                    None => self.delete_device(caller, device, if_match).await,
                };
            }
            ImportMode::UpdateTwin | ImportMode::UpdateTwinIfMatchETag => {
                let if_match = if *mode == ImportMode::UpdateTwin {
                    None
                } else {
                    item.twin_e_tag.as_deref()
                };
                return self
                    .bulk_twin(caller, device, module.as_ref(), twin, if_match)
                    .await;
            }
        };
        match module {
            Some(module) => {
                let spec = ModuleSpec {
                    device_id: None,
                    module_id: None,
                    managed_by: item.managed_by.clone(),
                    authentication: item.authentication.clone(),
                };
                self.put_module(caller, device, module, spec, if_match).await?;
            }
            None => {
                let spec = DeviceSpec {
                    device_id: None,
                    status: item.status,
                    status_reason: item.status_reason.clone(),
                    authentication: item.authentication.clone(),
                    capabilities: item.capabilities,
                    device_scope: item.device_scope.clone(),
                    parent_scopes: item.parent_scopes.clone(),
                };
                self.put_device(caller, device, spec, if_match).await?;
            }
        }
        if has_twin {
            self.bulk_twin(caller, device, module.as_ref(), twin, None)
                .await?;
        }
        Ok(())
    }

    async fn bulk_twin(
        &self,
        caller: &Caller,
        device: &DeviceId,
        module: Option<&ModuleId>,
        twin: &TwinUpdate,
        if_match: Option<&str>,
    ) -> Result<(), CoreError> {
        match module {
            Some(module) => {
                self.write_module_twin(caller, device, module, twin, TwinWrite::Patch, if_match)
                    .await?
            }
            None => {
                self.write_device_twin(caller, device, twin, TwinWrite::Patch, if_match)
                    .await?
            }
        };
        Ok(())
    }
}
