//! Loki's JSON bytes: the `streams` / `matrix` / `vector` / `scalar`
//! envelopes with `data` keys in the order Grafana's streaming parser needs
//! (`resultType`, `encodingFlags`, `result`, `stats`), timestamps of entries
//! as nanosecond strings and of samples as float seconds, values formatted
//! like Go's `FormatFloat(v, 'f', -1, 64)`.

use std::fmt::Write as _;

use crate::api::prom::json::{write_labels, write_scalar_value, write_str};
use crate::logs::Stream;
use crate::model::Labels;
use crate::query::logql::eval::Series;
use crate::query::logql::vector::Vector;
use crate::query::logql::CategorizedEntry;

/// What a query read and how long it took, for the `stats` object.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueryStats {
    /// Line bytes read from the store.
    pub bytes: u64,
    /// Lines read from the store.
    pub lines: u64,
    /// Entries returned.
    pub returned: u64,
    /// Execution time in seconds.
    pub exec_seconds: f64,
}

/// A query result ready to render.
pub enum Data {
    /// Streams, labels folded into `stream`.
    Streams(Vec<Stream>),
    /// Streams in the `categorize-labels` form.
    Categorized(Vec<(Labels, Vec<CategorizedEntry>)>),
    /// Range result.
    Matrix(Vec<Series>),
    /// Instant vector at a time (ns).
    Vector(i64, Vector),
    /// Scalar at a time (ns).
    Scalar(i64, f64),
}

fn write_secs(out: &mut String, ns: i64) {
    let _ = write!(out, "{}", (ns / 1_000_000) as f64 / 1000.0);
}

fn write_sample(out: &mut String, ns: i64, v: f64) {
    out.push('[');
    write_secs(out, ns);
    out.push(',');
    write_scalar_value(out, v);
    out.push(']');
}

fn write_entry_head(out: &mut String, ts: i64, line: &str) {
    let _ = write!(out, "[\"{ts}\",");
    write_str(out, line);
}

fn write_stats(out: &mut String, s: &QueryStats) {
    let per_sec = |n: u64| {
        if s.exec_seconds > 0.0 {
            (n as f64 / s.exec_seconds) as u64
        } else {
            0
        }
    };
    let chunk = r#"{"headChunkBytes":0,"headChunkLines":0,"decompressedBytes":0,"decompressedLines":0,"compressedBytes":0,"totalDuplicates":0,"postFilterLines":0,"headChunkStructuredMetadataBytes":0,"decompressedStructuredMetadataBytes":0}"#;
    let store = format!(
        r#"{{"totalChunksRef":0,"totalChunksDownloaded":0,"chunksDownloadTime":0,"queryReferencedStructuredMetadata":false,"chunk":{chunk},"chunkRefsFetchTime":0,"congestionControlLatency":0,"pipelineWrapperFilteredLines":0}}"#
    );
    let _ = write!(
        out,
        r#"{{"summary":{{"bytesProcessedPerSecond":{},"linesProcessedPerSecond":{},"totalBytesProcessed":{},"totalLinesProcessed":{},"execTime":{},"queueTime":0,"subqueries":0,"totalEntriesReturned":{},"splits":0,"shards":0,"totalPostFilterLines":0,"totalStructuredMetadataBytesProcessed":0}},"querier":{{"store":{store}}},"ingester":{{"totalReached":0,"totalChunksMatched":0,"totalBatches":0,"totalLinesSent":0,"store":{store}}}}}"#,
        per_sec(s.bytes),
        per_sec(s.lines),
        s.bytes,
        s.lines,
        s.exec_seconds,
        s.returned,
    );
}

/// Appends `[{"stream":{..},"values":[["<ns>","line"],..]},..]`.
pub fn write_streams(out: &mut String, streams: &[Stream]) {
    out.push('[');
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"stream":"#);
        write_labels(out, &s.labels);
        out.push_str(r#","values":["#);
        for (j, e) in s.entries.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            write_entry_head(out, e.ts, &e.line);
            out.push(']');
        }
        out.push_str("]}");
    }
    out.push(']');
}

/// The whole success body of `query` / `query_range`; `warnings` (a
/// partial result, for one) go before `data`, as Loki 3 writes them.
pub fn result(data: &Data, stats: Option<&QueryStats>, warnings: &[String]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"status":"success","#);
    if !warnings.is_empty() {
        out.push_str(r#""warnings":"#);
        crate::api::prom::json::write_str_array(&mut out, warnings);
        out.push(',');
    }
    out.push_str(r#""data":{"resultType":"#);
    match data {
        Data::Streams(streams) => {
            out.push_str(r#""streams","result":"#);
            write_streams(&mut out, streams);
        }
        Data::Categorized(streams) => {
            out.push_str(r#""streams","encodingFlags":["categorize-labels"],"result":["#);
            for (i, (labels, entries)) in streams.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"stream":"#);
                write_labels(&mut out, labels);
                out.push_str(r#","values":["#);
                for (j, e) in entries.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_entry_head(&mut out, e.ts, &e.line);
                    out.push_str(",{");
                    if !e.metadata.is_empty() {
                        out.push_str(r#""structuredMetadata":"#);
                        write_labels(&mut out, &e.metadata);
                    }
                    if !e.parsed.is_empty() {
                        if !e.metadata.is_empty() {
                            out.push(',');
                        }
                        out.push_str(r#""parsed":"#);
                        write_labels(&mut out, &e.parsed);
                    }
                    out.push_str("}]");
                }
                out.push_str("]}");
            }
            out.push(']');
        }
        Data::Matrix(series) => {
            out.push_str(r#""matrix","result":["#);
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(&mut out, &s.labels);
                out.push_str(r#","values":["#);
                for (j, (t, v)) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_sample(&mut out, *t, *v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
        Data::Vector(t, v) => {
            out.push_str(r#""vector","result":["#);
            write_vector_items(&mut out, *t, v.iter().map(|s| (&s.labels, s.value)));
            out.push(']');
        }
        Data::Scalar(t, v) => {
            out.push_str(r#""scalar","result":"#);
            write_sample(&mut out, *t, *v);
        }
    }
    if let Some(s) = stats {
        out.push_str(r#","stats":"#);
        write_stats(&mut out, s);
    }
    out.push_str("}}");
    out
}

/// Appends `{"metric":{..},"value":[t,"v"]}` items.
pub fn write_vector_items<'a>(
    out: &mut String,
    t: i64,
    items: impl Iterator<Item = (&'a Labels, f64)>,
) {
    for (i, (l, v)) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":"#);
        write_labels(out, l);
        out.push_str(r#","value":"#);
        write_sample(out, t, v);
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogEntry;

    #[test]
    fn shapes() {
        let s = Data::Streams(vec![Stream {
            labels: Labels::from_pairs([("app", "a")]),
            entries: vec![LogEntry::new(1_700_000_000_000_000_001, "x<y")],
        }]);
        assert_eq!(
            result(&s, None, &[]),
            r#"{"status":"success","data":{"resultType":"streams","result":[{"stream":{"app":"a"},"values":[["1700000000000000001","x\u003cy"]]}]}}"#
        );
        let c = Data::Categorized(vec![(
            Labels::from_pairs([("app", "a")]),
            vec![
                CategorizedEntry {
                    ts: 5,
                    line: "l".into(),
                    stream: Labels::from_pairs([("app", "a")]),
                    metadata: Labels::from_pairs([("trace", "t")]),
                    parsed: Labels::from_pairs([("level", "info")]),
                },
                CategorizedEntry {
                    ts: 4,
                    line: "m".into(),
                    stream: Labels::from_pairs([("app", "a")]),
                    metadata: Labels::empty(),
                    parsed: Labels::empty(),
                },
            ],
        )]);
        assert_eq!(
            result(&c, None, &[]),
            r#"{"status":"success","data":{"resultType":"streams","encodingFlags":["categorize-labels"],"result":[{"stream":{"app":"a"},"values":[["5","l",{"structuredMetadata":{"trace":"t"},"parsed":{"level":"info"}}],["4","m",{}]]}]}}"#
        );
        let m = Data::Matrix(vec![Series {
            labels: Labels::from_pairs([("level", "info")]),
            points: vec![
                (1_700_000_000_000_000_000, 2.0),
                (1_700_000_000_500_000_000, 0.25),
            ],
        }]);
        assert_eq!(
            result(&m, None, &[]),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"level":"info"},"values":[[1700000000,"2"],[1700000000.5,"0.25"]]}]}}"#
        );
        let sc = Data::Scalar(4_000_000_000, 2.0);
        assert_eq!(
            result(&sc, None, &[]),
            r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
        );
        let st = QueryStats {
            bytes: 10,
            lines: 2,
            returned: 1,
            exec_seconds: 0.5,
        };
        let body = result(
            &Data::Vector(4_000_000_000, vec![]),
            Some(&st),
            &["w".to_string()],
        );
        assert!(body.starts_with(r#"{"status":"success","warnings":["w"],"data":{"#));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"]["result"], serde_json::json!([]));
        assert_eq!(v["data"]["stats"]["summary"]["totalBytesProcessed"], 10);
        assert_eq!(v["data"]["stats"]["summary"]["bytesProcessedPerSecond"], 20);
        assert_eq!(
            v["data"]["stats"]["querier"]["store"]["chunk"]["headChunkBytes"],
            0
        );
    }
}
