//! File expiry (xftp.md §8.3, §8.4): a store log written here by hand in
//! the reference's line format, with chunk files, then a start. The
//! start-up pass must remove what is older than the TTL (plus the hour of
//! slack), log `FDEL`, delete the chunk files and give back their storage;
//! fresh files survive, also across the next restart's compaction.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Chunk, chunk_bytes, connect_retry, create, download, same_bytes, upload};
use smp_core::address::ServerAddress;
use smp_core::client::xftp::{XftpClient, XftpClientError};
use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::encoding::string::b64_encode;
use smp_core::tls::ServerIdentity;
use smp_core::xftp::error::XftpErrorType;
use xftp_server::app::{RunningServer, Settings, start};

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
const SIZE: u32 = 64 * 1024;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn floor_hour(t: i64) -> i64 {
    t.div_euclid(HOUR) * HOUR
}

/// The boundary cases below compare with the server's clock a moment
/// later; stay clear of an hour boundary so that moment cannot cross one.
fn away_from_hour_boundary() {
    let into_hour = now().rem_euclid(HOUR);
    if into_hour > HOUR - 15 {
        std::thread::sleep(Duration::from_secs((HOUR - into_hour + 1) as u64));
    }
}

struct Case {
    name: &'static str,
    chunk: Chunk,
    created_at: i64,
    uploaded: bool,
    expires: bool,
}

fn case(name: &'static str, seed: u64, created_at: i64, uploaded: bool, expires: bool) -> Case {
    let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let rcv = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let id = |b: u8| {
        let mut v = [0u8; 16];
        common::Rng::new((seed << 8) | u64::from(b)).fill(&mut v);
        v.to_vec()
    };
    let chunk = Chunk {
        seed,
        size: SIZE,
        digest: sha256(&chunk_bytes(seed, SIZE)).to_vec(),
        sid: id(1),
        rid: id(2),
        snd,
        rcv,
    };
    Case {
        name,
        chunk,
        created_at,
        uploaded,
        expires,
    }
}

/// The log lines a reference server would have written for these files
/// (`FNEW`, `FADD`, `FPUT` with the base64url path), and their chunk files.
fn write_store(log: &Path, files: &Path, cases: &[Case]) {
    let mut text = String::new();
    for c in cases {
        let k = &c.chunk;
        let sid = b64_encode(&k.sid);
        text.push_str(&format!(
            "FNEW {sid} {} {} {} {} active\n",
            b64_encode(&k.snd.public_key().to_der()),
            k.size,
            b64_encode(&k.digest),
            c.created_at
        ));
        text.push_str(&format!(
            "FADD {sid} {}:{}\n",
            b64_encode(&k.rid),
            b64_encode(&k.rcv.public_key().to_der())
        ));
        if c.uploaded {
            let path = files.join(&sid);
            fs::write(&path, k.bytes()).unwrap();
            text.push_str(&format!(
                "FPUT {sid} {}\n",
                b64_encode(path.to_str().unwrap().as_bytes())
            ));
        }
    }
    fs::write(log, text).unwrap();
}

struct Env {
    dir: tempfile::TempDir,
    identity: ServerIdentity,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("files")).unwrap();
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
        Env { dir, identity }
    }
    fn files(&self) -> std::path::PathBuf {
        self.dir.path().join("files")
    }
    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("file-server-store.log")
    }
    async fn start(
        &self,
        ttl: Option<Duration>,
        quota: Option<u64>,
    ) -> (RunningServer, XftpClient) {
        let mut s = Settings::new(
            self.identity.clone(),
            "127.0.0.1:0".parse().unwrap(),
            self.files(),
        );
        s.store_log = Some(self.log());
        s.quota = quota;
        if let Some(ttl) = ttl {
            s.file_ttl = ttl;
        }
        let server = start(s).await.unwrap();
        let addr: ServerAddress = format!(
            "xftp://{}@127.0.0.1:{}",
            self.identity.fingerprint_b64(),
            server.addr.port()
        )
        .parse()
        .unwrap();
        let client = connect_retry(&addr, Duration::from_secs(10)).await;
        (server, client)
    }
}

fn is_err(r: &Result<impl std::fmt::Debug, XftpClientError>, e: XftpErrorType) -> bool {
    matches!(r, Err(XftpClientError::Protocol(got)) if *got == e)
}

/// Starts with `cases` in the log, checks what the start-up pass did, then
/// restarts and checks the compacted log.
async fn check_expiry(ttl: Option<Duration>, cases: Vec<Case>) {
    let env = Env::new();
    write_store(&env.log(), &env.files(), &cases);
    // The hand-written log is one the server reads without complaint.
    let mut report = xftp_server::store_log::ReplayReport::default();
    let mut store = xftp_server::store::FileStore::new(None);
    xftp_server::store_log::replay(&fs::read(env.log()).unwrap(), &mut store, &mut report);
    assert_eq!(
        (report.parse_errors, report.rejected, report.torn_tail),
        (0, 0, false)
    );
    assert_eq!(store.file_count(), cases.len());
    let (server, client) = env.start(ttl, None).await;
    let expired = cases.iter().filter(|c| c.expires).count();
    assert_eq!(
        server.handler.stats.files_expired.load(Ordering::Relaxed),
        expired as i64
    );
    let log = fs::read_to_string(env.log()).unwrap();
    for c in &cases {
        let k = &c.chunk;
        let got = download(&client, k).await;
        let on_disk = env.files().join(b64_encode(&k.sid)).exists();
        let fdel = log
            .lines()
            .any(|l| l == format!("FDEL {}", b64_encode(&k.sid)));
        if c.expires {
            assert!(is_err(&got, XftpErrorType::Auth), "{}: {got:?}", c.name);
            let del = client.delete_file(&k.sid, &k.snd).await;
            assert!(is_err(&del, XftpErrorType::Auth), "{}: {del:?}", c.name);
            assert!(!on_disk, "{}: chunk file left", c.name);
            assert!(fdel, "{}: no FDEL logged", c.name);
        } else {
            assert!(!fdel, "{}: FDEL logged", c.name);
            if c.uploaded {
                assert!(same_bytes(k, &got.unwrap()), "{}", c.name);
                assert!(on_disk, "{}", c.name);
            } else {
                assert!(is_err(&got, XftpErrorType::NoFile), "{}: {got:?}", c.name);
            }
        }
    }
    drop(client);
    server.stop().await;

    // Next start: the compacted log has only the survivors, which still work.
    let (server, client) = env.start(ttl, None).await;
    assert_eq!(
        server.handler.stats.files_expired.load(Ordering::Relaxed),
        0
    );
    let log = fs::read_to_string(env.log()).unwrap();
    for c in &cases {
        let k = &c.chunk;
        let sid = b64_encode(&k.sid);
        let mentioned = log.lines().any(|l| l.contains(&sid));
        assert_eq!(mentioned, !c.expires, "{}: {log}", c.name);
        if !c.expires && c.uploaded {
            assert!(same_bytes(k, &download(&client, k).await.unwrap()));
        }
    }
    assert_eq!(
        server.handler.with_store(|s| s.file_count()),
        cases.len() - expired
    );
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_pass_expires_old_files_with_the_default_ttl() {
    away_from_hour_boundary();
    let now = now();
    let ttl = 48 * HOUR;
    let edge = floor_hour(now - ttl);
    check_expiry(
        None,
        vec![
            case("old, uploaded", 1, floor_hour(now) - 10 * DAY, true, true),
            case(
                "old, never uploaded",
                2,
                floor_hour(now) - 10 * DAY,
                false,
                true,
            ),
            case("just past TTL + slack", 3, edge - 2 * HOUR, true, true),
            case("at TTL, within the slack", 4, edge, true, false),
            case("5 days old", 5, floor_hour(now) - 5 * DAY, true, true),
            case("fresh, uploaded", 6, floor_hour(now), true, false),
            case("fresh, never uploaded", 7, floor_hour(now), false, false),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_file_ttl_is_honoured() {
    away_from_hour_boundary();
    let now = now();
    let ttl = 10 * DAY;
    let edge = floor_hour(now - ttl);
    check_expiry(
        Some(Duration::from_secs(ttl as u64)),
        vec![
            case("5 days old", 11, floor_hour(now) - 5 * DAY, true, false),
            case("12 days old", 12, floor_hour(now) - 12 * DAY, true, true),
            case("just past TTL + slack", 13, edge - 2 * HOUR, true, true),
            case("at TTL, within the slack", 14, edge, true, false),
        ],
    )
    .await;
}

/// Quota 2 x 64 KiB, one expired and one fresh uploaded chunk: after the
/// start-up pass one new 64 KiB upload fits and a second does not. With a
/// TTL under which nothing expires, not even the first fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_gives_back_quota() {
    let now = now();
    for (ttl, expected_fits) in [(None, 1), (Some(Duration::from_secs(30 * DAY as u64)), 0)] {
        let env = Env::new();
        let cases = vec![
            case("old", 21, floor_hour(now) - 10 * DAY, true, true),
            case("fresh", 22, floor_hour(now), true, false),
        ];
        write_store(&env.log(), &env.files(), &cases);
        let quota = 2 * u64::from(SIZE);
        let (server, client) = env.start(ttl, Some(quota)).await;
        let mut fits = 0;
        for seed in 0..3u64 {
            let c = create(&client, 100 + seed, SIZE).await.unwrap();
            match upload(&client, &c).await {
                Ok(()) => {
                    fits += 1;
                    assert!(same_bytes(&c, &download(&client, &c).await.unwrap()));
                }
                Err(e) => {
                    assert!(
                        matches!(e, XftpClientError::Protocol(XftpErrorType::Quota)),
                        "{e:?}"
                    );
                    break;
                }
            }
        }
        assert_eq!(fits, expected_fits, "ttl {ttl:?}");
        assert_eq!(
            server.handler.with_store(|s| s.used_storage()),
            quota as i64
        );
        drop(client);
        server.stop().await;
    }
}
