//! Matcher evaluation over a block's postings and merging of series across
//! blocks.

use roaring::RoaringBitmap;

use crate::model::{MatchOp, Matcher, Sample};
use crate::storage::StorageError;

use super::dir::Block;
use super::index::Term;

/// Series ids of `block` matching every matcher (all series when none).
pub(crate) fn matching_series(
    block: &Block,
    matchers: &[Matcher],
) -> Result<RoaringBitmap, StorageError> {
    let all = || {
        let mut bm = RoaringBitmap::new();
        bm.insert_range(0..block.index.num_series());
        bm
    };
    // Evaluate selective (non-empty-matching) matchers first so the result
    // can shrink early.
    let mut order: Vec<&Matcher> = matchers.iter().collect();
    order.sort_by_key(|m| m.matches_empty());
    let mut acc: Option<RoaringBitmap> = None;
    for m in order {
        if acc.as_ref().is_some_and(|a| a.is_empty()) {
            break;
        }
        let set = if m.matches_empty() {
            // Series without the label match too: everything except the
            // series whose value does not match.
            let mut s = acc.take().unwrap_or_else(all);
            s -= union_where(block, m, false)?;
            s
        } else {
            union_where(block, m, true)?
        };
        acc = Some(match acc {
            Some(a) => a & set,
            None => set,
        });
    }
    Ok(acc.unwrap_or_else(all))
}

/// Union of the postings of values `v` of `m.name` with `m.matches(v) == want`,
/// using the dictionary shape the matcher allows: exact lookups for equality
/// and literal alternations, a range for prefixes, a scan otherwise.
fn union_where(block: &Block, m: &Matcher, want: bool) -> Result<RoaringBitmap, StorageError> {
    let idx = &block.index;
    let err = |r: String| block.corrupt_index(r);
    let mut out = RoaringBitmap::new();
    let exact: Option<Vec<String>> = match (m.op, want) {
        (MatchOp::Equal, true) | (MatchOp::NotEqual, false) => Some(vec![m.value.clone()]),
        (MatchOp::Regex, true) | (MatchOp::NotRegex, false) => m.literal_alternatives(),
        _ => None,
    };
    if let Some(values) = exact {
        for v in values.iter().filter(|v| !v.is_empty()) {
            if let Some(t) = idx.term(&m.name, v) {
                out |= idx.postings(&t).map_err(err)?;
            }
        }
        return Ok(out);
    }
    let candidates: &[Term] = match (m.op, want, m.literal_prefix()) {
        (MatchOp::Regex, true, Some(p)) | (MatchOp::NotRegex, false, Some(p)) => {
            idx.terms_with_prefix(&m.name, p).map_err(err)?
        }
        _ => idx.terms_of(&m.name),
    };
    for t in candidates {
        let v = idx.symbol(t.value).map_err(err)?;
        if m.matches(v) == want {
            out |= idx.postings(t).map_err(err)?;
        }
    }
    Ok(out)
}

/// Merges the sample lists of one series from several blocks (each sorted):
/// sorted by time, one sample per timestamp (the later block wins).
pub(crate) fn merge_samples(mut parts: Vec<Vec<Sample>>) -> Vec<Sample> {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let disjoint = parts.windows(2).all(|w| match (w[0].last(), w[1].first()) {
        (Some(a), Some(b)) => a.t < b.t,
        _ => true,
    });
    let total: usize = parts.iter().map(Vec::len).sum();
    let mut parts = parts.into_iter();
    let mut all = parts.next().unwrap_or_default();
    all.reserve(total - all.len());
    for p in parts {
        all.extend_from_slice(&p);
    }
    if !disjoint {
        keep_last_per_timestamp(&mut all);
    }
    all
}

/// Sorts parts appended one after another (each sorted, unique timestamps)
/// by time, keeping one sample per timestamp: the one appended last (the
/// later block wins).
pub(crate) fn keep_last_per_timestamp(all: &mut Vec<Sample>) {
    // Stable: for equal timestamps the later part stays later; keep it.
    all.sort_by_key(|s| s.t);
    all.reverse();
    all.dedup_by_key(|s| s.t);
    all.reverse();
}
