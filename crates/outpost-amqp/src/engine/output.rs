//! The bytes the engine wants written, with settlements batched into ranges (§2.7.6: one disposition
//! covers `first..=last`).

use std::time::Instant;

use bytes::BytesMut;

use crate::definitions::{DeliveryState, Role};
use crate::frame::{ProtocolId, encode_amqp_frame, encode_heartbeat, encode_sasl_frame};
use crate::performatives::{Disposition, Performative};
use crate::sasl::SaslFrame;

/// A settlement not yet written: consecutive ones with the same state become one disposition.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingDisposition {
    channel: u16,
    role: Role,
    first: u32,
    last: u32,
    settled: bool,
    state: Option<DeliveryState>,
}

/// The output buffer, and when something was last written (for heartbeats, §2.4.5).
#[derive(Debug)]
pub(super) struct Outbox {
    bytes: BytesMut,
    dispositions: Vec<PendingDisposition>,
    pub(super) last_sent: Instant,
}

impl Outbox {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            bytes: BytesMut::new(),
            dispositions: Vec::new(),
            last_sent: now,
        }
    }

    /// Whether anything waits to be written.
    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dispositions.is_empty()
    }

    /// Moves everything to write into `out`.
    pub(super) fn take(&mut self, out: &mut BytesMut) {
        self.flush_dispositions();
        out.extend_from_slice(&self.bytes);
        self.bytes.clear();
    }

    pub(super) fn header(&mut self, protocol: ProtocolId, now: Instant) {
        self.bytes.extend_from_slice(&protocol.header());
        self.last_sent = now;
    }

    pub(super) fn sasl(&mut self, frame: &SaslFrame, now: Instant) {
        encode_sasl_frame(&mut self.bytes, frame);
        self.last_sent = now;
    }

    pub(super) fn heartbeat(&mut self, now: Instant) {
        self.flush_dispositions();
        encode_heartbeat(&mut self.bytes);
        self.last_sent = now;
    }

    /// Appends a frame without payload; queued settlements go first, to keep their order.
    pub(super) fn frame(&mut self, channel: u16, performative: impl Into<Performative>, now: Instant) {
        self.flush_dispositions();
        encode_amqp_frame(&mut self.bytes, channel, &performative.into(), &[]);
        self.last_sent = now;
    }

    /// Appends already encoded frames (the transfers of a delivery).
    pub(super) fn raw(&mut self, frames: &[u8], now: Instant) {
        self.flush_dispositions();
        self.bytes.extend_from_slice(frames);
        self.last_sent = now;
    }

    /// Queues the settlement or state update of one delivery; extends the previous range when it is the
    /// next id with the same state.
    pub(super) fn disposition(
        &mut self,
        channel: u16,
        role: Role,
        id: u32,
        settled: bool,
        state: Option<DeliveryState>,
        now: Instant,
    ) {
        self.last_sent = now;
        if let Some(last) = self.dispositions.last_mut()
            && last.channel == channel
            && last.role == role
            && last.settled == settled
            && last.state == state
            && last.last.wrapping_add(1) == id
        {
            last.last = id;
            return;
        }
        self.dispositions.push(PendingDisposition {
            channel,
            role,
            first: id,
            last: id,
            settled,
            state,
        });
    }

    fn flush_dispositions(&mut self) {
        for pending in std::mem::take(&mut self.dispositions) {
            let disposition = Disposition {
                role: pending.role,
                first: pending.first,
                // Always explicit: pyamqp applies no spec defaults (wire reference §7.6.2).
                last: Some(pending.last),
                settled: pending.settled,
                state: pending.state,
                batchable: false,
            };
            encode_amqp_frame(
                &mut self.bytes,
                pending.channel,
                &Performative::Disposition(disposition),
                &[],
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::frame::{FrameBody, FrameDecoder};
    use crate::performatives::{Detach, Performative};

    fn performatives(outbox: &mut Outbox) -> Vec<(u16, Performative)> {
        let mut bytes = BytesMut::new();
        outbox.take(&mut bytes);
        let mut decoder = FrameDecoder::default();
        std::iter::from_fn(|| decoder.decode(&mut bytes).unwrap())
            .map(|frame| match frame.body {
                FrameBody::Amqp { performative, .. } => (frame.channel, performative),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn range(performative: &Performative) -> (u32, Option<u32>, bool) {
        match performative {
            Performative::Disposition(disposition) => {
                (disposition.first, disposition.last, disposition.settled)
            }
            other => panic!("expected a disposition, got {other:?}"),
        }
    }

    #[test]
    fn consecutive_equal_settlements_become_one_range() {
        let now = Instant::now();
        let mut outbox = Outbox::new(now);
        for id in [u32::MAX, 0, 1] {
            outbox.disposition(0, Role::Receiver, id, true, Some(DeliveryState::Accepted), now);
        }
        // A gap, another state, another channel, another settled flag: new ranges.
        outbox.disposition(0, Role::Receiver, 3, true, Some(DeliveryState::Accepted), now);
        outbox.disposition(0, Role::Receiver, 4, true, Some(DeliveryState::Released), now);
        outbox.disposition(1, Role::Receiver, 5, true, Some(DeliveryState::Released), now);
        outbox.disposition(1, Role::Receiver, 6, false, Some(DeliveryState::Released), now);
        assert!(!outbox.is_empty());
        let written = performatives(&mut outbox);
        let ranges: Vec<_> = written.iter().map(|(channel, p)| (*channel, range(p))).collect();
        assert_eq!(
            ranges,
            [
                (0, (u32::MAX, Some(1), true)),
                (0, (3, Some(3), true)),
                (0, (4, Some(4), true)),
                (1, (5, Some(5), true)),
                (1, (6, Some(6), false)),
            ]
        );
        assert!(outbox.is_empty());
    }

    #[test]
    fn queued_settlements_are_written_before_the_next_frame() {
        let now = Instant::now();
        let mut outbox = Outbox::new(now);
        outbox.disposition(0, Role::Receiver, 0, true, Some(DeliveryState::Accepted), now);
        outbox.frame(0, Detach::default(), now);
        let written = performatives(&mut outbox);
        assert!(matches!(
            written[..],
            [(0, Performative::Disposition(_)), (0, Performative::Detach(_))]
        ));
    }
}
