//! Keys and crypto exactly as simplexmq uses them: Ed25519/Ed448 signatures,
//! X25519 DH, the DER forms the reference writes, its XSalsa20-Poly1305
//! constructions and digests, and the double ratchet's X448, AES-256-GCM and
//! sntrup761. All primitives come from maintained crates.

pub mod aead;
pub mod backend;
pub mod cert;
pub mod der;
pub mod digest;
pub mod kem;
pub mod keys;
pub mod secretbox;

pub use keys::{KeyAlgorithm, PrivateKey, PublicKey, Signature};
pub use secretbox::{CbNonce, SbKey, SbStream};

/// Crypto failures; deliberately coarse where detail would help an attacker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("authentication failed: wrong key or tampered data")]
    AuthFailed,
    #[error("invalid DER: {0}")]
    Der(&'static str),
    #[error("the key is not valid for {0}")]
    BadKey(&'static str),
    #[error("key algorithm does not fit this use: expected {expected}")]
    WrongAlgorithm { expected: &'static str },
    #[error("invalid signature length {0}")]
    BadSignatureLength(usize),
    #[error("{0} is not available in this build")]
    Unsupported(&'static str),
    #[error(transparent)]
    Pad(#[from] crate::encoding::pad::PadError),
}

/// Fills `buf` from the operating system's CSPRNG.
#[cfg(feature = "std")]
pub fn random_bytes(buf: &mut [u8]) {
    // An OS without a working CSPRNG cannot run this software safely at all.
    getrandom::fill(buf).expect("the operating system random generator failed");
}

/// A fresh random array from the OS CSPRNG.
#[cfg(feature = "std")]
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut a = [0u8; N];
    random_bytes(&mut a);
    a
}
