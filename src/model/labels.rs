//! Label sets: sorted `(name, value)` pairs; `__name__` is the metric name.

use std::fmt;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value (never empty inside a [`Labels`]: empty means absent).
    pub value: String,
}

impl Label {
    /// A label pair.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, sorted by name with unique names and no empty values.
///
/// Ordering and equality are those of the sorted pair list, which is also the
/// order Prometheus uses to sort series in API answers.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order. Later duplicates win and
    /// empty values are dropped, as Prometheus does.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Labels {
        let mut b = LabelsBuilder::new(&Labels::empty());
        for (n, v) in pairs {
            b.set(n, v);
        }
        b.labels()
    }

    /// Wraps pairs that the caller guarantees are sorted, unique and non-empty
    /// (checked in debug builds).
    pub fn from_sorted(pairs: Vec<Label>) -> Labels {
        debug_assert!(pairs.windows(2).all(|w| w[0].name < w[1].name));
        debug_assert!(pairs.iter().all(|l| !l.value.is_empty()));
        Labels(pairs)
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Iterates over the pairs in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs as a slice.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Consumes the set, returning its pairs.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A copy without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    /// A copy keeping only the named labels (`by (...)`).
    pub fn keep(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// A copy dropping the named labels (`without (...)`).
    pub fn drop_names(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// A stable 64-bit hash of the pairs (xxh3), the same across restarts.
    pub fn stable_hash(&self) -> u64 {
        stable_hash(self.0.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }
}

/// xxh3 of `name 0xff value 0xff` for every pair, hashed in one call over a
/// reused buffer (a streaming hasher costs more for such short inputs).
fn stable_hash<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        for (n, v) in pairs {
            b.extend_from_slice(n.as_bytes());
            b.push(0xff);
            b.extend_from_slice(v.as_bytes());
            b.push(0xff);
        }
        xxhash_rust::xxh3::xxh3_64(&b)
    })
}

/// A label set the write path can look up without building a [`Labels`]:
/// pairs borrowed from a request (validated: sorted by name, unique, no
/// empty value) or an owned set.
#[derive(Debug, Clone, Copy)]
pub enum LabelsRef<'a> {
    /// Validated pairs borrowed from a request.
    Pairs(&'a [(&'a str, &'a str)]),
    /// An owned label set.
    Owned(&'a Labels),
}

impl<'a> LabelsRef<'a> {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        match self {
            LabelsRef::Pairs(p) => p.len(),
            LabelsRef::Owned(l) => l.len(),
        }
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs in name order.
    pub fn iter(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let (pairs, owned): (&[(&str, &str)], &[Label]) = match self {
            LabelsRef::Pairs(p) => (p, &[]),
            LabelsRef::Owned(l) => (&[], l.as_slice()),
        };
        pairs
            .iter()
            .copied()
            .chain(owned.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// The same hash as [`Labels::stable_hash`] of the equal set.
    pub fn stable_hash(self) -> u64 {
        stable_hash(self.iter())
    }

    /// True when `labels` holds exactly these pairs.
    pub fn equals(self, labels: &Labels) -> bool {
        labels.len() == self.len()
            && labels
                .iter()
                .zip(self.iter())
                .all(|(l, (n, v))| l.name == n && l.value == v)
    }

    /// An owned copy.
    pub fn to_labels(self) -> Labels {
        match self {
            LabelsRef::Owned(l) => l.clone(),
            LabelsRef::Pairs(p) => {
                Labels::from_sorted(p.iter().map(|(n, v)| Label::new(*n, *v)).collect())
            }
        }
    }
}

impl fmt::Display for Labels {
    /// Prometheus's text form: `name{a="b", c="d"}`, or `{...}` with no name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let rest: Vec<&Label> = self.0.iter().filter(|l| l.name != METRIC_NAME).collect();
        if rest.is_empty() && name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Edits a label set: set or delete names, then build a sorted set.
#[derive(Debug, Clone)]
pub struct LabelsBuilder {
    pairs: Vec<Label>,
}

impl LabelsBuilder {
    /// Starts from `base`.
    pub fn new(base: &Labels) -> LabelsBuilder {
        LabelsBuilder {
            pairs: base.0.clone(),
        }
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        match self.pairs.binary_search_by(|l| l.name.cmp(&name)) {
            Ok(i) if value.is_empty() => {
                self.pairs.remove(i);
            }
            Ok(i) => self.pairs[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.pairs.insert(i, Label { name, value }),
        }
        self
    }

    /// Deletes `name`.
    pub fn del(&mut self, name: &str) -> &mut Self {
        if let Ok(i) = self.pairs.binary_search_by(|l| l.name.as_str().cmp(name)) {
            self.pairs.remove(i);
        }
        self
    }

    /// The resulting label set.
    pub fn labels(&self) -> Labels {
        Labels(self.pairs.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_dedups_and_drops_empty() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("a"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.to_string(), r#"{a="3", b="2"}"#);
    }

    #[test]
    fn display_with_name() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        assert_eq!(l.to_string(), r#"up{job="x"}"#);
        assert_eq!(Labels::from_pairs([("__name__", "up")]).to_string(), "up");
    }

    #[test]
    fn stable_hash_separates_boundaries() {
        let a = Labels::from_pairs([("ab", "c")]);
        let b = Labels::from_pairs([("a", "bc")]);
        assert_ne!(a.stable_hash(), b.stable_hash());
    }

    #[test]
    fn stable_hash_is_the_streaming_xxh3_and_labels_ref_agrees() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node"), ("x", "é")]);
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for p in &l {
            for part in [p.name.as_bytes(), &[0xff], p.value.as_bytes(), &[0xff]] {
                h.update(part);
            }
        }
        assert_eq!(l.stable_hash(), h.digest());
        let pairs = [("__name__", "up"), ("job", "node"), ("x", "é")];
        let r = LabelsRef::Pairs(&pairs);
        assert_eq!(r.stable_hash(), l.stable_hash());
        assert_eq!(LabelsRef::Owned(&l).stable_hash(), l.stable_hash());
        assert!(r.equals(&l) && LabelsRef::Owned(&l).equals(&l));
        assert!(!LabelsRef::Pairs(&pairs[..2]).equals(&l));
        assert_eq!(r.to_labels(), l);
    }
}
