//! Snappy block decoding for remote-write bodies, with a size limit checked
//! before allocation and support for several blocks concatenated in one body
//! (some senders compress each request separately and send them together).
//!
//! The common case (one block) goes through the `snap` crate; only when that
//! fails is the body walked block by block here, which also yields the
//! precise error for corrupt input.

/// Why a body could not be decompressed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SnappyError {
    /// The declared size exceeds the limit.
    #[error("decompressed body would be {size} bytes, the limit is {limit} (limits.max_decompressed_bytes)")]
    TooLarge {
        /// Declared size (sum of the blocks so far).
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The input is not valid snappy block data.
    #[error("corrupt snappy block data at byte {offset}: {reason}")]
    Corrupt {
        /// Offset in the body.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Decompresses one or more concatenated snappy blocks, refusing output
/// larger than `limit` bytes.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, SnappyError> {
    if let Ok(len) = snap::raw::decompress_len(body) {
        if len > limit {
            return Err(SnappyError::TooLarge {
                size: len as u64,
                limit,
            });
        }
        if let Ok(out) = snap::raw::Decoder::new().decompress_vec(body) {
            return Ok(out);
        }
    }
    decompress_blocks(body, limit)
}

fn corrupt(offset: usize, reason: &'static str) -> SnappyError {
    SnappyError::Corrupt { offset, reason }
}

/// The slow path: walks the body block by block.
fn decompress_blocks(body: &[u8], limit: usize) -> Result<Vec<u8>, SnappyError> {
    let mut out: Vec<u8> = Vec::new();
    let mut pos = 0;
    if body.is_empty() {
        return Err(corrupt(0, "empty body"));
    }
    while pos < body.len() {
        let (len, n) = read_varint(&body[pos..]).ok_or_else(|| corrupt(pos, "bad length"))?;
        pos += n;
        let total = out.len() as u64 + len;
        if total > limit as u64 {
            return Err(SnappyError::TooLarge { size: total, limit });
        }
        let block_start = out.len();
        let end = block_start + len as usize;
        out.reserve(len as usize);
        while out.len() < end {
            let tag = *body
                .get(pos)
                .ok_or_else(|| corrupt(pos, "truncated block"))?;
            pos += 1;
            match tag & 3 {
                0 => {
                    let mut lit = (tag >> 2) as usize;
                    if lit >= 60 {
                        let extra = lit - 59;
                        let bytes = body
                            .get(pos..pos + extra)
                            .ok_or_else(|| corrupt(pos, "truncated literal length"))?;
                        lit = bytes
                            .iter()
                            .rev()
                            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
                        pos += extra;
                    }
                    let lit = lit + 1;
                    let src = body
                        .get(pos..pos + lit)
                        .ok_or_else(|| corrupt(pos, "truncated literal"))?;
                    if out.len() + lit > end {
                        return Err(corrupt(pos, "literal overruns the declared length"));
                    }
                    out.extend_from_slice(src);
                    pos += lit;
                }
                kind => {
                    let (len, offset, n) = match kind {
                        1 => {
                            let b = *body
                                .get(pos)
                                .ok_or_else(|| corrupt(pos, "truncated copy"))?;
                            (
                                4 + ((tag >> 2) & 7) as usize,
                                (((tag >> 5) as usize) << 8) | b as usize,
                                1,
                            )
                        }
                        2 => {
                            let b = body
                                .get(pos..pos + 2)
                                .ok_or_else(|| corrupt(pos, "truncated copy"))?;
                            (
                                1 + (tag >> 2) as usize,
                                u16::from_le_bytes([b[0], b[1]]) as usize,
                                2,
                            )
                        }
                        _ => {
                            let b = body
                                .get(pos..pos + 4)
                                .ok_or_else(|| corrupt(pos, "truncated copy"))?;
                            (
                                1 + (tag >> 2) as usize,
                                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
                                4,
                            )
                        }
                    };
                    pos += n;
                    let produced = out.len() - block_start;
                    if offset == 0 || offset > produced {
                        return Err(corrupt(pos, "copy offset out of range"));
                    }
                    if out.len() + len > end {
                        return Err(corrupt(pos, "copy overruns the declared length"));
                    }
                    let from = out.len() - offset;
                    for i in 0..len {
                        let b = out[from + i];
                        out.push(b);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A little-endian base-128 varint of at most 32 bits (snappy's length).
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, byte) in b.iter().take(5).enumerate() {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return (v <= u32::MAX as u64).then_some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(b: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(b).unwrap()
    }

    #[test]
    fn single_and_concatenated_blocks() {
        let a: Vec<u8> = (0..5000u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
        let b = b"hello hello hello hello world".to_vec();
        assert_eq!(decompress(&compress(&a), 1 << 20).unwrap(), a);
        let mut both = compress(&a);
        both.extend(compress(&b));
        let mut want = a.clone();
        want.extend(&b);
        assert_eq!(decompress(&both, 1 << 20).unwrap(), want);
        // The slow path agrees with snap on a single block too.
        assert_eq!(decompress_blocks(&compress(&a), 1 << 20).unwrap(), a);
    }

    #[test]
    fn limits_and_corruption() {
        let a = vec![7u8; 10_000];
        let c = compress(&a);
        assert!(matches!(
            decompress(&c, 100),
            Err(SnappyError::TooLarge { size: 10_000, .. })
        ));
        assert!(matches!(
            decompress(&c[..c.len() - 1], 1 << 20),
            Err(SnappyError::Corrupt { .. })
        ));
        assert!(decompress(b"", 10).is_err());
        assert!(decompress(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 10).is_err());
        // Declares 2^32-1 bytes: refused before allocating.
        assert!(matches!(
            decompress(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0], 1 << 20),
            Err(SnappyError::TooLarge { .. })
        ));
        // A copy pointing before the start.
        assert!(decompress(&[4, 1, 9], 100).is_err());
    }
}
