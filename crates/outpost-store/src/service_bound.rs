//! `ServiceBoundStore` on redb: the feedback records and file-upload notifications waiting for
//! back ends, one row per record under `(hub, kind, number)`; removed with the hub. Numbers
//! continue from the hub's last stored record of the kind, so they increase while records remain.

use async_trait::async_trait;
use outpost_core::{ServiceBoundKind, ServiceBoundStore, StoreError, StoredRecord};
use outpost_model::HubName;
use redb::{ReadableTable as _, TableDefinition};

use crate::EmbeddedStore;
use crate::error::TxError;
use crate::tables::{HUBS, successor};

/// `(hub, kind code, number)` → the encoded record.
pub(crate) const SERVICE_BOUND: TableDefinition<(&str, u8, u64), &[u8]> =
    TableDefinition::new("service_bound");

#[async_trait]
impl ServiceBoundStore for EmbeddedStore {
    async fn append_records(
        &self,
        hub: &HubName,
        kind: ServiceBoundKind,
        records: Vec<Vec<u8>>,
    ) -> Result<Vec<u64>, StoreError> {
        let (hub, kind) = (hub.to_string(), kind.code());
        self.write(move |tx| {
            if tx.open_table(HUBS)?.get(hub.as_str())?.is_none() {
                return Err(TxError::from(StoreError::ParentMissing));
            }
            let mut table = tx.open_table(SERVICE_BOUND)?;
            let last = table
                .range((hub.as_str(), kind, 0)..=(hub.as_str(), kind, u64::MAX))?
                .next_back()
                .transpose()?
                .map(|(key, _)| key.value().2);
            let mut next = last.map_or(0, |last| last.saturating_add(1));
            let mut numbers = Vec::with_capacity(records.len());
            for record in &records {
                table.insert((hub.as_str(), kind, next), record.as_slice())?;
                numbers.push(next);
                next = next.saturating_add(1);
            }
            Ok(numbers)
        })
        .await
    }

    async fn remove_records(
        &self,
        hub: &HubName,
        kind: ServiceBoundKind,
        numbers: Vec<u64>,
    ) -> Result<(), StoreError> {
        let (hub, kind) = (hub.to_string(), kind.code());
        self.write(move |tx| {
            let mut table = tx.open_table(SERVICE_BOUND)?;
            for &number in &numbers {
                table.remove((hub.as_str(), kind, number))?;
            }
            Ok(())
        })
        .await
    }

    async fn load_records(&self, kind: ServiceBoundKind) -> Result<Vec<StoredRecord>, StoreError> {
        let kind = kind.code();
        self.read(move |tx| {
            let table = match tx.open_table(SERVICE_BOUND) {
                Ok(table) => table,
                // Created on the first write.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(other) => return Err(other.into()),
            };
            let mut records = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                let (hub, row_kind, number) = key.value();
                if row_kind != kind {
                    continue;
                }
                let hub = HubName::new(hub)
                    .map_err(|_| StoreError::Corrupt(format!("service-bound record of hub '{hub}'")))?;
                records.push(StoredRecord {
                    hub,
                    number,
                    record: value.value().to_vec(),
                });
            }
            Ok(records)
        })
        .await
    }
}

/// Removes every service-bound record of `hub` (in the hub's delete transaction).
pub(crate) fn delete_hub_records(tx: &redb::WriteTransaction, hub: &str) -> Result<(), TxError> {
    let end = successor(hub);
    tx.open_table(SERVICE_BOUND)?
        .retain_in((hub, 0, 0)..(end.as_str(), 0, 0), |_, _| false)?;
    Ok(())
}
