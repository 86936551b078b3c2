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

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use hyper::Method;
use outpost_mqtt::codec::{Packet, Publish, QoS, encode};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::mqtt_client::{Conn, Device};
use crate::operator::Operator;
use crate::report::Latency;
use crate::{Common, base_report, connect_all, setup};

const API: &str = "api-version=2021-04-12";
const TWIN_RESPONSES: &str = "$iothub/twin/res/#";
const DESIRED_NOTIFICATIONS: &str = "$iothub/twin/PATCH/properties/desired/#";
const METHOD_REQUESTS: &str = "$iothub/methods/POST/#";

/// Which twin request `twin` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TwinOp {
    /// `$iothub/twin/GET/?$rid=<n>` (expects status 200).
    Get,
    /// `$iothub/twin/PATCH/properties/reported/?$rid=<n>` (expects status 204).
    Reported,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct TwinArgs {
    #[command(flatten)]
    common: Common,
    /// Twin request to send.
    #[arg(long, value_enum, default_value = "get")]
    op: TwinOp,
    /// Outstanding requests per device.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Target total requests per second; 0 = closed loop, as fast as the window allows.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to wait for outstanding responses after sending stops.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DesiredArgs {
    #[command(flatten)]
    common: Common,
    /// Target total desired patches per second (round robin over devices); 0 = closed loop.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Concurrent service API requests.
    #[arg(long, default_value_t = 32)]
    concurrency_http: usize,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to wait for outstanding notifications after sending stops.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct MethodsArgs {
    #[command(flatten)]
    common: Common,
    /// Target total invocations per second; 0 = closed loop (each caller waits for its answer).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Concurrent callers (service API requests in flight).
    #[arg(long, default_value_t = 64)]
    concurrency_http: usize,
    /// Stop invoking after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

/// Result of one twin or method scenario run.
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

// ---------------------------------------------------------------------------------------------
// twin --op get|reported
// ---------------------------------------------------------------------------------------------

struct TwinPlan {
    op: TwinOp,
    inflight: usize,
    /// Interval between this device's requests; zero = closed loop.
    interval: Duration,
    first: Instant,
    deadline: Instant,
    drain_deadline: Instant,
}

#[derive(Debug, Default)]
struct TwinOutcome {
    sent: u64,
    ok: u64,
    failed: u64,
    timed_out: u64,
    statuses: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
    last_ok: Option<Instant>,
    /// First unexpected response.
    bad_response: Option<String>,
    /// The loop itself failed (connection closed, write error).
    error: Option<String>,
}

/// `$iothub/twin/res/<status>/?$rid=<rid>[&$version=<v>]` → (status, rid).
fn parse_twin_response(topic: &str) -> Option<(u16, u64)> {
    let rest = topic.strip_prefix("$iothub/twin/res/")?;
    let (status, query) = rest.split_once("/?")?;
    Some((status.parse().ok()?, query_value(query, "$rid")?.parse().ok()?))
}

async fn twin_loop(conn: &mut Conn, plan: &TwinPlan, out: &mut TwinOutcome) -> anyhow::Result<()> {
    let window = plan.inflight.max(1);
    let expected = match plan.op {
        TwinOp::Get => 200,
        TwinOp::Reported => 204,
    };
    let mut pending: HashMap<u64, Instant> = HashMap::with_capacity(window * 2);
    let mut stop_sending = false;
    let mut wbuf = BytesMut::with_capacity(4096);
    let scheduled = |i: u64| plan.first + plan.interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
    loop {
        if stop_sending && pending.is_empty() {
            return Ok(());
        }
        let can_send = !stop_sending && pending.len() < window;
        let due = scheduled(out.sent);
        let hard_stop = if stop_sending {
            plan.drain_deadline
        } else {
            plan.deadline
        };
        tokio::select! {
            packet = conn.next() => {
                let Some(packet) = packet? else {
                    bail!("server closed the connection");
                };
                let Packet::Publish(publish) = packet else { continue };
                ack_if_needed(conn, &publish).await?;
                let Some((status, rid)) = parse_twin_response(&publish.topic) else { continue };
                let Some(intended) = pending.remove(&rid) else { continue };
                let now = Instant::now();
                out.latencies_us.push(micros(now.saturating_duration_since(intended)));
                *out.statuses.entry(status.to_string()).or_default() += 1;
                if status == expected {
                    out.ok += 1;
                    out.last_ok = Some(now);
                } else {
                    out.failed += 1;
                    out.bad_response.get_or_insert_with(|| {
                        format!(
                            "{} → {}",
                            publish.topic,
                            String::from_utf8_lossy(&publish.payload)
                        )
                    });
                }
            }
            () = sleep_until(due.into()), if can_send => {
                let now = Instant::now();
                let mut batch = 0;
                while pending.len() < window && batch < 256 && now < plan.deadline {
                    let intended = scheduled(out.sent);
                    if intended > now {
                        break;
                    }
                    let rid = out.sent + 1;
                    let (topic, payload) = match plan.op {
                        TwinOp::Get => (format!("$iothub/twin/GET/?$rid={rid}"), Bytes::from_static(b" ")),
                        TwinOp::Reported => (
                            format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}"),
                            Bytes::from(format!("{{\"counter\":{rid},\"status\":\"ok\"}}")),
                        ),
                    };
                    let publish = Publish {
                        dup: false,
                        qos: QoS::AtMostOnce,
                        retain: false,
                        topic,
                        packet_id: None,
                        payload,
                    };
                    encode(&Packet::Publish(publish), &mut wbuf)?;
                    // Closed loop: the clock starts when the request is sent.
                    pending.insert(rid, if plan.interval.is_zero() { now } else { intended });
                    out.sent += 1;
                    batch += 1;
                }
                if !wbuf.is_empty() {
                    conn.send_raw(&wbuf).await?;
                    wbuf.clear();
                }
                if now >= plan.deadline {
                    stop_sending = true;
                }
            }
            () = sleep_until(hard_stop.into()) => {
                if stop_sending {
                    out.timed_out = pending.len() as u64;
                    return Ok(());
                }
                stop_sending = true;
            }
        }
    }
}

pub(crate) async fn twin(args: TwinArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    let op_name = match args.op {
        TwinOp::Get => "get",
        TwinOp::Reported => "reported",
    };
    let mut report = ScenarioReport::new("twin", common);
    report.op = Some(op_name.into());
    report.rate = args.rate;
    report.inflight = Some(args.inflight as u64);
    report.duration_secs = args.duration;
    let ready = connect_and_subscribe(common, "twin", TWIN_RESPONSES, &mut report).await?;

    let n = ready.len().max(1) as u64;
    let interval = if args.rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(n as f64 / args.rate as f64)
    };
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + Duration::from_secs_f64(args.duration);
    let drain_deadline = deadline + Duration::from_secs_f64(args.drain);
    let mut tasks = Vec::with_capacity(ready.len());
    for (i, (device, mut conn)) in ready.into_iter().enumerate() {
        let plan = TwinPlan {
            op: args.op,
            inflight: args.inflight,
            interval,
            // Devices are staggered evenly inside one interval.
            first: start + interval.mul_f64(i as f64 / n as f64),
            deadline,
            drain_deadline,
        };
        tasks.push(tokio::spawn(async move {
            let mut out = TwinOutcome::default();
            if let Err(e) = twin_loop(&mut conn, &plan, &mut out).await {
                out.error = Some(format!("{}: {e:#}", device.id));
            }
            conn.close().await;
            out
        }));
    }
    let mut latencies = Vec::new();
    let mut end = start;
    for task in tasks {
        let out = task.await?;
        report.sent += out.sent;
        report.ok += out.ok;
        report.failed += out.failed;
        report.timed_out += out.timed_out;
        for (status, count) in out.statuses {
            *report.statuses.entry(status).or_default() += count;
        }
        latencies.extend(out.latencies_us);
        if let Some(at) = out.last_ok {
            end = end.max(at);
        }
        if let Some(e) = out.bad_response {
            report.error(|| format!("unexpected response {e}"));
        }
        if let Some(e) = out.error {
            report.device_errors += 1;
            report.error(|| e);
        }
    }
    if report.timed_out > 0 {
        let timed_out = report.timed_out;
        report.error(|| format!("{timed_out} requests unanswered at the drain deadline"));
    }
    report.run_secs = end.saturating_duration_since(start).as_secs_f64();
    report.ok_per_sec = report.ok as f64 / report.run_secs.max(1e-9);
    report.latency = Latency::from_samples(latencies);
    report.errors = report.connect_failures
        + report.subscribe_failures
        + report.failed
        + report.timed_out
        + report.device_errors;
    report.finish(common.json.as_ref())
}

// ---------------------------------------------------------------------------------------------
// Service API driver shared by `desired` and `methods`
// ---------------------------------------------------------------------------------------------

/// How one service call ended.
#[derive(Debug)]
struct Call {
    /// HTTP status, `None` when the request failed in transport.
    status: Option<u16>,
    /// Why the call does not count as a success.
    error: Option<String>,
}

#[derive(Debug, Default)]
struct CallStats {
    sent: u64,
    ok: u64,
    failed: u64,
    statuses: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
    last_ok: Option<Instant>,
}

impl CallStats {
    /// Records a call intended at `intended` that completed at `now`.
    fn record(&mut self, call: Call, intended: Instant, now: Instant) {
        self.latencies_us
            .push(micros(now.saturating_duration_since(intended)));
        let key = call
            .status
            .map_or_else(|| "transport".to_owned(), |s| s.to_string());
        *self.statuses.entry(key).or_default() += 1;
        match call.error {
            None => {
                self.ok += 1;
                self.last_ok = Some(self.last_ok.map_or(now, |t| t.max(now)));
            }
            Some(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.failed += other.failed;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.latencies_us.extend(other.latencies_us);
        if let Some(e) = other.first_error {
            self.first_error.get_or_insert(e);
        }
        self.last_ok = match (self.last_ok, other.last_ok) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Issues `call(seq, intended)` from `start` until `deadline`: at `rate` calls/s with at most
/// `concurrency` in flight, or closed loop (`rate` 0) with `concurrency` callers.
async fn drive<F, Fut>(rate: u64, concurrency: usize, start: Instant, deadline: Instant, call: F) -> CallStats
where
    F: Fn(u64, Instant) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Call> + Send + 'static,
{
    let call = Arc::new(call);
    let concurrency = concurrency.max(1);
    let mut stats = CallStats::default();
    if rate == 0 {
        let seq = Arc::new(AtomicU64::new(0));
        let mut workers = JoinSet::new();
        for _ in 0..concurrency {
            let (call, seq) = (call.clone(), seq.clone());
            workers.spawn(async move {
                sleep_until(start.into()).await;
                let mut stats = CallStats::default();
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    stats.sent += 1;
                    let outcome = call(n, now).await;
                    stats.record(outcome, now, Instant::now());
                }
                stats
            });
        }
        while let Some(done) = workers.join_next().await {
            match done {
                Ok(worker) => stats.merge(worker),
                Err(e) => {
                    stats.first_error.get_or_insert(format!("caller task: {e}"));
                    stats.failed += 1;
                }
            }
        }
        return stats;
    }
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut inflight = JoinSet::new();
    let per_call = 1.0 / rate as f64;
    for n in 0u64.. {
        let intended = start + Duration::from_secs_f64(n as f64 * per_call);
        if intended >= deadline {
            break;
        }
        sleep_until(intended.into()).await;
        // Waiting for a permit delays the call but not its intended time: queueing is charged.
        let Ok(permit) = semaphore.clone().acquire_owned().await else {
            break;
        };
        stats.sent += 1;
        let call = call.clone();
        inflight.spawn(async move {
            let outcome = call(n, intended).await;
            // Completion is timed here: results are only collected between scheduled sends.
            let done = Instant::now();
            drop(permit);
            (outcome, intended, done)
        });
        while let Some(done) = inflight.try_join_next() {
            collect(&mut stats, done);
        }
    }
    while let Some(done) = inflight.join_next().await {
        collect(&mut stats, done);
    }
    stats
}

fn collect(stats: &mut CallStats, done: Result<(Call, Instant, Instant), tokio::task::JoinError>) {
    match done {
        Ok((call, intended, at)) => stats.record(call, intended, at),
        Err(e) => {
            stats.failed += 1;
            stats.first_error.get_or_insert(format!("call task: {e}"));
        }
    }
}

fn operator_for(common: &Common) -> anyhow::Result<Operator> {
    let dir = common
        .data_dir
        .as_ref()
        .context("--data-dir is needed for the service API")?;
    Operator::from_data_dir(dir)
}

fn apply_calls(report: &mut ScenarioReport, stats: CallStats, start: Instant) {
    report.sent = stats.sent;
    report.ok = stats.ok;
    report.failed = stats.failed;
    report.statuses = stats.statuses;
    let end = stats.last_ok.unwrap_or(start);
    report.run_secs = end.saturating_duration_since(start).as_secs_f64();
    report.ok_per_sec = report.ok as f64 / report.run_secs.max(1e-9);
    report.latency = Latency::from_samples(stats.latencies_us);
    if let Some(e) = stats.first_error {
        report.error(|| e);
    }
}

/// What a listening device saw.
#[derive(Debug, Default)]
struct Listened {
    received: u64,
    latencies_us: Vec<u32>,
    error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// desired
// ---------------------------------------------------------------------------------------------

/// Receives desired-property notifications until `stop`, recording now − `t`.
async fn desired_listener(
    conn: &mut Conn,
    stop: &mut watch::Receiver<bool>,
    received: &AtomicU64,
    out: &mut Listened,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            packet = conn.next() => {
                let Some(packet) = packet? else {
                    bail!("server closed the connection");
                };
                let Packet::Publish(publish) = packet else { continue };
                ack_if_needed(conn, &publish).await?;
                if !publish.topic.starts_with("$iothub/twin/PATCH/properties/desired/") {
                    continue;
                }
                let now_us = unix_micros_now();
                let body: serde_json::Value = serde_json::from_slice(&publish.payload)
                    .with_context(|| format!("notification body on {}", publish.topic))?;
                let t = body
                    .get("t")
                    .and_then(serde_json::Value::as_u64)
                    .with_context(|| format!("notification without \"t\": {body}"))?;
                out.latencies_us.push(u32::try_from(now_us.saturating_sub(t)).unwrap_or(u32::MAX));
                out.received += 1;
                received.fetch_add(1, Ordering::Relaxed);
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

pub(crate) async fn desired(args: DesiredArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    let mut report = ScenarioReport::new("desired", common);
    report.rate = args.rate;
    report.concurrency_http = Some(args.concurrency_http as u64);
    report.duration_secs = args.duration;
    let operator = operator_for(common)?;
    let ready = connect_and_subscribe(common, "desired", DESIRED_NOTIFICATIONS, &mut report).await?;
    if ready.is_empty() {
        report.errors = report.connect_failures + report.subscribe_failures;
        report.error(|| "no device connected".into());
        return report.finish(common.json.as_ref());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let ids: Arc<Vec<String>> = Arc::new(ready.iter().map(|(d, _)| d.id.clone()).collect());
    let mut listeners = Vec::with_capacity(ready.len());
    for (device, mut conn) in ready {
        let (mut stop, received) = (stop_rx.clone(), received.clone());
        listeners.push(tokio::spawn(async move {
            let mut out = Listened::default();
            if let Err(e) = desired_listener(&mut conn, &mut stop, &received, &mut out).await {
                out.error = Some(format!("{}: {e:#}", device.id));
            }
            conn.close().await;
            out
        }));
    }

    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + Duration::from_secs_f64(args.duration);
    // Wall clock at `start`, to stamp each patch with its intended send time.
    let wall_start_us = unix_micros_now() + 20_000;
    let hub = common.hub.clone();
    let stats = drive(
        args.rate,
        args.concurrency_http,
        start,
        deadline,
        move |seq, intended| {
            let (operator, hub, ids) = (operator.clone(), hub.clone(), ids.clone());
            async move {
                let id = &ids[(seq % ids.len() as u64) as usize];
                let t = wall_start_us
                    + u64::try_from(intended.saturating_duration_since(start).as_micros()).unwrap_or(0);
                let body = format!("{{\"properties\":{{\"desired\":{{\"t\":{t},\"seq\":{seq}}}}}}}");
                let path = format!("/twins/{id}?{API}");
                match operator
                    .service(&hub, Method::PATCH, &path, Some(Bytes::from(body)))
                    .await
                {
                    Ok((status, _)) if status.is_success() => Call {
                        status: Some(status.as_u16()),
                        error: None,
                    },
                    Ok((status, bytes)) => Call {
                        status: Some(status.as_u16()),
                        error: Some(format!(
                            "PATCH {path}: {status}: {}",
                            String::from_utf8_lossy(&bytes)
                        )),
                    },
                    Err(e) => Call {
                        status: None,
                        error: Some(format!("PATCH {path}: {e:#}")),
                    },
                }
            }
        },
    )
    .await;
    apply_calls(&mut report, stats, start);

    // Wait for the notifications of every accepted patch (or the drain deadline).
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while received.load(Ordering::Relaxed) < report.ok && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let mut latencies = Vec::new();
    let mut notifications = 0;
    for task in listeners {
        let out = task.await?;
        notifications += out.received;
        latencies.extend(out.latencies_us);
        if let Some(e) = out.error {
            report.device_errors += 1;
            report.error(|| e);
        }
    }
    report.notifications = Some(notifications);
    report.notify_latency = Some(Latency::from_samples(latencies));
    let missing = report.ok.saturating_sub(notifications);
    report.timed_out = missing;
    if missing > 0 {
        report.error(|| format!("{missing} notifications not received by the drain deadline"));
    }
    report.errors =
        report.connect_failures + report.subscribe_failures + report.failed + missing + report.device_errors;
    report.finish(common.json.as_ref())
}

// ---------------------------------------------------------------------------------------------
// methods
// ---------------------------------------------------------------------------------------------

/// Answers every method request with 200 `{"ok":true}` until `stop`.
async fn method_responder(
    conn: &mut Conn,
    stop: &mut watch::Receiver<bool>,
    out: &mut Listened,
) -> anyhow::Result<()> {
    let body = Bytes::from_static(b"{\"ok\":true}");
    loop {
        tokio::select! {
            packet = conn.next() => {
                let Some(packet) = packet? else {
                    bail!("server closed the connection");
                };
                let Packet::Publish(publish) = packet else { continue };
                ack_if_needed(conn, &publish).await?;
                let Some(rest) = publish.topic.strip_prefix("$iothub/methods/POST/") else { continue };
                let rid = rest
                    .split_once("/?")
                    .and_then(|(_, query)| query_value(query, "$rid"))
                    .with_context(|| format!("method request without $rid: {}", publish.topic))?;
                let response = Publish {
                    dup: false,
                    qos: QoS::AtMostOnce,
                    retain: false,
                    topic: format!("$iothub/methods/res/200/?$rid={rid}"),
                    packet_id: None,
                    payload: body.clone(),
                };
                conn.send(&Packet::Publish(response)).await?;
                out.received += 1;
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

pub(crate) async fn methods(args: MethodsArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    let mut report = ScenarioReport::new("methods", common);
    report.rate = args.rate;
    report.concurrency_http = Some(args.concurrency_http as u64);
    report.duration_secs = args.duration;
    let operator = operator_for(common)?;
    let ready = connect_and_subscribe(common, "methods", METHOD_REQUESTS, &mut report).await?;
    if ready.is_empty() {
        report.errors = report.connect_failures + report.subscribe_failures;
        report.error(|| "no device connected".into());
        return report.finish(common.json.as_ref());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let ids: Arc<Vec<String>> = Arc::new(ready.iter().map(|(d, _)| d.id.clone()).collect());
    let mut responders = Vec::with_capacity(ready.len());
    for (device, mut conn) in ready {
        let mut stop = stop_rx.clone();
        responders.push(tokio::spawn(async move {
            let mut out = Listened::default();
            if let Err(e) = method_responder(&mut conn, &mut stop, &mut out).await {
                out.error = Some(format!("{}: {e:#}", device.id));
            }
            conn.close().await;
            out
        }));
    }

    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + Duration::from_secs_f64(args.duration);
    let hub = common.hub.clone();
    let stats = drive(
        args.rate,
        args.concurrency_http,
        start,
        deadline,
        move |seq, _intended| {
            let (operator, hub, ids) = (operator.clone(), hub.clone(), ids.clone());
            async move {
                let id = &ids[(seq % ids.len() as u64) as usize];
                let body = format!(
                    "{{\"methodName\":\"ping\",\"payload\":{{\"n\":{seq}}},\
                     \"responseTimeoutInSeconds\":10,\"connectTimeoutInSeconds\":0}}"
                );
                let path = format!("/twins/{id}/methods?{API}");
                match operator
                    .service(&hub, Method::POST, &path, Some(Bytes::from(body)))
                    .await
                {
                    Ok((status, bytes)) => {
                        let device_status = serde_json::from_slice::<serde_json::Value>(&bytes)
                            .ok()
                            .and_then(|v| v.get("status").and_then(serde_json::Value::as_i64));
                        let error = (status.as_u16() != 200 || device_status != Some(200))
                            .then(|| format!("POST {path}: {status}: {}", String::from_utf8_lossy(&bytes)));
                        Call {
                            status: Some(status.as_u16()),
                            error,
                        }
                    }
                    Err(e) => Call {
                        status: None,
                        error: Some(format!("POST {path}: {e:#}")),
                    },
                }
            }
        },
    )
    .await;
    apply_calls(&mut report, stats, start);

    let _ = stop_tx.send(true);
    let mut answered = 0;
    for task in responders {
        let out = task.await?;
        answered += out.received;
        if let Some(e) = out.error {
            report.device_errors += 1;
            report.error(|| e);
        }
    }
    report.notifications = Some(answered);
    report.errors =
        report.connect_failures + report.subscribe_failures + report.failed + report.device_errors;
    report.finish(common.json.as_ref())
}
