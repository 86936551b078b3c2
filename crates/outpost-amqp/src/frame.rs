//! Protocol headers (AMQP 1.0 §2.2, §5.1, §5.2) and frames (§2.3): a resumable [`FrameDecoder`] over a
//! `BytesMut` and the frame writers.
//!
//! A connection starts with a protocol header; after a SASL exchange a second one (plain AMQP) follows
//! (§5.3.2). The engine knows which to expect and calls [`decode_protocol_header`] then, and
//! [`FrameDecoder::decode`] otherwise.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::AmqpCodecError;
use crate::performatives::{Performative, Transfer};
use crate::sasl::SaslFrame;
use crate::value::Value;

/// The smallest max-frame-size a peer may set, and the largest frame either side may send before the
/// open frames are exchanged (§2.7.1 `MIN-MAX-FRAME-SIZE`).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// The frame size the hub accepts by default: what pyamqp asks for (wire reference §7.1), room for a
/// 256 KiB IoT Hub message and a 1 MiB Event Hubs batch in one transfer.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1024 * 1024;

/// The length of the fixed frame header (§2.3.1).
pub const FRAME_HEADER_LEN: usize = 8;

/// The protocol a protocol header asks for (§2.2: `AMQP`, protocol id, major, minor, revision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolId {
    /// `AMQP\x00\x01\x00\x00`: plain AMQP (the IoT Hub device and service SDKs, without SASL, wire
    /// reference §3, §6).
    Amqp,
    /// `AMQP\x02\x01\x00\x00`: an in-band TLS upgrade (§5.2).
    Tls,
    /// `AMQP\x03\x01\x00\x00`: a SASL layer first (§5.3).
    Sasl,
}

impl ProtocolId {
    /// Returns the 8-byte protocol header for this protocol at version 1.0.0.
    pub const fn header(self) -> [u8; 8] {
        let id = match self {
            Self::Amqp => 0,
            Self::Tls => 2,
            Self::Sasl => 3,
        };
        [b'A', b'M', b'Q', b'P', id, 1, 0, 0]
    }
}

/// Reads a protocol header from the front of `buf`: `None` until its 8 bytes are there.
///
/// # Errors
///
/// Returns [`AmqpCodecError::UnsupportedProtocolHeader`] for any other 8 bytes, or as soon as the
/// first bytes are not `AMQP` (an HTTP request, a TLS ClientHello on a plain port). Per §2.2 the engine
/// then sends the header it supports and closes the socket.
pub fn decode_protocol_header(buf: &mut BytesMut) -> Result<Option<ProtocolId>, AmqpCodecError> {
    let seen = buf.len().min(8);
    let mut header = [0; 8];
    header[..seen].copy_from_slice(&buf[..seen]);
    let prefix = seen.min(4);
    if buf[..prefix] != b"AMQP"[..prefix] {
        return Err(AmqpCodecError::UnsupportedProtocolHeader(header));
    }
    if seen < 8 {
        return Ok(None);
    }
    let id = match header {
        [b'A', b'M', b'Q', b'P', 0, 1, 0, 0] => ProtocolId::Amqp,
        [b'A', b'M', b'Q', b'P', 2, 1, 0, 0] => ProtocolId::Tls,
        [b'A', b'M', b'Q', b'P', 3, 1, 0, 0] => ProtocolId::Sasl,
        _ => return Err(AmqpCodecError::UnsupportedProtocolHeader(header)),
    };
    let _header = buf.split_to(8);
    Ok(Some(id))
}

/// The frame type byte (§2.3.1).
const AMQP_FRAME: u8 = 0x00;
const SASL_FRAME: u8 = 0x01;

/// The type of a frame (§2.3.1, byte 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// `0x00`: an AMQP frame, carrying a performative (§2.3.2).
    Amqp,
    /// `0x01`: a SASL frame (§5.3.1).
    Sasl,
}

/// The fixed 8-byte header of a frame (§2.3.1): size, data offset, type, and the type-specific field
/// (the channel of AMQP frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// The total frame size in bytes, header included.
    pub size: u32,
    /// The data offset in 4-byte words: where the body starts (2 without extended header).
    pub doff: u8,
    /// The frame type.
    pub frame_type: FrameType,
    /// The channel (AMQP frames); ignored for SASL frames.
    pub channel: u16,
}

impl FrameHeader {
    /// Parses and checks a frame header: size at least 8, data offset at least 2 and inside the frame,
    /// known type.
    ///
    /// # Errors
    ///
    /// Returns [`AmqpCodecError::InvalidFrameHeader`] or [`AmqpCodecError::UnknownFrameType`].
    pub fn parse(bytes: [u8; 8]) -> Result<Self, AmqpCodecError> {
        let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let doff = bytes[4];
        // §2.3.1: doff is at least 2 (the 8-byte header) and the body starts inside the frame.
        if size < FRAME_HEADER_LEN as u32 || doff < 2 || u32::from(doff) * 4 > size {
            return Err(AmqpCodecError::InvalidFrameHeader { size, doff });
        }
        let frame_type = match bytes[5] {
            AMQP_FRAME => FrameType::Amqp,
            SASL_FRAME => FrameType::Sasl,
            other => return Err(AmqpCodecError::UnknownFrameType(other)),
        };
        Ok(Self {
            size,
            doff,
            frame_type,
            channel: u16::from_be_bytes([bytes[6], bytes[7]]),
        })
    }

    /// Returns the header's 8 bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let [s0, s1, s2, s3] = self.size.to_be_bytes();
        let [c0, c1] = self.channel.to_be_bytes();
        let frame_type = match self.frame_type {
            FrameType::Amqp => AMQP_FRAME,
            FrameType::Sasl => SASL_FRAME,
        };
        [s0, s1, s2, s3, self.doff, frame_type, c0, c1]
    }
}

/// A decoded frame (§2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The channel (AMQP frames); for SASL frames the ignored type-specific field, kept as read.
    pub channel: u16,
    /// What the frame carries.
    pub body: FrameBody,
}

/// The body of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameBody {
    /// An AMQP frame with an empty body: a heartbeat that only resets the idle timer (§2.4.5).
    Heartbeat,
    /// An AMQP frame (type `0x00`): a performative and the bytes after it, which are a message
    /// fragment for transfers and empty otherwise.
    Amqp {
        /// The performative.
        performative: Performative,
        /// The payload; a slice of the read buffer, not a copy.
        payload: Bytes,
    },
    /// A SASL frame (type `0x01`, §5.3.1).
    Sasl(SaslFrame),
}

/// Decodes frames from a byte buffer, resuming across partial reads.
///
/// Keeps no state between calls besides its limit: a partial frame stays in the caller's buffer.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_frame_size: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameDecoder {
    /// Returns a decoder refusing frames larger than `max_frame_size` bytes (raised to
    /// [`MIN_MAX_FRAME_SIZE`] if below). Use the max-frame-size the hub sends in its open.
    pub fn new(max_frame_size: u32) -> Self {
        Self {
            max_frame_size: max_frame_size.max(MIN_MAX_FRAME_SIZE),
        }
    }

    /// Returns the largest frame this decoder accepts.
    pub const fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Changes the limit, e.g. once the open frames are exchanged.
    pub fn set_max_frame_size(&mut self, max_frame_size: u32) {
        self.max_frame_size = max_frame_size.max(MIN_MAX_FRAME_SIZE);
    }

    /// Returns the next complete frame, or `None` if `buf` holds only part of one.
    ///
    /// On `Ok(Some(_))` exactly one frame's bytes are consumed. On `Ok(None)` nothing is consumed and,
    /// once the header is known, `buf` has reserved room for the rest of the frame. The header is checked
    /// (size, data offset, type, limit) as soon as its 8 bytes are present, before the body is buffered.
    /// Extended header bytes (§2.3.1, between byte 8 and the data offset) are skipped.
    ///
    /// # Errors
    ///
    /// Returns an [`AmqpCodecError`] for a malformed header or body; the connection must then be
    /// closed (with [`AmqpCodecError::condition`]), and how much of `buf` was consumed is unspecified.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, AmqpCodecError> {
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let mut header = [0; FRAME_HEADER_LEN];
        header.copy_from_slice(&buf[..FRAME_HEADER_LEN]);
        let FrameHeader {
            size,
            doff,
            frame_type,
            channel,
        } = FrameHeader::parse(header)?;
        if size > self.max_frame_size {
            return Err(AmqpCodecError::FrameTooLarge {
                size,
                max: self.max_frame_size,
            });
        }
        let size = size as usize;
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        let mut body = buf.split_to(size).freeze().split_off(usize::from(doff) * 4);
        let body = if frame_type == FrameType::Amqp {
            if body.is_empty() {
                FrameBody::Heartbeat
            } else {
                let performative = Performative::try_from_value(Value::decode(&mut body)?)?;
                FrameBody::Amqp {
                    performative,
                    payload: body,
                }
            }
        } else {
            if body.is_empty() {
                return Err(AmqpCodecError::EmptySaslFrame);
            }
            let sasl = SaslFrame::try_from_value(Value::decode(&mut body)?)?;
            if !body.is_empty() {
                return Err(AmqpCodecError::TrailingBytes(body.len()));
            }
            FrameBody::Sasl(sasl)
        };
        Ok(Some(Frame { channel, body }))
    }
}

/// Appends `frame`.
pub fn encode_frame(buf: &mut BytesMut, frame: &Frame) {
    match &frame.body {
        FrameBody::Heartbeat => write_frame(buf, AMQP_FRAME, frame.channel, |_| {}),
        FrameBody::Amqp {
            performative,
            payload,
        } => encode_amqp_frame(buf, frame.channel, performative, payload),
        FrameBody::Sasl(sasl) => write_frame(buf, SASL_FRAME, frame.channel, |buf| sasl.encode(buf)),
    }
}

/// Appends an AMQP frame on `channel` carrying `performative` and `payload` (empty except for
/// transfers). The caller keeps the frame within the peer's max-frame-size; for transfers
/// [`encode_transfer_frames`] splits the payload.
pub fn encode_amqp_frame(buf: &mut BytesMut, channel: u16, performative: &Performative, payload: &[u8]) {
    write_frame(buf, AMQP_FRAME, channel, |buf| {
        performative.encode(buf);
        buf.put_slice(payload);
    });
}

/// Appends a SASL frame (channel 0).
pub fn encode_sasl_frame(buf: &mut BytesMut, sasl: &SaslFrame) {
    write_frame(buf, SASL_FRAME, 0, |buf| sasl.encode(buf));
}

/// Appends an empty AMQP frame: a heartbeat (§2.4.5).
pub fn encode_heartbeat(buf: &mut BytesMut) {
    write_frame(buf, AMQP_FRAME, 0, |_| {});
}

/// Appends the transfers of one delivery, splitting `payload` so that no frame exceeds
/// `max_frame_size` (§2.6.14): every transfer but the last has `more` set, and the last keeps
/// `transfer.more`. Returns the number of frames written.
///
/// # Errors
///
/// Returns [`AmqpCodecError::PerformativeTooLarge`] when the transfer performative with one payload
/// byte does not fit a frame (the spec's `amqp:frame-size-too-small`); `buf` is then untouched.
pub fn encode_transfer_frames(
    buf: &mut BytesMut,
    channel: u16,
    transfer: &Transfer,
    payload: &[u8],
    max_frame_size: u32,
) -> Result<usize, AmqpCodecError> {
    // `more` is one byte whether true or false, so one measure fits every frame of the delivery.
    let mut measure = BytesMut::new();
    transfer.encode(&mut measure);
    let overhead = FRAME_HEADER_LEN + measure.len();
    let max = max_frame_size as usize;
    if overhead + usize::from(!payload.is_empty()) > max {
        return Err(AmqpCodecError::PerformativeTooLarge {
            size: overhead + 1,
            max: max_frame_size,
        });
    }
    let chunk = (max - overhead).max(1);
    let count = payload.len().div_ceil(chunk).max(1);
    let mut chunks = payload.chunks(chunk);
    for index in 0..count {
        let mut frame_transfer = transfer.clone();
        if index + 1 < count {
            frame_transfer.more = true;
        }
        let part = chunks.next().unwrap_or_default();
        encode_amqp_frame(buf, channel, &Performative::Transfer(frame_transfer), part);
    }
    Ok(count)
}

/// Writes a frame header (data offset 2, no extended header), the body written by `body`, then
/// patches the size.
fn write_frame(buf: &mut BytesMut, frame_type: u8, channel: u16, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u8(2);
    buf.put_u8(frame_type);
    buf.put_u16(channel);
    body(buf);
    let size = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::performatives::{Begin, Open};

    #[test]
    fn protocol_headers_are_recognised() {
        for id in [ProtocolId::Amqp, ProtocolId::Tls, ProtocolId::Sasl] {
            let mut buf = BytesMut::from(&id.header()[..]);
            buf.extend_from_slice(b"rest");
            assert_eq!(decode_protocol_header(&mut buf), Ok(Some(id)));
            assert_eq!(&buf[..], b"rest");
        }
        assert_eq!(&ProtocolId::Sasl.header(), b"AMQP\x03\x01\x00\x00");
        let mut partial = BytesMut::from(&b"AMQP\x00"[..]);
        assert_eq!(decode_protocol_header(&mut partial), Ok(None));
        assert_eq!(partial.len(), 5);
        let mut http = BytesMut::from(&b"GE"[..]);
        assert!(decode_protocol_header(&mut http).is_err());
        let mut old = BytesMut::from(&b"AMQP\x01\x01\x00\x0a"[..]);
        assert!(decode_protocol_header(&mut old).is_err());
        assert_eq!(decode_protocol_header(&mut BytesMut::new()), Ok(None));
    }

    #[test]
    fn frame_headers_parse_and_print() {
        let header = FrameHeader::parse([0, 0, 1, 0, 2, 1, 0, 7]).unwrap();
        assert_eq!(
            header,
            FrameHeader {
                size: 256,
                doff: 2,
                frame_type: FrameType::Sasl,
                channel: 7
            }
        );
        assert_eq!(header.to_bytes(), [0, 0, 1, 0, 2, 1, 0, 7]);
    }

    #[test]
    fn heartbeat_is_an_empty_frame() {
        let mut buf = BytesMut::new();
        encode_heartbeat(&mut buf);
        assert_eq!(&buf[..], [0, 0, 0, 8, 2, 0, 0, 0]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.body, FrameBody::Heartbeat);
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_resume_across_partial_reads_and_skip_extended_headers() {
        let mut encoded = BytesMut::new();
        let begin = Performative::Begin(Begin {
            remote_channel: Some(0),
            next_outgoing_id: 1,
            incoming_window: 5000,
            outgoing_window: 5000,
            handle_max: Some(255),
            ..Begin::default()
        });
        encode_amqp_frame(&mut encoded, 3, &begin, &[]);
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        for (index, byte) in encoded.iter().enumerate() {
            buf.put_u8(*byte);
            let result = decoder.decode(&mut buf).unwrap();
            if index + 1 < encoded.len() {
                assert_eq!(result, None);
            } else {
                let frame = result.unwrap();
                assert_eq!(frame.channel, 3);
                assert_eq!(
                    frame.body,
                    FrameBody::Amqp {
                        performative: begin.clone(),
                        payload: Bytes::new()
                    }
                );
            }
        }
        // The same frame with doff 3: four extended header bytes to skip.
        let mut extended = BytesMut::new();
        extended.put_u32(encoded.len() as u32 + 4);
        extended.put_slice(&[3, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef]);
        extended.put_slice(&encoded[8..]);
        let frame = decoder.decode(&mut extended).unwrap().unwrap();
        assert!(matches!(
            frame.body,
            FrameBody::Amqp {
                performative: Performative::Begin(_),
                ..
            }
        ));
    }

    #[test]
    fn bad_headers_are_refused_before_buffering() {
        let mut decoder = FrameDecoder::new(600);
        let cases: [(&[u8], AmqpCodecError); 4] = [
            (
                &[0, 0, 0, 7, 2, 0, 0, 0],
                AmqpCodecError::InvalidFrameHeader { size: 7, doff: 2 },
            ),
            (
                &[0, 0, 0, 8, 1, 0, 0, 0],
                AmqpCodecError::InvalidFrameHeader { size: 8, doff: 1 },
            ),
            (
                &[0, 0, 0, 8, 3, 0, 0, 0],
                AmqpCodecError::InvalidFrameHeader { size: 8, doff: 3 },
            ),
            (
                &[0, 1, 0, 0, 2, 0, 0, 0],
                AmqpCodecError::FrameTooLarge {
                    size: 65536,
                    max: 600,
                },
            ),
        ];
        for (bytes, error) in cases {
            assert_eq!(decoder.decode(&mut BytesMut::from(bytes)), Err(error));
        }
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&[0, 0, 0, 8, 2, 9, 0, 0][..])),
            Err(AmqpCodecError::UnknownFrameType(9))
        );
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&[0, 0, 0, 8, 2, 1, 0, 0][..])),
            Err(AmqpCodecError::EmptySaslFrame)
        );
        assert_eq!(FrameDecoder::new(0).max_frame_size(), MIN_MAX_FRAME_SIZE);
    }

    #[test]
    fn large_transfers_are_split_with_more() {
        let transfer = Transfer {
            handle: 1,
            delivery_id: Some(7),
            delivery_tag: Some(Bytes::from_static(&[0, 0, 0, 7])),
            message_format: Some(0),
            settled: Some(false),
            ..Transfer::default()
        };
        let payload: Vec<u8> = (0..2000).map(|i| (i % 251) as u8).collect();
        let mut buf = BytesMut::new();
        let frames = encode_transfer_frames(&mut buf, 0, &transfer, &payload, 512).unwrap();
        assert!(frames >= 4);
        let mut decoder = FrameDecoder::new(512);
        let mut reassembled = Vec::new();
        for index in 0..frames {
            let frame = decoder.decode(&mut buf).unwrap().unwrap();
            let FrameBody::Amqp {
                performative: Performative::Transfer(part),
                payload,
            } = frame.body
            else {
                panic!("not a transfer");
            };
            assert_eq!(part.more, index + 1 < frames);
            reassembled.extend_from_slice(&payload);
        }
        assert!(buf.is_empty());
        assert_eq!(reassembled, payload);
        let mut untouched = BytesMut::new();
        assert!(matches!(
            encode_transfer_frames(&mut untouched, 0, &transfer, &payload, 20),
            Err(AmqpCodecError::PerformativeTooLarge { .. })
        ));
        assert!(untouched.is_empty());
        assert_eq!(
            encode_transfer_frames(&mut untouched, 0, &transfer, &[], 512),
            Ok(1)
        );
    }

    #[test]
    fn sasl_frames_refuse_trailing_bytes() {
        let mut buf = BytesMut::new();
        write_frame(&mut buf, SASL_FRAME, 0, |buf| {
            Performative::Open(Open::new("x")).encode(buf);
        });
        assert!(matches!(
            FrameDecoder::default().decode(&mut buf),
            Err(AmqpCodecError::UnexpectedDescriptor { .. })
        ));
    }
}
