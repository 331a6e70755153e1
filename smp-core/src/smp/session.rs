//! A client's SMP session without IO: the hello exchange on top of an
//! established TLS connection, then batches of transmissions sealed into
//! 16384-byte blocks and blocks opened into responses. The tokio client and
//! the device's OS-free loop both run it; only how bytes move differs.

use alloc::vec::Vec;

use zeroize::Zeroizing;

use super::Command;
use super::block_crypto::{BlockCipher, BlockCryptoError};
use super::error::{ErrorType, TransportError};
use super::handshake::{ClientHello, HandshakeError, ServerHello, certificate_public_key};
use super::transmission::{
    ClientAuth, ResponseTransmission, TransmissionError, batch_transmissions,
    decode_response_transmission, encode_command_transmission, parse_batch,
};
use super::version::{self, Version, VersionRange};
use crate::crypto::keys::{PrivateKey, PublicKey};
use crate::encoding::pad::{self, BLOCK_SIZE};

/// What the client brings to the hello exchange.
#[derive(Debug)]
pub struct ClientParams<'a> {
    /// The router's identity fingerprint from its address.
    pub key_hash: &'a [u8; 32],
    pub versions: VersionRange,
    /// Our X25519 session key (v ≥ 7): it turns on block encryption.
    pub session_key: Option<PrivateKey>,
    /// This client is a proxy forwarding for others (private routing).
    pub proxy_server: bool,
}

/// The outcome of the router's hello: the block to answer with and the
/// session parameters both sides now share.
#[derive(Debug)]
pub struct Agreed {
    pub version: Version,
    pub hello: ServerHello,
    /// The router's session key, signed by its TLS leaf.
    pub server_key: Option<PublicKey>,
    /// X25519(our session key, the router's), when both were sent.
    pub session_secret: Option<Zeroizing<[u8; 32]>>,
    /// Both block chains, when the session encrypts its blocks.
    pub cipher: Option<BlockCipher>,
    /// Our hello, padded to a block: send it before anything else.
    pub reply: Vec<u8>,
}

/// A proxy talking to a relay older than v14 stays at ≤ 10, where the relay
/// cannot know it is a proxy (`smpClientHandshake`).
fn client_range(ours: VersionRange, proxy_server: bool, server: &VersionRange) -> VersionRange {
    if proxy_server && server.max() < version::PROXY_SERVER_HANDSHAKE_VERSION {
        let max = ours.max().min(10).max(ours.min());
        VersionRange::new(ours.min(), max).unwrap_or(ours)
    } else {
        ours
    }
}

/// Checks the router's hello against our TLS session (tls-unique, the
/// pinned identity, the leaf that signed its session key) and builds ours.
pub fn agree(
    server_hello_block: &[u8],
    tls_session_id: &[u8],
    tls_leaf_der: &[u8],
    params: ClientParams<'_>,
) -> Result<Agreed, HandshakeError> {
    let leaf_key = certificate_public_key(tls_leaf_der).map_err(HandshakeError::Certificate)?;
    let hello = ServerHello::decode_block(server_hello_block)?;
    let range = client_range(params.versions, params.proxy_server, &hello.versions);
    let (v, server_key) = hello.check(tls_session_id, &range, params.key_hash, &leaf_key)?;
    let client_hello = ClientHello {
        version: v,
        key_hash: params.key_hash.to_vec(),
        auth_pub_key: params.session_key.as_ref().map(PrivateKey::public_key),
        proxy_server: params.proxy_server,
        client_service: None,
    };
    let reply = client_hello.encode_block()?;
    // The hello carries our key only from v7; the router then shares this.
    let session_secret = match (&params.session_key, &server_key) {
        (Some(own), Some(server)) if version::has_auth_keys(v) => Some(Zeroizing::new(
            *own.dh(server).map_err(HandshakeError::SessionKey)?,
        )),
        _ => None,
    };
    let cipher = if client_hello.block_encryption() {
        // Without the router's key there is nothing to agree on.
        let secret = session_secret
            .as_ref()
            .ok_or(HandshakeError::Transport(TransportError::NoAuth))?;
        Some(BlockCipher::client(tls_session_id, secret))
    } else {
        None
    };
    Ok(Agreed {
        version: v,
        hello,
        server_key,
        session_secret,
        cipher,
        reply,
    })
}

/// Why a batch could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("transmission: {0}")]
    Transmission(#[from] TransmissionError),
    #[error("block: {0}")]
    Block(#[from] BlockCryptoError),
    #[error("content does not fit a block")]
    TooLarge,
}

/// The session after the hello exchange.
#[derive(Debug)]
pub struct ClientSession {
    version: Version,
    session_id: Vec<u8>,
    cipher: Option<BlockCipher>,
}

impl ClientSession {
    /// From the agreement, once its reply is on its way (the reply's
    /// block is freed here).
    pub fn new(tls_session_id: &[u8], agreed: Agreed) -> Self {
        Self {
            version: agreed.version,
            session_id: tls_session_id.to_vec(),
            cipher: agreed.cipher,
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn session_id(&self) -> &[u8] {
        &self.session_id
    }

    /// One command transmission, authorized with `auth` when given.
    pub fn command(
        &self,
        corr_id: &[u8],
        entity_id: &[u8],
        command: &Command,
        auth: Option<ClientAuth<'_>>,
    ) -> Result<Vec<u8>, TransmissionError> {
        encode_command_transmission(
            self.version,
            &self.session_id,
            corr_id,
            entity_id,
            command,
            auth,
        )
    }

    /// Transmissions packed into as few blocks as fit, each padded or
    /// encrypted (which advances the sending chain: send them all, in order).
    pub fn seal<T: AsRef<[u8]>>(&mut self, transmissions: &[T]) -> Result<Vec<Vec<u8>>, SealError> {
        batch_transmissions(transmissions)?
            .iter()
            .map(|content| match &mut self.cipher {
                Some(c) => Ok(c.encrypt_block(content)?),
                None => pad::pad(content, BLOCK_SIZE).map_err(|_| SealError::TooLarge),
            })
            .collect()
    }

    /// The responses and events in one block from the router. A block that
    /// does not open is `ErrorType::Block` (the chain has still advanced,
    /// and the session goes on).
    pub fn open(&mut self, block: &[u8]) -> Result<Vec<ResponseTransmission>, ErrorType> {
        let content = match &mut self.cipher {
            Some(c) => c.decrypt_block(block).map_err(|_| ErrorType::Block)?,
            None => pad::unpad(block)
                .map(<[u8]>::to_vec)
                .map_err(|_| ErrorType::Block)?,
        };
        parse_batch(&content)?
            .into_iter()
            .map(|t| decode_response_transmission(t, self.version, &self.session_id))
            .collect()
    }
}
