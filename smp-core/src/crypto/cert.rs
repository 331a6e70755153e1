//! The little of X.509 SimpleX needs without a TLS stack: signing a DER
//! object the way x509's `SignedExact` lays it out (certificates and the
//! XFTP session key alike), and finding a certificate's public key.
//! Chain validation is left to the TLS verifier.

use super::CryptoError;
use super::der::{self, BIT_STRING, DerReader, INTEGER, SEQUENCE};
use super::keys::{PrivateKey, PublicKey};
use alloc::vec::Vec;

/// `SEQUENCE { object, AlgorithmIdentifier, BIT STRING signature }`: `object`
/// (a whole DER element, e.g. a TBSCertificate) signed by `signer`.
pub fn sign_exact(object: Vec<u8>, signer: &PrivateKey) -> Result<Vec<u8>, CryptoError> {
    let sig = signer.sign(&object)?;
    let mut body = object;
    body.extend_from_slice(&der::algorithm_identifier(signer.algorithm()));
    body.extend_from_slice(&der::bit_string(sig.as_bytes()));
    Ok(der::tlv(SEQUENCE, &body))
}

/// The SubjectPublicKeyInfo (whole DER element) of an X.509 certificate.
/// Only walks the TBSCertificate far enough to find it; the signature and
/// extensions are not interpreted (TLS validation does that).
pub fn certificate_spki(cert: &[u8]) -> Result<&[u8], CryptoError> {
    let mut outer = DerReader::new(cert);
    let mut c = DerReader::new(outer.expect(SEQUENCE)?);
    outer.finish()?;
    let mut tbs = DerReader::new(c.expect(SEQUENCE)?);
    c.expect(SEQUENCE)?; // signatureAlgorithm
    c.expect(BIT_STRING)?; // signatureValue
    c.finish()?;
    if tbs.peek_tag() == Some(0xa0) {
        tbs.element()?; // [0] version
    }
    tbs.expect(INTEGER)?; // serialNumber
    for _ in 0..4 {
        tbs.expect(SEQUENCE)?; // signature, issuer, validity, subject
    }
    let (tag, _, spki) = tbs.element()?;
    if tag != SEQUENCE {
        return Err(CryptoError::Der("expected SubjectPublicKeyInfo"));
    }
    Ok(spki)
}

/// The public key of an X.509 certificate.
pub fn certificate_public_key(cert: &[u8]) -> Result<PublicKey, CryptoError> {
    PublicKey::from_der(certificate_spki(cert)?)
}
