//! String literals with byte escapes. Go keeps `\xNN` and octal `\NNN`
//! escapes as raw bytes, which may not be valid UTF-8 (`"a\xc5z"`); the crate
//! decodes each escape as the code point U+00NN instead, which changes the
//! meaning (`"\xc3\xa9"` is `é` in Go, `Ã©` in the crate). The bridge
//! decodes such literals itself: valid UTF-8 stays text, and every byte that
//! is not part of valid UTF-8 becomes the private-use character
//! `U+10FF00 + byte` so the evaluator can tell (`has_raw_bytes`) and print
//! the string as Go would (`go_quote`).

use std::fmt::Write;

/// First of the 256 private-use characters standing for raw bytes.
const RAW_BASE: u32 = 0x10_FF00;

/// The raw byte a character stands for, if it is one.
fn raw_byte(c: char) -> Option<u8> {
    let v = c as u32;
    (RAW_BASE..=RAW_BASE + 0xFF)
        .contains(&v)
        .then(|| (v - RAW_BASE) as u8)
}

/// Whether `s` (a string from the AST) holds bytes that are not valid UTF-8
/// in the query, e.g. the label name of `count_values("a\xc5z", x)`, which
/// Prometheus rejects as `invalid label name "a\xc5z"`.
pub fn has_raw_bytes(s: &str) -> bool {
    s.chars().any(|c| raw_byte(c).is_some())
}

/// The bytes Prometheus sees for the string `s` from the AST.
pub fn raw_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match raw_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// `s` quoted as Go's `%q` prints it (as in Prometheus's error messages):
/// raw bytes as `\xNN`, control characters escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match (raw_byte(c), c) {
            (Some(b), _) => write!(out, "\\x{b:02x}").unwrap_or(()),
            (None, '"') => out.push_str("\\\""),
            (None, '\\') => out.push_str("\\\\"),
            (None, '\n') => out.push_str("\\n"),
            (None, '\r') => out.push_str("\\r"),
            (None, '\t') => out.push_str("\\t"),
            (None, '\x07') => out.push_str("\\a"),
            (None, '\x08') => out.push_str("\\b"),
            (None, '\x0c') => out.push_str("\\f"),
            (None, '\x0b') => out.push_str("\\v"),
            (None, c) if (c as u32) < 0x20 || c as u32 == 0x7f => {
                write!(out, "\\x{:02x}", c as u32).unwrap_or(())
            }
            (None, c) => out.push(c),
        }
    }
    out.push('"');
    out
}

/// If the quoted literal `lit` uses byte escapes, the literal to give the
/// crate instead (see the module docs); `None` to leave it alone.
pub(crate) fn rewrite_literal(lit: &str) -> Option<String> {
    let quote = lit.as_bytes().first().copied()?;
    if quote == b'`' || !has_byte_escape(lit) {
        return None;
    }
    let bytes = go_unquote(lit)?;
    let text = bytes_to_text(&bytes);
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => write!(out, "\\u{:04x}", c as u32).unwrap_or(()),
            c => out.push(c),
        }
    }
    out.push('"');
    Some(out)
}

/// Whether `lit` contains a `\x` or octal escape.
fn has_byte_escape(lit: &str) -> bool {
    let b = lit.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\\' {
            if b[i + 1] == b'x' || (b'0'..=b'7').contains(&b[i + 1]) {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Go's `strconv.Unquote` for `"..."` and `'...'` literals, to bytes.
fn go_unquote(lit: &str) -> Option<Vec<u8>> {
    let inner = lit.get(1..lit.len().checked_sub(1)?)?;
    let b = inner.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1)?;
        i += 2;
        let simple = match e {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' | b'"' | b'\'' => Some(e),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
            continue;
        }
        match e {
            b'x' => {
                out.push(u8::from_str_radix(inner.get(i..i + 2)?, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let v = u32::from_str_radix(inner.get(i - 1..i + 2)?, 8).ok()?;
                out.push(u8::try_from(v).ok()?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let v = u32::from_str_radix(inner.get(i..i + n)?, 16).ok()?;
                let c = char::from_u32(v)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Valid UTF-8 runs as text, other bytes as raw-byte characters.
fn bytes_to_text(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                for &b in &rest[..bad] {
                    out.push(char::from_u32(RAW_BASE + u32::from(b)).unwrap_or('\u{FFFD}'));
                }
                bytes = &rest[bad..];
            }
        }
    }
}
