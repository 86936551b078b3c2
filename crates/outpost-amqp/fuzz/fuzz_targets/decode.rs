//! Fuzzes the AMQP decoders: arbitrary bytes must never panic the protocol header, frame, value,
//! performative, SASL or message decoders, and anything they yield must re-encode and decode back to
//! itself. The logic is `outpost_amqp::fuzz_round_trip`, also replayed on the checked-in seeds by
//! `tests/codec_fuzz_seeds.rs`.
//!
//! Run: `bash scripts/fuzz` (every target, bounded), or
//! `cd crates/outpost-amqp/fuzz && cargo fuzz run decode --sanitizer none <corpus-dir> seeds`
//! (new inputs go to the first directory; `seeds` is only read).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    outpost_amqp::fuzz_round_trip(data);
});
