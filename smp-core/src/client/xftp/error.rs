//! Client errors, grouped so that callers can decide whether to retry.

use std::io;

use crate::crypto::CryptoError;
use crate::tls::{PinError, TlsError};
use crate::xftp::error::XftpErrorType;
use crate::xftp::handshake::HandshakeError;
use crate::xftp::transmission::{ResponseBlockError, TransmissionEncodeError};

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// TCP, TLS and HTTP/2 setup.
    Connect,
    /// One of the two XFTP handshake requests.
    Handshake,
    /// A command up to its response block (for FPUT including the upload).
    Command,
    /// The FGET chunk body after the response block.
    ChunkBody,
}

/// Everything an XFTP client operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum XftpClientError {
    /// The address cannot be dialled by this client (key hash not SHA-256,
    /// onion host without a proxy).
    #[error("unusable server address: {0}")]
    Address(&'static str),
    #[error("TCP connection failed: {0}")]
    Connect(#[source] io::Error),
    #[error("timeout: {0:?}")]
    Timeout(TimeoutKind),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// HTTP/2 failure: connection reset, stream reset, GOAWAY, framing.
    #[error("HTTP/2: {0}")]
    Http(#[from] hyper::Error),
    /// The connection was already closed when the request was made.
    #[error("connection closed")]
    Closed,
    #[error("XFTP handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server answered the client handshake with a non-empty body.
    #[error("XFTP handshake rejected by the server")]
    HandshakeRejected,
    #[error("unexpected HTTP status {0}")]
    HttpStatus(u16),
    /// The server answered `ERR`.
    #[error("server error: {0}")]
    Protocol(XftpErrorType),
    /// The response block could not be used: malformed, wrong session,
    /// bare error word, or a response that fails its own rules.
    #[error("bad response: {0}")]
    BadResponse(XftpErrorType),
    /// A well-formed response that does not answer this command.
    #[error("unexpected response {0}")]
    UnexpectedResponse(&'static str),
    /// FGET body shorter than the chunk or longer than chunk + tag.
    #[error("downloaded chunk has the wrong size")]
    ChunkSize,
    /// FGET body authentication tag mismatch.
    #[error("downloaded chunk failed authentication")]
    ChunkCrypto,
    /// SHA-256 of the downloaded chunk differs from the description.
    #[error("downloaded chunk digest mismatch")]
    ChunkDigest,
    /// Reading the chunk to upload failed or ended early.
    #[error("reading the chunk to upload: {0}")]
    Source(#[source] io::Error),
    /// Writing the downloaded chunk failed.
    #[error("writing the downloaded chunk: {0}")]
    Sink(#[source] io::Error),
    #[error("cannot build the request: {0}")]
    Encode(#[from] TransmissionEncodeError),
    #[error("key: {0}")]
    Key(#[from] CryptoError),
    /// `retry` was asked for zero attempts.
    #[error("no retry attempts")]
    NoAttempts,
}

impl XftpClientError {
    /// Whether the same operation may succeed on a new attempt: network
    /// failures and timeouts, and the server's own `TIMEOUT`. Identity
    /// mismatches, protocol refusals and corrupt downloads are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Timeout(_) | Self::Http(_) | Self::Closed => true,
            Self::Tls(TlsError::Io(_)) => true,
            Self::Tls(_) => false,
            Self::Protocol(e) => matches!(e, XftpErrorType::Timeout),
            _ => false,
        }
    }

    /// Whether the connection is unusable afterwards, so a retry needs a new one.
    pub fn needs_reconnect(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::Timeout(_) | Self::Http(_) | Self::Closed | Self::Tls(_)
        )
    }

    /// The server identity did not match the pinned key hash (TLS or handshake).
    pub fn is_identity_mismatch(&self) -> bool {
        matches!(
            self,
            Self::Tls(TlsError::Pin(PinError::IdentityMismatch))
                | Self::Handshake(HandshakeError::Identity)
        )
    }

    /// The protocol error this corresponds to, as the reference client
    /// reports it (`CRYPTO`, `DIGEST`, `SIZE` for downloads).
    pub fn xftp_error(&self) -> Option<XftpErrorType> {
        match self {
            Self::Protocol(e) | Self::BadResponse(e) => Some(*e),
            Self::ChunkSize => Some(XftpErrorType::Size),
            Self::ChunkCrypto => Some(XftpErrorType::Crypto),
            Self::ChunkDigest => Some(XftpErrorType::Digest),
            _ => None,
        }
    }
}

impl From<ResponseBlockError> for XftpClientError {
    fn from(e: ResponseBlockError) -> Self {
        Self::BadResponse(e.error_type())
    }
}
