//! Opening a partition directory after a clean shutdown or a crash.
//!
//! Rules:
//! * Older segments are trusted: they were synced before the next segment was created. Only
//!   their first header is read now; a corrupt record met later while reading them is reported
//!   as [`StoreError::Corrupt`].
//! * The last segment is scanned record by record (length, version, CRC-32C, sequence numbers
//!   following one another). At the first invalid record the file is truncated: whatever follows
//!   was never acknowledged, because acknowledged records were synced before anything after them
//!   was written. The cut is logged with `warn!` and the number of bytes cut.
//! * An empty last segment (a crash right after a roll, or a first record that was torn) takes
//!   its sequence numbers from the segment before it.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

use outpost_core::{AppendedEvent, StoreError};
use outpost_model::LogName;

use super::partition::PartitionState;
use super::segment::{self, RecordCursor, SCAN_CHUNK, Segment, SparseIndex};
use super::{io_error, sync_dir, timestamp_of};

/// Opens the partition stored in `dir`, repairing the tail of its last segment.
///
/// # Errors
/// [`StoreError::Corrupt`] when the directory holds segments that cannot be made sense of,
/// an I/O error otherwise.
pub(crate) fn open_partition(
    hub: &LogName,
    partition: u32,
    dir: &Path,
    index_interval: u64,
) -> Result<PartitionState, StoreError> {
    let mut bases = list_segments(dir)?;
    bases.sort_unstable();
    let Some(&last_base) = bases.last() else {
        return Err(StoreError::Corrupt(format!(
            "{} holds no segment; the partition's sequence numbers are unknown",
            dir.display()
        )));
    };
    let mut segments = Vec::with_capacity(bases.len());
    for &base in &bases[..bases.len() - 1] {
        let path = dir.join(segment::file_name(base));
        segments.push(Arc::new(Segment::open_sealed(path, base)?));
    }
    let (active, last) = recover_last(hub, partition, dir, last_base, segments.last(), index_interval)?;
    let next_seq = last.map_or(active.base_seq(), |last| last.sequence_number + 1);
    segments.push(Arc::new(active));
    Ok(PartitionState {
        segments,
        next_seq,
        last,
    })
}

/// Returns the base offsets of the segment files in `dir`; other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|error| io_error("list partition", dir, &error))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error("list partition", dir, &error))?;
        let name = entry.file_name();
        match name.to_str().and_then(segment::parse_file_name) {
            Some(base) => bases.push(base),
            None => tracing::warn!(
                dir = %dir.display(),
                file = ?name,
                "ignoring a file that is not an event log segment"
            ),
        }
    }
    Ok(bases)
}

/// Scans the last segment, cuts an invalid tail, and returns it with the partition's newest
/// record.
fn recover_last(
    hub: &LogName,
    partition: u32,
    dir: &Path,
    base_offset: u64,
    previous: Option<&Arc<Segment>>,
    interval: u64,
) -> Result<(Segment, Option<AppendedEvent>), StoreError> {
    let path = dir.join(segment::file_name(base_offset));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| io_error("open segment", &path, &error))?;
    let file_len = file
        .metadata()
        .map_err(|error| io_error("inspect segment", &path, &error))?
        .len();

    let mut index = SparseIndex::default();
    let mut first_ms = None;
    let mut valid_len = 0;
    let mut defect = None;
    {
        let mut cursor = RecordCursor::new(&file, 0, file_len, SCAN_CHUNK);
        let mut expected: Option<u64> = None;
        while let Some(item) = cursor
            .next()
            .map_err(|error| io_error("read segment", &path, &error))?
        {
            let (header, pos, _) = match item {
                Ok(record) => record,
                Err((pos, found)) => {
                    defect = Some((pos, found.to_string()));
                    break;
                }
            };
            if expected.is_some_and(|expected| expected != header.sequence_number) {
                defect = Some((
                    pos,
                    format!("sequence number {} out of order", header.sequence_number),
                ));
                break;
            }
            expected = Some(header.sequence_number + 1);
            first_ms.get_or_insert(header.enqueued_ms);
            let meta = segment::meta_of(&header, pos);
            valid_len = pos + meta.len;
            index.push(meta, interval);
        }
    }

    if valid_len < file_len {
        let (at, reason) = defect.unwrap_or((valid_len, "unexpected end".into()));
        tracing::warn!(
            %hub,
            partition,
            segment = %path.display(),
            at,
            %reason,
            cut_bytes = file_len - valid_len,
            kept_records = index.records(),
            "cutting a torn or corrupt tail off the event log"
        );
        file.set_len(valid_len)
            .map_err(|error| io_error("truncate segment", &path, &error))?;
        file.sync_all()
            .map_err(|error| io_error("sync segment", &path, &error))?;
    }

    let (base_seq, last) = match index.last() {
        Some(last_record) => {
            let last = AppendedEvent {
                sequence_number: last_record.seq,
                offset: base_offset + last_record.pos,
                enqueued_time: timestamp_of(last_record.ms),
            };
            let base_seq = last_record.seq + 1 - index.records();
            (base_seq, Some(last))
        }
        None => match previous {
            Some(previous) => {
                let newest = previous.with_index(interval, SparseIndex::last)?;
                let Some(newest) = newest else {
                    return Err(StoreError::Corrupt(format!(
                        "{} holds no record",
                        previous.path().display()
                    )));
                };
                let last = AppendedEvent {
                    sequence_number: newest.seq,
                    offset: previous.base_offset() + newest.pos,
                    enqueued_time: timestamp_of(newest.ms),
                };
                (newest.seq + 1, Some(last))
            }
            None if base_offset == 0 => (0, None),
            None => {
                return Err(StoreError::Corrupt(format!(
                    "{} is empty and no older segment tells its sequence numbers",
                    path.display()
                )));
            }
        },
    };
    let segment = Segment::recovered(path, base_offset, file, valid_len, base_seq, index, first_ms);
    Ok((segment, last))
}

/// Creates the directories of a new hub with `partition_count` empty partitions, atomically: they
/// are built under a temporary name and renamed into place, so a crash never leaves a hub with
/// some of its partitions.
///
/// # Errors
/// An I/O error.
pub(crate) fn create_hub_dirs(root: &Path, hub: &LogName, partition_count: u32) -> Result<(), StoreError> {
    let staging = root.join(format!("{hub}.creating"));
    remove_leftover(&staging)?;
    std::fs::create_dir(&staging).map_err(|error| io_error("create hub directory", &staging, &error))?;
    for partition in 0..partition_count {
        let dir = staging.join(partition.to_string());
        std::fs::create_dir(&dir).map_err(|error| io_error("create partition directory", &dir, &error))?;
        let path = dir.join(segment::file_name(0));
        std::fs::File::create_new(&path).map_err(|error| io_error("create segment", &path, &error))?;
        sync_dir(&dir)?;
    }
    sync_dir(&staging)?;
    let target = root.join(hub.as_str());
    std::fs::rename(&staging, &target).map_err(|error| io_error("rename hub directory", &target, &error))?;
    sync_dir(root)
}

/// Removes the directories of a hub: renamed first (atomic), then deleted.
///
/// # Errors
/// An I/O error.
pub(crate) fn remove_hub_dirs(root: &Path, hub: &LogName) -> Result<(), StoreError> {
    let dir = root.join(hub.as_str());
    let doomed = root.join(format!("{hub}.deleting"));
    remove_leftover(&doomed)?;
    std::fs::rename(&dir, &doomed).map_err(|error| io_error("rename hub directory", &dir, &error))?;
    sync_dir(root)?;
    std::fs::remove_dir_all(&doomed).map_err(|error| io_error("remove hub directory", &doomed, &error))
}

/// Removes a directory left over by an interrupted create or delete, if there is one.
pub(crate) fn remove_leftover(dir: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            tracing::warn!(dir = %dir.display(), "removed a directory left by an interrupted hub change");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error("remove directory", dir, &error)),
    }
}
