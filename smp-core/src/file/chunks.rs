//! Chunk sizing: how an encrypted file is cut into the four chunk sizes XFTP
//! servers accept (`prepareChunkSizes`, `singleChunkSize`, `prepareChunkSpecs`).

use alloc::vec::Vec;

pub const CHUNK_64K: u32 = 64 * 1024;
pub const CHUNK_256K: u32 = 256 * 1024;
pub const CHUNK_1M: u32 = 1024 * 1024;
pub const CHUNK_4M: u32 = 4 * 1024 * 1024;

/// The sizes XFTP servers accept, smallest first.
pub const SERVER_CHUNK_SIZES: [u32; 4] = [CHUNK_64K, CHUNK_256K, CHUNK_1M, CHUNK_4M];

/// Bytes the encryption adds around header and content: 8-byte length + 16-byte tag.
pub const FILE_OVERHEAD: u64 = 8 + 16;

/// Largest source file the CLI sends (the reference's `maxFileSize`).
pub const MAX_FILE_SIZE: u64 = 1024 * 1024 * 1024;
/// Hard limit of the agent (`maxFileSizeHard`).
pub const MAX_FILE_SIZE_HARD: u64 = 5 * 1024 * 1024 * 1024;

fn three_quarters(s: u64) -> u64 {
    3 * s / 4
}

/// Chunk sizes for a payload of `total` bytes (header + content + 24),
/// biggest first. The size pair is chosen once from the whole payload.
pub fn prepare_chunk_sizes(total: u64) -> Vec<u32> {
    let (small, big) = if total > three_quarters(CHUNK_4M as u64) {
        (CHUNK_1M, CHUNK_4M)
    } else if total > three_quarters(CHUNK_1M as u64) {
        (CHUNK_256K, CHUNK_1M)
    } else {
        (CHUNK_64K, CHUNK_256K)
    };
    let (small64, big64) = (small as u64, big as u64);
    let mut out = Vec::new();
    let mut s = total;
    while s > 0 {
        if s >= big64 {
            out.extend(core::iter::repeat_n(big, (s / big64) as usize));
            s %= big64;
        } else if s > three_quarters(big64) {
            out.push(big);
            s = 0;
        } else {
            out.extend(core::iter::repeat_n(small, s.div_ceil(small64) as usize));
            s = 0;
        }
    }
    out
}

/// The smallest server chunk size that holds `total` bytes, if any.
pub fn single_chunk_size(total: u64) -> Option<u32> {
    SERVER_CHUNK_SIZES.into_iter().find(|&s| total <= s as u64)
}

/// Where each chunk lies in the encrypted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpec {
    pub offset: u64,
    pub size: u32,
}

pub fn prepare_chunk_specs(sizes: &[u32]) -> Vec<ChunkSpec> {
    let mut offset = 0u64;
    sizes
        .iter()
        .map(|&size| {
            let spec = ChunkSpec { offset, size };
            offset += size as u64;
            spec
        })
        .collect()
}
