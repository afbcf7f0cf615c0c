//! Reading the stock Grafana dashboards and rule files of
//! `../shared/ecosystem`: every PromQL target, template-variable query and
//! rule expression, and the expansion of Grafana variables into plain
//! PromQL.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// Where an expression comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A dashboard template variable's query (`label_values(...)` etc.).
    Variable,
    /// A panel target's `expr`.
    Panel,
    /// A rule's `expr`.
    Rule,
}

impl Kind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Variable => "variable",
            Kind::Panel => "panel",
            Kind::Rule => "rule",
        }
    }
}

/// One expression as written, with a stable id (file, place, name).
#[derive(Clone, Debug)]
pub struct Expr {
    /// `<path under ecosystem> :: <place>`; unique.
    pub id: String,
    /// Where it comes from.
    pub kind: Kind,
    /// The text, Grafana variables not yet expanded.
    pub text: String,
    /// For variables: the variable's name, type and the dashboard it
    /// belongs to (variables are resolved per dashboard, in order).
    pub var: Option<VarDef>,
    /// The dashboard (relative path) for panels and variables.
    pub dashboard: Option<String>,
}

/// A dashboard template variable.
#[derive(Clone, Debug)]
pub struct VarDef {
    /// Its name.
    pub name: String,
    /// `query`, `custom`, `interval`, `constant`, `textbox`, ...
    pub var_type: String,
    /// True when its query runs on a Prometheus data source.
    pub prometheus: bool,
}

/// Everything extracted, plus what was left out and why.
#[derive(Default, Debug)]
pub struct Extracted {
    /// Expressions in file order (variables of a dashboard before its
    /// panels).
    pub exprs: Vec<Expr>,
    /// Reason -> count of targets not taken (other data sources, empty).
    pub skipped: BTreeMap<String, usize>,
    /// Dashboards with at least one Prometheus target.
    pub dashboards: usize,
    /// Rule files read.
    pub rule_files: usize,
}

/// The shared spec directory: `STRATA_SHARED`, else `<repo>/../shared`.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("STRATA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    dir.join("ecosystem").is_dir().then_some(dir)
}

fn files_under(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            files_under(&p, exts, out);
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| exts.iter().any(|e| n.ends_with(e)))
        {
            out.push(p);
        }
    }
}

/// Extracts every PromQL expression under `ecosystem`.
pub fn extract(ecosystem: &Path) -> Extracted {
    let mut ex = Extracted::default();
    let mut files = Vec::new();
    files_under(&ecosystem.join("dashboards"), &[".json"], &mut files);
    for f in &files {
        let rel = f.strip_prefix(ecosystem).unwrap_or(f).display().to_string();
        let text = std::fs::read_to_string(f).unwrap_or_default();
        match serde_json::from_str::<Value>(&text) {
            Ok(dash) => dashboard(&rel, &dash, &mut ex),
            Err(e) => {
                *ex.skipped
                    .entry(format!("unreadable dashboard: {e}"))
                    .or_default() += 1
            }
        }
    }
    let mut files = Vec::new();
    files_under(
        &ecosystem.join("rules"),
        &[".yml", ".yaml", ".rule"],
        &mut files,
    );
    for f in &files {
        let rel = f.strip_prefix(ecosystem).unwrap_or(f).display().to_string();
        if rel.contains("loki-ruler") {
            // LogQL rules (compared by the Loki side, not here).
            *ex.skipped.entry("LogQL rule file".into()).or_default() += 1;
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let Ok(doc) = serde_yaml::from_str::<Value>(&text) else {
            *ex.skipped.entry("unreadable rule file".into()).or_default() += 1;
            continue;
        };
        ex.rule_files += 1;
        for g in doc["groups"].as_array().into_iter().flatten() {
            let group = g["name"].as_str().unwrap_or("?");
            for r in g["rules"].as_array().into_iter().flatten() {
                let name = r["alert"]
                    .as_str()
                    .map(|a| format!("alert {a}"))
                    .or_else(|| r["record"].as_str().map(|n| format!("record {n}")))
                    .unwrap_or_else(|| "?".into());
                if let Some(e) = r["expr"].as_str() {
                    push(
                        &mut ex,
                        format!("{rel} :: {group} :: {name}"),
                        Kind::Rule,
                        e,
                    );
                }
            }
        }
    }
    ex
}

fn push(ex: &mut Extracted, id: String, kind: Kind, text: &str) -> usize {
    let mut unique = id.clone();
    let mut n = 1;
    while ex.exprs.iter().any(|e| e.id == unique) {
        n += 1;
        unique = format!("{id} #{n}");
    }
    ex.exprs.push(Expr {
        id: unique,
        kind,
        text: text.trim().to_string(),
        var: None,
        dashboard: None,
    });
    ex.exprs.len() - 1
}

/// How a dashboard names its data sources.
struct Sources {
    /// Data-source variables and `__inputs`: name -> plugin type.
    vars: HashMap<String, String>,
    /// The type to assume when a panel names none.
    default: String,
}

fn var_ref(s: &str) -> Option<&str> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        return Some(inner.split(':').next().unwrap_or(inner));
    }
    if let Some(inner) = s.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
        return Some(inner.split(':').next().unwrap_or(inner));
    }
    s.strip_prefix('$')
}

impl Sources {
    fn new(rel: &str, dash: &Value) -> Sources {
        let mut vars = HashMap::new();
        for v in dash["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] == "datasource" {
                let q = v["query"]["query"]
                    .as_str()
                    .or_else(|| v["query"].as_str())
                    .unwrap_or("");
                if let Some(name) = v["name"].as_str() {
                    vars.insert(name.to_string(), q.to_lowercase());
                }
            }
        }
        for i in dash["__inputs"].as_array().into_iter().flatten() {
            if let (Some(n), Some(p)) = (i["name"].as_str(), i["pluginId"].as_str()) {
                vars.insert(n.to_string(), p.to_lowercase());
            }
        }
        let mut kinds: Vec<&String> = vars.values().filter(|k| !k.is_empty()).collect();
        kinds.sort();
        kinds.dedup();
        let folder = rel.split('/').nth(1).unwrap_or("prometheus");
        let default = if kinds.len() == 1 {
            kinds[0].clone()
        } else {
            folder.to_string()
        };
        Sources { vars, default }
    }

    /// The plugin type a `datasource` field refers to, if it says.
    fn resolve(&self, ds: &Value) -> Option<String> {
        let by_name = |s: &str| -> Option<String> {
            if let Some(v) = var_ref(s) {
                if let Some(t) = self.vars.get(v).filter(|t| !t.is_empty()) {
                    return Some(t.clone());
                }
            }
            let l = s.to_lowercase();
            if l.contains("mixed") {
                Some("mixed".into())
            } else if l.contains("loki") {
                Some("loki".into())
            } else if l.contains("elastic") {
                Some("elasticsearch".into())
            } else if l.contains("prom") || l.contains("metrics") {
                Some("prometheus".into())
            } else {
                None
            }
        };
        match ds {
            Value::String(s) => by_name(s),
            Value::Object(o) => match o.get("type").and_then(|t| t.as_str()) {
                Some(t) if !t.is_empty() && t != "datasource" => Some(t.to_lowercase()),
                _ => o.get("uid").and_then(|u| u.as_str()).and_then(by_name),
            },
            _ => None,
        }
    }
}

fn dashboard(rel: &str, dash: &Value, ex: &mut Extracted) {
    let sources = Sources::new(rel, dash);
    let before = ex.exprs.len();
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let var_type = v["type"].as_str().unwrap_or("").to_string();
        let Some(name) = v["name"].as_str() else {
            continue;
        };
        if var_type == "datasource" || var_type == "adhoc" {
            continue;
        }
        let query = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .unwrap_or("")
            .to_string();
        let ds = sources
            .resolve(&v["datasource"])
            .unwrap_or_else(|| sources.default.clone());
        let prometheus = var_type == "query" && ds == "prometheus";
        let i = push(ex, format!("{rel} :: var {name}"), Kind::Variable, &query);
        ex.exprs[i].var = Some(VarDef {
            name: name.to_string(),
            var_type,
            prometheus,
        });
        ex.exprs[i].dashboard = Some(rel.to_string());
    }
    let mut panels = Vec::new();
    collect_panels(&dash["panels"], &mut panels);
    for row in dash["rows"].as_array().into_iter().flatten() {
        collect_panels(&row["panels"], &mut panels);
    }
    let mut taken = 0;
    for p in panels {
        let panel_ds = sources.resolve(&p["datasource"]);
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = sources
                .resolve(&t["datasource"])
                .filter(|d| d != "mixed")
                .or_else(|| panel_ds.clone().filter(|d| d != "mixed"))
                .unwrap_or_else(|| sources.default.clone());
            let expr = t["expr"].as_str().unwrap_or("").trim();
            if ds != "prometheus" {
                *ex.skipped
                    .entry(format!("panel target on a {ds} data source"))
                    .or_default() += 1;
                continue;
            }
            if expr.is_empty() {
                *ex.skipped
                    .entry("panel target without expr".into())
                    .or_default() += 1;
                continue;
            }
            let place = format!(
                "panel {} {:?} {}",
                p["id"],
                p["title"].as_str().unwrap_or(""),
                t["refId"].as_str().unwrap_or("")
            );
            let i = push(
                ex,
                format!("{rel} :: {}", place.trim_end()),
                Kind::Panel,
                expr,
            );
            ex.exprs[i].dashboard = Some(rel.to_string());
            taken += 1;
        }
    }
    if taken > 0 {
        ex.dashboards += 1;
    } else {
        // Variables of dashboards with no PromQL panel are not compared.
        ex.exprs.truncate(before);
    }
}

/// Every panel, with those nested in rows (collapsed rows hold theirs).
fn collect_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p);
        collect_panels(&p["panels"], out);
    }
}

/// Values that Grafana's built-in variables take for a query over
/// `[start, end]` at `step` seconds.
#[derive(Clone, Copy, Debug)]
pub struct Builtins {
    /// Window start (seconds).
    pub start: f64,
    /// Window end (seconds).
    pub end: f64,
    /// Step (seconds).
    pub step: f64,
    /// What `$__rate_interval` becomes, in seconds.
    pub rate_interval: f64,
}

fn secs(s: f64) -> String {
    format!("{}s", s.round() as i64)
}

impl Builtins {
    fn value(&self, name: &str) -> Option<String> {
        let range = self.end - self.start;
        Some(match name {
            "__rate_interval" => secs(self.rate_interval),
            "__rate_interval_ms" => format!("{}", (self.rate_interval * 1000.0).round() as i64),
            "__interval" | "__auto" => secs(self.step),
            "__interval_ms" => format!("{}", (self.step * 1000.0).round() as i64),
            "__range" => secs(range),
            "__range_s" => format!("{}", range.round() as i64),
            "__range_ms" => format!("{}", (range * 1000.0).round() as i64),
            "__from" => format!("{}", (self.start * 1000.0).round() as i64),
            "__to" => format!("{}", (self.end * 1000.0).round() as i64),
            n if n.starts_with("__auto_interval") => secs(self.step),
            _ => return None,
        })
    }
}

fn var_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"\$\{([A-Za-z_][A-Za-z0-9_.]*)(?::([^}]*))?\}|\[\[([A-Za-z_][A-Za-z0-9_.]*)(?::([^\]]*))?\]\]|\$([A-Za-z_][A-Za-z0-9_]*)",
        )
        .expect("variable regex")
    })
}

/// Expands Grafana variables: built-ins from `b`, dashboard variables from
/// `vars` (with their `:format`), any other variable to `.*`.
pub fn expand(text: &str, vars: &HashMap<String, String>, b: &Builtins) -> String {
    var_regex()
        .replace_all(text, |c: &regex::Captures| {
            let name = c
                .get(1)
                .or(c.get(3))
                .or(c.get(5))
                .map(|m| m.as_str())
                .unwrap_or("");
            let format = c.get(2).or(c.get(4)).map(|m| m.as_str()).unwrap_or("");
            if let Some(v) = b.value(name) {
                return v;
            }
            let Some(v) = vars.get(name) else {
                return ".*".to_string();
            };
            if v == ".*" {
                return v.clone();
            }
            match format {
                "regex" => regex::escape(v),
                "doublequote" => format!("\"{v}\""),
                "singlequote" => format!("'{v}'"),
                _ => v.clone(),
            }
        })
        .into_owned()
}

/// A template-variable query mapped onto the Prometheus HTTP API.
#[derive(Clone, Debug, PartialEq)]
pub enum VarQuery {
    /// `label_names()`: `GET /api/v1/labels` (with `match[]` when given).
    LabelNames(Option<String>),
    /// `label_values([selector,] label)`: `GET /api/v1/label/<l>/values`.
    LabelValues(Option<String>, String),
    /// `metrics(regex)`: `__name__` values matching the regex.
    Metrics(String),
    /// `query_result(expr)`: an instant query.
    QueryResult(String),
}

/// Parses a Grafana Prometheus variable query, or says why it cannot.
pub fn parse_var_query(q: &str) -> Result<VarQuery, String> {
    let q = q.trim();
    let call = |name: &str| -> Option<&str> {
        q.strip_prefix(name)
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.trim_end().strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(args) = call("label_names") {
        return Ok(VarQuery::LabelNames(
            (!args.is_empty()).then(|| args.to_string()),
        ));
    }
    if let Some(args) = call("label_values") {
        // The label is the last argument; a selector may hold commas.
        return Ok(match args.rsplit_once(',') {
            Some((sel, label)) => {
                VarQuery::LabelValues(Some(sel.trim().to_string()), label.trim().to_string())
            }
            None => VarQuery::LabelValues(None, args.to_string()),
        });
    }
    if let Some(args) = call("metrics") {
        return Ok(VarQuery::Metrics(args.to_string()));
    }
    if let Some(args) = call("query_result") {
        return Ok(VarQuery::QueryResult(args.to_string()));
    }
    if q.is_empty() {
        return Err("empty variable query".into());
    }
    Err("variable query is not label_names/label_values/metrics/query_result".into())
}
