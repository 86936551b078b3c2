//! One AMQP connection of the Event Hubs-compatible endpoint: the task that owns the stream, feeds
//! the [`Engine`] and answers its events (SASL, CBS, `$management`, partition receivers).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use outpost_core::{EventLog, LogPosition};
use outpost_model::{Hub, HubName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::DoorContext;
use super::epoch::{DetachOrder, PartitionKey};
use outpost_auth::normalise_resource;

use super::auth::{Claim, TokenError, verify_token};
use super::eventhub::{
    DEFAULT_CONSUMER_GROUP, PartitionAddress, StartPosition, event_message, eventhub_properties,
    partition_properties, start_position,
};
use crate::definitions::{DeliveryState, Error, Role, SenderSettleMode, condition};
use crate::engine::{Delivery, Engine, EngineError, Event, LinkAttached, LinkId, LinkReply, SessionId};
use crate::message::{Body, Message, Properties};
use crate::value::Value;

/// Credit the hub gives on its receiving links (CBS and `$management` requests).
const REQUEST_CREDIT: u32 = 100;
/// Most events a partition receiver has in flight ahead of the peer's credit.
const MAX_PREFETCH: u32 = 1000;
/// Events read from the log at once.
const READ_BATCH: usize = 64;
/// Bytes read from the log at once (at least one event).
const READ_BYTES: usize = 1024 * 1024;

/// Serves one AMQP connection (after TLS, or plain TCP) until it closes or `cancel` fires.
pub async fn serve_connection<S>(mut stream: S, context: Arc<DoorContext>, cancel: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (feed_tx, mut feed_rx) = mpsc::channel(256);
    let (orders_tx, mut orders_rx) = mpsc::unbounded_channel();
    let mut connection = Connection {
        engine: Engine::new(context.engine.clone(), Instant::now()),
        id: context.receivers.connection_id(),
        context,
        orders_tx,
        hub: None,
        claims: Vec::new(),
        links: HashMap::new(),
        feed_tx,
    };
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::new();
    let mut closing = false;
    loop {
        while let Some(event) = connection.engine.poll_event() {
            connection.on_event(event).await;
        }
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

/// A message from a partition reader task.
#[derive(Debug)]
enum Feed {
    /// An encoded event for the link.
    Event(LinkId, Bytes),
    /// The reader failed; the link is detached.
    Failed(LinkId),
}

/// A request-response node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Cbs,
    Management,
}

/// What a link of the connection is for.
#[derive(Debug)]
enum LinkRole {
    /// The peer sends requests to a node.
    Requests(Node),
    /// The hub sends a node's replies; the peer's target address (its `reply_to`).
    Replies { node: Node, address: Option<String> },
    /// The hub sends a partition's events.
    Partition(PartitionFeed),
}

#[derive(Debug)]
struct PartitionFeed {
    /// The partition in the receivers registry.
    key: PartitionKey,
    /// Permits of the reader task: one per event it may hand over.
    permits: Arc<Semaphore>,
    /// Permits given minus events received.
    granted: u32,
    task: Option<AbortHandle>,
}

#[derive(Debug)]
struct LinkState {
    session: SessionId,
    role: LinkRole,
    /// Send settled (the peer's sender settle mode is `settled`).
    settled: bool,
    /// Encoded messages waiting for credit.
    queue: VecDeque<Bytes>,
}

struct Connection {
    context: Arc<DoorContext>,
    /// The connection in the receivers registry.
    id: u64,
    /// Where other connections' epoch receivers order one of ours detached.
    orders_tx: mpsc::UnboundedSender<DetachOrder>,
    engine: Engine,
    /// The hub the connection is bound to (by host name or by its first token).
    hub: Option<Arc<Hub>>,
    claims: Vec<Claim>,
    links: HashMap<LinkId, LinkState>,
    feed_tx: mpsc::Sender<Feed>,
}

/// The link property of epoch receivers (wire reference §7.4).
const EPOCH: &str = "com.microsoft:epoch";

/// An epoch: a long from the clients, any integer accepted.
fn epoch_value(value: &Value) -> Option<i64> {
    match value {
        Value::Long(epoch) => Some(*epoch),
        Value::Int(epoch) => Some(i64::from(*epoch)),
        Value::Uint(epoch) => Some(i64::from(*epoch)),
        Value::Ulong(epoch) => i64::try_from(*epoch).ok(),
        _ => None,
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.context.receivers.release_connection(self.id);
    }
}

fn unix_now(context: &DoorContext) -> u64 {
    let seconds = context.clock.now().unix_seconds().unwrap_or_default();
    u64::try_from(seconds.max(0)).unwrap_or_default()
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::String(text) => Some(text),
        Value::Symbol(symbol) => Some(symbol.as_str()),
        _ => None,
    }
}

impl Connection {
    fn bind_host(&mut self, host: Option<&str>) {
        if self.hub.is_none()
            && let Some(hub) = host.and_then(|host| self.context.hubs.by_host(host))
        {
            self.hub = Some(hub);
        }
    }

    fn bound_name(&self) -> Option<HubName> {
        self.hub.as_ref().map(|hub| hub.name.clone())
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::SaslInit(sasl) => {
                self.bind_host(sasl.hostname.as_deref());
                let ok = match sasl.mechanism.as_str() {
                    "ANONYMOUS" | "MSSBCBS" => true,
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
            Event::LinkDetached { link, .. } => self.forget_link(link),
            Event::CreditAvailable { link, credit, drain } => self.on_credit(link, credit, drain),
            Event::Delivery(delivery) => self.on_delivery(delivery).await,
            Event::Closed { error, by_peer } => {
                tracing::debug!(?error, by_peer, "amqp connection closed");
            }
            Event::SessionBegun { .. } | Event::SessionEnded { .. } | Event::Settled { .. } => {}
        }
    }

    fn forget_link(&mut self, link: LinkId) {
        if let Some(state) = self.links.remove(&link)
            && let LinkRole::Partition(feed) = state.role
        {
            self.context.receivers.release(&feed.key, self.id, link);
            if let Some(task) = feed.task {
                task.abort();
            }
        }
    }

    /// A receiver with a higher epoch took the partition of one of our links.
    fn on_order(&mut self, order: DetachOrder) {
        if self.links.contains_key(&order.link) {
            tracing::debug!(link = %order.link, "amqp partition receiver stolen by a higher epoch");
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

    fn reject(&mut self, link: LinkId, condition: &str, description: impl Into<String>) {
        let _ = self.engine.reject_link(link, Error::new(condition, description));
    }

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

    async fn attach_partition(
        &mut self,
        attached: &LinkAttached,
        address: PartitionAddress,
        mut state: LinkState,
    ) {
        let link = attached.link;
        self.bind_host(address.host.as_deref());
        let Some(hub) = self.hub.clone() else {
            return self.reject(link, condition::NOT_FOUND, "no hub serves this host");
        };
        if !address.eventhub.eq_ignore_ascii_case(hub.name.as_str()) {
            return self.reject(
                link,
                condition::NOT_FOUND,
                format!("the messaging entity '{}' was not found", address.eventhub),
            );
        }
        if !address
            .consumer_group
            .eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP)
        {
            return self.reject(
                link,
                condition::NOT_FOUND,
                format!("the consumer group '{}' was not found", address.consumer_group),
            );
        }
        if address.partition >= hub.partition_count {
            return self.reject(
                link,
                condition::NOT_FOUND,
                format!("the partition '{}' was not found", address.partition),
            );
        }
        let now = unix_now(&self.context);
        let resource = address.resource(&hub.host_name);
        if !self
            .claims
            .iter()
            .any(|claim| claim.covers(&hub.name, &resource, now))
        {
            return self.reject(
                link,
                condition::UNAUTHORIZED_ACCESS,
                "put a token for the partition first",
            );
        }
        let filter = attached.source.as_ref().and_then(|s| s.filter.as_ref());
        let start = match start_position(filter) {
            Ok(start) => start,
            Err(description) => return self.reject(link, condition::NOT_IMPLEMENTED, description),
        };
        let log = self.context.log.clone();
        let watch = match log.watch(&hub.name, address.partition) {
            Ok(watch) => watch,
            Err(error) => {
                tracing::warn!(hub = %hub.name, %error, "amqp partition receiver: cannot watch the log");
                return self.reject(link, condition::INTERNAL_ERROR, "the partition cannot be read");
            }
        };
        let (from, skip) = match start {
            StartPosition::Earliest => (LogPosition::SequenceNumber(0), super::eventhub::Skip::Nothing),
            StartPosition::Latest => (
                LogPosition::SequenceNumber(*watch.borrow()),
                super::eventhub::Skip::Nothing,
            ),
            StartPosition::At(position, skip) => (position, skip),
        };
        let key = PartitionKey {
            hub: hub.name.clone(),
            consumer_group: address.consumer_group.to_ascii_lowercase(),
            partition: address.partition,
        };
        let epoch = attached
            .properties
            .as_deref()
            .and_then(|properties| crate::composite::lookup(properties, EPOCH))
            .and_then(epoch_value);
        if let Err(error) = self
            .context
            .receivers
            .claim(key.clone(), self.id, link, epoch, &self.orders_tx)
        {
            let _ = self.engine.reject_link(link, error);
            return;
        }
        let reply = LinkReply {
            initial_delivery_count: Some(0),
            properties: attached.properties.clone(),
            ..LinkReply::default()
        };
        if self.engine.accept_link(link, reply).is_err() {
            self.context.receivers.release(&key, self.id, link);
            return;
        }
        let permits = Arc::new(Semaphore::new(0));
        let reader = Reader {
            log,
            hub: hub.name.clone(),
            partition: address.partition,
            link,
            permits: permits.clone(),
            tx: self.feed_tx.clone(),
        };
        let task = tokio::spawn(reader.run(from, skip, watch)).abort_handle();
        state.role = LinkRole::Partition(PartitionFeed {
            key,
            permits,
            granted: 0,
            task: Some(task),
        });
        self.links.insert(link, state);
    }

    fn on_credit(&mut self, link: LinkId, credit: u32, drain: bool) {
        self.flush(link);
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        let queued = u32::try_from(state.queue.len()).unwrap_or(u32::MAX);
        if let LinkRole::Partition(feed) = &mut state.role {
            let credit = self.engine.link_credit(link).unwrap_or(credit);
            let wanted = credit.saturating_sub(queued).min(MAX_PREFETCH);
            if wanted > feed.granted {
                let more = wanted - feed.granted;
                feed.permits.add_permits(more as usize);
                feed.granted = wanted;
            }
            if drain {
                let idle = u32::try_from(feed.permits.available_permits()).unwrap_or(u32::MAX);
                if let Ok(taken) = feed.permits.try_acquire_many(idle) {
                    taken.forget();
                    feed.granted = feed.granted.saturating_sub(idle);
                }
            }
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
                    feed.granted = feed.granted.saturating_sub(1);
                }
                state.queue.push_back(message);
                self.flush(link);
            }
            Feed::Failed(link) => {
                let _ = self.engine.detach_link(
                    link,
                    Some(Error::new(
                        condition::INTERNAL_ERROR,
                        "the partition cannot be read",
                    )),
                );
                self.forget_link(link);
            }
        }
    }

    /// Sends what the link's queue holds, as far as credit and the session window allow.
    fn flush(&mut self, link: LinkId) {
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

    async fn on_delivery(&mut self, delivery: Delivery) {
        let link = delivery.link;
        if !delivery.settled {
            let _ = self
                .engine
                .settle(link, delivery.delivery_id, DeliveryState::Accepted);
        }
        let _ = self.engine.grant_credit(link, 1);
        let Some(LinkState {
            role: LinkRole::Requests(node),
            session,
            ..
        }) = self.links.get(&link)
        else {
            return;
        };
        let (node, session) = (*node, *session);
        let Ok(request) = Message::decode(delivery.message) else {
            tracing::debug!("amqp request is not a message: ignored");
            return;
        };
        let (status, description, body) = match node {
            Node::Cbs => self.put_token(&request),
            Node::Management => self.management(&request).await,
        };
        let properties = request.properties.as_ref();
        let reply_to = properties.and_then(|p| p.reply_to.clone());
        let reply = Message {
            properties: Some(Properties {
                correlation_id: properties.and_then(|p| p.message_id.clone()),
                to: reply_to.clone(),
                ..Properties::default()
            }),
            application_properties: Some(vec![
                ("status-code".into(), Value::Int(status)),
                ("status-description".into(), Value::String(description)),
            ]),
            body: Body::Value(body),
            ..Message::default()
        };
        let Some(reply_link) = self.reply_link(node, session, reply_to.as_deref()) else {
            tracing::debug!(?node, "amqp request without a reply link: answer dropped");
            return;
        };
        if let Some(state) = self.links.get_mut(&reply_link) {
            state.queue.push_back(reply.to_bytes());
        }
        self.flush(reply_link);
    }

    /// The link to answer a request on: the node's reply link whose address is the request's
    /// `reply_to`, else one on the same session, else any.
    fn reply_link(&self, node: Node, session: SessionId, reply_to: Option<&str>) -> Option<LinkId> {
        let replies = || {
            self.links
                .iter()
                .filter_map(move |(link, state)| match &state.role {
                    LinkRole::Replies { node: n, address } if *n == node => {
                        Some((*link, state.session, address.as_deref()))
                    }
                    _ => None,
                })
        };
        replies()
            .find(|(_, s, address)| *s == session && reply_to.is_some() && *address == reply_to)
            .or_else(|| replies().find(|(_, s, _)| *s == session))
            .or_else(|| replies().next())
            .map(|(link, _, _)| link)
    }

    /// `put-token` on `$cbs` (wire reference §7.2).
    fn put_token(&mut self, request: &Message) -> (i32, String, Value) {
        let property = |key| request.application_property(key).and_then(text);
        if property("operation") != Some("put-token") {
            return (400, "unsupported operation".into(), Value::Null);
        }
        let token = match &request.body {
            Body::Value(Value::String(token)) => Some(token.as_str()),
            Body::Value(Value::Binary(token)) => std::str::from_utf8(token).ok(),
            Body::Data(sections) => sections.first().and_then(|data| std::str::from_utf8(data).ok()),
            _ => None,
        };
        let Some(token) = token else {
            return (400, "the token is missing".into(), Value::Null);
        };
        let audience = property("name");
        if let Some(audience) = audience {
            let normalised = normalise_resource(audience);
            self.bind_host(normalised.split('/').next());
        }
        let bound = self.bound_name();
        let now = unix_now(&self.context);
        match verify_token(&self.context.hubs, token, audience, bound.as_ref(), now) {
            Ok((hub, claim)) => {
                self.hub.get_or_insert(hub);
                self.claims.retain(|old| old.expiry > now);
                self.claims.push(claim);
                (200, "OK".into(), Value::Null)
            }
            Err(error) => {
                tracing::info!(%error, "amqp put-token refused");
                let status = match error {
                    TokenError::Malformed => 400,
                    TokenError::UnknownHub => 404,
                    _ => 401,
                };
                (status, error.to_string(), Value::Null)
            }
        }
    }

    /// `READ` on `$management` (wire reference §7.3).
    async fn management(&mut self, request: &Message) -> (i32, String, Value) {
        let property = |key| request.application_property(key).and_then(text);
        if property("operation") != Some("READ") {
            return (400, "unsupported operation".into(), Value::Null);
        }
        let Some(hub) = self.hub.clone() else {
            return (404, "no hub serves this host".into(), Value::Null);
        };
        let now = unix_now(&self.context);
        let resource = format!("{}/{}/$management", hub.host_name, hub.name);
        let authorized = match property("security_token") {
            Some(token) => match verify_token(&self.context.hubs, token, None, Some(&hub.name), now) {
                Ok((_, claim)) => claim.covers(&hub.name, &resource, now),
                Err(error) => {
                    tracing::info!(%error, "amqp management token refused");
                    false
                }
            },
            None => self
                .claims
                .iter()
                .any(|claim| claim.covers(&hub.name, &resource, now)),
        };
        if !authorized {
            return (401, "unauthorized".into(), Value::Null);
        }
        if !property("name").is_some_and(|name| name.eq_ignore_ascii_case(hub.name.as_str())) {
            return (404, "the messaging entity was not found".into(), Value::Null);
        }
        match property("type") {
            Some("com.microsoft:eventhub") => (200, "OK".into(), eventhub_properties(&hub)),
            Some("com.microsoft:partition") => {
                let Some(partition) = property("partition")
                    .and_then(|p| p.parse::<u32>().ok())
                    .filter(|p| *p < hub.partition_count)
                else {
                    return (404, "the partition was not found".into(), Value::Null);
                };
                match self.context.log.partition_info(&hub.name, partition).await {
                    Ok(info) => (200, "OK".into(), partition_properties(&hub, partition, &info)),
                    Err(error) => {
                        tracing::warn!(hub = %hub.name, %error, "amqp partition properties failed");
                        (500, "the partition cannot be read".into(), Value::Null)
                    }
                }
            }
            _ => (400, "unsupported type".into(), Value::Null),
        }
    }
}

/// Reads a partition for one receiver link and hands its events to the connection, one permit
/// (the receiver's credit) per event.
struct Reader {
    log: Arc<dyn EventLog>,
    hub: HubName,
    partition: u32,
    link: LinkId,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<Feed>,
}

impl Reader {
    async fn run(
        self,
        mut from: LogPosition,
        mut skip: super::eventhub::Skip,
        mut watch: tokio::sync::watch::Receiver<u64>,
    ) {
        loop {
            let events = match self
                .log
                .read(&self.hub, self.partition, from, READ_BATCH, READ_BYTES)
                .await
            {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(hub = %self.hub, partition = self.partition, %error, "amqp partition read failed");
                    let _ = self.tx.send(Feed::Failed(self.link)).await;
                    return;
                }
            };
            if events.is_empty() {
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { return },
                    () = self.tx.closed() => return,
                }
                continue;
            }
            for event in events {
                from = LogPosition::SequenceNumber(event.position.sequence_number.saturating_add(1));
                if skip.skips(&event) {
                    continue;
                }
                skip = super::eventhub::Skip::Nothing;
                let Ok(permit) = self.permits.acquire().await else {
                    return;
                };
                permit.forget();
                if self
                    .tx
                    .send(Feed::Event(self.link, event_message(&event)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
