//! File encryption throughput and peak memory.
//!
//! Encrypting a file for XFTP means XSalsa20-Poly1305 over every byte plus
//! SHA-512 of the whole encrypted file and SHA-256 of each chunk. On two
//! cores the cipher alone is the ceiling, so the figure that matters is the
//! full pipeline as a ratio to XSalsa20-Poly1305 alone (smp-core's active
//! backend, libsodium on std builds), measured in the same run.
//! Each case runs in its own child process so its peak RSS is its own.
//!
//! `cargo bench -p simplego-benches --bench file_crypto`
//! (`BENCH_MIB=256` for a shorter run; default 1024 = 1 GiB).

mod support;

use sha2::{Digest, Sha512};
use smp_core::crypto::backend;
use smp_core::crypto::secretbox::{CbNonce, SbKey, SbStream};
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{decrypt_file, encrypt_file};
use std::io;
use std::process::Command;
use std::time::Instant;
use support::{Count, PIECE, Source, peak_rss_kib, size};

fn child(mode: &str) {
    let len = size();
    let mut buf = vec![0u8; PIECE];
    let start = Instant::now();
    match mode {
        "xsalsa20" => {
            let mut c = SbStream::new(&[1u8; 32], &CbNonce([2u8; 24]));
            let mut left = len;
            while left > 0 {
                let n = left.min(PIECE as u64) as usize;
                c.encrypt(&mut buf[..n]);
                left -= n as u64;
            }
            std::hint::black_box(c.tag());
        }
        "sha512" => {
            let mut h = Sha512::new();
            let mut left = len;
            while left > 0 {
                let n = left.min(PIECE as u64) as usize;
                h.update(&buf[..n]);
                left -= n as u64;
            }
            std::hint::black_box(h.finalize());
        }
        "sha256" => {
            let mut h = sha2::Sha256::new();
            let mut left = len;
            while left > 0 {
                let n = left.min(PIECE as u64) as usize;
                h.update(&buf[..n]);
                left -= n as u64;
            }
            std::hint::black_box(h.finalize());
        }
        "encrypt" => {
            let mut out = Count(0);
            let f = encrypt_file(
                Source::new(len),
                len,
                &FileHeader::new("bench.bin"),
                &SbKey([1; 32]),
                &CbNonce([2; 24]),
                &mut out,
            )
            .expect("encryption failed");
            assert_eq!(out.0, f.enc_size);
        }
        "encrypt+decrypt" => {
            // Decrypt what is being encrypted, through a pipe, as a receiver would.
            let (mut rd, wr) = io::pipe().expect("pipe");
            let key = SbKey([1; 32]);
            let nonce = CbNonce([2; 24]);
            let enc = std::thread::spawn(move || {
                encrypt_file(
                    Source::new(len),
                    len,
                    &FileHeader::new("bench.bin"),
                    &SbKey([1; 32]),
                    &CbNonce([2; 24]),
                    wr,
                )
                .expect("encryption failed")
            });
            let mut out = Count(0);
            let plan =
                smp_core::file::crypto::FilePlan::new(&FileHeader::new("bench.bin"), len).unwrap();
            decrypt_file(&mut rd, plan.enc_size, &key, &nonce, &mut out)
                .expect("decryption failed");
            enc.join().unwrap();
            assert_eq!(out.0, len);
        }
        other => panic!("unknown case {other}"),
    }
    let secs = start.elapsed().as_secs_f64();
    println!("RESULT {secs} {}", peak_rss_kib(None));
}

fn run(mode: &str) -> (f64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", mode])
        .output()
        .expect("cannot start the bench child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "case {mode} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut it = line.split_whitespace().skip(1);
    (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1]);
        return;
    }
    let mib = (size() >> 20) as f64;
    println!(
        "file crypto over {mib} MiB ({} cores, {} backend)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        backend::active().name()
    );
    let (base, base_rss) = run("xsalsa20");
    let (sha, _) = run("sha512");
    let (sha256, _) = run("sha256");
    println!(
        "{:<28}{:>10}{:>14}{:>14}",
        "case", "MiB/s", "vs cipher", "peak RSS"
    );
    println!(
        "{:<28}{:>10.0}{:>14.2}{:>11} MiB",
        "XSalsa20-Poly1305 (baseline)",
        mib / base,
        1.0,
        base_rss / 1024
    );
    println!(
        "{:<28}{:>10.0}{:>14.2}",
        "SHA-512 alone",
        mib / sha,
        base / sha
    );
    println!(
        "{:<28}{:>10.0}{:>14.2}",
        "SHA-256 alone",
        mib / sha256,
        base / sha256
    );
    // OpenSSL's SHA-512 assembly, measured by its own tool (no dependency
    // on it is taken): what a digest backend on OpenSSL would give.
    if let Some(openssl) = openssl_sha512_mib_s() {
        println!(
            "{:<28}{:>10.0}{:>14}   ({:.2} of the sha2 crate)",
            "SHA-512, openssl speed",
            openssl,
            "-",
            openssl / (mib / sha)
        );
    }
    // The three passes share two cores: the best a pipeline can reach.
    let bound = 2.0 / (base + sha + sha256);
    println!(
        "{:<28}{:>10.0}{:>14.2}",
        "two-core bound of the three",
        mib * bound,
        base * bound
    );
    for mode in ["encrypt", "encrypt+decrypt"] {
        let (t, rss) = run(mode);
        let label = if mode == "encrypt" {
            "encrypt + SHA-512 + SHA-256"
        } else {
            "encrypt | decrypt (pipe)"
        };
        println!(
            "{:<28}{:>10.0}{:>14.2}{:>11} MiB",
            label,
            mib / t,
            base / t,
            rss / 1024
        );
    }
    println!("target: peak RSS of encryption under 32 MiB");
}

/// MiB/s of `openssl speed -evp sha512` on 1 MiB blocks, if the tool is here.
fn openssl_sha512_mib_s() -> Option<f64> {
    let secs = if support::quick() { "1" } else { "3" };
    let out = std::process::Command::new("openssl")
        .args([
            "speed", "-evp", "sha512", "-bytes", "1048576", "-seconds", secs,
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    // The last line: `sha512  860880.90k` (thousands of bytes per second).
    let text = String::from_utf8_lossy(&out.stdout);
    let k: f64 = text
        .lines()
        .rev()
        .find(|l| l.starts_with("sha512"))?
        .split_whitespace()
        .nth(1)?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(k * 1000.0 / (1 << 20) as f64)
}
