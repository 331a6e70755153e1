//! The messaging commands end to end: real `xftp` processes and SimpleGo
//! routers running in their own processes (this test binary re-run as a
//! router), everything on 127.0.0.1.

mod support;

use std::path::Path;

use support::routers::Router;
use support::{Servers, p, write_file, xftp};

/// Not a test of its own: the body of a router child process.
#[test]
fn router_child() {
    support::routers::child_main();
}

async fn run_ok(args: &[&str]) -> String {
    let r = xftp(args).await;
    assert_eq!(
        r.status, 0,
        "xftp {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r.stdout
}

async fn profile(dir: &Path, name: &str, router: &Router) {
    run_ok(&[
        "--profile",
        p(dir),
        "profile",
        "--name",
        name,
        "--smp",
        &router.address,
    ])
    .await;
}

async fn listen(dir: &Path, secs: u64) -> String {
    run_ok(&[
        "--profile",
        p(dir),
        "listen",
        "--timeout",
        &secs.to_string(),
    ])
    .await
}

/// Listens until `want` appears (the peer's messages may still be on
/// their way through the proxy).
async fn listen_for(dir: &Path, want: &str) -> String {
    let mut all = String::new();
    for _ in 0..6 {
        all.push_str(&listen(dir, 2).await);
        if all.contains(want) {
            return all;
        }
    }
    panic!("never saw {want:?}; listen printed:\n{all}");
}

#[tokio::test]
async fn invitation_text_both_ways_across_two_routers() {
    let (ra, rb) = (Router::start(), Router::start());
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (t.path().join("alice"), t.path().join("bob"));
    profile(&pa, "alice", &ra).await;
    profile(&pb, "bob", &rb).await;

    // A short link by default, as the apps give; its data is fetched
    // through bob's router.
    let link = run_ok(&["--profile", p(&pa), "invite"]).await;
    let link = link.lines().next().unwrap().to_string();
    assert!(link.starts_with("https://127.0.0.1/i#"), "{link}");
    run_ok(&["--profile", p(&pb), "connect", &link]).await;
    listen_for(&pa, "bob connected").await;
    listen_for(&pb, "alice connected").await;
    let contacts = run_ok(&["--profile", p(&pa), "contacts"]).await;
    assert!(contacts.contains("bob\tconnected"), "{contacts}");

    run_ok(&["--profile", p(&pa), "msg", "bob", "hello bob"]).await;
    run_ok(&["--profile", p(&pb), "msg", "alice", "hello alice"]).await;
    let b = listen_for(&pb, "alice: hello bob").await;
    let a = listen_for(&pa, "bob: hello alice").await;
    assert_eq!(b.matches("hello bob").count(), 1, "{b}");
    assert_eq!(a.matches("hello alice").count(), 1, "{a}");

    // 100 in a row arrive once each, in order.
    for n in 0..100 {
        run_ok(&["--profile", p(&pa), "msg", "bob", &format!("n{n:03}")]).await;
    }
    let mut got = String::new();
    for _ in 0..10 {
        got.push_str(&listen(&pb, 2).await);
        if got.contains("alice: n099") {
            break;
        }
    }
    let lines: Vec<&str> = got.lines().filter(|l| l.starts_with("alice: n")).collect();
    let want: Vec<String> = (0..100).map(|n| format!("alice: n{n:03}")).collect();
    assert_eq!(lines, want);
}

#[tokio::test]
async fn contact_address_and_a_file() {
    let (ra, rb) = (Router::start(), Router::start());
    let xs = Servers::start(2).await;
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (t.path().join("alice"), t.path().join("bob"));
    profile(&pa, "alice", &ra).await;
    profile(&pb, "bob", &rb).await;
    // A full link on request, for apps without short links.
    let addr = run_ok(&["--profile", p(&pa), "address", "--full"]).await;
    let addr = addr.lines().next().unwrap().to_string();
    assert!(addr.starts_with("simplex:/contact#/?v=2-7&smp="), "{addr}");
    // The address does not change.
    let again = run_ok(&["--profile", p(&pa), "address", "--full"]).await;
    assert_eq!(again.lines().next().unwrap(), addr);

    run_ok(&["--profile", p(&pb), "connect", &addr, "--name", "ally"]).await;
    // The host accepts, the requester allows, then the host hears back.
    let (mut a, mut b) = (String::new(), String::new());
    for _ in 0..6 {
        a.push_str(&listen(&pa, 2).await);
        b.push_str(&listen(&pb, 2).await);
        if a.contains("bob connected") && b.contains("ally connected") {
            break;
        }
    }
    assert!(a.contains("bob connected"), "{a}");
    assert!(b.contains("ally connected"), "{b}");

    // A 20 MiB file over the two XFTP servers, its description sent in
    // several parts (300 characters each instead of the apps' 14000, which
    // only a file of ~400 MiB would need).
    let file = t.path().join("report.bin");
    write_file(&file, 20 << 20, 7);
    let out = run_ok(&[
        "--profile",
        p(&pa),
        "send",
        p(&file),
        "--to",
        "bob",
        "-s",
        &xs.list(),
        "--descr-part-size",
        "300",
    ])
    .await;
    let parts: usize = out
        .split("(description in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(parts > 1, "{out}");
    let files = t.path().join("downloads");
    let mut got = String::new();
    for _ in 0..10 {
        let r = xftp(&[
            "--profile",
            p(&pb),
            "listen",
            "--timeout",
            "3",
            "--files",
            p(&files),
        ])
        .await;
        assert_eq!(r.status, 0, "{}\n{}", r.stdout, r.stderr);
        got.push_str(&r.stdout);
        if got.contains("ally sent report.bin") {
            break;
        }
    }
    assert!(
        got.contains("ally sent report.bin (20971520 bytes) -> "),
        "{got}"
    );
    assert_eq!(
        std::fs::read(files.join("report.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

#[tokio::test]
async fn bad_links_and_names_fail_in_plain_words() {
    let ra = Router::start();
    let t = tempfile::tempdir().unwrap();
    let pa = t.path().join("alice");
    profile(&pa, "alice", &ra).await;
    let r = xftp(&[
        "--profile",
        p(&pa),
        "connect",
        "simplex:/invitation#/?v=2-7",
    ])
    .await;
    assert_eq!(r.status, 10, "{}", r.stderr);
    assert!(r.stderr.contains("link is not valid"), "{}", r.stderr);
    // Short links: not base64, and a router nobody knows the identity of.
    for (link, why) in [
        ("https://127.0.0.1/i#%%%/abc", "base64"),
        (
            "https://unknown.example/a#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "not a preset router",
        ),
    ] {
        let r = xftp(&["--profile", p(&pa), "connect", link]).await;
        assert_eq!(r.status, 10, "{}", r.stderr);
        assert!(r.stderr.contains(why), "{}", r.stderr);
    }
    let r = xftp(&["--profile", p(&pa), "msg", "nobody", "hi"]).await;
    assert_eq!(r.status, 1);
    assert!(r.stderr.contains("no contact named nobody"), "{}", r.stderr);
}
