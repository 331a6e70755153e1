//! The FGET response body: the stored chunk re-encrypted for this download
//! with `crypto_box` keying (`X25519(server ephemeral, client ephemeral)`,
//! the nonce from `FILE`) and the tag *after* the ciphertext.
//!
//! Servers and clients stream the body with [`SbStream`]; these helpers key
//! the stream and handle whole chunks that fit in memory.

use super::error::XftpErrorType;
use crate::crypto::CryptoError;
use crate::crypto::digest::sha256;
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
