//! The WAL record of one acknowledged push: the tenant and, per stream, the
//! entries the head accepted (validated, duplicates removed), so replay
//! applies records without validating again.
//!
//! Layout: `kind (1 = push) | tenant | streams: count, then per stream
//! labels and entries` in the varint encoding of [`super::codec`].

use super::codec::{put_bytes, put_entry, put_labels, put_uvarint, Reader};
use crate::logs::Stream;
use crate::model::Tenant;

const KIND_PUSH: u8 = 1;

/// Encodes a push record.
pub(crate) fn encode(tenant: &Tenant, streams: &[Stream]) -> Vec<u8> {
    let size: usize = streams
        .iter()
        .flat_map(|s| s.entries.iter())
        .map(|e| e.line.len() + 16)
        .sum();
    let mut buf = Vec::with_capacity(size + 64);
    buf.push(KIND_PUSH);
    put_bytes(&mut buf, tenant.as_str().as_bytes());
    put_uvarint(&mut buf, streams.len() as u64);
    for s in streams {
        put_labels(&mut buf, &s.labels);
        put_uvarint(&mut buf, s.entries.len() as u64);
        for e in &s.entries {
            put_entry(&mut buf, e);
        }
    }
    buf
}

/// Decodes a push record.
pub(crate) fn decode(payload: &[u8]) -> Result<(Tenant, Vec<Stream>), String> {
    let mut r = Reader::new(payload);
    let kind = r.u8("record kind")?;
    if kind != KIND_PUSH {
        return Err(format!("unknown log record kind {kind}"));
    }
    let tenant = Tenant::new(&r.string("tenant")?).map_err(|e| format!("tenant: {e}"))?;
    let n = r.len("stream count")?;
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let labels = r.labels("stream labels")?;
        let count = r.len("entry count")?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(r.entry()?);
        }
        streams.push(Stream { labels, entries });
    }
    if !r.is_empty() {
        return Err("trailing bytes after the push record".into());
    }
    Ok((tenant, streams))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogEntry;
    use crate::model::Labels;

    #[test]
    fn push_record_round_trips() {
        let t = Tenant::new("team-a").unwrap();
        let streams = vec![Stream {
            labels: Labels::from_pairs([("app", "api")]),
            entries: vec![LogEntry::new(1, "a"), LogEntry::new(2, "b")],
        }];
        let rec = encode(&t, &streams);
        assert_eq!(decode(&rec).unwrap(), (t, streams));
        assert!(decode(&rec[..rec.len() - 1]).is_err());
        assert!(decode(&[9]).is_err());
    }
}
