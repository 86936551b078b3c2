//! [`QueryError`]: the one error of the crate, with the position where the text went wrong.

use thiserror::Error;

/// What kind of mistake a [`QueryError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// A character sequence is not a token (unterminated string, bad escape, stray character).
    Lexical,
    /// The tokens do not follow the grammar.
    Syntax,
    /// The query is well-formed but meaningless: unknown function, wrong arity, aggregate misuse,
    /// a GROUP BY that does not match the projection.
    Semantic,
    /// The query exceeds a limit (text length, nesting depth).
    Limit,
}

/// Why a query or a routing condition was refused, and where.
///
/// Displays as `"<message> at line <l>, column <c>"`; lines and columns count from 1, columns in
/// characters. [`offset`](Self::offset) is the byte offset into the text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} at line {line}, column {column}")]
pub struct QueryError {
    kind: QueryErrorKind,
    message: String,
    offset: usize,
    line: usize,
    column: usize,
}

impl QueryError {
    /// Builds an error at byte `offset` of `text` (clamped to the text and to a char boundary).
    pub(crate) fn new(kind: QueryErrorKind, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            kind,
            message: message.into(),
            offset,
            line,
            column,
        }
    }

    /// Returns the kind of mistake.
    pub fn kind(&self) -> QueryErrorKind {
        self.kind
    }

    /// Returns the message without the position ("expected an expression after 'AND'").
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns the byte offset into the query text where the error was detected.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Returns the line (from 1) of [`offset`](Self::offset).
    pub fn line(&self) -> usize {
        self.line
    }

    /// Returns the column (from 1, in characters) of [`offset`](Self::offset).
    pub fn column(&self) -> usize {
        self.column
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lines_and_characters() {
        let text = "SELECT *\nFROM dévices x";
        let error = QueryError::new(QueryErrorKind::Syntax, text, text.len() - 1, "boom");
        assert_eq!((error.line(), error.column()), (2, 14));
        assert_eq!(error.to_string(), "boom at line 2, column 14");
    }

    #[test]
    fn offset_inside_a_character_moves_back_to_its_start() {
        let error = QueryError::new(QueryErrorKind::Limit, "é", 1, "x");
        assert_eq!((error.offset(), error.column()), (0, 1));
    }
}
