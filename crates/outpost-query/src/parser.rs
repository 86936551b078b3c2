//! The recursive-descent parser: tokens → [`Statement`] or [`Expr`], with the static checks
//! (function names and arity, aggregate placement, GROUP BY against the SELECT list).
//!
//! Precedence, loosest first: `OR`, `AND`, `NOT`, comparisons (`= != <> < <= > >= IN NIN`),
//! `+ -`, `* / %`, unary `-`. Nesting is bounded by [`MAX_DEPTH`] so that parsing, evaluating,
//! printing and dropping the tree cannot overflow the stack: every parenthesis, bracket, function
//! call, `NOT` and unary minus is a level, and every operator of a chain (`a OR b OR …`, which
//! nests to the left) a quarter of one.

use serde_json::{Number, Value};

use crate::ast::{
    Aggregate, BinaryOp, Expr, NOT_PRECEDENCE, Path, PathSegment, Projection, SelectExpr, SelectItem, Source,
    Statement, UnaryOp, is_reserved,
};
use crate::error::{QueryError, QueryErrorKind};
use crate::eval::Num;
use crate::functions::Function;
use crate::lexer::{Spanned, Token, tokenize};

/// The longest query text accepted, in bytes (IoT Hub's limit on the query string).
pub const MAX_QUERY_BYTES: usize = 8192;

/// The deepest nesting of expressions accepted (a chain of operators counts a quarter level per
/// operator). 64 levels take about 800 KiB of stack in a debug build, well within the 2 MiB of a
/// tokio worker thread; a release build needs a fraction of that.
pub const MAX_DEPTH: usize = 64;

/// Depth is counted in quarters of a level.
const NESTING: usize = 4;
const OPERATOR: usize = 1;

const AGGREGATES: &[&str] = &["COUNT", "SUM", "AVG", "MIN", "MAX"];

/// A parsed query and its output names (alias, last path segment, or `$1`, `$2`… in order).
pub(crate) struct Parsed {
    pub(crate) statement: Statement,
    pub(crate) names: Vec<String>,
}

/// Parses a whole query.
pub(crate) fn parse_query(text: &str) -> Result<Parsed, QueryError> {
    let mut parser = Parser::new(text)?;
    let parsed = parser.query()?;
    Ok(parsed)
}

/// Parses a routing condition (an expression alone).
pub(crate) fn parse_condition(text: &str) -> Result<Expr, QueryError> {
    let mut parser = Parser::new(text)?;
    let expr = parser.expr()?;
    parser.expect_end("the condition")?;
    Ok(expr)
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Spanned>,
    pos: usize,
    depth: usize,
}

impl<'t> Parser<'t> {
    fn new(text: &'t str) -> Result<Self, QueryError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(QueryError::new(
                QueryErrorKind::Limit,
                text,
                MAX_QUERY_BYTES,
                format!(
                    "query text is {} bytes long; the limit is {MAX_QUERY_BYTES}",
                    text.len()
                ),
            ));
        }
        Ok(Self {
            text,
            tokens: tokenize(text)?,
            pos: 0,
            depth: 0,
        })
    }

    // --- token helpers -------------------------------------------------------------------------

    fn current(&self) -> &Spanned {
        // `tokenize` always ends with Eof and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn token(&self) -> &Token {
        &self.current().token
    }

    fn nth(&self, ahead: usize) -> &Token {
        &self.tokens[(self.pos + ahead).min(self.tokens.len() - 1)].token
    }

    fn start(&self) -> usize {
        self.current().start
    }

    fn advance(&mut self) -> Spanned {
        let spanned = self.current().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        spanned
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.token(), Token::Ident(word) if word.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.is_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    fn is_symbol(&self, symbol: &str) -> bool {
        matches!(self.token(), Token::Symbol(s) if *s == symbol)
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = self.is_symbol(symbol);
        if found {
            self.advance();
        }
        found
    }

    /// Describes the current token for "found …" messages.
    fn found(&self) -> String {
        let Spanned { token, start, end } = self.current();
        match token {
            Token::Eof => "the end of the query".to_owned(),
            Token::Str(_) => "a string".to_owned(),
            Token::Number(_) => format!("number {}", &self.text[*start..*end]),
            Token::Ident(_) | Token::Symbol(_) => format!("'{}'", &self.text[*start..*end]),
        }
    }

    /// Names the previous token for "after …" messages (keywords upper-case).
    fn previous(&self) -> Option<String> {
        let previous = self.tokens.get(self.pos.checked_sub(1)?)?;
        let text = &self.text[previous.start..previous.end];
        Some(match &previous.token {
            Token::Ident(word) if is_reserved(word) => word.to_ascii_uppercase(),
            _ => text.to_owned(),
        })
    }

    fn error(&self, kind: QueryErrorKind, at: usize, message: impl Into<String>) -> QueryError {
        QueryError::new(kind, self.text, at, message)
    }

    fn syntax(&self, message: impl Into<String>) -> QueryError {
        self.error(QueryErrorKind::Syntax, self.start(), message)
    }

    /// "expected X, found Y" at the current token ("expected X" alone at the end of the text).
    fn expected(&self, what: &str) -> QueryError {
        if matches!(self.token(), Token::Eof) {
            self.syntax(format!("expected {what}"))
        } else {
            self.syntax(format!("expected {what}, found {}", self.found()))
        }
    }

    fn expect_symbol(&mut self, symbol: &str, what: &str) -> Result<(), QueryError> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn expect_end(&self, what: &str) -> Result<(), QueryError> {
        if matches!(self.token(), Token::Eof) {
            Ok(())
        } else {
            Err(self.syntax(format!("unexpected {} after {what}", self.found())))
        }
    }

    /// Counts `units` more depth at `at`.
    fn deepen(&mut self, at: usize, units: usize) -> Result<(), QueryError> {
        self.depth += units;
        if self.depth > MAX_DEPTH * NESTING {
            return Err(self.error(
                QueryErrorKind::Limit,
                at,
                format!("expression nested too deeply (the limit is {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    // --- query ---------------------------------------------------------------------------------

    fn query(&mut self) -> Result<Parsed, QueryError> {
        if !self.eat_keyword("SELECT") {
            return Err(self.expected("SELECT at the start of the query"));
        }
        let top = if self.eat_keyword("TOP") {
            Some(self.top()?)
        } else {
            None
        };
        let (projection, starts) = self.projection()?;
        if !self.eat_keyword("FROM") {
            return Err(self.expected("FROM after the SELECT list"));
        }
        let source = self.source()?;
        let filter = if self.eat_keyword("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let group_at = self.start();
        let mut group_by = Vec::new();
        let mut group_starts = Vec::new();
        if self.eat_keyword("GROUP") {
            if !self.eat_keyword("BY") {
                return Err(self.expected("BY after GROUP"));
            }
            loop {
                group_starts.push(self.start());
                group_by.push(self.path_after()?);
                if !self.eat_symbol(",") {
                    break;
                }
            }
        }
        self.expect_end("the end of the query")?;
        let statement = Statement {
            top,
            projection,
            source,
            filter,
            group_by,
        };
        let names = self.check(&statement, &starts, group_at, &group_starts)?;
        Ok(Parsed { statement, names })
    }

    fn top(&mut self) -> Result<usize, QueryError> {
        if let Token::Number(n) = self.token()
            && let Some(top) = n.as_u64().and_then(|n| usize::try_from(n).ok())
        {
            self.advance();
            return Ok(top);
        }
        Err(self.expected("a whole number after TOP"))
    }

    fn projection(&mut self) -> Result<(Projection, Vec<usize>), QueryError> {
        if self.eat_symbol("*") {
            if self.is_symbol(",") {
                return Err(self.semantic_here("'*' cannot be combined with other items in the SELECT list"));
            }
            return Ok((Projection::All, Vec::new()));
        }
        let mut items = Vec::new();
        let mut starts = Vec::new();
        loop {
            starts.push(self.start());
            if self.is_symbol("*") {
                return Err(self.semantic_here("'*' cannot be combined with other items in the SELECT list"));
            }
            let expr = self.select_expr()?;
            let alias = if self.eat_keyword("AS") {
                match self.token() {
                    Token::Ident(name) => {
                        let name = name.clone();
                        self.advance();
                        Some(name)
                    }
                    _ => return Err(self.expected("a name after AS")),
                }
            } else {
                None
            };
            items.push(SelectItem { expr, alias });
            if !self.eat_symbol(",") {
                return Ok((Projection::Items(items), starts));
            }
        }
    }

    fn semantic_here(&self, message: &str) -> QueryError {
        self.error(QueryErrorKind::Semantic, self.start(), message)
    }

    fn select_expr(&mut self) -> Result<SelectExpr, QueryError> {
        let Token::Ident(name) = self.token().clone() else {
            return Err(self.expected_after("'*', a property path or an aggregate"));
        };
        if is_reserved(&name) {
            return Err(self.expected_after("'*', a property path or an aggregate"));
        }
        let aggregate = AGGREGATES.iter().find(|a| a.eq_ignore_ascii_case(&name)).copied();
        let Some(aggregate) = aggregate.filter(|_| matches!(self.nth(1), Token::Symbol("("))) else {
            return Ok(SelectExpr::Path(self.path_after()?));
        };
        self.advance();
        self.advance();
        let result = if aggregate == "COUNT" {
            if !self.is_symbol(")") {
                return Err(self.semantic_here("COUNT() takes no argument"));
            }
            Aggregate::Count
        } else {
            let path = self.path_after()?;
            match aggregate {
                "SUM" => Aggregate::Sum(path),
                "AVG" => Aggregate::Avg(path),
                "MIN" => Aggregate::Min(path),
                _ => Aggregate::Max(path),
            }
        };
        self.expect_symbol(")", &format!("')' after the argument of {aggregate}"))?;
        Ok(SelectExpr::Aggregate(result))
    }

    fn source(&mut self) -> Result<Source, QueryError> {
        let what = "'devices', 'devices.modules' or 'devices.jobs' after FROM";
        if !self.eat_keyword("devices") {
            return Err(self.expected(what));
        }
        if !self.eat_symbol(".") {
            return Ok(Source::Devices);
        }
        if self.eat_keyword("modules") {
            Ok(Source::Modules)
        } else if self.eat_keyword("jobs") {
            Ok(Source::Jobs)
        } else {
            Err(self.expected(what))
        }
    }

    /// The static checks of a whole query; returns the output names.
    fn check(
        &self,
        statement: &Statement,
        starts: &[usize],
        group_at: usize,
        group_starts: &[usize],
    ) -> Result<Vec<String>, QueryError> {
        let semantic = |at, message: String| self.error(QueryErrorKind::Semantic, at, message);
        let Projection::Items(items) = &statement.projection else {
            if !statement.group_by.is_empty() {
                return Err(semantic(
                    group_at,
                    "GROUP BY cannot be used with SELECT *".to_owned(),
                ));
            }
            return Ok(Vec::new());
        };
        let aggregate = !statement.group_by.is_empty()
            || items
                .iter()
                .any(|item| matches!(item.expr, SelectExpr::Aggregate(_)));
        let mut names: Vec<String> = Vec::new();
        let mut unnamed = 0;
        for (item, &at) in items.iter().zip(starts) {
            let default = match &item.expr {
                SelectExpr::Path(path) => match path.segments.last() {
                    Some(PathSegment::Name(name)) => Some(name.clone()),
                    _ => None,
                },
                SelectExpr::Aggregate(_) => None,
            };
            let name = match (&item.alias, default) {
                (Some(alias), _) => alias.clone(),
                (None, Some(name)) => name,
                (None, None) => {
                    unnamed += 1;
                    format!("${unnamed}")
                }
            };
            if names.contains(&name) {
                return Err(semantic(
                    at,
                    format!("duplicate name '{name}' in the SELECT list"),
                ));
            }
            names.push(name);
            if let SelectExpr::Path(path) = &item.expr
                && aggregate
                && !statement.group_by.contains(path)
            {
                return Err(semantic(
                    at,
                    format!("'{path}' is selected with an aggregate but is not in GROUP BY"),
                ));
            }
        }
        for (path, &at) in statement.group_by.iter().zip(group_starts) {
            let selected = items
                .iter()
                .any(|item| item.expr == SelectExpr::Path(path.clone()));
            if !selected {
                return Err(semantic(
                    at,
                    format!("GROUP BY path '{path}' is not in the SELECT list"),
                ));
            }
        }
        Ok(names)
    }

    // --- expressions ---------------------------------------------------------------------------

    /// "expected X after 'Y'" for the current position (just "expected X" at the start).
    fn expected_after(&self, what: &str) -> QueryError {
        match self.previous() {
            Some(previous) => self.expected(&format!("{what} after '{previous}'")),
            None => self.expected(what),
        }
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        self.binary(BinaryOp::Or.precedence())
    }

    /// Precedence climbing: operators binding at least as tight as `min`, left-associative.
    /// One function for every level keeps the stack used per parenthesis small.
    fn binary(&mut self, min: u8) -> Result<Expr, QueryError> {
        let saved = self.depth;
        let mut left = self.prefix(min)?;
        while let Some((op, tokens)) = self.binary_op().filter(|(op, _)| op.precedence() >= min) {
            let at = self.start();
            for _ in 0..tokens {
                self.advance();
            }
            // A chain `a OR b OR …` nests to the left: every operator is one more level.
            self.deepen(at, OPERATOR)?;
            let right = if matches!(op, BinaryOp::In | BinaryOp::Nin) {
                self.in_list()?
            } else {
                self.binary(op.precedence() + 1)?
            };
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        self.depth = saved;
        Ok(left)
    }

    /// The binary operator at the current token and how many tokens it takes (`NOT IN` is two).
    fn binary_op(&self) -> Option<(BinaryOp, usize)> {
        let op = match self.token() {
            Token::Symbol("=") => BinaryOp::Eq,
            Token::Symbol("!=" | "<>") => BinaryOp::NotEq,
            Token::Symbol("<") => BinaryOp::Lt,
            Token::Symbol("<=") => BinaryOp::LtEq,
            Token::Symbol(">") => BinaryOp::Gt,
            Token::Symbol(">=") => BinaryOp::GtEq,
            Token::Symbol("+") => BinaryOp::Add,
            Token::Symbol("-") => BinaryOp::Sub,
            Token::Symbol("*") => BinaryOp::Mul,
            Token::Symbol("/") => BinaryOp::Div,
            Token::Symbol("%") => BinaryOp::Rem,
            Token::Ident(word) => {
                let op = [
                    ("OR", BinaryOp::Or),
                    ("AND", BinaryOp::And),
                    ("IN", BinaryOp::In),
                    ("NIN", BinaryOp::Nin),
                ]
                .into_iter()
                .find(|(keyword, _)| word.eq_ignore_ascii_case(keyword));
                match op {
                    Some((_, op)) => op,
                    None if word.eq_ignore_ascii_case("NOT")
                        && matches!(self.nth(1), Token::Ident(next) if next.eq_ignore_ascii_case("IN")) =>
                    {
                        return Some((BinaryOp::Nin, 2));
                    }
                    None => return None,
                }
            }
            _ => return None,
        };
        Some((op, 1))
    }

    /// The right side of IN: `(a, b)` (a list, even of one) or an expression that should be an
    /// array (`[a, b]`, a path).
    fn in_list(&mut self) -> Result<Expr, QueryError> {
        if !self.is_symbol("(") {
            return self.binary(BinaryOp::In.precedence() + 1);
        }
        let at = self.advance().start;
        self.deepen(at, NESTING)?;
        let items = self.list(")", "a list")?;
        self.depth -= NESTING;
        Ok(Expr::Array(items))
    }

    /// `NOT e` (over a comparison: `NOT a = b` is `NOT (a = b)`; only where an operand of
    /// precedence `min` may be a NOT, so `a = NOT b` needs parentheses), `-e` (tightest), or a
    /// primary.
    fn prefix(&mut self, min: u8) -> Result<Expr, QueryError> {
        self.deepen(self.start(), NESTING)?;
        let expr = if min <= NOT_PRECEDENCE && self.eat_keyword("NOT") {
            let operand = self.binary(NOT_PRECEDENCE)?;
            Expr::Unary {
                op: UnaryOp::Not,
                operand: Box::new(operand),
            }
        } else if self.eat_symbol("-") {
            negative(self.prefix(u8::MAX)?)
        } else if self.eat_symbol("(") {
            let inner = self.expr()?;
            self.expect_symbol(")", "')'")?;
            inner
        } else {
            self.primary()?
        };
        self.depth -= NESTING;
        Ok(expr)
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let literal = match self.token() {
            Token::Number(n) => Some(Value::Number(n.clone())),
            Token::Str(s) => Some(Value::String(s.clone())),
            _ => None,
        };
        if let Some(literal) = literal {
            self.advance();
            return Ok(Expr::Literal(literal));
        }
        if self.eat_symbol("[") {
            return Ok(Expr::Array(self.list("]", "an array")?));
        }
        if self.eat_symbol("{") {
            return self.object();
        }
        let Token::Ident(word) = self.token() else {
            return Err(self.expected_after("an expression"));
        };
        let constant = match word.to_ascii_lowercase().as_str() {
            "true" => Some(Expr::Literal(Value::Bool(true))),
            "false" => Some(Expr::Literal(Value::Bool(false))),
            "null" => Some(Expr::Literal(Value::Null)),
            "undefined" => Some(Expr::Undefined),
            _ => None,
        };
        if let Some(constant) = constant {
            self.advance();
            return Ok(constant);
        }
        if is_reserved(word) {
            return Err(self.expected_after("an expression"));
        }
        if matches!(self.nth(1), Token::Symbol("(")) {
            return self.call();
        }
        Ok(Expr::Path(self.path()?))
    }

    /// Comma-separated expressions up to `close` (already past the opening bracket).
    fn list(&mut self, close: &str, what: &str) -> Result<Vec<Expr>, QueryError> {
        let mut items = Vec::new();
        if self.eat_symbol(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_symbol(close) {
                return Ok(items);
            }
            if !self.eat_symbol(",") {
                return Err(self.expected(&format!("',' or '{close}' in {what}")));
            }
        }
    }

    fn object(&mut self) -> Result<Expr, QueryError> {
        let mut members = Vec::new();
        if self.eat_symbol("}") {
            return Ok(Expr::Object(members));
        }
        loop {
            let key = match self.token() {
                Token::Str(key) | Token::Ident(key) => key.clone(),
                _ => return Err(self.expected("a property name in an object")),
            };
            self.advance();
            self.expect_symbol(":", "':' after a property name")?;
            members.push((key, self.expr()?));
            if self.eat_symbol("}") {
                return Ok(Expr::Object(members));
            }
            if !self.eat_symbol(",") {
                return Err(self.expected("',' or '}' in an object"));
            }
        }
    }

    fn call(&mut self) -> Result<Expr, QueryError> {
        let name_token = self.advance();
        let Token::Ident(name) = &name_token.token else {
            return Err(self.expected("a function name"));
        };
        let semantic = |message: String| self.error(QueryErrorKind::Semantic, name_token.start, message);
        if let Some(aggregate) = AGGREGATES.iter().find(|a| a.eq_ignore_ascii_case(name)) {
            return Err(semantic(format!(
                "{aggregate}() is only allowed in the SELECT list"
            )));
        }
        let Some(function) = Function::lookup(name) else {
            return Err(semantic(format!("unknown function '{name}'")));
        };
        self.advance();
        let args = self.list(")", &format!("the arguments of {}", function.name()))?;
        if let Some(expected) = function.arity_error(args.len()) {
            return Err(self.error(QueryErrorKind::Semantic, name_token.start, expected));
        }
        Ok(Expr::Call { function, args })
    }

    /// A path in a position where nothing else may stand (SELECT items, GROUP BY, aggregates).
    fn path_after(&mut self) -> Result<Path, QueryError> {
        match self.token() {
            Token::Ident(word) if !is_reserved(word) => self.path(),
            _ => Err(self.expected_after("a property path")),
        }
    }

    fn path(&mut self) -> Result<Path, QueryError> {
        let Token::Ident(first) = self.advance().token else {
            return Err(self.expected("a property path"));
        };
        let mut segments = vec![PathSegment::Name(first)];
        loop {
            if self.eat_symbol(".") {
                match self.token() {
                    Token::Ident(name) => {
                        segments.push(PathSegment::Name(name.clone()));
                        self.advance();
                    }
                    _ => return Err(self.expected("a property name after '.'")),
                }
            } else if self.eat_symbol("[") {
                let segment = match self.token() {
                    Token::Str(name) => PathSegment::Name(name.clone()),
                    Token::Number(n) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
                        Some(index) => PathSegment::Index(index),
                        None => return Err(self.expected("a string or a whole number in brackets")),
                    },
                    _ => return Err(self.expected("a string or a whole number in brackets")),
                };
                self.advance();
                segments.push(segment);
                self.expect_symbol("]", "']'")?;
            } else {
                return Ok(Path { segments });
            }
        }
    }
}

/// `-operand`; `-5` is the literal -5, so that printing and re-parsing give the same tree.
fn negative(operand: Expr) -> Expr {
    match operand {
        Expr::Literal(Value::Number(n)) => Expr::Literal(Value::Number(negate(&n))),
        operand => Expr::Unary {
            op: UnaryOp::Neg,
            operand: Box::new(operand),
        },
    }
}

/// Negates a number literal exactly where it can (`-9223372036854775808` stays an integer).
fn negate(n: &Number) -> Number {
    match Num::of(n) {
        Num::Int(i) => Num::Int(-i).into_number(),
        Num::Float(f) => Number::from_f64(-f),
    }
    .unwrap_or_else(|| n.clone())
}
