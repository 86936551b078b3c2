//! The scalar functions: names (case-insensitive), arities and semantics.
//!
//! A function given an argument of the wrong type returns undefined, as IoT Hub does, except the
//! `IS_*` type checks, which are false on undefined. String positions and lengths count Unicode
//! scalar values. Results that would be huge (`CONCAT`, `REPLACE`) are capped at
//! [`MAX_STRING_BYTES`] and undefined beyond it, so nested calls cannot exhaust memory.

use std::borrow::Cow;

use serde_json::Value;

use crate::eval::{Num, Val, boolean, same};

/// The longest string a function may build.
pub const MAX_STRING_BYTES: usize = 1 << 20;

/// A scalar function of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(missing_docs, reason = "each variant is the function of the same name")]
pub enum Function {
    IsDefined,
    IsNull,
    IsBool,
    IsNumber,
    IsString,
    IsObject,
    IsPrimitive,
    IsArray,
    StartsWith,
    EndsWith,
    Contains,
    Lower,
    Upper,
    Length,
    Concat,
    Substring,
    IndexOf,
    Ltrim,
    Rtrim,
    Trim,
    Replace,
    Reverse,
    Left,
    Right,
    Abs,
    Ceiling,
    Floor,
    Round,
    Trunc,
    Square,
    Sqrt,
    Power,
    Exp,
    Log,
    Log10,
    Sign,
    AsNumber,
    ArrayContains,
    ArrayLength,
}

const VARIADIC: usize = usize::MAX;

/// Canonical name, minimum and maximum number of arguments.
const SPECS: &[(Function, &str, usize, usize)] = &[
    (Function::IsDefined, "IS_DEFINED", 1, 1),
    (Function::IsNull, "IS_NULL", 1, 1),
    (Function::IsBool, "IS_BOOL", 1, 1),
    (Function::IsNumber, "IS_NUMBER", 1, 1),
    (Function::IsString, "IS_STRING", 1, 1),
    (Function::IsObject, "IS_OBJECT", 1, 1),
    (Function::IsPrimitive, "IS_PRIMITIVE", 1, 1),
    (Function::IsArray, "IS_ARRAY", 1, 1),
    (Function::StartsWith, "STARTSWITH", 2, 3),
    (Function::EndsWith, "ENDSWITH", 2, 3),
    (Function::Contains, "CONTAINS", 2, 3),
    (Function::Lower, "LOWER", 1, 1),
    (Function::Upper, "UPPER", 1, 1),
    (Function::Length, "LENGTH", 1, 1),
    (Function::Concat, "CONCAT", 2, VARIADIC),
    (Function::Substring, "SUBSTRING", 2, 3),
    (Function::IndexOf, "INDEX_OF", 2, 2),
    (Function::Ltrim, "LTRIM", 1, 1),
    (Function::Rtrim, "RTRIM", 1, 1),
    (Function::Trim, "TRIM", 1, 1),
    (Function::Replace, "REPLACE", 3, 3),
    (Function::Reverse, "REVERSE", 1, 1),
    (Function::Left, "LEFT", 2, 2),
    (Function::Right, "RIGHT", 2, 2),
    (Function::Abs, "ABS", 1, 1),
    (Function::Ceiling, "CEILING", 1, 1),
    (Function::Floor, "FLOOR", 1, 1),
    (Function::Round, "ROUND", 1, 1),
    (Function::Trunc, "TRUNC", 1, 1),
    (Function::Square, "SQUARE", 1, 1),
    (Function::Sqrt, "SQRT", 1, 1),
    (Function::Power, "POWER", 2, 2),
    (Function::Exp, "EXP", 1, 1),
    (Function::Log, "LOG", 1, 2),
    (Function::Log10, "LOG10", 1, 1),
    (Function::Sign, "SIGN", 1, 1),
    (Function::AsNumber, "AS_NUMBER", 1, 1),
    (Function::ArrayContains, "ARRAY_CONTAINS", 2, 3),
    (Function::ArrayLength, "ARRAY_LENGTH", 1, 1),
];

/// Other spellings: the routing documentation writes `STARTS_WITH` and `ENDS_WITH`.
const ALIASES: &[(&str, Function)] = &[
    ("STARTS_WITH", Function::StartsWith),
    ("ENDS_WITH", Function::EndsWith),
];

impl Function {
    /// Finds a function by name, case-insensitively.
    pub fn lookup(name: &str) -> Option<Self> {
        SPECS
            .iter()
            .find(|(_, canonical, ..)| canonical.eq_ignore_ascii_case(name))
            .map(|(function, ..)| *function)
            .or_else(|| {
                ALIASES
                    .iter()
                    .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
                    .map(|(_, f)| *f)
            })
    }

    fn spec(self) -> (&'static str, usize, usize) {
        SPECS
            .iter()
            .find(|(function, ..)| *function == self)
            .map_or(("?", 0, VARIADIC), |(_, name, min, max)| (*name, *min, *max))
    }

    /// Returns the canonical (upper-case) name.
    pub fn name(self) -> &'static str {
        self.spec().0
    }

    /// Describes why `count` arguments do not fit, or `None` when they do.
    pub(crate) fn arity_error(self, count: usize) -> Option<String> {
        let (name, min, max) = self.spec();
        if (min..=max).contains(&count) {
            return None;
        }
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        let expected = if max == VARIADIC {
            format!("at least {min} {}", plural(min))
        } else if min == max {
            format!("{min} {}", plural(min))
        } else {
            format!("{min} to {max} arguments")
        };
        Some(format!("{name} takes {expected}, found {count}"))
    }
}

fn string<'a>(s: String) -> Val<'a> {
    (s.len() <= MAX_STRING_BYTES).then(|| Cow::Owned(Value::String(s)))
}

fn number<'a>(n: usize) -> Val<'a> {
    Num::Int(i128::try_from(n).unwrap_or(i128::MAX)).into_val()
}

/// An integer argument (a number, truncated toward zero).
fn whole(value: Option<&Value>) -> Option<i64> {
    let n = Num::from_value(value?)?;
    match n {
        Num::Int(i) => Some(i64::try_from(i).unwrap_or(if i < 0 { i64::MIN } else { i64::MAX })),
        // `as` saturates: a huge position is as good as the end of the string.
        Num::Float(f) => Some(f.trunc() as i64),
    }
}

fn clamp(n: i64, len: usize) -> usize {
    usize::try_from(n.max(0)).unwrap_or(usize::MAX).min(len)
}

/// Calls `function` on evaluated arguments (their count already checked by the parser).
pub(crate) fn call<'a>(function: Function, args: Vec<Val<'a>>) -> Val<'a> {
    let arg = |i: usize| args.get(i).and_then(|a| a.as_deref());
    let text = |i: usize| match arg(i) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let num = |i: usize| arg(i).and_then(Num::from_value);
    let is = |check: fn(&Value) -> bool| boolean(arg(0).is_some_and(check));
    match function {
        Function::IsDefined => boolean(arg(0).is_some()),
        Function::IsNull => is(Value::is_null),
        Function::IsBool => is(Value::is_boolean),
        Function::IsNumber => is(Value::is_number),
        Function::IsString => is(Value::is_string),
        Function::IsObject => is(Value::is_object),
        Function::IsArray => is(Value::is_array),
        Function::IsPrimitive => is(|v| !v.is_array() && !v.is_object()),
        Function::StartsWith | Function::EndsWith | Function::Contains => {
            let ignore_case = match arg(2) {
                None if args.len() < 3 => false,
                Some(Value::Bool(b)) => *b,
                _ => return None,
            };
            let (mut s, mut p) = (Cow::Borrowed(text(0)?), Cow::Borrowed(text(1)?));
            if ignore_case {
                s = Cow::Owned(s.to_lowercase());
                p = Cow::Owned(p.to_lowercase());
            }
            boolean(match function {
                Function::StartsWith => s.starts_with(p.as_ref()),
                Function::EndsWith => s.ends_with(p.as_ref()),
                _ => s.contains(p.as_ref()),
            })
        }
        Function::Lower => string(text(0)?.to_lowercase()),
        Function::Upper => string(text(0)?.to_uppercase()),
        Function::Length => number(text(0)?.chars().count()),
        Function::Concat => {
            let mut out = String::new();
            for i in 0..args.len() {
                let piece = text(i)?;
                if out.len() + piece.len() > MAX_STRING_BYTES {
                    return None;
                }
                out.push_str(piece);
            }
            string(out)
        }
        Function::Substring => {
            let s = text(0)?;
            let len = s.chars().count();
            let start = clamp(whole(arg(1))?, len);
            let count = if args.len() > 2 {
                clamp(whole(arg(2))?, len)
            } else {
                len
            };
            string(s.chars().skip(start).take(count).collect())
        }
        Function::IndexOf => {
            let (s, fragment) = (text(0)?, text(1)?);
            match s.find(fragment) {
                Some(byte) => number(s[..byte].chars().count()),
                None => Num::Int(-1).into_val(),
            }
        }
        Function::Ltrim => string(text(0)?.trim_start().to_owned()),
        Function::Rtrim => string(text(0)?.trim_end().to_owned()),
        Function::Trim => string(text(0)?.trim().to_owned()),
        Function::Replace => {
            let (s, from, to) = (text(0)?, text(1)?, text(2)?);
            if from.is_empty() {
                return string(s.to_owned());
            }
            let grows = to
                .len()
                .saturating_sub(from.len())
                .saturating_mul(s.matches(from).count());
            if s.len().saturating_add(grows) > MAX_STRING_BYTES {
                return None;
            }
            string(s.replace(from, to))
        }
        Function::Reverse => string(text(0)?.chars().rev().collect()),
        Function::Left => {
            let s = text(0)?;
            string(s.chars().take(clamp(whole(arg(1))?, s.len())).collect())
        }
        Function::Right => {
            let s = text(0)?;
            let len = s.chars().count();
            let keep = clamp(whole(arg(1))?, len);
            string(s.chars().skip(len - keep).collect())
        }
        Function::Abs => match num(0)? {
            Num::Int(i) => Num::Int(i.abs()).into_val(),
            Num::Float(f) => Num::Float(f.abs()).into_val(),
        },
        Function::Ceiling => rounding(num(0)?, f64::ceil),
        Function::Floor => rounding(num(0)?, f64::floor),
        // f64::round rounds half away from zero, like IoT Hub's ROUND.
        Function::Round => rounding(num(0)?, f64::round),
        Function::Trunc => rounding(num(0)?, f64::trunc),
        Function::Sign => match num(0)? {
            Num::Int(i) => Num::Int(i.signum()).into_val(),
            Num::Float(f) => Num::Int(if f > 0.0 {
                1
            } else if f < 0.0 {
                -1
            } else {
                0
            })
            .into_val(),
        },
        Function::Square => match num(0)? {
            Num::Int(i) => i.checked_mul(i).map_or_else(
                || Num::Float((i as f64).powi(2)).into_val(),
                |sq| Num::Int(sq).into_val(),
            ),
            Num::Float(f) => Num::Float(f * f).into_val(),
        },
        Function::Power => match (num(0)?, num(1)?) {
            (Num::Int(base), Num::Int(exp)) if (0..=u32::MAX.into()).contains(&exp) => {
                let exact = u32::try_from(exp).ok().and_then(|e| base.checked_pow(e));
                exact.map_or_else(
                    || float(num(0)?.to_f64().powf(num(1)?.to_f64())),
                    |p| Num::Int(p).into_val(),
                )
            }
            (base, exp) => float(base.to_f64().powf(exp.to_f64())),
        },
        Function::Sqrt => float(num(0)?.to_f64().sqrt()),
        Function::Exp => float(num(0)?.to_f64().exp()),
        Function::Log10 => positive(num(0)?).and_then(|x| float(x.log10())),
        Function::Log => {
            let x = positive(num(0)?)?;
            match args.len() {
                1 => float(x.ln()),
                _ => float(x.log(positive(num(1)?)?)),
            }
        }
        Function::AsNumber => match arg(0)? {
            Value::Number(n) => Some(Cow::Owned(Value::Number(n.clone()))),
            Value::String(s) => as_number(s.trim()),
            _ => None,
        },
        Function::ArrayContains => {
            let Some(Value::Array(items)) = arg(0) else {
                return None;
            };
            let needle = arg(1)?;
            let partial = match arg(2) {
                None if args.len() < 3 => false,
                Some(Value::Bool(b)) => *b,
                _ => return None,
            };
            boolean(items.iter().any(|item| {
                if partial {
                    contains_partially(item, needle)
                } else {
                    same(item, needle)
                }
            }))
        }
        Function::ArrayLength => match arg(0)? {
            Value::Array(items) => number(items.len()),
            _ => None,
        },
    }
}

fn float<'a>(f: f64) -> Val<'a> {
    Num::Float(f).into_val()
}

fn positive(n: Num) -> Option<f64> {
    Some(n.to_f64()).filter(|x| *x > 0.0)
}

/// CEILING, FLOOR, ROUND, TRUNC: integers are already whole; an integral float result becomes an
/// integer.
fn rounding<'a>(n: Num, op: fn(f64) -> f64) -> Val<'a> {
    match n {
        Num::Int(i) => Num::Int(i).into_val(),
        Num::Float(f) => Num::integral(op(f)).into_val(),
    }
}

/// `AS_NUMBER` of a string: an integer when it reads as one, otherwise a finite float.
fn as_number<'a>(s: &str) -> Val<'a> {
    if let Ok(i) = s.parse::<i64>() {
        return Num::Int(i.into()).into_val();
    }
    if let Ok(u) = s.parse::<u64>() {
        return Num::Int(u.into()).into_val();
    }
    // Rust also reads "inf" and "NaN"; JSON has neither, so they stay undefined.
    s.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(float)
}

/// ARRAY_CONTAINS with partial matching: an object matches when it has every member of `needle`.
fn contains_partially(item: &Value, needle: &Value) -> bool {
    match (item, needle) {
        (Value::Object(item), Value::Object(needle)) => needle
            .iter()
            .all(|(key, value)| item.get(key).is_some_and(|v| same(v, value))),
        _ => same(item, needle),
    }
}
