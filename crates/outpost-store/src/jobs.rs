//! `JobStore` on redb: scheduled jobs under `(hub, job id)` with a `finished` flag (so that the
//! scheduler finds the unfinished ones without decoding the rest), and their device records under
//! `(hub, job id, device id)`; both removed with the hub.

use std::ops::Bound;

use async_trait::async_trait;
use outpost_core::StoreError;
use outpost_core::jobs::{DeviceJobRecord, JobRecord, JobStore};
use outpost_model::HubName;
use redb::{ReadTransaction, ReadableTable as _, TableDefinition, TableError};

use crate::EmbeddedStore;
use crate::error::TxError;
use crate::tables::{HUBS, decode, encode, successor};

/// `(hub, job id)` → `(finished, JobRecord JSON)`.
pub(crate) const JOBS: TableDefinition<(&str, &str), (bool, &[u8])> = TableDefinition::new("jobs");
/// `(hub, job id, device id)` → DeviceJobRecord JSON.
pub(crate) const DEVICE_JOBS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("device_jobs");

type JobsTable<'tx> = redb::ReadOnlyTable<(&'static str, &'static str), (bool, &'static [u8])>;
type DeviceJobsTable<'tx> = redb::ReadOnlyTable<(&'static str, &'static str, &'static str), &'static [u8]>;

/// Opens a table for reading; `None` before the first job was ever written (tables are created
/// by the first write).
fn open_jobs(tx: &ReadTransaction) -> Result<Option<JobsTable<'_>>, TxError> {
    match tx.open_table(JOBS) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

fn open_device_jobs(tx: &ReadTransaction) -> Result<Option<DeviceJobsTable<'_>>, TxError> {
    match tx.open_table(DEVICE_JOBS) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

fn decode_job(hub: &str, id: &str, json: &[u8]) -> Result<JobRecord, StoreError> {
    decode(json, || format!("job '{id}' of hub '{hub}'"))
}

fn decode_device_job(hub: &str, key: (&str, &str, &str), json: &[u8]) -> Result<DeviceJobRecord, StoreError> {
    let (_, job, device) = key;
    decode(json, || {
        format!("device '{device}' of job '{job}' of hub '{hub}'")
    })
}

#[async_trait]
impl JobStore for EmbeddedStore {
    async fn create_job(&self, hub: &HubName, job: &JobRecord) -> Result<(), StoreError> {
        let (hub, id) = (hub.to_string(), job.job_id.clone());
        let finished = job.status.is_finished();
        let json = encode(job, "a job")?;
        self.write(move |tx| {
            if tx.open_table(HUBS)?.get(hub.as_str())?.is_none() {
                return Err(StoreError::ParentMissing.into());
            }
            let mut jobs = tx.open_table(JOBS)?;
            if jobs.get((hub.as_str(), id.as_str()))?.is_some() {
                return Err(StoreError::Conflict.into());
            }
            jobs.insert((hub.as_str(), id.as_str()), (finished, json.as_slice()))?;
            Ok(())
        })
        .await
    }

    async fn update_job(
        &self,
        hub: &HubName,
        job: &JobRecord,
        devices: &[DeviceJobRecord],
    ) -> Result<(), StoreError> {
        let (hub, id) = (hub.to_string(), job.job_id.clone());
        let finished = job.status.is_finished();
        let json = encode(job, "a job")?;
        let rows = devices
            .iter()
            .map(|record| Ok((record.device_id.clone(), encode(record, "a device job")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(move |tx| {
            let mut jobs = tx.open_table(JOBS)?;
            if jobs.get((hub.as_str(), id.as_str()))?.is_none() {
                return Err(StoreError::NotFound.into());
            }
            jobs.insert((hub.as_str(), id.as_str()), (finished, json.as_slice()))?;
            let mut device_jobs = tx.open_table(DEVICE_JOBS)?;
            for (device, json) in &rows {
                device_jobs.insert((hub.as_str(), id.as_str(), device.as_str()), json.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    async fn job(&self, hub: &HubName, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let (hub, id) = (hub.to_string(), job_id.to_owned());
        self.read(move |tx| {
            let Some(jobs) = open_jobs(tx)? else {
                return Ok(None);
            };
            let Some(row) = jobs.get((hub.as_str(), id.as_str()))? else {
                return Ok(None);
            };
            let (_, json) = row.value();
            Ok(Some(decode_job(&hub, &id, json)?))
        })
        .await
    }

    async fn list_jobs(
        &self,
        hub: &HubName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let (hub, after) = (hub.to_string(), after.map(str::to_owned));
        self.read(move |tx| {
            let Some(jobs) = open_jobs(tx)? else {
                return Ok(Vec::new());
            };
            let end = successor(&hub);
            let start = match &after {
                Some(after) => Bound::Excluded((hub.as_str(), after.as_str())),
                None => Bound::Included((hub.as_str(), "")),
            };
            let mut listed = Vec::new();
            for row in jobs
                .range((start, Bound::Excluded((end.as_str(), ""))))?
                .take(limit)
            {
                let (key, value) = row?;
                let (_, id) = key.value();
                listed.push(decode_job(&hub, id, value.value().1)?);
            }
            Ok(listed)
        })
        .await
    }

    async fn unfinished_jobs(&self) -> Result<Vec<(HubName, JobRecord)>, StoreError> {
        self.read(|tx| {
            let Some(jobs) = open_jobs(tx)? else {
                return Ok(Vec::new());
            };
            let mut unfinished = Vec::new();
            for row in jobs.iter()? {
                let (key, value) = row?;
                let (hub, id) = key.value();
                let (finished, json) = value.value();
                if finished {
                    continue;
                }
                let name = HubName::new(hub)
                    .map_err(|_| StoreError::Corrupt(format!("job '{id}' of hub '{hub}'")))?;
                unfinished.push((name, decode_job(hub, id, json)?));
            }
            Ok(unfinished)
        })
        .await
    }

    async fn job_devices(
        &self,
        hub: &HubName,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeviceJobRecord>, StoreError> {
        let (hub, job, after) = (hub.to_string(), job_id.to_owned(), after.map(str::to_owned));
        self.read(move |tx| {
            let Some(table) = open_device_jobs(tx)? else {
                return Ok(Vec::new());
            };
            let end = successor(&job);
            let start = match &after {
                Some(after) => Bound::Excluded((hub.as_str(), job.as_str(), after.as_str())),
                None => Bound::Included((hub.as_str(), job.as_str(), "")),
            };
            let stop = Bound::Excluded((hub.as_str(), end.as_str(), ""));
            let mut listed = Vec::new();
            for row in table.range((start, stop))?.take(limit) {
                let (key, value) = row?;
                listed.push(decode_device_job(&hub, key.value(), value.value())?);
            }
            Ok(listed)
        })
        .await
    }

    async fn device_jobs(
        &self,
        hub: &HubName,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<DeviceJobRecord>, StoreError> {
        let hub = hub.to_string();
        let after = after.map(|(job, device)| (job.to_owned(), device.to_owned()));
        self.read(move |tx| {
            let Some(table) = open_device_jobs(tx)? else {
                return Ok(Vec::new());
            };
            let end = successor(&hub);
            let start = match &after {
                Some((job, device)) => Bound::Excluded((hub.as_str(), job.as_str(), device.as_str())),
                None => Bound::Included((hub.as_str(), "", "")),
            };
            let stop = Bound::Excluded((end.as_str(), "", ""));
            let mut listed = Vec::new();
            for row in table.range((start, stop))?.take(limit) {
                let (key, value) = row?;
                listed.push(decode_device_job(&hub, key.value(), value.value())?);
            }
            Ok(listed)
        })
        .await
    }
}

/// Removes every job and device job record of `hub` (in the hub's delete transaction).
pub(crate) fn delete_hub_jobs(tx: &redb::WriteTransaction, hub: &str) -> Result<(), TxError> {
    let end = successor(hub);
    tx.open_table(JOBS)?
        .retain_in((hub, "")..(end.as_str(), ""), |_, _| false)?;
    tx.open_table(DEVICE_JOBS)?
        .retain_in((hub, "", "")..(end.as_str(), "", ""), |_, _| false)?;
    Ok(())
}
