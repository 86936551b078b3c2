//! The queue's tables, their key ranges, and time in 100 ns ticks.
//!
//! | table           | key                                        | value                       |
//! |-----------------|--------------------------------------------|-----------------------------|
//! | `c2d_messages`  | `(hub, device, module or "", sequence)`    | record (see `record`)       |
//! | `c2d_expiry`    | `(hub, expiry ticks, device, module or "", sequence)` | `()`             |
//! | `c2d_sequences` | `(hub, device, module or "")`              | `u64`: last sequence number |
//!
//! A device's own queue has module `""`; module ids are never empty, so it cannot meet a module's
//! queue. A target's messages are one closed range (`sequence` `0..=u64::MAX` under fixed hub,
//! device and module), and a hub's rows are `(hub, ..)..(successor(hub), ..)`, so hub `a` never
//! reaches into hub `ab`, nor device `d` into `d1`.
//!
//! `c2d_expiry` holds one row per message that has an expiry (messages whose expiry is "never"
//! have none), so `sweep_expired` reads `(hub, MIN, ..)..(hub, now, ..)`: exactly the hub's
//! messages with `expiry < now`, oldest expiry first. `c2d_sequences` keeps a target's counter
//! when its queue empties or is purged, so sequence numbers are never reused; only `drop_hub`
//! removes counters (a hub created again under the same name starts afresh).

use std::ops::RangeInclusive;

use outpost_model::Timestamp;
use redb::TableDefinition;
use time::OffsetDateTime;

/// A `c2d_messages` key: hub, device, module or `""`, sequence number.
pub(super) type MessageKey<'a> = (&'a str, &'a str, &'a str, u64);

/// Queued messages by hub, device, module (`""` for the device itself) and sequence number.
pub(super) const MESSAGES: TableDefinition<MessageKey<'_>, &[u8]> = TableDefinition::new("c2d_messages");
/// Index of the messages that expire: hub, expiry in ticks, device, module, sequence number.
pub(super) const EXPIRY: TableDefinition<(&str, i64, &str, &str, u64), ()> =
    TableDefinition::new("c2d_expiry");
/// The last sequence number handed out per target.
pub(super) const SEQUENCES: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("c2d_sequences");

/// Where a target's messages live: hub, device, module or `""`.
#[derive(Debug, Clone, Copy)]
pub(super) struct TargetKey<'a> {
    /// The hub.
    pub(super) hub: &'a str,
    /// The device.
    pub(super) device: &'a str,
    /// The module, or `""` for the device's own queue.
    pub(super) module: &'a str,
}

impl<'a> TargetKey<'a> {
    /// Returns the `c2d_messages` key of message `sequence`.
    pub(super) fn message(self, sequence: u64) -> MessageKey<'a> {
        (self.hub, self.device, self.module, sequence)
    }

    /// Returns every `c2d_messages` key of the target, in sequence order.
    pub(super) fn messages(self) -> RangeInclusive<MessageKey<'a>> {
        self.message(0)..=self.message(u64::MAX)
    }

    /// Returns the `c2d_expiry` key of message `sequence` expiring at `expiry` ticks.
    pub(super) fn expiry(self, expiry: i64, sequence: u64) -> (&'a str, i64, &'a str, &'a str, u64) {
        (self.hub, expiry, self.device, self.module, sequence)
    }

    /// Returns the `c2d_sequences` key.
    pub(super) fn counter(self) -> (&'a str, &'a str, &'a str) {
        (self.hub, self.device, self.module)
    }
}

/// Returns `at` in 100 ns ticks since the Unix epoch, or `None` for "never".
///
/// `Timestamp` is already truncated to 100 ns, so the conversion is exact, and every date it can
/// hold (years -9999 to 9999) fits an `i64` of ticks with room to spare.
pub(super) fn ticks(at: Timestamp) -> Option<i64> {
    at.datetime()
        .map(|at| i64::try_from(at.unix_timestamp_nanos() / 100).unwrap_or(i64::MAX))
}

/// Returns `now` in ticks for comparisons; "never" sorts before every instant, as it does for
/// `Timestamp` itself.
pub(super) fn now_ticks(now: Timestamp) -> i64 {
    ticks(now).unwrap_or(i64::MIN)
}

/// Returns the instant `ticks` 100 ns ticks after the Unix epoch, or `None` when it is out of range.
pub(super) fn from_ticks(ticks: i64) -> Option<Timestamp> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ticks) * 100)
        .ok()
        .map(Timestamp::from_datetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_and_never_has_none() {
        let at = Timestamp::from_unix_millis(1_795_692_329_123);
        let t = ticks(at).unwrap();
        assert_eq!(t, 17_956_923_291_230_000);
        assert_eq!(from_ticks(t), Some(at));
        let early = Timestamp::from_unix_seconds(-62_000_000_000);
        assert_eq!(from_ticks(ticks(early).unwrap()), Some(early));
        assert_eq!(ticks(Timestamp::NEVER), None);
        assert_eq!(now_ticks(Timestamp::NEVER), i64::MIN);
        assert_eq!(from_ticks(i64::MAX), None);
    }

    #[test]
    fn a_targets_range_holds_only_its_own_keys() {
        let target = TargetKey {
            hub: "a",
            device: "d",
            module: "",
        };
        let range = target.messages();
        assert!(range.contains(&("a", "d", "", 0)));
        assert!(range.contains(&("a", "d", "", u64::MAX)));
        assert!(!range.contains(&("a", "d", "m", 1)));
        assert!(!range.contains(&("a", "d1", "", 1)));
        assert!(!range.contains(&("ab", "d", "", 1)));
    }
}
