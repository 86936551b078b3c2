//! Custom event streams: an endpoint whose messages go to a log of their own
//! (`<hub>.<endpoint>`), which the Event Hubs-compatible endpoint serves as entity `<endpoint>`
//! with its own partitions and consumer groups.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use outpost_model::{DeviceId, LogName, partition_for};

use super::sink::{BatchPolicy, DeliveryError, EndpointSink, RoutedBatch};
use crate::EventLog;

/// Appends routed messages to a stream's log, each device's messages to one partition (the
/// same hash as the hub's own log), in order.
pub struct StreamSink {
    log: Arc<dyn EventLog>,
    name: LogName,
    partitions: u32,
}

impl StreamSink {
    /// A sink into the stream log `name` of `partitions` partitions.
    pub fn new(log: Arc<dyn EventLog>, name: LogName, partitions: u32) -> Self {
        Self {
            log,
            name,
            partitions,
        }
    }

    /// Streams take what was read at once: the log append is the batching.
    pub fn batch_policy() -> BatchPolicy {
        BatchPolicy {
            max_events: 1000,
            max_bytes: 4 * 1024 * 1024,
            max_wait: Duration::ZERO,
        }
    }
}

impl std::fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl EndpointSink for StreamSink {
    async fn deliver(&self, batch: &RoutedBatch) -> Result<(), DeliveryError> {
        let mut groups: Vec<(u32, Vec<bytes::Bytes>)> = Vec::new();
        for event in &batch.events {
            let partition = DeviceId::new(&event.message.annotations.device_id)
                .map_or(0, |device| partition_for(&device, self.partitions));
            let encoded = event.message.encode();
            match groups.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, payloads)) => payloads.push(encoded),
                None => groups.push((partition, vec![encoded])),
            }
        }
        // One append per stream partition; each resolves once durable.
        for (partition, payloads) in groups {
            self.log
                .append(&self.name, partition, payloads)
                .await
                .map_err(|error| DeliveryError::Unavailable(format!("stream log: {error}")))?;
        }
        Ok(())
    }
}
