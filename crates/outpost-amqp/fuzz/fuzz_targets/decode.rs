//! Fuzzes the AMQP decoders: arbitrary bytes must never panic the protocol header, frame, value,
//! performative, SASL or message decoders, and anything they yield must re-encode and decode back to
//! itself. The logic is `outpost_amqp::fuzz_round_trip`, also replayed on the checked-in seeds by
//! `tests/codec_fuzz_seeds.rs`.
//!
//! Run (needs cargo-fuzz and a nightly toolchain):
//! `cd crates/outpost-amqp && cargo +nightly fuzz run decode fuzz/corpus/decode fuzz/seeds -- -max_total_time=60`
//! (new inputs go to the first, git-ignored directory; `fuzz/seeds` is only read).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    outpost_amqp::fuzz_round_trip(data);
});
