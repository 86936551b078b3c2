//! The connection: protocol headers (§2.2, §5.1), open (§2.7.1), close (§2.7.9), idle timeout and
//! heartbeats (§2.4.5), and the dispatch of every frame to its session.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Engine, Event, PeerOpen, Phase};
use crate::definitions::{Error, condition};
use crate::error::AmqpCodecError;
use crate::frame::{Frame, FrameBody, MIN_MAX_FRAME_SIZE, ProtocolId, decode_protocol_header};
use crate::performatives::{Close, Open, Performative};

impl Engine {
    /// Consumes every complete protocol header and frame at the front of `input`, received at `now`,
    /// and leaves a partial one there for the next call.
    ///
    /// While a sasl-init awaits [`sasl_outcome`](Self::sasl_outcome) the input is left untouched. Once
    /// the connection is closed, input is discarded. Protocol violations close the connection (see
    /// [`Event::Closed`]); nothing here panics or fails.
    pub fn handle_input(&mut self, input: &mut BytesMut, now: Instant) {
        self.now = now;
        if !input.is_empty() && self.phase != Phase::SaslPending {
            self.last_received = now;
        }
        loop {
            match self.phase {
                Phase::Finished => {
                    input.clear();
                    return;
                }
                Phase::SaslPending => return,
                Phase::Header | Phase::AmqpHeader => match decode_protocol_header(input) {
                    Ok(None) => return,
                    Ok(Some(protocol)) => self.on_protocol_header(protocol),
                    Err(_) => self.refuse_protocol_header(),
                },
                Phase::SaslInit | Phase::Open | Phase::Opened | Phase::CloseSent { .. } => {
                    match self.decoder.decode(input) {
                        Ok(None) => return,
                        Ok(Some(frame)) => self.on_frame(frame),
                        Err(error) => self.on_codec_error(&error),
                    }
                }
            }
        }
    }

    /// Fires the timers due at `now`: heartbeats, the idle timeout, the handshake and close timeouts.
    pub fn poll_timers(&mut self, now: Instant) {
        self.now = now;
        match self.phase {
            Phase::Header | Phase::SaslInit | Phase::SaslPending | Phase::AmqpHeader | Phase::Open => {
                if self.handshake_deadline.is_some_and(|deadline| now >= deadline) {
                    self.finish(
                        Some(Error::new(
                            condition::RESOURCE_LIMIT_EXCEEDED,
                            "handshake timed out",
                        )),
                        false,
                    );
                }
            }
            Phase::Opened => {
                if let Some(deadline) = self.idle_deadline()
                    && now >= deadline
                {
                    // §2.4.5: the peer let our idle timeout pass (twice over) without a frame.
                    self.fail(condition::RESOURCE_LIMIT_EXCEEDED, "idle timeout expired");
                } else if let Some(deadline) = self.heartbeat_deadline()
                    && now >= deadline
                {
                    self.out.heartbeat(now);
                }
            }
            Phase::CloseSent { deadline } => {
                if deadline.is_some_and(|deadline| now >= deadline) {
                    let error = self.close_error.take();
                    self.finish(error, false);
                }
            }
            Phase::Finished => {}
        }
    }

    /// Returns when [`poll_timers`](Self::poll_timers) must be called next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Header | Phase::SaslInit | Phase::SaslPending | Phase::AmqpHeader | Phase::Open => {
                self.handshake_deadline
            }
            Phase::Opened => match (self.idle_deadline(), self.heartbeat_deadline()) {
                (Some(idle), Some(heartbeat)) => Some(idle.min(heartbeat)),
                (idle, heartbeat) => idle.or(heartbeat),
            },
            Phase::CloseSent { deadline } => deadline,
            Phase::Finished => None,
        }
    }

    /// Closes the connection (§2.4.4): sends close with `error`, then waits for the peer's close (up to
    /// [`EngineConfig::close_timeout`](super::EngineConfig)) before [`Event::Closed`]. Before the
    /// open exchange the connection is simply dropped. Does nothing when already closing.
    pub fn close(&mut self, error: Option<Error>) {
        match self.phase {
            Phase::Opened => {
                self.out.frame(0, Close { error: error.clone() }, self.now);
                self.close_error = error;
                self.phase = Phase::CloseSent {
                    deadline: self.now.checked_add(self.config.close_timeout),
                };
            }
            Phase::CloseSent { .. } | Phase::Finished => {}
            Phase::Header | Phase::SaslInit | Phase::SaslPending | Phase::AmqpHeader | Phase::Open => {
                self.finish(error, false);
            }
        }
    }

    fn idle_deadline(&self) -> Option<Instant> {
        if self.config.idle_timeout.is_zero() {
            return None;
        }
        let twice = self.config.idle_timeout.checked_mul(2)?;
        self.last_received.checked_add(twice)
    }

    fn heartbeat_deadline(&self) -> Option<Instant> {
        self.heartbeat_interval
            .and_then(|interval| self.out.last_sent.checked_add(interval))
    }

    fn on_protocol_header(&mut self, protocol: ProtocolId) {
        match (self.phase, protocol) {
            (Phase::Header, ProtocolId::Sasl) if !self.config.sasl_mechanisms.is_empty() => {
                self.start_sasl();
            }
            (Phase::Header, ProtocolId::Amqp) if !self.config.require_sasl => {
                self.out.header(ProtocolId::Amqp, self.now);
                self.phase = Phase::Open;
            }
            (Phase::AmqpHeader, ProtocolId::Amqp) => {
                self.out.header(ProtocolId::Amqp, self.now);
                self.phase = Phase::Open;
            }
            _ => self.refuse_protocol_header(),
        }
    }

    /// §2.2: answers an unsupported protocol header with the one we support, then closes the socket.
    fn refuse_protocol_header(&mut self) {
        let supported = if self.phase == Phase::Header && self.config.require_sasl {
            ProtocolId::Sasl
        } else {
            ProtocolId::Amqp
        };
        self.out.header(supported, self.now);
        self.finish(
            Some(Error::new(
                condition::FRAMING_ERROR,
                "unsupported protocol header",
            )),
            false,
        );
    }

    fn on_codec_error(&mut self, error: &AmqpCodecError) {
        match self.phase {
            // The byte stream cannot be trusted any more: no point waiting for a close.
            Phase::CloseSent { .. } => {
                let error = self.close_error.take();
                self.finish(error, false);
            }
            Phase::SaslInit => {
                self.finish(Some(Error::new(error.condition(), error.to_string())), false);
            }
            _ => self.fail(error.condition(), error.to_string()),
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        match (self.phase, frame.body) {
            (Phase::SaslInit, FrameBody::Sasl(sasl)) => self.on_sasl_frame(sasl),
            (Phase::SaslInit, _) => self.finish(
                Some(Error::new(condition::NOT_ALLOWED, "expected sasl-init")),
                false,
            ),
            (_, FrameBody::Sasl(_)) => {
                self.fail(condition::FRAMING_ERROR, "sasl frame after the sasl exchange")
            }
            (_, FrameBody::Heartbeat) => {}
            (Phase::Open, FrameBody::Amqp { performative, .. }) => match performative {
                Performative::Open(open) if frame.channel == 0 => self.on_open(open),
                other => self.fail(
                    condition::ILLEGAL_STATE,
                    format!("expected open, got {}", other.name()),
                ),
            },
            (
                Phase::Opened,
                FrameBody::Amqp {
                    performative,
                    payload,
                },
            ) => {
                self.on_performative(frame.channel, performative, payload);
            }
            (Phase::CloseSent { .. }, FrameBody::Amqp { performative, .. }) => {
                // §2.4.4: after our close, only the peer's close matters.
                if matches!(performative, Performative::Close(_)) {
                    let error = self.close_error.take();
                    self.finish(error, false);
                }
            }
            (Phase::Header | Phase::SaslPending | Phase::AmqpHeader | Phase::Finished, _) => {}
        }
    }

    /// §2.7.1: records the peer's limits and answers with our open, every limit explicit (pyamqp needs
    /// them, wire reference §7.6.2).
    fn on_open(&mut self, open: Open) {
        let peer_max_frame_size = open.max_frame_size_or_default().max(MIN_MAX_FRAME_SIZE);
        self.max_frame_size = self
            .config
            .max_frame_size
            .min(peer_max_frame_size)
            .max(MIN_MAX_FRAME_SIZE);
        // §2.4.5: send something at least every half of the peer's idle timeout.
        self.heartbeat_interval = open
            .idle_time_out
            .filter(|millis| *millis > 0)
            .map(|millis| Duration::from_millis(u64::from(millis / 2).max(1)));
        let ours = self.our_open(open.hostname.clone());
        self.out.frame(0, ours, self.now);
        self.phase = Phase::Opened;
        self.last_received = self.now;
        let peer = PeerOpen {
            max_frame_size: open.max_frame_size_or_default(),
            channel_max: open.channel_max_or_default(),
            container_id: open.container_id,
            hostname: open.hostname,
            idle_time_out: open.idle_time_out,
            offered_capabilities: open.offered_capabilities,
            desired_capabilities: open.desired_capabilities,
            properties: open.properties,
        };
        self.peer = Some(peer.clone());
        self.events.push_back(Event::Opened(peer));
    }

    fn our_open(&self, hostname: Option<String>) -> Open {
        Open {
            container_id: self.config.container_id.clone(),
            hostname,
            max_frame_size: Some(self.config.max_frame_size.max(MIN_MAX_FRAME_SIZE)),
            channel_max: Some(self.config.channel_max),
            idle_time_out: Some(u32::try_from(self.config.idle_timeout.as_millis()).unwrap_or(u32::MAX)),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: self.config.properties.clone(),
        }
    }

    fn on_performative(&mut self, channel: u16, performative: Performative, payload: Bytes) {
        match performative {
            Performative::Open(_) => self.fail(condition::ILLEGAL_STATE, "second open"),
            Performative::Close(close) => {
                // §2.4.4: answer, then the connection is over.
                self.out.frame(0, Close::default(), self.now);
                self.finish(close.error, true);
            }
            Performative::Begin(begin) => self.on_begin(channel, begin),
            other => {
                let Some(&session) = self.channels.get(&channel) else {
                    if self.ended_channels.contains(&channel) {
                        return;
                    }
                    self.fail(
                        condition::NOT_ALLOWED,
                        format!("{} on channel {channel}, which has no session", other.name()),
                    );
                    return;
                };
                if self.session_ending(session) {
                    // §2.5.5: after our end, only the peer's end matters.
                    if let Performative::End(_) = other {
                        self.remove_session(session);
                    }
                    return;
                }
                match other {
                    Performative::End(end) => self.on_end(session, end.error),
                    Performative::Attach(attach) => self.on_attach(session, *attach),
                    Performative::Flow(flow) => self.on_flow(session, flow),
                    Performative::Transfer(transfer) => self.on_transfer(session, transfer, payload),
                    Performative::Disposition(disposition) => self.on_disposition(session, disposition),
                    Performative::Detach(detach) => self.on_detach(session, detach),
                    Performative::Open(_) | Performative::Close(_) | Performative::Begin(_) => {}
                }
            }
        }
    }

    /// Closes the connection for a protocol violation: close with the condition (after our open, which
    /// §2.4.1 requires before a close), then finished.
    pub(super) fn fail(&mut self, condition: &'static str, description: impl Into<String>) {
        let error = Error::new(condition, description);
        match self.phase {
            Phase::Open => {
                let ours = self.our_open(None);
                self.out.frame(0, ours, self.now);
                self.out.frame(
                    0,
                    Close {
                        error: Some(error.clone()),
                    },
                    self.now,
                );
            }
            Phase::Opened => self.out.frame(
                0,
                Close {
                    error: Some(error.clone()),
                },
                self.now,
            ),
            _ => {}
        }
        self.finish(Some(error), false);
    }

    /// Ends the connection: no more frames are read or written, and [`Event::Closed`] is the last event.
    pub(super) fn finish(&mut self, error: Option<Error>, by_peer: bool) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        self.events.push_back(Event::Closed { error, by_peer });
    }
}
