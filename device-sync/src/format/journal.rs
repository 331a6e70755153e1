//! The job journal (`F*.SGJ`, device.md §4.5): two 512-byte slots, record
//! `seq` in slot `seq % 2`, each with an HMAC. A torn write damages only
//! the slot being written; recovery takes the valid slot with the highest
//! `seq`. A MAC, not an AEAD: nothing here is secret, and a rewritten slot
//! needs no nonce.
//!
//! ```text
//! 0 "SGJ1"  4 seq u64  12 state u8  13 failure u8  14 0(2)  16 next_chunk u32
//! 20 attempt u32  24 data_end u64  32 ct_done u64  40 SHA-512 state (208)
//! 248 ack_next u32  252 file tag (16)  268 0  496 HMAC-SHA256(k_mac, 0..496)[..16]
//! ```
//!
//! The file tag is the XFTP file's Poly1305 tag, the last 16 bytes of the
//! last chunk: it is never stored as data, so the commit of the last chunk
//! keeps it here for the final check after a restart (not in device.md).

use super::keys::{mac16, mac16_ok};
use super::{BLOCK, FormatError};

const MAGIC: &[u8; 4] = b"SGJ1";
/// The journal file's size: both slots.
pub const JOURNAL_LEN: usize = 2 * BLOCK;
/// Bytes of a serialised SHA-512 state (sha2's `SerializableState`).
pub const SHA512_STATE: usize = 208;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Chunks `0..next_chunk` are committed.
    Fetching,
    /// Every chunk, the file digest, size and tag checked: complete.
    Verified,
    /// Complete, and every chunk acknowledged to its server.
    Acked,
    /// Given up; the reason is kept.
    Failed,
}

impl JobState {
    fn byte(self) -> u8 {
        match self {
            Self::Fetching => 1,
            Self::Verified => 2,
            Self::Acked => 3,
            Self::Failed => 4,
        }
    }
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Fetching,
            2 => Self::Verified,
            3 => Self::Acked,
            4 => Self::Failed,
            _ => return None,
        })
    }
}

/// Why a job failed, as kept in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    None,
    /// A server answered AUTH: the file expired or was deleted.
    Gone,
    /// The file digest (SHA-512) did not match the description.
    Digest,
    /// The XFTP file tag did not verify.
    Tag,
    /// Sizes or the file header were wrong.
    Size,
    /// No replica gave a good chunk after all retries.
    Unreachable,
    /// The card filled up.
    Full,
}

impl Failure {
    pub fn byte(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gone => 1,
            Self::Digest => 2,
            Self::Tag => 3,
            Self::Size => 4,
            Self::Unreachable => 5,
            Self::Full => 6,
        }
    }
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::None,
            1 => Self::Gone,
            2 => Self::Digest,
            3 => Self::Tag,
            4 => Self::Size,
            5 => Self::Unreachable,
            6 => Self::Full,
            _ => return None,
        })
    }
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: u64,
    pub state: JobState,
    pub failure: Failure,
    pub next_chunk: u32,
    /// Reserved for the next write of run `next_chunk`; never used twice.
    pub attempt: u32,
    /// `offset` of run `next_chunk`.
    pub data_end: u64,
    /// Σ committed chunk sizes.
    pub ct_done: u64,
    /// The file SHA-512 over the committed XFTP ciphertext.
    pub sha512: [u8; SHA512_STATE],
    /// Chunks `0..ack_next` are acknowledged (`FACK`).
    pub ack_next: u32,
    /// The XFTP file tag, once the last chunk is committed.
    pub file_tag: [u8; 16],
}

impl JournalEntry {
    /// Slot offset in the journal file.
    pub fn slot(&self) -> u64 {
        (self.seq % 2) * BLOCK as u64
    }

    pub fn encode(&self, mac_key: &[u8; 32]) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..4].copy_from_slice(MAGIC);
        b[4..12].copy_from_slice(&self.seq.to_be_bytes());
        b[12] = self.state.byte();
        b[13] = self.failure.byte();
        b[16..20].copy_from_slice(&self.next_chunk.to_be_bytes());
        b[20..24].copy_from_slice(&self.attempt.to_be_bytes());
        b[24..32].copy_from_slice(&self.data_end.to_be_bytes());
        b[32..40].copy_from_slice(&self.ct_done.to_be_bytes());
        b[40..248].copy_from_slice(&self.sha512);
        b[248..252].copy_from_slice(&self.ack_next.to_be_bytes());
        b[252..268].copy_from_slice(&self.file_tag);
        let tag = mac16(mac_key, &b[..496]);
        b[496..].copy_from_slice(&tag);
        b
    }

    /// A valid slot, or why not.
    pub fn decode(b: &[u8], mac_key: &[u8; 32]) -> Result<Self, FormatError> {
        if b.len() != BLOCK || &b[..4] != MAGIC {
            return Err(FormatError::Magic("journal slot"));
        }
        if !mac16_ok(mac_key, &b[..496], &b[496..]) {
            return Err(FormatError::Mac("journal slot"));
        }
        let bad = |why| FormatError::Invalid("journal slot", why);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_be_bytes(x)
        };
        let u32_at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut sha512 = [0u8; SHA512_STATE];
        sha512.copy_from_slice(&b[40..248]);
        let mut file_tag = [0u8; 16];
        file_tag.copy_from_slice(&b[252..268]);
        Ok(Self {
            seq: u64_at(4),
            state: JobState::from_byte(b[12]).ok_or(bad("state"))?,
            failure: Failure::from_byte(b[13]).ok_or(bad("failure"))?,
            next_chunk: u32_at(16),
            attempt: u32_at(20),
            data_end: u64_at(24),
            ct_done: u64_at(32),
            sha512,
            ack_next: u32_at(248),
            file_tag,
        })
    }

    /// The entry to trust in a journal file: the valid slot with the
    /// highest `seq` (each slot must be the one its `seq` goes to).
    pub fn recover(journal: &[u8; JOURNAL_LEN], mac_key: &[u8; 32]) -> Option<Self> {
        let a = Self::decode(&journal[..BLOCK], mac_key)
            .ok()
            .filter(|e| e.seq % 2 == 0);
        let b = Self::decode(&journal[BLOCK..], mac_key)
            .ok()
            .filter(|e| e.seq % 2 == 1);
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.seq > b.seq { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> JournalEntry {
        JournalEntry {
            seq,
            state: JobState::Fetching,
            failure: Failure::None,
            next_chunk: 3,
            attempt: 9,
            data_end: 12_288,
            ct_done: 3 << 20,
            sha512: [0xab; SHA512_STATE],
            ack_next: 0,
            file_tag: [6; 16],
        }
    }

    #[test]
    fn higher_valid_seq_wins_and_torn_slots_are_ignored() {
        let k = [3u8; 32];
        let mut j = [0u8; JOURNAL_LEN];
        assert_eq!(JournalEntry::recover(&j, &k), None);
        for seq in 0..5u64 {
            let e = entry(seq);
            let o = e.slot() as usize;
            j[o..o + BLOCK].copy_from_slice(&e.encode(&k));
            assert_eq!(JournalEntry::recover(&j, &k), Some(entry(seq)));
        }
        // seq 4 in slot A; tear it: seq 3 (slot B) is trusted.
        j[100] ^= 0xff;
        assert_eq!(JournalEntry::recover(&j, &k).unwrap().seq, 3);
        // A valid slot written to the wrong place does not count.
        let e = entry(6).encode(&k);
        j[BLOCK..].copy_from_slice(&e);
        assert_eq!(JournalEntry::recover(&j, &k), None);
        // Another key reads nothing.
        let mut j = [0u8; JOURNAL_LEN];
        j[..BLOCK].copy_from_slice(&entry(2).encode(&k));
        assert_eq!(JournalEntry::recover(&j, &[4; 32]), None);
        assert_eq!(JournalEntry::decode(&j[..BLOCK], &k).unwrap(), entry(2));
    }
}
