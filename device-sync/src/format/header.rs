//! Block 0 of a data file (`F*.SGF`, device.md §4.4): written once, when
//! the job is created, and MACed so a reader can trust the layout it
//! describes.
//!
//! ```text
//! 0   "SGF1"   4  version 1   5  aead 1 (AES-256-GCM)   6  record size u16 = 4096
//! 8   file_id(16)   24 salt(32)   56 key_id u32   60 enc_size u64
//! 68  run count k (1..=8)   69 0(3)   72 k × (chunk_size u32, count u32), rest 0
//! 496 HMAC-SHA256(k_mac, 0..496)[..16]
//! ```

use alloc::vec::Vec;

use super::keys::{mac16, mac16_ok};
use super::layout::{RECORD, Runs};
use super::{BLOCK, FormatError};

const MAGIC: &[u8; 4] = b"SGF1";
const VERSION: u8 = 1;
const AEAD_AES256GCM: u8 = 1;
/// At most this many runs of equal-size chunks (the reference and our
/// CLI make at most 2).
pub const MAX_RUNS: usize = 8;

/// The header's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgfHeader {
    pub file_id: [u8; 16],
    /// HKDF salt of this file's keys.
    pub salt: [u8; 32],
    /// Which master key (a device may rotate it).
    pub key_id: u32,
    pub runs: Runs,
}

/// The unauthenticated part a reader needs to derive the MAC key.
pub struct KeyInputs {
    pub file_id: [u8; 16],
    pub salt: [u8; 32],
    pub key_id: u32,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl SgfHeader {
    pub fn encode(&self, mac_key: &[u8; 32]) -> Result<[u8; BLOCK], FormatError> {
        let runs = self.runs.as_slice();
        if runs.is_empty() || runs.len() > MAX_RUNS {
            return Err(FormatError::TooManyRuns);
        }
        let mut b = [0u8; BLOCK];
        b[0..4].copy_from_slice(MAGIC);
        b[4] = VERSION;
        b[5] = AEAD_AES256GCM;
        b[6..8].copy_from_slice(&(RECORD as u16).to_be_bytes());
        b[8..24].copy_from_slice(&self.file_id);
        b[24..56].copy_from_slice(&self.salt);
        b[56..60].copy_from_slice(&self.key_id.to_be_bytes());
        b[60..68].copy_from_slice(&self.runs.enc_size().to_be_bytes());
        b[68] = runs.len() as u8;
        for (i, &(size, count)) in runs.iter().enumerate() {
            let o = 72 + 8 * i;
            b[o..o + 4].copy_from_slice(&size.to_be_bytes());
            b[o + 4..o + 8].copy_from_slice(&count.to_be_bytes());
        }
        let tag = mac16(mac_key, &b[..496]);
        b[496..].copy_from_slice(&tag);
        Ok(b)
    }

    /// The file id, salt and key id, read before the MAC can be checked.
    pub fn key_inputs(b: &[u8; BLOCK]) -> Result<KeyInputs, FormatError> {
        if &b[0..4] != MAGIC {
            return Err(FormatError::Magic("data file"));
        }
        if b[4] != VERSION || b[5] != AEAD_AES256GCM {
            return Err(FormatError::Version("data file"));
        }
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&b[8..24]);
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&b[24..56]);
        Ok(KeyInputs {
            file_id,
            salt,
            key_id: be32(&b[56..60]),
        })
    }

    /// Checks the MAC, then every field.
    pub fn decode(b: &[u8; BLOCK], mac_key: &[u8; 32]) -> Result<Self, FormatError> {
        let k = Self::key_inputs(b)?;
        if !mac16_ok(mac_key, &b[..496], &b[496..]) {
            return Err(FormatError::Mac("data file header"));
        }
        let bad = |why| FormatError::Invalid("data file header", why);
        if u16::from_be_bytes([b[6], b[7]]) as usize != RECORD {
            return Err(bad("record size"));
        }
        let n = b[68] as usize;
        if n == 0 || n > MAX_RUNS {
            return Err(bad("run count"));
        }
        let mut runs = Vec::with_capacity(n);
        for i in 0..n {
            let o = 72 + 8 * i;
            runs.push((be32(&b[o..o + 4]), be32(&b[o + 4..o + 8])));
        }
        let runs = Runs::new(runs).map_err(|_| bad("chunk sizes"))?;
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[60..68]);
        if runs.enc_size() != u64::from_be_bytes(size) {
            return Err(bad("size"));
        }
        Ok(Self {
            file_id: k.file_id,
            salt: k.salt,
            key_id: k.key_id,
            runs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SgfHeader {
        SgfHeader {
            file_id: [1; 16],
            salt: [2; 32],
            key_id: 3,
            runs: Runs::from_chunk_sizes(&[4 << 20, 4 << 20, 1 << 20]).unwrap(),
        }
    }

    #[test]
    fn round_trip_and_every_byte_counts() {
        let k = [9u8; 32];
        let b = header().encode(&k).unwrap();
        assert_eq!(&b[..8], b"SGF1\x01\x01\x10\x00");
        assert_eq!(b[68], 2);
        assert_eq!(
            &b[72..88],
            &[0, 0x40, 0, 0, 0, 0, 0, 2, 0, 0x10, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(SgfHeader::decode(&b, &k).unwrap(), header());
        for i in 0..BLOCK {
            let mut c = b;
            c[i] ^= 0x20;
            assert!(SgfHeader::decode(&c, &k).is_err(), "byte {i}");
        }
        assert_eq!(
            SgfHeader::decode(&b, &[8; 32]),
            Err(FormatError::Mac("data file header"))
        );
    }
}
