//! XSalsa20-Poly1305 as simplexmq uses it.
//!
//! Every 32-byte secret — a raw X25519 output or a random symmetric key — is
//! first passed through HSalsa20 with a zero nonce. For DH secrets that makes
//! it standard NaCl `crypto_box`; for symmetric keys it is *not* libsodium's
//! `crypto_secretbox(key)`. The Poly1305 tag goes first for small boxes and
//! last for streamed files and chunk downloads.

use super::CryptoError;
use super::backend::{self, XSalsa20Poly1305};
use super::keys::{PrivateKey, PublicKey};
use crate::encoding::pad;
use alloc::vec::Vec;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

pub const TAG_SIZE: usize = 16;
pub const NONCE_SIZE: usize = 24;
pub const KEY_SIZE: usize = 32;

/// A symmetric secretbox key (file keys); wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, zeroize::ZeroizeOnDrop)]
pub struct SbKey(pub [u8; KEY_SIZE]);

impl core::fmt::Debug for SbKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SbKey(<secret>)")
    }
}

impl SbKey {
    pub fn from_slice(b: &[u8]) -> Result<Self, CryptoError> {
        let a: [u8; KEY_SIZE] = b
            .try_into()
            .map_err(|_| CryptoError::BadKey("secretbox key"))?;
        Ok(Self(a))
    }
    #[cfg(feature = "std")]
    pub fn generate() -> Self {
        Self(super::random_array())
    }
}

/// A 24-byte nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CbNonce(pub [u8; NONCE_SIZE]);

impl CbNonce {
    /// The reference's `cbNonce`: longer input is truncated, shorter is
    /// right-padded with zero bytes.
    pub fn normalize(b: &[u8]) -> Self {
        let mut a = [0u8; NONCE_SIZE];
        let n = b.len().min(NONCE_SIZE);
        a[..n].copy_from_slice(&b[..n]);
        Self(a)
    }
    #[cfg(feature = "std")]
    pub fn generate() -> Self {
        Self(super::random_array())
    }
}

/// The incremental XSalsa20-Poly1305 state (`sbInit`/`cbInit` followed by
/// `sbEncryptChunk`/`sbDecryptChunk` and `sbAuth`). Any split of the data
/// into pieces gives the same bytes, so memory stays constant for any length.
/// A copy continues independently: a download can keep the state at a
/// chunk's start and go back to it when the chunk must be fetched again.
/// The work is done by this build's [`backend::Active`].
#[derive(Clone)]
pub struct SbStream(backend::Active);

impl SbStream {
    /// Keys the stream from a 32-byte secret (symmetric key or raw DH output).
    pub fn new(secret: &[u8; 32], nonce: &CbNonce) -> Self {
        Self(backend::Active::new(secret, &nonce.0))
    }

    /// Keys the stream for a DH pair, as NaCl `crypto_box`.
    pub fn for_dh(
        peer: &PublicKey,
        own: &PrivateKey,
        nonce: &CbNonce,
    ) -> Result<Self, CryptoError> {
        let secret = own.dh(peer)?;
        Ok(Self::new(&secret, nonce))
    }

    /// Encrypts `buf` in place and authenticates the ciphertext.
    pub fn encrypt(&mut self, buf: &mut [u8]) {
        self.0.encrypt(buf);
    }

    /// Authenticates the ciphertext in `buf` and decrypts it in place. The
    /// plaintext is only trustworthy once [`SbStream::verify`] succeeds.
    pub fn decrypt(&mut self, buf: &mut [u8]) {
        self.0.decrypt(buf);
    }

    /// The Poly1305 tag over all ciphertext seen so far.
    pub fn tag(self) -> [u8; TAG_SIZE] {
        self.0.tag()
    }

    /// Compares the tag with `expected` in constant time.
    pub fn verify(self, expected: &[u8]) -> Result<(), CryptoError> {
        let tag = self.tag();
        if expected.len() == TAG_SIZE && bool::from(tag.ct_eq(expected)) {
            Ok(())
        } else {
            Err(CryptoError::AuthFailed)
        }
    }
}

/// `cryptoBox`: `tag ‖ ciphertext` with no padding.
pub fn crypto_box(secret: &[u8; 32], nonce: &CbNonce, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG_SIZE + msg.len());
    out.extend_from_slice(&[0u8; TAG_SIZE]);
    out.extend_from_slice(msg);
    let mut s = SbStream::new(secret, nonce);
    s.encrypt(&mut out[TAG_SIZE..]);
    let tag = s.tag();
    out[..TAG_SIZE].copy_from_slice(&tag);
    out
}

/// Opens a `tag ‖ ciphertext` box; nothing is returned unless the tag matches.
pub fn crypto_box_open(
    secret: &[u8; 32],
    nonce: &CbNonce,
    boxed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if boxed.len() < TAG_SIZE {
        return Err(CryptoError::AuthFailed);
    }
    let (tag, ct) = boxed.split_at(TAG_SIZE);
    let mut out = ct.to_vec();
    let mut s = SbStream::new(secret, nonce);
    s.decrypt(&mut out);
    match s.verify(tag) {
        Ok(()) => Ok(out),
        Err(e) => {
            out.zeroize();
            Err(e)
        }
    }
}

/// `cbEncrypt`/`sbEncrypt`: the message strictly padded to `padded_len`, then boxed.
pub fn cb_encrypt(
    secret: &[u8; 32],
    nonce: &CbNonce,
    msg: &[u8],
    padded_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let padded = Zeroizing::new(pad::pad(msg, padded_len)?);
    Ok(crypto_box(secret, nonce, &padded))
}

/// Opens a padded box and removes the padding.
pub fn cb_decrypt(
    secret: &[u8; 32],
    nonce: &CbNonce,
    boxed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let padded = Zeroizing::new(crypto_box_open(secret, nonce, boxed)?);
    Ok(pad::unpad(&padded)?.to_vec())
}

/// `sbEncryptTailTag`: `XSalsa20(padLazy(msg)) ‖ tag` (the whole-file form, in memory).
pub fn sb_encrypt_tail_tag(
    key: &SbKey,
    nonce: &CbNonce,
    msg: &[u8],
    padded_len: u64,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = pad::pad_lazy(msg, padded_len)?;
    let mut s = SbStream::new(&key.0, nonce);
    s.encrypt(&mut out);
    out.extend_from_slice(&s.tag());
    Ok(out)
}

/// Opens `ciphertext ‖ tag` and returns the unpadded message.
pub fn sb_decrypt_tail_tag(
    key: &SbKey,
    nonce: &CbNonce,
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if data.len() < TAG_SIZE {
        return Err(CryptoError::AuthFailed);
    }
    let (ct, tag) = data.split_at(data.len() - TAG_SIZE);
    let mut buf = ct.to_vec();
    let mut s = SbStream::new(&key.0, nonce);
    s.decrypt(&mut buf);
    s.verify(tag)?;
    let (len, content) = pad::split_len(&buf)?;
    if content.len() as u64 != len {
        return Err(CryptoError::Pad(pad::PadError::BadLength {
            declared: len as usize,
            available: content.len(),
        }));
    }
    Ok(content.to_vec())
}

/// Length of a crypto_box authenticator (`cbAuthenticate`).
pub const AUTHENTICATOR_SIZE: usize = 80;

/// `cbAuthenticate`: proves knowledge of `own` to the holder of the peer's
/// private key, over `msg`, without a signature key.
pub fn cb_authenticate(
    peer: &PublicKey,
    own: &PrivateKey,
    nonce: &CbNonce,
    msg: &[u8],
) -> Result<[u8; AUTHENTICATOR_SIZE], CryptoError> {
    let secret = own.dh(peer)?;
    let digest = super::digest::sha512(msg);
    let boxed = crypto_box(&secret, nonce, &digest);
    let mut a = [0u8; AUTHENTICATOR_SIZE];
    a.copy_from_slice(&boxed);
    Ok(a)
}

/// Checks a `cbAuthenticate` value in constant time.
pub fn cb_verify(
    peer: &PublicKey,
    own: &PrivateKey,
    nonce: &CbNonce,
    authenticator: &[u8],
    msg: &[u8],
) -> bool {
    if authenticator.len() != AUTHENTICATOR_SIZE {
        return false;
    }
    match cb_authenticate(peer, own, nonce, msg) {
        Ok(expected) => bool::from(expected.ct_eq(authenticator)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    #[test]
    fn a_copy_continues_like_the_original() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        let mut whole = data.clone();
        let mut s = SbStream::new(&[3; 32], &CbNonce([4; 24]));
        s.encrypt(&mut whole);
        let tag = s.tag();
        // Cut at 333 (mid-block for both the cipher and the MAC): the copy
        // and the original give the same rest and the same tag.
        let mut head = data[..333].to_vec();
        let mut s = SbStream::new(&[3; 32], &CbNonce([4; 24]));
        s.encrypt(&mut head);
        let mut copy = s.clone();
        let (mut a, mut b) = (data[333..].to_vec(), data[333..].to_vec());
        s.encrypt(&mut a);
        copy.encrypt(&mut b);
        assert_eq!(a, b);
        assert_eq!([head, a].concat(), whole);
        assert_eq!(s.tag(), tag);
        assert_eq!(copy.tag(), tag);
    }
}
