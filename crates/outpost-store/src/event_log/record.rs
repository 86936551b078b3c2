//! The record format of a segment file, and its checksum.
//!
//! A segment is a plain concatenation of records; a record's offset is the segment's base offset
//! plus the record's position in the file. Each record is a fixed header followed by the payload,
//! all integers little-endian:
//!
//! | bytes   | field                                                          |
//! |---------|----------------------------------------------------------------|
//! | 0..4    | CRC-32C (Castagnoli) of bytes 4..28 and of the payload         |
//! | 4..8    | payload length                                                 |
//! | 8       | format version ([`FORMAT_VERSION`])                            |
//! | 9       | flags (0; reserved)                                            |
//! | 10..12  | reserved (0)                                                   |
//! | 12..20  | sequence number                                                |
//! | 20..28  | enqueued time, Unix milliseconds (signed)                      |
//! | 28..    | payload                                                        |
//!
//! Decoding never trusts the bytes: a length past [`MAX_PAYLOAD_BYTES`] or past the end of the
//! data, an unknown version or a checksum mismatch is reported, not panicked on.

/// Length of the record header.
pub(crate) const HEADER_LEN: usize = 28;

/// The only record layout this build writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// Hard upper bound of a payload; larger lengths in a header mean the header is garbage.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// The decoded header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    /// Length of the payload that follows the header.
    pub payload_len: u32,
    /// Per-partition sequence number.
    pub sequence_number: u64,
    /// Enqueued time in Unix milliseconds.
    pub enqueued_ms: i64,
}

impl RecordHeader {
    /// Returns the length of the whole record (header and payload).
    pub(crate) fn record_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }
}

/// Why bytes are not a whole, valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordDefect {
    /// The data ends before the header or the payload does (`needed` bytes in all).
    Truncated {
        /// Bytes the record needs from its start.
        needed: usize,
    },
    /// The header announces a payload longer than any record may have.
    BadLength(u32),
    /// The header names a format version this build does not know.
    BadVersion(u8),
    /// The checksum does not match the contents.
    BadChecksum,
}

impl std::fmt::Display for RecordDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated { needed } => write!(f, "record truncated ({needed} bytes needed)"),
            Self::BadLength(length) => write!(f, "implausible payload length {length}"),
            Self::BadVersion(version) => write!(f, "unknown record format version {version}"),
            Self::BadChecksum => f.write_str("checksum mismatch"),
        }
    }
}

/// Appends the encoded record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, sequence_number: u64, enqueued_ms: i64, payload: &[u8]) {
    debug_assert!(
        payload.len() <= MAX_PAYLOAD_BYTES,
        "callers check payload sizes first"
    );
    let start = out.len();
    let payload_len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&[FORMAT_VERSION, 0, 0, 0]);
    out.extend_from_slice(&sequence_number.to_le_bytes());
    out.extend_from_slice(&enqueued_ms.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the header at the start of `data` without checking the checksum (which needs the
/// payload).
///
/// # Errors
/// [`RecordDefect::Truncated`] when `data` is shorter than a header, or a defect of the header.
pub(crate) fn decode_header(data: &[u8]) -> Result<RecordHeader, RecordDefect> {
    let Some(header) = data.get(..HEADER_LEN) else {
        return Err(RecordDefect::Truncated { needed: HEADER_LEN });
    };
    let payload_len = u32::from_le_bytes(array(&header[4..8]));
    if payload_len as usize > MAX_PAYLOAD_BYTES {
        return Err(RecordDefect::BadLength(payload_len));
    }
    if header[8] != FORMAT_VERSION {
        return Err(RecordDefect::BadVersion(header[8]));
    }
    Ok(RecordHeader {
        payload_len,
        sequence_number: u64::from_le_bytes(array(&header[12..20])),
        enqueued_ms: i64::from_le_bytes(array(&header[20..28])),
    })
}

/// Decodes and verifies the whole record at the start of `data`; returns its header and the
/// payload's range within `data`.
///
/// # Errors
/// Any [`RecordDefect`].
pub(crate) fn decode(data: &[u8]) -> Result<(RecordHeader, std::ops::Range<usize>), RecordDefect> {
    let header = decode_header(data)?;
    let end = header.record_len();
    let Some(record) = data.get(..end) else {
        return Err(RecordDefect::Truncated { needed: end });
    };
    let stored = u32::from_le_bytes(array(&record[..4]));
    if crc32c::crc32c(&record[4..]) != stored {
        return Err(RecordDefect::BadChecksum);
    }
    Ok((header, HEADER_LEN..end))
}

/// Copies a slice whose length the caller has fixed into an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(sequence_number: u64, enqueued_ms: i64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, sequence_number, enqueued_ms, payload);
        out
    }

    #[test]
    fn a_record_round_trips() {
        let bytes = encoded(7, 1_700_000_000_123, b"hello");
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        let (header, payload) = decode(&bytes).expect("decode");
        assert_eq!(
            header,
            RecordHeader {
                payload_len: 5,
                sequence_number: 7,
                enqueued_ms: 1_700_000_000_123
            }
        );
        assert_eq!(&bytes[payload], b"hello");
    }

    #[test]
    fn an_empty_payload_is_a_valid_record() {
        let bytes = encoded(0, 0, b"");
        assert_eq!(decode(&bytes).expect("decode").0.payload_len, 0);
    }

    #[test]
    fn every_truncation_is_reported_as_truncated() {
        let bytes = encoded(1, 2, b"payload");
        for cut in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut]), Err(RecordDefect::Truncated { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = encoded(3, 4, b"some payload bytes");
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x40;
            assert!(decode(&damaged).is_err(), "flip at {position} went unnoticed");
        }
    }

    #[test]
    fn zeroes_are_not_a_record() {
        assert!(decode(&[0; 64]).is_err());
    }

    #[test]
    fn implausible_lengths_are_rejected_before_reading_the_payload() {
        let mut bytes = encoded(1, 2, b"x");
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_header(&bytes), Err(RecordDefect::BadLength(u32::MAX)));
    }
}
