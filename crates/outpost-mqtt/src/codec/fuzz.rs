//! The codec's fuzz invariant, as an ordinary function: `cargo fuzz` calls it from
//! `fuzz/fuzz_targets/decode.rs`, and a `#[test]` replays the checked-in seeds in `fuzz/seeds/` on stable.

use bytes::{Buf, BytesMut};

use super::decode::Decoder;
use super::encode::encode;

/// Decodes `data`, and if it yields a packet, checks that the packet re-encodes to the same bytes (up to a
/// non-minimal remaining length) and decodes back to itself, also when fed one byte at a time.
///
/// This is the invariant of iotedge's `mqtt3-fuzz`: the re-encoding is appended to a partly filled buffer,
/// as a connection's write buffer would be.
///
/// # Panics
///
/// Panics when the invariant breaks: that is the bug the fuzzer looks for. Malformed input is not a bug;
/// it must make `decode` return an error, never panic.
pub fn fuzz_round_trip(data: &[u8]) {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::from(data);
    let packet = match decoder.decode(&mut buf) {
        Ok(Some(packet)) => packet,
        Ok(None) => {
            assert_eq!(
                buf.len(),
                data.len(),
                "an incomplete packet must stay in the buffer"
            );
            return;
        }
        Err(_) => return,
    };
    let original = &data[..data.len() - buf.len()];

    // Re-encode behind the bytes the decoder left over.
    let leftover = buf.len();
    encode(&packet, &mut buf).expect("a decoded packet must re-encode");
    buf.advance(leftover);
    assert_eq!(
        buf.len(),
        packet.encoded_len(),
        "encoded_len must match what encode wrote"
    );
    assert_eq!(buf[0], original[0], "the first byte must survive the round trip");
    let body = &buf[header_len(&buf)..];
    assert_eq!(
        body,
        &original[header_len(original)..],
        "the body must survive the round trip"
    );
    let encoded = buf.clone().freeze();

    let again = decoder.decode(&mut buf).expect("a re-encoded packet must decode");
    assert_eq!(again.as_ref(), Some(&packet), "decode(encode(p)) must be p");
    assert!(buf.is_empty(), "decode must consume exactly one packet");

    // Fed one byte at a time, the packet appears exactly when its last byte arrives.
    let mut trickle = BytesMut::new();
    for (index, &byte) in encoded.iter().enumerate() {
        trickle.extend_from_slice(&[byte]);
        let result = decoder
            .decode(&mut trickle)
            .expect("a prefix of a valid packet is not an error");
        if index + 1 < encoded.len() {
            assert_eq!(result, None, "a strict prefix must not yield a packet");
            assert_eq!(trickle.len(), index + 1, "a strict prefix must not be consumed");
        } else {
            assert_eq!(
                result.as_ref(),
                Some(&packet),
                "the last byte must yield the packet"
            );
            assert!(trickle.is_empty());
        }
    }
}

/// Returns the length of the fixed header at the start of `packet`, which is known to be complete.
fn header_len(packet: &[u8]) -> usize {
    1 + packet[1..]
        .iter()
        .take(4)
        .position(|byte| byte & 0x80 == 0)
        .map_or(4, |index| index + 1)
}
