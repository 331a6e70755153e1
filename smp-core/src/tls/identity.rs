//! Server identity: an offline CA (`ca.key`/`ca.crt`) whose SHA-256 is the
//! server's address key hash, and an online TLS leaf (`server.key`/
//! `server.crt`) it signs. Certificates are laid out like the reference's
//! `init` makes them with OpenSSL, so reference tools read ours and we read
//! theirs; DER is written by hand because the shape is fixed and small.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::sign::{CertifiedKey, SigningKey};
use zeroize::Zeroizing;

use super::ed448::Ed448SigningKey;
use super::verifier::{KeyHash, cert_fingerprint};
use crate::crypto::cert::sign_exact;
use crate::crypto::der::{self, tlv};
use crate::crypto::digest::sha256;
pub use crate::crypto::keys::KeyAlgorithm;
use crate::crypto::keys::{PrivateKey, PublicKey};
use crate::encoding::string::b64_encode;

/// Validity the reference's `init` asks OpenSSL for.
const VALIDITY_DAYS: i64 = 999_999;
const CA_CN: &str = "SMP server CA";
const CA_O: &str = "SimpleX";

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const OID_SKI: &[u8] = &[0x55, 0x1d, 0x0e];
const OID_AKI: &[u8] = &[0x55, 0x1d, 0x23];
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// Errors creating, writing or loading an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("file {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("file {0}: no PEM object of the expected kind")]
    Pem(String),
    #[error("private key is not a PKCS#8 Ed25519 or Ed448 key")]
    UnsupportedKey,
    #[error("{} keys cannot sign certificates: use Ed25519 or Ed448", .0.name())]
    NotSignatureAlgorithm(KeyAlgorithm),
    #[error("private key does not match the server certificate")]
    KeyMismatch,
    #[error("operating system randomness failed")]
    Random,
    #[error("rustls rejected the key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A new random Ed25519/Ed448 key (reference `--sign-algorithm`); other
/// algorithms cannot sign certificates.
fn generate_key(alg: KeyAlgorithm) -> Result<PrivateKey, IdentityError> {
    if !alg.is_signature() {
        return Err(IdentityError::NotSignatureAlgorithm(alg));
    }
    let mut secret = Zeroizing::new(vec![0u8; alg.private_len()]);
    getrandom::fill(&mut secret).map_err(|_| IdentityError::Random)?;
    PrivateKey::from_raw(alg, &secret).map_err(|_| IdentityError::NotSignatureAlgorithm(alg))
}

/// An Ed25519/Ed448 key from PKCS#8 DER (v0, or v1 as `openssl genpkey` may write).
fn key_from_pkcs8(der: &[u8]) -> Result<PrivateKey, IdentityError> {
    match PrivateKey::from_der(der) {
        Ok(key) if key.algorithm().is_signature() => Ok(key),
        _ => Err(IdentityError::UnsupportedKey),
    }
}

fn rustls_key(key: &PrivateKey) -> Result<Arc<dyn SigningKey>, IdentityError> {
    match key.algorithm() {
        KeyAlgorithm::Ed25519 => {
            let der = key.to_der();
            let pkcs8 = PrivatePkcs8KeyDer::from(der.as_slice());
            Ok(rustls::crypto::ring::sign::any_eddsa_type(&pkcs8)?)
        }
        KeyAlgorithm::Ed448 => Ok(Arc::new(
            Ed448SigningKey::new(key.clone()).ok_or(IdentityError::UnsupportedKey)?,
        )),
        _ => Err(IdentityError::UnsupportedKey),
    }
}

/// What a TLS server needs: the chain `[server.crt, ca.crt]` and the leaf key.
#[derive(Clone)]
pub struct ServerIdentity {
    certified: Arc<CertifiedKey>,
    fingerprint: KeyHash,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("fingerprint", &self.fingerprint_b64())
            .finish_non_exhaustive()
    }
}

/// PEM texts of a freshly generated identity, named as the reference's files.
pub struct GeneratedIdentity {
    pub ca_key: Zeroizing<String>,
    pub ca_crt: String,
    pub server_key: Zeroizing<String>,
    pub server_crt: String,
}

impl ServerIdentity {
    /// Builds an identity from PEM texts (as in `server.crt`, `ca.crt`, `server.key`).
    pub fn from_pem(
        server_crt: &[u8],
        ca_crt: &[u8],
        server_key: &[u8],
    ) -> Result<Self, IdentityError> {
        let leaf = CertificateDer::from_pem_slice(server_crt)
            .map_err(|_| IdentityError::Pem("server.crt".into()))?;
        let ca = CertificateDer::from_pem_slice(ca_crt)
            .map_err(|_| IdentityError::Pem("ca.crt".into()))?;
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(server_key)
            .map_err(|_| IdentityError::Pem("server.key".into()))?;
        let key = key_from_pkcs8(pkcs8.secret_pkcs8_der())?;
        let fingerprint = cert_fingerprint(&ca);
        let certified = CertifiedKey::new(vec![leaf, ca], rustls_key(&key)?);
        certified
            .keys_match()
            .map_err(|_| IdentityError::KeyMismatch)?;
        Ok(Self {
            certified: Arc::new(certified),
            fingerprint,
        })
    }

    /// Loads `server.crt`, `ca.crt` and `server.key` from a directory.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let read = |name: &str| {
            fs::read(dir.join(name)).map_err(|source| IdentityError::Io {
                file: name.into(),
                source,
            })
        };
        let key = Zeroizing::new(read("server.key")?);
        Self::from_pem(&read("server.crt")?, &read("ca.crt")?, &key)
    }

    /// Generates a CA + leaf like the reference's `init`; `cn` is the FQDN or IP.
    pub fn generate(
        alg: KeyAlgorithm,
        cn: &str,
    ) -> Result<(Self, GeneratedIdentity), IdentityError> {
        let ca_key = generate_key(alg)?;
        let server_key = generate_key(alg)?;
        let now = unix_now();
        let ca_pub = ca_key.public_key();
        let ca_ski = key_id(ca_pub.raw());
        let ca_name = name(&[(OID_CN, CA_CN), (OID_O, CA_O)]);
        let ca_exts = [
            extension(OID_SKI, false, &tlv(0x04, &ca_ski)),
            extension(OID_AKI, false, &tlv(0x30, &tlv(0x80, &ca_ski))),
            extension(OID_BASIC_CONSTRAINTS, true, &tlv(0x30, &tlv(0x01, &[0xff]))),
        ];
        let ca_der = certificate(&ca_key, &ca_name, &ca_name, &ca_pub, &ca_exts, now)?;

        let srv_pub = server_key.public_key();
        let srv_exts = [
            extension(OID_BASIC_CONSTRAINTS, false, &tlv(0x30, &[])),
            // digitalSignature, nonRepudiation, keyAgreement (bits 0, 1, 4).
            extension(OID_KEY_USAGE, false, &tlv(0x03, &[0x03, 0xc8])),
            extension(
                OID_EXT_KEY_USAGE,
                false,
                &tlv(0x30, &tlv(0x06, OID_SERVER_AUTH)),
            ),
            extension(OID_SKI, false, &tlv(0x04, &key_id(srv_pub.raw()))),
            extension(OID_AKI, false, &tlv(0x30, &tlv(0x80, &ca_ski))),
        ];
        let srv_name = name(&[(OID_CN, cn)]);
        let srv_der = certificate(&ca_key, &ca_name, &srv_name, &srv_pub, &srv_exts, now)?;

        let generated = GeneratedIdentity {
            ca_key: pem("PRIVATE KEY", &ca_key.to_der()),
            ca_crt: pem("CERTIFICATE", &ca_der).to_string(),
            server_key: pem("PRIVATE KEY", &server_key.to_der()),
            server_crt: pem("CERTIFICATE", &srv_der).to_string(),
        };
        let certified = CertifiedKey::new(
            vec![
                CertificateDer::from(srv_der),
                CertificateDer::from(ca_der.clone()),
            ],
            rustls_key(&server_key)?,
        );
        let identity = Self {
            certified: Arc::new(certified),
            fingerprint: cert_fingerprint(&ca_der),
        };
        Ok((identity, generated))
    }

    /// Generates an identity and writes the four files into `dir` (which must
    /// exist); refuses to overwrite existing files. Keys are created 0600.
    pub fn init(dir: &Path, alg: KeyAlgorithm, cn: &str) -> Result<Self, IdentityError> {
        let (identity, files) = Self::generate(alg, cn)?;
        write_new(dir, "ca.key", files.ca_key.as_bytes(), 0o600)?;
        write_new(dir, "ca.crt", files.ca_crt.as_bytes(), 0o644)?;
        write_new(dir, "server.key", files.server_key.as_bytes(), 0o600)?;
        write_new(dir, "server.crt", files.server_crt.as_bytes(), 0o644)?;
        Ok(identity)
    }

    /// The chain sent in TLS: `[server.crt, ca.crt]`.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// SHA-256 of `ca.crt` DER: the key hash in the server address.
    pub fn fingerprint(&self) -> KeyHash {
        self.fingerprint
    }

    /// The fingerprint as the reference prints it (padded base64url).
    pub fn fingerprint_b64(&self) -> String {
        b64_encode(&self.fingerprint)
    }

    /// The leaf (`server.key`) signer; the XFTP/SMP handshakes sign the
    /// session key with it.
    pub fn signing_key(&self) -> &Arc<dyn SigningKey> {
        &self.certified.key
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }
}

/// The reference's `loadFingerprint`: SHA-256 of the first certificate in `ca.crt`.
pub fn load_fingerprint(ca_crt: &Path) -> Result<KeyHash, IdentityError> {
    let text = fs::read(ca_crt).map_err(|source| IdentityError::Io {
        file: "ca.crt".into(),
        source,
    })?;
    let der =
        CertificateDer::from_pem_slice(&text).map_err(|_| IdentityError::Pem("ca.crt".into()))?;
    Ok(cert_fingerprint(&der))
}

fn write_new(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        file: name.into(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dir.join(name))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// RFC 7093 method 1: leftmost 160 bits of SHA-256 of the public key bits.
fn key_id(public_key: &[u8]) -> Vec<u8> {
    sha256(public_key)[..20].to_vec()
}

fn certificate(
    signer: &PrivateKey,
    issuer: &[u8],
    subject: &[u8],
    public_key: &PublicKey,
    extensions: &[Vec<u8>],
    now: i64,
) -> Result<Vec<u8>, IdentityError> {
    let alg_id = der::algorithm_identifier(signer.algorithm());
    let mut serial = [0u8; 20];
    getrandom::fill(&mut serial).map_err(|_| IdentityError::Random)?;
    // Positive and minimally encoded.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let validity = [der::time(now), der::time(now + VALIDITY_DAYS * 86_400)].concat();
    let tbs = tlv(
        0x30,
        &[
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &serial),
            alg_id,
            issuer.to_vec(),
            tlv(0x30, &validity),
            subject.to_vec(),
            public_key.to_der(),
            tlv(0xa3, &tlv(0x30, &extensions.concat())),
        ]
        .concat(),
    );
    sign_exact(tbs, signer).map_err(|_| IdentityError::NotSignatureAlgorithm(signer.algorithm()))
}

fn name(attrs: &[(&[u8], &str)]) -> Vec<u8> {
    let rdns: Vec<u8> = attrs
        .iter()
        .flat_map(|(oid, value)| {
            let atv = tlv(
                0x30,
                &[tlv(0x06, oid), tlv(0x0c, value.as_bytes())].concat(),
            );
            tlv(0x31, &atv)
        })
        .collect();
    tlv(0x30, &rdns)
}

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut body = tlv(0x06, oid);
    if critical {
        body.extend_from_slice(&tlv(0x01, &[0xff]));
    }
    body.extend_from_slice(&tlv(0x04, value));
    tlv(0x30, &body)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_roundtrip_and_rejections() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Ed448] {
            let key = generate_key(alg).unwrap();
            let back = key_from_pkcs8(&key.to_der()).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.raw(), key.raw());
            let der = key.to_der();
            assert!(key_from_pkcs8(&der[..der.len() - 1]).is_err());
        }
        assert!(key_from_pkcs8(&[]).is_err());
        assert!(key_from_pkcs8(&[0x30, 0x82, 0xff]).is_err());
    }

    #[test]
    fn only_signature_algorithms_make_identities() {
        for alg in [KeyAlgorithm::X25519, KeyAlgorithm::X448] {
            assert!(matches!(
                ServerIdentity::generate(alg, "localhost"),
                Err(IdentityError::NotSignatureAlgorithm(a)) if a == alg
            ));
        }
    }
}
