//! The whole path on loopback, with the real `xftp` command line.
//!
//! Starts three xftp-servers on 127.0.0.1 with fresh Ed448 identities in
//! temporary directories, runs `xftp send FILE DIR -s "<the three servers>"`
//! and `xftp recv rcv1.xftp OUT -y` as child processes, shows what they
//! printed, checks that the received bytes equal the sent ones, and stops
//! the servers.
//!
//! `cargo run --release -p xftp-cli --example loopback [FILE]`
//! (without FILE, 20 MiB of generated data are sent).
//!
//! The children are this program re-executed in "xftp mode": they run
//! `xftp_cli::cli::main`, the same function as the `xftp` binary's `main`,
//! so no separately built binary is needed.

use std::path::Path;
use std::process::ExitCode;

use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::tls::ServerIdentity;
use xftp_server::app::{Settings, start};

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
    match rt.block_on(run(rest.first().map(Path::new))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopback failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn xftp(args: &[&str]) -> Res<String> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg(XFTP_MODE)
        .args(args)
        .env_remove("XFTP_SERVERS")
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("$ xftp {}", args.join(" "));
    // The reference ends progress items with '\r'; show each on its own line.
    for line in stdout
        .replace('\r', "\n")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        println!("  {}", line.trim_end());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("xftp {} exited with {}: {stderr}", args[0], out.status).into());
    }
    Ok(stdout)
}

async fn run(file: Option<&Path>) -> Res<()> {
    let work = tempfile::tempdir()?;
    let w = work.path();

    let mut servers = Vec::new();
    let mut addresses = Vec::new();
    for i in 1..=3 {
        let dir = w.join(format!("server{i}"));
        std::fs::create_dir_all(dir.join("files"))?;
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1")?;
        let mut s = Settings::new(identity.clone(), "127.0.0.1:0".parse()?, dir.join("files"));
        s.store_log = Some(dir.join("file-server-store.log"));
        let server = start(s).await?;
        let addr = format!(
            "xftp://{}@127.0.0.1:{}",
            identity.fingerprint_b64(),
            server.addr.port()
        );
        println!("server {i}: {addr}");
        addresses.push(addr);
        servers.push(server);
    }

    let src = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let f = w.join("sample.bin");
            let mut x = 0x9e37_79b9u32;
            let data: Vec<u8> = (0..20 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            std::fs::write(&f, data)?;
            f
        }
    };
    let sent = w.join("sent");
    let received = w.join("received");
    std::fs::create_dir(&sent)?;
    std::fs::create_dir(&received)?;
    let list = addresses.join(";");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    println!();
    let t = std::time::Instant::now();
    xftp(&["send", &s(&src), &s(&sent), "-s", &list]).await?;
    let send_time = t.elapsed();
    let name = src.file_name().ok_or("FILE has no name")?.to_string_lossy();
    let rcv1 = sent.join(format!("{name}.xftp")).join("rcv1.xftp");
    println!();
    let t = std::time::Instant::now();
    xftp(&["recv", &s(&rcv1), &s(&received), "-y"]).await?;
    let recv_time = t.elapsed();

    let original = std::fs::read(&src)?;
    let copy = std::fs::read(received.join(name.as_ref()))?;
    for server in servers {
        server.stop().await;
    }
    if original != copy {
        return Err("the received file differs from the sent one".into());
    }
    println!(
        "\nOK: {} bytes sent in {:.2?} and received in {:.2?}; the bytes match. Servers stopped.",
        original.len(),
        send_time,
        recv_time
    );
    Ok(())
}
