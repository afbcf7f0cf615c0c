//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus's fully anchored regexes.

use regex::Regex;
use std::fmt;

/// The matching operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

/// A matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// The regex does not compile.
    #[error("invalid regular expression {pattern:?} for label {name:?}: {reason}")]
    BadRegex {
        /// Label name.
        name: String,
        /// The pattern as given.
        pattern: String,
        /// Why it failed.
        reason: String,
    },
}

/// Matches one label of a series. A missing label matches as the empty value,
/// so `{a=""}` selects series without `a` (Prometheus semantics).
#[derive(Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operation.
    pub op: MatchOp,
    /// The value or the regex source as written.
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; regexes are anchored at both ends as in Prometheus.
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let (name, value) = (name.into(), value.into());
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(Regex::new(&format!("^(?s:{value})$")).map_err(|e| {
                    MatcherError::BadRegex {
                        name: name.clone(),
                        pattern: value.clone(),
                        reason: e.to_string(),
                    }
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// True when `value` (empty for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == value,
            MatchOp::NotEqual => self.value != value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// True when the matcher also selects series that lack the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For a regex matcher that is a plain alternation of literals
    /// (`a|b|c`, no metacharacters), the literals; used to turn the regex
    /// into a union of postings.
    pub fn literal_alternatives(&self) -> Option<Vec<String>> {
        if !matches!(self.op, MatchOp::Regex | MatchOp::NotRegex) {
            return None;
        }
        let is_meta = |c: char| "\\.+*?()|[]{}^$".contains(c);
        let parts: Vec<&str> = self.value.split('|').collect();
        if parts.iter().any(|p| p.chars().any(is_meta)) {
            return None;
        }
        Some(parts.into_iter().map(str::to_string).collect())
    }

    /// For a regex of the form `literal.*` or `literal.+`, the literal prefix;
    /// used to scan only part of the term dictionary.
    pub fn literal_prefix(&self) -> Option<&str> {
        if !matches!(self.op, MatchOp::Regex | MatchOp::NotRegex) {
            return None;
        }
        let v = self.value.as_str();
        let stem = v.strip_suffix(".*").or_else(|| v.strip_suffix(".+"))?;
        if stem.chars().any(|c| "\\.+*?()|[]{}^$".contains(c)) {
            return None;
        }
        Some(stem)
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored() {
        let m = Matcher::new(MatchOp::Regex, "job", "api").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("xapi"));
        assert!(!m.matches("apix"));
        let m = Matcher::new(MatchOp::Regex, "job", "a|b").unwrap();
        assert!(m.matches("a") && m.matches("b") && !m.matches("ab"));
    }

    #[test]
    fn empty_matches_absent() {
        assert!(Matcher::equal("x", "").matches_empty());
        assert!(!Matcher::new(MatchOp::Regex, "x", ".+")
            .unwrap()
            .matches_empty());
        assert!(Matcher::new(MatchOp::NotEqual, "x", "y")
            .unwrap()
            .matches_empty());
    }

    #[test]
    fn optimisable_shapes() {
        let m = Matcher::new(MatchOp::Regex, "job", "api|web|db").unwrap();
        assert_eq!(m.literal_alternatives().unwrap(), vec!["api", "web", "db"]);
        let m = Matcher::new(MatchOp::Regex, "job", "node.*").unwrap();
        assert_eq!(m.literal_prefix(), Some("node"));
        let m = Matcher::new(MatchOp::Regex, "job", "n(o)de.*").unwrap();
        assert_eq!(m.literal_prefix(), None);
        assert!(m.literal_alternatives().is_none());
    }
}
