//! Running one job: select its devices (the query condition over the hub's twins, once, when
//! the job starts), then process them a few at a time, writing each batch of finished devices
//! with the job's statistics in one store write.
//!
//! A twin job patches tags and desired properties as `PATCH /twins/{id}` does (connected devices
//! get the desired patch). A method job invokes the method as `POST /twins/{id}/methods` does;
//! a device that is offline is not failed at once: like Azure's, the job waits for it to come
//! online until the job's deadline, then fails it with `JobRunPreconditionFailed`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use outpost_model::{DeviceId, HasErrorCode as _, Hub, TwinUpdate};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::model::{
    DeviceJobError, DeviceJobRecord, DeviceJobStatistics, DeviceJobStatus, DeviceMethodResponse, JobRecord,
    JobStatus, JobType, condition_query,
};
use super::{Active, JobKey, Jobs, Stop};
use crate::access::Caller;
use crate::methods::MethodCall;
use crate::presence::IdentityKey;
use crate::routing::events::publish_device_jobs;
use crate::twins::{TwinWrite, device_twin_json};
use crate::{CoreError, MethodResult, Registry, StoreError};

/// Device records read at a time when a job resumes.
const RESUME_BATCH: usize = 1000;
/// Twins read at a time while selecting devices.
const SCAN_BATCH: usize = 1000;
/// Azure's error of a device that did not come online before the job ended.
const NOT_ONLINE_CODE: &str = "JobRunPreconditionFailed";
const NOT_ONLINE_DESCRIPTION: &str = "The job did not start within specified period: either device did not come online or invalid endTime specified.";

/// Runs the job of `key` until it is done or stopped, then leaves the scheduler's table (or goes
/// back to waiting when storage failed, to be retried at the next tick).
pub(super) async fn run(
    jobs: Arc<Jobs>,
    key: JobKey,
    mut stop: watch::Receiver<Option<Stop>>,
    done: watch::Sender<bool>,
) {
    let outcome = run_job(&jobs, &key, &mut stop).await;
    {
        let mut active = jobs.active.lock();
        match outcome {
            Ok(()) | Err(CoreError::Store(StoreError::NotFound)) => {
                active.remove(&key);
            }
            Err(error) => {
                tracing::warn!(hub = %key.0, job = %key.1, error = %error, "a job run failed; retrying");
                if let Some(entry) = active.get_mut(&key) {
                    let deadline = match entry {
                        Active::Running(control) => control.deadline,
                        Active::Waiting { deadline, .. } => *deadline,
                    };
                    *entry = Active::Waiting {
                        start: jobs.clock.now(),
                        deadline,
                    };
                }
            }
        }
    }
    let _ = done.send(true);
}

/// What the device tasks need.
struct Work {
    registry: Arc<Registry>,
    caller: Caller,
    job_type: JobType,
    method: Option<MethodCall>,
    update: Option<TwinUpdate>,
}

/// The result of one device's task.
type DeviceResult = (String, Result<Option<MethodResult>, CoreError>);

async fn run_job(
    jobs: &Arc<Jobs>,
    (hub_name, job_id): &JobKey,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Result<(), CoreError> {
    let Some(hub) = jobs.hubs.by_name(hub_name.as_str()) else {
        return Ok(());
    };
    let Some(mut job) = jobs.store.job(hub_name, job_id).await? else {
        return Ok(());
    };
    if job.status.is_finished() {
        return Ok(());
    }
    let mut devices = BTreeMap::new();
    if job.status == JobStatus::Running {
        // Resumed after a restart: the devices were selected when it started.
        let mut after: Option<String> = None;
        loop {
            let batch = jobs
                .store
                .job_devices(hub_name, job_id, after.as_deref(), RESUME_BATCH)
                .await?;
            let full = batch.len() == RESUME_BATCH;
            for record in batch {
                after = Some(record.device_id.clone());
                devices.insert(record.device_id.clone(), record);
            }
            if !full {
                break;
            }
        }
    } else {
        let requested = *stop.borrow();
        match requested {
            Some(Stop::Shutdown | Stop::HubDeleted) => return Ok(()),
            Some(Stop::Cancelled) => return finish(jobs, &hub, job, devices, Some(Stop::Cancelled)).await,
            Some(Stop::Expired) | None => {}
        }
        let selected = match condition_query(&job.query_condition) {
            Ok(query) => select_devices(&jobs.registry, &hub, &query).await?,
            Err(error) => {
                // Validated at creation; kept for records written by another version.
                job.failure_reason = Some(error.to_string());
                let from = job.status;
                job.status = JobStatus::Failed;
                job.end_time = Some(jobs.clock.now());
                jobs.store.update_job(hub_name, &job, &[]).await?;
                jobs.metrics.jobs.job_moved(Some(from), job.status);
                return Ok(());
            }
        };
        let now = jobs.clock.now();
        for device in selected {
            let record = DeviceJobRecord::pending(&job, &device, now);
            devices.insert(device, record);
        }
        let from = job.status;
        job.status = JobStatus::Running;
        job.device_job_statistics = statistics(&devices, 0);
        let records: Vec<DeviceJobRecord> = devices.values().cloned().collect();
        jobs.store.update_job(hub_name, &job, &records).await?;
        jobs.metrics.jobs.job_moved(Some(from), job.status);
    }
    let work = Arc::new(Work {
        registry: jobs.registry.clone(),
        caller: Caller::operator(hub.clone()),
        job_type: job.job_type,
        method: job.cloud_to_device_method.as_ref().map(|method| method.call()),
        update: match job.job_type {
            JobType::UpdateTwin => Some(job.twin_update()?),
            JobType::DeviceMethod => None,
        },
    });
    let stopped = process(jobs, &hub, &mut job, &mut devices, &work, stop).await?;
    if matches!(stopped, Some(Stop::Shutdown | Stop::HubDeleted)) {
        return Ok(());
    }
    finish(jobs, &hub, job, devices, stopped).await
}

/// Processes the pending devices until all are done or the run is stopped; returns why it
/// stopped.
async fn process(
    jobs: &Arc<Jobs>,
    hub: &Arc<Hub>,
    job: &mut JobRecord,
    devices: &mut BTreeMap<String, DeviceJobRecord>,
    work: &Arc<Work>,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Result<Option<Stop>, CoreError> {
    let mut queue: VecDeque<String> = devices
        .values()
        .filter(|record| !record.status.is_finished())
        .map(|record| record.device_id.clone())
        .collect();
    let mut offline: Vec<String> = Vec::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<DeviceResult> = JoinSet::new();
    let mut stopped = *stop.borrow();
    loop {
        if stopped.is_none() {
            while tasks.len() < jobs.settings.concurrency.max(1) {
                let Some(device) = queue.pop_front() else { break };
                in_flight.insert(device.clone());
                tasks.spawn(process_device(work.clone(), device));
            }
        }
        if tasks.is_empty() && (stopped.is_some() || (queue.is_empty() && offline.is_empty())) {
            return Ok(stopped);
        }
        let waiting_for_devices = tasks.is_empty() && queue.is_empty();
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let mut results = vec![joined];
                while let Some(more) = tasks.try_join_next() {
                    results.push(more);
                }
                let mut changed = Vec::new();
                for joined in results {
                    // A device task never panics; one that did fails its device.
                    let (device, result) = match joined {
                        Ok(result) => result,
                        Err(_) => continue,
                    };
                    in_flight.remove(&device);
                    if let Some(record) = settle(jobs, job, devices, &device, result, &mut offline) {
                        changed.push(record);
                    }
                }
                // Also written when only the counts moved (a device went back to waiting).
                let stats = statistics(devices, in_flight.len());
                if !changed.is_empty() || stats != job.device_job_statistics {
                    job.device_job_statistics = stats;
                    jobs.store.update_job(&hub.name, job, &changed).await?;
                    publish_device_jobs(&jobs.registry.events, &hub.name, jobs.clock.now(), &changed).await;
                }
            }
            changed = stop.changed() => {
                stopped = match changed {
                    Ok(()) => *stop.borrow(),
                    // The scheduler is gone: stop as the server does.
                    Err(_) => Some(Stop::Shutdown),
                };
                // A method call in flight is abandoned (its answer is ignored); a twin write is
                // short and finishes, so that the record tells what happened to the twin.
                if work.job_type == JobType::DeviceMethod || matches!(stopped, Some(Stop::Shutdown | Stop::HubDeleted)) {
                    tasks.abort_all();
                }
            }
            () = tokio::time::sleep(jobs.settings.offline_retry), if waiting_for_devices => {
                let presence = work.registry.presence();
                offline.retain(|device| {
                    let key = IdentityKey {
                        hub: hub.name.clone(),
                        device: match DeviceId::new(device) {
                            Ok(id) => id,
                            Err(_) => return false,
                        },
                        module: None,
                    };
                    if presence.connected_since(&key).is_some() {
                        queue.push_back(device.clone());
                        false
                    } else {
                        true
                    }
                });
            }
        }
        if stopped.is_some() && tasks.is_empty() {
            return Ok(stopped);
        }
    }
}

/// Applies one device's result to its record; returns the changed record, or `None` when the
/// device stays pending (offline, retried later).
fn settle(
    jobs: &Jobs,
    job: &JobRecord,
    devices: &mut BTreeMap<String, DeviceJobRecord>,
    device: &str,
    result: Result<Option<MethodResult>, CoreError>,
    offline: &mut Vec<String>,
) -> Option<DeviceJobRecord> {
    let record = devices.get_mut(device)?;
    let now = jobs.clock.now();
    match result {
        Ok(answer) => {
            record.status = DeviceJobStatus::Completed;
            record.outcome = answer.map(|answer| DeviceMethodResponse {
                status: answer.status,
                payload: answer.payload,
            });
            record.error = None;
        }
        Err(CoreError::DeviceNotOnline(_)) if job.job_type == JobType::DeviceMethod => {
            offline.push(device.to_owned());
            return None;
        }
        Err(error) => {
            record.status = DeviceJobStatus::Failed;
            record.error = Some(DeviceJobError {
                code: error.code().name().to_owned(),
                description: error.to_string(),
            });
        }
    }
    record.end_time_utc = now;
    record.last_updated_date_time_utc = now;
    jobs.metrics.jobs.device_job_finished(job.job_type, record.status);
    Some(record.clone())
}

/// Processes one device: a twin patch or a method call, as the operator.
async fn process_device(work: Arc<Work>, device: String) -> DeviceResult {
    let result = async {
        let id = DeviceId::new(&device)?;
        match (&work.method, &work.update) {
            (Some(call), _) => work
                .registry
                .invoke_method(&work.caller, &id, None, call.clone())
                .await
                .map(Some),
            (None, Some(update)) => work
                .registry
                .write_device_twin(&work.caller, &id, update, TwinWrite::Patch, None)
                .await
                .map(|_| None),
            (None, None) => Err(CoreError::InvalidArgument("the job has nothing to do".into())),
        }
    }
    .await;
    (device, result)
}

/// Writes the job's final state: devices not done are canceled (cancel) or failed (deadline).
async fn finish(
    jobs: &Arc<Jobs>,
    hub: &Arc<Hub>,
    mut job: JobRecord,
    mut devices: BTreeMap<String, DeviceJobRecord>,
    stopped: Option<Stop>,
) -> Result<(), CoreError> {
    let now = jobs.clock.now();
    let mut changed = Vec::new();
    for record in devices.values_mut().filter(|record| !record.status.is_finished()) {
        if stopped == Some(Stop::Cancelled) {
            record.status = DeviceJobStatus::Canceled;
        } else {
            record.status = DeviceJobStatus::Failed;
            record.error = Some(DeviceJobError {
                code: NOT_ONLINE_CODE.to_owned(),
                description: NOT_ONLINE_DESCRIPTION.to_owned(),
            });
        }
        record.end_time_utc = now;
        record.last_updated_date_time_utc = now;
        jobs.metrics.jobs.device_job_finished(job.job_type, record.status);
        changed.push(record.clone());
    }
    let from = job.status;
    job.status = if stopped == Some(Stop::Cancelled) {
        JobStatus::Cancelled
    } else {
        JobStatus::Completed
    };
    if stopped == Some(Stop::Expired) && !changed.is_empty() {
        job.status_message = Some(format!(
            "maxExecutionTimeInSeconds passed before {} device(s) were done",
            changed.len()
        ));
    }
    job.end_time = Some(now);
    job.device_job_statistics = statistics(&devices, 0);
    jobs.store.update_job(&hub.name, &job, &changed).await?;
    publish_device_jobs(&jobs.registry.events, &hub.name, now, &changed).await;
    jobs.metrics.jobs.job_moved(Some(from), job.status);
    Ok(())
}

/// Counts the devices by status; `running` of the pending ones are in flight.
fn statistics(devices: &BTreeMap<String, DeviceJobRecord>, running: usize) -> DeviceJobStatistics {
    let mut stats = DeviceJobStatistics {
        device_count: devices.len() as u64,
        ..DeviceJobStatistics::default()
    };
    for record in devices.values() {
        match record.status {
            DeviceJobStatus::Completed => stats.succeeded_count += 1,
            DeviceJobStatus::Failed | DeviceJobStatus::Canceled => stats.failed_count += 1,
            DeviceJobStatus::Pending | DeviceJobStatus::Running => stats.pending_count += 1,
        }
    }
    let running = (running as u64).min(stats.pending_count);
    stats.pending_count -= running;
    stats.running_count = running;
    stats
}

/// Returns the ids of the hub's devices whose twin satisfies `query`, in id order.
async fn select_devices(
    registry: &Registry,
    hub: &Hub,
    query: &outpost_query::Query,
) -> Result<Vec<String>, CoreError> {
    let mut selected = Vec::new();
    let mut after: Option<DeviceId> = None;
    loop {
        let batch = registry
            .store
            .list_devices(&hub.name, after.as_ref(), SCAN_BATCH)
            .await?;
        let full = batch.len() == SCAN_BATCH;
        for mut record in batch {
            after = Some(record.device.device_id.clone());
            record.device = registry.with_presence(&hub.name, record.device);
            if query.matches(&device_twin_json(&record)) {
                selected.push(record.device.device_id.to_string());
            }
        }
        if !full {
            return Ok(selected);
        }
    }
}
