//! The end-to-end consumer: reads what the devices published and records, per message, the time
//! from its intended send (stamped at the start of the payload) to its arrival here.
//!
//! Against Outpost it reads the built-in Event Hubs-compatible endpoint over AMQP (`--amqp-port`,
//! `eventhub_consumer`) or, without it, the event log through the operator API's long-polling
//! reads (one task per partition, starting after the last event enqueued before the run);
//! against a peer broker it is one MQTT subscriber on `bench/#`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use outpost_mqtt::codec::{Packet, QoS};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::mqtt_client::{Conn, Device, Target, read_stamp, wall_micros};
use crate::operator::Operator;

/// A running consumer.
#[derive(Debug)]
pub struct Consumer {
    received: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<Vec<u32>>>>,
}

/// What the consumer saw.
#[derive(Debug, Default)]
pub struct Consumed {
    pub received: u64,
    pub latencies_us: Vec<u32>,
    pub error: Option<String>,
    /// When the last message arrived (to within the 20 ms the count is polled at).
    pub last_at: Option<Instant>,
}

impl Consumer {
    /// Starts reading every partition of `hub` from the event after the last one enqueued now.
    pub async fn event_log(operator: Operator, hub: &str) -> anyhow::Result<Self> {
        let (status, body) = operator
            .call(Method::GET, &format!("/hubs/{hub}/partitions"), None)
            .await?;
        if !status.is_success() {
            bail!("GET partitions: {status}");
        }
        let partitions: Vec<Value> = serde_json::from_slice(&body).context("partitions JSON")?;
        let (stop, stopped) = watch::channel(false);
        let received = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for partition in partitions {
            let id = partition["partition"]
                .as_str()
                .context("partition id")?
                .to_owned();
            let next = partition["lastEnqueuedSequenceNumber"]
                .as_u64()
                .map_or(0, |n| n + 1);
            let (operator, hub, received, stopped) = (
                operator.clone(),
                hub.to_owned(),
                received.clone(),
                stopped.clone(),
            );
            tasks.push(tokio::spawn(read_partition(
                operator, hub, id, next, received, stopped,
            )));
        }
        Ok(Self {
            received,
            stop,
            tasks,
        })
    }

    /// Reads every partition of the hub through its Event Hubs-compatible endpoint (AMQP),
    /// from `@latest`.
    pub async fn event_hubs(
        endpoint: crate::eventhub_consumer::Endpoint,
        operator: &Operator,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let received = Arc::new(AtomicU64::new(0));
        let task = crate::eventhub_consumer::start(endpoint, operator, received.clone(), stopped).await?;
        // The receivers attach asynchronously; let them settle at `@latest` before the run.
        tokio::time::sleep(crate::eventhub_consumer::ATTACH_GRACE).await;
        Ok(Self {
            received,
            stop,
            tasks: vec![task],
        })
    }

    /// Subscribes to `bench/#` on a peer broker.
    pub async fn subscriber(target: &Target, id: &str) -> anyhow::Result<Self> {
        let device = Device {
            id: id.to_owned(),
            index: usize::MAX,
            key: None,
        };
        let mut conn = Conn::open(target, &device).await?;
        conn.subscribe(&["bench/#"], QoS::AtMostOnce).await?;
        let (stop, stopped) = watch::channel(false);
        let received = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(read_subscription(conn, received.clone(), stopped));
        Ok(Self {
            received,
            stop,
            tasks: vec![task],
        })
    }

    /// Waits until `expected` messages arrived or `patience` passed, then stops.
    pub async fn finish(self, expected: u64, patience: Duration) -> Consumed {
        let deadline = tokio::time::Instant::now() + patience;
        let (mut seen, mut last_at) = (0, None);
        loop {
            let now = self.received.load(Ordering::Relaxed);
            if now > seen {
                (seen, last_at) = (now, Some(Instant::now()));
            }
            if now >= expected || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        let mut out = Consumed {
            last_at,
            ..Consumed::default()
        };
        for task in self.tasks {
            match task.await.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(latencies) => out.latencies_us.extend(latencies),
                Err(e) => {
                    out.error.get_or_insert_with(|| format!("consumer: {e:#}"));
                }
            }
        }
        out.received = out.latencies_us.len() as u64;
        out
    }
}

fn latency_since(stamp: u64) -> u32 {
    u32::try_from(wall_micros().saturating_sub(stamp)).unwrap_or(u32::MAX)
}

async fn read_partition(
    operator: Operator,
    hub: String,
    partition: String,
    mut next: u64,
    received: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<Vec<u32>> {
    let mut latencies = Vec::new();
    loop {
        if *stopped.borrow() {
            return Ok(latencies);
        }
        let path =
            format!("/hubs/{hub}/events?partition={partition}&fromSequenceNumber={next}&max=100&waitMs=200");
        let call = operator.call(Method::GET, &path, None);
        let (status, body) = tokio::select! {
            reply = call => reply?,
            _ = stopped.changed() => return Ok(latencies),
        };
        if !status.is_success() {
            bail!("read partition {partition}: {status}");
        }
        let events: Vec<Value> = serde_json::from_slice(&body).context("events JSON")?;
        for event in &events {
            if let Some(sequence) = event["annotations"]["x-opt-sequence-number"].as_u64() {
                next = next.max(sequence + 1);
            }
            if let Some(stamp) = event["payload"].as_str().and_then(|p| read_stamp(p.as_bytes())) {
                latencies.push(latency_since(stamp));
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn read_subscription(
    mut conn: Conn,
    received: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<Vec<u32>> {
    let mut latencies = Vec::new();
    loop {
        let packet = tokio::select! {
            packet = conn.next() => packet?,
            _ = stopped.changed() => break,
        };
        match packet {
            Some(Packet::Publish(publish)) => {
                if let Some(stamp) = read_stamp(&publish.payload) {
                    latencies.push(latency_since(stamp));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(_) => {}
            None => bail!("the broker closed the subscriber's connection"),
        }
    }
    conn.close().await;
    Ok(latencies)
}
