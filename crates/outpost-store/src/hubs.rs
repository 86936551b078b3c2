//! [`HubStore`] on redb: hubs by name, and the cascade that deletes a hub with everything in it.

use async_trait::async_trait;
use outpost_core::{HubStore, StoreError};
use outpost_model::{Hub, HubName};
use redb::ReadableTable as _;

use crate::error::TxError;
use crate::store::EmbeddedStore;
use crate::tables::{DEVICE_COUNTS, DEVICES, HUBS, MODULES, decode, encode, successor};

#[async_trait]
impl HubStore for EmbeddedStore {
    async fn list_hubs(&self) -> Result<Vec<Hub>, StoreError> {
        self.read(|tx| {
            let hubs = tx.open_table(HUBS)?;
            let mut listed = Vec::new();
            for entry in hubs.iter()? {
                let (name, json) = entry?;
                listed.push(decode_hub(name.value(), json.value())?);
            }
            Ok(listed)
        })
        .await
    }

    async fn create_hub(&self, hub: &Hub) -> Result<(), StoreError> {
        let name = hub.name.clone();
        let json = encode(hub, "a hub")?;
        self.write(move |tx| {
            let mut hubs = tx.open_table(HUBS)?;
            if hubs.get(name.as_str())?.is_some() {
                return Err(StoreError::Conflict.into());
            }
            hubs.insert(name.as_str(), json.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn update_hub(&self, hub: &Hub) -> Result<(), StoreError> {
        let name = hub.name.clone();
        let json = encode(hub, "a hub")?;
        self.write(move |tx| {
            let mut hubs = tx.open_table(HUBS)?;
            if hubs.get(name.as_str())?.is_none() {
                return Err(StoreError::NotFound.into());
            }
            hubs.insert(name.as_str(), json.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn delete_hub(&self, name: &HubName) -> Result<(), StoreError> {
        let name = name.clone();
        self.write(move |tx| {
            let hub = name.as_str();
            if tx.open_table(HUBS)?.remove(hub)?.is_none() {
                return Err(StoreError::NotFound.into());
            }
            let end = successor(hub);
            tx.open_table(DEVICES)?
                .retain_in((hub, "")..(end.as_str(), ""), |_, _| false)?;
            tx.open_table(MODULES)?
                .retain_in((hub, "", "")..(end.as_str(), "", ""), |_, _| false)?;
            tx.open_table(DEVICE_COUNTS)?.remove(hub)?;
            tx.open_table(crate::sessions::SESSIONS)?
                .retain_in((hub, "")..(end.as_str(), ""), |_, _| false)?;
            crate::service_bound::delete_hub_records(tx, hub)?;
            crate::jobs::delete_hub_jobs(tx, hub)?;
            crate::configurations::delete_hub_configurations(tx, hub)?;
            crate::routing::delete_hub_routing(tx, hub)?;
            Ok(())
        })
        .await
    }
}

/// Decodes a stored hub and checks that it is stored under its own name.
fn decode_hub(key: &str, json: &[u8]) -> Result<Hub, TxError> {
    let hub: Hub = decode(json, || format!("hub '{key}'"))?;
    if hub.name.as_str() != key {
        return Err(StoreError::Corrupt(format!("hub stored under '{key}' is named '{}'", hub.name)).into());
    }
    Ok(hub)
}

#[cfg(test)]
mod tests {
    use outpost_core::testing::create_hub_named;
    use outpost_core::{HubStore as _, StoreError};

    use crate::EmbeddedStore;
    use crate::tables::HUBS;

    #[tokio::test]
    async fn garbage_in_the_hubs_table_is_corrupt_not_a_panic() {
        let store = EmbeddedStore::in_memory().unwrap();
        create_hub_named(&store, "h").await;
        let tx = store.database().begin_write().unwrap();
        tx.open_table(HUBS)
            .unwrap()
            .insert("h", b"{\"name\":".as_slice())
            .unwrap();
        tx.commit().unwrap();

        let listed = store.list_hubs().await;
        assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
    }
}
