//! XSalsa20-Poly1305 streaming encryption: libsodium against RustCrypto,
//! in the same run, through smp-core's backend interface.
//!
//! Every byte of an XFTP file and chunk download goes through this stream,
//! so its speed is the ceiling of file transfer on two cores. Both backends
//! encrypt the same bytes in the same pieces, and the tags are compared, so
//! a fast but wrong backend cannot pass.
//!
//! `cargo bench -p simplego-benches --bench secretbox_backends`
//! (`BENCH_MIB`, default 256).

mod support;

use smp_core::crypto::backend::{self, RustCrypto, Sodium, XSalsa20Poly1305};
use std::time::Instant;

/// Encrypts `total` bytes in `piece`-byte calls; returns seconds and tag.
fn run<B: XSalsa20Poly1305>(total: u64, piece: usize) -> (f64, [u8; 16]) {
    let mut buf: Vec<u8> = (0..piece).map(|i| (i * 131 % 251) as u8).collect();
    let start = Instant::now();
    let mut s = B::new(&[1; 32], &[2; 24]);
    let mut left = total;
    while left > 0 {
        let n = left.min(piece as u64) as usize;
        s.encrypt(&mut buf[..n]);
        left -= n as u64;
    }
    let tag = s.tag();
    (start.elapsed().as_secs_f64(), std::hint::black_box(tag))
}

fn main() {
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let total = mib << 20;
    println!(
        "XSalsa20-Poly1305 streaming encrypt over {mib} MiB ({} cores; smp-core uses {})",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        backend::active().name()
    );
    println!("{:<34}{:>10}{:>16}", "case", "MiB/s", "vs RustCrypto");
    // Warm both up (page faults, libsodium's CPU dispatch) off the clock.
    run::<RustCrypto>(4 << 20, support::PIECE);
    run::<Sodium>(4 << 20, support::PIECE);
    for (piece, label) in [(support::PIECE, "1 MiB"), (16 * 1024 + 3, "16 KiB + 3")] {
        // Best of two, alternating, so neither gets a warmer CPU.
        let mut rc = f64::MAX;
        let mut na = f64::MAX;
        for _ in 0..2 {
            let (t, tag_r) = run::<RustCrypto>(total, piece);
            rc = rc.min(t);
            let (t, tag_s) = run::<Sodium>(total, piece);
            na = na.min(t);
            assert_eq!(tag_r, tag_s, "the backends disagree");
        }
        let mb = mib as f64;
        println!(
            "{:<34}{:>10.0}{:>16.2}",
            format!("RustCrypto, {label} pieces"),
            mb / rc,
            1.0
        );
        println!(
            "{:<34}{:>10.0}{:>16.2}",
            format!("libsodium, {label} pieces"),
            mb / na,
            rc / na
        );
    }
}
