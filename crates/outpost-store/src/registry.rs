//! [`RegistryStore`] on redb: device and module records with their revisions. A device write
//! adjusts its hub's counts, and a device delete removes its modules, in the same transaction.

use async_trait::async_trait;
use outpost_core::{
    DeviceCounts, DeviceRecord, Expected, ModuleRecord, RegistryStore, Revision, StoreError, Stored,
};
use outpost_model::{DeviceId, DeviceStatus, HubName, ModuleId};
use redb::{ReadableTable as _, WriteTransaction};

use crate::counts::{self, CountChange};
use crate::error::TxError;
use crate::revision::{check_expected, next_revision};
use crate::store::EmbeddedStore;
use crate::tables::{DEVICES, HUBS, MODULES, decode, device_range, encode, successor};

#[async_trait]
impl RegistryStore for EmbeddedStore {
    async fn device(&self, hub: &HubName, id: &DeviceId) -> Result<Option<Stored<DeviceRecord>>, StoreError> {
        let (hub, id) = (hub.clone(), id.clone());
        self.read(move |tx| {
            let devices = tx.open_table(DEVICES)?;
            let Some(row) = devices.get((hub.as_str(), id.as_str()))? else {
                return Ok(None);
            };
            let (revision, _, json) = row.value();
            let value = decode_device(hub.as_str(), id.as_str(), json)?;
            Ok(Some(Stored {
                revision: Revision(revision),
                value,
            }))
        })
        .await
    }

    async fn put_device(
        &self,
        hub: &HubName,
        record: &DeviceRecord,
        expected: Expected,
    ) -> Result<Revision, StoreError> {
        let hub = hub.clone();
        let id = record.device.device_id.clone();
        let enabled = record.device.status == DeviceStatus::Enabled;
        let json = encode(record, "a device record")?;
        self.write(move |tx| {
            let hub = hub.as_str();
            require_hub(tx, hub)?;
            let mut devices = tx.open_table(DEVICES)?;
            let key = (hub, id.as_str());
            let before = devices.get(key)?.map(|row| {
                let (revision, was_enabled, _) = row.value();
                (Revision(revision), was_enabled)
            });
            check_expected(before.map(|(revision, _)| revision), expected)?;
            let revision = next_revision(tx)?;
            devices.insert(key, (revision.0, enabled, json.as_slice()))?;
            drop(devices);
            let change = CountChange {
                before: before.map(|(_, was_enabled)| was_enabled),
                after: Some(enabled),
            };
            counts::apply(tx, hub, change)?;
            Ok(revision)
        })
        .await
    }

    async fn delete_device(
        &self,
        hub: &HubName,
        id: &DeviceId,
        expected: Expected,
    ) -> Result<(), StoreError> {
        let (hub, id) = (hub.clone(), id.clone());
        self.write(move |tx| {
            let (hub, id) = (hub.as_str(), id.as_str());
            let mut devices = tx.open_table(DEVICES)?;
            let before = devices.get((hub, id))?.map(|row| {
                let (revision, was_enabled, _) = row.value();
                (Revision(revision), was_enabled)
            });
            check_expected(before.map(|(revision, _)| revision), expected)?;
            let Some((_, was_enabled)) = before else {
                // `Absent` on a missing device: nothing to delete.
                return Ok(());
            };
            devices.remove((hub, id))?;
            drop(devices);
            let end = successor(id);
            tx.open_table(MODULES)?
                .retain_in((hub, id, "")..(hub, end.as_str(), ""), |_, _| false)?;
            counts::apply(
                tx,
                hub,
                CountChange {
                    before: Some(was_enabled),
                    after: None,
                },
            )?;
            Ok(())
        })
        .await
    }

    async fn list_devices(
        &self,
        hub: &HubName,
        after: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let hub = hub.clone();
        let after = after.cloned();
        self.read(move |tx| {
            let devices = tx.open_table(DEVICES)?;
            let end = successor(hub.as_str());
            let range = device_range(hub.as_str(), &end, after.as_ref().map(DeviceId::as_str));
            let mut listed = Vec::with_capacity(limit.min(1024));
            for entry in devices.range(range)?.take(limit) {
                let (key, row) = entry?;
                let (hub, id) = key.value();
                let (_, _, json) = row.value();
                listed.push(decode_device(hub, id, json)?);
            }
            Ok(listed)
        })
        .await
    }

    async fn device_counts(&self, hub: &HubName) -> Result<DeviceCounts, StoreError> {
        let hub = hub.clone();
        self.read(move |tx| counts::read_counts(tx, hub.as_str())).await
    }

    async fn module(
        &self,
        hub: &HubName,
        device: &DeviceId,
        module: &ModuleId,
    ) -> Result<Option<Stored<ModuleRecord>>, StoreError> {
        let (hub, device, module) = (hub.clone(), device.clone(), module.clone());
        self.read(move |tx| {
            let modules = tx.open_table(MODULES)?;
            let key = (hub.as_str(), device.as_str(), module.as_str());
            let Some(row) = modules.get(key)? else {
                return Ok(None);
            };
            let (revision, json) = row.value();
            let value = decode_module(key, json)?;
            Ok(Some(Stored {
                revision: Revision(revision),
                value,
            }))
        })
        .await
    }

    async fn put_module(
        &self,
        hub: &HubName,
        record: &ModuleRecord,
        expected: Expected,
    ) -> Result<Revision, StoreError> {
        let hub = hub.clone();
        let device = record.module.device_id.clone();
        let module = record.module.module_id.clone();
        let json = encode(record, "a module record")?;
        self.write(move |tx| {
            let (hub, device, module) = (hub.as_str(), device.as_str(), module.as_str());
            if tx.open_table(DEVICES)?.get((hub, device))?.is_none() {
                return Err(StoreError::ParentMissing.into());
            }
            let mut modules = tx.open_table(MODULES)?;
            let key = (hub, device, module);
            let before = modules.get(key)?.map(|row| Revision(row.value().0));
            check_expected(before, expected)?;
            let revision = next_revision(tx)?;
            modules.insert(key, (revision.0, json.as_slice()))?;
            Ok(revision)
        })
        .await
    }

    async fn delete_module(
        &self,
        hub: &HubName,
        device: &DeviceId,
        module: &ModuleId,
        expected: Expected,
    ) -> Result<(), StoreError> {
        let (hub, device, module) = (hub.clone(), device.clone(), module.clone());
        self.write(move |tx| {
            let mut modules = tx.open_table(MODULES)?;
            let key = (hub.as_str(), device.as_str(), module.as_str());
            let before = modules.get(key)?.map(|row| Revision(row.value().0));
            check_expected(before, expected)?;
            if before.is_some() {
                modules.remove(key)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_modules(&self, hub: &HubName, device: &DeviceId) -> Result<Vec<ModuleRecord>, StoreError> {
        let (hub, device) = (hub.clone(), device.clone());
        self.read(move |tx| {
            let modules = tx.open_table(MODULES)?;
            let (hub, device) = (hub.as_str(), device.as_str());
            let end = successor(device);
            let mut listed = Vec::new();
            for entry in modules.range((hub, device, "")..(hub, end.as_str(), ""))? {
                let (key, row) = entry?;
                let (_, json) = row.value();
                listed.push(decode_module(key.value(), json)?);
            }
            Ok(listed)
        })
        .await
    }
}

/// Fails with [`StoreError::ParentMissing`] unless `hub` exists, so that no device outlives (or
/// precedes) its hub: a write racing `delete_hub` cannot leave an orphan behind.
fn require_hub(tx: &WriteTransaction, hub: &str) -> Result<(), TxError> {
    if tx.open_table(HUBS)?.get(hub)?.is_none() {
        return Err(StoreError::ParentMissing.into());
    }
    Ok(())
}

/// Decodes a device record and checks that it is stored under its own id.
fn decode_device(hub: &str, id: &str, json: &[u8]) -> Result<DeviceRecord, TxError> {
    let record: DeviceRecord = decode(json, || format!("device '{id}' of hub '{hub}'"))?;
    if record.device.device_id.as_str() != id {
        let stored = &record.device.device_id;
        return Err(StoreError::Corrupt(format!(
            "device stored as '{id}' of hub '{hub}' has id '{stored}'"
        ))
        .into());
    }
    Ok(record)
}

/// Decodes a module record and checks that it is stored under its own device and module ids.
fn decode_module((hub, device, module): (&str, &str, &str), json: &[u8]) -> Result<ModuleRecord, TxError> {
    let record: ModuleRecord = decode(json, || {
        format!("module '{module}' of device '{device}' of hub '{hub}'")
    })?;
    if record.module.device_id.as_str() != device || record.module.module_id.as_str() != module {
        return Err(StoreError::Corrupt(format!(
            "module stored as '{device}/{module}' of hub '{hub}' has ids '{}/{}'",
            record.module.device_id, record.module.module_id
        ))
        .into());
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use outpost_core::testing::{
        create_device, create_hub_named, create_module, device_id, device_record, module_id, module_record,
    };
    use outpost_core::{Expected, RegistryStore as _, StoreError};

    use crate::EmbeddedStore;
    use crate::tables::{DEVICES, MODULES};

    /// Overwrites the stored bytes of device `d` of hub `h` (keeping its revision column).
    fn overwrite_device_json(store: &EmbeddedStore, json: &[u8]) {
        let tx = store.database().begin_write().unwrap();
        tx.open_table(DEVICES)
            .unwrap()
            .insert(("h", "d"), (1, true, json))
            .unwrap();
        tx.commit().unwrap();
    }

    #[tokio::test]
    async fn garbage_in_the_devices_table_is_corrupt_not_a_panic() {
        let store = EmbeddedStore::in_memory().unwrap();
        let hub = create_hub_named(&store, "h").await;
        create_device(&store, &hub, &device_record("d")).await;
        overwrite_device_json(&store, b"\x00\xffnot json{");

        let read = store.device(&hub, &device_id("d")).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
        let listed = store.list_devices(&hub, None, 10).await;
        assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
        // The columns the store needs are intact, so the corrupt record can still be removed.
        store
            .delete_device(&hub, &device_id("d"), Expected::Present)
            .await
            .unwrap();
        assert!(store.device(&hub, &device_id("d")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn corrupt_error_does_not_quote_the_stored_record() {
        let store = EmbeddedStore::in_memory().unwrap();
        let hub = create_hub_named(&store, "h").await;
        create_device(&store, &hub, &device_record("d")).await;
        let mut json = serde_json::to_value(device_record("d")).unwrap();
        json["device"]["authentication"]["symmetricKey"]["primaryKey"] = "c2VjcmV0LWtleQ-invalid".into();
        overwrite_device_json(&store, &serde_json::to_vec(&json).unwrap());

        match store.device(&hub, &device_id("d")).await {
            Err(StoreError::Corrupt(message)) => assert!(!message.contains("c2VjcmV0"), "{message}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_record_filed_under_another_id_is_corrupt() {
        let store = EmbeddedStore::in_memory().unwrap();
        let hub = create_hub_named(&store, "h").await;
        create_device(&store, &hub, &device_record("d")).await;
        overwrite_device_json(&store, &serde_json::to_vec(&device_record("other")).unwrap());
        let read = store.device(&hub, &device_id("d")).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    }

    #[tokio::test]
    async fn garbage_in_the_modules_table_is_corrupt_not_a_panic() {
        let store = EmbeddedStore::in_memory().unwrap();
        let hub = create_hub_named(&store, "h").await;
        create_device(&store, &hub, &device_record("d")).await;
        create_module(&store, &hub, &module_record("d", "m")).await;
        let tx = store.database().begin_write().unwrap();
        tx.open_table(MODULES)
            .unwrap()
            .insert(("h", "d", "m"), (1, b"[1,2".as_slice()))
            .unwrap();
        tx.commit().unwrap();

        let read = store.module(&hub, &device_id("d"), &module_id("m")).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
        let listed = store.list_modules(&hub, &device_id("d")).await;
        assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
    }
}
