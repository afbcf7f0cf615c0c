//! The log pipeline: line filters, parsers, label filters, formatting and
//! unwrap, compiled once per query and applied per entry, with Loki's
//! `__error__` / `__error_details__` conventions.

use super::ast::*;
use super::lexer::{parse_bytes, parse_go_duration};
use super::template::{Template, TemplateData};
use crate::logs::LineHint;
use crate::model::Labels;
use regex::Regex;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Label holding a pipeline error.
pub const ERROR_LABEL: &str = "__error__";
/// Label holding the error's details.
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// The labels of one entry while it moves through the pipeline.
pub type LabelMap = BTreeMap<String, String>;

/// An IP pattern: one address, a range `a-b` or a CIDR `a/n`.
#[derive(Debug, Clone)]
pub enum IpPattern {
    /// One address.
    Single(IpAddr),
    /// Inclusive range.
    Range(IpAddr, IpAddr),
    /// Network and prefix length.
    Cidr(IpAddr, u8),
}

fn ip_bits(a: &IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v) => (u32::from(*v) as u128, true),
        IpAddr::V6(v) => (u128::from(*v), false),
    }
}

impl IpPattern {
    /// Parses `1.2.3.4`, `1.2.3.4-1.2.3.9` or `10.0.0.0/8` (IPv6 too).
    pub fn parse(s: &str) -> Result<IpPattern, String> {
        let bad = || format!("invalid ip pattern {s:?}");
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let b: IpAddr = b.trim().parse().map_err(|_| bad())?;
            if a.is_ipv4() != b.is_ipv4() || ip_bits(&a).0 > ip_bits(&b).0 {
                return Err(bad());
            }
            return Ok(IpPattern::Range(a, b));
        }
        if let Some((a, n)) = s.split_once('/') {
            let a: IpAddr = a.parse().map_err(|_| bad())?;
            let n: u8 = n.parse().map_err(|_| bad())?;
            if n > if a.is_ipv4() { 32 } else { 128 } {
                return Err(bad());
            }
            return Ok(IpPattern::Cidr(a, n));
        }
        Ok(IpPattern::Single(s.parse().map_err(|_| bad())?))
    }

    /// True when `ip` is inside the pattern.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let (v, v4) = ip_bits(ip);
        match self {
            IpPattern::Single(a) => a == ip,
            IpPattern::Range(a, b) => {
                let ((lo, a4), (hi, _)) = (ip_bits(a), ip_bits(b));
                a4 == v4 && lo <= v && v <= hi
            }
            IpPattern::Cidr(a, n) => {
                let (net, a4) = ip_bits(a);
                if a4 != v4 {
                    return false;
                }
                let width = if v4 { 32 } else { 128 };
                let shift = width - *n as u32;
                if shift >= 128 {
                    return true;
                }
                (net >> shift) == (v >> shift)
            }
        }
    }

    /// True when any IP address appearing in `line` is inside the pattern.
    pub fn matches_line(&self, line: &str) -> bool {
        let is_ip_char = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':';
        line.split(|c: char| !is_ip_char(c))
            .filter(|t| t.len() >= 2)
            .any(|tok| {
                let tok = tok.trim_matches(|c| c == ':' || c == '.');
                if let Ok(ip) = tok.parse::<IpAddr>() {
                    return self.contains(&ip);
                }
                // `1.2.3.4:8080`
                tok.split(':')
                    .filter_map(|p| p.parse::<IpAddr>().ok())
                    .any(|ip| self.contains(&ip))
            })
    }
}

/// A `pattern` expression: literals and `<name>` / `<_>` captures.
#[derive(Debug, Clone)]
pub struct Pattern {
    parts: Vec<PatPart>,
}

#[derive(Debug, Clone)]
enum PatPart {
    Lit(String),
    Cap(Option<String>),
}

impl Pattern {
    /// Parses a pattern; `need_capture` requires a named capture (parser use).
    pub fn parse(s: &str, need_capture: bool) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        let mut lit = String::new();
        while !rest.is_empty() {
            if rest.starts_with('<') {
                if let Some(end) = rest.find('>') {
                    let name = &rest[1..end];
                    let valid = name == "_"
                        || (!name.is_empty()
                            && name
                                .chars()
                                .next()
                                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    if valid {
                        if !lit.is_empty() {
                            parts.push(PatPart::Lit(std::mem::take(&mut lit)));
                        }
                        if matches!(parts.last(), Some(PatPart::Cap(_))) {
                            return Err(format!(
                                "invalid pattern {s:?}: consecutive captures are not allowed"
                            ));
                        }
                        parts.push(PatPart::Cap((name != "_").then(|| name.to_string())));
                        rest = &rest[end + 1..];
                        continue;
                    }
                }
            }
            let c = rest.chars().next().unwrap_or_default();
            lit.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !lit.is_empty() {
            parts.push(PatPart::Lit(lit));
        }
        if need_capture && !parts.iter().any(|p| matches!(p, PatPart::Cap(Some(_)))) {
            return Err(format!(
                "invalid pattern {s:?}: at least one named capture is required"
            ));
        }
        if parts.is_empty() {
            return Err("invalid pattern: empty".into());
        }
        Ok(Pattern { parts })
    }

    /// Named captures from `line` (Loki's `Matches`: anchored at the start, a
    /// missing literal makes the last capture take the rest).
    pub fn captures<'a>(&self, line: &'a str) -> Option<Vec<(&str, &'a str)>> {
        let mut out = Vec::new();
        let mut parts = &self.parts[..];
        let mut input = line;
        if let Some(PatPart::Lit(l)) = parts.first() {
            input = input.strip_prefix(l.as_str())?;
            parts = &parts[1..];
        }
        while let Some(PatPart::Cap(name)) = parts.first() {
            if input.is_empty() {
                return if out.is_empty() { None } else { Some(out) };
            }
            let Some(PatPart::Lit(l)) = parts.get(1) else {
                if let Some(n) = name {
                    out.push((n.as_str(), input));
                }
                return Some(out);
            };
            parts = &parts[2..];
            match input.find(l.as_str()) {
                None => {
                    if let Some(n) = name {
                        out.push((n.as_str(), input));
                    }
                    return Some(out);
                }
                Some(i) => {
                    if let Some(n) = name {
                        out.push((n.as_str(), &input[..i]));
                    }
                    input = &input[i + l.len()..];
                }
            }
        }
        Some(out)
    }

    /// Whole-line test used by `|>` / `!>`: literals in order, each capture
    /// non-empty, a trailing literal ends the line.
    pub fn test(&self, line: &str) -> bool {
        let mut off = 0;
        for (i, p) in self.parts.iter().enumerate() {
            if let PatPart::Lit(l) = p {
                let Some(j) = line[off..].find(l.as_str()) else {
                    return false;
                };
                if i == 0 && j != 0 {
                    return false;
                }
                if i != 0 && j == 0 {
                    return false;
                }
                off += j + l.len();
            }
        }
        match self.parts.last() {
            Some(PatPart::Lit(_)) => off == line.len(),
            _ => off < line.len(),
        }
    }
}

/// A compiled `regexp` parser.
#[derive(Debug, Clone)]
pub struct RegexpParser {
    re: Regex,
}

impl RegexpParser {
    /// Compiles; at least one named group is required.
    pub fn new(s: &str) -> Result<RegexpParser, String> {
        let re = Regex::new(s).map_err(|e| format!("invalid regular expression {s:?}: {e}"))?;
        if re.capture_names().flatten().next().is_none() {
            return Err(format!(
                "invalid regexp parser {s:?}: at least one named capture group is required"
            ));
        }
        Ok(RegexpParser { re })
    }
}

/// The longest literal every match of `re` must contain, when one can be
/// found cheaply (no alternation, classes or groups); used as a prefilter
/// and as an index hint.
pub fn required_literal(re: &str) -> Option<String> {
    if re.contains(['|', '(', '[', '\\']) {
        return None;
    }
    let mut best = String::new();
    let mut cur = String::new();
    let chars: Vec<char> = re.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let quantified = matches!(chars.get(i + 1), Some('*' | '?' | '{'));
        match c {
            '.' | '^' | '$' | '+' | '*' | '?' | '{' | '}' => {
                if cur.chars().count() > best.chars().count() {
                    best = cur.clone();
                }
                cur.clear();
                if c == '{' {
                    while i < chars.len() && chars[i] != '}' {
                        i += 1;
                    }
                }
            }
            _ if quantified => {
                if cur.chars().count() > best.chars().count() {
                    best = cur.clone();
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
        i += 1;
    }
    if cur.chars().count() > best.chars().count() {
        best = cur;
    }
    (best.len() >= 2).then_some(best)
}

#[derive(Debug, Clone)]
enum LineMatch {
    Contains(String),
    Regex(Regex, Option<String>),
    Pattern(Pattern),
    Ip(IpPattern),
}

impl LineMatch {
    fn matches(&self, line: &str) -> bool {
        match self {
            LineMatch::Contains(s) => line.contains(s.as_str()),
            LineMatch::Regex(re, pre) => {
                pre.as_ref().is_none_or(|p| line.contains(p.as_str())) && re.is_match(line)
            }
            LineMatch::Pattern(p) => p.test(line),
            LineMatch::Ip(p) => p.matches_line(line),
        }
    }
}

#[derive(Debug, Clone)]
enum LabelPred {
    And(Box<LabelPred>, Box<LabelPred>),
    Or(Box<LabelPred>, Box<LabelPred>),
    Str(crate::model::Matcher),
    Typed(String, CmpOp, TypedValue),
    Ip(String, bool, IpPattern),
}

enum CStage {
    Line(bool, Vec<LineMatch>),
    Json(Vec<(String, Vec<PathSeg>)>),
    Logfmt(bool, bool, Vec<(String, String)>),
    Regexp(RegexpParser),
    Pattern(Pattern),
    Unpack,
    Label(LabelPred),
    LineFormat(Template),
    LabelFormat(Vec<(String, Result<String, Template>)>),
    Drop(Vec<NamedMatcher>),
    Keep(Vec<NamedMatcher>),
    Decolorize,
}

/// One step of a JSON path (`a.b[0]["c"]`).
#[derive(Debug, Clone, PartialEq)]
pub enum PathSeg {
    /// Object key.
    Key(String),
    /// Array index.
    Index(usize),
}

/// Parses a json parser expression such as `a.b[0]["c d"]`.
pub fn parse_json_path(s: &str) -> Result<Vec<PathSeg>, String> {
    let bad = || format!("invalid json expression {s:?}");
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut cur = String::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                if !cur.is_empty() {
                    out.push(PathSeg::Key(std::mem::take(&mut cur)));
                }
                i += 1;
            }
            '[' => {
                if !cur.is_empty() {
                    out.push(PathSeg::Key(std::mem::take(&mut cur)));
                }
                let end = chars[i..].iter().position(|c| *c == ']').ok_or_else(bad)? + i;
                let inner: String = chars[i + 1..end].iter().collect();
                let inner = inner.trim();
                if let Some(q) = inner
                    .strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .or_else(|| inner.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
                {
                    out.push(PathSeg::Key(q.to_string()));
                } else {
                    out.push(PathSeg::Index(inner.parse().map_err(|_| bad())?));
                }
                i = end + 1;
            }
            c => {
                cur.push(c);
                i += 1;
            }
        }
    }
    if !cur.is_empty() {
        out.push(PathSeg::Key(cur));
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// A compiled pipeline.
pub struct Pipeline {
    stages: Vec<CStage>,
    unwrap: Option<(String, UnwrapConv, Vec<LabelPred>)>,
}

/// One entry after the pipeline.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The (possibly rewritten) line.
    pub line: String,
    /// Stream, structured-metadata and extracted labels.
    pub labels: LabelMap,
    /// Unwrapped value, for unwrap pipelines.
    pub value: Option<f64>,
}

fn compile_pred(f: &LabelFilter) -> Result<LabelPred, String> {
    Ok(match f {
        LabelFilter::And(a, b) => {
            LabelPred::And(Box::new(compile_pred(a)?), Box::new(compile_pred(b)?))
        }
        LabelFilter::Or(a, b) => {
            LabelPred::Or(Box::new(compile_pred(a)?), Box::new(compile_pred(b)?))
        }
        LabelFilter::Paren(a) => compile_pred(a)?,
        LabelFilter::Matcher(m) => LabelPred::Str(m.clone()),
        LabelFilter::Typed {
            name, op, value, ..
        } => LabelPred::Typed(name.clone(), *op, *value),
        LabelFilter::Ip {
            name,
            negated,
            pattern,
        } => LabelPred::Ip(name.clone(), *negated, IpPattern::parse(pattern)?),
    })
}

impl Pipeline {
    /// Compiles a log expression's stages and an optional unwrap.
    pub fn new(log: &LogExpr, unwrap: Option<&Unwrap>) -> Result<Pipeline, String> {
        let mut stages = Vec::new();
        for s in &log.stages {
            stages.push(match s {
                Stage::LineFilter(lf) => {
                    let mut ms = Vec::new();
                    for v in &lf.values {
                        ms.push(match (lf.op, v) {
                            (_, FilterValue::Ip(p)) => LineMatch::Ip(IpPattern::parse(p)?),
                            (LineOp::Contains | LineOp::NotContains, FilterValue::Str(s)) => {
                                LineMatch::Contains(s.clone())
                            }
                            (LineOp::Regex | LineOp::NotRegex, FilterValue::Str(s)) => {
                                let re = Regex::new(&format!("(?s:{s})")).map_err(|e| {
                                    format!("invalid regular expression {s:?}: {e}")
                                })?;
                                LineMatch::Regex(re, required_literal(s))
                            }
                            (LineOp::Pattern | LineOp::NotPattern, FilterValue::Str(s)) => {
                                LineMatch::Pattern(Pattern::parse(s, false)?)
                            }
                        });
                    }
                    CStage::Line(lf.op.negated(), ms)
                }
                Stage::Parser(p) => match p {
                    ParserStage::Json(params) => CStage::Json(
                        params
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), parse_json_path(v)?)))
                            .collect::<Result<_, String>>()?,
                    ),
                    ParserStage::Logfmt {
                        strict,
                        keep_empty,
                        params,
                    } => CStage::Logfmt(*strict, *keep_empty, params.clone()),
                    ParserStage::Regexp(r) => CStage::Regexp(RegexpParser::new(r)?),
                    ParserStage::Pattern(p) => CStage::Pattern(Pattern::parse(p, true)?),
                    ParserStage::Unpack => CStage::Unpack,
                },
                Stage::LabelFilter(f) => CStage::Label(compile_pred(f)?),
                Stage::LineFormat(t) => CStage::LineFormat(Template::parse(t)?),
                Stage::LabelFormat(items) => CStage::LabelFormat(
                    items
                        .iter()
                        .map(|i| {
                            Ok(match i {
                                LabelFmt::Rename(d, s) => (d.clone(), Ok(s.clone())),
                                LabelFmt::Template(d, t) => (d.clone(), Err(Template::parse(t)?)),
                            })
                        })
                        .collect::<Result<_, String>>()?,
                ),
                Stage::Drop(items) => CStage::Drop(items.clone()),
                Stage::Keep(items) => CStage::Keep(items.clone()),
                Stage::Decolorize => CStage::Decolorize,
            });
        }
        let unwrap = match unwrap {
            Some(u) => Some((
                u.label.clone(),
                u.conv,
                u.post_filters
                    .iter()
                    .map(compile_pred)
                    .collect::<Result<_, _>>()?,
            )),
            None => None,
        };
        Ok(Pipeline { stages, unwrap })
    }

    /// True when no stage reads or changes labels (only line filters and
    /// `decolorize`, no unwrap): the engine then keys series by stream.
    pub fn line_only(&self) -> bool {
        self.unwrap.is_none()
            && self
                .stages
                .iter()
                .all(|s| matches!(s, CStage::Line(..) | CStage::Decolorize))
    }

    /// For [`Pipeline::line_only`] pipelines: the line after the stages, or
    /// `None` when a filter drops it. Borrows unless `decolorize` rewrote it.
    pub fn filter_line<'a>(&self, line: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        let mut line = std::borrow::Cow::Borrowed(line);
        for st in &self.stages {
            match st {
                CStage::Line(negated, ms) if line_passes(*negated, ms, &line) => {}
                CStage::Line(..) => return None,
                CStage::Decolorize => line = std::borrow::Cow::Owned(decolorize(&line)),
                _ => {}
            }
        }
        Some(line)
    }

    fn filter_stage(&self, st: &CStage, line: String) -> Option<String> {
        match st {
            CStage::Line(negated, ms) => line_passes(*negated, ms, &line).then_some(line),
            CStage::Decolorize => Some(decolorize(&line)),
            _ => Some(line),
        }
    }

    /// Runs the pipeline over one entry; `None` when a filter drops it.
    pub fn process(
        &self,
        ts: i64,
        line: &str,
        stream: &Labels,
        metadata: &Labels,
    ) -> Option<Processed> {
        let mut line = line.to_string();
        let mut labels: LabelMap = stream
            .iter()
            .chain(metadata.iter())
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let base = |k: &str| stream.get(k).is_some();
        for st in &self.stages {
            match st {
                CStage::Line(..) | CStage::Decolorize => {
                    line = self.filter_stage(st, line)?;
                }
                CStage::Json(params) => json_stage(&line, params, &mut labels, &base),
                CStage::Logfmt(strict, keep_empty, params) => {
                    logfmt_stage(&line, *strict, *keep_empty, params, &mut labels, &base)
                }
                CStage::Regexp(rp) => {
                    if let Some(c) = rp.re.captures(&line) {
                        let mut seen = Vec::new();
                        for name in rp.re.capture_names().flatten() {
                            if let Some(m) = c.name(name) {
                                set_extracted(&mut labels, &base, &mut seen, name, m.as_str());
                            }
                        }
                    }
                }
                CStage::Pattern(p) => {
                    if let Some(caps) = p.captures(&line) {
                        let mut seen = Vec::new();
                        for (n, v) in caps {
                            set_extracted(&mut labels, &base, &mut seen, n, v);
                        }
                    }
                }
                CStage::Unpack => unpack_stage(&mut line, &mut labels, &base),
                CStage::Label(p) => {
                    if !eval_pred(p, &mut labels) {
                        return None;
                    }
                }
                CStage::LineFormat(t) => {
                    let data = TemplateData {
                        labels: &labels,
                        line: &line,
                        ts,
                    };
                    match t.render(&data) {
                        Ok(s) => line = s,
                        Err(e) => set_error(&mut labels, "TemplateFormatErr", &e),
                    }
                }
                CStage::LabelFormat(items) => {
                    let snapshot = labels.clone();
                    let data = TemplateData {
                        labels: &snapshot,
                        line: &line,
                        ts,
                    };
                    for (dst, how) in items {
                        match how {
                            Ok(src) => {
                                let v = snapshot.get(src).cloned().unwrap_or_default();
                                labels.remove(src);
                                labels.insert(dst.clone(), v);
                            }
                            Err(t) => match t.render(&data) {
                                Ok(v) => {
                                    labels.insert(dst.clone(), v);
                                }
                                Err(e) => set_error(&mut labels, "TemplateFormatErr", &e),
                            },
                        }
                    }
                }
                CStage::Drop(items) => {
                    for it in items {
                        match it {
                            NamedMatcher::Name(n) => {
                                labels.remove(n);
                            }
                            NamedMatcher::Matcher(m) => {
                                if labels.get(&m.name).is_some_and(|v| m.matches(v)) {
                                    labels.remove(&m.name);
                                }
                            }
                        }
                    }
                }
                CStage::Keep(items) => {
                    labels.retain(|k, v| {
                        k == ERROR_LABEL
                            || k == ERROR_DETAILS_LABEL
                            || items.iter().any(|it| match it {
                                NamedMatcher::Name(n) => n == k,
                                NamedMatcher::Matcher(m) => &m.name == k && m.matches(v),
                            })
                    });
                }
            }
        }
        let mut value = None;
        if let Some((label, conv, post)) = &self.unwrap {
            let raw = labels.get(label).cloned().unwrap_or_default();
            match convert(&raw, *conv) {
                Ok(v) => value = Some(v),
                Err(e) => {
                    set_error(&mut labels, "SampleExtractionErr", &e);
                    value = Some(0.0);
                }
            }
            for p in post {
                if !eval_pred(p, &mut labels) {
                    return None;
                }
            }
            // Loki drops the unwrapped label from the series only after the
            // post filters, which may still test it.
            labels.remove(label);
        }
        Some(Processed {
            line,
            labels,
            value,
        })
    }
}

/// A line filter stage: any value matches (or, negated, none does).
fn line_passes(negated: bool, ms: &[LineMatch], line: &str) -> bool {
    ms.iter().any(|m| m.matches(line)) != negated
}

fn convert(raw: &str, conv: UnwrapConv) -> Result<f64, String> {
    let raw = raw.trim();
    match conv {
        UnwrapConv::None => raw
            .parse::<f64>()
            .map_err(|_| format!("strconv.ParseFloat: parsing {raw:?}: invalid syntax")),
        UnwrapConv::Duration | UnwrapConv::DurationSeconds => parse_go_duration(raw)
            .map(|ns| ns as f64 / 1e9)
            .ok_or_else(|| format!("time: invalid duration {raw:?}")),
        UnwrapConv::Bytes => parse_bytes(raw)
            .map(|b| b as f64)
            .ok_or_else(|| format!("invalid bytes value {raw:?}")),
    }
}

fn set_error(labels: &mut LabelMap, kind: &str, details: &str) {
    if !labels.contains_key(ERROR_LABEL) {
        labels.insert(ERROR_LABEL.into(), kind.into());
        labels.insert(ERROR_DETAILS_LABEL.into(), details.into());
    }
}

fn eval_pred(p: &LabelPred, labels: &mut LabelMap) -> bool {
    match p {
        LabelPred::And(a, b) => {
            let l = eval_pred(a, labels);
            let r = eval_pred(b, labels);
            l && r
        }
        LabelPred::Or(a, b) => eval_pred(a, labels) || eval_pred(b, labels),
        LabelPred::Str(m) => m.matches(labels.get(&m.name).map_or("", |s| s.as_str())),
        LabelPred::Ip(name, negated, pat) => {
            if labels.contains_key(ERROR_LABEL) {
                return true;
            }
            let inside = labels
                .get(name)
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| pat.contains(&ip));
            inside != *negated
        }
        LabelPred::Typed(name, op, val) => {
            if labels.contains_key(ERROR_LABEL) {
                return true;
            }
            let Some(raw) = labels.get(name).cloned() else {
                return false;
            };
            let (parsed, want) = match val {
                TypedValue::Number(v) => (convert(&raw, UnwrapConv::None), *v),
                TypedValue::Duration(v) => (convert(&raw, UnwrapConv::Duration), *v),
                TypedValue::Bytes(v) => (convert(&raw, UnwrapConv::Bytes), *v),
            };
            match parsed {
                Ok(x) => op.apply(x, want),
                Err(e) => {
                    set_error(labels, "LabelFilterErr", &e);
                    true
                }
            }
        }
    }
}

/// Sanitises an extracted key into a label name (Loki's `sanitizeLabelKey`).
pub fn sanitize_key(key: &str) -> String {
    let key = key.trim();
    let mut out = String::with_capacity(key.len() + 1);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

fn set_extracted(
    labels: &mut LabelMap,
    base: &dyn Fn(&str) -> bool,
    seen: &mut Vec<String>,
    key: &str,
    value: &str,
) {
    let mut k = sanitize_key(key);
    if k.is_empty() {
        return;
    }
    if base(&k) {
        k.push_str("_extracted");
    }
    if seen.contains(&k) {
        return;
    }
    seen.push(k.clone());
    labels.insert(k, value.to_string());
}

fn json_scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn json_stage(
    line: &str,
    params: &[(String, Vec<PathSeg>)],
    labels: &mut LabelMap,
    base: &dyn Fn(&str) -> bool,
) {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            set_error(labels, "JSONParserErr", "expected a JSON object");
            return;
        }
        Err(e) => {
            set_error(labels, "JSONParserErr", &e.to_string());
            return;
        }
    };
    let mut seen = Vec::new();
    if params.is_empty() {
        fn walk(
            prefix: &str,
            v: &serde_json::Value,
            labels: &mut LabelMap,
            base: &dyn Fn(&str) -> bool,
            seen: &mut Vec<String>,
        ) {
            if let serde_json::Value::Object(m) = v {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}_{k}")
                    };
                    match v {
                        serde_json::Value::Object(_) => walk(&key, v, labels, base, seen),
                        serde_json::Value::Array(_) | serde_json::Value::Null => {}
                        other => {
                            if let Some(s) = json_scalar(other) {
                                set_extracted(labels, base, seen, &key, &s);
                            }
                        }
                    }
                }
            }
        }
        walk("", &v, labels, base, &mut seen);
        return;
    }
    for (name, path) in params {
        let mut cur = Some(&v);
        for seg in path {
            cur = match (cur, seg) {
                (Some(serde_json::Value::Object(m)), PathSeg::Key(k)) => m.get(k),
                (Some(serde_json::Value::Array(a)), PathSeg::Index(i)) => a.get(*i),
                _ => None,
            };
        }
        let val = cur.and_then(json_scalar).unwrap_or_default();
        set_extracted(labels, base, &mut seen, name, &val);
    }
}

/// Splits a logfmt line into pairs; `Err` at the first malformed pair.
fn logfmt_pairs(line: &str, strict: bool) -> (Vec<(String, Option<String>)>, Option<String>) {
    let b: Vec<char> = line.chars().collect();
    let mut start = 0;
    let mut out = Vec::new();
    loop {
        let (pairs, err, pos) = logfmt_from(&b, start);
        out.extend(pairs);
        match err {
            Some(e) if strict => return (out, Some(e)),
            Some(_) => {
                // skip the malformed token and go on
                let mut i = pos;
                while i < b.len() && !b[i].is_whitespace() {
                    i += 1;
                }
                start = i;
            }
            None => return (out, None),
        }
    }
}

type LogfmtStep = (Vec<(String, Option<String>)>, Option<String>, usize);

fn logfmt_from(b: &[char], mut i: usize) -> LogfmtStep {
    let mut out = Vec::new();
    let err =
        |i: usize, what: String| Some(format!("logfmt syntax error at pos {}: {what}", i + 1));
    while i < b.len() {
        while i < b.len() && b[i].is_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && !b[i].is_whitespace() && b[i] != '=' && b[i] != '"' {
            i += 1;
        }
        let key: String = b[ks..i].iter().collect();
        if key.is_empty() {
            return (out, err(i, format!("unexpected '{}'", b[i])), i);
        }
        if i < b.len() && b[i] == '"' {
            return (out, err(i, "unexpected '\"'".into()), i);
        }
        if i >= b.len() || b[i] != '=' {
            out.push((key, None));
            continue;
        }
        i += 1;
        if i < b.len() && b[i] == '"' {
            i += 1;
            let mut v = String::new();
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    '"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    '\\' if i + 1 < b.len() => {
                        i += 1;
                        v.push(match b[i] {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            c => c,
                        });
                    }
                    c => v.push(c),
                }
                i += 1;
            }
            if !closed {
                return (out, err(i, "unterminated quoted value".into()), i);
            }
            out.push((key, Some(v)));
        } else {
            let vs = i;
            while i < b.len() && !b[i].is_whitespace() {
                if b[i] == '"' || b[i] == '=' {
                    return (out, err(i, format!("unexpected '{}'", b[i])), i);
                }
                i += 1;
            }
            out.push((key, Some(b[vs..i].iter().collect())));
        }
    }
    (out, None, i)
}

fn logfmt_stage(
    line: &str,
    strict: bool,
    keep_empty: bool,
    params: &[(String, String)],
    labels: &mut LabelMap,
    base: &dyn Fn(&str) -> bool,
) {
    let (pairs, err) = logfmt_pairs(line, strict);
    let mut seen = Vec::new();
    let mut emit = |k: &str, v: Option<&str>| match v {
        Some(v) if !v.is_empty() || keep_empty => set_extracted(labels, base, &mut seen, k, v),
        None if keep_empty => set_extracted(labels, base, &mut seen, k, ""),
        _ => {}
    };
    if params.is_empty() {
        for (k, v) in &pairs {
            emit(k, v.as_deref());
        }
    } else {
        for (dst, src) in params {
            if let Some((_, v)) = pairs.iter().find(|(k, _)| k == src) {
                emit(dst, v.as_deref());
            }
        }
    }
    if let Some(e) = err {
        if strict {
            set_error(labels, "LogfmtParserErr", &e);
        }
    }
}

fn unpack_stage(line: &mut String, labels: &mut LabelMap, base: &dyn Fn(&str) -> bool) {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            set_error(labels, "JSONParserErr", &e.to_string());
            return;
        }
    };
    let serde_json::Value::Object(m) = v else {
        set_error(labels, "JSONParserErr", "expected a JSON object");
        return;
    };
    let mut seen = Vec::new();
    let mut entry = None;
    for (k, v) in &m {
        if let serde_json::Value::String(s) = v {
            if k == "_entry" {
                entry = Some(s.clone());
            } else {
                set_extracted(labels, base, &mut seen, k, s);
            }
        }
    }
    if let Some(e) = entry {
        *line = e;
    }
}

/// Removes ANSI colour escape sequences.
pub fn decolorize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' && it.peek() == Some(&'[') {
            it.next();
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Plain terms every line must contain, taken from leading `|=` filters and
/// required literals of `|~` filters, up to the first stage that rewrites
/// the line.
pub fn line_hint(log: &LogExpr) -> LineHint {
    let mut hint = LineHint::default();
    for s in &log.stages {
        match s {
            Stage::LineFilter(lf) if lf.values.len() == 1 => match (&lf.op, &lf.values[0]) {
                (LineOp::Contains, FilterValue::Str(s)) if !s.is_empty() => {
                    hint.must_contain.push(s.clone())
                }
                (LineOp::Regex, FilterValue::Str(s)) => {
                    if let Some(l) = required_literal(s) {
                        hint.must_contain.push(l);
                    }
                }
                _ => {}
            },
            Stage::LineFormat(_) | Stage::Decolorize | Stage::Parser(ParserStage::Unpack) => break,
            _ => {}
        }
    }
    hint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = Pattern::parse("<ip> - - <_> \"<method> <uri> <_>\" <status>", true).unwrap();
        let caps = p
            .captures(r#"1.2.3.4 - - [x] "GET /a HTTP/1.1" 200"#)
            .unwrap();
        assert_eq!(
            caps,
            vec![
                ("ip", "1.2.3.4"),
                ("method", "GET"),
                ("uri", "/a"),
                ("status", "200")
            ]
        );
        assert!(Pattern::parse("<a><b>", true).is_err());
        assert!(Pattern::parse("abc", true).is_err());
        let t = Pattern::parse("<_> bar", false).unwrap();
        assert!(!t.test("foo bar baz"));
        assert!(Pattern::parse("<_> baz", false)
            .unwrap()
            .test("foo bar baz"));
        assert!(Pattern::parse("foo <_>", false)
            .unwrap()
            .test("foo bar baz"));
    }

    #[test]
    fn ips_and_literals() {
        let p = IpPattern::parse("192.168.0.0/16").unwrap();
        assert!(p.matches_line("from 192.168.4.5:80 ok"));
        assert!(!p.matches_line("from 10.0.0.1"));
        let r = IpPattern::parse("10.0.0.1-10.0.0.5").unwrap();
        assert!(r.contains(&"10.0.0.3".parse().unwrap()));
        assert!(IpPattern::parse("::1").is_ok());
        assert_eq!(required_literal("err.*timeout"), Some("timeout".into()));
        assert_eq!(required_literal("a|b"), None);
        assert_eq!(required_literal("abcd?e"), Some("abc".into()));
    }

    #[test]
    fn logfmt_splits() {
        let (p, e) = logfmt_pairs(r#"a=1 b="x y" c d="q\"r""#, true);
        assert!(e.is_none());
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].1.as_deref(), Some("x y"));
        assert_eq!(p[2].1, None);
        assert_eq!(p[3].1.as_deref(), Some("q\"r"));
        assert!(logfmt_pairs("a=\"x", true).1.is_some());
        let (p, e) = logfmt_pairs("a=1 =x b=2", false);
        assert!(e.is_none());
        assert_eq!(p.len(), 2);
    }
}
