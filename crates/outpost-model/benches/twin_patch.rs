//! Measures the twin merge-patch rules: a small desired patch on a twin that already holds a
//! realistic document, a reported patch, and a full replace.
//!
//! Run: `cargo bench -p outpost-model --bench twin_patch`.

use criterion::{Criterion, criterion_group, criterion_main};
use outpost_model::{Timestamp, Twin, TwinLimits, TwinUpdate};
use serde_json::{Map, Value, json};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("bench inputs are objects"),
    }
}

fn populated_twin() -> Twin {
    let now = Timestamp::now();
    let mut twin = Twin::new(now);
    let mut desired = Map::new();
    for i in 0..50 {
        desired.insert(
            format!("setting{i}"),
            json!({"value": i, "unit": "C", "limits": {"min": 0, "max": 100}}),
        );
    }
    let update = TwinUpdate {
        tags: Some(object(json!({"site": "plant-1", "floor": 3}))),
        desired: Some(desired),
    };
    twin.apply_patch(&update, now, &TwinLimits::default())
        .expect("bench twin fits the limits");
    twin
}

fn twin_patch(c: &mut Criterion) {
    let limits = TwinLimits::default();
    let now = Timestamp::now();
    let base = populated_twin();
    let small = TwinUpdate {
        tags: None,
        desired: Some(object(json!({"setting7": {"value": 42}, "mode": "eco"}))),
    };
    c.bench_function("desired_patch_small_on_50_settings", |b| {
        b.iter(|| {
            let mut twin = base.clone();
            twin.apply_patch(&small, now, &limits).expect("patch is valid");
            twin
        })
    });
    let reported = object(json!({"fw": "1.2.3", "battery": 87, "location": {"lat": 47.6, "lon": -122.3}}));
    c.bench_function("reported_patch_small", |b| {
        b.iter(|| {
            let mut twin = base.clone();
            twin.apply_reported_patch(&reported, now, &limits)
                .expect("patch is valid");
            twin
        })
    });
    c.bench_function("clone_only_baseline", |b| b.iter(|| base.clone()));
}

criterion_group!(benches, twin_patch);
criterion_main!(benches);
