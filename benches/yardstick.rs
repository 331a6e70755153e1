//! The yardsticks for `xftp send` and `xftp recv`: exactly the work the
//! protocol makes mandatory per byte, with ideal overlap and no protocol
//! logic (no commands, signatures, retries, temporary files or
//! descriptions), over the same crypto backend, TLS and HTTP/2 stack.
//!
//! * send: file encryption ∥ SHA-512 ∥ SHA-256 per chunk, each chunk PUT as
//!   soon as it is ready over HTTP/2 to a server that SHA-256s the body
//!   (an XFTP server must check the chunk digest) and drops it.
//! * recv: a server that transit-encrypts stored chunks (XSalsa20-Poly1305
//!   under a fresh key per request) → TLS/HTTP/2 → transit decrypt and
//!   SHA-256 of the chunk → file decryption ∥ SHA-512, in chunk order.
//!
//! Both use three connections (three servers, as the CLI bench) with up to
//! four requests in flight on each: more than the CLI's three chunks at a
//! time, which can only favour the yardstick.

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::crypto::secretbox::{CbNonce, SbKey, SbStream};
use smp_core::file::chunks::{ChunkSpec, prepare_chunk_specs};
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{decrypt_file, encrypt_file_by_chunk};
use smp_core::tls::{self, ServerIdentity};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

const CONNECTIONS: usize = 3;
const PER_CONNECTION: usize = 4;

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// What one yardstick server does with a request.
#[derive(Clone)]
enum Role {
    /// Hash the PUT body and drop it.
    Discard,
    /// Answer `GET /<i>` with chunk `i` of the file, transit-encrypted.
    Serve(Arc<StoredFile>),
}

struct StoredFile {
    path: PathBuf,
    specs: Vec<ChunkSpec>,
}

async fn handle(role: Role, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    match role {
        Role::Discard => {
            let mut body = req.into_body();
            let mut h = Sha256::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.expect("upload body").into_data() {
                    h.update(&data);
                }
            }
            std::hint::black_box(h.finalize());
            Response::new(Full::new(Bytes::new()))
        }
        Role::Serve(file) => {
            let i: usize = req.uri().path()[1..].parse().expect("chunk index");
            let spec = file.specs[i];
            let path = file.path.clone();
            let mut buf = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; spec.size as usize];
                std::fs::File::open(path)
                    .unwrap()
                    .read_exact_at(&mut buf, spec.offset)
                    .unwrap();
                buf
            })
            .await
            .unwrap();
            let mut s = SbStream::new(&transit_key(i), &CbNonce([3; 24]));
            s.encrypt(&mut buf);
            buf.extend_from_slice(&s.tag());
            Response::new(Full::new(Bytes::from(buf)))
        }
    }
}

/// A fresh transit key per chunk (in XFTP it comes from a DH per request).
fn transit_key(i: usize) -> [u8; 32] {
    let mut k = [9u8; 32];
    k[..8].copy_from_slice(&(i as u64).to_le_bytes());
    k
}

/// Starts a yardstick server on 127.0.0.1 with the XFTP server's TLS and
/// HTTP/2 settings; returns its port and fingerprint.
async fn server(role: Role) -> (u16, tls::KeyHash) {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
    let cfg = Arc::new(tls::server_config(&identity, tls::XFTP_SERVER_ALPN).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (cfg, role) = (cfg.clone(), role.clone());
            tokio::spawn(async move {
                let Ok(conn) = tls::accept(tcp, &cfg).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let role = role.clone();
                    async move { Ok::<_, Infallible>(handle(role, req).await) }
                });
                let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                b.initial_stream_window_size(1 << 20)
                    .initial_connection_window_size(4 << 20)
                    .max_frame_size(1 << 16)
                    .max_send_buf_size(128 << 10);
                let _ = b.serve_connection(TokioIo::new(conn), service).await;
            });
        }
    });
    (port, identity.fingerprint())
}

/// Three HTTP/2 connections with the XFTP client's settings.
async fn connect(port: u16, fp: tls::KeyHash) -> Vec<Sender> {
    let mut out = Vec::new();
    for _ in 0..CONNECTIONS {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let tls = tls::connect(tcp, fp, tls::ALPN_XFTP).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(1 << 16)
            .handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        out.push(sender);
    }
    out
}

/// The encrypted bytes of the chunk being written, handed out whole, in
/// buffers that are reused (as the CLI does, so neither pays for fresh
/// 4 MiB allocations).
#[derive(Clone)]
struct Collector(Arc<Mutex<Vec<u8>>>, Arc<Mutex<Vec<Vec<u8>>>>);

impl Write for Collector {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut cur = self.0.lock().unwrap();
        if cur.capacity() == 0 {
            *cur = self.1.lock().unwrap().pop().unwrap_or_default();
            cur.clear();
        }
        cur.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// MiB/s (of plaintext) of the send yardstick over `len` bytes of `src`.
pub async fn send(src: impl Read + Send + 'static, len: u64) -> f64 {
    let (port, fp) = server(Role::Discard).await;
    let senders = connect(port, fp).await;
    let t = Instant::now();
    let (tx, mut rx) = mpsc::channel::<(usize, Vec<u8>)>(4);
    let spare = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(Arc::default(), spare.clone());
    let encryption = {
        let c = collector.clone();
        tokio::task::spawn_blocking(move || {
            encrypt_file_by_chunk(
                src,
                len,
                &FileHeader::new("bench.bin"),
                &SbKey([1; 32]),
                &CbNonce([2; 24]),
                c.clone(),
                |i, _digest| {
                    let chunk = std::mem::take(&mut *c.0.lock().unwrap());
                    tx.blocking_send((i, chunk)).is_ok()
                },
            )
            .unwrap()
        })
    };
    let slots = Arc::new(Semaphore::new(CONNECTIONS * PER_CONNECTION));
    let mut puts = tokio::task::JoinSet::new();
    while let Some((i, chunk)) = rx.recv().await {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let mut s = senders[i % CONNECTIONS].clone();
        let spare = spare.clone();
        puts.spawn(async move {
            let body = Bytes::from(chunk);
            let req = Request::put(format!("/{i}"))
                .body(Full::new(body.clone()))
                .unwrap();
            s.ready().await.unwrap();
            let resp = s.send_request(req).await.unwrap();
            assert!(resp.status().is_success());
            if let Ok(b) = body.try_into_mut() {
                spare.lock().unwrap().push(Vec::from(b));
            }
            drop(permit);
        });
    }
    encryption.await.unwrap();
    while let Some(r) = puts.join_next().await {
        r.unwrap();
    }
    (len >> 20) as f64 / t.elapsed().as_secs_f64()
}

/// Writes the encrypted form of `src` to `path` (what the recv yardstick's
/// servers hold); returns the chunk specs.
pub fn store_encrypted(src: impl Read, len: u64, path: &Path) -> Vec<ChunkSpec> {
    let f = std::fs::File::create(path).unwrap();
    let e = smp_core::file::stream::encrypt_file(
        src,
        len,
        &FileHeader::new("bench.bin"),
        &SbKey([1; 32]),
        &CbNonce([2; 24]),
        io::BufWriter::with_capacity(1 << 20, f),
    )
    .unwrap();
    prepare_chunk_specs(&e.chunk_sizes)
}

/// Hands the chunks to the file decryption in order.
struct InOrder<I> {
    rx: I,
    cur: Bytes,
}

impl<I: Iterator<Item = Bytes>> Read for InOrder<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.next() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// MiB/s (of plaintext, `len`) of the recv yardstick over the file that
/// [`store_encrypted`] wrote to `path`.
pub async fn recv(path: &Path, specs: Vec<ChunkSpec>, len: u64) -> f64 {
    let enc_size: u64 = specs.iter().map(|s| u64::from(s.size)).sum();
    let digests: Vec<[u8; 32]> = {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(path).unwrap();
        specs
            .iter()
            .map(|s| {
                let mut b = vec![0u8; s.size as usize];
                f.read_exact_at(&mut b, s.offset).unwrap();
                Sha256::digest(&b).into()
            })
            .collect()
    };
    let n = specs.len();
    let stored = Arc::new(StoredFile {
        path: path.to_path_buf(),
        specs,
    });
    let (port, fp) = server(Role::Serve(stored)).await;
    let senders = connect(port, fp).await;
    let t = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Bytes>(CONNECTIONS * PER_CONNECTION);
    let decryption = tokio::task::spawn_blocking(move || {
        let (_, _digest) = decrypt_file(
            InOrder {
                rx: std::iter::from_fn(move || rx.blocking_recv()),
                cur: Bytes::new(),
            },
            enc_size,
            &SbKey([1; 32]),
            &CbNonce([2; 24]),
            crate::support::Count(0),
        )
        .expect("the yardstick's file decrypts");
    });
    // Requests in flight plus chunks waiting for the in-order decryption
    // are bounded together, as in the CLI's memory budget.
    let slots = Arc::new(Semaphore::new(CONNECTIONS * PER_CONNECTION));
    let mut gets = tokio::task::JoinSet::new();
    let mut waiting = std::collections::BTreeMap::new();
    let mut next = 0;
    let mut i = 0;
    while next < n {
        tokio::select! {
            permit = slots.clone().acquire_owned(), if i < n => {
                let permit = permit.unwrap();
                let mut s = senders[i % CONNECTIONS].clone();
                let (k, digest) = (i, digests[i]);
                i += 1;
                gets.spawn(async move {
                    let req = Request::get(format!("/{k}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    s.ready().await.unwrap();
                    let resp = s.send_request(req).await.unwrap();
                    let mut buf = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
                    let tag = buf.split_off(buf.len() - 16);
                    let mut st = SbStream::new(&transit_key(k), &CbNonce([3; 24]));
                    st.decrypt(&mut buf);
                    st.verify(&tag).expect("transit tag");
                    assert_eq!(<[u8; 32]>::from(Sha256::digest(&buf)), digest);
                    (k, Bytes::from(buf), permit)
                });
            }
            Some(r) = gets.join_next() => {
                let (k, b, permit) = r.unwrap();
                waiting.insert(k, (b, permit));
                while let Some((b, permit)) = waiting.remove(&next) {
                    tx.send(b).await.unwrap();
                    drop(permit);
                    next += 1;
                }
            }
        }
    }
    drop(tx);
    decryption.await.unwrap();
    (len >> 20) as f64 / t.elapsed().as_secs_f64()
}
