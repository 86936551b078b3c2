//! One AMQP connection of the Event Hubs-compatible endpoint: the task that owns the stream, feeds
//! the [`Engine`] and answers its events (SASL, CBS, `$management`, partition receivers).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use outpost_core::AmqpTraffic;
use outpost_model::{Hub, HubName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::DoorContext;
use super::auth::{Claim, verify_token};
use super::device::{DeviceAddress, DeviceFeed, DeviceLink};
use super::epoch::DetachOrder;
use super::eventhub::{PartitionAddress, RedirectAddress};
use super::links::Links;
use super::partition::PartitionFeed;
use super::service::{ServiceFeed, ServiceLink, ServiceNode};
use crate::definitions::{DeliveryState, Error, Role, SenderSettleMode, condition};
use crate::engine::{
    Delivery, DeliveryId, Engine, EngineError, EngineStats, Event, LinkAttached, LinkId, LinkReply, SessionId,
};
use crate::value::Value;

/// Credit the hub gives on its receiving links (CBS and `$management` requests).
pub(super) const REQUEST_CREDIT: u32 = 100;

/// Serves one AMQP connection (after TLS, or plain TCP) until it closes or `cancel` fires.
/// `client_chain` is the TLS client's certificate chain, leaf first (empty without one): X.509
/// devices authenticate with it instead of a token (wire reference §3).
pub async fn serve_connection<S>(
    mut stream: S,
    client_chain: Vec<Vec<u8>>,
    context: Arc<DoorContext>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (feed_tx, mut feed_rx) = mpsc::channel(256);
    let metrics = context.outpost.metrics.clone();
    metrics.record_amqp_connection(true);
    let (orders_tx, mut orders_rx) = mpsc::unbounded_channel();
    let mut connection = Connection {
        engine: Engine::new(context.engine.clone(), Instant::now()),
        id: context.receivers.connection_id(),
        context,
        orders_tx,
        hub: None,
        claims: Vec::new(),
        client_chain,
        links: Links::new(metrics),
        reported: EngineStats::default(),
        feed_tx,
    };
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::new();
    let mut closing = false;
    loop {
        while let Some(event) = connection.engine.poll_event() {
            connection.on_event(event).await;
        }
        connection.report_traffic();
        if connection.engine.has_output() {
            connection.engine.take_output(&mut output);
            if stream.write_all(&output).await.is_err() || stream.flush().await.is_err() {
                break;
            }
            output.clear();
        }
        // On shutdown the close frame is written, then the socket closed without waiting for the
        // peer's close (the clients reconnect elsewhere or later anyway).
        if connection.engine.is_closed() || closing {
            break;
        }
        let deadline = connection.engine.next_deadline();
        tokio::select! {
            read = stream.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => connection.engine.handle_input(&mut input, Instant::now()),
            },
            () = sleep_until(deadline) => connection.engine.poll_timers(Instant::now()),
            Some(order) = orders_rx.recv() => connection.on_order(order),
            Some(feed) = feed_rx.recv() => {
                connection.on_feed(feed);
                // Everything the readers have ready goes out in one write: one TLS record and
                // one syscall per batch instead of per event (docs/benchmarks/results.md).
                for _ in 1..MAX_FEEDS_PER_WRITE {
                    let Ok(feed) = feed_rx.try_recv() else { break };
                    connection.on_feed(feed);
                }
            }
            () = cancel.cancelled(), if !closing => {
                closing = true;
                connection.engine.close(Some(Error::new(
                    condition::CONNECTION_FORCED,
                    "the server is shutting down",
                )));
            }
        }
    }
    let _ = stream.shutdown().await;
    connection.stop_feeds();
}

/// Most reader events turned into transfers before the output is written.
const MAX_FEEDS_PER_WRITE: usize = 1024;

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// A message from a task of the connection (partition readers, service and device links).
#[derive(Debug)]
pub(super) enum Feed {
    /// An encoded event for the link.
    Event(LinkId, Bytes),
    /// The reader failed; the link is detached.
    Failed(LinkId),
    /// For a service link.
    Service(ServiceFeed),
    /// For a device link.
    Device(DeviceFeed),
}

/// A request-response node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Node {
    Cbs,
    Management,
}

/// What a link of the connection is for.
#[derive(Debug)]
pub(super) enum LinkRole {
    /// The peer sends requests to a node.
    Requests(Node),
    /// The hub sends a node's replies; the peer's target address (its `reply_to`).
    Replies { node: Node, address: Option<String> },
    /// The hub sends a partition's events.
    Partition(PartitionFeed),
    /// A service link (wire reference §6).
    Service(ServiceLink),
    /// A device or module link (wire reference §3).
    Device(DeviceLink),
}

#[derive(Debug)]
pub(super) struct LinkState {
    pub(super) session: SessionId,
    pub(super) role: LinkRole,
    /// Send settled (the peer's sender settle mode is `settled`).
    pub(super) settled: bool,
    /// Encoded messages waiting for credit.
    pub(super) queue: VecDeque<Bytes>,
}

pub(super) struct Connection {
    pub(super) context: Arc<DoorContext>,
    /// The connection in the receivers registry.
    pub(super) id: u64,
    /// Where other connections' epoch receivers order one of ours detached.
    pub(super) orders_tx: mpsc::UnboundedSender<DetachOrder>,
    pub(super) engine: Engine,
    /// The hub the connection is bound to (by host name or by its first token).
    pub(super) hub: Option<Arc<Hub>>,
    pub(super) claims: Vec<Claim>,
    /// The TLS client certificate chain (X.509 devices), leaf first; empty without one.
    pub(super) client_chain: Vec<Vec<u8>>,
    pub(super) links: Links,
    /// The engine's counters as last added to the server's metrics.
    reported: EngineStats,
    /// Where the connection's tasks send what its links need.
    pub(super) feed_tx: mpsc::Sender<Feed>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.context.receivers.release_connection(self.id);
        self.report_traffic();
        self.context.outpost.metrics.record_amqp_connection(false);
    }
}

pub(super) fn unix_now(context: &DoorContext) -> u64 {
    let seconds = context.clock.now().unix_seconds().unwrap_or_default();
    u64::try_from(seconds.max(0)).unwrap_or_default()
}

pub(super) fn text(value: &Value) -> Option<&str> {
    match value {
        Value::String(text) => Some(text),
        Value::Symbol(symbol) => Some(symbol.as_str()),
        _ => None,
    }
}

impl Connection {
    /// Adds what the engine counted since the last report to the server's metrics.
    fn report_traffic(&mut self) {
        let now = self.engine.stats();
        if now != self.reported {
            self.context.outpost.metrics.record_amqp_traffic(AmqpTraffic {
                deliveries_received: now.deliveries_received - self.reported.deliveries_received,
                deliveries_sent: now.deliveries_sent - self.reported.deliveries_sent,
                credit_granted: now.credit_granted - self.reported.credit_granted,
            });
            self.reported = now;
        }
    }

    /// Whether a claim of the connection covers the service-side `resource` of `hub` at `now`.
    pub(super) fn authorized(&self, hub: &HubName, resource: &str, now: u64) -> bool {
        self.claims.iter().any(|claim| claim.covers(hub, resource, now))
    }

    /// Settles a delivery that arrived where the hub expects none: rejected.
    pub(super) fn refuse_delivery(&mut self, delivery: &Delivery) {
        if !delivery.settled {
            let _ = self.engine.settle(
                delivery.link,
                delivery.delivery_id,
                DeliveryState::Rejected { error: None },
            );
        }
    }

    /// Counts an error the hub sends (a refused or detached link, a closed connection).
    pub(super) fn count_error(&self, condition: &str) {
        self.context.outpost.metrics.record_amqp_error(condition);
    }

    pub(super) fn bind_host(&mut self, host: Option<&str>) {
        if self.hub.is_none()
            && let Some(hub) = host.and_then(|host| self.context.hubs.by_host(host))
        {
            self.hub = Some(hub);
        }
    }

    pub(super) fn bound_name(&self) -> Option<HubName> {
        self.hub.as_ref().map(|hub| hub.name.clone())
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::SaslInit(sasl) => {
                self.bind_host(sasl.hostname.as_deref());
                let ok = match sasl.mechanism.as_str() {
                    "ANONYMOUS" | "MSSBCBS" => true,
                    // The identity is the TLS client certificate's, checked when a link attaches.
                    "EXTERNAL" => !self.client_chain.is_empty(),
                    "PLAIN" => match sasl.plain() {
                        Some(credentials) => {
                            let now = unix_now(&self.context);
                            let bound = self.bound_name();
                            match verify_token(
                                &self.context.hubs,
                                credentials.password,
                                None,
                                bound.as_ref(),
                                now,
                            ) {
                                Ok((hub, claim)) => {
                                    self.hub.get_or_insert(hub);
                                    self.claims.push(claim);
                                    true
                                }
                                Err(error) => {
                                    tracing::info!(%error, "amqp sasl plain refused");
                                    false
                                }
                            }
                        }
                        None => false,
                    },
                    _ => false,
                };
                let _ = self.engine.sasl_outcome(ok);
            }
            Event::Opened(open) => self.bind_host(open.hostname.as_deref()),
            Event::LinkAttached(attached) => self.on_attach(*attached).await,
            Event::LinkDetached {
                link, error, by_peer, ..
            } => {
                // The engine detached it for a protocol violation.
                if let Some(error) = error.filter(|_| !by_peer) {
                    self.count_error(error.condition.as_str());
                }
                self.forget_link(link);
            }
            Event::CreditAvailable { link, credit, drain } => self.on_credit(link, credit, drain),
            Event::Delivery(delivery) => self.on_delivery(delivery).await,
            Event::Settled {
                link,
                delivery_id,
                state,
                settled,
            } => self.on_settled(link, delivery_id, state, settled).await,
            Event::Closed { error, by_peer } => match error {
                // A connection the hub closed for a protocol error: worth an operator's look.
                Some(error) if !by_peer => {
                    self.count_error(error.condition.as_str());
                    tracing::info!(condition = %error.condition, description = ?error.description, "amqp connection closed with an error");
                }
                error => tracing::debug!(?error, by_peer, "amqp connection closed"),
            },
            Event::SessionBegun { .. } | Event::SessionEnded { .. } => {}
        }
    }

    /// The link is gone: its tasks stop and its claims are released.
    pub(super) fn forget_link(&mut self, link: LinkId) {
        let Some(state) = self.links.remove(&link) else {
            return;
        };
        match state.role {
            LinkRole::Partition(feed) => {
                self.context.receivers.release(&feed.key, self.id, link);
                if let Some(task) = feed.task {
                    task.abort();
                }
            }
            LinkRole::Service(service) => self.forget_service_link(link, service),
            LinkRole::Device(device) => self.forget_device_link(link, device),
            LinkRole::Requests(_) | LinkRole::Replies { .. } => {}
        }
    }

    /// Another part of the hub ordered one of our links detached with an error.
    fn on_order(&mut self, order: DetachOrder) {
        if self.links.contains_key(&order.link) {
            // A higher epoch took the partition, the consumer group was deleted, or a redirect.
            tracing::debug!(link = %order.link, condition = %order.error.condition, "amqp link detached by order");
            self.count_error(order.error.condition.as_str());
            let _ = self.engine.detach_link(order.link, Some(order.error));
            self.forget_link(order.link);
        }
    }

    fn stop_feeds(&mut self) {
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.forget_link(link);
        }
    }

    pub(super) fn reject(&mut self, link: LinkId, condition: &str, description: impl Into<String>) {
        self.reject_with(link, Error::new(condition, description));
    }

    /// Refuses a link the peer attached with `error` (attached, then detached, §2.6.3), counted.
    pub(super) fn reject_with(&mut self, link: LinkId, error: Error) {
        self.count_error(error.condition.as_str());
        let _ = self.engine.reject_link(link, error);
    }

    /// Routes a new link by its address: the request-response nodes, partition receivers, service
    /// and device links; anything else is `amqp:not-found`.
    async fn on_attach(&mut self, attached: LinkAttached) {
        let link = attached.link;
        let source = attached.source.as_ref().and_then(|s| s.address.clone());
        let target = attached.target.as_ref().and_then(|t| t.address.clone());
        let node_of = |address: Option<&str>| match address {
            Some("$cbs") => Some(Node::Cbs),
            Some(address) if address.ends_with("$management") => Some(Node::Management),
            _ => None,
        };
        let settled = attached.snd_settle_mode == Some(SenderSettleMode::Settled);
        let state = |role| LinkState {
            session: attached.session,
            role,
            settled,
            queue: VecDeque::new(),
        };
        // The node address the peer names: the target of its sender, the source of its receiver.
        let peer_address = match attached.role {
            Role::Sender => target.as_deref(),
            Role::Receiver => source.as_deref(),
        };
        // IoT Hub's `messages/events` names of the built-in endpoint: redirected to the Event Hubs
        // addresses (wire reference §7.7). The link carries nothing until then.
        if attached.role == Role::Receiver
            && let Some(address) = source.as_deref().and_then(RedirectAddress::parse)
        {
            let state = state(LinkRole::Requests(Node::Management));
            return self.attach_redirect(&attached, address, state);
        }
        if let Some(node) = peer_address.and_then(ServiceNode::parse) {
            let state = state(LinkRole::Service(ServiceLink::default()));
            return self.attach_service(&attached, node, state).await;
        }
        if let Some(address) = peer_address.and_then(DeviceAddress::parse) {
            let state = state(LinkRole::Device(DeviceLink::default()));
            return self.attach_device(&attached, address, state).await;
        }
        match attached.role {
            // The peer sends: requests to `$cbs` or `$management`.
            Role::Sender => {
                let Some(node) = node_of(target.as_deref()) else {
                    return self.reject(link, condition::NOT_FOUND, "no such node");
                };
                if self.engine.accept_link(link, LinkReply::default()).is_ok() {
                    self.links.insert(link, state(LinkRole::Requests(node)));
                    let _ = self.engine.grant_credit(link, REQUEST_CREDIT);
                }
            }
            Role::Receiver => {
                if let Some(node) = node_of(source.as_deref()) {
                    let reply = LinkReply {
                        initial_delivery_count: Some(0),
                        ..LinkReply::default()
                    };
                    if self.engine.accept_link(link, reply).is_ok() {
                        self.links.insert(
                            link,
                            state(LinkRole::Replies {
                                node,
                                address: target,
                            }),
                        );
                    }
                    return;
                }
                let Some(address) = source.as_deref().and_then(PartitionAddress::parse) else {
                    return self.reject(link, condition::NOT_FOUND, "no such entity");
                };
                self.attach_partition(&attached, address, state(LinkRole::Requests(Node::Cbs)))
                    .await;
            }
        }
    }

    fn on_credit(&mut self, link: LinkId, credit: u32, drain: bool) {
        self.flush(link);
        let credit = self.engine.link_credit(link).unwrap_or(credit);
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        let queued = u32::try_from(state.queue.len()).unwrap_or(u32::MAX);
        match &mut state.role {
            LinkRole::Partition(feed) => feed.credit(credit, queued, drain),
            LinkRole::Service(_) => self.on_service_credit(link),
            LinkRole::Device(_) => self.on_device_credit(link),
            LinkRole::Requests(_) | LinkRole::Replies { .. } => {}
        }
        if drain {
            let _ = self.engine.drain(link);
        }
    }

    fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Event(link, message) => {
                let Some(state) = self.links.get_mut(&link) else {
                    return;
                };
                if let LinkRole::Partition(feed) = &mut state.role {
                    feed.received();
                }
                state.queue.push_back(message);
                self.flush(link);
            }
            Feed::Failed(link) => {
                self.count_error(condition::INTERNAL_ERROR);
                let _ = self.engine.detach_link(
                    link,
                    Some(Error::new(
                        condition::INTERNAL_ERROR,
                        "the partition cannot be read",
                    )),
                );
                self.forget_link(link);
            }
            Feed::Service(feed) => self.on_service_feed(feed),
            Feed::Device(feed) => self.on_device_feed(feed),
        }
    }

    /// Queues an encoded message on a link where the hub sends, and sends what credit allows.
    pub(super) fn queue(&mut self, link: LinkId, message: Bytes) {
        if let Some(state) = self.links.get_mut(&link) {
            state.queue.push_back(message);
        }
        self.flush(link);
    }

    /// Sends what the link's queue holds, as far as credit and the session window allow.
    pub(super) fn flush(&mut self, link: LinkId) {
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        while let Some(message) = state.queue.front() {
            match self.engine.send(link, message, state.settled) {
                Ok(_) => {
                    state.queue.pop_front();
                }
                Err(EngineError::NoCredit | EngineError::SessionWindowFull) => break,
                Err(EngineError::MessageTooLarge { size, max }) => {
                    tracing::warn!(size, max, "amqp event larger than the receiver accepts: skipped");
                    state.queue.pop_front();
                }
                Err(error) => {
                    tracing::debug!(%error, "amqp send failed");
                    state.queue.clear();
                    break;
                }
            }
        }
    }

    /// A message from the peer: to the link's node.
    async fn on_delivery(&mut self, delivery: Delivery) {
        match self.links.get(&delivery.link).map(|state| &state.role) {
            Some(LinkRole::Requests(node)) => {
                let node = *node;
                self.on_request(node, delivery).await;
            }
            Some(LinkRole::Service(_)) => self.on_service_delivery(delivery).await,
            Some(LinkRole::Device(_)) => self.on_device_delivery(delivery).await,
            // Deliveries only arrive on links where the peer sends; settle any other anyway.
            _ => self.refuse_delivery(&delivery),
        }
    }

    /// The peer settled (or updated) a delivery the hub sent.
    async fn on_settled(
        &mut self,
        link: LinkId,
        delivery: DeliveryId,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        match self.links.get(&link).map(|state| &state.role) {
            Some(LinkRole::Service(_)) => self.on_service_settled(link, delivery, state, settled).await,
            Some(LinkRole::Device(_)) => self.on_device_settled(link, delivery, state, settled).await,
            _ => {}
        }
    }
}
