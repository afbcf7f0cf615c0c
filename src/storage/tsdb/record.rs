//! WAL record encodings of the metrics head. Every record starts with a type
//! byte, a format version byte and the tenant, so one WAL serves all tenants.
//! Series are referred to by their per-tenant id, introduced by a series
//! record that always precedes the first record using the id.
//!
//! Layout after the tenant: an entry count (uvarint), then entries:
//! - series: `id uvarint, label count uvarint, (name, value) strings`
//! - samples: `id uvarint, t zig-zag varint, value as 8 bytes LE`
//! - exemplars: `id uvarint, t varint, value 8 bytes, label count, labels`
//! - metadata: `metric, type, help, unit` strings
//! - truncation (one entry): `before` zig-zag varint, `min_valid` zig-zag
//!   varint (`i64::MIN` for none)
//!
//! Strings are a uvarint length and UTF-8 bytes.

use crate::model::{Exemplar, Label, Labels, MetricMetadata, MetricType, Tenant};
use crate::storage::StorageError;

const VERSION: u8 = 1;
const SERIES: u8 = 1;
const SAMPLES: u8 = 2;
const EXEMPLARS: u8 = 3;
const METADATA: u8 = 4;
const TRUNCATION: u8 = 5;

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// New series and their ids.
    Series(Tenant, Vec<(u32, Labels)>),
    /// Samples as `(series id, t, v)`.
    Samples(Tenant, Vec<(u32, i64, f64)>),
    /// Exemplars by series id.
    Exemplars(Tenant, Vec<(u32, Exemplar)>),
    /// Metric metadata.
    Metadata(Tenant, Vec<MetricMetadata>),
    /// The head dropped what it held older than `before`, which is in blocks
    /// from then on (written after the blocks are durable), and refuses
    /// in-order samples older than `min_valid`. Replay applies it where it
    /// stands in the log, so samples a flush moved into blocks are not
    /// replayed even when a crash kept the WAL segments holding them.
    Truncation {
        /// Its tenant.
        tenant: Tenant,
        /// Samples older than this were dropped (`i64::MIN`: none).
        before: i64,
        /// The head's lower bound for in-order samples, if any.
        min_valid: Option<i64>,
    },
}

/// Builds one record of a kind; `finish` returns the payload.
pub(crate) struct Encoder {
    buf: Vec<u8>,
    count: u64,
    kind: u8,
    tenant: Tenant,
}

impl Encoder {
    fn new(kind: u8, tenant: &Tenant) -> Encoder {
        Encoder {
            buf: Vec::new(),
            count: 0,
            kind,
            tenant: tenant.clone(),
        }
    }

    /// A series record.
    pub fn series(tenant: &Tenant) -> Encoder {
        Encoder::new(SERIES, tenant)
    }

    /// A samples record.
    pub fn samples(tenant: &Tenant) -> Encoder {
        Encoder::new(SAMPLES, tenant)
    }

    /// An exemplars record.
    pub fn exemplars(tenant: &Tenant) -> Encoder {
        Encoder::new(EXEMPLARS, tenant)
    }

    /// A metadata record.
    pub fn metadata(tenant: &Tenant) -> Encoder {
        Encoder::new(METADATA, tenant)
    }

    /// A truncation record (see [`Record::Truncation`]).
    pub fn truncation(tenant: &Tenant, before: i64, min_valid: Option<i64>) -> Vec<u8> {
        let mut e = Encoder::new(TRUNCATION, tenant);
        put_varint(&mut e.buf, before);
        put_varint(&mut e.buf, min_valid.unwrap_or(i64::MIN));
        e.count = 1;
        e.finish().expect("one entry")
    }

    /// Bytes of entries so far.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Adds a series entry.
    pub fn add_series(&mut self, id: u32, labels: &Labels) {
        put_uvarint(&mut self.buf, id as u64);
        put_labels(&mut self.buf, labels);
        self.count += 1;
    }

    /// Adds a sample entry.
    pub fn add_sample(&mut self, id: u32, t: i64, v: f64) {
        put_uvarint(&mut self.buf, id as u64);
        put_varint(&mut self.buf, t);
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
        self.count += 1;
    }

    /// Adds an exemplar entry.
    pub fn add_exemplar(&mut self, id: u32, e: &Exemplar) {
        put_uvarint(&mut self.buf, id as u64);
        put_varint(&mut self.buf, e.t);
        self.buf.extend_from_slice(&e.value.to_bits().to_le_bytes());
        put_labels(&mut self.buf, &e.labels);
        self.count += 1;
    }

    /// Adds a metadata entry.
    pub fn add_metadata(&mut self, m: &MetricMetadata) {
        for s in [m.metric.as_str(), m.kind.as_str(), &m.help, &m.unit] {
            put_str(&mut self.buf, s);
        }
        self.count += 1;
    }

    /// The payload, or `None` when no entry was added.
    pub fn finish(self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(self.buf.len() + 32);
        out.push(self.kind);
        out.push(VERSION);
        put_str(&mut out, self.tenant.as_str());
        put_uvarint(&mut out, self.count);
        out.extend_from_slice(&self.buf);
        Some(out)
    }
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn put_labels(buf: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(buf, labels.len() as u64);
    for l in labels {
        put_str(buf, &l.name);
        put_str(buf, &l.value);
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.pos).ok_or("record truncated")?;
        self.pos += 1;
        Ok(v)
    }

    fn uvarint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn varint(&mut self) -> Result<i64, String> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn id(&mut self) -> Result<u32, String> {
        u32::try_from(self.uvarint()?).map_err(|_| "series id out of range".to_string())
    }

    fn f64(&mut self) -> Result<f64, String> {
        let s = self
            .b
            .get(self.pos..self.pos + 8)
            .ok_or("record truncated")?;
        self.pos += 8;
        Ok(f64::from_bits(u64::from_le_bytes(
            s.try_into().expect("8 bytes"),
        )))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.uvarint()? as usize;
        let s = self
            .b
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or("string runs past the record end")?;
        self.pos += n;
        std::str::from_utf8(s).map_err(|_| "string is not UTF-8".to_string())
    }

    fn labels(&mut self) -> Result<Labels, String> {
        let n = self.uvarint()? as usize;
        let mut pairs = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let name = self.str()?;
            let value = self.str()?;
            pairs.push(Label::new(name, value));
        }
        if !pairs.windows(2).all(|w| w[0].name < w[1].name)
            || pairs.iter().any(|l| l.value.is_empty())
        {
            return Err("labels are not sorted and unique".into());
        }
        Ok(Labels::from_sorted(pairs))
    }

    fn entries<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let n = self.uvarint()? as usize;
        // Every entry takes at least one byte: bound the allocation by the payload.
        let mut out = Vec::with_capacity(n.min(self.b.len()));
        for _ in 0..n {
            out.push(f(self)?);
        }
        if self.pos != self.b.len() {
            return Err(format!("{} trailing bytes", self.b.len() - self.pos));
        }
        Ok(out)
    }
}

/// Decodes one payload; `segment` names the WAL segment in errors.
pub(crate) fn decode(segment: u64, payload: &[u8]) -> Result<Record, StorageError> {
    decode_inner(payload).map_err(|reason| StorageError::Corrupt {
        path: format!("wal segment {segment}"),
        reason: format!("metrics record: {reason}"),
    })
}

fn decode_inner(payload: &[u8]) -> Result<Record, String> {
    let mut r = Reader { b: payload, pos: 0 };
    let kind = r.byte()?;
    let version = r.byte()?;
    if version != VERSION {
        return Err(format!("unsupported record version {version}"));
    }
    let tenant = Tenant::new(r.str()?)?;
    Ok(match kind {
        SERIES => Record::Series(tenant, r.entries(|r| Ok((r.id()?, r.labels()?)))?),
        SAMPLES => Record::Samples(tenant, r.entries(|r| Ok((r.id()?, r.varint()?, r.f64()?)))?),
        EXEMPLARS => Record::Exemplars(
            tenant,
            r.entries(|r| {
                let id = r.id()?;
                let t = r.varint()?;
                let value = r.f64()?;
                Ok((
                    id,
                    Exemplar {
                        labels: r.labels()?,
                        value,
                        t,
                    },
                ))
            })?,
        ),
        METADATA => Record::Metadata(
            tenant,
            r.entries(|r| {
                Ok(MetricMetadata {
                    metric: r.str()?.to_string(),
                    kind: MetricType::parse(r.str()?),
                    help: r.str()?.to_string(),
                    unit: r.str()?.to_string(),
                })
            })?,
        ),
        TRUNCATION => {
            let e = r.entries(|r| Ok((r.varint()?, r.varint()?)))?;
            let [(before, min_valid)] = e[..] else {
                return Err(format!("truncation record with {} entries", e.len()));
            };
            Record::Truncation {
                tenant,
                before,
                min_valid: (min_valid != i64::MIN).then_some(min_valid),
            }
        }
        other => return Err(format!("unknown record type {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;

    #[test]
    fn records_round_trip() {
        let t = Tenant::new("team-a").unwrap();
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let mut e = Encoder::series(&t);
        e.add_series(7, &l);
        assert_eq!(
            decode(0, &e.finish().unwrap()).unwrap(),
            Record::Series(t.clone(), vec![(7, l.clone())])
        );
        let mut e = Encoder::samples(&t);
        e.add_sample(7, -5, 1.5);
        e.add_sample(7, i64::MAX, f64::from_bits(STALE_NAN_BITS));
        let Record::Samples(_, s) = decode(0, &e.finish().unwrap()).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!((s[0].0, s[0].1, s[0].2), (7, -5, 1.5));
        assert_eq!(s[1].2.to_bits(), STALE_NAN_BITS);
        let ex = Exemplar {
            labels: Labels::from_pairs([("trace_id", "abc")]),
            value: 2.0,
            t: 9,
        };
        let mut e = Encoder::exemplars(&t);
        e.add_exemplar(7, &ex);
        assert_eq!(
            decode(0, &e.finish().unwrap()).unwrap(),
            Record::Exemplars(t.clone(), vec![(7, ex)])
        );
        let md = MetricMetadata {
            metric: "up".into(),
            kind: MetricType::Gauge,
            help: "h".into(),
            unit: "".into(),
        };
        let mut e = Encoder::metadata(&t);
        e.add_metadata(&md);
        assert_eq!(
            decode(0, &e.finish().unwrap()).unwrap(),
            Record::Metadata(t.clone(), vec![md])
        );
        assert!(Encoder::samples(&Tenant::anonymous()).finish().is_none());
        for (before, min_valid) in [(7_200_000, Some(7_200_000)), (i64::MIN, None), (-3, None)] {
            assert_eq!(
                decode(0, &Encoder::truncation(&t, before, min_valid)).unwrap(),
                Record::Truncation {
                    tenant: t.clone(),
                    before,
                    min_valid
                }
            );
        }
    }

    #[test]
    fn bad_records_are_errors_naming_the_segment() {
        let t = Tenant::anonymous();
        let mut e = Encoder::samples(&t);
        e.add_sample(1, 2, 3.0);
        let p = e.finish().unwrap();
        for bad in [&p[..p.len() - 1], &[9u8, 1, 0][..], &[][..]] {
            let err = decode(42, bad).unwrap_err().to_string();
            assert!(err.contains("wal segment 42"), "{err}");
        }
    }
}
