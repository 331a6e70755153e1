//! `xftp send` and `xftp recv` of one file over loopback, as ratios to the
//! crypto-only bound measured in the same run, and the peak RSS of each.
//!
//! The bound is what no client can beat on this machine: encrypting the
//! same number of bytes in memory with the full pipeline (XSalsa20-Poly1305,
//! SHA-512 of the file, SHA-256 per chunk; `encrypt_file` from memory into a
//! sink). `send` and `recv` run as child processes executing
//! `xftp_cli::cli::main`, the `xftp` binary's code, against three servers on
//! 127.0.0.1 whose files, like the source, the temporary files and the
//! output, live on /dev/shm; each child reports its own peak RSS (VmHWM).
//! The servers run in this process and share the machine's cores with the
//! client, as on a one-machine loopback.
//!
//! `cargo bench -p simplego-benches --bench xftp_cli`
//! (`BENCH_MIB=256` for a shorter run; default 1024 = 1 GiB).

mod support;

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Instant;
use support::{PIECE, Source, peak_rss_kib, size};

use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::header::FileHeader;
use smp_core::file::stream::encrypt_file;
use smp_core::tls::ServerIdentity;
use xftp_server::app::{Settings, start};

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::hint::black_box(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `xftp ARGS` in a child; returns seconds and its peak RSS in KiB.
async fn xftp(args: &[&str]) -> (f64, u64) {
    let t = Instant::now();
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--as-xftp")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("cannot start the xftp child");
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "xftp {} failed: {}\n{stderr}",
        args[0],
        String::from_utf8_lossy(&out.stdout)
    );
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KIB "))
        .and_then(|v| v.parse().ok())
        .expect("the child reports its peak RSS");
    (secs, rss)
}

fn work_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; PIECE], vec![0u8; PIECE]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
        if fb.read_exact(&mut bb[..na]).is_err() || ba[..na] != bb[..na] {
            return false;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--as-xftp") {
        let code = xftp_cli::cli::main(
            std::iter::once(args[0].clone()).chain(args[i + 1..].iter().cloned()),
        );
        eprintln!("PEAK_RSS_KIB {}", peak_rss_kib(None));
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let len = size();
    let mib = (len >> 20) as f64;
    println!(
        "xftp send/recv over {mib} MiB on loopback, 3 servers ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // The bound: the whole encryption pipeline in memory.
    let t = Instant::now();
    encrypt_file(
        Source::new(len),
        len,
        &FileHeader::new("bench.bin"),
        &SbKey([1; 32]),
        &CbNonce([2; 24]),
        Sink,
    )
    .expect("encryption failed");
    let bound = mib / t.elapsed().as_secs_f64();

    let work = work_dir();
    let w = work.path();
    let src = w.join("bench.bin");
    {
        let mut f = io::BufWriter::new(std::fs::File::create(&src).unwrap());
        io::copy(&mut Source::new(len), &mut f).unwrap();
        f.flush().unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut servers = Vec::new();
        let mut addresses = Vec::new();
        for i in 0..3 {
            let dir = w.join(format!("server{i}"));
            std::fs::create_dir_all(dir.join("files")).unwrap();
            let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
            let s = Settings::new(
                identity.clone(),
                "127.0.0.1:0".parse().unwrap(),
                dir.join("files"),
            );
            let server = start(s).await.unwrap();
            addresses.push(format!(
                "xftp://{}@127.0.0.1:{}",
                identity.fingerprint_b64(),
                server.addr.port()
            ));
            servers.push(server);
        }
        let list = addresses.join(";");
        let tmp = w.join("tmp");
        let out = w.join("out");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::create_dir(&out).unwrap();
        let tmp_arg = format!("--tmp={}", tmp.display());
        let s = |p: &Path| p.to_string_lossy().into_owned();

        let (send_secs, send_rss) = xftp(&["send", &s(&src), &s(w), "-s", &list, &tmp_arg]).await;
        let rcv1 = w.join("bench.bin.xftp/rcv1.xftp");
        let (recv_secs, recv_rss) = xftp(&["recv", &s(&rcv1), &s(&out), &tmp_arg, "-y"]).await;
        for server in servers {
            server.stop().await;
        }
        assert!(
            same_content(&src, &out.join("bench.bin")),
            "the received file differs"
        );

        let send_rate = mib / send_secs;
        let recv_rate = mib / recv_secs;
        println!(
            "{:<34}{:>10}{:>10}{:>12}",
            "case", "MiB/s", "ratio", "peak RSS"
        );
        println!(
            "{:<34}{:>10.0}{:>10}{:>12}",
            "crypto-only bound (in memory)", bound, "1.00", "-"
        );
        for (name, rate, rss) in [
            ("xftp send (encrypt + upload)", send_rate, send_rss),
            ("xftp recv (download + decrypt)", recv_rate, recv_rss),
        ] {
            println!(
                "{:<34}{:>10.0}{:>10.2}{:>9} MiB",
                name,
                rate,
                rate / bound,
                rss / 1024
            );
        }
        println!("targets: ratio >= 0.8 each, peak RSS <= 32 MiB each");
    });
}
