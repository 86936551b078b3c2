//! `outpost job create|show|list|cancel` (mirrors `az iot hub job`): scheduled twin updates and
//! direct methods over many devices, through the operator API's forwarding to the service
//! routes (`/jobs/v2/…`).

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{Map, Value, json};

use crate::GlobalArgs;
use crate::admin::{connect, encode, hub_name, print};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobTypeArg {
    /// Patch twin tags and desired properties.
    #[value(name = "scheduleUpdateTwin")]
    ScheduleUpdateTwin,
    /// Invoke a direct method.
    #[value(name = "scheduleDeviceMethod")]
    ScheduleDeviceMethod,
}

impl JobTypeArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::ScheduleUpdateTwin => "scheduleUpdateTwin",
            Self::ScheduleDeviceMethod => "scheduleDeviceMethod",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Creates and schedules a job.
    Create(Box<CreateArgs>),
    /// Shows a job.
    Show(JobArgs),
    /// Lists the hub's scheduled jobs, optionally by type and status.
    List {
        /// The hub name (default: the first hub).
        #[arg(long)]
        hub: Option<String>,
        /// Only jobs of this type.
        #[arg(long, value_enum)]
        job_type: Option<JobTypeArg>,
        /// Only jobs in this status (queued, scheduled, running, completed, failed, cancelled).
        #[arg(long)]
        job_status: Option<String>,
        /// At most this many jobs.
        #[arg(long)]
        top: Option<usize>,
    },
    /// Cancels a job.
    Cancel(JobArgs),
}

#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The job id.
    #[arg(long)]
    job_id: String,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The hub name (default: the first hub).
    #[arg(long)]
    hub: Option<String>,
    /// The job id: up to 64 letters, digits and '-'.
    #[arg(long)]
    job_id: String,
    /// What the job does.
    #[arg(long, value_enum)]
    job_type: JobTypeArg,
    /// The devices, as a WHERE clause of the query language (`deviceId IN ['a','b']`).
    #[arg(long, short = 'q')]
    query_condition: String,
    /// JSON twin patch with `tags` and/or `properties.desired` (scheduleUpdateTwin).
    #[arg(long)]
    twin_patch: Option<String>,
    /// The method name (scheduleDeviceMethod).
    #[arg(long)]
    method_name: Option<String>,
    /// The method payload, JSON (scheduleDeviceMethod).
    #[arg(long, default_value = "{}")]
    method_payload: String,
    /// Seconds a device has to answer the method.
    #[arg(long, default_value_t = 30)]
    method_response_timeout: u64,
    /// Seconds a device has to connect.
    #[arg(long, default_value_t = 30)]
    method_connect_timeout: u64,
    /// When the job starts (ISO 8601; default now).
    #[arg(long)]
    start_time: Option<String>,
    /// Maximum execution time in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Waits until the job is completed, failed or cancelled.
    #[arg(long)]
    wait: bool,
    /// Seconds between status checks with --wait.
    #[arg(long, default_value_t = 10)]
    poll_interval: u64,
    /// Most seconds to wait with --wait.
    #[arg(long, default_value_t = 600)]
    poll_duration: u64,
}

fn parse_json(text: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON"))
}

/// The JobRequest body of `create`.
fn request_body(args: &CreateArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("jobId".into(), json!(args.job_id));
    body.insert("type".into(), json!(args.job_type.as_str()));
    body.insert("queryCondition".into(), json!(args.query_condition));
    body.insert("maxExecutionTimeInSeconds".into(), json!(args.ttl));
    if let Some(start) = &args.start_time {
        body.insert("startTime".into(), json!(start));
    }
    match args.job_type {
        JobTypeArg::ScheduleUpdateTwin => {
            let Some(patch) = &args.twin_patch else {
                bail!("scheduleUpdateTwin needs --twin-patch");
            };
            let Value::Object(mut patch) = parse_json(patch, "--twin-patch")? else {
                bail!("--twin-patch must be a JSON object");
            };
            // A twin update job is a forced update: the hub accepts only the `*` etag.
            patch.insert("etag".into(), json!("*"));
            body.insert("updateTwin".into(), Value::Object(patch));
        }
        JobTypeArg::ScheduleDeviceMethod => {
            let Some(name) = &args.method_name else {
                bail!("scheduleDeviceMethod needs --method-name");
            };
            body.insert(
                "cloudToDeviceMethod".into(),
                json!({
                    "methodName": name,
                    "payload": parse_json(&args.method_payload, "--method-payload")?,
                    "responseTimeoutInSeconds": args.method_response_timeout,
                    "connectTimeoutInSeconds": args.method_connect_timeout,
                }),
            );
        }
    }
    Ok(Value::Object(body))
}

fn summary(job: &Value) -> String {
    let text = |name: &str| job.get(name).and_then(Value::as_str).unwrap_or("-").to_owned();
    let stats = job.get("deviceJobStatistics").cloned().unwrap_or(Value::Null);
    let count = |name: &str| stats.get(name).and_then(Value::as_u64).unwrap_or_default();
    format!(
        "{:<40} {:<22} {:<10} devices {} (succeeded {}, failed {}, running {}, pending {})",
        text("jobId"),
        text("type"),
        text("status"),
        count("deviceCount"),
        count("succeededCount"),
        count("failedCount"),
        count("runningCount"),
        count("pendingCount"),
    )
}

fn finished(job: &Value) -> bool {
    matches!(
        job.get("status").and_then(Value::as_str),
        Some("completed" | "failed" | "cancelled")
    )
}

pub async fn job(global: &GlobalArgs, command: JobCommand) -> anyhow::Result<()> {
    let client = connect(global)?;
    match command {
        JobCommand::Create(args) => {
            let hub = hub_name(&client, args.hub.clone()).await?;
            let body = request_body(&args)?;
            let path = format!("/jobs/v2/{}", encode(&args.job_id));
            let mut job = client.service(&hub, Method::PUT, &path, Some(&body)).await?.body;
            if args.wait {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(args.poll_duration);
                while !finished(&job) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_secs(args.poll_interval.max(1))).await;
                    job = client.service(&hub, Method::GET, &path, None).await?.body;
                }
            }
            print(global.output, &job, summary);
        }
        JobCommand::Show(args) => {
            let hub = hub_name(&client, args.hub).await?;
            let path = format!("/jobs/v2/{}", encode(&args.job_id));
            let job = client.service(&hub, Method::GET, &path, None).await?.body;
            print(global.output, &job, summary);
        }
        JobCommand::List {
            hub,
            job_type,
            job_status,
            top,
        } => {
            let hub = hub_name(&client, hub).await?;
            let mut path = "/jobs/v2/query".to_owned();
            let mut separator = '?';
            if let Some(kind) = job_type {
                path.push_str(&format!("{separator}jobType={}", kind.as_str()));
                separator = '&';
            }
            if let Some(status) = &job_status {
                path.push_str(&format!("{separator}jobStatus={}", encode(status)));
            }
            let listed = client.service(&hub, Method::GET, &path, None).await?.body;
            let mut jobs = listed.as_array().cloned().unwrap_or_default();
            if let Some(top) = top {
                jobs.truncate(top);
            }
            let jobs = Value::Array(jobs);
            print(global.output, &jobs, |jobs| {
                let rows: Vec<String> = jobs.as_array().into_iter().flatten().map(summary).collect();
                rows.join("\n")
            });
        }
        JobCommand::Cancel(args) => {
            let hub = hub_name(&client, args.hub).await?;
            let path = format!("/jobs/v2/{}/cancel", encode(&args.job_id));
            let job = client.service(&hub, Method::POST, &path, None).await?.body;
            print(global.output, &job, summary);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: JobCommand,
    }

    #[test]
    fn create_builds_azure_job_requests() {
        let parsed = Wrapper::parse_from([
            "x",
            "create",
            "--job-id",
            "j1",
            "--job-type",
            "scheduleUpdateTwin",
            "-q",
            "tags.a = 1",
            "--twin-patch",
            r#"{"tags":{"b":2}}"#,
            "--ttl",
            "60",
        ]);
        let JobCommand::Create(args) = parsed.command else {
            panic!("create");
        };
        let body = request_body(&args).unwrap();
        assert_eq!(body["updateTwin"], json!({"tags": {"b": 2}, "etag": "*"}));
        assert_eq!(body["maxExecutionTimeInSeconds"], 60);

        let parsed = Wrapper::parse_from([
            "x",
            "create",
            "--job-id",
            "j2",
            "--job-type",
            "scheduleDeviceMethod",
            "-q",
            "deviceId = 'd'",
            "--method-name",
            "reboot",
            "--method-payload",
            r#"{"now":true}"#,
        ]);
        let JobCommand::Create(args) = parsed.command else {
            panic!("create");
        };
        let body = request_body(&args).unwrap();
        assert_eq!(body["cloudToDeviceMethod"]["methodName"], "reboot");
        assert_eq!(body["cloudToDeviceMethod"]["payload"], json!({"now": true}));
    }
}
