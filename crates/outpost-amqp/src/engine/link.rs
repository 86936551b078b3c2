//! Links (AMQP 1.0 §2.6): attach and detach, and link credit (§2.6.7). The peer always attaches
//! first; the application answers with [`Engine::accept_link`] or [`Engine::reject_link`].

use bytes::{Bytes, BytesMut};

use super::{Engine, EngineError, Event, LinkAttached, LinkId, SessionId};
use crate::composite::Fields;
use crate::definitions::{Error, ReceiverSettleMode, Role, SenderSettleMode, Source, Target, condition};
use crate::performatives::{Attach, Detach, Flow};
use crate::value::Symbol;

/// The application's answer to [`Event::LinkAttached`]: what goes into the hub's attach (§2.7.3).
///
/// The reply always carries both source and target (uamqp poisons the session otherwise, wire
/// reference §7.6.3): `None` echoes the peer's, or sends an empty terminus when the peer sent none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkReply {
    /// The source; `None` echoes the peer's.
    pub source: Option<Source>,
    /// The target; `None` echoes the peer's.
    pub target: Option<Target>,
    /// The sender settle mode; `None` echoes the peer's (spec default mixed).
    pub snd_settle_mode: Option<SenderSettleMode>,
    /// The receiver settle mode; `None` echoes the peer's (spec default first).
    pub rcv_settle_mode: Option<ReceiverSettleMode>,
    /// Link properties.
    pub properties: Option<Fields>,
    /// Capabilities the hub offers, e.g. `com.microsoft:enable-receiver-runtime-metric`.
    pub offered_capabilities: Option<Vec<Symbol>>,
    /// The initial delivery count when the hub sends (default 0; always sent, pyamqp needs it, wire
    /// reference §7.6.2). Ignored when the hub receives.
    pub initial_delivery_count: Option<u32>,
    /// The largest message the hub accepts on the link; `None` takes
    /// [`EngineConfig::max_message_size`](super::EngineConfig). 0 means no limit.
    pub max_message_size: Option<u64>,
}

/// Where a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LinkState {
    /// The peer's attach awaits the application's answer.
    Pending,
    /// Attached in both directions.
    Attached,
    /// We sent detach and wait for the peer's; its frames are ignored.
    DetachSent,
}

/// A message being received over several transfers (§2.6.14).
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) delivery_id: u32,
    pub(super) tag: Bytes,
    pub(super) message_format: u32,
    pub(super) settled: bool,
    pub(super) rcv_settle_mode: Option<ReceiverSettleMode>,
    pub(super) payload: BytesMut,
}

/// One link endpoint of the hub.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) id: LinkId,
    pub(super) session: SessionId,
    name: String,
    /// Our role.
    pub(super) role: Role,
    pub(super) local_handle: u32,
    pub(super) remote_handle: u32,
    pub(super) state: LinkState,
    peer_source: Option<Source>,
    peer_target: Option<Target>,
    peer_snd_settle_mode: Option<SenderSettleMode>,
    peer_rcv_settle_mode: Option<ReceiverSettleMode>,
    /// The receiver settle mode in effect.
    pub(super) rcv_settle_mode: ReceiverSettleMode,
    /// The largest message we accept (0: none).
    pub(super) max_message_size: u64,
    /// The largest message the peer accepts (0: none).
    pub(super) peer_max_message_size: u64,
    /// §2.6.7 delivery-count: ours when we send, the sender's as last known when we receive.
    pub(super) delivery_count: u32,
    /// §2.6.7 link-credit.
    pub(super) link_credit: u32,
    /// The peer asked us to drain (when we send).
    pub(super) drain: bool,
    pub(super) partial: Option<Partial>,
}

impl Link {
    pub(super) fn detach_sent(&self) -> bool {
        self.state == LinkState::DetachSent
    }

    /// Whether the hub may send on it now, as far as the link goes.
    pub(super) fn can_send(&self) -> bool {
        self.role == Role::Sender && self.state == LinkState::Attached && self.link_credit > 0
    }

    /// Returns a link flow (§2.7.4) with the session's windows and the link's credit.
    fn flow(&self, session: Flow, echo: bool) -> Flow {
        Flow {
            handle: Some(self.local_handle),
            delivery_count: Some(self.delivery_count),
            link_credit: Some(self.link_credit),
            drain: self.drain,
            echo,
            ..session
        }
    }

    /// Returns our attach answering the peer's (§2.7.3), applying `reply`.
    fn reply_attach(&mut self, reply: LinkReply, default_max_message_size: u64) -> Attach {
        let snd_settle_mode = reply.snd_settle_mode.or(self.peer_snd_settle_mode);
        let rcv_settle_mode = reply.rcv_settle_mode.or(self.peer_rcv_settle_mode);
        self.rcv_settle_mode = rcv_settle_mode.unwrap_or(ReceiverSettleMode::First);
        self.max_message_size = reply.max_message_size.unwrap_or(default_max_message_size);
        let initial_delivery_count = (self.role == Role::Sender).then(|| {
            self.delivery_count = reply.initial_delivery_count.unwrap_or(0);
            self.delivery_count
        });
        Attach {
            name: self.name.clone(),
            handle: self.local_handle,
            role: self.role,
            snd_settle_mode,
            rcv_settle_mode,
            source: Some(
                reply
                    .source
                    .or_else(|| self.peer_source.clone())
                    .unwrap_or_default(),
            ),
            target: Some(
                reply
                    .target
                    .or_else(|| self.peer_target.clone())
                    .unwrap_or_default(),
            ),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count,
            max_message_size: Some(self.max_message_size),
            offered_capabilities: reply.offered_capabilities,
            desired_capabilities: None,
            properties: reply.properties,
        }
    }
}

/// Returns `limit - count` in serial arithmetic (§2.8.9), or 0 when `count` is past `limit`.
pub(super) fn credit_between(count: u32, limit: u32) -> u32 {
    let credit = limit.wrapping_sub(count);
    if credit > u32::MAX / 2 { 0 } else { credit }
}

impl Engine {
    /// §2.6.3: the peer attached a link: record it and ask the application.
    pub(super) fn on_attach(&mut self, session_id: SessionId, attach: Attach) {
        if attach.handle > self.config.handle_max {
            self.fail(
                condition::NOT_ALLOWED,
                format!(
                    "handle {} exceeds handle-max {}",
                    attach.handle, self.config.handle_max
                ),
            );
            return;
        }
        let Some(session) = self.sessions.get(&session_id) else {
            return;
        };
        if session.remote_handles.contains_key(&attach.handle) {
            self.fail(
                condition::HANDLE_IN_USE,
                format!("handle {} is already attached", attach.handle),
            );
            return;
        }
        let Some(local_handle) = session.free_handle() else {
            self.fail(
                condition::RESOURCE_LIMIT_EXCEEDED,
                "no free handle in the session",
            );
            return;
        };
        let id = LinkId(self.next_id());
        let role = match attach.role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        };
        let link = Link {
            id,
            session: session_id,
            name: attach.name.clone(),
            role,
            local_handle,
            remote_handle: attach.handle,
            state: LinkState::Pending,
            peer_source: attach.source.clone(),
            peer_target: attach.target.clone(),
            peer_snd_settle_mode: attach.snd_settle_mode,
            peer_rcv_settle_mode: attach.rcv_settle_mode,
            rcv_settle_mode: attach.rcv_settle_mode.unwrap_or(ReceiverSettleMode::First),
            max_message_size: self.config.max_message_size,
            peer_max_message_size: attach.max_message_size.unwrap_or(0),
            delivery_count: if role == Role::Receiver {
                attach.initial_delivery_count.unwrap_or(0)
            } else {
                0
            },
            link_credit: 0,
            drain: false,
            partial: None,
        };
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.detached_handles.retain(|handle| *handle != attach.handle);
            session.remote_handles.insert(attach.handle, id);
            session.local_handles.insert(local_handle, id);
        }
        self.links.insert(id, link);
        self.events.push_back(Event::LinkAttached(Box::new(LinkAttached {
            session: session_id,
            link: id,
            handle: attach.handle,
            name: attach.name,
            role: attach.role,
            source: attach.source,
            target: attach.target,
            snd_settle_mode: attach.snd_settle_mode,
            rcv_settle_mode: attach.rcv_settle_mode,
            max_message_size: attach.max_message_size,
            initial_delivery_count: attach.initial_delivery_count,
            properties: attach.properties,
            offered_capabilities: attach.offered_capabilities,
            desired_capabilities: attach.desired_capabilities,
        })));
    }

    /// Accepts a link the peer attached: sends the hub's attach, built from `reply` (§2.7.3). When the
    /// hub sends and the peer already gave credit, [`Event::CreditAvailable`] follows.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::NotOpen`], [`EngineError::UnknownLink`] or
    /// [`EngineError::LinkNotPending`] when the link was already answered.
    pub fn accept_link(&mut self, link: LinkId, reply: LinkReply) -> Result<(), EngineError> {
        let channel = self.pending_link_channel(link)?;
        let default_max = self.config.max_message_size;
        let Some(state) = self.links.get_mut(&link) else {
            return Err(EngineError::UnknownLink);
        };
        let attach = state.reply_attach(reply, default_max);
        state.state = LinkState::Attached;
        let credit = state.can_send().then_some((state.link_credit, state.drain));
        self.out.frame(channel, attach, self.now);
        if let Some((credit, drain)) = credit {
            self.events
                .push_back(Event::CreditAvailable { link, credit, drain });
        }
        Ok(())
    }

    /// Refuses a link the peer attached: sends the hub's attach (echoing the peer's source and target,
    /// because uamqp poisons the session on an attach without them, wire reference §7.6.3) and at once a
    /// detach with `closed` and `error` (§2.6.3 allows either a null terminus or this; this one works
    /// with every client). The peer's detach that follows is absorbed.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::NotOpen`], [`EngineError::UnknownLink`] or
    /// [`EngineError::LinkNotPending`].
    pub fn reject_link(&mut self, link: LinkId, error: Error) -> Result<(), EngineError> {
        let channel = self.pending_link_channel(link)?;
        self.send_detach(link, channel, Some(error));
        Ok(())
    }

    /// Detaches and closes a link (§2.7.7), e.g. with `amqp:link:stolen` when a higher epoch receiver
    /// attaches, or `amqp:link:redirect` with the new address in the error's `info` (wire reference
    /// §7.4, §7.7). A link still pending is answered first, as in [`reject_link`](Self::reject_link). No
    /// [`Event::LinkDetached`] follows.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::NotOpen`] or [`EngineError::UnknownLink`] (also once detached).
    pub fn detach_link(&mut self, link: LinkId, error: Option<Error>) -> Result<(), EngineError> {
        if !self.is_open() {
            return Err(EngineError::NotOpen);
        }
        let state = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        match state.state {
            LinkState::DetachSent => Err(EngineError::UnknownLink),
            LinkState::Pending => self.reject_link(
                link,
                error.unwrap_or_else(|| Error::new(condition::DETACH_FORCED, "the hub detached the link")),
            ),
            LinkState::Attached => {
                let channel = self.link_channel(link)?;
                self.send_detach(link, channel, error);
                Ok(())
            }
        }
    }

    /// Grants the peer `credit` more deliveries on a link where the hub receives (§2.6.7): sends a flow
    /// with the new link credit.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::NotOpen`], [`EngineError::UnknownLink`],
    /// [`EngineError::LinkNotAttached`] or [`EngineError::WrongRole`] when the hub sends on it.
    pub fn grant_credit(&mut self, link: LinkId, credit: u32) -> Result<(), EngineError> {
        let channel = self.attached_link_channel(link, Role::Receiver)?;
        if let Some(state) = self.links.get_mut(&link) {
            state.link_credit = state.link_credit.saturating_add(credit);
        }
        self.stats.credit_granted += u64::from(credit);
        self.send_link_flow(link, channel, false);
        Ok(())
    }

    /// Completes a drain the peer asked for (§2.6.7) on a link where the hub sends, once the
    /// application has sent what it had: the remaining credit is consumed (delivery-count advanced,
    /// credit 0) and a flow tells the peer. Does nothing when no drain is asked.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::NotOpen`], [`EngineError::UnknownLink`],
    /// [`EngineError::LinkNotAttached`] or [`EngineError::WrongRole`] when the hub receives on it.
    pub fn drain(&mut self, link: LinkId) -> Result<(), EngineError> {
        let channel = self.attached_link_channel(link, Role::Sender)?;
        if self.links.get(&link).is_some_and(|state| state.drain) {
            self.complete_drain(link, channel);
        }
        Ok(())
    }

    fn complete_drain(&mut self, link: LinkId, channel: u16) {
        if let Some(state) = self.links.get_mut(&link) {
            state.delivery_count = state.delivery_count.wrapping_add(state.link_credit);
            state.link_credit = 0;
        }
        self.send_link_flow(link, channel, false);
        if let Some(state) = self.links.get_mut(&link) {
            state.drain = false;
        }
    }

    /// §2.6.7: the peer's flow for a link: its credit when we send, the sender's delivery count when we
    /// receive.
    pub(super) fn on_link_flow(&mut self, link: LinkId, flow: &Flow) {
        let Ok(channel) = self.link_channel(link) else {
            return;
        };
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        if state.detach_sent() {
            return;
        }
        let mut drained = false;
        match state.role {
            Role::Sender => {
                // link-credit(snd) = delivery-count(rcv) + link-credit(rcv) - delivery-count(snd); a
                // receiver that has not seen our attach sends no delivery-count.
                let granted = flow.link_credit.unwrap_or(0);
                state.link_credit = match flow.delivery_count {
                    Some(count) => credit_between(state.delivery_count, count.wrapping_add(granted)),
                    None => granted,
                };
                state.drain = flow.drain;
                if state.state == LinkState::Attached {
                    if state.link_credit > 0 {
                        self.events.push_back(Event::CreditAvailable {
                            link,
                            credit: state.link_credit,
                            drain: state.drain,
                        });
                    } else {
                        drained = flow.drain;
                    }
                }
            }
            Role::Receiver => {
                if let Some(count) = flow.delivery_count {
                    let limit = state.delivery_count.wrapping_add(state.link_credit);
                    state.link_credit = credit_between(count, limit);
                    state.delivery_count = count;
                }
            }
        }
        if drained {
            // Nothing to drain: answer at once so the peer's drain completes.
            self.complete_drain(link, channel);
        } else if flow.echo {
            self.send_link_flow(link, channel, false);
        }
    }

    /// §2.7.7: the peer detached a link: answer (after our attach if it was pending) and report it, or
    /// absorb the answer to our own detach.
    pub(super) fn on_detach(&mut self, session_id: SessionId, detach: Detach) {
        let Some(&link) = self
            .sessions
            .get(&session_id)
            .and_then(|session| session.remote_handles.get(&detach.handle))
        else {
            if self.detached_lately(session_id, detach.handle) {
                return;
            }
            self.fail(
                condition::UNATTACHED_HANDLE,
                format!("detach for handle {}, which is not attached", detach.handle),
            );
            return;
        };
        let Ok(channel) = self.link_channel(link) else {
            return;
        };
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        match state.state {
            LinkState::DetachSent => {
                self.remove_link(link);
                return;
            }
            LinkState::Pending => {
                let attach = state.reply_attach(LinkReply::default(), self.config.max_message_size);
                self.out.frame(channel, attach, self.now);
            }
            LinkState::Attached => {}
        }
        let handle = state.local_handle;
        let reply = Detach {
            handle,
            closed: detach.closed,
            error: None,
        };
        self.out.frame(channel, reply, self.now);
        self.remove_link(link);
        self.events.push_back(Event::LinkDetached {
            link,
            closed: detach.closed,
            error: detach.error,
            by_peer: true,
        });
    }

    /// Detaches a link because the peer broke a link rule (§2.6.12), and reports it.
    pub(super) fn detach_for_violation(
        &mut self,
        link: LinkId,
        condition: &'static str,
        description: String,
    ) {
        let Ok(channel) = self.link_channel(link) else {
            return;
        };
        let error = Error::new(condition, description);
        self.send_detach(link, channel, Some(error.clone()));
        self.events.push_back(Event::LinkDetached {
            link,
            closed: true,
            error: Some(error),
            by_peer: false,
        });
    }

    /// Sends detach with `closed` (§2.7.7), after our attach if the link is still pending, and waits
    /// for the peer's.
    fn send_detach(&mut self, link: LinkId, channel: u16, error: Option<Error>) {
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        if state.state == LinkState::Pending {
            let attach = state.reply_attach(LinkReply::default(), self.config.max_message_size);
            self.out.frame(channel, attach, self.now);
        }
        state.state = LinkState::DetachSent;
        state.partial = None;
        let detach = Detach {
            handle: state.local_handle,
            closed: true,
            error,
        };
        self.forget_unsettled(link);
        self.out.frame(channel, detach, self.now);
    }

    fn send_link_flow(&mut self, link: LinkId, channel: u16, echo: bool) {
        let Some(state) = self.links.get(&link) else {
            return;
        };
        let Some(session) = self.sessions.get(&state.session) else {
            return;
        };
        let flow = state.flow(session.flow(), echo);
        self.out.frame(channel, flow, self.now);
    }

    /// Forgets a link: its handles and its unsettled deliveries.
    pub(super) fn remove_link(&mut self, link: LinkId) {
        self.forget_unsettled(link);
        let Some(state) = self.links.remove(&link) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&state.session) {
            if session.remote_handles.remove(&state.remote_handle).is_some() {
                session.note_detached(state.remote_handle);
            }
            session.local_handles.remove(&state.local_handle);
        }
    }

    fn forget_unsettled(&mut self, link: LinkId) {
        let Some(session) = self
            .links
            .get(&link)
            .and_then(|state| self.sessions.get_mut(&state.session))
        else {
            return;
        };
        session
            .incoming_unsettled
            .retain(|_, delivery| delivery.link != link);
        session.outgoing_unsettled.retain(|_, owner| *owner != link);
    }

    /// Returns the local channel of a link's session.
    pub(super) fn link_channel(&self, link: LinkId) -> Result<u16, EngineError> {
        let state = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        self.sessions
            .get(&state.session)
            .map(|session| session.local_channel)
            .ok_or(EngineError::UnknownSession)
    }

    fn pending_link_channel(&self, link: LinkId) -> Result<u16, EngineError> {
        if !self.is_open() {
            return Err(EngineError::NotOpen);
        }
        let state = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        if state.state != LinkState::Pending {
            return Err(EngineError::LinkNotPending);
        }
        self.link_channel(link)
    }

    /// Checks that the connection is open and the link attached with the hub in `role`, and returns
    /// its channel.
    pub(super) fn attached_link_channel(&self, link: LinkId, role: Role) -> Result<u16, EngineError> {
        if !self.is_open() {
            return Err(EngineError::NotOpen);
        }
        let state = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        match state.state {
            LinkState::DetachSent => return Err(EngineError::UnknownLink),
            LinkState::Pending => return Err(EngineError::LinkNotAttached),
            LinkState::Attached => {}
        }
        if state.role != role {
            return Err(EngineError::WrongRole(role));
        }
        self.link_channel(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_the_serial_distance_to_the_limit() {
        assert_eq!(credit_between(0, 10), 10);
        assert_eq!(credit_between(u32::MAX - 1, 3), 5);
        // The receiver's view lags behind deliveries already sent: no credit, not 4 billion.
        assert_eq!(credit_between(5, 3), 0);
    }
}
