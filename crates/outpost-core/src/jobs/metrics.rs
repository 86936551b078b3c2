//! Job counters for `/metrics` (docs/metrics.md): jobs per status, device parts per type and
//! outcome.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

use super::model::{DeviceJobStatus, JobStatus, JobType};

/// The jobs' series of `/metrics`.
#[derive(Debug, Default)]
pub struct JobMetrics {
    /// Jobs of every hub per status (a gauge: moved on every transition).
    statuses: Mutex<BTreeMap<JobStatus, i64>>,
    /// Finished device parts per job type and outcome.
    device_jobs: Mutex<BTreeMap<(JobType, DeviceJobStatus), u64>>,
}

impl JobMetrics {
    /// A job entered `to`, from `from` when it existed before.
    pub fn job_moved(&self, from: Option<JobStatus>, to: JobStatus) {
        let mut statuses = self.statuses.lock();
        if let Some(from) = from {
            *statuses.entry(from).or_default() -= 1;
        }
        *statuses.entry(to).or_default() += 1;
    }

    /// Jobs of a deleted hub leave the gauge.
    pub fn jobs_removed(&self, status: JobStatus, count: i64) {
        *self.statuses.lock().entry(status).or_default() -= count;
    }

    /// A device's part of a job finished with `outcome`.
    pub fn device_job_finished(&self, job_type: JobType, outcome: DeviceJobStatus) {
        *self.device_jobs.lock().entry((job_type, outcome)).or_default() += 1;
    }

    /// Appends the series in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP outpost_jobs Scheduled jobs (twin updates, direct methods) per status.\n");
        out.push_str("# TYPE outpost_jobs gauge\n");
        let statuses = self.statuses.lock().clone();
        for status in JobStatus::ALL {
            let count = statuses.get(&status).copied().unwrap_or_default().max(0);
            let _ = writeln!(out, "outpost_jobs{{status=\"{}\"}} {count}", status.as_str());
        }
        out.push_str(
            "# HELP outpost_device_jobs_total Devices processed by scheduled jobs, per job type and outcome.\n",
        );
        out.push_str("# TYPE outpost_device_jobs_total counter\n");
        for ((job_type, outcome), count) in self.device_jobs.lock().iter() {
            let _ = writeln!(
                out,
                "outpost_device_jobs_total{{type=\"{}\",outcome=\"{}\"}} {count}",
                job_type.as_str(),
                outcome.as_str()
            );
        }
    }
}
