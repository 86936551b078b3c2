//! Replays the checked-in fuzz seeds (`fuzz/seeds/`) through [`fuzz_round_trip`] and [`fuzz_engine`] on stable, every run, so
//! the fuzz invariant is tested even where `cargo fuzz` is not installed. Seed names say what the frame
//! decoder must make of them: `valid_*` decodes to a frame, `malformed_*` is an error, `partial_*` waits
//! for more.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::path::PathBuf;

use bytes::BytesMut;
use outpost_amqp::{FrameDecoder, fuzz_engine, fuzz_round_trip};

fn seeds() -> Vec<(String, Vec<u8>)> {
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
    seeds
}

#[test]
fn every_seed_satisfies_the_fuzz_invariant() {
    let seeds = seeds();
    assert!(
        seeds.len() >= 12,
        "expected at least a dozen seeds, found {}",
        seeds.len()
    );
    for (name, data) in &seeds {
        fuzz_round_trip(data);
        // After the engine target's prelude (header, open, begin), and as a whole conversation.
        fuzz_engine(data);
        fuzz_engine(&[&b"AMQP\x00\x01\x00\x00"[..], data].concat());
        let mut buf = BytesMut::from(&data[..]);
        let result = FrameDecoder::default().decode(&mut buf);
        let kind = name.split('_').next().unwrap_or_default();
        match kind {
            "valid" => {
                assert!(matches!(result, Ok(Some(_))), "{name}: {result:?}");
                assert!(buf.is_empty(), "{name}: one frame per seed");
            }
            "malformed" => assert!(result.is_err(), "{name}: {result:?}"),
            "partial" => assert_eq!(result, Ok(None), "{name}"),
            _ => panic!("seed {name} must start with valid_, malformed_ or partial_"),
        }
    }
}
