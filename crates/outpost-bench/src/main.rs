//! `outpost-bench`: a load generator for Outpost's MQTT listener (and, for comparison, any
//! MQTT 3.1.1 broker). `mqtt` runs paced D2C telemetry and measures PUBACK latency from the
//! intended send time; `connect-storm` measures connection setup; `compare` summarises runs.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool prints"
)]

mod consumer;
mod eventhub_consumer;
mod mqtt_client;
mod operator;
mod report;
mod twin_methods;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use consumer::Consumer;
use mqtt_client::{Conn, Device, PublishPlan, Target};
use operator::Operator;
use outpost_mqtt::codec::QoS;
use report::{Latency, Report};

#[derive(Debug, Parser)]
#[command(
    name = "outpost-bench",
    about = "Load generator for Outpost and peer MQTT brokers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// D2C telemetry: N devices each publish M messages; reports throughput and PUBACK latency.
    Mqtt(MqttArgs),
    /// Connects N devices as fast as possible, reports connects/s (and, with --server-pid, the
    /// server's memory per idle connection), then disconnects.
    ConnectStorm(StormArgs),
    /// Device twin over MQTT: N devices keep --inflight GET or reported-property PATCH requests
    /// outstanding; reports ops/s and request → response latency.
    Twin(twin_methods::TwinArgs),
    /// Desired-property patches through the service API; reports service call latency and
    /// patch → device notification latency.
    Desired(twin_methods::DesiredArgs),
    /// Direct-method invocations through the service API, answered at once by the devices;
    /// reports calls/s and round-trip latency.
    Methods(twin_methods::MethodsArgs),
    /// Prints medians of two sets of `--json` results side by side, with the ratio A / B.
    Compare {
        #[arg(long, default_value = "A")]
        a_label: String,
        #[arg(long = "a", required = true)]
        a: Vec<PathBuf>,
        #[arg(long, default_value = "B")]
        b_label: String,
        #[arg(long = "b", required = true)]
        b: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// Outpost data directory (operator endpoint, token and `tls/ca.pem`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// Use TLS with `<data-dir>/tls/ca.pem` (the default).
    #[arg(long, conflicts_with = "plain")]
    tls: bool,
    /// Use plain TCP.
    #[arg(long)]
    plain: bool,
    /// CA certificate (default `<data-dir>/tls/ca.pem`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Hub host name: TLS server name and username prefix.
    #[arg(long, default_value = "localhost")]
    hub: String,
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Device id prefix; ids are `<prefix>-<n>`.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Peer broker mode: no devices created, no auth, topic `bench/<id>`.
    #[arg(long)]
    generic_topic: bool,
    /// Connections opened concurrently.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
struct StormArgs {
    #[command(flatten)]
    common: Common,
    /// Process id of the server: its resident memory is read from `/proc/<pid>/status` before
    /// the storm and after every connection is up and idle.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds to keep the connections open (idle) before measuring memory and closing.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
}

#[derive(Debug, Clone, Args)]
struct MqttArgs {
    #[command(flatten)]
    common: Common,
    /// Messages per device.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Target total messages per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// With --rate: a device wakes at most once per this many milliseconds and sends every
    /// message due by then in one write (a batching device or gateway); 0 = one wake-up per
    /// message. Latency still counts from each message's intended send time, so the wait for
    /// the tick is part of every figure.
    #[arg(long, default_value_t = 0.0)]
    tick_ms: f64,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds to wait for outstanding PUBACKs after sending stops.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Unacknowledged QoS 1 messages allowed per device.
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    /// Succeed even when --duration stopped the run before every planned message was sent
    /// (every sent message must still be acknowledged).
    #[arg(long)]
    allow_partial: bool,
    /// Also consume what is published (Outpost: its event log through the operator API; a peer
    /// broker: a subscriber on `bench/#`) and report end-to-end latency from the intended send
    /// time (payloads carry it; needs --size ≥ 16).
    #[arg(long)]
    consume: bool,
    /// With --consume against Outpost: read through its Event Hubs-compatible endpoint (AMQP
    /// over TLS) on this port instead of the operator API.
    #[arg(long)]
    amqp_port: Option<u16>,
    /// Messages routing conditions can read: a JSON body (`{"temp":…}` padded to --size) with
    /// `$.ct=application/json`, `$.ce=utf-8` and application properties `level` and `site` that
    /// vary by device (for the routing scenario of bench/run).
    #[arg(long, conflicts_with = "consume")]
    routed: bool,
}

/// A JSON telemetry body of about `size` bytes with a device-dependent temperature.
fn routed_payload(index: usize, size: usize) -> Bytes {
    let head = format!(r#"{{"temp":{},"pad":""#, 20 + index % 30);
    let pad = size.saturating_sub(head.len() + 2);
    Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
}

/// The telemetry topic of a routed message: content type, encoding and two properties.
fn routed_topic(base: &str, index: usize) -> String {
    let level = if index.is_multiple_of(4) {
        "critical"
    } else {
        "info"
    };
    format!(
        "{base}$.ct=application%2Fjson&$.ce=utf-8&level={level}&site=site{}",
        index % 3
    )
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let ok = runtime.block_on(async {
        match cli.command {
            Command::Mqtt(args) => mqtt(args).await,
            Command::ConnectStorm(args) => storm(args).await,
            Command::Twin(args) => twin_methods::twin(args).await,
            Command::Desired(args) => twin_methods::desired(args).await,
            Command::Methods(args) => twin_methods::methods(args).await,
            Command::Compare {
                a_label,
                a,
                b_label,
                b,
            } => report::compare(&a_label, &a, &b_label, &b).map(|()| true),
        }
    })?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// Builds the target and the device list (provisioning through the operator API if needed).
async fn setup(common: &Common) -> anyhow::Result<(Target, Vec<Device>)> {
    let tls = if common.plain {
        None
    } else {
        let ca = match (&common.ca, &common.data_dir) {
            (Some(ca), _) => ca.clone(),
            (None, Some(dir)) => dir.join("tls").join("ca.pem"),
            (None, None) => bail!("TLS needs --data-dir or --ca (or pass --plain)"),
        };
        Some(mqtt_client::tls_config(&ca)?)
    };
    let target = Target {
        addr: format!("{}:{}", common.host, common.port),
        tls,
        hub: common.hub.clone(),
        generic: common.generic_topic,
    };
    let devices = if common.generic_topic {
        (0..common.devices)
            .map(|i| Device {
                id: format!("{}-{i}", common.prefix),
                index: i,
                key: None,
            })
            .collect()
    } else {
        let dir = common
            .data_dir
            .as_ref()
            .context("--data-dir is needed to create devices")?;
        mqtt_client::provision(dir, &common.hub, &common.prefix, common.devices).await?
    };
    Ok((target, devices))
}

/// Connects every device with bounded concurrency; returns connections in device order.
async fn connect_all(
    target: &Target,
    devices: &[Device],
    concurrency: usize,
    report: &mut Report,
) -> Vec<Option<Conn>> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(devices.len());
    for device in devices {
        let (target, device, semaphore) = (target.clone(), device.clone(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            let t = Instant::now();
            let conn = Conn::open(&target, &device).await?;
            Ok::<_, anyhow::Error>((conn, t.elapsed()))
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    let mut latencies = Vec::new();
    for task in tasks {
        match task.await.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((conn, took)) => {
                latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                conns.push(Some(conn));
            }
            Err(e) => {
                report.connect_failures += 1;
                report
                    .first_error
                    .get_or_insert_with(|| format!("connect: {e:#}"));
                conns.push(None);
            }
        }
    }
    report.connect_secs = started.elapsed().as_secs_f64();
    report.connected = latencies.len() as u64;
    report.connects_per_sec = report.connected as f64 / report.connect_secs.max(1e-9);
    report.connect_latency = Latency::from_samples(latencies);
    conns
}

fn base_report(scenario: &str, common: &Common) -> Report {
    Report {
        scenario: scenario.into(),
        target: format!("{}:{}", common.host, common.port),
        tls: !common.plain,
        devices: common.devices as u64,
        ..Default::default()
    }
}

fn finish(report: &Report, json: Option<&PathBuf>) -> anyhow::Result<()> {
    report.print();
    if let Some(path) = json {
        report.write(path)?;
    }
    Ok(())
}

/// Resident set size of process `pid`, KiB (`VmRSS` in `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

async fn storm(args: StormArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    let (target, devices) = setup(common).await?;
    let mut report = base_report("connect-storm", common);
    let before = args.server_pid.map(rss_kib).transpose()?;
    let conns = connect_all(&target, &devices, common.concurrency, &mut report).await;
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    if let (Some(pid), Some(before)) = (args.server_pid, before) {
        let after = rss_kib(pid)?;
        report.server_rss_before_kib = Some(before);
        report.server_rss_after_kib = Some(after);
        report.server_bytes_per_connection =
            Some(after.saturating_sub(before) as f64 * 1024.0 / report.connected.max(1) as f64);
    }
    let closing: Vec<_> = conns
        .into_iter()
        .flatten()
        .map(|c| tokio::spawn(c.close()))
        .collect();
    for task in closing {
        let _ = task.await;
    }
    report.errors = report.connect_failures;
    finish(&report, common.json.as_ref())?;
    Ok(report.errors == 0)
}

async fn mqtt(args: MqttArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    let (target, devices) = setup(common).await?;
    let mut report = base_report("mqtt", common);
    report.messages_per_device = args.messages;
    report.size = args.size as u64;
    report.qos = args.qos;
    report.rate = args.rate;
    report.tick_ms = args.tick_ms;
    report.inflight = args.inflight as u64;
    report.planned = args.messages * devices.len() as u64;
    let conns = connect_all(&target, &devices, common.concurrency, &mut report).await;
    if args.consume && args.size < mqtt_client::STAMP_LEN {
        bail!("--consume needs --size of at least {}", mqtt_client::STAMP_LEN);
    }
    let consumer = match (args.consume, target.generic) {
        (false, _) => None,
        (true, true) => Some(Consumer::subscriber(&target, &format!("{}-consumer", common.prefix)).await?),
        (true, false) => {
            let dir = common.data_dir.as_ref().context("--consume needs --data-dir")?;
            let operator = Operator::from_data_dir(dir)?;
            match (args.amqp_port, &target.tls) {
                (Some(port), Some(tls)) => {
                    let endpoint = eventhub_consumer::Endpoint {
                        addr: format!("{}:{port}", common.host),
                        tls: tls.clone(),
                        host: common.hub.clone(),
                        hub: common.hub.split('.').next().unwrap_or_default().to_owned(),
                    };
                    Some(Consumer::event_hubs(endpoint, &operator).await?)
                }
                (Some(_), None) => bail!("--amqp-port needs TLS"),
                (None, _) => Some(Consumer::event_log(operator, &common.hub).await?),
            }
        }
    };

    let qos = if args.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let payload = Bytes::from(vec![b'x'; args.size]);
    let n = devices.len().max(1) as u64;
    // Each device sends at rate/n; devices are staggered evenly inside one interval.
    let interval = if args.rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(n as f64 / args.rate as f64)
    };
    let start = Instant::now() + Duration::from_millis(20);
    let stamp_base = mqtt_client::wall_micros() + 20_000;
    let deadline = start + Duration::from_secs_f64(args.duration);
    let drain_deadline = deadline + Duration::from_secs_f64(args.drain);
    let mut tasks = Vec::new();
    for (i, (device, conn)) in devices.iter().zip(conns).enumerate() {
        let Some(mut conn) = conn else { continue };
        let (topic, payload) = if args.routed {
            (
                routed_topic(&device.topic(&target), i),
                routed_payload(i, args.size),
            )
        } else {
            (device.topic(&target), payload.clone())
        };
        let plan = PublishPlan {
            topic,
            messages: args.messages,
            payload,
            qos,
            inflight: args.inflight,
            interval,
            tick: Duration::from_secs_f64(args.tick_ms.max(0.0) / 1000.0),
            first: start + interval.mul_f64(i as f64 / n as f64),
            deadline,
            drain_deadline,
            stamp: args.consume.then_some((start, stamp_base)),
        };
        tasks.push(tokio::spawn(async move {
            let outcome = mqtt_client::publish_loop(&mut conn, &plan).await;
            conn.close().await;
            outcome
        }));
    }
    let mut latencies = Vec::new();
    let mut end = start;
    for task in tasks {
        let outcome = task.await?;
        report.sent += outcome.sent;
        report.acked += outcome.acked;
        latencies.extend(outcome.latencies_us);
        if let Some(at) = outcome.last_ack {
            end = end.max(at);
        }
        if let Some(e) = outcome.error {
            report.errors += 1;
            report.first_error.get_or_insert(e);
        }
    }
    if qos == QoS::AtMostOnce {
        end = Instant::now();
    }
    report.errors += report.connect_failures;
    report.publish_secs = end.saturating_duration_since(start).as_secs_f64();
    let counted = if qos == QoS::AtMostOnce {
        report.sent
    } else {
        report.acked
    };
    report.throughput_msgs_per_sec = counted as f64 / report.publish_secs.max(1e-9);
    report.latency = Latency::from_samples(latencies);
    report.stopped_by_duration = report.sent < report.planned;
    if let Some(consumer) = consumer {
        let consumed = consumer.finish(counted, Duration::from_secs(10)).await;
        report.consumed = Some(consumed.received);
        if let Some(last) = consumed.last_at {
            let secs = last.saturating_duration_since(start).as_secs_f64().max(1e-9);
            report.consume_msgs_per_sec = Some(consumed.received as f64 / secs);
        }
        report.e2e_latency = Some(Latency::from_samples(consumed.latencies_us));
        if let Some(e) = consumed.error {
            report.errors += 1;
            report.first_error.get_or_insert(e);
        }
        if consumed.received < counted {
            report.errors += 1;
            report
                .first_error
                .get_or_insert_with(|| format!("consumer saw {} of {counted} messages", consumed.received));
        }
    }
    finish(&report, common.json.as_ref())?;
    let all_acked = qos == QoS::AtMostOnce || report.acked == report.sent;
    let complete = args.allow_partial || report.sent == report.planned;
    Ok(report.errors == 0 && all_acked && complete)
}
