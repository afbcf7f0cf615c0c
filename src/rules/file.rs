//! Rule files in Prometheus's format (also the Loki ruler's, with LogQL
//! expressions): parsing and the checks `promtool check rules` makes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::parse_duration;
use crate::template::{funcs::prometheus_funcs, Template};

/// The query language of a rule file's expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// PromQL (Prometheus rule files).
    PromQL,
    /// LogQL (Loki ruler files).
    LogQL,
}

/// A parsed rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its groups, in file order.
    pub groups: Vec<GroupSpec>,
}

/// One rule group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    /// Group name (unique per file).
    pub name: String,
    /// Evaluation interval in ms (None: the global default).
    pub interval_ms: Option<i64>,
    /// Series limit per rule evaluation (0: none).
    pub limit: usize,
    /// Evaluate at `t - query_offset` (ms).
    pub query_offset_ms: Option<i64>,
    /// Labels added to every rule's output (Prometheus 3 group labels).
    pub labels: BTreeMap<String, String>,
    /// The rules, in order.
    pub rules: Vec<RuleSpec>,
}

/// Recording or alerting.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// `record: <metric name>`.
    Record(String),
    /// `alert: <alert name>`, with `for` and `keep_firing_for` in ms.
    Alert {
        /// The alert name.
        name: String,
        /// Pending time before firing.
        for_ms: i64,
        /// Time an alert keeps firing after its condition cleared.
        keep_firing_for_ms: i64,
    },
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// Record or alert.
    pub kind: RuleKind,
    /// The query.
    pub expr: String,
    /// Labels added (templated for alerts).
    pub labels: BTreeMap<String, String>,
    /// Annotations (alerts only, templated).
    pub annotations: BTreeMap<String, String>,
}

impl RuleSpec {
    /// The record or alert name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Record(n) => n,
            RuleKind::Alert { name, .. } => name,
        }
    }
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Deserialize)]
struct RawGroup {
    #[serde(default)]
    name: String,
    interval: Option<String>,
    #[serde(default)]
    limit: usize,
    query_offset: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Deserialize)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    #[serde(default)]
    expr: Option<serde_yaml::Value>,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    annotations: BTreeMap<String, serde_yaml::Value>,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_yaml::Value>,
}

fn yaml_scalar(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Null => String::new(),
        other => serde_yaml::to_string(other).unwrap_or_default(),
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && std::str::from_utf8(s.as_bytes()).is_ok()
}

fn duration(s: &Option<String>, what: &str) -> Result<Option<i64>, String> {
    match s {
        None => Ok(None),
        Some(s) => parse_duration(s)
            .map(Some)
            .map_err(|e| format!("invalid {what} {s:?}: {e}")),
    }
}

/// Checks a query with the language's parser.
pub fn check_expr(lang: Lang, expr: &str) -> Result<(), String> {
    match lang {
        Lang::PromQL => crate::query::promql::parse::parse_expr(expr).map(|_| ()),
        // The Loki ruler evaluates instant metric queries only.
        Lang::LogQL => {
            use crate::query::logql::{parse, Expr};
            let mut e = parse(expr).map_err(|e| e.to_string())?;
            while let Expr::Paren(inner) = e {
                e = *inner;
            }
            match e {
                Expr::Log(_) => {
                    Err("log queries are not supported in rules, only metric queries".into())
                }
                _ => Ok(()),
            }
        }
    }
}

/// Parses and validates a rule file's text. Errors are listed the way
/// `promtool check rules` lists them (one line each).
pub fn parse_rule_file(
    path: &Path,
    text: &str,
    lang: Lang,
    ignore_unknown_fields: bool,
) -> Result<RuleFile, Vec<String>> {
    let raw: RawFile = serde_yaml::from_str(text).map_err(|e| vec![e.to_string()])?;
    let mut errs = Vec::new();
    let unknown =
        |extra: &BTreeMap<String, serde_yaml::Value>, errs: &mut Vec<String>, ctx: &str| {
            if !ignore_unknown_fields {
                for k in extra.keys() {
                    errs.push(format!("{ctx}field {k} not found in type rulefmt"));
                }
            }
        };
    unknown(&raw.extra, &mut errs, "");
    let mut names = HashSet::new();
    let mut groups = Vec::new();
    let funcs = prometheus_funcs();
    for g in raw.groups {
        if g.name.is_empty() {
            errs.push("Groupname must not be empty".into());
        }
        if !names.insert(g.name.clone()) {
            errs.push(format!(
                "{:?}: groupname: \"{}\" is repeated in the same file",
                g.name, g.name
            ));
        }
        unknown(&g.extra, &mut errs, &format!("group {:?}: ", g.name));
        let interval_ms = duration(&g.interval, "interval").unwrap_or_else(|e| {
            errs.push(format!("group {:?}: {e}", g.name));
            None
        });
        let query_offset_ms = duration(&g.query_offset, "query_offset").unwrap_or_else(|e| {
            errs.push(format!("group {:?}: {e}", g.name));
            None
        });
        let mut rules = Vec::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            let name = r.record.clone().or(r.alert.clone()).unwrap_or_default();
            let ctx = format!("group {:?}, rule {}, {:?}", g.name, i + 1, name);
            let mut err = |m: String| errs.push(format!("{ctx}: {m}"));
            if !ignore_unknown_fields {
                for k in r.extra.keys() {
                    err(format!("field {k} not found in type rulefmt.RuleNode"));
                }
            }
            let expr = r.expr.as_ref().map(yaml_scalar).unwrap_or_default();
            let labels: BTreeMap<String, String> = r
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), yaml_scalar(v)))
                .collect();
            let annotations: BTreeMap<String, String> = r
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), yaml_scalar(v)))
                .collect();
            let kind = match (&r.record, &r.alert) {
                (Some(_), Some(_)) => {
                    err("only one of 'record' and 'alert' must be set".into());
                    continue;
                }
                (None, None) => {
                    err("one of 'record' or 'alert' must be set".into());
                    continue;
                }
                (Some(rec), None) => {
                    if !valid_metric_name(rec) {
                        err(format!("invalid recording rule name: {rec}"));
                    }
                    if !r.annotations.is_empty() {
                        err("invalid field 'annotations' in recording rule".into());
                    }
                    if r.for_.is_some() {
                        err("invalid field 'for' in recording rule".into());
                    }
                    if r.keep_firing_for.is_some() {
                        err("invalid field 'keep_firing_for' in recording rule".into());
                    }
                    RuleKind::Record(rec.clone())
                }
                (None, Some(alert)) => {
                    if alert.is_empty() {
                        err("invalid alert name: ".into());
                    }
                    let for_ms = duration(&r.for_, "for").unwrap_or_else(|e| {
                        err(e);
                        None
                    });
                    let keep =
                        duration(&r.keep_firing_for, "keep_firing_for").unwrap_or_else(|e| {
                            err(e);
                            None
                        });
                    for (k, v) in annotations.iter().chain(labels.iter()) {
                        if let Err(e) = Template::parse(k, v, &with_query(&funcs)) {
                            err(format!("msg={e}"));
                        }
                    }
                    RuleKind::Alert {
                        name: alert.clone(),
                        for_ms: for_ms.unwrap_or(0),
                        keep_firing_for_ms: keep.unwrap_or(0),
                    }
                }
            };
            if expr.trim().is_empty() {
                err("field 'expr' must be set in rule".into());
            } else if let Err(e) = check_expr(lang, &expr) {
                err(format!("could not parse expression: {e}"));
            }
            for k in labels.keys() {
                if !valid_label_name(k) {
                    err(format!("invalid label name: {k}"));
                }
                if k == "__name__" {
                    err("invalid label name: __name__".into());
                }
            }
            rules.push(RuleSpec {
                kind,
                expr,
                labels,
                annotations,
            });
        }
        groups.push(GroupSpec {
            name: g.name,
            interval_ms,
            limit: g.limit,
            query_offset_ms,
            labels: g.labels,
            rules,
        });
    }
    if errs.is_empty() {
        Ok(RuleFile {
            path: path.to_path_buf(),
            groups,
        })
    } else {
        Err(errs)
    }
}

/// The function map alert templates are checked against (with `query`).
fn with_query(funcs: &crate::template::FuncMap) -> crate::template::FuncMap {
    let mut f = funcs.clone();
    f.insert("query", |_| Ok(crate::template::Value::List(vec![])));
    f.insert("externalURL", |_| {
        Ok(crate::template::Value::Str(String::new()))
    });
    f.insert("pathPrefix", |_| {
        Ok(crate::template::Value::Str(String::new()))
    });
    f
}

/// Reads and validates a file whose language is not known (`strata check
/// rules`): valid when it is valid PromQL or valid LogQL. On failure the
/// errors of the language with fewer of them are returned (PromQL on a tie).
pub fn load_rule_file_any(
    path: &Path,
    ignore_unknown_fields: bool,
) -> Result<(Lang, RuleFile), Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let prom = match parse_rule_file(path, &text, Lang::PromQL, ignore_unknown_fields) {
        Ok(f) => return Ok((Lang::PromQL, f)),
        Err(e) => e,
    };
    match parse_rule_file(path, &text, Lang::LogQL, ignore_unknown_fields) {
        Ok(f) => Ok((Lang::LogQL, f)),
        Err(logql) if logql.len() < prom.len() => Err(logql),
        Err(_) => Err(prom),
    }
}

/// Reads and validates one file.
pub fn load_rule_file(
    path: &Path,
    lang: Lang,
    ignore_unknown_fields: bool,
) -> Result<RuleFile, Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    parse_rule_file(path, &text, lang, ignore_unknown_fields)
}

/// Expands glob patterns (`*`, `?`, `[..]` in the last path components)
/// into existing files, sorted. A pattern without wildcards is returned as
/// is, so a missing file is reported when it is read.
pub fn expand_globs(patterns: &[String], base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        if !p.contains(['*', '?', '[']) {
            out.push(full);
            continue;
        }
        let mut found = Vec::new();
        glob_walk(&full, &mut found);
        found.sort();
        out.extend(found);
    }
    out
}

fn glob_walk(pattern: &Path, out: &mut Vec<PathBuf>) {
    let comps: Vec<String> = pattern
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut cur = vec![PathBuf::new()];
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for base in cur {
            if !c.contains(['*', '?', '[']) {
                next.push(base.join(c));
                continue;
            }
            let re = glob_regex(c);
            let dir = if base.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base.clone()
            };
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if re.is_match(&name) && (!last || e.path().is_file()) {
                    next.push(base.join(&name));
                }
            }
        }
        cur = next;
    }
    out.extend(cur.into_iter().filter(|p| p.is_file()));
}

fn glob_regex(pattern: &str) -> regex::Regex {
    let mut re = String::from("^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '^' && re.ends_with('[') {
                        re.push('\\');
                    }
                    re.push(if c == '!' && re.ends_with('[') {
                        '^'
                    } else {
                        c
                    });
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap_or_else(|_| regex::Regex::new("^$").expect("valid"))
}
