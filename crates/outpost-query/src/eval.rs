//! The evaluator: expressions over a [`Scope`], with IoT Hub's semantics.
//!
//! A value is `Option<Cow<Value>>`; `None` is *undefined* (a path that does not exist, an
//! operation on the wrong types). Undefined propagates: a comparison with an undefined operand
//! or between different types is undefined, and so is `NOT` of it, so that neither `x = 1` nor
//! `NOT (x = 1)` selects a document without `x`. `AND` is false as soon as one side is false and
//! `OR` true as soon as one side is true (three-valued logic). Numbers compare as numbers whatever
//! their JSON form (`1 = 1.0`); strings compare ordinally (by code point); there is no other
//! coercion.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::ast::{BinaryOp, Expr, PathSegment, UnaryOp};
use crate::functions;

/// How names resolve to values: a document resolves paths into its JSON; a routed message resolves
/// `$body.…`, `$twin.…`, system properties and application properties.
pub trait Scope {
    /// Returns the value at `path`, or `None` when it is undefined. `path` is never empty.
    fn resolve(&self, path: &[PathSegment]) -> Option<Cow<'_, Value>>;
}

impl Scope for Value {
    fn resolve(&self, path: &[PathSegment]) -> Option<Cow<'_, Value>> {
        lookup(self, path).map(Cow::Borrowed)
    }
}

/// Walks `path` into `value`: names into objects, indexes into arrays; anything else is undefined.
pub fn lookup<'v>(value: &'v Value, path: &[PathSegment]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |value, segment| match (segment, value) {
            (PathSegment::Name(name), Value::Object(map)) => map.get(name),
            (PathSegment::Index(index), Value::Array(items)) => items.get(*index),
            _ => None,
        })
}

/// An evaluated value; `None` is undefined.
pub(crate) type Val<'a> = Option<Cow<'a, Value>>;

/// A JSON number for arithmetic: integers exactly (i128 holds every i64 and u64), others as f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub(crate) fn of(n: &Number) -> Self {
        if let Some(i) = n.as_i64() {
            Self::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Self::Int(i128::from(u))
        } else {
            Self::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    pub(crate) fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => Some(Self::of(n)),
            _ => None,
        }
    }

    pub(crate) fn to_f64(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }

    /// An integral float as an integer (results of FLOOR, ROUND…), when it fits.
    pub(crate) fn integral(f: f64) -> Self {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            // Integral and below 2^53: the cast is exact.
            return Self::Int(f as i128);
        }
        Self::Float(f)
    }

    /// The JSON number, or `None` for NaN and infinities (JSON has none: undefined).
    pub(crate) fn into_number(self) -> Option<Number> {
        match self {
            Self::Int(i) => {
                if let Ok(i) = i64::try_from(i) {
                    Some(i.into())
                } else if let Ok(u) = u64::try_from(i) {
                    Some(u.into())
                } else {
                    Number::from_f64(self.to_f64())
                }
            }
            Self::Float(f) => Number::from_f64(f),
        }
    }

    pub(crate) fn into_val<'a>(self) -> Val<'a> {
        self.into_number().map(|n| Cow::Owned(Value::Number(n)))
    }

    fn cmp(self, other: Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.to_f64().partial_cmp(&b.to_f64()),
        }
    }
}

pub(crate) fn boolean<'a>(b: bool) -> Val<'a> {
    Some(Cow::Owned(Value::Bool(b)))
}

/// Orders two primitives of the same type; `None` when the types differ or are not primitive.
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => Num::of(a).cmp(Num::of(b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

/// `=`: primitives of one type by [`compare`], arrays and objects structurally; `None` when the
/// types differ.
pub(crate) fn equals(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => {
            Some(a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b)))
        }
        (Value::Object(a), Value::Object(b)) => {
            Some(a.len() == b.len() && a.iter().all(|(key, a)| b.get(key).is_some_and(|b| same(a, b))))
        }
        _ => compare(a, b).map(Ordering::is_eq),
    }
}

/// Equality where different types are simply unequal (IN, ARRAY_CONTAINS, grouping).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    equals(a, b) == Some(true)
}

/// Evaluates `expr` in `scope`.
pub(crate) fn eval<'a>(expr: &'a Expr, scope: &'a dyn Scope) -> Val<'a> {
    match expr {
        Expr::Literal(value) => Some(Cow::Borrowed(value)),
        Expr::Undefined => None,
        Expr::Path(path) => scope.resolve(&path.segments),
        Expr::Array(items) => {
            // Undefined elements are left out, as in the projection.
            let items = items
                .iter()
                .filter_map(|item| eval(item, scope))
                .map(Cow::into_owned);
            Some(Cow::Owned(Value::Array(items.collect())))
        }
        Expr::Object(members) => {
            let members = members
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), eval(value, scope)?.into_owned())));
            Some(Cow::Owned(Value::Object(members.collect())))
        }
        Expr::Unary {
            op: UnaryOp::Not,
            operand,
        } => match eval(operand, scope).as_deref() {
            Some(Value::Bool(b)) => boolean(!b),
            _ => None,
        },
        Expr::Unary {
            op: UnaryOp::Neg,
            operand,
        } => match eval(operand, scope)?.as_ref() {
            Value::Number(n) => match Num::of(n) {
                Num::Int(i) => Num::Int(-i).into_val(),
                Num::Float(f) => Num::Float(-f).into_val(),
            },
            _ => None,
        },
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => logic(eval(left, scope).as_deref(), || eval(right, scope), false),
        Expr::Binary {
            op: BinaryOp::Or,
            left,
            right,
        } => logic(eval(left, scope).as_deref(), || eval(right, scope), true),
        Expr::Binary { op, left, right } => {
            let left = eval(left, scope)?;
            let right = eval(right, scope)?;
            binary(*op, &left, &right)
        }
        Expr::Call { function, args } => {
            functions::call(*function, args.iter().map(|arg| eval(arg, scope)).collect())
        }
    }
}

/// AND (`decisive` false) and OR (`decisive` true): the decisive value on either side wins,
/// two booleans give the other one, anything else is undefined.
fn logic<'a>(left: Option<&Value>, right: impl FnOnce() -> Val<'a>, decisive: bool) -> Val<'a> {
    if left == Some(&Value::Bool(decisive)) {
        return boolean(decisive);
    }
    let right = right();
    match (left, right.as_deref()) {
        (_, Some(Value::Bool(b))) if *b == decisive => boolean(decisive),
        (Some(Value::Bool(_)), Some(Value::Bool(_))) => boolean(!decisive),
        _ => None,
    }
}

fn binary<'a>(op: BinaryOp, left: &Value, right: &Value) -> Val<'a> {
    let ordering = || compare(left, right);
    match op {
        BinaryOp::Eq => equals(left, right).and_then(boolean),
        BinaryOp::NotEq => equals(left, right).and_then(|eq| boolean(!eq)),
        BinaryOp::Lt => ordering().and_then(|o| boolean(o.is_lt())),
        BinaryOp::LtEq => ordering().and_then(|o| boolean(o.is_le())),
        BinaryOp::Gt => ordering().and_then(|o| boolean(o.is_gt())),
        BinaryOp::GtEq => ordering().and_then(|o| boolean(o.is_ge())),
        BinaryOp::In | BinaryOp::Nin => match right {
            Value::Array(items) => {
                let found = items.iter().any(|item| same(left, item));
                boolean(found == (op == BinaryOp::In))
            }
            _ => None,
        },
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
            arithmetic(op, Num::from_value(left)?, Num::from_value(right)?)
        }
        BinaryOp::And | BinaryOp::Or => None,
    }
}

fn arithmetic<'a>(op: BinaryOp, a: Num, b: Num) -> Val<'a> {
    let exact = match (a, b) {
        (Num::Int(a), Num::Int(b)) => match op {
            BinaryOp::Add => a.checked_add(b),
            BinaryOp::Sub => a.checked_sub(b),
            BinaryOp::Mul => a.checked_mul(b),
            BinaryOp::Div if b != 0 && a.checked_rem(b) == Some(0) => a.checked_div(b),
            BinaryOp::Rem if b == 0 => return None,
            BinaryOp::Rem => a.checked_rem(b),
            _ => None,
        },
        _ => None,
    };
    if let Some(exact) = exact {
        return Num::Int(exact).into_val();
    }
    let (a, b) = (a.to_f64(), b.to_f64());
    let result = match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        // Division by zero has no JSON value: undefined (from_f64 refuses infinities and NaN).
        BinaryOp::Div => a / b,
        _ => a % b,
    };
    Num::Float(result).into_val()
}

/// Whether a condition holds: only boolean `true` does (IoT Hub: any other value, including
/// undefined and null, is false).
pub(crate) fn holds(value: Val<'_>) -> bool {
    matches!(value.as_deref(), Some(Value::Bool(true)))
}
