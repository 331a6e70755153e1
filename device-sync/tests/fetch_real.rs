//! The host driver against real xftp-servers on 127.0.0.1: a file sent
//! with xftp's own `send` is fetched by the job; a server that serves wrong
//! bytes until it is repaired; a server that is gone, then back.

mod support;

use std::path::Path;
use std::time::Duration;

use device_sync::catalog::{extract, list};
use device_sync::format::journal::JobState;
use device_sync::host::{FetchError, FetchOptions, run_job};
use device_sync::job::Job;
use device_sync::storage::MemFiles;
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::file::description::{FileParty, ValidFileDescription};
use smp_core::tls::ServerIdentity;
use support::{TestRng, content, device_keys};
use xftp_cli::pool::TransferOptions;
use xftp_cli::progress::Progress;
use xftp_cli::send::{SendOptions, send_file};
use xftp_server::app::{RunningServer, Settings, start};

struct Server {
    address: String,
    files: std::path::PathBuf,
    handle: Option<RunningServer>,
    identity: ServerIdentity,
    dir: std::path::PathBuf,
    listen: std::net::SocketAddr,
}

impl Server {
    fn settings(&self) -> Settings {
        let mut s = Settings::new(self.identity.clone(), self.listen, self.files.clone());
        s.store_log = Some(self.dir.join("store.log"));
        s
    }
}

async fn server(dir: &Path, i: usize) -> Server {
    let d = dir.join(format!("server{i}"));
    let files = d.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
    let mut srv = Server {
        address: String::new(),
        files,
        handle: None,
        identity,
        dir: d,
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let handle = start(srv.settings()).await.unwrap();
    srv.listen = handle.addr;
    srv.address = format!(
        "xftp://{}@127.0.0.1:{}",
        srv.identity.fingerprint_b64(),
        handle.addr.port()
    );
    srv.handle = Some(handle);
    srv
}

/// Sends `data` with xftp's `send` to the servers; returns the recipient
/// description.
async fn send(dir: &Path, servers: &[&Server], data: &[u8]) -> ValidFileDescription {
    let file = dir.join("report.bin");
    std::fs::write(&file, data).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let opts = SendOptions {
        file,
        out_dir: out,
        recipients: 1,
        servers: xftp_cli::servers::parse_server_list(
            &servers
                .iter()
                .map(|s| s.address.as_str())
                .collect::<Vec<_>>()
                .join(";"),
        )
        .unwrap(),
        replicas: 1,
        parity: None,
        resume: true,
        tmp_dir: dir.to_path_buf(),
        transfer: TransferOptions::default(),
    };
    let outcome = send_file(&opts, &Progress::hidden()).await.unwrap();
    let yaml = std::fs::read_to_string(&outcome.recipient_descriptions[0]).unwrap();
    ValidFileDescription::from_yaml(&yaml, FileParty::Recipient).unwrap()
}

fn quick() -> FetchOptions {
    FetchOptions {
        rounds: 2,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..FetchOptions::default()
    }
}

fn extracted(store: &mut MemFiles) -> Vec<u8> {
    let base = list(store, &device_keys()).unwrap()[0]
        .as_ref()
        .unwrap()
        .base
        .clone();
    let mut out = Vec::new();
    extract::<_, ()>(store, &device_keys(), &base, false, |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    out
}

#[tokio::test]
async fn a_file_sent_by_xftp_is_fetched_byte_exact() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (server(t.path(), 0).await, server(t.path(), 1).await);
    let data = content(6 << 20, 11);
    let desc = send(t.path(), &[&a, &b], &data).await;
    assert!(desc.chunks.len() >= 2);
    let mut store = MemFiles::default();
    let mut job = Job::create(&mut store, &device_keys(), &desc, &mut TestRng(1)).unwrap();
    let mut seen = Vec::new();
    run_job(&mut store, &mut job, &quick(), |d, t| seen.push((d, t)))
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Verified);
    assert_eq!(seen.last().unwrap(), &(desc.size, desc.size));
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only grows"
    );
    job.close(&mut store).unwrap();
    assert_eq!(extracted(&mut store), data);
}

#[tokio::test]
async fn wrong_bytes_then_repaired_and_a_server_gone_then_back() {
    let t = tempfile::tempdir().unwrap();
    let mut a = server(t.path(), 0).await;
    let data = content(3 << 20, 12);
    let desc = send(t.path(), &[&a], &data).await;
    // The server's stored chunks, damaged: every attempt fails its digest.
    let mut chunks: Vec<_> = std::fs::read_dir(&a.files)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    chunks.sort();
    let victim = chunks[0].clone();
    let good = std::fs::read(&victim).unwrap();
    let mut bad = good.clone();
    bad[1000] ^= 1;
    std::fs::write(&victim, &bad).unwrap();
    let mut store = MemFiles::default();
    let keys = device_keys();
    let mut job = Job::create(&mut store, &keys, &desc, &mut TestRng(2)).unwrap();
    let e = run_job(&mut store, &mut job, &quick(), |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Unreachable { .. }), "{e}");
    assert_eq!(job.state(), JobState::Fetching, "kept for a later resume");
    // Repaired: the same job continues and completes.
    std::fs::write(&victim, &good).unwrap();
    run_job(&mut store, &mut job, &quick(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Verified);
    job.close(&mut store).unwrap();
    assert_eq!(extracted(&mut store), data);

    // A server that is gone: a clear error, then after it is back (same
    // address and files) a resumed job completes.
    let data = content(2 << 20, 13);
    let desc = send(t.path(), &[&a], &data).await;
    let mut store = MemFiles::default();
    let mut job = Job::create(&mut store, &keys, &desc, &mut TestRng(3)).unwrap();
    a.handle.take().unwrap().stop().await;
    let e = run_job(&mut store, &mut job, &quick(), |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Unreachable { .. }), "{e}");
    job.close(&mut store).unwrap();
    store.reset_handles();
    a.handle = Some(start(a.settings()).await.unwrap());
    let base = list(&mut store, &keys).unwrap()[0]
        .as_ref()
        .unwrap()
        .base
        .clone();
    let mut job = Job::resume(&mut store, &keys, &base).unwrap();
    run_job(&mut store, &mut job, &quick(), |_, _| {})
        .await
        .unwrap();
    job.close(&mut store).unwrap();
    assert_eq!(extracted(&mut store), data);
}

/// A TCP relay in front of a server that, once armed, cuts the next
/// connection after `n` bytes from the server: the server "vanishes" in
/// the middle of a chunk body.
async fn cutting_relay(
    target: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let arm = Arc::new(AtomicU64::new(0));
    let a = arm.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let cut = a.swap(0, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = c.split();
                let (mut sr, mut sw) = s.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut sent = 0u64;
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        let n = sr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        let n = if cut > 0 {
                            n.min((cut - sent) as usize)
                        } else {
                            n
                        };
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        sent += n as u64;
                        if cut > 0 && sent >= cut {
                            return; // gone, mid-stream
                        }
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    (addr, arm)
}

#[tokio::test]
async fn a_server_that_vanishes_mid_chunk_is_fetched_again() {
    use std::sync::atomic::Ordering;
    let t = tempfile::tempdir().unwrap();
    let a = server(t.path(), 0).await;
    let (relay, arm) = cutting_relay(a.listen).await;
    let via = Server {
        address: a
            .address
            .replace(&a.listen.port().to_string(), &relay.port().to_string()),
        files: a.files.clone(),
        handle: None,
        identity: a.identity.clone(),
        dir: a.dir.clone(),
        listen: relay,
    };
    let data = content(3 << 20, 14);
    let desc = send(t.path(), &[&via], &data).await;
    // The first download connection dies 1 MiB into the body.
    arm.store(1 << 20, Ordering::SeqCst);
    let mut store = MemFiles::default();
    let mut job = Job::create(&mut store, &device_keys(), &desc, &mut TestRng(4)).unwrap();
    let before = job.journal_entry().attempt;
    run_job(&mut store, &mut job, &quick(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Verified);
    assert!(
        job.journal_entry().attempt > before + 1,
        "the cut attempt was given up and the chunk fetched under a new one"
    );
    job.close(&mut store).unwrap();
    assert_eq!(extracted(&mut store), data);
    assert_eq!(arm.load(Ordering::SeqCst), 0, "the cut was used");
}
