//! Results of a run: latency percentiles, the printed table, the JSON file, and the side-by-side
//! comparison of several runs against two brokers (medians and ratio).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn from_samples(mut samples: Vec<u32>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((samples.len() as f64) * q).ceil() as usize;
            u64::from(samples[rank.clamp(1, samples.len()) - 1])
        };
        Self {
            samples: samples.len() as u64,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            max_us: at(1.0),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub tls: bool,
    pub devices: u64,
    pub messages_per_device: u64,
    pub size: u64,
    pub qos: u8,
    pub rate: u64,
    /// Milliseconds between a paced device's wake-ups (0: one per message).
    #[serde(default)]
    pub tick_ms: f64,
    pub inflight: u64,
    pub connected: u64,
    pub connect_failures: u64,
    pub connect_secs: f64,
    pub connects_per_sec: f64,
    pub connect_latency: Latency,
    pub planned: u64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub publish_secs: f64,
    pub throughput_msgs_per_sec: f64,
    pub latency: Latency,
    pub stopped_by_duration: bool,
    /// Messages the end-to-end consumer read (with `--consume`).
    #[serde(default)]
    pub consumed: Option<u64>,
    /// Intended send time → consumer, µs (with `--consume`).
    #[serde(default)]
    pub e2e_latency: Option<Latency>,
    /// Messages consumed ÷ (last consumed − start of sending) (with `--consume`).
    #[serde(default)]
    pub consume_msgs_per_sec: Option<f64>,
    /// Server resident memory before the connections and after (`--server-pid`), KiB.
    #[serde(default)]
    pub server_rss_before_kib: Option<u64>,
    #[serde(default)]
    pub server_rss_after_kib: Option<u64>,
    /// (after − before) ÷ connections, bytes.
    #[serde(default)]
    pub server_bytes_per_connection: Option<f64>,
}

impl Report {
    pub fn print(&self) {
        let row = |k: &str, v: String| println!("  {k:<24} {v}");
        println!(
            "{} against {} ({})",
            self.scenario,
            self.target,
            if self.tls { "TLS" } else { "plain" }
        );
        row(
            "devices",
            format!("{} connected, {} failed", self.connected, self.connect_failures),
        );
        row(
            "connect rate",
            format!(
                "{:.0} connects/s ({:.3} s)",
                self.connects_per_sec, self.connect_secs
            ),
        );
        row(
            "connect latency (µs)",
            format!(
                "p50 {} p90 {} p99 {} max {}",
                self.connect_latency.p50_us,
                self.connect_latency.p90_us,
                self.connect_latency.p99_us,
                self.connect_latency.max_us
            ),
        );
        if self.scenario == "mqtt" {
            row(
                "workload",
                format!(
                    "{} msgs/device × {} B, QoS {}, rate {}, inflight {}",
                    self.messages_per_device,
                    self.size,
                    self.qos,
                    match (self.rate, self.tick_ms) {
                        (0, _) => "max".to_owned(),
                        (rate, tick) if tick > 0.0 => format!("{rate}/s in {tick} ms ticks"),
                        (rate, _) => format!("{rate}/s"),
                    },
                    self.inflight
                ),
            );
            row(
                "messages",
                format!(
                    "{} planned, {} sent, {} acked",
                    self.planned, self.sent, self.acked
                ),
            );
            row(
                "throughput",
                format!(
                    "{:.0} msgs/s over {:.3} s",
                    self.throughput_msgs_per_sec, self.publish_secs
                ),
            );
            row(
                "PUBACK latency (µs)",
                format!(
                    "p50 {} p90 {} p99 {} max {}",
                    self.latency.p50_us, self.latency.p90_us, self.latency.p99_us, self.latency.max_us
                ),
            );
            if let (Some(consumed), Some(e2e)) = (self.consumed, &self.e2e_latency) {
                if let Some(rate) = self.consume_msgs_per_sec {
                    row("consumer throughput", format!("{rate:.0} msgs/s"));
                }
                row(
                    "end-to-end (µs)",
                    format!(
                        "{consumed} consumed; p50 {} p90 {} p99 {} max {}",
                        e2e.p50_us, e2e.p90_us, e2e.p99_us, e2e.max_us
                    ),
                );
            }
            if self.stopped_by_duration {
                row(
                    "note",
                    "stopped by --duration before all planned messages".to_owned(),
                );
            }
        }
        if let (Some(before), Some(after), Some(per)) = (
            self.server_rss_before_kib,
            self.server_rss_after_kib,
            self.server_bytes_per_connection,
        ) {
            row(
                "server memory",
                format!("RSS {before} KiB → {after} KiB: {per:.0} B per connection"),
            );
        }
        row("errors", self.errors.to_string());
        if let Some(e) = &self.first_error {
            row("first error", e.clone());
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", path.display()))
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Prints a Markdown table of the medians of runs `a` and `b` and the ratio a / b. Reads any
/// of the tool's JSON reports (`mqtt`, `connect-storm`, `twin`, `desired`, `methods`); rows
/// whose field no run has are left out.
pub fn compare(a_label: &str, a: &[PathBuf], b_label: &str, b: &[PathBuf]) -> anyhow::Result<()> {
    let load = |files: &[PathBuf]| -> anyhow::Result<Vec<serde_json::Value>> {
        files
            .iter()
            .map(|path| {
                let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
                serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))
            })
            .collect()
    };
    let (ra, rb) = (load(a)?, load(b)?);
    let scenario = ra
        .first()
        .and_then(|r| r["scenario"].as_str())
        .unwrap_or_default();
    let latency = if scenario == "mqtt" { "PUBACK" } else { "response" };
    let metrics: Vec<(String, &str)> = [
        ("throughput (msgs/s)", "/throughput_msgs_per_sec"),
        ("operations ok/s", "/ok_per_sec"),
        ("{latency} p50 (µs)", "/latency/p50_us"),
        ("{latency} p90 (µs)", "/latency/p90_us"),
        ("{latency} p99 (µs)", "/latency/p99_us"),
        ("{latency} max (µs)", "/latency/max_us"),
        ("end-to-end p50 (µs)", "/e2e_latency/p50_us"),
        ("end-to-end p99 (µs)", "/e2e_latency/p99_us"),
        ("end-to-end max (µs)", "/e2e_latency/max_us"),
        ("patch → device p50 (µs)", "/notify_latency/p50_us"),
        ("patch → device p99 (µs)", "/notify_latency/p99_us"),
        ("messages acked", "/acked"),
        ("messages consumed", "/consumed"),
        ("consumer throughput (msgs/s)", "/consume_msgs_per_sec"),
        ("operations ok", "/ok"),
        ("connects/s", "/connects_per_sec"),
        ("connect p50 (µs)", "/connect_latency/p50_us"),
        ("connect p99 (µs)", "/connect_latency/p99_us"),
        ("server bytes per connection", "/server_bytes_per_connection"),
        ("errors", "/errors"),
    ]
    .into_iter()
    .map(|(name, pointer)| (name.replace("{latency}", latency), pointer))
    .collect();
    println!(
        "| metric (median of {} / {} runs) | {a_label} | {b_label} | {a_label} / {b_label} |",
        ra.len(),
        rb.len()
    );
    println!("|---|---:|---:|---:|");
    for (name, pointer) in metrics {
        let values = |runs: &[serde_json::Value]| -> Vec<f64> {
            runs.iter()
                .filter_map(|r| r.pointer(pointer).and_then(serde_json::Value::as_f64))
                .collect()
        };
        let (va, vb) = (values(&ra), values(&rb));
        // Rows a scenario does not measure are absent or zero in every run.
        let measured = va.iter().chain(&vb).any(|v| *v != 0.0);
        if !measured && name != "errors" {
            continue;
        }
        let (ma, mb) = (median(va), median(vb));
        let ratio = if mb == 0.0 || mb.is_nan() || ma.is_nan() {
            "–".to_owned()
        } else {
            format!("{:.2}", ma / mb)
        };
        println!("| {name} | {ma:.0} | {mb:.0} | {ratio} |");
    }
    Ok(())
}
