//! One data record: `nonce(12) ‖ AES-256-GCM(k_data, nonce, aad, plain) ‖
//! tag(16)`, zero-padded to its length in the layout (device.md §4.4).
//!
//! - nonce = `attempt u32 BE ‖ rand u32 ‖ g u32 BE`: a fresh `attempt` is
//!   reserved in the journal before a chunk's first record is written, so a
//!   retry with other bytes from a server never reuses a nonce; `rand`
//!   covers a card that lies about a finished write.
//! - aad = `g u32 BE ‖ chunk u32 BE ‖ flags u8`, so a record cannot be
//!   moved, swapped, or made to look like the end of its run or file.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

use super::FormatError;
use super::layout::{ChunkLayout, RECORD_OVERHEAD};

/// The AES-256-GCM implementation behind [`RecordCipher`], as rustls has
/// crypto providers: RustCrypto's everywhere (bare metal included), and
/// on a host (feature `std`) ring's, whose AES-NI/CLMUL code is several
/// times faster. Both are standard AES-256-GCM with 12-byte nonces: the
/// bytes on the card are the same, which a test checks.
trait Aead {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16];
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool;
}

struct RustCrypto(Aes256Gcm);

impl Aead for RustCrypto {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        self.0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into())
            // Records are 4 KiB, far below GCM's length limit.
            .expect("AES-GCM record far below the length limit")
            .into()
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        self.0
            .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &Tag::from(*tag))
            .is_ok()
    }
}

#[cfg(feature = "std")]
struct Ring(ring::aead::LessSafeKey);

#[cfg(feature = "std")]
impl Aead for Ring {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        use ring::aead::{Aad, Nonce};
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .expect("AES-GCM record far below the length limit");
        let mut t = [0u8; 16];
        t.copy_from_slice(tag.as_ref());
        t
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        use ring::aead::{Aad, Nonce, Tag};
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(*tag),
                buf,
                0..,
            )
            .is_ok()
    }
}

/// Seals and opens records with one file's data key (the AES key schedule
/// is made once per job).
pub struct RecordCipher(alloc::boxed::Box<dyn Aead>);

impl RecordCipher {
    /// The fastest implementation this build has.
    pub fn new(data_key: &[u8; 32]) -> Self {
        #[cfg(feature = "std")]
        {
            if let Ok(k) = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, data_key) {
                return Self(alloc::boxed::Box::new(Ring(ring::aead::LessSafeKey::new(
                    k,
                ))));
            }
        }
        Self::portable(data_key)
    }

    /// RustCrypto's, as on the device.
    pub fn portable(data_key: &[u8; 32]) -> Self {
        Self(alloc::boxed::Box::new(RustCrypto(Aes256Gcm::new(
            data_key.into(),
        ))))
    }
}

/// The nonce of record `g` written under `attempt`.
pub fn record_nonce(attempt: u32, rand: u32, g: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&attempt.to_be_bytes());
    n[4..8].copy_from_slice(&rand.to_be_bytes());
    n[8..].copy_from_slice(&g.to_be_bytes());
    n
}

fn aad(g: u32, chunk: u32, flags: u8) -> [u8; 9] {
    let mut a = [0u8; 9];
    a[..4].copy_from_slice(&g.to_be_bytes());
    a[4..8].copy_from_slice(&chunk.to_be_bytes());
    a[8] = flags;
    a
}

impl RecordCipher {
    /// Seals the plaintext already in `out[12..12 + m]` (where `m` is the
    /// record's plaintext length from `chunk`) into the whole record `out`
    /// (`chunk.record_len(r)` bytes): nonce in front, tag behind, zeros to
    /// the end.
    pub fn seal(&self, chunk: &ChunkLayout, r: u32, nonce: [u8; 12], out: &mut [u8]) {
        let m = chunk.record_plain(r);
        let g = chunk.first_record + r;
        debug_assert_eq!(out.len(), chunk.record_len(r));
        out[..12].copy_from_slice(&nonce);
        let tag = self.0.seal(
            &nonce,
            &aad(g, chunk.index, chunk.flags(r)),
            &mut out[12..12 + m],
        );
        out[12 + m..12 + m + 16].copy_from_slice(&tag);
        out[12 + m + 16..].fill(0);
    }

    /// Opens record `r` of `chunk` in place and returns its plaintext. The
    /// nonce must carry the record's own index and the padding must be zero.
    pub fn open<'a>(
        &self,
        chunk: &ChunkLayout,
        r: u32,
        record: &'a mut [u8],
    ) -> Result<&'a [u8], FormatError> {
        let m = chunk.record_plain(r);
        let g = chunk.first_record + r;
        let bad = FormatError::Record(g);
        if record.len() != chunk.record_len(r) || m + RECORD_OVERHEAD > record.len() {
            return Err(bad);
        }
        if record[8..12] != g.to_be_bytes() || record[12 + m + 16..].iter().any(|&b| b != 0) {
            return Err(bad);
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&record[..12]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&record[12 + m..12 + m + 16]);
        if !self.0.open(
            &nonce,
            &aad(g, chunk.index, chunk.flags(r)),
            &mut record[12..12 + m],
            &tag,
        ) {
            return Err(bad);
        }
        Ok(&record[12..12 + m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::layout::Runs;
    use alloc::vec;

    #[test]
    fn both_implementations_write_the_same_records() {
        let runs = Runs::from_chunk_sizes(&[10_000]).unwrap();
        let c = runs.chunk(0).unwrap();
        let (fast, portable) = (
            RecordCipher::new(&[5; 32]),
            RecordCipher::portable(&[5; 32]),
        );
        for r in 0..c.records {
            let mut a = vec![0u8; c.record_len(r)];
            for (j, b) in a[12..12 + c.record_plain(r)].iter_mut().enumerate() {
                *b = j as u8;
            }
            let mut b = a.clone();
            fast.seal(&c, r, record_nonce(1, 2, r), &mut a);
            portable.seal(&c, r, record_nonce(1, 2, r), &mut b);
            assert_eq!(a, b, "record {r}");
            let mut a2 = a.clone();
            assert!(portable.open(&c, r, &mut a2).is_ok());
            assert!(fast.open(&c, r, &mut b).is_ok());
        }
    }

    #[test]
    fn seal_open_and_every_tamper_fails() {
        let runs = Runs::from_chunk_sizes(&[10_000, 5_000]).unwrap();
        let c0 = runs.chunk(0).unwrap();
        let c1 = runs.chunk(1).unwrap();
        let k = RecordCipher::new(&[5; 32]);
        let mut recs = vec![];
        for (c, r) in [(c0, 0), (c0, 1), (c0, 2), (c1, 0), (c1, 1)] {
            let m = c.record_plain(r);
            let mut out = vec![0u8; c.record_len(r)];
            for (j, b) in out[12..12 + m].iter_mut().enumerate() {
                *b = (j as u8).wrapping_mul(31).wrapping_add(r as u8);
            }
            let plain = out[12..12 + m].to_vec();
            k.seal(
                &c,
                r,
                record_nonce(7, 0xdead_beef, c.first_record + r),
                &mut out,
            );
            assert_ne!(&out[12..12 + m], plain.as_slice());
            let mut copy = out.clone();
            assert_eq!(k.open(&c, r, &mut copy).unwrap(), plain.as_slice());
            recs.push((c, r, out));
        }
        let (c, r, rec) = &recs[1];
        for i in 0..rec.len() {
            let mut t = rec.clone();
            t[i] ^= 1;
            assert!(k.open(c, *r, &mut t).is_err(), "byte {i}");
        }
        // Swapped into another place: other index, chunk or flags.
        let (c2, _, rec2) = &recs[0];
        let mut moved = rec2.clone();
        assert!(k.open(c2, 1, &mut moved).is_err());
        // The last record of run 1 cannot pass as run 0's (same length).
        let (c4, r4, rec4) = &recs[4];
        let mut t = rec4.clone();
        assert!(k.open(&c0, 2, &mut t).is_err() || c0.record_len(2) != c4.record_len(*r4));
        // Another key.
        let mut t = rec.clone();
        assert!(RecordCipher::new(&[6; 32]).open(c, *r, &mut t).is_err());
        // Truncated.
        let mut t = rec[..rec.len() - 512].to_vec();
        assert!(k.open(c, *r, &mut t).is_err());
    }
}
