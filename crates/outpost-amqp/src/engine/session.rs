//! Sessions (AMQP 1.0 §2.5): begin and end, the channel mapping, and the session windows of §2.5.6
//! (next-incoming-id, incoming-window, next-outgoing-id, outgoing-window).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::{Engine, EngineError, Event, LinkId, SessionId};
use crate::definitions::{Error, ReceiverSettleMode, condition};
use crate::performatives::{Begin, End, Flow};

/// A delivery the hub received and has not settled yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IncomingUnsettled {
    pub(super) link: LinkId,
    /// The receiver settle mode in effect for it (the transfer's, or the link's).
    pub(super) mode: ReceiverSettleMode,
    /// In mode second, our disposition went out and the peer's settlement is awaited.
    pub(super) awaiting_sender: bool,
}

/// One session: its channels, windows, links and unsettled deliveries.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) local_channel: u16,
    /// We sent end and wait for the peer's.
    pub(super) ending: bool,
    /// §2.5.6: the transfer-id we expect next from the peer.
    pub(super) next_incoming_id: u32,
    /// §2.5.6: how many more transfer frames the peer may send.
    pub(super) incoming_window: u32,
    /// §2.5.6: the transfer-id of our next transfer frame.
    pub(super) next_outgoing_id: u32,
    /// The outgoing window we announce.
    pub(super) outgoing_window: u32,
    /// §2.5.6: how many more transfer frames the peer accepts.
    pub(super) remote_incoming_window: u32,
    /// The peer's outgoing window, as last announced.
    pub(super) remote_outgoing_window: u32,
    /// The delivery-id of our next delivery.
    pub(super) next_delivery_id: u32,
    /// The highest handle we may use (the peer's handle-max).
    pub(super) handle_max: u32,
    /// The peer's handles.
    pub(super) remote_handles: HashMap<u32, LinkId>,
    /// The peer's handles most recently detached: a flow or transfer it sent on them before it saw
    /// the detach is dropped, not a violation. Bounded by [`DETACHED_HANDLES`].
    pub(super) detached_handles: VecDeque<u32>,
    /// Our handles.
    pub(super) local_handles: BTreeMap<u32, LinkId>,
    /// Deliveries we received, by delivery-id.
    pub(super) incoming_unsettled: HashMap<u32, IncomingUnsettled>,
    /// Deliveries we sent, by delivery-id.
    pub(super) outgoing_unsettled: HashMap<u32, LinkId>,
}

/// How many detached handles of the peer a session remembers.
pub(super) const DETACHED_HANDLES: usize = 32;

impl Session {
    /// Returns a session-level flow (§2.7.4 without handle) with our windows.
    pub(super) fn flow(&self) -> Flow {
        Flow {
            next_incoming_id: Some(self.next_incoming_id),
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: self.outgoing_window,
            ..Flow::default()
        }
    }

    /// Remembers that the peer's `handle` was detached (the oldest of [`DETACHED_HANDLES`] is
    /// forgotten).
    pub(super) fn note_detached(&mut self, handle: u32) {
        if self.detached_handles.len() == DETACHED_HANDLES {
            self.detached_handles.pop_front();
        }
        self.detached_handles.push_back(handle);
    }

    /// Whether the peer's `handle` was detached lately (and not attached again).
    pub(super) fn was_detached(&self, handle: u32) -> bool {
        self.detached_handles.contains(&handle)
    }

    /// Returns the lowest handle of ours that is free, up to the peer's handle-max.
    pub(super) fn free_handle(&self) -> Option<u32> {
        let mut candidate = 0;
        for &used in self.local_handles.keys() {
            if used != candidate {
                break;
            }
            candidate = used.checked_add(1)?;
        }
        (candidate <= self.handle_max).then_some(candidate)
    }
}

/// Returns whether `id` is in the serial-number range `first..=last` (RFC 1982, §2.8.9).
pub(super) fn in_range(id: u32, first: u32, last: u32) -> bool {
    id.wrapping_sub(first) <= last.wrapping_sub(first)
}

impl Engine {
    /// §2.5.2, §2.7.2: maps the peer's channel to a new session and answers with our begin.
    pub(super) fn on_begin(&mut self, channel: u16, begin: Begin) {
        if begin.remote_channel.is_some() {
            self.fail(condition::NOT_ALLOWED, "the hub does not begin sessions");
            return;
        }
        if channel > self.config.channel_max {
            self.fail(
                condition::NOT_ALLOWED,
                format!(
                    "channel {channel} exceeds channel-max {}",
                    self.config.channel_max
                ),
            );
            return;
        }
        if self.channels.contains_key(&channel) {
            self.fail(
                condition::NOT_ALLOWED,
                format!("channel {channel} already has a session"),
            );
            return;
        }
        self.ended_channels.remove(&channel);
        let peer_channel_max = self.peer.as_ref().map_or(u16::MAX, |peer| peer.channel_max);
        let used: HashSet<u16> = self
            .sessions
            .values()
            .map(|session| session.local_channel)
            .collect();
        let Some(local_channel) =
            (0..=self.config.channel_max.min(peer_channel_max)).find(|channel| !used.contains(channel))
        else {
            self.fail(condition::RESOURCE_LIMIT_EXCEEDED, "no free channel");
            return;
        };
        let session = Session {
            local_channel,
            ending: false,
            next_incoming_id: begin.next_outgoing_id,
            incoming_window: self.config.session_window,
            next_outgoing_id: 0,
            outgoing_window: self.config.session_window,
            remote_incoming_window: begin.incoming_window,
            remote_outgoing_window: begin.outgoing_window,
            next_delivery_id: 0,
            handle_max: begin.handle_max.unwrap_or(u32::MAX),
            remote_handles: HashMap::new(),
            detached_handles: VecDeque::new(),
            local_handles: BTreeMap::new(),
            incoming_unsettled: HashMap::new(),
            outgoing_unsettled: HashMap::new(),
        };
        let reply = Begin {
            remote_channel: Some(channel),
            next_outgoing_id: session.next_outgoing_id,
            incoming_window: session.incoming_window,
            outgoing_window: session.outgoing_window,
            // Explicit: pyamqp compares with it (wire reference §7.6.2).
            handle_max: Some(self.config.handle_max),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let id = SessionId(self.next_id());
        let over_limit = self.sessions.len() >= self.config.max_sessions;
        self.sessions.insert(id, session);
        self.channels.insert(channel, id);
        self.out.frame(local_channel, reply, self.now);
        if over_limit {
            // §2.5.5: refuse with begin then end, leaving the other sessions alone.
            self.send_end(
                id,
                Some(Error::new(
                    condition::RESOURCE_LIMIT_EXCEEDED,
                    "too many sessions",
                )),
            );
        } else {
            self.events.push_back(Event::SessionBegun { session: id });
        }
    }

    /// §2.7.8: the peer ended the session: its links are gone; answer with our end.
    pub(super) fn on_end(&mut self, id: SessionId, error: Option<Error>) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let local_channel = session.local_channel;
        for link in session.local_handles.values() {
            if self.links.get(link).is_some_and(|link| !link.detach_sent()) {
                self.events.push_back(Event::LinkDetached {
                    link: *link,
                    closed: false,
                    error: error.clone(),
                    by_peer: true,
                });
            }
        }
        self.out.frame(local_channel, End::default(), self.now);
        self.remove_session(id);
        self.events.push_back(Event::SessionEnded { session: id, error });
    }

    /// Ends a session (§2.7.8): sends end with `error`; its links are gone at once (no events), and the
    /// peer's end is awaited.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::NotOpen`] or [`EngineError::UnknownSession`] (also when already ending).
    pub fn end_session(&mut self, session: SessionId, error: Option<Error>) -> Result<(), EngineError> {
        if !self.is_open() {
            return Err(EngineError::NotOpen);
        }
        if self.sessions.get(&session).is_none_or(|session| session.ending) {
            return Err(EngineError::UnknownSession);
        }
        self.send_end(session, error);
        Ok(())
    }

    fn send_end(&mut self, id: SessionId, error: Option<Error>) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.ending = true;
        let local_channel = session.local_channel;
        let links: Vec<LinkId> = session.local_handles.values().copied().collect();
        for link in links {
            self.links.remove(&link);
        }
        if let Some(session) = self.sessions.get_mut(&id) {
            session.local_handles.clear();
            session.remote_handles.clear();
            session.incoming_unsettled.clear();
            session.outgoing_unsettled.clear();
        }
        self.out.frame(local_channel, End { error }, self.now);
    }

    /// Whether the peer's `handle` on the session was detached lately: frames it sent on the handle
    /// before it saw the detach are dropped.
    pub(super) fn detached_lately(&self, id: SessionId, handle: u32) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|session| session.was_detached(handle))
    }

    pub(super) fn session_ending(&self, id: SessionId) -> bool {
        self.sessions.get(&id).is_some_and(|session| session.ending)
    }

    /// Unmaps a session and forgets its links.
    pub(super) fn remove_session(&mut self, id: SessionId) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        let ended = &mut self.ended_channels;
        self.channels.retain(|channel, session| {
            let keep = *session != id;
            if !keep {
                ended.insert(*channel);
            }
            keep
        });
        for link in session.local_handles.values() {
            self.links.remove(link);
        }
    }

    /// §2.5.6: accounts one incoming transfer frame against our incoming window, and tops the window up
    /// once half is used. Returns false when the peer overran it (the connection is then closed).
    pub(super) fn count_incoming_transfer(&mut self, id: SessionId) -> bool {
        let Some(session) = self.sessions.get_mut(&id) else {
            return false;
        };
        if session.incoming_window == 0 {
            self.fail(
                condition::WINDOW_VIOLATION,
                "transfer beyond the session incoming window",
            );
            return false;
        }
        session.next_incoming_id = session.next_incoming_id.wrapping_add(1);
        session.incoming_window -= 1;
        session.remote_outgoing_window = session.remote_outgoing_window.saturating_sub(1);
        if session.incoming_window < self.config.session_window / 2 {
            session.incoming_window = self.config.session_window;
            let flow = session.flow();
            self.out.frame(session.local_channel, flow, self.now);
        }
        true
    }

    /// §2.7.4: updates the session windows from a flow, then the link's state when it names one, and
    /// answers an echo.
    pub(super) fn on_flow(&mut self, id: SessionId, flow: Flow) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let was_closed = session.remote_incoming_window == 0;
        // §2.5.6: remote-incoming-window = next-incoming-id(flow) + incoming-window(flow) -
        // next-outgoing-id(endpoint); our initial outgoing id is 0 when the peer has not seen our begin.
        let limit = flow
            .next_incoming_id
            .unwrap_or(0)
            .wrapping_add(flow.incoming_window);
        session.remote_incoming_window = limit
            .wrapping_sub(session.next_outgoing_id)
            .min(flow.incoming_window);
        session.remote_outgoing_window = flow.outgoing_window;
        let reopened = was_closed && session.remote_incoming_window > 0;
        let local_channel = session.local_channel;
        let flow_link = match flow.handle {
            Some(handle) => match session.remote_handles.get(&handle) {
                Some(&link) => Some(link),
                None if session.was_detached(handle) => return,
                None => {
                    self.fail(
                        condition::UNATTACHED_HANDLE,
                        format!("flow for handle {handle}, which is not attached"),
                    );
                    return;
                }
            },
            None => None,
        };
        if reopened {
            // Links that had credit but no session room can send again.
            let links: Vec<LinkId> = session.local_handles.values().copied().collect();
            for link in links {
                if Some(link) != flow_link
                    && let Some(link) = self.links.get(&link)
                    && link.can_send()
                {
                    self.events.push_back(Event::CreditAvailable {
                        link: link.id,
                        credit: link.link_credit,
                        drain: link.drain,
                    });
                }
            }
        }
        match flow_link {
            Some(link) => self.on_link_flow(link, &flow),
            None if flow.echo => {
                if let Some(session) = self.sessions.get(&id) {
                    let ours = session.flow();
                    self.out.frame(local_channel, ours, self.now);
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_with(handle_max: u32) -> Session {
        Session {
            local_channel: 0,
            ending: false,
            next_incoming_id: 0,
            incoming_window: 0,
            next_outgoing_id: 0,
            outgoing_window: 0,
            remote_incoming_window: 0,
            remote_outgoing_window: 0,
            next_delivery_id: 0,
            handle_max,
            remote_handles: HashMap::new(),
            detached_handles: VecDeque::new(),
            local_handles: BTreeMap::new(),
            incoming_unsettled: HashMap::new(),
            outgoing_unsettled: HashMap::new(),
        }
    }

    #[test]
    fn serial_ranges_wrap() {
        assert!(in_range(5, 5, 5));
        assert!(in_range(u32::MAX, u32::MAX - 1, 2));
        assert!(in_range(1, u32::MAX - 1, 2));
        assert!(!in_range(3, u32::MAX - 1, 2));
        assert!(!in_range(4, 5, 10));
    }

    #[test]
    fn the_lowest_free_handle_is_taken_up_to_the_peers_handle_max() {
        let mut session = session_with(2);
        assert_eq!(session.free_handle(), Some(0));
        session.local_handles.insert(0, LinkId(1));
        session.local_handles.insert(2, LinkId(2));
        assert_eq!(session.free_handle(), Some(1));
        session.local_handles.insert(1, LinkId(3));
        assert_eq!(session.free_handle(), None);
        let mut unlimited = session_with(u32::MAX);
        unlimited.local_handles.insert(u32::MAX, LinkId(1));
        assert_eq!(unlimited.free_handle(), Some(0));
    }
}
