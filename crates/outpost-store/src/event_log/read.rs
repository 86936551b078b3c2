//! Reading a partition: finding where a position starts, then walking records across segments.
//!
//! Runs on the blocking pool. It holds the partition's lock only to copy the segment list, so
//! readers never wait for the writer's I/O and any number of them run at once; the files are
//! read with positional reads on shared handles, and never past a segment's durable length.

use std::sync::Arc;

use bytes::Bytes;
use outpost_core::{AppendedEvent, LogPosition, StoreError, StoredEvent};

use super::partition::PartitionShared;
use super::record::HEADER_LEN;
use super::segment::{RecordCursor, Seek, Segment, corrupt_at};
use super::{io_error, millis_ceil, timestamp_of};

/// The least a read fetches from a file at once.
const MIN_CHUNK: usize = 16 * 1024;
/// The most a read fetches from a file at once.
const MAX_CHUNK: usize = 1024 * 1024;

/// Reads up to `max_events` durable events (and at most `max_bytes` of payload, but at least one
/// event) starting at `from`.
///
/// # Errors
/// [`StoreError::Corrupt`] for an invalid record on the way, an I/O error otherwise.
pub(crate) fn read(
    partition: &PartitionShared,
    from: LogPosition,
    max_events: usize,
    max_bytes: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    if max_events == 0 {
        return Ok(Vec::new());
    }
    let segments = partition.state.read().segments.clone();
    let interval = partition.options.index_interval_bytes;
    let (first, seek) = locate(&segments, from);
    let chunk = max_bytes
        .saturating_add(HEADER_LEN.saturating_mul(max_events.min(1024)))
        .clamp(MIN_CHUNK, MAX_CHUNK);

    let mut events = Vec::new();
    let mut payload_bytes = 0usize;
    // Records before the requested position are skipped until the first match; from then on
    // every record matches, since sequence numbers, offsets and times never decrease.
    let mut started = false;
    for (number, segment) in segments.iter().enumerate().skip(first) {
        let start = if number == first {
            segment.start_position(seek, interval)?
        } else {
            0
        };
        let mut cursor = RecordCursor::new(segment.file(), start, segment.len(), chunk);
        while let Some(item) = cursor
            .next()
            .map_err(|error| io_error("read segment", segment.path(), &error))?
        {
            let (header, pos, payload) =
                item.map_err(|(pos, defect)| corrupt_at(segment.path(), pos, defect))?;
            if !started {
                started = match seek {
                    Seek::Seq(seq) => header.sequence_number >= seq,
                    Seek::Pos(target) => pos >= target || number > first,
                    Seek::Time(ms) => header.enqueued_ms >= ms,
                };
                if !started {
                    continue;
                }
            }
            if !events.is_empty() && payload_bytes.saturating_add(payload.len()) > max_bytes {
                return Ok(events);
            }
            payload_bytes += payload.len();
            events.push(StoredEvent {
                position: AppendedEvent {
                    sequence_number: header.sequence_number,
                    offset: segment.base_offset() + pos,
                    enqueued_time: timestamp_of(header.enqueued_ms),
                },
                payload: Bytes::copy_from_slice(payload),
            });
            if events.len() >= max_events {
                return Ok(events);
            }
        }
    }
    Ok(events)
}

/// Returns the segment to start in and what to look for in it.
fn locate(segments: &[Arc<Segment>], from: LogPosition) -> (usize, Seek) {
    match from {
        LogPosition::Offset(offset) => {
            let number = segments
                .partition_point(|segment| segment.base_offset() <= offset)
                .saturating_sub(1);
            let base = segments.get(number).map_or(0, |segment| segment.base_offset());
            (number, Seek::Pos(offset.saturating_sub(base)))
        }
        LogPosition::SequenceNumber(seq) => {
            let number = segments
                .partition_point(|segment| segment.base_seq() <= seq)
                .saturating_sub(1);
            (number, Seek::Seq(seq))
        }
        LogPosition::EnqueuedTime(at) => {
            let ms = millis_ceil(at);
            // The segment before the first one that starts at or after `ms` may still hold
            // records at or after it; every earlier one ends before it. An empty (active)
            // segment sorts last.
            let number = segments
                .partition_point(|segment| segment.first_ms().is_some_and(|first| first < ms))
                .saturating_sub(1);
            (number, Seek::Time(ms))
        }
    }
}
