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
                    if self.rate == 0 {
                        "max".to_owned()
                    } else {
                        format!("{}/s", self.rate)
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
            if self.stopped_by_duration {
                row(
                    "note",
                    "stopped by --duration before all planned messages".to_owned(),
                );
            }
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

    fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))
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

/// Prints a Markdown table of the medians of runs `a` and `b` and the ratio a / b.
pub fn compare(a_label: &str, a: &[PathBuf], b_label: &str, b: &[PathBuf]) -> anyhow::Result<()> {
    let load = |files: &[PathBuf]| -> anyhow::Result<Vec<Report>> {
        files.iter().map(|p| Report::read(p)).collect()
    };
    let (ra, rb) = (load(a)?, load(b)?);
    type Metric = (&'static str, fn(&Report) -> f64);
    let metrics: [Metric; 8] = [
        ("throughput (msgs/s)", |r| r.throughput_msgs_per_sec),
        ("PUBACK p50 (µs)", |r| r.latency.p50_us as f64),
        ("PUBACK p90 (µs)", |r| r.latency.p90_us as f64),
        ("PUBACK p99 (µs)", |r| r.latency.p99_us as f64),
        ("PUBACK max (µs)", |r| r.latency.max_us as f64),
        ("connects/s", |r| r.connects_per_sec),
        ("messages acked", |r| r.acked as f64),
        ("errors", |r| r.errors as f64),
    ];
    println!(
        "| metric (median of {} / {} runs) | {a_label} | {b_label} | {a_label} / {b_label} |",
        ra.len(),
        rb.len()
    );
    println!("|---|---:|---:|---:|");
    for (name, get) in metrics {
        let ma = median(ra.iter().map(get).collect());
        let mb = median(rb.iter().map(get).collect());
        let ratio = if mb == 0.0 {
            "–".to_owned()
        } else {
            format!("{:.2}", ma / mb)
        };
        println!("| {name} | {ma:.0} | {mb:.0} | {ratio} |");
    }
    Ok(())
}
