//! The lexer: query text → [`Token`]s with byte spans.
//!
//! Keywords are not tokens of their own: they are identifiers the parser compares
//! case-insensitively, so that `properties.reported.select` stays a path. Identifiers may start
//! with `$` (`$version`, `$body`, `$metadata`); after a `$` a hyphen followed by a letter stays in
//! the name, for the routing system properties `$dt-dataschema` and `$dt-subject`.

use serde_json::Number;

use crate::error::{QueryError, QueryErrorKind};

/// One token of the query language.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// A name: keyword, function, property (`$`-prefixed or not).
    Ident(String),
    /// A number literal, without sign (the parser folds a leading `-`).
    Number(Number),
    /// A string literal, unescaped.
    Str(String),
    /// Punctuation and operators, as written (`<>` and `!=` stay distinct here).
    Symbol(&'static str),
    /// The end of the text.
    Eof,
}

/// A token and the byte range it covers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub(crate) token: Token,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Symbols, longest first so that `<=` wins over `<`.
const SYMBOLS: &[&str] = &[
    "<=", ">=", "<>", "!=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "*", "+", "-", "/", "%", "=", "<",
    ">",
];

/// Returns whether `c` may start an identifier (after an optional `$`).
pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

/// Returns whether `c` may continue an identifier.
pub(crate) fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Returns whether `name` lexes as exactly one identifier token.
pub(crate) fn is_identifier(name: &str) -> bool {
    let rest = name.strip_prefix('$').unwrap_or(name);
    let dollar = rest.len() != name.len();
    let mut chars = rest.chars().peekable();
    match chars.next() {
        Some(c) if is_ident_start(c) => {}
        _ => return false,
    }
    while let Some(c) = chars.next() {
        if is_ident_continue(c) {
            continue;
        }
        if dollar && c == '-' && chars.peek().is_some_and(|&next| is_ident_start(next)) {
            continue;
        }
        return false;
    }
    true
}

/// Splits `text` into tokens, ending with [`Token::Eof`].
///
/// # Errors
///
/// A [`QueryErrorKind::Lexical`] error at the first character that starts no token, or at the
/// start of a malformed string or number.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Spanned>, QueryError> {
    let mut lexer = Lexer { text, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        let spanned = lexer.next_token()?;
        let done = spanned.token == Token::Eof;
        tokens.push(spanned);
        if done {
            return Ok(tokens);
        }
    }
}

struct Lexer<'t> {
    text: &'t str,
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.text[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, at: usize, message: impl Into<String>) -> QueryError {
        QueryError::new(QueryErrorKind::Lexical, self.text, at, message)
    }

    fn next_token(&mut self) -> Result<Spanned, QueryError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(Spanned {
                token: Token::Eof,
                start,
                end: start,
            });
        };
        let token = if c == '\'' || c == '"' {
            self.string(c)?
        } else if c.is_ascii_digit() {
            self.number()?
        } else if c == '$' || is_ident_start(c) {
            self.identifier()?
        } else if let Some(symbol) = SYMBOLS.iter().find(|s| self.text[start..].starts_with(**s)) {
            self.pos += symbol.len();
            Token::Symbol(symbol)
        } else {
            return Err(self.error(start, format!("unexpected character {c:?}")));
        };
        Ok(Spanned {
            token,
            start,
            end: self.pos,
        })
    }

    fn identifier(&mut self) -> Result<Token, QueryError> {
        let start = self.pos;
        let dollar = self.peek() == Some('$');
        if dollar {
            self.bump();
            if !self.peek().is_some_and(is_ident_start) {
                return Err(self.error(start, "expected a name after '$'"));
            }
        }
        loop {
            match self.peek() {
                Some(c) if is_ident_continue(c) => {}
                Some('-') if dollar && self.peek_second().is_some_and(is_ident_start) => {}
                _ => break,
            }
            self.bump();
        }
        Ok(Token::Ident(self.text[start..self.pos].to_owned()))
    }

    fn digits(&mut self, radix: u32) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_digit(radix)) {
            self.bump();
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Token, QueryError> {
        let start = self.pos;
        // The query language's hexadecimal_literal: `0x` and hex digits, an integer.
        if self.text[start..].starts_with("0x") || self.text[start..].starts_with("0X") {
            self.pos += 2;
            if self.digits(16) == 0 {
                return Err(self.error(start, "expected hexadecimal digits after '0x'"));
            }
            return u64::from_str_radix(&self.text[start + 2..self.pos], 16)
                .map(|n| Token::Number(n.into()))
                .map_err(|_| self.error(start, "number out of range"));
        }
        self.digits(10);
        let mut float = false;
        if self.peek() == Some('.') && self.peek_second().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            self.digits(10);
            float = true;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let mark = self.pos;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if self.digits(10) == 0 {
                return Err(self.error(mark, "expected digits in the exponent of a number"));
            }
            float = true;
        }
        let literal = &self.text[start..self.pos];
        if !float && let Ok(n) = literal.parse::<u64>() {
            return Ok(Token::Number(n.into()));
        }
        literal
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Token::Number)
            .ok_or_else(|| self.error(start, "number out of range"))
    }

    fn string(&mut self, quote: char) -> Result<Token, QueryError> {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return Err(self.error(start, "unterminated string")),
                Some(c) if c == quote => return Ok(Token::Str(value)),
                Some('\\') => value.push(self.escape(at)?),
                Some(c) => value.push(c),
            }
        }
    }

    /// Decodes the escape whose backslash is at `at` (the language's escapes plus JSON's).
    fn escape(&mut self, at: usize) -> Result<char, QueryError> {
        let c = match self.bump() {
            Some('\'') => '\'',
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => return self.unicode_escape(at),
            Some(other) => {
                return Err(self.error(at, format!("invalid escape sequence '\\{other}' in string")));
            }
            None => return Err(self.error(at, "unterminated string")),
        };
        Ok(c)
    }

    fn hex4(&mut self, at: usize) -> Result<u32, QueryError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.chars().all(|c| c.is_ascii_hexdigit()));
        let value = digits
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error(at, "expected 4 hexadecimal digits after '\\u'"))?;
        self.pos += 4;
        Ok(value)
    }

    fn unicode_escape(&mut self, at: usize) -> Result<char, QueryError> {
        let first = self.hex4(at)?;
        let code = if (0xD800..0xDC00).contains(&first) {
            // A high surrogate must be followed by `\u` and a low one (UTF-16 pair, as in JSON).
            let low_at = self.pos;
            if !self.text[self.pos..].starts_with("\\u") {
                return Err(self.error(at, "unpaired surrogate in '\\u' escape"));
            }
            self.pos += 2;
            let second = self.hex4(low_at)?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error(at, "unpaired surrogate in '\\u' escape"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error(at, "unpaired surrogate in '\\u' escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<Token> {
        tokenize(text).unwrap().into_iter().map(|s| s.token).collect()
    }

    #[test]
    fn lexes_paths_operators_and_literals() {
        assert_eq!(
            tokens("a.$b<>'x\\'y'<=-1.5e2"),
            vec![
                Token::Ident("a".into()),
                Token::Symbol("."),
                Token::Ident("$b".into()),
                Token::Symbol("<>"),
                Token::Str("x'y".into()),
                Token::Symbol("<="),
                Token::Symbol("-"),
                Token::Number(Number::from_f64(150.0).unwrap()),
                Token::Eof,
            ]
        );
    }

    #[test]
    fn dollar_names_keep_hyphens_before_letters_only() {
        assert_eq!(tokens("$dt-subject")[0], Token::Ident("$dt-subject".into()));
        assert_eq!(tokens("$version-1")[1], Token::Symbol("-"));
        assert_eq!(tokens("a-b")[1], Token::Symbol("-"));
    }

    #[test]
    fn numbers_hex_big_and_surrogates() {
        assert_eq!(tokens("0x1F")[0], Token::Number(31.into()));
        assert_eq!(
            tokens("18446744073709551616")[0],
            Token::Number(Number::from_f64(18446744073709551616.0).unwrap())
        );
        assert_eq!(tokens("'\\ud83d\\ude00'")[0], Token::Str("😀".into()));
        assert_eq!(tokens("1.x")[1], Token::Symbol("."));
    }

    #[test]
    fn identifier_check_matches_the_lexer() {
        for name in ["a", "$a", "_1", "$dt-subject", "été"] {
            assert!(is_identifier(name), "{name}");
        }
        for name in ["", "$", "1a", "a-b", "$a-1", "a b", "$$a"] {
            assert!(!is_identifier(name), "{name}");
        }
    }
}
