//! Recipients, deletion and failures: `-n`, `del`, AUTH after deletion,
//! wrong-party descriptions, a corrupted chunk on a server's disk, stopped
//! servers, and the spreading rule for a 20-chunk file.

mod support;

use smp_core::address::ServerWithAuth;
use smp_core::file::chunks::prepare_chunk_sizes;
use support::*;
use xftp_cli::error::exit;
use xftp_cli::pool::TransferOptions;
use xftp_cli::progress::Progress;
use xftp_cli::send::{SendOptions, send_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_then_delete_then_auth() {
    let servers = Servers::start(3).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("shared.dat");
    write_file(&src, (2 << 20) + 12345, 3);
    let run = xftp(&[
        "send",
        p(&src),
        p(work.path()),
        "-n",
        "4",
        "-s",
        &servers.list(),
    ])
    .await;
    check_send_output(&run, work.path(), "shared.dat", 4);
    let d = work.path().join("shared.dat.xftp");
    let snd = d.join("snd.xftp.private");
    let rcv = |i: usize| d.join(format!("rcv{i}.xftp"));

    // Wrong parties, each with its own exit code and the reference's words.
    let r = xftp(&["recv", p(&snd), p(work.path())]).await;
    assert_eq!(r.status, exit::WRONG_PARTY, "{}", r.stderr);
    assert!(r.stderr.contains("incorrect XFTP party"), "{}", r.stderr);
    let r = xftp(&["del", p(&rcv(1)), "-y"]).await;
    assert_eq!(r.status, exit::WRONG_PARTY, "{}", r.stderr);
    assert!(rcv(1).exists());

    let info = xftp(&["info", p(&snd)]).await;
    assert_eq!(info.stdout.lines().next(), Some("Sender file description"));

    // Three of the four recipients download; each gets its own copy name.
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (i, name) in [(1, "shared.dat"), (2, "shared_1.dat"), (3, "shared_2.dat")] {
        // No -y and no terminal: the prompt reads end of input and keeps
        // the description.
        let r = xftp(&["recv", p(&rcv(i)), p(&out)]).await;
        assert_eq!(r.status, 0, "{}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("can't be used again. Delete it (Y/n): "));
        assert!(rcv(i).exists());
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(&src).unwrap()
        );
    }
    let stored: usize = (0..3).map(|i| servers.chunk_files(i).len()).sum();
    assert_eq!(stored, 3, "FACK deletes no chunk file");

    let r = xftp(&["del", p(&snd), "-y"]).await;
    assert_eq!(r.status, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "File deleted!            \r\nFile description {} is deleted.\n",
            snd.display()
        )
    );
    let stored: usize = (0..3).map(|i| servers.chunk_files(i).len()).sum();
    assert_eq!(stored, 0, "del removes every chunk");

    let r = xftp(&["recv", p(&rcv(4)), p(&out), "-y"]).await;
    assert_eq!(r.status, exit::AUTH, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("AUTH"), "{}", r.stderr);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    assert!(rcv(4).exists(), "a failed recv keeps the description");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
    servers.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_chunk_leaves_no_output() {
    let servers = Servers::start(1).await;
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let src = work.path().join("victim.bin");
    write_file(&src, 5 << 20, 9);
    let run = xftp(&["send", p(&src), p(work.path()), "-s", &servers.list()]).await;
    check_send_output(&run, work.path(), "victim.bin", 1);
    let chunks = servers.chunk_files(0);
    assert_eq!(chunks.len(), 3);
    // Flip one byte in the middle of one stored chunk.
    let victim = &chunks[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(victim, bytes).unwrap();

    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let rcv1 = work.path().join("victim.bin.xftp/rcv1.xftp");
    let tmp_arg = format!("--tmp={}", p(&tmp));
    let r = xftp(&["recv", p(&rcv1), p(&out), &tmp_arg, "-y"]).await;
    assert_eq!(r.status, exit::CORRUPT, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("digest"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "no output");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no temp files");
    assert!(rcv1.exists());
    servers.stop_all().await;
}

/// A description with the wrong file key: every chunk downloads and
/// verifies, but the file does not decrypt. The decryption gives up on the
/// first bytes while more chunks than fit in memory are still to come:
/// recv ends with the decryption error and no output. (recv also watches
/// the decryption itself, for the timing where every buffer sits in its
/// queue when it gives up; this test does not force that timing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_file_key_ends_recv_early_and_leaves_no_output() {
    let servers = Servers::start(1).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("many.bin");
    write_file(&src, 30 << 20, 4);
    let run = xftp(&["send", p(&src), p(work.path()), "-s", &servers.list()]).await;
    check_send_output(&run, work.path(), "many.bin", 1);
    let rcv1 = work.path().join("many.bin.xftp/rcv1.xftp");
    let yaml = std::fs::read_to_string(&rcv1).unwrap();
    let key_line = yaml
        .lines()
        .find(|l| l.starts_with("key: "))
        .expect("the description has a key")
        .to_string();
    let other = format!("key: {}", "A".repeat(key_line.len() - 6) + "=");
    assert_ne!(other, key_line);
    let forged = work.path().join("forged.xftp");
    std::fs::write(&forged, yaml.replace(&key_line, &other)).unwrap();
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        xftp(&["recv", p(&forged), p(&out), "-y"]),
    )
    .await
    .expect("recv hung after the decryption failed");
    assert_eq!(r.status, exit::CORRUPT, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "no output");
    servers.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_servers() {
    let mut servers = Servers::start(3).await;
    let stopped = servers.servers[1].address.clone();
    servers.stop(1).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("resilient.bin");
    write_file(&src, 5 << 20, 5);
    // One of three servers down: the chunks meant for it go to the others.
    let run = xftp(&[
        "send",
        p(&src),
        p(work.path()),
        "-s",
        &servers.list(),
        "-r",
        "2",
    ])
    .await;
    check_send_output(&run, work.path(), "resilient.bin", 1);
    let rcv1 = work.path().join("resilient.bin.xftp/rcv1.xftp");
    let yaml = std::fs::read_to_string(&rcv1).unwrap();
    assert!(
        !yaml.contains(&stopped),
        "a chunk was put on the stopped server"
    );
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = xftp(&["recv", p(&rcv1), p(&out), "-y"]).await;
    assert_eq!(r.status, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read(out.join("resilient.bin")).unwrap(),
        std::fs::read(&src).unwrap()
    );

    // Every server down: a clear message and the "unreachable" exit code.
    servers.stop(0).await;
    servers.stop(2).await;
    let again = work.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let run = xftp(&["send", p(&src), p(&again), "-s", &servers.list(), "-r", "2"]).await;
    assert_eq!(
        run.status,
        exit::UNREACHABLE,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("TCP connection failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("127.0.0.1"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Hint: check the server address"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&again).unwrap().count(),
        0,
        "no descriptions"
    );
    servers.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_chunks_spread_over_three_servers() {
    let servers = Servers::start(3).await;
    let work = tempfile::tempdir().unwrap();
    // 17 × 4 MiB + 3 × 1 MiB chunks.
    let size = (71usize << 20) - 100;
    let src = work.path().join("spread.bin");
    write_file(&src, size, 11);
    let opts = SendOptions {
        file: src.clone(),
        out_dir: work.path().to_path_buf(),
        recipients: 1,
        servers: servers
            .servers
            .iter()
            .map(|s| ServerWithAuth::parse(&s.address).unwrap())
            .collect(),
        replicas: 1,
        parity: None,
        resume: false,
        tmp_dir: work.path().to_path_buf(),
        transfer: TransferOptions::default(),
    };
    let out = send_file(&opts, &Progress::hidden()).await.unwrap();
    assert_eq!(out.chunk_servers.len(), 20);
    assert_eq!(
        prepare_chunk_sizes(size as u64 + 24 + 1 + "spread.bin".len() as u64 + 1).len(),
        20
    );
    for s in &opts.servers {
        let n = out
            .chunk_servers
            .iter()
            .filter(|a| a[..] == [s.server.clone()])
            .count();
        assert!((6..=7).contains(&n), "{n} of 20 chunks on {}", s.server);
    }
    let stored: usize = (0..3).map(|i| servers.chunk_files(i).len()).sum();
    assert_eq!(stored, 20);
    servers.stop_all().await;
}

/// A server whose certificate does not match the fingerprint in its address
/// (a wrong address, or someone in the middle) is refused with its own exit
/// code, for send and for recv; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_mismatch_is_refused() {
    let servers = Servers::start(1).await;
    let real = &servers.servers[0].address;
    let port = real.rsplit(':').next().unwrap();
    // Another server's identity at this server's port.
    let (other, _) = smp_core::tls::ServerIdentity::generate(
        smp_core::crypto::keys::KeyAlgorithm::Ed25519,
        "127.0.0.1",
    )
    .unwrap();
    let wrong = format!("xftp://{}@127.0.0.1:{port}", other.fingerprint_b64());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("pinned.bin");
    write_file(&src, 100_000, 9);
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let run = xftp(&["send", p(&src), p(&out), "-s", &wrong, "-r", "1"]).await;
    assert_eq!(
        run.status,
        exit::FINGERPRINT,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "no descriptions"
    );
    assert!(servers.chunk_files(0).is_empty(), "nothing was uploaded");

    // A description naming the right server downloads; the same description
    // with the fingerprint swapped is refused the same way.
    let run = xftp(&["send", p(&src), p(&out), "-s", real]).await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let rcv1 = out.join("pinned.bin.xftp/rcv1.xftp");
    let yaml = std::fs::read_to_string(&rcv1).unwrap();
    let forged = work.path().join("forged.xftp");
    std::fs::write(&forged, yaml.replace(real.as_str(), &wrong)).unwrap();
    let dl = work.path().join("dl");
    std::fs::create_dir(&dl).unwrap();
    let r = xftp(&["recv", p(&forged), p(&dl), "-y", "-r", "1"]).await;
    assert_eq!(r.status, exit::FINGERPRINT, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_dir(&dl).unwrap().count(), 0, "no output file");
    servers.stop_all().await;
}

/// Runs `xftp` inside a private mount namespace where `dir` is a fresh
/// tmpfs of `size` (no global mount, nothing left behind). `None` when
/// this machine does not allow user namespaces.
async fn xftp_on_small_disk(dir: &std::path::Path, size: &str, args: &[&str]) -> Option<Run> {
    let script =
        format!("mount -t tmpfs -o size={size} tmpfs \"$1\" || exit 99; shift; exec \"$@\"");
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args([
        "-rm",
        "sh",
        "-c",
        &script,
        "sh",
        p(dir),
        env!("CARGO_BIN_EXE_xftp"),
    ])
    .args(args)
    .env_remove("XFTP_SERVERS")
    .env_remove("XFTP_CONFIG")
    .stdin(std::process::Stdio::null());
    let out = cmd.output().await.ok()?;
    let status = out.status.code().unwrap_or(-1);
    if status == 99 || (status == 1 && out.stdout.is_empty() && out.stderr.starts_with(b"unshare"))
    {
        return None;
    }
    Some(Run {
        status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_space_left_has_its_own_exit_code_and_leaves_nothing() {
    let servers = Servers::start(1).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("big.bin");
    write_file(&src, 3 << 20, 21);
    let run = xftp(&["send", p(&src), p(work.path()), "-s", &servers.list()]).await;
    check_send_output(&run, work.path(), "big.bin", 1);
    let rcv1 = work.path().join("big.bin.xftp/rcv1.xftp");
    // The output directory is a 1 MiB disk: the 3 MiB file cannot fit.
    let out = work.path().join("small");
    std::fs::create_dir(&out).unwrap();
    let args = ["recv", p(&rcv1), p(&out), "-y"];
    let Some(r) = xftp_on_small_disk(&out, "1m", &args).await else {
        eprintln!("skipped: this machine allows no user namespaces (unshare -rm)");
        servers.stop_all().await;
        return;
    };
    assert_eq!(r.status, exit::NO_SPACE, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.to_lowercase().contains("space"), "{}", r.stderr);
    assert!(rcv1.exists(), "the description is kept");
    // The namespace's tmpfs is gone with it; the real directory stays empty.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    servers.stop_all().await;
}
