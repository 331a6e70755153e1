//! Abuse against the real binary, measured from outside the server's
//! process (issue 14): every connection it allows filled with uploads that
//! send what flow control lets through and then stall, more connections
//! than it allows, and an honest client beside them. The server's peak
//! resident memory stays under the bound README states for its limits,
//! the honest client is answered within a stated latency throughout, and
//! once the flood goes the quota, the part files and the connection places
//! are all back.

mod common;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{BinEnv, connect_retry, download, runtime, same_bytes, upload};
use smp_core::client::xftp::XftpClient;
use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::tls::{self, KeyHash};
use smp_core::xftp::command::{FileCommand, FileInfo};
use support::RawConn;

const START: Duration = Duration::from_secs(20);
/// What the honest client may wait for a ping, an FNEW or a 4 MiB download
/// while the flood is on.
const LATENCY: Duration = Duration::from_secs(5);
const ATTACKERS: usize = 8;
/// `[LIMITS] streams_per_connection`, the default.
const STREAMS: usize = 64;
/// `[LIMITS] concurrent_uploads` for this test.
const UPLOADS: usize = 16;
const CHUNK: u32 = 4 << 20;
/// README's worst case for one connection: its HTTP/2 receive window
/// (4 MiB) plus, for each of 64 streams, a 16 KiB request block and a
/// 128 KiB send buffer.
const PER_CONNECTION_KIB: u64 = 4096 + 64 * (16 + 128);
/// README's server-wide term: each upload receiving holds a 256 KiB buffer.
const PER_UPLOAD_KIB: u64 = 256;
/// Allocator and runtime slack on top of the bound.
const SLACK_KIB: u64 = 16 << 10;

/// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

/// A registered chunk the attacker will never complete: FNEW with a digest
/// of nothing it sends.
struct Target {
    sid: Vec<u8>,
    snd: PrivateKey,
}

async fn register(client: &XftpClient, n: usize) -> Target {
    let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let rcv = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let info = FileInfo {
        snd_key: snd.public_key(),
        size: CHUNK,
        digest: sha256(&n.to_le_bytes()).to_vec(),
    };
    let (sid, _) = client
        .create_file(&snd, info, vec![rcv.public_key()], None)
        .await
        .expect("FNEW");
    Target { sid, snd }
}

/// One FPUT that sends its block and then all but the last 64 KiB of the
/// chunk as fast as the server takes it, and then holds the stream open.
fn stalled_fput(raw: &RawConn, t: &Target) -> tokio::task::JoinHandle<()> {
    let (tx, answer) = raw.post_streaming();
    let block: Bytes = raw.block(&t.sid, &FileCommand::Fput, Some(&t.snd)).into();
    tokio::spawn(async move {
        let piece = Bytes::from(vec![0u8; 64 << 10]);
        if tx.send(block).await.is_err() {
            return;
        }
        let mut sent = 0;
        while sent + piece.len() < CHUNK as usize {
            if tx.send(piece.clone()).await.is_err() {
                return;
            }
            sent += piece.len();
        }
        // The answer (TIMEOUT once the stall is noticed) ends the stream;
        // the sender is kept until then.
        let _ = answer.await;
        drop(tx);
    })
}

async fn timed<T>(what: &str, f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t0 = Instant::now();
    let r = tokio::time::timeout(LATENCY, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {LATENCY:?} under the flood"));
    (r, t0.elapsed())
}

#[test]
fn a_flood_of_stalled_uploads_costs_bounded_memory_and_others_are_served() {
    let rt = runtime();
    let env = BinEnv::init("4gb", &[]);
    let mut ini = std::fs::read_to_string(env.ini()).unwrap();
    ini.push_str(&format!(
        "\n[LIMITS]\nmax_connections = {}\nconcurrent_uploads = {UPLOADS}\nupload_stall_timeout = 2\n",
        ATTACKERS + 1
    ));
    std::fs::write(env.ini(), ini).unwrap();
    let mut srv = env.start();
    srv.wait_line("Listening on port", START);
    let pid = srv.pid();
    let addr = SocketAddr::from(([127, 0, 0, 1], env.port));
    let key_hash: KeyHash = env.address().key_hash().as_bytes().try_into().unwrap();
    let part_files = || {
        env.chunk_files()
            .iter()
            .filter(|n| n.ends_with(".part"))
            .count()
    };

    rt.block_on(async {
        let honest = connect_retry(&env.address(), START).await;
        let kept = common::create(&honest, 7, CHUNK).await.unwrap();
        upload(&honest, &kept).await.unwrap();
        assert!(same_bytes(&kept, &download(&honest, &kept).await.unwrap()));
        let base = status_kib(pid, "VmRSS:");

        let mut targets = Vec::new();
        for n in 0..ATTACKERS * STREAMS {
            targets.push(register(&honest, n).await);
        }
        let mut attackers = Vec::new();
        let mut feeders = Vec::new();
        for a in 0..ATTACKERS {
            let raw = RawConn::connect_to(addr, key_hash, Some(tls::ALPN_XFTP))
                .await
                .expect("within max_connections");
            raw.handshake(&key_hash).await;
            for t in &targets[a * STREAMS..(a + 1) * STREAMS] {
                feeders.push(stalled_fput(&raw, t));
            }
            attackers.push(raw);
        }
        // Every place is taken: more connections are closed at once.
        for _ in 0..20 {
            let r = tokio::time::timeout(
                LATENCY,
                RawConn::connect_to(addr, key_hash, Some(tls::ALPN_XFTP)),
            )
            .await
            .expect("a refused connection is closed, not left hanging");
            assert!(r.is_err(), "a connection over max_connections is closed");
        }

        let t0 = Instant::now();
        while part_files() < UPLOADS {
            assert!(t0.elapsed() < START, "the flood's uploads are received");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Six seconds of flood: three rounds of stalled uploads timing out
        // and the next ones taking their slots.
        let mut worst = Duration::ZERO;
        let mut rounds = 0;
        let flood = Instant::now();
        while flood.elapsed() < Duration::from_secs(6) {
            let (r, d1) = timed("a ping", honest.ping()).await;
            r.unwrap();
            let (_, d2) = timed("an FNEW", register(&honest, 100_000 + rounds)).await;
            let (r, d3) = timed("a download", download(&honest, &kept)).await;
            assert!(same_bytes(&kept, &r.unwrap()));
            assert!(part_files() <= UPLOADS, "no more uploads receive at once");
            worst = worst.max(d1).max(d2).max(d3);
            rounds += 1;
        }
        let peak = status_kib(pid, "VmHWM:");
        let bound = ATTACKERS as u64 * PER_CONNECTION_KIB + UPLOADS as u64 * PER_UPLOAD_KIB;
        eprintln!(
            "flood: {ATTACKERS} connections × {STREAMS} stalled 4 MiB uploads; server RSS \
             {base} KiB before, peak {peak} KiB (+{} KiB; bound +{bound} KiB); honest client: \
             {rounds} rounds, slowest answer {worst:?}",
            peak.saturating_sub(base)
        );
        assert!(
            peak <= base + bound + SLACK_KIB,
            "peak RSS {peak} KiB over the bound: {base} + {bound} + {SLACK_KIB} KiB"
        );

        // The flood goes: its part files and storage and places come back.
        for f in &feeders {
            f.abort();
        }
        drop(attackers);
        let t0 = Instant::now();
        while part_files() > 0 {
            assert!(t0.elapsed() < START, "the flood's part files are removed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = common::create(&honest, 8, CHUNK).await.unwrap();
        upload(&honest, &after)
            .await
            .expect("the flood did not keep the quota");
        let newcomer = connect_retry(&env.address(), START).await;
        assert!(same_bytes(
            &after,
            &download(&newcomer, &after).await.unwrap()
        ));
    });
    let log = srv.stderr();
    assert_eq!(
        log.matches("connection limit reached").count(),
        1,
        "refusals are warned once a minute: {log}"
    );
    assert!(!log.contains("127.0.0.1"), "no client address in the log");
    let (status, _) = srv.terminate(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{log}");
}
