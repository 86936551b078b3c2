//! Twin and direct-method load scenarios (wire contract §2.6, §2.7).
//!
//! * `twin --op get|reported`: every device keeps `--inflight` twin requests outstanding on
//!   `$iothub/twin/GET/?$rid=<n>` or `$iothub/twin/PATCH/properties/reported/?$rid=<n>` and
//!   waits for `$iothub/twin/res/<status>/?$rid=<n>`.
//! * `desired`: the service API patches desired properties (`PATCH /twins/<id>`) and each device
//!   measures how long the notification on `$iothub/twin/PATCH/properties/desired/` took.
//! * `methods`: the service API invokes `POST /twins/<id>/methods`; devices answer at once.
//!
//! Latency is always measured from the intended start of an operation: with `--rate` the
//! schedule (so a server that falls behind is charged for the queueing), in closed loop the
//! moment the request was sent.
//!
//! Modules: `twin` (twin requests over MQTT), `service_calls` (desired patches and direct
//! methods invoked through the service API); this file holds what they share: the report, the
//! device setup and small helpers.

mod service_calls;
mod twin;

pub(crate) use service_calls::{DesiredArgs, MethodsArgs, desired, methods};
pub(crate) use twin::{TwinArgs, twin};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use outpost_mqtt::codec::{Packet, Publish, QoS};
use serde::Serialize;

use crate::mqtt_client::{Conn, Device};
use crate::operator::Operator;
use crate::report::Latency;
use crate::{Common, base_report, connect_all, setup};

const API: &str = "api-version=2021-04-12";
const TWIN_RESPONSES: &str = "$iothub/twin/res/#";
const DESIRED_NOTIFICATIONS: &str = "$iothub/twin/PATCH/properties/desired/#";
const METHOD_REQUESTS: &str = "$iothub/methods/POST/#";
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ScenarioReport {
    pub scenario: String,
    pub target: String,
    pub tls: bool,
    pub devices: u64,
    pub connected: u64,
    pub connect_failures: u64,
    pub connects_per_sec: f64,
    pub connect_latency: Latency,
    pub subscribe_failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Target total operations per second, 0 = closed loop.
    pub rate: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflight: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_http: Option<u64>,
    pub duration_secs: f64,
    /// Requests written (MQTT) or service calls started (HTTP).
    pub sent: u64,
    /// Requests answered with the expected status.
    pub ok: u64,
    /// Requests answered with another status, or failed in transport.
    pub failed: u64,
    /// Requests still unanswered at the drain deadline.
    pub timed_out: u64,
    /// Response statuses seen (`"transport"` for calls that got none).
    pub statuses: BTreeMap<String, u64>,
    /// First intended send time to last successful response.
    pub run_secs: f64,
    pub ok_per_sec: f64,
    /// twin: request → response; desired: service call; methods: invocation round trip.
    pub latency: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<u64>,
    /// desired: intended patch time → notification at the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_latency: Option<Latency>,
    /// Devices whose connection failed during the run.
    pub device_errors: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl ScenarioReport {
    fn new(scenario: &str, common: &Common) -> Self {
        Self {
            scenario: scenario.into(),
            target: format!("{}:{}", common.host, common.port),
            tls: !common.plain,
            devices: common.devices as u64,
            ..Default::default()
        }
    }

    fn error(&mut self, e: impl FnOnce() -> String) {
        self.first_error.get_or_insert_with(e);
    }

    pub fn print(&self) {
        let row = |k: &str, v: String| println!("  {k:<24} {v}");
        let lat = |l: &Latency| {
            format!(
                "p50 {} p90 {} p99 {} max {} ({} samples)",
                l.p50_us, l.p90_us, l.p99_us, l.max_us, l.samples
            )
        };
        println!(
            "{} against {} ({})",
            self.scenario,
            self.target,
            if self.tls { "TLS" } else { "plain" }
        );
        row(
            "devices",
            format!(
                "{} connected, {} failed, {} subscribe failures",
                self.connected, self.connect_failures, self.subscribe_failures
            ),
        );
        row("connect rate", format!("{:.0} connects/s", self.connects_per_sec));
        row("connect latency (µs)", lat(&self.connect_latency));
        let mut workload = format!(
            "rate {}, {} s",
            if self.rate == 0 {
                "max (closed loop)".to_owned()
            } else {
                format!("{}/s", self.rate)
            },
            self.duration_secs
        );
        if let Some(op) = &self.op {
            workload = format!("op {op}, {workload}");
        }
        if let Some(k) = self.inflight {
            workload.push_str(&format!(", inflight {k}/device"));
        }
        if let Some(c) = self.concurrency_http {
            workload.push_str(&format!(", {c} concurrent HTTP"));
        }
        row("workload", workload);
        row(
            "requests",
            format!(
                "{} sent, {} ok, {} failed, {} timed out",
                self.sent, self.ok, self.failed, self.timed_out
            ),
        );
        let statuses: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        row("statuses", statuses.join(" "));
        row(
            "throughput",
            format!("{:.0} ok/s over {:.3} s", self.ok_per_sec, self.run_secs),
        );
        let latency_name = match self.scenario.as_str() {
            "desired" => "service call (µs)",
            "methods" => "round trip (µs)",
            _ => "response latency (µs)",
        };
        row(latency_name, lat(&self.latency));
        if let Some(n) = self.notifications {
            if self.scenario == "methods" {
                row("answered by devices", n.to_string());
            } else {
                row("notifications", format!("{n} received of {} patched", self.ok));
            }
        }
        if let Some(l) = &self.notify_latency {
            row("patch → device (µs)", lat(l));
        }
        row("device errors", self.device_errors.to_string());
        row("errors", self.errors.to_string());
        if let Some(e) = &self.first_error {
            row("first error", e.clone());
        }
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", path.display()))
    }

    /// Ends a run in which no device could connect and subscribe.
    fn finish_without_devices(&mut self, json: Option<&std::path::PathBuf>) -> anyhow::Result<bool> {
        self.errors = self.connect_failures + self.subscribe_failures;
        self.error(|| "no device connected".into());
        self.finish(json)
    }

    fn finish(&self, json: Option<&std::path::PathBuf>) -> anyhow::Result<bool> {
        self.print();
        if let Some(path) = json {
            self.write(path)?;
        }
        Ok(self.errors == 0 && self.ok > 0)
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn unix_micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The value of `key` in a `k=v&k=v` query.
fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Acknowledges a QoS 1 delivery (we subscribe with QoS 0, but be safe).
async fn ack_if_needed(conn: &mut Conn, publish: &Publish) -> anyhow::Result<()> {
    if let Some(id) = publish.packet_id {
        conn.send(&Packet::PubAck(id)).await?;
    }
    Ok(())
}

/// Connects every device and subscribes each to `filter`; returns the connections that are
/// ready, with their devices, and fills the connection figures of `report`.
async fn connect_and_subscribe(
    common: &Common,
    scenario: &str,
    filter: &'static str,
    report: &mut ScenarioReport,
) -> anyhow::Result<Vec<(Device, Conn)>> {
    if common.generic_topic {
        bail!("{scenario} needs Outpost's `$iothub` topics; --generic-topic is not supported");
    }
    let (target, devices) = setup(common).await?;
    let mut connect = base_report(scenario, common);
    let conns = connect_all(&target, &devices, common.concurrency, &mut connect).await;
    report.connected = connect.connected;
    report.connect_failures = connect.connect_failures;
    report.connects_per_sec = connect.connects_per_sec;
    report.connect_latency = connect.connect_latency;
    if let Some(e) = connect.first_error {
        report.error(|| e);
    }
    let mut tasks = Vec::new();
    for (device, conn) in devices.into_iter().zip(conns) {
        let Some(mut conn) = conn else { continue };
        tasks.push(tokio::spawn(async move {
            match conn.subscribe(&[filter], QoS::AtMostOnce).await {
                Ok(()) => Ok((device, conn)),
                Err(e) => Err(format!("subscribe {filter} as {}: {e:#}", device.id)),
            }
        }));
    }
    let mut ready = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await? {
            Ok(pair) => ready.push(pair),
            Err(e) => {
                report.subscribe_failures += 1;
                report.error(|| e);
            }
        }
    }
    Ok(ready)
}

/// The operator API of the server whose data directory `--data-dir` names.
fn operator_for(common: &Common) -> anyhow::Result<Operator> {
    let dir = common
        .data_dir
        .as_ref()
        .context("--data-dir is needed for the service API")?;
    Operator::from_data_dir(dir)
}
