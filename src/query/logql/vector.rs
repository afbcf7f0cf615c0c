//! Instant-vector machinery shared by LogQL metric queries: aggregation
//! operators, binary operators with Prometheus's vector matching, and
//! `label_replace`. Pure functions over `(labels, value)` samples, so a
//! PromQL or rules engine can reuse them.

use super::ast::{BinOp, Cardinality, Grouping, VecOp, VectorMatching};
use crate::model::{Labels, LabelsBuilder};
use regex::Regex;
use std::collections::HashMap;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Labels.
    pub labels: Labels,
    /// Value.
    pub value: f64,
}

/// An instant vector.
pub type Vector = Vec<Sample>;

/// The labels kept by `by (...)` or left by `without (...)`.
pub fn group_labels(l: &Labels, g: &Grouping) -> Labels {
    let names: Vec<&str> = g.labels.iter().map(String::as_str).collect();
    if g.without {
        l.drop_names(&names)
    } else {
        l.keep(&names)
    }
}

/// Population variance (Welford).
pub fn variance(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut mean, mut m2) = (0f64, 0f64, 0f64);
    for v in vals {
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    if n == 0.0 {
        f64::NAN
    } else {
        m2 / n
    }
}

/// Prometheus's φ-quantile with linear interpolation.
pub fn quantile(q: f64, mut vals: Vec<f64>) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| a.total_cmp(b));
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lo = rank.floor().max(0.0);
    let hi = (lo + 1.0).min(n - 1.0);
    let w = rank - lo;
    vals[lo as usize] * (1.0 - w) + vals[hi as usize] * w
}

/// Applies a vector aggregation operator.
pub fn aggregate(op: VecOp, param: Option<f64>, g: Option<&Grouping>, v: Vector) -> Vector {
    match op {
        VecOp::Sort | VecOp::SortDesc => {
            let mut v = v;
            v.sort_by(|a, b| {
                let o = a.value.total_cmp(&b.value);
                if op == VecOp::Sort {
                    o
                } else {
                    o.reverse()
                }
            });
            return v;
        }
        VecOp::Topk | VecOp::Bottomk => {
            let k = param.unwrap_or(0.0) as usize;
            let mut groups: Vec<(Labels, Vec<Sample>)> = Vec::new();
            let mut idx: HashMap<Labels, usize> = HashMap::new();
            for s in v {
                let key = g.map_or_else(Labels::empty, |g| group_labels(&s.labels, g));
                let i = *idx.entry(key.clone()).or_insert_with(|| {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                });
                groups[i].1.push(s);
            }
            let mut out = Vec::new();
            for (_, mut ss) in groups {
                ss.sort_by(|a, b| {
                    let o = a.value.total_cmp(&b.value);
                    let o = if op == VecOp::Topk { o.reverse() } else { o };
                    o.then_with(|| a.labels.cmp(&b.labels))
                });
                ss.truncate(k);
                out.extend(ss);
            }
            return out;
        }
        _ => {}
    }
    let mut groups: Vec<(Labels, Vec<f64>)> = Vec::new();
    let mut idx: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        let key = g.map_or_else(Labels::empty, |g| group_labels(&s.labels, g));
        let i = *idx.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(s.value);
    }
    groups
        .into_iter()
        .map(|(labels, vals)| {
            let n = vals.len() as f64;
            let value = match op {
                VecOp::Sum => vals.iter().sum(),
                VecOp::Avg => vals.iter().sum::<f64>() / n,
                VecOp::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
                VecOp::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                VecOp::Count => n,
                VecOp::Stdvar => variance(vals.into_iter()),
                VecOp::Stddev => variance(vals.into_iter()).sqrt(),
                _ => f64::NAN,
            };
            Sample { labels, value }
        })
        .collect()
}

/// Arithmetic or comparison on two numbers; comparisons give 0/1.
/// `None` for set operators.
pub fn scalar_op(op: BinOp, a: f64, b: f64) -> Option<f64> {
    let bool_ = |c: bool| if c { 1.0 } else { 0.0 };
    Some(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        BinOp::Pow => a.powf(b),
        BinOp::Eq => bool_(a == b),
        BinOp::Ne => bool_(a != b),
        BinOp::Gt => bool_(a > b),
        BinOp::Ge => bool_(a >= b),
        BinOp::Lt => bool_(a < b),
        BinOp::Le => bool_(a <= b),
        BinOp::And | BinOp::Or | BinOp::Unless => return None,
    })
}

/// `vector op scalar` (or `scalar op vector` when `scalar_left`).
pub fn vector_scalar(op: BinOp, v: Vector, s: f64, scalar_left: bool, return_bool: bool) -> Vector {
    v.into_iter()
        .filter_map(|smp| {
            let (a, b) = if scalar_left {
                (s, smp.value)
            } else {
                (smp.value, s)
            };
            let r = scalar_op(op, a, b)?;
            if op.is_comparison() {
                if return_bool {
                    Some(Sample { value: r, ..smp })
                } else if r == 1.0 {
                    Some(smp)
                } else {
                    None
                }
            } else {
                Some(Sample { value: r, ..smp })
            }
        })
        .collect()
}

fn signature(l: &Labels, m: Option<&VectorMatching>) -> Labels {
    match m {
        Some(m) if m.on => l.keep(&m.labels.iter().map(String::as_str).collect::<Vec<_>>()),
        Some(m) => l.drop_names(&m.labels.iter().map(String::as_str).collect::<Vec<_>>()),
        None => l.clone(),
    }
}

/// `vector op vector` with Prometheus's matching rules.
pub fn vector_vector(
    op: BinOp,
    lhs: Vector,
    rhs: Vector,
    m: Option<&VectorMatching>,
    return_bool: bool,
) -> Result<Vector, String> {
    if op.is_set() {
        let rsigs: std::collections::HashSet<Labels> =
            rhs.iter().map(|s| signature(&s.labels, m)).collect();
        return Ok(match op {
            BinOp::And => lhs
                .into_iter()
                .filter(|s| rsigs.contains(&signature(&s.labels, m)))
                .collect(),
            BinOp::Unless => lhs
                .into_iter()
                .filter(|s| !rsigs.contains(&signature(&s.labels, m)))
                .collect(),
            _ => {
                let lsigs: std::collections::HashSet<Labels> =
                    lhs.iter().map(|s| signature(&s.labels, m)).collect();
                let mut out = lhs;
                out.extend(
                    rhs.into_iter()
                        .filter(|s| !lsigs.contains(&signature(&s.labels, m))),
                );
                out
            }
        });
    }
    let card = m.map_or(Cardinality::OneToOne, |m| m.card.clone());
    // The "one" side is indexed; the "many" side is iterated.
    let (many, one, swapped, include) = match &card {
        Cardinality::OneToMany(inc) => (rhs, lhs, true, inc.clone()),
        Cardinality::ManyToOne(inc) => (lhs, rhs, false, inc.clone()),
        Cardinality::OneToOne => (lhs, rhs, false, Vec::new()),
    };
    let mut index: HashMap<Labels, &Sample> = HashMap::new();
    for s in &one {
        if index.insert(signature(&s.labels, m), s).is_some() {
            return Err(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                signature(&s.labels, m),
                if swapped { "left" } else { "right" }
            ));
        }
    }
    let mut out = Vec::new();
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    for s in &many {
        let sig = signature(&s.labels, m);
        let Some(o) = index.get(&sig) else { continue };
        let (a, b) = if swapped {
            (o.value, s.value)
        } else {
            (s.value, o.value)
        };
        let Some(r) = scalar_op(op, a, b) else {
            continue;
        };
        let value = if op.is_comparison() {
            if return_bool {
                r
            } else if r == 1.0 {
                a
            } else {
                continue;
            }
        } else {
            r
        };
        let labels = match &card {
            Cardinality::OneToOne => match m {
                Some(mm) if mm.on => sig.clone(),
                Some(mm) => s
                    .labels
                    .drop_names(&mm.labels.iter().map(String::as_str).collect::<Vec<_>>()),
                None => s.labels.clone(),
            },
            _ => {
                let mut b = LabelsBuilder::new(&s.labels);
                for name in &include {
                    match o.labels.get(name) {
                        Some(v) => b.set(name.clone(), v),
                        None => b.del(name),
                    };
                }
                b.labels()
            }
        };
        if seen.insert(labels.clone(), ()).is_some() {
            return Err(format!(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right); duplicate result series {labels}"
            ));
        }
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// Prometheus's `label_replace`.
pub fn label_replace(
    v: Vector,
    dst: &str,
    repl: &str,
    src: &str,
    re: &str,
) -> Result<Vector, String> {
    let re = Regex::new(&format!("^(?s:{re})$"))
        .map_err(|e| format!("invalid regular expression in label_replace(): {e}"))?;
    Ok(v.into_iter()
        .map(|mut s| {
            let val = s.labels.get(src).unwrap_or("").to_string();
            if let Some(c) = re.captures(&val) {
                let mut res = String::new();
                c.expand(repl, &mut res);
                let mut b = LabelsBuilder::new(&s.labels);
                b.set(dst, res);
                s.labels = b.labels();
            }
            s
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smp(pairs: &[(&str, &str)], v: f64) -> Sample {
        Sample {
            labels: Labels::from_pairs(pairs.iter().copied()),
            value: v,
        }
    }

    #[test]
    fn quantile_and_variance() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(variance([2.0, 4.0].into_iter()), 1.0);
    }

    #[test]
    fn matching() {
        let l = vec![
            smp(&[("a", "1"), ("b", "x")], 10.0),
            smp(&[("a", "2"), ("b", "y")], 20.0),
        ];
        let r = vec![smp(&[("a", "1")], 2.0)];
        let m = VectorMatching {
            on: true,
            labels: vec!["a".into()],
            card: Cardinality::OneToOne,
        };
        let out = vector_vector(BinOp::Div, l.clone(), r.clone(), Some(&m), false).unwrap();
        assert_eq!(out, vec![smp(&[("a", "1")], 5.0)]);
        let m = VectorMatching {
            on: true,
            labels: vec!["a".into()],
            card: Cardinality::ManyToOne(vec![]),
        };
        let out = vector_vector(BinOp::Div, l.clone(), r, Some(&m), false).unwrap();
        assert_eq!(out, vec![smp(&[("a", "1"), ("b", "x")], 5.0)]);
        let out = vector_vector(
            BinOp::Or,
            l.clone(),
            vec![smp(&[("c", "1")], 1.0)],
            None,
            false,
        )
        .unwrap();
        assert_eq!(out.len(), 3);
    }
}
