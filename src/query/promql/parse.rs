//! The single entry point for parsing PromQL. It bridges the gaps between
//! `promql-parser` 0.11 and Prometheus 3.x syntax
//! (../shared/conformance/promql/PARSER_GAPS.md) so the evaluator only ever
//! sees a `promql_parser` AST.
//!
//! INTERFACE CONTRACT: `parse_expr` is what the evaluator calls; its
//! signature is fixed. Today it forwards to `promql_parser::parser::parse`;
//! the bridge (duration expressions and the like) is being written.

use promql_parser::parser::Expr;

/// Parses a PromQL query into `promql-parser`'s AST, accepting Prometheus 3.x
/// syntax that the crate alone rejects. The error text is Prometheus-style
/// (`1:5: parse error: ...`) where possible.
pub fn parse_expr(query: &str) -> Result<Expr, String> {
    promql_parser::parser::parse(query)
}
