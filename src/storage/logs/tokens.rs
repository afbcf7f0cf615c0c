//! Tokens of log lines and the per-block token filters built from them.
//!
//! A token is a maximal run of ASCII letters, digits and non-ASCII bytes;
//! everything else separates. A line containing the substring `h` contains
//! as whole tokens exactly those tokens of `h` that are bounded by a
//! separator on both sides *within* `h`; the first token of `h` may be the
//! tail of a longer token of the line and the last one its head. So a hint
//! proves a whole token only there ([`Needle`]); edge tokens are prefix or
//! suffix constraints.

use xxhash_rust::xxh3::xxh3_64;

/// True for bytes that belong to tokens (a table: one load per byte).
static TOKEN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric() || b >= 0x80;
        b += 1;
    }
    t
};

fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTE[usize::from(b)]
}

/// The first 8 bytes of a token as a number (zero-padded): tokens of up
/// to 8 bytes are equal when their lengths and heads are.
#[inline]
pub(crate) fn token_head(t: &str) -> u64 {
    let b = t.as_bytes();
    if b.len() >= 8 {
        return u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    }
    b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x))
}

/// Calls `f` with every token of `s`, in order, with its byte range.
pub(crate) fn for_each_token<'a>(s: &'a str, mut f: impl FnMut(&'a str, usize, usize)) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !is_token_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_token_byte(b[i]) {
            i += 1;
        }
        // Token bytes are ASCII or whole UTF-8 sequences, so the range is on
        // char boundaries.
        f(&s[start..i], start, i);
    }
}

/// What a hint substring says about the tokens of a matching line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Needle {
    /// Tokens the line must contain whole.
    pub whole: Vec<String>,
    /// A token of the line must start with this (the hint's last token,
    /// when it is not also its first and the hint ends inside it).
    pub prefix: Option<String>,
    /// A token of the line must end with this.
    pub suffix: Option<String>,
    /// A token of the line must contain this (a hint that is one token
    /// touching both ends).
    pub infix: Option<String>,
}

impl Needle {
    /// Splits a hint substring into token constraints.
    pub(crate) fn of(h: &str) -> Needle {
        let mut toks: Vec<(&str, usize, usize)> = Vec::new();
        for_each_token(h, |t, a, b| toks.push((t, a, b)));
        let mut n = Needle::default();
        for (t, a, b) in toks {
            match (a == 0, b == h.len()) {
                (false, false) => n.whole.push(t.to_owned()),
                (true, true) => n.infix = Some(t.to_owned()),
                (true, false) => n.suffix = Some(t.to_owned()),
                (false, true) => n.prefix = Some(t.to_owned()),
            }
        }
        n
    }
}

/// Filter bits per distinct token.
const BITS_PER_TOKEN: usize = 10;
/// Probes per token.
const PROBES: u64 = 6;

/// A Bloom filter over the tokens of one block: "no" is certain, "maybe"
/// is wrong about 1% of the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenFilter {
    bits: Vec<u64>,
}

impl TokenFilter {
    /// A filter holding the hashes of `tokens` (distinct token hashes).
    pub(crate) fn build(hashes: &[u64]) -> TokenFilter {
        let words = (hashes.len() * BITS_PER_TOKEN).div_ceil(64).max(1);
        let mut f = TokenFilter {
            bits: vec![0; words],
        };
        let m = words * 64;
        for &h in hashes {
            for i in positions(h, m) {
                f.bits[i / 64] |= 1 << (i % 64);
            }
        }
        f
    }

    /// False when the token is certainly absent.
    pub(crate) fn may_contain(&self, token: &str) -> bool {
        positions(hash(token), self.bits.len() * 64)
            .all(|i| self.bits[i / 64] & (1 << (i % 64)) != 0)
    }

    /// Bits of the filter, and the distinct tokens it holds estimated from
    /// its fill (`-m/k ln(1 - ones/m)`).
    pub(crate) fn fill(&self) -> (u64, f64) {
        let m = self.bits.len() as f64 * 64.0;
        let ones: u32 = self.bits.iter().map(|w| w.count_ones()).sum();
        let frac = (f64::from(ones) / m).min(1.0 - 1e-9);
        (m as u64, -(m / PROBES as f64) * (1.0 - frac).ln())
    }

    /// The filter's bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.bits.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// A filter from [`TokenFilter::to_bytes`].
    pub(crate) fn from_bytes(b: &[u8]) -> Result<TokenFilter, String> {
        if b.is_empty() || b.len() % 8 != 0 {
            return Err(format!("token filter of {} bytes", b.len()));
        }
        Ok(TokenFilter {
            bits: b
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        })
    }
}

/// The bits a hash sets in a filter of `m` bits (double hashing).
fn positions(h: u64, m: usize) -> impl Iterator<Item = usize> {
    let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
    (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m as u64) as usize)
}

/// The hash a token is filed under.
#[inline]
pub(crate) fn hash(token: &str) -> u64 {
    xxh3_64(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_split_into_whole_and_edge_tokens() {
        let n = Needle::of("user=42 status=5");
        assert_eq!(n.whole, ["42", "status"]);
        assert_eq!(n.suffix.as_deref(), Some("user"));
        assert_eq!(n.prefix.as_deref(), Some("5"));
        assert_eq!(n.infix, None);
        let n = Needle::of("abc123");
        assert_eq!(n.infix.as_deref(), Some("abc123"));
        assert!(n.whole.is_empty());
        let n = Needle::of(" é1 ");
        assert_eq!(n.whole, ["é1"]);
        assert_eq!(Needle::of("=="), Needle::default());
    }

    #[test]
    fn token_heads_tell_short_tokens_apart() {
        let toks = [
            "",
            "a",
            "ab",
            "ba",
            "abcdefgh",
            "abcdefgi",
            "é",
            "abcdefghij",
        ];
        for x in toks {
            for y in toks {
                let same = token_head(x) == token_head(y) && x.len() == y.len();
                assert_eq!(
                    same,
                    x == y || (x.len() > 8 && x.len() == y.len() && x[..8] == y[..8]),
                    "{x} {y}"
                );
            }
        }
    }

    #[test]
    fn filter_has_no_false_negatives_and_few_false_positives() {
        let toks: Vec<String> = (0..2000).map(|i| format!("tok{i}")).collect();
        let hashes: Vec<u64> = toks.iter().map(|t| hash(t)).collect();
        let f = TokenFilter::build(&hashes);
        assert!(toks.iter().all(|t| f.may_contain(t)));
        let fp = (0..10_000)
            .filter(|i| f.may_contain(&format!("other{i}")))
            .count();
        assert!(fp < 300, "{fp} false positives in 10000");
        assert_eq!(TokenFilter::from_bytes(&f.to_bytes()).unwrap(), f);
    }
}
