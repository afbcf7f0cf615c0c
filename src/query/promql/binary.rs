//! Binary operators: arithmetic, comparisons (filtering or `bool`), set
//! operators, and vector matching with `on`/`ignoring`/`group_*`.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, Expr, LabelModifier, VectorMatchCardinality};

use super::eval::{go_labels, Evaluator, Result, Series, Steps, Val, H};
use super::functions::merge_same_labels;
use super::QueryError;
use crate::model::{Labels, LabelsBuilder, METRIC_NAME};

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Whether the result keeps the metric name: filtering comparisons and the
/// histogram trim operators `</` `>/`.
fn keeps_name(op: &str) -> bool {
    is_comparison(op) || matches!(op, "</" | ">/")
}

/// Applies `op`; the bool says whether a comparison keeps the element.
pub(crate) fn apply(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

/// A step value: a float or a native histogram.
#[derive(Clone)]
enum Sv {
    F(f64),
    H(H),
}

impl Sv {
    fn of(s: &Series, i: usize) -> Option<Sv> {
        match (s.vals[i], s.h(i)) {
            (Some(v), _) => Some(Sv::F(v)),
            (None, Some(h)) => Some(Sv::H(h.clone())),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Sv::F(_) => "float",
            Sv::H(_) => "histogram",
        }
    }
}

/// Stores `v` as step `i` of `s`.
fn put(s: &mut Series, i: usize, v: Option<Sv>) {
    s.clear(i);
    match v {
        Some(Sv::F(f)) => s.vals[i] = Some(f),
        Some(Sv::H(h)) => {
            if s.hvals.is_empty() {
                s.hvals = vec![None; s.vals.len()];
            }
            s.hvals[i] = Some(h);
        }
        None => {}
    }
}

/// `l op r` when a histogram is involved (Prometheus's
/// `vectorElemBinop`); `None` drops the element.
fn hist_op(
    ev: &mut Evaluator,
    op: &str,
    l: &Sv,
    r: &Sv,
    return_bool: bool,
    pos: &str,
) -> Option<Sv> {
    let incompatible = |ev: &mut Evaluator| {
        ev.info(format!(
            "incompatible sample types encountered for binary operator {op:?}: {} {op} {} {pos}",
            l.kind(),
            r.kind()
        ));
        None
    };
    match (l, r) {
        (Sv::H(a), Sv::H(b)) => match op {
            "+" | "-" => {
                let mut out = (**a).clone();
                let res = if op == "+" { out.add(b) } else { out.sub(b) };
                match res {
                    Err(_) => {
                        ev.warn(format!(
                            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name \"\" {pos}"
                        ));
                        None
                    }
                    Ok(rec) => {
                        if rec {
                            let what = if op == "+" { "addition" } else { "subtraction" };
                            super::native::reconciled(ev, what, pos);
                        }
                        out.compact();
                        Some(Sv::H(std::sync::Arc::new(out)))
                    }
                }
            }
            "==" | "!=" => {
                let keep = (op == "==") == a.equals(b);
                if return_bool {
                    Some(Sv::F(if keep { 1.0 } else { 0.0 }))
                } else {
                    keep.then(|| l.clone())
                }
            }
            _ => incompatible(ev),
        },
        (Sv::H(h), Sv::F(f)) if op == "</" || op == ">/" => {
            Some(Sv::H(std::sync::Arc::new(h.trim(*f, op == "</"))))
        }
        (Sv::H(h), Sv::F(f)) if op == "*" || op == "/" => {
            let mut out = (**h).clone();
            if op == "*" {
                out.scale(*f);
            } else {
                out.div(*f);
            }
            Some(Sv::H(std::sync::Arc::new(out)))
        }
        (Sv::F(f), Sv::H(h)) if op == "*" => {
            let mut out = (**h).clone();
            out.scale(*f);
            Some(Sv::H(std::sync::Arc::new(out)))
        }
        _ => incompatible(ev),
    }
}

pub(crate) fn eval_binary(ev: &mut Evaluator, b: &BinaryExpr, r: &Steps) -> Result<Val> {
    let op = match crate::query::promql::parse::trim_op(b.op) {
        Some(t) => t.symbol().to_string(),
        None => b.op.to_string().to_lowercase(),
    };
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, r)?;
    let rhs = ev.eval(&b.rhs, r)?;
    let cmp = is_comparison(&op);
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(rv)) => Ok(Val::Scalar(
            l.iter()
                .zip(&rv)
                .map(|(a, c)| {
                    let (v, keep) = apply(&op, *a, *c);
                    if cmp {
                        if keep {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(v), Val::Scalar(s)) => {
            let pos = ev.pos(&Expr::Binary(b.clone()));
            Ok(Val::Vector(vector_scalar(
                ev,
                &op,
                v,
                &s,
                false,
                return_bool,
                &pos,
            )))
        }
        (Val::Scalar(s), Val::Vector(v)) => {
            let pos = ev.pos(&Expr::Binary(b.clone()));
            Ok(Val::Vector(vector_scalar(
                ev,
                &op,
                v,
                &s,
                true,
                return_bool,
                &pos,
            )))
        }
        (Val::Vector(l), Val::Vector(rv)) => {
            let (on, names) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
                Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
                None => (false, vec![]),
            };
            let sig = |s: &Series| -> Labels {
                if on {
                    let n: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                    s.labels.keep(&n)
                } else {
                    let mut n: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                    n.push(METRIC_NAME);
                    s.labels.drop_names(&n)
                }
            };
            let lsig: Vec<Labels> = l.iter().map(sig).collect();
            let rsig: Vec<Labels> = rv.iter().map(sig).collect();
            if matches!(op.as_str(), "and" | "or" | "unless") {
                return Ok(Val::Vector(set_op(&op, l, rv, &lsig, &rsig, r.len())?));
            }
            let card = b
                .modifier
                .as_ref()
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            let fill = b.modifier.as_ref().map(|m| m.fill_values.clone());
            let m = Matching {
                card: &card,
                on,
                names: &names,
                return_bool,
                fill_lhs: fill.as_ref().and_then(|f| f.lhs),
                fill_rhs: fill.as_ref().and_then(|f| f.rhs),
                pos: ev.pos(&Expr::Binary(b.clone())),
            };
            vector_vector(ev, &op, l, rv, lsig, rsig, &m, r.len())
        }
        _ => Err(QueryError::BadData(format!(
            "binary operator {op} is not defined on these operand types"
        ))),
    }
}

fn vector_scalar(
    ev: &mut Evaluator,
    op: &str,
    v: Vec<Series>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
    pos: &str,
) -> Vec<Series> {
    let cmp = is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for mut series in v {
        let mut any = false;
        for (i, &x) in s.iter().enumerate().take(series.hvals.len()) {
            let Some(h) = series.hvals[i].clone() else {
                continue;
            };
            let (l, r) = if swap {
                (Sv::F(x), Sv::H(h))
            } else {
                (Sv::H(h), Sv::F(x))
            };
            let res = hist_op(ev, op, &l, &r, return_bool, pos);
            any |= res.is_some();
            put(&mut series, i, res);
        }
        for (i, slot) in series.vals.iter_mut().enumerate() {
            let Some(x) = *slot else { continue };
            let (a, c) = if swap { (s[i], x) } else { (x, s[i]) };
            let (mut val, mut keep) = apply(op, a, c);
            if cmp && swap {
                val = c;
            }
            if return_bool {
                val = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            *slot = keep.then_some(val);
            any |= keep;
        }
        if !keeps_name(op) || return_bool {
            series.drop_name = true;
        }
        if any {
            out.push(series);
        }
    }
    out
}

fn set_op(
    op: &str,
    l: Vec<Series>,
    rv: Vec<Series>,
    lsig: &[Labels],
    rsig: &[Labels],
    n: usize,
) -> Result<Vec<Series>> {
    let mut lkeep = l;
    let mut rkeep = rv;
    for i in 0..n {
        match op {
            "and" | "unless" => {
                let rs: HashSet<&Labels> = rkeep
                    .iter()
                    .zip(rsig)
                    .filter(|(s, _)| s.present(i))
                    .map(|(_, g)| g)
                    .collect();
                for (s, g) in lkeep.iter_mut().zip(lsig) {
                    let hit = rs.contains(g);
                    if (op == "and") != hit {
                        s.clear(i);
                    }
                }
            }
            _ => {
                let ls: HashSet<&Labels> = lkeep
                    .iter()
                    .zip(lsig)
                    .filter(|(s, _)| s.present(i))
                    .map(|(_, g)| g)
                    .collect();
                for (s, g) in rkeep.iter_mut().zip(rsig) {
                    if ls.contains(g) {
                        s.clear(i);
                    }
                }
            }
        }
    }
    let mut out: Vec<Series> = lkeep;
    if op == "or" {
        out.extend(rkeep);
    }
    out.retain(|s| s.has_any());
    merge_same_labels(out)
}

/// How two vectors are matched.
pub(crate) struct Matching<'a> {
    pub card: &'a VectorMatchCardinality,
    pub on: bool,
    pub names: &'a [String],
    pub return_bool: bool,
    /// `fill_left(v)` / `fill_right(v)`: values for a missing side.
    pub fill_lhs: Option<f64>,
    pub fill_rhs: Option<f64>,
    /// `(line:col)` of the operation, for annotations.
    pub pos: String,
}

impl Matching<'_> {
    /// Prometheus's `resultMetric`: labels of `ls` op `rs` (`rs` absent when
    /// the "one" side was filled).
    fn result_metric(&self, ls: &Labels, rs: Option<&Labels>) -> Labels {
        let mut b = LabelsBuilder::new(ls);
        if matches!(self.card, VectorMatchCardinality::OneToOne) {
            if self.on {
                let keep: Vec<&str> = self.names.iter().map(|s| s.as_str()).collect();
                b = LabelsBuilder::new(&ls.keep(&keep));
            } else {
                for nm in self.names {
                    b.del(nm);
                }
            }
        }
        if let Some(include) = self.card.labels() {
            for ln in &include.labels {
                match rs.and_then(|r| r.get(ln)) {
                    Some(v) => {
                        b.set(ln.clone(), v.to_string());
                    }
                    None => {
                        b.del(ln);
                    }
                }
            }
        }
        b.labels()
    }
}

/// The series a vector-vector operation outputs, by interned result
/// metric (a series is created at its metric's first value).
struct Results {
    out: Vec<Series>,
    /// Metric id -> labels and index in `out`.
    metrics: Vec<(Labels, Option<usize>)>,
    ids: HashMap<Labels, usize>,
    /// Steps per series.
    n: usize,
}

impl Results {
    /// The id of a result metric.
    fn id(&mut self, metric: Labels) -> usize {
        if let Some(&id) = self.ids.get(&metric) {
            return id;
        }
        self.metrics.push((metric.clone(), None));
        self.ids.insert(metric, self.metrics.len() - 1);
        self.metrics.len() - 1
    }

    /// Sets step `i` of metric `id`'s series to `val`.
    fn emit(&mut self, id: usize, drop_name: bool, i: usize, val: Sv) {
        let oidx = match self.metrics[id].1 {
            Some(o) => o,
            None => {
                self.out.push(Series {
                    hvals: vec![],
                    labels: self.metrics[id].0.clone(),
                    drop_name,
                    vals: vec![None; self.n],
                });
                self.metrics[id].1 = Some(self.out.len() - 1);
                self.out.len() - 1
            }
        };
        put(&mut self.out[oidx], i, Some(val));
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    ev: &mut Evaluator,
    op: &str,
    l: Vec<Series>,
    rv: Vec<Series>,
    lsig: Vec<Labels>,
    rsig: Vec<Labels>,
    m: &Matching,
    n: usize,
) -> Result<Val> {
    let keep_name = keeps_name(op);
    let card = m.card;
    let return_bool = m.return_bool;
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one, msig, osig) = if one_to_many {
        (rv, l, rsig, lsig)
    } else {
        (l, rv, lsig, rsig)
    };
    // Prometheus applies the fill values after swapping the sides.
    let (fill_many, fill_one) = (m.fill_lhs, m.fill_rhs);
    // Match-group signatures and result metrics are interned once, so the
    // per-step loop below works on indices instead of hashing and cloning
    // label sets at every step.
    let mut sig_ids: HashMap<&Labels, usize> = HashMap::new();
    let mut sig_id = |sig| {
        let next = sig_ids.len();
        *sig_ids.entry(sig).or_insert(next)
    };
    let msig_id: Vec<usize> = msig.iter().map(&mut sig_id).collect();
    let osig_id: Vec<usize> = osig.iter().map(&mut sig_id).collect();
    let nsig = sig_ids.len();
    let mut res = Results {
        out: Vec::new(),
        metrics: Vec::new(),
        ids: HashMap::new(),
        n,
    };
    let mut pair_metric: HashMap<(usize, usize), usize> = HashMap::new();
    let mut fill_metric: HashMap<usize, usize> = HashMap::new();
    let mut last_pair: Vec<(usize, usize)> = vec![(usize::MAX, 0); many.len()];
    // The value of `fl op fr`, or None when a comparison filters it out.
    let compute = |ev: &mut Evaluator, fl: Sv, fr: Sv| -> Option<Sv> {
        match (&fl, &fr) {
            (Sv::F(a), Sv::F(b)) => {
                let (val, keep) = apply(op, *a, *b);
                if return_bool {
                    Some(Sv::F(if keep { 1.0 } else { 0.0 }))
                } else {
                    keep.then_some(Sv::F(val))
                }
            }
            _ => hist_op(ev, op, &fl, &fr, return_bool, &m.pos),
        }
    };
    const NONE: usize = usize::MAX;
    // Per step: the "one" series of each signature, and the result metrics
    // each signature matched (reset through `touched`).
    let mut right: Vec<usize> = vec![NONE; nsig];
    let mut matched: Vec<Vec<usize>> = vec![Vec::new(); nsig];
    let mut touched: Vec<usize> = Vec::new();
    for i in 0..n {
        if i % 64 == 0 {
            ev.check_deadline()?;
        }
        for sid in touched.drain(..) {
            right[sid] = NONE;
            matched[sid].clear();
        }
        let mut any_right = false;
        for (oi, s) in one.iter().enumerate() {
            if !s.present(i) {
                continue;
            }
            let sid = osig_id[oi];
            if right[sid] != NONE {
                let prev = right[sid];
                let (a, b) = (&s.labels, &one[prev].labels);
                let side = if one_to_many { "left" } else { "right" };
                return Err(QueryError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    go_labels(&osig[oi]),
                    go_labels(a.min(b)),
                    go_labels(a.max(b))
                )));
            }
            right[sid] = oi;
            touched.push(sid);
            any_right = true;
        }
        if !any_right && fill_one.is_none() {
            continue;
        }
        for (mi, ls) in many.iter().enumerate() {
            let Some(lv) = Sv::of(ls, i) else { continue };
            let drop_name = ls.drop_name || return_bool || !keep_name;
            let sid = msig_id[mi];
            let oi = right[sid];
            if oi == NONE {
                if let Some(fv) = fill_one {
                    let fv = Sv::F(fv);
                    let (fl, fr) = if one_to_many { (fv, lv) } else { (lv, fv) };
                    if let Some(val) = compute(ev, fl, fr) {
                        let id = *fill_metric
                            .entry(mi)
                            .or_insert_with(|| res.id(m.result_metric(&ls.labels, None)));
                        res.emit(id, drop_name, i, val);
                    }
                }
                continue;
            }
            let rs = &one[oi];
            let Some(rv) = Sv::of(rs, i) else { continue };
            let (fl, fr) = if one_to_many { (rv, lv) } else { (lv, rv) };
            // A series meets the same partner at almost every step: the
            // last pair's result metric is kept without hashing.
            let id = match last_pair[mi] {
                (o, id) if o == oi => id,
                _ => {
                    let id = *pair_metric
                        .entry((mi, oi))
                        .or_insert_with(|| res.id(m.result_metric(&ls.labels, Some(&rs.labels))));
                    last_pair[mi] = (oi, id);
                    id
                }
            };
            let set = &mut matched[sid];
            if matches!(card, VectorMatchCardinality::OneToOne) {
                if !set.is_empty() {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
            } else if set.contains(&id) {
                return Err(QueryError::Execution(
                    "multiple matches for matching labels; many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            if set.is_empty() {
                touched.push(sid);
            }
            set.push(id);
            if let Some(val) = compute(ev, fl, fr) {
                res.emit(id, drop_name, i, val);
            }
        }
        if let Some(fv) = fill_many {
            for (oi, rs) in one.iter().enumerate() {
                let Some(rv) = Sv::of(rs, i) else { continue };
                if !matched[osig_id[oi]].is_empty() {
                    continue;
                }
                let fv = Sv::F(fv);
                let (fl, fr) = if one_to_many { (rv, fv) } else { (fv, rv) };
                if let Some(val) = compute(ev, fl, fr) {
                    let drop_name = rs.drop_name || return_bool || !keep_name;
                    // The filled series has the match group's labels.
                    let id = res.id(osig[oi].clone());
                    res.emit(id, drop_name, i, val);
                }
            }
        }
    }
    Ok(Val::Vector(res.out))
}
