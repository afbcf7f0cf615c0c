//! Request parameters the way Prometheus reads them: the form body and the
//! URL query merged (Go's `ParseForm`, body values first), times as float
//! seconds or RFC3339, durations as float seconds or Prometheus durations,
//! and the exact error messages Prometheus gives for bad values.

use axum::http::{header, HeaderMap, Method, Uri};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::Expr;

use super::json::ApiError;
use crate::model::{MatchOp, Matcher, METRIC_NAME};
use crate::query::promql::parse::parse_expr;

/// Prometheus's smallest and largest API times, in ms (far enough out that
/// no sample lies beyond, close enough that arithmetic does not overflow).
pub const MIN_TIME_MS: i64 = i64::MIN / 4;
/// See [`MIN_TIME_MS`].
pub const MAX_TIME_MS: i64 = i64::MAX / 4;

/// Merged form values.
#[derive(Debug, Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Form body values (for POST `application/x-www-form-urlencoded`)
    /// followed by URL query values.
    pub fn parse(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Form {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if (method == Method::POST || method == Method::PUT || method == Method::PATCH) && is_form {
            pairs.extend(
                serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default(),
            );
        }
        if let Some(q) = uri.query() {
            pairs
                .extend(serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default());
        }
        Form { pairs }
    }

    /// The first value of `name`, or "" (Go's `FormValue`).
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses a time: float seconds (rounded to ms) or RFC3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let secs = f.trunc();
            let ms = ((f - secs) * 1000.0).round();
            let total = secs * 1000.0 + ms;
            if total.abs() < 9.2e18 {
                return Ok(total as i64);
            }
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    Err(format!("cannot parse {s:?} to a valid timestamp"))
}

/// Parses a duration: float seconds or a Prometheus duration; in ms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let ms = f * 1000.0;
            if ms.abs() >= 9.2e15 {
                return Err(format!(
                    "cannot parse {s:?} to a valid duration. It overflows int64"
                ));
            }
            return Ok(ms.round() as i64);
        }
    }
    crate::model::parse_duration(s).map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

/// An optional time parameter (`start`, `end`, `time`), with Prometheus's
/// doubled wording on error.
pub fn time_param(form: &Form, name: &str, default: i64) -> Result<i64, ApiError> {
    match form.get(name) {
        "" => Ok(default),
        v => parse_time(v).map_err(|e| {
            ApiError::invalid_param(name, format!("invalid time value for '{name}': {e}"))
        }),
    }
}

/// The `limit` parameter: 0 (none) when absent.
pub fn limit_param(form: &Form) -> Result<usize, ApiError> {
    match form.get("limit") {
        "" => Ok(0),
        v => match v.parse::<i64>() {
            Ok(n) if n < 0 => Err(ApiError::invalid_param(
                "limit",
                "limit must be non-negative",
            )),
            Ok(n) => Ok(n as usize),
            Err(_) => Err(ApiError::invalid_param(
                "limit",
                format!("strconv.Atoi: parsing {v:?}: invalid syntax"),
            )),
        },
    }
}

/// Converts the matchers of a parsed selector, adding `__name__` when the
/// metric name was written outside the braces. `or` alternatives become
/// separate sets.
fn selector_sets(vs: &promql_parser::parser::VectorSelector) -> Result<Vec<Vec<Matcher>>, String> {
    let convert = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, String> {
        let mut out = Vec::with_capacity(ms.len() + 1);
        for m in ms {
            let op = match &m.op {
                PMatchOp::Equal => MatchOp::Equal,
                PMatchOp::NotEqual => MatchOp::NotEqual,
                PMatchOp::Re(_) => MatchOp::Regex,
                PMatchOp::NotRe(_) => MatchOp::NotRegex,
            };
            out.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())?);
        }
        if let Some(name) = &vs.name {
            if !out.iter().any(|m| m.name == METRIC_NAME) {
                out.push(Matcher::equal(METRIC_NAME, name.clone()));
            }
        }
        Ok(out)
    };
    let mut sets = vec![convert(&vs.matchers.matchers)?];
    for alt in &vs.matchers.or_matchers {
        sets.push(convert(alt)?);
    }
    Ok(sets)
}

/// The vector selectors in an expression (Prometheus's `ExtractSelectors`),
/// as matcher sets.
pub fn extract_selectors(expr: &Expr) -> Result<Vec<Vec<Matcher>>, String> {
    let mut out = Vec::new();
    walk(expr, &mut out)?;
    Ok(out)
}

fn walk(expr: &Expr, out: &mut Vec<Vec<Matcher>>) -> Result<(), String> {
    match expr {
        Expr::VectorSelector(vs) => out.extend(selector_sets(vs)?),
        Expr::MatrixSelector(ms) => out.extend(selector_sets(&ms.vs)?),
        Expr::Aggregate(a) => {
            walk(&a.expr, out)?;
            if let Some(p) = &a.param {
                walk(p, out)?;
            }
        }
        Expr::Unary(u) => walk(&u.expr, out)?,
        Expr::Binary(b) => {
            walk(&b.lhs, out)?;
            walk(&b.rhs, out)?;
        }
        Expr::Paren(p) => walk(&p.expr, out)?,
        Expr::Subquery(s) => walk(&s.expr, out)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

const ALL_EMPTY: &str = "match[] must contain at least one non-empty matcher";

/// Parses `match[]` values (Prometheus's `parseMatchersParam`).
pub fn matchers_param(values: &[&str]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for v in values {
        let expr = parse_expr(v).map_err(|e| {
            // The parser refuses all-empty selectors itself; Prometheus's
            // selector parser leaves that to this function's own check.
            if e.contains("at least one non-empty matcher") {
                ApiError::invalid_param("match[]", ALL_EMPTY)
            } else {
                ApiError::invalid_param("match[]", e)
            }
        })?;
        match &expr {
            Expr::VectorSelector(vs) => {
                sets.extend(selector_sets(vs).map_err(|e| ApiError::invalid_param("match[]", e))?)
            }
            _ => {
                return Err(ApiError::invalid_param(
                    "match[]",
                    format!("1:1: parse error: expected a metric selector, got {v:?}"),
                ))
            }
        }
    }
    if sets.iter().any(|set| set.iter().all(|m| m.matches_empty())) {
        return Err(ApiError::invalid_param("match[]", ALL_EMPTY));
    }
    Ok(sets)
}

/// Undoes Grafana's `U__` escaping of UTF-8 label names
/// (`U__` prefix, `_` as `__`, other characters as `_<hex code point>_`).
pub fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        let mut closed = false;
        for h in chars.by_ref() {
            if h == '_' {
                closed = true;
                break;
            }
            hex.push(h);
        }
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(ch) if closed => out.push(ch),
            // Not a valid escape: Prometheus returns the name unchanged.
            _ => return name.to_string(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1717000000.123"), Ok(1717000000123));
        assert_eq!(parse_time("4"), Ok(4000));
        assert_eq!(parse_time("2015-07-01T20:10:51.781Z"), Ok(1435781451781));
        assert_eq!(
            parse_time("abc"),
            Err("cannot parse \"abc\" to a valid timestamp".to_string())
        );
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("2m"), Ok(120_000));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn matchers_and_names() {
        let sets = matchers_param(&["up{job=\"a\"}"]).unwrap();
        assert_eq!(sets[0].len(), 2);
        assert!(matchers_param(&["{job=~\".*\"}"]).is_err());
        assert!(matchers_param(&["rate(up[5m])"]).is_err());
        assert_eq!(unescape_label_name("U__my_2e_label"), "my.label");
        assert_eq!(unescape_label_name("U__a__b"), "a_b");
        assert_eq!(unescape_label_name("job"), "job");
    }
}
