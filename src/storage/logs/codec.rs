//! Byte encoding shared by the WAL records and the segment files: LEB128
//! varints, length-prefixed strings and label sets, and a bounds-checked
//! reader whose errors name what was being read.

use crate::logs::LogEntry;
use crate::model::{Label, Labels};
use crate::storage::tsdb::block::format::Decoder;
pub(crate) use crate::storage::tsdb::block::format::{put_uvarint, put_varint};

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Appends a label set (count, then name/value pairs).
pub(crate) fn put_labels(buf: &mut Vec<u8>, l: &Labels) {
    put_uvarint(buf, l.len() as u64);
    for p in l.iter() {
        put_bytes(buf, p.name.as_bytes());
        put_bytes(buf, p.value.as_bytes());
    }
}

/// Appends an entry: timestamp, line, structured metadata.
pub(crate) fn put_entry(buf: &mut Vec<u8>, e: &LogEntry) {
    put_varint(buf, e.ts);
    put_bytes(buf, e.line.as_bytes());
    put_labels(buf, &e.metadata);
}

/// A cursor over encoded bytes whose errors name what was being read.
pub(crate) struct Reader<'a> {
    d: Decoder<'a>,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            d: Decoder::new(buf),
        }
    }

    /// True when every byte was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.d.is_empty()
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.d.pos()
    }

    fn bad(&self, what: &str) -> String {
        format!("truncated or malformed {what} at offset {}", self.d.pos())
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, String> {
        self.d.u8().ok_or_else(|| self.bad(what))
    }

    /// An unsigned varint.
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.d.uvarint().ok_or_else(|| self.bad(what))
    }

    /// A varint used as a count or length, bounded by the bytes left.
    pub(crate) fn len(&mut self, what: &str) -> Result<usize, String> {
        let left = self.d.rest().len();
        self.d.len(left).ok_or_else(|| self.bad(what))
    }

    /// A zig-zag varint.
    pub(crate) fn varint(&mut self, what: &str) -> Result<i64, String> {
        self.d.varint().ok_or_else(|| self.bad(what))
    }

    /// `n` raw bytes.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        self.d.bytes(n).ok_or_else(|| self.bad(what))
    }

    /// A length-prefixed byte string.
    pub(crate) fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.len(what)?;
        self.take(n, what)
    }

    /// A length-prefixed UTF-8 string.
    pub(crate) fn string(&mut self, what: &str) -> Result<String, String> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    /// A label set written by [`put_labels`].
    pub(crate) fn labels(&mut self, what: &str) -> Result<Labels, String> {
        let n = self.len(what)?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string(what)?;
            let value = self.string(what)?;
            if value.is_empty() || pairs.last().is_some_and(|l: &Label| l.name >= name) {
                return Err(format!("{what}: unsorted or empty label {name:?}"));
            }
            pairs.push(Label::new(name, value));
        }
        Ok(Labels::from_sorted(pairs))
    }

    /// Steps over a label set written by [`put_labels`] (not checked).
    pub(crate) fn skip_labels(&mut self, what: &str) -> Result<(), String> {
        let n = self.len(what)?;
        for _ in 0..2 * n {
            self.bytes(what)?;
        }
        Ok(())
    }

    /// An entry written by [`put_entry`].
    pub(crate) fn entry(&mut self) -> Result<LogEntry, String> {
        Ok(LogEntry {
            ts: self.varint("entry timestamp")?,
            line: self.string("entry line")?,
            metadata: self.labels("structured metadata")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncation() {
        let e = LogEntry {
            ts: -5,
            line: "héllo".into(),
            metadata: Labels::from_pairs([("trace_id", "abc")]),
        };
        let mut buf = Vec::new();
        put_uvarint(&mut buf, 3);
        put_entry(&mut buf, &e);
        let mut r = Reader::new(&buf);
        assert_eq!(r.len("x").unwrap(), 3);
        assert_eq!(r.entry().unwrap(), e);
        assert!(r.is_empty());
        for cut in 0..buf.len() {
            let mut r = Reader::new(&buf[..cut]);
            let ok = r.len("x").and_then(|_| r.entry());
            assert!(ok.is_err(), "cut at {cut} decoded");
        }
    }
}
