//! Prometheus's JSON, byte for byte: the response envelope, sample values as
//! strings formatted like Go's `strconv.FormatFloat(v, 'f' or 'e', -1, 64)`,
//! timestamps as seconds with millisecond fractions, and Go's string
//! escaping (HTML characters escaped as `\u003c` and so on).

use std::fmt::Write as _;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::model::Labels;

/// Appends `s` as a JSON string, escaped as Go's encoding/json does.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a millisecond timestamp as seconds: `1435781451.781`, `1.5` is
/// written `1.500` and whole seconds have no fraction, as Prometheus does.
pub fn write_ts(out: &mut String, ms: i64) {
    if ms < 0 {
        out.push('-');
    }
    let t = ms.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(t / 1000));
    let frac = (t % 1000) as u8;
    if frac != 0 {
        out.push('.');
        for d in [frac / 100, frac / 10 % 10, frac % 10] {
            out.push(char::from(b'0' + d));
        }
    }
}

/// Formats a float as Prometheus renders sample values (without quotes).
pub fn format_value(v: f64) -> String {
    let mut s = String::new();
    push_value(&mut s, v);
    s
}

/// Appends `v` as [`format_value`] formats it, without allocating.
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Go's 'e' format: shortest digits, exponent with a sign and at
        // least two digits (1e-07, 1.5e+21).
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let _ = write!(out, "{mant}e{sign}{digits:0>2}");
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Fast paths (values are rendered by the thousand): whole numbers below
    // 2^53 print as integers; other values take ryu's shortest digits
    // (the same digits as `{v}`), unless ryu picks exponent notation.
    if abs < 1e15 && v.fract() == 0.0 {
        out.push_str(itoa::Buffer::new().format(v as i64));
        return;
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v);
    if s.contains('e') {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(s.strip_suffix(".0").unwrap_or(s));
    }
}

/// Appends a scalar or string result's `[t, ...]` timestamp the way Go's
/// encoding/json writes `float64(t)/1000` (Prometheus marshals those two
/// result types with the standard library): `1.5`, not `1.500`.
pub fn write_float_ts(out: &mut String, ms: i64) {
    let _ = write!(out, "{}", ms as f64 / 1000.0);
}

/// Appends a scalar result's value: Prometheus formats it with
/// `strconv.FormatFloat(v, 'f', -1, 64)`, never in exponent form.
pub fn write_scalar_value(out: &mut String, v: f64) {
    out.push('"');
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        push_value(out, v);
    }
    out.push('"');
}

/// Appends a sample value as a JSON string.
pub fn write_value(out: &mut String, v: f64) {
    out.push('"');
    push_value(out, v);
    out.push('"');
}

/// Appends `[t,"v"]`.
pub fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_ts(out, t);
    out.push(',');
    write_value(out, v);
    out.push(']');
}

/// Appends `[t,{"count":"..","sum":"..","buckets":[[rule,"lower","upper","count"],..]}]`,
/// Prometheus's native-histogram point (empty buckets left out; rule 0:
/// `(l,u]`, 1: `[l,u)`, 2: `(l,u)`, 3: `[l,u]`).
pub fn write_histogram_point(out: &mut String, t: i64, h: &crate::model::FloatHistogram) {
    out.push('[');
    write_ts(out, t);
    out.push_str(r#",{"count":"#);
    write_value(out, h.count);
    out.push_str(r#","sum":"#);
    write_value(out, h.sum);
    let mut first = true;
    for b in h.buckets().into_iter().filter(|b| b.count != 0.0) {
        out.push_str(if first { r#","buckets":["# } else { "," });
        first = false;
        let rule = match (b.lower_inclusive, b.upper_inclusive) {
            (false, true) => 0,
            (true, false) => 1,
            (false, false) => 2,
            (true, true) => 3,
        };
        out.push('[');
        out.push_str(&rule.to_string());
        for v in [b.lower, b.upper, b.count] {
            out.push(',');
            write_value(out, v);
        }
        out.push(']');
    }
    if !first {
        out.push(']');
    }
    out.push_str("}]");
}

/// Appends a label set as a JSON object in label order.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

/// Appends a JSON array of strings.
pub fn write_str_array(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, s);
    }
    out.push(']');
}

/// Prometheus's `errorType`s and their HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// 400.
    BadData,
    /// 422.
    Execution,
    /// 503.
    Timeout,
    /// 503.
    Canceled,
    /// 500.
    Internal,
    /// 404.
    NotFound,
    /// 503.
    Unavailable,
}

impl ErrorType {
    /// The `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
            ErrorType::Unavailable => "unavailable",
        }
    }

    /// The HTTP status Prometheus answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Canceled | ErrorType::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// Parses the strings of [`crate::query::promql::QueryError::error_type`].
    pub fn parse(s: &str) -> ErrorType {
        match s {
            "bad_data" => ErrorType::BadData,
            "execution" => ErrorType::Execution,
            "timeout" => ErrorType::Timeout,
            "canceled" => ErrorType::Canceled,
            "not_found" => ErrorType::NotFound,
            "unavailable" => ErrorType::Unavailable,
            _ => ErrorType::Internal,
        }
    }
}

/// An API error rendered as `{"status":"error","errorType":...,"error":...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Kind.
    pub kind: ErrorType,
    /// Message.
    pub message: String,
}

impl ApiError {
    /// A `bad_data` error.
    pub fn bad_data(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorType::BadData,
            message: message.into(),
        }
    }

    /// Prometheus's `invalid parameter "<name>": <err>`.
    pub fn invalid_param(name: &str, err: impl std::fmt::Display) -> ApiError {
        ApiError::bad_data(format!("invalid parameter {name:?}: {err}"))
    }

    /// An `internal` error.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorType::Internal,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut out = String::from(r#"{"status":"error","errorType":"#);
        write_str(&mut out, self.kind.as_str());
        out.push_str(r#","error":"#);
        write_str(&mut out, &self.message);
        out.push('}');
        json_response(self.kind.status(), out)
    }
}

/// A JSON body with Prometheus's content type.
pub fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"status":"success","data":<data>}` plus non-empty warnings and infos.
pub fn success(data: &str, warnings: &[String], infos: &[String]) -> Response {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str(r#"{"status":"success","data":"#);
    out.push_str(data);
    if !warnings.is_empty() {
        out.push_str(r#","warnings":"#);
        write_str_array(&mut out, warnings);
    }
    if !infos.is_empty() {
        out.push_str(r#","infos":"#);
        write_str_array(&mut out, infos);
    }
    out.push('}');
    json_response(StatusCode::OK, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_like_go() {
        for (v, s) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (0.0, "0"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-07"),
            (0.000001, "0.000001"),
            (123456789.125, "123456789.125"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (1e300, "1e+300"),
        ] {
            assert_eq!(format_value(v), s, "{v}");
        }
    }

    /// The fast paths print what Rust's shortest `{v}` prints (in the range
    /// where Go's 'f' format applies).
    #[test]
    fn fast_paths_match_display() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut vals = vec![
            0.1,
            1.5,
            100.0,
            1e15,
            999_999_999_999_999.0,
            1e16,
            123.456,
            1e-6,
            2e-6,
            0.3,
        ];
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match i % 3 {
                0 => f64::from_bits(x),
                1 => (x % 10_000_000) as f64 / [1.0, 10.0, 1000.0, 3.0][(x % 4) as usize],
                _ => (x >> 11) as f64 * 1e-9,
            };
            vals.push(v);
            vals.push(-v);
        }
        for v in vals {
            let abs = v.abs();
            if v.is_finite() && v != 0.0 && (1e-6..1e21).contains(&abs) {
                assert_eq!(format_value(v), format!("{v}"), "{v:e}");
            }
        }
    }

    #[test]
    fn timestamps_and_strings_like_go() {
        let ts = |ms| {
            let mut s = String::new();
            write_ts(&mut s, ms);
            s
        };
        assert_eq!(ts(1435781451781), "1435781451.781");
        assert_eq!(ts(1500), "1.500");
        assert_eq!(ts(1005), "1.005");
        assert_eq!(ts(2000), "2");
        assert_eq!(ts(-1500), "-1.500");
        let mut s = String::new();
        write_str(&mut s, "a\"b\\<c>&\n\u{1}é");
        assert_eq!(s, r#""a\"b\\\u003cc\u003e\u0026\n\u0001é""#);
    }
}
