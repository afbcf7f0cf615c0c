//! Loki's `detected_fields`: the fields of the lines a query returns, found
//! with the `json` parser when a line is a JSON object and `logfmt`
//! otherwise, plus structured metadata, each with its values and type.

use std::collections::{BTreeMap, BTreeSet};

use super::eval::{Direction, Engine, EvalError, LogParams};
use super::lexer::{parse_bytes, parse_go_duration};
use super::pipeline::Pipeline;
use super::{parse, Expr};
use crate::model::{Labels, Tenant};

/// One detected field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedField {
    /// The parser that found it (`json`, `logfmt`); None for structured
    /// metadata.
    pub parser: Option<&'static str>,
    /// Its distinct values.
    pub values: BTreeSet<String>,
}

impl DetectedField {
    /// Loki's `determineType`: `int`, `float`, `boolean`, `duration`,
    /// `bytes` when every value is one, else `string`.
    pub fn kind(&self) -> &'static str {
        let all = |f: &dyn Fn(&str) -> bool| self.values.iter().all(|v| f(v));
        let boolean = |v: &str| {
            matches!(
                v,
                "true"
                    | "false"
                    | "TRUE"
                    | "FALSE"
                    | "True"
                    | "False"
                    | "t"
                    | "f"
                    | "T"
                    | "F"
                    | "1"
                    | "0"
            )
        };
        if all(&|v| v.parse::<i64>().is_ok()) {
            "int"
        } else if all(&|v| v.parse::<f64>().is_ok()) {
            "float"
        } else if all(&boolean) {
            "boolean"
        } else if all(&|v| parse_go_duration(v).is_some()) {
            "duration"
        } else if all(&|v| parse_bytes(v).is_some()) {
            "bytes"
        } else {
            "string"
        }
    }
}

/// A pipeline with just one parser stage.
fn parser_only(stage: &str) -> Result<Pipeline, EvalError> {
    match parse(&format!("{{x=\"y\"}} | {stage}"))? {
        Expr::Log(l) => Pipeline::new(&l, None).map_err(EvalError::BadRequest),
        _ => Err(EvalError::BadRequest(format!("{stage} is not a parser"))),
    }
}

/// The fields of the newest `line_limit` lines `query` returns in
/// `[start, end)`, by name.
pub fn detect_fields(
    engine: &Engine,
    tenant: &Tenant,
    query: &str,
    (start, end): (i64, i64),
    line_limit: usize,
) -> Result<BTreeMap<String, DetectedField>, EvalError> {
    let p = LogParams {
        start,
        end,
        limit: line_limit,
        direction: Direction::Backward,
    };
    let streams = engine.query_logs_categorized(tenant, query, p)?;
    let parsers = [
        ("json", parser_only("json")?),
        ("logfmt", parser_only("logfmt")?),
    ];
    let mut fields: BTreeMap<String, DetectedField> = BTreeMap::new();
    let mut add = |name: &str, parser, value: &str| {
        fields
            .entry(name.to_string())
            .or_insert(DetectedField {
                parser,
                values: BTreeSet::new(),
            })
            .values
            .insert(value.to_string());
    };
    for (_, entries) in &streams {
        for e in entries {
            for m in e.metadata.iter() {
                add(&m.name, None, &m.value);
            }
            let (name, p) = if e.line.trim_start().starts_with('{') {
                &parsers[0]
            } else {
                &parsers[1]
            };
            let Some(out) = p.process(e.ts, &e.line, &Labels::empty(), &Labels::empty()) else {
                continue;
            };
            if out.labels.contains_key("__error__") {
                continue;
            }
            for (k, v) in &out.labels {
                add(k, Some(name), v);
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogEntry, MemLogs};
    use std::sync::Arc;

    #[test]
    fn json_logfmt_and_metadata_with_types() {
        let m = MemLogs::new();
        let t = Tenant::new("t").unwrap();
        let mut e = LogEntry::new(3, "level=info dur=1.5s size=10KB");
        e.metadata = Labels::from_pairs([("trace_id", "abc")]);
        m.push(
            &t,
            Labels::from_pairs([("app", "a")]),
            vec![
                LogEntry::new(1, r#"{"status":200,"ratio":0.5}"#),
                LogEntry::new(2, r#"{"status":404,"ok":true}"#),
                e,
            ],
        );
        let engine = Engine::new(Arc::new(m), Default::default());
        let f = detect_fields(&engine, &t, r#"{app="a"}"#, (0, 10), 1000).unwrap();
        let got: Vec<(&str, Option<&str>, &str, usize)> = f
            .iter()
            .map(|(k, v)| (k.as_str(), v.parser, v.kind(), v.values.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("dur", Some("logfmt"), "duration", 1),
                ("level", Some("logfmt"), "string", 1),
                ("ok", Some("json"), "boolean", 1),
                ("ratio", Some("json"), "float", 1),
                ("size", Some("logfmt"), "bytes", 1),
                ("status", Some("json"), "int", 2),
                ("trace_id", None, "string", 1),
            ]
        );
    }
}
