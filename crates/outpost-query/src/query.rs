//! [`Query`] (a whole `SELECT`, run over documents) and [`Condition`] (a routing expression).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Display, Formatter};

use serde_json::{Map, Value};

use crate::ast::{Aggregate, Expr, Path, PathSegment, Projection, SelectExpr, Source, Statement};
use crate::error::QueryError;
use crate::eval::{Num, Scope, compare, eval, holds};
use crate::parser::{parse_condition, parse_query};

/// A parsed IoT Hub query (`SELECT … FROM devices …`).
///
/// Paths may name the collection first (`devices.jobs.status` in `FROM devices.jobs`): that prefix
/// is skipped when they resolve.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    statement: Statement,
    names: Vec<String>,
}

impl Query {
    /// Parses and checks `text`.
    ///
    /// # Errors
    ///
    /// A [`QueryError`] with the position of the first problem: a lexical or syntax error, an
    /// unknown function or wrong arity, aggregate misuse, a GROUP BY that does not match the
    /// SELECT list, text over [`MAX_QUERY_BYTES`](crate::MAX_QUERY_BYTES) or nesting over
    /// [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let parsed = parse_query(text)?;
        Ok(Self {
            statement: parsed.statement,
            names: parsed.names,
        })
    }

    /// Returns the syntax tree.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// Returns the collection the query runs over.
    pub fn source(&self) -> Source {
        self.statement.source
    }

    /// Returns `TOP n`, if any.
    pub fn top(&self) -> Option<usize> {
        self.statement.top
    }

    /// Returns whether the query aggregates (COUNT, SUM, AVG, MIN, MAX or GROUP BY): it then yields
    /// one row per group rather than one per document.
    pub fn is_aggregate(&self) -> bool {
        match &self.statement.projection {
            Projection::All => false,
            Projection::Items(items) => {
                !self.statement.group_by.is_empty()
                    || items
                        .iter()
                        .any(|item| matches!(item.expr, SelectExpr::Aggregate(_)))
            }
        }
    }

    /// Returns the output names of the SELECT list (empty for `SELECT *`): the alias, else the
    /// last property name of the path, else `$1`, `$2`… in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Returns whether `document` satisfies the WHERE clause (true when there is none).
    pub fn matches(&self, document: &Value) -> bool {
        self.matches_scope(document)
    }

    /// [`matches`](Self::matches) over any [`Scope`].
    pub fn matches_scope(&self, document: &dyn Scope) -> bool {
        let Some(filter) = &self.statement.filter else {
            return true;
        };
        let scope = Collection {
            document,
            prefix: self.source().prefix(),
        };
        holds(eval(filter, &scope))
    }

    /// Returns the projection of one document: the document itself for `SELECT *`, otherwise an
    /// object of the selected paths that are defined (aggregates are left out; see
    /// [`run`](Self::run)).
    pub fn project(&self, document: &Value) -> Value {
        let Projection::Items(items) = &self.statement.projection else {
            return document.clone();
        };
        let scope = Collection {
            document,
            prefix: self.source().prefix(),
        };
        let mut row = Map::new();
        for (item, name) in items.iter().zip(&self.names) {
            if let SelectExpr::Path(path) = &item.expr
                && let Some(value) = scope.resolve(&path.segments)
            {
                row.insert(name.clone(), value.into_owned());
            }
        }
        Value::Object(row)
    }

    /// Runs the whole query over `documents`: WHERE, then the projection of each match, or the
    /// aggregation (one row per GROUP BY group in order of first appearance, or one row without
    /// GROUP BY), then TOP.
    pub fn run<'a>(&self, documents: impl IntoIterator<Item = &'a Value>) -> Vec<Value> {
        let top = self.top().unwrap_or(usize::MAX);
        let matching = documents.into_iter().filter(|document| self.matches(document));
        if !self.is_aggregate() {
            return matching
                .take(top)
                .map(|document| self.project(document))
                .collect();
        }
        let Projection::Items(items) = &self.statement.projection else {
            return Vec::new();
        };
        let mut groups = Groups::default();
        for document in matching {
            let scope = Collection {
                document,
                prefix: self.source().prefix(),
            };
            groups.add(
                &scope,
                &self.statement.group_by,
                items.iter().map(|item| &item.expr),
            );
        }
        if groups.rows.is_empty() && self.statement.group_by.is_empty() {
            // Without GROUP BY, an aggregate yields one row even over no document (COUNT() = 0).
            groups.rows.push(Group::new(Vec::new(), items.len()));
        }
        groups
            .rows
            .into_iter()
            .take(top)
            .map(|group| {
                group.row(
                    &self.statement.group_by,
                    items.iter().map(|item| &item.expr),
                    &self.names,
                )
            })
            .collect()
    }
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.statement.fmt(f)
    }
}

/// A routing condition: an expression over a message (`$body.temp > 30 AND level = 'critical'`).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    expr: Expr,
}

impl Condition {
    /// Parses and checks `text`.
    ///
    /// # Errors
    ///
    /// A [`QueryError`] as for [`Query::parse`]; aggregates are refused.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        Ok(Self {
            expr: parse_condition(text)?,
        })
    }

    /// Returns the expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Returns whether the condition holds: only when it evaluates to boolean `true` (undefined,
    /// null and every other value are false).
    pub fn evaluate(&self, scope: &dyn Scope) -> bool {
        holds(eval(&self.expr, scope))
    }
}

impl Display for Condition {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// A document seen through its collection name: `devices.jobs.status` resolves as `status`.
struct Collection<'s> {
    document: &'s dyn Scope,
    prefix: &'static [&'static str],
}

impl Scope for Collection<'_> {
    fn resolve(&self, path: &[PathSegment]) -> Option<Cow<'_, Value>> {
        let prefixed = path.len() > self.prefix.len()
            && path
                .iter()
                .zip(self.prefix)
                .all(|(segment, name)| matches!(segment, PathSegment::Name(n) if n == name));
        self.document.resolve(if prefixed {
            &path[self.prefix.len()..]
        } else {
            path
        })
    }
}

#[derive(Default)]
struct Groups {
    index: HashMap<String, usize>,
    rows: Vec<Group>,
}

impl Groups {
    fn add<'e>(&mut self, scope: &dyn Scope, group_by: &[Path], exprs: impl Iterator<Item = &'e SelectExpr>) {
        let key: Vec<Option<Value>> = group_by
            .iter()
            .map(|path| scope.resolve(&path.segments).map(Cow::into_owned))
            .collect();
        let id = group_key(&key);
        let count = self.rows.len();
        let slot = *self.index.entry(id).or_insert(count);
        if slot == count {
            self.rows.push(Group::new(key, 0));
        }
        let group = &mut self.rows[slot];
        for (i, expr) in exprs.enumerate() {
            if group.accumulators.len() <= i {
                group.accumulators.push(Accumulator::default());
            }
            if let SelectExpr::Aggregate(aggregate) = expr {
                group.accumulators[i].add(aggregate, scope);
            }
        }
    }
}

/// The identity of a group: undefined and null differ; numbers compare by value (`1` and `1.0`).
fn group_key(key: &[Option<Value>]) -> String {
    let mut id = String::new();
    for value in key {
        match value {
            None => id.push('u'),
            Some(Value::Number(n)) => match Num::of(n) {
                Num::Int(i) => id.push_str(&format!("i{i}")),
                // An integral float is the integer it equals (exactly, below 2^53).
                Num::Float(f) => match Num::integral(f) {
                    Num::Int(i) => id.push_str(&format!("i{i}")),
                    Num::Float(f) => id.push_str(&format!("f{f:?}")),
                },
            },
            Some(value) => {
                id.push('v');
                id.push_str(&value.to_string());
            }
        }
        id.push('\u{0}');
    }
    id
}

struct Group {
    key: Vec<Option<Value>>,
    accumulators: Vec<Accumulator>,
}

impl Group {
    fn new(key: Vec<Option<Value>>, items: usize) -> Self {
        Self {
            key,
            accumulators: (0..items).map(|_| Accumulator::default()).collect(),
        }
    }

    fn row<'e>(
        &self,
        group_by: &[Path],
        exprs: impl Iterator<Item = &'e SelectExpr>,
        names: &[String],
    ) -> Value {
        let mut row = Map::new();
        for ((i, expr), name) in exprs.enumerate().zip(names) {
            let value = match expr {
                SelectExpr::Path(path) => group_by
                    .iter()
                    .position(|p| p == path)
                    .and_then(|k| self.key.get(k).cloned().flatten()),
                SelectExpr::Aggregate(aggregate) => {
                    self.accumulators.get(i).and_then(|acc| acc.result(aggregate))
                }
            };
            if let Some(value) = value {
                row.insert(name.clone(), value);
            }
        }
        Value::Object(row)
    }
}

/// The running state of one aggregate over one group.
#[derive(Default)]
struct Accumulator {
    count: u64,
    /// SUM/AVG: the running total (`None` once a non-number was seen); MIN/MAX: unused.
    total: Option<Num>,
    /// MIN/MAX: the best value so far.
    best: Option<Value>,
    /// A value of another type was seen: SUM, AVG, MIN and MAX are undefined.
    mixed: bool,
}

impl Accumulator {
    fn add(&mut self, aggregate: &Aggregate, scope: &dyn Scope) {
        let path = match aggregate {
            Aggregate::Count => {
                self.count += 1;
                return;
            }
            Aggregate::Sum(path) | Aggregate::Avg(path) | Aggregate::Min(path) | Aggregate::Max(path) => path,
        };
        // Documents where the path is undefined do not take part.
        let Some(value) = scope.resolve(&path.segments) else {
            return;
        };
        self.count += 1;
        match aggregate {
            Aggregate::Sum(_) | Aggregate::Avg(_) => match Num::from_value(&value) {
                Some(n) => {
                    let total = self.total.unwrap_or(Num::Int(0));
                    self.total = Some(match (total, n) {
                        (Num::Int(a), Num::Int(b)) if a.checked_add(b).is_some() => Num::Int(a + b),
                        (a, b) => Num::Float(a.to_f64() + b.to_f64()),
                    });
                }
                None => self.mixed = true,
            },
            // MIN and MAX skip nulls, like undefined.
            _ if value.is_null() => {}
            _ => {
                let better = match &self.best {
                    None => Some(true),
                    Some(best) => compare(&value, best).map(|o| {
                        if matches!(aggregate, Aggregate::Min(_)) {
                            o.is_lt()
                        } else {
                            o.is_gt()
                        }
                    }),
                };
                match better {
                    Some(true) => self.best = Some(value.into_owned()),
                    Some(_) => {}
                    None => self.mixed = true,
                }
            }
        }
    }

    fn result(&self, aggregate: &Aggregate) -> Option<Value> {
        if self.mixed {
            return None;
        }
        match aggregate {
            Aggregate::Count => Some(Value::from(self.count)),
            Aggregate::Sum(_) => self.total.unwrap_or(Num::Int(0)).into_number().map(Value::Number),
            Aggregate::Avg(_) => {
                let total = self.total?;
                Num::Float(total.to_f64() / self.count as f64)
                    .into_number()
                    .map(Value::Number)
            }
            Aggregate::Min(_) | Aggregate::Max(_) => self.best.clone(),
        }
    }
}
