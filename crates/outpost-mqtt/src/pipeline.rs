//! A connection's telemetry pipeline: QoS 1 messages queue up, go to the event log in batches,
//! and are acknowledged in the order they arrived (MQTT 3.1.1 §4.6).
//!
//! The number of batches in flight is a limit (`MqttLimits::max_batches_in_flight`, 1 by
//! default: with more, the same load became more and smaller group commits and measured slower,
//! docs/benchmarks/results.md). With several, order holds because every batch of a connection
//! goes to the same partition, whose writer commits requests in arrival order, and the batches
//! are polled — hence enqueued — in submission order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use outpost_core::{AppendedEvent, CoreError, OutgoingMessage};

use crate::codec::PacketId;

/// An append of one batch, resolving once it is durable.
pub(crate) type Append = Pin<Box<dyn Future<Output = Result<Vec<AppendedEvent>, CoreError>> + Send>>;

/// A batch on its way to disk with the packet ids to acknowledge after it (`None`: QoS 0).
struct Batch {
    append: Append,
    outcome: Option<Result<Vec<AppendedEvent>, CoreError>>,
    packet_ids: Vec<Option<PacketId>>,
}

/// Queued and in-flight telemetry of one connection.
pub(crate) struct TelemetryPipeline {
    queued: Vec<(Option<PacketId>, OutgoingMessage)>,
    in_flight: VecDeque<Batch>,
    in_flight_messages: usize,
    max_batches: usize,
}

/// A durable (or failed) batch and the packet ids it acknowledges.
pub(crate) type Completed = (Result<Vec<AppendedEvent>, CoreError>, Vec<Option<PacketId>>);

impl TelemetryPipeline {
    /// A pipeline with at most `max_batches` batches in flight.
    pub(crate) fn new(max_batches: usize) -> Self {
        Self {
            queued: Vec::new(),
            in_flight: VecDeque::new(),
            in_flight_messages: 0,
            max_batches: max_batches.max(1),
        }
    }

    /// Queues a message for the next batch.
    pub(crate) fn push(&mut self, packet_id: Option<PacketId>, message: OutgoingMessage) {
        self.queued.push((packet_id, message));
    }

    /// Messages accepted from the socket and not yet acknowledged.
    pub(crate) fn pending(&self) -> usize {
        self.queued.len() + self.in_flight_messages
    }

    /// Whether nothing is queued or in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.in_flight.is_empty()
    }

    /// Submits the queued messages as one batch through `append`, unless nothing is queued or
    /// the in-flight limit is reached.
    pub(crate) fn submit(&mut self, append: impl FnOnce(Vec<OutgoingMessage>) -> Append) {
        if self.queued.is_empty() || self.in_flight.len() >= self.max_batches {
            return;
        }
        let (packet_ids, messages): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued).into_iter().unzip();
        self.in_flight_messages += packet_ids.len();
        self.in_flight.push_back(Batch {
            append: append(messages),
            outcome: None,
            packet_ids,
        });
    }

    /// Resolves with the oldest batch once it is durable; pending while none is in flight.
    pub(crate) fn next_completed(&mut self) -> impl Future<Output = Completed> + '_ {
        std::future::poll_fn(move |cx| self.poll_completed(cx))
    }

    fn poll_completed(&mut self, cx: &mut Context<'_>) -> Poll<Completed> {
        // Every batch is polled, oldest first, so each reaches the log's queue in order.
        for batch in &mut self.in_flight {
            if batch.outcome.is_none()
                && let Poll::Ready(outcome) = batch.append.as_mut().poll(cx)
            {
                batch.outcome = Some(outcome);
            }
        }
        match self.in_flight.front().map(|batch| batch.outcome.is_some()) {
            Some(true) => {
                let batch = self.in_flight.pop_front().expect("the front batch exists");
                self.in_flight_messages -= batch.packet_ids.len();
                let outcome = batch.outcome.expect("the front batch has its outcome");
                Poll::Ready((outcome, batch.packet_ids))
            }
            _ => Poll::Pending,
        }
    }
}
