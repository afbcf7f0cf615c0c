//! Prometheus's template functions (`humanize` and friends), shared by alert
//! templates and anything else that renders Prometheus-style text.
//! `query`, `externalURL` and `pathPrefix` depend on the caller and are
//! added by it.

use super::{format_float_g, FuncMap, Value};

fn arg(args: &[Value], name: &str) -> Result<f64, String> {
    match args {
        [v] => v.as_f64(),
        _ => Err(format!(
            "wrong number of args for {name}: want 1 got {}",
            args.len()
        )),
    }
}

fn str_arg<'a>(args: &'a [Value], i: usize, name: &str) -> Result<&'a str, String> {
    match args.get(i) {
        Some(Value::Str(s)) => Ok(s),
        Some(other) => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
        None => Err(format!("wrong number of args for {name}")),
    }
}

fn g4(v: f64) -> String {
    format_float_g(v, Some(4))
}

fn scaled(mut v: f64, base: f64, up: &[&str], down: &[&str]) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in up {
            if v.abs() < base {
                break;
            }
            prefix = p;
            v /= base;
        }
    } else {
        for p in down {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

const SMALL: [&str; 8] = ["m", "u", "n", "p", "f", "a", "z", "y"];

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(v: f64) -> String {
    scaled(v, 1000.0, &["k", "M", "G", "T", "P", "E", "Z", "Y"], &SMALL)
}

/// Prometheus's `humanize1024`: binary prefixes.
pub fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    scaled(
        v,
        1024.0,
        &["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"],
        &[],
    )
}

/// Prometheus's `humanizeDuration` (seconds in).
pub fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let a = v.abs();
        let d = a as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {mins}m {secs}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {mins}m {secs}s")
        } else if mins != 0 {
            format!("{sign}{mins}m {secs}s")
        } else {
            format!("{sign}{}s", g4(a))
        };
    }
    format!("{}s", scaled(v, 1000.0, &[], &SMALL))
}

/// Prometheus's `humanizePercentage`.
pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", g4(v * 100.0))
}

/// Prometheus's `humanizeTimestamp` (Go's `time.Time.String()` in UTC).
pub fn humanize_timestamp(v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    let secs = v.floor() as i64;
    let nanos = ((v - v.floor()) * 1e9).round() as u32;
    match chrono::DateTime::from_timestamp(secs, nanos.min(999_999_999)) {
        Some(t) => {
            let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
            if nanos > 0 {
                let frac = format!("{:09}", nanos);
                s.push('.');
                s.push_str(frac.trim_end_matches('0'));
            }
            s + " +0000 UTC"
        }
        None => g4(v),
    }
}

fn sample_field(args: &[Value], field: &str, name: &str) -> Result<Value, String> {
    match args.last() {
        Some(Value::Map(m)) => Ok(m.get(field).cloned().unwrap_or(Value::Nil)),
        Some(Value::Nil) | None => Err(format!("{name}: no sample")),
        Some(other) => Err(format!("{name}: not a sample: {}", other.type_name())),
    }
}

/// Go's `strings.Title`-like capitalisation of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

/// Adds Prometheus's template functions that need no context.
pub fn add_prometheus_funcs(m: &mut FuncMap) {
    m.insert("humanize", |a| {
        Ok(Value::Str(humanize(arg(a, "humanize")?)))
    });
    m.insert("humanize1024", |a| {
        Ok(Value::Str(humanize1024(arg(a, "humanize1024")?)))
    });
    m.insert("humanizeDuration", |a| {
        Ok(Value::Str(humanize_duration(arg(a, "humanizeDuration")?)))
    });
    m.insert("humanizePercentage", |a| {
        Ok(Value::Str(humanize_percentage(arg(
            a,
            "humanizePercentage",
        )?)))
    });
    m.insert("humanizeTimestamp", |a| {
        Ok(Value::Str(humanize_timestamp(arg(a, "humanizeTimestamp")?)))
    });
    m.insert("toTime", |a| Ok(Value::Float(arg(a, "toTime")?)));
    m.insert("title", |a| Ok(Value::Str(title(str_arg(a, 0, "title")?))));
    m.insert("toUpper", |a| {
        Ok(Value::Str(str_arg(a, 0, "toUpper")?.to_uppercase()))
    });
    m.insert("toLower", |a| {
        Ok(Value::Str(str_arg(a, 0, "toLower")?.to_lowercase()))
    });
    m.insert("safeHtml", |a| {
        Ok(Value::Str(str_arg(a, 0, "safeHtml")?.to_string()))
    });
    m.insert("match", |a| {
        let re = regex::Regex::new(str_arg(a, 0, "match")?).map_err(|e| e.to_string())?;
        Ok(Value::Bool(re.is_match(str_arg(a, 1, "match")?)))
    });
    m.insert("reReplaceAll", |a| {
        let re = regex::Regex::new(str_arg(a, 0, "reReplaceAll")?).map_err(|e| e.to_string())?;
        let repl = str_arg(a, 1, "reReplaceAll")?;
        Ok(Value::Str(
            re.replace_all(str_arg(a, 2, "reReplaceAll")?, repl)
                .into_owned(),
        ))
    });
    m.insert("stripPort", |a| {
        let s = str_arg(a, 0, "stripPort")?;
        Ok(Value::Str(strip_port(s).to_string()))
    });
    m.insert("stripDomain", |a| {
        let s = str_arg(a, 0, "stripDomain")?;
        let host = strip_port(s);
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Value::Str(s.to_string()));
        }
        let port = &s[host.len()..];
        let short = host.split('.').next().unwrap_or(host);
        Ok(Value::Str(format!("{short}{port}")))
    });
    m.insert("first", |a| match a.last() {
        Some(Value::List(l)) => l
            .first()
            .cloned()
            .ok_or_else(|| "first() called on vector with no elements".to_string()),
        _ => Err("first() called on a non-vector".to_string()),
    });
    m.insert("label", |a| {
        let name = str_arg(a, 0, "label")?.to_string();
        match sample_field(a, "Labels", "label")? {
            Value::Map(m) => Ok(m.get(&name).cloned().unwrap_or(Value::Str(String::new()))),
            _ => Ok(Value::Str(String::new())),
        }
    });
    m.insert("value", |a| sample_field(a, "Value", "value"));
    m.insert("strvalue", |a| {
        match sample_field(a, "Labels", "strvalue")? {
            Value::Map(m) => Ok(m
                .get("__value__")
                .cloned()
                .unwrap_or(Value::Str(String::new()))),
            _ => Ok(Value::Str(String::new())),
        }
    });
    m.insert("sortByLabel", |a| {
        let name = str_arg(a, 0, "sortByLabel")?.to_string();
        let Some(Value::List(l)) = a.get(1) else {
            return Err("sortByLabel: not a vector".into());
        };
        let key = |v: &Value| match v {
            Value::Map(m) => match m.get("Labels") {
                Some(Value::Map(l)) => l.get(&name).map(Value::to_go_string).unwrap_or_default(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let mut l = l.clone();
        l.sort_by_key(key);
        Ok(Value::List(l))
    });
    m.insert("parseDuration", |a| {
        let d = crate::model::parse_duration(str_arg(a, 0, "parseDuration")?)
            .map_err(|e| e.to_string())?;
        Ok(Value::Float(d as f64 / 1000.0))
    });
    m.insert("args", |a| {
        Ok(Value::Map(
            a.iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v.clone()))
                .collect(),
        ))
    });
}

fn strip_port(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return &rest[..end];
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => s,
    }
}

/// A FuncMap with Prometheus's context-free functions.
pub fn prometheus_funcs() -> FuncMap {
    let mut m = FuncMap::new();
    add_prometheus_funcs(&mut m);
    m
}
