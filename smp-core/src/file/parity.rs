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
    seen: Vec<bool>,
    padded: Vec<u8>,
}

impl GroupEncoder {
    /// `data` chunks in this group (the last group may have fewer than K),
    /// `parity` chunks of `shard` bytes each (the group's longest chunk).
    pub fn new(data: usize, parity: usize, shard: usize) -> Result<Self, ParityError> {
        Ok(Self {
            code: code(data, parity)?,
            shard,
            parity: vec![vec![0; shard]; parity],
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
        // The crate writes (not adds) chunk 0's share: after other chunks
        // it must be added by hand, or their shares are lost.
        if i == 0 && self.seen.iter().any(|s| *s) {
            let mut share = vec![vec![0u8; self.shard]; self.parity.len()];
            self.code
                .encode_single_sep(0, input, &mut share)
                .map_err(|_| ParityError::BadIndex(i))?;
            for (p, s) in self.parity.iter_mut().zip(&share) {
                p.iter_mut().zip(s).for_each(|(a, b)| *a ^= b);
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
/// group's data chunks then its parity chunks, `None` where lost; data
/// chunks shorter than `shard` must be given padded (and are returned so,
/// the caller cuts them to their sizes).
pub fn rebuild_group(
    data: usize,
    parity: usize,
    shards: &mut [Option<Vec<u8>>],
) -> Result<(), ParityError> {
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < data {
        return Err(ParityError::TooFewChunks { have, need: data });
    }
    if shards.len() != data + parity {
        return Err(ParityError::BadIndex(shards.len()));
    }
    code(data, parity)?
        .reconstruct_data(shards)
        .map_err(|_| ParityError::TooFewChunks { have, need: data })
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
        for a in 0..k + m {
            for b in a + 1..k + m {
                let mut shards: Vec<Option<Vec<u8>>> =
                    padded.iter().chain(&parity).cloned().map(Some).collect();
                shards[a] = None;
                shards[b] = None;
                rebuild_group(k, m, &mut shards).unwrap();
                for i in 0..k {
                    assert_eq!(shards[i].as_deref(), Some(&padded[i][..]), "lost {a},{b}");
                }
            }
        }
        let mut three_lost: Vec<Option<Vec<u8>>> =
            padded.iter().chain(&parity).cloned().map(Some).collect();
        for s in &mut three_lost[..3] {
            *s = None;
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
