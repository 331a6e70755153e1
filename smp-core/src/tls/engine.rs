//! The TLS 1.3 client without an OS: rustls' unbuffered connection over the
//! RustCrypto provider, pinned as SimpleX pins (the server's identity
//! certificate hash), with the tls-unique session id read from the records
//! it writes itself. Sans-IO: bytes from the socket go in, bytes for the
//! socket and decrypted application data come out, so a board's TCP stack
//! (or a test's `TcpStream`) drives it.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use rustls::client::{Resumption, UnbufferedClientConnection};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{ClientConfig, SupportedCipherSuite};
use zeroize::Zeroizing;

use super::SessionId;
use super::finished::{self, CAPTURE_LIMIT, SecretSlot, SessionIdError};
use super::rustcrypto;
use super::verifier::{KeyHash, PinError, PinnedServerVerifier};

/// The largest TLS record on the wire (RFC 8446 §5.2: 2^14 + 256 of
/// ciphertext and the 5-byte header); the incoming buffer holds one.
pub const MAX_RECORD: usize = (1 << 14) + 256 + 5;

/// What the engine offers: the reference's suite first.
pub const SUITES: &[SupportedCipherSuite] = &[
    rustcrypto::TLS13_CHACHA20_POLY1305_SHA256,
    rustcrypto::TLS13_AES_128_GCM_SHA256,
];

/// Why a connection ended. Each case means the socket should be closed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("server identity check failed: {0}")]
    Pin(PinError),
    #[error("TLS failed: {0}")]
    Tls(rustls::Error),
    #[error("session id: {0}")]
    SessionId(#[from] SessionIdError),
    #[error("TLS record buffer: {0}")]
    Buffer(&'static str),
    #[error("the connection is closed")]
    Closed,
}

impl From<rustls::Error> for EngineError {
    fn from(e: rustls::Error) -> Self {
        Self::Tls(e)
    }
}

/// The wall clock at connect time, for the certificate validity check.
#[derive(Debug)]
struct ConnectTime(UnixTime);

impl TimeProvider for ConnectTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// One client connection.
pub struct Client {
    conn: UnbufferedClientConnection,
    verifier: Arc<PinnedServerVerifier>,
    slot: Arc<SecretSlot>,
    /// Socket bytes not yet processed (at most one partial record after
    /// processing).
    incoming: Vec<u8>,
    filled: usize,
    /// TLS bytes for the socket.
    outgoing: Vec<u8>,
    /// Application data waiting for the handshake to finish.
    pending: Vec<u8>,
    /// Decrypted application data for the caller.
    plain: Vec<u8>,
    /// What the client sent until its Finished: tls-unique is read from it.
    capture: Option<Vec<u8>>,
    session_id: Option<SessionId>,
    peer_closed: bool,
    closed: bool,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("session_id", &self.session_id)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a handshake with a server pinned to `key_hash`, offering
    /// `alpn` (none when empty), with `now_secs` the Unix time. The
    /// ClientHello is in [`Client::outgoing`] on return.
    pub fn connect(key_hash: KeyHash, alpn: &[u8], now_secs: u64) -> Result<Self, EngineError> {
        let slot = Arc::new(SecretSlot::default());
        let verifier = Arc::new(PinnedServerVerifier::with_algorithms(
            key_hash,
            rustcrypto::ALGORITHMS,
        ));
        let mut cfg = ClientConfig::builder_with_details(
            rustcrypto::provider(SUITES),
            Arc::new(ConnectTime(UnixTime::since_unix_epoch(
                core::time::Duration::from_secs(now_secs),
            ))),
        )
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
        if !alpn.is_empty() {
            cfg.alpn_protocols = vec![alpn.to_vec()];
        }
        cfg.enable_sni = false;
        cfg.resumption = Resumption::disabled();
        cfg.key_log = slot.clone();
        // SNI is off, so the name is never sent; rustls only needs one.
        let name = ServerName::IpAddress(rustls::pki_types::IpAddr::V4(
            rustls::pki_types::Ipv4Addr::try_from("127.0.0.1").expect("a valid address"),
        ));
        let conn = UnbufferedClientConnection::new(Arc::new(cfg), name)?;
        let mut c = Self {
            conn,
            verifier,
            slot,
            incoming: vec![0; MAX_RECORD],
            filled: 0,
            outgoing: Vec::new(),
            pending: Vec::new(),
            plain: Vec::new(),
            capture: Some(Vec::new()),
            session_id: None,
            peer_closed: false,
            closed: false,
        };
        c.process()?;
        Ok(c)
    }

    /// Where the next socket read goes; report it with [`Client::received`].
    pub fn read_buf(&mut self) -> &mut [u8] {
        &mut self.incoming[self.filled..]
    }

    /// `n` bytes were read into [`Client::read_buf`]; processes them.
    pub fn received(&mut self, n: usize) -> Result<(), EngineError> {
        if n > self.incoming.len() - self.filled {
            return Err(EngineError::Buffer(
                "more bytes reported than the buffer holds",
            ));
        }
        self.filled += n;
        self.process()
    }

    /// Bytes to write to the socket; report what was written with [`Client::sent`].
    pub fn outgoing(&self) -> &[u8] {
        &self.outgoing
    }

    pub fn sent(&mut self, n: usize) {
        self.outgoing.drain(..n.min(self.outgoing.len()));
    }

    /// The tls-unique session id, once the handshake is done.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.session_id.as_ref()
    }

    /// The server's certificate chain (leaf first), once it was checked.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Encrypts application data into [`Client::outgoing`]; before the
    /// handshake is done it waits (copied) and goes as soon as it is.
    pub fn write(&mut self, data: &[u8]) -> Result<(), EngineError> {
        if self.closed {
            return Err(EngineError::Closed);
        }
        if self.session_id.is_none() || !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            return self.process();
        }
        // Established: straight from the caller's buffer, no copy.
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.incoming[..0]);
        match state {
            Ok(ConnectionState::WriteTraffic(mut w)) => {
                encrypt_into(&mut self.outgoing, |buf| w.encrypt(data, buf))
            }
            Ok(_) => {
                // Something else is due first (a key update, say).
                self.pending.extend_from_slice(data);
                self.process()
            }
            Err(e) => {
                self.closed = true;
                Err(EngineError::Tls(e))
            }
        }
    }

    /// Decrypted application data; take it with [`Client::consume`].
    pub fn plaintext(&self) -> &[u8] {
        &self.plain
    }

    pub fn consume(&mut self, n: usize) {
        self.plain.drain(..n.min(self.plain.len()));
    }

    /// The server sent close_notify: no more data will come.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Queues close_notify; nothing can be written after it.
    pub fn close(&mut self) -> Result<(), EngineError> {
        if self.closed || self.session_id.is_none() {
            self.closed = true;
            return Ok(());
        }
        self.closed = true;
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.incoming[..0]);
        if let ConnectionState::WriteTraffic(mut w) = state? {
            encrypt_into(&mut self.outgoing, |buf| w.queue_close_notify(buf))?;
        }
        Ok(())
    }

    /// Runs the state machine until it needs the socket.
    fn process(&mut self) -> Result<(), EngineError> {
        loop {
            let UnbufferedStatus { mut discard, state } = self
                .conn
                .process_tls_records(&mut self.incoming[..self.filled]);
            let mut again = false;
            let mut derive = false;
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    self.closed = true;
                    return Err(match self.verifier.rejection() {
                        Some(pin) => EngineError::Pin(pin),
                        None => EngineError::Tls(e),
                    });
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec?;
                        discard += rec.discard;
                        // Exact growth: a doubling Vec would hold 32 KiB
                        // for one 16 KiB block.
                        self.plain.reserve_exact(rec.payload.len());
                        self.plain.extend_from_slice(rec.payload);
                    }
                    again = true;
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    let start = self.outgoing.len();
                    let mut need = 1024;
                    loop {
                        self.outgoing
                            .reserve_exact((start + need).saturating_sub(self.outgoing.len()));
                        self.outgoing.resize(start + need, 0);
                        match e.encode(&mut self.outgoing[start..]) {
                            Ok(n) => {
                                self.outgoing.truncate(start + n);
                                break;
                            }
                            Err(EncodeError::InsufficientSize(s)) => need = s.required_size,
                            Err(EncodeError::AlreadyEncoded) => {
                                self.outgoing.truncate(start);
                                break;
                            }
                        }
                    }
                    if let Some(cap) = &mut self.capture {
                        if cap.len() + self.outgoing.len() - start > CAPTURE_LIMIT {
                            return Err(SessionIdError::CaptureOverflow.into());
                        }
                        cap.extend_from_slice(&self.outgoing[start..]);
                    }
                    again = true;
                }
                // The bytes wait in `outgoing` for the caller, who sends
                // them before anything written later.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    again = true;
                }
                ConnectionState::BlockedHandshake => {}
                // The handshake is done: the session id comes first (the
                // connection is borrowed by `w`, so on the next turn).
                ConnectionState::WriteTraffic(_) if self.session_id.is_none() => {
                    derive = true;
                    again = true;
                }
                ConnectionState::WriteTraffic(mut w) => {
                    if !self.pending.is_empty() {
                        let data = core::mem::take(&mut self.pending);
                        encrypt_into(&mut self.outgoing, |buf| w.encrypt(&data, buf))?;
                    }
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.peer_closed = true;
                }
                // Early data is server-side only; anything else is new in rustls.
                _ => return Err(EngineError::Buffer("unexpected TLS state")),
            }
            if discard > 0 {
                self.incoming.copy_within(discard..self.filled, 0);
                self.filled -= discard;
            }
            if derive {
                self.derive_session_id()?;
            }
            if !again {
                return Ok(());
            }
        }
    }

    fn derive_session_id(&mut self) -> Result<(), EngineError> {
        let captured = Zeroizing::new(self.capture.take().unwrap_or_default());
        let secret = self.slot.take().ok_or(SessionIdError::NoSecret)?;
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map(|s| u16::from(s.suite()))
            .ok_or(SessionIdError::NoSecret)?;
        let id = finished::derive_tls_unique(&secret, suite, &captured)?;
        let id =
            <[u8; 32]>::try_from(id.as_slice()).map_err(|_| SessionIdError::BadLength(id.len()))?;
        self.session_id = Some(SessionId(id));
        Ok(())
    }
}

/// Appends what `f` encrypts to `out`, growing it as rustls asks.
fn encrypt_into(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), EngineError> {
    let start = out.len();
    let mut need = 1024;
    loop {
        out.reserve_exact((start + need).saturating_sub(out.len()));
        out.resize(start + need, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) if s.required_size > need => {
                need = s.required_size
            }
            Err(_) => {
                out.truncate(start);
                return Err(EngineError::Buffer("record encryption refused"));
            }
        }
    }
}
