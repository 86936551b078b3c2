//! [`JobStore`]: the storage port of scheduled jobs and their device records. One consistency
//! boundary per hub: a job and the device records written with it change in one transaction,
//! and everything goes with the hub.

use async_trait::async_trait;
use outpost_model::HubName;

use super::model::{DeviceJobRecord, JobRecord};
use crate::StoreError;

/// Scheduled jobs and their per-device records, per hub, durable across restarts.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new job.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the hub has a job with this id;
    /// [`StoreError::ParentMissing`] when the hub does not exist (checked in the same
    /// transaction).
    async fn create_job(&self, hub: &HubName, job: &JobRecord) -> Result<(), StoreError>;

    /// Replaces a stored job and writes (inserts or replaces) `devices`, records of that job, in
    /// one transaction.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the job does not exist (its hub was deleted).
    async fn update_job(
        &self,
        hub: &HubName,
        job: &JobRecord,
        devices: &[DeviceJobRecord],
    ) -> Result<(), StoreError>;

    /// Returns a job, or `None`.
    async fn job(&self, hub: &HubName, job_id: &str) -> Result<Option<JobRecord>, StoreError>;

    /// Returns up to `limit` jobs of the hub in id order (byte order), after `after`.
    async fn list_jobs(
        &self,
        hub: &HubName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StoreError>;

    /// Returns every job of every hub that is not finished (queued, scheduled, running), by hub
    /// and id: what the scheduler picks up after a restart.
    async fn unfinished_jobs(&self) -> Result<Vec<(HubName, JobRecord)>, StoreError>;

    /// Returns up to `limit` device records of one job in device id order, after `after`.
    async fn job_devices(
        &self,
        hub: &HubName,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeviceJobRecord>, StoreError>;

    /// Returns up to `limit` device records of the hub ordered by job id then device id, after
    /// `after` (`(job id, device id)`): the `devices.jobs` collection.
    async fn device_jobs(
        &self,
        hub: &HubName,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<DeviceJobRecord>, StoreError>;
}
