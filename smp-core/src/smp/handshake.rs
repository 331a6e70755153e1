//! The SMP handshake: server hello, client hello (fields by version), the
//! optional third block answering a service client, and version negotiation.
//!
//! ```text
//! server hello  = range ‖ short(sessionId) ‖ [CertChainPubKey]     key iff max ≥ 7
//! client hello  = u16 v ‖ short(keyHash) ‖ [short(X25519 key)]    v ≥ 7, no Maybe tag
//!                 ‖ proxyServer:Bool (v ≥ 14) ‖ Maybe clientService (v ≥ 16)
//! service reply = 'R' short(serviceId) | 'E' TransportError
//! ```
//! Handshake blocks are padded, never batched nor block-encrypted, and the
//! parsers ignore trailing bytes (the reference uses `parseOnly`).

use super::error::{HandshakeErrorKind, TransportError};
use super::version::{self, Version, VersionRange};
use crate::crypto::CryptoError;
use crate::crypto::digest::sha256;
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::encoding::pad::{self, BLOCK_SIZE, PadError};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::vec::Vec;
use subtle::ConstantTimeEq;

pub use crate::xftp::handshake::{
    ChainCertificates, SignedKey, certificate_public_key, chain_id_ca_certs, sign_session_key,
    verify_session_key,
};

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("bad padding: {0}")]
    Pad(#[from] PadError),
    #[error("malformed handshake: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode handshake: {0}")]
    Encode(#[from] EncodeError),
    #[error("handshake block must be exactly {BLOCK_SIZE} bytes")]
    BlockSize,
    #[error("transport error: {0}")]
    Transport(TransportError),
    #[error("certificate: {0}")]
    Certificate(CryptoError),
    #[error("session key: {0}")]
    SessionKey(CryptoError),
}

impl HandshakeError {
    /// The `TransportError` the reference reports for it.
    pub fn transport_error(&self) -> TransportError {
        match self {
            Self::Transport(t) => *t,
            _ => TransportError::Handshake(HandshakeErrorKind::Parse),
        }
    }
}

fn terr(t: TransportError) -> HandshakeError {
    HandshakeError::Transport(t)
}

pub(crate) fn read_range(r: &mut Reader<'_>) -> Result<VersionRange, DecodeError> {
    let (min, max) = (r.u16()?, r.u16()?);
    VersionRange::new(min, max).ok_or(DecodeError::Invalid("version range min > max"))
}

/// A certificate chain with a key signed by its leaf (`CertChainPubKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertChainPubKey {
    /// DER certificates, leaf first.
    pub cert_chain: Vec<Vec<u8>>,
    /// DER `SignedExact` of the key ([`sign_session_key`]).
    pub signed_pub_key: Vec<u8>,
}

impl CertChainPubKey {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.non_empty(&self.cert_chain, |w, c| w.large(c).map(|_| ()))?;
        w.large(&self.signed_pub_key)?;
        Ok(())
    }
    /// Certificates and the signed key must be well-formed DER.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let cert_chain = r.non_empty(|r| r.large().map(<[u8]>::to_vec))?;
        for c in &cert_chain {
            crate::crypto::cert::certificate_spki(c)
                .map_err(|_| DecodeError::Invalid("certificate"))?;
        }
        let signed_pub_key = r.large()?.to_vec();
        SignedKey::decode(&signed_pub_key).map_err(|_| DecodeError::Invalid("signed key"))?;
        Ok(Self {
            cert_chain,
            signed_pub_key,
        })
    }

    /// The client's checks (`smpClientHandshake`, `connectSMPProxiedRelay`):
    /// a 2–4 certificate chain whose identity certificate hashes to
    /// `key_hash`, and a key signed by `leaf_key` (the TLS-presented leaf, or
    /// the chain's own leaf for a relay reached through a proxy). Returns the
    /// signed key, which must be `expected` algorithm.
    pub fn verify(
        &self,
        key_hash: &[u8],
        leaf_key: Option<&PublicKey>,
        expected: KeyAlgorithm,
    ) -> Result<PublicKey, HandshakeError> {
        let ChainCertificates::Valid { leaf, id, .. } = chain_id_ca_certs(&self.cert_chain) else {
            return Err(terr(TransportError::Handshake(HandshakeErrorKind::BadAuth)));
        };
        if !bool::from(sha256(id).ct_eq(key_hash)) {
            return Err(terr(TransportError::Handshake(
                HandshakeErrorKind::Identity,
            )));
        }
        let own_leaf;
        let signer = match leaf_key {
            Some(k) => k,
            None => {
                own_leaf = certificate_public_key(leaf).map_err(HandshakeError::Certificate)?;
                &own_leaf
            }
        };
        let sk = SignedKey::decode(&self.signed_pub_key).map_err(HandshakeError::Certificate)?;
        if !sk.verify(signer) || sk.key.algorithm() != expected {
            return Err(terr(TransportError::Handshake(HandshakeErrorKind::BadAuth)));
        }
        Ok(sk.key)
    }
}

/// The server hello (`SMPServerHandshake`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub versions: VersionRange,
    pub session_id: Vec<u8>,
    /// Sent iff the offered max is ≥ 7.
    pub auth_pub_key: Option<CertChainPubKey>,
}

impl ServerHello {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.versions.write(&mut w);
        w.short(&self.session_id)?;
        if let Some(k) = &self.auth_pub_key {
            k.write(&mut w)?;
        }
        Ok(w.into_vec())
    }
    pub fn encode_block(&self) -> Result<Vec<u8>, HandshakeError> {
        Ok(pad::pad(&self.encode()?, BLOCK_SIZE)?)
    }
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(b);
        let versions = read_range(&mut r)?;
        let session_id = r.short()?.to_vec();
        let auth_pub_key = if version::has_auth_keys(versions.max()) {
            let mut probe = r.clone();
            CertChainPubKey::read(&mut probe).ok()
        } else {
            None
        };
        Ok(Self {
            versions,
            session_id,
            auth_pub_key,
        })
    }
    pub fn decode_block(block: &[u8]) -> Result<Self, HandshakeError> {
        Self::decode(pad::unpad(block)?)
    }

    /// The client side of negotiation: session ID equals our tls-unique,
    /// the ranges intersect (we send its max), and, if the server sent a key,
    /// it is an X25519 key signed by the TLS leaf under the pinned identity.
    /// Returns the version and the server's session key.
    pub fn check(
        &self,
        tls_session_id: &[u8],
        client_range: &VersionRange,
        key_hash: &[u8],
        tls_leaf_key: &PublicKey,
    ) -> Result<(Version, Option<PublicKey>), HandshakeError> {
        if !bool::from(self.session_id.as_slice().ct_eq(tls_session_id)) {
            return Err(terr(TransportError::Session));
        }
        let v = negotiate(&self.versions, client_range).ok_or(terr(TransportError::Version))?;
        let key = match &self.auth_pub_key {
            Some(k) => Some(k.verify(key_hash, Some(tls_leaf_key), KeyAlgorithm::X25519)?),
            None => None,
        };
        Ok((v, key))
    }
}

/// `compatibleVRange` then `max`: the version a client picks.
pub fn negotiate(server: &VersionRange, client: &VersionRange) -> Option<Version> {
    server.compatible(client).map(|r| r.max())
}

/// The role of a service client (`SMPServiceRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceRole {
    Messaging,
    Notifier,
    Proxy,
}

impl ServiceRole {
    pub const fn byte(self) -> u8 {
        match self {
            Self::Messaging => b'M',
            Self::Notifier => b'N',
            Self::Proxy => b'P',
        }
    }
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'M' => Some(Self::Messaging),
            b'N' => Some(Self::Notifier),
            b'P' => Some(Self::Proxy),
            _ => None,
        }
    }
}

/// `clientService` of the client hello: role and a signed Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientService {
    pub role: ServiceRole,
    pub key: CertChainPubKey,
}

/// The client hello (`SMPClientHandshake`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub version: Version,
    pub key_hash: Vec<u8>,
    /// The client's X25519 session key; written only from v7.
    pub auth_pub_key: Option<PublicKey>,
    /// Written only from v14.
    pub proxy_server: bool,
    /// Written only from v16.
    pub client_service: Option<ClientService>,
}

impl ClientHello {
    /// Fields the version does not have are left out, as the reference does.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let v = self.version;
        let mut w = Writer::new();
        w.u16(v).short(&self.key_hash)?;
        if let (true, Some(k)) = (version::has_auth_keys(v), &self.auth_pub_key) {
            w.short(&k.to_der())?;
        }
        if version::has_proxy_flag(v) {
            w.bool(self.proxy_server);
        }
        if version::has_client_service(v) {
            w.maybe(self.client_service.as_ref(), |w, s| {
                w.u8(s.role.byte());
                s.key.write(w)
            })?;
        }
        Ok(w.into_vec())
    }
    pub fn encode_block(&self) -> Result<Vec<u8>, HandshakeError> {
        Ok(pad::pad(&self.encode()?, BLOCK_SIZE)?)
    }

    /// Parses what the version in the first two bytes requires; the key is
    /// tried and backtracked, trailing bytes are ignored.
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(b);
        let version = r.u16()?;
        let key_hash = r.short()?.to_vec();
        let mut auth_pub_key = None;
        if version::has_auth_keys(version) {
            let mut probe = r.clone();
            if let Ok(k) = probe
                .short()
                .map_err(|_| ())
                .and_then(|d| PublicKey::from_der_as(KeyAlgorithm::X25519, d).map_err(|_| ()))
            {
                auth_pub_key = Some(k);
                r = probe;
            }
        }
        let proxy_server = if version::has_proxy_flag(version) {
            r.bool()?
        } else {
            false
        };
        let client_service = if version::has_client_service(version) {
            r.maybe(|r| {
                let role =
                    ServiceRole::from_byte(r.u8()?).ok_or(DecodeError::Invalid("service role"))?;
                Ok(ClientService {
                    role,
                    key: CertChainPubKey::read(r)?,
                })
            })?
        } else {
            None
        };
        Ok(Self {
            version,
            key_hash,
            auth_pub_key,
            proxy_server,
            client_service,
        })
    }

    /// Server side: exactly one block.
    pub fn decode_block(block: &[u8]) -> Result<Self, HandshakeError> {
        if block.len() != BLOCK_SIZE {
            return Err(HandshakeError::BlockSize);
        }
        Self::decode(pad::unpad(block)?)
    }

    /// Server side (`smpServerHandshake`): identity, then version. Any failure
    /// closes the connection without a reply.
    pub fn accept(
        &self,
        offered: &VersionRange,
        identity: &[u8; 32],
    ) -> Result<Version, HandshakeError> {
        if !bool::from(self.key_hash.as_slice().ct_eq(identity)) {
            return Err(terr(TransportError::Handshake(
                HandshakeErrorKind::Identity,
            )));
        }
        if !offered.contains(self.version) {
            return Err(terr(TransportError::Version));
        }
        Ok(self.version)
    }

    /// Whether the session that follows encrypts its blocks.
    pub fn block_encryption(&self) -> bool {
        version::block_encryption(self.version, self.auth_pub_key.is_some(), self.proxy_server)
    }
}

/// The third block, sent only to a client that presented `clientService`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHandshakeResponse {
    Service(Vec<u8>),
    Error(TransportError),
}

impl ServerHandshakeResponse {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        match self {
            Self::Service(id) => {
                w.u8(b'R').short(id)?;
            }
            Self::Error(e) => {
                w.u8(b'E');
                e.write(&mut w);
            }
        }
        Ok(w.into_vec())
    }
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader::new(b);
        match r.u8()? {
            b'R' => Ok(Self::Service(r.short()?.to_vec())),
            b'E' => Ok(Self::Error(TransportError::read(&mut r)?)),
            _ => Err(DecodeError::Invalid("service handshake response").into()),
        }
    }
}
