//! `logproto.PushRequest` decoded straight into [`IncomingLogStream`]s: one
//! `String` per line and label string, no message structs in between
//! (prost's owned types, then a conversion, were most of the decoding
//! cost). Field numbers as in `proto.rs`. Unknown fields are skipped,
//! repeated scalars keep their last value, strings must be UTF-8 and known
//! fields need their declared wire type, as with prost; the `parsed` labels
//! of an entry, which Loki fills on its side, are skipped.

use crate::api::protowire::{err, expect, Cursor, DecodeError, LEN, VARINT};
use crate::ingest::logs::{IncomingLogStream, StreamLabels};
use crate::logs::LogEntry;
use crate::model::Labels;

fn string(b: &[u8], what: &str) -> Result<String, DecodeError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| err(format!("{what} is not valid UTF-8")))
}

/// Decodes a `PushRequest` body (after snappy).
pub fn push_request(body: &[u8]) -> Result<Vec<IncomingLogStream>, DecodeError> {
    let mut out = Vec::new();
    let mut c = Cursor::new(body);
    while !c.done() {
        match c.key()? {
            (1, w) => {
                expect(w, LEN, "PushRequest.streams")?;
                out.push(stream(c.bytes()?)?);
            }
            (f, w) => c.skip(f, w, 0)?,
        }
    }
    Ok(out)
}

fn stream(b: &[u8]) -> Result<IncomingLogStream, DecodeError> {
    let mut labels = String::new();
    let mut entries = Vec::new();
    let mut c = Cursor::new(b);
    while !c.done() {
        match c.key()? {
            (1, w) => {
                expect(w, LEN, "StreamAdapter.labels")?;
                labels = string(c.bytes()?, "stream labels")?;
            }
            (2, w) => {
                expect(w, LEN, "StreamAdapter.entries")?;
                entries.push(entry(c.bytes()?)?);
            }
            (3, w) => {
                expect(w, VARINT, "StreamAdapter.hash")?;
                c.varint()?;
            }
            (f, w) => c.skip(f, w, 0)?,
        }
    }
    Ok(IncomingLogStream {
        labels: StreamLabels::Text(labels),
        entries,
    })
}

fn entry(b: &[u8]) -> Result<LogEntry, DecodeError> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    let mut line = String::new();
    let mut metadata: Vec<(String, String)> = Vec::new();
    let mut c = Cursor::new(b);
    while !c.done() {
        match c.key()? {
            (1, w) => {
                // Repeated occurrences of a message field merge.
                expect(w, LEN, "EntryAdapter.timestamp")?;
                let mut t = Cursor::new(c.bytes()?);
                while !t.done() {
                    match t.key()? {
                        (1, w) => {
                            expect(w, VARINT, "Timestamp.seconds")?;
                            seconds = t.varint()? as i64;
                        }
                        (2, w) => {
                            expect(w, VARINT, "Timestamp.nanos")?;
                            nanos = t.varint()? as i32;
                        }
                        (f, w) => t.skip(f, w, 0)?,
                    }
                }
            }
            (2, w) => {
                expect(w, LEN, "EntryAdapter.line")?;
                line = string(c.bytes()?, "a log line")?;
            }
            (3, w) => {
                expect(w, LEN, "EntryAdapter.structuredMetadata")?;
                metadata.push(label_pair(c.bytes()?)?);
            }
            (f, w) => c.skip(f, w, 0)?,
        }
    }
    Ok(LogEntry {
        ts: seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(nanos)),
        line,
        metadata: if metadata.is_empty() {
            Labels::empty()
        } else {
            Labels::from_pairs(metadata)
        },
    })
}

fn label_pair(b: &[u8]) -> Result<(String, String), DecodeError> {
    let (mut name, mut value) = (String::new(), String::new());
    let mut c = Cursor::new(b);
    while !c.done() {
        match c.key()? {
            (1, w) => {
                expect(w, LEN, "LabelPairAdapter.name")?;
                name = string(c.bytes()?, "a structured metadata name")?;
            }
            (2, w) => {
                expect(w, LEN, "LabelPairAdapter.value")?;
                value = string(c.bytes()?, "a structured metadata value")?;
            }
            (f, w) => c.skip(f, w, 0)?,
        }
    }
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::loki::proto::{
        EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp,
    };
    use prost::Message;

    /// What prost's types give, converted as the decoder converts.
    fn via_prost(body: &[u8]) -> Vec<IncomingLogStream> {
        let req = PushRequest::decode(body).unwrap();
        req.streams
            .into_iter()
            .map(|s| IncomingLogStream {
                labels: StreamLabels::Text(s.labels),
                entries: s
                    .entries
                    .into_iter()
                    .map(|e| LogEntry {
                        ts: e.timestamp.map_or(0, |t| {
                            t.seconds
                                .saturating_mul(1_000_000_000)
                                .saturating_add(i64::from(t.nanos))
                        }),
                        line: e.line,
                        metadata: Labels::from_pairs(
                            e.structured_metadata.into_iter().map(|p| (p.name, p.value)),
                        ),
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn agrees_with_prost_and_refuses_what_prost_refuses() {
        let pair = |n: &str, v: &str| LabelPairAdapter {
            name: n.into(),
            value: v.into(),
        };
        let req = PushRequest {
            streams: vec![
                StreamAdapter {
                    labels: "{app=\"a\"}".into(),
                    entries: vec![
                        EntryAdapter {
                            timestamp: Some(Timestamp {
                                seconds: 1_700_000_000,
                                nanos: 5,
                            }),
                            line: "héllo".into(),
                            structured_metadata: vec![pair("z", "1"), pair("trace_id", "t")],
                            parsed: vec![pair("p", "q")],
                        },
                        EntryAdapter {
                            timestamp: None,
                            line: String::new(),
                            structured_metadata: vec![],
                            parsed: vec![],
                        },
                        EntryAdapter {
                            timestamp: Some(Timestamp {
                                seconds: -3,
                                nanos: -7,
                            }),
                            line: "neg".into(),
                            structured_metadata: vec![],
                            parsed: vec![],
                        },
                    ],
                    hash: 77,
                },
                StreamAdapter::default(),
            ],
        };
        let body = req.encode_to_vec();
        let got = push_request(&body).unwrap();
        assert_eq!(got, via_prost(&body));
        assert_eq!(got[0].entries[0].ts, 1_700_000_000_000_000_005);
        assert_eq!(push_request(&[]).unwrap(), []);
        // Unknown fields (here field 9, varint) are skipped.
        let mut extra = body.clone();
        extra.extend_from_slice(&[9 << 3, 1]);
        assert_eq!(push_request(&extra).unwrap(), got);
        // Truncation anywhere, bad UTF-8 and wrong wire types are refused.
        for cut in 1..body.len() {
            let (ours, theirs) = (
                push_request(&body[..cut]).is_err(),
                PushRequest::decode(&body[..cut]).is_err(),
            );
            assert_eq!(ours, theirs, "cut at {cut}");
        }
        let bad_utf8 = PushRequest {
            streams: vec![StreamAdapter {
                labels: "{a=\"b\"}".into(),
                entries: vec![EntryAdapter {
                    line: "XX".into(),
                    ..Default::default()
                }],
                hash: 0,
            }],
        }
        .encode_to_vec();
        let at = bad_utf8.windows(2).position(|w| w == b"XX").unwrap();
        let mut b = bad_utf8.clone();
        b[at] = 0xff;
        assert!(PushRequest::decode(&b[..]).is_err());
        assert_eq!(
            push_request(&b).unwrap_err().to_string(),
            "a log line is not valid UTF-8"
        );
        // Field 1 of PushRequest as a varint.
        assert!(push_request(&[1 << 3, 1]).is_err());
    }
}
