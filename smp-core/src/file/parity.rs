//! Reed–Solomon parity over groups of encrypted chunks (see
//! [`Parity`](super::description::Parity) for the layout): computed one
//! data chunk at a time as the encryption hands them over, so a sender
//! holds a group's M parity chunks and never its K data chunks, and a
//! recipient rebuilds lost data chunks from any K of a group's chunks.

use alloc::vec;
use alloc::vec::Vec;

use reed_solomon_erasure::galois_8::ReedSolomon;

/// Why parity could not be computed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParityError {
    #[error("parity {data}:{parity} is not a possible Reed–Solomon code")]
    Scheme { data: usize, parity: usize },
    #[error("a data chunk of {len} bytes does not fit the group's {shard} byte chunks")]
    ChunkTooLong { len: usize, shard: usize },
    #[error("chunk {0} of the group was given twice or is out of range")]
    BadIndex(usize),
    #[error("only {have} of the group's chunks are left; {need} are needed to rebuild it")]
    TooFewChunks { have: usize, need: usize },
}

fn code(data: usize, parity: usize) -> Result<ReedSolomon, ParityError> {
    ReedSolomon::new(data, parity).map_err(|_| ParityError::Scheme { data, parity })
}

/// The parity chunks of one group, accumulated as its data chunks arrive
/// in any order; shorter data chunks count as padded with zeros.
pub struct GroupEncoder {
    code: ReedSolomon,
    shard: usize,
    parity: Vec<Vec<u8>>,
    /// Each parity chunk's coefficient for data chunk 0.
    first: Vec<u8>,
    seen: Vec<bool>,
    padded: Vec<u8>,
}

impl GroupEncoder {
    /// `data` chunks in this group (the last group may have fewer than K),
    /// `parity` chunks of `shard` bytes each (the group's longest chunk).
    pub fn new(data: usize, parity: usize, shard: usize) -> Result<Self, ParityError> {
        Self::with_buffers(data, parity, shard, Vec::new())
    }

    /// [`new`](Self::new) writing the parity into `buffers` (an earlier
    /// group's, given back), so a long file does not allocate a fresh
    /// group's worth of memory each time; missing ones are allocated.
    pub fn with_buffers(
        data: usize,
        parity: usize,
        shard: usize,
        mut buffers: Vec<Vec<u8>>,
    ) -> Result<Self, ParityError> {
        let code = code(data, parity)?;
        // The crate overwrites (rather than adds to) the parity with data
        // chunk 0's share, which is wrong once other chunks are in: chunk
        // 0 is added by hand with its coefficients, read off a 1-byte probe.
        let mut probe = vec![vec![0u8; 1]; parity];
        code.encode_single_sep(0, &[1], &mut probe)
            .map_err(|_| ParityError::Scheme { data, parity })?;
        let first = probe.iter().map(|p| p[0]).collect();
        buffers.truncate(parity);
        buffers.resize_with(parity, Vec::new);
        for b in &mut buffers {
            b.clear();
            b.resize(shard, 0);
        }
        Ok(Self {
            code,
            shard,
            parity: buffers,
            first,
            seen: vec![false; data],
            padded: Vec::new(),
        })
    }

    /// Adds data chunk `i` (0-based within the group).
    pub fn add(&mut self, i: usize, chunk: &[u8]) -> Result<(), ParityError> {
        if self.seen.get(i) != Some(&false) {
            return Err(ParityError::BadIndex(i));
        }
        if chunk.len() > self.shard {
            return Err(ParityError::ChunkTooLong {
                len: chunk.len(),
                shard: self.shard,
            });
        }
        let input = if chunk.len() == self.shard {
            chunk
        } else {
            self.padded.clear();
            self.padded.extend_from_slice(chunk);
            self.padded.resize(self.shard, 0);
            &self.padded
        };
        if i == 0 {
            for (p, c) in self.parity.iter_mut().zip(&self.first) {
                reed_solomon_erasure::galois_8::mul_slice_xor(*c, input, p);
            }
        } else {
            self.code
                .encode_single_sep(i, input, &mut self.parity)
                .map_err(|_| ParityError::BadIndex(i))?;
        }
        self.seen[i] = true;
        Ok(())
    }

    /// Whether every data chunk of the group was added.
    pub fn is_complete(&self) -> bool {
        self.seen.iter().all(|s| *s)
    }

    /// The parity chunks, once every data chunk was added.
    pub fn finish(self) -> Result<Vec<Vec<u8>>, ParityError> {
        if let Some(i) = self.seen.iter().position(|s| !s) {
            return Err(ParityError::TooFewChunks {
                have: i,
                need: self.seen.len(),
            });
        }
        Ok(self.parity)
    }
}

/// Rebuilds a group's missing data chunks in place. `shards` holds the
/// group's data chunks then its parity chunks, each with whether it is
/// there; a missing one's buffer (any length: it is resized) receives the
/// rebuilt bytes, so buffers can go round instead of being allocated per
/// group. Data chunks shorter than the group's longest must be given
/// padded with zeros (and are returned so; the caller cuts them).
pub fn rebuild_group(
    data: usize,
    parity: usize,
    shards: &mut [(Vec<u8>, bool)],
) -> Result<(), ParityError> {
    let have = shards.iter().filter(|s| s.1).count();
    if have < data {
        return Err(ParityError::TooFewChunks { have, need: data });
    }
    if shards.len() != data + parity {
        return Err(ParityError::BadIndex(shards.len()));
    }
    let len = shards.iter().find(|s| s.1).map_or(0, |s| s.0.len());
    for (bytes, present) in shards.iter_mut() {
        if !*present {
            bytes.clear();
            bytes.resize(len, 0);
        }
    }
    code(data, parity)?
        .reconstruct_data(shards)
        .map_err(|_| ParityError::TooFewChunks { have, need: data })?;
    // The crate rebuilds only the data chunks: the others stay missing.
    for (_, present) in shards[..data].iter_mut() {
        *present = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn any_m_lost_chunks_of_a_group_come_back_with_a_short_last_chunk() {
        let (k, m, shard) = (4, 2, 1000);
        let data: Vec<Vec<u8>> = (0..k)
            .map(|i| chunk(if i == k - 1 { 300 } else { shard }, i as u8))
            .collect();
        // Chunks arrive in any order; chunk 0 first or later gives the same.
        let encode = |order: [usize; 4]| {
            let mut enc = GroupEncoder::new(k, m, shard).unwrap();
            for i in order {
                enc.add(i, &data[i]).unwrap();
            }
            enc.finish().unwrap()
        };
        let parity = encode([2, 0, 3, 1]);
        assert_eq!(parity, encode([0, 1, 2, 3]));
        assert_eq!(parity, encode([3, 2, 1, 0]));
        let mut padded = data.clone();
        padded[k - 1].resize(shard, 0);
        // The parity is the crate's own code over the padded chunks (what
        // README documents for other implementations).
        let mut whole: Vec<Vec<u8>> = padded
            .iter()
            .cloned()
            .chain(vec![vec![0; shard]; m])
            .collect();
        ReedSolomon::new(k, m).unwrap().encode(&mut whole).unwrap();
        assert_eq!(parity[..], whole[k..]);
        // Reused buffers, longer or shorter and dirty, give the same.
        let mut reused =
            GroupEncoder::with_buffers(k, m, shard, vec![vec![7; 5], vec![9; 2 * shard], vec![1]])
                .unwrap();
        for i in [1, 0, 3, 2] {
            reused.add(i, &data[i]).unwrap();
        }
        assert_eq!(reused.finish().unwrap(), parity);
        for a in 0..k + m {
            for b in a + 1..k + m {
                let mut shards: Vec<(Vec<u8>, bool)> = padded
                    .iter()
                    .chain(&parity)
                    .map(|s| (s.clone(), true))
                    .collect();
                // A lost chunk's buffer may hold anything.
                shards[a] = (vec![0xEE; 3], false);
                shards[b] = (Vec::new(), false);
                rebuild_group(k, m, &mut shards).unwrap();
                for i in 0..k {
                    assert!(shards[i].1, "lost {a},{b}");
                    assert_eq!(shards[i].0, padded[i], "lost {a},{b}");
                }
            }
        }
        let mut three_lost: Vec<(Vec<u8>, bool)> = padded
            .iter()
            .chain(&parity)
            .map(|s| (s.clone(), true))
            .collect();
        for s in &mut three_lost[..3] {
            s.1 = false;
        }
        assert_eq!(
            rebuild_group(k, m, &mut three_lost),
            Err(ParityError::TooFewChunks { have: 3, need: 4 })
        );
    }

    #[test]
    fn misuse_is_refused() {
        assert!(GroupEncoder::new(0, 2, 10).is_err());
        let mut enc = GroupEncoder::new(2, 1, 10).unwrap();
        assert_eq!(
            enc.add(0, &[0; 11]),
            Err(ParityError::ChunkTooLong { len: 11, shard: 10 })
        );
        enc.add(0, &[1; 10]).unwrap();
        assert_eq!(enc.add(0, &[1; 10]), Err(ParityError::BadIndex(0)));
        assert_eq!(enc.add(2, &[1; 10]), Err(ParityError::BadIndex(2)));
        assert!(!enc.is_complete());
        assert!(enc.finish().is_err());
    }
}
