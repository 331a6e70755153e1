//! The manifest (`F*.SGM`, device.md §4.6): the recipient description of
//! the file being fetched, sealed with the file's manifest key and written
//! once at job creation, so a job resumes after a reboot without the
//! message that brought the description.
//!
//! A head with the file's key, digest, size and server table, then one
//! sealed 512-byte entry per chunk, so a resuming device reads and opens
//! one chunk's entry at a time instead of the whole description:
//!
//! ```text
//! head:  "SGM1" ver 1 0(3) file_id(16) chunks u32 head_len u32 | nonce(12) ‖ ct(head_len) ‖ tag(16)
//!        (aad = bytes 0..32), zero-padded to whole blocks
//!        plain = key(32) nonce(24) digest(64) size u64 servers u8 × (u16 len ‖ address)
//! entry: nonce(12) ‖ ct(484) ‖ tag(16), aad = file_id ‖ index u32 ‖ chunks u32
//!        plain = chunk_no u32 size u32 digest(32) n u8 × (server u8, id_len u8, id[32],
//!                key_len u8, key[73]), zeros to 484
//! ```
//!
//! Entry and head nonces are random: each is used for one write only.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use alloc::string::String;
use alloc::vec::Vec;
use zeroize::Zeroizing;

use super::{BLOCK, FormatError};

const MAGIC: &[u8; 4] = b"SGM1";
const FIXED: usize = 32;
/// A chunk entry's size on the card.
pub const ENTRY: usize = BLOCK;
const ENTRY_PLAIN: usize = ENTRY - 28;
/// Replicas kept per chunk.
pub const MAX_REPLICAS: usize = 4;
const ID_MAX: usize = 32;
/// An Ed448 PKCS#8 private key, the longest replica key.
const KEY_MAX: usize = 73;
const REPLICA: usize = 3 + ID_MAX + KEY_MAX;

/// The file-wide part.
#[derive(Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub key: [u8; 32],
    pub nonce: [u8; 24],
    /// SHA-512 of the XFTP encrypted file.
    pub digest: [u8; 64],
    /// XFTP encrypted size.
    pub size: u64,
    /// `xftp://` addresses the entries point into.
    pub servers: Vec<String>,
}

impl core::fmt::Debug for ManifestHead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ManifestHead")
            .field("size", &self.size)
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

/// One copy of a chunk.
#[derive(Clone, PartialEq, Eq)]
pub struct ManifestReplica {
    /// Index into [`ManifestHead::servers`].
    pub server: u8,
    pub id: Vec<u8>,
    /// PKCS#8 DER of the recipient key.
    pub key: Zeroizing<Vec<u8>>,
}

/// One chunk.
#[derive(Clone, PartialEq, Eq)]
pub struct ManifestChunk {
    pub chunk_no: u32,
    pub size: u32,
    /// SHA-256 of the chunk.
    pub digest: [u8; 32],
    pub replicas: Vec<ManifestReplica>,
}

impl core::fmt::Debug for ManifestChunk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ManifestChunk")
            .field("chunk_no", &self.chunk_no)
            .field("size", &self.size)
            .field("replicas", &self.replicas.len())
            .finish_non_exhaustive()
    }
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

fn seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
    cipher(key)
        .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into())
        .expect("manifest parts are far below GCM's length limit")
        .into()
}

fn open(key: &[u8; 32], nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
    cipher(key)
        .decrypt_inout_detached(
            &Nonce::try_from(nonce).expect("12-byte nonce"),
            aad,
            buf.into(),
            &Tag::try_from(tag).expect("16-byte tag"),
        )
        .is_ok()
}

fn entry_aad(file_id: &[u8; 16], index: u32, count: u32) -> [u8; 24] {
    let mut a = [0u8; 24];
    a[..16].copy_from_slice(file_id);
    a[16..20].copy_from_slice(&index.to_be_bytes());
    a[20..].copy_from_slice(&count.to_be_bytes());
    a
}

impl ManifestHead {
    /// The sealed head, a whole number of blocks.
    pub fn seal(
        &self,
        key: &[u8; 32],
        file_id: &[u8; 16],
        chunks: u32,
        nonce: &[u8; 12],
    ) -> Result<Vec<u8>, FormatError> {
        let mut plain = Zeroizing::new(Vec::new());
        plain.extend_from_slice(&self.key);
        plain.extend_from_slice(&self.nonce);
        plain.extend_from_slice(&self.digest);
        plain.extend_from_slice(&self.size.to_be_bytes());
        let n =
            u8::try_from(self.servers.len()).map_err(|_| FormatError::TooLarge("server table"))?;
        plain.push(n);
        for s in &self.servers {
            let len =
                u16::try_from(s.len()).map_err(|_| FormatError::TooLarge("server address"))?;
            plain.extend_from_slice(&len.to_be_bytes());
            plain.extend_from_slice(s.as_bytes());
        }
        let total = (FIXED + 12 + plain.len() + 16).div_ceil(BLOCK) * BLOCK;
        let mut out = alloc::vec![0u8; total];
        out[..4].copy_from_slice(MAGIC);
        out[4] = 1;
        out[8..24].copy_from_slice(file_id);
        out[24..28].copy_from_slice(&chunks.to_be_bytes());
        out[28..32].copy_from_slice(&(plain.len() as u32).to_be_bytes());
        out[32..44].copy_from_slice(nonce);
        let (fixed, rest) = out.split_at_mut(FIXED);
        let body = &mut rest[12..12 + plain.len()];
        body.copy_from_slice(&plain);
        let tag = seal(key, nonce, fixed, body);
        let end = FIXED + 12 + plain.len();
        out[end..end + 16].copy_from_slice(&tag);
        Ok(out)
    }

    /// Bytes of the head from its first block (to read the rest).
    pub fn sealed_len(first_block: &[u8]) -> Result<usize, FormatError> {
        if first_block.len() < FIXED || &first_block[..4] != MAGIC {
            return Err(FormatError::Magic("manifest"));
        }
        if first_block[4] != 1 {
            return Err(FormatError::Version("manifest"));
        }
        let len = u32::from_be_bytes([
            first_block[28],
            first_block[29],
            first_block[30],
            first_block[31],
        ]) as usize;
        if len > 64 * 1024 {
            return Err(FormatError::Invalid("manifest", "head length"));
        }
        Ok((FIXED + 12 + len + 16).div_ceil(BLOCK) * BLOCK)
    }

    /// Opens the head; returns it with the file id and chunk count.
    pub fn open(key: &[u8; 32], sealed: &mut [u8]) -> Result<(Self, [u8; 16], u32), FormatError> {
        let total = Self::sealed_len(sealed)?;
        if sealed.len() < total {
            return Err(FormatError::Invalid("manifest", "short head"));
        }
        let len = u32::from_be_bytes([sealed[28], sealed[29], sealed[30], sealed[31]]) as usize;
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&sealed[8..24]);
        let chunks = u32::from_be_bytes([sealed[24], sealed[25], sealed[26], sealed[27]]);
        let (fixed, rest) = sealed.split_at_mut(FIXED);
        let (nonce, rest) = rest.split_at_mut(12);
        let (body, rest) = rest.split_at_mut(len);
        if !open(key, nonce, fixed, body, &rest[..16]) {
            return Err(FormatError::Mac("manifest"));
        }
        let bad = |why| FormatError::Invalid("manifest", why);
        let p: &[u8] = body;
        if p.len() < 32 + 24 + 64 + 8 + 1 {
            return Err(bad("head"));
        }
        let mut h = ManifestHead {
            key: p[..32].try_into().map_err(|_| bad("key"))?,
            nonce: p[32..56].try_into().map_err(|_| bad("nonce"))?,
            digest: p[56..120].try_into().map_err(|_| bad("digest"))?,
            size: u64::from_be_bytes(p[120..128].try_into().map_err(|_| bad("size"))?),
            servers: Vec::new(),
        };
        let n = p[128] as usize;
        let mut at = 129;
        for _ in 0..n {
            let l = p.get(at..at + 2).ok_or(bad("server table"))?;
            let l = u16::from_be_bytes([l[0], l[1]]) as usize;
            let s = p.get(at + 2..at + 2 + l).ok_or(bad("server table"))?;
            h.servers.push(String::from(
                core::str::from_utf8(s).map_err(|_| bad("server address"))?,
            ));
            at += 2 + l;
        }
        // The plaintext held the file key; the buffer is the caller's to wipe.
        Ok((h, file_id, chunks))
    }
}

impl ManifestChunk {
    /// The sealed entry for chunk `index` of `count`.
    pub fn seal(
        &self,
        key: &[u8; 32],
        file_id: &[u8; 16],
        index: u32,
        count: u32,
        nonce: &[u8; 12],
    ) -> Result<[u8; ENTRY], FormatError> {
        if self.replicas.is_empty() || self.replicas.len() > MAX_REPLICAS {
            return Err(FormatError::TooLarge("replica list"));
        }
        let mut out = [0u8; ENTRY];
        out[..12].copy_from_slice(nonce);
        {
            let p = &mut out[12..12 + ENTRY_PLAIN];
            p[..4].copy_from_slice(&self.chunk_no.to_be_bytes());
            p[4..8].copy_from_slice(&self.size.to_be_bytes());
            p[8..40].copy_from_slice(&self.digest);
            p[40] = self.replicas.len() as u8;
            for (j, r) in self.replicas.iter().enumerate() {
                if r.id.len() > ID_MAX || r.key.len() > KEY_MAX {
                    return Err(FormatError::TooLarge("replica"));
                }
                let o = 41 + j * REPLICA;
                p[o] = r.server;
                p[o + 1] = r.id.len() as u8;
                p[o + 2..o + 2 + r.id.len()].copy_from_slice(&r.id);
                p[o + 2 + ID_MAX] = r.key.len() as u8;
                p[o + 3 + ID_MAX..o + 3 + ID_MAX + r.key.len()].copy_from_slice(&r.key);
            }
        }
        let tag = seal(
            key,
            nonce,
            &entry_aad(file_id, index, count),
            &mut out[12..12 + ENTRY_PLAIN],
        );
        out[12 + ENTRY_PLAIN..].copy_from_slice(&tag);
        Ok(out)
    }

    /// Opens entry `index` of `count`.
    pub fn open(
        key: &[u8; 32],
        file_id: &[u8; 16],
        index: u32,
        count: u32,
        entry: &[u8; ENTRY],
    ) -> Result<Self, FormatError> {
        let mut p = Zeroizing::new([0u8; ENTRY_PLAIN]);
        p.copy_from_slice(&entry[12..12 + ENTRY_PLAIN]);
        if !open(
            key,
            &entry[..12],
            &entry_aad(file_id, index, count),
            &mut p[..],
            &entry[12 + ENTRY_PLAIN..],
        ) {
            return Err(FormatError::Mac("manifest entry"));
        }
        let bad = |why| FormatError::Invalid("manifest entry", why);
        let n = p[40] as usize;
        if n == 0 || n > MAX_REPLICAS {
            return Err(bad("replica count"));
        }
        let mut replicas = Vec::with_capacity(n);
        for j in 0..n {
            let o = 41 + j * REPLICA;
            let (il, kl) = (p[o + 1] as usize, p[o + 2 + ID_MAX] as usize);
            if il > ID_MAX || kl > KEY_MAX {
                return Err(bad("replica"));
            }
            replicas.push(ManifestReplica {
                server: p[o],
                id: p[o + 2..o + 2 + il].to_vec(),
                key: Zeroizing::new(p[o + 3 + ID_MAX..o + 3 + ID_MAX + kl].to_vec()),
            });
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&p[8..40]);
        Ok(Self {
            chunk_no: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            size: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            digest,
            replicas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn head_and_entries_round_trip_and_resist_tampering() {
        let k = [4u8; 32];
        let id = [1u8; 16];
        let head = ManifestHead {
            key: [2; 32],
            nonce: [3; 24],
            digest: [5; 64],
            size: 21 << 20,
            servers: vec![
                "xftp://a@127.0.0.1:1".to_string(),
                "xftp://b@127.0.0.1:2".to_string(),
            ],
        };
        let mut sealed = head.seal(&k, &id, 6, &[7; 12]).unwrap();
        assert_eq!(sealed.len() % BLOCK, 0);
        assert_eq!(
            ManifestHead::sealed_len(&sealed[..BLOCK]).unwrap(),
            sealed.len()
        );
        let orig = sealed.clone();
        let (h, fid, n) = ManifestHead::open(&k, &mut sealed).unwrap();
        assert_eq!((h, fid, n), (head.clone(), id, 6));
        let mut t = orig.clone();
        t[26] ^= 1; // the chunk count is authenticated
        assert!(ManifestHead::open(&k, &mut t).is_err());
        let mut t = orig.clone();
        t[60] ^= 1;
        assert!(ManifestHead::open(&k, &mut t).is_err());

        let chunk = ManifestChunk {
            chunk_no: 2,
            size: 4 << 20,
            digest: [9; 32],
            replicas: vec![
                ManifestReplica {
                    server: 0,
                    id: vec![1; 24],
                    key: Zeroizing::new(vec![2; 48]),
                },
                ManifestReplica {
                    server: 1,
                    id: vec![3; 24],
                    key: Zeroizing::new(vec![4; 73]),
                },
            ],
        };
        let e = chunk.seal(&k, &id, 1, 6, &[8; 12]).unwrap();
        assert_eq!(ManifestChunk::open(&k, &id, 1, 6, &e).unwrap(), chunk);
        // Moved to another index or file, or damaged: refused.
        assert!(ManifestChunk::open(&k, &id, 2, 6, &e).is_err());
        assert!(ManifestChunk::open(&k, &[0; 16], 1, 6, &e).is_err());
        let mut t = e;
        t[100] ^= 1;
        assert!(ManifestChunk::open(&k, &id, 1, 6, &t).is_err());
    }
}
