//! `twin --op get|reported`: twin requests over MQTT, answered on `$iothub/twin/res/#`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use outpost_mqtt::codec::{Packet, Publish, QoS, encode};
use tokio::time::sleep_until;

use crate::Common;
use crate::mqtt_client::Conn;
use crate::report::Latency;

use super::{ScenarioReport, TWIN_RESPONSES, ack_if_needed, connect_and_subscribe, micros, query_value};

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
