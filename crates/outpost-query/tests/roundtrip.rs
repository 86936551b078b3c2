//! Properties: parsing never panics on any text, and printing a tree (`Display`) gives text that
//! parses back to the same tree and prints the same again.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use outpost_query::{
    Aggregate, BinaryOp, Condition, Expr, Function, Path, PathSegment, Projection, Query, SelectExpr,
    SelectItem, Source, Statement, UnaryOp, fuzz_parse,
};
use proptest::prelude::*;
use serde_json::{Number, Value};

const RESERVED: &[&str] = &[
    "select",
    "from",
    "where",
    "group",
    "by",
    "as",
    "and",
    "or",
    "not",
    "in",
    "nin",
    "top",
    "true",
    "false",
    "null",
    "undefined",
];

fn first_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
        "\\$[a-z][a-z0-9]{0,4}",
        "\\$dt-[a-z]{1,4}"
    ]
    .prop_filter("not a keyword", |name| {
        !RESERVED.contains(&name.to_ascii_lowercase().as_str())
    })
}

fn path() -> impl Strategy<Value = Path> {
    let segment = prop_oneof![
        3 => "[a-zA-Z_$][a-zA-Z0-9_]{0,5}".prop_map(PathSegment::Name),
        1 => "(?s).{0,6}".prop_map(PathSegment::Name),
        1 => (0usize..20).prop_map(PathSegment::Index),
    ];
    (first_name(), prop::collection::vec(segment, 0..4)).prop_map(|(first, rest)| {
        let mut segments = vec![PathSegment::Name(first)];
        segments.extend(rest);
        Path { segments }
    })
}

fn literal() -> impl Strategy<Value = Expr> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        "(?s).{0,8}".prop_map(Value::String),
    ]
    .prop_map(Expr::Literal)
}

const OPERATORS: &[BinaryOp] = &[
    BinaryOp::Or,
    BinaryOp::And,
    BinaryOp::Eq,
    BinaryOp::NotEq,
    BinaryOp::Lt,
    BinaryOp::LtEq,
    BinaryOp::Gt,
    BinaryOp::GtEq,
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Rem,
];

const FUNCTIONS: &[(&str, usize)] = &[
    ("IS_DEFINED", 1),
    ("is_null", 1),
    ("STARTSWITH", 2),
    ("CONTAINS", 3),
    ("LOWER", 1),
    ("CONCAT", 4),
    ("SUBSTRING", 3),
    ("POWER", 2),
    ("AS_NUMBER", 1),
    ("ARRAY_CONTAINS", 2),
];

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![4 => literal(), 1 => Just(Expr::Undefined), 4 => path().prop_map(Expr::Path)];
    leaf.prop_recursive(5, 48, 4, |inner| {
        let list = prop::collection::vec(inner.clone(), 0..4);
        prop_oneof![
            list.clone().prop_map(Expr::Array),
            prop::collection::vec(("(?s).{0,5}", inner.clone()), 0..3).prop_map(Expr::Object),
            inner.clone().prop_map(|e| Expr::Unary {
                op: UnaryOp::Not,
                operand: Box::new(e)
            }),
            // The parser folds `-<number>` into the literal, so the tree never holds that shape.
            inner
                .clone()
                .prop_filter("not a number literal", |e| !matches!(
                    e,
                    Expr::Literal(Value::Number(_))
                ))
                .prop_map(|e| Expr::Unary {
                    op: UnaryOp::Neg,
                    operand: Box::new(e)
                }),
            (prop::sample::select(OPERATORS), inner.clone(), inner.clone()).prop_map(|(op, l, r)| {
                Expr::Binary {
                    op,
                    left: Box::new(l),
                    right: Box::new(r),
                }
            }),
            // IN takes an array or a path on its right.
            (
                any::<bool>(),
                inner.clone(),
                prop_oneof![list.prop_map(Expr::Array), path().prop_map(Expr::Path)]
            )
                .prop_map(|(nin, l, r)| Expr::Binary {
                    op: if nin { BinaryOp::Nin } else { BinaryOp::In },
                    left: Box::new(l),
                    right: Box::new(r)
                }),
            (prop::sample::select(FUNCTIONS), prop::collection::vec(inner, 4)).prop_map(
                |((name, arity), mut args)| {
                    args.truncate(arity);
                    Expr::Call {
                        function: Function::lookup(name).unwrap(),
                        args,
                    }
                }
            ),
        ]
    })
}

fn aggregate() -> impl Strategy<Value = Aggregate> {
    prop_oneof![
        Just(Aggregate::Count),
        path().prop_map(Aggregate::Sum),
        path().prop_map(Aggregate::Avg),
        path().prop_map(Aggregate::Min),
        path().prop_map(Aggregate::Max),
    ]
}

/// Valid statements by construction: unique aliases, and with aggregates every selected path
/// grouped.
fn statement() -> impl Strategy<Value = Statement> {
    let item =
        prop_oneof![3 => path().prop_map(SelectExpr::Path), 1 => aggregate().prop_map(SelectExpr::Aggregate)];
    let projection = prop_oneof![
        1 => Just(None),
        3 => prop::collection::vec(item, 1..4).prop_map(Some),
    ];
    let source = prop::sample::select(vec![Source::Devices, Source::Modules, Source::Jobs]);
    (
        prop::option::of(0usize..1000),
        projection,
        source,
        prop::option::of(expr()),
    )
        .prop_map(|(top, items, source, filter)| {
            let Some(items) = items else {
                return Statement {
                    top,
                    projection: Projection::All,
                    source,
                    filter,
                    group_by: Vec::new(),
                };
            };
            let aggregate = items.iter().any(|item| matches!(item, SelectExpr::Aggregate(_)));
            let mut group_by = Vec::new();
            if aggregate {
                for item in &items {
                    if let SelectExpr::Path(path) = item
                        && !group_by.contains(path)
                    {
                        group_by.push(path.clone());
                    }
                }
            }
            let items = items
                .into_iter()
                .enumerate()
                .map(|(i, expr)| SelectItem {
                    expr,
                    alias: Some(format!("c{i}")),
                })
                .collect();
            Statement {
                top,
                projection: Projection::Items(items),
                source,
                filter,
                group_by,
            }
        })
}

/// Words and symbols of the language, to build token soup that often parses.
const VOCABULARY: &[&str] = &[
    "SELECT",
    "TOP",
    "3",
    "*",
    "FROM",
    "devices",
    "devices.modules",
    "devices.jobs",
    "WHERE",
    "GROUP BY",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "NIN",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    ":",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "/",
    "%",
    "'s'",
    "\"d\"",
    "1.5",
    "-2",
    "0x1f",
    "1e3",
    "true",
    "null",
    "undefined",
    "tags",
    "a.b",
    "$body",
    "x['k']",
    "y[0]",
    "COUNT()",
    "SUM(v)",
    "IS_DEFINED(",
    "LOWER(",
    "CONCAT(",
    "STARTSWITH(",
    "'\\u00e9'",
    "'\\q'",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_statements_parse_back_to_the_same_tree(statement in statement()) {
        let text = statement.to_string();
        let query = Query::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(query.statement(), &statement, "{}", text);
        prop_assert_eq!(query.to_string(), text);
        query.run(&[serde_json::json!({"a": 1})]);
    }

    #[test]
    fn printed_conditions_parse_back_to_the_same_tree(expr in expr()) {
        let text = expr.to_string();
        let condition = Condition::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(condition.expr(), &expr, "{}", text);
        prop_assert_eq!(condition.to_string(), text);
    }

    #[test]
    fn token_soup_never_panics_and_round_trips(words in prop::collection::vec(prop::sample::select(VOCABULARY), 0..24)) {
        fuzz_parse(words.join(" ").as_bytes());
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,200}") {
        fuzz_parse(text.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz_parse(&bytes);
    }
}
