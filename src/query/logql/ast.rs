//! The LogQL syntax tree and its printer (`format_query`). Printing then
//! parsing gives back the same tree.

use crate::model::{format_float, Matcher};
use std::fmt;

/// A whole LogQL query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A log query: selector and pipeline.
    Log(LogExpr),
    /// A range aggregation over a log range.
    RangeAgg(RangeAgg),
    /// A vector aggregation.
    VectorAgg(VectorAgg),
    /// A binary operation.
    Binary(Box<BinaryExpr>),
    /// A number literal (scalar).
    Literal(f64),
    /// `vector(n)`.
    Vector(f64),
    /// `label_replace(v, dst, replacement, src, regex)`.
    LabelReplace(Box<LabelReplace>),
    /// A parenthesised metric expression.
    Paren(Box<Expr>),
}

/// A stream selector with its pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    /// Stream matchers.
    pub matchers: Vec<Matcher>,
    /// Pipeline stages in order.
    pub stages: Vec<Stage>,
}

/// One pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `|= "a" or "b"` and friends.
    LineFilter(LineFilter),
    /// A parser stage.
    Parser(ParserStage),
    /// `| label filter expression`.
    LabelFilter(LabelFilter),
    /// `| line_format "template"`.
    LineFormat(String),
    /// `| label_format a=b, c="tmpl"`.
    LabelFormat(Vec<LabelFmt>),
    /// `| drop a, b="v"`.
    Drop(Vec<NamedMatcher>),
    /// `| keep a, b="v"`.
    Keep(Vec<NamedMatcher>),
    /// `| decolorize`.
    Decolorize,
}

/// Line filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Regex,
    /// `!~`
    NotRegex,
    /// `|>`
    Pattern,
    /// `!>`
    NotPattern,
}

impl LineOp {
    /// The operator text.
    pub fn as_str(self) -> &'static str {
        match self {
            LineOp::Contains => "|=",
            LineOp::NotContains => "!=",
            LineOp::Regex => "|~",
            LineOp::NotRegex => "!~",
            LineOp::Pattern => "|>",
            LineOp::NotPattern => "!>",
        }
    }

    /// True for the negated operators.
    pub fn negated(self) -> bool {
        matches!(
            self,
            LineOp::NotContains | LineOp::NotRegex | LineOp::NotPattern
        )
    }
}

/// A value in a line filter: a string or `ip("...")`.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    /// A string (substring, regex or pattern per the operator).
    Str(String),
    /// `ip("pattern")`.
    Ip(String),
}

/// `op v1 or v2 or ...`: for positive operators any value matches, for
/// negated operators none may match (Loki's De Morgan rewrite).
#[derive(Debug, Clone, PartialEq)]
pub struct LineFilter {
    /// Operator.
    pub op: LineOp,
    /// Alternatives joined by `or`.
    pub values: Vec<FilterValue>,
}

/// A parser stage.
#[derive(Debug, Clone, PartialEq)]
pub enum ParserStage {
    /// `| json` (empty params) or `| json a="path", b`.
    Json(Vec<(String, String)>),
    /// `| logfmt [--strict] [--keep-empty] [params]`.
    Logfmt {
        /// `--strict`
        strict: bool,
        /// `--keep-empty`
        keep_empty: bool,
        /// `dst="key"` pairs.
        params: Vec<(String, String)>,
    },
    /// `| regexp "re"`.
    Regexp(String),
    /// `| pattern "p"`.
    Pattern(String),
    /// `| unpack`.
    Unpack,
}

/// Comparison operators for typed label filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==` or `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl CmpOp {
    /// The operator text.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }

    /// Applies the comparison.
    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

/// The typed value of a label filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TypedValue {
    /// A number.
    Number(f64),
    /// A duration in seconds.
    Duration(f64),
    /// A byte size.
    Bytes(f64),
}

/// A label filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilter {
    /// `a and b` (also `,` and juxtaposition).
    And(Box<LabelFilter>, Box<LabelFilter>),
    /// `a or b`.
    Or(Box<LabelFilter>, Box<LabelFilter>),
    /// `( ... )`.
    Paren(Box<LabelFilter>),
    /// String matcher (`=`, `!=`, `=~`, `!~`).
    Matcher(Matcher),
    /// Typed comparison, with the literal as written.
    Typed {
        /// Label.
        name: String,
        /// Operator.
        op: CmpOp,
        /// Value.
        value: TypedValue,
        /// The literal as written (for printing).
        text: String,
    },
    /// `name = ip("...")` / `name != ip("...")`.
    Ip {
        /// Label.
        name: String,
        /// True for `!=`.
        negated: bool,
        /// IP pattern.
        pattern: String,
    },
}

/// One `label_format` item.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFmt {
    /// `dst=src`: rename.
    Rename(String, String),
    /// `dst="template"`.
    Template(String, String),
}

/// A `drop`/`keep` item: a bare name or a matcher.
#[derive(Debug, Clone, PartialEq)]
pub enum NamedMatcher {
    /// Just the label name.
    Name(String),
    /// Only when the matcher matches.
    Matcher(Matcher),
}

impl NamedMatcher {
    /// The label name concerned.
    pub fn name(&self) -> &str {
        match self {
            NamedMatcher::Name(n) => n,
            NamedMatcher::Matcher(m) => &m.name,
        }
    }
}

/// Conversion applied by `unwrap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwrapConv {
    /// Plain float.
    None,
    /// `bytes(label)`.
    Bytes,
    /// `duration(label)`.
    Duration,
    /// `duration_seconds(label)`.
    DurationSeconds,
}

/// `| unwrap [conv(]label[)]` and the label filters after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    /// Label to read.
    pub label: String,
    /// Conversion.
    pub conv: UnwrapConv,
    /// Label filters after the unwrap.
    pub post_filters: Vec<LabelFilter>,
}

/// A log range: `{...} | pipeline [| unwrap x] [5m] offset 1m`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRange {
    /// Selector and pipeline.
    pub log: LogExpr,
    /// Unwrap, if any.
    pub unwrap: Option<Unwrap>,
    /// Range in ns.
    pub range: i64,
    /// Offset in ns.
    pub offset: i64,
}

/// Range aggregation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    /// `count_over_time`
    CountOverTime,
    /// `rate`
    Rate,
    /// `rate_counter`
    RateCounter,
    /// `bytes_over_time`
    BytesOverTime,
    /// `bytes_rate`
    BytesRate,
    /// `absent_over_time`
    AbsentOverTime,
    /// `sum_over_time`
    SumOverTime,
    /// `avg_over_time`
    AvgOverTime,
    /// `min_over_time`
    MinOverTime,
    /// `max_over_time`
    MaxOverTime,
    /// `stdvar_over_time`
    StdvarOverTime,
    /// `stddev_over_time`
    StddevOverTime,
    /// `quantile_over_time`
    QuantileOverTime,
    /// `first_over_time`
    FirstOverTime,
    /// `last_over_time`
    LastOverTime,
}

/// Every range function with its name.
pub const RANGE_OPS: [(RangeOp, &str); 15] = [
    (RangeOp::CountOverTime, "count_over_time"),
    (RangeOp::Rate, "rate"),
    (RangeOp::RateCounter, "rate_counter"),
    (RangeOp::BytesOverTime, "bytes_over_time"),
    (RangeOp::BytesRate, "bytes_rate"),
    (RangeOp::AbsentOverTime, "absent_over_time"),
    (RangeOp::SumOverTime, "sum_over_time"),
    (RangeOp::AvgOverTime, "avg_over_time"),
    (RangeOp::MinOverTime, "min_over_time"),
    (RangeOp::MaxOverTime, "max_over_time"),
    (RangeOp::StdvarOverTime, "stdvar_over_time"),
    (RangeOp::StddevOverTime, "stddev_over_time"),
    (RangeOp::QuantileOverTime, "quantile_over_time"),
    (RangeOp::FirstOverTime, "first_over_time"),
    (RangeOp::LastOverTime, "last_over_time"),
];

impl RangeOp {
    /// The function name.
    pub fn name(self) -> &'static str {
        RANGE_OPS
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("", |p| p.1)
    }
}

/// `by (...)` or `without (...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// True for `without`.
    pub without: bool,
    /// Label names.
    pub labels: Vec<String>,
}

/// A range aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeAgg {
    /// Function.
    pub op: RangeOp,
    /// φ for `quantile_over_time`.
    pub param: Option<f64>,
    /// The log range.
    pub range: LogRange,
    /// Grouping, where allowed.
    pub grouping: Option<Grouping>,
}

/// Vector aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VecOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `count`
    Count,
    /// `stddev`
    Stddev,
    /// `stdvar`
    Stdvar,
    /// `topk`
    Topk,
    /// `bottomk`
    Bottomk,
    /// `sort`
    Sort,
    /// `sort_desc`
    SortDesc,
}

/// Every vector aggregation with its name.
pub const VEC_OPS: [(VecOp, &str); 11] = [
    (VecOp::Sum, "sum"),
    (VecOp::Avg, "avg"),
    (VecOp::Min, "min"),
    (VecOp::Max, "max"),
    (VecOp::Count, "count"),
    (VecOp::Stddev, "stddev"),
    (VecOp::Stdvar, "stdvar"),
    (VecOp::Topk, "topk"),
    (VecOp::Bottomk, "bottomk"),
    (VecOp::Sort, "sort"),
    (VecOp::SortDesc, "sort_desc"),
];

impl VecOp {
    /// The operator name.
    pub fn name(self) -> &'static str {
        VEC_OPS.iter().find(|(o, _)| *o == self).map_or("", |p| p.1)
    }
}

/// A vector aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorAgg {
    /// Operator.
    pub op: VecOp,
    /// k for topk/bottomk.
    pub param: Option<f64>,
    /// Argument.
    pub expr: Box<Expr>,
    /// Grouping.
    pub grouping: Option<Grouping>,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `and`
    And,
    /// `or`
    Or,
    /// `unless`
    Unless,
}

impl BinOp {
    /// The operator text.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }

    /// Binding power (higher binds tighter).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    /// True for comparison operators.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    /// True for `and`, `or`, `unless`.
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// Which side may have many matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Cardinality {
    /// One-to-one.
    OneToOne,
    /// `group_left(labels)`.
    ManyToOne(Vec<String>),
    /// `group_right(labels)`.
    OneToMany(Vec<String>),
}

/// `on(...)`/`ignoring(...)` and grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorMatching {
    /// True for `on`, false for `ignoring`.
    pub on: bool,
    /// Labels.
    pub labels: Vec<String>,
    /// Cardinality.
    pub card: Cardinality,
}

/// A binary expression.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryExpr {
    /// Operator.
    pub op: BinOp,
    /// Left side.
    pub lhs: Expr,
    /// Right side.
    pub rhs: Expr,
    /// `bool` modifier.
    pub return_bool: bool,
    /// Vector matching, when written.
    pub matching: Option<VectorMatching>,
}

/// `label_replace(...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelReplace {
    /// Input.
    pub expr: Expr,
    /// Destination label.
    pub dst: String,
    /// Replacement with `$1` references.
    pub replacement: String,
    /// Source label.
    pub src: String,
    /// Regex (anchored).
    pub regex: String,
}

fn quote(s: &str) -> String {
    crate::template::go_quote(s)
}

fn matcher_str(m: &Matcher) -> String {
    let op = match m.op {
        crate::model::MatchOp::Equal => "=",
        crate::model::MatchOp::NotEqual => "!=",
        crate::model::MatchOp::Regex => "=~",
        crate::model::MatchOp::NotRegex => "!~",
    };
    format!("{}{}{}", m.name, op, quote(&m.value))
}

/// Formats nanoseconds as a Prometheus-style duration (`5m`, `1h30m`, `1500ms`).
pub fn fmt_dur(ns: i64) -> String {
    if ns % 1_000_000 == 0 {
        crate::model::format_duration(ns / 1_000_000)
    } else if ns % 1000 == 0 {
        format!("{}us", ns / 1000)
    } else {
        format!("{ns}ns")
    }
}

impl fmt::Display for LogExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms: Vec<String> = self.matchers.iter().map(matcher_str).collect();
        write!(f, "{{{}}}", ms.join(", "))?;
        for s in &self.stages {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for FilterValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterValue::Str(s) => f.write_str(&quote(s)),
            FilterValue::Ip(s) => write!(f, "ip({})", quote(s)),
        }
    }
}

fn params_str(ps: &[(String, String)]) -> String {
    ps.iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter(lf) => {
                let vs: Vec<String> = lf.values.iter().map(|v| v.to_string()).collect();
                write!(f, "{} {}", lf.op.as_str(), vs.join(" or "))
            }
            Stage::Parser(p) => match p {
                ParserStage::Json(ps) if ps.is_empty() => f.write_str("| json"),
                ParserStage::Json(ps) => write!(f, "| json {}", params_str(ps)),
                ParserStage::Logfmt {
                    strict,
                    keep_empty,
                    params,
                } => {
                    f.write_str("| logfmt")?;
                    if *strict {
                        f.write_str(" --strict")?;
                    }
                    if *keep_empty {
                        f.write_str(" --keep-empty")?;
                    }
                    if !params.is_empty() {
                        write!(f, " {}", params_str(params))?;
                    }
                    Ok(())
                }
                ParserStage::Regexp(r) => write!(f, "| regexp {}", quote(r)),
                ParserStage::Pattern(p) => write!(f, "| pattern {}", quote(p)),
                ParserStage::Unpack => f.write_str("| unpack"),
            },
            Stage::LabelFilter(lf) => write!(f, "| {lf}"),
            Stage::LineFormat(t) => write!(f, "| line_format {}", quote(t)),
            Stage::LabelFormat(items) => {
                let s: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        LabelFmt::Rename(d, s) => format!("{d}={s}"),
                        LabelFmt::Template(d, t) => format!("{d}={}", quote(t)),
                    })
                    .collect();
                write!(f, "| label_format {}", s.join(", "))
            }
            Stage::Drop(items) => write!(f, "| drop {}", named_list(items)),
            Stage::Keep(items) => write!(f, "| keep {}", named_list(items)),
            Stage::Decolorize => f.write_str("| decolorize"),
        }
    }
}

fn named_list(items: &[NamedMatcher]) -> String {
    items
        .iter()
        .map(|i| match i {
            NamedMatcher::Name(n) => n.clone(),
            NamedMatcher::Matcher(m) => matcher_str(m),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for LabelFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilter::And(a, b) => write!(f, "{a} and {b}"),
            LabelFilter::Or(a, b) => write!(f, "{a} or {b}"),
            LabelFilter::Paren(a) => write!(f, "({a})"),
            LabelFilter::Matcher(m) => f.write_str(&matcher_str(m)),
            LabelFilter::Typed { name, op, text, .. } => {
                write!(f, "{name}{}{text}", op.as_str())
            }
            LabelFilter::Ip {
                name,
                negated,
                pattern,
            } => write!(
                f,
                "{name}{}ip({})",
                if *negated { "!=" } else { "=" },
                quote(pattern)
            ),
        }
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            if self.without { "without" } else { "by" },
            self.labels.join(", ")
        )
    }
}

impl fmt::Display for LogRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.log)?;
        if let Some(u) = &self.unwrap {
            let conv = match u.conv {
                UnwrapConv::None => u.label.clone(),
                UnwrapConv::Bytes => format!("bytes({})", u.label),
                UnwrapConv::Duration => format!("duration({})", u.label),
                UnwrapConv::DurationSeconds => format!("duration_seconds({})", u.label),
            };
            write!(f, " | unwrap {conv}")?;
            for pf in &u.post_filters {
                write!(f, " | {pf}")?;
            }
        }
        write!(f, " [{}]", fmt_dur(self.range))?;
        if self.offset != 0 {
            write!(f, " offset {}", fmt_dur(self.offset))?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(l) => write!(f, "{l}"),
            Expr::RangeAgg(r) => {
                write!(f, "{}(", r.op.name())?;
                if let Some(p) = r.param {
                    write!(f, "{}, ", format_float(p))?;
                }
                write!(f, "{})", r.range)?;
                if let Some(g) = &r.grouping {
                    write!(f, " {g}")?;
                }
                Ok(())
            }
            Expr::VectorAgg(v) => {
                write!(f, "{}", v.op.name())?;
                if let Some(g) = &v.grouping {
                    write!(f, " {g}")?;
                }
                f.write_str(" (")?;
                if let Some(p) = v.param {
                    write!(f, "{}, ", format_float(p))?;
                }
                write!(f, "{})", v.expr)
            }
            Expr::Binary(b) => {
                write!(f, "{} {}", b.lhs, b.op.as_str())?;
                if b.return_bool {
                    f.write_str(" bool")?;
                }
                if let Some(m) = &b.matching {
                    write!(
                        f,
                        " {}({})",
                        if m.on { "on" } else { "ignoring" },
                        m.labels.join(", ")
                    )?;
                    match &m.card {
                        Cardinality::OneToOne => {}
                        Cardinality::ManyToOne(l) => write!(f, " group_left({})", l.join(", "))?,
                        Cardinality::OneToMany(l) => write!(f, " group_right({})", l.join(", "))?,
                    }
                }
                write!(f, " {}", b.rhs)
            }
            Expr::Literal(v) => f.write_str(&format_float(*v)),
            Expr::Vector(v) => write!(f, "vector({})", format_float(*v)),
            Expr::LabelReplace(l) => write!(
                f,
                "label_replace({}, {}, {}, {}, {})",
                l.expr,
                quote(&l.dst),
                quote(&l.replacement),
                quote(&l.src),
                quote(&l.regex)
            ),
            Expr::Paren(e) => write!(f, "({e})"),
        }
    }
}
