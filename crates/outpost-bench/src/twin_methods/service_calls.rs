//! `desired` and `methods`: calls through the service API, observed at the devices.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use hyper::Method;
use outpost_mqtt::codec::{Packet, Publish, QoS};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::Common;
use crate::mqtt_client::Conn;
use crate::report::Latency;

use super::{
    API, DESIRED_NOTIFICATIONS, METHOD_REQUESTS, ScenarioReport, ack_if_needed, connect_and_subscribe,
    micros, operator_for, query_value, unix_micros_now,
};

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

/// The report of a scenario driven through the service API.
fn service_call_report(
    scenario: &str,
    common: &Common,
    rate: u64,
    concurrency: usize,
    duration: f64,
) -> ScenarioReport {
    let mut report = ScenarioReport::new(scenario, common);
    report.rate = rate;
    report.concurrency_http = Some(concurrency as u64);
    report.duration_secs = duration;
    report
}

pub(crate) async fn desired(args: DesiredArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    let mut report = service_call_report("desired", common, args.rate, args.concurrency_http, args.duration);
    let operator = operator_for(common)?;
    let ready = connect_and_subscribe(common, "desired", DESIRED_NOTIFICATIONS, &mut report).await?;
    if ready.is_empty() {
        return report.finish_without_devices(common.json.as_ref());
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
    let mut report = service_call_report("methods", common, args.rate, args.concurrency_http, args.duration);
    let operator = operator_for(common)?;
    let ready = connect_and_subscribe(common, "methods", METHOD_REQUESTS, &mut report).await?;
    if ready.is_empty() {
        return report.finish_without_devices(common.json.as_ref());
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
