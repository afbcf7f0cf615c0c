//! The pre-pass: finds the Prometheus 3.x constructs `promql-parser` 0.11
//! rejects and rewrites the query text into syntax it accepts, recording
//! what the AST post-pass must restore (see the module docs in `mod.rs`).

use super::duration::{eval_seconds, seconds_to_ms};
use super::lexer::{Kind, Token, NON_ENDING_WORDS};
use super::markers::{Marker, BRIDGE_LABEL};
use super::strings::rewrite_literal;
use super::DurationContext;

/// A failure of the pre-pass: byte offset and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BridgeError {
    pub pos: usize,
    pub msg: String,
}

/// What an `atan2` in the rewritten text stands for, in source order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtanTag {
    /// A real `atan2`.
    Atan2,
    /// `</` in the query.
    TrimUpper,
    /// `>/` in the query.
    TrimLower,
}

/// The rewritten query and what the post-pass needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rewritten {
    /// Query text for `promql_parser::parser::parse`.
    pub text: String,
    /// One entry per `atan2` in `text`, in source order.
    pub atan_tags: Vec<AtanTag>,
}

impl Rewritten {
    /// Whether a trim operator was rewritten (the post-pass is needed).
    pub fn has_trim(&self) -> bool {
        self.atan_tags.iter().any(|t| *t != AtanTag::Atan2)
    }
}

fn ends_expr(t: &Token<'_>) -> bool {
    match t.kind {
        Kind::Ident => !NON_ENDING_WORDS.iter().any(|w| t.is_word(w)),
        Kind::Number | Kind::Duration | Kind::Str => true,
        Kind::Punct => t.is(")") || t.is("]") || t.is("}"),
    }
}

fn err(pos: usize, msg: impl Into<String>) -> BridgeError {
    BridgeError {
        pos,
        msg: msg.into(),
    }
}

struct Pass<'q, 't> {
    q: &'q str,
    toks: &'t [Token<'q>],
    ctx: &'t DurationContext,
    edits: Vec<(usize, usize, String)>,
    atan_tags: Vec<AtanTag>,
    /// Brace positions that already received a range-mode marker.
    marked: Vec<usize>,
}

/// Rewrites `q` (already lexed into `toks`).
pub(crate) fn rewrite(
    q: &str,
    toks: &[Token<'_>],
    ctx: &DurationContext,
) -> Result<Rewritten, BridgeError> {
    let mut pass = Pass {
        q,
        toks,
        ctx,
        edits: Vec::new(),
        atan_tags: Vec::new(),
        marked: Vec::new(),
    };
    pass.check_reserved()?;
    let mut i = 0;
    while i < toks.len() {
        i = pass.step(i)?;
    }
    Ok(Rewritten {
        text: pass.apply()?,
        atan_tags: pass.atan_tags,
    })
}

impl Pass<'_, '_> {
    /// Handles the token at `i`; returns the index of the next one to look at.
    fn step(&mut self, i: usize) -> Result<usize, BridgeError> {
        let t = &self.toks[i];
        let prev_ends = i > 0 && ends_expr(&self.toks[i - 1]);
        if t.is("[") {
            return self.brackets(i);
        }
        if t.kind == Kind::Str {
            if let Some(lit) = rewrite_literal(t.text) {
                self.edits.push((t.start, t.end, lit));
            }
        } else if t.is("</") || t.is(">/") {
            self.edits.push((t.start, t.end, " atan2 ".into()));
            self.atan_tags.push(if t.is("</") {
                AtanTag::TrimUpper
            } else {
                AtanTag::TrimLower
            });
        } else if t.is_word("atan2") && prev_ends {
            self.atan_tags.push(AtanTag::Atan2);
        } else if t.is_word("offset") && prev_ends {
            return self.offset(i);
        } else if (t.is_word("anchored") || t.is_word("smoothed")) && prev_ends {
            let marker = if t.is_word("anchored") {
                Marker::Anchored
            } else {
                Marker::Smoothed
            };
            self.range_mode(i, marker)?;
        } else if t.is_word("info") && self.toks.get(i + 1).is_some_and(|n| n.is("(")) {
            self.info(i + 1)?;
        }
        Ok(i + 1)
    }

    /// Rejects queries that use the reserved marker label themselves, except
    /// as an exact marker matcher (`__strata_bridge__="anchored"`), which is
    /// what the crate's `Display` prints for a bridged selector: such text
    /// parses back to the same AST.
    fn check_reserved(&self) -> Result<(), BridgeError> {
        for (i, t) in self.toks.iter().enumerate() {
            let name = match t.kind {
                Kind::Ident => t.text,
                Kind::Str if t.text.len() >= 2 => &t.text[1..t.text.len() - 1],
                _ => continue,
            };
            let before_match_op = self
                .toks
                .get(i + 1)
                .is_some_and(|n| ["=", "!=", "=~", "!~"].iter().any(|op| n.is(op)));
            let is_marker = self.toks.get(i + 1).is_some_and(|n| n.is("="))
                && self.toks.get(i + 2).is_some_and(|v| {
                    v.kind == Kind::Str
                        && Marker::from_value(&v.text[1..v.text.len() - 1]).is_some()
                });
            if name == BRIDGE_LABEL && before_match_op && !is_marker {
                return Err(err(
                    t.start,
                    format!("label name {BRIDGE_LABEL:?} is reserved"),
                ));
            }
        }
        Ok(())
    }

    /// Index of the bracket closing the one at `open`.
    fn matching(&self, open: usize) -> Result<usize, BridgeError> {
        let (o, c) = pair(self.toks[open].text);
        let mut depth = 0usize;
        for (j, t) in self.toks.iter().enumerate().skip(open) {
            if t.is(o) {
                depth += 1;
            } else if t.is(c) {
                depth -= 1;
                if depth == 0 {
                    return Ok(j);
                }
            }
        }
        let msg = match o {
            "(" => "unclosed left parenthesis",
            "[" => "unclosed left bracket",
            _ => "unexpected end of input inside braces",
        };
        Err(err(self.toks[open].start, msg))
    }

    /// Index of the bracket opening the one at `close`.
    fn matching_back(&self, close: usize) -> Result<usize, BridgeError> {
        let (o, c) = pair(self.toks[close].text);
        let mut depth = 0usize;
        for j in (0..=close).rev() {
            let t = &self.toks[j];
            if t.is(c) {
                depth += 1;
            } else if t.is(o) {
                depth -= 1;
                if depth == 0 {
                    return Ok(j);
                }
            }
        }
        let msg = match c {
            ")" => "unexpected right parenthesis ')'",
            "]" => "unexpected right bracket ']'",
            _ => "unexpected right brace '}'",
        };
        Err(err(self.toks[close].start, msg))
    }

    /// `[range]` or `[range:step]`: evaluates parts that are expressions.
    fn brackets(&mut self, open: usize) -> Result<usize, BridgeError> {
        let close = self.matching(open)?;
        let inner = open + 1..close;
        let mut depth = 0i32;
        let mut colon = None;
        for j in inner.clone() {
            let t = &self.toks[j];
            if t.is("(") || t.is("[") {
                depth += 1;
            } else if t.is(")") || t.is("]") {
                depth -= 1;
            } else if t.is(":") && depth == 0 && colon.is_none() {
                colon = Some(j);
            }
        }
        match colon {
            None => self.duration_part(inner, true)?,
            Some(c) => {
                self.duration_part(open + 1..c, true)?;
                self.duration_part(c + 1..close, false)?;
            }
        }
        Ok(close + 1)
    }

    /// One duration inside brackets. Literals are left to the crate.
    fn duration_part(
        &mut self,
        range: std::ops::Range<usize>,
        is_range: bool,
    ) -> Result<(), BridgeError> {
        let part = &self.toks[range];
        let literal = part.len() == 1 && matches!(part[0].kind, Kind::Number | Kind::Duration);
        if part.is_empty() || literal {
            return Ok(());
        }
        let secs = eval_seconds(part, self.ctx).map_err(|e| err(e.pos, e.msg))?;
        let ms = seconds_to_ms(secs);
        if ms <= 0 {
            let what = if is_range { "range" } else { "subquery step" };
            return Err(err(
                part[0].start,
                format!("{what} duration must be greater than 0, got {secs}s"),
            ));
        }
        self.edits
            .push((part[0].start, part[part.len() - 1].end, format!("{ms}ms")));
        Ok(())
    }

    /// `offset <duration expression>`. Prometheus takes one operand after
    /// `offset`: an optional sign and then a literal, a parenthesised
    /// expression or a call of `step()`, `range()`, `min_of()`, `max_of()`;
    /// anything after it (`offset step()*2`) is an ordinary binary operator.
    fn offset(&mut self, i: usize) -> Result<usize, BridgeError> {
        let mut j = i + 1;
        let sign = self.toks.get(j).filter(|t| t.is("+") || t.is("-")).cloned();
        if sign.is_some() {
            j += 1;
        }
        let Some(t) = self.toks.get(j) else {
            return Ok(i + 1);
        };
        let end = if t.is("(") {
            self.matching(j)?
        } else if t.kind == Kind::Ident
            && ["step", "range", "min_of", "max_of"]
                .iter()
                .any(|w| t.is_word(w))
            && self.toks.get(j + 1).is_some_and(|n| n.is("("))
        {
            self.matching(j + 1)?
        } else if matches!(t.kind, Kind::Number | Kind::Duration)
            && sign.as_ref().is_some_and(|s| s.is("+"))
        {
            j
        } else {
            // A plain (possibly negative) literal: the crate handles it.
            return Ok(i + 1);
        };
        let expr = &self.toks[i + 1..=end];
        let secs = eval_seconds(expr, self.ctx).map_err(|e| err(e.pos, e.msg))?;
        let ms = seconds_to_ms(secs);
        let end_pos = expr[expr.len() - 1].end;
        if ms == 0 {
            // The crate rejects `offset 0ms`; a zero offset is no offset.
            self.edits
                .push((self.toks[i].start, end_pos, String::new()));
        } else if ms < 0 {
            self.edits
                .push((expr[0].start, end_pos, format!("-{}ms", -ms)));
        } else {
            self.edits.push((expr[0].start, end_pos, format!("{ms}ms")));
        }
        Ok(end + 1)
    }

    /// `anchored` / `smoothed` after a selector: removes the keyword and adds
    /// the marker matcher to the selector it modifies.
    fn range_mode(&mut self, i: usize, marker: Marker) -> Result<(), BridgeError> {
        let t = &self.toks[i];
        let word = marker.value();
        let not_selector = || {
            err(
                t.start,
                format!("{word} modifier can only be used on range and instant vector selectors"),
            )
        };
        let mut p = i - 1;
        loop {
            let cur = &self.toks[p];
            if cur.is("]") {
                let o = self.matching_back(p)?;
                if self.toks[o + 1..p].iter().any(|t| t.is(":")) || o == 0 {
                    return Err(not_selector());
                }
                p = o - 1;
            } else if cur.is("}") {
                let o = self.matching_back(p)?;
                self.insert_marker(o, p, marker)?;
                break;
            } else if cur.kind == Kind::Ident && ends_expr(cur) {
                self.edits
                    .push((cur.end, cur.end, format!("{{{}}}", marker.matcher())));
                break;
            } else if matches!(cur.kind, Kind::Number | Kind::Duration) || cur.is(")") {
                // The operand of a preceding `offset` or `@`.
                if cur.is(")") {
                    p = self.matching_back(p)?;
                    let before = &self.toks[p.saturating_sub(1)];
                    if p > 0 && before.kind == Kind::Ident && !before.is_word("offset") {
                        p -= 1;
                    }
                }
                if p > 0 && (self.toks[p - 1].is("+") || self.toks[p - 1].is("-")) {
                    p -= 1;
                }
                if p < 2 || !(self.toks[p - 1].is_word("offset") || self.toks[p - 1].is("@")) {
                    return Err(not_selector());
                }
                p -= 2;
            } else {
                return Err(not_selector());
            }
        }
        self.edits.push((t.start, t.end, String::new()));
        Ok(())
    }

    /// Adds `marker` as a matcher inside the braces `open..=close`.
    fn insert_marker(
        &mut self,
        open: usize,
        close: usize,
        marker: Marker,
    ) -> Result<(), BridgeError> {
        if self.marked.contains(&open) {
            return Err(err(
                self.toks[close].start,
                "only one of anchored and smoothed may be used on a selector",
            ));
        }
        self.marked.push(open);
        let sep = if close == open + 1 || self.toks[close - 1].is(",") {
            ""
        } else {
            ","
        };
        let at = self.toks[close].start;
        self.edits
            .push((at, at, format!("{sep}{}", marker.matcher())));
        Ok(())
    }

    /// `info(v, {...})`: marks a bare-brace data-label selector, which
    /// Prometheus accepts even when all its matchers match the empty string.
    fn info(&mut self, open: usize) -> Result<(), BridgeError> {
        let close = self.matching(open)?;
        let mut depth = 0i32;
        for j in open + 1..close {
            let t = &self.toks[j];
            if t.is("(") || t.is("[") || t.is("{") {
                depth += 1;
            } else if t.is(")") || t.is("]") || t.is("}") {
                depth -= 1;
            } else if t.is(",") && depth == 0 {
                if self.toks.get(j + 1).is_some_and(|n| n.is("{")) {
                    let brace_close = self.matching(j + 1)?;
                    let has_marker = self.toks[j + 2..brace_close]
                        .iter()
                        .any(|t| t.text == BRIDGE_LABEL);
                    if has_marker {
                        break;
                    }
                    let at = self.toks[brace_close].start;
                    let sep = if brace_close == j + 2 || self.toks[brace_close - 1].is(",") {
                        ""
                    } else {
                        ","
                    };
                    self.edits
                        .push((at, at, format!("{sep}{}", Marker::InfoData.matcher())));
                }
                break;
            }
        }
        Ok(())
    }

    /// Applies the edits to the query text.
    fn apply(&mut self) -> Result<String, BridgeError> {
        self.edits.sort_by_key(|e| (e.0, e.1));
        let mut out = String::with_capacity(self.q.len() + 64);
        let mut pos = 0;
        for (s, e, text) in &self.edits {
            if *s < pos {
                return Err(err(*s, "overlapping rewrites in query"));
            }
            out.push_str(&self.q[pos..*s]);
            out.push_str(text);
            pos = *e;
        }
        out.push_str(&self.q[pos..]);
        Ok(out)
    }
}

fn pair(b: &str) -> (&'static str, &'static str) {
    match b {
        "(" | ")" => ("(", ")"),
        "[" | "]" => ("[", "]"),
        _ => ("{", "}"),
    }
}
