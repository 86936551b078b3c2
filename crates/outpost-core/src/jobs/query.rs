//! `SELECT … FROM devices.jobs` (wire contract §5: `POST /devices/query`, item type
//! `DeviceJob`): the query language over the hub's device job records, ordered by job id then
//! device id, paged like twin queries.

use async_trait::async_trait;
use serde_json::Value;

use super::JobStore;
use crate::CoreError;
use crate::access::Caller;
use crate::query::Documents;

/// Device job records read from the store at a time.
const SCAN_BATCH: usize = 1000;

/// The device job records of the caller's hub, ordered by job id then device id: a position is
/// the pair.
pub(crate) struct DeviceJobs<'a> {
    /// The job store.
    pub(crate) store: &'a dyn JobStore,
    /// The caller, bound to its hub.
    pub(crate) caller: &'a Caller,
}

#[async_trait]
impl Documents for DeviceJobs<'_> {
    type Position = (String, String);

    async fn scan(
        &self,
        start: Option<Self::Position>,
        visit: &mut (dyn FnMut(Self::Position, Value) -> bool + Send),
    ) -> Result<(), CoreError> {
        let hub = &self.caller.hub().name;
        let mut after = start;
        loop {
            let position = after
                .as_ref()
                .map(|(job, device)| (job.as_str(), device.as_str()));
            let batch = self.store.device_jobs(hub, position, SCAN_BATCH).await?;
            let full = batch.len() == SCAN_BATCH;
            for record in batch {
                let key = (record.job_id.clone(), record.device_id.clone());
                if !visit(key.clone(), record.to_json()) {
                    return Ok(());
                }
                after = Some(key);
            }
            if !full {
                return Ok(());
            }
        }
    }
}
