//! `xftp profile`, run as the real binary in a temp dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use smp_core::client::agent::store::{DB_FILE, Store};
use xftp_cli::error::exit;

const ROUTER: &str = "smp://0YuTwO05YJWS8rkjn9eLJDjQhFKvIYd8d4xG8X1blIU=@smp8.simplex.im";
const ROUTER2: &str = "smp://SkIkI6EPd2D63F4xFKfHk7I1UGZVNn6k1QWZ5rcyr6w=@smp9.simplex.im:5224";

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `xftp` with `home` as `$HOME`, no `$XFTP_PROFILE` unless given, and
/// a fixed login name.
fn xftp(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xftp"));
    c.args(args)
        .env("HOME", home)
        .env("USER", "tester")
        .env_remove("LOGNAME")
        .env_remove("XFTP_PROFILE");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn routers(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SMP router: "))
        .collect()
}

#[test]
fn first_use_creates_the_default_profile() {
    let t = tempfile::tempdir().unwrap();
    let r = xftp(t.path(), &[], &["profile"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let dir = t.path().join(".simplego");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
    let mut lines = r.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("Profile created: {}", dir.display()).as_str())
    );
    assert_eq!(lines.next(), Some("Display name: tester"));
    let expected = xftp_cli::profile::default_smp_servers();
    assert!(!expected.is_empty());
    assert_eq!(routers(&r.stdout), expected);

    // Second run: the same profile, not created again.
    let again = xftp(t.path(), &[], &["profile"]);
    assert_eq!(again.status, 0, "{}", again.stderr);
    assert!(
        !again.stdout.contains("Profile created"),
        "{}",
        again.stdout
    );
    assert_eq!(
        r.stdout.lines().skip(1).collect::<Vec<_>>(),
        again.stdout.lines().collect::<Vec<_>>()
    );
}

#[test]
fn name_falls_back_to_user() {
    let t = tempfile::tempdir().unwrap();
    let r = xftp(t.path(), &[("USER", "")], &["profile"]);
    assert!(r.stdout.contains("\nDisplay name: user\n"), "{}", r.stdout);
    let t = tempfile::tempdir().unwrap();
    let r = xftp(t.path(), &[("USER", ""), ("LOGNAME", "lg")], &["profile"]);
    assert!(r.stdout.contains("\nDisplay name: lg\n"), "{}", r.stdout);
}

#[test]
fn changes_persist_and_dir_options_take_precedence() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("prof");
    let d = dir.to_str().unwrap();
    let r = xftp(
        t.path(),
        &[],
        &[
            "--profile",
            d,
            "profile",
            "--name",
            "Alice B",
            "--smp",
            ROUTER,
            "--smp",
            ROUTER2,
        ],
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Display name: Alice B\n"), "{}", r.stdout);
    assert_eq!(routers(&r.stdout), vec![ROUTER, ROUTER2]);
    assert!(!t.path().join(".simplego").exists());

    // $XFTP_PROFILE names the same dir; only the name changes.
    let r = xftp(
        t.path(),
        &[("XFTP_PROFILE", d)],
        &["profile", "--name", "Al"],
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("Display name: Al\nSMP router: {ROUTER}\nSMP router: {ROUTER2}\n")
    );
    // --profile (after the subcommand too) beats $XFTP_PROFILE.
    let other = t.path().join("other");
    let r = xftp(
        t.path(),
        &[("XFTP_PROFILE", d)],
        &["profile", "--profile", other.to_str().unwrap()],
    );
    assert!(r.stdout.contains("Display name: tester"), "{}", r.stdout);
    // --smp replaces the list.
    let r = xftp(
        t.path(),
        &[("XFTP_PROFILE", d)],
        &["profile", "--smp", ROUTER2],
    );
    assert_eq!(
        r.stdout,
        format!("Display name: Al\nSMP router: {ROUTER2}\n")
    );

    // The store itself holds it.
    let s = Store::open(&dir).unwrap();
    let p = s.profile().unwrap().unwrap();
    assert_eq!(p.display_name, "Al");
    assert_eq!(p.smp_servers, vec![ROUTER2.to_string()]);
}

#[test]
fn bad_input_is_one_sentence_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("p");
    let d = d.to_str().unwrap();
    for (args, msg) in [
        (
            vec!["--smp", "not-an-address"],
            "Error: invalid server \"not-an-address\": ",
        ),
        (
            vec![
                "--smp",
                ROUTER,
                "--smp",
                "xftp://0YuTwO05YJWS8rkjn9eLJDjQhFKvIYd8d4xG8X1blIU=@h",
            ],
            "an SMP router address starts with smp://",
        ),
        (
            vec!["--name", " "],
            "Error: invalid display name \" \": it is empty",
        ),
        (vec!["--name", "@bob"], "must not start with '@' or '#'"),
    ] {
        let mut a = vec!["--profile", d, "profile"];
        a.extend(args.iter());
        let r = xftp(t.path(), &[], &a);
        assert_eq!(r.status, exit::FAILURE, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(msg), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    // Refused before anything was created.
    assert!(!Path::new(d).exists());
}

#[test]
fn a_profile_in_use_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    let d = dir.to_str().unwrap();
    assert_eq!(xftp(t.path(), &[], &["--profile", d, "profile"]).status, 0);
    // This test process holds the profile while another `xftp` tries it.
    let held = Store::open(&dir).unwrap();
    let r = xftp(t.path(), &[], &["--profile", d, "profile", "--name", "x"]);
    assert_eq!(r.status, exit::FAILURE);
    assert!(
        r.stderr.contains(&format!(
            "the profile {d} is in use by another xftp process"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    drop(held);
    let r = xftp(t.path(), &[], &["--profile", d, "profile"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Display name: tester"),
        "unchanged: {}",
        r.stdout
    );
}

#[test]
fn unsafe_profile_dir_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = xftp(
        t.path(),
        &[],
        &["--profile", dir.to_str().unwrap(), "profile"],
    );
    assert_eq!(r.status, exit::FAILURE);
    assert!(r.stderr.contains("writable by other users"), "{}", r.stderr);
}

#[test]
fn help_describes_profile() {
    let t = tempfile::tempdir().unwrap();
    let r = xftp(t.path(), &[], &["profile", "--help"]);
    assert_eq!(r.status, 0);
    for s in [
        "Usage: xftp profile",
        "--name <NAME>",
        "--smp <ADDR>",
        "--profile <DIR>",
        "XFTP_PROFILE",
    ] {
        assert!(r.stdout.contains(s), "{s}: {}", r.stdout);
    }
    let r = xftp(t.path(), &[], &["--help"]);
    assert!(r.stdout.contains("profile"), "{}", r.stdout);
}
