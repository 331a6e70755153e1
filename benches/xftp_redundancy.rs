//! What redundancy costs (issue 12): `xftp send --parity 10:4` as a ratio
//! to a plain `xftp send` of the same file, and `xftp recv` that rebuilds
//! 4 lost data chunks of every group as a ratio to a plain `xftp recv`,
//! all in one run against the same 14 servers on 127.0.0.1.
//!
//! As in `xftp_cli.rs`, the clients are child processes running the `xftp`
//! binary's code (libsodium), the servers run in this process and share
//! the two cores with them, and everything lives on /dev/shm. The lost
//! chunks are lost the way a user loses them: the 4 servers that hold data
//! chunks 1–4 of the first group are stopped before the receive (a group's
//! 14 chunks go round the 14 servers in the same order, so every group
//! loses 4 of its data chunks), and the receive pays for finding them
//! down with its default retries.
//!
//! `cargo bench -p simplego-benches --bench xftp_redundancy`
//! (`BENCH_MIB=256` to size it; `BENCH_QUICK=1`: 128 MiB).

mod support;

use std::path::{Path, PathBuf};

use smp_core::crypto::backend::{self, Backend};
use smp_core::file::description::{FileChunk, FileDescription};
use support::{Goal, Ran, figure, same_content, xftp};

/// Data and parity chunks per group.
const DATA: usize = 10;
const PARITY: usize = 4;
const SERVERS: usize = DATA + PARITY;

/// The server (its address as written in the description) of a chunk
/// with one replica.
fn server_of(chunk: &FileChunk) -> String {
    chunk.replicas[0].server.to_string()
}

/// The best of a figure's rounds: the fastest run (with its CPU) and the
/// highest peak RSS of any.
#[derive(Default)]
struct Best(Option<Ran>);

impl Best {
    fn add(&mut self, ran: Ran) {
        let rss = self.0.map_or(0, |b| b.rss_kib).max(ran.rss_kib);
        if self.0.is_none_or(|b| ran.secs < b.secs) {
            self.0 = Some(ran);
        }
        if let Some(b) = &mut self.0 {
            b.rss_kib = rss;
        }
    }
    fn get(&self) -> Ran {
        self.0.expect("at least one round")
    }
}

/// What every `xftp` child of the run shares.
struct Run {
    src: PathBuf,
    /// The servers, `;`-separated as `-s` takes them.
    list: String,
    tmp_arg: String,
    out: PathBuf,
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Run {
    /// Sends the file into `dir` for `recipients`, with or without
    /// parity; returns the run and where its descriptions are.
    async fn send(&self, dir: &Path, recipients: usize, parity: bool) -> (Ran, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let (n, scheme) = (recipients.to_string(), format!("{DATA}:{PARITY}"));
        let (src, dir_s) = (s(&self.src), s(dir));
        let mut args = vec![
            "send",
            &src,
            &dir_s,
            "-s",
            &self.list,
            &self.tmp_arg,
            "-n",
            &n,
        ];
        if parity {
            args.extend(["--parity", &scheme]);
        }
        (
            xftp(&args, Backend::Sodium).await,
            dir.join("bench.bin.xftp"),
        )
    }

    /// Receives `desc` and checks the bytes.
    async fn recv(&self, desc: &Path) -> Ran {
        let got = self.out.join("got");
        let (desc, got_s) = (s(desc), s(&got));
        let ran = xftp(
            &["recv", &desc, &got_s, &self.tmp_arg, "-y"],
            Backend::Sodium,
        )
        .await;
        assert!(same_content(&self.src, &got), "the received file differs");
        std::fs::remove_file(&got).unwrap();
        ran
    }

    /// Deletes a sent file from the servers.
    async fn del(&self, dir: &Path) {
        let snd = s(&dir.join("snd.xftp.private"));
        xftp(&["del", &snd, "-y"], Backend::Sodium).await;
    }
}

fn main() {
    let Some(bench) = support::XftpBench::start(&format!("xftp --parity {DATA}:{PARITY}"), SERVERS)
    else {
        return;
    };
    let (w, src) = (bench.work.path(), bench.src.clone());
    let mib = (bench.len >> 20) as f64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        backend::select(Backend::Sodium);
        let (servers, addresses) = support::start_xftp_servers(w, SERVERS).await;
        let mut servers: Vec<Option<_>> = servers.into_iter().map(Some).collect();
        let tmp = w.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let rounds = support::rounds();

        let run = Run {
            src: src.clone(),
            list: addresses.join(";"),
            tmp_arg: format!("--tmp={}", tmp.display()),
            out: w.join("out"),
        };
        std::fs::create_dir_all(&run.out).unwrap();

        // The two kinds take turns, each going first in every other round,
        // so drift in the machine's speed weighs on both alike. Each file
        // is deleted once received, so the servers' storage (on /dev/shm)
        // holds one file at a time: memory this VM has not touched before
        // is several times slower to write and would otherwise land on
        // whichever figure gets to it first.
        let (mut plain_send, mut parity_send) = (Best::default(), Best::default());
        let (mut plain_recv, mut parity_up_recv) = (Best::default(), Best::default());
        for k in 0..rounds {
            let kinds = if k % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for parity in kinds {
                let (sent, dir) = run.send(&w.join(format!("{parity}{k}")), 1, parity).await;
                let got = run.recv(&dir.join("rcv1.xftp")).await;
                run.del(&dir).await;
                if parity {
                    parity_send.add(sent);
                    parity_up_recv.add(got);
                } else {
                    plain_send.add(sent);
                    plain_recv.add(got);
                }
            }
        }

        // Lose the servers of the first group's data chunks 1-4 and check
        // what that costs every group.
        let (_, dir) = run.send(&w.join("lost"), rounds, true).await;
        let yaml = std::fs::read_to_string(dir.join("rcv1.xftp")).unwrap();
        let desc = FileDescription::from_yaml(&yaml).expect("our own description reads back");
        let lost: Vec<String> = desc.chunks[..PARITY].iter().map(server_of).collect();
        let (mut fewest, mut most) = (usize::MAX, 0);
        for group in desc.chunks.chunks(DATA) {
            let n = group
                .iter()
                .filter(|c| lost.contains(&server_of(c)))
                .count();
            (fewest, most) = (fewest.min(n), most.max(n));
        }
        for address in &lost {
            let i = addresses
                .iter()
                .position(|a| a == address)
                .expect("one of ours");
            servers[i].take().expect("stopped once").stop().await;
        }
        let mut rebuilt_recv = Best::default();
        for k in 0..rounds {
            rebuilt_recv.add(run.recv(&dir.join(format!("rcv{}.xftp", k + 1))).await);
        }
        for server in servers.into_iter().flatten() {
            server.stop().await;
        }

        let (plain_send, parity_send) = (plain_send.get(), parity_send.get());
        let (plain_recv, parity_up_recv) = (plain_recv.get(), parity_up_recv.get());
        let rebuilt_recv = rebuilt_recv.get();
        println!(
            "groups of {DATA}+{PARITY} chunks; data chunks lost per group: {fewest}..{most} \
             (the last group may be shorter)"
        );
        // MiB/s, CPU seconds per GiB (client and servers) and peak RSS.
        let report = |name: &str, ran: Ran| {
            figure(name, mib / ran.secs, "MiB/s", Goal::None);
            figure(
                "  CPU, client and servers",
                ran.cpu * 1024.0 / mib,
                "s/GiB",
                Goal::None,
            );
            figure(
                "  client peak RSS",
                ran.rss_kib as f64 / 1024.0,
                "MiB",
                Goal::None,
            );
        };
        report("xftp send, plain", plain_send);
        report(&format!("xftp send --parity {DATA}:{PARITY}"), parity_send);
        report("xftp recv, plain", plain_recv);
        report(
            "xftp recv of the parity file, all servers up",
            parity_up_recv,
        );
        report(
            &format!("xftp recv rebuilding {PARITY} lost chunks/group"),
            rebuilt_recv,
        );
        figure(
            "send --parity / plain send",
            plain_send.secs / parity_send.secs,
            "ratio",
            Goal::AtLeast(0.8),
        );
        // Both sends keep the two cores busy, so their CPU is the limit
        // of the ratio here; the client's alone is what a sender pays
        // when the servers are elsewhere.
        figure(
            "  CPU-bound limit: plain CPU / --parity CPU",
            plain_send.cpu / parity_send.cpu,
            "ratio",
            Goal::None,
        );
        figure(
            "  client CPU, plain / --parity",
            plain_send.client_cpu / parity_send.client_cpu,
            "ratio",
            Goal::None,
        );
        figure(
            "recv rebuilding / plain recv",
            plain_recv.secs / rebuilt_recv.secs,
            "ratio",
            Goal::AtLeast(0.7),
        );
    });
}
