//! `RoutingStore` on redb: each hub's routing configuration (JSON) and the delivery checkpoints
//! of its endpoints, removed with the hub. Checkpoint writes go through the group-commit writer
//! like every other write: many workers' checkpoints share one commit.

use async_trait::async_trait;
use outpost_core::StoreError;
use outpost_core::routing::{RoutingConfig, RoutingStore};
use outpost_model::HubName;
use redb::TableDefinition;

use crate::EmbeddedStore;
use crate::error::TxError;
use crate::tables::{decode, encode, successor};

/// hub → routing configuration JSON.
pub(crate) const ROUTING_CONFIGS: TableDefinition<&str, &[u8]> = TableDefinition::new("routing_configs");
/// `(hub, endpoint, partition)` → the next sequence number the endpoint's worker reads.
pub(crate) const ROUTING_CHECKPOINTS: TableDefinition<(&str, &str, u32), u64> =
    TableDefinition::new("routing_checkpoints");

#[async_trait]
impl RoutingStore for EmbeddedStore {
    async fn routing_config(&self, hub: &HubName) -> Result<Option<RoutingConfig>, StoreError> {
        let hub = hub.to_string();
        self.read(move |tx| {
            let table = match tx.open_table(ROUTING_CONFIGS) {
                Ok(table) => table,
                // Created on the first write.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(other) => return Err(other.into()),
            };
            let Some(row) = table.get(hub.as_str())? else {
                return Ok(None);
            };
            Ok(Some(decode(row.value(), || {
                format!("routing configuration of hub '{hub}'")
            })?))
        })
        .await
    }

    async fn put_routing_config(&self, hub: &HubName, config: &RoutingConfig) -> Result<(), StoreError> {
        let hub = hub.to_string();
        let json = encode(config, "a routing configuration")?;
        self.write(move |tx| {
            tx.open_table(ROUTING_CONFIGS)?
                .insert(hub.as_str(), json.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn checkpoints(&self, hub: &HubName, endpoint: &str) -> Result<Vec<(u32, u64)>, StoreError> {
        let (hub, endpoint) = (hub.to_string(), endpoint.to_owned());
        self.read(move |tx| {
            let table = match tx.open_table(ROUTING_CHECKPOINTS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(other) => return Err(other.into()),
            };
            let mut found = Vec::new();
            for row in table
                .range((hub.as_str(), endpoint.as_str(), 0)..=(hub.as_str(), endpoint.as_str(), u32::MAX))?
            {
                let (key, value) = row?;
                found.push((key.value().2, value.value()));
            }
            Ok(found)
        })
        .await
    }

    async fn put_checkpoint(
        &self,
        hub: &HubName,
        endpoint: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), StoreError> {
        let (hub, endpoint) = (hub.to_string(), endpoint.to_owned());
        self.write(move |tx| {
            tx.open_table(ROUTING_CHECKPOINTS)?
                .insert((hub.as_str(), endpoint.as_str(), partition), next)?;
            Ok(())
        })
        .await
    }

    async fn delete_checkpoints(&self, hub: &HubName, endpoint: &str) -> Result<(), StoreError> {
        let (hub, endpoint) = (hub.to_string(), endpoint.to_owned());
        self.write(move |tx| {
            tx.open_table(ROUTING_CHECKPOINTS)?.retain_in(
                (hub.as_str(), endpoint.as_str(), 0)..=(hub.as_str(), endpoint.as_str(), u32::MAX),
                |_, _| false,
            )?;
            Ok(())
        })
        .await
    }
}

/// Removes the hub's routing configuration and checkpoints (in the hub's delete transaction).
pub(crate) fn delete_hub_routing(tx: &redb::WriteTransaction, hub: &str) -> Result<(), TxError> {
    tx.open_table(ROUTING_CONFIGS)?.remove(hub)?;
    let end = successor(hub);
    tx.open_table(ROUTING_CHECKPOINTS)?
        .retain_in((hub, "", 0)..(end.as_str(), "", 0), |_, _| false)?;
    Ok(())
}
