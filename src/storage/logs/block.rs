//! The payload of a segment block (data formats 2 to 4): a log-aware,
//! reversible columnar transform, each column compressed on its own.
//!
//! Every line is split into a *template* and typed variables (in the spirit
//! of CLP): a run of lowercase hex digits of even length 8..=510 standing
//! alone between non-alphanumeric bytes becomes 1 byte per 2 digits in the
//! hex column; a canonical decimal number (no leading zero, fits in u64)
//! becomes a varint in an integer column (format 3: the column of the word
//! before it, see [`IntSlots`]; format 2: of its ordinal in the line). The
//! template keeps every other byte and a marker per variable. Format 3
//! blocks hold a template id per line into the segment's [`Templates`]
//! (kept in its index and in memory, so a block still decodes with one
//! read); format 2 blocks carry their own templates column. Timestamps are
//! stored as the first value and deltas divided by their common divisor.
//!
//! Layout: `entries | columns | per column: kind u8, codec u8, raw length,
//! stored length | column bytes...` (varints), codec 0 = stored, 1 = zstd;
//! format 4 adds, for the integer columns (template ids, numbers), 2 =
//! bit-packed against the minimum and 3 = dictionary and byte codes, each
//! chosen when smaller than zstd of the varints (uniform ids and durations
//! pack near their entropy; zstd keeps most of their varint bytes).
//! Lines are bytes to the codec: any byte sequence round-trips, markers in
//! lines are escaped.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use super::codec::{put_bytes, put_labels, put_uvarint, put_varint, Reader};
use super::needle;
use crate::logs::{LineNeed, LogEntry};
use crate::storage::idmap::IdMap;

/// Column kinds, in block order; integer columns are `INTS + n`.
const TIMESTAMPS: u8 = 0;
const TEMPLATES: u8 = 1;
const TEMPLATE_IDS: u8 = 2;
const HEX: u8 = 3;
const METADATA: u8 = 4;
const INTS: u8 = 16;
/// Integer columns; numbers of further kinds share the last one.
const INT_COLUMNS: u8 = 24;
/// Template bytes before a number searched for its word.
const WORD_WINDOW: usize = 32;

/// Template markers; a literal marker byte is escaped by `ESC`.
pub(super) const M_INT: u8 = 1;
pub(super) const M_HEX: u8 = 2;
pub(super) const ESC: u8 = 3;

const STORED: u8 = 0;
const ZSTD: u8 = 1;
/// Format 4: a column of varints stored frame-of-reference bit-packed
/// (count, minimum, bit width, then each value minus the minimum in that
/// many bits, least significant first); decodes back to the varints.
const PACKED: u8 = 2;
/// Format 4: a column of varints with at most [`DICT_MAX`] distinct values
/// stored as a dictionary and one byte per value: the raw length of that
/// form, then it zstd-compressed (distinct count, the values, the codes).
const DICT: u8 = 3;
const DICT_MAX: usize = 256;

/// What a column holds, for size reports.
pub(crate) fn column_name(kind: u8) -> &'static str {
    match kind {
        TIMESTAMPS => "timestamps",
        TEMPLATES => "line templates",
        TEMPLATE_IDS => "template ids",
        HEX => "hex ids",
        METADATA => "structured metadata",
        k if (INTS..INTS + INT_COLUMNS).contains(&k) => "numbers",
        _ => "unknown",
    }
}

/// The line templates of a segment, by id.
#[derive(Default)]
pub(crate) struct Templates {
    list: Vec<Vec<u8>>,
    /// Ids by the xxh3 hash of their template (while writing): the first
    /// template with that hash; `clashes` holds later ones.
    ids: IdMap<u64, u64>,
    clashes: HashMap<Vec<u8>, u64>,
}

impl Templates {
    /// The id of a template, adding it when new.
    fn id(&mut self, t: &[u8]) -> u64 {
        let next = self.list.len() as u64;
        match self.ids.entry(xxh3_64(t)) {
            Entry::Vacant(v) => {
                v.insert(next);
            }
            Entry::Occupied(o) => {
                let id = *o.get();
                if self.list[id as usize] == t {
                    return id;
                }
                if let Some(&id) = self.clashes.get(t) {
                    return id;
                }
                self.clashes.insert(t.to_vec(), next);
            }
        }
        self.list.push(t.to_vec());
        next
    }

    /// Templates held.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Serialized: each template length-prefixed, the whole zstd-compressed.
    pub(crate) fn to_bytes(
        &self,
        zstd: &mut zstd::bulk::Compressor<'_>,
    ) -> std::io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        for t in &self.list {
            put_bytes(&mut raw, t);
        }
        let mut out = Vec::new();
        put_uvarint(&mut out, raw.len() as u64);
        out.extend_from_slice(&zstd.compress(&raw)?);
        Ok(out)
    }

    /// Templates from [`Templates::to_bytes`].
    pub(crate) fn from_bytes(b: &[u8]) -> Result<Templates, String> {
        let mut r = Reader::new(b);
        let n = r.u64("templates length")? as usize;
        if n > MAX_COLUMN {
            return Err(format!("templates of {n} bytes"));
        }
        let rest = r.take(b.len() - r.pos(), "templates")?;
        let raw = zstd::bulk::decompress(rest, n).map_err(|e| format!("templates: {e}"))?;
        Ok(Templates {
            list: split_templates(&raw)?,
            ..Templates::default()
        })
    }
}

fn split_templates(raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut r = Reader::new(raw);
    let mut list = Vec::new();
    while !r.is_empty() {
        list.push(r.bytes("line template")?.to_vec());
    }
    Ok(list)
}

/// Columns of a block being built.
#[derive(Default)]
struct Columns {
    template_ids: Vec<u64>,
    hex: Vec<u8>,
    ints: Vec<Vec<u64>>,
    slots: IntSlots,
    scratch: Vec<u8>,
    values: Vec<u64>,
}

/// Assigns each number of a block to an integer column by the word before
/// it in the template (its last 8 ASCII letters within [`WORD_WINDOW`]
/// bytes), in order of first appearance, so `status=200` and `took=12ms`
/// fill different columns whatever comes before them. The encoder and the
/// decoder see the same templates in the same order, so they agree.
/// Format 2 used the ordinal of the number in the line instead.
#[derive(Default)]
struct IntSlots {
    ordinal: bool,
    cols: IdMap<u64, usize>,
    /// Per template id, its numbers' columns as a range of `flat`
    /// (`u32::MAX` at the start: not seen yet).
    by_template: Vec<(u32, u32)>,
    flat: Vec<u8>,
}

impl IntSlots {
    /// The columns of the numbers of template `id`, in order.
    fn of(&mut self, id: u64, t: &[u8]) -> &[u8] {
        let i = id as usize;
        if self.by_template.len() <= i {
            self.by_template.resize(i + 1, (u32::MAX, 0));
        }
        if self.by_template[i].0 == u32::MAX {
            let start = self.flat.len();
            let mut k = 0;
            while k < t.len() {
                match t[k] {
                    M_INT if self.ordinal => {
                        let n = self.flat.len() - start;
                        self.flat.push(n.min(7) as u8);
                    }
                    M_INT => {
                        let c = self.column(&t[..k]) as u8;
                        self.flat.push(c);
                    }
                    M_HEX | ESC => k += 1,
                    _ => {}
                }
                k += 1;
            }
            self.by_template[i] = (start as u32, self.flat.len() as u32);
        }
        let (a, b) = self.by_template[i];
        &self.flat[a as usize..b as usize]
    }

    /// The column of a number whose template so far is `prefix`.
    fn column(&mut self, prefix: &[u8]) -> usize {
        let w = &prefix[prefix.len().saturating_sub(WORD_WINDOW)..];
        let end = w
            .iter()
            .rposition(u8::is_ascii_alphabetic)
            .map_or(0, |p| p + 1);
        let start = w[..end]
            .iter()
            .rposition(|b| !b.is_ascii_alphabetic())
            .map_or(0, |p| p + 1);
        let key = w[start.max(end.saturating_sub(8))..end]
            .iter()
            .fold(0u64, |k, &b| k << 8 | u64::from(b));
        let next = self.cols.len().min(usize::from(INT_COLUMNS) - 1);
        *self.cols.entry(key).or_insert(next)
    }
}

/// Byte classes of the template split, one table lookup per byte.
const DIGIT: u8 = 1;
/// `a`..=`f`.
const HEX_LETTER: u8 = 2;
/// Other ASCII letters.
const LETTER: u8 = 4;
/// A marker byte, escaped in templates.
const MARKER: u8 = 8;
const ALNUM: u8 = DIGIT | HEX_LETTER | LETTER;

static CLASS: [u8; 256] = {
    let mut c = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let x = b as u8;
        c[b] = match x {
            b'0'..=b'9' => DIGIT,
            b'a'..=b'f' => HEX_LETTER,
            b'g'..=b'z' | b'A'..=b'Z' => LETTER,
            M_INT | M_HEX | ESC => MARKER,
            _ => 0,
        };
        b += 1;
    }
    c
};

/// A run of alphanumerics, given the union of its byte classes, is a hex
/// id: lowercase hex digits, not all decimal, even length 8..=510.
fn is_hex_run(run: &[u8], classes: u8) -> bool {
    classes & LETTER == 0
        && classes & HEX_LETTER != 0
        && run.len() >= 8
        && run.len() <= 510
        && run.len() % 2 == 0
}

/// The value of a lowercase hex digit.
pub(super) fn hex_val(b: u8) -> u8 {
    if b <= b'9' {
        b - b'0'
    } else {
        b - b'a' + 10
    }
}

/// The value of a canonical decimal number (no leading zero, fits u64).
fn canonical_int(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 20 || (d.len() > 1 && d[0] == b'0') {
        return None;
    }
    d.iter().try_fold(0u64, |v, &b| {
        v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn push_literal(t: &mut Vec<u8>, b: u8) {
    if matches!(b, M_INT | M_HEX | ESC) {
        t.push(ESC);
    }
    t.push(b);
}

impl Columns {
    /// Splits a line into its template and variables in one pass: runs of
    /// separators and of alphanumerics without digits are copied whole.
    fn add_line(&mut self, line: &[u8], templates: &mut Templates) {
        let mut t = std::mem::take(&mut self.scratch);
        t.clear();
        self.values.clear();
        let n = line.len();
        let mut i = 0;
        while i < n {
            // Separators up to the next alphanumeric.
            let start = i;
            let mut classes = 0;
            while i < n && CLASS[usize::from(line[i])] & ALNUM == 0 {
                classes |= CLASS[usize::from(line[i])];
                i += 1;
            }
            if classes & MARKER == 0 {
                t.extend_from_slice(&line[start..i]);
            } else {
                for &b in &line[start..i] {
                    push_literal(&mut t, b);
                }
            }
            // Then a run of alphanumerics.
            let start = i;
            let mut classes = 0;
            while i < n && CLASS[usize::from(line[i])] & ALNUM != 0 {
                classes |= CLASS[usize::from(line[i])];
                i += 1;
            }
            let run = &line[start..i];
            if is_hex_run(run, classes) {
                t.push(M_HEX);
                t.push((run.len() / 2) as u8);
                self.hex.extend(
                    run.chunks_exact(2)
                        .map(|p| hex_val(p[0]) << 4 | hex_val(p[1])),
                );
            } else if classes & DIGIT == 0 {
                t.extend_from_slice(run);
            } else {
                self.split_digits(run, &mut t);
            }
        }
        let id = templates.id(&t);
        self.template_ids.push(id);
        for (&col, &v) in self.slots.of(id, &t).iter().zip(&self.values) {
            let col = usize::from(col);
            if self.ints.len() <= col {
                self.ints.resize(col + 1, Vec::new());
            }
            self.ints[col].push(v);
        }
        self.scratch = t;
    }

    /// Appends an alphanumeric run holding digits to the template: its
    /// canonical numbers as markers (values into `values`), the rest as is.
    fn split_digits(&mut self, run: &[u8], t: &mut Vec<u8>) {
        let mut k = 0;
        while k < run.len() {
            let l0 = k;
            while k < run.len() && !run[k].is_ascii_digit() {
                k += 1;
            }
            t.extend_from_slice(&run[l0..k]);
            let d0 = k;
            while k < run.len() && run[k].is_ascii_digit() {
                k += 1;
            }
            if d0 == k {
                break;
            }
            match canonical_int(&run[d0..k]) {
                Some(v) => {
                    t.push(M_INT);
                    self.values.push(v);
                }
                None => t.extend_from_slice(&run[d0..k]),
            }
        }
    }
}

/// Timestamps: the common divisor of the deltas, the first value, then
/// each delta divided by the divisor (nothing for no entries).
fn encode_timestamps(entries: &[LogEntry]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(entries.len() * 2 + 16);
    if entries.is_empty() {
        return buf;
    }
    let deltas = entries.windows(2).map(|w| w[1].ts.wrapping_sub(w[0].ts));
    let mut g = deltas.clone().fold(0u64, |g, d| gcd(g, d.unsigned_abs()));
    if g == 0 || g > i64::MAX as u64 {
        g = 1;
    }
    put_uvarint(&mut buf, g);
    put_varint(&mut buf, entries.first().map_or(0, |e| e.ts));
    for d in deltas {
        put_varint(&mut buf, d / g as i64);
    }
    buf
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Compresses columns into a format 4 block whose templates go into the
/// segment's `templates`. Returns the block and its decoded size (the sum
/// of the raw columns).
pub(crate) fn encode(
    entries: &[LogEntry],
    templates: &mut Templates,
    zstd: &mut zstd::bulk::Compressor<'_>,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut c = Columns::default();
    for e in entries {
        c.add_line(e.line.as_bytes(), templates);
    }
    let mut meta = Vec::with_capacity(entries.len());
    for e in entries {
        put_labels(&mut meta, &e.metadata);
    }
    let mut cols: Vec<(u8, Vec<u8>, &[u64])> = vec![
        (TIMESTAMPS, encode_timestamps(entries), &[]),
        (TEMPLATE_IDS, varints(&c.template_ids), &c.template_ids),
        (HEX, c.hex, &[]),
        (METADATA, meta, &[]),
    ];
    for (i, col) in c.ints.iter().enumerate() {
        cols.push((INTS + i as u8, varints(col), col));
    }
    cols.retain(|(_, raw, _)| !raw.is_empty());
    let mut head = Vec::with_capacity(16 + cols.len() * 8);
    put_uvarint(&mut head, entries.len() as u64);
    put_uvarint(&mut head, cols.len() as u64);
    let mut body = Vec::new();
    let mut raw_total = 0u64;
    for (kind, raw, ints) in &cols {
        // Few distinct numbers (status codes, enums) take a dictionary;
        // the varints are then not worth compressing.
        let (mut codec, mut bytes) = match dict_codes(ints) {
            Some(d) => {
                let mut b = Vec::with_capacity(d.len() / 2);
                put_uvarint(&mut b, d.len() as u64);
                b.extend_from_slice(&zstd.compress(&d)?);
                (DICT, b)
            }
            None => {
                let packed = zstd.compress(raw)?;
                if packed.len() < raw.len() {
                    (ZSTD, packed)
                } else {
                    (STORED, raw.clone())
                }
            }
        };
        if let Some(p) = pack_ints(ints, bytes.len()) {
            (codec, bytes) = (PACKED, p);
        }
        head.push(*kind);
        head.push(codec);
        put_uvarint(&mut head, raw.len() as u64);
        put_uvarint(&mut head, bytes.len() as u64);
        body.extend_from_slice(&bytes);
        raw_total += raw.len() as u64;
    }
    head.extend_from_slice(&body);
    Ok((head, raw_total))
}

fn varints(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 2);
    for &v in values {
        put_uvarint(&mut out, v);
    }
    out
}

/// The [`DICT`] form of `values` before compression, when they hold at
/// most [`DICT_MAX`] distinct numbers.
fn dict_codes(values: &[u64]) -> Option<Vec<u8>> {
    // Open addressing on a fixed table at most a quarter full (values are
    // numbers of a log column: a map with SipHash cost more than the rest
    // of the column's encoding).
    const SLOTS: usize = DICT_MAX * 4;
    const EMPTY: u16 = u16::MAX;
    if values.is_empty() {
        return None;
    }
    let mut keys = [0u64; SLOTS];
    let mut slot_code = [EMPTY; SLOTS];
    let mut by_code: Vec<u64> = Vec::with_capacity(DICT_MAX);
    let mut codes = Vec::with_capacity(values.len());
    for &v in values {
        let mut s =
            (v.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize;
        let code = loop {
            match slot_code[s] {
                EMPTY => {
                    if by_code.len() == DICT_MAX {
                        return None;
                    }
                    let c = by_code.len() as u16;
                    (keys[s], slot_code[s]) = (v, c);
                    by_code.push(v);
                    break c;
                }
                c if keys[s] == v => break c,
                _ => s = (s + 1) % SLOTS,
            }
        };
        codes.push(code as u8);
    }
    let mut out = Vec::with_capacity(codes.len() + by_code.len() * 3 + 4);
    put_uvarint(&mut out, by_code.len() as u64);
    for v in by_code {
        put_uvarint(&mut out, v);
    }
    out.extend_from_slice(&codes);
    Some(out)
}

/// The varints of a [`DICT`] column, `raw_len` bytes of them.
fn undict(b: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let mut r = Reader::new(b);
    let len = r.u64("dictionary length")? as usize;
    // Every value takes a code byte and at least one varint byte.
    if len > raw_len.saturating_mul(2).saturating_add(DICT_MAX * 10 + 10) {
        return Err(format!("dictionary form of {len} bytes"));
    }
    let d = zstd::bulk::decompress(&b[r.pos()..], len).map_err(|e| e.to_string())?;
    let mut r = Reader::new(&d);
    let k = r.len("dictionary size")?;
    if k == 0 || k > DICT_MAX {
        return Err(format!("dictionary of {k} values"));
    }
    let mut dict = Vec::with_capacity(k);
    for _ in 0..k {
        let mut v = Vec::with_capacity(10);
        put_uvarint(&mut v, r.u64("dictionary value")?);
        dict.push(v);
    }
    let mut out = Vec::with_capacity(raw_len);
    for &c in &d[r.pos()..] {
        let v = dict
            .get(usize::from(c))
            .ok_or("code outside the dictionary")?;
        if out.len() + v.len() > raw_len {
            return Err("more values than the column holds".into());
        }
        out.extend_from_slice(v);
    }
    Ok(out)
}

/// `values` bit-packed against their minimum ([`PACKED`]), when that takes
/// fewer than `than` bytes (uniform values such as ids pack near their
/// entropy, where zstd keeps most of their varint bytes).
fn pack_ints(values: &[u64], than: usize) -> Option<Vec<u8>> {
    let (&first, rest) = values.split_first()?;
    let (min, max) = rest
        .iter()
        .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let width = 64 - (max - min).leading_zeros();
    let bits = values.len() as u64 * u64::from(width);
    let mut out = Vec::with_capacity(bits.div_ceil(8) as usize + 16);
    put_uvarint(&mut out, values.len() as u64);
    put_uvarint(&mut out, min);
    out.push(width as u8);
    if out.len() as u64 + bits.div_ceil(8) >= than as u64 {
        return None;
    }
    let (mut acc, mut fill) = (0u128, 0u32);
    for &v in values {
        acc |= u128::from(v - min) << fill;
        fill += width;
        while fill >= 8 {
            out.push(acc as u8);
            (acc, fill) = (acc >> 8, fill - 8);
        }
    }
    if fill > 0 {
        out.push(acc as u8);
    }
    Some(out)
}

/// The varints of a [`PACKED`] column, `raw_len` bytes of them.
fn unpack_ints(b: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let mut r = Reader::new(b);
    let n = r.u64("packed count")?;
    let min = r.u64("packed minimum")?;
    let width = u32::from(r.u8("packed width")?);
    if width > 64 || n > raw_len as u64 {
        return Err(format!("{n} packed values of {width} bits"));
    }
    let bits = r.take(b.len() - r.pos(), "packed values")?;
    if bits.len() as u64 != (n * u64::from(width)).div_ceil(8) {
        return Err(format!("{} bytes of {n} packed values", bits.len()));
    }
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut out = Vec::with_capacity(raw_len);
    let (mut acc, mut fill, mut next) = (0u128, 0u32, bits.iter());
    for _ in 0..n {
        while fill < width {
            acc |= u128::from(*next.next().expect("length checked")) << fill;
            fill += 8;
        }
        let v = (acc as u64 & mask)
            .checked_add(min)
            .ok_or("packed value out of range")?;
        (acc, fill) = (acc >> width, fill - width);
        put_uvarint(&mut out, v);
    }
    Ok(out)
}

/// One column as stored: kind, codec, raw and stored lengths, bytes.
struct Col<'a> {
    kind: u8,
    codec: u8,
    raw_len: usize,
    bytes: &'a [u8],
}

/// The entry count and columns of a block.
fn columns(block: &[u8]) -> Result<(usize, Vec<Col<'_>>), String> {
    let mut r = Reader::new(block);
    let n = r.u64("entry count")? as usize;
    let nc = r.len("column count")?;
    let mut heads = Vec::with_capacity(nc);
    for _ in 0..nc {
        let kind = r.u8("column kind")?;
        let codec = r.u8("column codec")?;
        let raw_len = r.u64("column raw length")? as usize;
        let len = r.len("column length")?;
        heads.push((kind, codec, raw_len, len));
    }
    let mut out = Vec::with_capacity(nc);
    for (kind, codec, raw_len, len) in heads {
        out.push(Col {
            kind,
            codec,
            raw_len,
            bytes: r.take(len, "column bytes")?,
        });
    }
    if !r.is_empty() {
        return Err("trailing bytes after the columns".into());
    }
    Ok((n, out))
}

/// Per column of a block: what it holds and its stored bytes (with its
/// share of the block header).
pub(crate) fn column_sizes(block: &[u8]) -> Result<Vec<(&'static str, u64)>, String> {
    let (_, cols) = columns(block)?;
    let body: usize = cols.iter().map(|c| c.bytes.len()).sum();
    let header = (block.len() - body) as u64;
    let mut out: Vec<(&'static str, u64)> = cols
        .iter()
        .map(|c| (column_name(c.kind), c.bytes.len() as u64))
        .collect();
    out.push(("block headers", header));
    Ok(out)
}

/// Largest decoded column accepted (a damaged length must not allocate
/// without bound).
const MAX_COLUMN: usize = 1 << 30;

fn unpack(c: &Col<'_>) -> Result<Vec<u8>, String> {
    let what = column_name(c.kind);
    if c.raw_len > MAX_COLUMN {
        return Err(format!("{what}: {} bytes decoded", c.raw_len));
    }
    let raw = match c.codec {
        STORED => c.bytes.to_vec(),
        ZSTD => zstd::bulk::decompress(c.bytes, c.raw_len).map_err(|e| format!("{what}: {e}"))?,
        PACKED => unpack_ints(c.bytes, c.raw_len).map_err(|e| format!("{what}: {e}"))?,
        DICT => undict(c.bytes, c.raw_len).map_err(|e| format!("{what}: {e}"))?,
        other => return Err(format!("{what}: unknown codec {other}")),
    };
    if raw.len() != c.raw_len {
        return Err(format!(
            "{what}: {} bytes, expected {}",
            raw.len(),
            c.raw_len
        ));
    }
    Ok(raw)
}

/// Decodes a block of data format `version` (2 to 4; format 3 and later
/// blocks use the segment's `templates`): its entries whose lines hold
/// every substring of `must_contain`, with as much of each line as `need`
/// asks (a hint makes it [`LineNeed::Text`]).
///
/// Late materialization: the needles are first matched against the
/// templates and the hex column ([`super::needle`]), only the lines that
/// may hold them are rendered, and those are checked exactly, so the
/// entries are those a scan of every rendered line would keep. Without
/// text, only the timestamps and metadata are decoded (and the numbers,
/// for lengths).
pub(crate) fn decode(
    block: &[u8],
    version: u32,
    templates: &Templates,
    must_contain: &[String],
    need: LineNeed,
) -> Result<Vec<LogEntry>, String> {
    let (n, cols) = columns(block)?;
    let mut by_kind: HashMap<u8, &Col<'_>> = HashMap::with_capacity(cols.len());
    for c in &cols {
        if by_kind.insert(c.kind, c).is_some() {
            return Err(format!("two {} columns", column_name(c.kind)));
        }
    }
    let col = |k: u8| by_kind.get(&k).map_or(Ok(Vec::new()), |c| unpack(c));
    let need = if must_contain.is_empty() {
        need
    } else {
        LineNeed::Text
    };
    let mut out = Vec::with_capacity(if must_contain.is_empty() { n } else { 16 });
    if need == LineNeed::Nothing {
        let (ts_col, meta_col) = (col(TIMESTAMPS)?, col(METADATA)?);
        let mut ts = Timestamps::new(&ts_col, n)?;
        let mut meta = Reader::new(&meta_col);
        for _ in 0..n {
            out.push(LogEntry {
                ts: ts.next()?,
                line: String::new(),
                metadata: meta.labels("structured metadata")?,
            });
        }
        return ts.done(&meta).map(|()| out);
    }
    let own;
    let list = if version == 2 {
        own = split_templates(&col(TEMPLATES)?)?;
        &own
    } else {
        &templates.list
    };
    let ids_col = col(TEMPLATE_IDS)?;
    let hex_col = col(HEX)?;
    let lines = LineTemplates::read(&ids_col, list, version, n)?;
    let keep = match must_contain.is_empty() {
        true => None,
        false => Some(lines.may_hold(must_contain, list, &hex_col)),
    };
    // No line may hold a needle: the other columns are not decoded.
    if keep.as_ref().is_some_and(|k| !k.contains(&true)) {
        return Ok(out);
    }
    let int_cols: Vec<Vec<u8>> = (0..INT_COLUMNS)
        .map(|i| col(INTS + i))
        .collect::<Result<_, _>>()?;
    let (ts_col, meta_col) = (col(TIMESTAMPS)?, col(METADATA)?);
    let mut ts = Timestamps::new(&ts_col, n)?;
    let mut meta = Reader::new(&meta_col);
    let mut hex = Reader::new(&hex_col);
    let mut ints: Vec<Reader<'_>> = int_cols.iter().map(|c| Reader::new(c)).collect();
    let mut line = Vec::new();
    for (i, &tix) in lines.per_line.iter().enumerate() {
        let at = ts.next()?;
        let tpl = &lines.distinct[tix as usize];
        if keep.as_ref().is_some_and(|k| !k[i]) {
            hex.take(tpl.hex, "hex id")?;
            for &c in &tpl.cols {
                ints[usize::from(c)].u64("number")?;
            }
            meta.skip_labels("structured metadata")?;
            continue;
        }
        let text = match need {
            LineNeed::Length => {
                let mut len = tpl.literal + 2 * tpl.hex;
                hex.take(tpl.hex, "hex id")?;
                for &c in &tpl.cols {
                    len += decimal_len(ints[usize::from(c)].u64("number")?);
                }
                " ".repeat(len)
            }
            _ => {
                line.clear();
                render(&list[tpl.id], &tpl.cols, &mut hex, &mut ints, &mut line)?;
                let found = |h: &String| memchr::memmem::find(&line, h.as_bytes()).is_some();
                if !must_contain.iter().all(found) {
                    meta.skip_labels("structured metadata")?;
                    continue;
                }
                String::from_utf8(line.clone()).map_err(|_| "line is not UTF-8")?
            }
        };
        out.push(LogEntry {
            ts: at,
            line: text,
            metadata: meta.labels("structured metadata")?,
        });
    }
    if !(hex.is_empty() && ints.iter().all(|r| r.is_empty())) {
        return Err("column bytes left over".into());
    }
    ts.done(&meta).map(|()| out)
}

/// A cursor over a timestamps column of `n` entries.
struct Timestamps<'a> {
    r: Reader<'a>,
    prev: i64,
    g: i64,
    first: bool,
}

impl<'a> Timestamps<'a> {
    fn new(col: &'a [u8], n: usize) -> Result<Timestamps<'a>, String> {
        let mut r = Reader::new(col);
        let g = match n {
            0 => 1,
            _ => r.u64("timestamp divisor")? as i64,
        };
        Ok(Timestamps {
            r,
            prev: 0,
            g,
            first: true,
        })
    }

    fn next(&mut self) -> Result<i64, String> {
        self.prev = match self.first {
            true => self.r.varint("first timestamp")?,
            false => self
                .prev
                .wrapping_add(self.r.varint("timestamp")?.wrapping_mul(self.g)),
        };
        self.first = false;
        Ok(self.prev)
    }

    /// Checks that this and the metadata column were read to their end.
    fn done(&self, meta: &Reader<'_>) -> Result<(), String> {
        match self.r.is_empty() && meta.is_empty() {
            true => Ok(()),
            false => Err("column bytes left over".into()),
        }
    }
}

/// What rendering a line of one template takes.
struct LineTemplate {
    /// Its id in the template list.
    id: usize,
    /// The integer column of each of its numbers.
    cols: Vec<u8>,
    /// Bytes of the hex column its variables take.
    hex: usize,
    /// Bytes of its lines besides the variables.
    literal: usize,
}

/// The templates of a block's lines: each distinct one once.
struct LineTemplates {
    distinct: Vec<LineTemplate>,
    /// Per line, its index in `distinct`.
    per_line: Vec<u32>,
}

impl LineTemplates {
    /// Reads the template ids column of `n` lines.
    fn read(
        ids_col: &[u8],
        list: &[Vec<u8>],
        version: u32,
        n: usize,
    ) -> Result<LineTemplates, String> {
        let mut ids = Reader::new(ids_col);
        // The integer columns are assigned in order of first appearance,
        // as the encoder did.
        let mut slots = IntSlots {
            ordinal: version == 2,
            ..IntSlots::default()
        };
        let mut index: HashMap<u64, u32> = HashMap::new();
        let mut distinct = Vec::new();
        let mut per_line = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            let id = ids.u64("template id")?;
            let tix = match index.get(&id) {
                Some(&t) => t,
                None => {
                    let t = list
                        .get(id as usize)
                        .ok_or_else(|| format!("template id {id} of {}", list.len()))?;
                    let (hex, literal) = template_sizes(t);
                    distinct.push(LineTemplate {
                        id: id as usize,
                        cols: slots.of(id, t).to_vec(),
                        hex,
                        literal,
                    });
                    index.insert(id, distinct.len() as u32 - 1);
                    distinct.len() as u32 - 1
                }
            };
            per_line.push(tix);
        }
        if !ids.is_empty() {
            return Err("column bytes left over".into());
        }
        Ok(LineTemplates { distinct, per_line })
    }

    /// Per line, whether it may hold every needle (a superset of those that
    /// do).
    fn may_hold(&self, needles: &[String], list: &[Vec<u8>], hex: &[u8]) -> Vec<bool> {
        let mut keep = vec![true; self.per_line.len()];
        let mut scratch = needle::Scratch::default();
        let mut starts: Vec<usize> = Vec::new();
        for text in needles {
            let nd = needle::Needle::new(text.as_bytes());
            let class: Vec<needle::Class> = self
                .distinct
                .iter()
                .map(|t| nd.class(&list[t.id], &mut scratch))
                .collect();
            let mut hit = Vec::new();
            if nd.has_hex_run() && class.contains(&needle::Class::IfHex) {
                if starts.is_empty() {
                    starts.reserve(self.per_line.len() + 1);
                    starts.push(0);
                    for &t in &self.per_line {
                        let last = starts[starts.len() - 1];
                        starts.push(last + self.distinct[t as usize].hex);
                    }
                }
                hit = vec![false; self.per_line.len()];
                nd.hex_lines(hex, &starts, &mut hit);
            }
            for (i, k) in keep.iter_mut().enumerate() {
                *k &= match class[self.per_line[i] as usize] {
                    needle::Class::Never => false,
                    needle::Class::Maybe => true,
                    needle::Class::IfHex => hit[i],
                };
            }
        }
        keep
    }
}

/// The hex-column bytes and the literal bytes of a line of template `t`.
fn template_sizes(t: &[u8]) -> (usize, usize) {
    let (mut hex, mut literal, mut i) = (0, 0, 0);
    while i < t.len() {
        match t[i] {
            M_INT => {}
            M_HEX => {
                hex += usize::from(t.get(i + 1).copied().unwrap_or(0));
                i += 1;
            }
            ESC => {
                literal += 1;
                i += 1;
            }
            _ => literal += 1,
        }
        i += 1;
    }
    (hex, literal)
}

/// Decimal digits of `v`.
fn decimal_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Appends a line rendered from its template, the columns of its numbers
/// and the variables.
fn render(
    t: &[u8],
    cols: &[u8],
    hex: &mut Reader<'_>,
    ints: &mut [Reader<'_>],
    line: &mut Vec<u8>,
) -> Result<(), String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut cols = cols.iter();
    let mut i = 0;
    while i < t.len() {
        // Literal bytes up to the next marker, in one copy.
        let lit = memchr::memchr3(M_INT, M_HEX, ESC, &t[i..]).unwrap_or(t.len() - i);
        line.extend_from_slice(&t[i..i + lit]);
        i += lit;
        if i == t.len() {
            break;
        }
        match t[i] {
            M_INT => {
                let c = *cols.next().ok_or("template numbers")?;
                let v = ints[usize::from(c)].u64("number")?;
                put_decimal(line, v);
            }
            M_HEX => {
                i += 1;
                let n = *t.get(i).ok_or("truncated hex marker")?;
                for &b in hex.take(usize::from(n), "hex id")? {
                    line.push(DIGITS[usize::from(b >> 4)]);
                    line.push(DIGITS[usize::from(b & 15)]);
                }
            }
            ESC => {
                i += 1;
                line.push(*t.get(i).ok_or("truncated escape")?);
            }
            b => line.push(b),
        }
        i += 1;
    }
    Ok(())
}

/// Appends the decimal digits of `v`.
fn put_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    /// Byte-level round trip of lines through the template split.
    fn round_trip_bytes(lines: &[&[u8]]) {
        let mut templates = Templates::default();
        let mut c = Columns::default();
        for l in lines {
            c.add_line(l, &mut templates);
        }
        let ids = varints(&c.template_ids);
        let mut ids = Reader::new(&ids);
        let mut hex = Reader::new(&c.hex);
        let cols: Vec<Vec<u8>> = c.ints.iter().map(|v| varints(v)).collect();
        let mut ints: Vec<Reader<'_>> = (0..INT_COLUMNS as usize)
            .map(|i| Reader::new(cols.get(i).map_or(&[][..], |v| &v[..])))
            .collect();
        let mut slots = IntSlots::default();
        for l in lines {
            let id = ids.u64("id").unwrap();
            let t = &templates.list[id as usize];
            let mut out = Vec::new();
            render(t, slots.of(id, t), &mut hex, &mut ints, &mut out).unwrap();
            assert_eq!(out, *l);
        }
        assert!(hex.is_empty() && ints.iter().all(|r| r.is_empty()));
    }

    #[test]
    fn lines_round_trip_byte_for_byte() {
        let long = "a1".repeat(300) + &"9".repeat(40) + &"x".repeat(70_000);
        // More number kinds than columns, and numbers with no word at all.
        let kinds: String = (0..60)
            .map(|i| format!("k{}x={i} ", "q".repeat(i % 9)))
            .collect();
        let bare: String = (0..20_000).map(|i| format!("{i} ")).collect();
        let lines: Vec<&[u8]> = vec![
            b"",
            b"level=info request_id=0123456789abcdef user=u42 took=12ms",
            b"0 00 007 18446744073709551615 18446744073709551616 -5 1.50",
            b"\x01\x02\x03 marker bytes \x03\x01",
            b"\xff\xfe invalid utf-8 \xc3",
            b"deadbeef DEADBEEF deadbeefx 0123456789abcdef0 abcdef0123",
            b"{\"id\":\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"}",
            long.as_bytes(),
            kinds.as_bytes(),
            bare.as_bytes(),
            kinds.as_bytes(),
        ];
        round_trip_bytes(&lines);
    }

    #[test]
    fn random_bytes_round_trip() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let alphabet = b"0123456789abcdefxyz =\"\x01\x02\x03\xff-";
        let lines: Vec<Vec<u8>> = (0..2000)
            .map(|_| {
                let n = rng.random_range(0..120);
                (0..n)
                    .map(|_| {
                        if rng.random_range(0..10) == 0 {
                            rng.random()
                        } else {
                            alphabet[rng.random_range(0..alphabet.len())]
                        }
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<&[u8]> = lines.iter().map(|l| &l[..]).collect();
        round_trip_bytes(&refs);
    }

    #[test]
    fn packed_ints_round_trip() {
        let cases: Vec<Vec<u64>> = vec![
            vec![7],
            vec![5; 100],
            (0..1000).map(|i| i * 7919 % 200_000).collect(),
            vec![0, u64::MAX, 1, u64::MAX - 1],
            vec![u64::MAX; 3],
            (0..333).map(|i| 1 << (i % 64)).collect(),
        ];
        for values in cases {
            let raw = varints(&values);
            let packed = pack_ints(&values, usize::MAX).unwrap();
            assert_eq!(unpack_ints(&packed, raw.len()).unwrap(), raw);
            for cut in 0..packed.len() {
                assert!(unpack_ints(&packed[..cut], raw.len()).is_err());
            }
        }
        assert_eq!(pack_ints(&[], usize::MAX), None);
        let statuses: Vec<u64> = (0..900).map(|i| [200, 404, 500, 201][i % 7 % 4]).collect();
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let d = dict_codes(&statuses).unwrap();
        let mut b = Vec::new();
        put_uvarint(&mut b, d.len() as u64);
        b.extend_from_slice(&z.compress(&d).unwrap());
        let raw = varints(&statuses);
        assert_eq!(undict(&b, raw.len()).unwrap(), raw);
        assert!(undict(&b, raw.len() - 1).is_err());
        let wide: Vec<u64> = (0..257).collect();
        assert_eq!(dict_codes(&wide), None);
        assert!(dict_codes(&wide[..256]).is_some());
        // Not chosen when not smaller.
        assert_eq!(pack_ints(&[0, u64::MAX], 10), None);
    }

    fn entries() -> Vec<LogEntry> {
        (0..500)
            .map(|i: i64| LogEntry {
                ts: 1_700_000_000_000_000_000 + i * i * 2_000_000 - (i % 3),
                line: format!(
                    "level=info request_id={:016x} user_id=u{} path=/api/v1/users status=200 duration={}ms é",
                    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    i * 7919 % 200_000,
                    i % 3000
                ),
                metadata: if i % 4 == 0 {
                    Labels::from_pairs([("trace_id", format!("{i:x}"))])
                } else {
                    Labels::default()
                },
            })
            .collect()
    }

    /// Encodes into a block and decodes it back through serialized
    /// templates.
    fn round_trip(es: &[LogEntry]) -> (Vec<u8>, Vec<LogEntry>) {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let mut templates = Templates::default();
        let (block, _) = encode(es, &mut templates, &mut z).unwrap();
        let stored = Templates::from_bytes(&templates.to_bytes(&mut z).unwrap()).unwrap();
        let got = decode(&block, 3, &stored, &[], LineNeed::Text).unwrap();
        (block, got)
    }

    #[test]
    fn blocks_round_trip_and_compress() {
        let es = entries();
        let (block, got) = round_trip(&es);
        assert_eq!(got, es);
        let line_bytes: usize = es.iter().map(|e| e.line.len()).sum();
        assert!(
            block.len() * 5 < line_bytes,
            "{} of {line_bytes}",
            block.len()
        );
        let sizes = column_sizes(&block).unwrap();
        assert_eq!(sizes.iter().map(|s| s.1).sum::<u64>(), block.len() as u64);
        assert!(sizes.iter().any(|s| s.0 == "hex ids"));
        assert_eq!(round_trip(&[]).1, []);
        let one = [LogEntry::new(i64::MIN, "")];
        assert_eq!(round_trip(&one).1, one);
        let wide = [LogEntry::new(i64::MIN, "a"), LogEntry::new(i64::MAX, "b")];
        assert_eq!(round_trip(&wide).1, wide);
    }

    #[test]
    fn hints_skip_blocks_without_their_text() {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let mut templates = Templates::default();
        let es = entries();
        let (block, _) = encode(&es, &mut templates, &mut z).unwrap();
        let hint = |h: &str| decode(&block, 3, &templates, &[h.to_string()], LineNeed::Text);
        assert_eq!(hint("user_id=u7919 ").unwrap(), [es[1].clone()]);
        assert_eq!(hint("user_id=u7919x").unwrap(), []);
    }

    #[test]
    fn damaged_blocks_fail_cleanly() {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let mut templates = Templates::default();
        let (block, _) = encode(&entries()[..50], &mut templates, &mut z).unwrap();
        for cut in 0..block.len() {
            let got = decode(&block[..cut], 3, &templates, &[], LineNeed::Text);
            assert!(got.is_err(), "cut at {cut} decoded");
        }
        for at in (0..block.len()).step_by(7) {
            let mut b = block.clone();
            b[at] ^= 0x5a;
            let _ = decode(&b, 3, &templates, &[], LineNeed::Text);
        }
    }
}
