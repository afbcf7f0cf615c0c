//! Loki 3's `detected_level`: the level the distributor adds to every entry
//! as structured metadata (`discover_log_levels`, on by default), which
//! Grafana's log volume and Logs Drilldown group by.
//!
//! The precedence is Loki 3.4's (`pkg/distributor/level_detection.go`):
//! an entry that already carries `detected_level` keeps it; else the value
//! of the first level label of the stream (`level`, `severity`, ... as
//! configured), as is; else of its structured metadata; else the OTLP
//! `severity_number`; else the level field of a JSON line (top-level key)
//! or logfmt line (first such key), normalized; else keywords anywhere in
//! the line (`info`, `error`, `warning`, `critical:`, `debug:`, ...); else
//! `unknown`. Everything here scans bytes once or a few times without
//! allocating: it runs on the push path for every entry.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::LogEntry;
use crate::model::{Label, Labels};

/// The structured metadata name Loki stores the level under.
pub const DETECTED_LEVEL: &str = "detected_level";

/// Loki's default level fields (`log_level_fields` when unset).
pub const DEFAULT_LEVEL_FIELDS: &[&str] = &[
    "level", "LEVEL", "Level", "severity", "SEVERITY", "Severity", "lvl", "LVL", "Lvl",
];

/// Structured metadata OTLP ingestion stores the severity number under.
const OTLP_SEVERITY_NUMBER: &str = "severity_number";

/// Finds the level of entries from their stream labels, structured
/// metadata and line.
#[derive(Debug, Clone)]
pub struct LevelDetector {
    fields: Vec<String>,
}

impl LevelDetector {
    /// A detector looking for `fields` (Loki's default set when empty).
    pub fn new(fields: &[String]) -> LevelDetector {
        let fields = if fields.is_empty() {
            DEFAULT_LEVEL_FIELDS.iter().map(|s| s.to_string()).collect()
        } else {
            fields.to_vec()
        };
        LevelDetector { fields }
    }

    /// The value of the first level field present in `labels`.
    pub fn from_labels<'a>(&self, labels: &'a Labels) -> Option<&'a str> {
        self.fields.iter().find_map(|f| labels.get(f))
    }

    /// The level of one entry of a stream whose level label value (from
    /// [`LevelDetector::from_labels`]) is `stream_level`; None when the
    /// entry already carries `detected_level`.
    pub fn detect(
        &self,
        stream_level: Option<&str>,
        metadata: &Labels,
        line: &str,
    ) -> Option<String> {
        if metadata.get(DETECTED_LEVEL).is_some() {
            return None;
        }
        if let Some(l) = stream_level.or_else(|| self.from_labels(metadata)) {
            return Some(l.to_string());
        }
        if let Some(n) = metadata.get(OTLP_SEVERITY_NUMBER) {
            return Some(otlp_level(n).to_string());
        }
        Some(self.from_line(line).to_string())
    }

    /// Adds `detected_level` to the structured metadata of the entries of
    /// the stream `labels` (the distributor's step, after the entry checks).
    pub fn annotate(&self, labels: &Labels, entries: &mut [LogEntry]) {
        let stream_level = self.from_labels(labels);
        for e in entries {
            let Some(level) = self.detect(stream_level, &e.metadata, &e.line) else {
                continue;
            };
            let added = Label::new(DETECTED_LEVEL, level);
            e.metadata = if e.metadata.is_empty() {
                Labels::from_sorted(vec![added])
            } else {
                let mut pairs = std::mem::take(&mut e.metadata).into_vec();
                let at = pairs.partition_point(|l| l.name.as_str() < DETECTED_LEVEL);
                pairs.insert(at, added);
                Labels::from_sorted(pairs)
            };
        }
    }

    /// The level found in a line: a JSON or logfmt level field, else
    /// keywords.
    pub fn from_line(&self, line: &str) -> &'static str {
        let b = line.as_bytes();
        let field = if is_json(b) {
            json_top_level(b, &self.fields)
        } else if memchr::memchr(b'=', b).is_some() {
            logfmt_value(b, &self.fields)
        } else {
            return from_keywords(b);
        };
        field
            .and_then(normalize)
            .unwrap_or_else(|| from_keywords(b))
    }
}

/// Loki's mapping of OTLP severity numbers (1-4 trace ... 21-24 fatal).
fn otlp_level(n: &str) -> &'static str {
    match n.parse::<i64>() {
        Err(_) => "info",
        Ok(0) => "unknown",
        Ok(n) if n <= 4 => "trace",
        Ok(n) if n <= 8 => "debug",
        Ok(n) if n <= 12 => "info",
        Ok(n) if n <= 16 => "warn",
        Ok(n) if n <= 20 => "error",
        Ok(n) if n <= 24 => "fatal",
        Ok(_) => "unknown",
    }
}

/// Loki's normalization of a level field's value (case-insensitive).
pub fn normalize(v: &[u8]) -> Option<&'static str> {
    const NAMES: &[(&str, &str)] = &[
        ("trace", "trace"),
        ("trc", "trace"),
        ("debug", "debug"),
        ("dbg", "debug"),
        ("info", "info"),
        ("inf", "info"),
        ("warn", "warn"),
        ("wrn", "warn"),
        ("warning", "warn"),
        ("error", "error"),
        ("err", "error"),
        ("critical", "critical"),
        ("fatal", "fatal"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(v))
        .map(|(_, l)| *l)
}

/// Keyword searches in Loki's order: the first level with a hit wins.
static KEYWORDS: LazyLock<Vec<(&'static str, Vec<Finder<'static>>)>> = LazyLock::new(|| {
    let f = |ws: &[&'static str]| ws.iter().map(|w| Finder::new(w.as_bytes())).collect();
    vec![
        ("info", f(&["info", "INFO"])),
        ("error", f(&["err:", "ERR:", "error", "ERROR"])),
        ("warn", f(&["warn:", "WARN:", "warning", "WARNING"])),
        ("critical", f(&["CRITICAL:", "critical:"])),
        ("debug", f(&["debug:", "DEBUG:"])),
    ]
});

/// The level named by keywords anywhere in the line, else `unknown`.
fn from_keywords(b: &[u8]) -> &'static str {
    KEYWORDS
        .iter()
        .find(|(_, fs)| fs.iter().any(|f| f.find(b).is_some()))
        .map(|(l, _)| *l)
        .unwrap_or("unknown")
}

/// Loki's test: first and last non-space characters are braces.
fn is_json(b: &[u8]) -> bool {
    let t = b.trim_ascii();
    t.first() == Some(&b'{') && t.last() == Some(&b'}')
}

/// A cursor over JSON text that skips values without decoding them.
struct Json<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Json<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// A string's raw contents (escapes kept), the cursor after its quote.
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let mut j = start;
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                b'"' => {
                    self.i = j + 1;
                    return Some(&self.b[start..j]);
                }
                _ => j += 1,
            }
        }
        None
    }

    /// Skips one value; returns its raw text (a string's without quotes).
    fn value(&mut self) -> Option<&'a [u8]> {
        self.ws();
        match self.peek()? {
            b'"' => self.string(),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                let start = self.i;
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    match c {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return (c == close).then(|| &self.b[start..self.i]);
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                None
            }
            _ => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c == b',' || c == b'}' || c == b']' || c.is_ascii_whitespace() {
                        break;
                    }
                    self.i += 1;
                }
                (self.i > start).then(|| &self.b[start..self.i])
            }
        }
    }
}

/// The value of the first top-level key of a JSON object that is one of
/// `fields`.
fn json_top_level<'a>(b: &'a [u8], fields: &[String]) -> Option<&'a [u8]> {
    let mut j = Json { b, i: 0 };
    j.ws();
    if j.peek()? != b'{' {
        return None;
    }
    j.i += 1;
    loop {
        j.ws();
        if j.peek()? == b'}' {
            return None;
        }
        let key = j.string()?;
        j.ws();
        if j.peek()? != b':' {
            return None;
        }
        j.i += 1;
        let v = j.value()?;
        if fields.iter().any(|f| f.as_bytes() == key) {
            return Some(v);
        }
        j.ws();
        match j.peek()? {
            b',' => j.i += 1,
            _ => return None,
        }
    }
}

/// The value of the first `key=value` pair of a logfmt line whose key is
/// one of `fields` (quotes removed, escapes kept).
fn logfmt_value<'a>(b: &'a [u8], fields: &[String]) -> Option<&'a [u8]> {
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        let key = &b[ks..i];
        if i >= b.len() || b[i] != b'=' {
            // A bare key (or a stray quote): no value; skip the word.
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            continue;
        }
        i += 1;
        let value = if b.get(i) == Some(&b'"') {
            let vs = i + 1;
            let mut j = vs;
            loop {
                match b.get(j)? {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            i = j + 1;
            &b[vs..j]
        } else {
            let vs = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            &b[vs..i]
        };
        if !key.is_empty() && fields.iter().any(|f| f.as_bytes() == key) {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> LevelDetector {
        LevelDetector::new(&[])
    }

    #[test]
    fn lines() {
        let cases: &[(&str, &str)] = &[
            (r#"{"level":"ERROR","msg":"x"}"#, "error"),
            (r#"{"msg":"a } b","lvl":"wrn"}"#, "warn"),
            (
                r#" {"nested":{"level":"debug"},"severity":"Trace"} "#,
                "trace",
            ),
            (r#"{"level":30,"msg":"hello"}"#, "unknown"),
            (r#"{"level":30,"msg":"information"}"#, "info"),
            (r#"{"level":"crit","msg":"ok"}"#, "unknown"),
            ("level=dbg msg=\"info here\"", "debug"),
            ("ts=1 msg=\"level=error\" severity=\"fatal\"", "fatal"),
            ("method=GET path=/ status=500", "unknown"),
            ("method=GET level=nope path=/error", "error"),
            ("2024-01-01 ERROR something broke", "error"),
            ("WARNING: disk almost full", "warn"),
            ("warn: low", "warn"),
            ("critical: meltdown", "critical"),
            ("DEBUG: x", "debug"),
            ("debug without colon", "unknown"),
            ("an error and some info", "info"),
            ("", "unknown"),
        ];
        for (line, want) in cases {
            assert_eq!(d().from_line(line), *want, "{line}");
        }
    }

    #[test]
    fn precedence() {
        let det = d();
        let none = Labels::empty();
        let stream = Labels::from_pairs([("app", "a"), ("severity", "Notice")]);
        // A stream label wins, as is.
        assert_eq!(
            det.detect(det.from_labels(&stream), &none, "level=error"),
            Some("Notice".into())
        );
        // Then structured metadata, then the OTLP number, then the line.
        let md = Labels::from_pairs([("lvl", "WARN"), ("severity_number", "17")]);
        assert_eq!(det.detect(None, &md, "x"), Some("WARN".into()));
        let md = Labels::from_pairs([("severity_number", "17")]);
        assert_eq!(det.detect(None, &md, "info"), Some("error".into()));
        let md = Labels::from_pairs([("severity_number", "x")]);
        assert_eq!(det.detect(None, &md, "x"), Some("info".into()));
        assert_eq!(det.detect(None, &none, "level=inf"), Some("info".into()));
        // An entry that has one keeps it.
        let md = Labels::from_pairs([("detected_level", "error")]);
        assert_eq!(det.detect(Some("info"), &md, "x"), None);
        // Configured fields replace the defaults.
        let custom = LevelDetector::new(&["loglevel".to_string()]);
        assert_eq!(custom.from_line("level=error loglevel=warn"), "warn");
        assert_eq!(custom.from_line(r#"{"level":"trace"}"#), "unknown");
    }
}
