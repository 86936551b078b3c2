//! Server metrics in the Prometheus text format, and the store decorator that times every
//! storage call. No metrics crate: a handful of counters and histograms behind one short lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use outpost_model::{DeviceId, HubName, ModuleId};
use parking_lot::Mutex;

use crate::{
    DeviceCounts, DeviceRecord, Expected, ModuleRecord, RegistryStore, Revision, StoreError, Stored,
};

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Counters and histograms of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    http_requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    storage_latency: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Per hub: accepted device-to-cloud messages and their body bytes.
    telemetry: Mutex<BTreeMap<HubName, (u64, u64)>>,
    amqp: Mutex<AmqpCounters>,
    /// Scheduled jobs and the devices they processed.
    pub jobs: crate::jobs::JobMetrics,
}

/// The AMQP door's counters.
#[derive(Debug, Default)]
struct AmqpCounters {
    connections_open: u64,
    connections_total: u64,
    /// Per link kind (`cbs`, `partition`, `device`…): links attached in all, and open now.
    links: BTreeMap<&'static str, (u64, u64)>,
    /// Per error condition: links refused or detached and connections closed by the hub.
    errors: BTreeMap<String, u64>,
    deliveries_received: u64,
    deliveries_sent: u64,
    credit_granted: u64,
}

/// What one AMQP connection did since it last reported (see [`Metrics::record_amqp_traffic`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AmqpTraffic {
    /// Messages received from the peer.
    pub deliveries_received: u64,
    /// Messages sent to the peer.
    pub deliveries_sent: u64,
    /// Link credit the hub granted to the peer's senders.
    pub credit_granted: u64,
}

/// Gauges of one hub, read when metrics are scraped.
#[derive(Debug, Clone)]
pub struct HubGauges {
    /// The hub.
    pub hub: HubName,
    /// Its devices by status.
    pub devices: DeviceCounts,
    /// Its connected devices.
    pub connected_devices: usize,
}

impl Metrics {
    /// Counts one HTTP request of `api` (a route family such as `devices`) answered with `status`.
    pub fn record_http(&self, api: &'static str, status: u16) {
        *self.http_requests.lock().entry((api, status)).or_default() += 1;
    }

    /// Records how long a storage operation took.
    pub fn record_storage(&self, operation: &'static str, elapsed: Duration) {
        self.storage_latency
            .lock()
            .entry(operation)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Counts device-to-cloud messages accepted into a hub's event log.
    pub fn record_telemetry(&self, hub: &HubName, messages: u64, bytes: u64) {
        let mut telemetry = self.telemetry.lock();
        let entry = telemetry.entry(hub.clone()).or_default();
        entry.0 += messages;
        entry.1 += bytes;
    }

    /// An AMQP connection was accepted (`open`) or ended.
    pub fn record_amqp_connection(&self, open: bool) {
        let mut amqp = self.amqp.lock();
        if open {
            amqp.connections_open += 1;
            amqp.connections_total += 1;
        } else {
            amqp.connections_open = amqp.connections_open.saturating_sub(1);
        }
    }

    /// An AMQP link of `kind` was attached (`open`) or is gone.
    pub fn record_amqp_link(&self, kind: &'static str, open: bool) {
        let mut amqp = self.amqp.lock();
        let (total, now) = amqp.links.entry(kind).or_default();
        if open {
            *total += 1;
            *now += 1;
        } else {
            *now = now.saturating_sub(1);
        }
    }

    /// The hub refused or detached an AMQP link, or closed a connection, with `condition`.
    pub fn record_amqp_error(&self, condition: &str) {
        let mut amqp = self.amqp.lock();
        match amqp.errors.get_mut(condition) {
            Some(count) => *count += 1,
            None => {
                amqp.errors.insert(condition.to_owned(), 1);
            }
        }
    }

    /// Adds what an AMQP connection sent, received and granted.
    pub fn record_amqp_traffic(&self, traffic: AmqpTraffic) {
        let mut amqp = self.amqp.lock();
        amqp.deliveries_received += traffic.deliveries_received;
        amqp.deliveries_sent += traffic.deliveries_sent;
        amqp.credit_granted += traffic.credit_granted;
    }

    /// Renders every metric, plus the per-hub gauges given, in the Prometheus text format.
    pub fn render(&self, hubs: &[HubGauges]) -> String {
        let mut out = String::new();
        out.push_str("# HELP outpost_http_requests_total HTTP requests by API and status.\n");
        out.push_str("# TYPE outpost_http_requests_total counter\n");
        for ((api, status), count) in self.http_requests.lock().iter() {
            let _ = writeln!(
                out,
                "outpost_http_requests_total{{api=\"{api}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP outpost_devices Devices per hub and status.\n");
        out.push_str("# TYPE outpost_devices gauge\n");
        for gauges in hubs {
            let (hub, counts) = (&gauges.hub, gauges.devices);
            let _ = writeln!(
                out,
                "outpost_devices{{hub=\"{hub}\",status=\"enabled\"}} {}",
                counts.enabled
            );
            let _ = writeln!(
                out,
                "outpost_devices{{hub=\"{hub}\",status=\"disabled\"}} {}",
                counts.disabled
            );
        }
        out.push_str("# HELP outpost_connected_devices Devices with a live connection, per hub.\n");
        out.push_str("# TYPE outpost_connected_devices gauge\n");
        for gauges in hubs {
            let _ = writeln!(
                out,
                "outpost_connected_devices{{hub=\"{}\"}} {}",
                gauges.hub, gauges.connected_devices
            );
        }
        out.push_str("# HELP outpost_telemetry_messages_total Device-to-cloud messages stored, per hub.\n");
        out.push_str("# TYPE outpost_telemetry_messages_total counter\n");
        let telemetry = self.telemetry.lock().clone();
        for (hub, (messages, _)) in &telemetry {
            let _ = writeln!(
                out,
                "outpost_telemetry_messages_total{{hub=\"{hub}\"}} {messages}"
            );
        }
        out.push_str(
            "# HELP outpost_telemetry_bytes_total Body bytes of device-to-cloud messages stored, per hub.\n",
        );
        out.push_str("# TYPE outpost_telemetry_bytes_total counter\n");
        for (hub, (_, bytes)) in &telemetry {
            let _ = writeln!(out, "outpost_telemetry_bytes_total{{hub=\"{hub}\"}} {bytes}");
        }
        self.render_amqp(&mut out);
        self.jobs.render(&mut out);
        out.push_str("# HELP outpost_storage_operation_seconds Latency of storage operations.\n");
        out.push_str("# TYPE outpost_storage_operation_seconds histogram\n");
        let name = "outpost_storage_operation_seconds";
        for (operation, histogram) in self.storage_latency.lock().iter() {
            for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{operation=\"{operation}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{operation=\"{operation}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "{name}_sum{{operation=\"{operation}\"}} {}", histogram.sum);
            let _ = writeln!(
                out,
                "{name}_count{{operation=\"{operation}\"}} {}",
                histogram.count
            );
        }
        out
    }

    fn render_amqp(&self, out: &mut String) {
        let amqp = self.amqp.lock();
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "outpost_amqp_connections",
            "gauge",
            "Open AMQP connections.",
            &[(String::new(), amqp.connections_open)],
        );
        metric(
            "outpost_amqp_connections_total",
            "counter",
            "AMQP connections accepted.",
            &[(String::new(), amqp.connections_total)],
        );
        let by_kind = |pick: fn(&(u64, u64)) -> u64| -> Vec<(String, u64)> {
            amqp.links
                .iter()
                .map(|(kind, counts)| (format!("{{kind=\"{kind}\"}}"), pick(counts)))
                .collect()
        };
        metric(
            "outpost_amqp_links",
            "gauge",
            "Attached AMQP links, per kind.",
            &by_kind(|counts| counts.1),
        );
        metric(
            "outpost_amqp_links_total",
            "counter",
            "AMQP links attached, per kind.",
            &by_kind(|counts| counts.0),
        );
        let errors: Vec<(String, u64)> = amqp
            .errors
            .iter()
            .map(|(condition, count)| (format!("{{condition=\"{condition}\"}}"), *count))
            .collect();
        metric(
            "outpost_amqp_errors_total",
            "counter",
            "AMQP links refused or detached and connections closed by the hub, per error condition.",
            &errors,
        );
        metric(
            "outpost_amqp_deliveries_total",
            "counter",
            "AMQP messages received from and sent to peers.",
            &[
                ("{direction=\"received\"}".to_owned(), amqp.deliveries_received),
                ("{direction=\"sent\"}".to_owned(), amqp.deliveries_sent),
            ],
        );
        metric(
            "outpost_amqp_credit_granted_total",
            "counter",
            "Link credit the hub granted to AMQP senders.",
            &[(String::new(), amqp.credit_granted)],
        );
    }
}

/// A [`RegistryStore`] that records the latency of every call of the store it wraps.
pub struct TimedRegistryStore {
    inner: Arc<dyn RegistryStore>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for TimedRegistryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedRegistryStore").finish_non_exhaustive()
    }
}

impl TimedRegistryStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn RegistryStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.metrics.record_storage(operation, started.elapsed());
        result
    }
}

#[async_trait]
impl RegistryStore for TimedRegistryStore {
    async fn device(&self, hub: &HubName, id: &DeviceId) -> Result<Option<Stored<DeviceRecord>>, StoreError> {
        self.timed("device", self.inner.device(hub, id)).await
    }

    async fn put_device(
        &self,
        hub: &HubName,
        record: &DeviceRecord,
        expected: Expected,
    ) -> Result<Revision, StoreError> {
        self.timed("put_device", self.inner.put_device(hub, record, expected))
            .await
    }

    async fn delete_device(
        &self,
        hub: &HubName,
        id: &DeviceId,
        expected: Expected,
    ) -> Result<(), StoreError> {
        self.timed("delete_device", self.inner.delete_device(hub, id, expected))
            .await
    }

    async fn list_devices(
        &self,
        hub: &HubName,
        after: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        self.timed("list_devices", self.inner.list_devices(hub, after, limit))
            .await
    }

    async fn device_counts(&self, hub: &HubName) -> Result<DeviceCounts, StoreError> {
        self.timed("device_counts", self.inner.device_counts(hub)).await
    }

    async fn module(
        &self,
        hub: &HubName,
        device: &DeviceId,
        module: &ModuleId,
    ) -> Result<Option<Stored<ModuleRecord>>, StoreError> {
        self.timed("module", self.inner.module(hub, device, module)).await
    }

    async fn put_module(
        &self,
        hub: &HubName,
        record: &ModuleRecord,
        expected: Expected,
    ) -> Result<Revision, StoreError> {
        self.timed("put_module", self.inner.put_module(hub, record, expected))
            .await
    }

    async fn delete_module(
        &self,
        hub: &HubName,
        device: &DeviceId,
        module: &ModuleId,
        expected: Expected,
    ) -> Result<(), StoreError> {
        self.timed(
            "delete_module",
            self.inner.delete_module(hub, device, module, expected),
        )
        .await
    }

    async fn list_modules(&self, hub: &HubName, device: &DeviceId) -> Result<Vec<ModuleRecord>, StoreError> {
        self.timed("list_modules", self.inner.list_modules(hub, device))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(rendered: &str, series: &str) -> Option<u64> {
        rendered
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn amqp_counters_render_as_prometheus_series() {
        let metrics = Metrics::default();
        metrics.record_amqp_connection(true);
        metrics.record_amqp_connection(true);
        metrics.record_amqp_connection(false);
        metrics.record_amqp_link("partition", true);
        metrics.record_amqp_link("partition", true);
        metrics.record_amqp_link("partition", false);
        metrics.record_amqp_error("amqp:not-found");
        metrics.record_amqp_error("amqp:not-found");
        metrics.record_amqp_traffic(AmqpTraffic {
            deliveries_received: 3,
            deliveries_sent: 5,
            credit_granted: 100,
        });
        let rendered = metrics.render(&[]);
        assert_eq!(value(&rendered, "outpost_amqp_connections"), Some(1));
        assert_eq!(value(&rendered, "outpost_amqp_connections_total"), Some(2));
        assert_eq!(
            value(&rendered, r#"outpost_amqp_links{kind="partition"}"#),
            Some(1)
        );
        assert_eq!(
            value(&rendered, r#"outpost_amqp_links_total{kind="partition"}"#),
            Some(2)
        );
        assert_eq!(
            value(
                &rendered,
                r#"outpost_amqp_errors_total{condition="amqp:not-found"}"#
            ),
            Some(2)
        );
        assert_eq!(
            value(
                &rendered,
                r#"outpost_amqp_deliveries_total{direction="received"}"#
            ),
            Some(3)
        );
        assert_eq!(
            value(&rendered, r#"outpost_amqp_deliveries_total{direction="sent"}"#),
            Some(5)
        );
        assert_eq!(value(&rendered, "outpost_amqp_credit_granted_total"), Some(100));
        assert!(rendered.contains("# TYPE outpost_amqp_links gauge"));
        // A gauge never goes below zero, whatever the order of events.
        metrics.record_amqp_connection(false);
        metrics.record_amqp_connection(false);
        assert_eq!(value(&metrics.render(&[]), "outpost_amqp_connections"), Some(0));
    }
}
