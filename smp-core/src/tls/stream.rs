//! The std shell: TLS over tokio sockets with the session id derived from
//! the client's captured records.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::config::client_config;
use super::{KeyHash, PinError, SessionId, SessionIdError, finished, unique};

/// TLS failures. Each one means the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server identity check failed: {0}")]
    Pin(#[from] PinError),
    #[error("TLS handshake failed: {0}")]
    Handshake(#[from] rustls::Error),
    #[error("session id: {0}")]
    SessionId(#[from] SessionIdError),
    #[error("transport: {0}")]
    Io(#[from] io::Error),
}

impl TlsError {
    /// Recovers our typed errors from the `io::Error` tokio-rustls returns.
    fn from_handshake(e: io::Error) -> Self {
        let Some(rustls_err) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return Self::Io(e);
        };
        if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) =
            rustls_err
            && let Some(pin) = other.0.downcast_ref::<PinError>()
        {
            return Self::Pin(pin.clone());
        }
        Self::Handshake(rustls_err.clone())
    }
}

/// An established TLS 1.3 connection with its session id and negotiated ALPN.
#[derive(Debug)]
pub struct TlsConnection<S> {
    stream: TlsStream<unique::Tap<S>>,
    session_id: SessionId,
    alpn: Option<Vec<u8>>,
}

impl<S> TlsConnection<S> {
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// Negotiated ALPN protocol; `None` if the client offered none.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The SNI host name the client sent (server side only; `None` when the
    /// client sent none, and always on the client side).
    pub fn server_name(&self) -> Option<&str> {
        match &self.stream {
            TlsStream::Client(_) => None,
            TlsStream::Server(s) => s.get_ref().1.server_name(),
        }
    }

    /// Full, resumed or with HelloRetryRequest (a reference client gets an HRR).
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        match &self.stream {
            TlsStream::Client(c) => c.get_ref().1.handshake_kind(),
            TlsStream::Server(s) => s.get_ref().1.handshake_kind(),
        }
    }

    /// The server's certificate chain as received (client side only).
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match &self.stream {
            TlsStream::Client(c) => c.get_ref().1.peer_certificates(),
            TlsStream::Server(_) => None,
        }
    }

    /// The underlying socket.
    pub fn get_ref(&self) -> &S {
        match &self.stream {
            TlsStream::Client(c) => c.get_ref().0.get_ref(),
            TlsStream::Server(s) => s.get_ref().0.get_ref(),
        }
    }
}

/// Wraps a finished handshake: derives the tls-unique session id from the
/// captured key log and Finished message, and records the negotiated ALPN.
fn established<S>(
    mut stream: TlsStream<unique::Tap<S>>,
    slot: &unique::SecretSlot,
) -> Result<TlsConnection<S>, TlsError> {
    let (tap, state) = stream.get_mut();
    let captured = tap.finish()?;
    let secret = slot.take().ok_or(SessionIdError::NoSecret)?;
    let suite = state
        .negotiated_cipher_suite()
        .ok_or(SessionIdError::NoSecret)?
        .suite();
    let value = finished::derive_tls_unique(&secret, u16::from(suite), &captured)?;
    let id = <[u8; 32]>::try_from(value.as_slice())
        .map_err(|_| SessionIdError::BadLength(value.len()))?;
    let alpn = state.alpn_protocol().map(<[u8]>::to_vec);
    Ok(TlsConnection {
        stream,
        session_id: SessionId(id),
        alpn,
    })
}

/// Server side: TLS handshake on an accepted socket with a config from
/// [`server_config`] (built once, cloned per connection for its key log).
pub async fn accept<S>(stream: S, config: &ServerConfig) -> Result<TlsConnection<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let slot = unique::new_slot();
    let mut cfg = config.clone();
    cfg.key_log = slot.clone();
    let tap = unique::Tap::new(stream, unique::TapSide::Reads);
    let tls = TlsAcceptor::from(Arc::new(cfg))
        .accept(tap)
        .await
        .map_err(TlsError::from_handshake)?;
    established(TlsStream::Server(tls), &slot)
}

/// Client side with the reference's parameters, pinned to `key_hash`.
pub async fn connect<S>(
    stream: S,
    key_hash: KeyHash,
    alpn: &[u8],
) -> Result<TlsConnection<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    connect_with_config(stream, &client_config(key_hash, alpn)?).await
}

/// Client side with a config from [`client_config`]/[`client_config_with_suites`].
pub async fn connect_with_config<S>(
    stream: S,
    config: &ClientConfig,
) -> Result<TlsConnection<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Never sent (SNI is off); rustls only needs some name.
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    connect_with_server_name(stream, config, name).await
}

/// Client side naming the server: with `config.enable_sni` and a DNS name
/// the name is sent as SNI (browser-like clients of a web-mode server).
pub async fn connect_with_server_name<S>(
    stream: S,
    config: &ClientConfig,
    name: ServerName<'static>,
) -> Result<TlsConnection<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let slot = unique::new_slot();
    let mut cfg = config.clone();
    cfg.key_log = slot.clone();
    let tap = unique::Tap::new(stream, unique::TapSide::Writes);
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(name, tap)
        .await
        .map_err(TlsError::from_handshake)?;
    established(TlsStream::Client(tls), &slot)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsConnection<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsConnection<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
