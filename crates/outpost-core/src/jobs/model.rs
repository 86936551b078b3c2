//! What a scheduled job is (wire contract §5.2 "scheduled jobs", §5.3 "JobResponse"): the
//! request a back end sends, the job record the hub keeps, the per-device records
//! (`devices.jobs`), and their JSON in Azure's shapes.

use outpost_model::{Timestamp, TwinUpdate};
use outpost_query::Query;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::CoreError;
use crate::methods::{DEFAULT_RESPONSE_TIMEOUT_SECS, MAX_TIMEOUT_SECS, MethodCall};

/// Longest job id Azure accepts.
pub const MAX_JOB_ID_LEN: usize = 64;
/// `maxExecutionTimeInSeconds` when the request has none (the Node SDK's default as well).
pub const DEFAULT_MAX_EXECUTION_SECS: u64 = 3600;
/// Longest `maxExecutionTimeInSeconds` accepted (Outpost's bound: a year).
pub const MAX_EXECUTION_SECS: u64 = 365 * 24 * 3600;
/// The text a query condition is wrapped in to run over device twins.
const CONDITION_PREFIX: &str = "SELECT * FROM devices WHERE ";

/// The kind of a scheduled job (`type`; `jobType` in device job records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JobType {
    /// Invoke a direct method on every matching device.
    #[serde(rename = "scheduleDeviceMethod")]
    DeviceMethod,
    /// Patch the tags and desired properties of every matching device twin.
    #[serde(rename = "scheduleUpdateTwin")]
    UpdateTwin,
}

impl JobType {
    /// Azure's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeviceMethod => "scheduleDeviceMethod",
            Self::UpdateTwin => "scheduleUpdateTwin",
        }
    }
}

/// The status of a job (JobResponse `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Created with a start time that has come: waiting for the scheduler.
    Queued,
    /// Created with a start time in the future.
    Scheduled,
    /// Its devices are being processed.
    Running,
    /// Every device was processed, or the maximum execution time passed.
    Completed,
    /// The job could not run (its devices could not be selected).
    Failed,
    /// Cancelled by a back end.
    Cancelled,
}

impl JobStatus {
    /// Every status, for metrics.
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Scheduled,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Azure's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// The status of one device's part of a job (DeviceJob `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceJobStatus {
    /// Not processed yet (or waiting for the device to come online).
    Pending,
    /// Being processed.
    Running,
    /// Done: the twin was patched, or the device answered the method.
    Completed,
    /// Not done: see the record's `error`.
    Failed,
    /// The job was cancelled before this device was processed.
    Canceled,
}

impl DeviceJobStatus {
    /// Azure's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Whether this device is done with the job.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

/// A direct method as a job carries it (`cloudToDeviceMethod`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMethod {
    /// The method name.
    pub method_name: String,
    /// The payload (any JSON).
    #[serde(default)]
    pub payload: Value,
    /// Seconds to wait for each device's answer.
    pub response_timeout_in_seconds: u64,
    /// Seconds a device may take to connect (kept for the response; the job itself waits for
    /// offline devices until it ends).
    pub connect_timeout_in_seconds: u64,
}

impl JobMethod {
    /// The call the job makes on one device: offline devices are retried by the job, so a call
    /// does not wait for its device to connect.
    pub fn call(&self) -> MethodCall {
        MethodCall {
            method_name: self.method_name.clone(),
            payload: self.payload.clone(),
            response_timeout_in_seconds: Some(self.response_timeout_in_seconds),
            connect_timeout_in_seconds: Some(0),
        }
    }
}

/// Device counts of a job (`deviceJobStatistics`). Canceled devices count as failed, so that
/// `deviceCount` is always the sum of the four others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobStatistics {
    /// Devices the job selected.
    pub device_count: u64,
    /// Devices whose part failed or was canceled.
    pub failed_count: u64,
    /// Devices whose part completed.
    pub succeeded_count: u64,
    /// Devices being processed.
    pub running_count: u64,
    /// Devices not processed yet.
    pub pending_count: u64,
}

/// A scheduled job as the hub stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// The id (unique per hub).
    pub job_id: String,
    /// What it does.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The WHERE clause selecting its devices.
    pub query_condition: String,
    /// When it was created.
    pub created_time: Timestamp,
    /// When it starts (or started).
    pub start_time: Timestamp,
    /// When it ended, once it has.
    pub end_time: Option<Timestamp>,
    /// How long it may run, from `start_time`.
    pub max_execution_time_in_seconds: u64,
    /// The method of a `scheduleDeviceMethod` job.
    pub cloud_to_device_method: Option<JobMethod>,
    /// The twin patch of a `scheduleUpdateTwin` job, as sent (`etag`, `tags`, `properties`).
    pub update_twin: Option<Value>,
    /// Where it is.
    pub status: JobStatus,
    /// Why it failed, if it did.
    pub failure_reason: Option<String>,
    /// A note on its state.
    pub status_message: Option<String>,
    /// Its devices.
    pub device_job_statistics: DeviceJobStatistics,
}

impl JobRecord {
    /// When the job must be over: `start_time` + `maxExecutionTimeInSeconds`.
    pub fn deadline(&self) -> Timestamp {
        let start = self.start_time.unix_millis().unwrap_or_default();
        let max = i64::try_from(self.max_execution_time_in_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        Timestamp::from_unix_millis(start.saturating_add(max))
    }

    /// The twin patch of an update job.
    ///
    /// # Errors
    /// When the stored patch is not a twin patch (validated at creation, so only on corruption).
    pub fn twin_update(&self) -> Result<TwinUpdate, CoreError> {
        let patch = self.update_twin.as_ref().unwrap_or(&Value::Null);
        Ok(TwinUpdate::from_twin_json(patch)?)
    }

    /// The JobResponse JSON (wire contract §5.3).
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "jobId": self.job_id,
            "queryCondition": self.query_condition,
            "createdTime": self.created_time,
            "startTime": self.start_time,
            "maxExecutionTimeInSeconds": self.max_execution_time_in_seconds,
            "type": self.job_type.as_str(),
            "status": self.status.as_str(),
            "deviceJobStatistics": self.device_job_statistics,
        });
        let Value::Object(map) = &mut out else {
            return out;
        };
        if let Some(end) = self.end_time {
            map.insert("endTime".into(), json!(end));
        }
        if let Some(method) = &self.cloud_to_device_method {
            map.insert("cloudToDeviceMethod".into(), json!(method));
        }
        if let Some(twin) = &self.update_twin {
            map.insert("updateTwin".into(), twin.clone());
        }
        if let Some(reason) = &self.failure_reason {
            map.insert("failureReason".into(), json!(reason));
        }
        if let Some(message) = &self.status_message {
            map.insert("statusMessage".into(), json!(message));
        }
        out
    }
}

/// Why one device's part of a job failed (DeviceJob `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceJobError {
    /// Azure's error code name.
    pub code: String,
    /// What happened.
    pub description: String,
}

/// The device's answer to a method job (`outcome.deviceMethodResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceMethodResponse {
    /// The status the device returned.
    pub status: i32,
    /// The payload the device returned.
    pub payload: Value,
}

/// One device's part of a job, queryable as `devices.jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobRecord {
    /// The device.
    pub device_id: String,
    /// The job.
    pub job_id: String,
    /// The job's type.
    pub job_type: JobType,
    /// Where it is.
    pub status: DeviceJobStatus,
    /// When the job started.
    pub start_time_utc: Timestamp,
    /// When this device's part ended (the job's deadline while it has not).
    pub end_time_utc: Timestamp,
    /// When the record was created (the job selected the device).
    pub created_date_time_utc: Timestamp,
    /// When the record last changed.
    pub last_updated_date_time_utc: Timestamp,
    /// The device's answer, for method jobs.
    pub outcome: Option<DeviceMethodResponse>,
    /// Why it failed.
    pub error: Option<DeviceJobError>,
}

impl DeviceJobRecord {
    /// A new pending record of `device` in `job`.
    pub fn pending(job: &JobRecord, device: &str, now: Timestamp) -> Self {
        Self {
            device_id: device.to_owned(),
            job_id: job.job_id.clone(),
            job_type: job.job_type,
            status: DeviceJobStatus::Pending,
            start_time_utc: job.start_time,
            end_time_utc: job.deadline(),
            created_date_time_utc: now,
            last_updated_date_time_utc: now,
            outcome: None,
            error: None,
        }
    }

    /// The DeviceJob JSON, as `SELECT * FROM devices.jobs` returns it.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "deviceId": self.device_id,
            "jobId": self.job_id,
            "jobType": self.job_type.as_str(),
            "status": self.status.as_str(),
            "startTimeUtc": self.start_time_utc,
            "endTimeUtc": self.end_time_utc,
            "createdDateTimeUtc": self.created_date_time_utc,
            "lastUpdatedDateTimeUtc": self.last_updated_date_time_utc,
            "outcome": { "deviceMethodResponse": self.outcome },
        });
        if let (Some(error), Value::Object(map)) = (&self.error, &mut out) {
            map.insert("error".into(), json!(error));
        }
        out
    }
}

/// A validated job request.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// The job id (from the path).
    pub job_id: String,
    /// What it does.
    pub job_type: JobType,
    /// The WHERE clause, as sent.
    pub query_condition: String,
    /// When to start (`None`: now).
    pub start_time: Option<Timestamp>,
    /// How long it may run.
    pub max_execution_time_in_seconds: u64,
    /// The method of a method job.
    pub method: Option<JobMethod>,
    /// The twin patch of an update job.
    pub update_twin: Option<Value>,
}

fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument(message.into())
}

fn missing(field: &str) -> CoreError {
    CoreError::ArgumentNull(format!("{field} is required"))
}

/// Checks a job id: 1–64 US-ASCII letters, digits and dashes (Azure's rule).
///
/// # Errors
/// `ArgumentInvalid`.
pub fn check_job_id(id: &str) -> Result<(), CoreError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_JOB_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        let shown: String = id.chars().take(80).collect();
        Err(invalid(format!(
            "'{shown}' is not a valid job id: at most {MAX_JOB_ID_LEN} ASCII letters, digits and '-'"
        )))
    }
}

/// Parses a query condition into the twin query it selects devices with. Parse errors carry the
/// position within the condition itself.
///
/// # Errors
/// `ArgumentInvalid` with the position of the problem.
pub fn condition_query(condition: &str) -> Result<Query, CoreError> {
    Query::parse(&format!("{CONDITION_PREFIX}{condition}")).map_err(|error| {
        let prefix_chars = CONDITION_PREFIX.chars().count();
        let column = if error.line() == 1 {
            error.column().saturating_sub(prefix_chars).max(1)
        } else {
            error.column()
        };
        invalid(format!(
            "the query condition is not valid: {} at line {}, column {column}",
            error.message(),
            error.line()
        ))
    })
}

fn u64_field(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, CoreError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{name} must be a non-negative integer"))),
    }
}

fn parse_method(value: Option<&Value>) -> Result<JobMethod, CoreError> {
    let Some(Value::Object(method)) = value else {
        return match value {
            None | Some(Value::Null) => Err(missing("cloudToDeviceMethod")),
            Some(_) => Err(invalid("cloudToDeviceMethod must be an object")),
        };
    };
    let name = match method.get("methodName") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
        None | Some(Value::Null) => return Err(missing("cloudToDeviceMethod.methodName")),
        Some(_) => {
            return Err(invalid(
                "cloudToDeviceMethod.methodName must be a non-empty string",
            ));
        }
    };
    if name.len() > 256 || name.contains(['/', '?', '#', '+', '&']) {
        return Err(invalid(format!("'{name}' is not a valid method name")));
    }
    let response = u64_field(method, "responseTimeoutInSeconds")?.unwrap_or(DEFAULT_RESPONSE_TIMEOUT_SECS);
    let connect = u64_field(method, "connectTimeoutInSeconds")?.unwrap_or(0);
    if response > MAX_TIMEOUT_SECS || connect > MAX_TIMEOUT_SECS {
        return Err(invalid(format!(
            "timeouts are at most {MAX_TIMEOUT_SECS} seconds"
        )));
    }
    Ok(JobMethod {
        method_name: name,
        payload: method.get("payload").cloned().unwrap_or(Value::Null),
        response_timeout_in_seconds: response,
        connect_timeout_in_seconds: connect,
    })
}

fn parse_update_twin(value: Option<&Value>) -> Result<Value, CoreError> {
    let patch = match value {
        None | Some(Value::Null) => return Err(missing("updateTwin")),
        Some(patch @ Value::Object(_)) => patch,
        Some(_) => return Err(invalid("updateTwin must be a twin object")),
    };
    let update = TwinUpdate::from_twin_json(patch)?;
    if update.tags.is_none() && update.desired.is_none() {
        return Err(invalid("updateTwin must carry tags or properties.desired"));
    }
    // A twin update job is a forced update: Azure accepts only the `*` etag.
    let etag = patch
        .get("etag")
        .and_then(Value::as_str)
        .map(|etag| etag.trim_matches('"'));
    if etag != Some("*") {
        return Err(CoreError::PreconditionFailed);
    }
    Ok(patch.clone())
}

impl JobRequest {
    /// Validates a `PUT /jobs/v2/{id}` body (a JobRequest) for job `id`.
    ///
    /// # Errors
    /// `ArgumentInvalid` / `ArgumentNull` for a bad id, type, condition (with its position),
    /// start time, execution time, method or twin patch; `PreconditionFailed` for a twin patch
    /// whose etag is not `*`.
    pub fn parse(id: &str, body: &Value) -> Result<Self, CoreError> {
        check_job_id(id)?;
        let Value::Object(body) = body else {
            return Err(invalid("the job request must be a JSON object"));
        };
        match body.get("jobId") {
            None | Some(Value::Null) => {}
            Some(Value::String(body_id)) if body_id.is_empty() || body_id == id => {}
            Some(other) => {
                return Err(invalid(format!(
                    "jobId {other} in the body does not match '{id}' in the path"
                )));
            }
        }
        let job_type = match body.get("type") {
            None | Some(Value::Null) => return Err(missing("type")),
            Some(Value::String(kind)) if kind == "scheduleDeviceMethod" => JobType::DeviceMethod,
            Some(Value::String(kind)) if kind == "scheduleUpdateTwin" => JobType::UpdateTwin,
            Some(other) => {
                return Err(invalid(format!(
                    "job type {other} is not supported here: scheduleDeviceMethod or scheduleUpdateTwin"
                )));
            }
        };
        let query_condition = match body.get("queryCondition") {
            Some(Value::String(condition)) if !condition.trim().is_empty() => condition.clone(),
            None | Some(Value::Null) => return Err(missing("queryCondition")),
            Some(Value::String(_)) => return Err(missing("queryCondition")),
            Some(_) => return Err(invalid("queryCondition must be a string")),
        };
        condition_query(&query_condition)?;
        let start_time = match body.get("startTime") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(
                text.parse::<Timestamp>()
                    .map_err(|_| invalid(format!("startTime '{text}' is not an ISO 8601 date and time")))?,
            ),
            Some(_) => return Err(invalid("startTime must be an ISO 8601 string")),
        };
        let max_execution_time_in_seconds =
            u64_field(body, "maxExecutionTimeInSeconds")?.unwrap_or(DEFAULT_MAX_EXECUTION_SECS);
        if max_execution_time_in_seconds == 0 || max_execution_time_in_seconds > MAX_EXECUTION_SECS {
            return Err(invalid(format!(
                "maxExecutionTimeInSeconds must be between 1 and {MAX_EXECUTION_SECS}"
            )));
        }
        let (method, update_twin) = match job_type {
            JobType::DeviceMethod => (Some(parse_method(body.get("cloudToDeviceMethod"))?), None),
            JobType::UpdateTwin => (None, Some(parse_update_twin(body.get("updateTwin"))?)),
        };
        Ok(Self {
            job_id: id.to_owned(),
            job_type,
            query_condition,
            start_time,
            max_execution_time_in_seconds,
            method,
            update_twin,
        })
    }

    /// The record of the new job, created at `now`: queued when its start time has come,
    /// scheduled otherwise.
    pub fn into_record(self, now: Timestamp) -> JobRecord {
        let start_time = self.start_time.filter(|start| !start.is_never()).unwrap_or(now);
        let status = if start_time > now {
            JobStatus::Scheduled
        } else {
            JobStatus::Queued
        };
        JobRecord {
            job_id: self.job_id,
            job_type: self.job_type,
            query_condition: self.query_condition,
            created_time: now,
            start_time,
            end_time: None,
            max_execution_time_in_seconds: self.max_execution_time_in_seconds,
            cloud_to_device_method: self.method,
            update_twin: self.update_twin,
            status,
            failure_reason: None,
            status_message: None,
            device_job_statistics: DeviceJobStatistics::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method_body() -> Value {
        json!({
            "jobId": "j1",
            "type": "scheduleDeviceMethod",
            "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"a": 1}, "responseTimeoutInSeconds": 10},
            "queryCondition": "deviceId IN ['a', 'b']",
            "startTime": "2030-01-01T00:00:00Z",
            "maxExecutionTimeInSeconds": 60,
        })
    }

    #[test]
    fn a_method_request_parses_and_renders_as_a_job_response() {
        let request = JobRequest::parse("j1", &method_body()).unwrap();
        let now = Timestamp::from_unix_seconds(1_950_000_000);
        let record = request.into_record(now);
        assert_eq!(record.status, JobStatus::Queued, "2030 is before the test's now");
        let rendered = record.to_json();
        assert_eq!(rendered["type"], "scheduleDeviceMethod");
        assert_eq!(rendered["cloudToDeviceMethod"]["methodName"], "reboot");
        assert_eq!(rendered["cloudToDeviceMethod"]["connectTimeoutInSeconds"], 0);
        assert_eq!(rendered["deviceJobStatistics"]["deviceCount"], 0);
        assert!(rendered.get("endTime").is_none());
    }

    #[test]
    fn bad_requests_are_refused_with_the_condition_position() {
        let mut body = method_body();
        body["queryCondition"] = json!("deviceId IN ['a',");
        let error = JobRequest::parse("j1", &body).unwrap_err().to_string();
        assert!(error.contains("line 1, column"), "{error}");
        let column: usize = error.rsplit("column ").next().unwrap().parse().unwrap();
        assert!(column <= "deviceId IN ['a',".len() + 1, "{error}");
        assert!(JobRequest::parse("bad_id", &method_body()).is_err());
        assert!(JobRequest::parse(&"x".repeat(65), &method_body()).is_err());
        let mut body = method_body();
        body["type"] = json!("export");
        assert!(JobRequest::parse("j1", &body).is_err());
        let mut body = method_body();
        body.as_object_mut().unwrap().remove("cloudToDeviceMethod");
        assert!(matches!(
            JobRequest::parse("j1", &body),
            Err(CoreError::ArgumentNull(_))
        ));
    }

    #[test]
    fn a_twin_job_needs_the_star_etag() {
        let body = json!({
            "type": "scheduleUpdateTwin",
            "updateTwin": {"properties": {"desired": {"x": 1}}},
            "queryCondition": "tags.site = 'a'",
        });
        assert!(matches!(
            JobRequest::parse("t", &body),
            Err(CoreError::PreconditionFailed)
        ));
        let body = json!({
            "type": "scheduleUpdateTwin",
            "updateTwin": {"etag": "*", "tags": {"site": "b"}},
            "queryCondition": "tags.site = 'a'",
        });
        let record = JobRequest::parse("t", &body)
            .unwrap()
            .into_record(Timestamp::now());
        assert_eq!(record.twin_update().unwrap().tags.unwrap()["site"], "b");
    }

    #[test]
    fn the_deadline_is_the_start_plus_the_maximum_execution_time() {
        let now = Timestamp::from_unix_seconds(1_000);
        let record = JobRequest::parse("j1", &method_body()).unwrap().into_record(now);
        let mut record = record;
        record.start_time = now;
        assert_eq!(record.deadline(), Timestamp::from_unix_seconds(1_060));
    }
}
