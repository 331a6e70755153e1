//! The network shell: TLS 1.3, HTTP/2, the XFTP handshake, and moving
//! blocks and chunk bodies between sockets and the command handler.
//!
//! Every XFTP exchange is one HTTP/2 request whose body starts with a
//! 16384-byte block; whatever follows is the chunk of an FPUT. Responses
//! are always `200`: errors travel inside the body.

use crate::handler::{Handler, Reply};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::encoding::pad::{BLOCK_SIZE, pad};
use smp_core::tls::{self, ServerIdentity};
use smp_core::xftp::handshake::{
    ClientHandshake, SUPPORTED_VERSIONS, ServerHandshake, sign_session_key,
};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The reference drops a connection whose TLS setup takes longer.
const TLS_SETUP_TIMEOUT: Duration = Duration::from_secs(60);

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// What the network shell needs besides the handler.
pub struct Transport {
    pub tls: Arc<rustls::ServerConfig>,
    /// Signs the per-session X25519 key (the TLS leaf key, `server.key`).
    pub leaf_key: PrivateKey,
    pub chain: Vec<Vec<u8>>,
    pub fingerprint: [u8; 32],
}

impl Transport {
    pub fn new(identity: &ServerIdentity, leaf_key: PrivateKey) -> Result<Self, tls::TlsError> {
        Ok(Self {
            tls: Arc::new(tls::server_config(identity, tls::XFTP_SERVER_ALPN)?),
            leaf_key,
            chain: identity.chain().iter().map(|c| c.to_vec()).collect(),
            fingerprint: identity.fingerprint(),
        })
    }
}

/// How a connection's requests are treated, decided by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `xftp/1` or `http/1.1`: the XFTP handshake first.
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
    loop {
        let (tcp, _peer): (TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (transport, handler, shutdown) = (transport.clone(), handler.clone(), shutdown.clone());
        let requests = tracker.clone();
        tracker.spawn(async move {
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
    let mode = match conn.alpn() {
        Some(b"xftp/1") | Some(b"http/1.1") => Mode::Handshake,
        None => Mode::NoHandshake,
        Some(_) => Mode::Ignore,
    };
    let session = Arc::new(Session {
        session_id: conn.session_id().0,
        mode,
        state: Mutex::new(HandshakeState::None),
    });
    let service = service_fn(move |req: Request<Incoming>| {
        let (transport, handler, session) = (transport.clone(), handler.clone(), session.clone());
        let requests = requests.clone();
        async move { Ok::<_, Infallible>(request(req, &transport, handler, &session, &requests).await) }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_frame_size(1 << 16);
    let served = builder.serve_connection(TokioIo::new(conn), service);
    tokio::pin!(served);
    tokio::select! {
        r = served.as_mut() => r?,
        _ = shutdown.cancelled() => {
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
    if session.mode == Mode::Ignore {
        return ok(Empty::new().map_err(|e| match e {}).boxed_unsync());
    }
    let (block, upload) = match split_body(req.into_body()).await {
        Ok(b) => b,
        // The stream broke before a block arrived; nobody is listening.
        Err(_) => return ok(Empty::new().map_err(|e| match e {}).boxed_unsync()),
    };
    let ctx = match session.mode {
        Mode::NoHandshake => SessionContext {
            session_id: session.session_id,
            version: 1,
            session_key: None,
        },
        _ => match handshake_step(&block, transport, session) {
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
        Err(_) => return ok(Empty::new().map_err(|e| match e {}).boxed_unsync()),
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
/// or the context for a command once the handshake is accepted.
fn handshake_step(block: &[u8], transport: &Transport, session: &Session) -> Step {
    let mut state = session.state.lock().unwrap_or_else(|p| p.into_inner());
    match &*state {
        HandshakeState::None => {
            if !block.is_empty() {
                return Step::Reply(bare_error("HANDSHAKE"));
            }
            let session_key = PrivateKey::generate(KeyAlgorithm::X25519);
            let reply = sign_session_key(&session_key.public_key(), &transport.leaf_key)
                .map_err(|_| ())
                .and_then(|signed_key| {
                    ServerHandshake {
                        version_range: SUPPORTED_VERSIONS,
                        session_id: session.session_id.to_vec(),
                        cert_chain: transport.chain.clone(),
                        signed_key,
                        web_identity_proof: None,
                    }
                    .encode_block()
                    .map_err(|_| ())
                });
            match reply {
                Ok(b) => {
                    *state = HandshakeState::Sent { session_key };
                    Step::Reply(ok(full(b)))
                }
                Err(()) => Step::Reply(bare_error("INTERNAL")),
            }
        }
        HandshakeState::Sent { session_key } => {
            let accepted = ClientHandshake::decode_block(block)
                .and_then(|h| h.accept(&SUPPORTED_VERSIONS, &transport.fingerprint));
            match accepted {
                Ok(version) => {
                    *state = HandshakeState::Accepted {
                        version,
                        session_key: session_key.clone(),
                    };
                    Step::Reply(ok(Empty::new().map_err(|e| match e {}).boxed_unsync()))
                }
                Err(_) => Step::Reply(bare_error("HANDSHAKE")),
            }
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
