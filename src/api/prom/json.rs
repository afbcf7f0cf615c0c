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
    let frac = (t % 1000) as u16;
    if frac != 0 {
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    }
}

/// Writes the timestamps of one answer as [`write_ts`] does, reusing the
/// digits above the last four seconds' digits from the previous timestamp:
/// a range answer's timestamps climb by the step, so those leading digits
/// change once in thousands of points and only four digits (two table
/// lookups) and the milliseconds are formatted per point.
#[derive(Default)]
pub struct TsWriter {
    /// `seconds / 10^4` of the last timestamp and its decimal digits.
    high: Option<u64>,
    digits: itoa::Buffer,
    len: usize,
    text: [u8; 20],
}

/// `00`..`99`.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl TsWriter {
    /// Appends `ms` as seconds, exactly as [`write_ts`].
    pub fn write(&mut self, out: &mut String, ms: i64) {
        if ms < 10_000_000 {
            // Negative or below 10^4 s: no leading part to reuse.
            write_ts(out, ms);
            return;
        }
        let t = ms as u64;
        let secs = t / 1000;
        let (high, low) = (secs / 10_000, (secs % 10_000) as usize);
        if self.high != Some(high) {
            let s = self.digits.format(high).as_bytes();
            self.text[..s.len()].copy_from_slice(s);
            self.len = s.len();
            self.high = Some(high);
        }
        let frac = (t % 1000) as u16;
        let mut buf = [0u8; 28];
        buf[..self.len].copy_from_slice(&self.text[..self.len]);
        let mut n = self.len;
        let (a, b) = (low / 100 * 2, low % 100 * 2);
        buf[n..n + 4].copy_from_slice(&[PAIRS[a], PAIRS[a + 1], PAIRS[b], PAIRS[b + 1]]);
        n += 4;
        if frac != 0 {
            buf[n..n + 4].copy_from_slice(&[
                b'.',
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ]);
            n += 4;
        }
        out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
    }

    /// Appends `[t,"v"]` as [`write_point`] does.
    pub fn write_point(&mut self, out: &mut String, t: i64, v: f64) {
        out.push('[');
        self.write(out, t);
        out.push_str(",\"");
        push_value(out, v);
        out.push_str("\"]");
    }
}

/// Formats a float as Prometheus renders sample values (without quotes).
pub fn format_value(v: f64) -> String {
    let mut s = String::new();
    push_value(&mut s, v);
    s
}

/// Appends `v` as [`format_value`] formats it. Whole numbers below 2^53
/// print as integers (the common case, rendered by the thousand); other
/// values take ryu's shortest digits, which break a tie between two
/// shortest candidates to even as Go does (Rust's `{v}` rounds such ties
/// up: 88760710946704.125 is "88760710946704.12" in Go, ".13" in Rust).
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    let abs = v.abs();
    if abs < 1e15 && v.fract() == 0.0 {
        out.push_str(itoa::Buffer::new().format(v as i64));
        return;
    }
    let mut buf = ryu::Buffer::new();
    if (1e-5..1e16).contains(&abs) {
        // ryu writes these as plain decimals (`I.F`, `0.00F`), which is
        // Go's 'f' form of the same shortest digits, but for a `.0` after
        // whole numbers (those from 1e15 on; smaller ones took itoa above).
        let s = buf.format_finite(v);
        out.push_str(s.strip_suffix(".0").unwrap_or(s));
        return;
    }
    push_go_digits(out, v);
}

/// [`push_value`] for finite non-zero values by way of their significant
/// digits: every value comes out right here, the exponent forms included.
fn push_go_digits(out: &mut String, v: f64) {
    let abs = v.abs();
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(abs);
    // ryu writes `I.F`, `I.FeX` or `IeX`: collect the significant digits
    // and where the decimal point goes (value = 0.<digits> x 10^point).
    let (mant, exp) = match s.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let mut digits = [0u8; 40];
    let mut n = 0;
    let mut point = int.len() as i32 + exp;
    for &c in int.as_bytes().iter().chain(frac.as_bytes()) {
        if n == 0 && c == b'0' {
            point -= 1;
        } else if n < digits.len() {
            digits[n] = c;
            n += 1;
        }
    }
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    let sig = std::str::from_utf8(&digits[..n]).unwrap_or("0");
    if v < 0.0 {
        out.push('-');
    }
    if (1e-6..1e21).contains(&abs) {
        // Go's 'f' format.
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(sig);
        } else if point as usize >= n {
            out.push_str(sig);
            out.extend(std::iter::repeat_n('0', point as usize - n));
        } else {
            out.push_str(&sig[..point as usize]);
            out.push('.');
            out.push_str(&sig[point as usize..]);
        }
    } else {
        // Go's 'e' format: an exponent with a sign and at least two digits
        // (1e-07, 1.5e+21).
        out.push_str(&sig[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&sig[1..]);
        }
        let e = point - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
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
    out.push_str(SUCCESS_PREFIX);
    out.push_str(data);
    success_from(out, warnings, infos)
}

/// How a success body starts: a large answer is written after it into one
/// buffer and finished by [`success_from`], instead of being copied.
pub const SUCCESS_PREFIX: &str = r#"{"status":"success","data":"#;

/// Finishes `out`, [`SUCCESS_PREFIX`] and the data, as [`success`] does.
pub fn success_from(mut out: String, warnings: &[String], infos: &[String]) -> Response {
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

    /// Shortest digits that read back as the value (as many as Rust's
    /// `{v}` needs; ties between two candidates go to even, as in Go).
    #[test]
    fn values_round_trip_with_shortest_digits() {
        for (v, s) in [
            (88_760_710_946_704.0 + 0.125, "88760710946704.12"),
            (1_658_206_780_088_562.0 + 0.25, "1658206780088562.2"),
            (1e15, "1000000000000000"),
            (123.0, "123"),
            (0.001, "0.001"),
            (1.25e-6, "0.00000125"),
            (-3.5e22, "-3.5e+22"),
            (9.999e-7, "9.999e-07"),
            (2.5e20, "250000000000000000000"),
        ] {
            assert_eq!(format_value(v), s, "{v:e}");
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match i % 4 {
                0 => f64::from_bits(x),
                1 => (x % 10_000_000) as f64 / [1.0, 10.0, 1000.0, 3.0][(x % 4) as usize],
                2 => (x >> 11) as f64 * 1e-9,
                _ => (x >> 11) as f64 / [4.0, 8.0, 10.0, 100.0][(x % 4) as usize],
            };
            if !v.is_finite() || v == 0.0 {
                continue;
            }
            let got = format_value(v);
            assert_eq!(got.parse::<f64>().ok(), Some(v), "{v:e} -> {got}");
            if (1e-6..1e21).contains(&v.abs()) {
                assert_eq!(got.len(), format!("{v}").len(), "{v:e} -> {got}");
            }
        }
    }

    /// The plain-decimal shortcut writes what the digit path writes.
    #[test]
    fn plain_decimals_match_the_digit_path() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut checked = 0;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match i % 3 {
                0 => f64::from_bits(x),
                1 => (x >> 11) as f64 * 10f64.powi((x % 40) as i32 - 25),
                _ => -((x % 100_000_000) as f64) / 10f64.powi((x % 12) as i32),
            };
            if !v.is_finite() || v == 0.0 || !(1e-5..1e16).contains(&v.abs()) {
                continue;
            }
            let mut want = String::new();
            push_go_digits(&mut want, v);
            assert_eq!(format_value(v), want, "{v:e}");
            checked += 1;
        }
        for v in [
            1e-5,
            9.999999999999998e15,
            1e15 + 0.5,
            123.456,
            0.1,
            0.00012,
        ] {
            let mut want = String::new();
            push_go_digits(&mut want, v);
            assert_eq!(format_value(v), want, "{v:e}");
        }
        assert!(checked > 50_000, "{checked}");
    }

    /// The digit-reusing timestamp writer writes what `write_ts` writes.
    #[test]
    fn ts_writer_matches_write_ts() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut w = TsWriter::default();
        let mut t: i64 = -20_000;
        for i in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t = match i % 1000 {
                // Jumps (backwards too) between runs of steps.
                0 => (x % 4_000_000_000_000) as i64 - 1000,
                1 => (x % 20_000_000) as i64,
                _ => t + [60_000, 15_000, 1, 999, 1000, 7][(x % 6) as usize],
            };
            let (mut got, mut want) = (String::new(), String::new());
            w.write(&mut got, t);
            write_ts(&mut want, t);
            assert_eq!(got, want, "{t}");
        }
        for t in [
            10_000_000,
            9_999_999,
            99_999_999_999,
            100_000_000_000,
            i64::MAX,
        ] {
            let (mut got, mut want) = (String::new(), String::new());
            w.write(&mut got, t);
            write_ts(&mut want, t);
            assert_eq!(got, want, "{t}");
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
        assert_eq!(ts(1435781451999), "1435781451.999");
        assert_eq!(ts(1435781451256), "1435781451.256");
        assert_eq!(ts(1500), "1.500");
        assert_eq!(ts(1005), "1.005");
        assert_eq!(ts(2000), "2");
        assert_eq!(ts(-1500), "-1.500");
        let mut s = String::new();
        write_str(&mut s, "a\"b\\<c>&\n\u{1}é");
        assert_eq!(s, r#""a\"b\\\u003cc\u003e\u0026\n\u0001é""#);
    }
}
