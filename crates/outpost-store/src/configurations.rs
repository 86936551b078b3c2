//! `ConfigurationStore` on redb: configurations (automatic device management, edge deployments)
//! under `(hub, id)` with their revision, written with compare-and-swap in the hub's existence
//! check's transaction, and removed with the hub.

use async_trait::async_trait;
use outpost_core::configurations::Configuration;
use outpost_core::{ConfigurationStore, Expected, Revision, StoreError, Stored};
use outpost_model::HubName;
use redb::{ReadableTable as _, TableDefinition};

use crate::EmbeddedStore;
use crate::error::TxError;
use crate::revision::{check_expected, next_revision};
use crate::tables::{HUBS, decode, encode, successor};

/// `(hub, configuration id)` → `(revision, Configuration JSON)`.
pub(crate) const CONFIGURATIONS: TableDefinition<(&str, &str), (u64, &[u8])> =
    TableDefinition::new("configurations");

fn decode_configuration(hub: &str, id: &str, json: &[u8]) -> Result<Configuration, TxError> {
    let configuration: Configuration = decode(json, || format!("configuration '{id}' of hub '{hub}'"))?;
    if configuration.id != id {
        return Err(StoreError::Corrupt(format!(
            "configuration stored under '{id}' of hub '{hub}' has another id"
        ))
        .into());
    }
    Ok(configuration)
}

#[async_trait]
impl ConfigurationStore for EmbeddedStore {
    async fn configuration(
        &self,
        hub: &HubName,
        id: &str,
    ) -> Result<Option<Stored<Configuration>>, StoreError> {
        let (hub, id) = (hub.to_string(), id.to_owned());
        self.read(move |tx| {
            let table = match tx.open_table(CONFIGURATIONS) {
                Ok(table) => table,
                // Created on the first write.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(other) => return Err(other.into()),
            };
            let Some(row) = table.get((hub.as_str(), id.as_str()))? else {
                return Ok(None);
            };
            let (revision, json) = row.value();
            Ok(Some(Stored {
                revision: Revision(revision),
                value: decode_configuration(&hub, &id, json)?,
            }))
        })
        .await
    }

    async fn put_configuration(
        &self,
        hub: &HubName,
        configuration: &Configuration,
        expected: Expected,
    ) -> Result<Revision, StoreError> {
        let hub = hub.to_string();
        let id = configuration.id.clone();
        let json = encode(configuration, "a configuration")?;
        self.write(move |tx| {
            if tx.open_table(HUBS)?.get(hub.as_str())?.is_none() {
                return Err(StoreError::ParentMissing.into());
            }
            let found = tx
                .open_table(CONFIGURATIONS)?
                .get((hub.as_str(), id.as_str()))?
                .map(|row| Revision(row.value().0));
            check_expected(found, expected)?;
            let revision = next_revision(tx)?;
            tx.open_table(CONFIGURATIONS)?
                .insert((hub.as_str(), id.as_str()), (revision.0, json.as_slice()))?;
            Ok(revision)
        })
        .await
    }

    async fn delete_configuration(
        &self,
        hub: &HubName,
        id: &str,
        expected: Expected,
    ) -> Result<(), StoreError> {
        let (hub, id) = (hub.to_string(), id.to_owned());
        self.write(move |tx| {
            let mut table = tx.open_table(CONFIGURATIONS)?;
            let found = table
                .get((hub.as_str(), id.as_str()))?
                .map(|row| Revision(row.value().0));
            check_expected(found, expected)?;
            table.remove((hub.as_str(), id.as_str()))?;
            Ok(())
        })
        .await
    }

    async fn list_configurations(&self, hub: &HubName) -> Result<Vec<Configuration>, StoreError> {
        let hub = hub.to_string();
        self.read(move |tx| {
            let table = match tx.open_table(CONFIGURATIONS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(other) => return Err(other.into()),
            };
            let end = successor(&hub);
            let mut listed = Vec::new();
            for row in table.range((hub.as_str(), "")..(end.as_str(), ""))? {
                let (key, value) = row?;
                let (_, id) = key.value();
                listed.push(decode_configuration(&hub, id, value.value().1)?);
            }
            Ok(listed)
        })
        .await
    }
}

/// Removes every configuration of `hub` (in the hub's delete transaction).
pub(crate) fn delete_hub_configurations(tx: &redb::WriteTransaction, hub: &str) -> Result<(), TxError> {
    let end = successor(hub);
    tx.open_table(CONFIGURATIONS)?
        .retain_in((hub, "")..(end.as_str(), ""), |_, _| false)?;
    Ok(())
}
