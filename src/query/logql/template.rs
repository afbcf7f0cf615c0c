//! Loki's `line_format` / `label_format` templates: Go `text/template` as
//! implemented once in [`crate::template`], with the functions of Loki's
//! `pkg/logql/log/fmt.go` (a Sprig subset plus Loki's own) and Loki's
//! conventions: labels are `.name` (a missing label renders as the empty
//! string, `missingkey=zero`), `__line__` and `__timestamp__` are functions.
//! A time value is carried as a string in Go's `time.Time` print form, which
//! the date functions read back.

use super::lexer::{parse_bytes, parse_go_duration};
use super::pipeline::LabelMap;
use crate::template::{FuncMap, Template as GoTemplate, Value};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use regex::Regex;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What a template sees: labels as `.name`, plus `__line__` and `__timestamp__`.
pub struct TemplateData<'a> {
    /// All labels of the entry.
    pub labels: &'a LabelMap,
    /// The current line.
    pub line: &'a str,
    /// Entry timestamp (ns).
    pub ts: i64,
}

/// A parsed Loki template.
#[derive(Debug, Clone)]
pub struct Template {
    tmpl: GoTemplate,
    /// Field names the template reads, pre-set to "" when the label is
    /// missing (Loki's `missingkey=zero`).
    fields: Vec<String>,
}

thread_local! {
    /// The entry being formatted, for `__line__` and `__timestamp__`.
    static CURRENT: RefCell<(String, i64)> = const { RefCell::new((String::new(), 0)) };
}

impl Template {
    /// Parses a template.
    pub fn parse(src: &str) -> Result<Template, String> {
        let tmpl = GoTemplate::parse("line", src, funcs())?;
        let re = Regex::new(r"\.([A-Za-z_][A-Za-z0-9_]*)").expect("static regex");
        let mut fields: Vec<String> = re.captures_iter(src).map(|c| c[1].to_string()).collect();
        fields.sort();
        fields.dedup();
        Ok(Template { tmpl, fields })
    }

    /// Renders with the given data.
    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, String> {
        let mut dot: BTreeMap<String, Value> = data
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect();
        for f in &self.fields {
            dot.entry(f.clone())
                .or_insert_with(|| Value::Str(String::new()));
        }
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            c.0.clear();
            c.0.push_str(data.line);
            c.1 = data.ts;
        });
        self.tmpl.execute(&Value::Map(dot), &[], funcs())
    }
}

/// Loki's template functions beyond Go's built-ins.
const FUNCS: &[&str] = &[
    "__line__",
    "__timestamp__",
    "ToLower",
    "ToUpper",
    "Replace",
    "Trim",
    "TrimLeft",
    "TrimRight",
    "TrimPrefix",
    "TrimSuffix",
    "TrimSpace",
    "lower",
    "upper",
    "title",
    "trunc",
    "substr",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "indent",
    "nindent",
    "replace",
    "repeat",
    "trim",
    "trimAll",
    "trimSuffix",
    "trimPrefix",
    "int",
    "float64",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "addf",
    "subf",
    "mulf",
    "divf",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "fromJson",
    "date",
    "toDate",
    "toDateInZone",
    "now",
    "unixEpoch",
    "unixEpochMillis",
    "unixEpochNanos",
    "unixToTime",
    "default",
    "count",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "alignLeft",
    "alignRight",
    "b64enc",
    "b64dec",
    "bytes",
    "duration",
    "duration_seconds",
    "urlencode",
    "urldecode",
];

fn funcs() -> &'static FuncMap {
    static FUNCS_MAP: OnceLock<FuncMap> = OnceLock::new();
    FUNCS_MAP.get_or_init(|| {
        let mut m = FuncMap::new();
        for name in FUNCS {
            m.insert(name, move |a: &[Value]| call(name, a));
        }
        m
    })
}

fn to_s(v: &Value) -> String {
    v.to_go_string()
}

/// Sprig's `toFloat64`: unparsable strings are 0.
fn to_f(v: &Value) -> f64 {
    match v {
        Value::Str(s) => s.trim().parse().unwrap_or(0.0),
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => *b as i64 as f64,
        _ => 0.0,
    }
}

/// Sprig's `toInt64`: integers only, anything else is 0.
fn to_i(v: &Value) -> i64 {
    match v {
        Value::Str(s) => s.trim().parse().unwrap_or(0),
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => *b as i64,
        _ => 0,
    }
}

fn argn(f: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {f}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn time_value(t: DateTime<FixedOffset>) -> Value {
    Value::Str(go_time_string(&t))
}

fn epoch() -> DateTime<FixedOffset> {
    DateTime::<Utc>::from_timestamp(0, 0)
        .unwrap_or_default()
        .fixed_offset()
}

/// A time argument: Go's time print form, RFC 3339, or Unix nanoseconds.
fn to_time(v: &Value) -> DateTime<FixedOffset> {
    if let Value::Str(s) = v {
        let no_zone = s.rsplit_once(' ').map_or(s.as_str(), |(a, _)| a);
        if let Ok(t) = DateTime::parse_from_str(no_zone, "%Y-%m-%d %H:%M:%S%.f %z") {
            return t;
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return t;
        }
    }
    Utc.timestamp_nanos(to_i(v)).fixed_offset()
}

fn call(f: &str, a: &[Value]) -> Result<Value, String> {
    let s = |i: usize| a.get(i).map(to_s).unwrap_or_default();
    let last = || a.last().map(to_s).unwrap_or_default();
    Ok(match f {
        "__line__" => Value::Str(CURRENT.with(|c| c.borrow().0.clone())),
        "__timestamp__" => {
            let ns = CURRENT.with(|c| c.borrow().1);
            time_value(Utc.timestamp_nanos(ns).fixed_offset())
        }
        "ToLower" | "lower" => Value::Str(last().to_lowercase()),
        "ToUpper" | "upper" => Value::Str(last().to_uppercase()),
        "title" => Value::Str(title(&last())),
        "Replace" => {
            argn(f, a, 4)?;
            let n = to_i(&a[3]);
            Value::Str(if n < 0 {
                s(0).replace(&s(1), &s(2))
            } else {
                s(0).replacen(&s(1), &s(2), n as usize)
            })
        }
        "replace" => {
            argn(f, a, 3)?;
            Value::Str(s(2).replace(&s(0), &s(1)))
        }
        "Trim" => Value::Str(s(0).trim_matches(|c| s(1).contains(c)).to_string()),
        "TrimLeft" => Value::Str(s(0).trim_start_matches(|c| s(1).contains(c)).to_string()),
        "TrimRight" => Value::Str(s(0).trim_end_matches(|c| s(1).contains(c)).to_string()),
        "TrimPrefix" => Value::Str(s(0).strip_prefix(&s(1)).map_or(s(0), str::to_string)),
        "TrimSuffix" => Value::Str(s(0).strip_suffix(&s(1)).map_or(s(0), str::to_string)),
        "TrimSpace" | "trim" => Value::Str(last().trim().to_string()),
        "trimAll" => {
            argn(f, a, 2)?;
            Value::Str(s(1).trim_matches(|c| s(0).contains(c)).to_string())
        }
        "trimPrefix" => {
            argn(f, a, 2)?;
            Value::Str(s(1).strip_prefix(&s(0)).map_or(s(1), str::to_string))
        }
        "trimSuffix" => {
            argn(f, a, 2)?;
            Value::Str(s(1).strip_suffix(&s(0)).map_or(s(1), str::to_string))
        }
        "trunc" => {
            argn(f, a, 2)?;
            let n = to_i(&a[0]);
            let src: Vec<char> = s(1).chars().collect();
            let l = src.len() as i64;
            Value::Str(if n < 0 && -n < l {
                src[(l + n) as usize..].iter().collect()
            } else if n >= 0 && n < l {
                src[..n as usize].iter().collect()
            } else {
                s(1)
            })
        }
        "substr" => {
            argn(f, a, 3)?;
            let (st, en) = (to_i(&a[0]), to_i(&a[1]));
            let src: Vec<char> = s(2).chars().collect();
            let l = src.len() as i64;
            Value::Str(if st < 0 {
                src[..en.clamp(0, l) as usize].iter().collect()
            } else if en < 0 || en > l {
                src[st.min(l) as usize..].iter().collect()
            } else {
                src[st.min(en) as usize..en as usize].iter().collect()
            })
        }
        "contains" => {
            argn(f, a, 2)?;
            Value::Bool(s(1).contains(&s(0)))
        }
        "hasPrefix" => {
            argn(f, a, 2)?;
            Value::Bool(s(1).starts_with(&s(0)))
        }
        "hasSuffix" => {
            argn(f, a, 2)?;
            Value::Bool(s(1).ends_with(&s(0)))
        }
        "indent" | "nindent" => {
            argn(f, a, 2)?;
            let pad = " ".repeat(to_i(&a[0]).max(0) as usize);
            let body = format!("{pad}{}", s(1).replace('\n', &format!("\n{pad}")));
            Value::Str(if f == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "repeat" => {
            argn(f, a, 2)?;
            Value::Str(s(1).repeat(to_i(&a[0]).max(0) as usize))
        }
        "int" => Value::Int(a.first().map_or(0, to_i)),
        "float64" => Value::Float(a.first().map_or(0.0, to_f)),
        "add" => Value::Int(a.iter().map(to_i).fold(0i64, i64::wrapping_add)),
        "mul" => Value::Int(a.iter().map(to_i).fold(1i64, i64::wrapping_mul)),
        "sub" | "div" | "mod" => {
            argn(f, a, 2)?;
            let (x, y) = (to_i(&a[0]), to_i(&a[1]));
            if f != "sub" && y == 0 {
                return Err("integer divide by zero".into());
            }
            Value::Int(match f {
                "sub" => x.wrapping_sub(y),
                "div" => x / y,
                _ => x % y,
            })
        }
        "addf" => Value::Float(a.iter().map(to_f).sum()),
        "mulf" => Value::Float(a.iter().map(to_f).product()),
        "subf" | "divf" => {
            let mut it = a.iter().map(to_f);
            let first = it.next().unwrap_or(0.0);
            Value::Float(it.fold(first, |acc, v| if f == "subf" { acc - v } else { acc / v }))
        }
        "max" | "min" => {
            let it = a.iter().map(to_i);
            Value::Int(if f == "max" { it.max() } else { it.min() }.unwrap_or(0))
        }
        "maxf" | "minf" => {
            let it = a.iter().map(to_f);
            Value::Float(if f == "maxf" {
                it.fold(f64::NEG_INFINITY, f64::max)
            } else {
                it.fold(f64::INFINITY, f64::min)
            })
        }
        "ceil" => Value::Float(a.first().map_or(0.0, to_f).ceil()),
        "floor" => Value::Float(a.first().map_or(0.0, to_f).floor()),
        "round" => {
            if a.len() < 2 {
                return Err("round needs a value and a precision".into());
            }
            let (v, p) = (to_f(&a[0]), to_i(&a[1]));
            let r = a.get(2).map_or(0.5, to_f);
            let pow = 10f64.powi(p as i32);
            let digit = v * pow;
            let rounded = if digit.fract() >= r {
                digit.ceil()
            } else {
                digit.floor()
            };
            Value::Float(rounded / pow)
        }
        "fromJson" => {
            let v: serde_json::Value = serde_json::from_str(&last()).unwrap_or_default();
            from_json(&v)
        }
        "default" => {
            if a.len() < 2 || !a[1].truthy() {
                a.first().cloned().unwrap_or(Value::Nil)
            } else {
                a[1].clone()
            }
        }
        "count" => {
            argn(f, a, 2)?;
            let re = Regex::new(&s(0)).map_err(|e| format!("count: {e}"))?;
            Value::Int(re.find_iter(&s(1)).count() as i64)
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            argn(f, a, 3)?;
            let re = Regex::new(&s(0)).map_err(|e| format!("{f}: {e}"))?;
            Value::Str(if f == "regexReplaceAll" {
                re.replace_all(&s(1), s(2).as_str()).into_owned()
            } else {
                re.replace_all(&s(1), regex::NoExpand(&s(2))).into_owned()
            })
        }
        "alignLeft" | "alignRight" => {
            argn(f, a, 2)?;
            let n = to_i(&a[0]);
            let src: Vec<char> = s(1).chars().collect();
            let l = src.len() as i64;
            Value::Str(if n < 0 || n == l {
                s(1)
            } else if n > l {
                let pad = " ".repeat((n - l) as usize);
                if f == "alignLeft" {
                    s(1) + &pad
                } else {
                    pad + &s(1)
                }
            } else if f == "alignLeft" {
                src[..n as usize].iter().collect()
            } else {
                src[(l - n) as usize..].iter().collect()
            })
        }
        "b64enc" => Value::Str(b64_encode(last().as_bytes())),
        "b64dec" => Value::Str(
            b64_decode(&last())
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_else(|| "illegal base64 data".into()),
        ),
        "urlencode" => Value::Str(url_encode(&last())),
        "urldecode" => Value::Str(url_decode(&last())?),
        "bytes" => Value::Float(parse_bytes(&last()).map_or(0.0, |b| b as f64)),
        "duration" | "duration_seconds" => {
            Value::Float(parse_go_duration(last().trim()).map_or(0.0, |ns| ns as f64 / 1e9))
        }
        "now" => time_value(Utc::now().fixed_offset()),
        "date" => {
            argn(f, a, 2)?;
            let t = to_time(&a[1]);
            let mut layout = s(0);
            if t.offset().local_minus_utc() == 0 {
                // Go prints `Z` for UTC in the Z07:00 forms
                layout = layout.replace("Z07:00", "Z").replace("Z0700", "Z");
            }
            Value::Str(t.format(&go_layout_to_chrono(&layout, false)).to_string())
        }
        "toDate" | "toDateInZone" => {
            let (layout, zone, val) = if f == "toDate" {
                argn(f, a, 2)?;
                (s(0), "UTC".to_string(), s(1))
            } else {
                argn(f, a, 3)?;
                (s(0), s(1), s(2))
            };
            time_value(parse_time(&layout, &zone, &val).unwrap_or_else(epoch))
        }
        "unixEpoch" => Value::Int(a.first().map_or(0, |v| to_time(v).timestamp())),
        "unixEpochMillis" => Value::Int(a.first().map_or(0, |v| to_time(v).timestamp_millis())),
        "unixEpochNanos" => Value::Int(
            a.first()
                .map_or(0, |v| to_time(v).timestamp_nanos_opt().unwrap_or(0)),
        ),
        "unixToTime" => {
            let e = last();
            let n: i64 = e
                .trim()
                .parse()
                .map_err(|_| format!("unixToTime: invalid epoch {e:?}"))?;
            let ns = match e.trim().len() {
                0..=10 => n.saturating_mul(1_000_000_000),
                11..=13 => n.saturating_mul(1_000_000),
                14..=16 => n.saturating_mul(1000),
                _ => n,
            };
            time_value(Utc.timestamp_nanos(ns).fixed_offset())
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Array(a) => Value::List(a.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => {
            Value::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

fn go_time_string(t: &DateTime<FixedOffset>) -> String {
    let frac = t.timestamp_subsec_nanos();
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    let zone = if t.offset().local_minus_utc() == 0 {
        "UTC".to_string()
    } else {
        t.format("%z").to_string()
    };
    format!("{s} {} {zone}", t.format("%z"))
}

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

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn url_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("template: invalid URL escape in {s:?}"))?;
                out.push(h);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= n {
                out.push(B64[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

/// Translates a Go reference-time layout (`2006-01-02T15:04:05Z07:00`) into a
/// chrono format string. `parsing` drops the no-padding flags chrono's
/// parser does not accept.
pub fn go_layout_to_chrono(layout: &str, parsing: bool) -> String {
    const MAP: &[(&str, &str, &str)] = &[
        ("January", "%B", "%B"),
        ("Monday", "%A", "%A"),
        ("Jan", "%b", "%b"),
        ("Mon", "%a", "%a"),
        ("MST", "%Z", "%Z"),
        ("2006", "%Y", "%Y"),
        ("Z07:00", "%:z", "%:z"),
        ("-07:00", "%:z", "%:z"),
        ("-0700", "%z", "%z"),
        (".000000000", "%.9f", "%.9f"),
        (".999999999", "%.f", "%.f"),
        (".000000", "%.6f", "%.6f"),
        (".999999", "%.f", "%.f"),
        (".000", "%.3f", "%.3f"),
        (".999", "%.f", "%.f"),
        ("01", "%m", "%m"),
        ("02", "%d", "%d"),
        ("_2", "%e", "%e"),
        ("06", "%y", "%y"),
        ("15", "%H", "%H"),
        ("03", "%I", "%I"),
        ("04", "%M", "%M"),
        ("05", "%S", "%S"),
        ("PM", "%p", "%p"),
        ("pm", "%P", "%P"),
        ("1", "%-m", "%m"),
        ("2", "%-d", "%d"),
        ("3", "%-I", "%I"),
        ("4", "%-M", "%M"),
        ("5", "%-S", "%S"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (g, f, p) in MAP {
            if let Some(r) = rest.strip_prefix(g) {
                out.push_str(if parsing { p } else { f });
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn parse_time(layout: &str, zone: &str, val: &str) -> Option<DateTime<FixedOffset>> {
    let fmt = go_layout_to_chrono(layout, true);
    if let Ok(t) = DateTime::parse_from_str(val, &fmt) {
        return Some(t);
    }
    let off = match zone {
        "UTC" | "Local" | "" => FixedOffset::east_opt(0)?,
        z => {
            let (sign, rest) = match z.strip_prefix('-') {
                Some(r) => (-1, r),
                None => (1, z.trim_start_matches('+')),
            };
            let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
            FixedOffset::east_opt(
                sign * (h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60),
            )?
        }
    };
    if let Ok(n) = NaiveDateTime::parse_from_str(val, &fmt) {
        return off.from_local_datetime(&n).single();
    }
    let d = chrono::NaiveDate::parse_from_str(val, &fmt).ok()?;
    off.from_local_datetime(&d.and_hms_opt(0, 0, 0)?).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, labels: &[(&str, &str)]) -> String {
        let m: LabelMap = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Template::parse(t)
            .unwrap()
            .render(&TemplateData {
                labels: &m,
                line: "the line",
                ts: 1_700_000_000_123_000_000,
            })
            .unwrap()
    }

    #[test]
    fn renders() {
        let l = [("a", "Hello"), ("n", "7"), ("d", "1500")];
        for (t, want) in [
            ("{{.a}} {{.missing}}!", "Hello !"),
            ("{{ .a | lower | trunc 3 }}", "hel"),
            ("{{ div .d 1000 }} {{ divf .d 1000 }}", "1 1.5"),
            (
                "{{ if eq .n \"7\" }}seven{{ else if .a }}a{{ else }}no{{ end }}",
                "seven",
            ),
            ("{{- \"x\" -}}  {{ .a }}", "xHello"),
            (
                "{{ __line__ }} {{ __timestamp__ | unixEpoch }}",
                "the line 1700000000",
            ),
            ("{{ __timestamp__ | unixEpoch }}", "1700000000"),
            (
                "{{ date \"2006-01-02T15:04:05.000Z07:00\" __timestamp__ }}",
                "2023-11-14T22:13:20.123Z",
            ),
            ("{{ regexReplaceAll \"(l+)\" .a \"[${1}]\" }}", "He[ll]o"),
            (
                "{{ printf \"%05.1f|%-3s|%d\" 3.14159 \"x\" 42 }}",
                "003.1|x  |42",
            ),
            (
                "{{ b64enc .a }} {{ b64dec \"SGVsbG8=\" }}",
                "SGVsbG8= Hello",
            ),
            ("{{ alignRight 7 .a }}|{{ alignLeft 2 .a }}", "  Hello|He"),
            (
                "{{ add 1 2 3 }} {{ round 2.346 2 }} {{ ceil 1.2 }}",
                "6 2.35 2",
            ),
            (
                "{{ substr 1 3 .a }} {{ replace \"l\" \"L\" .a }} {{ title \"foo bar\" }}",
                "el HeLLo Foo Bar",
            ),
            (
                "{{ count \"l\" .a }} {{ default \"d\" .missing }} {{ bytes \"2 KB\" }}",
                "2 d 2000",
            ),
            (
                "{{ duration \"1h5m\" }} {{ unixToTime \"1700000000\" | unixEpochMillis }}",
                "3900 1700000000000",
            ),
            (
                "{{ urlencode \"a b&c\" }} {{ urldecode \"a+b%26c\" }}",
                "a+b%26c a b&c",
            ),
        ] {
            assert_eq!(render(t, &l), want, "{t}");
        }
    }
}
