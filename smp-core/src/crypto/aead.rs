//! AES-256-GCM as the reference's `encryptAEAD`/`decryptAEAD` use it: a
//! 16-byte IV (so GCM derives its counter block through GHASH, NIST SP
//! 800-38D) and a 16-byte tag kept apart from the ciphertext. The double
//! ratchet encrypts every header and body with it.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::Aes256;
use alloc::vec::Vec;

use super::CryptoError;
use crate::encoding::pad;

/// The IV length the reference uses (`GCMIV`, not GCM's usual 12).
pub const IV_SIZE: usize = 16;
/// `AuthTag` length.
pub const TAG_SIZE: usize = 16;

type Aes256Gcm16 = AesGcm<Aes256, U16>;

fn cipher(key: &[u8; 32]) -> Aes256Gcm16 {
    Aes256Gcm16::new(key.into())
}

/// Encrypts `buf` in place and returns the tag.
pub fn seal_in_place(
    key: &[u8; 32],
    iv: &[u8; IV_SIZE],
    ad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_SIZE] {
    let tag = cipher(key)
        .encrypt_inout_detached(iv.into(), ad, buf.into())
        // Fails only past GCM's 64 GiB message limit; our messages are < 64 KiB.
        .expect("AES-GCM message far below the length limit");
    tag.into()
}

/// Decrypts `buf` in place; on a bad tag `buf` is left unusable.
pub fn open_in_place(
    key: &[u8; 32],
    iv: &[u8; IV_SIZE],
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_SIZE],
) -> Result<(), CryptoError> {
    cipher(key)
        .decrypt_inout_detached(iv.into(), ad, buf.into(), tag.into())
        .map_err(|_| CryptoError::AuthFailed)
}

/// `encryptAEAD key iv paddedLen ad msg`: pads `msg` to `padded_len` and
/// encrypts it; returns (tag, ciphertext).
pub fn encrypt_padded(
    key: &[u8; 32],
    iv: &[u8; IV_SIZE],
    padded_len: usize,
    ad: &[u8],
    msg: &[u8],
) -> Result<([u8; TAG_SIZE], Vec<u8>), CryptoError> {
    let mut buf = pad::pad(msg, padded_len)?;
    let tag = seal_in_place(key, iv, ad, &mut buf);
    Ok((tag, buf))
}

/// `decryptAEAD`: decrypts and removes the padding.
pub fn decrypt_padded(
    key: &[u8; 32],
    iv: &[u8; IV_SIZE],
    ad: &[u8],
    ciphertext: &[u8],
    tag: &[u8; TAG_SIZE],
) -> Result<Vec<u8>, CryptoError> {
    let mut buf = ciphertext.to_vec();
    open_in_place(key, iv, ad, &mut buf, tag)?;
    Ok(pad::unpad(&buf)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = [7u8; 32];
        let iv = [9u8; IV_SIZE];
        let (tag, ct) = encrypt_padded(&key, &iv, 64, b"ad", b"hello").unwrap();
        assert_eq!(ct.len(), 64);
        assert_eq!(
            decrypt_padded(&key, &iv, b"ad", &ct, &tag).unwrap(),
            b"hello"
        );
        assert_eq!(
            decrypt_padded(&key, &iv, b"other", &ct, &tag),
            Err(CryptoError::AuthFailed)
        );
        let mut bad = ct.clone();
        bad[3] ^= 1;
        assert_eq!(
            decrypt_padded(&key, &iv, b"ad", &bad, &tag),
            Err(CryptoError::AuthFailed)
        );
    }
}
