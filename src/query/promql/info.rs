//! `info(v, {data selector})`: joins the data labels of info metrics
//! (`target_info` by default) onto `v` by the identifying labels `instance`
//! and `job`, per step, as Prometheus 3's experimental `info()` does.

use std::collections::HashMap;

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher, Matchers};
use promql_parser::parser::{Expr, VectorSelector};

use super::eval::{unparen, Evaluator, Result, Series, Steps, Val};
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
    let infos = ev.eval_vector_selector(&sel, r, false)?;
    let info_ts = ev.eval_vector_selector(&sel, r, true)?;
    // Identifying values -> info series indices.
    let mut by_id: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
    for (ii, s) in infos.iter().enumerate() {
        let Some(id) = IDENTIFYING
            .iter()
            .map(|n| s.labels.get(n).map(str::to_string))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        by_id.entry(id).or_default().push(ii);
    }
    let n = r.len();
    let mut out: Vec<Series> = Vec::new();
    for b in base {
        // A base series that is itself an info metric (it matches every
        // `__name__` matcher, at least one of them positive) passes as is.
        let is_info = has_positive
            && b.labels
                .metric_name()
                .is_some_and(|nm| name_model.iter().all(|m| m.matches(nm)));
        let id: Option<Vec<String>> = IDENTIFYING
            .iter()
            .map(|l| b.labels.get(l).map(str::to_string))
            .collect();
        if is_info || id.is_none() {
            if is_info || empty_ok {
                out.push(b);
            }
            continue;
        }
        let cands = id
            .and_then(|id| by_id.get(&id))
            .cloned()
            .unwrap_or_default();
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
