//! Decoding of remote write 1.0 (`prometheus.WriteRequest`) straight into an
//! [`IncomingWrite`] whose labels borrow the decompressed body: no `String`
//! per label and no struct per series, which is most of what decoding the
//! message with prost's owned types costs. Labels and samples are walked by
//! hand (field numbers in `proto::v1`); the rare parts (exemplars, native
//! histograms, metadata) are decoded with the prost types. Unknown fields are
//! skipped, repeated scalar fields keep their last value and strings must be
//! UTF-8, as with prost.

use prost::Message;

use super::proto::v1;
pub use crate::api::protowire::DecodeError;
use crate::api::protowire::{err, expect, Cursor, FIXED64, LEN, VARINT};
use crate::ingest::{IncomingExemplar, IncomingWrite};
use crate::model::{Label, MetricMetadata, MetricType, Sample};

fn utf8<'a>(b: &'a [u8], what: &str, series: usize) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| {
        err(format!(
            "{what} of a label of timeseries {series} is not valid UTF-8"
        ))
    })
}

fn label(b: &[u8], series: usize) -> Result<(&str, &str), DecodeError> {
    let (mut name, mut value) = ("", "");
    let mut c = Cursor::new(b);
    while !c.done() {
        match c.key()? {
            (1, w) => {
                expect(w, LEN, "Label.name")?;
                name = utf8(c.bytes()?, "the name", series)?;
            }
            (2, w) => {
                expect(w, LEN, "Label.value")?;
                value = utf8(c.bytes()?, "the value", series)?;
            }
            (f, w) => c.skip(f, w, 0)?,
        }
    }
    Ok((name, value))
}

fn sample(b: &[u8]) -> Result<Sample, DecodeError> {
    let (mut v, mut t) = (0.0, 0i64);
    let mut c = Cursor::new(b);
    while !c.done() {
        match c.key()? {
            (1, w) => {
                expect(w, FIXED64, "Sample.value")?;
                v = f64::from_bits(c.fixed64()?);
            }
            (2, w) => {
                expect(w, VARINT, "Sample.timestamp")?;
                t = c.varint()? as i64;
            }
            (f, w) => c.skip(f, w, 0)?,
        }
    }
    Ok(Sample::new(t, v))
}

fn prost_err(what: &str, series: usize) -> impl Fn(prost::DecodeError) -> DecodeError + '_ {
    move |e| err(format!("{what} of timeseries {series}: {e}"))
}

/// Appends one `TimeSeries` to `out`.
fn timeseries<'a>(b: &'a [u8], out: &mut IncomingWrite<'a>) -> Result<(), DecodeError> {
    let n = out.series.len();
    let (labels_from, samples_from) = (out.labels.len(), out.samples.len());
    let mut exemplars = Vec::new();
    let mut histograms = 0;
    let mut c = Cursor::new(b);
    while !c.done() {
        match c.key()? {
            (1, w) => {
                expect(w, LEN, "TimeSeries.labels")?;
                out.labels.push(label(c.bytes()?, n)?);
            }
            (2, w) => {
                expect(w, LEN, "TimeSeries.samples")?;
                out.samples.push(sample(c.bytes()?)?);
            }
            (3, w) => {
                expect(w, LEN, "TimeSeries.exemplars")?;
                let e = v1::Exemplar::decode(c.bytes()?).map_err(prost_err("an exemplar", n))?;
                exemplars.push(IncomingExemplar {
                    labels: e
                        .labels
                        .into_iter()
                        .map(|l| Label {
                            name: l.name,
                            value: l.value,
                        })
                        .collect(),
                    value: e.value,
                    t: e.timestamp,
                });
            }
            (4, w) => {
                expect(w, LEN, "TimeSeries.histograms")?;
                v1::Histogram::decode(c.bytes()?).map_err(prost_err("a histogram", n))?;
                histograms += 1;
            }
            (f, w) => c.skip(f, w, 0)?,
        }
    }
    out.push_series(
        labels_from..out.labels.len(),
        samples_from..out.samples.len(),
        exemplars,
        histograms,
    );
    Ok(())
}

/// Prometheus's `MetricMetadata.type` numbers.
pub fn metric_type(t: i32) -> MetricType {
    match t {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => MetricType::Unknown,
    }
}

/// Decodes a `WriteRequest` (several concatenated ones read as one, as
/// protobuf merges them).
pub fn decode(body: &[u8]) -> Result<IncomingWrite<'_>, DecodeError> {
    let mut out = IncomingWrite::default();
    let mut c = Cursor::new(body);
    while !c.done() {
        match c.key()? {
            (1, w) => {
                expect(w, LEN, "WriteRequest.timeseries")?;
                timeseries(c.bytes()?, &mut out)?;
            }
            (3, w) => {
                expect(w, LEN, "WriteRequest.metadata")?;
                let m = v1::MetricMetadata::decode(c.bytes()?)
                    .map_err(|e| err(format!("metadata: {e}")))?;
                out.metadata.push(MetricMetadata {
                    metric: m.metric_family_name,
                    kind: metric_type(m.r#type),
                    help: m.help,
                    unit: m.unit,
                });
            }
            (f, w) => c.skip(f, w, 0)?,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(n: &str, v: &str) -> v1::Label {
        v1::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    /// Labels, samples (value bits), exemplar and histogram counts.
    type Series = (Vec<(String, String)>, Vec<(i64, u64)>, usize, usize);

    /// What prost's owned decoding gives, in the borrowed shape.
    fn via_prost(req: &v1::WriteRequest) -> Vec<Series> {
        req.timeseries
            .iter()
            .map(|ts| {
                (
                    ts.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect(),
                    ts.samples
                        .iter()
                        .map(|s| (s.timestamp, s.value.to_bits()))
                        .collect(),
                    ts.exemplars.len(),
                    ts.histograms.len(),
                )
            })
            .collect()
    }

    fn via_decode(w: &IncomingWrite<'_>) -> Vec<Series> {
        w.series
            .iter()
            .map(|s| {
                (
                    w.labels[s.labels.clone()]
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                    w.samples[s.samples.clone()]
                        .iter()
                        .map(|s| (s.t, s.v.to_bits()))
                        .collect(),
                    s.exemplars.len(),
                    s.histograms,
                )
            })
            .collect()
    }

    fn request() -> v1::WriteRequest {
        v1::WriteRequest {
            timeseries: vec![
                v1::TimeSeries {
                    labels: vec![l("__name__", "up"), l("job", "node"), l("é", "")],
                    samples: vec![
                        v1::Sample {
                            value: 1.5,
                            timestamp: 1_700_000_000_000,
                        },
                        v1::Sample {
                            value: f64::NAN,
                            timestamp: -5,
                        },
                        v1::Sample {
                            value: 0.0,
                            timestamp: 0,
                        },
                    ],
                    exemplars: vec![v1::Exemplar {
                        labels: vec![l("trace_id", "abc")],
                        value: 2.0,
                        timestamp: 7,
                    }],
                    histograms: vec![v1::Histogram::default()],
                },
                v1::TimeSeries::default(),
                v1::TimeSeries {
                    labels: vec![l("", "x")],
                    ..Default::default()
                },
            ],
            metadata: vec![v1::MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: "".into(),
            }],
        }
    }

    #[test]
    fn agrees_with_prost() {
        let req = request();
        let bytes = req.encode_to_vec();
        let w = decode(&bytes).unwrap();
        assert_eq!(via_decode(&w), via_prost(&req));
        assert_eq!(w.metadata[0].kind, MetricType::Counter);
        assert_eq!(
            w.series[0].exemplars[0].labels,
            vec![Label::new("trace_id", "abc")]
        );
        // Two requests concatenated read as one, as prost merges them.
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        let mut merged = req.clone();
        merged.merge(bytes.as_slice()).unwrap();
        assert_eq!(via_decode(&decode(&two).unwrap()), via_prost(&merged));
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped() {
        // Field 15 of each wire type before the request, and inside a label.
        let mut b = vec![
            0x78, 0x96, 0x01, // 15 varint
            0x79, 1, 2, 3, 4, 5, 6, 7, 8, // 15 fixed64
            0x7a, 2, 0xaa, 0xbb, // 15 len
            0x7d, 1, 2, 3, 4, // 15 fixed32
            0x7b, 0x08, 0x01, 0x7c, // 15 group holding field 1 varint
        ];
        let lab = [0x0a, 1, b'a', 0x12, 1, b'b', 0x78, 0x01];
        let ts = [&[0x0a, lab.len() as u8][..], &lab].concat();
        b.extend_from_slice(&[0x0a, ts.len() as u8]);
        b.extend_from_slice(&ts);
        let w = decode(&b).unwrap();
        assert_eq!(w.labels, vec![("a", "b")]);
        assert_eq!(
            v1::WriteRequest::decode(b.as_slice())
                .unwrap()
                .timeseries
                .len(),
            1
        );
    }

    #[test]
    fn malformed_bodies_are_refused_like_prost() {
        let good = request().encode_to_vec();
        let mut bad_utf8 = v1::WriteRequest {
            timeseries: vec![v1::TimeSeries {
                labels: vec![l("__name__", "VALUE")],
                ..Default::default()
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        let pos = bad_utf8.windows(5).position(|w| w == b"VALUE").unwrap();
        bad_utf8[pos] = 0xff;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() - 3].to_vec()),
            ("bad utf-8", bad_utf8),
            ("huge length", vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            ("wrong wire type", vec![0x09, 0, 0, 0, 0, 0, 0, 0, 0]),
            ("field zero", vec![0x00, 0x01]),
            (
                "long varint",
                vec![0x08; 1].into_iter().chain([0xff; 11]).collect(),
            ),
            ("unterminated group", vec![0x7b, 0x08, 0x01]),
            ("stray end group", vec![0x7c]),
            ("wire type 7", vec![0x7f]),
        ];
        for (name, b) in cases {
            assert!(decode(&b).is_err(), "{name}: accepted");
            assert!(
                v1::WriteRequest::decode(b.as_slice()).is_err(),
                "{name}: prost accepts"
            );
        }
        assert!(decode(&[]).unwrap().series.is_empty());
    }
}
