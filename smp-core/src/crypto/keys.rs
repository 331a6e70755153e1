//! Public and private keys of the four curve algorithms SimpleX knows,
//! signatures and DH, with the DER forms of the reference (`encodePubKey`,
//! `encodePrivKey`).

use super::CryptoError;
use super::der;
use alloc::vec::Vec;
use core::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Ed25519,
    Ed448,
    X25519,
    X448,
}

impl KeyAlgorithm {
    pub const fn public_len(self) -> usize {
        match self {
            Self::Ed25519 | Self::X25519 => 32,
            Self::Ed448 => 57,
            Self::X448 => 56,
        }
    }
    pub const fn private_len(self) -> usize {
        self.public_len()
    }
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "Ed25519",
            Self::Ed448 => "Ed448",
            Self::X25519 => "X25519",
            Self::X448 => "X448",
        }
    }
    pub const fn is_signature(self) -> bool {
        matches!(self, Self::Ed25519 | Self::Ed448)
    }
}

/// A public key: algorithm plus raw key bytes (validated lengths).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    alg: KeyAlgorithm,
    raw: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, ", self.alg.name())?;
        for b in &self.raw {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

impl PublicKey {
    pub fn from_raw(alg: KeyAlgorithm, raw: &[u8]) -> Result<Self, CryptoError> {
        if raw.len() != alg.public_len() {
            return Err(CryptoError::BadKey(alg.name()));
        }
        Ok(Self {
            alg,
            raw: raw.to_vec(),
        })
    }
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
    /// DER SubjectPublicKeyInfo, the form keys take on the wire.
    pub fn to_der(&self) -> Vec<u8> {
        der::encode_spki(self.alg, &self.raw)
    }
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, CryptoError> {
        let (alg, raw) = der::decode_spki(der_bytes)?;
        Self::from_raw(alg, raw)
    }
    /// Like [`PublicKey::from_der`], but only for the given algorithm.
    pub fn from_der_as(alg: KeyAlgorithm, der_bytes: &[u8]) -> Result<Self, CryptoError> {
        let k = Self::from_der(der_bytes)?;
        if k.alg != alg {
            return Err(CryptoError::WrongAlgorithm {
                expected: alg.name(),
            });
        }
        Ok(k)
    }
    /// X25519 key as an array (for DH).
    pub fn x25519(&self) -> Result<[u8; 32], CryptoError> {
        match self.alg {
            KeyAlgorithm::X25519 => {
                let mut a = [0u8; 32];
                a.copy_from_slice(&self.raw);
                Ok(a)
            }
            _ => Err(CryptoError::WrongAlgorithm { expected: "X25519" }),
        }
    }

    /// Verifies a pure Ed25519/Ed448 signature. A signature of the other
    /// algorithm, or a non-signature key, simply does not verify.
    pub fn verify(&self, message: &[u8], sig: &Signature) -> bool {
        match (self.alg, sig) {
            (KeyAlgorithm::Ed25519, Signature::Ed25519(s)) => {
                let mut pk = [0u8; 32];
                pk.copy_from_slice(&self.raw);
                let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else {
                    return false;
                };
                vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(s))
                    .is_ok()
            }
            (KeyAlgorithm::Ed448, Signature::Ed448(s)) => {
                let mut pk = [0u8; 57];
                pk.copy_from_slice(&self.raw);
                let Ok(vk) = ed448_goldilocks::VerifyingKey::from_bytes(&pk) else {
                    return false;
                };
                let Ok(sig) = ed448_goldilocks::Signature::try_from(&s[..]) else {
                    return false;
                };
                vk.verify_raw(&sig, message).is_ok()
            }
            _ => false,
        }
    }
}

/// A signature; its algorithm follows from its length, as in the reference.
#[derive(Clone, PartialEq, Eq)]
pub enum Signature {
    Ed25519([u8; 64]),
    Ed448([u8; 114]),
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ed25519(_) => f.write_str("Signature(Ed25519)"),
            Self::Ed448(_) => f.write_str("Signature(Ed448)"),
        }
    }
}

impl Signature {
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        match b.len() {
            64 => {
                let mut a = [0u8; 64];
                a.copy_from_slice(b);
                Ok(Self::Ed25519(a))
            }
            114 => {
                let mut a = [0u8; 114];
                a.copy_from_slice(b);
                Ok(Self::Ed448(a))
            }
            n => Err(CryptoError::BadSignatureLength(n)),
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Ed25519(a) => a,
            Self::Ed448(a) => a,
        }
    }
}

/// An X25519 peer public key and the shared secret with it.
#[cfg(feature = "std")]
type DhMemo = ([u8; 32], Zeroizing<[u8; 32]>);

/// A private key. Its bytes are wiped on drop and compared in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey {
    #[zeroize(skip)]
    alg: KeyAlgorithm,
    raw: Vec<u8>,
    /// The Ed25519 signing key with its public half, derived on the first
    /// signature: deriving the public key (a base-point multiplication) is
    /// half the cost of a signature, and a queue's key signs every command.
    /// `SigningKey` wipes itself on drop.
    #[cfg(feature = "std")]
    #[zeroize(skip)]
    ed25519_cache: std::sync::OnceLock<alloc::boxed::Box<ed25519_dalek::SigningKey>>,
    /// The X25519 shared secret with the first peer key this key met, with
    /// that peer key: a per-queue e2e key meets one peer, every message.
    /// Wiped on drop.
    #[cfg(feature = "std")]
    #[zeroize(skip)]
    dh_cache: std::sync::OnceLock<alloc::boxed::Box<DhMemo>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, <secret>)", self.alg.name())
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.alg == other.alg && bool::from(self.raw.ct_eq(&other.raw))
    }
}
impl Eq for PrivateKey {}

impl PrivateKey {
    fn new(alg: KeyAlgorithm, raw: Vec<u8>) -> Self {
        Self {
            alg,
            raw,
            #[cfg(feature = "std")]
            ed25519_cache: std::sync::OnceLock::new(),
            #[cfg(feature = "std")]
            dh_cache: std::sync::OnceLock::new(),
        }
    }

    /// A private key from its raw bytes (the RFC 8032 seed for Ed25519/Ed448,
    /// the scalar for X25519/X448, stored unclamped as the reference does).
    pub fn from_raw(alg: KeyAlgorithm, raw: &[u8]) -> Result<Self, CryptoError> {
        if raw.len() != alg.private_len() {
            return Err(CryptoError::BadKey(alg.name()));
        }
        Ok(Self::new(alg, raw.to_vec()))
    }
    /// A new random key from the OS generator.
    #[cfg(feature = "std")]
    pub fn generate(alg: KeyAlgorithm) -> Self {
        let mut raw = alloc::vec![0u8; alg.private_len()];
        super::random_bytes(&mut raw);
        Self::new(alg, raw)
    }
    /// A new random key from the caller's generator (no_std callers, and the
    /// sans-IO state machines, which never reach for OS randomness).
    pub fn generate_with(alg: KeyAlgorithm, rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut raw = alloc::vec![0u8; alg.private_len()];
        rng.fill_bytes(&mut raw);
        Self::new(alg, raw)
    }
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
    /// DER PKCS#8 v0 with no optional fields, exactly as the reference writes it.
    pub fn to_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(der::encode_pkcs8(self.alg, &self.raw))
    }
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, CryptoError> {
        let (alg, raw) = der::decode_pkcs8(der_bytes)?;
        Self::from_raw(alg, raw)
    }

    pub fn public_key(&self) -> PublicKey {
        let raw: Vec<u8> = match self.alg {
            KeyAlgorithm::Ed25519 => self.with_ed25519(|k| k.verifying_key().to_bytes().to_vec()),
            KeyAlgorithm::Ed448 => self.ed448().verifying_key().to_bytes().to_vec(),
            KeyAlgorithm::X25519 => {
                x25519_dalek::x25519(self.x25519_scalar(), x25519_dalek::X25519_BASEPOINT_BYTES)
                    .to_vec()
            }
            KeyAlgorithm::X448 => {
                x448::x448_unchecked(self.x448_scalar(), x448::X448_BASEPOINT_BYTES).to_vec()
            }
        };
        PublicKey { alg: self.alg, raw }
    }

    fn ed25519(&self) -> ed25519_dalek::SigningKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&self.raw);
        ed25519_dalek::SigningKey::from_bytes(&seed)
    }

    #[cfg(feature = "std")]
    fn with_ed25519<R>(&self, f: impl FnOnce(&ed25519_dalek::SigningKey) -> R) -> R {
        f(self
            .ed25519_cache
            .get_or_init(|| alloc::boxed::Box::new(self.ed25519())))
    }

    #[cfg(not(feature = "std"))]
    fn with_ed25519<R>(&self, f: impl FnOnce(&ed25519_dalek::SigningKey) -> R) -> R {
        f(&self.ed25519())
    }

    fn ed448(&self) -> ed448_goldilocks::SigningKey {
        // Length is checked at construction, so this conversion cannot fail.
        ed448_goldilocks::SigningKey::try_from(&self.raw[..])
            .expect("Ed448 private key length checked at construction")
    }

    fn x448_scalar(&self) -> [u8; 56] {
        let mut a = [0u8; 56];
        a.copy_from_slice(&self.raw);
        a
    }

    fn x25519_scalar(&self) -> [u8; 32] {
        let mut a = [0u8; 32];
        a.copy_from_slice(&self.raw);
        a
    }

    /// Pure Ed25519/Ed448 signature (empty context for Ed448).
    pub fn sign(&self, message: &[u8]) -> Result<Signature, CryptoError> {
        match self.alg {
            KeyAlgorithm::Ed25519 => {
                use ed25519_dalek::Signer;
                Ok(Signature::Ed25519(
                    self.with_ed25519(|k| k.sign(message).to_bytes()),
                ))
            }
            KeyAlgorithm::Ed448 => {
                let sig = self.ed448().sign_raw(message).to_bytes();
                let mut a = [0u8; 114];
                a.copy_from_slice(&sig[..]);
                Ok(Signature::Ed448(a))
            }
            _ => Err(CryptoError::WrongAlgorithm {
                expected: "Ed25519 or Ed448",
            }),
        }
    }

    /// Raw X25519 DH (no hashing), as the reference's `dh'`.
    pub fn dh(&self, peer: &PublicKey) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if self.alg != KeyAlgorithm::X25519 {
            return Err(CryptoError::WrongAlgorithm { expected: "X25519" });
        }
        let peer = peer.x25519()?;
        #[cfg(feature = "std")]
        if let Some((p, s)) = self.dh_cache.get().map(|b| &**b)
            && *p == peer
        {
            return Ok(s.clone());
        }
        let k = Zeroizing::new(self.x25519_scalar());
        let s = Zeroizing::new(x25519_dalek::x25519(*k, peer));
        #[cfg(feature = "std")]
        let _ = self.dh_cache.set(alloc::boxed::Box::new((peer, s.clone())));
        Ok(s)
    }

    /// Raw X448 DH (no hashing), as the reference's `dh'`. A peer key of low
    /// order (an all-zero result) is refused.
    pub fn dh_x448(&self, peer: &PublicKey) -> Result<Zeroizing<[u8; 56]>, CryptoError> {
        if self.alg != KeyAlgorithm::X448 || peer.alg != KeyAlgorithm::X448 {
            return Err(CryptoError::WrongAlgorithm { expected: "X448" });
        }
        let mut point = [0u8; 56];
        point.copy_from_slice(&peer.raw);
        x448::x448(self.x448_scalar(), point)
            .map(Zeroizing::new)
            .ok_or(CryptoError::BadKey("X448"))
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    /// The derived-key caches give what a fresh key computes, for the
    /// cached peer and for others.
    #[test]
    fn cached_dh_and_signatures_match_fresh_keys() {
        let own = PrivateKey::generate(KeyAlgorithm::X25519);
        let p1 = PrivateKey::generate(KeyAlgorithm::X25519).public_key();
        let p2 = PrivateKey::generate(KeyAlgorithm::X25519).public_key();
        let fresh = || PrivateKey::from_raw(KeyAlgorithm::X25519, own.raw()).unwrap();
        for peer in [&p1, &p1, &p2, &p1, &p2] {
            assert_eq!(*own.dh(peer).unwrap(), *fresh().dh(peer).unwrap());
        }
        let copy = own.clone();
        assert_eq!(*copy.dh(&p2).unwrap(), *fresh().dh(&p2).unwrap());

        let signer = PrivateKey::generate(KeyAlgorithm::Ed25519);
        let fresh = || PrivateKey::from_raw(KeyAlgorithm::Ed25519, signer.raw()).unwrap();
        for m in [&b"one"[..], b"two", b"one"] {
            let sig = signer.sign(m).unwrap();
            assert_eq!(sig.as_bytes(), fresh().sign(m).unwrap().as_bytes());
            assert!(signer.public_key().verify(m, &sig));
        }
        assert_eq!(signer.public_key(), fresh().public_key());
    }
}
