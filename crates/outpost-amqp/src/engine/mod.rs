//! The sans-IO AMQP 1.0 connection engine, server side (AMQP 1.0 Part 2 "Transport", Part 5
//! "Security"): bytes and timestamps in, bytes to write and [`Event`]s out. No tokio, no I/O, no hub
//! logic: the connection task owns the socket, feeds [`Engine::handle_input`], writes what
//! [`Engine::take_output`] gives, wakes at [`Engine::next_deadline`] for [`Engine::poll_timers`], and
//! answers the events through methods ([`Engine::sasl_outcome`], [`Engine::accept_link`],
//! [`Engine::grant_credit`], [`Engine::send`], [`Engine::settle`]…). The engine never panics on
//! input: a protocol violation closes the connection with its AMQP condition.
//!
//! Modules: `config` ([`EngineConfig`]), `event` ([`Event`] and the identifiers), `output` (the
//! output buffer, settlements batched into ranges), `connection` (headers, open, close, idle
//! timeout), `sasl`, `session` (begin, end, session windows), `link` (attach, detach, link credit),
//! `delivery` (transfer, disposition).
//!
//! What the engine does with each frame from the peer:
//!
//! | frame | handling |
//! |---|---|
//! | protocol header | SASL → SASL header + mechanisms; AMQP → AMQP header; anything else → our AMQP header, then closed (§2.2) |
//! | sasl-init | [`Event::SaslInit`]; the application answers with [`Engine::sasl_outcome`] |
//! | open | answered with our open (explicit limits), [`Event::Opened`] |
//! | begin | answered with our begin (explicit `handle-max`), [`Event::SessionBegun`] |
//! | attach | [`Event::LinkAttached`]; the application accepts or rejects |
//! | flow | link credit and session windows; [`Event::CreditAvailable`]; echo answered |
//! | transfer | reassembled, size-checked, [`Event::Delivery`] |
//! | disposition | [`Event::Settled`] per delivery of the range |
//! | detach | answered, [`Event::LinkDetached`] |
//! | end | answered, [`Event::SessionEnded`] |
//! | close | answered, [`Event::Closed`] |
//! | empty frame | heartbeat: only resets the idle timer (§2.4.5) |
//!
//! Simplifications: the engine never initiates sessions or links, never resumes links (`unsettled`
//! maps are ignored), and treats session-level violations (unknown handle, window violation,
//! handle in use) as connection errors. Frames it sends are not checked against the peer's max frame
//! size except transfers, which are split.

mod config;
mod connection;
mod delivery;
mod event;
mod link;
mod output;
mod sasl;
mod session;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;

pub use config::EngineConfig;
pub use event::{
    Delivery, DeliveryId, Event, LinkAttached, LinkId, PeerOpen, PlainCredentials, SaslAuthentication,
    SessionId,
};
pub use link::LinkReply;

use crate::definitions::{Error, Role};
use crate::error::AmqpCodecError;
use crate::frame::FrameDecoder;
use link::Link;
use output::Outbox;
use session::Session;

/// Why the engine refused an application's request. The connection itself is unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The connection is not open: not yet opened, closing or closed.
    #[error("the connection is not open")]
    NotOpen,
    /// No sasl-init awaits an outcome.
    #[error("no sasl exchange awaits an outcome")]
    NoSaslPending,
    /// The session does not exist (any more).
    #[error("unknown session")]
    UnknownSession,
    /// The link does not exist (any more), or a detach was already sent.
    #[error("unknown or detached link")]
    UnknownLink,
    /// The link was already answered.
    #[error("the link's attach was already answered")]
    LinkNotPending,
    /// The link is not attached yet: answer its attach first.
    #[error("the link is not attached")]
    LinkNotAttached,
    /// The operation needs the hub in the other role on this link.
    #[error("the hub is not the {0:?} on this link")]
    WrongRole(Role),
    /// The peer gave no credit (§2.6.7): wait for [`Event::CreditAvailable`].
    #[error("no link credit")]
    NoCredit,
    /// The peer's session incoming window is full (§2.5.6): wait for [`Event::CreditAvailable`].
    #[error("the session window is full")]
    SessionWindowFull,
    /// The message is larger than the peer's max-message-size for the link.
    #[error("message of {size} bytes exceeds the link limit of {max}")]
    MessageTooLarge {
        /// The message size.
        size: usize,
        /// The peer's limit.
        max: u64,
    },
    /// The delivery is unknown on this link, or already settled.
    #[error("unknown or settled delivery")]
    UnknownDelivery,
    /// A transfer cannot be framed within the max frame size.
    #[error("cannot frame the transfer")]
    Encode(#[source] AmqpCodecError),
}

/// Where the connection is (§2.4.1 connection states, §5.3.2 SASL negotiation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first protocol header.
    Header,
    /// SASL headers exchanged, mechanisms sent: waiting for sasl-init.
    SaslInit,
    /// sasl-init reported: waiting for the application's outcome. Input stays buffered.
    SaslPending,
    /// SASL succeeded: waiting for the AMQP header.
    AmqpHeader,
    /// AMQP headers exchanged: waiting for the peer's open.
    Open,
    /// Opens exchanged.
    Opened,
    /// We sent close: waiting for the peer's until the deadline; everything else is ignored.
    CloseSent {
        /// When to give up waiting (none if beyond the clock's range).
        deadline: Option<Instant>,
    },
    /// Done: write the remaining output and close the socket.
    Finished,
}

/// The hub's end of one AMQP 1.0 connection, as a state machine.
///
/// Typical loop: read from the socket into a `BytesMut`, [`handle_input`](Self::handle_input), drain
/// [`poll_event`](Self::poll_event) and answer through the methods, write
/// [`take_output`](Self::take_output), and stop once [`is_closed`](Self::is_closed) and the output is
/// written. Sleep until [`next_deadline`](Self::next_deadline) and call
/// [`poll_timers`](Self::poll_timers) then.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    phase: Phase,
    /// The latest time given by the application.
    now: Instant,
    /// When the peer must have opened (none if the timeout is beyond the clock's range).
    handshake_deadline: Option<Instant>,
    decoder: FrameDecoder,
    out: Outbox,
    events: VecDeque<Event>,
    sasl: Option<SaslAuthentication>,
    peer: Option<PeerOpen>,
    /// The max frame size of the frames we send: min(ours, the peer's), at least 512.
    max_frame_size: u32,
    /// Send a heartbeat when nothing was sent for this long (half the peer's idle timeout).
    heartbeat_interval: Option<Duration>,
    last_received: Instant,
    sessions: BTreeMap<SessionId, Session>,
    /// The peer's channel → its session.
    channels: HashMap<u16, SessionId>,
    /// The peer's channels whose session is over: frames the peer sent on them before it saw the
    /// end (rhea settles deliveries after ending their session) are dropped, not a violation.
    ended_channels: HashSet<u16>,
    links: HashMap<LinkId, Link>,
    next_id: u64,
    /// The error we closed with, reported in [`Event::Closed`] once the peer answered.
    close_error: Option<Error>,
    stats: EngineStats,
}

/// Counters of one connection, for the server's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Complete messages received from the peer.
    pub deliveries_received: u64,
    /// Messages sent to the peer.
    pub deliveries_sent: u64,
    /// Link credit granted to the peer's senders.
    pub credit_granted: u64,
}

impl Engine {
    /// Returns the engine of a connection just accepted at `now`, waiting for the peer's protocol header.
    pub fn new(config: EngineConfig, now: Instant) -> Self {
        Self {
            decoder: FrameDecoder::new(config.max_frame_size),
            handshake_deadline: now.checked_add(config.handshake_timeout),
            config,
            phase: Phase::Header,
            now,
            out: Outbox::new(now),
            events: VecDeque::new(),
            sasl: None,
            peer: None,
            max_frame_size: crate::frame::MIN_MAX_FRAME_SIZE,
            heartbeat_interval: None,
            last_received: now,
            sessions: BTreeMap::new(),
            channels: HashMap::new(),
            ended_channels: HashSet::new(),
            links: HashMap::new(),
            next_id: 0,
            close_error: None,
            stats: EngineStats::default(),
        }
    }

    /// Returns the next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the bytes to write to `out` (and forgets them).
    pub fn take_output(&mut self, out: &mut BytesMut) {
        self.out.take(out);
    }

    /// Returns whether [`take_output`](Self::take_output) has bytes to give.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Returns whether the connection is over: write the remaining output, then close the socket.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Returns how the peer authenticated at the SASL layer, once it sent sasl-init; `None` for a
    /// connection without SASL (a bare AMQP header, like the Node SDKs).
    pub fn sasl(&self) -> Option<&SaslAuthentication> {
        self.sasl.as_ref()
    }

    /// Returns the peer's open, once received.
    pub fn peer_open(&self) -> Option<&PeerOpen> {
        self.peer.as_ref()
    }

    /// Returns the max frame size of the frames the engine sends (512 before the open).
    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Returns the credit of a link: what the peer granted when the hub sends, what the hub granted
    /// when it receives.
    pub fn link_credit(&self, link: LinkId) -> Option<u32> {
        self.links.get(&link).map(|link| link.link_credit)
    }

    /// Returns the connection's counters so far.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Returns the session of a link.
    pub fn link_session(&self, link: LinkId) -> Option<SessionId> {
        self.links.get(&link).map(|link| link.session)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn is_open(&self) -> bool {
        self.phase == Phase::Opened
    }
}
