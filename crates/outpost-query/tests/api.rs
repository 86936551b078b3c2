//! The API the registry and the router code against: `Query` accessors, `matches`, `project`,
//! `run`, `Condition` over a custom `Scope`, errors and limits.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::borrow::Cow;

use outpost_query::{
    Condition, MAX_DEPTH, MAX_QUERY_BYTES, PathSegment, Query, QueryErrorKind, Scope, Source, lookup,
};
use serde_json::{Value, json};

fn twin(id: &str, temp: Value) -> Value {
    json!({"deviceId": id, "properties": {"reported": {"temp": temp}}, "tags": {"region": "US"}})
}

#[test]
fn accessors_describe_the_query() {
    let query = Query::parse("SELECT TOP 3 * FROM devices.modules WHERE moduleId = 'm'").unwrap();
    assert_eq!(query.source(), Source::Modules);
    assert_eq!(query.top(), Some(3));
    assert!(!query.is_aggregate());
    assert!(query.names().is_empty());

    let query = Query::parse("SELECT COUNT() AS n FROM devices.jobs").unwrap();
    assert_eq!((query.source(), query.top()), (Source::Jobs, None));
    assert!(query.is_aggregate());
    assert_eq!(query.names(), ["n"]);

    let grouped = Query::parse("SELECT status FROM devices GROUP BY status").unwrap();
    assert!(grouped.is_aggregate());
    assert_eq!(grouped.source(), Source::Devices);
}

#[test]
fn matches_is_true_without_where_and_only_for_boolean_true() {
    let all = Query::parse("SELECT * FROM devices").unwrap();
    assert!(all.matches(&json!({})));
    let hot = Query::parse("SELECT * FROM devices WHERE properties.reported.temp > 25").unwrap();
    assert!(hot.matches(&twin("a", json!(30))));
    assert!(!hot.matches(&twin("b", json!(20))));
    assert!(!hot.matches(&twin("c", json!("30"))));
    assert!(!hot.matches(&json!({"deviceId": "d"})));
}

#[test]
fn project_selects_defined_paths_and_star_returns_the_document() {
    let document = twin("a", json!(21.5));
    let star = Query::parse("SELECT * FROM devices").unwrap();
    assert_eq!(star.project(&document), document);
    let query =
        Query::parse("SELECT deviceId AS id, properties.reported.temp, tags.missing FROM devices").unwrap();
    assert_eq!(query.project(&document), json!({"id": "a", "temp": 21.5}));
    // Key order follows the SELECT list, not the document.
    let text = serde_json::to_string(&query.project(&document)).unwrap();
    assert_eq!(text, r#"{"id":"a","temp":21.5}"#);
}

#[test]
fn run_filters_projects_and_applies_top_lazily() {
    let documents: Vec<Value> = (0..10).map(|i| twin(&format!("d{i}"), json!(i * 10))).collect();
    let query =
        Query::parse("SELECT TOP 2 deviceId FROM devices WHERE properties.reported.temp >= 30").unwrap();
    assert_eq!(
        query.run(&documents),
        vec![json!({"deviceId": "d3"}), json!({"deviceId": "d4"})]
    );
    let count =
        Query::parse("SELECT COUNT() AS n FROM devices WHERE properties.reported.temp >= 30").unwrap();
    assert_eq!(count.run(documents.iter()), vec![json!({"n": 7})]);
}

/// A routing scope as the router will write one: `$body.…` into the JSON body, `$x` system
/// properties, bare names application properties, matched case-insensitively (IoT Hub message
/// property names are case-insensitive).
struct Message {
    body: Value,
    system: Vec<(&'static str, &'static str)>,
    application: Vec<(&'static str, &'static str)>,
}

impl Scope for Message {
    fn resolve(&self, path: &[PathSegment]) -> Option<Cow<'_, Value>> {
        let PathSegment::Name(first) = &path[0] else {
            return None;
        };
        if first == "$body" {
            return lookup(&self.body, &path[1..]).map(Cow::Borrowed);
        }
        if path.len() > 1 {
            return None;
        }
        let (properties, name) = match first.strip_prefix('$') {
            Some(name) => (&self.system, name),
            None => (&self.application, first.as_str()),
        };
        properties
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| Cow::Owned(Value::from(*value)))
    }
}

#[test]
fn conditions_evaluate_over_any_scope() {
    let message = Message {
        body: json!({"temp": 35, "list": [{"a": 1}]}),
        system: vec![
            ("contentType", "application/json"),
            ("connectionDeviceId", "dev1"),
        ],
        application: vec![("Level", "critical")],
    };
    let holds = |text: &str| Condition::parse(text).unwrap().evaluate(&message);
    assert!(holds("$body.temp > 30 AND level = 'critical'"));
    assert!(holds(
        "$contentType = 'application/json' AND $connectionDeviceId = 'dev1'"
    ));
    assert!(holds("$body.list[0].a = 1"));
    assert!(!holds("$body.temp > 40"));
    assert!(!holds("missing = 'x'"));
    assert!(!holds("NOT (missing = 'x')"));
    assert!(!holds("$body.temp"));
}

#[test]
fn errors_carry_kind_offset_line_and_column() {
    let error = Query::parse("SELECT *\nFROM devices\nWHERE a =").unwrap_err();
    assert_eq!(error.kind(), QueryErrorKind::Syntax);
    assert_eq!(error.message(), "expected an expression after '='");
    assert_eq!((error.offset(), error.line(), error.column()), (31, 3, 10));
    assert_eq!(
        error.to_string(),
        "expected an expression after '=' at line 3, column 10"
    );

    assert_eq!(
        Query::parse("SELECT * FROM devices WHERE 'x").unwrap_err().kind(),
        QueryErrorKind::Lexical
    );
    assert_eq!(
        Query::parse("SELECT * FROM devices WHERE F(1)")
            .unwrap_err()
            .kind(),
        QueryErrorKind::Semantic
    );
}

#[test]
fn query_text_is_limited_to_8_kib() {
    let prefix = "SELECT * FROM devices WHERE deviceId IN [";
    let mut text = prefix.to_owned();
    while text.len() + "'abcdefgh', ".len() + "'end']".len() <= MAX_QUERY_BYTES {
        text.push_str("'abcdefgh', ");
    }
    text.push_str("'end']");
    assert!(text.len() <= MAX_QUERY_BYTES);
    assert!(Query::parse(&text).is_ok());

    let long = format!("{text}{}", " ".repeat(MAX_QUERY_BYTES));
    let error = Query::parse(&long).unwrap_err();
    assert_eq!(error.kind(), QueryErrorKind::Limit);
    assert_eq!(error.offset(), MAX_QUERY_BYTES);
    assert_eq!(
        error.message(),
        format!("query text is {} bytes long; the limit is 8192", long.len())
    );
    assert_eq!(Condition::parse(&long).unwrap_err().kind(), QueryErrorKind::Limit);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth_error = format!("expression nested too deeply (the limit is {MAX_DEPTH} levels)");
    for text in [
        format!("{}1{}", "(".repeat(4000), ")".repeat(4000)),
        format!("{}1", "NOT ".repeat(2000)),
        format!("{}1", "- ".repeat(4000)),
        format!("{}1{}", "[".repeat(4000), "]".repeat(4000)),
        format!("{}1{}", "LOWER(".repeat(1000), ")".repeat(1000)),
        format!("{}1{}", "{a: ".repeat(1500), "}".repeat(1500)),
        format!("a{}", " OR a".repeat(1500)),
        format!("1{}", " + 1".repeat(2000)),
    ] {
        let error = Condition::parse(&text).unwrap_err();
        assert_eq!(error.kind(), QueryErrorKind::Limit, "{}", &text[..20]);
        assert_eq!(error.message(), depth_error);
    }
}

#[test]
fn nesting_within_the_limit_parses_evaluates_and_prints_on_a_small_stack() {
    // The deepest trees the limit lets through must parse, evaluate and print on a 1 MiB stack
    // even in a debug build (tokio worker threads have 2 MiB).
    let work = || {
        let texts = [
            format!("{}true{}", "(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1)),
            format!(
                "a = 0{}",
                (1..250).map(|i| format!(" OR a = {i}")).collect::<String>()
            ),
            format!(
                "{}'X'{} = 'x'",
                "LOWER(".repeat(MAX_DEPTH - 2),
                ")".repeat(MAX_DEPTH - 2)
            ),
            format!("{}true", "NOT NOT ".repeat(MAX_DEPTH / 2 - 1)),
            format!(
                "{}1{} = {}1{}",
                "[".repeat(30),
                "]".repeat(30),
                "[".repeat(30),
                "]".repeat(30)
            ),
        ];
        for text in &texts {
            let condition = Condition::parse(text).unwrap();
            assert!(condition.evaluate(&json!({"a": 249})), "{text}");
            Condition::parse(&condition.to_string()).unwrap();
        }
    };
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(work)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn display_prints_canonical_text() {
    let query = Query::parse(
        "select top 5 tags.location.region as r, count() from devices where (a=1 or b<>2) and not c in ('x') group by tags.location.region",
    )
    .unwrap();
    assert_eq!(
        query.to_string(),
        "SELECT TOP 5 tags.location.region AS r, COUNT() FROM devices WHERE (a = 1 OR b != 2) AND NOT c IN ['x'] GROUP BY tags.location.region"
    );
    let condition = Condition::parse("$body['a b'].c[2] = -(1 - -2) * 3 % 4 / 5").unwrap();
    assert_eq!(condition.to_string(), "$body['a b'].c[2] = -(1 - -2) * 3 % 4 / 5");
}
