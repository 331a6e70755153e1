//! Messaging on loopback, with the real `xftp` command line.
//!
//! Starts two SimpleGo SMP routers and two xftp-servers on 127.0.0.1 with
//! fresh identities, makes two profiles (alice on the first router, bob on
//! the second), connects them with a one-time invitation, sends a text
//! message each way and a 5 MiB file from alice to bob (its description
//! travels as chat messages over SMP, through alice's router as a
//! private-routing proxy), and checks what arrived.
//!
//! `cargo run --release -p xftp-cli --example messaging`
//!
//! As in the `loopback` example, the `xftp` runs are this program re-executed
//! in "xftp mode" (`xftp_cli::cli::main`, the function the binary runs).

use std::process::ExitCode;

use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::tls::ServerIdentity;

const XFTP_MODE: &str = "--run-as-xftp";

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    let rest: Vec<_> = args.collect();
    if rest.first().is_some_and(|a| a == XFTP_MODE) {
        return xftp_cli::cli::main(std::iter::once(program).chain(rest.into_iter().skip(1)));
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("messaging example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn xftp(args: &[&str]) -> Res<String> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg(XFTP_MODE)
        .args(args)
        .env_remove("XFTP_SERVERS")
        .env_remove("XFTP_PROFILE")
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Show the command without the temporary profile path.
    let shown: Vec<String> = args
        .iter()
        .skip(2)
        .map(|a| {
            if a.len() > 60 {
                format!("{}…", &a[..60])
            } else {
                a.to_string()
            }
        })
        .collect();
    println!(
        "[{}] $ xftp {}",
        args[1].rsplit('/').next().unwrap_or(""),
        shown.join(" ")
    );
    for line in stdout
        .replace('\r', "\n")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let l = line.trim_end();
        let l = if l.len() > 110 {
            format!("{}…", &l[..110])
        } else {
            l.to_string()
        };
        println!("    {l}");
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "xftp {} exited with {}: {stderr}",
            shown.join(" "),
            out.status
        )
        .into());
    }
    Ok(stdout)
}

/// Listens on both sides in turn until both outputs contain their text.
async fn until(a: (&str, &str), b: (&str, &str)) -> Res<()> {
    let (mut out_a, mut out_b) = (String::new(), String::new());
    for _ in 0..8 {
        if !out_a.contains(a.1) {
            out_a.push_str(&xftp(&["--profile", a.0, "listen", "--timeout", "2"]).await?);
        }
        if !out_b.contains(b.1) {
            out_b.push_str(&xftp(&["--profile", b.0, "listen", "--timeout", "2"]).await?);
        }
        if out_a.contains(a.1) && out_b.contains(b.1) {
            return Ok(());
        }
    }
    Err(format!("expected {:?} and {:?}", a.1, b.1).into())
}

async fn run() -> Res<()> {
    let work = tempfile::tempdir()?;
    let w = work.path();
    let mut routers = Vec::new();
    let mut router_addrs = Vec::new();
    for i in 1..=2 {
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1")?;
        let s = smp_server::app::Settings::new(identity.clone(), "127.0.0.1:0".parse()?);
        let r = smp_server::app::start(s).await.map_err(|e| e.0)?;
        let addr = format!(
            "smp://{}@127.0.0.1:{}",
            identity.fingerprint_b64(),
            r.addr().port()
        );
        println!("SMP router {i}: {addr}");
        router_addrs.push(addr);
        routers.push(r);
    }
    let mut xftp_servers = Vec::new();
    let mut xftp_addrs = Vec::new();
    for i in 1..=2 {
        let dir = w.join(format!("xftp{i}"));
        std::fs::create_dir_all(dir.join("files"))?;
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1")?;
        let s = xftp_server::app::Settings::new(
            identity.clone(),
            "127.0.0.1:0".parse()?,
            dir.join("files"),
        );
        let server = xftp_server::app::start(s).await?;
        let addr = format!(
            "xftp://{}@127.0.0.1:{}",
            identity.fingerprint_b64(),
            server.addr.port()
        );
        println!("XFTP server {i}: {addr}");
        xftp_addrs.push(addr);
        xftp_servers.push(server);
    }
    let alice = w.join("alice");
    let bob = w.join("bob");
    let (a, b) = (
        alice.to_string_lossy().into_owned(),
        bob.to_string_lossy().into_owned(),
    );
    println!();
    xftp(&[
        "--profile",
        &a,
        "profile",
        "--name",
        "alice",
        "--smp",
        &router_addrs[0],
    ])
    .await?;
    xftp(&[
        "--profile",
        &b,
        "profile",
        "--name",
        "bob",
        "--smp",
        &router_addrs[1],
    ])
    .await?;
    let link = xftp(&["--profile", &a, "invite"]).await?;
    let link = link.lines().next().ok_or("no link printed")?.to_string();
    xftp(&["--profile", &b, "connect", &link]).await?;
    until((&a, "bob connected"), (&b, "alice connected")).await?;
    xftp(&["--profile", &a, "msg", "bob", "Hi Bob, a report follows."]).await?;
    xftp(&["--profile", &b, "msg", "alice", "Thanks, Alice!"]).await?;
    until(
        (&a, "bob: Thanks, Alice!"),
        (&b, "alice: Hi Bob, a report follows."),
    )
    .await?;

    let file = w.join("report.bin");
    let mut x = 0x9e37_79b9u32;
    let data: Vec<u8> = (0..5 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&file, &data)?;
    let list = xftp_addrs.join(";");
    xftp(&[
        "--profile",
        &a,
        "send",
        &file.to_string_lossy(),
        "--to",
        "bob",
        "-s",
        &list,
    ])
    .await?;
    let downloads = w.join("downloads");
    let d = downloads.to_string_lossy().into_owned();
    let mut got = String::new();
    for _ in 0..8 {
        got.push_str(&xftp(&["--profile", &b, "listen", "--timeout", "3", "--files", &d]).await?);
        if got.contains("alice sent report.bin") {
            break;
        }
    }
    let copy = std::fs::read(downloads.join("report.bin"))?;
    for r in routers {
        r.stop().await;
    }
    for s in xftp_servers {
        s.stop().await;
    }
    if copy != data {
        return Err("the received file differs from the sent one".into());
    }
    println!(
        "\nOK: connected, a message each way, and {} bytes received intact. Servers stopped.",
        data.len()
    );
    Ok(())
}
