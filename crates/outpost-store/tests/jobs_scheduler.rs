//! The scheduled-job scheduler of `outpost-core` on the embedded store, driven by a manual clock:
//! a scheduled job starts at its start time and completes; the maximum execution time fails the
//! devices that never came online; cancel stops a running job; a restarted server (the store
//! reopened from disk) resumes a running job where it stopped and starts a scheduled one on time.
//! Devices are simulated on the presence table, as a connection registers them.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outpost_core::jobs::{DeviceJobStatus, JobRecord, JobStatus, JobStore};
use outpost_core::{
    Caller, Clock, DeviceCommand, DeviceSpec, Hubs, IdentityKey, JobSettings, Jobs, MethodOutcome, Metrics,
    Presence, Registry, TwinWrite,
};
use outpost_model::{DeviceId, Hub, HubName, Timestamp, TwinLimits, TwinUpdate};
use outpost_store::EmbeddedStore;
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Debug)]
struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    fn advance(&self, seconds: i64) {
        let mut now = self.0.lock();
        *now = Timestamp::from_unix_millis(now.unix_millis().unwrap() + seconds * 1000);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock()
    }
}

struct Hub1 {
    store: EmbeddedStore,
    registry: Arc<Registry>,
    jobs: Arc<Jobs>,
    caller: Caller,
    hub: HubName,
}

async fn open(store: EmbeddedStore, clock: Arc<ManualClock>) -> Hub1 {
    let hubs = Arc::new(Hubs::load(Arc::new(store.clone())).await.unwrap());
    if hubs.by_name("h").is_none() {
        hubs.create(Hub::new(HubName::new("h").unwrap(), "h.example.test", 2).unwrap())
            .await
            .unwrap();
    }
    let hub = hubs.by_name("h").unwrap();
    let registry = Arc::new(Registry::new(
        Arc::new(store.clone()),
        clock.clone(),
        TwinLimits::default(),
        Arc::new(Presence::default()),
        Arc::new(store.clone()),
    ));
    let settings = JobSettings {
        concurrency: 4,
        offline_retry: Duration::from_millis(20),
    };
    let jobs = Jobs::new(
        Arc::new(store.clone()),
        registry.clone(),
        hubs,
        clock,
        Arc::new(Metrics::default()),
        settings,
    );
    jobs.load().await.unwrap();
    Hub1 {
        store,
        registry,
        jobs,
        caller: Caller::operator(hub.clone()),
        hub: hub.name.clone(),
    }
}

fn start_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock(Mutex::new(Timestamp::from_unix_seconds(
        1_900_000_000,
    ))))
}

impl Hub1 {
    async fn device(&self, id: &str, site: &str) {
        let id = DeviceId::new(id).unwrap();
        self.registry
            .put_device(&self.caller, &id, DeviceSpec::default(), None)
            .await
            .unwrap();
        let tags = json!({ "site": site }).as_object().cloned();
        let update = TwinUpdate { tags, desired: None };
        self.registry
            .write_device_twin(&self.caller, &id, &update, TwinWrite::Patch, None)
            .await
            .unwrap();
    }

    /// Connects `id` and answers every method with 200; returns how many calls it answered.
    fn online(&self, id: &str) -> Arc<AtomicUsize> {
        let key = IdentityKey {
            hub: self.hub.clone(),
            device: DeviceId::new(id).unwrap(),
            module: None,
        };
        let mut registration = self.registry.presence().connect(key, Timestamp::now());
        let answered = Arc::new(AtomicUsize::new(0));
        let count = answered.clone();
        tokio::spawn(async move {
            while let Some(command) = registration.commands.recv().await {
                if let DeviceCommand::InvokeMethod(call) = command {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = call.respond.send(MethodOutcome::Answered {
                        status: 200,
                        payload: json!({ "method": call.name }),
                    });
                }
            }
        });
        answered
    }

    async fn create(&self, id: &str, body: Value) -> Value {
        self.jobs.create(&self.caller, id, &body).await.unwrap()
    }

    async fn job(&self, id: &str) -> JobRecord {
        self.store.job(&self.hub, id).await.unwrap().unwrap()
    }

    async fn device_status(&self, job: &str, device: &str) -> Option<DeviceJobStatus> {
        let records = self.store.job_devices(&self.hub, job, None, 100).await.unwrap();
        records
            .into_iter()
            .find(|record| record.device_id == device)
            .map(|record| record.status)
    }

    /// Waits (real time, bounded) until the job's run task is done.
    async fn settled(&self, id: &str) -> JobRecord {
        for _ in 0..500 {
            if !self.jobs.is_running(&self.hub, id) {
                return self.job(id).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} is still running");
    }
}

fn twin_job(condition: &str, start: Timestamp, max: u64) -> Value {
    json!({
        "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "tags": {"patched": true}, "properties": {"desired": {"fw": 2}}},
        "queryCondition": condition,
        "startTime": start.to_string(),
        "maxExecutionTimeInSeconds": max,
    })
}

fn method_job(condition: &str, start: Timestamp, max: u64) -> Value {
    json!({
        "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {}, "responseTimeoutInSeconds": 5},
        "queryCondition": condition,
        "startTime": start.to_string(),
        "maxExecutionTimeInSeconds": max,
    })
}

fn later(clock: &ManualClock, seconds: i64) -> Timestamp {
    Timestamp::from_unix_millis(clock.now().unix_millis().unwrap() + seconds * 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_starts_at_its_start_time_and_completes() {
    let clock = start_clock();
    let hub = open(EmbeddedStore::in_memory().unwrap(), clock.clone()).await;
    for id in ["d1", "d2", "d3"] {
        hub.device(id, if id == "d3" { "other" } else { "a" }).await;
    }
    let created = hub
        .create("t1", twin_job("tags.site = 'a'", later(&clock, 60), 600))
        .await;
    assert_eq!(created["status"], "scheduled");

    clock.advance(59);
    hub.jobs.tick();
    assert!(!hub.jobs.is_running(&hub.hub, "t1"));
    assert_eq!(hub.job("t1").await.status, JobStatus::Scheduled);

    clock.advance(2);
    hub.jobs.tick();
    let job = hub.settled("t1").await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.end_time, Some(clock.now()));
    let stats = job.device_job_statistics;
    assert_eq!(
        (stats.device_count, stats.succeeded_count, stats.failed_count),
        (2, 2, 0)
    );
    for id in ["d1", "d2"] {
        assert_eq!(
            hub.device_status("t1", id).await,
            Some(DeviceJobStatus::Completed)
        );
        let twin = hub
            .registry
            .device_twin(&hub.caller, &DeviceId::new(id).unwrap())
            .await
            .unwrap();
        assert_eq!(twin["tags"]["patched"], true);
        assert_eq!(twin["properties"]["desired"]["fw"], 2);
    }
    assert_eq!(hub.device_status("t1", "d3").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_execution_time_fails_devices_that_never_came_online() {
    let clock = start_clock();
    let hub = open(EmbeddedStore::in_memory().unwrap(), clock.clone()).await;
    hub.device("on", "a").await;
    hub.device("off", "a").await;
    let answered = hub.online("on");
    hub.create("m1", method_job("tags.site = 'a'", clock.now(), 30))
        .await;
    hub.jobs.tick();
    for _ in 0..500 {
        if hub.device_status("m1", "on").await == Some(DeviceJobStatus::Completed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        hub.device_status("m1", "on").await,
        Some(DeviceJobStatus::Completed)
    );
    assert!(
        hub.jobs.is_running(&hub.hub, "m1"),
        "waiting for the offline device"
    );
    let running = hub.job("m1").await;
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running.device_job_statistics.pending_count, 1);

    clock.advance(29);
    hub.jobs.tick();
    assert!(hub.jobs.is_running(&hub.hub, "m1"));
    clock.advance(2);
    hub.jobs.tick();
    let job = hub.settled("m1").await;
    assert_eq!(job.status, JobStatus::Completed);
    let stats = job.device_job_statistics;
    assert_eq!(
        (
            stats.device_count,
            stats.succeeded_count,
            stats.failed_count,
            stats.pending_count
        ),
        (2, 1, 1, 0)
    );
    let records = hub.store.job_devices(&hub.hub, "m1", None, 10).await.unwrap();
    let off = records.iter().find(|record| record.device_id == "off").unwrap();
    assert_eq!(off.status, DeviceJobStatus::Failed);
    assert_eq!(off.error.as_ref().unwrap().code, "JobRunPreconditionFailed");
    let on = records.iter().find(|record| record.device_id == "on").unwrap();
    assert_eq!(on.outcome.as_ref().unwrap().status, 200);
    assert_eq!(answered.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_and_cancels_its_remaining_devices() {
    let clock = start_clock();
    let hub = open(EmbeddedStore::in_memory().unwrap(), clock.clone()).await;
    hub.device("off1", "a").await;
    hub.device("off2", "a").await;
    hub.create("c1", method_job("tags.site = 'a'", clock.now(), 3600))
        .await;
    hub.jobs.tick();
    for _ in 0..500 {
        if hub.job("c1").await.status == JobStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancelled = hub.jobs.cancel(&hub.caller, "c1").await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(!hub.jobs.is_running(&hub.hub, "c1"));
    for id in ["off1", "off2"] {
        assert_eq!(hub.device_status("c1", id).await, Some(DeviceJobStatus::Canceled));
    }
    let stats = hub.job("c1").await.device_job_statistics;
    assert_eq!((stats.device_count, stats.failed_count), (2, 2));

    // A scheduled job cancelled before its start never starts.
    hub.create("c2", twin_job("tags.site = 'a'", later(&clock, 10), 60))
        .await;
    assert_eq!(
        hub.jobs.cancel(&hub.caller, "c2").await.unwrap()["status"],
        "cancelled"
    );
    clock.advance(11);
    hub.jobs.tick();
    assert!(!hub.jobs.is_running(&hub.hub, "c2"));
    assert_eq!(hub.job("c2").await.status, JobStatus::Cancelled);
    assert_eq!(hub.device_status("c2", "off1").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_resumes_running_jobs_and_starts_scheduled_ones_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.redb");
    let clock = start_clock();
    let first_answers = {
        let hub = open(EmbeddedStore::open(&path).unwrap(), clock.clone()).await;
        hub.device("early", "a").await;
        hub.device("late", "a").await;
        let answered = hub.online("early");
        hub.create("r1", method_job("tags.site = 'a'", clock.now(), 600))
            .await;
        hub.create("r2", twin_job("tags.site = 'a'", later(&clock, 100), 600))
            .await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let driver = tokio::spawn(hub.jobs.clone().drive(Duration::from_secs(3600), async {
            let _ = stopped.await;
        }));
        for _ in 0..500 {
            if hub.device_status("r1", "early").await == Some(DeviceJobStatus::Completed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            hub.device_status("r1", "early").await,
            Some(DeviceJobStatus::Completed)
        );
        // The server stops: the run ends without finishing the job.
        stop.send(()).unwrap();
        driver.await.unwrap();
        assert_eq!(hub.job("r1").await.status, JobStatus::Running);
        answered.load(Ordering::SeqCst)
    };
    assert_eq!(first_answers, 1);

    clock.advance(10);
    let hub = open(EmbeddedStore::open(&path).unwrap(), clock.clone()).await;
    let early = hub.online("early");
    let late = hub.online("late");
    hub.jobs.tick();
    let job = hub.settled("r1").await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.device_job_statistics.succeeded_count, 2);
    assert_eq!(
        early.load(Ordering::SeqCst),
        0,
        "a device done before the restart is not called again"
    );
    assert_eq!(late.load(Ordering::SeqCst), 1);
    assert_eq!(hub.job("r2").await.status, JobStatus::Scheduled);
    assert!(!hub.jobs.is_running(&hub.hub, "r2"));

    clock.advance(91);
    hub.jobs.tick();
    let job = hub.settled("r2").await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.device_job_statistics.succeeded_count, 2);
}
