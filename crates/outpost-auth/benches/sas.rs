//! Measures the SAS hot path: parsing and verifying a device token (HMAC with the base64-decoded key, as on
//! every IoT Hub endpoint), the same for an Event Hubs token (HMAC with the raw key text), and signing a
//! device token.
//!
//! Run: `cargo bench -p outpost-auth --bench sas` (quick: append `-- --warm-up-time 1 --measurement-time 3`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use outpost_auth::{KeyEncoding, SasToken, SymmetricKey, encode_resource, sign};

/// Python `azure-iot-device` 2.14.0 device token (see the vectors in `src/sas.rs`).
const DEVICE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const DEVICE_TOKEN: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1\
    &sig=bJyRDFcZSwu8KRkFnTPlWGHeXmibTY0%2FCA8i704rkuE%3D&se=1795692685";
const NOW: u64 = 1_795_690_000;

fn bench_sas(c: &mut Criterion) {
    let device_key = SymmetricKey::try_new(DEVICE_KEY).expect("valid key");
    c.bench_function("parse+verify device token (Base64Decoded)", |b| {
        b.iter(|| {
            let token = SasToken::parse(black_box(DEVICE_TOKEN)).expect("parses");
            token
                .verify(&device_key, KeyEncoding::Base64Decoded, NOW)
                .expect("verifies");
        })
    });

    // An Event Hubs CBS token as `@azure/event-hubs` sends it, signed with a 32-byte policy key.
    let policy_key =
        SymmetricKey::try_new("b3V0cG9zdC1zZXJ2aWNlLXBvbGljeS1rZXktMzJieSE=").expect("valid key");
    let event_hubs_token = sign(
        &encode_resource("sb://localhost/myhub/ConsumerGroups/$Default/Partitions/0"),
        &policy_key,
        KeyEncoding::RawString,
        1_795_692_685,
        Some("service"),
    );
    c.bench_function("parse+verify event hubs token (RawString)", |b| {
        b.iter(|| {
            let token = SasToken::parse(black_box(&event_hubs_token)).expect("parses");
            token
                .verify(&policy_key, KeyEncoding::RawString, NOW)
                .expect("verifies");
        })
    });

    let resource = encode_resource("localhost/devices/dev1");
    c.bench_function("sign device token", |b| {
        b.iter(|| {
            sign(
                black_box(&resource),
                &device_key,
                KeyEncoding::Base64Decoded,
                black_box(1_795_692_685),
                None,
            )
        })
    });
}

criterion_group!(benches, bench_sas);
criterion_main!(benches);
