//! The head's label index: for every label name a sorted term dictionary of
//! its values, each with a roaring bitmap of series ids (postings).
//!
//! Matchers are evaluated on postings: equality is one lookup, literal
//! alternations (`a|b|c`) a union of lookups, prefixes (`foo.*`) a range of
//! the term dictionary, any other regex is run over the dictionary's values
//! (never over series). Negative matchers become set differences.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;

use crate::model::{Labels, MatchOp, Matcher};

/// Label postings of one tenant's head.
#[derive(Default)]
pub(crate) struct Postings {
    all: RoaringBitmap,
    terms: BTreeMap<String, BTreeMap<String, RoaringBitmap>>,
}

impl Postings {
    /// Indexes series `id`.
    pub fn add(&mut self, id: u32, labels: &Labels) {
        self.all.insert(id);
        for l in labels {
            self.terms
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default()
                .insert(id);
        }
    }

    /// Removes series `id`, dropping terms left without series.
    pub fn remove(&mut self, id: u32, labels: &Labels) {
        self.all.remove(id);
        for l in labels {
            let Some(values) = self.terms.get_mut(&l.name) else {
                continue;
            };
            if let Some(b) = values.get_mut(&l.value) {
                b.remove(id);
                if b.is_empty() {
                    values.remove(&l.value);
                }
            }
            if values.is_empty() {
                self.terms.remove(&l.name);
            }
        }
    }

    /// Label names with the series ids having each (any value).
    pub fn names(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, RoaringBitmap>)> {
        self.terms.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The term dictionary of one label name.
    pub fn values(&self, name: &str) -> Option<&BTreeMap<String, RoaringBitmap>> {
        self.terms.get(name)
    }

    /// Series matching every matcher.
    pub fn select(&self, matchers: &[Matcher]) -> RoaringBitmap {
        let mut include: Option<RoaringBitmap> = None;
        let mut exclude = Vec::new();
        for m in matchers {
            let negative = matches!(m.op, MatchOp::NotEqual | MatchOp::NotRegex);
            // For a negative matcher, collect the series it rejects.
            let keep = |v: &str| m.matches(v) != negative;
            let mut set = self.union_of_values(m, keep);
            if keep("") {
                set |= self.without_label(&m.name);
            }
            if negative {
                exclude.push(set);
            } else {
                include = Some(match include {
                    None => set,
                    Some(acc) => acc & set,
                });
                if include.as_ref().is_some_and(|b| b.is_empty()) {
                    return RoaringBitmap::new();
                }
            }
        }
        let mut out = include.unwrap_or_else(|| self.all.clone());
        for e in exclude {
            out -= e;
        }
        out
    }

    /// Series lacking label `name`.
    fn without_label(&self, name: &str) -> RoaringBitmap {
        let mut out = self.all.clone();
        if let Some(values) = self.terms.get(name) {
            for b in values.values() {
                out -= b;
            }
        }
        out
    }

    /// Union of the postings of the values of `m.name` for which `keep`
    /// holds, visiting as little of the term dictionary as the matcher allows.
    fn union_of_values(&self, m: &Matcher, keep: impl Fn(&str) -> bool) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let Some(values) = self.terms.get(&m.name) else {
            return out;
        };
        let mut add = |v: &str, b: &RoaringBitmap| {
            if keep(v) {
                out |= b;
            }
        };
        match m.op {
            MatchOp::Equal | MatchOp::NotEqual => {
                if let Some(b) = values.get(&m.value) {
                    add(&m.value, b);
                }
            }
            MatchOp::Regex | MatchOp::NotRegex => {
                if let Some(alts) = m.literal_alternatives() {
                    for a in alts {
                        if let Some(b) = values.get(&a) {
                            add(&a, b);
                        }
                    }
                } else if let Some(prefix) = m.literal_prefix() {
                    for (v, b) in values
                        .range::<str, _>((
                            std::ops::Bound::Included(prefix),
                            std::ops::Bound::Unbounded,
                        ))
                        .take_while(|(v, _)| v.starts_with(prefix))
                    {
                        add(v, b);
                    }
                } else {
                    for (v, b) in values {
                        add(v, b);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::matches_all;

    fn index() -> (Postings, Vec<Labels>) {
        let series: Vec<Labels> = [
            vec![("__name__", "up"), ("job", "api"), ("env", "prod")],
            vec![("__name__", "up"), ("job", "web"), ("env", "dev")],
            vec![("__name__", "up"), ("job", "node-1")],
            vec![("__name__", "up"), ("job", "node-2"), ("env", "prod")],
            vec![("__name__", "http_total"), ("job", "api")],
            vec![("__name__", "node"), ("job", "nodes")],
        ]
        .into_iter()
        .map(Labels::from_pairs)
        .collect();
        let mut p = Postings::default();
        for (i, l) in series.iter().enumerate() {
            p.add(i as u32, l);
        }
        (p, series)
    }

    #[test]
    fn matchers_agree_with_brute_force() {
        let (p, series) = index();
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        use MatchOp::*;
        let cases: Vec<Vec<Matcher>> = vec![
            vec![],
            vec![m(Equal, "job", "api")],
            vec![m(Equal, "env", "")],
            vec![m(NotEqual, "env", "")],
            vec![m(NotEqual, "env", "prod")],
            vec![m(Regex, "job", "api|web|nope")],
            vec![m(Regex, "job", "node.*")],
            vec![m(Regex, "job", "node.+")],
            vec![m(Regex, "job", "node-.")],
            vec![m(Regex, "env", "|prod")],
            vec![m(Regex, "env", ".*")],
            vec![m(NotRegex, "job", "node.*")],
            vec![m(NotRegex, "job", "api|web")],
            vec![m(NotRegex, "env", ".+")],
            vec![m(NotRegex, "missing", "x")],
            vec![m(Equal, "missing", "x")],
            vec![m(Equal, "__name__", "up"), m(NotRegex, "env", "dev|prod")],
            vec![
                m(Equal, "__name__", "up"),
                m(Regex, "job", "node.*"),
                m(NotEqual, "env", "prod"),
            ],
        ];
        for ms in cases {
            let want: Vec<u32> = series
                .iter()
                .enumerate()
                .filter(|(_, l)| matches_all(l, &ms))
                .map(|(i, _)| i as u32)
                .collect();
            let got: Vec<u32> = p.select(&ms).iter().collect();
            assert_eq!(got, want, "{ms:?}");
        }
    }

    #[test]
    fn remove_drops_empty_terms() {
        let (mut p, series) = index();
        p.remove(4, &series[4]);
        assert!(p.values("__name__").unwrap().get("http_total").is_none());
        assert_eq!(p.select(&[]).len(), 5);
        assert_eq!(p.select(&[Matcher::equal("job", "api")]).len(), 1);
    }
}
