//! Deliveries (AMQP 1.0 §2.6.12–§2.6.14, §2.7.5, §2.7.6): incoming transfers reassembled and
//! size-checked, outgoing messages split into transfers, and settlement both ways.

use bytes::{Bytes, BytesMut};

use super::link::{LinkState, Partial};
use super::session::{IncomingUnsettled, in_range};
use super::{Delivery, DeliveryId, Engine, EngineError, Event, LinkId, SessionId};
use crate::definitions::{DeliveryState, ReceiverSettleMode, Role, condition};
use crate::frame::encode_transfer_frames;
use crate::performatives::{Disposition, Transfer};

impl Engine {
    /// §2.7.5: one transfer frame from the peer.
    pub(super) fn on_transfer(&mut self, session_id: SessionId, transfer: Transfer, payload: Bytes) {
        if !self.count_incoming_transfer(session_id) {
            return;
        }
        let Some(&link) = self
            .sessions
            .get(&session_id)
            .and_then(|session| session.remote_handles.get(&transfer.handle))
        else {
            if self.detached_lately(session_id, transfer.handle) {
                return;
            }
            self.fail(
                condition::UNATTACHED_HANDLE,
                format!("transfer for handle {}, which is not attached", transfer.handle),
            );
            return;
        };
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        if state.state == LinkState::DetachSent {
            // The rest of a delivery we refused, or in flight before our detach.
            return;
        }
        if state.role == Role::Sender {
            self.fail(
                condition::NOT_ALLOWED,
                "transfer on a link where the hub is the sender",
            );
            return;
        }
        let first_frame = state.partial.is_none();
        match (&state.partial, transfer.delivery_id) {
            (None, None) => {
                self.fail(
                    condition::INVALID_FIELD,
                    "first transfer of a delivery without delivery-id",
                );
                return;
            }
            (None, Some(delivery_id)) => {
                // §2.6.7: every delivery takes one credit.
                if state.link_credit == 0 {
                    self.detach_for_violation(
                        link,
                        condition::TRANSFER_LIMIT_EXCEEDED,
                        "transfer without link credit".into(),
                    );
                    return;
                }
                state.link_credit -= 1;
                state.delivery_count = state.delivery_count.wrapping_add(1);
                state.partial = Some(Partial {
                    delivery_id,
                    tag: transfer.delivery_tag.clone().unwrap_or_default(),
                    message_format: transfer.message_format.unwrap_or(0),
                    settled: false,
                    rcv_settle_mode: transfer.rcv_settle_mode,
                    payload: BytesMut::new(),
                });
            }
            (Some(partial), Some(delivery_id)) if partial.delivery_id != delivery_id => {
                let incomplete = partial.delivery_id;
                self.fail(
                    condition::INVALID_FIELD,
                    format!("transfer for delivery {delivery_id} while delivery {incomplete} is incomplete"),
                );
                return;
            }
            (Some(_), _) => {}
        }
        let max = state.max_message_size;
        let link_mode = state.rcv_settle_mode;
        let Some(partial) = state.partial.as_mut() else {
            return;
        };
        if transfer.aborted {
            // §2.6.14: an aborted delivery is discarded; its credit stays used.
            state.partial = None;
            return;
        }
        partial.settled |= transfer.settled == Some(true);
        let size = partial.payload.len() + payload.len();
        if max > 0 && size as u64 > max {
            state.partial = None;
            self.detach_for_violation(
                link,
                condition::MESSAGE_SIZE_EXCEEDED,
                format!("message larger than {max} bytes"),
            );
            return;
        }
        if transfer.more {
            partial.payload.extend_from_slice(&payload);
            return;
        }
        let Some(partial) = state.partial.take() else {
            return;
        };
        let message = if first_frame {
            payload
        } else {
            let mut whole = partial.payload;
            whole.extend_from_slice(&payload);
            whole.freeze()
        };
        if !partial.settled
            && let Some(session) = self.sessions.get_mut(&session_id)
        {
            session.incoming_unsettled.insert(
                partial.delivery_id,
                IncomingUnsettled {
                    link,
                    mode: partial.rcv_settle_mode.unwrap_or(link_mode),
                    awaiting_sender: false,
                },
            );
        }
        self.stats.deliveries_received += 1;
        self.events.push_back(Event::Delivery(Delivery {
            link,
            delivery_id: DeliveryId(partial.delivery_id),
            delivery_tag: partial.tag,
            message_format: partial.message_format,
            settled: partial.settled,
            message,
        }));
    }

    /// Sends a message (its encoded bytes) on a link where the hub is the sender (§2.6.12), split into
    /// as many transfers as the max frame size needs (§2.6.14). Takes one credit. An unsettled delivery
    /// is reported by [`Event::Settled`] when the peer settles it. The delivery tag is the delivery-id's
    /// four bytes.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::NoCredit`] or [`EngineError::SessionWindowFull`] (wait for
    /// [`Event::CreditAvailable`]), [`EngineError::MessageTooLarge`] for the peer's max-message-size,
    /// and [`EngineError::NotOpen`], [`EngineError::UnknownLink`], [`EngineError::LinkNotAttached`]
    /// or [`EngineError::WrongRole`].
    pub fn send(&mut self, link: LinkId, message: &[u8], settled: bool) -> Result<DeliveryId, EngineError> {
        let channel = self.attached_link_channel(link, Role::Sender)?;
        let state = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        if state.link_credit == 0 {
            return Err(EngineError::NoCredit);
        }
        if state.peer_max_message_size > 0 && message.len() as u64 > state.peer_max_message_size {
            return Err(EngineError::MessageTooLarge {
                size: message.len(),
                max: state.peer_max_message_size,
            });
        }
        let session = self
            .sessions
            .get_mut(&state.session)
            .ok_or(EngineError::UnknownSession)?;
        let delivery_id = session.next_delivery_id;
        let transfer = Transfer {
            handle: state.local_handle,
            delivery_id: Some(delivery_id),
            delivery_tag: Some(Bytes::copy_from_slice(&delivery_id.to_be_bytes())),
            message_format: Some(0),
            settled: Some(settled),
            ..Transfer::default()
        };
        let mut frames = BytesMut::new();
        let count = encode_transfer_frames(&mut frames, channel, &transfer, message, self.max_frame_size)
            .map_err(EngineError::Encode)?;
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        // §2.5.6: every transfer frame takes one place in the peer's incoming window.
        if session.remote_incoming_window < count {
            return Err(EngineError::SessionWindowFull);
        }
        session.remote_incoming_window -= count;
        session.next_outgoing_id = session.next_outgoing_id.wrapping_add(count);
        session.next_delivery_id = delivery_id.wrapping_add(1);
        if !settled {
            session.outgoing_unsettled.insert(delivery_id, link);
        }
        self.out.raw(&frames, self.now);
        let Some(state) = self.links.get_mut(&link) else {
            return Err(EngineError::UnknownLink);
        };
        state.link_credit -= 1;
        state.delivery_count = state.delivery_count.wrapping_add(1);
        self.stats.deliveries_sent += 1;
        if state.drain && state.link_credit == 0 {
            // The drain is complete: tell the peer (§2.6.7).
            self.drain(link)?;
        }
        Ok(DeliveryId(delivery_id))
    }

    /// Settles a delivery the hub received with its outcome (§2.6.12), e.g. accepted, or rejected with
    /// an error: a disposition (role receiver) is queued, merged with adjacent ones of the same state.
    /// In receiver settle mode second the disposition is unsettled and the peer settles it.
    ///
    /// # Errors
    ///
    /// Returns [`EngineError::UnknownDelivery`] when the delivery is not unsettled on this link, and
    /// [`EngineError::NotOpen`], [`EngineError::UnknownLink`] or [`EngineError::WrongRole`].
    pub fn settle(
        &mut self,
        link: LinkId,
        delivery_id: DeliveryId,
        state: DeliveryState,
    ) -> Result<(), EngineError> {
        if !self.is_open() {
            return Err(EngineError::NotOpen);
        }
        let channel = self.link_channel(link)?;
        let link_state = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        if link_state.state == LinkState::DetachSent {
            return Err(EngineError::UnknownLink);
        }
        if link_state.role != Role::Receiver {
            return Err(EngineError::WrongRole(Role::Receiver));
        }
        let session = self
            .sessions
            .get_mut(&link_state.session)
            .ok_or(EngineError::UnknownSession)?;
        let Some(unsettled) = session
            .incoming_unsettled
            .get_mut(&delivery_id.0)
            .filter(|unsettled| unsettled.link == link && !unsettled.awaiting_sender)
        else {
            return Err(EngineError::UnknownDelivery);
        };
        let settled = match unsettled.mode {
            ReceiverSettleMode::First => {
                session.incoming_unsettled.remove(&delivery_id.0);
                true
            }
            ReceiverSettleMode::Second => {
                unsettled.awaiting_sender = true;
                false
            }
        };
        self.out.disposition(
            channel,
            Role::Receiver,
            delivery_id.0,
            settled,
            Some(state),
            self.now,
        );
        Ok(())
    }

    /// §2.7.6: the peer's disposition. As receiver, it reports on deliveries we sent: one
    /// [`Event::Settled`] each (in receiver settle mode second we settle at once). As sender, it settles
    /// deliveries we received.
    pub(super) fn on_disposition(&mut self, session_id: SessionId, disposition: Disposition) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        let first = disposition.first;
        let last = disposition.last.unwrap_or(first);
        match disposition.role {
            Role::Receiver => {
                let mut covered: Vec<(u32, LinkId)> = session
                    .outgoing_unsettled
                    .iter()
                    .filter(|(id, _)| in_range(**id, first, last))
                    .map(|(id, link)| (*id, *link))
                    .collect();
                covered.sort_by_key(|(id, _)| id.wrapping_sub(first));
                for (id, link) in covered {
                    let second = self
                        .links
                        .get(&link)
                        .is_some_and(|state| state.rcv_settle_mode == ReceiverSettleMode::Second);
                    // Mode second: the receiver reported its outcome; the hub settles (§2.6.12).
                    let settle_now = !disposition.settled && second && disposition.state.is_some();
                    if disposition.settled || settle_now {
                        session.outgoing_unsettled.remove(&id);
                    }
                    if settle_now {
                        self.out.disposition(
                            session.local_channel,
                            Role::Sender,
                            id,
                            true,
                            disposition.state.clone(),
                            self.now,
                        );
                    }
                    self.events.push_back(Event::Settled {
                        link,
                        delivery_id: DeliveryId(id),
                        state: disposition.state.clone(),
                        settled: disposition.settled || settle_now,
                    });
                }
            }
            Role::Sender => {
                if disposition.settled {
                    session
                        .incoming_unsettled
                        .retain(|id, _| !in_range(*id, first, last));
                }
            }
        }
    }
}
