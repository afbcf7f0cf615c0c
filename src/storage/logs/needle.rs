//! Late materialization: which lines of a columnar block can hold a
//! needle, decided from the block's columns before any line is rendered.
//!
//! A line is its template with each variable put back: a number marker
//! renders as decimal digits, a hex marker of `n` bytes as `2n` lowercase
//! hex digits. Per template, a needle is matched against the template read
//! as a pattern (a number is one or more digits, a hex variable that many
//! hex digits); a template no rendering of which can hold the needle rules
//! out all its lines without rendering them.
//!
//! A needle holding a run of 8 or more lowercase hex digits (`H`, its
//! longest) is narrowed further by the hex column: a hex variable is a whole
//! run of letters and digits of its line, so an occurrence of `H` is either
//! inside one hex variable or touches none. A template whose pattern holds
//! the needle only with `H` inside a hex variable keeps just the lines
//! whose hex bytes hold `H` packed (at an even or odd digit offset, compared
//! on the whole bytes inside it): a superset of the lines that hold it,
//! which the caller renders and checks exactly.

use super::block::{hex_val, ESC, M_HEX, M_INT};

/// Shortest hex run of a needle worth a search of the hex column.
const MIN_HEX_RUN: usize = 8;

/// One position of a template read as a pattern.
#[derive(Clone, Copy)]
enum Pos {
    /// This byte.
    Lit(u8),
    /// One or more decimal digits (a number variable).
    Digits,
    /// One lowercase hex digit (of a hex variable).
    Hex,
}

/// How the lines of one template stand to a needle.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    /// No line of the template holds it.
    Never,
    /// Any line may hold it.
    Maybe,
    /// Only lines whose hex variables hold the needle's hex run.
    IfHex,
}

fn is_hex_digit(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

/// A needle to match against templates and the hex column.
pub(crate) struct Needle<'a> {
    text: &'a [u8],
    /// The longest run of lowercase hex digits (at least [`MIN_HEX_RUN`]),
    /// as a range of `text`.
    hex_run: Option<(usize, usize)>,
}

impl<'a> Needle<'a> {
    /// A needle for `text`.
    pub(crate) fn new(text: &'a [u8]) -> Needle<'a> {
        let mut best: Option<(usize, usize)> = None;
        let mut i = 0;
        while i < text.len() {
            if !is_hex_digit(text[i]) {
                i += 1;
                continue;
            }
            let s = i;
            while i < text.len() && is_hex_digit(text[i]) {
                i += 1;
            }
            if i - s >= MIN_HEX_RUN && best.is_none_or(|(a, b)| b - a < i - s) {
                best = Some((s, i));
            }
        }
        Needle {
            text,
            hex_run: best,
        }
    }

    /// How the lines of template `t` stand to the needle.
    pub(crate) fn class(&self, t: &[u8], scratch: &mut Scratch) -> Class {
        pattern(t, &mut scratch.pattern);
        let p = &scratch.pattern;
        if !occurs(p, self.text, None, &mut scratch.sets) {
            return Class::Never;
        }
        match self.hex_run {
            Some(h) if !occurs(p, self.text, Some(h), &mut scratch.sets) => Class::IfHex,
            _ => Class::Maybe,
        }
    }

    /// Marks in `hit` the lines whose hex bytes may hold the needle's hex
    /// run; `starts[i]..starts[i + 1]` are line `i`'s bytes of `hex`.
    pub(crate) fn hex_lines(&self, hex: &[u8], starts: &[usize], hit: &mut [bool]) {
        let Some((a, b)) = self.hex_run else {
            hit.fill(true);
            return;
        };
        let run = &self.text[a..b];
        // The run at an even digit offset of a variable, then at an odd one
        // (its first digit the low half of a byte).
        for skip in [0, 1] {
            let digits = &run[skip..];
            let packed: Vec<u8> = digits
                .chunks_exact(2)
                .map(|p| hex_val(p[0]) << 4 | hex_val(p[1]))
                .collect();
            for at in memchr::memmem::find_iter(hex, &packed) {
                let line = starts.partition_point(|&s| s <= at).saturating_sub(1);
                if let Some(h) = hit.get_mut(line) {
                    *h = true;
                }
            }
        }
    }

    /// True when the needle has a hex run to look up.
    pub(crate) fn has_hex_run(&self) -> bool {
        self.hex_run.is_some()
    }
}

/// Reusable buffers of [`Needle::class`].
#[derive(Default)]
pub(crate) struct Scratch {
    pattern: Vec<Pos>,
    sets: (Vec<u32>, Vec<u32>, Vec<u32>),
}

/// The pattern of template `t` (markers as in `block.rs`). A truncated
/// marker ends the pattern (rendering such a template fails anyway).
fn pattern(t: &[u8], out: &mut Vec<Pos>) {
    out.clear();
    let mut i = 0;
    while i < t.len() {
        match t[i] {
            M_INT => out.push(Pos::Digits),
            M_HEX => {
                let Some(&n) = t.get(i + 1) else { return };
                out.extend(std::iter::repeat_n(Pos::Hex, usize::from(n) * 2));
                i += 1;
            }
            ESC => {
                let Some(&b) = t.get(i + 1) else { return };
                out.push(Pos::Lit(b));
                i += 1;
            }
            b => out.push(Pos::Lit(b)),
        }
        i += 1;
    }
}

/// True when some rendering of pattern `p` holds `n`; with `no_hex`, only
/// with the bytes of `n` in that range matched outside hex variables. A
/// set of pattern positions is advanced over the bytes of `n` (an
/// occurrence may start and end anywhere).
fn occurs(
    p: &[Pos],
    n: &[u8],
    no_hex: Option<(usize, usize)>,
    (cur, next, seen): &mut (Vec<u32>, Vec<u32>, Vec<u32>),
) -> bool {
    cur.clear();
    cur.extend(0..p.len() as u32);
    seen.clear();
    seen.resize(p.len() + 1, u32::MAX);
    for (i, &c) in n.iter().enumerate() {
        let hex_ok = no_hex.is_none_or(|(a, b)| i < a || i >= b);
        next.clear();
        for &s in cur.iter() {
            let Some(&pos) = p.get(s as usize) else {
                continue;
            };
            let ok = match pos {
                Pos::Lit(b) => b == c,
                Pos::Digits => c.is_ascii_digit(),
                Pos::Hex => hex_ok && is_hex_digit(c),
            };
            if !ok {
                continue;
            }
            let stays = matches!(pos, Pos::Digits).then_some(s);
            for to in std::iter::once(s + 1).chain(stays) {
                if seen[to as usize] != i as u32 {
                    seen[to as usize] = i as u32;
                    next.push(to);
                }
            }
        }
        if next.is_empty() {
            return false;
        }
        std::mem::swap(cur, next);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template from a readable form: `#` a number, `%n` a hex variable of
    /// n bytes.
    fn tpl(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'#' => out.push(M_INT),
                b'%' => {
                    out.push(M_HEX);
                    out.push(b[i + 1] - b'0');
                    i += 1;
                }
                c => out.push(c),
            }
            i += 1;
        }
        out
    }

    #[test]
    fn templates_classify_needles() {
        let mut s = Scratch::default();
        let c = |n: &str, t: &str, s: &mut Scratch| Needle::new(n.as_bytes()).class(&tpl(t), s);
        assert_eq!(c("took", "level=info took=#ms", &mut s), Class::Maybe);
        assert_eq!(c("took=12ms", "level=info took=#ms", &mut s), Class::Maybe);
        assert_eq!(c("took=ms", "level=info took=#ms", &mut s), Class::Never);
        assert_eq!(c("took=1a", "level=info took=#ms", &mut s), Class::Never);
        assert_eq!(c("warn", "level=info took=#ms", &mut s), Class::Never);
        assert_eq!(c("k=1", "level=info took=#ms", &mut s), Class::Maybe);
        // A 16-digit id only in an 8-byte hex variable.
        let id = "0123456789abcdef";
        assert_eq!(c(id, "req=%8 took=#ms", &mut s), Class::IfHex);
        assert_eq!(
            c(&format!("={id} "), "req=%8 took=#ms", &mut s),
            Class::IfHex
        );
        assert_eq!(
            c(&format!("={id} "), "req=%8took=#ms", &mut s),
            Class::Never
        );
        assert_eq!(c(id, "took=#ms", &mut s), Class::Never);
        // All digits: a number can hold it too.
        assert_eq!(c("1234567890", "req=%8 took=#ms", &mut s), Class::Maybe);
        // Too short for a hex variable of 4 bytes.
        assert_eq!(c(id, "req=%4", &mut s), Class::Never);
        // Literal text can hold a hex run.
        assert_eq!(c("deadbeef", "x deadbeefy %4", &mut s), Class::Maybe);
    }

    #[test]
    fn hex_lines_find_both_offsets() {
        let n = Needle::new(b"89abcdef01");
        assert!(n.has_hex_run());
        // Line 0: 0123456789abcdef0123 (even offset), line 1:
        // 9abcdef012 (no), line 2: x89abcdef01x -> packed at odd offset:
        // 0x?8 0x9a 0xbc 0xde 0xf0 0x1?
        let hex = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, // line 0
            0x9a, 0xbc, 0xde, 0xf0, 0x12, // line 1
            0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x1f, // line 2
        ];
        let starts = [0, 10, 15, 21];
        let mut hit = [false; 3];
        n.hex_lines(&hex, &starts, &mut hit);
        // Line 1 holds the inner bytes (9abcdef0) but not the needle: a
        // superset is allowed, and line 0 and 2 must be there.
        assert!(hit[0] && hit[2]);
        assert!(!Needle::new(b"0123456").has_hex_run());
    }

    /// Late materialization returns exactly the lines a scan of every
    /// rendered line keeps, for needles cut from the lines (hex ids at even
    /// and odd offsets, numbers, across variable bounds) and absent ones.
    #[test]
    fn needles_select_exactly_the_lines_that_hold_them() {
        use super::super::block::{decode, encode, Templates};
        use crate::logs::{LineNeed, LogEntry};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let alphabet = b"0123456789abcdefxyz =\"-_/";
        let mut entries = Vec::new();
        for i in 0..3000i64 {
            let mut line = String::new();
            for _ in 0..rng.random_range(0..6) {
                match rng.random_range(0..5) {
                    0 => line.push_str(&format!(
                        "{:016x}",
                        rng.random::<u64>() >> rng.random_range(0..8)
                    )),
                    1 => line.push_str(&format!("{}", rng.random_range(0..100_000u32))),
                    2 => line.push_str(
                        ["req=", " took=", "ms ", "=", " id ", "\u{e9}"][rng.random_range(0..6)],
                    ),
                    _ => {
                        for _ in 0..rng.random_range(1..6) {
                            line.push(alphabet[rng.random_range(0..alphabet.len())] as char);
                        }
                    }
                }
            }
            entries.push(LogEntry::new(i * 1000, line));
        }
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let mut templates = Templates::default();
        let (block, _) = encode(&entries, &mut templates, &mut z).unwrap();
        let mut needles: Vec<String> = vec!["zzz".into(), "0123456789abcdef".into(), "=".into()];
        for _ in 0..300 {
            let l = &entries[rng.random_range(0..entries.len())].line;
            if l.is_empty() {
                continue;
            }
            let a = rng.random_range(0..l.len());
            let b = (a + rng.random_range(1..24)).min(l.len());
            if let Some(n) = l.get(a..b) {
                needles.push(n.to_string());
            }
        }
        let mut narrowed = 0;
        for n in &needles {
            let want: Vec<LogEntry> = entries
                .iter()
                .filter(|e| e.line.contains(n.as_str()))
                .cloned()
                .collect();
            let got = decode(
                &block,
                4,
                &templates,
                std::slice::from_ref(n),
                LineNeed::Text,
            )
            .unwrap();
            assert_eq!(got, want, "needle {n:?}");
            narrowed += usize::from(want.len() < entries.len() / 10);
        }
        assert!(narrowed > 50);
        let two = ["=".to_string(), "ms".to_string()];
        let want: Vec<LogEntry> = entries
            .iter()
            .filter(|e| e.line.contains("=") && e.line.contains("ms"))
            .cloned()
            .collect();
        assert_eq!(
            decode(&block, 4, &templates, &two, LineNeed::Text).unwrap(),
            want
        );
        // Without text: timestamps kept, lines empty or of the same length.
        let none = decode(&block, 4, &templates, &[], LineNeed::Nothing).unwrap();
        let lens = decode(&block, 4, &templates, &[], LineNeed::Length).unwrap();
        assert_eq!(none.len(), entries.len());
        for ((a, b), e) in none.iter().zip(&lens).zip(&entries) {
            assert_eq!((a.ts, a.line.as_str()), (e.ts, ""));
            assert_eq!((b.ts, b.line.len()), (e.ts, e.line.len()));
        }
    }
}
