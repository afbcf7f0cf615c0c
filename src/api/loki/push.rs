//! `POST /loki/api/v1/push` (and `/api/prom/push`): Loki's receiver
//! (`pkg/loghttp/push`). `Content-Encoding` (gzip, deflate, zstd, snappy or
//! none) is undone first; then `application/json` bodies are read as
//! `{"streams":[{"stream":{..},"values":[["<ns>","line",{metadata}]]}]}` or
//! the legacy `{"streams":[{"labels":"{..}","entries":[{"ts":..,"line":..}]}]}`
//! and anything else as snappy-compressed `logproto.PushRequest` (a body
//! that is not snappy is tried as plain protobuf). 204 when written, 400
//! naming each refused stream or entry (the rest is written), 413 over the
//! body limits, 415 for unknown encodings, 429 over a limit, 503 when the
//! store refuses writes.

use std::io::Read;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{count, LokiError, LokiState};
use crate::api::prom::snappy;
use crate::ingest::logs::{IncomingLogStream, LogIngestError, StreamLabels};
use crate::logs::{LogEntry, LogWriteError};
use crate::model::{Label, Labels};

/// Push bodies decoded, by `format` (`protobuf`, `json`).
pub const LOKI_PUSHES_TOTAL: &str = "strata_loki_pushes_total";

fn too_large(limit: usize) -> LokiError {
    LokiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("decompressed body is larger than {limit} bytes (limits.max_decompressed_bytes)"),
    )
}

fn read_limited(r: impl Read, limit: usize, what: &str) -> Result<Vec<u8>, LokiError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| LokiError::bad(format!("corrupt {what} body: {e}")))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// Undoes `Content-Encoding` (Loki's names); snappy is left to the
/// protobuf path, as in Loki.
fn decode_body(body: &[u8], encoding: &str, limit: usize) -> Result<Vec<u8>, LokiError> {
    match encoding {
        "" | "snappy" | "identity" => {
            if body.len() > limit {
                return Err(too_large(limit));
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(body), limit, "gzip"),
        "deflate" => {
            // RFC 9110 deflate is zlib-wrapped; Loki's Go reader takes raw
            // DEFLATE. Accept both: a zlib header is recognisable.
            let zlib = body.len() >= 2
                && body[0] & 0x0f == 8
                && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
            if zlib {
                read_limited(flate2::read::ZlibDecoder::new(body), limit, "deflate")
            } else {
                read_limited(flate2::read::DeflateDecoder::new(body), limit, "deflate")
            }
        }
        "zstd" => read_limited(
            zstd::stream::read::Decoder::new(body)
                .map_err(|e| LokiError::bad(format!("corrupt zstd body: {e}")))?,
            limit,
            "zstd",
        ),
        other => Err(LokiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} not supported"),
        )),
    }
}

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
    /// Legacy form: a selector string and `entries`.
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    entries: Vec<LegacyEntry>,
}

#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(alias = "timestamp")]
    ts: serde_json::Value,
    line: String,
}

fn json_ts(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::String(s) => match s.parse::<i64>() {
            Ok(n) => Ok(n),
            Err(_) => chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .ok_or_else(|| {
                    format!(
                        "invalid timestamp {s:?}: expected Unix nanoseconds as a string or RFC3339"
                    )
                }),
        },
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("invalid timestamp {n}: expected Unix nanoseconds")),
        other => Err(format!(
            "invalid timestamp {other}: expected Unix nanoseconds as a string"
        )),
    }
}

fn json_value_entry(v: &[serde_json::Value]) -> Result<LogEntry, String> {
    if !(2..=3).contains(&v.len()) {
        return Err(format!(
            "Value array must have 2 or 3 elements, got {}",
            v.len()
        ));
    }
    let ts = json_ts(&v[0])?;
    let line = v[1]
        .as_str()
        .ok_or_else(|| format!("invalid log line {}: expected a string", v[1]))?;
    let mut e = LogEntry::new(ts, line);
    if let Some(m) = v.get(2) {
        let obj = m.as_object().ok_or_else(|| {
            format!("invalid structured metadata {m}: expected an object of strings")
        })?;
        let mut pairs = Vec::with_capacity(obj.len());
        for (k, v) in obj {
            let v = v.as_str().ok_or_else(|| {
                format!("invalid structured metadata value for {k:?}: expected a string")
            })?;
            pairs.push((k.as_str(), v));
        }
        e.metadata = Labels::from_pairs(pairs);
    }
    Ok(e)
}

/// Decodes a JSON push body.
pub fn from_json(body: &[u8]) -> Result<Vec<IncomingLogStream>, String> {
    let req: JsonPush = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(req.streams.len());
    for s in req.streams {
        let labels = match (s.stream, s.labels) {
            (Some(m), _) => {
                StreamLabels::Pairs(m.into_iter().map(|(k, v)| Label::new(k, v)).collect())
            }
            (None, Some(text)) => StreamLabels::Text(text),
            (None, None) => StreamLabels::Pairs(Vec::new()),
        };
        let mut entries = Vec::with_capacity(s.values.len() + s.entries.len());
        for v in &s.values {
            entries.push(json_value_entry(v)?);
        }
        for e in s.entries {
            entries.push(LogEntry::new(json_ts(&e.ts)?, e.line));
        }
        out.push(IncomingLogStream { labels, entries });
    }
    Ok(out)
}

/// Decodes a protobuf body: snappy block format, else plain protobuf.
fn decode_proto(raw: &[u8], limit: usize) -> Result<Vec<IncomingLogStream>, LokiError> {
    let proto_err = |e| LokiError::bad(format!("invalid protobuf body: {e}"));
    match snappy::decompress(raw, limit) {
        Ok(b) => super::decode::push_request(&b)
            .or_else(|e| super::decode::push_request(raw).map_err(|_| proto_err(e))),
        Err(snappy::SnappyError::TooLarge { limit, .. }) => Err(too_large(limit)),
        Err(e) => super::decode::push_request(raw).map_err(|_| {
            LokiError::bad(format!(
                "{e} (the body is neither snappy-compressed nor plain protobuf)"
            ))
        }),
    }
}

/// Decodes a push body by its headers.
pub fn decode(
    headers: &HeaderMap,
    body: &[u8],
    limit: usize,
) -> Result<Vec<IncomingLogStream>, LokiError> {
    let hv = |h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let raw = decode_body(body, &hv(header::CONTENT_ENCODING), limit)?;
    let ct = hv(header::CONTENT_TYPE);
    if ct.starts_with("application/json") {
        metrics::counter!(LOKI_PUSHES_TOTAL, "format" => "json").increment(1);
        from_json(&raw).map_err(LokiError::bad)
    } else {
        metrics::counter!(LOKI_PUSHES_TOTAL, "format" => "protobuf").increment(1);
        decode_proto(&raw, limit)
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The push handler.
pub async fn push(State(st): State<LokiState>, headers: HeaderMap, body: Body) -> Response {
    let r = push_inner(&st, &headers, body).await;
    count("push", r.as_ref().err().map(|e| e.status));
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn push_inner(st: &LokiState, headers: &HeaderMap, body: Body) -> Result<(), LokiError> {
    let tenant = crate::api::tenant_from_headers(headers).map_err(LokiError::bad)?;
    let limits = &st.app.config.limits;
    let body = crate::api::prom::read_body(body, headers, limits.max_request_body_bytes)
        .await
        .map_err(|m| LokiError::new(StatusCode::PAYLOAD_TOO_LARGE, m))?;
    let limit = limits.max_decompressed_bytes;
    let headers = headers.clone();
    let ingester = st.ingester.clone();
    let job = tokio::task::spawn_blocking(move || {
        let streams = decode(&headers, &body, limit)?;
        ingester
            .push(&tenant, streams, now_ns())
            .map_err(|e| match e {
                LogIngestError::RateLimited(m)
                | LogIngestError::Store(LogWriteError::LimitExceeded(m)) => {
                    LokiError::new(StatusCode::TOO_MANY_REQUESTS, m)
                }
                LogIngestError::Store(e @ LogWriteError::Unavailable(_)) => {
                    LokiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }
            })
    });
    let report = job.await.map_err(|e| {
        LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("push failed unexpectedly: {e}"),
        )
    })??;
    if report.errors.is_empty() {
        Ok(())
    } else {
        Err(LokiError::bad(report.errors.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::PushRequest;
    use super::*;
    use prost::Message;

    #[test]
    fn json_forms_and_metadata() {
        let body = br#"{"streams":[
            {"stream":{"app":"a"},"values":[["1700000000000000001","one"],["1700000000000000002","two",{"trace_id":"t1"}]]},
            {"labels":"{app=\"b\"}","entries":[{"ts":"2023-11-14T22:13:20.5Z","line":"legacy"}]}]}"#;
        let s = from_json(body).unwrap();
        assert_eq!(
            s[0].labels,
            StreamLabels::Pairs(vec![Label::new("app", "a")])
        );
        assert_eq!(
            s[0].entries[1].metadata,
            Labels::from_pairs([("trace_id", "t1")])
        );
        assert_eq!(s[0].entries[1].ts, 1_700_000_000_000_000_002);
        assert_eq!(s[1].labels, StreamLabels::Text("{app=\"b\"}".into()));
        assert_eq!(s[1].entries[0].ts, 1_700_000_000_500_000_000);
        assert_eq!(s[1].entries[0].line, "legacy");
        let bad =
            from_json(br#"{"streams":[{"stream":{"a":"b"},"values":[["x","l"]]}]}"#).unwrap_err();
        assert!(bad.contains("invalid timestamp \"x\""), "{bad}");
        let bad = from_json(br#"{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}"#).unwrap_err();
        assert_eq!(bad, "Value array must have 2 or 3 elements, got 1");
    }

    #[test]
    fn encodings_round_trip() {
        use std::io::Write;
        let json = br#"{"streams":[{"stream":{"app":"a"},"values":[["5","x"]]}]}"#;
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let gz = {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(json).unwrap();
            w.finish().unwrap()
        };
        let raw_deflate = {
            let mut w = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(json).unwrap();
            w.finish().unwrap()
        };
        let zlib = {
            let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(json).unwrap();
            w.finish().unwrap()
        };
        let zst = zstd::encode_all(&json[..], 3).unwrap();
        for (enc, body) in [
            ("gzip", gz),
            ("deflate", raw_deflate),
            ("deflate", zlib),
            ("zstd", zst),
        ] {
            h.insert(header::CONTENT_ENCODING, enc.parse().unwrap());
            let s = decode(&h, &body, 1 << 20).unwrap();
            assert_eq!(s[0].entries, [LogEntry::new(5, "x")], "{enc}");
        }
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        let e = decode(&h, json, 1 << 20).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Encoding \"br\" not supported"
            )
        );
        // Protobuf, snappy and plain.
        let req = PushRequest {
            streams: vec![super::super::proto::StreamAdapter {
                labels: "{app=\"p\"}".into(),
                entries: vec![super::super::proto::EntryAdapter {
                    timestamp: Some(super::super::proto::Timestamp {
                        seconds: 2,
                        nanos: 7,
                    }),
                    line: "pl".into(),
                    structured_metadata: vec![super::super::proto::LabelPairAdapter {
                        name: "k".into(),
                        value: "v".into(),
                    }],
                    parsed: vec![],
                }],
                hash: 0,
            }],
        };
        let pb = req.encode_to_vec();
        let sn = snap::raw::Encoder::new().compress_vec(&pb).unwrap();
        let h = HeaderMap::new();
        for body in [sn, pb] {
            let s = decode(&h, &body, 1 << 20).unwrap();
            assert_eq!(s[0].labels, StreamLabels::Text("{app=\"p\"}".into()));
            assert_eq!(s[0].entries[0].ts, 2_000_000_007);
            assert_eq!(s[0].entries[0].metadata, Labels::from_pairs([("k", "v")]));
        }
        let e = decode(&h, &[0xff; 10], 1 << 20).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
