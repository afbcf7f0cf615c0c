//! `info(v, {data selector})`: joins the data labels of info metrics
//! (`target_info` by default) onto `v` by the identifying labels `instance`
//! and `job`, per step, as Prometheus 3's experimental `info()` does.

use std::collections::HashMap;

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher, Matchers};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::eval::{offset_ms, unparen, Evaluator, Result, Series, Steps, Val};
use super::functions::merge_same_labels;
use super::QueryError;
use crate::model::{Labels, LabelsBuilder, MatchOp, Matcher, METRIC_NAME};

const IDENTIFYING: [&str; 2] = ["instance", "job"];

fn to_model(m: &PMatcher) -> Result<Matcher> {
    let op = match m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::Regex,
        PMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone())
        .map_err(|e| QueryError::BadData(e.to_string()))
}

pub(crate) fn info(ev: &mut Evaluator, args: &[&Expr], r: &Steps) -> Result<Val> {
    let base = ev.eval_vector(args[0], r)?;
    let mut name_matchers: Vec<PMatcher> = vec![];
    let mut data_matchers: Vec<PMatcher> = vec![];
    if let Some(Expr::VectorSelector(vs)) = args.get(1).map(|a| unparen(a)) {
        if let Some(n) = &vs.name {
            name_matchers.push(PMatcher::new(PMatchOp::Equal, METRIC_NAME, n));
        }
        for m in &vs.matchers.matchers {
            if m.name == super::parse::BRIDGE_LABEL {
                continue;
            }
            if m.name == METRIC_NAME {
                name_matchers.push(m.clone());
            } else {
                data_matchers.push(m.clone());
            }
        }
    }
    if name_matchers.is_empty() {
        name_matchers.push(PMatcher::new(PMatchOp::Equal, METRIC_NAME, "target_info"));
    } else if !name_matchers
        .iter()
        .any(|m| matches!(m.op, PMatchOp::Equal | PMatchOp::Re(_)))
    {
        // Only negative name matchers: info metrics are still `*_info`.
        let re = regex::Regex::new("^(?s:.+_info)$").expect("static regex");
        name_matchers.push(PMatcher::new(PMatchOp::Re(re), METRIC_NAME, ".+_info"));
    }
    let name_model: Vec<Matcher> = name_matchers.iter().map(to_model).collect::<Result<_>>()?;
    let data_model: Vec<Matcher> = data_matchers.iter().map(to_model).collect::<Result<_>>()?;
    let has_positive = name_model
        .iter()
        .any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Regex));
    let empty_ok = data_model.iter().all(|m| m.matches_empty());
    let mut sel = VectorSelector::new(None, Matchers::new(name_matchers.clone()));
    sel.matchers.matchers.extend(data_matchers.iter().cloned());
    // The info series are read when the base selector reads its samples.
    match reference_time(ev, args[0], RefTime::Shift(0)).unwrap_or(RefTime::Shift(0)) {
        RefTime::Shift(off) if off >= 0 => sel.offset = Some(Offset::Pos(ms(off))),
        RefTime::Shift(off) => sel.offset = Some(Offset::Neg(ms(-off))),
        RefTime::Pinned(t) => {
            let epoch = std::time::SystemTime::UNIX_EPOCH;
            let at = if t >= 0 {
                epoch + ms(t)
            } else {
                epoch - ms(-t)
            };
            sel.at = Some(AtModifier::At(at));
        }
    }
    let infos = ev.eval_vector_selector(&sel, r, false)?;
    let info_ts = ev.eval_vector_selector(&sel, r, true)?;
    // A base series that is itself an info metric (it matches every
    // `__name__` matcher, at least one of them positive) passes as is.
    let is_info = |b: &Series| {
        has_positive
            && b.labels
                .metric_name()
                .is_some_and(|nm| name_model.iter().all(|m| m.matches(nm)))
    };
    let id_of = |l: &Labels| -> Vec<Option<String>> {
        IDENTIFYING
            .iter()
            .map(|n| l.get(n).map(str::to_string))
            .collect()
    };
    // Only info series whose identifying labels take values the base
    // series have (Prometheus selects them by those values).
    let mut wanted: HashMap<&str, std::collections::HashSet<String>> = HashMap::new();
    for b in base.iter().filter(|b| !is_info(b)) {
        for l in IDENTIFYING {
            if let Some(v) = b.labels.get(l) {
                wanted.entry(l).or_default().insert(v.to_string());
            }
        }
    }
    let selected = |l: &Labels| {
        !wanted.is_empty()
            && wanted
                .iter()
                .all(|(n, vs)| l.get(n).is_some_and(|v| vs.contains(v)))
    };
    // Identifying values -> info series indices.
    let mut by_id: HashMap<Vec<Option<String>>, Vec<usize>> = HashMap::new();
    for (ii, s) in infos.iter().enumerate() {
        if selected(&s.labels) {
            by_id.entry(id_of(&s.labels)).or_default().push(ii);
        }
    }
    let n = r.len();
    for i in 0..n {
        let base_here = base.iter().any(|b| b.present(i));
        let hist_info = by_id.values().flatten().any(|&ii| infos[ii].h(i).is_some());
        if base_here && hist_info {
            return Err(QueryError::Execution("info sample should be float".into()));
        }
    }
    let mut out: Vec<Series> = Vec::new();
    for b in base {
        let id = id_of(&b.labels);
        if is_info(&b) || id.iter().all(Option::is_none) {
            if is_info(&b) || empty_ok {
                out.push(b);
            }
            continue;
        }
        let cands = by_id.get(&id).cloned().unwrap_or_default();
        let mut per_labels: HashMap<Labels, usize> = HashMap::new();
        for i in 0..n {
            let Some(v) = b.vals[i] else { continue };
            // Latest sample per info metric name wins.
            let mut chosen: HashMap<&str, (f64, usize)> = HashMap::new();
            for &ii in &cands {
                if infos[ii].vals[i].is_none() {
                    continue;
                }
                let ts = info_ts[ii].vals[i].unwrap_or(f64::MIN);
                let name = infos[ii].labels.metric_name().unwrap_or("");
                match chosen.get(name) {
                    Some((t, _)) if *t >= ts => {}
                    _ => {
                        chosen.insert(name, (ts, ii));
                    }
                }
            }
            let labels = if chosen.is_empty() {
                if !empty_ok {
                    continue;
                }
                b.labels.clone()
            } else {
                let mut lb = LabelsBuilder::new(&b.labels);
                let mut added: HashMap<String, String> = HashMap::new();
                for (_, ii) in chosen.values() {
                    for l in infos[*ii].labels.iter() {
                        if l.name == METRIC_NAME
                            || IDENTIFYING.contains(&l.name.as_str())
                            || b.labels.get(&l.name).is_some()
                            || (!data_model.is_empty()
                                && !data_model.iter().any(|m| m.name == l.name))
                        {
                            continue;
                        }
                        if let Some(prev) = added.get(&l.name) {
                            if prev != &l.value {
                                return Err(QueryError::Execution(format!(
                                    "conflicting label: {} has values {prev:?} and {:?}",
                                    l.name, l.value
                                )));
                            }
                        }
                        added.insert(l.name.clone(), l.value.clone());
                        lb.set(l.name.clone(), l.value.clone());
                    }
                }
                lb.labels()
            };
            let oi = *per_labels.entry(labels.clone()).or_insert_with(|| {
                out.push(Series {
                    hvals: vec![],
                    labels,
                    drop_name: b.drop_name,
                    vals: vec![None; n],
                });
                out.len() - 1
            });
            out[oi].vals[i] = Some(v);
        }
    }
    Ok(Val::Vector(merge_same_labels(out)?))
}

fn ms(t: i64) -> std::time::Duration {
    std::time::Duration::from_millis(t.unsigned_abs())
}

/// When a selector reads its samples relative to the evaluation time.
#[derive(Debug, Clone, Copy)]
enum RefTime {
    /// At the evaluation time minus this many milliseconds.
    Shift(i64),
    /// At this time whatever the evaluation time (an `@`).
    Pinned(i64),
}

/// The time at which the first selector of `e` (in Prometheus's traversal
/// order) reads its samples: the `@` and offsets of the subqueries around
/// it and its own, composed from `outer` inwards.
fn reference_time(ev: &Evaluator, e: &Expr, outer: RefTime) -> Option<RefTime> {
    let apply = |at: Option<i64>, off: i64| match (at, outer) {
        (Some(a), _) => RefTime::Pinned(a - off),
        (None, RefTime::Pinned(p)) => RefTime::Pinned(p - off),
        (None, RefTime::Shift(s)) => RefTime::Shift(s + off),
    };
    match e {
        Expr::VectorSelector(vs) => Some(apply(ev.at_ms(&vs.at), offset_ms(&vs.offset))),
        Expr::MatrixSelector(m) => Some(apply(ev.at_ms(&m.vs.at), offset_ms(&m.vs.offset))),
        Expr::Subquery(sq) => {
            let inner = apply(ev.at_ms(&sq.at), offset_ms(&sq.offset));
            reference_time(ev, &sq.expr, inner)
        }
        Expr::Paren(p) => reference_time(ev, &p.expr, outer),
        Expr::Unary(u) => reference_time(ev, &u.expr, outer),
        Expr::Aggregate(a) => reference_time(ev, &a.expr, outer),
        Expr::Binary(b) => {
            reference_time(ev, &b.lhs, outer).or_else(|| reference_time(ev, &b.rhs, outer))
        }
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .find_map(|a| reference_time(ev, a, outer)),
        _ => None,
    }
}
