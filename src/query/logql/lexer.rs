//! LogQL tokens. Numbers followed by units lex as durations (`5m`, `1h30m`,
//! `300ms`) or byte sizes (`42MB`, `1.5KiB`); `#` starts a comment.

use super::ParseError;

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifier or keyword (`sum`, `by`, `json`, label names).
    Ident(String),
    /// String literal, already unescaped.
    Str(String),
    /// Plain number.
    Num(f64),
    /// Duration in nanoseconds, with its text.
    Dur(i64, String),
    /// Byte size, with its text.
    Bytes(u64, String),
    /// Parser flag such as `--strict`.
    Flag(String),
    /// Punctuation or operator.
    Op(&'static str),
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token is named in error messages (Loki's yacc names).
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("IDENTIFIER {s}"),
            Tok::Str(_) => "STRING".into(),
            Tok::Num(_) => "NUMBER".into(),
            Tok::Dur(_, s) => format!("DURATION {s}"),
            Tok::Bytes(_, s) => format!("BYTES {s}"),
            Tok::Flag(s) => format!("PARSER_FLAG {s}"),
            Tok::Op(o) => o.to_string(),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// A token with its 1-based position.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Line (1-based).
    pub line: usize,
    /// Column (1-based, in characters).
    pub col: usize,
}

const OPS: [&str; 31] = [
    "|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=", "{", "}", "(", ")", "[", "]", ",",
    "=", "|", ">", "<", "+", "-", "*", "/", "%", "^", ".", ":", "!", "~",
];

/// Splits a query into tokens.
pub fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let adv = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize, chars: &[char]| {
        for _ in 0..n {
            if chars[*i] == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            adv(&mut i, &mut line, &mut col, 1, &chars);
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                adv(&mut i, &mut line, &mut col, 1, &chars);
            }
            continue;
        }
        let (tl, tc) = (line, col);
        let err = |msg: String| ParseError::at(tl, tc, msg);
        let tok;
        let start = i;
        if c == '"' || c == '`' {
            let mut j = i + 1;
            let mut s = String::new();
            let mut closed = false;
            while j < chars.len() {
                let d = chars[j];
                if d == c {
                    closed = true;
                    break;
                }
                if d == '\\' && c == '"' {
                    j += 1;
                    let Some(&e) = chars.get(j) else { break };
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        'a' => s.push('\x07'),
                        'b' => s.push('\x08'),
                        'f' => s.push('\x0c'),
                        'v' => s.push('\x0b'),
                        '\\' => s.push('\\'),
                        '"' => s.push('"'),
                        '\'' => s.push('\''),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = chars.iter().skip(j + 1).take(n).collect();
                            let v = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == n)
                                .and_then(char::from_u32)
                                .ok_or_else(|| {
                                    err(format!("invalid escape sequence \\{e}{hex} in string"))
                                })?;
                            s.push(v);
                            j += n;
                        }
                        '0'..='7' => {
                            let oct: String = chars.iter().skip(j).take(3).collect();
                            let v = u32::from_str_radix(&oct, 8)
                                .ok()
                                .filter(|_| oct.len() == 3)
                                .and_then(char::from_u32)
                                .ok_or_else(|| err("invalid octal escape in string".into()))?;
                            s.push(v);
                            j += 2;
                        }
                        other => {
                            return Err(err(format!("invalid escape sequence \\{other} in string")))
                        }
                    }
                    j += 1;
                    continue;
                }
                s.push(d);
                j += 1;
            }
            if !closed {
                return Err(err("literal not terminated".into()));
            }
            tok = Tok::Str(s);
            let n = j + 1 - i;
            adv(&mut i, &mut line, &mut col, n, &chars);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_ascii_alphanumeric() || chars[j] == '.' || chars[j] == 'µ')
            {
                // allow exponent signs: 1e-3
                j += 1;
                if j < chars.len()
                    && (chars[j] == '-' || chars[j] == '+')
                    && matches!(chars[j - 1], 'e' | 'E')
                    && chars[i..j - 1]
                        .iter()
                        .all(|c| c.is_ascii_digit() || *c == '.')
                    && chars.get(j + 1).is_some_and(|d| d.is_ascii_digit())
                {
                    j += 1;
                }
            }
            let text: String = chars[i..j].iter().collect();
            tok = classify_number(&text).ok_or_else(|| err(format!("invalid number {text:?}")))?;
            let n = j - i;
            adv(&mut i, &mut line, &mut col, n, &chars);
        } else if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            tok = Tok::Ident(chars[i..j].iter().collect());
            let n = j - i;
            adv(&mut i, &mut line, &mut col, n, &chars);
        } else if c == '-'
            && chars.get(i + 1) == Some(&'-')
            && chars.get(i + 2).is_some_and(|d| d.is_alphabetic())
        {
            let mut j = i + 2;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '-') {
                j += 1;
            }
            tok = Tok::Flag(chars[i..j].iter().collect());
            let n = j - i;
            adv(&mut i, &mut line, &mut col, n, &chars);
        } else {
            let rest: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = OPS
                .iter()
                .find(|o| rest.starts_with(**o))
                .ok_or_else(|| err(format!("unexpected character {c:?}")))?;
            tok = Tok::Op(op);
            adv(&mut i, &mut line, &mut col, op.chars().count(), &chars);
        }
        let _ = start;
        out.push(Token {
            tok,
            line: tl,
            col: tc,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(out)
}

fn classify_number(text: &str) -> Option<Tok> {
    if let Ok(v) = text.parse::<f64>() {
        if text
            .chars()
            .all(|c| c.is_ascii_digit() || ".eE+-".contains(c))
        {
            return Some(Tok::Num(v));
        }
    }
    if text.starts_with("0x") || text.starts_with("0X") {
        return i64::from_str_radix(&text[2..], 16)
            .ok()
            .map(|v| Tok::Num(v as f64));
    }
    if let Some(ns) = parse_go_duration(text) {
        return Some(Tok::Dur(ns, text.to_string()));
    }
    parse_bytes(text).map(|b| Tok::Bytes(b, text.to_string()))
}

/// Parses a Go duration extended with `d`, `w`, `y` (`1h30m`, `1.5s`,
/// `300ms`) into nanoseconds. A leading `-` is allowed.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if s == "0" {
        return Some(0);
    }
    let b: Vec<char> = s.chars().collect();
    if b.is_empty() {
        return None;
    }
    let mut i = 0;
    let mut total = 0f64;
    while i < b.len() {
        let st = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == '.') {
            i += 1;
        }
        let num: String = b[st..i].iter().collect();
        let n: f64 = num.parse().ok()?;
        let us = i;
        while i < b.len() && !(b[i].is_ascii_digit() || b[i] == '.') {
            i += 1;
        }
        let unit: String = b[us..i].iter().collect();
        let mul = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            "w" => 7.0 * 86400e9,
            "y" => 365.0 * 86400e9,
            _ => return None,
        };
        total += n * mul;
    }
    let v = total.round() as i64;
    Some(if neg { -v } else { v })
}

/// Parses a humanized byte size (`42MB`, `1.5KiB`, `20B`, `2 KB`) into bytes;
/// SI units are powers of 1000, IEC units powers of 1024, as go-humanize.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mul: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "pb" | "p" => 1e15,
        "eb" | "e" => 1e18,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024f64.powi(2),
        "gib" | "gi" => 1024f64.powi(3),
        "tib" | "ti" => 1024f64.powi(4),
        "pib" | "pi" => 1024f64.powi(5),
        "eib" | "ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some((n * mul) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_units_strings_and_ops() {
        assert_eq!(
            toks(r#"{a="b\"c"} |= `x\y` [1h30m] 42MB --strict 1.5 # c"#),
            vec![
                Tok::Op("{"),
                Tok::Ident("a".into()),
                Tok::Op("="),
                Tok::Str("b\"c".into()),
                Tok::Op("}"),
                Tok::Op("|="),
                Tok::Str("x\\y".into()),
                Tok::Op("["),
                Tok::Dur(5_400_000_000_000, "1h30m".into()),
                Tok::Op("]"),
                Tok::Bytes(42_000_000, "42MB".into()),
                Tok::Flag("--strict".into()),
                Tok::Num(1.5),
                Tok::Eof,
            ]
        );
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_bytes("1.5KiB"), Some(1536));
        assert!(lex("\"abc").is_err());
    }
}
