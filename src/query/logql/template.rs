//! The subset of Go's `text/template` that Loki's `line_format` and
//! `label_format` use: `{{.label}}`, pipelines, `if`/`else if`/`else`,
//! `with`, `range`, trim markers, comments, and the template functions of
//! Loki's `pkg/logql/log/fmt.go` (Sprig subset plus Loki's own).

use super::lexer::{parse_bytes, parse_go_duration};
use super::pipeline::LabelMap;
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use regex::Regex;

/// What a template sees: labels as `.name`, plus `__line__` and `__timestamp__`.
pub struct TemplateData<'a> {
    /// All labels of the entry.
    pub labels: &'a LabelMap,
    /// The current line.
    pub line: &'a str,
    /// Entry timestamp (ns).
    pub ts: i64,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Vec<(Pipe, Vec<Node>)>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipe {
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Dot,
    Field(Vec<String>),
    Func(String),
    Lit(V),
    Pipe(Pipe),
}

/// A template value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    /// String.
    Str(String),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Bool.
    Bool(bool),
    /// Time.
    Time(DateTime<FixedOffset>),
    /// A list (from `fromJson`).
    List(Vec<V>),
    /// A map (from `fromJson` or the dot).
    Map(Vec<(String, V)>),
    /// No value.
    Nil,
}

impl V {
    fn truthy(&self) -> bool {
        match self {
            V::Str(s) => !s.is_empty(),
            V::Int(i) => *i != 0,
            V::Float(f) => *f != 0.0,
            V::Bool(b) => *b,
            V::Time(_) => true,
            V::List(l) => !l.is_empty(),
            V::Map(m) => !m.is_empty(),
            V::Nil => false,
        }
    }

    fn to_s(&self) -> String {
        match self {
            V::Str(s) => s.clone(),
            V::Int(i) => i.to_string(),
            V::Float(f) => go_float(*f),
            V::Bool(b) => b.to_string(),
            V::Time(t) => go_time_string(t),
            V::List(l) => format!("[{}]", l.iter().map(V::to_s).collect::<Vec<_>>().join(" ")),
            V::Map(m) => format!(
                "map[{}]",
                m.iter()
                    .map(|(k, v)| format!("{k}:{}", v.to_s()))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            V::Nil => "<no value>".into(),
        }
    }

    fn to_f(&self) -> f64 {
        match self {
            V::Str(s) => s.trim().parse().unwrap_or(0.0),
            V::Int(i) => *i as f64,
            V::Float(f) => *f,
            V::Bool(b) => *b as i64 as f64,
            _ => 0.0,
        }
    }

    fn to_i(&self) -> i64 {
        match self {
            V::Str(s) => {
                let s = s.trim();
                s.parse::<i64>()
                    .or_else(|_| {
                        s.parse::<f64>()
                            .map(|f| f as i64)
                            .map_err(|_| ())
                            .and(Err::<i64, ()>(()))
                    })
                    .unwrap_or(0)
            }
            V::Int(i) => *i,
            V::Float(f) => *f as i64,
            V::Bool(b) => *b as i64,
            _ => 0,
        }
    }
}

/// Go's `%v` for float64: shortest representation, exponent outside [1e-4, 1e21).
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let s = format!("{f:e}");
        // Rust: 1e21 / 1.5e-5 ; Go: 1e+21 / 1.5e-05
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', e),
        };
        return format!("{m}e{sign}{digits:0>2}");
    }
    format!("{f}")
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

// ------------------------------------------------------------------ parsing

struct Lx<'a> {
    s: &'a str,
    pos: usize,
}

impl Template {
    /// Parses a template.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut items = Vec::new();
        let mut rest = src;
        let mut trim_next = false;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                let mut t = rest.to_string();
                if trim_next {
                    t = t.trim_start().to_string();
                }
                items.push(Item::Text(t));
                break;
            };
            let mut text = rest[..open].to_string();
            if trim_next {
                text = text.trim_start().to_string();
            }
            let mut inner_start = open + 2;
            if rest[inner_start..].starts_with("- ") || rest[inner_start..].starts_with("-\t") {
                text = text.trim_end().to_string();
                inner_start += 1;
            }
            items.push(Item::Text(text));
            let close = rest[inner_start..]
                .find("}}")
                .map(|i| i + inner_start)
                .ok_or_else(|| "template: unclosed action".to_string())?;
            let mut inner = &rest[inner_start..close];
            trim_next = false;
            if inner.ends_with(" -") || inner.ends_with("\t-") {
                inner = &inner[..inner.len() - 1];
                trim_next = true;
            }
            let inner = inner.trim();
            if !(inner.starts_with("/*") && inner.ends_with("*/")) {
                items.push(Item::Action(inner.to_string()));
            }
            rest = &rest[close + 2..];
        }
        let mut it = items.into_iter().peekable();
        let (nodes, end) = parse_nodes(&mut it)?;
        if let Some(e) = end {
            return Err(format!("template: unexpected {{{{{e}}}}}"));
        }
        Ok(Template { nodes })
    }

    /// Renders with the given data.
    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, String> {
        let mut out = String::new();
        let dot = V::Nil;
        exec(&self.nodes, data, &dot, &mut out)?;
        Ok(out)
    }
}

enum Item {
    Text(String),
    Action(String),
}

type Items = std::iter::Peekable<std::vec::IntoIter<Item>>;

/// Parses nodes until `end`/`else`; returns the terminating keyword action.
fn parse_nodes(it: &mut Items) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while let Some(item) = it.next() {
        match item {
            Item::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t))
                }
            }
            Item::Action(a) => {
                let kw = a.split_whitespace().next().unwrap_or("");
                match kw {
                    "end" | "else" => return Ok((nodes, Some(a))),
                    "if" => {
                        let mut branches = Vec::new();
                        let mut cond = parse_pipe(&a[2..])?;
                        loop {
                            let (body, end) = parse_nodes(it)?;
                            branches.push((cond, body));
                            let end = end.ok_or("template: missing {{end}} for if")?;
                            if end == "end" {
                                nodes.push(Node::If(branches, Vec::new()));
                                break;
                            }
                            let rest = end["else".len()..].trim();
                            if let Some(c) = rest.strip_prefix("if ") {
                                cond = parse_pipe(c)?;
                                continue;
                            }
                            let (els, end2) = parse_nodes(it)?;
                            if end2.as_deref() != Some("end") {
                                return Err("template: missing {{end}} for else".into());
                            }
                            nodes.push(Node::If(branches, els));
                            break;
                        }
                    }
                    "with" | "range" => {
                        let p = parse_pipe(&a[kw.len()..])?;
                        let (body, end) = parse_nodes(it)?;
                        let end =
                            end.ok_or_else(|| format!("template: missing {{{{end}}}} for {kw}"))?;
                        let els = if end == "end" {
                            Vec::new()
                        } else {
                            let (els, e2) = parse_nodes(it)?;
                            if e2.as_deref() != Some("end") {
                                return Err("template: missing {{end}}".into());
                            }
                            els
                        };
                        nodes.push(if kw == "with" {
                            Node::With(p, body, els)
                        } else {
                            Node::Range(p, body, els)
                        });
                    }
                    _ => nodes.push(Node::Action(parse_pipe(&a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_pipe(s: &str) -> Result<Pipe, String> {
    let mut lx = Lx { s, pos: 0 };
    let p = lx.pipe()?;
    lx.ws();
    if lx.pos < s.len() {
        return Err(format!("template: unexpected {:?} in action", &s[lx.pos..]));
    }
    Ok(p)
}

impl Lx<'_> {
    fn ws(&mut self) {
        while self.s[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.s[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn pipe(&mut self) -> Result<Pipe, String> {
        let mut cmds = Vec::new();
        loop {
            let mut args = Vec::new();
            loop {
                self.ws();
                match self.peek() {
                    None | Some('|') | Some(')') => break,
                    _ => args.push(self.arg()?),
                }
            }
            if args.is_empty() {
                return Err("template: missing value for command".into());
            }
            cmds.push(args);
            if self.peek() == Some('|') {
                self.pos += 1;
                continue;
            }
            break;
        }
        Ok(Pipe { cmds })
    }
    fn arg(&mut self) -> Result<Arg, String> {
        let rest = &self.s[self.pos..];
        let c = rest.chars().next().unwrap_or(' ');
        if c == '(' {
            self.pos += 1;
            let p = self.pipe()?;
            if self.peek() != Some(')') {
                return Err("template: unclosed left paren".into());
            }
            self.pos += 1;
            return Ok(Arg::Pipe(p));
        }
        if c == '"' {
            let mut out = String::new();
            let mut chars = rest[1..].char_indices();
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '"' => {
                        self.pos += i + 2;
                        return Ok(Arg::Lit(V::Str(out)));
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, 't')) => out.push('\t'),
                        Some((_, 'r')) => out.push('\r'),
                        Some((_, e)) => out.push(e),
                        None => break,
                    },
                    ch => out.push(ch),
                }
            }
            return Err("template: unterminated quoted string".into());
        }
        if c == '`' {
            let end = rest[1..]
                .find('`')
                .ok_or("template: unterminated raw string")?;
            self.pos += end + 2;
            return Ok(Arg::Lit(V::Str(rest[1..end + 1].to_string())));
        }
        let end = rest
            .find(|ch: char| ch.is_whitespace() || ch == '|' || ch == ')' || ch == '(')
            .unwrap_or(rest.len());
        let word = &rest[..end];
        self.pos += end;
        if word == "." {
            return Ok(Arg::Dot);
        }
        if let Some(f) = word.strip_prefix('.') {
            return Ok(Arg::Field(f.split('.').map(str::to_string).collect()));
        }
        if word.starts_with('$') {
            return Err(format!("template: variables are not supported ({word})"));
        }
        match word {
            "true" => return Ok(Arg::Lit(V::Bool(true))),
            "false" => return Ok(Arg::Lit(V::Bool(false))),
            "nil" => return Ok(Arg::Lit(V::Nil)),
            _ => {}
        }
        if word.starts_with(|ch: char| ch.is_ascii_digit() || ch == '-' || ch == '+') {
            if let Ok(i) = word.parse::<i64>() {
                return Ok(Arg::Lit(V::Int(i)));
            }
            if let Ok(f) = word.parse::<f64>() {
                return Ok(Arg::Lit(V::Float(f)));
            }
            return Err(format!("template: bad number syntax: {word:?}"));
        }
        if !word.is_empty() && word.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
            if !FUNCS.contains(&word) {
                return Err(format!("template: function {word:?} not defined"));
            }
            return Ok(Arg::Func(word.to_string()));
        }
        Err(format!("template: unexpected {word:?}"))
    }
}

// ------------------------------------------------------------------ execution

fn exec(nodes: &[Node], d: &TemplateData<'_>, dot: &V, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&eval_pipe(p, d, dot)?.to_s()),
            Node::If(branches, els) => {
                let mut done = false;
                for (c, body) in branches {
                    if eval_pipe(c, d, dot)?.truthy() {
                        exec(body, d, dot, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    exec(els, d, dot, out)?;
                }
            }
            Node::With(p, body, els) => {
                let v = eval_pipe(p, d, dot)?;
                if v.truthy() {
                    exec(body, d, &v, out)?;
                } else {
                    exec(els, d, dot, out)?;
                }
            }
            Node::Range(p, body, els) => {
                let v = eval_pipe(p, d, dot)?;
                let items: Vec<V> = match v {
                    V::List(l) => l,
                    V::Map(m) => m.into_iter().map(|(_, v)| v).collect(),
                    V::Int(n) => (0..n).map(V::Int).collect(),
                    V::Nil => Vec::new(),
                    other => {
                        return Err(format!(
                            "template: range can't iterate over {}",
                            other.to_s()
                        ))
                    }
                };
                if items.is_empty() {
                    exec(els, d, dot, out)?;
                }
                for it in &items {
                    exec(body, d, it, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipe(p: &Pipe, d: &TemplateData<'_>, dot: &V) -> Result<V, String> {
    let mut prev: Option<V> = None;
    for cmd in &p.cmds {
        prev = Some(eval_cmd(cmd, d, dot, prev.take())?);
    }
    Ok(prev.unwrap_or(V::Nil))
}

fn field(d: &TemplateData<'_>, dot: &V, path: &[String]) -> V {
    let mut cur = match dot {
        V::Map(_) => dot.clone(),
        _ => {
            let name = path[0].as_str();
            let v = match name {
                "__line__" => V::Str(d.line.to_string()),
                "__timestamp__" => V::Time(
                    Utc.timestamp_nanos(d.ts)
                        .with_timezone(&FixedOffset::east_opt(0).expect("utc")),
                ),
                _ => V::Str(d.labels.get(name).cloned().unwrap_or_default()),
            };
            if path.len() == 1 {
                return v;
            }
            return path[1..].iter().fold(v, |v, k| lookup(&v, k));
        }
    };
    for k in path {
        cur = lookup(&cur, k);
    }
    cur
}

fn lookup(v: &V, k: &str) -> V {
    match v {
        V::Map(m) => m
            .iter()
            .find(|(n, _)| n == k)
            .map_or(V::Nil, |(_, v)| v.clone()),
        _ => V::Nil,
    }
}

fn eval_arg(a: &Arg, d: &TemplateData<'_>, dot: &V) -> Result<V, String> {
    Ok(match a {
        Arg::Dot => match dot {
            V::Nil => V::Map(
                d.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), V::Str(v.clone())))
                    .collect(),
            ),
            other => other.clone(),
        },
        Arg::Field(p) => field(d, dot, p),
        Arg::Func(_) => eval_cmd(std::slice::from_ref(a), d, dot, None)?,
        Arg::Lit(v) => v.clone(),
        Arg::Pipe(p) => eval_pipe(p, d, dot)?,
    })
}

fn eval_cmd(cmd: &[Arg], d: &TemplateData<'_>, dot: &V, piped: Option<V>) -> Result<V, String> {
    if let Arg::Func(f) = &cmd[0] {
        match f.as_str() {
            "__line__" => return Ok(V::Str(d.line.to_string())),
            "__timestamp__" => return Ok(field(d, &V::Nil, &["__timestamp__".to_string()])),
            _ => {}
        }
        // and/or short-circuit on already evaluated values; fine for templates.
        let mut args = Vec::with_capacity(cmd.len());
        for a in &cmd[1..] {
            args.push(eval_arg(a, d, dot)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        return call(f, args);
    }
    if cmd.len() > 1 || piped.is_some() {
        return Err("template: can't give argument to non-function".into());
    }
    eval_arg(&cmd[0], d, dot)
}

const FUNCS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "urlquery",
    "html",
    "js", // Go builtins
    "__line__",
    "__timestamp__", // Loki's entry accessors
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

fn argn(f: &str, args: &[V], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "template: wrong number of args for {f}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn cmp_vals(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::Int(_) | V::Float(_), V::Int(_) | V::Float(_)) => a.to_f().partial_cmp(&b.to_f()),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn call(f: &str, a: Vec<V>) -> Result<V, String> {
    let s = |i: usize| a.get(i).map(V::to_s).unwrap_or_default();
    let last = || a.last().map(V::to_s).unwrap_or_default();
    Ok(match f {
        "and" => a
            .iter()
            .find(|v| !v.truthy())
            .or(a.last())
            .cloned()
            .unwrap_or(V::Nil),
        "or" => a
            .iter()
            .find(|v| v.truthy())
            .or(a.last())
            .cloned()
            .unwrap_or(V::Nil),
        "not" => {
            argn(f, &a, 1)?;
            V::Bool(!a[0].truthy())
        }
        "len" => {
            argn(f, &a, 1)?;
            V::Int(match &a[0] {
                V::List(l) => l.len(),
                V::Map(m) => m.len(),
                v => v.to_s().len(),
            } as i64)
        }
        "index" => {
            let mut cur = a.first().cloned().unwrap_or(V::Nil);
            for k in a.iter().skip(1) {
                cur = match (&cur, k) {
                    (V::List(l), k) => l.get(k.to_i() as usize).cloned().unwrap_or(V::Nil),
                    (V::Map(_), k) => lookup(&cur, &k.to_s()),
                    _ => return Err("template: can't index item".into()),
                };
            }
            cur
        }
        "print" => V::Str(a.iter().map(V::to_s).collect::<Vec<_>>().join("")),
        "println" => V::Str(a.iter().map(V::to_s).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => V::Str(go_printf(&s(0), &a[1.min(a.len())..])),
        "eq" => {
            if a.len() < 2 {
                return Err("template: missing argument for comparison".into());
            }
            V::Bool(
                a[1..]
                    .iter()
                    .any(|b| cmp_vals(&a[0], b) == Some(std::cmp::Ordering::Equal)),
            )
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            argn(f, &a, 2)?;
            let o = cmp_vals(&a[0], &a[1])
                .ok_or_else(|| "template: incompatible types for comparison".to_string())?;
            use std::cmp::Ordering::*;
            V::Bool(match f {
                "ne" => o != Equal,
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            })
        }
        "urlquery" | "urlencode" => V::Str(url_encode(&last())),
        "urldecode" => V::Str(url_decode(&last())?),
        "html" | "js" => V::Str(last()),
        "ToLower" | "lower" => V::Str(last().to_lowercase()),
        "ToUpper" | "upper" => V::Str(last().to_uppercase()),
        "title" => V::Str(title(&last())),
        "Replace" => {
            argn(f, &a, 4)?;
            let n = a[3].to_i();
            V::Str(if n < 0 {
                s(0).replace(&s(1), &s(2))
            } else {
                s(0).replacen(&s(1), &s(2), n as usize)
            })
        }
        "replace" => {
            argn(f, &a, 3)?;
            V::Str(s(2).replace(&s(0), &s(1)))
        }
        "Trim" => V::Str(s(0).trim_matches(|c| s(1).contains(c)).to_string()),
        "TrimLeft" => V::Str(s(0).trim_start_matches(|c| s(1).contains(c)).to_string()),
        "TrimRight" => V::Str(s(0).trim_end_matches(|c| s(1).contains(c)).to_string()),
        "TrimPrefix" => V::Str(s(0).strip_prefix(&s(1)).map_or(s(0), str::to_string)),
        "TrimSuffix" => V::Str(s(0).strip_suffix(&s(1)).map_or(s(0), str::to_string)),
        "TrimSpace" | "trim" => V::Str(last().trim().to_string()),
        "trimAll" => {
            argn(f, &a, 2)?;
            V::Str(s(1).trim_matches(|c| s(0).contains(c)).to_string())
        }
        "trimPrefix" => {
            argn(f, &a, 2)?;
            V::Str(s(1).strip_prefix(&s(0)).map_or(s(1), str::to_string))
        }
        "trimSuffix" => {
            argn(f, &a, 2)?;
            V::Str(s(1).strip_suffix(&s(0)).map_or(s(1), str::to_string))
        }
        "trunc" => {
            argn(f, &a, 2)?;
            let n = a[0].to_i();
            let src: Vec<char> = s(1).chars().collect();
            let l = src.len() as i64;
            V::Str(if n < 0 && -n < l {
                src[(l + n) as usize..].iter().collect()
            } else if n >= 0 && n < l {
                src[..n as usize].iter().collect()
            } else {
                s(1)
            })
        }
        "substr" => {
            argn(f, &a, 3)?;
            let (st, en) = (a[0].to_i(), a[1].to_i());
            let src: Vec<char> = s(2).chars().collect();
            let l = src.len() as i64;
            V::Str(if st < 0 {
                src[..en.clamp(0, l) as usize].iter().collect()
            } else if en < 0 || en > l {
                src[st.min(l) as usize..].iter().collect()
            } else {
                src[st.min(en) as usize..en as usize].iter().collect()
            })
        }
        "contains" => {
            argn(f, &a, 2)?;
            V::Bool(s(1).contains(&s(0)))
        }
        "hasPrefix" => {
            argn(f, &a, 2)?;
            V::Bool(s(1).starts_with(&s(0)))
        }
        "hasSuffix" => {
            argn(f, &a, 2)?;
            V::Bool(s(1).ends_with(&s(0)))
        }
        "indent" | "nindent" => {
            argn(f, &a, 2)?;
            let pad = " ".repeat(a[0].to_i().max(0) as usize);
            let body = format!("{pad}{}", s(1).replace('\n', &format!("\n{pad}")));
            V::Str(if f == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "repeat" => {
            argn(f, &a, 2)?;
            V::Str(s(1).repeat(a[0].to_i().max(0) as usize))
        }
        "int" => V::Int(a.first().map_or(0, V::to_i)),
        "float64" => V::Float(a.first().map_or(0.0, V::to_f)),
        "add" => V::Int(a.iter().map(V::to_i).fold(0i64, i64::wrapping_add)),
        "mul" => V::Int(a.iter().map(V::to_i).fold(1i64, i64::wrapping_mul)),
        "sub" | "div" | "mod" => {
            argn(f, &a, 2)?;
            let (x, y) = (a[0].to_i(), a[1].to_i());
            if f != "sub" && y == 0 {
                return Err("template: integer divide by zero".into());
            }
            V::Int(match f {
                "sub" => x.wrapping_sub(y),
                "div" => x / y,
                _ => x % y,
            })
        }
        "addf" => V::Float(a.iter().map(V::to_f).sum()),
        "mulf" => V::Float(a.iter().map(V::to_f).product()),
        "subf" | "divf" => {
            let mut it = a.iter().map(V::to_f);
            let first = it.next().unwrap_or(0.0);
            V::Float(it.fold(first, |acc, v| if f == "subf" { acc - v } else { acc / v }))
        }
        "max" | "min" => {
            let it = a.iter().map(V::to_i);
            V::Int(if f == "max" { it.max() } else { it.min() }.unwrap_or(0))
        }
        "maxf" | "minf" => {
            let it = a.iter().map(V::to_f);
            V::Float(if f == "maxf" {
                it.fold(f64::NEG_INFINITY, f64::max)
            } else {
                it.fold(f64::INFINITY, f64::min)
            })
        }
        "ceil" => V::Float(a.first().map_or(0.0, V::to_f).ceil()),
        "floor" => V::Float(a.first().map_or(0.0, V::to_f).floor()),
        "round" => {
            if a.len() < 2 {
                return Err("template: round needs a value and a precision".into());
            }
            let (v, p) = (a[0].to_f(), a[1].to_i());
            let r = a.get(2).map_or(0.5, V::to_f);
            let pow = 10f64.powi(p as i32);
            let digit = v * pow;
            let rounded = if digit.fract() >= r {
                digit.ceil()
            } else {
                digit.floor()
            };
            V::Float(rounded / pow)
        }
        "fromJson" => {
            let v: serde_json::Value = serde_json::from_str(&last()).unwrap_or_default();
            from_json(&v)
        }
        "default" => {
            if a.len() < 2 || !a[1].truthy() {
                a.first().cloned().unwrap_or(V::Nil)
            } else {
                a[1].clone()
            }
        }
        "count" => {
            argn(f, &a, 2)?;
            let re = Regex::new(&s(0)).map_err(|e| format!("template: count: {e}"))?;
            V::Int(re.find_iter(&s(1)).count() as i64)
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            argn(f, &a, 3)?;
            let re = Regex::new(&s(0)).map_err(|e| format!("template: {f}: {e}"))?;
            V::Str(if f == "regexReplaceAll" {
                re.replace_all(&s(1), s(2).as_str()).into_owned()
            } else {
                re.replace_all(&s(1), regex::NoExpand(&s(2))).into_owned()
            })
        }
        "alignLeft" | "alignRight" => {
            argn(f, &a, 2)?;
            let n = a[0].to_i();
            let src: Vec<char> = s(1).chars().collect();
            let l = src.len() as i64;
            V::Str(if n < 0 || n == l {
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
        "b64enc" => V::Str(b64_encode(last().as_bytes())),
        "b64dec" => V::Str(
            b64_decode(&last())
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_else(|| "illegal base64 data".into()),
        ),
        "bytes" => V::Float(parse_bytes(&last()).map_or(0.0, |b| b as f64)),
        "duration" | "duration_seconds" => {
            V::Float(parse_go_duration(last().trim()).map_or(0.0, |ns| ns as f64 / 1e9))
        }
        "now" => V::Time(Utc::now().fixed_offset()),
        "date" => {
            argn(f, &a, 2)?;
            let t = to_time(&a[1]);
            V::Str(t.format(&go_layout_to_chrono(&s(0), false)).to_string())
        }
        "toDate" | "toDateInZone" => {
            let (layout, zone, val) = if f == "toDate" {
                argn(f, &a, 2)?;
                (s(0), "UTC".to_string(), s(1))
            } else {
                argn(f, &a, 3)?;
                (s(0), s(1), s(2))
            };
            V::Time(parse_time(&layout, &zone, &val).unwrap_or_else(|| {
                DateTime::<Utc>::from_timestamp(0, 0)
                    .unwrap_or_default()
                    .fixed_offset()
            }))
        }
        "unixEpoch" => V::Int(a.first().map_or(0, |v| to_time(v).timestamp())),
        "unixEpochMillis" => V::Int(a.first().map_or(0, |v| to_time(v).timestamp_millis())),
        "unixEpochNanos" => V::Int(
            a.first()
                .map_or(0, |v| to_time(v).timestamp_nanos_opt().unwrap_or(0)),
        ),
        "unixToTime" => {
            let e = last();
            let n: i64 = e
                .trim()
                .parse()
                .map_err(|_| format!("template: unixToTime: invalid epoch {e:?}"))?;
            let ns = match e.trim().len() {
                0..=10 => n.saturating_mul(1_000_000_000),
                11..=13 => n.saturating_mul(1_000_000),
                14..=16 => n.saturating_mul(1000),
                _ => n,
            };
            V::Time(Utc.timestamp_nanos(ns).fixed_offset())
        }
        other => return Err(format!("template: function {other:?} not defined")),
    })
}

fn to_time(v: &V) -> DateTime<FixedOffset> {
    match v {
        V::Time(t) => *t,
        other => Utc.timestamp_nanos(other.to_i()).fixed_offset(),
    }
}

fn from_json(v: &serde_json::Value) -> V {
    match v {
        serde_json::Value::Null => V::Nil,
        serde_json::Value::Bool(b) => V::Bool(*b),
        serde_json::Value::Number(n) => V::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => V::Str(s.clone()),
        serde_json::Value::Array(a) => V::List(a.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => {
            V::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
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

/// Go's fmt verbs %s %v %d %f %q %x %t %% with width/precision.
fn go_printf(fmt: &str, args: &[V]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut ai = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = it.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' || d == ' ' {
                spec.push(d);
                it.next();
            } else {
                break;
            }
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        ai += 1;
        let left = spec.starts_with('-');
        let spec = spec.trim_start_matches(['-', '+', ' ']);
        let zero = spec.starts_with('0') && !left;
        let (w, p) = match spec.split_once('.') {
            Some((w, p)) => (
                w.parse::<usize>().unwrap_or(0),
                Some(p.parse::<usize>().unwrap_or(0)),
            ),
            None => (spec.parse::<usize>().unwrap_or(0), None),
        };
        let body = match verb {
            'd' => arg.to_i().to_string(),
            'f' | 'F' => format!("{:.*}", p.unwrap_or(6), arg.to_f()),
            'e' => format!("{:.*e}", p.unwrap_or(6), arg.to_f()),
            'g' => go_float(arg.to_f()),
            'q' => format!("{:?}", arg.to_s()),
            'x' => match arg {
                V::Int(i) => format!("{i:x}"),
                other => other.to_s().bytes().map(|b| format!("{b:02x}")).collect(),
            },
            't' => arg.truthy().to_string(),
            _ => {
                let s = arg.to_s();
                match p {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
        };
        let pad = w.saturating_sub(body.chars().count());
        if left {
            out.push_str(&body);
            out.push_str(&" ".repeat(pad));
        } else if zero {
            let (sign, digits) = match body.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(pad));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&body);
        }
    }
    out
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
            ("{{ .__line__ }}", "the line"),
            ("{{ .__timestamp__ | unixEpoch }}", "1700000000"),
            (
                "{{ date \"2006-01-02T15:04:05.000Z07:00\" .__timestamp__ }}",
                "2023-11-14T22:13:20.123+00:00",
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
