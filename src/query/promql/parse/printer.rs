//! Prints an AST from the bridge back as PromQL that the bridge parses to
//! the same AST: the crate's `Display`, plus the bridge's markers
//! (`anchored`, `smoothed`, the trim operators, `info()` data selectors).

use promql_parser::parser::token::{TokenType, T_ATAN2};
use promql_parser::parser::{Expr, VectorSelector};

use super::markers::{trim_op, without_markers, Marker};
use super::strings::{go_quote, has_raw_bytes};

/// Placeholder identifier for the `i`-th child while a node is printed.
fn placeholder(i: usize) -> String {
    format!("__strata_child_{i}__")
}

fn ph_expr(i: usize) -> Box<Expr> {
    Box::new(Expr::VectorSelector(VectorSelector::from(placeholder(i))))
}

/// PromQL text for `expr`, which may carry the bridge's encodings.
pub fn to_promql(expr: &Expr) -> String {
    match expr {
        Expr::VectorSelector(vs) => selector(vs, |v| v.to_string()),
        Expr::MatrixSelector(m) => selector(&m.vs, |vs| {
            let mut plain = m.clone();
            plain.vs = vs.clone();
            plain.to_string()
        }),
        // Raw bytes print as Go's `\xNN` escapes, which parse back to them.
        Expr::StringLiteral(s) if has_raw_bytes(&s.val) => go_quote(&s.val),
        // Go prints positive infinity with its sign, as written.
        Expr::NumberLiteral(n) if n.val == f64::INFINITY => "+Inf".to_string(),
        _ => with_children(expr),
    }
}

/// Prints a selector without its markers, then the markers as syntax.
fn selector(vs: &VectorSelector, print: impl Fn(&VectorSelector) -> String) -> String {
    let (plain, found) = without_markers(vs);
    let mut s = print(&plain);
    for m in found {
        match m {
            Marker::Anchored | Marker::Smoothed => {
                s.push(' ');
                s.push_str(m.value());
            }
            // The crate prints a selector without name and matchers as "".
            Marker::InfoData if plain.name.is_none() && plain.matchers.matchers.is_empty() => {
                s = format!("{{}}{s}");
            }
            Marker::InfoData => {}
        }
    }
    s
}

/// Prints a node with the crate's `Display`, its children replaced by
/// placeholders that are then replaced by the children's own text.
fn with_children(expr: &Expr) -> String {
    let mut shallow = expr.clone();
    let mut children: Vec<&Expr> = Vec::new();
    let mut trim = None;
    match (&mut shallow, expr) {
        (Expr::Binary(s), Expr::Binary(o)) => {
            s.lhs = ph_expr(0);
            s.rhs = ph_expr(1);
            children.extend([&*o.lhs, &*o.rhs]);
            if let Some(t) = trim_op(o.op) {
                s.op = TokenType::new(T_ATAN2);
                trim = Some(t);
            }
        }
        (Expr::Aggregate(s), Expr::Aggregate(o)) => {
            if let (Some(sp), Some(op)) = (&mut s.param, &o.param) {
                *sp = ph_expr(children.len());
                children.push(op);
            }
            s.expr = ph_expr(children.len());
            children.push(&o.expr);
        }
        (Expr::Unary(s), Expr::Unary(o)) => {
            s.expr = ph_expr(0);
            children.push(&o.expr);
        }
        (Expr::Paren(s), Expr::Paren(o)) => {
            s.expr = ph_expr(0);
            children.push(&o.expr);
        }
        (Expr::Subquery(s), Expr::Subquery(o)) => {
            s.expr = ph_expr(0);
            children.push(&o.expr);
        }
        (Expr::Call(s), Expr::Call(o)) => {
            for (i, (sa, oa)) in s.args.args.iter_mut().zip(&o.args.args).enumerate() {
                *sa = ph_expr(i);
                children.push(oa);
            }
        }
        _ => return expr.to_string(),
    }
    let mut s = shallow.to_string();
    if let Some(t) = trim {
        // The only `atan2` in the shallow text is this node's operator.
        s = s.replacen(" atan2", &format!(" {}", t.symbol()), 1);
    }
    for (i, child) in children.iter().enumerate() {
        s = s.replacen(&placeholder(i), &to_promql(child), 1);
    }
    s
}
