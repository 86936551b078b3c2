//! The fuzz invariant, as an ordinary function: `cargo fuzz` calls it from
//! `fuzz/fuzz_targets/parse.rs`, and `tests/fuzz_seeds.rs` replays the checked-in seeds in
//! `fuzz/seeds/` through it on every test run.

use serde_json::{Value, json};

use crate::parser::MAX_QUERY_BYTES;
use crate::query::{Condition, Query};

/// Parses `data` (lossily decoded as UTF-8) as a query and as a routing condition; whatever parses
/// must print as text that parses back to the same tree and prints the same again, and must run
/// over a fixed set of twins.
///
/// # Panics
///
/// Panics when the invariant breaks: that is the bug the fuzzer looks for. Malformed text is not a
/// bug; it must make the parser return an error, never panic.
pub fn fuzz_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let documents = documents();
    if let Ok(query) = Query::parse(&text) {
        let printed = query.to_string();
        // The canonical form may be longer than the input (spaces around operators).
        if printed.len() <= MAX_QUERY_BYTES {
            let again = Query::parse(&printed).unwrap_or_else(|error| {
                panic!("{printed:?} (printed from {text:?}) does not parse: {error}")
            });
            assert_eq!(query, again, "{text:?} printed as {printed:?}");
            assert_eq!(printed, again.to_string());
        }
        let rows = query.run(&documents);
        if let Some(top) = query.top() {
            assert!(rows.len() <= top, "TOP {top} returned {} rows", rows.len());
        }
    }
    if let Ok(condition) = Condition::parse(&text) {
        let printed = condition.to_string();
        if printed.len() <= MAX_QUERY_BYTES {
            let again = Condition::parse(&printed).unwrap_or_else(|error| {
                panic!("{printed:?} (printed from {text:?}) does not parse: {error}")
            });
            assert_eq!(condition, again, "{text:?} printed as {printed:?}");
        }
        for document in &documents {
            condition.evaluate(document);
        }
    }
}

fn documents() -> Vec<Value> {
    vec![
        json!({
            "deviceId": "d1", "moduleId": "m1", "etag": "AAAAAAAAAAE=", "status": "enabled", "version": 3,
            "tags": {"location": {"region": "US", "plant": "Redmond43"}, "my key": [1, 2.5, "x", null]},
            "properties": {
                "desired": {"temp": 21.5, "$metadata": {"temp": {"$lastUpdated": "2024-01-01T00:00:00Z"}}, "$version": 4},
                "reported": {"temp": 22, "telemetryConfig": {"status": "Success"}, "$version": 7}
            },
            "$body": {"Weather": {"Temperature": 50, "HistoricalData": [{"Month": "Feb"}]}},
            "$contentType": "application/json", "level": "critical"
        }),
        json!({"deviceId": "d2", "tags": {}, "properties": {"reported": {"temp": "hot", "telemetryConfig": {"status": "Pending"}}}}),
        json!({"deviceId": "d3", "status": null, "version": -1.5e300, "properties": {"reported": {"temp": 18446744073709551615u64}}}),
        json!([1, "two", {"three": 3}]),
    ]
}
