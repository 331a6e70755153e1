//! Ed448 for rustls. The reference defaults to Ed448 certificates and the
//! `ed448` TLS signature scheme, which neither ring nor aws-lc-rs implement;
//! this plugs the crate's own keys ([`crate::crypto::keys`], pure Ed448 with
//! an empty context, as RFC 8446 requires; never Ed448ph) into rustls. The
//! same keys verify Ed25519 for the RustCrypto provider, which has no ring.

use alloc::boxed::Box;
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;

#[cfg(feature = "std")]
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{
    AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer,
    alg_id,
};
use rustls::sign::{Signer, SigningKey as RustlsSigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey, Signature};

/// Length of an Ed448 private or public key.
pub const ED448_KEY_LEN: usize = KeyAlgorithm::Ed448.public_len();
/// Length of an Ed448 signature.
pub const ED448_SIG_LEN: usize = 114;

/// EdDSA verification (pure Ed25519 or Ed448) for webpki paths and
/// CertificateVerify, on this crate's keys.
#[derive(Debug)]
pub struct EdwardsVerify(KeyAlgorithm);

/// The one Ed448 instance rustls/webpki tables refer to.
pub static ED448: &dyn SignatureVerificationAlgorithm = &EdwardsVerify(KeyAlgorithm::Ed448);
/// Ed25519 without ring, for the RustCrypto provider.
pub static ED25519: &dyn SignatureVerificationAlgorithm = &EdwardsVerify(KeyAlgorithm::Ed25519);

impl SignatureVerificationAlgorithm for EdwardsVerify {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        verify_edwards(self.0, public_key, message, signature)
            .then_some(())
            .ok_or(InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.alg_id()
    }
}

impl EdwardsVerify {
    fn alg_id(&self) -> AlgorithmIdentifier {
        if self.0 == KeyAlgorithm::Ed448 {
            alg_id::ED448
        } else {
            alg_id::ED25519
        }
    }
}

/// Pure Ed448 verification of raw key/signature bytes; false on any malformed input.
pub fn verify_ed448(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    verify_edwards(KeyAlgorithm::Ed448, public_key, message, signature)
}

fn verify_edwards(alg: KeyAlgorithm, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(pk) = PublicKey::from_raw(alg, public_key) else {
        return false;
    };
    // A signature of the other curve's length parses, but never verifies.
    let Ok(sig) = Signature::from_bytes(signature) else {
        return false;
    };
    pk.verify(message, &sig)
}

/// The only schemes SimpleX uses, Ed448 preferred as in the reference; this
/// list is what our client offers in `signature_algorithms`.
#[cfg(feature = "std")]
pub static SUPPORTED_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[ED448, webpki::ring::ED25519],
    mapping: &[
        (SignatureScheme::ED448, &[ED448]),
        (SignatureScheme::ED25519, &[webpki::ring::ED25519]),
    ],
};

/// An Ed448 private key usable as a rustls server key.
pub struct Ed448SigningKey(Arc<PrivateKey>);

impl core::fmt::Debug for Ed448SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ed448SigningKey")
    }
}

impl Ed448SigningKey {
    /// Wraps an Ed448 key; `None` for any other algorithm.
    pub fn new(key: PrivateKey) -> Option<Self> {
        (key.algorithm() == KeyAlgorithm::Ed448).then(|| Self(Arc::new(key)))
    }

    /// From the 57-byte RFC 8032 secret; `None` if the length is wrong.
    pub fn from_secret(secret: &[u8]) -> Option<Self> {
        PrivateKey::from_raw(KeyAlgorithm::Ed448, secret)
            .ok()
            .and_then(Self::new)
    }

    /// Pure Ed448 signature (deterministic, so it matches OpenSSL byte for byte).
    pub fn sign(&self, message: &[u8]) -> [u8; ED448_SIG_LEN] {
        match self.0.sign(message) {
            Ok(Signature::Ed448(sig)) => sig,
            // The key is Ed448 by construction.
            _ => unreachable!("Ed448SigningKey holds an Ed448 key"),
        }
    }

    pub fn public_key(&self) -> [u8; ED448_KEY_LEN] {
        let mut pk = [0u8; ED448_KEY_LEN];
        pk.copy_from_slice(self.0.public_key().raw());
        pk
    }
}

impl RustlsSigningKey for Ed448SigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ED448)
            .then(|| Box::new(Ed448Signer(self.0.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        // Lets rustls check that the key matches the certificate.
        Some(SubjectPublicKeyInfoDer::from(self.0.public_key().to_der()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED448
    }
}

struct Ed448Signer(Arc<PrivateKey>);

impl core::fmt::Debug for Ed448Signer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ed448Signer")
    }
}

impl Signer for Ed448Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0
            .sign(message)
            .map(|sig| sig.as_bytes().to_vec())
            .map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED448
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip_and_rejects_tampering() {
        let key = Ed448SigningKey::from_secret(&[9u8; ED448_KEY_LEN]).unwrap();
        let sig = key.sign(b"hello");
        let pk = key.public_key();
        assert!(verify_ed448(&pk, b"hello", &sig));
        assert!(!verify_ed448(&pk, b"hellp", &sig));
        assert!(!verify_ed448(&pk[..56], b"hello", &sig));
        assert!(!verify_ed448(&pk, b"hello", &sig[..113]));
        assert!(Ed448SigningKey::from_secret(&[1u8; 56]).is_none());
    }

    #[test]
    fn rustls_spki_and_signer_match_the_key() {
        let key = Ed448SigningKey::from_secret(&[9u8; ED448_KEY_LEN]).unwrap();
        let spki = RustlsSigningKey::public_key(&key).unwrap();
        let mut want = vec![
            0x30, 0x43, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71, 0x03, 0x3a, 0x00,
        ];
        want.extend_from_slice(&key.public_key());
        assert_eq!(spki.as_ref(), want.as_slice());
        let signer = key.choose_scheme(&[SignatureScheme::ED448]).unwrap();
        assert_eq!(signer.sign(b"hello").unwrap(), key.sign(b"hello").to_vec());
        assert!(key.choose_scheme(&[SignatureScheme::ED25519]).is_none());
        let x25519 = PrivateKey::from_raw(KeyAlgorithm::X25519, &[9u8; 32]).unwrap();
        assert!(Ed448SigningKey::new(x25519).is_none());
    }
}
