//! Per-hub device counts, kept in `device_counts` and adjusted in the same write transaction as
//! the device write or delete that changes them, so reading them is one lookup.

use outpost_core::DeviceCounts;
use redb::{ReadTransaction, ReadableTable as _, WriteTransaction};

use crate::error::TxError;
use crate::tables::DEVICE_COUNTS;

/// What a write does to one device, as seen by the counts: its enabled flag before and after
/// (`None`: absent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CountChange {
    /// Whether the device existed and was enabled before the write.
    pub(crate) before: Option<bool>,
    /// Whether the device exists and is enabled after the write.
    pub(crate) after: Option<bool>,
}

/// Returns the counts of `hub` (zero when it has no devices).
pub(crate) fn read_counts(tx: &ReadTransaction, hub: &str) -> Result<DeviceCounts, TxError> {
    let table = tx.open_table(DEVICE_COUNTS)?;
    Ok(table
        .get(hub)?
        .map_or_else(DeviceCounts::default, |guard| to_counts(guard.value())))
}

/// Applies `change` to the counts of `hub`.
///
/// Opens `device_counts`, so the caller must not hold it open.
pub(crate) fn apply(tx: &WriteTransaction, hub: &str, change: CountChange) -> Result<(), TxError> {
    let mut table = tx.open_table(DEVICE_COUNTS)?;
    let current = table
        .get(hub)?
        .map_or_else(DeviceCounts::default, |guard| to_counts(guard.value()));
    let (next, consistent) = adjusted(current, change);
    if !consistent {
        // Only a damaged file gets here; clamping keeps devices deletable.
        tracing::warn!(
            hub,
            "device counts were inconsistent and have been clamped at zero"
        );
    }
    if next.total == 0 && next.enabled == 0 && next.disabled == 0 {
        table.remove(hub)?;
    } else {
        table.insert(hub, (next.total, next.enabled, next.disabled))?;
    }
    Ok(())
}

fn to_counts((total, enabled, disabled): (u64, u64, u64)) -> DeviceCounts {
    DeviceCounts {
        total,
        enabled,
        disabled,
    }
}

/// Returns the counts after `change`, and whether no count had to be clamped at zero.
fn adjusted(mut counts: DeviceCounts, change: CountChange) -> (DeviceCounts, bool) {
    let mut consistent = true;
    let mut decrement = |count: &mut u64| match count.checked_sub(1) {
        Some(value) => *count = value,
        None => consistent = false,
    };
    if let Some(enabled) = change.before {
        decrement(&mut counts.total);
        decrement(if enabled {
            &mut counts.enabled
        } else {
            &mut counts.disabled
        });
    }
    if let Some(enabled) = change.after {
        counts.total += 1;
        *(if enabled {
            &mut counts.enabled
        } else {
            &mut counts.disabled
        }) += 1;
    }
    (counts, consistent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: u64, enabled: u64, disabled: u64) -> DeviceCounts {
        DeviceCounts {
            total,
            enabled,
            disabled,
        }
    }

    #[test]
    fn create_update_and_delete_move_the_counts() {
        let create = CountChange {
            before: None,
            after: Some(true),
        };
        assert_eq!(adjusted(counts(0, 0, 0), create), (counts(1, 1, 0), true));
        let disable = CountChange {
            before: Some(true),
            after: Some(false),
        };
        assert_eq!(adjusted(counts(1, 1, 0), disable), (counts(1, 0, 1), true));
        let delete = CountChange {
            before: Some(false),
            after: None,
        };
        assert_eq!(adjusted(counts(1, 0, 1), delete), (counts(0, 0, 0), true));
    }

    #[test]
    fn inconsistent_counts_are_clamped_not_wrapped() {
        let delete = CountChange {
            before: Some(true),
            after: None,
        };
        assert_eq!(adjusted(counts(0, 0, 0), delete), (counts(0, 0, 0), false));
    }
}
