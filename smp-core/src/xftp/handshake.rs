//! The XFTP handshake: client hello, server handshake, client handshake,
//! the session key signed by the server certificate, certificate chains and
//! the browser (web) identity proof.
//!
//! ```text
//! serverHandshake = u16 min ‖ u16 max ‖ short(sessionId)
//!                   ‖ u8 n ‖ n × large(cert DER) ‖ large(signedKey DER)
//!                   ‖ short(proof)?  ‖ ignored tail
//! clientHandshake = u16 version ‖ short(keyHash) ‖ ignored tail
//! clientHello     = Maybe(short(challenge))   (web clients only, padded)
//! ```

use super::error::XftpErrorType;
use super::transmission::bare_error_word;
use crate::crypto::CryptoError;
use crate::crypto::cert::sign_exact;
pub use crate::crypto::cert::{certificate_public_key, certificate_spki};
use crate::crypto::der::{self, BIT_STRING, DerReader, SEQUENCE};
use crate::crypto::digest::sha256;
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey, Signature};
use crate::encoding::pad::{self, BLOCK_SIZE, PadError};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::string::String;
use alloc::vec::Vec;
use subtle::ConstantTimeEq;

/// Version 1: no handshake (no ALPN).
pub const INITIAL_VERSION: u16 = 1;
/// Version 2: handshake with a signed per-session X25519 key, enabling
/// crypto_box command authorization.
pub const AUTH_CMDS_VERSION: u16 = 2;
/// Version 3: `ERR BLOCKED` may be sent.
pub const BLOCKED_FILES_VERSION: u16 = 3;
pub const CURRENT_VERSION: u16 = 3;
/// The range both the reference server and client support.
pub const SUPPORTED_VERSIONS: VersionRange = VersionRange {
    min: INITIAL_VERSION,
    max: CURRENT_VERSION,
};
/// Length of the web hello challenge.
pub const CHALLENGE_SIZE: usize = 32;

/// Why a handshake message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("bad padding: {0}")]
    Pad(#[from] PadError),
    #[error("malformed handshake: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode handshake: {0}")]
    Encode(#[from] EncodeError),
    #[error("server handshake error: {word}")]
    ServerError {
        word: String,
        error: Option<XftpErrorType>,
    },
    #[error("invalid version range: min > max")]
    BadVersionRange,
    #[error("web challenge must be 32 bytes")]
    BadChallenge,
    #[error("invalid certificate: {0}")]
    Certificate(CryptoError),
    #[error("invalid signed session key: {0}")]
    SignedKey(CryptoError),
    #[error("handshake block must be exactly {BLOCK_SIZE} bytes")]
    BlockSize,
    #[error("session ID does not match the TLS session")]
    Session,
    #[error("no compatible protocol version")]
    Version,
    #[error("certificate chain has {0} certificates, expected 2")]
    ChainLength(usize),
    #[error("server identity does not match the key hash")]
    Identity,
    #[error("session key signature does not verify")]
    BadSignature,
    #[error("session key is not X25519")]
    NotX25519,
}

/// `VersionRange`: never empty (`min <= max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    min: u16,
    max: u16,
}

impl VersionRange {
    pub const fn new(min: u16, max: u16) -> Option<Self> {
        if min <= max {
            Some(Self { min, max })
        } else {
            None
        }
    }
    pub const fn min(&self) -> u16 {
        self.min
    }
    pub const fn max(&self) -> u16 {
        self.max
    }
    pub const fn contains(&self, v: u16) -> bool {
        self.min <= v && v <= self.max
    }
    /// `compatibleVRange`: the intersection, if any. The version to use is
    /// its `max`.
    pub fn compatible(&self, other: &VersionRange) -> Option<VersionRange> {
        Self::new(self.min.max(other.min), self.max.min(other.max))
    }
    pub fn write(&self, w: &mut Writer) {
        w.u16(self.min).u16(self.max);
    }
    pub fn read(r: &mut Reader<'_>) -> Result<Self, HandshakeError> {
        let (min, max) = (r.u16()?, r.u16()?);
        Self::new(min, max).ok_or(HandshakeError::BadVersionRange)
    }
}

fn unpad_handshake(block: &[u8]) -> Result<&[u8], HandshakeError> {
    if let Some(word) = bare_error_word(block) {
        return Err(HandshakeError::ServerError {
            word: String::from(word),
            error: XftpErrorType::decode(word.as_bytes()),
        });
    }
    Ok(pad::unpad(block)?)
}

/// The client hello. Native clients send an empty body; browsers send a
/// padded hello with a challenge the server signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientHello {
    pub web_challenge: Option<[u8; CHALLENGE_SIZE]>,
}

impl ClientHello {
    /// `smpEncode`: `Maybe(short(challenge))`.
    pub fn encode(&self) -> Vec<u8> {
        match &self.web_challenge {
            None => alloc::vec![b'0'],
            Some(c) => {
                let mut v = alloc::vec![b'1', CHALLENGE_SIZE as u8];
                v.extend_from_slice(c);
                v
            }
        }
    }
    /// The request body: empty for a native hello, padded for a web hello.
    pub fn encode_body(&self) -> Result<Vec<u8>, PadError> {
        match self.web_challenge {
            None => Ok(Vec::new()),
            Some(_) => pad::pad(&self.encode(), BLOCK_SIZE),
        }
    }
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(b);
        let c = r.maybe(|r| r.short())?;
        let web_challenge = match c {
            None => None,
            Some(c) => Some(c.try_into().map_err(|_| HandshakeError::BadChallenge)?),
        };
        Ok(Self { web_challenge })
    }
    /// Server side: an empty body is a native hello; otherwise unpad first.
    pub fn decode_body(body: &[u8]) -> Result<Self, HandshakeError> {
        if body.is_empty() {
            return Ok(Self::default());
        }
        Self::decode(pad::unpad(body)?)
    }
}

/// The server handshake, as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHandshake {
    pub version_range: VersionRange,
    pub session_id: Vec<u8>,
    /// DER certificates, leaf (online) first.
    pub cert_chain: Vec<Vec<u8>>,
    /// The session X25519 key signed by the leaf key ([`sign_session_key`]).
    pub signed_key: Vec<u8>,
    /// Answer to a web hello's challenge ([`sign_identity_proof`]).
    pub web_identity_proof: Option<Signature>,
}

impl ServerHandshake {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.version_range.write(&mut w);
        w.short(&self.session_id)?;
        w.non_empty(&self.cert_chain, |w, c| w.large(c).map(|_| ()))?;
        w.large(&self.signed_key)?;
        w.short(
            self.web_identity_proof
                .as_ref()
                .map_or(&[][..], |s| s.as_bytes()),
        )?;
        Ok(w.into_vec())
    }
    pub fn encode_block(&self) -> Result<Vec<u8>, HandshakeError> {
        Ok(pad::pad(&self.encode()?, BLOCK_SIZE)?)
    }

    /// Parses as the reference client does: certificates and the signed key
    /// must be well-formed; a proof field that is absent, empty or not a
    /// signature length is `None`; trailing bytes are ignored.
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(b);
        let version_range = VersionRange::read(&mut r)?;
        let session_id = r.short()?.to_vec();
        let cert_chain = r.non_empty(|r| r.large().map(<[u8]>::to_vec))?;
        for c in &cert_chain {
            certificate_spki(c).map_err(HandshakeError::Certificate)?;
        }
        let signed_key = r.large()?.to_vec();
        SignedKey::decode(&signed_key).map_err(HandshakeError::SignedKey)?;
        let web_identity_proof = r.short().ok().and_then(|s| Signature::from_bytes(s).ok());
        Ok(Self {
            version_range,
            session_id,
            cert_chain,
            signed_key,
            web_identity_proof,
        })
    }

    /// Client side: unpads (recognising bare error words) and parses.
    pub fn decode_block(block: &[u8]) -> Result<Self, HandshakeError> {
        Self::decode(unpad_handshake(block)?)
    }

    /// The native client's checks (`xftpClientHandshakeV1`): session ID
    /// equals our tls-unique, versions intersect, exactly two certificates
    /// with SHA-256(chain[1]) = `key_hash`, and the session key is an X25519
    /// key signed by the TLS leaf certificate's key. Returns the version to
    /// send (max of the intersection) and the server's session key.
    pub fn check(
        &self,
        tls_session_id: &[u8],
        tls_leaf_key: &PublicKey,
        key_hash: &[u8],
        client_range: &VersionRange,
    ) -> Result<(u16, PublicKey), HandshakeError> {
        if !bool::from(self.session_id.as_slice().ct_eq(tls_session_id)) {
            return Err(HandshakeError::Session);
        }
        let agreed = self
            .version_range
            .compatible(client_range)
            .ok_or(HandshakeError::Version)?;
        let [_, id] = self.cert_chain.as_slice() else {
            return Err(HandshakeError::ChainLength(self.cert_chain.len()));
        };
        if !bool::from(sha256(id).ct_eq(key_hash)) {
            return Err(HandshakeError::Identity);
        }
        let key = verify_session_key(&self.signed_key, tls_leaf_key)?;
        Ok((agreed.max(), key))
    }
}

/// The client handshake: the chosen version and the expected server identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHandshake {
    pub version: u16,
    pub key_hash: Vec<u8>,
}

impl ClientHandshake {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.u16(self.version).short(&self.key_hash)?;
        Ok(w.into_vec())
    }
    pub fn encode_block(&self) -> Result<Vec<u8>, HandshakeError> {
        Ok(pad::pad(&self.encode()?, BLOCK_SIZE)?)
    }
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(b);
        let version = r.u16()?;
        let key_hash = r.short()?.to_vec();
        Ok(Self { version, key_hash })
    }
    /// Server side: the body must be exactly one block (so a repeated empty
    /// hello fails).
    pub fn decode_block(block: &[u8]) -> Result<Self, HandshakeError> {
        if block.len() != BLOCK_SIZE {
            return Err(HandshakeError::BlockSize);
        }
        Self::decode(pad::unpad(block)?)
    }
    /// Server side: the key hash must be our identity (SHA-256 of the CA
    /// certificate) and the version inside our range. Returns the version.
    pub fn accept(
        &self,
        server_range: &VersionRange,
        identity: &[u8; 32],
    ) -> Result<u16, HandshakeError> {
        if !bool::from(self.key_hash.as_slice().ct_eq(identity)) {
            return Err(HandshakeError::Identity);
        }
        if !server_range.contains(self.version) {
            return Err(HandshakeError::Version);
        }
        Ok(self.version)
    }
}

/// The session key as x509 `SignedExact`:
/// `SEQUENCE { SEQUENCE { SPKI }, AlgorithmIdentifier, BIT STRING }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedKey<'a> {
    /// The signed bytes: the wrapper SEQUENCE around the SPKI.
    pub signed_object: &'a [u8],
    pub key: PublicKey,
    pub signature: Signature,
}

fn signature_oid_algorithm(alg_der: &[u8]) -> Result<KeyAlgorithm, CryptoError> {
    [KeyAlgorithm::Ed25519, KeyAlgorithm::Ed448]
        .into_iter()
        .find(|&a| der::algorithm_identifier(a) == alg_der)
        .ok_or(CryptoError::Der("unknown signature algorithm"))
}

impl<'a> SignedKey<'a> {
    /// Accepts only the wrapped form the reference writes and can read.
    pub fn decode(signed: &'a [u8]) -> Result<Self, CryptoError> {
        let mut outer = DerReader::new(signed);
        let mut s = DerReader::new(outer.expect(SEQUENCE)?);
        outer.finish()?;
        let (tag, wrapper, signed_object) = s.element()?;
        if tag != SEQUENCE {
            return Err(CryptoError::Der("signed object is not a SEQUENCE"));
        }
        let mut w = DerReader::new(wrapper);
        let (tag, _, spki) = w.element()?;
        w.finish()?;
        if tag != SEQUENCE {
            return Err(CryptoError::Der("signed object is not a wrapped key"));
        }
        let key = PublicKey::from_der(spki)?;
        let (tag, _, alg_der) = s.element()?;
        if tag != SEQUENCE {
            return Err(CryptoError::Der("expected an AlgorithmIdentifier"));
        }
        let alg = signature_oid_algorithm(alg_der)?;
        let bits = s.expect(BIT_STRING)?;
        s.finish()?;
        let sig = match bits.split_first() {
            Some((0, sig)) => Signature::from_bytes(sig)?,
            _ => return Err(CryptoError::Der("bad BIT STRING")),
        };
        let sig_alg = match sig {
            Signature::Ed25519(_) => KeyAlgorithm::Ed25519,
            Signature::Ed448(_) => KeyAlgorithm::Ed448,
        };
        if sig_alg != alg {
            return Err(CryptoError::BadSignatureLength(sig.as_bytes().len()));
        }
        Ok(Self {
            signed_object,
            key,
            signature: sig,
        })
    }
    /// Whether `signer` (the certificate's key) signed this key.
    pub fn verify(&self, signer: &PublicKey) -> bool {
        signer.verify(self.signed_object, &self.signature)
    }
}

/// `signX509` of a public key: what the server puts in its handshake.
pub fn sign_session_key(key: &PublicKey, signer: &PrivateKey) -> Result<Vec<u8>, CryptoError> {
    sign_exact(der::tlv(SEQUENCE, &key.to_der()), signer)
}

/// Decodes a signed session key, checks it against the certificate key and
/// requires X25519.
pub fn verify_session_key(signed: &[u8], signer: &PublicKey) -> Result<PublicKey, HandshakeError> {
    let sk = SignedKey::decode(signed).map_err(HandshakeError::SignedKey)?;
    if !sk.verify(signer) {
        return Err(HandshakeError::BadSignature);
    }
    if sk.key.algorithm() != KeyAlgorithm::X25519 {
        return Err(HandshakeError::NotX25519);
    }
    Ok(sk.key)
}

/// `chainIdCaCerts`: roles of the certificates in a chain. The server
/// identity (key hash) is the certificate at index 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainCertificates<'a> {
    Empty,
    SelfSigned(&'a [u8]),
    Valid {
        leaf: &'a [u8],
        id: &'a [u8],
        ca: &'a [u8],
    },
    Long,
}

pub fn chain_id_ca_certs<C: AsRef<[u8]>>(chain: &[C]) -> ChainCertificates<'_> {
    match chain {
        [] => ChainCertificates::Empty,
        [c] => ChainCertificates::SelfSigned(c.as_ref()),
        [leaf, id] => ChainCertificates::Valid {
            leaf: leaf.as_ref(),
            id: id.as_ref(),
            ca: id.as_ref(),
        },
        [leaf, id, ca] | [leaf, id, _, ca] => ChainCertificates::Valid {
            leaf: leaf.as_ref(),
            id: id.as_ref(),
            ca: ca.as_ref(),
        },
        _ => ChainCertificates::Long,
    }
}

/// The bytes of the web identity proof: `challenge ‖ sessionId`.
pub fn identity_proof_message(challenge: &[u8], session_id: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(challenge.len() + session_id.len());
    m.extend_from_slice(challenge);
    m.extend_from_slice(session_id);
    m
}

/// The server's answer to a web hello, signed with its XFTP (online) key.
pub fn sign_identity_proof(
    server_key: &PrivateKey,
    challenge: &[u8; CHALLENGE_SIZE],
    session_id: &[u8],
) -> Result<Signature, CryptoError> {
    server_key.sign(&identity_proof_message(challenge, session_id))
}

/// The browser client's check (xftp-web `verifyIdentityProof`), for
/// clients that cannot see the TLS session: a 2–4 certificate chain whose
/// identity certificate hashes to `key_hash`, and a proof and session key
/// both signed by the leaf certificate's key.
pub fn verify_identity_proof(hs: &ServerHandshake, challenge: &[u8], key_hash: &[u8]) -> bool {
    let ChainCertificates::Valid { leaf, id, .. } = chain_id_ca_certs(&hs.cert_chain) else {
        return false;
    };
    if !bool::from(sha256(id).ct_eq(key_hash)) {
        return false;
    }
    let Ok(leaf_key) = certificate_public_key(leaf) else {
        return false;
    };
    let Some(proof) = &hs.web_identity_proof else {
        return false;
    };
    leaf_key.verify(&identity_proof_message(challenge, &hs.session_id), proof)
        && SignedKey::decode(&hs.signed_key).is_ok_and(|k| k.verify(&leaf_key))
}
