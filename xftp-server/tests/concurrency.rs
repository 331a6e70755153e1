//! Concurrency: many clients on their own connections, and many requests
//! (HTTP/2 streams) at once on one connection (xftp.md §8.1: requests on a
//! connection are handled concurrently).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Chunk, chunk_bytes, connect_retry, create, download, same_bytes, upload};
use smp_core::address::ServerAddress;
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::tls::ServerIdentity;
use tokio::io::AsyncWriteExt;
use tokio::sync::Barrier;
use xftp_server::app::{RunningServer, Settings, start};

const CLIENTS: usize = 50;
const BIG: u32 = 4 * 1024 * 1024;
const STREAMS: usize = 40;

async fn server(dir: &tempfile::TempDir) -> (RunningServer, ServerAddress) {
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
    let mut s = Settings::new(identity.clone(), "127.0.0.1:0".parse().unwrap(), files);
    s.store_log = Some(dir.path().join("file-server-store.log"));
    let server = start(s).await.unwrap();
    let addr = format!(
        "xftp://{}@127.0.0.1:{}",
        identity.fingerprint_b64(),
        server.addr.port()
    )
    .parse()
    .unwrap();
    (server, addr)
}

/// 50 clients, each on its own connection, upload 4 MiB at the same time,
/// then all download at the same time; every byte must come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_upload_and_download_4mib() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = server(&dir).await;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, barrier) = (addr.clone(), barrier.clone());
            tokio::spawn(async move {
                let client = connect_retry(&addr, Duration::from_secs(10)).await;
                let chunk = create(&client, 0xc0c0 + i as u64, BIG).await.unwrap();
                barrier.wait().await;
                upload(&client, &chunk).await.unwrap();
                barrier.wait().await;
                let got = download(&client, &chunk).await.unwrap();
                assert!(same_bytes(&chunk, &got), "client {i}: wrong bytes");
                (client.session_id().0.to_vec(), chunk)
            })
        })
        .collect();
    let mut sessions = BTreeSet::new();
    let mut chunks: Vec<Chunk> = Vec::new();
    for t in tasks {
        let (session, chunk) = tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("bounded")
            .unwrap();
        sessions.insert(session);
        chunks.push(chunk);
    }
    assert_eq!(sessions.len(), CLIENTS, "one TLS session per client");
    let (count, used) = server
        .handler
        .with_store(|s| (s.file_count(), s.used_storage()));
    assert_eq!(count, CLIENTS);
    assert_eq!(used, CLIENTS as i64 * i64::from(BIG));
    // The chunk files on disk are the uploaded bytes.
    for c in chunks.iter().step_by(7) {
        let stored = std::fs::read(
            dir.path()
                .join("files")
                .join(smp_core::encoding::string::b64_encode(&c.sid)),
        )
        .unwrap();
        assert!(same_bytes(c, &stored));
    }
    server.stop().await;
    eprintln!(
        "{CLIENTS} clients x {} MiB up and down: {:?}",
        BIG >> 20,
        t0.elapsed()
    );
}

/// One connection: an FPUT whose body stalls half-way stays open while 40
/// other FNEW/FPUT/FGET sequences and pings run and finish on the same
/// connection; then the stalled upload completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_many_concurrent_streams() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = server(&dir).await;
    let client = connect_retry(&addr, Duration::from_secs(10)).await;

    // The stalled upload: half the body now, the rest on a signal.
    let slow = create(&client, 0x51, 256 * 1024).await.unwrap();
    let bytes = chunk_bytes(slow.seed, slow.size);
    let (mut writer, reader) = tokio::io::duplex(16 * 1024);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let feeder = tokio::spawn(async move {
        let half = bytes.len() / 2;
        writer.write_all(&bytes[..half]).await.unwrap();
        go_rx.await.unwrap();
        writer.write_all(&bytes[half..]).await.unwrap();
    });
    let stalled = {
        let (client, slow) = (client.clone(), slow.clone());
        tokio::spawn(async move {
            client
                .upload_chunk(&slow.sid, &slow.snd, reader, slow.size)
                .await
        })
    };

    let others: Vec<_> = (0..STREAMS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let size = if i % 2 == 0 { 64 * 1024 } else { 256 * 1024 };
                let chunk = create(&client, 0x1000 + i as u64, size).await.unwrap();
                upload(&client, &chunk).await.unwrap();
                client.ping().await.unwrap();
                let got = download(&client, &chunk).await.unwrap();
                assert!(same_bytes(&chunk, &got), "stream {i}: wrong bytes");
                client
            })
        })
        .collect();
    for t in others {
        let c = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("requests on one connection are not serialised behind a stalled one")
            .unwrap();
        assert!(c.same_connection(&client));
    }
    assert!(!stalled.is_finished(), "the stalled upload was still open");
    assert_eq!(
        download(&client, &slow)
            .await
            .err()
            .and_then(|e| e.xftp_error()),
        Some(smp_core::xftp::error::XftpErrorType::NoFile),
        "nothing is stored before the body is complete"
    );

    go_tx.send(()).unwrap();
    feeder.await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), stalled)
        .await
        .expect("bounded")
        .unwrap()
        .unwrap();
    let got = download(&client, &slow).await.unwrap();
    assert!(same_bytes(&slow, &got));
    assert_eq!(server.handler.with_store(|s| s.file_count()), STREAMS + 1);
    server.stop().await;
    eprintln!("{STREAMS} streams on one connection: {:?}", t0.elapsed());
}
