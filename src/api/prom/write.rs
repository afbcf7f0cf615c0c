//! Remote write 1.0 and 2.0: content negotiation, decompression within the
//! limits, protobuf decoding into [`IncomingWrite`] (1.0 by [`decode_v1`],
//! borrowing the body), then
//! [`crate::ingest::Ingester::write_metrics`]. Status codes follow
//! Prometheus's receiver: 204 written, 400 bad data (the good part is still
//! written), 413 too large, 415 unsupported type or encoding, 429 rate limit,
//! 503 storage unavailable, 500 storage failure. Error bodies are plain text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::decode_v1::{self, metric_type};
use super::proto::v2;
use super::{snappy, PromState};
use crate::api::tenant_from_headers;
use crate::ingest::{IncomingExemplar, IncomingWrite, IngestError, IngestReport};
use crate::model::{Label, MetricMetadata, Sample, METRIC_NAME};

/// Remote-write message versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// Body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// No header: snappy as Prometheus assumes, falling back to a raw body
    /// (Fluent Bit with `compression none` sends no header).
    Unspecified,
    Snappy,
    Gzip,
    Zstd,
    Identity,
}

/// A refused write: status and plain-text message.
#[derive(Debug)]
pub struct WriteError {
    status: StatusCode,
    message: String,
}

impl WriteError {
    fn new(status: StatusCode, message: impl Into<String>) -> WriteError {
        WriteError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> WriteError {
        WriteError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for WriteError {
    fn into_response(self) -> Response {
        text(self.status, self.message)
    }
}

fn text(status: StatusCode, mut message: String) -> Response {
    message.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// The message version from `Content-Type` (Prometheus's `parseProtoMsg`).
pub fn content_type(headers: &HeaderMap) -> Result<Proto, WriteError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Proto::V1);
    };
    let ct = ct.to_str().unwrap_or("").trim();
    if ct.is_empty() {
        return Ok(Proto::V1);
    }
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(WriteError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "expected application/x-protobuf as the first (media) part, got {ct} content-type"
            ),
        ));
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("proto") {
                return match v.trim().trim_matches('"') {
                    "prometheus.WriteRequest" => Ok(Proto::V1),
                    "io.prometheus.write.v2.Request" => Ok(Proto::V2),
                    other => Err(WriteError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!("unknown remote write protobuf message proto={other}, supported: prometheus.WriteRequest, io.prometheus.write.v2.Request"),
                    )),
                };
            }
        }
    }
    Ok(Proto::V1)
}

fn content_encoding(headers: &HeaderMap, proto: Proto) -> Result<Encoding, WriteError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Unspecified);
    };
    let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let enc = match v.as_str() {
        "" => Encoding::Unspecified,
        "snappy" => Encoding::Snappy,
        "gzip" | "x-gzip" if proto == Proto::V1 => Encoding::Gzip,
        "zstd" if proto == Proto::V1 => Encoding::Zstd,
        "identity" if proto == Proto::V1 => Encoding::Identity,
        _ => {
            let supported = match proto {
                Proto::V1 => "snappy, gzip, zstd, identity",
                Proto::V2 => "snappy (remote write 2.0)",
            };
            return Err(WriteError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {v:?}, supported: {supported}"),
            ));
        }
    };
    Ok(enc)
}

fn too_large(size: impl std::fmt::Display, limit: usize) -> WriteError {
    WriteError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("decompressed body is {size} bytes, the limit is {limit} (limits.max_decompressed_bytes)"),
    )
}

fn read_limited(r: impl Read, limit: usize, what: &str) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| WriteError::bad(format!("corrupt {what} body: {e}")))?;
    if out.len() > limit {
        return Err(too_large(format!("more than {limit}"), limit));
    }
    Ok(out)
}

fn snappy_err(e: snappy::SnappyError) -> WriteError {
    match e {
        snappy::SnappyError::TooLarge { size, limit } => too_large(size, limit),
        e => WriteError::bad(e.to_string()),
    }
}

/// A body made ready for protobuf decoding.
struct Unpacked<'b> {
    /// The protobuf bytes: decompressed, or the body itself.
    raw: Cow<'b, [u8]>,
    /// With no Content-Encoding given, the body as sent, tried when `raw`
    /// (the body snappy-decompressed) does not decode.
    plain: Option<&'b [u8]>,
    /// With no Content-Encoding given and a body that is not snappy, the
    /// error to give when it does not decode as plain protobuf either.
    not_snappy: Option<String>,
}

impl<'b> Unpacked<'b> {
    /// Decompresses `body` within `limit`; with no Content-Encoding given,
    /// tries snappy first and the raw bytes second.
    fn new(body: &'b [u8], enc: Encoding, limit: usize) -> Result<Unpacked<'b>, WriteError> {
        let mut out = Unpacked {
            raw: Cow::Borrowed(body),
            plain: None,
            not_snappy: None,
        };
        match enc {
            Encoding::Snappy => {
                out.raw = Cow::Owned(snappy::decompress(body, limit).map_err(snappy_err)?);
            }
            Encoding::Gzip => {
                out.raw = Cow::Owned(read_limited(
                    flate2::read::MultiGzDecoder::new(body),
                    limit,
                    "gzip",
                )?);
            }
            Encoding::Zstd => {
                out.raw = Cow::Owned(read_limited(
                    zstd::stream::read::Decoder::new(body)
                        .map_err(|e| WriteError::bad(format!("corrupt zstd body: {e}")))?,
                    limit,
                    "zstd",
                )?);
            }
            Encoding::Identity => {
                if body.len() > limit {
                    return Err(too_large(body.len(), limit));
                }
            }
            Encoding::Unspecified => match snappy::decompress(body, limit) {
                Ok(raw) => {
                    out.raw = Cow::Owned(raw);
                    out.plain = Some(body);
                }
                Err(e @ snappy::SnappyError::TooLarge { .. }) => return Err(snappy_err(e)),
                Err(e) => {
                    out.not_snappy = Some(format!(
                        "{e} (no Content-Encoding given: the body is neither snappy nor plain protobuf)"
                    ))
                }
            },
        }
        Ok(out)
    }

    /// Decodes with `f`, falling back to the plain body as described above.
    fn decode<'a, T, E: std::fmt::Display>(
        &'a self,
        f: impl Fn(&'a [u8]) -> Result<T, E>,
    ) -> Result<T, WriteError> {
        f(&self.raw).or_else(|e| {
            if let Some(ok) = self.plain.and_then(|b| f(b).ok()) {
                return Ok(ok);
            }
            Err(WriteError::bad(match &self.not_snappy {
                Some(m) => m.clone(),
                None => format!("invalid protobuf body: {e}"),
            }))
        })
    }
}

fn symbol(symbols: &[String], r: u32, series: usize) -> Result<&str, WriteError> {
    symbols.get(r as usize).map(String::as_str).ok_or_else(|| {
        WriteError::bad(format!(
            "symbol reference {r} is out of range (the symbols table has {} entries) in timeseries {series}",
            symbols.len()
        ))
    })
}

fn refs_to_labels<'a>(
    symbols: &'a [String],
    refs: &[u32],
    series: usize,
    out: &mut Vec<(&'a str, &'a str)>,
) -> Result<(), WriteError> {
    if refs.len() % 2 != 0 {
        return Err(WriteError::bad(format!(
            "odd number of label references ({}) in timeseries {series}",
            refs.len()
        )));
    }
    for p in refs.chunks_exact(2) {
        out.push((
            symbol(symbols, p[0], series)?,
            symbol(symbols, p[1], series)?,
        ));
    }
    Ok(())
}

/// Converts a 2.0 request; labels borrow its symbols table. Symbol errors
/// refuse the whole request. Created timestamps are accepted and not stored
/// (as Prometheus without `created-timestamp-zero-ingestion`).
pub fn from_v2(req: &v2::Request) -> Result<IncomingWrite<'_>, WriteError> {
    let symbols = &req.symbols;
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(WriteError::bad(
            "the first entry of the symbols table must be the empty string",
        ));
    }
    let mut metadata: HashMap<String, MetricMetadata> = HashMap::new();
    let mut out = IncomingWrite::default();
    for (i, ts) in req.timeseries.iter().enumerate() {
        let from = out.labels.len();
        refs_to_labels(symbols, &ts.labels_refs, i, &mut out.labels)?;
        let labels = &out.labels[from..];
        let exemplars = ts
            .exemplars
            .iter()
            .map(|e| {
                let mut pairs = Vec::new();
                refs_to_labels(symbols, &e.labels_refs, i, &mut pairs)?;
                Ok(IncomingExemplar {
                    labels: pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect(),
                    value: e.value,
                    t: e.timestamp,
                })
            })
            .collect::<Result<Vec<_>, WriteError>>()?;
        if let Some(m) = &ts.metadata {
            let name = labels
                .iter()
                .find(|l| l.0 == METRIC_NAME)
                .map(|l| l.1.to_string())
                .unwrap_or_default();
            let help = symbol(symbols, m.help_ref, i)?.to_string();
            let unit = symbol(symbols, m.unit_ref, i)?.to_string();
            if !name.is_empty() && (m.r#type != 0 || !help.is_empty() || !unit.is_empty()) {
                metadata.insert(
                    name.clone(),
                    MetricMetadata {
                        metric: name,
                        kind: metric_type(m.r#type),
                        help,
                        unit,
                    },
                );
            }
        }
        let samples = out.samples.len();
        out.samples
            .extend(ts.samples.iter().map(|s| Sample::new(s.timestamp, s.value)));
        out.push_series(
            from..out.labels.len(),
            samples..out.samples.len(),
            exemplars,
            ts.histograms.len(),
        );
    }
    out.metadata = metadata.into_values().collect();
    Ok(out)
}

fn ingest_error(e: IngestError) -> WriteError {
    let status = match &e {
        IngestError::RateLimited(_) | IngestError::LimitExceeded(_) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    WriteError::new(status, e.to_string())
}

fn written_headers(resp: &mut Response, r: &IngestReport) {
    let h = resp.headers_mut();
    for (name, n) in [
        (
            "x-prometheus-remote-write-samples-written",
            r.samples_written,
        ),
        (
            "x-prometheus-remote-write-histograms-written",
            r.histograms_written,
        ),
        (
            "x-prometheus-remote-write-exemplars-written",
            r.exemplars_written,
        ),
    ] {
        h.insert(name, HeaderValue::from(n));
    }
}

/// `GET` on the write URL: 200, for Vector's health check.
pub async fn write_get() -> &'static str {
    "Strata remote-write endpoint: POST protobuf WriteRequest (1.0) or io.prometheus.write.v2.Request (2.0) here.\n"
}

/// `POST /api/v1/write` (and `/api/v1/push`).
pub async fn write_post(State(st): State<PromState>, headers: HeaderMap, body: Body) -> Response {
    let tenant = match tenant_from_headers(&headers) {
        Ok(t) => t,
        Err(e) => return WriteError::bad(e).into_response(),
    };
    let proto = match content_type(&headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let enc = match content_encoding(&headers, proto) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let limits = st.ingester.limits().clone();
    let body = match super::read_body(body, &headers, limits.max_request_body_bytes).await {
        Ok(b) => b,
        Err(msg) => return WriteError::new(StatusCode::PAYLOAD_TOO_LARGE, msg).into_response(),
    };
    let ingester = st.ingester.clone();
    let job = tokio::task::spawn_blocking(move || {
        let unpacked = Unpacked::new(&body, enc, limits.max_decompressed_bytes)?;
        let v2_request;
        let write = match proto {
            Proto::V1 => unpacked.decode(decode_v1::decode)?,
            Proto::V2 => {
                v2_request = unpacked.decode(v2::Request::decode)?;
                from_v2(&v2_request)?
            }
        };
        let now = chrono::Utc::now().timestamp_millis();
        ingester
            .write_metrics(&tenant, &write, now)
            .map_err(ingest_error)
    })
    .await;
    match job {
        Ok(Ok(report)) => {
            let mut resp = if report.is_partial() {
                text(StatusCode::BAD_REQUEST, report.message())
            } else {
                StatusCode::NO_CONTENT.into_response()
            };
            if proto == Proto::V2 {
                written_headers(&mut resp, &report);
            }
            resp
        }
        Ok(Err(e)) => e.into_response(),
        Err(join) => {
            tracing::error!(error = %join, "remote write handler failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while writing; nothing of this request is acknowledged".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: Option<&str>, ce: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        if let Some(ce) = ce {
            h.insert(header::CONTENT_ENCODING, ce.parse().unwrap());
        }
        h
    }

    #[test]
    fn negotiation_table() {
        let v2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<(Proto, Encoding), u16>,
        );
        let cases: &[Case] = &[
            (None, None, Ok((Proto::V1, Encoding::Unspecified))),
            (
                Some("application/x-protobuf"),
                Some("snappy"),
                Ok((Proto::V1, Encoding::Snappy)),
            ),
            (
                Some("application/x-protobuf;proto=prometheus.WriteRequest"),
                Some("gzip"),
                Ok((Proto::V1, Encoding::Gzip)),
            ),
            (
                Some("application/x-protobuf"),
                Some("zstd"),
                Ok((Proto::V1, Encoding::Zstd)),
            ),
            (Some(v2), Some("snappy"), Ok((Proto::V2, Encoding::Snappy))),
            (Some(v2), Some("gzip"), Err(415)),
            (Some("application/x-protobuf"), Some("deflate"), Err(415)),
            (Some("application/json"), Some("snappy"), Err(415)),
            (Some("image/png"), None, Err(415)),
            (
                Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
                None,
                Err(415),
            ),
        ];
        for (ct, ce, want) in cases {
            let h = headers(*ct, *ce);
            let got = content_type(&h).and_then(|p| Ok((p, content_encoding(&h, p)?)));
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(*w, g, "{ct:?} {ce:?}"),
                (Err(code), Err(e)) => assert_eq!(e.status.as_u16(), *code, "{ct:?} {ce:?}"),
                (w, g) => panic!("{ct:?} {ce:?}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn v2_symbols_resolve_and_bad_refs_are_refused() {
        let req = v2::Request {
            symbols: vec!["".into(), "__name__".into(), "up".into(), "help".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: 5,
                    start_timestamp: 1,
                }],
                metadata: Some(v2::Metadata {
                    r#type: 1,
                    help_ref: 3,
                    unit_ref: 0,
                }),
                ..Default::default()
            }],
        };
        let w = from_v2(&req).unwrap();
        assert_eq!(w.labels[w.series[0].labels.clone()], [("__name__", "up")]);
        assert_eq!(w.metadata[0].kind, crate::model::MetricType::Counter);
        assert_eq!(w.metadata[0].help, "help");
        let mut bad = req;
        bad.timeseries[0].labels_refs = vec![1, 9];
        assert!(from_v2(&bad).is_err());
        bad.timeseries[0].labels_refs = vec![1];
        assert!(from_v2(&bad).is_err());
    }
}
