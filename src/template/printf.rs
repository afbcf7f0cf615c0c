//! Go's `fmt` number formatting and `Sprintf`, as far as templates use them.

use super::Value;

/// Decimal digits of |v| (no trailing zeros) and the decimal point position:
/// v = 0.d1d2d3... x 10^dp. `prec` rounds to that many significant digits.
fn digits(v: f64, prec: Option<usize>) -> (Vec<u8>, i32) {
    if v == 0.0 {
        return (vec![], 0);
    }
    let s = match prec {
        None => format!("{:e}", v.abs()),
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
    };
    let (mant, exp) = s.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    (d, exp + 1)
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

fn fmt_e(neg: bool, d: &[u8], dp: i32, prec: usize, out: &mut String) {
    if neg {
        out.push('-');
    }
    out.push(*d.first().unwrap_or(&b'0') as char);
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(*d.get(i).unwrap_or(&b'0') as char);
        }
    }
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
}

fn fmt_f(neg: bool, d: &[u8], dp: i32, frac: usize, out: &mut String) {
    if neg {
        out.push('-');
    }
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(*d.get(i).unwrap_or(&b'0') as char);
        }
    } else {
        out.push('0');
    }
    if frac > 0 {
        out.push('.');
        for i in 1..=frac as i32 {
            let idx = dp + i - 1;
            let c = if idx >= 0 {
                *d.get(idx as usize).unwrap_or(&b'0')
            } else {
                b'0'
            };
            out.push(c as char);
        }
    }
}

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)` (`prec` None = shortest),
/// with `+Inf`/`-Inf`/`NaN` as `fmt` prints them.
pub fn format_float_g(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let neg = v.is_sign_negative() && v != 0.0;
    let prec = prec.map(|p| p.max(1));
    let (d, dp) = digits(v, prec);
    let nd = d.len() as i32;
    let shortest = prec.is_none();
    let mut p = prec.map(|p| p as i32).unwrap_or(nd.max(1));
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let mut out = String::new();
    if !d.is_empty() && (exp < -4 || exp >= eprec) {
        if p > nd {
            p = nd;
        }
        fmt_e(neg, &d, dp, (p - 1).max(0) as usize, &mut out);
    } else {
        if p > dp {
            p = nd;
        }
        fmt_f(neg, &d, dp, (p - dp).max(0) as usize, &mut out);
    }
    out
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)` (Prometheus's alert values).
pub fn format_float_e(v: f64) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (d, dp) = digits(v, None);
    let mut out = String::new();
    fmt_e(v < 0.0, &d, dp, d.len().saturating_sub(1), &mut out);
    out
}

fn format_f(v: f64, prec: usize) -> String {
    special(v).unwrap_or_else(|| format!("{v:.prec$}"))
}

fn format_e(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (d, dp) = digits(v, Some(prec + 1));
    let mut out = String::new();
    fmt_e(v < 0.0, &d, dp, prec, &mut out);
    out
}

/// Go's `strconv.Quote` for printable text (control characters as `\x..`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let len = s.chars().count();
    if len >= w {
        return s;
    }
    let fill = w - len;
    if spec.minus {
        return s + &" ".repeat(fill);
    }
    if spec.zero && numeric {
        let (sign, rest) = match s.strip_prefix(['-', '+']) {
            Some(r) => (&s[..1], r),
            None => ("", s.as_str()),
        };
        return format!("{sign}{}{rest}", "0".repeat(fill));
    }
    " ".repeat(fill) + &s
}

fn bad_verb(verb: char, v: &Value) -> String {
    format!("%!{verb}({}={})", v.type_name(), v.to_go_string())
}

fn format_one(verb: char, spec: &Spec, v: &Value) -> String {
    let signed = |s: String, neg: bool| {
        if !neg && spec.plus {
            format!("+{s}")
        } else if !neg && spec.space {
            format!(" {s}")
        } else {
            s
        }
    };
    let (s, numeric) = match (verb, v) {
        ('v' | 's', Value::Str(s)) => (
            match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            false,
        ),
        ('v', Value::Float(f)) | ('g', Value::Float(f)) => {
            (signed(format_float_g(*f, spec.prec), *f < 0.0), true)
        }
        ('v' | 'd', Value::Int(i)) => (signed(i.to_string(), *i < 0), true),
        ('f' | 'F', Value::Float(f)) => {
            (signed(format_f(*f, spec.prec.unwrap_or(6)), *f < 0.0), true)
        }
        ('f' | 'F', Value::Int(i)) => (bad_verb(verb, &Value::Int(*i)), false),
        ('e', Value::Float(f)) => (signed(format_e(*f, spec.prec.unwrap_or(6)), *f < 0.0), true),
        ('x', Value::Int(i)) => (format!("{i:x}"), true),
        ('X', Value::Int(i)) => (format!("{i:X}"), true),
        ('x', Value::Str(s)) => (s.bytes().map(|b| format!("{b:02x}")).collect(), false),
        ('q', Value::Str(s)) => (go_quote(s), false),
        ('t' | 'v', Value::Bool(b)) => (b.to_string(), false),
        ('v' | 's', other) => (other.to_go_string(), false),
        (_, other) => (bad_verb(verb, other), false),
    };
    pad(s, spec, numeric)
}

/// Go's `fmt.Sprintf` for the verbs templates use (`%s %v %d %f %e %g %q
/// %x %X %t %%`, flags `-+0 `, width and precision).
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec {
            minus: false,
            plus: false,
            zero: false,
            space: false,
            width: None,
            prec: None,
        };
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => out.push_str(&format_one(verb, &spec, v)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.to_go_string()))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}
