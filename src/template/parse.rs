//! Parsing of Go templates into a tree of [`Node`]s.

/// A parsed template node.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    Action(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    /// `{{define "name"}}...{{end}}` (top level only; hoisted by
    /// [`super::Template::parse`]).
    Define(String, Vec<Node>),
    /// `{{template "name" pipeline}}`: runs a defined template with the
    /// pipeline's value (nil without one) as its dot.
    Call(String, Option<Pipeline>),
}

/// `$x := a | b c` : declared variables, then commands.
#[derive(Debug, Clone, Default)]
pub(super) struct Pipeline {
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Vec<Operand>>,
}

/// One argument or the head of a command.
#[derive(Debug, Clone)]
pub(super) enum Operand {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Func(String),
    Sub(Box<Pipeline>, Vec<String>),
}

/// A raw piece of the template: text or the inside of an action, with the
/// line the action starts on.
enum Piece {
    Text(String),
    Action(String, usize),
}

fn split(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut line = 1;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start();
        }
        let mut inner_start = start + 2;
        let trim_prev = rest[inner_start..].starts_with("- ")
            || rest[inner_start..].starts_with("-\t")
            || rest[inner_start..].starts_with("-\n");
        if trim_prev {
            before = before.trim_end();
            inner_start += 1;
        }
        if !before.is_empty() {
            pieces.push(Piece::Text(before.to_string()));
        }
        line += rest[..start].matches('\n').count();
        let end = find_close(&rest[inner_start..])
            .ok_or_else(|| format!("{line}: unclosed action"))?
            + inner_start;
        let mut inner = &rest[inner_start..end];
        trim_next = false;
        if inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-") {
            inner = &inner[..inner.len() - 1];
            trim_next = true;
        }
        let trimmed = inner.trim();
        if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
            pieces.push(Piece::Action(inner.to_string(), line));
        }
        line += rest[start..end + 2].matches('\n').count();
        rest = &rest[end + 2..];
    }
    let tail = if trim_next { rest.trim_start() } else { rest };
    if !tail.is_empty() {
        pieces.push(Piece::Text(tail.to_string()));
    }
    Ok(pieces)
}

/// Offset of the `}}` closing an action, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

fn fields_after(s: &[char], i: &mut usize) -> Vec<String> {
    let mut fields = Vec::new();
    while *i < s.len() && s[*i] == '.' {
        let start = *i + 1;
        let mut j = start;
        while j < s.len() && (s[j].is_alphanumeric() || s[j] == '_') {
            j += 1;
        }
        if j == start {
            break;
        }
        fields.push(s[start..j].iter().collect());
        *i = j;
    }
    fields
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let s: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
                let f = fields_after(&s, &mut i);
                if !f.is_empty() {
                    toks.push(Tok::Field(f));
                }
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if s.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '.' if s.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let (n, j) = lex_number(&s, i);
                toks.push(Tok::Num(n));
                i = j;
            }
            '.' => {
                let f = fields_after(&s, &mut i);
                if f.is_empty() {
                    i += 1;
                }
                toks.push(Tok::Field(f));
            }
            '$' => {
                let start = i;
                i += 1;
                while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
                let name: String = s[start..i].iter().collect();
                let f = fields_after(&s, &mut i);
                toks.push(Tok::Var(name, f));
            }
            '"' => {
                let mut out = String::new();
                i += 1;
                loop {
                    let Some(&c) = s.get(i) else {
                        return Err("unterminated quoted string".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = *s.get(i).ok_or("unterminated quoted string")?;
                            i += 1;
                            match e {
                                'n' => out.push('\n'),
                                't' => out.push('\t'),
                                'r' => out.push('\r'),
                                '\\' => out.push('\\'),
                                '"' => out.push('"'),
                                '\'' => out.push('\''),
                                'u' | 'x' => {
                                    let n = if e == 'u' { 4 } else { 2 };
                                    let hex: String = s[i..(i + n).min(s.len())].iter().collect();
                                    i += n;
                                    let cp = u32::from_str_radix(&hex, 16)
                                        .map_err(|_| format!("invalid escape \\{e}{hex}"))?;
                                    out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                                }
                                other => return Err(format!("invalid escape \\{other}")),
                            }
                        }
                        c => out.push(c),
                    }
                }
                toks.push(Tok::Str(out));
            }
            '`' => {
                let start = i + 1;
                let mut j = start;
                while j < s.len() && s[j] != '`' {
                    j += 1;
                }
                if j >= s.len() {
                    return Err("unterminated raw quoted string".into());
                }
                toks.push(Tok::Str(s[start..j].iter().collect()));
                i = j + 1;
            }
            '\'' => {
                let c = *s.get(i + 1).ok_or("unterminated character constant")?;
                if s.get(i + 2) != Some(&'\'') {
                    return Err("unterminated character constant".into());
                }
                toks.push(Tok::Num((c as u32).to_string()));
                i += 3;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && s.get(i + 1)
                        .is_some_and(|d| d.is_ascii_digit() || *d == '.')) =>
            {
                let (n, j) = lex_number(&s, i);
                toks.push(Tok::Num(n));
                i = j;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
                toks.push(Tok::Ident(s[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

fn lex_number(s: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    if s[i] == '-' || s[i] == '+' {
        i += 1;
    }
    while i < s.len() {
        let c = s[i];
        let exp_sign = (c == '-' || c == '+') && matches!(s[i - 1], 'e' | 'E');
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    (s[start..i].iter().collect(), i)
}

fn number(n: &str) -> Result<Operand, String> {
    let clean = n.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let int = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if !body.contains(['.', 'e', 'E']) {
        body.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Ok(Operand::Int(if neg { -i } else { i }));
    }
    body.parse::<f64>()
        .map(|f| Operand::Float(if neg { -f } else { f }))
        .map_err(|_| format!("bad number syntax: {n:?}"))
}

struct PipeParser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    known: &'a dyn Fn(&str) -> bool,
}

impl PipeParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn pipeline(&mut self, in_parens: bool) -> Result<Pipeline, String> {
        let mut p = Pipeline::default();
        // Declarations: `$x :=`, `$i, $v :=`, `$x =`.
        let save = self.pos;
        let mut names = Vec::new();
        while let Some(Tok::Var(name, f)) = self.peek().cloned() {
            if !f.is_empty() {
                break;
            }
            self.pos += 1;
            names.push(name);
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                _ => break,
            }
        }
        match self.peek() {
            Some(Tok::Declare) if !names.is_empty() => {
                self.pos += 1;
                p.decl = names;
            }
            Some(Tok::Assign) if names.len() == 1 => {
                self.pos += 1;
                p.decl = names;
                p.assign = true;
            }
            _ => self.pos = save,
        }
        loop {
            let mut cmd = Vec::new();
            loop {
                match self.peek().cloned() {
                    None => break,
                    Some(Tok::Pipe) => break,
                    Some(Tok::RParen) if in_parens => break,
                    Some(t) => {
                        self.pos += 1;
                        cmd.push(self.operand(t)?);
                    }
                }
            }
            if cmd.is_empty() {
                return Err("missing value for command".into());
            }
            p.cmds.push(cmd);
            match self.peek() {
                Some(Tok::Pipe) => self.pos += 1,
                _ => break,
            }
        }
        Ok(p)
    }

    fn operand(&mut self, t: Tok) -> Result<Operand, String> {
        Ok(match t {
            Tok::Field(f) => Operand::Dot(f),
            Tok::Var(n, f) => Operand::Var(n, f),
            Tok::Str(s) => Operand::Str(s),
            Tok::Num(n) => number(&n)?,
            Tok::Ident(id) => match id.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "nil" => Operand::Nil,
                name if (self.known)(name) => Operand::Func(name.to_string()),
                name => return Err(format!("function {name:?} not defined")),
            },
            Tok::LParen => {
                let inner = self.pipeline(true)?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err("unclosed left paren".into());
                }
                self.pos += 1;
                let fields = match self.peek().cloned() {
                    Some(Tok::Field(f)) => {
                        self.pos += 1;
                        f
                    }
                    _ => vec![],
                };
                Operand::Sub(Box::new(inner), fields)
            }
            other => return Err(format!("unexpected {other:?} in operand")),
        })
    }
}

fn parse_pipeline(src: &str, known: &dyn Fn(&str) -> bool) -> Result<Pipeline, String> {
    let toks = lex(src)?;
    let mut pp = PipeParser {
        toks,
        pos: 0,
        known,
    };
    let p = pp.pipeline(false)?;
    if pp.pos != pp.toks.len() {
        return Err(format!("unexpected {:?} in operand", pp.toks[pp.pos]));
    }
    Ok(p)
}

enum Frame {
    Root,
    If(Pipeline, Option<Vec<Node>>),
    With(Pipeline, Option<Vec<Node>>),
    Range(Pipeline, Option<Vec<Node>>),
    /// An `else if` opened inside an `if`: closed by the same `end`.
    ElseIf(Pipeline, Option<Vec<Node>>),
    /// `define` (and the definition half of `block`).
    Define(String, Option<Pipeline>, bool),
}

/// Splits `"name" rest` (or a raw-quoted name) into the name and the rest.
fn template_name(src: &str) -> Result<(String, &str), String> {
    let src = src.trim_start();
    let end = match src.chars().next() {
        Some('"') => find_close_quote(src),
        Some('`') => src[1..].find('`').map(|i| i + 2),
        _ => None,
    }
    .ok_or_else(|| format!("template name must be a string, not {src:?}"))?;
    match lex(&src[..end])?.as_slice() {
        [Tok::Str(name)] => Ok((name.clone(), src[end..].trim())),
        _ => Err(format!("invalid template name {:?}", &src[..end])),
    }
}

/// Length of the double-quoted literal `src` starts with.
fn find_close_quote(src: &str) -> Option<usize> {
    let b = src.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Parses a whole template. `known` tells whether a function exists.
pub(super) fn parse(text: &str, known: &dyn Fn(&str) -> bool) -> Result<Vec<Node>, String> {
    let mut stack: Vec<(Frame, Vec<Node>)> = vec![(Frame::Root, Vec::new())];
    let mut last_line = 1;
    for piece in split(text)? {
        let (action, line) = match piece {
            Piece::Text(t) => {
                stack.last_mut().expect("root frame").1.push(Node::Text(t));
                continue;
            }
            Piece::Action(a, line) => (a, line),
        };
        last_line = line;
        let err = |e: String| format!("{line}: {e}");
        let trimmed = action.trim();
        let (word, rest) = match trimmed.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (trimmed, ""),
        };
        match word {
            "if" | "with" | "range" => {
                let p = parse_pipeline(rest, known).map_err(err)?;
                let frame = match word {
                    "if" => Frame::If(p, None),
                    "with" => Frame::With(p, None),
                    _ => Frame::Range(p, None),
                };
                stack.push((frame, Vec::new()));
            }
            "else" => {
                let (frame, body) = stack.pop().expect("root frame");
                let (frame, body) = match frame {
                    Frame::If(p, None) => (Frame::If(p, Some(body)), Vec::new()),
                    Frame::ElseIf(p, None) => (Frame::ElseIf(p, Some(body)), Vec::new()),
                    Frame::With(p, None) => (Frame::With(p, Some(body)), Vec::new()),
                    Frame::Range(p, None) => (Frame::Range(p, Some(body)), Vec::new()),
                    _ => return Err(err("unexpected {{else}}".into())),
                };
                stack.push((frame, body));
                if let Some(cond) = rest.strip_prefix("if") {
                    let p = parse_pipeline(cond, known).map_err(err)?;
                    stack.push((Frame::ElseIf(p, None), Vec::new()));
                } else if !rest.is_empty() {
                    return Err(err(format!("unexpected {rest:?} after else")));
                }
            }
            "end" => {
                if !rest.is_empty() {
                    return Err(err("unexpected tokens after end".into()));
                }
                let mut was_else_if = matches!(stack.last(), Some((Frame::ElseIf(..), _)));
                // `block` defines and calls in place.
                if let Some((Frame::Define(name, pipe, true), _)) = stack.last() {
                    let call = Node::Call(name.clone(), pipe.clone());
                    let def = close(&mut stack).map_err(err)?;
                    let root = &mut stack.first_mut().expect("root frame").1;
                    root.push(def);
                    stack.last_mut().expect("root frame").1.push(call);
                    continue;
                }
                let mut node = close(&mut stack).map_err(err)?;
                // An `else if` lives in the else branch of its parent frame,
                // which the same `end` closes.
                while was_else_if {
                    was_else_if = matches!(stack.last(), Some((Frame::ElseIf(..), _)));
                    stack.last_mut().expect("parent frame").1.push(node);
                    node = close(&mut stack).map_err(err)?;
                }
                stack.last_mut().expect("root frame").1.push(node);
            }
            "define" | "block" => {
                let (name, pipe) = template_name(rest).map_err(err)?;
                let is_block = word == "block";
                if !is_block && (!pipe.is_empty() || stack.len() != 1) {
                    return Err(err(
                        "{{define}} takes a name and is only allowed at top level".into(),
                    ));
                }
                let pipe = if pipe.is_empty() {
                    None
                } else {
                    Some(parse_pipeline(pipe, known).map_err(err)?)
                };
                stack.push((Frame::Define(name, pipe, is_block), Vec::new()));
            }
            "template" => {
                let (name, pipe) = template_name(rest).map_err(err)?;
                let pipe = if pipe.is_empty() {
                    None
                } else {
                    Some(parse_pipeline(pipe, known).map_err(err)?)
                };
                stack
                    .last_mut()
                    .expect("root frame")
                    .1
                    .push(Node::Call(name, pipe));
            }
            "break" | "continue" => {
                return Err(err(format!("{{{{{word}}}}} is not supported")));
            }
            _ => {
                let p = parse_pipeline(trimmed, known).map_err(err)?;
                stack
                    .last_mut()
                    .expect("root frame")
                    .1
                    .push(Node::Action(p));
            }
        }
    }
    if stack.len() != 1 {
        return Err(format!("{last_line}: unexpected EOF"));
    }
    Ok(stack.pop().expect("root frame").1)
}

/// Pops the innermost frame into a node.
fn close(stack: &mut Vec<(Frame, Vec<Node>)>) -> Result<Node, String> {
    let (frame, body) = stack.pop().expect("root frame");
    let split = |then: Option<Vec<Node>>, body: Vec<Node>| match then {
        Some(t) => (t, body),
        None => (body, Vec::new()),
    };
    Ok(match frame {
        Frame::Root => return Err("unexpected {{end}}".into()),
        Frame::If(cond, then) | Frame::ElseIf(cond, then) => {
            let (then, otherwise) = split(then, body);
            Node::If {
                cond,
                then,
                otherwise,
            }
        }
        Frame::With(cond, then) => {
            let (then, otherwise) = split(then, body);
            Node::With {
                cond,
                then,
                otherwise,
            }
        }
        Frame::Range(pipe, then) => {
            let (body, otherwise) = split(then, body);
            Node::Range {
                pipe,
                body,
                otherwise,
            }
        }
        Frame::Define(name, _, _) => Node::Define(name, body),
    })
}
