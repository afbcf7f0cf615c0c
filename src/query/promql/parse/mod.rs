//! The single entry point for parsing PromQL. It bridges the gaps between
//! `promql-parser` 0.11 and Prometheus 3.x syntax
//! (../shared/conformance/promql/PARSER_GAPS.md) so the evaluator only ever
//! sees a `promql_parser` AST.
//!
//! INTERFACE CONTRACT: `parse_expr` is what the evaluator calls; its
//! signature is fixed. Range queries call [`parse_expr_with`] with the
//! query's step and range so `step()` and `range()` resolve.
//!
//! # How it works
//!
//! A small tokenizer (`lexer.rs`) finds the constructs the crate lacks; a
//! pre-pass (`rewrite.rs`) rewrites them into text the crate parses, and a
//! post-pass restores what the text could not carry. Everything else is
//! passed to `promql_parser::parser::parse` byte for byte.
//!
//! # What the evaluator sees
//!
//! * **Duration expressions** (`x[5m+1m]`, `x[2m*15]`, `x[29s+1s:5s+5s]`,
//!   `offset (2 * 2)`, `offset -step()`, `[step()]`, `[range()]`,
//!   `min_of(a, b)`, `max_of(a, b)`) are evaluated at parse time with the
//!   [`DurationContext`] and appear as plain durations (whole milliseconds)
//!   in `MatrixSelector::range`, `SubqueryExpr::{range, step}` and the
//!   `offset` fields. Numbers are seconds. After `offset` Prometheus takes a
//!   single operand (a sign, then a literal, a parenthesised expression or
//!   a `step()`/`range()`/`min_of()`/`max_of()` call), so in
//!   `x offset step()*2` the `*2` is an ordinary binary operator.
//!   `step()` is the range query's step (0 for instant queries) and
//!   `range()` is `end - start` (0 for instant queries).
//! * **`anchored` / `smoothed`** (`rate(x[1m] anchored)`, `x smoothed`,
//!   `x offset 1m smoothed`): the selector (`VectorSelector`, or the `vs` of a
//!   `MatrixSelector`) carries an extra matcher
//!   `__strata_bridge__="anchored"` (or `"smoothed"`), name
//!   [`BRIDGE_LABEL`]. Use [`range_mode`] to read it and [`strip_markers`]
//!   (or [`without_markers`]) to remove it **before selecting series**.
//!   Subqueries and other expressions reject the modifiers at parse time,
//!   as in Prometheus; which functions accept them is the evaluator's call.
//! * **Trim operators** `h </ x` and `h >/ x`: an ordinary `Expr::Binary`
//!   (parsed with the precedence of `*`, `/` and `atan2`, which is how the
//!   bridge reads Prometheus's grammar; vector matching modifiers kept) whose
//!   `op` has the token id [`T_TRIM_UPPER`] (`</`) or [`T_TRIM_LOWER`]
//!   (`>/`). Test with [`trim_op`]. The crate's `Display` prints these ids as
//!   "unknown token" and shows the markers as matchers; [`to_promql`] prints
//!   any AST from the bridge as PromQL the bridge parses back to it.
//! * **`info(v, {data=~".*"})`**: a second argument written as bare braces
//!   carries the matcher `__strata_bridge__="info_data"` so the crate's
//!   "at least one non-empty matcher" check passes (Go skips that check
//!   there). Strip it with [`strip_markers`] before using the matchers.
//! * **Byte escapes in strings** (`"a\xc5z"`): Go keeps `\xNN` and octal
//!   escapes as raw bytes, possibly invalid UTF-8. Valid UTF-8 comes out as
//!   text (`"\xc3\xa9"` is `é`, not `Ã©` as the crate alone makes it); each
//!   byte outside valid UTF-8 becomes the private-use character
//!   `U+10FF00 + byte`. [`has_raw_bytes`] tells the evaluator a string is
//!   not valid UTF-8 in Prometheus (`count_values("a\xc5z", x)` must fail
//!   with `invalid label name "a\xc5z"`), [`go_quote`] prints it as Go's
//!   `%q` does and [`raw_bytes`] gives the bytes.
//! * Queries that use the label name `__strata_bridge__` themselves are
//!   rejected, except as an exact marker matcher
//!   (`x{__strata_bridge__="anchored"}[1m]`), which is what the crate's
//!   `Display` prints for a bridged selector, so that text parses back to
//!   the same AST. Prefer [`to_promql`], which also prints trim operators.
//!
//! Keywords (`sum BY`, `AND`, `OR`, `UNLESS`, `BOOL`, `ON`, `IGNORING`,
//! `GROUP_LEFT`, `OFFSET`, `WITHOUT`, `ANCHORED`, `STEP()`, ...) are
//! case-insensitive as in Prometheus; function names are case-sensitive.
//!
//! Errors are Prometheus-style: `line:col: parse error: message` where the
//! bridge knows the position, `parse error: message` for errors from the
//! crate (it reports no position).
//!
//! Experimental functions are accepted by the parser (Prometheus parses them
//! with the feature on); the evaluator refuses them unless
//! `query.enable_experimental_functions` is set, using
//! [`is_experimental_function`].

mod diag;
mod duration;
mod lexer;
mod markers;
mod printer;
mod rewrite;
mod strings;

use promql_parser::parser::Expr;

pub use printer::to_promql;
pub use strings::{go_quote, has_raw_bytes, raw_bytes};

pub use markers::{
    markers, range_mode, strip_markers, trim_op, without_markers, Marker, RangeMode, TrimOp,
    BRIDGE_LABEL, T_TRIM_LOWER, T_TRIM_UPPER,
};

/// What duration expressions need from the query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationContext {
    /// The range query's step, ms (`step()`); 0 for instant queries.
    pub step_ms: i64,
    /// The range query's `end - start`, ms (`range()`); 0 for instant
    /// queries.
    pub range_ms: i64,
}

impl DurationContext {
    /// The context of a range query from `start` to `end` every `step` (ms).
    pub fn range_query(start: i64, end: i64, step: i64) -> DurationContext {
        DurationContext {
            step_ms: step,
            range_ms: end - start,
        }
    }
}

/// Parses a PromQL query into `promql-parser`'s AST, accepting Prometheus 3.x
/// syntax that the crate alone rejects. The error text is Prometheus-style
/// (`1:5: parse error: ...`) where possible. Uses the default
/// [`DurationContext`] (an instant query).
pub fn parse_expr(query: &str) -> Result<Expr, String> {
    parse_expr_with(query, &DurationContext::default())
}

/// [`parse_expr`] with the evaluation context duration expressions need.
pub fn parse_expr_with(query: &str, ctx: &DurationContext) -> Result<Expr, String> {
    let res = bridge_parse(query, ctx);
    let outcome = match &res {
        Ok((_, false)) => "ok",
        Ok((_, true)) => "bridged",
        Err(_) => "error",
    };
    metrics::counter!(PARSES_TOTAL, "outcome" => outcome).increment(1);
    res.map(|(expr, _)| expr)
}

/// PromQL parses by outcome: `ok` (the crate alone would have parsed the
/// query), `bridged` (the bridge rewrote Prometheus 3.x syntax) or `error`.
const PARSES_TOTAL: &str = "strata_promql_parses_total";

/// Parses `query`; also says whether the text needed rewriting.
fn bridge_parse(query: &str, ctx: &DurationContext) -> Result<(Expr, bool), String> {
    let toks = match lexer::lex(query) {
        Ok(t) => t,
        // The crate gives its own message for text it cannot lex either.
        Err(_) => return crate_parse(query).map(|e| (e, false)),
    };
    let rewritten = rewrite::rewrite(query, &toks, ctx).map_err(|e| {
        let (line, col) = lexer::line_col(query, e.pos);
        format!("{line}:{col}: parse error: {}", e.msg)
    })?;
    let mut expr = match crate_parse(&rewritten.text) {
        Ok(e) => e,
        Err(e) if e.ends_with(GENERIC_CRATE_ERROR) => {
            return Err(diag::diagnose(query, &toks).unwrap_or(e))
        }
        Err(e) => return Err(e),
    };
    if rewritten.has_trim() {
        markers::restore_trim_ops(&mut expr, &rewritten.atan_tags)?;
    }
    Ok((expr, rewritten.text != query))
}

/// The crate's message when it cannot say more.
const GENERIC_CRATE_ERROR: &str = "invalid promql query";

fn crate_parse(text: &str) -> Result<Expr, String> {
    promql_parser::parser::parse(text)
        .map_err(|e| format!("parse error: {}", prometheus_wording(&e)))
}

/// Rewords the crate's messages the way Prometheus words them
/// (`expected type range vector in call to function "rate", got instant
/// vector`).
fn prometheus_wording(msg: &str) -> String {
    let mut out = msg.to_string();
    // Names in double quotes, as Go's %q prints them.
    for lead in [
        "in call to function '",
        "unknown function with name '",
        "in call to '",
    ] {
        if let Some(start) = out.find(lead) {
            let name_start = start + lead.len();
            if let Some(len) = out[name_start..].find('\'') {
                let name = out[name_start..name_start + len].to_string();
                let lead_dq = lead.replace('\'', "\"");
                out.replace_range(start..name_start + len + 1, &format!("{lead_dq}{name}\""));
            }
        }
    }
    if out.starts_with("expected type ") {
        for (crate_word, prom) in [("matrix", "range vector"), ("vector", "instant vector")] {
            out = out
                .replace(
                    &format!("expected type {crate_word} "),
                    &format!("expected type {prom} "),
                )
                .replace(&format!("got {crate_word}"), &format!("got {prom}"));
        }
    }
    out
}

/// Functions and aggregators behind Prometheus's
/// `--enable-feature=promql-experimental-functions` (`Experimental: true` in
/// Prometheus 3.14's `promql/parser/functions.go`, plus the `limitk` and
/// `limit_ratio` aggregators). `first_over_time` was promoted in 3.14.
const EXPERIMENTAL_FUNCTIONS: &[&str] = &[
    "double_exponential_smoothing",
    "end",
    "histogram_quantiles",
    "info",
    "mad_over_time",
    "max_of",
    "min_of",
    "range",
    "sort_by_label",
    "sort_by_label_desc",
    "start",
    "start_timestamp",
    "step",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "limitk",
    "limit_ratio",
];

/// Whether `name` (a function or aggregator name as it appears in the AST)
/// is experimental, i.e. refused unless `query.enable_experimental_functions`
/// is set. Durations' `step()`, `range()`, `min_of()` and `max_of()` are
/// resolved at parse time and never reach the evaluator as calls; `@ start()`
/// and `@ end()` are modifiers, not calls.
pub fn is_experimental_function(name: &str) -> bool {
    EXPERIMENTAL_FUNCTIONS.contains(&name)
}

#[cfg(test)]
mod tests;
