//! A small PromQL tokenizer used only to find the constructs the crate's
//! parser lacks. It keeps byte spans so the bridge can rewrite the query text
//! in place and leave everything else to `promql-parser`.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Identifier or keyword (metric names may contain `:`).
    Ident,
    /// A number: decimal, float, exponent or hex.
    Number,
    /// A duration literal such as `5m` or `1h30m`.
    Duration,
    /// A quoted string (any of the three quote styles).
    Str,
    /// Punctuation or an operator; the text is in `Token::text`.
    Punct,
}

/// One token with its byte span in the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

impl Token<'_> {
    /// Whether this is the punctuation `p`.
    pub fn is(&self, p: &str) -> bool {
        self.kind == Kind::Punct && self.text == p
    }

    /// Whether this is the identifier `word`, compared case-insensitively
    /// (PromQL keywords are case-insensitive).
    pub fn is_word(&self, word: &str) -> bool {
        self.kind == Kind::Ident && self.text.eq_ignore_ascii_case(word)
    }
}

/// Lexing failure: byte offset and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub pos: usize,
    pub msg: String,
}

/// Keywords that never end an expression (so a following word is not a
/// postfix modifier such as `offset` or `anchored`).
pub(crate) const NON_ENDING_WORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "atan2",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "anchored",
    "smoothed",
];

/// Longest first, so `</` wins over `<`.
const PUNCTS: &[&str] = &[
    "</", ">/", "==", "!=", "<=", ">=", "=~", "!~", "(", ")", "{", "}", "[", "]", ",", ":", "@",
    "+", "-", "*", "/", "%", "^", "<", ">", "=",
];

/// Duration units, longest first so `ms` wins over `m`.
pub(crate) const UNITS: &[(&str, i64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
    ("y", 31_536_000_000),
];

/// Splits `q` into tokens; comments (`# ...`) and whitespace are skipped.
pub(crate) fn lex(q: &str) -> Result<Vec<Token<'_>>, LexError> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if c == b'"' || c == b'\'' || c == b'`' {
            i = scan_string(b, i)?;
            Kind::Str
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let (end, kind) = scan_number(b, i);
            i = end;
            kind
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            Kind::Ident
        } else if let Some(p) = PUNCTS.iter().find(|p| q[i..].starts_with(**p)) {
            i += p.len();
            Kind::Punct
        } else {
            let ch = q[i..].chars().next().unwrap_or('?');
            return Err(LexError {
                pos: i,
                msg: format!("unexpected character: {ch:?}"),
            });
        };
        out.push(Token {
            kind,
            text: &q[start..i],
            start,
            end: i,
        });
    }
    Ok(out)
}

/// Returns the index just past the closing quote of the string at `i`.
fn scan_string(b: &[u8], mut i: usize) -> Result<usize, LexError> {
    let quote = b[i];
    let start = i;
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote != b'`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(LexError {
        pos: start,
        msg: "unterminated quoted string".into(),
    })
}

/// Scans a number or a duration starting at `i`.
fn scan_number(b: &[u8], mut i: usize) -> (usize, Kind) {
    let start = i;
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        return (i, Kind::Number);
    }
    let digits = |b: &[u8], mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    i = digits(b, i);
    let int_end = i;
    // A duration: one or more <digits><unit> groups.
    if let Some(end) = scan_duration_units(b, start, int_end) {
        return (end, Kind::Duration);
    }
    if i < b.len() && b[i] == b'.' {
        i = digits(b, i + 1);
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = digits(b, j);
        }
    }
    (i, Kind::Number)
}

/// If `b[start..]` is a duration such as `1h30m`, returns its end.
fn scan_duration_units(b: &[u8], start: usize, first_digits_end: usize) -> Option<usize> {
    let mut i = first_digits_end;
    let mut groups = 0;
    loop {
        if i == start || !b[i - 1].is_ascii_digit() {
            break;
        }
        let unit = UNITS
            .iter()
            .find(|(u, _)| b[i..].starts_with(u.as_bytes()))?;
        let after = i + unit.0.len();
        // `5mx` is not a duration; an identifier character must not follow.
        if after < b.len() && (b[after].is_ascii_alphabetic() || b[after] == b'_') {
            return None;
        }
        i = after;
        groups += 1;
        let digits_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            break;
        }
    }
    (groups > 0).then_some(i)
}

/// Milliseconds of a duration literal such as `1h30m` (`None` if malformed).
pub(crate) fn duration_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let ds = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: i64 = text[ds..i].parse().ok()?;
        let (u, mult) = UNITS.iter().find(|(u, _)| text[i..].starts_with(u))?;
        i += u.len();
        total = total.checked_add(n.checked_mul(*mult)?)?;
    }
    Some(total)
}

/// 1-based `line:col` of byte offset `pos`, as Prometheus prints positions.
pub(crate) fn line_col(q: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(q.len());
    let before = &q[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
