//! SMP client errors, grouped so that callers can tell network trouble
//! (retry, reconnect) from the server's answers (final).

use std::io;

use crate::crypto::CryptoError;
use crate::smp::error::{ErrorType, ProxyError, TransportError};
use crate::smp::handshake::HandshakeError;
use crate::smp::transmission::TransmissionError;
use crate::tls::{PinError, TlsError};

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// TCP and TLS setup.
    Connect,
    /// The SMP hello exchange.
    Handshake,
    /// A command up to its response.
    Request,
}

/// Everything an SMP client operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SmpClientError {
    /// The address cannot be dialled (key hash not SHA-256, onion host).
    #[error("unusable server address: {0}")]
    Address(&'static str),
    #[error("TCP connection failed: {0}")]
    Connect(#[source] io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("timeout: {0:?}")]
    Timeout(TimeoutKind),
    /// The SMP handshake failed (bad session, identity, version, signature).
    #[error("SMP handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A transport-level failure after the handshake (e.g. `LARGE_MSG`).
    #[error("{0}")]
    Transport(TransportError),
    /// The server answered `ERR` (other than `ERR PROXY`).
    #[error("server error: {0}")]
    Protocol(ErrorType),
    /// The proxy answered `ERR PROXY …`: it could not reach or use the relay.
    #[error("proxy error: {}", ErrorType::Proxy(Box::new(.0.clone())))]
    Proxy(ProxyError),
    /// The relay's answer to a forwarded command was `ERR` (e.g. `AUTH`).
    #[error("relay error: {0}")]
    Relay(ErrorType),
    /// The relay chain or key in `PKEY` failed validation.
    #[error("relay identity: {0}")]
    RelayIdentity(HandshakeError),
    /// No version in common with the relay reached through the proxy.
    #[error("no common version with the relay")]
    RelayVersion,
    /// The forwarded response could not be decrypted or parsed.
    #[error("bad forwarded response")]
    BadForwardedResponse,
    /// A response that does not parse or breaks its own rules (`tDecodeClient`).
    #[error("bad response: {0}")]
    BadResponse(ErrorType),
    /// A well-formed response that does not answer this command (or a
    /// reply for another entity).
    #[error("unexpected response {0}")]
    UnexpectedResponse(&'static str),
    /// The connection closed before or while the request was waiting.
    #[error("connection closed")]
    Closed,
    /// An X25519 key needs the server's session key, which it did not send.
    #[error("the server sent no session key for authenticators")]
    NoServerKey,
    /// The chosen correlation ID is already waiting for a response.
    #[error("correlation ID already in use")]
    CorrIdInUse,
    /// The received message did not decrypt with the queue's secret.
    #[error("message decryption: {0}")]
    Message(#[from] crate::smp::message::MessageError),
    #[error("cannot build the request: {0}")]
    Encode(#[from] TransmissionError),
    #[error("key: {0}")]
    Key(#[from] CryptoError),
    #[error("transport: {0}")]
    Io(#[source] io::Error),
    /// The request needs something this router or these options lack.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl SmpClientError {
    /// Whether the connection is unusable afterwards.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::Tls(_) | Self::Timeout(_) | Self::Closed | Self::Io(_)
        )
    }

    /// The server identity did not match the pinned key hash.
    pub fn is_identity_mismatch(&self) -> bool {
        matches!(self, Self::Tls(TlsError::Pin(PinError::IdentityMismatch)))
            || matches!(
                self,
                Self::Handshake(HandshakeError::Transport(TransportError::Handshake(
                    crate::smp::error::HandshakeErrorKind::Identity
                )))
            )
    }

    /// The server's error, if the server answered one.
    pub fn error_type(&self) -> Option<&ErrorType> {
        match self {
            Self::Protocol(e) | Self::Relay(e) | Self::BadResponse(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ErrorType> for SmpClientError {
    /// `ERR PROXY …` is the proxy's failure, anything else the server's.
    fn from(e: ErrorType) -> Self {
        match e {
            ErrorType::Proxy(p) => Self::Proxy(*p),
            e => Self::Protocol(e),
        }
    }
}
