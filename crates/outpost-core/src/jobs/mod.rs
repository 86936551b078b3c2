//! Scheduled jobs (wire contract §5.2 "scheduled jobs", §5.3 "JobResponse"): a back end asks
//! the hub to patch twins or invoke a direct method on every device a query condition selects,
//! now or at a start time, within a maximum execution time.
//!
//! * [`model`]: the request, the job and device-job records, their JSON.
//! * [`store`]: the [`JobStore`] port (redb in `outpost-store`).
//! * `runner`: running one job: selecting its devices, then processing them with bounded
//!   concurrency, writing progress as it goes.
//! * `query`: `SELECT … FROM devices.jobs` over the device records.
//! * [`metrics`]: the jobs' series of `/metrics`.
//!
//! [`Jobs`] keeps the unfinished jobs in memory. [`Jobs::tick`], driven every second by the
//! server (and by tests with a manual clock), starts the jobs whose start time has come and
//! stops the running ones past their deadline; everything a job does is written through the
//! store first, so a restarted server resumes running jobs (devices not done yet) and starts
//! scheduled ones on time.

pub mod metrics;
pub mod model;
pub(crate) mod query;
mod runner;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outpost_model::{HubName, Timestamp};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Notify, watch};

pub use metrics::JobMetrics;
pub use model::{
    DeviceJobError, DeviceJobRecord, DeviceJobStatistics, DeviceJobStatus, DeviceMethodResponse, JobMethod,
    JobRecord, JobRequest, JobStatus, JobType,
};
pub use store::JobStore;

use crate::access::{Caller, Permission};
use crate::{Clock, CoreError, Hubs, Metrics, Registry, StoreError};

/// How the hub runs jobs.
#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    /// Devices of one job processed at once.
    pub concurrency: usize,
    /// How often a method job looks again for its offline devices.
    pub offline_retry: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            offline_retry: Duration::from_millis(500),
        }
    }
}

/// Why a running job stops before all its devices are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `POST /jobs/v2/{id}/cancel`: remaining devices are canceled.
    Cancelled,
    /// The maximum execution time passed: remaining devices fail.
    Expired,
    /// The server is stopping: nothing more is written; the job resumes after a restart.
    Shutdown,
    /// The hub was deleted: nothing more is written.
    HubDeleted,
}

/// A run in progress: how to stop it and how to learn that it ended.
#[derive(Debug)]
struct RunControl {
    stop: watch::Sender<Option<Stop>>,
    done: watch::Receiver<bool>,
    deadline: Timestamp,
}

impl RunControl {
    /// Asks the run to stop, unless it was asked already.
    fn request(&self, why: Stop) {
        self.stop.send_if_modified(|stop| {
            if stop.is_none() {
                *stop = Some(why);
                true
            } else {
                false
            }
        });
    }
}

/// An unfinished job the scheduler knows.
#[derive(Debug)]
enum Active {
    /// Queued or scheduled (or running before a restart): starts at `start`.
    Waiting { start: Timestamp, deadline: Timestamp },
    /// Being run by a task.
    Running(RunControl),
}

type JobKey = (HubName, String);

/// A page of `GET /jobs/v2/query`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// JobResponse documents.
    pub items: Vec<Value>,
    /// Where the next page starts, when there is one.
    pub continuation: Option<String>,
}

/// The scheduled jobs of every hub.
pub struct Jobs {
    store: Arc<dyn JobStore>,
    registry: Arc<Registry>,
    hubs: Arc<Hubs>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    settings: JobSettings,
    active: Mutex<HashMap<JobKey, Active>>,
    wake: Notify,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Jobs read from the store at a time.
const LIST_BATCH: usize = 500;
/// Longest a cancel waits for a running job to write its final state.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

impl Jobs {
    /// Builds the service; call [`Jobs::load`] before serving.
    pub fn new(
        store: Arc<dyn JobStore>,
        registry: Arc<Registry>,
        hubs: Arc<Hubs>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        settings: JobSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            registry,
            hubs,
            clock,
            metrics,
            settings,
            active: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// Returns the store (the registry's `devices.jobs` queries read it).
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// Picks up the unfinished jobs of every hub (after a restart) and counts all jobs for the
    /// metrics.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn load(&self) -> Result<(), CoreError> {
        for (hub, job) in self.store.unfinished_jobs().await? {
            self.active.lock().insert(
                (hub, job.job_id.clone()),
                Active::Waiting {
                    start: job.start_time,
                    deadline: job.deadline(),
                },
            );
        }
        for hub in self.hubs.list() {
            let mut after: Option<String> = None;
            loop {
                let batch = self
                    .store
                    .list_jobs(&hub.name, after.as_deref(), LIST_BATCH)
                    .await?;
                for job in &batch {
                    self.metrics.jobs.job_moved(None, job.status);
                }
                match batch.last() {
                    Some(last) if batch.len() == LIST_BATCH => after = Some(last.job_id.clone()),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Creates a job (`PUT /jobs/v2/{id}`) from its JobRequest body and returns its JobResponse.
    ///
    /// # Errors
    /// `IotHubUnauthorizedAccess` without RegistryWrite (and ServiceConnect for a method job);
    /// request errors of [`JobRequest::parse`]; `JobAlreadyExists`; storage failures.
    pub async fn create(&self, caller: &Caller, id: &str, body: &Value) -> Result<Value, CoreError> {
        caller.require(Permission::RegistryWrite)?;
        let request = JobRequest::parse(id, body)?;
        if request.job_type == JobType::DeviceMethod {
            caller.require(Permission::ServiceConnect)?;
        }
        let job = request.into_record(self.clock.now());
        let hub = &caller.hub().name;
        self.store
            .create_job(hub, &job)
            .await
            .map_err(|error| match error {
                StoreError::Conflict => CoreError::JobAlreadyExists(id.to_owned()),
                StoreError::ParentMissing => CoreError::HubNotFound(hub.to_string()),
                other => other.into(),
            })?;
        self.metrics.jobs.job_moved(None, job.status);
        self.active.lock().insert(
            (hub.clone(), job.job_id.clone()),
            Active::Waiting {
                start: job.start_time,
                deadline: job.deadline(),
            },
        );
        // A job due now starts without waiting for the next tick.
        self.wake.notify_one();
        Ok(job.to_json())
    }

    /// Returns a job's JobResponse (`GET /jobs/v2/{id}`).
    ///
    /// # Errors
    /// `IotHubUnauthorizedAccess` without RegistryRead; `JobNotFound`.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Value, CoreError> {
        caller.require(Permission::RegistryRead)?;
        Ok(self.load_job(caller, id).await?.to_json())
    }

    async fn load_job(&self, caller: &Caller, id: &str) -> Result<JobRecord, CoreError> {
        self.store
            .job(&caller.hub().name, id)
            .await?
            .ok_or_else(|| CoreError::JobNotFound(id.to_owned()))
    }

    /// Cancels a job (`POST /jobs/v2/{id}/cancel`) and returns its JobResponse: a waiting job
    /// never starts, a running one stops processing devices (the rest are canceled); a finished
    /// job is returned as it is.
    ///
    /// # Errors
    /// `IotHubUnauthorizedAccess` without RegistryWrite; `JobNotFound`; storage failures.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Value, CoreError> {
        caller.require(Permission::RegistryWrite)?;
        let key = (caller.hub().name.clone(), id.to_owned());
        enum Action {
            Direct(Active),
            Wait(watch::Receiver<bool>),
            Nothing,
        }
        let action = {
            let mut active = self.active.lock();
            match active.get(&key) {
                Some(Active::Running(control)) => {
                    control.request(Stop::Cancelled);
                    Action::Wait(control.done.clone())
                }
                Some(Active::Waiting { .. }) => active.remove(&key).map_or(Action::Nothing, Action::Direct),
                None => Action::Nothing,
            }
        };
        match action {
            Action::Direct(waiting) => {
                if let Err(error) = self.cancel_waiting(caller, id).await {
                    // Not cancelled: the scheduler keeps it.
                    self.active.lock().insert(key, waiting);
                    return Err(error);
                }
            }
            Action::Wait(mut done) => {
                if tokio::time::timeout(CANCEL_WAIT, done.wait_for(|done| *done))
                    .await
                    .is_err()
                {
                    return Err(CoreError::Contention);
                }
            }
            Action::Nothing => {}
        }
        Ok(self.load_job(caller, id).await?.to_json())
    }

    async fn cancel_waiting(&self, caller: &Caller, id: &str) -> Result<(), CoreError> {
        let mut job = self.load_job(caller, id).await?;
        if job.status.is_finished() {
            return Ok(());
        }
        let from = job.status;
        job.status = JobStatus::Cancelled;
        job.end_time = Some(self.clock.now());
        self.store.update_job(&caller.hub().name, &job, &[]).await?;
        self.metrics.jobs.job_moved(Some(from), job.status);
        Ok(())
    }

    /// Lists the hub's jobs (`GET /jobs/v2/query`), filtered by type and status names, a page of
    /// at most `page_size` in job id order from `continuation`.
    ///
    /// # Errors
    /// `IotHubUnauthorizedAccess` without RegistryRead; `ArgumentInvalid` for a malformed
    /// continuation token; storage failures.
    pub async fn list(
        &self,
        caller: &Caller,
        job_type: Option<&str>,
        status: Option<&str>,
        continuation: Option<&str>,
        page_size: usize,
    ) -> Result<JobPage, CoreError> {
        caller.require(Permission::RegistryRead)?;
        let page_size = page_size.clamp(1, crate::query::MAX_PAGE_ITEMS);
        let mut after = continuation.map(decode_token).transpose()?;
        let mut items = Vec::new();
        let mut last = None;
        loop {
            let batch = self
                .store
                .list_jobs(&caller.hub().name, after.as_deref(), LIST_BATCH)
                .await?;
            let full = batch.len() == LIST_BATCH;
            for job in batch {
                after = Some(job.job_id.clone());
                let wanted = job_type.is_none_or(|kind| kind == job.job_type.as_str())
                    && status.is_none_or(|status| status == job.status.as_str());
                if !wanted {
                    continue;
                }
                if items.len() == page_size {
                    // One more exists: the next page starts after the last one returned.
                    return Ok(JobPage {
                        items,
                        continuation: last.as_deref().map(encode_token),
                    });
                }
                last = Some(job.job_id.clone());
                items.push(job.to_json());
            }
            if !full {
                return Ok(JobPage {
                    items,
                    continuation: None,
                });
            }
        }
    }

    /// Starts the jobs whose start time has come and stops those past their deadline, at the
    /// injected clock's time.
    pub fn tick(self: &Arc<Self>) {
        let now = self.clock.now();
        let mut due = Vec::new();
        {
            let mut active = self.active.lock();
            for (key, entry) in active.iter_mut() {
                match entry {
                    Active::Waiting { start, deadline } if *start <= now => {
                        let (stop, stop_receiver) = watch::channel(None);
                        let (done_sender, done) = watch::channel(false);
                        let control = RunControl {
                            stop,
                            done,
                            deadline: *deadline,
                        };
                        if *deadline <= now {
                            control.request(Stop::Expired);
                        }
                        *entry = Active::Running(control);
                        due.push((key.clone(), stop_receiver, done_sender));
                    }
                    Active::Running(control) if control.deadline <= now => control.request(Stop::Expired),
                    _ => {}
                }
            }
        }
        for (key, stop, done) in due {
            tokio::spawn(runner::run(self.clone(), key, stop, done));
        }
    }

    /// Runs the scheduler: a tick every `period` (and whenever a job is created) until `stop`
    /// resolves; then stops the running jobs without finishing them (they resume on the next
    /// start).
    pub async fn drive(self: Arc<Self>, period: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            self.tick();
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(period) => {}
                () = self.wake.notified() => {}
            }
        }
        self.stop_all(Stop::Shutdown, None).await;
    }

    /// Forgets the jobs of a hub about to be deleted: running ones stop without writing, and they
    /// leave the metrics (the store deletes them with the hub).
    ///
    /// # Errors
    /// Storage failures while counting the hub's jobs.
    pub async fn drop_hub(&self, hub: &HubName) -> Result<(), CoreError> {
        self.stop_all(Stop::HubDeleted, Some(hub)).await;
        let mut after: Option<String> = None;
        loop {
            let batch = self.store.list_jobs(hub, after.as_deref(), LIST_BATCH).await?;
            for job in &batch {
                self.metrics.jobs.jobs_removed(job.status, 1);
            }
            match batch.last() {
                Some(last) if batch.len() == LIST_BATCH => after = Some(last.job_id.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Stops the running jobs (of `hub`, or all) for `why` and waits for their tasks; waiting
    /// jobs of `hub` are forgotten.
    async fn stop_all(&self, why: Stop, hub: Option<&HubName>) {
        let waits: Vec<watch::Receiver<bool>> = {
            let mut active = self.active.lock();
            let mut waits = Vec::new();
            active.retain(|(job_hub, _), entry| {
                if hub.is_some_and(|hub| hub != job_hub) {
                    return true;
                }
                match entry {
                    Active::Running(control) => {
                        control.request(why);
                        waits.push(control.done.clone());
                        true
                    }
                    Active::Waiting { .. } => hub.is_none(),
                }
            });
            waits
        };
        for mut done in waits {
            let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|done| *done)).await;
        }
    }

    /// Returns whether a job is being run by a task (tests wait on this).
    pub fn is_running(&self, hub: &HubName, id: &str) -> bool {
        matches!(
            self.active.lock().get(&(hub.clone(), id.to_owned())),
            Some(Active::Running(_))
        )
    }
}

fn encode_token(job_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(job_id.as_bytes())
}

fn decode_token(token: &str) -> Result<String, CoreError> {
    let invalid = || CoreError::InvalidArgument("the continuation token is not valid".into());
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}
