//! LogQL conformance: golden files in `cases/*.test` (format in README.md
//! beside this file) run against the engine over `MemLogs`, then every LogQL
//! expression of the stock Loki dashboards and rules under
//! `$STRATA_SHARED/ecosystem` must parse and evaluate.
//!
//! Prints `N passed, N failed` and exits non-zero on any failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::logs::{LogEntry, MemLogs};
use strata::model::format_float;
use strata::model::{Labels, MatchOp, Tenant};
use strata::query::logql::ast::Expr;
use strata::query::logql::eval::{EngineLimits, Series};
use strata::query::logql::lexer::parse_go_duration;
use strata::query::logql::vector::Sample;
use strata::query::logql::{parse, Direction, Engine, QueryResult, RangeParams};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("conformance/logql/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("conformance/logql/cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let (mut passed, mut failed) = (0usize, 0usize);
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable case file");
        for outcome in run_file(&text) {
            match outcome {
                Ok(()) => passed += 1,
                Err(msg) => {
                    failed += 1;
                    eprintln!(
                        "FAIL {}: {msg}\n",
                        f.file_name().unwrap_or_default().to_string_lossy()
                    );
                }
            }
        }
    }
    println!("logql golden cases: {passed} passed, {failed} failed");
    let (eco_ok, eco_failed) = ecosystem(&root);
    println!("{passed} passed, {failed} failed (golden); ecosystem: {eco_ok} passed, {eco_failed} failed");
    if failed > 0 || eco_failed > 0 {
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------ golden files

fn ts(s: &str) -> Result<i64, String> {
    parse_go_duration(s).ok_or_else(|| format!("bad time {s:?}"))
}

fn fmt_ts(ns: i64) -> String {
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{ns}ns")
    }
}

/// `{a="b", c="d"}` → labels, through the LogQL selector parser.
fn parse_labels(s: &str) -> Result<Labels, String> {
    let s = s.trim();
    if s == "{}" {
        return Ok(Labels::empty());
    }
    match parse(s).map_err(|e| format!("labels {s}: {e}"))? {
        Expr::Log(l) => Ok(Labels::from_pairs(
            l.matchers
                .iter()
                .filter(|m| m.op == MatchOp::Equal)
                .map(|m| (m.name.clone(), m.value.clone())),
        )),
        _ => Err(format!("not a label set: {s}")),
    }
}

/// Splits `{...} rest` at the closing brace (quotes respected).
fn split_labels(s: &str) -> Option<(&str, &str)> {
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if in_str => esc = true,
            '"' => in_str = !in_str,
            '}' if !in_str => return Some((&s[..=i], s[i + 1..].trim_start())),
            _ => {}
        }
    }
    None
}

struct Case {
    cmd: String,
    should_fail: bool,
    expected: Vec<String>,
}

fn run_file(text: &str) -> Vec<Result<(), String>> {
    let mut results = Vec::new();
    let mut store = Arc::new(MemLogs::new());
    let tenant = Tenant::new("conformance").expect("valid tenant");
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        if t == "load" {
            store = Arc::new(MemLogs::new());
            i += 1;
            let mut cur: Option<Labels> = None;
            let mut entries = Vec::new();
            while i < lines.len() && lines[i].starts_with(' ') {
                let raw = lines[i];
                let indent = raw.len() - raw.trim_start().len();
                let body = raw.trim_start();
                i += 1;
                if body.is_empty() || body.starts_with('#') {
                    continue;
                }
                if indent <= 2 {
                    if let Some(l) = cur.take() {
                        store.push(&tenant, l, std::mem::take(&mut entries));
                    }
                    match parse_labels(body) {
                        Ok(l) => cur = Some(l),
                        Err(e) => results.push(Err(format!("load: {e}"))),
                    }
                    continue;
                }
                let (t, rest) = body.split_once(' ').unwrap_or((body, ""));
                let Ok(ts) = ts(t) else {
                    results.push(Err(format!("load: bad timestamp in {body:?}")));
                    continue;
                };
                let mut entry = LogEntry::new(ts, "");
                let mut rest = rest.to_string();
                if let Some(meta) = rest.strip_prefix('~') {
                    if let Some((l, after)) = split_labels(meta) {
                        match parse_labels(l) {
                            Ok(m) => entry.metadata = m,
                            Err(e) => results.push(Err(format!("load: {e}"))),
                        }
                        rest = after.to_string();
                    }
                }
                entry.line = rest.replace("\\e", "\x1b");
                entries.push(entry);
            }
            if let Some(l) = cur.take() {
                store.push(&tenant, l, entries);
            }
            continue;
        }
        if t.starts_with("eval") {
            let mut expected = Vec::new();
            i += 1;
            while i < lines.len() && lines[i].starts_with(' ') && !lines[i].trim().is_empty() {
                expected.push(lines[i].to_string());
                i += 1;
            }
            let case = Case {
                cmd: t.to_string(),
                should_fail: t.starts_with("eval_fail"),
                expected,
            };
            results.push(run_case(&store, &tenant, &case));
            continue;
        }
        results.push(Err(format!("unknown directive {t:?}")));
        i += 1;
    }
    results
}

fn take_word<'a>(s: &mut &'a str) -> &'a str {
    let t = s.trim_start();
    let (w, rest) = t.split_once(' ').unwrap_or((t, ""));
    *s = rest;
    w
}

fn run_case(store: &Arc<MemLogs>, tenant: &Tenant, c: &Case) -> Result<(), String> {
    let engine = Engine::new(store.clone(), EngineLimits::default());
    let mut rest = c.cmd.as_str();
    take_word(&mut rest); // eval / eval_fail
    let kind = take_word(&mut rest);
    let got = match kind {
        "instant" => {
            if take_word(&mut rest) != "at" {
                return Err(format!("{}: expected `at`", c.cmd));
            }
            let t = ts(take_word(&mut rest))?;
            engine.query(
                tenant,
                rest,
                RangeParams {
                    start: t,
                    end: t,
                    step: 0,
                },
                true,
                (100, Direction::Backward),
            )
        }
        "range" | "logs" => {
            let mut p = (0, 0, 0, 1000usize, Direction::Backward);
            loop {
                let save = rest;
                match take_word(&mut rest) {
                    "from" => p.0 = ts(take_word(&mut rest))?,
                    "to" => p.1 = ts(take_word(&mut rest))?,
                    "step" => p.2 = ts(take_word(&mut rest))?,
                    "limit" => {
                        p.3 = take_word(&mut rest)
                            .parse()
                            .map_err(|_| format!("{}: bad limit", c.cmd))?
                    }
                    "forward" => p.4 = Direction::Forward,
                    "backward" => p.4 = Direction::Backward,
                    _ => {
                        rest = save;
                        break;
                    }
                }
            }
            engine.query(
                tenant,
                rest.trim(),
                RangeParams {
                    start: p.0,
                    end: p.1,
                    step: p.2,
                },
                false,
                (p.3, p.4),
            )
        }
        other => return Err(format!("{}: unknown eval kind {other:?}", c.cmd)),
    };
    match (got, c.should_fail) {
        (Err(e), true) => {
            let want = c
                .expected
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("\n");
            if want.is_empty() || e.to_string().contains(&want) {
                Ok(())
            } else {
                Err(format!(
                    "{}\n  error {e:?}\n  does not contain {want:?}",
                    c.cmd
                ))
            }
        }
        (Err(e), false) => Err(format!("{}\n  unexpected error: {e}", c.cmd)),
        (Ok(r), true) => Err(format!(
            "{}\n  expected an error, got:\n{}",
            c.cmd,
            render(&r).join("\n")
        )),
        (Ok(r), false) => {
            let got = render(&r);
            let want: Vec<String> = c
                .expected
                .iter()
                .map(|l| normalize_expected(l, &r))
                .collect::<Result<_, _>>()?;
            if lines_match(&got, &want) {
                Ok(())
            } else {
                Err(format!(
                    "{}\n  want:\n    {}\n  got:\n    {}",
                    c.cmd,
                    want.join("\n    "),
                    got.join("\n    ")
                ))
            }
        }
    }
}

fn render(r: &QueryResult) -> Vec<String> {
    match r {
        QueryResult::Scalar(_, v) => vec![format!("scalar {}", format_float(*v))],
        QueryResult::Vector(_, v) => v
            .iter()
            .map(|Sample { labels, value }| format!("{labels} {}", format_float(*value)))
            .collect(),
        QueryResult::Matrix(m) => m
            .iter()
            .map(|Series { labels, points }| {
                let pts: Vec<String> = points
                    .iter()
                    .map(|(t, v)| format!("{}:{}", fmt_ts(*t), format_float(*v)))
                    .collect();
                format!("{labels} {}", pts.join(" "))
            })
            .collect(),
        QueryResult::Streams(ss) => {
            let mut out = Vec::new();
            for s in ss {
                out.push(s.labels.to_string());
                for e in &s.entries {
                    out.push(format!("  {} {}", fmt_ts(e.ts), e.line));
                }
            }
            out
        }
    }
}

/// Re-renders an expected line's label set and times canonically.
fn normalize_expected(line: &str, r: &QueryResult) -> Result<String, String> {
    let indent = line.len() - line.trim_start().len();
    let body = line.trim();
    if let QueryResult::Streams(_) = r {
        if indent > 2 && !body.starts_with('{') || indent > 4 {
            let (t, text) = body.split_once(' ').unwrap_or((body, ""));
            return Ok(format!(
                "  {} {}",
                fmt_ts(ts(t)?),
                text.replace("\\e", "\x1b")
            ));
        }
    }
    if body.starts_with("scalar") {
        return Ok(body.to_string());
    }
    let (l, rest) = split_labels(body).ok_or_else(|| format!("expected labels in {body:?}"))?;
    let labels = parse_labels(l)?;
    if let QueryResult::Matrix(_) = r {
        let pts: Vec<String> = rest
            .split_whitespace()
            .map(|p| {
                let (t, v) = p
                    .split_once(':')
                    .ok_or_else(|| format!("bad point {p:?}"))?;
                Ok(format!("{}:{v}", fmt_ts(ts(t)?)))
            })
            .collect::<Result<_, String>>()?;
        return Ok(format!("{labels} {}", pts.join(" ")));
    }
    if rest.is_empty() {
        return Ok(labels.to_string());
    }
    Ok(format!("{labels} {rest}"))
}

fn num_eq(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-12)
        }
        _ => false,
    }
}

fn lines_match(got: &[String], want: &[String]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            if g == w {
                return true;
            }
            let (gt, wt): (Vec<&str>, Vec<&str>) = (
                g.split_whitespace().collect(),
                w.split_whitespace().collect(),
            );
            gt.len() == wt.len()
                && gt.iter().zip(&wt).all(|(a, b)| {
                    if num_eq(a, b) {
                        return true;
                    }
                    match (a.rsplit_once(':'), b.rsplit_once(':')) {
                        (Some((ta, va)), Some((tb, vb))) => ta == tb && num_eq(va, vb),
                        _ => false,
                    }
                })
        })
}

// ------------------------------------------------------------------ ecosystem

fn shared_dir(root: &Path) -> Option<PathBuf> {
    if let Ok(s) = std::env::var("STRATA_SHARED") {
        return Some(PathBuf::from(s));
    }
    let p = root.join("../shared");
    p.is_dir().then_some(p)
}

/// Expands Grafana variables the way the brief asks.
fn expand_vars(q: &str) -> String {
    let mut s = q.to_string();
    for (v, r) in [
        ("$__rate_interval", "1m"),
        ("${__rate_interval}", "1m"),
        ("$__interval", "1m"),
        ("${__interval}", "1m"),
        ("$__auto", "1m"),
        ("${__auto}", "1m"),
        ("$__range", "1h"),
        ("${__range}", "1h"),
    ] {
        s = s.replace(v, r);
    }
    // Remaining `$var` / `${var}`: `.+` inside regex strings, a plain value
    // elsewhere; a variable in label-name position becomes `job`.
    let re =
        regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
            .expect("static regex");
    let mut out = String::new();
    let mut last = 0;
    for m in re.find_iter(&s) {
        let before = &s[last..m.start()];
        out.push_str(before);
        let ctx = out.trim_end();
        let after = s[m.end()..].trim_start();
        let repl = if after.starts_with("=~")
            || after.starts_with("!~")
            || after.starts_with("=")
            || after.starts_with("!=")
        {
            "job" // label name position
        } else if ctx.ends_with("=~\"") || ctx.ends_with("!~\"") || in_regex_string(&out) {
            // `.*` would leave selectors with only empty-compatible
            // matchers, which Loki (and Strata) reject.
            ".+"
        } else {
            "value"
        };
        out.push_str(repl);
        last = m.end();
    }
    out.push_str(&s[last..]);
    out
}

/// True when the text ends inside a string that follows `=~`, `!~` or `|~`.
fn in_regex_string(prefix: &str) -> bool {
    let mut in_str = false;
    let mut regex_str = false;
    let mut prev = ' ';
    let mut prev2 = ' ';
    let mut esc = false;
    for c in prefix.chars() {
        if in_str {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            regex_str = prev == '~' || (prev == ' ' && prev2 == '~');
        }
        if !c.is_whitespace() || !in_str {
            prev2 = prev;
            prev = c;
        }
    }
    in_str && regex_str
}

fn collect_dashboard_exprs(v: &serde_json::Value, loki_vars: &[String], out: &mut Vec<String>) {
    let is_loki = |ds: Option<&serde_json::Value>| -> Option<bool> {
        let ds = ds?;
        let s = match ds {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => {
                if let Some(t) = o.get("type").and_then(|t| t.as_str()) {
                    if !t.starts_with('$') {
                        return Some(t == "loki");
                    }
                }
                o.get("uid")
                    .and_then(|u| u.as_str())
                    .unwrap_or("")
                    .to_string()
            }
            _ => return None,
        };
        let name = s
            .trim_start_matches("${")
            .trim_start_matches('$')
            .trim_end_matches('}');
        if loki_vars.iter().any(|v| v == name) {
            return Some(true);
        }
        Some(s.to_lowercase().contains("loki"))
    };
    if let Some(panels) = v.get("panels").and_then(|p| p.as_array()) {
        for p in panels {
            let pds = is_loki(p.get("datasource"));
            if let Some(ts) = p.get("targets").and_then(|t| t.as_array()) {
                for t in ts {
                    let loki = is_loki(t.get("datasource")).or(pds).unwrap_or(false);
                    if let (true, Some(e)) = (loki, t.get("expr").and_then(|e| e.as_str())) {
                        if !e.trim().is_empty() {
                            out.push(e.to_string());
                        }
                    }
                }
            }
            collect_dashboard_exprs(p, loki_vars, out);
        }
    }
    if let Some(rows) = v.get("rows").and_then(|p| p.as_array()) {
        for r in rows {
            collect_dashboard_exprs(r, loki_vars, out);
        }
    }
}

/// `(file name, contents)` of the files in `dir`, sorted by name.
fn read_sorted(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(&f).ok()?;
            Some((f.file_name()?.to_string_lossy().to_string(), text))
        })
        .collect()
}

fn ecosystem_exprs(shared: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, text) in read_sorted(&shared.join("ecosystem/dashboards/loki")) {
        {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let loki_vars: Vec<String> = v
                .pointer("/templating/list")
                .and_then(|l| l.as_array())
                .map(|l| {
                    l.iter()
                        .filter(|x| {
                            x.get("type").and_then(|t| t.as_str()) == Some("datasource")
                                && x.get("query").and_then(|q| q.as_str()) == Some("loki")
                        })
                        .filter_map(|x| x.get("name").and_then(|n| n.as_str()).map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let mut exprs = Vec::new();
            collect_dashboard_exprs(&v, &loki_vars, &mut exprs);
            out.extend(exprs.into_iter().map(|e| (name.clone(), e)));
        }
    }
    for (name, text) in read_sorted(&shared.join("ecosystem/rules/loki-ruler")) {
        {
            let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
                continue;
            };
            for g in v
                .get("groups")
                .and_then(|g| g.as_sequence())
                .into_iter()
                .flatten()
            {
                for r in g
                    .get("rules")
                    .and_then(|r| r.as_sequence())
                    .into_iter()
                    .flatten()
                {
                    let e = match r.get("expr") {
                        Some(serde_yaml::Value::String(s)) => s.clone(),
                        Some(serde_yaml::Value::Number(n)) => n.to_string(),
                        _ => continue,
                    };
                    out.push((name.clone(), e));
                }
            }
        }
    }
    out
}

/// A small data set whose labels and lines fit the stock queries.
fn ecosystem_store(tenant: &Tenant, end: i64) -> Arc<MemLogs> {
    let m = MemLogs::new();
    let levels = ["info", "warn", "error"];
    for (si, job) in ["value", "generated-logs", "loki-dev/x", "value/distributor"]
        .iter()
        .enumerate()
    {
        let labels = Labels::from_pairs([
            ("job", *job),
            ("cluster", "value"),
            ("namespace", "value"),
            ("container", "value"),
            ("filename", "value"),
            ("instance", "value"),
            ("pod", "loki-single-binary"),
        ]);
        let mut entries = Vec::new();
        for i in 0..120i64 {
            let ts = end - 3_600_000_000_000 + i * 30_000_000_000 + si as i64;
            let lvl = levels[(i as usize) % 3];
            let line = if i % 2 == 0 {
                format!(
                    r#"{{"status":{},"host":"h{}","request_time":"0.{}","body_bytes_sent":"{}","remote_addr":"10.0.0.{}","geoip_country_code":"US","http_referer":"-","http_user_agent":"curl","request_uri":"/a","request_method":"GET","level":"{lvl}"}}"#,
                    200 + (i % 4) * 100,
                    i % 3,
                    i % 10,
                    100 + i,
                    i % 5
                )
            } else {
                format!(
                    "ts=2024-01-01T00:00:00Z level={lvl} msg=\"request done\" user=u{} delete_request_id=d{} query=x status={} WARNING ERROR",
                    i % 4,
                    i % 3,
                    200 + (i % 3) * 100
                )
            };
            entries.push(LogEntry::new(ts, line));
        }
        m.push(tenant, labels, entries);
    }
    Arc::new(m)
}

fn ecosystem(root: &Path) -> (usize, usize) {
    let Some(shared) = shared_dir(root) else {
        println!("ecosystem: skipped (no STRATA_SHARED and no <repo>/../shared)");
        return (0, 0);
    };
    let exprs = ecosystem_exprs(&shared);
    if exprs.is_empty() {
        println!(
            "ecosystem: skipped (no Loki dashboards or rules under {})",
            shared.display()
        );
        return (0, 0);
    }
    let tenant = Tenant::new("eco").expect("valid tenant");
    let end = 1_700_000_000_000_000_000i64;
    let engine = Engine::new(ecosystem_store(&tenant, end), EngineLimits::default());
    let (mut ok, mut bad) = (0, 0);
    for (file, raw) in &exprs {
        let q = expand_vars(raw);
        let is_log = matches!(parse(&q), Ok(Expr::Log(_)));
        let rp = RangeParams {
            start: end - 3_600_000_000_000,
            end,
            step: 60_000_000_000,
        };
        let r = engine
            .query(&tenant, &q, rp, false, (100, Direction::Backward))
            .and_then(|r| {
                if is_log {
                    Ok(r)
                } else {
                    engine.query(&tenant, &q, rp, true, (100, Direction::Backward))
                }
            });
        match r {
            Ok(_) => ok += 1,
            Err(e) => {
                bad += 1;
                eprintln!("ecosystem FAIL {file}: {raw}\n  expanded: {q}\n  error: {e}\n");
            }
        }
    }
    println!("ecosystem: {} LogQL expressions from stock Loki dashboards and rules: {ok} parse and evaluate, {bad} fail", exprs.len());
    (ok, bad)
}
