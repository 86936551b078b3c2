//! One segment file of a partition: its name, its shared read handle, the in-memory index that
//! locates records in it, and a cursor that walks its records with positional reads.
//!
//! A segment is named after the offset of its first record (`<base offset, 20 digits>.seg`), so
//! a record's offset is `base offset + position in the file`. Only the partition's writer
//! appends to the last (active) segment; every other handle only reads, with `read_at`, so any
//! number of readers share one file descriptor without a seek position to fight over.
//!
//! The index of a segment is sparse: one entry (sequence number, position, enqueued time) at the
//! first record and then after every `index_interval_bytes` of records. Older segments found at
//! open are trusted and indexed lazily, on the first read or retention check that needs it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use outpost_core::StoreError;
use parking_lot::RwLock;

use super::io_error;
use super::record::{self, HEADER_LEN, RecordDefect, RecordHeader};

/// The file name suffix of segments.
const SUFFIX: &str = ".seg";

/// Returns the file name of the segment whose first record is at `base_offset`.
pub(crate) fn file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{SUFFIX}")
}

/// Returns the base offset a segment file name encodes, or `None` for any other name.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where and when one record was stored, relative to its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    /// Sequence number.
    pub seq: u64,
    /// Position in the segment file.
    pub pos: u64,
    /// Enqueued time, Unix milliseconds.
    pub ms: i64,
    /// Length of the whole record.
    pub len: u64,
}

/// A sparse index entry: the record at `pos` has sequence number `seq` and was enqueued at `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    seq: u64,
    pos: u64,
    ms: i64,
}

/// The sparse index of a segment and what it knows about the segment's records.
#[derive(Debug, Default)]
pub(crate) struct SparseIndex {
    entries: Vec<IndexEntry>,
    records: u64,
    last: Option<RecordMeta>,
    bytes_since_entry: u64,
}

impl SparseIndex {
    /// Records that `meta` follows the records indexed so far.
    pub(crate) fn push(&mut self, meta: RecordMeta, interval: u64) {
        if self.entries.is_empty() || self.bytes_since_entry >= interval {
            self.entries.push(IndexEntry {
                seq: meta.seq,
                pos: meta.pos,
                ms: meta.ms,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += meta.len;
        self.records += 1;
        self.last = Some(meta);
    }

    /// Returns how many records the segment holds.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// Returns the newest record of the segment.
    pub(crate) fn last(&self) -> Option<RecordMeta> {
        self.last
    }

    /// Returns a position at or before the first record whose sequence number is `seq` or more.
    fn start_for_seq(&self, seq: u64) -> u64 {
        let after = self.entries.partition_point(|entry| entry.seq <= seq);
        after.checked_sub(1).map_or(0, |index| self.entries[index].pos)
    }

    /// Returns a position at or before the first record at position `pos` or later.
    fn start_for_pos(&self, pos: u64) -> u64 {
        let after = self.entries.partition_point(|entry| entry.pos <= pos);
        after.checked_sub(1).map_or(0, |index| self.entries[index].pos)
    }

    /// Returns a position at or before the first record enqueued at `ms` or later (enqueued times
    /// never decrease within a partition).
    fn start_for_time(&self, ms: i64) -> u64 {
        let after = self.entries.partition_point(|entry| entry.ms < ms);
        after.checked_sub(1).map_or(0, |index| self.entries[index].pos)
    }
}

/// Where a read starts within a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seek {
    /// The first record with this sequence number or a later one.
    Seq(u64),
    /// The first record at this position in the file or a later one.
    Pos(u64),
    /// The first record enqueued at this time (Unix milliseconds) or later.
    Time(i64),
}

/// The mutable part of a segment, changed by the writer after each synced batch.
#[derive(Debug)]
struct SegmentState {
    /// Bytes of durable records: readers never look past this.
    len: u64,
    /// Sequence number of the first record; for an empty segment, of the next record.
    base_seq: u64,
    /// Enqueued time of the first record, if any.
    first_ms: Option<i64>,
    /// `None` for an older segment not indexed yet.
    index: Option<SparseIndex>,
}

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: u64,
    path: PathBuf,
    file: File,
    state: RwLock<SegmentState>,
}

impl Segment {
    /// Creates a new, empty segment file in `dir` whose first record will be `base_seq` at
    /// `base_offset`. The caller syncs the directory.
    ///
    /// # Errors
    /// When the file cannot be created (it must not exist).
    pub(crate) fn create(dir: &Path, base_offset: u64, base_seq: u64) -> Result<Self, StoreError> {
        let path = dir.join(file_name(base_offset));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| io_error("create segment", &path, &error))?;
        Ok(Self {
            base_offset,
            path,
            file,
            state: RwLock::new(SegmentState {
                len: 0,
                base_seq,
                first_ms: None,
                index: Some(SparseIndex::default()),
            }),
        })
    }

    /// Opens an older (sealed) segment read-only: its records are trusted and indexed on first
    /// use; only the first header is read now.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the segment is empty or its first header is invalid.
    pub(crate) fn open_sealed(path: PathBuf, base_offset: u64) -> Result<Self, StoreError> {
        let file = File::open(&path).map_err(|error| io_error("open segment", &path, &error))?;
        let len = file
            .metadata()
            .map_err(|error| io_error("inspect segment", &path, &error))?
            .len();
        let mut header = [0; HEADER_LEN];
        let read =
            read_full_at(&file, &mut header, 0).map_err(|error| io_error("read segment", &path, &error))?;
        let first = record::decode_header(&header[..read]).map_err(|defect| corrupt_at(&path, 0, defect))?;
        Ok(Self {
            base_offset,
            path,
            file,
            state: RwLock::new(SegmentState {
                len,
                base_seq: first.sequence_number,
                first_ms: Some(first.enqueued_ms),
                index: None,
            }),
        })
    }

    /// Wraps the recovered last segment: `file` is open for writing, `index` covers every
    /// valid record, which end at `len`.
    pub(crate) fn recovered(
        path: PathBuf,
        base_offset: u64,
        file: File,
        len: u64,
        base_seq: u64,
        index: SparseIndex,
        first_ms: Option<i64>,
    ) -> Self {
        Self {
            base_offset,
            path,
            file,
            state: RwLock::new(SegmentState {
                len,
                base_seq,
                first_ms,
                index: Some(index),
            }),
        }
    }

    /// Returns the offset of the segment's first byte.
    pub(crate) fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Returns the file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the file handle (positional reads and, for the active segment, writes).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Returns the length of the durable records.
    pub(crate) fn len(&self) -> u64 {
        self.state.read().len
    }

    /// Returns the sequence number of the first record (of the next one when empty).
    pub(crate) fn base_seq(&self) -> u64 {
        self.state.read().base_seq
    }

    /// Returns the enqueued time of the first record, or `None` when the segment is empty.
    pub(crate) fn first_ms(&self) -> Option<i64> {
        self.state.read().first_ms
    }

    /// Makes records durable up to `len` visible, and indexes them (writer only, after a sync).
    pub(crate) fn publish(&self, len: u64, records: &[RecordMeta], interval: u64) {
        let mut state = self.state.write();
        debug_assert!(len >= state.len, "segments only grow");
        state.len = len;
        if state.first_ms.is_none() {
            state.first_ms = records.first().map(|meta| meta.ms);
        }
        if let Some(index) = state.index.as_mut() {
            for meta in records {
                index.push(*meta, interval);
            }
        }
    }

    /// Runs `inspect` on the segment's index, scanning the file first when it is not indexed.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the scan meets an invalid record, or an I/O error.
    pub(crate) fn with_index<T>(
        &self,
        interval: u64,
        inspect: impl FnOnce(&SparseIndex) -> T,
    ) -> Result<T, StoreError> {
        {
            let state = self.state.read();
            if let Some(index) = state.index.as_ref() {
                return Ok(inspect(index));
            }
        }
        let (len, base_seq) = {
            let state = self.state.read();
            (state.len, state.base_seq)
        };
        let index = self.scan_index(len, base_seq, interval)?;
        let mut state = self.state.write();
        let index = state.index.get_or_insert(index);
        Ok(inspect(index))
    }

    /// Returns a position at or before the first record `seek` asks for.
    ///
    /// # Errors
    /// As [`Segment::with_index`].
    pub(crate) fn start_position(&self, seek: Seek, interval: u64) -> Result<u64, StoreError> {
        self.with_index(interval, |index| match seek {
            Seek::Seq(seq) => index.start_for_seq(seq),
            Seek::Pos(pos) => index.start_for_pos(pos),
            Seek::Time(ms) => index.start_for_time(ms),
        })
    }

    /// Reads every record of a sealed segment, checking each one, and builds its index.
    fn scan_index(&self, len: u64, base_seq: u64, interval: u64) -> Result<SparseIndex, StoreError> {
        let mut index = SparseIndex::default();
        let mut cursor = RecordCursor::new(&self.file, 0, len, SCAN_CHUNK);
        let mut expected = base_seq;
        while let Some(item) = cursor
            .next()
            .map_err(|error| io_error("read segment", &self.path, &error))?
        {
            let (header, pos, _) = item.map_err(|(pos, defect)| corrupt_at(&self.path, pos, defect))?;
            if header.sequence_number != expected {
                return Err(StoreError::Corrupt(format!(
                    "{} at byte {pos}: sequence number {} where {expected} was expected",
                    self.path.display(),
                    header.sequence_number
                )));
            }
            expected += 1;
            index.push(meta_of(&header, pos), interval);
        }
        Ok(index)
    }
}

/// Returns the index metadata of a decoded record at `pos`.
pub(crate) fn meta_of(header: &RecordHeader, pos: u64) -> RecordMeta {
    RecordMeta {
        seq: header.sequence_number,
        pos,
        ms: header.enqueued_ms,
        len: header.record_len() as u64,
    }
}

/// Returns the error for an invalid record at `pos` of the segment at `path`.
pub(crate) fn corrupt_at(path: &Path, pos: u64, defect: RecordDefect) -> StoreError {
    StoreError::Corrupt(format!("{} at byte {pos}: {defect}", path.display()))
}

/// How much a full-segment scan reads at once.
pub(crate) const SCAN_CHUNK: usize = 1024 * 1024;

/// Walks the records of a segment file from a position up to a limit, reading ahead in chunks
/// with positional reads.
#[derive(Debug)]
pub(crate) struct RecordCursor<'a> {
    file: &'a File,
    /// Position of the next record.
    pos: u64,
    /// Records end here.
    end: u64,
    /// Read-ahead bytes, starting at file position `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
}

/// A decoded record: header, position in the file, payload.
pub(crate) type CursorRecord<'b> = (RecordHeader, u64, &'b [u8]);

impl<'a> RecordCursor<'a> {
    /// Returns a cursor over the records of `file` between `pos` and `end`, reading at least
    /// `chunk` bytes at a time.
    pub(crate) fn new(file: &'a File, pos: u64, end: u64, chunk: usize) -> Self {
        Self {
            file,
            pos,
            end,
            buf: Vec::new(),
            buf_start: pos,
            chunk: chunk.max(HEADER_LEN),
        }
    }

    /// Returns the next record, `None` at the end, or the position and defect of an invalid
    /// record (the cursor then stays there).
    ///
    /// # Errors
    /// When reading the file fails.
    pub(crate) fn next(&mut self) -> std::io::Result<Option<Result<CursorRecord<'_>, (u64, RecordDefect)>>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let pos = self.pos;
        let available = usize::try_from(self.end - pos).unwrap_or(usize::MAX);
        if available < HEADER_LEN {
            return Ok(Some(Err((pos, RecordDefect::Truncated { needed: HEADER_LEN }))));
        }
        let start = self.fill(HEADER_LEN)?;
        let header = match record::decode_header(&self.buf[start..]) {
            Ok(header) => header,
            Err(defect) => return Ok(Some(Err((pos, defect)))),
        };
        let record_len = header.record_len();
        if available < record_len {
            return Ok(Some(Err((pos, RecordDefect::Truncated { needed: record_len }))));
        }
        let start = self.fill(record_len)?;
        match record::decode(&self.buf[start..]) {
            Ok((header, payload)) => {
                self.pos += record_len as u64;
                Ok(Some(Ok((
                    header,
                    pos,
                    &self.buf[start + payload.start..start + payload.end],
                ))))
            }
            Err(defect) => Ok(Some(Err((pos, defect)))),
        }
    }

    /// Makes sure `buf` holds `need` bytes from `pos` (or up to `end`, whichever is first);
    /// returns where they start in `buf`.
    fn fill(&mut self, need: usize) -> std::io::Result<usize> {
        if let Some(offset) = self.pos.checked_sub(self.buf_start) {
            let offset = usize::try_from(offset).unwrap_or(usize::MAX);
            if offset.saturating_add(need) <= self.buf.len() {
                return Ok(offset);
            }
        }
        let available = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let size = need.max(self.chunk).min(available);
        self.buf.resize(size, 0);
        let read = read_full_at(self.file, &mut self.buf, self.pos)?;
        // A file shorter than the caller believed: keep what is there, and let decoding report
        // the record as truncated.
        self.buf.truncate(read);
        self.buf_start = self.pos;
        Ok(0)
    }
}

/// Reads into `buf` from `pos` until it is full or the file ends; returns the bytes read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(read) => done += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort_by_offset() {
        assert_eq!(file_name(0), "00000000000000000000.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert!(file_name(9) < file_name(10));
        for bad in [
            "1.seg",
            "0000000000000000000x.seg",
            "00000000000000000000.log",
            "x",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    fn meta(seq: u64, pos: u64, ms: i64) -> RecordMeta {
        RecordMeta {
            seq,
            pos,
            ms,
            len: 100,
        }
    }

    #[test]
    fn the_sparse_index_finds_a_start_at_or_before_the_target() {
        let mut index = SparseIndex::default();
        for i in 0..10 {
            index.push(meta(20 + i, i * 100, 1_000 + (i as i64 / 3)), 250);
        }
        // Entries at records 0, 3, 6, 9 (every 300 bytes >= 250).
        assert_eq!(index.records(), 10);
        assert_eq!(index.start_for_seq(0), 0);
        assert_eq!(index.start_for_seq(24), 300);
        assert_eq!(index.start_for_seq(29), 900);
        assert_eq!(index.start_for_seq(99), 900);
        assert_eq!(index.start_for_pos(650), 600);
        assert_eq!(
            index.start_for_time(1_001),
            0,
            "record 3 is the first at 1001, entry 0 is before it"
        );
        assert_eq!(index.start_for_time(1_002), 300);
        assert_eq!(index.last(), Some(meta(29, 900, 1_003)));
    }
}
