//! `ErrorType`: everything that follows `ERR ` in a response, with the
//! nested proxy, broker, network and transport errors.
//!
//! `BLOCKED` is shaped by version when it is the top-level error of an
//! `ERR` response (see [`ErrorType::for_version`]); nested copies are not,
//! exactly as in the reference.

use super::version::{self, Version};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

pub use crate::xftp::error::{BlockingInfo, BlockingReason, ClientNotice, CommandError};

/// `HandshakeError` inside `TransportError` (Haskell `show` of the constructor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeErrorKind {
    Parse,
    Identity,
    BadAuth,
    BadService,
}

impl HandshakeErrorKind {
    pub const fn wire(self) -> &'static str {
        match self {
            Self::Parse => "PARSE",
            Self::Identity => "IDENTITY",
            Self::BadAuth => "BAD_AUTH",
            Self::BadService => "BAD_SERVICE",
        }
    }
    fn from_wire(b: &[u8]) -> Option<Self> {
        Some(match b {
            b"PARSE" => Self::Parse,
            b"IDENTITY" => Self::Identity,
            b"BAD_AUTH" => Self::BadAuth,
            b"BAD_SERVICE" => Self::BadService,
            _ => return None,
        })
    }
}

/// `TransportError`: also the body of a rejected service handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TransportError {
    #[error("transport: bad block")]
    Block,
    #[error("transport: incompatible version")]
    Version,
    #[error("transport: message too large")]
    LargeMsg,
    #[error("transport: session ID mismatch")]
    Session,
    #[error("transport: server sent no session key")]
    NoAuth,
    #[error("transport: handshake failed ({})", .0.wire())]
    Handshake(HandshakeErrorKind),
}

impl TransportError {
    pub fn write(&self, w: &mut Writer) {
        let word: &[u8] = match self {
            Self::Block => b"BLOCK",
            Self::Version => b"VERSION",
            Self::LargeMsg => b"LARGE_MSG",
            Self::Session => b"SESSION",
            Self::NoAuth => b"NO_AUTH",
            Self::Handshake(h) => {
                w.raw(b"HANDSHAKE ");
                h.wire().as_bytes()
            }
        };
        w.raw(word);
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_vec()
    }
    /// Reads the whole rest of the input.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let e = match r.tag() {
            b"BLOCK" => Self::Block,
            b"VERSION" => Self::Version,
            b"LARGE_MSG" => Self::LargeMsg,
            b"SESSION" => Self::Session,
            b"NO_AUTH" => Self::NoAuth,
            b"HANDSHAKE" => Self::Handshake(
                HandshakeErrorKind::from_wire(r.tail())
                    .ok_or(DecodeError::Invalid("handshake error"))?,
            ),
            _ => return Err(DecodeError::Invalid("transport error")),
        };
        r.end()?;
        Ok(e)
    }
}

/// `NetworkError`: the reference sends `NETWORK` bare, but parses details.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetworkError {
    Connect(Vec<u8>),
    Tls(Vec<u8>),
    UnknownCa,
    Failed,
    Timeout,
    Subscribe(Vec<u8>),
}

/// `BrokerErrorType`: why a proxy could not talk to a relay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BrokerError {
    /// Unparsable response; the text is a Latin-1 `String`.
    Response(Vec<u8>),
    Unexpected(Vec<u8>),
    Transport(TransportError),
    Network(NetworkError),
    Timeout,
    Host,
    NoService,
}

/// `ProxyError`: errors of private message routing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProxyError {
    /// An error the relay returned for `RFWD`.
    Protocol(ErrorType),
    Broker(BrokerError),
    BasicAuth,
    NoSession,
}

/// Every error an SMP server can send (`ErrorType`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorType {
    Block,
    Session,
    Cmd(CommandError),
    Proxy(Box<ProxyError>),
    Auth,
    Blocked(BlockingInfo),
    Service,
    Crypto,
    Quota,
    Store(String),
    NoMsg,
    LargeMsg,
    Expired,
    Internal,
    /// Internal to the reference; encodable but never sent.
    Duplicate,
}

impl core::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let e = self.encode().unwrap_or_default();
        f.write_str(&String::from_utf8_lossy(&e))
    }
}

impl core::error::Error for ErrorType {}

impl ErrorType {
    /// How the error is sent as the top-level `ERR` of a response at `v`:
    /// `BLOCKED` becomes `AUTH` below 12 and loses its notice below 18.
    pub fn for_version(&self, v: Version) -> ErrorType {
        match self {
            Self::Blocked(_) if !version::has_blocked(v) => Self::Auth,
            Self::Blocked(b) if !version::has_client_notices(v) => Self::Blocked(BlockingInfo {
                reason: b.reason,
                notice: None,
            }),
            e => e.clone(),
        }
    }

    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::Block => w.raw(b"BLOCK"),
            Self::Session => w.raw(b"SESSION"),
            Self::Cmd(c) => w.raw(b"CMD ").raw(c.wire().as_bytes()),
            Self::Proxy(p) => {
                w.raw(b"PROXY ");
                return p.write(w);
            }
            Self::Auth => w.raw(b"AUTH"),
            Self::Blocked(b) => w.raw(b"BLOCKED ").raw(b.encode().as_bytes()),
            Self::Service => w.raw(b"SERVICE"),
            Self::Crypto => w.raw(b"CRYPTO"),
            Self::Quota => w.raw(b"QUOTA"),
            Self::Store(s) => w.raw(b"STORE ").raw(s.as_bytes()),
            Self::NoMsg => w.raw(b"NO_MSG"),
            Self::LargeMsg => w.raw(b"LARGE_MSG"),
            Self::Expired => w.raw(b"EXPIRED"),
            Self::Internal => w.raw(b"INTERNAL"),
            Self::Duplicate => w.raw(b"DUPLICATE_"),
        };
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    /// Parses the whole input as an error.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let e = Self::read(&mut r, 0)?;
        r.end()?;
        Ok(e)
    }

    /// Nesting is bounded so hostile input cannot exhaust the stack.
    fn read(r: &mut Reader<'_>, depth: usize) -> Result<Self, DecodeError> {
        if depth > 8 {
            return Err(DecodeError::Invalid("error nesting too deep"));
        }
        Ok(match r.tag() {
            b"BLOCK" => Self::Block,
            b"SESSION" => Self::Session,
            b"CMD" => Self::Cmd(
                CommandError::from_wire(r.tail()).ok_or(DecodeError::Invalid("command error"))?,
            ),
            b"PROXY" => Self::Proxy(Box::new(ProxyError::read(r, depth + 1)?)),
            b"AUTH" => Self::Auth,
            b"BLOCKED" => Self::Blocked(
                BlockingInfo::decode(r.tail()).ok_or(DecodeError::Invalid("blocking info"))?,
            ),
            b"SERVICE" => Self::Service,
            b"CRYPTO" => Self::Crypto,
            b"QUOTA" => Self::Quota,
            b"STORE" => Self::Store(String::from_utf8_lossy(r.tail()).into_owned()),
            b"NO_MSG" => Self::NoMsg,
            b"LARGE_MSG" => Self::LargeMsg,
            b"EXPIRED" => Self::Expired,
            b"INTERNAL" => Self::Internal,
            b"DUPLICATE_" => Self::Duplicate,
            _ => return Err(DecodeError::Invalid("error type")),
        })
    }
}

impl ProxyError {
    fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::Protocol(e) => {
                w.raw(b"PROTOCOL ");
                e.write(w)?;
            }
            Self::Broker(b) => {
                w.raw(b"BROKER ");
                b.write(w)?;
            }
            Self::BasicAuth => {
                w.raw(b"BASIC_AUTH");
            }
            Self::NoSession => {
                w.raw(b"NO_SESSION");
            }
        }
        Ok(())
    }
    fn read(r: &mut Reader<'_>, depth: usize) -> Result<Self, DecodeError> {
        Ok(match r.tag() {
            b"PROTOCOL" => Self::Protocol(ErrorType::read(r, depth + 1)?),
            b"BROKER" => Self::Broker(BrokerError::read(r)?),
            b"BASIC_AUTH" => Self::BasicAuth,
            b"NO_SESSION" => Self::NoSession,
            _ => return Err(DecodeError::Invalid("proxy error")),
        })
    }
}

impl BrokerError {
    fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::Response(s) => {
                w.raw(b"RESPONSE ").short(s)?;
            }
            Self::Unexpected(s) => {
                w.raw(b"UNEXPECTED ").short(s)?;
            }
            Self::Transport(t) => {
                w.raw(b"TRANSPORT ");
                t.write(w);
            }
            // The reference drops the detail when sending.
            Self::Network(_) => {
                w.raw(b"NETWORK");
            }
            Self::Timeout => {
                w.raw(b"TIMEOUT");
            }
            Self::Host => {
                w.raw(b"HOST");
            }
            Self::NoService => {
                w.raw(b"NO_SERVICE");
            }
        }
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.tag() {
            b"RESPONSE" => Self::Response(r.short()?.to_vec()),
            b"UNEXPECTED" => Self::Unexpected(r.short()?.to_vec()),
            b"TRANSPORT" => Self::Transport(TransportError::read(r)?),
            b"NETWORK" => Self::Network(if r.is_empty() {
                NetworkError::Failed
            } else {
                NetworkError::read(r)?
            }),
            b"TIMEOUT" => Self::Timeout,
            b"HOST" => Self::Host,
            b"NO_SERVICE" => Self::NoService,
            _ => return Err(DecodeError::Invalid("broker error")),
        })
    }
}

impl NetworkError {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.tag() {
            b"CONNECT" => Self::Connect(r.short()?.to_vec()),
            b"TLS" => Self::Tls(r.short()?.to_vec()),
            b"UNKNOWNCA" => Self::UnknownCa,
            b"FAILED" => Self::Failed,
            b"TIMEOUT" => Self::Timeout,
            b"SUBSCRIBE" => Self::Subscribe(r.short()?.to_vec()),
            _ => return Err(DecodeError::Invalid("network error")),
        })
    }
}
