//! Duration expressions (Prometheus 3.x, on by default since v3.14):
//! arithmetic, `step()`, `range()`, `min_of(a, b)` and `max_of(a, b)` inside
//! `[...]` and after `offset`. They are evaluated here, at parse time, into a
//! plain millisecond duration because the crate's AST only holds constants.

use super::lexer::{duration_ms, Kind, Token};
use super::DurationContext;

/// A duration-expression error: byte offset in the query and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DurError {
    pub pos: usize,
    pub msg: String,
}

/// Evaluates `toks` (the whole expression) to seconds.
pub(crate) fn eval_seconds(toks: &[Token<'_>], ctx: &DurationContext) -> Result<f64, DurError> {
    let mut p = DurParser { toks, i: 0, ctx };
    let v = p.add()?;
    if let Some(t) = p.toks.get(p.i) {
        return Err(DurError {
            pos: t.start,
            msg: format!("unexpected {:?} in duration expression", t.text),
        });
    }
    if !v.is_finite() {
        let pos = toks.first().map_or(0, |t| t.start);
        return Err(DurError {
            pos,
            msg: format!("duration expression evaluates to a non-finite value: {v}"),
        });
    }
    Ok(v)
}

/// Seconds to whole milliseconds, the resolution of PromQL durations.
pub(crate) fn seconds_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

struct DurParser<'t, 'a> {
    toks: &'t [Token<'a>],
    i: usize,
    ctx: &'t DurationContext,
}

impl<'t, 'a> DurParser<'t, 'a> {
    fn peek(&self) -> Option<&'t Token<'a>> {
        self.toks.get(self.i)
    }

    fn err_here(&self, msg: &str) -> DurError {
        let pos = self.peek().or(self.toks.last()).map_or(0, |t| {
            if self.i < self.toks.len() {
                t.start
            } else {
                t.end
            }
        });
        let found = self
            .peek()
            .map_or("end of input".to_string(), |t| format!("{:?}", t.text));
        DurError {
            pos,
            msg: format!("unexpected {found} in duration expression, expected {msg}"),
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), DurError> {
        if self.peek().is_some_and(|t| t.is(p)) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err_here(&format!("{p:?}")))
        }
    }

    /// add := mul (('+' | '-') mul)*
    fn add(&mut self) -> Result<f64, DurError> {
        let mut v = self.mul()?;
        while let Some(op) = self
            .peek()
            .filter(|t| t.is("+") || t.is("-"))
            .map(|t| t.text)
        {
            self.i += 1;
            let r = self.mul()?;
            v = if op == "+" { v + r } else { v - r };
        }
        Ok(v)
    }

    /// mul := unary (('*' | '/' | '%') unary)*
    fn mul(&mut self) -> Result<f64, DurError> {
        let mut v = self.unary()?;
        while let Some(t) = self
            .peek()
            .filter(|t| t.is("*") || t.is("/") || t.is("%"))
            .cloned()
        {
            self.i += 1;
            let r = self.unary()?;
            if (t.text == "/" || t.text == "%") && r == 0.0 {
                return Err(DurError {
                    pos: t.start,
                    msg: "division by zero in duration expression".into(),
                });
            }
            v = match t.text {
                "*" => v * r,
                "/" => v / r,
                _ => v % r,
            };
        }
        Ok(v)
    }

    /// unary := ('+' | '-') unary | pow. As in PromQL, `-2^2` is `-(2^2)`.
    fn unary(&mut self) -> Result<f64, DurError> {
        match self.peek() {
            Some(t) if t.is("-") => {
                self.i += 1;
                Ok(-self.unary()?)
            }
            Some(t) if t.is("+") => {
                self.i += 1;
                self.unary()
            }
            _ => self.pow(),
        }
    }

    /// pow := primary ('^' unary)?, right-associative.
    fn pow(&mut self) -> Result<f64, DurError> {
        let base = self.primary()?;
        if self.peek().is_some_and(|t| t.is("^")) {
            self.i += 1;
            let exp = self.unary()?;
            return Ok(base.powf(exp));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<f64, DurError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.err_here("a duration, number or \"(\""));
        };
        match t.kind {
            Kind::Number => {
                self.i += 1;
                parse_number(t.text).ok_or_else(|| DurError {
                    pos: t.start,
                    msg: format!("bad number in duration expression: {:?}", t.text),
                })
            }
            Kind::Duration => {
                self.i += 1;
                duration_ms(t.text)
                    .map(|ms| ms as f64 / 1000.0)
                    .ok_or_else(|| DurError {
                        pos: t.start,
                        msg: format!("bad duration: {:?}", t.text),
                    })
            }
            Kind::Punct if t.is("(") => {
                self.i += 1;
                let v = self.add()?;
                self.expect(")")?;
                Ok(v)
            }
            Kind::Ident => self.call(&t),
            _ => Err(self.err_here("a duration, number or \"(\"")),
        }
    }

    /// `step()`, `range()`, `min_of(a, b)`, `max_of(a, b)` (case-insensitive).
    fn call(&mut self, t: &Token<'a>) -> Result<f64, DurError> {
        let name = t.text.to_ascii_lowercase();
        self.i += 1;
        self.expect("(")?;
        let v = match name.as_str() {
            "step" => self.ctx.step_ms as f64 / 1000.0,
            "range" => self.ctx.range_ms as f64 / 1000.0,
            "min_of" | "max_of" => {
                let a = self.add()?;
                self.expect(",")?;
                let b = self.add()?;
                if name == "min_of" {
                    a.min(b)
                } else {
                    a.max(b)
                }
            }
            _ => {
                return Err(DurError {
                    pos: t.start,
                    msg: format!(
                        "unknown function {:?} in duration expression (only step(), range(), min_of() and max_of() are allowed)",
                        t.text
                    ),
                })
            }
        };
        self.expect(")")?;
        Ok(v)
    }
}

/// A PromQL number literal (decimal, float with exponent, or hex).
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    text.parse().ok()
}
