//! The `device-sync` binary end to end on 127.0.0.1: a 20 MiB file sent
//! with xftp's `send` over two real xftp-servers is fetched onto a card
//! image (also after a kill -9 in the middle), extracted byte-exact, the
//! image passes `fsck.fat -n` and `mdir`, and tampering is reported.

mod linux_tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use device_sync::blockdev::{Coalesce, FileDisk};
use device_sync::card::{Card, OpenMode};
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::tls::ServerIdentity;
use xftp_cli::pool::TransferOptions;
use xftp_cli::progress::Progress;
use xftp_cli::send::{SendOptions, send_file};
use xftp_server::app::{RunningServer, Settings, start};

const BIN: &str = env!("CARGO_BIN_EXE_device-sync");

fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

async fn servers(dir: &Path, n: usize) -> (Vec<RunningServer>, String) {
    let mut handles = Vec::new();
    let mut list = Vec::new();
    for i in 0..n {
        let files = dir.join(format!("server{i}"));
        std::fs::create_dir_all(&files).unwrap();
        let (id, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
        let h = start(Settings::new(
            id.clone(),
            "127.0.0.1:0".parse().unwrap(),
            files,
        ))
        .await
        .unwrap();
        list.push(format!(
            "xftp://{}@127.0.0.1:{}",
            id.fingerprint_b64(),
            h.addr.port()
        ));
        handles.push(h);
    }
    (handles, list.join(";"))
}

async fn send(dir: &Path, servers: &str, data: &[u8]) -> PathBuf {
    send_both(dir, servers, data).await.0
}

/// The recipient and the sender description.
async fn send_both(dir: &Path, servers: &str, data: &[u8]) -> (PathBuf, PathBuf) {
    let file = dir.join("report.pdf");
    std::fs::write(&file, data).unwrap();
    let out = dir.join("sent");
    std::fs::create_dir_all(&out).unwrap();
    let o = send_file(
        &SendOptions {
            file,
            out_dir: out,
            recipients: 1,
            servers: xftp_cli::servers::parse_server_list(servers).unwrap(),
            replicas: 1,
            parity: None,
            resume: true,
            tmp_dir: dir.to_path_buf(),
            transfer: TransferOptions::default(),
        },
        &Progress::hidden(),
    )
    .await
    .unwrap();
    let rcv = dir.join(format!("rcv{}.xftp", data.len()));
    std::fs::copy(&o.recipient_descriptions[0], &rcv).unwrap();
    let snd = dir.join(format!("snd{}.xftp.private", data.len()));
    std::fs::copy(&o.sender_description, &snd).unwrap();
    std::fs::remove_dir_all(&o.dir).unwrap();
    (rcv, snd)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_mib_over_two_servers_with_a_kill_in_the_middle() {
    let t = tempfile::tempdir().unwrap();
    let (_servers, list) = servers(t.path(), 2).await;
    let data = content(20 << 20, 7);
    let desc = send(t.path(), &list, &data).await;
    let img = t.path().join("card.img");
    let out = ok(&["init", p(&img)]);
    assert!(out.contains("256 MiB"), "{out}");
    let keys = t.path().join("card.img.keys");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // kill -9 once some chunks are on the card, then the same command resumes.
    let mut child = Command::new(BIN)
        .args(["fetch", p(&img), p(&desc)])
        .spawn()
        .unwrap();
    let mut killed = false;
    for _ in 0..400 {
        std::thread::sleep(Duration::from_millis(10));
        let ls = run(&["ls", p(&img)]);
        let s = String::from_utf8_lossy(&ls.stdout);
        if s.contains("fetching 2/") || s.contains("fetching 3/") {
            child.kill().unwrap();
            killed = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    let _ = child.wait();
    assert!(killed, "the fetch ended before it could be killed");
    let ls = ok(&["ls", p(&img)]);
    assert!(ls.contains("fetching"), "{ls}");
    let out = ok(&["fetch", p(&img), p(&desc)]);
    assert!(out.contains("report.pdf (20971520 bytes)"), "{out}");
    let ls = ok(&["ls", p(&img)]);
    assert!(ls.contains("complete\t20971520\treport.pdf"), "{ls}");
    assert_eq!(ls.lines().count(), 1, "one job, resumed: {ls}");
    // Fetching it again finds it complete.
    ok(&["fetch", p(&img), p(&desc)]);
    let got = t.path().join("got.pdf");
    ok(&["extract", p(&img), "report.pdf", p(&got)]);
    assert!(
        std::fs::read(&got).unwrap() == data,
        "extracted bytes differ"
    );
    let v = ok(&["verify", p(&img)]);
    assert!(v.contains(": ok ("), "{v}");
    let mdir = linux_tools::check(&img, true);
    if !mdir.is_empty() {
        assert!(
            mdir.contains("SGF") && mdir.contains("SGJ") && mdir.contains("CARD"),
            "{mdir}"
        );
    }

    // A flipped bit in a record: verify and extract name the file.
    let base = ls.split('\t').next().unwrap().to_string();
    {
        let disk = Coalesce::new(FileDisk::open(&img).unwrap());
        let mut card = Card::mount(disk).unwrap();
        let f = card
            .open(&format!("{base}.SGF"), OpenMode::ReadWrite)
            .unwrap();
        let mut b = [0u8; 1];
        let at = 512 + 4096 * 300 + 77;
        card.read_at(f, at, &mut b).unwrap();
        b[0] ^= 0x08;
        card.write_at(f, at, &b).unwrap();
        card.close(f).unwrap();
        card.sync().unwrap();
        drop(card.into_device());
    }
    let o = run(&["verify", p(&img)]);
    assert_eq!(o.status.code(), Some(6));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains(&base) && s.contains("DAMAGED: records 300"),
        "{s}"
    );
    let o = run(&["extract", p(&img), "report.pdf", p(&t.path().join("x"))]);
    assert_eq!(o.status.code(), Some(6));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("report.pdf") && e.contains("record 300"), "{e}");
    assert!(!t.path().join("x").exists(), "nothing half-written is left");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_errors_for_bad_input_and_foreign_cards() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("card.img");
    ok(&["init", p(&img), "--size", "64M"]);
    // The wrong key file: the card is left untouched.
    let other = t.path().join("other.img");
    ok(&["init", p(&other), "--size", "64M"]);
    let o = run(&["--keys", p(&t.path().join("other.img.keys")), "ls", p(&img)]);
    assert_eq!(o.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another device"));
    // Not a description.
    let bad = t.path().join("bad.xftp");
    std::fs::write(&bad, "hello").unwrap();
    let o = run(&["fetch", p(&img), p(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("description"));
    // A key file others can read is refused.
    let keys = t.path().join("card.img.keys");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["ls", p(&img)]);
    assert_eq!(o.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&o.stderr).contains("chmod 600"));
    // A size too small for FAT32, and an image that exists.
    let o = run(&["init", p(&t.path().join("tiny.img")), "--size", "8M"]);
    assert!(!o.status.success());
    let o = run(&["init", p(&img)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_file_and_a_full_card_end_clearly() {
    let t = tempfile::tempdir().unwrap();
    let (_servers, list) = servers(t.path(), 1).await;
    let img = t.path().join("card.img");
    ok(&["init", p(&img), "--size", "40M"]);

    // Deleted from its server before the device fetched it.
    let (rcv, snd) = send_both(t.path(), &list, &content(3 << 20, 1)).await;
    xftp_cli::del::delete_file(
        &xftp_cli::recv::DescriptionSource::parse(p(&snd)),
        TransferOptions::default(),
    )
    .await
    .unwrap();
    let o = run(&["fetch", p(&img), p(&rcv)]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("no longer on its servers"));
    let ls = ok(&["ls", p(&img)]);
    assert!(ls.contains("failed (gone)"), "{ls}");

    // Bigger than the card: a clear error, the space is given back, the
    // card stays consistent and a file that fits still arrives.
    let big = send(t.path(), &list, &content(45 << 20, 2)).await;
    let o = run(&["fetch", p(&img), p(&big)]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("card is full"));
    let ls = ok(&["ls", p(&img)]);
    assert!(ls.contains("failed (full)"), "{ls}");
    linux_tools::check(&img, false);
    let data = content(20 << 20, 3);
    let fits = send(t.path(), &list, &data).await;
    ok(&["fetch", p(&img), p(&fits)]);
    let got = t.path().join("got");
    let ls = ok(&["ls", p(&img)]);
    let id = ls
        .lines()
        .find(|l| l.contains("complete"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    ok(&["extract", p(&img), &id, p(&got)]);
    assert!(std::fs::read(&got).unwrap() == data);
    ok(&["verify", p(&img)]);
    linux_tools::check(&img, false);
}
