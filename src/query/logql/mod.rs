//! LogQL: lexer, parser (to [`ast::Expr`]), printer ([`format_query`]) and an
//! evaluator over a [`crate::logs::LogReader`].
//!
//! Log queries return streams with the pipeline applied; metric queries
//! return vectors or matrices with Loki's step semantics (range windows are
//! `(t - range, t]`). Plain-term line filters are pushed down to the store as
//! a [`crate::logs::LineHint`]; regexes get literal prefilters.

pub mod ast;
pub mod detected;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod pipeline;
pub mod template;
pub mod vector;

pub use ast::Expr;
pub use eval::{
    CategorizedEntry, Direction, Engine, EvalError, LogParams, QueryResult, RangeParams,
};
pub use parser::parse;

use std::fmt;

/// A query did not parse. Displays as Loki does:
/// `parse error at line 1, col 5: syntax error: unexpected ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Line (1-based; 0 when the error is not tied to a position).
    pub line: usize,
    /// Column (1-based; 0 when not tied to a position).
    pub col: usize,
    /// What was wrong.
    pub msg: String,
}

impl ParseError {
    /// An error at a position.
    pub fn at(line: usize, col: usize, msg: String) -> ParseError {
        ParseError { line, col, msg }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 && self.col == 0 {
            write!(f, "parse error : {}", self.msg)
        } else {
            write!(
                f,
                "parse error at line {}, col {}: {}",
                self.line, self.col, self.msg
            )
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses and pretty-prints a query (Loki's `/loki/api/v1/format_query`).
pub fn format_query(src: &str) -> Result<String, ParseError> {
    Ok(parse(src)?.to_string())
}
