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
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::ed448::{ED448_KEY_LEN, Ed448SigningKey};
use super::verifier::{KeyHash, cert_fingerprint};
use crate::encoding::string::b64_encode;

/// Validity the reference's `init` asks OpenSSL for.
const VALIDITY_DAYS: i64 = 999_999;
const CA_CN: &str = "SMP server CA";
const CA_O: &str = "SimpleX";

const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];
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
    #[error("private key does not match the server certificate")]
    KeyMismatch,
    #[error("operating system randomness failed")]
    Random,
    #[error("rustls rejected the key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Signature algorithm of generated keys (reference `--sign-algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ed25519,
    Ed448,
}

impl KeyAlgorithm {
    fn oid(self) -> &'static [u8] {
        match self {
            Self::Ed25519 => OID_ED25519,
            Self::Ed448 => OID_ED448,
        }
    }

    fn secret_len(self) -> usize {
        match self {
            Self::Ed25519 => 32,
            Self::Ed448 => ED448_KEY_LEN,
        }
    }
}

/// A raw Ed25519/Ed448 secret; wiped on drop.
struct RawKey {
    alg: KeyAlgorithm,
    secret: Zeroizing<Vec<u8>>,
}

impl RawKey {
    fn generate(alg: KeyAlgorithm) -> Result<Self, IdentityError> {
        let mut secret = Zeroizing::new(vec![0u8; alg.secret_len()]);
        getrandom::fill(&mut secret).map_err(|_| IdentityError::Random)?;
        Ok(Self { alg, secret })
    }

    fn public_key(&self) -> Vec<u8> {
        match self.alg {
            KeyAlgorithm::Ed25519 => self.ed25519().verifying_key().to_bytes().to_vec(),
            KeyAlgorithm::Ed448 => self.ed448().public_key().to_vec(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self.alg {
            KeyAlgorithm::Ed25519 => {
                use ed25519_dalek::Signer;
                self.ed25519().sign(msg).to_bytes().to_vec()
            }
            KeyAlgorithm::Ed448 => self.ed448().sign(msg).to_vec(),
        }
    }

    fn ed25519(&self) -> ed25519_dalek::SigningKey {
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&self.secret);
        ed25519_dalek::SigningKey::from_bytes(&bytes)
    }

    fn ed448(&self) -> Ed448SigningKey {
        // Length is fixed by construction/parsing.
        Ed448SigningKey::from_secret(&self.secret).unwrap_or_else(|| unreachable!())
    }

    /// PKCS#8 v1 `PrivateKeyInfo`, the form `openssl genpkey` writes.
    fn to_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        let inner = Zeroizing::new(tlv(0x04, &self.secret));
        let alg = tlv(0x30, &tlv(0x06, self.alg.oid()));
        let mut body = Zeroizing::new(tlv(0x02, &[0]));
        body.extend_from_slice(&alg);
        body.extend_from_slice(&tlv(0x04, &inner));
        Zeroizing::new(tlv(0x30, &body))
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, IdentityError> {
        let bad = || IdentityError::UnsupportedKey;
        let (tag, body, _) = read_tlv(der).ok_or_else(bad)?;
        if tag != 0x30 {
            return Err(bad());
        }
        let (tag, version, rest) = read_tlv(body).ok_or_else(bad)?;
        if tag != 0x02 || !(version == [0] || version == [1]) {
            return Err(bad());
        }
        let (tag, alg_seq, rest) = read_tlv(rest).ok_or_else(bad)?;
        let (oid_tag, oid, params) = read_tlv(alg_seq).ok_or_else(bad)?;
        if tag != 0x30 || oid_tag != 0x06 || !params.is_empty() {
            return Err(bad());
        }
        let alg = match oid {
            OID_ED25519 => KeyAlgorithm::Ed25519,
            OID_ED448 => KeyAlgorithm::Ed448,
            _ => return Err(bad()),
        };
        let (tag, outer, _) = read_tlv(rest).ok_or_else(bad)?;
        let (inner_tag, secret, trailing) = read_tlv(outer).ok_or_else(bad)?;
        if tag != 0x04
            || inner_tag != 0x04
            || !trailing.is_empty()
            || secret.len() != alg.secret_len()
        {
            return Err(bad());
        }
        Ok(Self {
            alg,
            secret: Zeroizing::new(secret.to_vec()),
        })
    }

    fn rustls_key(&self) -> Result<Arc<dyn SigningKey>, IdentityError> {
        match self.alg {
            KeyAlgorithm::Ed25519 => {
                let der = self.to_pkcs8();
                let pkcs8 = PrivatePkcs8KeyDer::from(der.as_slice());
                Ok(rustls::crypto::ring::sign::any_eddsa_type(&pkcs8)?)
            }
            KeyAlgorithm::Ed448 => Ok(Arc::new(self.ed448())),
        }
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
        let raw = RawKey::from_pkcs8(pkcs8.secret_pkcs8_der())?;
        let fingerprint = cert_fingerprint(&ca);
        let certified = CertifiedKey::new(vec![leaf, ca], raw.rustls_key()?);
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
        let ca_key = RawKey::generate(alg)?;
        let server_key = RawKey::generate(alg)?;
        let now = unix_now();
        let ca_pub = ca_key.public_key();
        let ca_ski = key_id(&ca_pub);
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
            extension(OID_SKI, false, &tlv(0x04, &key_id(&srv_pub))),
            extension(OID_AKI, false, &tlv(0x30, &tlv(0x80, &ca_ski))),
        ];
        let srv_name = name(&[(OID_CN, cn)]);
        let srv_der = certificate(&ca_key, &ca_name, &srv_name, &srv_pub, &srv_exts, now)?;

        let generated = GeneratedIdentity {
            ca_key: pem("PRIVATE KEY", &ca_key.to_pkcs8()),
            ca_crt: pem("CERTIFICATE", &ca_der).to_string(),
            server_key: pem("PRIVATE KEY", &server_key.to_pkcs8()),
            server_crt: pem("CERTIFICATE", &srv_der).to_string(),
        };
        let certified = CertifiedKey::new(
            vec![
                CertificateDer::from(srv_der),
                CertificateDer::from(ca_der.clone()),
            ],
            server_key.rustls_key()?,
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
    Sha256::digest(public_key)[..20].to_vec()
}

fn certificate(
    signer: &RawKey,
    issuer: &[u8],
    subject: &[u8],
    public_key: &[u8],
    extensions: &[Vec<u8>],
    now: i64,
) -> Result<Vec<u8>, IdentityError> {
    let alg_id = tlv(0x30, &tlv(0x06, signer.alg.oid()));
    let mut serial = [0u8; 20];
    getrandom::fill(&mut serial).map_err(|_| IdentityError::Random)?;
    // Positive and minimally encoded.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let validity = [time(now), time(now + VALIDITY_DAYS * 86_400)].concat();
    let spki = [alg_id.clone(), bit_string(public_key)].concat();
    let tbs = tlv(
        0x30,
        &[
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &serial),
            alg_id.clone(),
            issuer.to_vec(),
            tlv(0x30, &validity),
            subject.to_vec(),
            tlv(0x30, &spki),
            tlv(0xa3, &tlv(0x30, &extensions.concat())),
        ]
        .concat(),
    );
    let signature = signer.sign(&tbs);
    Ok(tlv(0x30, &[tbs, alg_id, bit_string(&signature)].concat()))
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

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], bytes].concat())
}

/// UTCTime up to 2049, GeneralizedTime after (RFC 5280 §4.1.2.5).
fn time(unix: i64) -> Vec<u8> {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let hms = format!("{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60);
    if (1950..2050).contains(&y) {
        tlv(0x17, format!("{:02}{m:02}{d:02}{hms}", y % 100).as_bytes())
    } else {
        tlv(0x18, format!("{y:04}{m:02}{d:02}{hms}").as_bytes())
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
        .unwrap_or(0)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 4);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        // Certificates here are far below 64 KiB.
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// One DER TLV with a short or 1–2 byte long length: (tag, content, rest).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = match l0 {
        0..=0x7f => (usize::from(l0), rest),
        0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x82 => (
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    let content = rest.get(..len)?;
    Some((tag, content, &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_000), (2022, 1, 8));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(time(0), tlv(0x17, b"700101000000Z"));
        assert_eq!(time(2_524_608_000), tlv(0x18, b"20500101000000Z"));
    }

    #[test]
    fn pkcs8_roundtrip_and_rejections() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Ed448] {
            let key = RawKey::generate(alg).unwrap();
            let back = RawKey::from_pkcs8(&key.to_pkcs8()).unwrap();
            assert_eq!(back.alg, alg);
            assert_eq!(*back.secret, *key.secret);
            let der = key.to_pkcs8();
            assert!(RawKey::from_pkcs8(&der[..der.len() - 1]).is_err());
        }
        assert!(RawKey::from_pkcs8(&[]).is_err());
        assert!(RawKey::from_pkcs8(&[0x30, 0x82, 0xff]).is_err());
    }
}
