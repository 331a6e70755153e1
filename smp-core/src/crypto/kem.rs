//! sntrup761, the KEM of the PQ double ratchet (`Crypto/SNTRUP761`): round-3
//! Streamlined NTRU Prime as in supercop and OpenSSH, which the reference's C
//! code implements too.
//!
//! Behind the `pq` feature (see Cargo.toml); without it every operation
//! answers [`CryptoError::Unsupported`] and callers decline PQ.

use alloc::vec::Vec;
use zeroize::Zeroizing;

use super::CryptoError;

pub const PUBLIC_KEY_SIZE: usize = 1158;
pub const SECRET_KEY_SIZE: usize = 1763;
pub const CIPHERTEXT_SIZE: usize = 1039;
pub const SHARED_SECRET_SIZE: usize = 32;

/// A KEM key pair (`KEMKeyPair`); the secret half is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct KemKeyPair {
    pub public: Vec<u8>,
    pub secret: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "KemKeyPair(<{} byte public key>, <secret>)",
            self.public.len()
        )
    }
}

/// A KEM shared secret.
pub type KemSecret = Zeroizing<[u8; SHARED_SECRET_SIZE]>;

/// Whether this build can do sntrup761 at all.
pub const fn available() -> bool {
    cfg!(feature = "pq")
}

impl KemKeyPair {
    /// Checks sizes; used when a stored or received pair is loaded.
    pub fn from_parts(public: Vec<u8>, secret: Vec<u8>) -> Result<Self, CryptoError> {
        if public.len() != PUBLIC_KEY_SIZE || secret.len() != SECRET_KEY_SIZE {
            return Err(CryptoError::BadKey("sntrup761"));
        }
        Ok(Self {
            public,
            secret: Zeroizing::new(secret),
        })
    }
}

#[cfg(feature = "pq")]
mod imp {
    use super::*;
    use sntrup761::{Ciphertext, DecapsulationKey, EncapsulationKey};

    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Result<KemKeyPair, CryptoError> {
        let (pk, sk) = sntrup761::generate_key(rng);
        Ok(KemKeyPair {
            public: pk.as_ref().to_vec(),
            secret: Zeroizing::new(sk.as_ref().to_vec()),
        })
    }

    pub fn encapsulate(
        public: &[u8],
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<(Vec<u8>, KemSecret), CryptoError> {
        let pk =
            EncapsulationKey::try_from(public).map_err(|_| CryptoError::BadKey("sntrup761"))?;
        let (ct, ss) = pk.encapsulate(rng);
        let mut out = Zeroizing::new([0u8; SHARED_SECRET_SIZE]);
        out.copy_from_slice(ss.as_ref());
        Ok((ct.as_ref().to_vec(), out))
    }

    pub fn decapsulate(secret: &[u8], ciphertext: &[u8]) -> Result<KemSecret, CryptoError> {
        let sk =
            DecapsulationKey::try_from(secret).map_err(|_| CryptoError::BadKey("sntrup761"))?;
        let ct = Ciphertext::try_from(ciphertext).map_err(|_| CryptoError::BadKey("sntrup761"))?;
        let ss = sk.decapsulate(&ct);
        let mut out = Zeroizing::new([0u8; SHARED_SECRET_SIZE]);
        out.copy_from_slice(ss.as_ref());
        Ok(out)
    }
}

#[cfg(not(feature = "pq"))]
mod imp {
    use super::*;

    pub fn generate(_: &mut impl rand_core::CryptoRng) -> Result<KemKeyPair, CryptoError> {
        Err(CryptoError::Unsupported("sntrup761"))
    }
    pub fn encapsulate(
        _: &[u8],
        _: &mut impl rand_core::CryptoRng,
    ) -> Result<(Vec<u8>, KemSecret), CryptoError> {
        Err(CryptoError::Unsupported("sntrup761"))
    }
    pub fn decapsulate(_: &[u8], _: &[u8]) -> Result<KemSecret, CryptoError> {
        Err(CryptoError::Unsupported("sntrup761"))
    }
}

/// A fresh key pair (`sntrup761Keypair`).
pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Result<KemKeyPair, CryptoError> {
    imp::generate(rng)
}

/// Encapsulates to `public`: (ciphertext, shared secret).
pub fn encapsulate(
    public: &[u8],
    rng: &mut impl rand_core::CryptoRng,
) -> Result<(Vec<u8>, KemSecret), CryptoError> {
    imp::encapsulate(public, rng)
}

/// Recovers the shared secret of `ciphertext` with our secret key.
pub fn decapsulate(secret: &[u8], ciphertext: &[u8]) -> Result<KemSecret, CryptoError> {
    if ciphertext.len() != CIPHERTEXT_SIZE {
        return Err(CryptoError::BadKey("sntrup761 ciphertext"));
    }
    imp::decapsulate(secret, ciphertext)
}
