//! The conformance suite of [`JobStore`]: one body per contract, run against every backend with
//! [`jobs_conformance_suite!`](crate::jobs_conformance_suite) (one `#[tokio::test]` each, on a
//! fresh store that is also a `HubStore`).

use outpost_model::{HubName, Timestamp};
use serde_json::json;

use super::model::{DeviceJobRecord, DeviceJobStatus, JobRecord, JobRequest, JobStatus};
use super::store::JobStore;
use crate::testing::create_hub_named;
use crate::{HubStore, StoreError};

/// Expands to one `#[tokio::test]` per job-store conformance body.
///
/// `jobs_conformance_suite!(expr)` builds the store with `expr`;
/// `jobs_conformance_suite!(with_guard: expr)` takes `(store, guard)` and keeps the guard alive.
#[macro_export]
macro_rules! jobs_conformance_suite {
    (@tests $make:expr; $($body:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $body() {
                let (store, _guard) = $make;
                $crate::jobs::testing::$body(&store).await;
            }
        )+
    };
    (with_guard: $make:expr) => {
        $crate::jobs_conformance_suite!(@tests $make;
            jobs_are_created_once_per_hub_and_read_back,
            updating_a_job_writes_its_device_records_with_it,
            jobs_are_listed_in_id_order_and_paged,
            unfinished_jobs_are_found_across_hubs,
            device_jobs_are_ordered_by_job_then_device_and_resume,
            jobs_go_with_their_hub_only,
        );
    };
    ($make:expr) => {
        $crate::jobs_conformance_suite!(with_guard: ($make, ()));
    };
}

/// A queued twin-update job `id` over devices with tag `site = 'a'`.
pub fn job_record(id: &str) -> JobRecord {
    let body = json!({
        "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "tags": {"site": "b"}},
        "queryCondition": "tags.site = 'a'",
    });
    JobRequest::parse(id, &body)
        .expect("a valid job request")
        .into_record(Timestamp::now())
}

/// A pending record of `device` in `job`.
pub fn device_job(job: &JobRecord, device: &str) -> DeviceJobRecord {
    DeviceJobRecord::pending(job, device, Timestamp::now())
}

fn ids(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|job| job.job_id.as_str()).collect()
}

fn keys(records: &[DeviceJobRecord]) -> Vec<(&str, &str)> {
    records
        .iter()
        .map(|record| (record.job_id.as_str(), record.device_id.as_str()))
        .collect()
}

/// A job is stored once per hub (the same id in another hub is another job), reads back as
/// written, and cannot be created in a hub that does not exist.
pub async fn jobs_are_created_once_per_hub_and_read_back<S: JobStore + HubStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let b = create_hub_named(store, "b").await;
    let job = job_record("j1");
    store.create_job(&a, &job).await.expect("create");
    let again = store.create_job(&a, &job).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    store.create_job(&b, &job).await.expect("same id, other hub");
    assert_eq!(store.job(&a, "j1").await.expect("read"), Some(job.clone()));
    assert_eq!(store.job(&a, "j2").await.expect("read"), None);
    let missing = HubName::new("missing").expect("valid name");
    let orphan = store.create_job(&missing, &job).await;
    assert!(matches!(orphan, Err(StoreError::ParentMissing)), "{orphan:?}");
}

/// `update_job` replaces the job and inserts or replaces the records given, together; a job that
/// is gone is `NotFound` and its records are not written.
pub async fn updating_a_job_writes_its_device_records_with_it<S: JobStore + HubStore>(store: &S) {
    let hub = create_hub_named(store, "h").await;
    let mut job = job_record("j");
    store.create_job(&hub, &job).await.expect("create");
    job.status = JobStatus::Running;
    job.device_job_statistics.device_count = 2;
    let records = vec![device_job(&job, "d2"), device_job(&job, "d1")];
    store.update_job(&hub, &job, &records).await.expect("update");
    assert_eq!(store.job(&hub, "j").await.expect("read"), Some(job.clone()));
    let mut done = records[1].clone();
    done.status = DeviceJobStatus::Completed;
    store
        .update_job(&hub, &job, std::slice::from_ref(&done))
        .await
        .expect("update one record");
    let stored = store.job_devices(&hub, "j", None, 10).await.expect("devices");
    assert_eq!(keys(&stored), vec![("j", "d1"), ("j", "d2")]);
    assert_eq!(stored[0].status, DeviceJobStatus::Completed);
    assert_eq!(stored[1].status, DeviceJobStatus::Pending);
    let after = store
        .job_devices(&hub, "j", Some("d1"), 10)
        .await
        .expect("devices");
    assert_eq!(keys(&after), vec![("j", "d2")]);

    let ghost = job_record("ghost");
    let missing = store.update_job(&hub, &ghost, &[device_job(&ghost, "d1")]).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    assert!(
        store
            .job_devices(&hub, "ghost", None, 10)
            .await
            .expect("devices")
            .is_empty()
    );
}

/// Jobs list in id order (byte order), paged by `after`.
pub async fn jobs_are_listed_in_id_order_and_paged<S: JobStore + HubStore>(store: &S) {
    let hub = create_hub_named(store, "h").await;
    for id in ["j3", "J1", "j10", "j2"] {
        store.create_job(&hub, &job_record(id)).await.expect("create");
    }
    let all = store.list_jobs(&hub, None, 10).await.expect("list");
    assert_eq!(ids(&all), vec!["J1", "j10", "j2", "j3"]);
    let page = store.list_jobs(&hub, Some("j10"), 1).await.expect("list");
    assert_eq!(ids(&page), vec!["j2"]);
    let empty = store
        .list_jobs(&HubName::new("nohub").expect("valid name"), None, 10)
        .await
        .expect("an unknown hub has no jobs");
    assert!(empty.is_empty());
}

/// `unfinished_jobs` returns the queued, scheduled and running jobs of every hub, by hub and id.
pub async fn unfinished_jobs_are_found_across_hubs<S: JobStore + HubStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let b = create_hub_named(store, "b").await;
    for (hub, id, status) in [
        (&a, "queued", JobStatus::Queued),
        (&a, "done", JobStatus::Completed),
        (&a, "running", JobStatus::Running),
        (&b, "later", JobStatus::Scheduled),
        (&b, "cancelled", JobStatus::Cancelled),
        (&b, "failed", JobStatus::Failed),
    ] {
        let mut job = job_record(id);
        store.create_job(hub, &job).await.expect("create");
        job.status = status;
        store.update_job(hub, &job, &[]).await.expect("update");
    }
    let unfinished: Vec<(String, String)> = store
        .unfinished_jobs()
        .await
        .expect("unfinished")
        .into_iter()
        .map(|(hub, job)| (hub.to_string(), job.job_id))
        .collect();
    let expected = [("a", "queued"), ("a", "running"), ("b", "later")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(hub, id)| ((*hub).to_owned(), (*id).to_owned()))
        .collect();
    assert_eq!(unfinished, expected);
}

/// `device_jobs` walks every record of the hub by job then device, resuming after a key.
pub async fn device_jobs_are_ordered_by_job_then_device_and_resume<S: JobStore + HubStore>(store: &S) {
    let hub = create_hub_named(store, "h").await;
    let one = job_record("j1");
    let two = job_record("j2");
    store.create_job(&hub, &one).await.expect("create");
    store.create_job(&hub, &two).await.expect("create");
    store
        .update_job(&hub, &two, &[device_job(&two, "d1")])
        .await
        .expect("update");
    store
        .update_job(&hub, &one, &[device_job(&one, "d2"), device_job(&one, "d1")])
        .await
        .expect("update");
    let all = store.device_jobs(&hub, None, 10).await.expect("scan");
    assert_eq!(keys(&all), vec![("j1", "d1"), ("j1", "d2"), ("j2", "d1")]);
    let rest = store
        .device_jobs(&hub, Some(("j1", "d2")), 10)
        .await
        .expect("scan");
    assert_eq!(keys(&rest), vec![("j2", "d1")]);
    let first = store.device_jobs(&hub, None, 1).await.expect("scan");
    assert_eq!(keys(&first), vec![("j1", "d1")]);
}

/// Deleting a hub deletes its jobs and device records, and nothing of a hub whose name it
/// prefixes.
pub async fn jobs_go_with_their_hub_only<S: JobStore + HubStore>(store: &S) {
    let a = create_hub_named(store, "a").await;
    let ab = create_hub_named(store, "ab").await;
    for hub in [&a, &ab] {
        let job = job_record("j");
        store.create_job(hub, &job).await.expect("create");
        store
            .update_job(hub, &job, &[device_job(&job, "d")])
            .await
            .expect("update");
    }
    store.delete_hub(&a).await.expect("delete hub");
    assert_eq!(store.job(&a, "j").await.expect("read"), None);
    assert!(store.device_jobs(&a, None, 10).await.expect("scan").is_empty());
    assert!(store.job(&ab, "j").await.expect("read").is_some());
    assert_eq!(store.device_jobs(&ab, None, 10).await.expect("scan").len(), 1);
    let recreated = create_hub_named(store, "a").await;
    assert!(
        store
            .list_jobs(&recreated, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}
