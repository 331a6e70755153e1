//! Where each chunk and record lives in a data file (device.md §4.4).
//!
//! Run `i` stores XFTP chunk `i` as its plaintext — the whole chunk, or
//! all but the file tag for the last one — cut into records of 4068
//! plaintext bytes. A record on the card is `nonce(12) ‖ ct ‖ tag(16)`
//! padded to 4096 bytes; a run's last record is padded only to the next
//! block, so every run ends on a block boundary and writing chunk `i+1`
//! never touches a block of a committed run.

use alloc::vec::Vec;

use super::BLOCK;

/// Bytes of one record on the card.
pub const RECORD: usize = 4096;
/// Nonce and tag of one record.
pub const RECORD_OVERHEAD: usize = 12 + 16;
/// Plaintext bytes of a full record.
pub const RECORD_PLAIN: usize = RECORD - RECORD_OVERHEAD;
/// The data file's header is block 0; run 0 starts after it.
pub const DATA_START: u64 = BLOCK as u64;
/// The XFTP file tag ends the last chunk and is never stored.
pub const FILE_TAG: u64 = 16;

fn align_block(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// The chunk sizes of a file as runs of equal sizes `(size, count)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runs(Vec<(u32, u32)>);

/// The chunk sizes cannot be stored (empty, zero-sized, too small a last chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSizes;

impl Runs {
    pub fn new(runs: Vec<(u32, u32)>) -> Result<Self, BadSizes> {
        if runs.is_empty() || runs.iter().any(|&(s, c)| s == 0 || c == 0) {
            return Err(BadSizes);
        }
        let total: u64 = runs.iter().map(|&(_, c)| u64::from(c)).sum();
        if total > u64::from(u32::MAX) {
            return Err(BadSizes);
        }
        let r = Self(runs);
        // The last chunk carries the 16-byte file tag and at least one byte more.
        if u64::from(r.0[r.0.len() - 1].0) <= FILE_TAG {
            return Err(BadSizes);
        }
        Ok(r)
    }

    /// Folds the description's chunk sizes, in chunk order.
    pub fn from_chunk_sizes(sizes: &[u32]) -> Result<Self, BadSizes> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &s in sizes {
            match runs.last_mut() {
                Some((size, count)) if *size == s => *count += 1,
                _ => runs.push((s, 1)),
            }
        }
        Self::new(runs)
    }

    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.0
    }

    pub fn chunk_count(&self) -> u32 {
        self.0.iter().map(|&(_, c)| c).sum()
    }

    /// Σ chunk sizes: the XFTP encrypted file size.
    pub fn enc_size(&self) -> u64 {
        self.0
            .iter()
            .map(|&(s, c)| u64::from(s) * u64::from(c))
            .sum()
    }

    /// Bytes stored for the whole file: everything but the file tag.
    pub fn plain_size(&self) -> u64 {
        self.enc_size() - FILE_TAG
    }

    fn chunk_size(&self, mut i: u32) -> Option<u32> {
        for &(s, c) in &self.0 {
            if i < c {
                return Some(s);
            }
            i -= c;
        }
        None
    }

    /// The layout of chunk `i` (0-based), or `None` past the last chunk.
    /// Costs one step per earlier chunk; the job keeps the current one.
    pub fn chunk(&self, i: u32) -> Option<ChunkLayout> {
        let mut c = ChunkLayout::first(self);
        for _ in 0..i {
            c = c.next(self)?;
        }
        if i < self.chunk_count() {
            Some(c)
        } else {
            None
        }
    }

    /// The data file's length once every chunk is written.
    pub fn data_len(&self) -> u64 {
        let last = self
            .chunk(self.chunk_count() - 1)
            .expect("at least one chunk");
        last.end()
    }
}

/// One run: chunk `index` and where its records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    pub index: u32,
    /// XFTP chunk size (FGET body without its transit tag).
    pub size: u32,
    /// Plaintext bytes stored for the chunk.
    pub plain: u32,
    pub records: u32,
    /// Global index of the run's first record.
    pub first_record: u32,
    /// Data file offset of the run.
    pub offset: u64,
    /// XFTP ciphertext offset of the chunk in the encrypted file.
    pub ct_offset: u64,
    pub last: bool,
}

impl ChunkLayout {
    fn make(
        runs: &Runs,
        index: u32,
        first_record: u32,
        offset: u64,
        ct_offset: u64,
    ) -> Option<Self> {
        let size = runs.chunk_size(index)?;
        let last = index + 1 == runs.chunk_count();
        let plain = if last { size - FILE_TAG as u32 } else { size };
        Some(Self {
            index,
            size,
            plain,
            records: plain.div_ceil(RECORD_PLAIN as u32),
            first_record,
            offset,
            ct_offset,
            last,
        })
    }

    fn first(runs: &Runs) -> Self {
        Self::make(runs, 0, 0, DATA_START, 0).expect("runs are never empty")
    }

    /// The next chunk, if any.
    pub fn next(&self, runs: &Runs) -> Option<Self> {
        Self::make(
            runs,
            self.index + 1,
            self.first_record + self.records,
            self.end(),
            self.ct_offset + u64::from(self.size),
        )
    }

    /// Plaintext bytes in record `r` of this run.
    pub fn record_plain(&self, r: u32) -> usize {
        if r + 1 < self.records {
            RECORD_PLAIN
        } else {
            self.plain as usize - (self.records as usize - 1) * RECORD_PLAIN
        }
    }

    /// Bytes record `r` takes on the card.
    pub fn record_len(&self, r: u32) -> usize {
        if r + 1 < self.records {
            RECORD
        } else {
            align_block((RECORD_OVERHEAD + self.record_plain(r)) as u64) as usize
        }
    }

    pub fn record_offset(&self, r: u32) -> u64 {
        self.offset + RECORD as u64 * u64::from(r)
    }

    /// Where the run ends (the next run's offset).
    pub fn end(&self) -> u64 {
        self.record_offset(self.records - 1) + self.record_len(self.records - 1) as u64
    }

    /// Offset of the chunk's first byte in the stored plaintext.
    pub fn plain_offset(&self) -> u64 {
        self.ct_offset
    }

    /// AAD flags of record `r`: bit 0 last of its run, bit 1 last of the file.
    pub fn flags(&self, r: u32) -> u8 {
        let last_of_run = r + 1 == self.records;
        u8::from(last_of_run) | (u8::from(last_of_run && self.last) << 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_examples() {
        // A 64 KiB single-chunk file: 17 records, 66 048 bytes on the card.
        let r = Runs::from_chunk_sizes(&[64 << 10]).unwrap();
        let c = r.chunk(0).unwrap();
        assert_eq!(c.plain, (64 << 10) - 16);
        assert_eq!(c.records, 17);
        assert_eq!(r.data_len() - DATA_START, 66_048);
        // 5 × 4 MiB + 1 MiB chunks: 22 174 208 bytes with the header block.
        let r = Runs::from_chunk_sizes(&[4 << 20, 4 << 20, 4 << 20, 4 << 20, 4 << 20, 1 << 20])
            .unwrap();
        assert_eq!(r.as_slice(), &[(4 << 20, 5), (1 << 20, 1)]);
        let c = r.chunk(0).unwrap();
        assert_eq!((c.records, c.end() - c.offset), (1032, 4_223_488));
        assert_eq!(r.data_len(), 22_174_208);
    }

    #[test]
    fn runs_tile_the_file_without_gaps() {
        let sizes = [100_000u32, 100_000, 4097, 64 << 10, 17];
        let r = Runs::from_chunk_sizes(&sizes).unwrap();
        let mut c = r.chunk(0).unwrap();
        let mut g = 0;
        let mut plain_total = 0u64;
        loop {
            assert_eq!(c.offset % BLOCK as u64, 0);
            assert_eq!(c.first_record, g);
            assert_eq!(c.size, sizes[c.index as usize]);
            let mut p = 0;
            for rec in 0..c.records {
                assert!(c.record_plain(rec) > 0 && c.record_plain(rec) <= RECORD_PLAIN);
                assert_eq!(c.record_len(rec) % BLOCK, 0);
                p += c.record_plain(rec);
            }
            assert_eq!(p as u32, c.plain);
            assert_eq!(c.plain_offset(), plain_total);
            plain_total += u64::from(c.plain);
            g += c.records;
            match c.next(&r) {
                Some(n) => {
                    assert_eq!(n.offset, c.end());
                    c = n;
                }
                None => break,
            }
        }
        assert!(c.last);
        assert_eq!(c.flags(c.records - 1), 3);
        assert_eq!(c.flags(0), if c.records == 1 { 3 } else { 0 });
        assert_eq!(plain_total, r.plain_size());
        assert_eq!(r.chunk(5), None);
    }

    #[test]
    fn unstorable_sizes_are_refused() {
        assert_eq!(Runs::from_chunk_sizes(&[]), Err(BadSizes));
        assert_eq!(Runs::from_chunk_sizes(&[1000, 0]), Err(BadSizes));
        assert_eq!(Runs::from_chunk_sizes(&[1000, 16]), Err(BadSizes));
    }
}
