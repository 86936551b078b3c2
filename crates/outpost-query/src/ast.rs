//! The syntax tree of queries and conditions, and its [`Display`]: printing a parsed
//! tree gives text that parses back to the same tree (parentheses only where precedence needs them,
//! keywords and function names upper-case, strings single-quoted).

use std::fmt::{self, Display, Formatter, Write};

use serde_json::Value;

use crate::functions::Function;
use crate::lexer::is_identifier;

/// Words that cannot start a path (they are keywords wherever a path could start).
pub(crate) const RESERVED: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "NIN",
    "TOP",
    "TRUE",
    "FALSE",
    "NULL",
    "UNDEFINED",
];

/// Returns whether `word` is a reserved keyword (case-insensitive).
pub(crate) fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// One step of a property path: `.name`, `['name']` or `[index]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// An object member (case-sensitive).
    Name(String),
    /// An array element, from 0.
    Index(usize),
}

/// A property path such as `properties.reported.temp`, `tags['my key']` or `$body.list[0]`.
/// The first segment is always a [`PathSegment::Name`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// The segments, in order.
    pub segments: Vec<PathSegment>,
}

/// Operators with two operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `OR`
    Or,
    /// `AND`
    And,
    /// `=`
    Eq,
    /// `!=` or `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `IN`: the right operand is an array.
    In,
    /// `NIN` or `NOT IN`.
    Nin,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinaryOp {
    /// Binding strength: higher binds tighter. All binary operators are left-associative.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Self::Or => 1,
            Self::And => 2,
            Self::Eq | Self::NotEq | Self::Lt | Self::LtEq | Self::Gt | Self::GtEq | Self::In | Self::Nin => {
                4
            }
            Self::Add | Self::Sub => 5,
            Self::Mul | Self::Div | Self::Rem => 6,
        }
    }

    /// Returns the operator as printed.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Or => "OR",
            Self::And => "AND",
            Self::Eq => "=",
            Self::NotEq => "!=",
            Self::Lt => "<",
            Self::LtEq => "<=",
            Self::Gt => ">",
            Self::GtEq => ">=",
            Self::In => "IN",
            Self::Nin => "NIN",
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Rem => "%",
        }
    }
}

/// Operators with one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `NOT`
    Not,
    /// `-` (never over a number literal: the parser folds `-5` into the literal).
    Neg,
}

/// Precedence of `NOT` (between AND and the comparisons) and of unary minus (above `*`).
pub(crate) const NOT_PRECEDENCE: u8 = 3;
const NEG_PRECEDENCE: u8 = 7;
const ATOM_PRECEDENCE: u8 = 8;

/// An expression of a WHERE clause or a routing condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `null`, `true`, `false`, a number or a string (arrays and objects are [`Expr::Array`] and
    /// [`Expr::Object`]).
    Literal(Value),
    /// The `undefined` constant.
    Undefined,
    /// A property path.
    Path(Path),
    /// `[a, b, …]`
    Array(Vec<Expr>),
    /// `{'key': value, …}`
    Object(Vec<(String, Expr)>),
    /// `NOT e`, `-e`
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// `left op right`
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// A scalar function call.
    Call {
        /// The function.
        function: Function,
        /// Its arguments (arity checked by the parser).
        args: Vec<Expr>,
    },
}

impl Expr {
    fn precedence(&self) -> u8 {
        match self {
            Self::Binary { op, .. } => op.precedence(),
            Self::Unary { op: UnaryOp::Not, .. } => NOT_PRECEDENCE,
            Self::Unary { op: UnaryOp::Neg, .. } => NEG_PRECEDENCE,
            Self::Literal(Value::Number(n)) if n.to_string().starts_with('-') => NEG_PRECEDENCE,
            _ => ATOM_PRECEDENCE,
        }
    }

    fn fmt_at(&self, f: &mut Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            f.write_char('(')?;
            self.fmt(f)?;
            return f.write_char(')');
        }
        self.fmt(f)
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(Value::String(s)) => write_string(f, s),
            Self::Literal(value) => write!(f, "{value}"),
            Self::Undefined => f.write_str("undefined"),
            Self::Path(path) => path.fmt(f),
            Self::Array(items) => {
                f.write_char('[')?;
                write_list(f, items)?;
                f.write_char(']')
            }
            Self::Object(members) => {
                f.write_char('{')?;
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_string(f, key)?;
                    write!(f, ": {value}")?;
                }
                f.write_char('}')
            }
            Self::Unary {
                op: UnaryOp::Not,
                operand,
            } => {
                f.write_str("NOT ")?;
                operand.fmt_at(f, NOT_PRECEDENCE)
            }
            Self::Unary {
                op: UnaryOp::Neg,
                operand,
            } => {
                // `- -a` rather than `-(-a)`: parentheses would cost nesting depth on re-parsing.
                let space = matches!(**operand, Self::Unary { op: UnaryOp::Neg, .. });
                f.write_str(if space { "- " } else { "-" })?;
                operand.fmt_at(f, NEG_PRECEDENCE)
            }
            Self::Binary { op, left, right } => {
                left.fmt_at(f, op.precedence())?;
                write!(f, " {} ", op.symbol())?;
                right.fmt_at(f, op.precedence() + 1)
            }
            Self::Call { function, args } => {
                write!(f, "{}(", function.name())?;
                write_list(f, args)?;
                f.write_char(')')
            }
        }
    }
}

fn write_list(f: &mut Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        item.fmt(f)?;
    }
    Ok(())
}

/// Writes `s` single-quoted with the escapes the lexer reads back.
pub(crate) fn write_string(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('\'')?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('\'')
}

impl Display for Path {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                PathSegment::Name(name) if i == 0 => f.write_str(name)?,
                PathSegment::Name(name) if is_identifier(name) => write!(f, ".{name}")?,
                PathSegment::Name(name) => {
                    f.write_char('[')?;
                    write_string(f, name)?;
                    f.write_char(']')?;
                }
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The collection a query runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `FROM devices`: device twins.
    Devices,
    /// `FROM devices.modules`: module twins.
    Modules,
    /// `FROM devices.jobs`: per-device job records.
    Jobs,
}

impl Source {
    /// Returns the path prefix documents of this collection may be named by
    /// (`devices.jobs.status` in `FROM devices.jobs`).
    pub fn prefix(self) -> &'static [&'static str] {
        match self {
            Self::Devices => &["devices"],
            Self::Modules => &["devices", "modules"],
            Self::Jobs => &["devices", "jobs"],
        }
    }
}

impl Display for Source {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix().join(".").as_str())
    }
}

/// An aggregate of the SELECT list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregate {
    /// `COUNT()`: the number of documents.
    Count,
    /// `SUM(path)`
    Sum(Path),
    /// `AVG(path)`
    Avg(Path),
    /// `MIN(path)`
    Min(Path),
    /// `MAX(path)`
    Max(Path),
}

impl Display for Aggregate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count => f.write_str("COUNT()"),
            Self::Sum(path) => write!(f, "SUM({path})"),
            Self::Avg(path) => write!(f, "AVG({path})"),
            Self::Min(path) => write!(f, "MIN({path})"),
            Self::Max(path) => write!(f, "MAX({path})"),
        }
    }
}

/// What one SELECT item computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectExpr {
    /// A property of the document (or of the group).
    Path(Path),
    /// An aggregate over the group.
    Aggregate(Aggregate),
}

/// One item of the SELECT list and its output name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    /// What it computes.
    pub expr: SelectExpr,
    /// `AS alias`, when written.
    pub alias: Option<String>,
}

/// The SELECT list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// `*`: the whole document.
    All,
    /// A list of items.
    Items(Vec<SelectItem>),
}

/// A whole `SELECT … FROM … [WHERE …] [GROUP BY …]` query.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `TOP n`
    pub top: Option<usize>,
    /// The SELECT list.
    pub projection: Projection,
    /// The FROM collection.
    pub source: Source,
    /// The WHERE condition.
    pub filter: Option<Expr>,
    /// The GROUP BY paths (empty without GROUP BY).
    pub group_by: Vec<Path>,
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if let Some(top) = self.top {
            write!(f, "TOP {top} ")?;
        }
        match &self.projection {
            Projection::All => f.write_char('*')?,
            Projection::Items(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match &item.expr {
                        SelectExpr::Path(path) => path.fmt(f)?,
                        SelectExpr::Aggregate(aggregate) => aggregate.fmt(f)?,
                    }
                    if let Some(alias) = &item.alias {
                        write!(f, " AS {alias}")?;
                    }
                }
            }
        }
        write!(f, " FROM {}", self.source)?;
        if let Some(filter) = &self.filter {
            write!(f, " WHERE {filter}")?;
        }
        for (i, path) in self.group_by.iter().enumerate() {
            f.write_str(if i == 0 { " GROUP BY " } else { ", " })?;
            path.fmt(f)?;
        }
        Ok(())
    }
}
