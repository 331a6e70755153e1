//! The FGET response body: the stored chunk re-encrypted for this download
//! with `crypto_box` keying (`X25519(server ephemeral, client ephemeral)`,
//! the nonce from `FILE`) and the tag *after* the ciphertext.
//!
//! Servers and clients stream the body with [`SbStream`]; these helpers key
//! the stream and handle whole chunks that fit in memory.

use super::error::XftpErrorType;
use crate::crypto::CryptoError;
use crate::crypto::digest::{Digest, Sha256, sha256};
use crate::crypto::keys::{PrivateKey, PublicKey};
use crate::crypto::secretbox::{CbNonce, SbStream, TAG_SIZE};
use alloc::vec::Vec;
use subtle::ConstantTimeEq;

/// The stream for one FGET body; either side passes its own private key and
/// the other side's public key.
pub fn fget_stream(
    peer: &PublicKey,
    own: &PrivateKey,
    nonce: &CbNonce,
) -> Result<SbStream, CryptoError> {
    SbStream::for_dh(peer, own, nonce)
}

/// Server side: `ciphertext ‖ tag` of a whole chunk.
pub fn encrypt_fget_body(
    chunk: &[u8],
    rcv_dh_key: &PublicKey,
    srv_dh_private: &PrivateKey,
    nonce: &CbNonce,
) -> Result<Vec<u8>, CryptoError> {
    let mut s = fget_stream(rcv_dh_key, srv_dh_private, nonce)?;
    let mut out = Vec::with_capacity(chunk.len() + TAG_SIZE);
    out.extend_from_slice(chunk);
    s.encrypt(&mut out);
    out.extend_from_slice(&s.tag());
    Ok(out)
}

/// Client side: decrypts a whole body of a chunk of `size` bytes (the size
/// from the file description) and checks the tag and then the chunk digest.
/// Errors are the ones the reference client reports: `SIZE` for a body
/// shorter than `size` or longer than `size + 16`, `CRYPTO` for a bad tag,
/// `DIGEST` for a digest mismatch.
pub fn decrypt_fget_body(
    body: &[u8],
    size: usize,
    srv_dh_key: &PublicKey,
    rcv_dh_private: &PrivateKey,
    nonce: &CbNonce,
    digest: &[u8],
) -> Result<Vec<u8>, XftpErrorType> {
    if body.len() < size || body.len() - size > TAG_SIZE {
        return Err(XftpErrorType::Size);
    }
    let mut s =
        fget_stream(srv_dh_key, rcv_dh_private, nonce).map_err(|_| XftpErrorType::Crypto)?;
    let (ct, tag) = body.split_at(size);
    let mut chunk = ct.to_vec();
    s.decrypt(&mut chunk);
    s.verify(tag).map_err(|_| XftpErrorType::Crypto)?;
    if !bool::from(sha256(&chunk).ct_eq(digest)) {
        return Err(XftpErrorType::Digest);
    }
    Ok(chunk)
}

/// Decodes an FGET body as it arrives, in place and without allocating:
/// `ciphertext(size) ‖ tag(16)` in pieces of any size. The plaintext it
/// hands back is the stored chunk (the XFTP file's ciphertext), not yet
/// authenticated until [`FgetDecoder::finish`] succeeds. The host client and
/// the device both use it.
pub struct FgetDecoder {
    stream: SbStream,
    hasher: Sha256,
    remaining: u64,
    tag: [u8; TAG_SIZE],
    tag_len: usize,
}

impl FgetDecoder {
    /// For a chunk of `size` bytes (from the description), keyed by the
    /// server's `FILE` answer and our ephemeral key.
    pub fn new(
        srv_dh_key: &PublicKey,
        own_dh: &PrivateKey,
        nonce: &CbNonce,
        size: u64,
    ) -> Result<Self, CryptoError> {
        Ok(Self::with_stream(
            fget_stream(srv_dh_key, own_dh, nonce)?,
            size,
        ))
    }

    /// With an already keyed stream.
    pub fn with_stream(stream: SbStream, size: u64) -> Self {
        Self {
            stream,
            hasher: Sha256::new(),
            remaining: size,
            tag: [0; TAG_SIZE],
            tag_len: 0,
        }
    }

    /// Chunk bytes still expected before the tag.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Decrypts the chunk bytes at the start of `piece` in place and returns
    /// how many there were; what follows is tag and is kept here. More than
    /// `size + 16` bytes in all is `SIZE`.
    pub fn update(&mut self, piece: &mut [u8]) -> Result<usize, XftpErrorType> {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(piece.len());
        let (ct, rest) = piece.split_at_mut(n);
        if !ct.is_empty() {
            self.stream.decrypt(ct);
            self.hasher.update(&*ct);
            self.remaining -= n as u64;
        }
        if rest.len() > TAG_SIZE - self.tag_len {
            return Err(XftpErrorType::Size);
        }
        self.tag[self.tag_len..self.tag_len + rest.len()].copy_from_slice(rest);
        self.tag_len += rest.len();
        Ok(n)
    }

    /// Checks, as the reference client does, the size (`SIZE`), the tag
    /// (`CRYPTO`) and then the chunk digest (`DIGEST`), in constant time.
    pub fn finish(self, digest: &[u8]) -> Result<(), XftpErrorType> {
        if self.remaining > 0 {
            return Err(XftpErrorType::Size);
        }
        self.stream
            .verify(&self.tag[..self.tag_len])
            .map_err(|_| XftpErrorType::Crypto)?;
        if !bool::from(self.hasher.finalize().as_slice().ct_eq(digest)) {
            return Err(XftpErrorType::Digest);
        }
        Ok(())
    }
}

#[cfg(test)]
mod decoder_tests {
    use super::*;
    use crate::crypto::keys::KeyAlgorithm;

    #[test]
    fn any_split_decodes_and_every_failure_is_named() {
        let (srv, rcv) = (
            PrivateKey::from_raw(KeyAlgorithm::X25519, &[1; 32]).unwrap(),
            PrivateKey::from_raw(KeyAlgorithm::X25519, &[2; 32]).unwrap(),
        );
        let nonce = CbNonce([7; 24]);
        let chunk: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let body = encrypt_fget_body(&chunk, &rcv.public_key(), &srv, &nonce).unwrap();
        let digest = sha256(&chunk);
        for split in [1usize, 15, 16, 17, 4096, 9_999, 10_000, 10_001, 10_016] {
            let mut d = FgetDecoder::new(&srv.public_key(), &rcv, &nonce, 10_000).unwrap();
            let mut out = Vec::new();
            for piece in body.chunks(split) {
                let mut p = piece.to_vec();
                let n = d.update(&mut p).unwrap();
                out.extend_from_slice(&p[..n]);
            }
            assert_eq!(out, chunk, "split {split}");
            d.finish(&digest).unwrap();
        }
        let run = |body: &[u8], digest: &[u8]| {
            let mut d = FgetDecoder::new(&srv.public_key(), &rcv, &nonce, 10_000).unwrap();
            let mut b = body.to_vec();
            d.update(&mut b)?;
            d.finish(digest)
        };
        assert_eq!(
            run(&body[..body.len() - 1], &digest),
            Err(XftpErrorType::Crypto)
        );
        assert_eq!(run(&body[..9_000], &digest), Err(XftpErrorType::Size));
        let mut long = body.clone();
        long.push(0);
        assert_eq!(run(&long, &digest), Err(XftpErrorType::Size));
        let mut flipped = body.clone();
        flipped[5] ^= 1;
        assert_eq!(run(&flipped, &digest), Err(XftpErrorType::Crypto));
        assert_eq!(run(&body, &[0; 32]), Err(XftpErrorType::Digest));
    }
}
