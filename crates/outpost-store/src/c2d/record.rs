//! The stored form of a queued message: a fixed header the queue reads and rewrites on every
//! lock and settlement, followed by the message, which is only decoded to be returned.
//!
//! All integers are big-endian; strings are UTF-8 with a `u32` length before them.
//!
//! | offset | size | field                                                                    |
//! |--------|------|--------------------------------------------------------------------------|
//! | 0      | 1    | format version, `1`                                                      |
//! | 1      | 4    | delivery count (`u32`)                                                   |
//! | 5      | 8    | lock expiry in ticks (`i64`; `i64::MIN`: not locked)                     |
//! | 13     | 16   | lock token (`u128`, the token's UUID; 0 when not locked)                 |
//! | 29     | 8    | message expiry in ticks (`i64`; `i64::MIN`: never)                       |
//! | 37     | 8    | enqueued time in ticks (`i64`; `i64::MIN`: never)                        |
//! | 45     | 1    | ack: 0 none, 1 positive, 2 negative, 3 full                              |
//! | 46     | 1    | which optional strings follow: bit 0 message id, 1 correlation id, 2 user id, 3 content type, 4 content encoding |
//! | 47     | ..   | the optional strings present, in bit order; then `to`; then a `u32` property count and each name and value; then the body (`u32` length, bytes) |
//!
//! A record must end exactly after the body. Ticks are 100 ns since the Unix epoch, Azure's
//! resolution, so times read back exactly as they were enqueued.

use bytes::Bytes;
use outpost_core::{C2dLock, C2dMessage, FeedbackAck, QueuedMessage, StoreError};
use outpost_model::Timestamp;
use uuid::Uuid;

use super::layout::{from_ticks, ticks};

/// The format version in byte 0.
const VERSION: u8 = 1;
/// Length of the part [`Header`] covers.
const HEADER_LEN: usize = 37;
/// Ticks standing for "not locked" and "never".
const NONE_TICKS: i64 = i64::MIN;

/// The delivery state and expiry of a record: what the queue reads without decoding the
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// How often the message was handed out.
    pub(super) delivery_count: u32,
    /// The lock, held or lapsed.
    pub(super) lock: Option<Lock>,
    /// The message's expiry in ticks; `None` when it never expires.
    pub(super) expiry: Option<i64>,
}

/// A lock as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lock {
    /// The token's UUID.
    pub(super) token: u128,
    /// When the lock lapses, in ticks.
    pub(super) until: i64,
}

impl Lock {
    /// Returns whether the lock is still held at `now` (ticks): it lapses at `until`.
    pub(super) fn is_held(self, now: i64) -> bool {
        self.until > now
    }
}

/// Encodes a new record: not yet delivered, not locked.
///
/// # Errors
/// [`StoreError::Backend`] when a string or the body is longer than 4 GiB.
pub(super) fn encode(message: &C2dMessage) -> Result<Vec<u8>, StoreError> {
    let header = Header {
        delivery_count: 0,
        lock: None,
        expiry: ticks(message.expiry),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + 64 + message.to.len() + message.body.len());
    out.resize(HEADER_LEN, 0);
    write_header(&mut out, header);
    out.extend_from_slice(&ticks(message.enqueued_time).unwrap_or(NONE_TICKS).to_be_bytes());
    out.push(match message.ack {
        FeedbackAck::None => 0,
        FeedbackAck::Positive => 1,
        FeedbackAck::Negative => 2,
        FeedbackAck::Full => 3,
    });
    let optional = optional_strings(message);
    let mut present = 0_u8;
    for (bit, value) in optional.iter().enumerate() {
        if value.is_some() {
            present |= 1 << bit;
        }
    }
    out.push(present);
    for value in optional.into_iter().flatten() {
        put_bytes(&mut out, value.as_bytes())?;
    }
    put_bytes(&mut out, message.to.as_bytes())?;
    put_len(&mut out, message.application_properties.len())?;
    for (name, value) in &message.application_properties {
        put_bytes(&mut out, name.as_bytes())?;
        put_bytes(&mut out, value.as_bytes())?;
    }
    put_bytes(&mut out, &message.body)?;
    Ok(out)
}

/// Reads the header of a record.
///
/// # Errors
/// A description of the damage when the record is too short or of an unknown version.
pub(super) fn read_header(record: &[u8]) -> Result<Header, String> {
    let mut reader = Reader::new(record);
    let version = reader.u8()?;
    if version != VERSION {
        return Err(format!("unknown record version {version}"));
    }
    let delivery_count = reader.u32()?;
    let until = reader.i64()?;
    let token = reader.u128()?;
    let expiry = reader.i64()?;
    Ok(Header {
        delivery_count,
        lock: (until != NONE_TICKS).then_some(Lock { token, until }),
        expiry: (expiry != NONE_TICKS).then_some(expiry),
    })
}

/// Returns `record` with its header replaced (the message bytes are copied, not decoded).
pub(super) fn with_header(record: &[u8], header: Header) -> Vec<u8> {
    let mut out = record.to_vec();
    if out.len() < HEADER_LEN {
        // Callers read the header first, so this cannot happen; stay total anyway.
        out.resize(HEADER_LEN, 0);
    }
    write_header(&mut out, header);
    out
}

/// Decodes a whole record into the queued message it holds.
///
/// # Errors
/// A description of the damage (never quoting the contents) when it does not decode.
pub(super) fn decode(record: &[u8], sequence_number: u64) -> Result<QueuedMessage, String> {
    let header = read_header(record)?;
    let mut reader = Reader::new(record.get(HEADER_LEN..).unwrap_or_default());
    let enqueued_time = reader.time()?;
    let ack = match reader.u8()? {
        0 => FeedbackAck::None,
        1 => FeedbackAck::Positive,
        2 => FeedbackAck::Negative,
        3 => FeedbackAck::Full,
        other => return Err(format!("unknown ack {other}")),
    };
    let present = reader.u8()?;
    if present >> 5 != 0 {
        return Err(format!("unknown optional fields {present:#04x}"));
    }
    let mut optional: [Option<String>; 5] = Default::default();
    for (bit, slot) in optional.iter_mut().enumerate() {
        if present & (1 << bit) != 0 {
            *slot = Some(reader.string()?);
        }
    }
    let to = reader.string()?;
    let count = reader.u32()?;
    // Each property takes at least 8 bytes, which bounds the allocation by the record's size.
    let mut application_properties = Vec::with_capacity((count as usize).min(reader.remaining() / 8));
    for _ in 0..count {
        let name = reader.string()?;
        let value = reader.string()?;
        application_properties.push((name, value));
    }
    let body = Bytes::copy_from_slice(reader.bytes()?);
    if reader.remaining() != 0 {
        return Err(format!("{} bytes after the body", reader.remaining()));
    }
    let expiry = match header.expiry {
        Some(expiry) => from_ticks(expiry).ok_or("expiry out of range")?,
        None => Timestamp::NEVER,
    };
    let lock = match header.lock {
        Some(lock) => Some(C2dLock {
            token: token_string(lock.token),
            until: from_ticks(lock.until).ok_or("lock expiry out of range")?,
        }),
        None => None,
    };
    let [
        message_id,
        correlation_id,
        user_id,
        content_type,
        content_encoding,
    ] = optional;
    Ok(QueuedMessage {
        sequence_number,
        message: C2dMessage {
            message_id,
            correlation_id,
            user_id,
            to,
            content_type,
            content_encoding,
            expiry,
            ack,
            application_properties,
            body,
            enqueued_time,
        },
        delivery_count: header.delivery_count,
        lock,
    })
}

/// Returns the token string of a lock: the UUID, hyphenated and lowercase.
pub(super) fn token_string(token: u128) -> String {
    Uuid::from_u128(token).hyphenated().to_string()
}

/// Returns the lock id a token string names, or `None` when no lock could have issued it.
pub(super) fn parse_token(token: &str) -> Option<u128> {
    let uuid = Uuid::try_parse(token).ok()?;
    // Only the exact form handed out counts; other spellings of the UUID are unknown tokens.
    (token_string(uuid.as_u128()) == token && !uuid.is_nil()).then_some(uuid.as_u128())
}

/// Returns a fresh random lock id (a version 4 UUID, never zero).
pub(super) fn new_token() -> u128 {
    Uuid::new_v4().as_u128()
}

fn optional_strings(message: &C2dMessage) -> [Option<&String>; 5] {
    [
        message.message_id.as_ref(),
        message.correlation_id.as_ref(),
        message.user_id.as_ref(),
        message.content_type.as_ref(),
        message.content_encoding.as_ref(),
    ]
}

fn write_header(out: &mut [u8], header: Header) {
    let (until, token) = header
        .lock
        .map_or((NONE_TICKS, 0), |lock| (lock.until, lock.token));
    out[0] = VERSION;
    out[1..5].copy_from_slice(&header.delivery_count.to_be_bytes());
    out[5..13].copy_from_slice(&until.to_be_bytes());
    out[13..29].copy_from_slice(&token.to_be_bytes());
    out[29..37].copy_from_slice(&header.expiry.unwrap_or(NONE_TICKS).to_be_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), StoreError> {
    let len = u32::try_from(len)
        .map_err(|_| StoreError::Backend("a cloud-to-device message field is longer than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    put_len(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Bounds-checked reads from a record.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| "the record ends early".to_owned())?;
        self.rest = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }

    fn u128(&mut self) -> Result<u128, String> {
        self.take().map(u128::from_be_bytes)
    }

    fn time(&mut self) -> Result<Timestamp, String> {
        match self.i64()? {
            NONE_TICKS => Ok(Timestamp::NEVER),
            ticks => from_ticks(ticks).ok_or_else(|| "a time out of range".to_owned()),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        if len > self.rest.len() {
            return Err("the record ends early".to_owned());
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, String> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string is not UTF-8".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> C2dMessage {
        C2dMessage {
            message_id: Some("m-1".into()),
            correlation_id: None,
            user_id: Some("user".into()),
            to: "/devices/d/messages/devicebound".into(),
            content_type: None,
            content_encoding: Some("utf-8".into()),
            expiry: Timestamp::from_unix_millis(1_800_000_000_123),
            ack: FeedbackAck::Negative,
            application_properties: vec![("z".into(), "1".into()), ("a".into(), String::new())],
            body: Bytes::from_static(b"\x00\xffbody"),
            enqueued_time: Timestamp::from_unix_millis(1_799_999_000_001),
        }
    }

    #[test]
    fn a_record_round_trips_and_its_header_is_rewritten_in_place() {
        let record = encode(&message()).unwrap();
        let decoded = decode(&record, 7).unwrap();
        assert_eq!(decoded.sequence_number, 7);
        assert_eq!(decoded.message, message());
        assert_eq!((decoded.delivery_count, decoded.lock), (0, None));

        let header = read_header(&record).unwrap();
        let token = new_token();
        let until = ticks(Timestamp::from_unix_seconds(1_800_000_100)).unwrap();
        let locked = with_header(
            &record,
            Header {
                delivery_count: 3,
                lock: Some(Lock { token, until }),
                ..header
            },
        );
        let decoded = decode(&locked, 7).unwrap();
        assert_eq!(decoded.message, message());
        assert_eq!(decoded.delivery_count, 3);
        let lock = decoded.lock.unwrap();
        assert_eq!(lock.until, Timestamp::from_unix_seconds(1_800_000_100));
        assert_eq!(parse_token(&lock.token), Some(token));
    }

    #[test]
    fn a_message_without_optional_fields_or_expiry_round_trips() {
        let message = C2dMessage {
            message_id: None,
            user_id: None,
            content_encoding: None,
            expiry: Timestamp::NEVER,
            ack: FeedbackAck::None,
            application_properties: Vec::new(),
            body: Bytes::new(),
            ..message()
        };
        let record = encode(&message).unwrap();
        assert_eq!(read_header(&record).unwrap().expiry, None);
        assert_eq!(decode(&record, 1).unwrap().message, message);
    }

    #[test]
    fn every_truncation_and_trailing_garbage_is_an_error_not_a_panic() {
        let record = encode(&message()).unwrap();
        for len in 0..record.len() {
            assert!(
                decode(&record[..len], 1).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(decode(&longer, 1).is_err());
        let mut versioned = record;
        versioned[0] = 9;
        assert!(read_header(&versioned).is_err());
    }

    #[test]
    fn damaged_fields_are_errors() {
        let record = encode(&message()).unwrap();
        let mut bad_ack = record.clone();
        bad_ack[45] = 7;
        assert!(decode(&bad_ack, 1).is_err());
        let mut bad_bits = record.clone();
        bad_bits[46] |= 0x80;
        assert!(decode(&bad_bits, 1).is_err());
        let mut huge_count = record;
        // Claims 4 billion properties after the optional strings and `to`: must fail, not allocate.
        let at = 47 + (4 + 3) + (4 + 4) + (4 + 5) + 4 + "/devices/d/messages/devicebound".len();
        huge_count[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge_count, 1).is_err());
    }

    #[test]
    fn only_the_issued_spelling_of_a_token_parses() {
        let token = 0x0123_4567_89ab_4cde_8f01_2345_6789_abcd;
        let text = token_string(token);
        assert_eq!(text, "01234567-89ab-4cde-8f01-23456789abcd");
        assert_eq!(parse_token(&text), Some(token));
        let fresh = new_token();
        assert_eq!(parse_token(&token_string(fresh)), Some(fresh));
        assert_eq!(parse_token(&text.to_uppercase()), None);
        assert_eq!(parse_token(&text.replace('-', "")), None);
        assert_eq!(parse_token("00000000-0000-0000-0000-000000000000"), None);
        assert_eq!(parse_token("not a token"), None);
        assert_eq!(parse_token(""), None);
    }
}
