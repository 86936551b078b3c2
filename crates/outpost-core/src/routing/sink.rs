//! What a delivery worker hands to an endpoint, and the ports endpoints write through.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outpost_model::{EndpointName, HubName, Message};

/// One message read from the hub's log for an endpoint, as that endpoint receives it (its
/// enrichments applied, no routing stamps: [`Message::for_endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedEvent {
    /// The ingest-log partition it was read from.
    pub partition: u32,
    /// Its sequence number in that partition.
    pub sequence_number: u64,
    /// Its offset in that partition.
    pub offset: u64,
    /// The message.
    pub message: Message,
}

/// Consecutive events of one ingest-log partition for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedBatch {
    /// The hub.
    pub hub: HubName,
    /// The endpoint.
    pub endpoint: EndpointName,
    /// The ingest-log partition the events come from.
    pub partition: u32,
    /// The events, in log order (never empty).
    pub events: Vec<RoutedEvent>,
}

impl RoutedBatch {
    /// Returns the bytes of the events' bodies (the measure of batch size limits).
    pub fn body_bytes(&self) -> usize {
        self.events.iter().map(|event| event.message.body.len()).sum()
    }
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The endpoint cannot take the batch now (down, timing out, 5xx, 429): retried with back-off.
    #[error("endpoint unavailable: {0}")]
    Unavailable(String),
    /// The endpoint refuses this batch for good (4xx other than 408/429, a file it cannot
    /// write): retried like an unavailable endpoint, then dead-lettered where the endpoint can.
    #[error("endpoint rejected the batch: {0}")]
    Rejected(String),
}

/// How a delivery worker groups events before handing them to the endpoint: a batch goes out
/// when it holds `max_events` or `max_bytes` of bodies, or `max_wait` after its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most events in one batch.
    pub max_events: usize,
    /// Most body bytes in one batch (a single larger event still goes alone).
    pub max_bytes: usize,
    /// Longest time the first event of a batch waits for more (zero: hand over what was read).
    pub max_wait: Duration,
}

/// An endpoint that takes batches of routed events. Implementations must be idempotent enough
/// for at-least-once delivery: after a crash the same batch may be delivered again.
#[async_trait]
pub trait EndpointSink: Send + Sync + Debug {
    /// Delivers a batch; `Ok` means it is durable at the endpoint (the worker then saves its
    /// checkpoint past the batch).
    async fn deliver(&self, batch: &RoutedBatch) -> Result<(), DeliveryError>;

    /// Sets a batch aside that could not be delivered within the endpoint's retry window.
    /// Endpoints without dead-lettering keep the default, which refuses: the worker then keeps
    /// retrying the batch.
    async fn dead_letter(&self, batch: &RoutedBatch, reason: &str) -> Result<(), DeliveryError> {
        let _ = (batch, reason);
        Err(DeliveryError::Rejected(
            "this endpoint has no dead-letter destination".into(),
        ))
    }

    /// How long a batch is retried before it is dead-lettered (`None`: forever).
    fn retry_window(&self) -> Option<Duration> {
        None
    }
}

/// Where a storage endpoint writes its files: a directory, or a container of the hub's built-in
/// blob endpoint. Writing a name again replaces the file (a batch delivered again after a crash
/// rewrites the same name).
#[async_trait]
pub trait StorageTarget: Send + Sync + Debug {
    /// Writes `bytes` as the file `name` (a relative `/`-separated path), durably: `Ok` only
    /// once the whole file is on disk.
    async fn write(&self, name: &str, bytes: Bytes) -> Result<(), DeliveryError>;
}

/// An HTTP request a webhook endpoint sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Extra headers (besides `content-type`).
    pub headers: Vec<(String, String)>,
    /// `content-type` of the body.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// Sends webhook requests (implemented with hyper in `outpost-http`).
#[async_trait]
pub trait WebhookClient: Send + Sync + Debug {
    /// POSTs the request and returns the response status; transport failures and time-outs are
    /// [`DeliveryError::Unavailable`].
    async fn post(&self, request: WebhookRequest) -> Result<u16, DeliveryError>;
}
