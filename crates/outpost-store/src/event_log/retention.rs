//! Retention: dropping a partition's oldest whole segments once they are too old or the
//! partition is too large.
//!
//! Only a prefix of the segment list is dropped, so what remains is always contiguous. The active
//! segment is never dropped, nor is the segment before an empty active segment: recovery needs
//! one segment with records to know the next sequence number. A segment is first removed from
//! the list (new readers no longer see it; readers already in it keep their open handle), then
//! unlinked, oldest first, and the directory is synced.

use std::sync::Arc;

use outpost_core::{Retention, StoreError};

use super::partition::PartitionShared;
use super::segment::{Segment, SparseIndex};
use super::sync_dir;

/// Applies `retention` to one partition at `now_ms`; returns how many events were dropped.
///
/// # Errors
/// [`StoreError::Corrupt`] when a segment whose age must be checked cannot be indexed, or an
/// I/O error syncing the directory.
pub(crate) fn apply(
    partition: &PartitionShared,
    retention: Retention,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let _serialized = partition.retention.lock();
    let segments = partition.state.read().segments.clone();
    let interval = partition.options.index_interval_bytes;
    let Some(active) = segments.last() else {
        return Ok(0);
    };
    let active_has_records = active.with_index(interval, SparseIndex::records)? > 0;
    let deletable = if active_has_records {
        segments.len() - 1
    } else {
        segments.len().saturating_sub(2)
    };
    let max_age_ms = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let cutoff_ms = now_ms.saturating_sub(max_age_ms);
    let mut total: u64 = segments.iter().map(|segment| segment.len()).sum();

    let mut dropped_segments = 0;
    while dropped_segments < deletable {
        let segment = &segments[dropped_segments];
        let over_size = total > retention.max_bytes_per_partition;
        if !over_size && !newest_is_older(segment, segments.get(dropped_segments + 1), cutoff_ms, interval)? {
            break;
        }
        total -= segment.len();
        dropped_segments += 1;
    }
    if dropped_segments == 0 {
        return Ok(0);
    }
    let doomed = &segments[..dropped_segments];
    let dropped_events = segments[dropped_segments].base_seq() - segments[0].base_seq();

    {
        let mut state = partition.state.write();
        // Only retention removes segments, and it is serialized, so the list still starts with
        // the ones chosen; the writer may have added segments at the end meanwhile.
        debug_assert!(
            state
                .segments
                .iter()
                .zip(doomed)
                .all(|(current, chosen)| Arc::ptr_eq(current, chosen))
        );
        state.segments.drain(..dropped_segments);
    }
    for segment in doomed {
        if let Err(error) = std::fs::remove_file(segment.path()) {
            // The segment is out of the list already; a file left behind comes back at the next
            // open as old events, which is harmless.
            tracing::warn!(segment = %segment.path().display(), %error, "failed to delete an expired segment");
        }
    }
    sync_dir(&partition.dir)?;
    tracing::debug!(
        hub = %partition.hub,
        partition = partition.id,
        segments = dropped_segments,
        events = dropped_events,
        "applied event log retention"
    );
    Ok(dropped_events)
}

/// Returns whether the newest record of `segment` was enqueued before `cutoff_ms`. The first
/// record of the next segment bounds it from above, which spares indexing most old segments.
fn newest_is_older(
    segment: &Segment,
    next: Option<&Arc<Segment>>,
    cutoff_ms: i64,
    interval: u64,
) -> Result<bool, StoreError> {
    if next
        .and_then(|next| next.first_ms())
        .is_some_and(|first| first < cutoff_ms)
    {
        return Ok(true);
    }
    let newest = segment.with_index(interval, SparseIndex::last)?;
    Ok(newest.is_some_and(|newest| newest.ms < cutoff_ms))
}
