//! XFTP server throughput over loopback and its peak memory.
//!
//! Baseline, measured in the same run: the same bytes copied through a plain
//! rustls TLS 1.3 connection (our TLS stack, no HTTP/2, no XFTP). Then 256
//! chunks of 4 MiB are uploaded (FNEW + FPUT) and downloaded (FGET, which
//! re-encrypts every chunk for the recipient) with requests in flight on
//! one connection. Finally 100 clients download at once while the server's
//! peak RSS is read from /proc. The server runs in its own process.
//!
//! `cargo bench -p simplego-benches --bench xftp_server`
//! (`BENCH_CHUNKS=64` for a shorter run; `BENCH_QUICK=1`: 48 chunks).

mod support;

use smp_core::address::ServerAddress;
use smp_core::client::xftp::{XftpClient, XftpClientOptions};
use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::tls::{self, ServerIdentity};
use smp_core::xftp::command::FileInfo;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Goal, figure, peak_rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 4 << 20;
const IN_FLIGHT: usize = 8;

fn chunks() -> usize {
    std::env::var("BENCH_CHUNKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if support::quick() { 48 } else { 256 })
}

fn chunk_bytes(i: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..CHUNK).map(|j| ((j * 131 + i) % 251) as u8).collect();
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

/// The server process: `--server DIR` prints `READY <port> <fingerprint>`
/// and serves until its stdin closes.
fn server_child(dir: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = std::path::PathBuf::from(dir);
        let files = dir.join("files");
        std::fs::create_dir_all(&files).unwrap();
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
        let mut s = xftp_server::app::Settings::new(
            identity.clone(),
            "127.0.0.1:0".parse().unwrap(),
            files,
        );
        s.store_log = Some(dir.join("file-server-store.log"));
        let server = xftp_server::app::start(s).await.unwrap();
        support::announce_ready(&format!(
            "{} {}",
            server.addr.port(),
            identity.fingerprint_b64()
        ));
        tokio::task::spawn_blocking(support::wait_for_stdin_eof)
            .await
            .unwrap();
        server.stop().await;
    });
}

struct Server {
    child: Child,
    addr: ServerAddress,
}

impl Server {
    fn spawn(dir: &std::path::Path) -> Self {
        let args = ["--server".to_string(), dir.to_str().unwrap().to_string()];
        let (child, fields) = support::spawn_ready(&args);
        let addr = format!("xftp://{}@127.0.0.1:{}", fields[1], fields[0])
            .parse()
            .unwrap();
        Self { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// MiB/s of copying `n` chunks through plain TLS, upload and download.
async fn tls_baseline(n: usize) -> (f64, f64) {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
    let cfg = Arc::new(tls::server_config(&identity, tls::XFTP_SERVER_ALPN).unwrap());
    let fp = identity.fingerprint();
    let data = Arc::new(chunk_bytes(0));
    let mut rates = Vec::new();
    for upload in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cfg2, data2) = (cfg.clone(), data.clone());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut c = tls::accept(tcp, &cfg2).await.unwrap();
            if upload {
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0;
                while total < n * CHUNK {
                    let k = c.read(&mut buf).await.unwrap();
                    assert!(k > 0);
                    total += k;
                }
                c.write_all(b"k").await.unwrap();
            } else {
                for _ in 0..n {
                    c.write_all(&data2).await.unwrap();
                }
                c.flush().await.unwrap();
            }
        });
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = tls::connect(tcp, fp, tls::ALPN_XFTP).await.unwrap();
        let t = Instant::now();
        if upload {
            for _ in 0..n {
                c.write_all(&data).await.unwrap();
            }
            c.flush().await.unwrap();
            let mut ack = [0u8; 1];
            c.read_exact(&mut ack).await.unwrap();
        } else {
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            while total < n * CHUNK {
                let k = c.read(&mut buf).await.unwrap();
                assert!(k > 0);
                total += k;
            }
        }
        rates.push((n * CHUNK) as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64());
        server.await.unwrap();
    }
    (rates[0], rates[1])
}

struct Uploaded {
    rid: Vec<u8>,
    rcv: PrivateKey,
    digest: [u8; 32],
}

/// Uploads `n` chunks with `IN_FLIGHT` requests in flight; returns MiB/s.
async fn upload(client: &XftpClient, n: usize) -> (f64, Vec<Uploaded>) {
    let data: Vec<Arc<Vec<u8>>> = (0..IN_FLIGHT).map(|i| Arc::new(chunk_bytes(i))).collect();
    let digests: Vec<[u8; 32]> = data.iter().map(|d| sha256(d)).collect();
    let t = Instant::now();
    let mut out = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if tasks.len() >= IN_FLIGHT {
            out.push(tasks.join_next().await.unwrap().unwrap());
        }
        let (c, d) = (client.clone(), data[i % IN_FLIGHT].clone());
        // A sender knows each chunk's digest from encrypting the file.
        let digest = digests[i % IN_FLIGHT];
        tasks.spawn(async move {
            let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
            let rcv = PrivateKey::generate(KeyAlgorithm::Ed25519);
            let info = FileInfo {
                snd_key: snd.public_key(),
                size: CHUNK as u32,
                digest: digest.to_vec(),
            };
            let (sid, rids) = c
                .create_file(&snd, info, vec![rcv.public_key()], None)
                .await
                .unwrap();
            c.upload_chunk(&sid, &snd, std::io::Cursor::new(d.to_vec()), CHUNK as u32)
                .await
                .unwrap();
            Uploaded {
                rid: rids[0].clone(),
                rcv,
                digest,
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        out.push(r.unwrap());
    }
    (
        (n * CHUNK) as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64(),
        out,
    )
}

async fn download(clients: &[XftpClient], files: &[Uploaded], in_flight: usize) -> f64 {
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, f) in files.iter().enumerate() {
        if tasks.len() >= in_flight {
            tasks.join_next().await.unwrap().unwrap();
        }
        let c = clients[i % clients.len()].clone();
        let (rid, rcv, digest) = (f.rid.clone(), f.rcv.clone(), f.digest);
        tasks.spawn(async move {
            let mut sink = tokio::io::sink();
            c.download_chunk(&rid, &rcv, CHUNK as u32, &digest, &mut sink)
                .await
                .unwrap();
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    (files.len() * CHUNK) as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--server") {
        server_child(&args[i + 1]);
        return;
    }
    let n = chunks();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile_dir();
    let server = Server::spawn(&dir);
    rt.block_on(async {
        println!("XFTP over loopback: {n} chunks of 4 MiB, {IN_FLIGHT} requests in flight, server files in {}", dir.display());
        println!("(for comparison: this machine's disk writes + fsyncs 4 MiB files at {:.0} MiB/s)", disk_fsync_rate());
        let (base_up, base_down) = tls_baseline(n).await;
        let opts = XftpClientOptions {
            command_timeout: Duration::from_secs(600),
            ..Default::default()
        };
        let client = XftpClient::connect(&server.addr, opts).await.unwrap();
        let (up, files) = upload(&client, n).await;
        let down = download(std::slice::from_ref(&client), &files, IN_FLIGHT).await;
        figure("plain TLS copy, upload", base_up, "MiB/s", Goal::None);
        figure("XFTP upload (FNEW + FPUT)", up, "MiB/s", Goal::None);
        figure("plain TLS copy, download", base_down, "MiB/s", Goal::None);
        figure("XFTP download (FGET)", down, "MiB/s", Goal::None);
        figure("upload / plain TLS copy", up / base_up, "ratio", Goal::AtLeast(0.65));
        figure("download / plain TLS copy", down / base_down, "ratio", Goal::AtLeast(0.5));

        let mut many = Vec::new();
        for _ in 0..100 {
            many.push(XftpClient::connect(&server.addr, opts).await.unwrap());
        }
        let take = files.len().min(100);
        let rate = download(&many, &files[..take], 100).await;
        figure("100 concurrent downloads", rate, "MiB/s", Goal::None);
        figure(
            "server peak RSS, 100 concurrent downloads",
            peak_rss_kib(Some(server.child.id())) as f64 / 1024.0,
            "MiB",
            Goal::AtMost(64.0),
        );
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The server's files live on tmpfs when there is one (`BENCH_DIR` to
/// choose): the figures are about the protocol path, and this machine's
/// disk (reported separately) would otherwise be the only thing measured.
fn tempfile_dir() -> std::path::PathBuf {
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("xftp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// MiB/s of writing and fsyncing 4 MiB files in the system temp directory.
fn disk_fsync_rate() -> f64 {
    use std::io::Write as _;
    let path = std::env::temp_dir().join(format!("xftp-bench-disk-{}", std::process::id()));
    let data = chunk_bytes(1);
    let t = Instant::now();
    for _ in 0..8 {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
    }
    let _ = std::fs::remove_file(&path);
    (8 * CHUNK) as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
}
