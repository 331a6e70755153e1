//! The real binary end to end: `init` in temporary directories, `start` as
//! a child process, our client over TLS and HTTP/2 on 127.0.0.1, SIGTERM for
//! an orderly stop, restarts from the store log (xftp.md §8.6, §8.8, §11.2
//! scenarios 20–25).

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{BinEnv, connect_retry, create, download, read_lines, runtime, upload};
use smp_core::client::xftp::XftpClientError;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::encoding::string::b64_encode;
use smp_core::xftp::error::XftpErrorType;

const START: Duration = Duration::from_secs(20);
/// "Within a few seconds" of SIGTERM.
const STOP: Duration = Duration::from_secs(5);

fn stat(lines: &[String], key: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
        .to_string()
}

#[test]
fn init_start_upload_sigterm_restart_download() {
    let t0 = Instant::now();
    let rt = runtime();
    let env = BinEnv::init("10gb", &["-a", "ED25519"]);
    env.edit_ini("log_stats = off\n", "log_stats = on\n");
    assert!(env.init_stdout.contains(&format!(
        "Server address: xftp://{}@<hostnames>\n",
        env.fingerprint
    )));

    // --- run 1: upload, two downloads, SIGTERM with a connection open ---
    let mut srv = env.start();
    let address_line = srv.wait_line("Server address: ", START);
    assert_eq!(
        address_line,
        format!(
            "Server address: xftp://{}@<hostnames>:{}",
            env.fingerprint, env.port
        )
    );
    srv.wait_line(&format!("Listening on port {}...", env.port), START);
    let (chunk, r2, open_connections) = rt.block_on(async {
        let client = connect_retry(&env.address(), START).await;
        assert_eq!(client.version(), 3);
        client.ping().await.unwrap();
        let chunk = create(&client, 0xe2e, 256 * 1024).await.unwrap();
        let r2_key = PrivateKey::generate(KeyAlgorithm::Ed25519);
        let r2 = client
            .add_recipients(&chunk.sid, &chunk.snd, vec![r2_key.public_key()])
            .await
            .unwrap();
        upload(&client, &chunk).await.unwrap();
        // The stored file is exactly the uploaded bytes (scenario 2).
        let stored = env.files.join(b64_encode(&chunk.sid));
        assert_eq!(fs::read(&stored).unwrap(), chunk.bytes());
        assert_eq!(download(&client, &chunk).await.unwrap(), chunk.bytes());
        let mut second = chunk.clone();
        second.rid = r2[0].clone();
        second.rcv = r2_key;
        // r2 downloads on its own connection.
        let other = connect_retry(&env.address(), START).await;
        assert_eq!(download(&other, &second).await.unwrap(), chunk.bytes());
        // Both connections stay open (idle) across the SIGTERM below.
        (chunk, second, (client, other))
    });
    let (status, took) = srv.terminate(STOP);
    assert_eq!(status.code(), Some(0), "stderr: {}", srv.stderr());
    eprintln!("run 1 stopped {took:?} after SIGTERM");
    drop(open_connections);
    assert!(
        srv.stdout_lines().contains(&format!(
            "server stats log enabled: {}",
            env.log.join("file-server-stats.daily.log").display()
        )),
        "{:?}",
        srv.stdout_lines()
    );
    let sid = b64_encode(&chunk.sid);
    let log = read_lines(&env.store_log());
    // FNEW, the FADD of FNEW's key, the FADD command's line, FPUT.
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(log[0].starts_with(&format!("FNEW {sid} ")), "{log:?}");
    assert!(log[0].ends_with(" active"), "{log:?}");
    assert!(log[1].starts_with(&format!("FADD {sid} ")), "{log:?}");
    assert!(log[2].starts_with(&format!("FADD {sid} ")), "{log:?}");
    assert!(log[3].starts_with(&format!("FPUT {sid} ")), "{log:?}");
    let stats = read_lines(&env.stats_backup());
    assert_eq!(stats.len(), 15, "{stats:?}");
    assert_eq!(stat(&stats, "filesCreated="), "1");
    assert_eq!(stat(&stats, "fileRecipients="), "2");
    assert_eq!(stat(&stats, "filesUploaded="), "1");
    assert_eq!(stat(&stats, "fileDownloads="), "2");
    assert_eq!(stat(&stats, "filesCount="), "1");
    assert_eq!(stat(&stats, "filesSize="), "262144");
    drop(srv);

    // --- run 2: the chunk survived; ACK r1 ---
    let mut srv = env.start();
    srv.wait_line("Listening on port", START);
    rt.block_on(async {
        let client = connect_retry(&env.address(), START).await;
        assert_eq!(download(&client, &chunk).await.unwrap(), chunk.bytes());
        client.ack_file(&chunk.rid, &chunk.rcv).await.unwrap();
        let again = download(&client, &chunk).await;
        assert!(
            matches!(again, Err(XftpClientError::Protocol(XftpErrorType::Auth))),
            "{again:?}"
        );
    });
    // The backup was restored and set aside at start.
    assert!(env.log.join("file-server-stats.log.bak").is_file());
    let (status, _) = srv.terminate(STOP);
    assert_eq!(status.code(), Some(0), "stderr: {}", srv.stderr());
    // Compacted at start (FNEW, one FADD with both recipients, FPUT), then FACK.
    let log = read_lines(&env.store_log());
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(log[1].matches(':').count(), 2, "{log:?}");
    assert_eq!(log[3], format!("FACK {}", b64_encode(&chunk.rid)));
    let stats = read_lines(&env.stats_backup());
    assert_eq!(stats.len(), 15, "{stats:?}");
    assert_eq!(stat(&stats, "fileDownloads="), "3");
    assert_eq!(stat(&stats, "fileDownloadAcks="), "1");
    assert_eq!(stat(&stats, "filesUploaded="), "1");
    drop(srv);

    // --- run 3: compaction dropped r1; r2 still downloads; FDEL ---
    let mut srv = env.start();
    srv.wait_line("Listening on port", START);
    rt.block_on(async {
        // Connected means the log was replayed and compacted (the banner
        // comes before that, as in the reference).
        let client = connect_retry(&env.address(), START).await;
        let log = read_lines(&env.store_log());
        assert_eq!(log.len(), 3, "{log:?}");
        assert_eq!(
            log[1].matches(':').count(),
            1,
            "one recipient left: {log:?}"
        );
        let r1 = download(&client, &chunk).await;
        assert!(
            matches!(r1, Err(XftpClientError::Protocol(XftpErrorType::Auth))),
            "{r1:?}"
        );
        assert_eq!(download(&client, &r2).await.unwrap(), chunk.bytes());
        client.delete_file(&chunk.sid, &chunk.snd).await.unwrap();
    });
    assert!(env.chunk_files().is_empty(), "{:?}", env.chunk_files());
    let (status, _) = srv.terminate(STOP);
    assert_eq!(status.code(), Some(0), "stderr: {}", srv.stderr());
    let log = read_lines(&env.store_log());
    assert_eq!(log.last().unwrap(), &format!("FDEL {sid}"));
    drop(srv);

    // --- run 4: nothing left ---
    let mut srv = env.start();
    srv.wait_line("Listening on port", START);
    rt.block_on(async {
        let client = connect_retry(&env.address(), START).await;
        let r2 = download(&client, &r2).await;
        assert!(
            matches!(r2, Err(XftpClientError::Protocol(XftpErrorType::Auth))),
            "{r2:?}"
        );
        assert_eq!(
            fs::read(env.store_log()).unwrap(),
            b"",
            "empty compacted log"
        );
    });
    let (status, _) = srv.terminate(STOP);
    assert_eq!(status.code(), Some(0));
    eprintln!("binary end-to-end took {:?}", t0.elapsed());
}

/// SIGTERM while an upload is in flight: the upload is either finished
/// (OK, durable) or refused, the server still exits 0 promptly, and after a
/// restart an acknowledged chunk downloads.
#[test]
fn sigterm_during_uploads_exits_cleanly() {
    let rt = runtime();
    let env = BinEnv::init("10gb", &[]);
    let mut srv = env.start();
    srv.wait_line("Listening on port", START);
    let (client, chunks) = rt.block_on(async {
        let client = connect_retry(&env.address(), START).await;
        let mut chunks = Vec::new();
        for i in 0..4u64 {
            chunks.push(create(&client, 100 + i, 1024 * 1024).await.unwrap());
        }
        (client, chunks)
    });
    let uploads: Vec<_> = chunks
        .into_iter()
        .map(|c| {
            let client = client.clone();
            rt.spawn(async move {
                let r = upload(&client, &c).await;
                (c, r)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    let (status, took) = srv.terminate(STOP);
    assert_eq!(status.code(), Some(0), "stderr: {}", srv.stderr());
    eprintln!("stopped {took:?} after SIGTERM with uploads in flight");
    let results: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for u in uploads {
            v.push(u.await.unwrap());
        }
        v
    });
    drop(client);
    drop(srv);
    let mut srv = env.start();
    srv.wait_line("Listening on port", START);
    rt.block_on(async {
        let client = connect_retry(&env.address(), START).await;
        for (c, r) in &results {
            let got = download(&client, c).await;
            match r {
                Ok(()) => assert_eq!(got.unwrap(), c.bytes()),
                Err(_) => assert!(
                    matches!(got, Ok(ref b) if *b == c.bytes())
                        || matches!(got, Err(XftpClientError::Protocol(XftpErrorType::NoFile))),
                    "{got:?}"
                ),
            }
        }
    });
    assert!(
        !env.chunk_files().iter().any(|n| n.ends_with(".part")),
        "{:?}",
        env.chunk_files()
    );
    let (status, _) = srv.terminate(STOP);
    assert_eq!(status.code(), Some(0));
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file in `dir`: the public ones not writable by others, all the
/// rest (keys, INI, store logs and their backups, chunks) 0600.
fn assert_owner_only(dir: &std::path::Path, public: &[&str]) -> usize {
    let mut seen = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let m = mode(&path);
        if public.contains(&name.as_str()) {
            assert_eq!(m & 0o022, 0, "{name} is {m:o}");
        } else {
            assert_eq!(m, 0o600, "{name} is {m:o}");
        }
        seen += 1;
    }
    seen
}

/// Issue 14, fault 7: with a umask that hides nothing (000), the INI (it
/// can hold passwords), the keys, the store log, its backups and the stored
/// chunks are still 0600 and the directories 0700; a store log an older
/// version left at 0644 is narrowed at the next start, backups included.
#[test]
fn secrets_and_chunks_are_owner_only_whatever_the_umask() {
    let rt = runtime();
    let env = BinEnv::init_with_umask("10gb", &["-a", "ED25519"], Some("000"));
    for d in [&env.cfg, &env.log] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    let public = [
        "ca.crt",
        "server.crt",
        "fingerprint",
        "file-server-stats.log",
    ];
    assert_owner_only(&env.cfg, &public);

    let mut srv = env.start();
    srv.wait_line(&format!("Listening on port {}...", env.port), START);
    let chunk = rt.block_on(async {
        let client = connect_retry(&env.address(), START).await;
        let chunk = create(&client, 0x600, 64 * 1024).await.unwrap();
        upload(&client, &chunk).await.unwrap();
        chunk
    });
    let stored = env.files.join(b64_encode(&chunk.sid));
    assert_eq!(mode(&stored), 0o600);
    assert_eq!(mode(&env.store_log()), 0o600);
    assert_eq!(srv.terminate(STOP).0.code(), Some(0), "{}", srv.stderr());
    assert!(assert_owner_only(&env.log, &public) >= 1);
    assert_eq!(assert_owner_only(&env.files, &[]), 1);

    // As an older version left it.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(env.store_log(), fs::Permissions::from_mode(0o644)).unwrap();
    let mut srv = env.start();
    srv.wait_line(&format!("Listening on port {}...", env.port), START);
    assert_eq!(srv.terminate(STOP).0.code(), Some(0), "{}", srv.stderr());
    let backups = fs::read_dir(&env.log)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("file-server-store.log.")
        })
        .count();
    assert!(backups >= 1, "the restart left a timestamped backup");
    assert_owner_only(&env.log, &public);
    assert!(
        srv.stderr().contains("narrowed to 0600")
            || srv
                .stdout_lines()
                .iter()
                .any(|l| l.contains("narrowed to 0600")),
        "the operator is told: {}",
        srv.stderr()
    );
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Issue 14, fault 5: out of file descriptors (`prlimit --nofile=64`, 100
/// connections held open) the accept loop backs off instead of spinning or
/// warning many times a second, and serves again once descriptors return.
#[test]
fn out_of_descriptors_the_server_backs_off_and_recovers() {
    let rt = runtime();
    let env = BinEnv::init("10gb", &[]);
    let mut srv = env.start_behind(&["prlimit", "--nofile=64:64", "--"]);
    srv.wait_line(&format!("Listening on port {}...", env.port), START);
    // The banner comes before the port is bound.
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", env.port)).is_err() {
        assert!(t0.elapsed() < START, "the server listens");
        std::thread::sleep(Duration::from_millis(20));
    }
    let held: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", env.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, t0) = (cpu_seconds(srv.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_seconds(srv.pid()) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let warnings = srv.stderr().matches("cannot accept connections").count();
    assert!(
        (1..=2).contains(&warnings),
        "one warning per minute, not one per failure: {warnings}\n{}",
        srv.stderr()
    );
    assert!(
        cpu < wall / 4.0,
        "the accept loop must not spin: {cpu:.2} s of CPU in {wall:.2} s"
    );
    drop(held);
    rt.block_on(async {
        let client = connect_retry(&env.address(), START).await;
        client.ping().await.unwrap();
    });
    let (status, _) = srv.terminate(STOP);
    assert_eq!(status.code(), Some(0), "{}", srv.stderr());
}

/// Sets a running server's file-size limit (its "free disk").
fn set_fsize(pid: i32, limit: &str) {
    let st = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .unwrap();
    assert!(st.success(), "prlimit");
}

/// Issue 14's crash-consistency test for the XFTP store log: each round
/// the "disk" (RLIMIT_FSIZE, SIGXFSZ ignored, so writes fail with EFBIG as
/// on a full disk) runs out at a random point among 30 FNEWs, is freed,
/// more files are created and uploaded, and the server is SIGKILLed and
/// restarted: every acknowledged file is there (its upload is accepted),
/// every acknowledged chunk downloads intact.
#[test]
fn a_disk_that_fills_and_frees_at_random_points_loses_no_acknowledged_file() {
    const SIZE: u32 = 64 * 1024;
    let rt = runtime();
    let env = BinEnv::init("10gb", &[]);
    let behind = ["sh", "-c", "trap '' XFSZ; exec \"$0\" \"$@\""];
    let mut seed = 0xf11e_u64;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut uploaded = Vec::new();
    let mut srv = env.start_behind(&behind);
    srv.wait_line(&format!("Listening on port {}...", env.port), START);
    for round in 0..3u64 {
        let used = fs::metadata(env.store_log()).map(|m| m.len()).unwrap_or(0);
        set_fsize(srv.pid(), &(used + 300 + rnd(3000)).to_string());
        let (created, refused, done) = rt.block_on(async {
            let client = connect_retry(&env.address(), START).await;
            let (mut created, mut refused) = (Vec::new(), 0);
            for i in 0..30 {
                match create(&client, round * 1000 + i, SIZE).await {
                    Ok(c) => created.push(c),
                    Err(_) => refused += 1,
                }
            }
            set_fsize(srv.pid(), "unlimited");
            let mut done = Vec::new();
            for i in 0..3 {
                let c = create(&client, round * 1000 + 500 + i, SIZE).await.unwrap();
                upload(&client, &c).await.expect("uploads work once freed");
                done.push(c);
            }
            (created, refused, done)
        });
        assert!(refused > 0, "round {round}: the disk filled up");
        uploaded.extend(done);
        srv.kill9();
        srv = env.start_behind(&behind);
        srv.wait_line(&format!("Listening on port {}...", env.port), START);
        rt.block_on(async {
            let client = connect_retry(&env.address(), START).await;
            for c in &created {
                upload(&client, c)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: an acknowledged FNEW is lost: {e}"));
            }
            for c in &uploaded {
                assert_eq!(
                    download(&client, c).await.unwrap(),
                    c.bytes(),
                    "round {round}"
                );
            }
        });
        uploaded.extend(created);
    }
}
