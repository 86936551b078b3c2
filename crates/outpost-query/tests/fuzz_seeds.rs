//! Replays the checked-in fuzz seeds (`fuzz/seeds/`) through [`fuzz_parse`] on stable, every run,
//! so the fuzz invariant is tested even where `cargo fuzz` is not installed. Seed names say what
//! the parser must make of them: `valid_*` parses as a query or a condition, `malformed_*` as
//! neither.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::path::PathBuf;

use outpost_query::{Condition, Query, fuzz_parse};

#[test]
fn every_seed_satisfies_the_fuzz_invariant() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut seeds: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .expect("fuzz/seeds exists")
        .map(|entry| {
            let path = entry.expect("readable directory entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&path).expect("readable seed"))
        })
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 15,
        "expected at least 15 seeds, found {}",
        seeds.len()
    );
    for (name, data) in &seeds {
        fuzz_parse(data);
        let text = String::from_utf8_lossy(data);
        let parses = Query::parse(&text).is_ok() || Condition::parse(&text).is_ok();
        if name.starts_with("valid_") {
            assert!(parses, "{name} should parse: {text}");
        } else {
            assert!(
                name.starts_with("malformed_"),
                "{name}: seeds are valid_* or malformed_*"
            );
            assert!(!parses, "{name} should not parse: {text}");
        }
    }
}
