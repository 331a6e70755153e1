//! Interrupted transfers: `xftp send` and `xftp recv` killed with SIGKILL
//! at random moments and run again until they finish, against real
//! `xftp-server` processes.

use std::path::Path;
use std::time::{Duration, Instant};

use simplego_tests::{XftpServer, run_xftp, server_list, spawn_xftp, write_file};
use smp_core::file::description::FileDescription;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small xorshift, seeded from the clock and printed, so a failing run
/// can be repeated with `RESUME_SEED`.
struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let seed = std::env::var("RESUME_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("RESUME_SEED={seed}");
        Self(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn send_args<'a>(src: &'a Path, out: &'a Path, list: &'a str) -> Vec<&'a str> {
    vec![
        "send",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "-s",
        list,
    ]
}

#[test]
fn send_killed_at_random_moments_finishes_when_run_again() {
    let servers: Vec<XftpServer> = (0..3).map(|_| XftpServer::start()).collect();
    let list = server_list(&servers);
    let stored = || -> usize { servers.iter().map(XftpServer::stored_chunks).sum() };
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("profile");
    let original = work.path().join("film.bin");
    write_file(&original, 50 << 20, 31);
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut rng = Rng::new();

    // How long one uninterrupted send takes here (the quicker of two, the
    // first warms the caches), to spread the kills over it.
    let mut whole = u64::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        let sent = run_xftp(&profile, &send_args(&original, &out, &list));
        assert!(sent.status.success(), "{}", text(&sent.stderr));
        whole = whole.min(started.elapsed().as_millis() as u64);
    }
    let mut before = stored();

    // Twenty sends, each under its own name (its own state), each killed
    // at a random moment and then run again to the end.
    let mut interrupted = 0;
    for round in 0..20 {
        let name = format!("film-{round}.bin");
        let src = work.path().join(&name);
        std::fs::hard_link(&original, &src).unwrap();
        let state = out.join(format!("{name}.xftp-send-state"));
        let mut child = spawn_xftp(&profile, &send_args(&src, &out, &list));
        std::thread::sleep(Duration::from_millis(rng.below((whole * 9 / 10).max(50))));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            interrupted += 1;
        }
        child.wait().unwrap();
        let rcv = out.join(format!("{name}.xftp")).join("rcv1.xftp");
        // Killed before it wrote its state, the send is simply run again.
        if state.exists() || !rcv.exists() {
            #[cfg(unix)]
            if state.exists() {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&state).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "the state holds the file key");
            }
            let sent = run_xftp(&profile, &send_args(&src, &out, &list));
            assert!(
                sent.status.success(),
                "round {round}: {}",
                text(&sent.stderr)
            );
        }
        assert!(!state.exists(), "a finished send removes its state");

        // One set of descriptions, whose chunks are all the servers gained:
        // nothing was uploaded twice, and the file arrives whole.
        let desc = FileDescription::from_yaml(&std::fs::read_to_string(&rcv).unwrap()).unwrap();
        let now = stored();
        assert_eq!(
            now - before,
            desc.chunks.len(),
            "round {round}: chunks stored twice"
        );
        before = now;
        let got = work.path().join(format!("got-{round}.bin"));
        let r = run_xftp(
            &profile,
            &["recv", rcv.to_str().unwrap(), got.to_str().unwrap(), "-y"],
        );
        assert!(r.status.success(), "round {round}: {}", text(&r.stderr));
        assert!(
            std::fs::read(&got).unwrap() == std::fs::read(&original).unwrap(),
            "round {round}: bytes differ"
        );
        std::fs::remove_file(&got).unwrap();
    }
    eprintln!("{interrupted} of 20 sends killed part-way ({whole} ms each)");
    assert!(
        interrupted >= 10,
        "too few sends were interrupted to show anything"
    );
}

#[test]
fn a_resumed_send_refuses_a_changed_file_or_other_arguments() {
    let servers: Vec<XftpServer> = (0..2).map(|_| XftpServer::start()).collect();
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("profile");
    let src = work.path().join("notes.bin");
    write_file(&src, 9 << 20, 5);
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let state = out.join("notes.bin.xftp-send-state");
    // An interrupted send: the first server only, then killed.
    let one = servers[0].address.clone();
    let mut child = spawn_xftp(&profile, &send_args(&src, &out, &one));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(state.exists());

    // Other servers: refused, naming the state file and what differs.
    let both = format!("{one};{}", servers[1].address);
    let r = run_xftp(&profile, &send_args(&src, &out, &both));
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("notes.bin.xftp-send-state"), "{err}");
    assert!(err.contains("server list differs"), "{err}");

    // A changed file: refused too.
    write_file(&src, 9 << 20, 6);
    let r = run_xftp(&profile, &send_args(&src, &out, &one));
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("the file changed"), "{err}");

    // --no-resume starts afresh and finishes.
    let mut args = send_args(&src, &out, &one);
    args.push("--no-resume");
    let r = run_xftp(&profile, &args);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(!state.exists());
}

/// The hidden files an interrupted receive keeps in `dir`.
fn kept(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".xftp-recv-"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn recv_killed_at_random_moments_finishes_when_run_again() {
    let servers: Vec<XftpServer> = (0..2).map(|_| XftpServer::start()).collect();
    let list = server_list(&servers);
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("profile");
    let original = work.path().join("film.bin");
    write_file(&original, 50 << 20, 37);
    let want = std::fs::read(&original).unwrap();
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // A recipient acknowledges its chunks when done: one description each.
    let mut args = send_args(&original, &out, &list);
    args.extend(["-n", "22"]);
    let sent = run_xftp(&profile, &args);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let rcv = |i: usize| out.join(format!("film.bin.xftp/rcv{i}.xftp"));
    let got_dir = work.path().join("got");
    std::fs::create_dir(&got_dir).unwrap();
    let recv_args = |i: usize, got: &Path| -> Vec<String> {
        vec![
            "recv".into(),
            rcv(i).to_str().unwrap().into(),
            got.to_str().unwrap().into(),
            "-y".into(),
        ]
    };
    let run = |a: &[String]| run_xftp(&profile, &a.iter().map(String::as_str).collect::<Vec<_>>());

    let mut whole = u64::MAX;
    for i in 1..=2 {
        let got = got_dir.join(format!("whole-{i}.bin"));
        let started = Instant::now();
        let r = run(&recv_args(i, &got));
        assert!(r.status.success(), "{}", text(&r.stderr));
        whole = whole.min(started.elapsed().as_millis() as u64);
        assert!(std::fs::read(&got).unwrap() == want);
        std::fs::remove_file(&got).unwrap();
    }
    assert!(
        kept(&got_dir).is_empty(),
        "a finished receive keeps nothing"
    );

    let mut rng = Rng::new();
    let (mut interrupted, mut resumed, mut tampered) = (0, 0, false);
    for round in 0..20 {
        let i = round + 3;
        let got = got_dir.join(format!("film-{round}.bin"));
        let a = recv_args(i, &got);
        let mut child = spawn_xftp(&profile, &a.iter().map(String::as_str).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(rng.below((whole * 9 / 10).max(50))));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            interrupted += 1;
        }
        child.wait().unwrap();
        if got.exists() {
            assert!(kept(&got_dir).is_empty(), "round {round}: leftovers");
        } else {
            let files = kept(&got_dir);
            let state = files
                .iter()
                .find(|p| p.extension().is_some_and(|e| e == "state"));
            let records = state.map_or(0, |s| {
                std::fs::read_to_string(s)
                    .unwrap()
                    .lines()
                    .filter(|l| l.starts_with("chunk ") && !l.is_empty())
                    .count()
            });
            #[cfg(unix)]
            for f in &files {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(f).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", f.display());
            }
            // Once, the kept content is damaged: the rerun notices and
            // downloads it all again.
            let damage = records >= 2 && !tampered;
            if damage {
                let part = files
                    .iter()
                    .find(|p| p.extension().is_some_and(|e| e == "part"));
                let part = part.expect("content kept beside the state");
                let mut bytes = std::fs::read(part).unwrap();
                bytes[5 << 20] ^= 0x40;
                std::fs::write(part, bytes).unwrap();
                tampered = true;
            }
            let r = run(&a);
            let said = format!("{}{}", text(&r.stdout), text(&r.stderr));
            assert!(r.status.success(), "round {round}: {said}");
            if damage {
                assert!(
                    said.contains("does not match chunk 2"),
                    "round {round}: {said}"
                );
            } else if records > 0 {
                // The last record may have been cut off by the kill.
                let resumed_from = [records, records - 1]
                    .iter()
                    .any(|k| said.contains(&format!("Resuming: {k} of ")));
                assert!(resumed_from, "round {round} ({records} records): {said}");
                resumed += 1;
            }
        }
        assert!(
            std::fs::read(&got).unwrap() == want,
            "round {round}: bytes differ"
        );
        assert!(kept(&got_dir).is_empty(), "round {round}: leftovers");
        std::fs::remove_file(&got).unwrap();
    }
    eprintln!("{interrupted} of 20 receives killed part-way, {resumed} resumed ({whole} ms each)");
    assert!(interrupted >= 10, "too few receives were interrupted");
    assert!(
        resumed >= 3,
        "too few receives had a checkpoint to resume from"
    );
    assert!(tampered, "no round damaged its kept content");
}

/// The kept files have names anyone with the description can work out: a
/// link planted under one is refused and its target left alone. And
/// `--no-resume` after an interrupted receive downloads it all and leaves
/// nothing behind.
#[test]
fn recv_refuses_planted_links_and_no_resume_starts_afresh() {
    let server = XftpServer::start();
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("profile");
    let original = work.path().join("doc.bin");
    write_file(&original, 20 << 20, 41);
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut args = send_args(&original, &out, &server.address);
    args.extend(["-n", "3"]);
    let sent = run_xftp(&profile, &args);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let rcv = |i: usize| out.join(format!("doc.bin.xftp/rcv{i}.xftp"));
    let desc = FileDescription::from_yaml(&std::fs::read_to_string(rcv(1)).unwrap()).unwrap();
    let id: String = smp_core::crypto::digest::sha256(&desc.digest)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let got_dir = work.path().join("got");
    std::fs::create_dir(&got_dir).unwrap();
    let victim = work.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    for name in ["state", "part"] {
        let link = got_dir.join(format!(".xftp-recv-{id}.{name}"));
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let got = got_dir.join("doc.bin");
        let r = run_xftp(
            &profile,
            &["recv", rcv(1).to_str().unwrap(), got.to_str().unwrap()],
        );
        assert!(!r.status.success(), "{name}: {}", text(&r.stdout));
        assert!(
            text(&r.stderr).contains("not a regular file"),
            "{}",
            text(&r.stderr)
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!got.exists());
        std::fs::remove_file(&link).unwrap();
        // The state of the first try is left (locked files of our own).
        for f in kept(&got_dir) {
            std::fs::remove_file(f).unwrap();
        }
    }

    // Interrupted once the first chunks are kept, then --no-resume.
    let got = got_dir.join("doc.bin");
    let rcv2 = rcv(2);
    let a = ["recv", rcv2.to_str().unwrap(), got.to_str().unwrap(), "-y"];
    let mut child = spawn_xftp(&profile, &a);
    let state = got_dir.join(format!(".xftp-recv-{id}.state"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\nchunk "))
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap();
    if !got.exists() {
        assert!(
            !kept(&got_dir).is_empty(),
            "an interrupted receive keeps its part"
        );
        let mut again = a.to_vec();
        again.push("--no-resume");
        let r = run_xftp(&profile, &again);
        assert!(r.status.success(), "{}", text(&r.stderr));
        assert!(!text(&r.stdout).contains("Resuming"), "{}", text(&r.stdout));
    }
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&original).unwrap());
    assert!(kept(&got_dir).is_empty(), "nothing left behind");
}
