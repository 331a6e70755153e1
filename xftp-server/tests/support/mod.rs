//! Helpers for the acceptance tests: an in-process server on an ephemeral
//! loopback port, our client connected to it, chunks, and a raw HTTP/2
//! client that builds requests byte by byte.
#![allow(dead_code)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use smp_core::address::ServerAddress;
use smp_core::client::xftp::{XftpClient, XftpClientError, XftpClientOptions};
use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::tls::{self, KeyHash, ServerIdentity, TlsError};
use smp_core::xftp::command::{FileCommand, FileInfo};
use smp_core::xftp::error::XftpErrorType;
use smp_core::xftp::handshake::{ClientHandshake, ServerHandshake};
use smp_core::xftp::response::FileResponse;
use smp_core::xftp::transmission::{AuthKey, decode_response_block, encode_command_block};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xftp_server::app::{RunningServer, Settings, start};

/// How long a test waits for something the server does in the background.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A temporary directory with a `files` chunk directory and a server
/// identity; starts servers from [`Settings`] built on them.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub identity: ServerIdentity,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
        Self { dir, identity }
    }

    pub fn files_dir(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    pub fn store_log(&self) -> PathBuf {
        self.dir.path().join("file-server-store.log")
    }

    /// Reference defaults, port 0, this env's chunk directory.
    pub fn settings(&self) -> Settings {
        Settings::new(
            self.identity.clone(),
            "127.0.0.1:0".parse().unwrap(),
            self.files_dir(),
        )
    }

    pub async fn start(&self, settings: Settings) -> Server {
        Server {
            key_hash: self.identity.fingerprint(),
            fingerprint: self.identity.fingerprint_b64(),
            running: start(settings).await.expect("server starts"),
        }
    }

    pub async fn start_default(&self) -> Server {
        self.start(self.settings()).await
    }
}

pub struct Server {
    pub running: RunningServer,
    pub key_hash: KeyHash,
    pub fingerprint: String,
}

impl Server {
    pub fn address(&self) -> ServerAddress {
        format!(
            "xftp://{}@127.0.0.1:{}",
            self.fingerprint,
            self.running.addr.port()
        )
        .parse()
        .unwrap()
    }

    /// Our client, handshaken (version 3).
    pub async fn client(&self) -> XftpClient {
        let c = XftpClient::connect(&self.address(), XftpClientOptions::default())
            .await
            .expect("client connects");
        assert_eq!(c.version(), 3);
        c
    }

    pub async fn raw(&self) -> RawConn {
        RawConn::connect(self, Some(tls::ALPN_XFTP))
            .await
            .expect("raw connection")
    }

    /// A raw connection that has done the XFTP handshake.
    pub async fn raw_handshaken(&self) -> RawConn {
        let c = self.raw().await;
        c.handshake(&self.key_hash).await;
        c
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// Deterministic chunk content.
pub fn chunk(size: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn info(snd: &PrivateKey, content: &[u8]) -> FileInfo {
    FileInfo {
        snd_key: snd.public_key(),
        size: content.len() as u32,
        digest: sha256(content).to_vec(),
    }
}

pub fn ed25519() -> PrivateKey {
    PrivateKey::generate(KeyAlgorithm::Ed25519)
}

/// A registered chunk: keys and IDs.
pub struct Chunk {
    pub content: Vec<u8>,
    pub snd: PrivateKey,
    pub sid: Vec<u8>,
    pub rcv: Vec<PrivateKey>,
    pub rids: Vec<Vec<u8>>,
}

impl Chunk {
    pub fn size(&self) -> u32 {
        self.content.len() as u32
    }
}

/// FNEW with `n` Ed25519 recipients.
pub async fn create(client: &XftpClient, content: Vec<u8>, n: usize) -> Chunk {
    let snd = ed25519();
    let rcv: Vec<PrivateKey> = (0..n).map(|_| ed25519()).collect();
    let (sid, rids) = client
        .create_file(
            &snd,
            info(&snd, &content),
            rcv.iter().map(PrivateKey::public_key).collect(),
            None,
        )
        .await
        .expect("FNEW");
    assert_eq!(sid.len(), 16);
    assert!(rids.iter().all(|r| r.len() == 16));
    Chunk {
        content,
        snd,
        sid,
        rcv,
        rids,
    }
}

pub async fn upload(client: &XftpClient, c: &Chunk) -> Result<(), XftpClientError> {
    client
        .upload_chunk(
            &c.sid,
            &c.snd,
            std::io::Cursor::new(c.content.clone()),
            c.size(),
        )
        .await
}

/// FNEW + FPUT.
pub async fn create_uploaded(client: &XftpClient, content: Vec<u8>, n: usize) -> Chunk {
    let c = create(client, content, n).await;
    upload(client, &c).await.expect("FPUT");
    c
}

/// FGET by recipient `i`; returns the decrypted bytes.
pub async fn download(
    client: &XftpClient,
    c: &Chunk,
    i: usize,
) -> Result<Vec<u8>, XftpClientError> {
    let mut out = Vec::new();
    client
        .download_chunk(
            &c.rids[i],
            &c.rcv[i],
            c.size(),
            &sha256(&c.content),
            &mut out,
        )
        .await?;
    Ok(out)
}

/// Asserts that `r` is the protocol error `want`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(r: Result<T, XftpClientError>, want: XftpErrorType) {
    match r {
        Err(XftpClientError::Protocol(e)) if e == want => {}
        other => panic!("expected ERR {want:?}, got {other:?}"),
    }
}

/// Names of the files in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Polls `cond` until it holds or [`PATIENCE`] runs out.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub type RawBody = UnsyncBoxBody<Bytes, Infallible>;

/// A hand-driven XFTP connection: TLS (pinned, no SNI) with a chosen ALPN,
/// HTTP/2 with prior knowledge, and bodies built byte by byte.
pub struct RawConn {
    sender: SendRequest<RawBody>,
    pub session_id: [u8; 32],
    pub alpn: Option<Vec<u8>>,
    conn: JoinHandle<()>,
    /// The socket, to close it for real when dropped: hyper runs the
    /// HTTP/2 connection in a task of its own that outlives `conn` while
    /// requests are still out.
    socket: std::net::TcpStream,
}

impl Drop for RawConn {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        self.conn.abort();
    }
}

/// A raw response: status and the whole body.
pub struct RawResponse {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl RawConn {
    /// `alpn = None` sends no ALPN extension at all.
    pub async fn connect(server: &Server, alpn: Option<&[u8]>) -> Result<Self, TlsError> {
        Self::connect_to(server.running.addr, server.key_hash, alpn).await
    }

    /// To any server (such as the binary in a child process).
    pub async fn connect_to(
        addr: std::net::SocketAddr,
        key_hash: KeyHash,
        alpn: Option<&[u8]>,
    ) -> Result<Self, TlsError> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let tcp = tcp.into_std().unwrap();
        let socket = tcp.try_clone().unwrap();
        let tcp = TcpStream::from_std(tcp).unwrap();
        let mut cfg = tls::client_config(key_hash, alpn.unwrap_or(b"xftp/1"))?;
        if alpn.is_none() {
            cfg.alpn_protocols.clear();
        }
        let tls = tls::connect_with_config(tcp, &cfg).await?;
        let session_id = tls.session_id().0;
        let alpn = tls.alpn().map(<[u8]>::to_vec);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            session_id,
            alpn,
            conn,
            socket,
        })
    }

    /// Whether the server (or we) closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.conn.is_finished()
    }

    /// Cuts the TCP connection at once (no HTTP/2 or TLS goodbye).
    pub fn cut(self) {
        self.conn.abort();
    }

    async fn send(&self, body: RawBody) -> RawResponse {
        let mut sender = self.sender.clone();
        sender.ready().await.expect("connection ready");
        let req = Request::builder()
            .method(Method::POST)
            .uri("https://127.0.0.1/")
            .body(body)
            .unwrap();
        let resp = tokio::time::timeout(PATIENCE, async {
            let resp = sender.send_request(req).await.expect("response");
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .expect("response body")
                .to_bytes();
            RawResponse {
                status,
                body: body.to_vec(),
            }
        })
        .await
        .expect("server answers in time");
        assert_eq!(resp.status, StatusCode::OK, "every XFTP answer is 200");
        resp
    }

    /// POST with `body` as one buffer.
    pub async fn post(&self, body: impl Into<Bytes>) -> RawResponse {
        self.send(Full::new(body.into()).boxed_unsync()).await
    }

    /// POST whose body is sent as these separate DATA frames.
    pub async fn post_frames(&self, frames: Vec<Bytes>) -> RawResponse {
        let stream = futures_util::stream::iter(
            frames
                .into_iter()
                .map(|b| Ok::<_, Infallible>(Frame::data(b))),
        );
        self.send(StreamBody::new(stream).boxed_unsync()).await
    }

    /// Starts a POST whose body is fed through the returned sender; the
    /// body ends when the sender is dropped.
    pub fn post_streaming(&self) -> (mpsc::Sender<Bytes>, JoinHandle<Option<RawResponse>>) {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let body = StreamBody::new(stream).boxed_unsync();
        let mut sender = self.sender.clone();
        let task = tokio::spawn(async move {
            sender.ready().await.ok()?;
            let req = Request::builder()
                .method(Method::POST)
                .uri("https://127.0.0.1/")
                .body(body)
                .unwrap();
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status();
            let body = resp.into_body().collect().await.ok()?.to_bytes().to_vec();
            Some(RawResponse { status, body })
        });
        (tx, task)
    }

    /// The XFTP handshake by hand: empty hello, check the server block,
    /// send the client handshake for version 3, expect an empty answer.
    pub async fn handshake(&self, key_hash: &KeyHash) -> ServerHandshake {
        let hello = self.post(Bytes::new()).await;
        assert_eq!(hello.body.len(), 16384);
        let hs = ServerHandshake::decode_block(&hello.body).expect("server handshake");
        assert_eq!(hs.session_id, self.session_id);
        assert_eq!(hs.cert_chain.len(), 2);
        let reply = ClientHandshake {
            version: 3,
            key_hash: key_hash.to_vec(),
        }
        .encode_block()
        .unwrap();
        let done = self.post(reply).await;
        assert!(
            done.body.is_empty(),
            "handshake accepted with an empty body"
        );
        hs
    }

    /// A request block for this connection's session.
    pub fn block(&self, entity_id: &[u8], cmd: &FileCommand, key: Option<&PrivateKey>) -> Vec<u8> {
        encode_command_block(
            &self.session_id,
            b"",
            entity_id,
            cmd,
            key.map(AuthKey::Sign),
        )
        .unwrap()
    }

    /// Decodes a response block for this session (bare words are errors).
    pub fn response(&self, body: &[u8]) -> FileResponse {
        assert_eq!(body.len(), 16384, "a response block is 16384 bytes");
        let t = decode_response_block(body, &self.session_id).expect("a response transmission");
        t.response.expect("a well-formed response")
    }

    /// Sends one block (plus `extra` body bytes) and decodes the answer.
    pub async fn request(&self, block: Vec<u8>, extra: &[u8]) -> FileResponse {
        let mut body = block;
        body.extend_from_slice(extra);
        let r = self.post(body).await;
        self.response(&r.body)
    }

    pub async fn command(
        &self,
        entity_id: &[u8],
        cmd: &FileCommand,
        key: Option<&PrivateKey>,
    ) -> FileResponse {
        self.request(self.block(entity_id, cmd, key), &[]).await
    }

    pub async fn ping(&self) -> FileResponse {
        self.command(b"", &FileCommand::Ping, None).await
    }
}

/// FGET's argument: a fresh X25519 key.
pub fn fget() -> FileCommand {
    FileCommand::Fget {
        rcv_dh_key: PrivateKey::generate(KeyAlgorithm::X25519).public_key(),
    }
}

pub fn keys(k: &[&PrivateKey]) -> Vec<PublicKey> {
    k.iter().map(|k| k.public_key()).collect()
}
