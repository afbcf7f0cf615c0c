//! How the bridge encodes, in `promql-parser`'s AST, the constructs that AST
//! cannot represent, and the helpers the evaluator uses to detect and strip
//! them. The encoding is described in the module docs of `parse/mod.rs`.

use promql_parser::label::Matchers;
use promql_parser::parser::token::{TokenId, TokenType, T_ATAN2};
use promql_parser::parser::{Expr, VectorSelector};

use super::rewrite::AtanTag;

/// The reserved label name of the marker matchers the bridge adds to vector
/// selectors. Queries may not use it themselves.
pub const BRIDGE_LABEL: &str = "__strata_bridge__";

/// Operator token id of `</` (trim upper) in a `BinaryExpr`: not a token of
/// the crate, so the crate's `Display` prints it as "unknown token".
pub const T_TRIM_UPPER: TokenId = 0xFF01;
/// Operator token id of `>/` (trim lower) in a `BinaryExpr`.
pub const T_TRIM_LOWER: TokenId = 0xFF02;

/// A marker the bridge put on a selector (the value of the
/// [`BRIDGE_LABEL`] matcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Marker {
    /// `x[1m] anchored` / `x anchored`.
    Anchored,
    /// `x[1m] smoothed` / `x smoothed`.
    Smoothed,
    /// The data-label selector, second argument of `info()`, written as
    /// bare braces. Prometheus does not require a non-empty matcher there;
    /// the marker makes the crate accept it. Strip it before using the
    /// matchers.
    InfoData,
}

impl Marker {
    /// The matcher value.
    pub fn value(self) -> &'static str {
        match self {
            Marker::Anchored => "anchored",
            Marker::Smoothed => "smoothed",
            Marker::InfoData => "info_data",
        }
    }

    pub(crate) fn from_value(v: &str) -> Option<Marker> {
        [Marker::Anchored, Marker::Smoothed, Marker::InfoData]
            .into_iter()
            .find(|m| m.value() == v)
    }

    /// The matcher as query text.
    pub(crate) fn matcher(self) -> String {
        format!("{BRIDGE_LABEL}=\"{}\"", self.value())
    }
}

/// The `anchored` / `smoothed` mode of a range or instant selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeMode {
    /// `anchored`.
    Anchored,
    /// `smoothed`.
    Smoothed,
}

/// A histogram trim operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimOp {
    /// `</`: keeps the observations below the threshold (trims the upper
    /// part).
    Upper,
    /// `>/`: keeps the observations above the threshold (trims the lower
    /// part).
    Lower,
}

impl TrimOp {
    /// The operator as written in PromQL.
    pub fn symbol(self) -> &'static str {
        match self {
            TrimOp::Upper => "</",
            TrimOp::Lower => ">/",
        }
    }
}

/// The trim operator a `BinaryExpr` operator token stands for, if any.
pub fn trim_op(op: TokenType) -> Option<TrimOp> {
    match op.id() {
        T_TRIM_UPPER => Some(TrimOp::Upper),
        T_TRIM_LOWER => Some(TrimOp::Lower),
        _ => None,
    }
}

/// Every marker on `vs` (normally none or one).
pub fn markers(vs: &VectorSelector) -> Vec<Marker> {
    all_matchers(&vs.matchers)
        .filter(|m| m.name == BRIDGE_LABEL)
        .filter_map(|m| Marker::from_value(&m.value))
        .collect()
}

/// The `anchored` / `smoothed` mode of a selector (of a `MatrixSelector`,
/// pass its `vs`).
pub fn range_mode(vs: &VectorSelector) -> Option<RangeMode> {
    markers(vs).into_iter().find_map(|m| match m {
        Marker::Anchored => Some(RangeMode::Anchored),
        Marker::Smoothed => Some(RangeMode::Smoothed),
        Marker::InfoData => None,
    })
}

/// Removes the marker matchers from `vs` and returns them. Call this before
/// using the matchers to select series.
pub fn strip_markers(vs: &mut VectorSelector) -> Vec<Marker> {
    let found = markers(vs);
    if !found.is_empty() {
        vs.matchers.matchers.retain(|m| m.name != BRIDGE_LABEL);
        for group in &mut vs.matchers.or_matchers {
            group.retain(|m| m.name != BRIDGE_LABEL);
        }
    }
    found
}

/// A copy of `vs` without marker matchers, and the markers.
pub fn without_markers(vs: &VectorSelector) -> (VectorSelector, Vec<Marker>) {
    let mut copy = vs.clone();
    let found = strip_markers(&mut copy);
    (copy, found)
}

fn all_matchers(m: &Matchers) -> impl Iterator<Item = &promql_parser::label::Matcher> {
    m.matchers.iter().chain(m.or_matchers.iter().flatten())
}

/// Restores the trim operators: the pre-pass wrote them as `atan2`, and the
/// `atan2` operators of the AST appear in source order in an in-order walk.
pub(crate) fn restore_trim_ops(expr: &mut Expr, tags: &[AtanTag]) -> Result<(), String> {
    let mut it = tags.iter();
    retag(expr, &mut it)?;
    if it.next().is_some() {
        return Err("internal error: trim operator bookkeeping out of step".into());
    }
    Ok(())
}

fn retag(expr: &mut Expr, tags: &mut std::slice::Iter<'_, AtanTag>) -> Result<(), String> {
    match expr {
        Expr::Binary(b) => {
            retag(&mut b.lhs, tags)?;
            if b.op.id() == T_ATAN2 {
                match tags.next() {
                    Some(AtanTag::TrimUpper) => b.op = TokenType::new(T_TRIM_UPPER),
                    Some(AtanTag::TrimLower) => b.op = TokenType::new(T_TRIM_LOWER),
                    Some(AtanTag::Atan2) => {}
                    None => {
                        return Err("internal error: trim operator bookkeeping out of step".into())
                    }
                }
            }
            retag(&mut b.rhs, tags)
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &mut a.param {
                retag(p, tags)?;
            }
            retag(&mut a.expr, tags)
        }
        Expr::Unary(u) => retag(&mut u.expr, tags),
        Expr::Paren(p) => retag(&mut p.expr, tags),
        Expr::Subquery(s) => retag(&mut s.expr, tags),
        Expr::Call(c) => c.args.args.iter_mut().try_for_each(|a| retag(a, tags)),
        _ => Ok(()),
    }
}
