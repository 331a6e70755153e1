//! The network shell: TLS 1.3, HTTP/2, the XFTP handshake, and moving
//! blocks and chunk bodies between sockets and the command handler.
//!
//! Every XFTP exchange is one HTTP/2 request whose body starts with a
//! 16384-byte block; whatever follows is the chunk of an FPUT. Responses
//! are always `200`: errors travel inside the body.

use crate::handler::{Handler, Reply};
use crate::web::{self, StaticReply, WebCredential};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use smp_core::accept::{AcceptBackoff, ConnectionSlots};
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::encoding::pad::{BLOCK_SIZE, pad};
use smp_core::tls::{self, ServerIdentity};
use smp_core::xftp::handshake::{
    ClientHandshake, ClientHello, SUPPORTED_VERSIONS, ServerHandshake, sign_identity_proof,
    sign_session_key,
};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The reference drops a connection whose TLS setup takes longer.
const TLS_SETUP_TIMEOUT: Duration = Duration::from_secs(60);

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Bounds on what clients may hold open.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `[INACTIVE_CLIENTS]`: a connection with no request in flight and
    /// none started or answered for `ttl` is closed; checked every
    /// `check_interval`.
    pub inactive: Option<Inactive>,
    /// `[LIMITS] streams_per_connection`: HTTP/2 requests one connection
    /// may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub streams_per_connection: u32,
    /// `[LIMITS] concurrent_uploads` (server-wide).
    pub concurrent_uploads: usize,
    /// `[LIMITS] upload_stall_timeout`.
    pub upload_stall: Duration,
    /// `[LIMITS] max_connections`: connections open at once; more are
    /// closed as soon as they are accepted.
    pub max_connections: usize,
}

/// Default `[LIMITS] streams_per_connection`; our client uses 4 at once.
pub const DEFAULT_STREAMS_PER_CONNECTION: u32 = 64;

/// Default `[LIMITS] max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            inactive: None,
            streams_per_connection: DEFAULT_STREAMS_PER_CONNECTION,
            concurrent_uploads: crate::handler::DEFAULT_CONCURRENT_UPLOADS,
            upload_stall: crate::handler::DEFAULT_UPLOAD_STALL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Inactive {
    pub ttl: Duration,
    pub check_interval: Duration,
}

/// When a connection last did something, and whether it is doing
/// something now (a download streaming its body counts).
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened`.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        Some(self.opened.elapsed().saturating_sub(last))
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }

    /// Resolves once the connection has been idle for `cfg.ttl`.
    async fn expired(&self, cfg: Inactive) {
        loop {
            tokio::time::sleep(cfg.check_interval).await;
            if self.idle_for().is_some_and(|idle| idle >= cfg.ttl) {
                return;
            }
        }
    }
}

/// One request (and its response body) in flight.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the network shell needs besides the handler.
pub struct Transport {
    pub tls: Arc<rustls::ServerConfig>,
    /// Signs the per-session X25519 key (the TLS leaf key, `server.key`).
    pub leaf_key: PrivateKey,
    pub chain: Vec<Vec<u8>>,
    pub fingerprint: [u8; 32],
    /// Browser mode for clients that send SNI (`[WEB] cert`/`key` set).
    pub web: Option<WebMode>,
    pub limits: Limits,
}

/// Browser mode: the web credential and where SNI `GET`s are served from.
#[derive(Debug, Clone)]
pub struct WebMode {
    pub credential: WebCredential,
    pub static_path: Option<PathBuf>,
}

impl Transport {
    pub fn new(
        identity: &ServerIdentity,
        leaf_key: PrivateKey,
        web: Option<WebMode>,
    ) -> Result<Self, tls::TlsError> {
        let tls = match &web {
            None => tls::server_config(identity, tls::XFTP_SERVER_ALPN)?,
            Some(w) => web::server_config(identity, &w.credential, tls::XFTP_SERVER_ALPN)?,
        };
        Ok(Self {
            tls: Arc::new(tls),
            leaf_key,
            chain: identity.chain().iter().map(|c| c.to_vec()).collect(),
            fingerprint: identity.fingerprint(),
            web,
            limits: Limits::default(),
        })
    }
}

/// How a connection's requests are treated, decided by ALPN (and SNI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `xftp/1` or `http/1.1`, or `h2` with SNI in web mode: the XFTP
    /// handshake first.
    Handshake,
    /// No ALPN: version 1, no handshake, no session key.
    NoHandshake,
    /// Another protocol (`h2` without SNI): every request gets an empty 200.
    Ignore,
}

enum HandshakeState {
    None,
    Sent {
        session_key: PrivateKey,
    },
    Accepted {
        version: u16,
        session_key: PrivateKey,
    },
}

/// Per-connection state; dropped with the connection.
pub struct Session {
    pub session_id: [u8; 32],
    mode: Mode,
    /// The client sent SNI and the server has web credentials: browser
    /// mode (web hello, CORS, OPTIONS and static GETs).
    sni: bool,
    state: Mutex<HandshakeState>,
}

/// What a command is processed with.
pub struct SessionContext {
    pub session_id: [u8; 32],
    pub version: u16,
    pub session_key: Option<PrivateKey>,
}

/// Runs the server on `listener` until `shutdown` is cancelled, then waits
/// for the connections in flight.
pub async fn serve(
    listener: TcpListener,
    transport: Arc<Transport>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    let slots = ConnectionSlots::new(transport.limits.max_connections);
    loop {
        let (tcp, _peer): (TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => {
                    backoff.succeeded();
                    c
                }
                Err(e) => {
                    // Out of descriptors and the like: wait longer each
                    // time, warn once a minute, keep serving.
                    let wait = backoff.failed(&e);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            },
        };
        let Some(slot) = slots.take() else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (transport, handler, shutdown) = (transport.clone(), handler.clone(), shutdown.clone());
        let requests = tracker.clone();
        tracker.spawn(async move {
            let _slot = slot;
            // Peer addresses are deliberately never logged.
            if let Err(e) = connection(tcp, transport, handler, shutdown, requests).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    tcp: TcpStream,
    transport: Arc<Transport>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
    requests: TaskTracker,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let conn = tokio::time::timeout(TLS_SETUP_TIMEOUT, tls::accept(tcp, &transport.tls)).await??;
    // Without web credentials SNI is ignored, as in the reference.
    let sni = transport.web.is_some() && conn.server_name().is_some();
    let mode = match conn.alpn() {
        Some(b"xftp/1") | Some(b"http/1.1") => Mode::Handshake,
        Some(b"h2") if sni => Mode::Handshake,
        None => Mode::NoHandshake,
        Some(_) => Mode::Ignore,
    };
    let session = Arc::new(Session {
        session_id: conn.session_id().0,
        mode,
        sni,
        state: Mutex::new(HandshakeState::None),
    });
    let activity = Activity::new();
    let inactive = transport.limits.inactive;
    let streams = transport.limits.streams_per_connection;
    let service = service_fn({
        let activity = activity.clone();
        move |req: Request<Incoming>| {
            let (transport, handler, session) =
                (transport.clone(), handler.clone(), session.clone());
            let requests = requests.clone();
            let busy = activity.begin();
            async move {
                let r = request(req, &transport, handler, &session, &requests).await;
                // The response body keeps the connection busy while it streams.
                let (parts, body) = r.into_parts();
                let body = body
                    .map_frame(move |f| {
                        busy.0.touch();
                        f
                    })
                    .boxed_unsync();
                Ok::<_, Infallible>(Response::from_parts(parts, body))
            }
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_concurrent_streams(streams)
        .max_frame_size(1 << 16)
        // What one stream may queue before the socket takes it: with many
        // downloads at once this, not the chunk size, sets the memory used.
        .max_send_buf_size(128 << 10);
    let served = builder.serve_connection(TokioIo::new(conn), service);
    tokio::pin!(served);
    let expired = async {
        match inactive {
            Some(cfg) => activity.expired(cfg).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = served.as_mut() => r?,
        _ = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await?;
        }
        _ = expired => {
            // Nothing in flight: GOAWAY, and the connection closes.
            served.as_mut().graceful_shutdown();
            served.await?;
        }
    }
    Ok(())
}

fn full(b: Vec<u8>) -> Body {
    Full::new(Bytes::from(b))
        .map_err(|e| match e {})
        .boxed_unsync()
}

fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

fn ok(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    r
}

/// A handshake-phase error: the padded bare word, not a transmission.
fn bare_error(word: &str) -> Response<Body> {
    ok(full(
        pad(word.as_bytes(), BLOCK_SIZE).expect("short words fit a block"),
    ))
}

/// Reads the first block of a request body; the rest of the body (any
/// bytes after the block, then the remaining frames) is returned unread.
async fn split_body(body: Incoming) -> Result<(Bytes, Upload), io::Error> {
    let mut stream = BodyStream::new(body);
    let mut block = BytesMut::with_capacity(BLOCK_SIZE);
    let mut extra = Bytes::new();
    while block.len() < BLOCK_SIZE {
        match stream.next().await {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    let want = BLOCK_SIZE - block.len();
                    if data.len() > want {
                        extra = data.split_off(want);
                    }
                    block.extend_from_slice(&data);
                }
            }
        }
    }
    let rest = stream.filter_map(|f| async move {
        match f {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(e) => Some(Err(io::Error::other(e))),
        }
    });
    let body = futures_util::stream::iter((!extra.is_empty()).then_some(Ok(extra))).chain(rest);
    Ok((block.freeze(), StreamReader::new(Box::pin(body))))
}

/// The part of a request body after its block, as bytes to read.
pub type Upload = StreamReader<
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, io::Error>> + Send>>,
    Bytes,
>;

async fn request(
    req: Request<Incoming>,
    transport: &Transport,
    handler: Arc<Handler>,
    session: &Session,
    requests: &TaskTracker,
) -> Response<Body> {
    if !session.sni {
        // Without SNI every method is an XFTP request.
        return xftp_request(req, transport, handler, session, requests).await;
    }
    match *req.method() {
        Method::OPTIONS => web::preflight(empty()),
        Method::GET => static_response(req, transport).await,
        _ => {
            let mut r = xftp_request(req, transport, handler, session, requests).await;
            web::add_cors(r.headers_mut());
            r
        }
    }
}

/// An SNI `GET`: a file from `[WEB] static_path`, or 404. (The reference
/// sends nothing at all when there is no file, leaving the stream open
/// until the client gives up; a 404 tells the browser at once.)
async fn static_response(req: Request<Incoming>, transport: &Transport) -> Response<Body> {
    let reply = match transport.web.as_ref().and_then(|w| w.static_path.as_ref()) {
        Some(root) => web::static_file(root, req.method(), req.uri().path()).await,
        None => StaticReply::NotFound,
    };
    let mut r = Response::new(empty());
    *r.status_mut() = reply.status();
    match reply {
        StaticReply::File {
            bytes,
            content_type,
        } => {
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            *r.body_mut() = full(bytes);
        }
        StaticReply::NotFound => *r.body_mut() = full(b"not found\n".to_vec()),
    }
    r
}

/// Which web-mode headers a request carries (only looked at with SNI).
#[derive(Debug, Clone, Copy, Default)]
struct WebHeaders {
    /// `xftp-web-hello`: a (re)started handshake with a challenge.
    hello: bool,
    /// `xftp-handshake`: a client handshake on an accepted session.
    handshake: bool,
}

impl WebHeaders {
    fn of(sni: bool, headers: &HeaderMap) -> Self {
        Self {
            hello: sni && headers.contains_key("xftp-web-hello"),
            handshake: sni && headers.contains_key("xftp-handshake"),
        }
    }
}

async fn xftp_request(
    req: Request<Incoming>,
    transport: &Transport,
    handler: Arc<Handler>,
    session: &Session,
    requests: &TaskTracker,
) -> Response<Body> {
    if session.mode == Mode::Ignore {
        return ok(empty());
    }
    let web_headers = WebHeaders::of(session.sni, req.headers());
    let (block, upload) = match split_body(req.into_body()).await {
        Ok(b) => b,
        // The stream broke before a block arrived; nobody is listening.
        Err(_) => return ok(empty()),
    };
    let ctx = match session.mode {
        Mode::NoHandshake => SessionContext {
            session_id: session.session_id,
            version: 1,
            session_key: None,
        },
        _ => match handshake_step(&block, transport, session, web_headers) {
            Step::Reply(r) => return r,
            Step::Command(ctx) => ctx,
        },
    };
    // hyper drops this future when the client resets the stream; the
    // command runs in its own task so that it always finishes: an upload
    // cut short removes its partial file and releases its quota
    // reservation, and a store change is never left without its log line.
    // The server's task tracker waits for it at stop.
    let work = requests.spawn(async move { handler.process(&ctx, &block, upload).await });
    let reply = match work.await {
        Ok(reply) => reply,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => return ok(empty()),
    };
    match reply {
        Reply::Block(b) => ok(full(b)),
        Reply::Stream { block, body } => {
            let head =
                futures_util::stream::once(async move { Ok(Frame::data(Bytes::from(block))) });
            let rest = body.map(|r| r.map(Frame::data));
            ok(BodyExt::boxed_unsync(StreamBody::new(head.chain(rest))))
        }
    }
}

enum Step {
    Reply(Response<Body>),
    Command(SessionContext),
}

/// The server side of the XFTP handshake (hello, then client handshake),
/// or the context for a command once the handshake is accepted. With SNI
/// (browser mode) a web hello may (re)start it at any point and there is
/// no implicit hello.
fn handshake_step(
    block: &[u8],
    transport: &Transport,
    session: &Session,
    web_headers: WebHeaders,
) -> Step {
    let mut state = session.state.lock().unwrap_or_else(|p| p.into_inner());
    if web_headers.hello {
        return web_hello(block, transport, session, &mut state);
    }
    match &*state {
        HandshakeState::None => {
            if session.sni {
                return Step::Reply(bare_error("SESSION"));
            }
            if !block.is_empty() {
                return Step::Reply(bare_error("HANDSHAKE"));
            }
            let session_key = PrivateKey::generate(KeyAlgorithm::X25519);
            match server_hello(transport, session, &session_key, None) {
                Ok(b) => {
                    *state = HandshakeState::Sent { session_key };
                    Step::Reply(ok(full(b)))
                }
                Err(()) => Step::Reply(bare_error("INTERNAL")),
            }
        }
        HandshakeState::Sent { session_key } => {
            let session_key = session_key.clone();
            client_handshake(block, transport, &mut state, session_key)
        }
        HandshakeState::Accepted { session_key, .. } if web_headers.handshake => {
            let session_key = session_key.clone();
            client_handshake(block, transport, &mut state, session_key)
        }
        HandshakeState::Accepted {
            version,
            session_key,
        } => Step::Command(SessionContext {
            session_id: session.session_id,
            version: *version,
            session_key: Some(session_key.clone()),
        }),
    }
}

/// A web hello (`xftp-web-hello`): empty, or a padded client hello with a
/// 32-byte challenge that the server signs together with the session id.
/// The session key is kept if there is one, so a restarted handshake has
/// the same signed key; the state goes back to "hello sent".
fn web_hello(
    block: &[u8],
    transport: &Transport,
    session: &Session,
    state: &mut HandshakeState,
) -> Step {
    let Ok(hello) = ClientHello::decode_body(block) else {
        return Step::Reply(bare_error("HANDSHAKE"));
    };
    let session_key = match state {
        HandshakeState::None => PrivateKey::generate(KeyAlgorithm::X25519),
        HandshakeState::Sent { session_key } | HandshakeState::Accepted { session_key, .. } => {
            session_key.clone()
        }
    };
    match server_hello(transport, session, &session_key, hello.web_challenge) {
        Ok(b) => {
            *state = HandshakeState::Sent { session_key };
            Step::Reply(ok(full(b)))
        }
        Err(()) => Step::Reply(bare_error("INTERNAL")),
    }
}

/// The padded server handshake: versions, session id, the XFTP chain (also
/// for SNI clients), the signed session key, and the identity proof when
/// the hello had a challenge.
fn server_hello(
    transport: &Transport,
    session: &Session,
    session_key: &PrivateKey,
    challenge: Option<[u8; smp_core::xftp::handshake::CHALLENGE_SIZE]>,
) -> Result<Vec<u8>, ()> {
    let signed_key =
        sign_session_key(&session_key.public_key(), &transport.leaf_key).map_err(|_| ())?;
    let web_identity_proof = challenge
        .map(|c| sign_identity_proof(&transport.leaf_key, &c, &session.session_id))
        .transpose()
        .map_err(|_| ())?;
    ServerHandshake {
        version_range: SUPPORTED_VERSIONS,
        session_id: session.session_id.to_vec(),
        cert_chain: transport.chain.clone(),
        signed_key,
        web_identity_proof,
    }
    .encode_block()
    .map_err(|_| ())
}

/// The client handshake: on success the session is accepted with the
/// client's version; on failure `HANDSHAKE` and the state is unchanged.
fn client_handshake(
    block: &[u8],
    transport: &Transport,
    state: &mut HandshakeState,
    session_key: PrivateKey,
) -> Step {
    let accepted = ClientHandshake::decode_block(block)
        .and_then(|h| h.accept(&SUPPORTED_VERSIONS, &transport.fingerprint));
    match accepted {
        Ok(version) => {
            *state = HandshakeState::Accepted {
                version,
                session_key,
            };
            Step::Reply(ok(empty()))
        }
        Err(_) => Step::Reply(bare_error("HANDSHAKE")),
    }
}
