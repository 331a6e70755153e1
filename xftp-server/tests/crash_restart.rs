//! Crash safety of the real binary: concurrent uploaders, `kill -9` at
//! seeded random moments, restart, and then:
//! - every FPUT that was answered OK downloads with the right bytes;
//! - an upload that was never answered is either absent (NO_FILE) or,
//!   when the kill came after its log line, complete and correct — never
//!   corrupt, and once seen complete it stays so;
//! - the files directory holds exactly the chunks the store log owns (no
//!   orphans, no `.part`) after each restart;
//! - the store log replays without errors after every kill, except at most
//!   a torn last line.
//!
//! Every third round the server is also killed once more while starting
//! (replay, compaction, sweep), which the next start must recover from.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BinEnv, Chunk, Rng, connect_retry, create, download, same_bytes, upload};
use smp_core::client::xftp::{XftpClient, XftpClientError};
use smp_core::xftp::error::XftpErrorType;
use xftp_server::store::FileStore;
use xftp_server::store_log::{ReplayReport, replay};

const SEED: u64 = 0x5eed_0c4a_5e00_0001;
const ROUNDS: u64 = 12;
const UPLOADERS: u64 = 4;
/// Per uploader and round; the kill normally comes first. Bounded so the
/// final check (every chunk downloaded once) stays within the time budget:
/// in a debug build a download costs ~60 ms per 450 KiB, because the
/// XSalsa20-Poly1305 code is generic and is instantiated (unoptimised) in
/// smp-core on both ends.
const MAX_PER_UPLOADER: usize = 10;
const SIZES: [u32; 3] = [64 * 1024, 256 * 1024, 1024 * 1024];
/// When the kill comes, after the uploaders start.
const KILL_AFTER_MS: (u64, u64) = (30, 450);
/// Acknowledged chunks of the previous round re-checked right after each
/// restart (all unacknowledged ones are); the final start checks everything.
const SAMPLE_ACKED: usize = 4;
const START: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// FNEW answered; FPUT sent (or about to be) but never answered.
    Unconfirmed,
    /// FPUT answered OK, or seen complete after a restart.
    Durable,
    /// Answered NO_FILE after a restart.
    NoFile,
}

struct Tracked {
    chunk: Chunk,
    state: State,
    round: u64,
}

#[derive(Default)]
struct Totals {
    acked: usize,
    unconfirmed_complete: usize,
    unconfirmed_absent: usize,
    torn_tails: usize,
}

async fn uploader(
    client: XftpClient,
    seed: u64,
    round: u64,
    tracked: Arc<Mutex<Vec<Tracked>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut rng = Rng::new(seed);
    for _ in 0..MAX_PER_UPLOADER {
        let size = rng.pick(&SIZES);
        let chunk = match create(&client, rng.next_u64(), size).await {
            Ok(c) => c,
            Err(e) => return note_error(&errors, "FNEW", e),
        };
        let idx = {
            let mut t = tracked.lock().unwrap();
            t.push(Tracked {
                chunk: chunk.clone(),
                state: State::Unconfirmed,
                round,
            });
            t.len() - 1
        };
        match upload(&client, &chunk).await {
            Ok(()) => tracked.lock().unwrap()[idx].state = State::Durable,
            Err(e) => return note_error(&errors, "FPUT", e),
        }
    }
}

/// A killed server shows up as a broken connection; anything the server
/// itself answered (an `ERR`) is a failure of the test.
fn note_error(errors: &Mutex<Vec<String>>, what: &str, e: XftpClientError) {
    if matches!(
        e,
        XftpClientError::Protocol(_) | XftpClientError::BadResponse(_)
    ) {
        errors.lock().unwrap().push(format!("{what}: {e}"));
    }
}

/// Replays the store log as a fresh server would; panics on any line that
/// does not parse or that the store refuses. Returns the store and whether
/// the last line was torn.
fn replay_log(env: &BinEnv) -> (FileStore, bool) {
    let data = std::fs::read(env.store_log()).unwrap();
    let mut store = FileStore::new(None);
    let mut report = ReplayReport::default();
    replay(&data, &mut store, &mut report);
    assert_eq!(
        (report.parse_errors, report.rejected),
        (0, 0),
        "store log replay: {report:?}"
    );
    (store, report.torn_tail)
}

/// After a start (the client is connected, so replay, compaction and the
/// sweep are done): the files directory holds exactly the stored chunks.
fn check_files_dir(env: &BinEnv) {
    assert!(
        !env.log.join("file-server-store.log.start").exists(),
        "compaction left .start"
    );
    let (store, torn) = replay_log(env);
    assert!(!torn, "a compacted log has no torn line");
    let owned: BTreeSet<String> = store
        .stored_paths()
        .iter()
        .map(|p| {
            assert_eq!(p.parent().unwrap(), env.files, "path outside [FILES]");
            p.file_name().unwrap().to_str().unwrap().to_owned()
        })
        .collect();
    let on_disk: BTreeSet<String> = env.chunk_files().into_iter().collect();
    let parts: Vec<_> = on_disk.iter().filter(|n| n.ends_with(".part")).collect();
    assert!(parts.is_empty(), ".part files after restart: {parts:?}");
    let orphans: Vec<_> = on_disk.difference(&owned).collect();
    assert!(
        orphans.is_empty(),
        "chunk files without a record: {orphans:?}"
    );
    let missing: Vec<_> = owned.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "records whose chunk is gone: {missing:?}"
    );
}

/// Downloads the chunks of `rounds` (all, or the unacknowledged ones and a
/// few acknowledged ones) and checks them against what the uploaders saw.
async fn verify(
    client: &XftpClient,
    tracked: &Mutex<Vec<Tracked>>,
    rounds: std::ops::Range<u64>,
    all: bool,
    totals: &mut Totals,
) -> usize {
    let mut acked = 0;
    let items: Vec<(usize, Chunk, State)> = tracked
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, t)| rounds.contains(&t.round))
        .filter(|(_, t)| {
            let durable = t.state == State::Durable;
            acked += usize::from(durable);
            all || !durable || acked <= SAMPLE_ACKED
        })
        .map(|(i, t)| (i, t.chunk.clone(), t.state))
        .collect();
    for (i, chunk, state) in &items {
        let got = download(client, chunk).await;
        let new_state = match (state, got) {
            (State::Durable, Ok(bytes)) | (State::Unconfirmed, Ok(bytes)) => {
                assert!(same_bytes(chunk, &bytes), "chunk {i}: wrong bytes");
                State::Durable
            }
            (State::Unconfirmed, Err(XftpClientError::Protocol(XftpErrorType::NoFile)))
            | (State::NoFile, Err(XftpClientError::Protocol(XftpErrorType::NoFile))) => {
                State::NoFile
            }
            (s, r) => panic!(
                "chunk {i} ({} bytes, {s:?}): {:?}",
                chunk.size,
                r.map(|b| b.len())
            ),
        };
        if *state == State::Unconfirmed {
            match new_state {
                State::Durable => totals.unconfirmed_complete += 1,
                _ => totals.unconfirmed_absent += 1,
            }
        }
        tracked.lock().unwrap()[*i].state = new_state;
    }
    items.len()
}

#[test]
fn sigkill_during_uploads_loses_nothing_acknowledged() {
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = BinEnv::init("10gb", &[]);
    let tracked = Arc::new(Mutex::new(Vec::<Tracked>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut rng = Rng::new(SEED);
    let mut totals = Totals::default();

    for round in 0..=ROUNDS {
        let mut srv = env.start();
        srv.wait_line("Listening on port", START);
        let client = rt.block_on(connect_retry(&env.address(), START));
        check_files_dir(&env);
        // What the last kill could have hurt; everything at the end.
        let check = if round == ROUNDS {
            0..ROUNDS
        } else {
            round.saturating_sub(1)..round
        };
        let tv = Instant::now();
        let all = round == ROUNDS;
        let n = rt.block_on(verify(&client, &tracked, check, all, &mut totals));
        eprintln!(
            "restart at {:?}: checked {n} chunks in {:?}",
            tv - t0,
            tv.elapsed()
        );
        if all {
            let (status, _) = srv.terminate(Duration::from_secs(5));
            assert_eq!(status.code(), Some(0), "{}", srv.stderr());
            break;
        }

        let clients: Vec<XftpClient> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..UPLOADERS {
                v.push(connect_retry(&env.address(), START).await);
            }
            v
        });
        let uploaders: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(u, c)| {
                rt.spawn(uploader(
                    c,
                    SEED ^ (round << 32) ^ u as u64,
                    round,
                    tracked.clone(),
                    errors.clone(),
                ))
            })
            .collect();
        let wait = rng.range(KILL_AFTER_MS.0, KILL_AFTER_MS.1);
        std::thread::sleep(Duration::from_millis(wait));
        srv.kill9();
        rt.block_on(async {
            for u in uploaders {
                tokio::time::timeout(Duration::from_secs(30), u)
                    .await
                    .expect("uploader stops after the kill")
                    .unwrap();
            }
        });
        drop(client);
        let (_, torn) = replay_log(&env);
        totals.torn_tails += usize::from(torn);
        if round % 3 == 2 {
            let mut early = env.start();
            std::thread::sleep(Duration::from_millis(rng.range(0, 40)));
            early.kill9();
        }
        let t = tracked.lock().unwrap();
        let this_round: Vec<_> = t.iter().filter(|t| t.round == round).collect();
        let acked = this_round
            .iter()
            .filter(|t| t.state == State::Durable)
            .count();
        totals.acked += acked;
        eprintln!(
            "round {round}: killed after {wait} ms, {} chunks created, {acked} acknowledged",
            this_round.len()
        );
    }
    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "the server answered errors: {errors:?}");
    eprintln!(
        "acknowledged {}, unacknowledged but complete {}, unacknowledged and absent {}, torn log tails {}; {:?}",
        totals.acked,
        totals.unconfirmed_complete,
        totals.unconfirmed_absent,
        totals.torn_tails,
        t0.elapsed()
    );
    // The loop exercised what it claims to.
    assert!(
        totals.acked >= ROUNDS as usize,
        "too few uploads acknowledged"
    );
    assert!(
        totals.unconfirmed_complete + totals.unconfirmed_absent > 0,
        "no kill interrupted an upload"
    );
}
