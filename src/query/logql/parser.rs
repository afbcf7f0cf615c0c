//! Recursive-descent LogQL parser following Loki's grammar (`syntax.y`) and
//! the validation Loki applies after parsing (`ast.go`).

use super::ast::*;
use super::lexer::{lex, Tok, Token};
use super::ParseError;
use crate::model::{format_float, MatchOp, Matcher};

/// Parses a LogQL query.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0 };
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected(""));
    }
    validate(&e, true)?;
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

const PIPE_KEYWORDS: [&str; 11] = [
    "json",
    "logfmt",
    "regexp",
    "pattern",
    "unpack",
    "line_format",
    "label_format",
    "drop",
    "keep",
    "decolorize",
    "unwrap",
];

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].tok
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }
    fn is_ident(&self, name: &str) -> bool {
        matches!(self.peek(), Tok::Ident(i) if i == name)
    }
    fn unexpected(&self, expecting: &str) -> ParseError {
        let t = &self.toks[self.pos.min(self.toks.len() - 1)];
        let mut msg = format!("syntax error: unexpected {}", t.tok.describe());
        if !expecting.is_empty() {
            msg.push_str(", expecting ");
            msg.push_str(expecting);
        }
        ParseError::at(t.line, t.col, msg)
    }
    fn error_here(&self, msg: impl Into<String>) -> ParseError {
        let t = &self.toks[self.pos.min(self.toks.len() - 1)];
        ParseError::at(t.line, t.col, msg.into())
    }
    fn expect_op(&mut self, op: &str) -> Result<(), ParseError> {
        if self.is_op(op) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(op))
        }
    }
    fn ident(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("IDENTIFIER")),
        }
    }
    fn string(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("STRING")),
        }
    }
    fn number(&mut self) -> Result<f64, ParseError> {
        let neg = if self.is_op("-") {
            self.next();
            true
        } else {
            if self.is_op("+") {
                self.next();
            }
            false
        };
        match self.peek().clone() {
            Tok::Num(v) => {
                self.next();
                Ok(if neg { -v } else { v })
            }
            _ => Err(self.unexpected("NUMBER")),
        }
    }

    // ---------------------------------------------------------- expressions

    fn binop_here(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Op("+") => BinOp::Add,
            Tok::Op("-") => BinOp::Sub,
            Tok::Op("*") => BinOp::Mul,
            Tok::Op("/") => BinOp::Div,
            Tok::Op("%") => BinOp::Mod,
            Tok::Op("^") => BinOp::Pow,
            Tok::Op("==") => BinOp::Eq,
            Tok::Op("!=") => BinOp::Ne,
            Tok::Op(">") => BinOp::Gt,
            Tok::Op(">=") => BinOp::Ge,
            Tok::Op("<") => BinOp::Lt,
            Tok::Op("<=") => BinOp::Le,
            Tok::Ident(s) if s.eq_ignore_ascii_case("and") => BinOp::And,
            Tok::Ident(s) if s.eq_ignore_ascii_case("or") => BinOp::Or,
            Tok::Ident(s) if s.eq_ignore_ascii_case("unless") => BinOp::Unless,
            _ => return None,
        })
    }

    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.binop_here() {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.next();
            let mut return_bool = false;
            if self.is_ident("bool") {
                self.next();
                return_bool = true;
            }
            let mut matching = None;
            if self.is_ident("on") || self.is_ident("ignoring") {
                let on = self.is_ident("on");
                self.next();
                let labels = self.label_list()?;
                let mut card = Cardinality::OneToOne;
                if self.is_ident("group_left") || self.is_ident("group_right") {
                    let left = self.is_ident("group_left");
                    self.next();
                    let inc = if self.is_op("(") {
                        self.label_list()?
                    } else {
                        Vec::new()
                    };
                    card = if left {
                        Cardinality::ManyToOne(inc)
                    } else {
                        Cardinality::OneToMany(inc)
                    };
                }
                matching = Some(VectorMatching { on, labels, card });
            }
            // ^ is right-associative, the others left-associative.
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = Expr::Binary(Box::new(BinaryExpr {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            }));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if (self.is_op("-") || self.is_op("+")) && matches!(self.peek_at(1), Tok::Num(_)) {
            return Ok(Expr::Literal(self.number()?));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().clone() {
            Tok::Num(v) => {
                self.next();
                Ok(Expr::Literal(v))
            }
            Tok::Op("{") => {
                let log = self.log_expr()?;
                if self.is_op("[") {
                    return Err(self.error_here(
                        "syntax error: a range vector must be inside a range aggregation such as count_over_time",
                    ));
                }
                Ok(Expr::Log(log))
            }
            Tok::Op("(") => {
                self.next();
                let inner = self.expr(0)?;
                self.expect_op(")")?;
                if self.is_op("[") {
                    return Err(self.error_here(
                        "syntax error: a range vector must be inside a range aggregation such as count_over_time",
                    ));
                }
                Ok(Expr::Paren(Box::new(inner)))
            }
            Tok::Ident(name) => {
                if let Some((op, _)) = RANGE_OPS.iter().find(|(_, n)| *n == name) {
                    self.next();
                    return self.range_agg(*op);
                }
                if let Some((op, _)) = VEC_OPS.iter().find(|(_, n)| *n == name) {
                    self.next();
                    return self.vector_agg(*op);
                }
                match name.as_str() {
                    "vector" => {
                        self.next();
                        self.expect_op("(")?;
                        let v = self.number()?;
                        self.expect_op(")")?;
                        Ok(Expr::Vector(v))
                    }
                    "label_replace" => {
                        self.next();
                        self.expect_op("(")?;
                        let expr = self.expr(0)?;
                        let mut args = Vec::new();
                        for _ in 0..4 {
                            self.expect_op(",")?;
                            args.push(self.string()?);
                        }
                        self.expect_op(")")?;
                        let mut it = args.into_iter();
                        let mut n = || it.next().unwrap_or_default();
                        Ok(Expr::LabelReplace(Box::new(LabelReplace {
                            expr,
                            dst: n(),
                            replacement: n(),
                            src: n(),
                            regex: n(),
                        })))
                    }
                    _ => Err(self.unexpected("")),
                }
            }
            _ => Err(self.unexpected("")),
        }
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect_op("(")?;
        let mut out = Vec::new();
        while !self.is_op(")") {
            out.push(self.ident()?);
            if self.is_op(",") {
                self.next();
            } else if !self.is_op(")") {
                return Err(self.unexpected(", or )"));
            }
        }
        self.next();
        Ok(out)
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.is_ident("by") || self.is_ident("without") {
            let without = self.is_ident("without");
            self.next();
            let labels = self.label_list()?;
            return Ok(Some(Grouping { without, labels }));
        }
        Ok(None)
    }

    fn range_agg(&mut self, op: RangeOp) -> Result<Expr, ParseError> {
        self.expect_op("(")?;
        let mut param = None;
        if matches!(self.peek(), Tok::Num(_)) || self.is_op("-") {
            param = Some(self.number()?);
            self.expect_op(",")?;
        }
        let range = self.log_range()?;
        self.expect_op(")")?;
        let grouping = self.grouping()?;
        Ok(Expr::RangeAgg(RangeAgg {
            op,
            param,
            range,
            grouping,
        }))
    }

    fn vector_agg(&mut self, op: VecOp) -> Result<Expr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect_op("(")?;
        let mut param = None;
        if matches!(op, VecOp::Topk | VecOp::Bottomk) {
            param = Some(self.number()?);
            self.expect_op(",")?;
        }
        let expr = self.expr(0)?;
        self.expect_op(")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        Ok(Expr::VectorAgg(VectorAgg {
            op,
            param,
            expr: Box::new(expr),
            grouping,
        }))
    }

    // ---------------------------------------------------------- log ranges

    fn log_range(&mut self) -> Result<LogRange, ParseError> {
        let parens = self.is_op("(");
        if parens {
            self.next();
        }
        let mut log = self.selector()?;
        let mut unwrap = None;
        let mut range = None;
        let mut offset = 0;
        if !parens && self.is_op("[") {
            range = Some(self.range()?);
            offset = self.offset()?;
        }
        self.pipeline(&mut log, &mut unwrap)?;
        if parens {
            self.expect_op(")")?;
        }
        if range.is_none() {
            if !self.is_op("[") {
                return Err(self.unexpected("["));
            }
            range = Some(self.range()?);
            offset = self.offset()?;
        }
        Ok(LogRange {
            log,
            unwrap,
            range: range.unwrap_or_default(),
            offset,
        })
    }

    fn range(&mut self) -> Result<i64, ParseError> {
        self.expect_op("[")?;
        let d = match self.next() {
            Tok::Dur(d, _) => d,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("DURATION"));
            }
        };
        self.expect_op("]")?;
        Ok(d)
    }

    fn offset(&mut self) -> Result<i64, ParseError> {
        if !self.is_ident("offset") {
            return Ok(0);
        }
        self.next();
        let neg = self.is_op("-");
        if neg {
            self.next();
        }
        match self.next() {
            Tok::Dur(d, _) => Ok(if neg { -d } else { d }),
            _ => {
                self.pos -= 1;
                Err(self.unexpected("DURATION"))
            }
        }
    }

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let mut log = self.selector()?;
        let mut unwrap = None;
        self.pipeline(&mut log, &mut unwrap)?;
        if unwrap.is_some() {
            return Err(
                self.error_here("syntax error: unwrap is only allowed inside a range aggregation")
            );
        }
        Ok(log)
    }

    fn selector(&mut self) -> Result<LogExpr, ParseError> {
        if self.is_op("(") {
            // `({app="x"} |= "y")` inside a range: handled by log_range; a
            // parenthesised selector alone is accepted here too.
            self.next();
            let l = self.log_expr()?;
            self.expect_op(")")?;
            return Ok(l);
        }
        self.expect_op("{")?;
        let mut matchers = Vec::new();
        while !self.is_op("}") {
            matchers.push(self.matcher()?);
            if self.is_op(",") {
                self.next();
            } else if !self.is_op("}") {
                return Err(self.unexpected(", or }"));
            }
        }
        self.next();
        Ok(LogExpr {
            matchers,
            stages: Vec::new(),
        })
    }

    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let t = &self.toks[self.pos.min(self.toks.len() - 1)];
        let (line, col) = (t.line, t.col);
        let name = self.ident()?;
        let op = match self.next() {
            Tok::Op("=") => MatchOp::Equal,
            Tok::Op("!=") => MatchOp::NotEqual,
            Tok::Op("=~") => MatchOp::Regex,
            Tok::Op("!~") => MatchOp::NotRegex,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("=, !=, =~ or !~"));
            }
        };
        let value = self.string()?;
        Matcher::new(op, name, value).map_err(|e| ParseError::at(line, col, e.to_string()))
    }

    fn line_op(&self) -> Option<LineOp> {
        Some(match self.peek() {
            Tok::Op("|=") => LineOp::Contains,
            Tok::Op("!=") => LineOp::NotContains,
            Tok::Op("|~") => LineOp::Regex,
            Tok::Op("!~") => LineOp::NotRegex,
            Tok::Op("|>") => LineOp::Pattern,
            Tok::Op("!>") => LineOp::NotPattern,
            _ => return None,
        })
    }

    fn filter_value(&mut self, op: LineOp) -> Result<FilterValue, ParseError> {
        if self.is_ident("ip") {
            if !matches!(op, LineOp::Contains | LineOp::NotContains) {
                return Err(self
                    .error_here("syntax error: ip() is only allowed with |= and != line filters"));
            }
            self.next();
            self.expect_op("(")?;
            let s = self.string()?;
            self.expect_op(")")?;
            super::pipeline::IpPattern::parse(&s).map_err(|e| self.error_here(e))?;
            return Ok(FilterValue::Ip(s));
        }
        Ok(FilterValue::Str(self.string()?))
    }

    fn pipeline(
        &mut self,
        log: &mut LogExpr,
        unwrap: &mut Option<Unwrap>,
    ) -> Result<(), ParseError> {
        loop {
            if let Some(op) = self.line_op() {
                if unwrap.is_some() {
                    return Err(self
                        .error_here("syntax error: only label filters are allowed after unwrap"));
                }
                self.next();
                let mut values = vec![self.filter_value(op)?];
                while self.is_ident("or") && matches!(self.peek_at(1), Tok::Str(_) | Tok::Ident(_))
                {
                    if let Tok::Ident(i) = self.peek_at(1) {
                        if i != "ip" {
                            break;
                        }
                    }
                    self.next();
                    values.push(self.filter_value(op)?);
                }
                if matches!(op, LineOp::Regex | LineOp::NotRegex) {
                    for v in &values {
                        if let FilterValue::Str(s) = v {
                            regex::Regex::new(s).map_err(|e| {
                                self.error_here(format!("invalid regular expression {s:?}: {e}"))
                            })?;
                        }
                    }
                }
                log.stages
                    .push(Stage::LineFilter(LineFilter { op, values }));
                continue;
            }
            if !self.is_op("|") {
                return Ok(());
            }
            self.next();
            let keyword = match self.peek() {
                Tok::Ident(k)
                    if PIPE_KEYWORDS.contains(&k.as_str())
                        && !matches!(
                            self.peek_at(1),
                            Tok::Op("=" | "!=" | "=~" | "!~" | "==" | ">" | ">=" | "<" | "<=")
                        ) =>
                {
                    Some(k.clone())
                }
                _ => None,
            };
            if let Some(u) = unwrap.as_mut() {
                if keyword.is_some() {
                    return Err(self
                        .error_here("syntax error: only label filters are allowed after unwrap"));
                }
                let f = self.label_filter_or()?;
                u.post_filters.push(f);
                continue;
            }
            let Some(kw) = keyword else {
                let f = self.label_filter_or()?;
                log.stages.push(Stage::LabelFilter(f));
                continue;
            };
            self.next();
            let stage = match kw.as_str() {
                "json" => Stage::Parser(ParserStage::Json(self.extraction_params()?)),
                "logfmt" => {
                    let (mut strict, mut keep_empty) = (false, false);
                    while let Tok::Flag(f) = self.peek().clone() {
                        match f.as_str() {
                            "--strict" => strict = true,
                            "--keep-empty" => keep_empty = true,
                            _ => return Err(self.unexpected("--strict or --keep-empty")),
                        }
                        self.next();
                    }
                    Stage::Parser(ParserStage::Logfmt {
                        strict,
                        keep_empty,
                        params: self.extraction_params()?,
                    })
                }
                "regexp" => {
                    let s = self.string()?;
                    super::pipeline::RegexpParser::new(&s).map_err(|e| self.error_here(e))?;
                    Stage::Parser(ParserStage::Regexp(s))
                }
                "pattern" => {
                    let s = self.string()?;
                    super::pipeline::Pattern::parse(&s, true).map_err(|e| self.error_here(e))?;
                    Stage::Parser(ParserStage::Pattern(s))
                }
                "unpack" => Stage::Parser(ParserStage::Unpack),
                "decolorize" => Stage::Decolorize,
                "line_format" => {
                    let s = self.string()?;
                    super::template::Template::parse(&s)
                        .map_err(|e| self.error_here(format!("invalid line template: {e}")))?;
                    Stage::LineFormat(s)
                }
                "label_format" => {
                    let mut items = Vec::new();
                    let mut seen: Vec<String> = Vec::new();
                    loop {
                        let dst = self.ident()?;
                        if seen.contains(&dst) {
                            return Err(self.error_here(format!(
                                "syntax error: label_format: label name {dst:?} used more than once"
                            )));
                        }
                        seen.push(dst.clone());
                        self.expect_op("=")?;
                        match self.next() {
                            Tok::Ident(src) => items.push(LabelFmt::Rename(dst, src)),
                            Tok::Str(t) => {
                                super::template::Template::parse(&t).map_err(|e| {
                                    self.error_here(format!("invalid label template: {e}"))
                                })?;
                                items.push(LabelFmt::Template(dst, t))
                            }
                            _ => {
                                self.pos -= 1;
                                return Err(self.unexpected("IDENTIFIER or STRING"));
                            }
                        }
                        if !self.is_op(",") {
                            break;
                        }
                        self.next();
                    }
                    Stage::LabelFormat(items)
                }
                "drop" | "keep" => {
                    let mut items = Vec::new();
                    loop {
                        if matches!(self.peek_at(1), Tok::Op("=" | "!=" | "=~" | "!~")) {
                            items.push(NamedMatcher::Matcher(self.matcher()?));
                        } else {
                            items.push(NamedMatcher::Name(self.ident()?));
                        }
                        if !self.is_op(",") {
                            break;
                        }
                        self.next();
                    }
                    if kw == "drop" {
                        Stage::Drop(items)
                    } else {
                        Stage::Keep(items)
                    }
                }
                "unwrap" => {
                    let first = self.ident()?;
                    let conv = match first.as_str() {
                        "bytes" if self.is_op("(") => UnwrapConv::Bytes,
                        "duration" if self.is_op("(") => UnwrapConv::Duration,
                        "duration_seconds" if self.is_op("(") => UnwrapConv::DurationSeconds,
                        _ => UnwrapConv::None,
                    };
                    let label = if conv == UnwrapConv::None {
                        first
                    } else {
                        self.expect_op("(")?;
                        let l = self.ident()?;
                        self.expect_op(")")?;
                        l
                    };
                    *unwrap = Some(Unwrap {
                        label,
                        conv,
                        post_filters: Vec::new(),
                    });
                    continue;
                }
                _ => unreachable!("keyword list is exhaustive"),
            };
            log.stages.push(stage);
        }
    }

    /// `a="path", b, c="x"` after json/logfmt; empty when none follow.
    fn extraction_params(&mut self) -> Result<Vec<(String, String)>, ParseError> {
        let mut out = Vec::new();
        if !matches!(self.peek(), Tok::Ident(_)) {
            return Ok(out);
        }
        // `| json or ...` never happens; an identifier here is a parameter.
        loop {
            let name = self.ident()?;
            if self.is_op("=") {
                self.next();
                let v = self.string()?;
                out.push((name, v));
            } else {
                out.push((name.clone(), name));
            }
            if !self.is_op(",") {
                break;
            }
            self.next();
        }
        Ok(out)
    }

    fn label_filter_or(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_and()?;
        while self.is_ident("or") {
            self.next();
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_primary()?;
        loop {
            if self.is_ident("and") || self.is_op(",") {
                self.next();
            } else if !(self.is_op("(")
                || (matches!(self.peek(), Tok::Ident(s) if s != "or" && s != "offset")
                    && matches!(
                        self.peek_at(1),
                        Tok::Op("=" | "!=" | "=~" | "!~" | "==" | ">" | ">=" | "<" | "<=")
                    )))
            {
                break;
            }
            let rhs = self.label_filter_primary()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilter, ParseError> {
        if self.is_op("(") {
            self.next();
            let inner = self.label_filter_or()?;
            self.expect_op(")")?;
            return Ok(LabelFilter::Paren(Box::new(inner)));
        }
        let t = &self.toks[self.pos.min(self.toks.len() - 1)];
        let (line, col) = (t.line, t.col);
        let name = self.ident()?;
        let op_tok = self.next();
        let op_str = match op_tok {
            Tok::Op(o) => o,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("a comparison operator"));
            }
        };
        // string matcher
        if let Tok::Str(s) = self.peek().clone() {
            let op = match op_str {
                "=" | "==" => MatchOp::Equal,
                "!=" => MatchOp::NotEqual,
                "=~" => MatchOp::Regex,
                "!~" => MatchOp::NotRegex,
                _ => return Err(self.unexpected("NUMBER, DURATION or BYTES")),
            };
            self.next();
            let m =
                Matcher::new(op, name, s).map_err(|e| ParseError::at(line, col, e.to_string()))?;
            return Ok(LabelFilter::Matcher(m));
        }
        if self.is_ident("ip") {
            let negated = match op_str {
                "=" => false,
                "!=" => true,
                _ => {
                    return Err(
                        self.error_here("syntax error: ip() label filters only allow = and !=")
                    )
                }
            };
            self.next();
            self.expect_op("(")?;
            let pattern = self.string()?;
            self.expect_op(")")?;
            super::pipeline::IpPattern::parse(&pattern).map_err(|e| self.error_here(e))?;
            return Ok(LabelFilter::Ip {
                name,
                negated,
                pattern,
            });
        }
        let op = match op_str {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            _ => return Err(self.unexpected("STRING")),
        };
        let neg = if self.is_op("-") {
            self.next();
            true
        } else {
            false
        };
        let sign = if neg { -1.0 } else { 1.0 };
        let pfx = if neg { "-" } else { "" };
        let (value, text) = match self.next() {
            Tok::Num(v) => (
                TypedValue::Number(sign * v),
                format!("{pfx}{}", format_float(v)),
            ),
            Tok::Dur(d, t) => (
                TypedValue::Duration(sign * d as f64 / 1e9),
                format!("{pfx}{t}"),
            ),
            Tok::Bytes(b, t) => (TypedValue::Bytes(sign * b as f64), format!("{pfx}{t}")),
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("STRING, NUMBER, DURATION or BYTES"));
            }
        };
        Ok(LabelFilter::Typed {
            name,
            op,
            value,
            text,
        })
    }
}

fn err(msg: impl Into<String>) -> ParseError {
    ParseError::at(0, 0, msg.into())
}

/// Loki's post-parse checks: selectors need a non-empty matcher, range
/// functions must fit their unwrap and grouping rules.
fn validate(e: &Expr, top: bool) -> Result<(), ParseError> {
    match e {
        Expr::Log(l) => {
            if !top {
                return Err(err(
                    "syntax error: a log query cannot be used inside a metric expression",
                ));
            }
            validate_selector(&l.matchers)
        }
        Expr::RangeAgg(r) => {
            validate_selector(&r.range.log.matchers)?;
            let op = r.op;
            let name = op.name();
            use RangeOp::*;
            if r.grouping.is_some()
                && !matches!(
                    op,
                    AvgOverTime
                        | StddevOverTime
                        | StdvarOverTime
                        | QuantileOverTime
                        | MaxOverTime
                        | MinOverTime
                        | FirstOverTime
                        | LastOverTime
                )
            {
                return Err(err(format!("grouping not allowed for {name} aggregation")));
            }
            if r.range.unwrap.is_some() {
                if !matches!(
                    op,
                    Rate | RateCounter
                        | SumOverTime
                        | AvgOverTime
                        | MinOverTime
                        | MaxOverTime
                        | StddevOverTime
                        | StdvarOverTime
                        | QuantileOverTime
                        | FirstOverTime
                        | LastOverTime
                        | AbsentOverTime
                ) {
                    return Err(err(format!("invalid aggregation {name} with unwrap")));
                }
            } else if !matches!(
                op,
                CountOverTime | Rate | BytesOverTime | BytesRate | AbsentOverTime
            ) {
                return Err(err(format!("invalid aggregation {name} without unwrap")));
            }
            if op == QuantileOverTime && r.param.is_none() {
                return Err(err("syntax error: quantile_over_time requires a parameter"));
            }
            if op != QuantileOverTime && r.param.is_some() {
                return Err(err(format!(
                    "syntax error: {name} does not take a parameter"
                )));
            }
            Ok(())
        }
        Expr::VectorAgg(v) => {
            if let Some(k) = v.param {
                if k.fract() != 0.0 || k < 0.0 {
                    return Err(err(format!(
                        "invalid parameter for {}: {} is not a non-negative integer",
                        v.op.name(),
                        format_float(k)
                    )));
                }
            }
            if matches!(v.op, VecOp::Sort | VecOp::SortDesc) && v.grouping.is_some() {
                return Err(err(format!("grouping not allowed for {}", v.op.name())));
            }
            validate(&v.expr, false)
        }
        Expr::Binary(b) => {
            if b.op.is_set() {
                if b.return_bool {
                    return Err(err(
                        "bool modifier can only be used on comparison operators",
                    ));
                }
                if is_scalar(&b.lhs) || is_scalar(&b.rhs) {
                    return Err(err(format!(
                        "unexpected literal for right leg of logical/set binary operation ({})",
                        b.op.as_str()
                    )));
                }
            }
            if b.return_bool && !b.op.is_comparison() {
                return Err(err(
                    "bool modifier can only be used on comparison operators",
                ));
            }
            if let Some(m) = &b.matching {
                if b.op.is_set() && m.card != Cardinality::OneToOne {
                    return Err(err("no grouping allowed for set operations"));
                }
            }
            validate(&b.lhs, false)?;
            validate(&b.rhs, false)
        }
        Expr::LabelReplace(l) => {
            regex::Regex::new(&l.regex)
                .map_err(|e| err(format!("invalid regular expression in label_replace: {e}")))?;
            validate(&l.expr, false)
        }
        Expr::Paren(inner) => validate(inner, top),
        Expr::Literal(_) | Expr::Vector(_) => Ok(()),
    }
}

/// True when the expression is a scalar (literals and arithmetic on them).
pub fn is_scalar(e: &Expr) -> bool {
    match e {
        Expr::Literal(_) => true,
        Expr::Paren(i) => is_scalar(i),
        Expr::Binary(b) => is_scalar(&b.lhs) && is_scalar(&b.rhs),
        _ => false,
    }
}

fn validate_selector(ms: &[Matcher]) -> Result<(), ParseError> {
    if ms.iter().all(|m| m.matches_empty()) {
        return Err(err(
            "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for q in [
            r#"{app="a"} |= "x" or "y" != "z" |~ "a.b" !> "<_> foo" | json | status >= 500 and method="GET" or dur > 1.5s | line_format "{{.a}}""#,
            r#"sum by (level) (count_over_time({app="a"} | logfmt --strict --keep-empty a, b="c" [5m] offset 1m))"#,
            r#"quantile_over_time(0.99, {app="a"} | json | unwrap duration(latency) | __error__="" [1m]) by (host)"#,
            r#"topk(3, sum(rate({app="a"}[1m])) by (x)) / on(x) group_left(y) vector(2) > bool 1"#,
            r#"label_replace(rate({a="b"} | drop x, y="z" | keep q [1m]), "d", "$1", "s", "(.*)")"#,
            r#"{a="b"} | label_format x=y, z="{{.q}}" | decolorize | regexp "(?P<x>\\d+)" | pattern "<a> <_>" | unpack | addr = ip("10.0.0.0/8")"#,
            r#"-1 + 2 * 3 ^ 2"#,
        ] {
            let e = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            let printed = e.to_string();
            let again = parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
            assert_eq!(e, again, "{q} -> {printed}");
        }
    }

    #[test]
    fn range_positions() {
        let a = parse(r#"rate({a="b"} |= "x" [5m])"#).unwrap();
        let b = parse(r#"rate({a="b"}[5m] |= "x")"#).unwrap();
        let c = parse(r#"rate(({a="b"} |= "x")[5m])"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn errors() {
        for (q, want) in [
            (
                "sum(",
                "parse error at line 1, col 5: syntax error: unexpected end of input",
            ),
            (r#"{a=~".*"}"#, "queries require at least one"),
            (
                r#"count_over_time({a="b"}[1m]) by (x)"#,
                "grouping not allowed for count_over_time",
            ),
            (
                r#"sum_over_time({a="b"}[1m])"#,
                "invalid aggregation sum_over_time without unwrap",
            ),
            (
                r#"count_over_time({a="b"} | unwrap x [1m])"#,
                "invalid aggregation count_over_time with unwrap",
            ),
            (
                r#"count_over_time({a="b"}[1m]) offset 5m"#,
                "unexpected IDENTIFIER offset",
            ),
            ("{a=\"b\"}\n | json |", "line 2, col 10"),
        ] {
            let e = parse(q).unwrap_err().to_string();
            assert!(e.contains(want), "{q}: {e}");
        }
    }
}
