//! Outpost's IoT Hub query language: the SQL-like language of `POST /devices/query` (device and
//! module twins, jobs) and of message-routing conditions. Hand-written lexer and parser, a
//! printable syntax tree and an evaluator over JSON documents with IoT Hub's semantics
//! (undefined paths, three-valued logic, no coercion between types).
//!
//! Layer: pure, like `outpost-model`: no I/O, no async; depends on `serde_json` and `thiserror`
//! only. The registry (`/devices/query`) and routing use it; it uses nothing of theirs.
//!
//! Modules:
//! - `lexer`: text → tokens (keywords are identifiers compared case-insensitively).
//! - `parser`: tokens → [`Statement`] / [`Expr`], plus the static checks (functions, arity,
//!   aggregates, GROUP BY) and the limits ([`MAX_QUERY_BYTES`], [`MAX_DEPTH`]).
//! - [`ast`]: the syntax tree and its `Display` (prints text that parses back to the same tree).
//! - `eval`: the [`Scope`] trait (how names resolve) and expression evaluation.
//! - `functions`: the scalar functions ([`Function`]).
//! - `query`: [`Query`] (WHERE, projection, COUNT/SUM/AVG/MIN/MAX, GROUP BY, TOP) and
//!   [`Condition`] (routing).
//! - `error`: [`QueryError`], with the byte offset, line and column of the problem.
//! - `fuzz`: [`fuzz_parse`], the fuzz invariant shared by `cargo fuzz` and the seed-replay test.

#![warn(missing_docs)]

pub mod ast;
mod error;
mod eval;
mod functions;
mod fuzz;
mod lexer;
mod parser;
mod query;

pub use ast::{
    Aggregate, BinaryOp, Expr, Path, PathSegment, Projection, SelectExpr, SelectItem, Source, Statement,
    UnaryOp,
};
pub use error::{QueryError, QueryErrorKind};
pub use eval::{Scope, lookup};
pub use functions::{Function, MAX_STRING_BYTES};
pub use fuzz::fuzz_parse;
pub use parser::{MAX_DEPTH, MAX_QUERY_BYTES};
pub use query::{Condition, Query};
