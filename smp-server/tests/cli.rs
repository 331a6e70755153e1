//! The operator's side: `init`, `start` checks, `delete`, a clean stop on
//! SIGTERM that saves messages and counters, and the metrics endpoint.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command as Proc, Output, Stdio};
use std::time::{Duration, Instant};

use smp_core::crypto::digest::sha256;
use smp_core::encoding::string::b64_encode;
use smp_core::smp::Response;
use support::*;

fn bin(dir: &Path) -> Proc {
    let mut p = Proc::new(env!("CARGO_BIN_EXE_smp-server"));
    p.env("SMP_SERVER_CFG_PATH", dir.join("cfg"))
        .env("SMP_SERVER_LOG_PATH", dir.join("log"))
        .env("RUST_LOG", "warn");
    p
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin(dir).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Points an initialized router's INI at a free loopback port.
fn use_free_port(dir: &Path) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ini = dir.join("cfg/smp-server.ini");
    let t = std::fs::read_to_string(&ini)
        .unwrap()
        .replace("port = 5223,443", &format!("port = {port}"));
    std::fs::write(&ini, t).unwrap();
    port
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the router listens");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pem_der(path: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(path).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn init_writes_identity_config_and_prints_the_address() {
    let d = tempfile::tempdir().unwrap();
    let o = run(
        d.path(),
        &["init", "--fqdn", "smp.example.net", "--password", "s3cret"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let cfg = d.path().join("cfg");
    let fp = b64_encode(&sha256(&pem_der(&cfg.join("ca.crt"))));
    assert_eq!(
        std::fs::read_to_string(cfg.join("fingerprint"))
            .unwrap()
            .trim(),
        fp
    );
    assert!(
        text(&o).contains(&format!(
            "Server address: smp://{fp}:s3cret@smp.example.net"
        )),
        "{}",
        text(&o)
    );
    for key in ["ca.key", "server.key", "smp-server.ini"] {
        assert_eq!(mode(&cfg.join(key)), 0o600, "{key}");
    }
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).unwrap();
    assert!(ini.contains("create_password = s3cret"));
    assert!(ini.contains("port = 5223,443"));
    // A second init refuses to touch the existing router.
    let again = run(d.path(), &["init", "--no-password"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already initialized"));
    // Random password by default, Ed448 on request.
    let d2 = tempfile::tempdir().unwrap();
    let o = run(d2.path(), &["init", "-a", "ED448"]);
    assert!(o.status.success(), "{}", text(&o));
    let ini = std::fs::read_to_string(d2.path().join("cfg/smp-server.ini")).unwrap();
    let pw = ini
        .lines()
        .find_map(|l| l.strip_prefix("create_password = "))
        .unwrap();
    assert_eq!(pw.len(), 44, "32 random bytes in base64url");
}

#[test]
fn start_refuses_a_replaced_identity_and_unsupported_stores() {
    let d = tempfile::tempdir().unwrap();
    assert!(run(d.path(), &["init", "--no-password"]).status.success());
    let cfg = d.path().join("cfg");
    let ini = cfg.join("smp-server.ini");
    let good = std::fs::read_to_string(&ini).unwrap();
    std::fs::write(
        &ini,
        good.replace("store_messages = memory", "store_messages = journal"),
    )
    .unwrap();
    let o = run(d.path(), &["start"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("journal export"), "{}", text(&o));
    std::fs::write(&ini, &good).unwrap();
    std::fs::write(cfg.join("fingerprint"), "AAAA\n").unwrap();
    let o = run(d.path(), &["start"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("fingerprint"), "{}", text(&o));
    // Not initialized at all.
    let empty = tempfile::tempdir().unwrap();
    let o = run(empty.path(), &["start"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("smp-server init"), "{}", text(&o));
}

#[test]
fn delete_asks_first() {
    let d = tempfile::tempdir().unwrap();
    assert!(run(d.path(), &["init", "--no-password"]).status.success());
    let mut child = bin(d.path())
        .arg("delete")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(d.path().join("cfg/smp-server.ini").exists(), "kept on 'n'");
    assert!(run(d.path(), &["delete", "-y"]).status.success());
    assert!(!d.path().join("cfg").exists() && !d.path().join("log").exists());
}

#[tokio::test]
async fn sigterm_saves_messages_and_counters() {
    let d = tempfile::tempdir().unwrap();
    assert!(run(d.path(), &["init", "--no-password"]).status.success());
    let port = use_free_port(d.path());
    let mut child = bin(d.path())
        .arg("start")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let identity = smp_core::tls::ServerIdentity::load(&d.path().join("cfg")).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = RawClient::connect(addr, identity.fingerprint(), Hello::v(18))
        .await
        .unwrap();
    let q = c.new_queue().await;
    assert_eq!(c.snd(&q, b"kept").await, Ok(Response::Ok));
    // SAFETY: FFI kill of our own child process by pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success(), "clean exit on SIGTERM");
    let mut banner = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut banner)
        .unwrap();
    assert!(banner.contains(&format!("Fingerprint: {}", identity.fingerprint_b64())));
    let log = d.path().join("log");
    let stats = std::fs::read_to_string(log.join("smp-server-stats.log")).unwrap();
    assert!(
        stats.contains("qCreated=1") && stats.contains("msgSent=1"),
        "{stats}"
    );
    let msgs = std::fs::read_to_string(log.join("smp-server-messages.log")).unwrap();
    assert_eq!(msgs.lines().count(), 1);
    assert!(msgs.starts_with("v3 "), "the reference's export format");
    assert!(msgs.lines().all(|l| l.starts_with("v3 ")));
}

#[tokio::test]
async fn metrics_endpoint_serves_the_counters() {
    let env = Env::new();
    let mut s = env.settings();
    s.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let srv = smp_server::app::start(s).await.unwrap();
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    assert_eq!(c.snd(&q, b"x").await, Ok(Response::Ok));
    let mut sock = tokio::net::TcpStream::connect(srv.metrics_addr.unwrap())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    sock.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"));
    assert!(body.contains("simplex_smp_qCreated 1\n"), "{body}");
    assert!(body.contains("simplex_smp_msgSent 1\n"), "{body}");
    srv.stop().await;
}

/// `smp-server` through `sh` with a umask that hides nothing.
fn bin_open_umask(dir: &Path) -> Proc {
    let mut p = Proc::new("sh");
    p.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_smp-server"))
        .env("SMP_SERVER_CFG_PATH", dir.join("cfg"))
        .env("SMP_SERVER_LOG_PATH", dir.join("log"))
        .env("RUST_LOG", "warn");
    p
}

/// Every file in `dir`: the public ones not writable by others, the rest
/// (keys, INI, store and message logs and their backups) 0600.
fn assert_owner_only(dir: &Path, public: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let m = mode(&path);
        if public.contains(&name.as_str()) {
            assert_eq!(m & 0o022, 0, "{name} is {m:o}");
        } else {
            assert_eq!(m, 0o600, "{name} is {m:o}");
        }
        names.push(name);
    }
    names
}

/// Runs the router until one message is queued, then SIGTERM; returns
/// what it printed on stderr.
async fn run_once_with_a_message(d: &Path, port: u16) -> String {
    let child = bin_open_umask(d)
        .arg("start")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port);
    let identity = smp_core::tls::ServerIdentity::load(&d.join("cfg")).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = RawClient::connect(addr, identity.fingerprint(), Hello::v(18))
        .await
        .unwrap();
    let q = c.new_queue().await;
    assert_eq!(c.snd(&q, b"private").await, Ok(Response::Ok));
    // SAFETY: FFI kill of our own child process by pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "clean exit on SIGTERM");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 14, fault 7: even under umask 000 the store log (queue secrets),
/// the message log (bodies), the INI and the keys are 0600 and the
/// directories 0700; a log an older version left at 0644 is narrowed at
/// the next start, with its backups, and the operator is told.
#[tokio::test]
async fn secrets_and_messages_are_owner_only_whatever_the_umask() {
    let d = tempfile::tempdir().unwrap();
    let o = bin_open_umask(d.path())
        .args(["init", "--no-password"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for sub in ["cfg", "log"] {
        assert_eq!(mode(&d.path().join(sub)), 0o700, "{sub}");
    }
    let public = [
        "ca.crt",
        "server.crt",
        "fingerprint",
        "smp-server-stats.log",
    ];
    assert_owner_only(&d.path().join("cfg"), &public);
    let port = use_free_port(d.path());

    run_once_with_a_message(d.path(), port).await;
    let log = d.path().join("log");
    let names = assert_owner_only(&log, &public);
    for f in ["smp-server-store.log", "smp-server-messages.log"] {
        assert!(names.iter().any(|n| n == f), "{f} in {names:?}");
    }

    for f in ["smp-server-store.log", "smp-server-messages.log"] {
        std::fs::set_permissions(log.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let said = run_once_with_a_message(d.path(), port).await;
    let names = assert_owner_only(&log, &public);
    assert!(
        names.iter().any(|n| n.starts_with("smp-server-store.log.")),
        "a timestamped backup: {names:?}"
    );
    assert!(said.contains("narrowed to 0600"), "{said}");
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Issue 14, fault 5: with `prlimit --nofile=64` and 100 connections held
/// open, the accept loop backs off (it used to retry at once, a core at
/// 100 %), warns once, and serves again when descriptors return.
#[tokio::test]
async fn out_of_descriptors_the_router_backs_off_and_recovers() {
    let d = tempfile::tempdir().unwrap();
    assert!(run(d.path(), &["init", "--no-password"]).status.success());
    let port = use_free_port(d.path());
    let child = Proc::new("prlimit")
        .args([
            "--nofile=64:64",
            "--",
            env!("CARGO_BIN_EXE_smp-server"),
            "start",
        ])
        .env("SMP_SERVER_CFG_PATH", d.path().join("cfg"))
        .env("SMP_SERVER_LOG_PATH", d.path().join("log"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port);
    let held: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, t0) = (cpu_seconds(child.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_seconds(child.id()) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    assert!(
        cpu < wall / 4.0,
        "the accept loop must not spin: {cpu:.2} s of CPU in {wall:.2} s"
    );
    drop(held);
    let identity = smp_core::tls::ServerIdentity::load(&d.path().join("cfg")).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + PATIENCE;
    let mut c = loop {
        if let Some(c) = RawClient::connect(addr, identity.fingerprint(), Hello::v(18)).await {
            break c;
        }
        assert!(Instant::now() < deadline, "served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let q = c.new_queue().await;
    assert_eq!(c.snd(&q, b"after").await, Ok(Response::Ok));
    // SAFETY: FFI kill of our own child process by pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    let warnings = said.matches("cannot accept connections").count();
    assert!(
        (1..=2).contains(&warnings),
        "one warning per minute, not one per failure: {warnings}\n{said}"
    );
}
