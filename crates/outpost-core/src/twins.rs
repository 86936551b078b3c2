//! Twin use cases of the service side: read, patch and replace device and module twins, and
//! their JSON rendering in Azure's Twin shape (wire contract §5.3).

use outpost_model::{AuthenticationType, DeviceId, ModuleId, Twin, TwinUpdate};
use serde_json::{Map, Value, json};

use crate::access::{Caller, Permission};
use crate::identity_records::IdentityRecord;
use crate::presence::{DeviceCommand, IdentityKey};
use crate::registry::Registry;
use crate::{CoreError, DeviceRecord, ModuleRecord};

/// Whether a twin write merges (PATCH) or replaces (PUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinWrite {
    /// JSON merge patch of tags and desired properties.
    Patch,
    /// Replace tags and desired properties.
    Replace,
}

impl Registry {
    /// Returns a device twin in Azure's Twin shape.
    ///
    /// # Errors
    /// `DeviceNotFound`.
    pub async fn device_twin(&self, caller: &Caller, id: &DeviceId) -> Result<Value, CoreError> {
        caller.require(Permission::TwinRead)?;
        let mut record = self.load_device(caller, id).await?.value;
        record.device = self.with_presence(&caller.hub().name, record.device);
        Ok(device_twin_json(&record))
    }

    /// Patches or replaces a device twin's tags and desired properties.
    ///
    /// # Errors
    /// `DeviceNotFound`, `PreconditionFailed` (twin etag), twin rule and limit violations.
    pub async fn write_device_twin(
        &self,
        caller: &Caller,
        id: &DeviceId,
        update: &TwinUpdate,
        mode: TwinWrite,
        if_match: Option<&str>,
    ) -> Result<Value, CoreError> {
        caller.require(Permission::TwinWrite)?;
        let key = IdentityKey {
            hub: caller.hub().name.clone(),
            device: id.clone(),
            module: None,
        };
        let IdentityRecord::Device(mut record) = self.write_twin(&key, update, mode, if_match).await? else {
            unreachable!("a device key loads a device record")
        };
        record.device = self.with_presence(&key.hub, record.device);
        Ok(device_twin_json(&record))
    }

    /// Applies a service-side twin write and pushes the desired change to the identity.
    async fn write_twin(
        &self,
        key: &IdentityKey,
        update: &TwinUpdate,
        mode: TwinWrite,
        if_match: Option<&str>,
    ) -> Result<IdentityRecord, CoreError> {
        let record = self
            .change_twin(key, if_match, |twin| self.apply(twin, update, mode))
            .await?;
        self.notify_desired(key, record.twin(), update, mode);
        let change = crate::routing::events::TwinChange::service(update, mode);
        self.publish_twin_change(key, record.twin(), change).await;
        Ok(record)
    }

    /// Returns a module twin in Azure's Twin shape.
    ///
    /// # Errors
    /// `ModuleNotFound`.
    pub async fn module_twin(
        &self,
        caller: &Caller,
        device: &DeviceId,
        module: &ModuleId,
    ) -> Result<Value, CoreError> {
        caller.require(Permission::TwinRead)?;
        let mut record = self.load_module(caller, device, module).await?.value;
        record.module = self.with_module_presence(&caller.hub().name, record.module);
        Ok(module_twin_json(&record))
    }

    /// Patches or replaces a module twin's tags and desired properties.
    ///
    /// # Errors
    /// `ModuleNotFound`, `PreconditionFailed` (twin etag), twin rule and limit violations.
    pub async fn write_module_twin(
        &self,
        caller: &Caller,
        device: &DeviceId,
        module: &ModuleId,
        update: &TwinUpdate,
        mode: TwinWrite,
        if_match: Option<&str>,
    ) -> Result<Value, CoreError> {
        caller.require(Permission::TwinWrite)?;
        let key = IdentityKey {
            hub: caller.hub().name.clone(),
            device: device.clone(),
            module: Some(module.clone()),
        };
        let IdentityRecord::Module(mut record) = self.write_twin(&key, update, mode, if_match).await? else {
            unreachable!("a module key loads a module record")
        };
        record.module = self.with_module_presence(&key.hub, record.module);
        Ok(module_twin_json(&record))
    }

    /// Pushes a desired-properties change to the identity if it is connected (wire contract
    /// §2.6): the patch as written, or the whole desired document after a replace, with `$version`.
    fn notify_desired(&self, key: &IdentityKey, twin: &Twin, update: &TwinUpdate, mode: TwinWrite) {
        let patch = match (mode, &update.desired) {
            (TwinWrite::Patch, Some(desired)) => desired.clone(),
            (TwinWrite::Replace, _) => twin.desired.properties.clone(),
            (TwinWrite::Patch, None) => return,
        };
        let mut patch: Map<String, Value> = patch
            .into_iter()
            .filter(|(name, _)| name != "$metadata" && name != "$version")
            .collect();
        patch.insert("$version".into(), Value::from(twin.desired.version));
        self.presence
            .send(key, DeviceCommand::DesiredPatch(Box::new(Value::Object(patch))));
    }

    pub(crate) fn apply(
        &self,
        twin: &mut outpost_model::Twin,
        update: &TwinUpdate,
        mode: TwinWrite,
    ) -> Result<(), CoreError> {
        let now = self.now();
        match mode {
            TwinWrite::Patch => twin.apply_patch(update, now, &self.twin_limits)?,
            TwinWrite::Replace => twin.replace(update, now, &self.twin_limits)?,
        }
        Ok(())
    }
}

fn authentication_type_name(kind: AuthenticationType) -> &'static str {
    match kind {
        AuthenticationType::Sas => "sas",
        AuthenticationType::SelfSigned => "selfSigned",
        AuthenticationType::CertificateAuthority => "certificateAuthority",
        AuthenticationType::None => "none",
    }
}

fn insert_tags(out: &mut Map<String, Value>, tags: &Map<String, Value>) {
    // Azure omits `tags` from a twin that has none.
    if !tags.is_empty() {
        out.insert("tags".into(), Value::Object(tags.clone()));
    }
}

/// Renders a device twin in Azure's Twin shape.
pub fn device_twin_json(record: &DeviceRecord) -> Value {
    let device = &record.device;
    let twin = &record.twin;
    let mut out = json!({
        "deviceId": device.device_id,
        "etag": twin.etag(),
        "deviceEtag": device.etag,
        "status": device.status,
        "statusReason": device.status_reason,
        "statusUpdateTime": device.status_updated_time,
        "connectionState": device.connection_state,
        "lastActivityTime": device.last_activity_time,
        "cloudToDeviceMessageCount": device.cloud_to_device_message_count,
        "authenticationType": authentication_type_name(device.authentication.kind),
        "x509Thumbprint": device.authentication.x509_thumbprint,
        "modelId": "",
        "version": twin.version,
    });
    let Value::Object(map) = &mut out else {
        unreachable!("json! object literal")
    };
    insert_tags(map, &twin.tags);
    map.insert("properties".into(), twin.properties_json());
    map.insert("capabilities".into(), json!(device.capabilities));
    if let Some(scope) = &device.device_scope {
        map.insert("deviceScope".into(), json!(scope));
    }
    if !device.parent_scopes.is_empty() {
        map.insert("parentScopes".into(), json!(device.parent_scopes));
    }
    out
}

/// Renders a module twin in Azure's Twin shape.
pub fn module_twin_json(record: &ModuleRecord) -> Value {
    let module = &record.module;
    let twin = &record.twin;
    let mut out = json!({
        "deviceId": module.device_id,
        "moduleId": module.module_id,
        "etag": twin.etag(),
        "deviceEtag": module.etag,
        "status": "enabled",
        "statusUpdateTime": outpost_model::Timestamp::NEVER,
        "connectionState": module.connection_state,
        "lastActivityTime": module.last_activity_time,
        "cloudToDeviceMessageCount": module.cloud_to_device_message_count,
        "authenticationType": authentication_type_name(module.authentication.kind),
        "x509Thumbprint": module.authentication.x509_thumbprint,
        "modelId": "",
        "version": twin.version,
    });
    let Value::Object(map) = &mut out else {
        unreachable!("json! object literal")
    };
    insert_tags(map, &twin.tags);
    map.insert("properties".into(), twin.properties_json());
    out
}

/// The body of a failed twin request as devices get it: the Node SDK reads only `errorCode` (and
/// `message`) from it, over MQTT and AMQP alike (wire contract §2.6, §3).
pub fn device_twin_error(error: &CoreError, tracking_id: &str, now: outpost_model::Timestamp) -> Value {
    use outpost_model::HasErrorCode;
    json!({
        "errorCode": error.code().numeric(),
        "trackingId": tracking_id,
        "message": error.to_string(),
        "timestampUtc": now.to_string(),
    })
}
