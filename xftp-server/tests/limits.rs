//! Bounds that hold whatever clients do (issue 14): idle connections are
//! closed when the operator asks for it, stalled uploads cannot take the
//! quota from everyone else.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smp_core::client::xftp::XftpClient;
use smp_core::xftp::command::FileCommand;
use smp_core::xftp::error::XftpErrorType;
use smp_core::xftp::response::FileResponse;
use support::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xftp_server::server::Inactive;

fn part_files(dir: &Path) -> usize {
    dir_names(dir)
        .iter()
        .filter(|n| n.ends_with(".part"))
        .count()
}

/// An FPUT of `content` on a connection of its own that sends the first
/// `sent` bytes of the body and then nothing.
async fn stalled_upload(
    srv: &Server,
    client: &XftpClient,
    content: Vec<u8>,
    sent: usize,
) -> (
    RawConn,
    mpsc::Sender<Bytes>,
    JoinHandle<Option<RawResponse>>,
) {
    let c = create(client, content, 1).await;
    let raw = srv.raw_handshaken().await;
    let (tx, answer) = raw.post_streaming();
    tx.send(raw.block(&c.sid, &FileCommand::Fput, Some(&c.snd)).into())
        .await
        .unwrap();
    tx.send(Bytes::copy_from_slice(&c.content[..sent]))
        .await
        .unwrap();
    (raw, tx, answer)
}

/// Issue 14, fault 4: `[INACTIVE_CLIENTS] disconnect = on` closes idle
/// connections after `ttl`; a client that keeps working stays connected,
/// and new clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_when_asked_and_busy_ones_stay() {
    let env = Env::new();
    let mut s = env.settings();
    s.limits.inactive = Some(Inactive {
        ttl: Duration::from_secs(2),
        check_interval: Duration::from_millis(250),
    });
    let srv = env.start(s).await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        let c = srv.client().await;
        c.ping().await.unwrap();
        idle.push(c);
    }
    let busy = srv.client().await;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        busy.ping()
            .await
            .expect("a working client is never cut off");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + PATIENCE;
    while idle.iter().any(|c| !c.is_closed()) {
        assert!(Instant::now() < deadline, "idle connections still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &idle {
        assert!(c.ping().await.is_err());
    }
    busy.ping().await.unwrap();
    srv.client().await.ping().await.unwrap();
    srv.stop().await;
}

/// With the default (`disconnect = off`) idle connections are kept, as in
/// the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_stay_by_default() {
    let env = Env::new();
    let srv = env.start_default().await;
    let c = srv.client().await;
    c.ping().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!c.is_closed());
    c.ping().await.unwrap();
    srv.stop().await;
}

/// Issue 14, fault 3: uploads that promise a chunk and then send nothing
/// take storage only for what they sent, so an honest client still
/// uploads; what the stalled ones took comes back when they go away, and
/// the quota itself still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_do_not_take_the_quota_from_others() {
    const K256: usize = 256 << 10;
    let env = Env::new();
    let mut s = env.settings();
    s.quota = Some(1 << 20);
    let srv = env.start(s).await;
    let client = srv.client().await;
    let files = env.files_dir();
    let parts = || part_files(&files);
    // 8 × 256 KiB promised: twice the quota. Sent: one byte each.
    let mut stalled = Vec::new();
    for i in 0..8u8 {
        stalled.push(stalled_upload(&srv, &client, chunk(K256, i), 1).await);
    }
    eventually("every stalled upload is being received", || parts() == 8).await;
    let honest = create(&client, chunk(K256, 100), 1).await;
    upload(&client, &honest)
        .await
        .expect("clients that send nothing do not exhaust the quota");
    assert_eq!(download(&client, &honest, 0).await.unwrap(), honest.content);

    drop(stalled);
    eventually("the stalled uploads are gone", || parts() == 0).await;
    for i in 0..3u8 {
        let c = create(&client, chunk(K256, 110 + i), 1).await;
        upload(&client, &c)
            .await
            .expect("the stalled uploads gave their storage back");
    }
    let over = create(&client, chunk(K256, 120), 1).await;
    assert_err(upload(&client, &over).await, XftpErrorType::Quota);
    srv.stop().await;
}

/// Uploads that stop sending are dropped after `upload_stall` with
/// TIMEOUT, their part files removed and their storage given back; with
/// `concurrent_uploads = 2` no more than two part files exist at once, and
/// an honest upload that waited for a slot completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_are_dropped_and_uploads_at_once_are_bounded() {
    const K64: usize = 64 << 10;
    let env = Env::new();
    let mut s = env.settings();
    s.quota = Some(4 * K64 as u64);
    s.limits.concurrent_uploads = 2;
    s.limits.upload_stall = Duration::from_secs(1);
    let srv = env.start(s).await;
    let client = srv.client().await;
    let files = env.files_dir();
    let parts = || part_files(&files);
    let mut stalled = Vec::new();
    for i in 0..5u8 {
        stalled.push(stalled_upload(&srv, &client, chunk(K64, i), 100).await);
    }
    eventually("two uploads receive", || parts() == 2).await;
    let honest = create(&client, chunk(K64, 100), 1).await;
    let honest_upload = {
        let client = client.clone();
        tokio::spawn(async move { upload(&client, &honest).await })
    };
    let t0 = Instant::now();
    let mut most = 0;
    while !honest_upload.is_finished() {
        most = most.max(parts());
        assert!(t0.elapsed() < PATIENCE, "the honest upload got a slot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most <= 2, "{most} part files at once");
    honest_upload
        .await
        .unwrap()
        .expect("the honest upload completes");
    for (raw, _tx, answer) in stalled {
        let answer = answer.await.unwrap().expect("answered");
        assert_eq!(
            raw.response(&answer.body),
            FileResponse::Err(XftpErrorType::Timeout)
        );
    }
    assert_eq!(parts(), 0);
    // The quota (4 chunks) is whole again: one is stored, three more fit.
    for i in 0..3u8 {
        let c = create(&client, chunk(K64, 110 + i), 1).await;
        upload(&client, &c).await.unwrap();
    }
    srv.stop().await;
}

/// One connection cannot have more than `streams_per_connection` requests
/// open: 150 uploads started at once on it, only 64 reach the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_open_on_one_connection_are_bounded() {
    const K64: usize = 64 << 10;
    let env = Env::new();
    let srv = env.start_default().await;
    let client = srv.client().await;
    let files = env.files_dir();
    let parts = || part_files(&files);
    let raw = srv.raw_handshaken().await;
    let mut open = Vec::new();
    for i in 0..150u8 {
        let c = create(&client, chunk(K64, i), 1).await;
        let (tx, answer) = raw.post_streaming();
        let block: Bytes = raw.block(&c.sid, &FileCommand::Fput, Some(&c.snd)).into();
        let first = Bytes::copy_from_slice(&c.content[..100]);
        // Fed from a task: a request beyond the limit waits in the client.
        open.push((
            tokio::spawn(async move {
                let _ = tx.send(block).await;
                let _ = tx.send(first).await;
                tx
            }),
            answer,
        ));
    }
    eventually("64 uploads receive", || parts() == 64).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(parts(), 64, "no more than the stream limit");
    drop(open);
    drop(raw);
    eventually("the uploads are gone", || parts() == 0).await;
    srv.stop().await;
}
