//! Fuzzes the sans-IO connection engine: arbitrary peer bytes (after an optional AMQP or SASL
//! prelude), answered as the door answers, must never panic it. The logic is
//! `outpost_amqp::fuzz_engine`, also replayed on the checked-in seeds by `tests/codec_fuzz_seeds.rs`.
//!
//! Run: `bash scripts/fuzz` (every target, bounded), or
//! `cd crates/outpost-amqp/fuzz && cargo fuzz run engine --sanitizer none <corpus-dir> seeds`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    outpost_amqp::fuzz_engine(data);
});
