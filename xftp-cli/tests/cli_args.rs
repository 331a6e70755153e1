//! The command line itself: version, help, usage errors, `rand`, the size limit.

mod support;

use support::*;
use xftp_cli::error::exit;

const FAKE: &str = "xftp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@127.0.0.1:1";

#[tokio::test]
async fn version_help_and_usage() {
    let r = xftp(&["-v"]).await;
    assert_eq!(
        (r.status, r.stdout.as_str()),
        (0, "SimpleX XFTP client v1.0.1\n")
    );
    for cmd in ["send", "recv", "del", "info"] {
        let r = xftp(&[cmd, "--help"]).await;
        assert_eq!(r.status, 0, "{cmd} --help");
        assert!(r.stdout.contains("Usage: xftp"), "{}", r.stdout);
    }
    let r = xftp(&["send"]).await;
    assert_eq!(
        r.status, 1,
        "missing FILE is a usage error, exit 1 as the reference"
    );
    assert!(r.stderr.contains("Usage"), "{}", r.stderr);
}

#[tokio::test]
async fn rand_and_the_size_limit() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("testfile");
    let r = xftp(&["rand", p(&f), "17mb"]).await;
    assert_eq!(r.stdout, format!("File created: {}\n", p(&f)));
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 17825792);

    let big = d.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((1 << 30) + 1)
        .unwrap();
    let r = xftp(&["send", p(&big), p(d.path()), "-s", FAKE]).await;
    assert_eq!(r.status, exit::TOO_LARGE, "{}", r.stderr);
    assert!(
        r.stderr.contains("Files bigger than 1gb are not supported"),
        "{}",
        r.stderr
    );

    let r = xftp(&["info", p(&f)]).await;
    assert_eq!(r.status, exit::BAD_DESCRIPTION, "{}", r.stderr);
    let r = xftp(&[
        "recv",
        "https://example.com/#not-a-description",
        p(d.path()),
    ])
    .await;
    assert_eq!(r.status, exit::BAD_DESCRIPTION, "{}", r.stderr);
}
