//! Go `text/template`, the subset Prometheus alert templates and Loki's
//! `line_format`/`label_format` use: text with `{{ }}` actions (with `{{-`
//! and `-}}` trimming and `/* */` comments), pipelines with `|`, variables
//! (`$x := ...`, `$x = ...`), field chains (`.Labels.job`, `$labels.job`),
//! `if`/`else if`/`else`, `range` (with `$i, $v :=`), `with`, and the Go
//! built-ins (`and`, `or`, `not`, `len`, `index`, `print`, `printf`,
//! `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `html`, `js`, `urlquery`).
//! Callers add their own functions (Prometheus's `humanize` family lives in
//! [`funcs`]).
//!
//! Values print as Go prints them: floats in `%v` form (`1e+06`), maps as
//! `map[k:v ...]` with sorted keys, nil as `<no value>`.

pub mod funcs;
mod parse;
mod printf;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

pub use printf::{format_float_e, format_float_g, go_quote, sprintf};

use parse::{Node, Operand, Pipeline};

/// A template value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Go's nil / a missing map key.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float64.
    Float(f64),
    /// A string.
    Str(String),
    /// A map with string keys (iterated in key order, as Go does).
    Map(BTreeMap<String, Value>),
    /// A slice.
    List(Vec<Value>),
}

impl Value {
    /// Go's truthiness: false, 0, nil, "" and empty collections are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::List(l) => !l.is_empty(),
        }
    }

    /// The value as Go's `fmt.Sprint` prints it.
    pub fn to_go_string(&self) -> String {
        let mut out = String::new();
        self.write_go(&mut out, true);
        out
    }

    fn write_go(&self, out: &mut String, top: bool) {
        match self {
            Value::Nil => out.push_str(if top { "<no value>" } else { "<nil>" }),
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&format_float_g(*f, None)),
            Value::Str(s) => out.push_str(s),
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_go(out, false);
                }
                out.push(']');
            }
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_go(out, false);
                }
                out.push(']');
            }
        }
    }

    /// A number for arithmetic-like functions: floats, ints, and strings
    /// that parse as floats.
    pub fn as_f64(&self) -> Result<f64, String> {
        match self {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            Value::Str(s) => parse_go_float(s),
            Value::Bool(_) | Value::Nil | Value::Map(_) | Value::List(_) => {
                Err(format!("can't convert {} to float", self.type_name()))
            }
        }
    }

    /// Go's name for the value's type, used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map",
            Value::List(_) => "slice",
        }
    }

    /// A map of strings, e.g. a label set.
    pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
        )
    }
}

/// Parses a float the way Go's `strconv.ParseFloat` accepts it.
pub fn parse_go_float(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            return Ok(if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    t.parse::<f64>()
        .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
}

/// A function callable from templates: receives evaluated arguments.
pub type TemplateFn = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// Functions available to a template, by name.
#[derive(Clone, Default)]
pub struct FuncMap {
    funcs: BTreeMap<String, TemplateFn>,
}

impl FuncMap {
    /// An empty map (Go's built-ins are always available).
    pub fn new() -> FuncMap {
        FuncMap::default()
    }

    /// Adds or replaces a function.
    pub fn insert(
        &mut self,
        name: &str,
        f: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    ) {
        self.funcs.insert(name.to_string(), Arc::new(f));
    }

    fn get(&self, name: &str) -> Option<&TemplateFn> {
        self.funcs.get(name)
    }

    fn has(&self, name: &str) -> bool {
        self.funcs.contains_key(name) || is_builtin(name)
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
    /// Templates named by `{{define}}`/`{{block}}`.
    defs: BTreeMap<String, Arc<Vec<Node>>>,
}

/// Nesting of `{{template}}` calls beyond which execution fails (Go: 100000;
/// lower here to stay well inside the thread's stack).
const MAX_TEMPLATE_DEPTH: usize = 100;

impl Template {
    /// Parses `text`; `name` appears in error messages as Go puts it
    /// (`template: <name>:1: ...`). `known` says which function names exist
    /// (Go rejects unknown functions at parse time).
    pub fn parse(name: &str, text: &str, known: &FuncMap) -> Result<Template, String> {
        let parsed =
            parse::parse(text, &|f| known.has(f)).map_err(|e| format!("template: {name}:{e}"))?;
        let mut nodes = Vec::with_capacity(parsed.len());
        let mut defs = BTreeMap::new();
        for n in parsed {
            match n {
                Node::Define(n, body) => {
                    defs.insert(n, Arc::new(body));
                }
                other => nodes.push(other),
            }
        }
        Ok(Template {
            name: name.to_string(),
            nodes,
            defs,
        })
    }

    /// Executes the template with `dot` as `.` and `vars` predefined
    /// (names without `$`).
    pub fn execute(
        &self,
        dot: &Value,
        vars: &[(&str, Value)],
        funcs: &FuncMap,
    ) -> Result<String, String> {
        let mut ex = Exec {
            funcs,
            defs: &self.defs,
            depth: 0,
            vars: vars
                .iter()
                .map(|(n, v)| (format!("${n}"), v.clone()))
                .collect(),
            out: String::new(),
        };
        ex.vars.push(("$".to_string(), dot.clone()));
        ex.nodes(&self.nodes, dot)
            .map_err(|e| format!("template: {}: executing {:?}: {e}", self.name, self.name))?;
        Ok(ex.out)
    }
}

fn is_builtin(name: &str) -> bool {
    matches!(
        name,
        "and"
            | "or"
            | "not"
            | "len"
            | "index"
            | "print"
            | "printf"
            | "println"
            | "eq"
            | "ne"
            | "lt"
            | "le"
            | "gt"
            | "ge"
            | "html"
            | "js"
            | "urlquery"
            | "slice"
    )
}

struct Exec<'a> {
    funcs: &'a FuncMap,
    defs: &'a BTreeMap<String, Arc<Vec<Node>>>,
    depth: usize,
    vars: Vec<(String, Value)>,
    out: String,
}

impl Exec<'_> {
    fn nodes(&mut self, nodes: &[Node], dot: &Value) -> Result<(), String> {
        for n in nodes {
            self.node(n, dot)?;
        }
        Ok(())
    }

    fn node(&mut self, node: &Node, dot: &Value) -> Result<(), String> {
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Define(..) => {}
            Node::Call(name, pipe) => {
                let body = self
                    .defs
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("no such template {name:?}"))?;
                let arg = match pipe {
                    Some(p) => self.pipeline_value(p, dot)?,
                    None => Value::Nil,
                };
                if self.depth >= MAX_TEMPLATE_DEPTH {
                    return Err(format!(
                        "exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})"
                    ));
                }
                // A called template sees only its own dot (and `$` = dot).
                let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), arg.clone())]);
                self.depth += 1;
                let r = self.nodes(&body, &arg);
                self.depth -= 1;
                self.vars = saved;
                r?;
            }
            Node::Action(p) => {
                let v = self.pipeline(p, dot)?;
                if p.decl.is_empty() {
                    self.out.push_str(&v.to_go_string());
                }
            }
            Node::If {
                cond,
                then,
                otherwise,
            } => {
                let mark = self.vars.len();
                let c = self.pipeline(cond, dot)?;
                if c.truthy() {
                    self.nodes(then, dot)?;
                } else {
                    self.nodes(otherwise, dot)?;
                }
                self.vars.truncate(mark);
            }
            Node::With {
                cond,
                then,
                otherwise,
            } => {
                let mark = self.vars.len();
                let c = self.pipeline_value(cond, dot)?;
                if c.truthy() {
                    self.nodes(then, &c)?;
                } else {
                    self.nodes(otherwise, dot)?;
                }
                self.vars.truncate(mark);
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            } => {
                let mark = self.vars.len();
                let v = self.pipeline_value(pipe, dot)?;
                let items: Vec<(Value, Value)> = match v {
                    Value::List(l) => l
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Value::Int(i as i64), v))
                        .collect(),
                    Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
                    Value::Int(n) => (0..n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
                    Value::Nil => vec![],
                    other => {
                        return Err(format!("range can't iterate over {}", other.to_go_string()))
                    }
                };
                if items.is_empty() {
                    self.nodes(otherwise, dot)?;
                }
                for (k, v) in items {
                    let inner = self.vars.len();
                    match pipe.decl.as_slice() {
                        [] => {}
                        [e] => self.vars.push((e.clone(), v.clone())),
                        [i, e, ..] => {
                            self.vars.push((i.clone(), k));
                            self.vars.push((e.clone(), v.clone()));
                        }
                    }
                    self.nodes(body, &v)?;
                    self.vars.truncate(inner);
                }
                self.vars.truncate(mark);
            }
        }
        Ok(())
    }

    /// Evaluates a pipeline and performs its declaration or assignment.
    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, String> {
        let v = self.pipeline_value(p, dot)?;
        if let Some(name) = p.decl.first() {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return Err(format!("undefined variable: {name}")),
                }
            } else if p.decl.len() == 1 {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn pipeline_value(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, String> {
        let mut prev: Option<Value> = None;
        for cmd in &p.cmds {
            let v = match cmd.first() {
                Some(Operand::Func(name)) => {
                    let mut args = Vec::with_capacity(cmd.len());
                    for a in &cmd[1..] {
                        args.push(self.operand(a, dot)?);
                    }
                    if let Some(p) = prev.take() {
                        args.push(p);
                    }
                    self.call(name, &args)?
                }
                Some(op) => {
                    if cmd.len() > 1 || prev.is_some() {
                        return Err(format!("can't give argument to non-function {op:?}"));
                    }
                    self.operand(op, dot)?
                }
                None => Value::Nil,
            };
            prev = Some(v);
        }
        Ok(prev.unwrap_or(Value::Nil))
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> Result<Value, String> {
        Ok(match op {
            Operand::Dot(fields) => walk(dot.clone(), fields)?,
            Operand::Var(name, fields) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("undefined variable: {name}"))?;
                walk(v, fields)?
            }
            Operand::Str(s) => Value::Str(s.clone()),
            Operand::Int(i) => Value::Int(*i),
            Operand::Float(f) => Value::Float(*f),
            Operand::Bool(b) => Value::Bool(*b),
            Operand::Nil => Value::Nil,
            Operand::Func(name) => self.call(name, &[])?,
            Operand::Sub(p, fields) => {
                let v = self.pipeline_value(p, dot)?;
                walk(v, fields)?
            }
        })
    }

    fn call(&mut self, name: &str, args: &[Value]) -> Result<Value, String> {
        if let Some(f) = self.funcs.get(name) {
            return f(args).map_err(|e| format!("error calling {name}: {e}"));
        }
        builtin(name, args)
    }
}

fn walk(mut v: Value, fields: &[String]) -> Result<Value, String> {
    for f in fields {
        v = match v {
            Value::Map(mut m) => m.remove(f).unwrap_or(Value::Nil),
            Value::Nil => return Err(format!("nil pointer evaluating .{f}")),
            other => {
                return Err(format!(
                    "can't evaluate field {f} in type {}",
                    other.type_name()
                ))
            }
        };
    }
    Ok(v)
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    use Value::*;
    match (a, b) {
        (Str(x), Str(y)) => Ok(x.cmp(y)),
        (Int(x), Int(y)) => Ok(x.cmp(y)),
        (Bool(x), Bool(y)) => Ok(x.cmp(y)),
        (Int(_) | Float(_), Int(_) | Float(_)) => a
            .as_f64()?
            .partial_cmp(&b.as_f64()?)
            .ok_or_else(|| "NaN is not comparable".to_string()),
        _ => Err("incompatible types for comparison".to_string()),
    }
}

fn builtin(name: &str, args: &[Value]) -> Result<Value, String> {
    let want = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    match name {
        "and" => Ok(args
            .iter()
            .find(|a| !a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil)),
        "or" => Ok(args
            .iter()
            .find(|a| a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil)),
        "not" => {
            want(1)?;
            Ok(Value::Bool(!args[0].truthy()))
        }
        "len" => {
            want(1)?;
            Ok(Value::Int(match &args[0] {
                Value::Str(s) => s.len() as i64,
                Value::Map(m) => m.len() as i64,
                Value::List(l) => l.len() as i64,
                other => return Err(format!("len of type {}", other.type_name())),
            }))
        }
        "index" => {
            let mut v = args.first().cloned().unwrap_or(Value::Nil);
            for k in &args[1.min(args.len())..] {
                v = match (v, k) {
                    (Value::Map(mut m), k) => m.remove(&k.to_go_string()).unwrap_or(Value::Nil),
                    (Value::List(l), Value::Int(i)) => l
                        .get(*i as usize)
                        .cloned()
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (other, _) => {
                        return Err(format!("can't index item of type {}", other.type_name()))
                    }
                };
            }
            Ok(v)
        }
        "print" => Ok(Value::Str(go_sprint(args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(Value::to_go_string).collect();
            Ok(Value::Str(parts.join(" ") + "\n"))
        }
        "printf" => {
            let (fmt, rest) = args.split_first().ok_or_else(|| {
                "wrong number of args for printf: want at least 1 got 0".to_string()
            })?;
            Ok(Value::Str(sprintf(&fmt.to_go_string(), rest)))
        }
        "eq" => {
            let (first, rest) = args
                .split_first()
                .ok_or_else(|| "missing argument for comparison".to_string())?;
            for r in rest {
                if compare(first, r)? == std::cmp::Ordering::Equal {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let o = compare(&args[0], &args[1])?;
            use std::cmp::Ordering::*;
            Ok(Value::Bool(match name {
                "ne" => o != Equal,
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            }))
        }
        "html" => Ok(Value::Str(html_escape(&go_sprint(args)))),
        "js" => Ok(Value::Str(
            go_sprint(args)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('"', "\\\"")
                .replace('<', "\\u003C")
                .replace('>', "\\u003E"),
        )),
        "urlquery" => Ok(Value::Str(
            serde_urlencoded::to_string([("", go_sprint(args))])
                .map(|s| s.trim_start_matches('=').to_string())
                .unwrap_or_default(),
        )),
        other => Err(format!("function {other:?} not defined")),
    }
}

/// Go's `fmt.Sprint`: spaces only between operands when neither is a string.
pub fn go_sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.to_go_string());
    }
    out
}

/// HTML-escapes as Go's `template.HTMLEscapeString`.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
