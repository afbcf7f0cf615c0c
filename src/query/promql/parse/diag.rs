//! Better messages for the crate's catch-all "invalid promql query": the
//! bridge finds the first token Prometheus's parser would stop at in the
//! common cases and words it as Prometheus does
//! (`1:5: parse error: unexpected identifier "bar"`).

use super::lexer::{line_col, Kind, Token, NON_ENDING_WORDS};

/// Binary operators and keywords after which an operand must follow.
const NEEDS_OPERAND: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">=", "</", ">/", "and", "or",
    "unless", "atan2", "(", ",", "@", "offset", "bool",
];

/// Binary operators (a second one right after another is an error).
const BINARY: &[&str] = &[
    "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">=", "</", ">/", "and", "or", "unless",
    "atan2",
];

fn is_one_of(t: &Token<'_>, set: &[&str]) -> bool {
    set.iter()
        .any(|w| (t.kind == Kind::Punct && t.text == *w) || t.is_word(w))
}

/// Whether `t` can end an operand (`foo`, `5`, `")"`, ...).
fn ends_operand(t: &Token<'_>) -> bool {
    match t.kind {
        Kind::Ident => !is_one_of(t, NEEDS_OPERAND) && !is_one_of(t, BINARY),
        Kind::Number | Kind::Duration | Kind::Str => true,
        Kind::Punct => t.is(")") || t.is("]") || t.is("}"),
    }
}

/// Whether `t` can only start an operand (not continue an expression).
fn starts_operand(t: &Token<'_>) -> bool {
    match t.kind {
        // Keywords may legally follow an operand (`x offset`, `x and y`).
        Kind::Ident => !NON_ENDING_WORDS
            .iter()
            .chain(&["fill", "fill_left", "fill_right"])
            .any(|w| t.is_word(w)),
        Kind::Number | Kind::Str => true,
        Kind::Duration | Kind::Punct => false,
    }
}

fn describe(t: &Token<'_>) -> String {
    match t.kind {
        Kind::Ident => format!("identifier {:?}", t.text),
        Kind::Number => format!("number {:?}", t.text),
        Kind::Duration => format!("duration {:?}", t.text),
        Kind::Str => format!("string {:?}", t.text),
        Kind::Punct => format!("<op:{}>", t.text),
    }
}

/// A Prometheus-style message for `q` if one of the common mistakes is
/// found, else `None`.
pub(crate) fn diagnose(q: &str, toks: &[Token<'_>]) -> Option<String> {
    let at = |t: &Token<'_>, msg: String| {
        let (line, col) = line_col(q, t.start);
        Some(format!("{line}:{col}: parse error: {msg}"))
    };
    for w in toks.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if ends_operand(a) && starts_operand(b) {
            return at(b, format!("unexpected {}", describe(b)));
        }
        if is_one_of(a, NEEDS_OPERAND) && !a.is("(") && is_one_of(b, BINARY) {
            return at(b, format!("unexpected {}", describe(b)));
        }
    }
    let last = toks.last()?;
    if is_one_of(last, NEEDS_OPERAND) {
        let (line, col) = line_col(q, q.len());
        return Some(format!(
            "{line}:{col}: parse error: unexpected end of input"
        ));
    }
    None
}
