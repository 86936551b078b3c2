//! Fuzzes the query language: arbitrary text (bytes decoded lossily as UTF-8) must never panic the
//! lexer, the parser or the evaluator; whatever parses as a query or a routing condition must print
//! as text that parses back to the same tree, and must run over a fixed set of twins. The logic is
//! `outpost_query::fuzz_parse`, also replayed on the checked-in seeds by `tests/fuzz_seeds.rs`.
//!
//! Run: `bash scripts/fuzz` (every target, bounded), or
//! `cd crates/outpost-query/fuzz && cargo fuzz run parse --sanitizer none <corpus-dir> seeds`
//! (new inputs go to the first directory; `seeds` is only read).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    outpost_query::fuzz_parse(data);
});
