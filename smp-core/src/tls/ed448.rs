//! Ed448 for rustls. The reference defaults to Ed448 certificates and the
//! `ed448` TLS signature scheme, which neither ring nor aws-lc-rs implement;
//! this plugs in ed448-goldilocks (pure Ed448, empty context, as RFC 8446
//! requires; never Ed448ph).

use std::sync::Arc;

use ed448_goldilocks::{Signature, SigningKey, VerifyingKey};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{
    AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer,
    alg_id,
};
use rustls::sign::{Signer, SigningKey as RustlsSigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

/// Length of an Ed448 private or public key.
pub const ED448_KEY_LEN: usize = 57;
/// Length of an Ed448 signature.
pub const ED448_SIG_LEN: usize = 114;

/// Ed448 signature verification for webpki paths and CertificateVerify.
#[derive(Debug)]
pub struct Ed448Verify;

/// The one instance rustls/webpki tables refer to.
pub static ED448: &dyn SignatureVerificationAlgorithm = &Ed448Verify;

impl SignatureVerificationAlgorithm for Ed448Verify {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        verify_ed448(public_key, message, signature)
            .then_some(())
            .ok_or(InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED448
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED448
    }
}

/// Pure Ed448 verification of raw key/signature bytes; false on any malformed input.
pub fn verify_ed448(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(pk) = <&[u8; ED448_KEY_LEN]>::try_from(public_key) else {
        return false;
    };
    let Ok(sig) = <&[u8; ED448_SIG_LEN]>::try_from(signature) else {
        return false;
    };
    let Ok(vk) = VerifyingKey::from_bytes(pk) else {
        return false;
    };
    vk.verify_raw(&Signature::from_bytes(sig), message).is_ok()
}

/// The only schemes SimpleX uses, Ed448 preferred as in the reference; this
/// list is what our client offers in `signature_algorithms`.
pub static SUPPORTED_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[ED448, webpki::ring::ED25519],
    mapping: &[
        (SignatureScheme::ED448, &[ED448]),
        (SignatureScheme::ED25519, &[webpki::ring::ED25519]),
    ],
};

/// An Ed448 private key usable as a rustls server key.
pub struct Ed448SigningKey(Arc<SigningKey>);

impl std::fmt::Debug for Ed448SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed448SigningKey")
    }
}

impl Ed448SigningKey {
    /// From the 57-byte RFC 8032 secret; `None` if the length is wrong.
    pub fn from_secret(secret: &[u8]) -> Option<Self> {
        SigningKey::try_from(secret).ok().map(|k| Self(Arc::new(k)))
    }

    /// Pure Ed448 signature (deterministic, so it matches OpenSSL byte for byte).
    pub fn sign(&self, message: &[u8]) -> [u8; ED448_SIG_LEN] {
        self.0.sign_raw(message).to_bytes()
    }

    pub fn public_key(&self) -> [u8; ED448_KEY_LEN] {
        self.0.verifying_key().to_bytes()
    }
}

impl RustlsSigningKey for Ed448SigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ED448)
            .then(|| Box::new(Ed448Signer(self.0.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        // SEQUENCE { SEQUENCE { OID 1.3.101.113 }, BIT STRING 00 ‖ key }: lets
        // rustls check that the key matches the certificate.
        let mut spki = vec![
            0x30, 0x43, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71, 0x03, 0x3a, 0x00,
        ];
        spki.extend_from_slice(&self.public_key());
        Some(SubjectPublicKeyInfoDer::from(spki))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED448
    }
}

struct Ed448Signer(Arc<SigningKey>);

impl std::fmt::Debug for Ed448Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed448Signer")
    }
}

impl Signer for Ed448Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(self.0.sign_raw(message).to_bytes().to_vec())
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
}
