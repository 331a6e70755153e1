//! Async XFTP client: one TLS + HTTP/2 connection per server, shared by
//! clones, each request its own HTTP/2 stream (`POST /`, 16384-byte block,
//! plus the chunk for FPUT / after the block for FGET).
//!
//! Unlike the reference client, which queues requests on a connection one
//! at a time, requests from different tasks run concurrently; servers
//! handle streams independently, so the wire behaviour per request is the
//! same.

mod body;
mod error;
mod retry;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::address::ServerAddress;
use crate::crypto::CryptoError;
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use crate::tls::{self, ALPN_XFTP, SessionId};
use crate::xftp::command::{BasicAuth, FileCommand, FileInfo};
use crate::xftp::fget::fget_stream;
use crate::xftp::handshake::{
    ClientHandshake, HandshakeError, INITIAL_VERSION, SUPPORTED_VERSIONS, ServerHandshake,
    certificate_public_key,
};
use crate::xftp::response::FileResponse;
use crate::xftp::transmission::{
    AuthKey, bare_error_word, decode_response_block, encode_command_block,
};

use body::{RequestBody, SourceError, read_block, read_rest, receive_fget_body};
pub use error::{TimeoutKind, XftpClientError};
pub use retry::{Backoff, ReconnectingClient, retry};

/// A file or recipient ID as the server issued it (16 bytes from the
/// reference server); treat as secret, never log.
pub type EntityId = Vec<u8>;

/// Deadlines. Defaults are the reference's (`defaultNetworkConfig`,
/// `xftpReqTimeout`, `chunkTimeout`), so a slow link behaves the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XftpClientOptions {
    /// TCP + TLS + HTTP/2 setup.
    pub connect_timeout: Duration,
    /// Each of the two handshake requests.
    pub handshake_timeout: Duration,
    /// A command up to its response block (`connTimeout + xftpReqTimeout`).
    pub command_timeout: Duration,
    /// Base of the FGET body deadline.
    pub chunk_timeout: Duration,
    /// Added per KiB of chunk to the FPUT request and to the FGET body.
    pub per_kib: Duration,
}

impl Default for XftpClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(45),
            handshake_timeout: Duration::from_secs(45),
            command_timeout: Duration::from_secs(75),
            chunk_timeout: Duration::from_secs(30),
            per_kib: Duration::from_millis(5),
        }
    }
}

impl XftpClientOptions {
    fn per_size(&self, size: u64) -> Duration {
        self.per_kib
            .saturating_mul(u32::try_from(size / 1024).unwrap_or(u32::MAX))
    }
    /// The FPUT request deadline: command timeout plus the size allowance.
    pub fn upload_timeout(&self, size: u64) -> Duration {
        self.command_timeout.saturating_add(self.per_size(size))
    }
    /// The FGET body deadline, counted after the response block.
    pub fn download_body_timeout(&self, size: u64) -> Duration {
        self.chunk_timeout.saturating_add(self.per_size(size))
    }
}

/// A connected, handshaken XFTP client. Cheap to clone; clones share the
/// connection, which closes when the last clone is dropped.
#[derive(Clone)]
pub struct XftpClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for XftpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XftpClient")
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

struct Inner {
    sender: SendRequest<RequestBody>,
    uri: Uri,
    session_id: SessionId,
    version: u16,
    server_session_key: Option<PublicKey>,
    options: XftpClientOptions,
    connection: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// The parts of a connection the handshake needs before [`Inner`] exists.
struct Transport {
    sender: SendRequest<RequestBody>,
    uri: Uri,
}

impl Transport {
    async fn post(&self, body: RequestBody) -> Result<Incoming, XftpClientError> {
        let mut sender = self.sender.clone();
        if sender.is_closed() {
            return Err(XftpClientError::Closed);
        }
        sender.ready().await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .body(body)
            .map_err(|_| XftpClientError::Address("host is not a valid URI authority"))?;
        let resp = sender.send_request(req).await?;
        if resp.status() != http::StatusCode::OK {
            return Err(XftpClientError::HttpStatus(resp.status().as_u16()));
        }
        Ok(resp.into_body())
    }
}

/// The answer to a command: the response and the rest of its body.
/// A response block and the unread rest of its body.
pub struct RawResponse {
    pub block: Vec<u8>,
    body: Incoming,
    leftover: Option<Bytes>,
}

impl RawResponse {
    /// The next piece of the body after the block; `None` at its end.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>, XftpClientError> {
        use http_body_util::BodyExt;
        if let Some(l) = self.leftover.take().filter(|l| !l.is_empty()) {
            return Ok(Some(l));
        }
        while let Some(frame) = self.body.frame().await {
            if let Ok(data) = frame?.into_data()
                && !data.is_empty()
            {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

struct Answer {
    response: FileResponse,
    body: Incoming,
    leftover: Bytes,
}

impl XftpClient {
    /// Connects to the address's preferred host (no SOCKS: onion-only
    /// addresses are refused), pins TLS to the address key hash, runs
    /// HTTP/2 with prior knowledge and, when `xftp/1` was negotiated, the
    /// XFTP handshake. Without ALPN the handshake is skipped and version 1
    /// is used, as the reference client does.
    pub async fn connect(
        address: &ServerAddress,
        options: XftpClientOptions,
    ) -> Result<Self, XftpClientError> {
        let key_hash: [u8; 32] = address
            .key_hash()
            .as_bytes()
            .try_into()
            .map_err(|_| XftpClientError::Address("key hash is not a SHA-256 fingerprint"))?;
        let host = address.preferred_host();
        if host.is_onion() {
            return Err(XftpClientError::Address("onion hosts need a SOCKS proxy"));
        }
        // Reference: scheme https, authority = the host without the port.
        let uri: Uri = format!("https://{}/", host.url_host())
            .parse()
            .map_err(|_| XftpClientError::Address("host is not a valid URI authority"))?;
        let port = address.effective_port();
        let dial = async {
            let tcp = TcpStream::connect((host.to_string().as_str(), port))
                .await
                .map_err(XftpClientError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let tls = tls::connect(tcp, key_hash, ALPN_XFTP).await?;
            let session_id = *tls.session_id();
            let alpn = tls.alpn().map(<[u8]>::to_vec);
            let leaf = tls
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            // The windows bound what a server may send ahead of the
            // client's reading — memory the client holds per connection —
            // while 1 MiB per stream keeps chunks flowing on fast links.
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(4 << 20)
                .max_frame_size(1 << 16)
                .handshake(TokioIo::new(tls))
                .await?;
            Ok::<_, XftpClientError>((sender, conn, session_id, alpn, leaf))
        };
        let (sender, conn, session_id, alpn, leaf) = timeout(options.connect_timeout, dial)
            .await
            .map_err(|_| XftpClientError::Timeout(TimeoutKind::Connect))??;
        let connection = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("XFTP connection ended: {e}");
            }
        });
        let transport = Transport { sender, uri };
        let handshaken = match alpn.as_deref() {
            Some(ALPN_XFTP) | Some(b"http/1.1") => {
                handshake(
                    &transport,
                    &options,
                    &session_id,
                    leaf.as_deref(),
                    &key_hash,
                )
                .await
            }
            _ => Ok((INITIAL_VERSION, None)),
        };
        let (version, server_session_key) = match handshaken {
            Ok(v) => v,
            Err(e) => {
                connection.abort();
                return Err(e);
            }
        };
        tracing::debug!("XFTP session established, version {version}");
        Ok(Self {
            inner: Arc::new(Inner {
                sender: transport.sender,
                uri: transport.uri,
                session_id,
                version,
                server_session_key,
                options,
                connection,
            }),
        })
    }

    /// The agreed protocol version (1 without a handshake).
    pub fn version(&self) -> u16 {
        self.inner.version
    }

    /// The TLS session ID (tls-unique) carried in every transmission.
    pub fn session_id(&self) -> &SessionId {
        &self.inner.session_id
    }

    /// The server's signed per-session X25519 key (none on version 1).
    pub fn server_session_key(&self) -> Option<&PublicKey> {
        self.inner.server_session_key.as_ref()
    }

    pub fn options(&self) -> &XftpClientOptions {
        &self.inner.options
    }

    /// Whether the connection is gone; a closed client only returns errors.
    pub fn is_closed(&self) -> bool {
        self.inner.sender.is_closed() || self.inner.connection.is_finished()
    }

    /// Whether two handles share one connection.
    pub fn same_connection(&self, other: &XftpClient) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn transport(&self) -> Transport {
        Transport {
            sender: self.inner.sender.clone(),
            uri: self.inner.uri.clone(),
        }
    }

    /// Ed25519/Ed448 keys sign; an X25519 key authenticates with crypto_box
    /// against the server session key, which needs a handshake (v2+).
    fn auth_key<'a>(&'a self, key: &'a PrivateKey) -> Result<AuthKey<'a>, XftpClientError> {
        match key.algorithm() {
            KeyAlgorithm::Ed25519 | KeyAlgorithm::Ed448 => Ok(AuthKey::Sign(key)),
            KeyAlgorithm::X25519 => match &self.inner.server_session_key {
                Some(server_session_key) => Ok(AuthKey::Authenticate {
                    own: key,
                    server_session_key,
                }),
                None => Err(CryptoError::WrongAlgorithm {
                    expected: "Ed25519 or Ed448 without a session key",
                }
                .into()),
            },
            KeyAlgorithm::X448 => Err(CryptoError::WrongAlgorithm {
                expected: "Ed25519, Ed448 or X25519",
            }
            .into()),
        }
    }

    /// Sends one command (with an empty corrId, as the reference clients)
    /// and reads its response block within `deadline`.
    async fn command(
        &self,
        entity_id: &[u8],
        command: &FileCommand,
        key: Option<&PrivateKey>,
        chunk: Option<(Pin<Box<dyn AsyncRead + Send>>, u64)>,
        deadline: Duration,
    ) -> Result<Answer, XftpClientError> {
        let auth = key.map(|k| self.auth_key(k)).transpose()?;
        let block = encode_command_block(
            self.inner.session_id.as_ref(),
            b"",
            entity_id,
            command,
            auth,
        )?;
        let (body, source_error): (RequestBody, Option<SourceError>) = match chunk {
            None => (RequestBody::block(block), None),
            Some((reader, size)) => {
                let (b, e) = RequestBody::with_chunk(block, reader, size);
                (b, Some(e))
            }
        };
        let transport = self.transport();
        let exchange = async {
            let mut body = transport.post(body).await?;
            let (block, leftover) = read_block(&mut body).await?;
            Ok::<_, XftpClientError>((block, body, leftover))
        };
        let result = timeout(deadline, exchange)
            .await
            .map_err(|_| XftpClientError::Timeout(TimeoutKind::Command))
            .and_then(|r| r);
        let (block, body, leftover) = match result {
            Ok(v) => v,
            Err(e) => {
                // A failing reader surfaces as a generic body error in hyper.
                let source = source_error.and_then(|s| s.lock().ok().and_then(|mut s| s.take()));
                return Err(source.map_or(e, XftpClientError::Source));
            }
        };
        let t = decode_response_block(&block, self.inner.session_id.as_ref())?;
        if !t.corr_id.is_empty() {
            return Err(XftpClientError::UnexpectedResponse(
                "response with another corrId",
            ));
        }
        match t.response.map_err(XftpClientError::BadResponse)? {
            FileResponse::Err(e) => Err(XftpClientError::Protocol(e)),
            response => Ok(Answer {
                response,
                body,
                leftover,
            }),
        }
    }

    async fn expect_ok(
        &self,
        entity_id: &[u8],
        command: &FileCommand,
        key: &PrivateKey,
    ) -> Result<(), XftpClientError> {
        let a = self
            .command(
                entity_id,
                command,
                Some(key),
                None,
                self.inner.options.command_timeout,
            )
            .await?;
        match a.response {
            FileResponse::Ok => Ok(()),
            other => Err(XftpClientError::UnexpectedResponse(other.tag())),
        }
    }

    /// Sends a request block the caller encoded (for this connection's
    /// session id) and returns the response block with the rest of the body
    /// unread: the device-sync core builds FGET requests and decodes their
    /// bodies itself, so the host and the device run the same code.
    pub async fn request_raw(
        &self,
        block: Vec<u8>,
        deadline: Duration,
    ) -> Result<RawResponse, XftpClientError> {
        let transport = self.transport();
        let exchange = async {
            let mut body = transport.post(RequestBody::block(block)).await?;
            let (block, leftover) = read_block(&mut body).await?;
            Ok::<_, XftpClientError>(RawResponse {
                block,
                body,
                leftover: Some(leftover),
            })
        };
        timeout(deadline, exchange)
            .await
            .map_err(|_| XftpClientError::Timeout(TimeoutKind::Command))?
    }

    /// FNEW: registers a chunk. Returns the sender ID and one recipient ID
    /// per key, in key order. A retried FNEW creates another record.
    pub async fn create_file(
        &self,
        sender_key: &PrivateKey,
        file: FileInfo,
        recipient_keys: Vec<PublicKey>,
        basic_auth: Option<BasicAuth>,
    ) -> Result<(EntityId, Vec<EntityId>), XftpClientError> {
        let n = recipient_keys.len();
        let cmd = FileCommand::Fnew {
            file,
            rcv_keys: recipient_keys,
            auth: basic_auth,
        };
        let a = self
            .command(
                b"",
                &cmd,
                Some(sender_key),
                None,
                self.inner.options.command_timeout,
            )
            .await?;
        match a.response {
            FileResponse::SndIds {
                sender_id,
                recipient_ids,
            } if recipient_ids.len() == n => Ok((sender_id, recipient_ids)),
            FileResponse::SndIds { .. } => Err(XftpClientError::UnexpectedResponse(
                "SIDS with a different number of recipients",
            )),
            other => Err(XftpClientError::UnexpectedResponse(other.tag())),
        }
    }

    /// FADD: adds recipients to a chunk; returns their IDs in key order.
    pub async fn add_recipients(
        &self,
        sender_id: &[u8],
        sender_key: &PrivateKey,
        recipient_keys: Vec<PublicKey>,
    ) -> Result<Vec<EntityId>, XftpClientError> {
        let n = recipient_keys.len();
        let cmd = FileCommand::Fadd {
            rcv_keys: recipient_keys,
        };
        let a = self
            .command(
                sender_id,
                &cmd,
                Some(sender_key),
                None,
                self.inner.options.command_timeout,
            )
            .await?;
        match a.response {
            FileResponse::RcvIds { recipient_ids } if recipient_ids.len() == n => Ok(recipient_ids),
            FileResponse::RcvIds { .. } => Err(XftpClientError::UnexpectedResponse(
                "RIDS with a different number of recipients",
            )),
            other => Err(XftpClientError::UnexpectedResponse(other.tag())),
        }
    }

    /// FPUT: uploads exactly `size` bytes from `chunk`, streamed after the
    /// block (one 16 KiB piece in memory at a time). A reader that ends
    /// early gives [`XftpClientError::Source`].
    pub async fn upload_chunk<R>(
        &self,
        sender_id: &[u8],
        sender_key: &PrivateKey,
        chunk: R,
        size: u32,
    ) -> Result<(), XftpClientError>
    where
        R: AsyncRead + Send + 'static,
    {
        let size = u64::from(size);
        let deadline = self.inner.options.upload_timeout(size);
        let a = self
            .command(
                sender_id,
                &FileCommand::Fput,
                Some(sender_key),
                Some((Box::pin(chunk), size)),
                deadline,
            )
            .await?;
        match a.response {
            FileResponse::Ok => Ok(()),
            other => Err(XftpClientError::UnexpectedResponse(other.tag())),
        }
    }

    /// FGET: downloads a chunk of `size` bytes (from the description)
    /// encrypted to a fresh X25519 key, decrypting into `writer` as it
    /// arrives, then checks the tag and `digest` (SHA-256 of the chunk).
    ///
    /// Bytes are written before they can be authenticated: on any error
    /// the caller must discard everything written (the reference deletes
    /// the output file).
    pub async fn download_chunk<W>(
        &self,
        recipient_id: &[u8],
        recipient_key: &PrivateKey,
        size: u32,
        digest: &[u8],
        writer: &mut W,
    ) -> Result<(), XftpClientError>
    where
        W: AsyncWrite + Unpin,
    {
        let dh = PrivateKey::generate(KeyAlgorithm::X25519);
        let cmd = FileCommand::Fget {
            rcv_dh_key: dh.public_key(),
        };
        let a = self
            .command(
                recipient_id,
                &cmd,
                Some(recipient_key),
                None,
                self.inner.options.command_timeout,
            )
            .await?;
        let FileResponse::File { srv_dh_key, nonce } = a.response else {
            return Err(XftpClientError::UnexpectedResponse(a.response.tag()));
        };
        let stream = fget_stream(&srv_dh_key, &dh, &nonce)?;
        let size = u64::from(size);
        let mut body = a.body;
        timeout(
            self.inner.options.download_body_timeout(size),
            receive_fget_body(&mut body, a.leftover, size, digest, stream, writer),
        )
        .await
        .map_err(|_| XftpClientError::Timeout(TimeoutKind::ChunkBody))?
    }

    /// FDEL: deletes the chunk for all recipients.
    pub async fn delete_file(
        &self,
        sender_id: &[u8],
        sender_key: &PrivateKey,
    ) -> Result<(), XftpClientError> {
        self.expect_ok(sender_id, &FileCommand::Fdel, sender_key)
            .await
    }

    /// FACK: acknowledges a download, removing this recipient.
    pub async fn ack_file(
        &self,
        recipient_id: &[u8],
        recipient_key: &PrivateKey,
    ) -> Result<(), XftpClientError> {
        self.expect_ok(recipient_id, &FileCommand::Fack, recipient_key)
            .await
    }

    /// PING: unsigned, no entity; the server answers PONG.
    pub async fn ping(&self) -> Result<(), XftpClientError> {
        let a = self
            .command(
                b"",
                &FileCommand::Ping,
                None,
                None,
                self.inner.options.command_timeout,
            )
            .await?;
        match a.response {
            FileResponse::Pong => Ok(()),
            other => Err(XftpClientError::UnexpectedResponse(other.tag())),
        }
    }
}

/// The client side of the XFTP handshake; returns the version and the
/// server's session key.
async fn handshake(
    transport: &Transport,
    options: &XftpClientOptions,
    session_id: &SessionId,
    tls_leaf: Option<&[u8]>,
    key_hash: &[u8; 32],
) -> Result<(u16, Option<PublicKey>), XftpClientError> {
    let step = |body| async {
        let mut resp = transport.post(body).await?;
        let (block, leftover) = read_block(&mut resp).await?;
        Ok::<_, XftpClientError>((block, resp, leftover))
    };
    let (block, _, _) = timeout(options.handshake_timeout, step(RequestBody::empty()))
        .await
        .map_err(|_| XftpClientError::Timeout(TimeoutKind::Handshake))??;
    let (version, key) = check_server_handshake(&block, session_id, tls_leaf, key_hash)?;
    let reply = ClientHandshake {
        version,
        key_hash: key_hash.to_vec(),
    }
    .encode_block()?;
    let finish = async {
        let (block, mut resp, leftover) = step(RequestBody::block(reply)).await?;
        // The block was the whole body only if nothing follows it.
        let rest = read_rest(&mut resp, leftover, 0).await?;
        Ok::<_, XftpClientError>((block, rest))
    };
    let (block, rest) = timeout(options.handshake_timeout, finish)
        .await
        .map_err(|_| XftpClientError::Timeout(TimeoutKind::Handshake))??;
    if block.is_empty() && rest.is_some() {
        return Ok((version, Some(key)));
    }
    Err(match bare_error_word(&block) {
        Some(word) => HandshakeError::ServerError {
            word: word.into(),
            error: crate::xftp::XftpErrorType::decode(word.as_bytes()),
        }
        .into(),
        None => XftpClientError::HandshakeRejected,
    })
}

/// The reference client's checks of the server handshake block
/// (`processServerHandshake`), with the TLS leaf certificate as the key
/// that must have signed the session key.
fn check_server_handshake(
    block: &[u8],
    session_id: &SessionId,
    tls_leaf: Option<&[u8]>,
    key_hash: &[u8; 32],
) -> Result<(u16, PublicKey), XftpClientError> {
    let hs = ServerHandshake::decode_block(block)?;
    let leaf = tls_leaf.ok_or(HandshakeError::ChainLength(0))?;
    let leaf_key = certificate_public_key(leaf).map_err(HandshakeError::Certificate)?;
    Ok(hs.check(
        session_id.as_ref(),
        &leaf_key,
        key_hash,
        &SUPPORTED_VERSIONS,
    )?)
}

#[cfg(test)]
mod tests;
