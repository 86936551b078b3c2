//! Fuzzes the MQTT decoder: arbitrary bytes must never panic it, and any packet it yields must re-encode
//! and decode back to itself. The logic is `outpost_mqtt::codec::fuzz_round_trip`, also replayed on the
//! checked-in seeds by `tests/codec_fuzz_seeds.rs`.
//!
//! Run (needs cargo-fuzz and a nightly toolchain):
//! `cd crates/outpost-mqtt && cargo +nightly fuzz run decode fuzz/corpus/decode fuzz/seeds -- -max_total_time=60`
//! (new inputs go to the first, git-ignored directory; `fuzz/seeds` is only read).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    outpost_mqtt::codec::fuzz_round_trip(data);
});
