//! `xftp send` and `xftp recv` of one file over loopback, as ratios to
//! their yardsticks (`yardstick.rs`: the protocol's mandatory work per byte
//! with ideal overlap, same backend, TLS and HTTP/2), as libsodium over
//! RustCrypto ratios, and the peak RSS of each, all in one run.
//!
//! `send` and `recv` run as child processes executing `xftp_cli::cli::main`,
//! the `xftp` binary's code, against three servers on 127.0.0.1 whose
//! files, like the source, the temporary files and the output, live on
//! /dev/shm; each child reports its own peak RSS (VmHWM). The servers run
//! in this process and share the machine's cores with the client, as on a
//! one-machine loopback. For the RustCrypto runs the servers are switched
//! with `backend::select` and the child gets `SMP_CORE_CRYPTO_BACKEND`.
//!
//! `cargo bench -p simplego-benches --bench xftp_cli`
//! (`BENCH_MIB=256` to size it; `BENCH_QUICK=1`: 128 MiB, under a minute).

mod support;
mod yardstick;

use std::path::Path;
use support::{Goal, Source, figure, same_content, xftp};

use smp_core::crypto::backend::{self, Backend};

fn main() {
    let Some(bench) = support::XftpBench::start("xftp send/recv", 3) else {
        return;
    };
    let (w, src, len) = (bench.work.path(), bench.src.clone(), bench.len);
    let mib = (len >> 20) as f64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The yardsticks, on libsodium as the default runs.
        backend::select(Backend::Sodium);
        // Best of `ROUNDS` for every figure, the yardsticks as the CLI: the
        // two shared cores make single runs vary by 15-20 %.
        let mut y_send = 0f64;
        for _ in 0..support::rounds() {
            y_send = y_send.max(yardstick::send(Source::new(len), len).await);
        }
        let stored = w.join("yardstick.enc");
        let specs = yardstick::store_encrypted(Source::new(len), len, &stored);
        let mut y_recv = 0f64;
        for _ in 0..support::rounds() {
            y_recv = y_recv.max(yardstick::recv(&stored, specs.clone(), len).await);
        }
        std::fs::remove_file(&stored).unwrap();

        let (servers, addresses) = support::start_xftp_servers(w, 3).await;
        let list = addresses.join(";");
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let mut runs = Vec::new();
        for b in [Backend::Sodium, Backend::RustCrypto] {
            backend::select(b);
            let run = w.join(b.name());
            let (tmp, out) = (run.join("tmp"), run.join("out"));
            std::fs::create_dir_all(&tmp).unwrap();
            std::fs::create_dir_all(&out).unwrap();
            let tmp_arg = format!("--tmp={}", tmp.display());
            let rounds = support::rounds();
            let n = rounds.to_string();
            // Each send makes `rounds` recipient descriptions; the last
            // send's are received, one per round (a recv acknowledges its
            // chunks).
            let (mut send, mut recv) = ((f64::MAX, 0u64), (f64::MAX, 0u64));
            for k in 0..rounds {
                let dir = run.join(format!("send{k}"));
                std::fs::create_dir_all(&dir).unwrap();
                let args = ["send", &s(&src), &s(&dir), "-s", &list, &tmp_arg, "-n", &n];
                let ran = xftp(&args, b).await;
                send = (send.0.min(ran.secs), send.1.max(ran.rss_kib));
            }
            for k in 0..rounds {
                let rcv = run.join(format!(
                    "send{}/bench.bin.xftp/rcv{}.xftp",
                    rounds - 1,
                    k + 1
                ));
                let got = out.join(format!("got{k}"));
                let ran = xftp(&["recv", &s(&rcv), &s(&got), &tmp_arg, "-y"], b).await;
                recv = (recv.0.min(ran.secs), recv.1.max(ran.rss_kib));
                assert!(same_content(&src, &got), "the received file differs");
                std::fs::remove_file(&got).unwrap();
            }
            // Earlier sends' chunks stay on the servers until the end.
            std::fs::remove_dir_all(&run).unwrap();
            runs.push((mib / send.0, send.1, mib / recv.0, recv.1));
        }
        backend::select(Backend::Sodium);
        for server in servers {
            server.stop().await;
        }
        let (sodium, rust) = (runs[0], runs[1]);
        figure("send yardstick (MiB/s)", y_send, "MiB/s", Goal::None);
        figure("recv yardstick (MiB/s)", y_recv, "MiB/s", Goal::None);
        figure("xftp send, libsodium", sodium.0, "MiB/s", Goal::None);
        figure("xftp recv, libsodium", sodium.2, "MiB/s", Goal::None);
        figure("xftp send, RustCrypto", rust.0, "MiB/s", Goal::None);
        figure("xftp recv, RustCrypto", rust.2, "MiB/s", Goal::None);
        figure(
            "xftp send / send yardstick",
            sodium.0 / y_send,
            "ratio",
            Goal::AtLeast(0.85),
        );
        figure(
            "xftp recv / recv yardstick",
            sodium.2 / y_recv,
            "ratio",
            Goal::AtLeast(0.85),
        );
        figure(
            "xftp send, libsodium / RustCrypto",
            sodium.0 / rust.0,
            "ratio",
            Goal::AtLeast(1.2),
        );
        figure(
            "xftp recv, libsodium / RustCrypto",
            sodium.2 / rust.2,
            "ratio",
            Goal::AtLeast(1.6),
        );
        let mib_of = |kib: u64| kib as f64 / 1024.0;
        figure(
            "xftp send peak RSS",
            mib_of(sodium.1.max(rust.1)),
            "MiB",
            Goal::AtMost(32.0),
        );
        figure(
            "xftp recv peak RSS",
            mib_of(sodium.3.max(rust.3)),
            "MiB",
            Goal::AtMost(32.0),
        );
    });
}
