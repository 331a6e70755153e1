//! SMP router throughput, CPU and memory, one run:
//! - SEND→MSG messages per second through one router (v18, block
//!   encryption on) with libsodium and with RustCrypto (router and clients
//!   switched together), and through a proxy pair (sender → A → B →
//!   recipient);
//! - the router's CPU time per delivered message (utime + stime from
//!   /proc) against the mandatory crypto of one SEND→MSG→ACK, timed here:
//!   two 16 KiB blocks opened (SEND, ACK) and two sealed (OK, MSG — the
//!   ACK's answer can be the next MSG), the MSG body's 16 KiB box, the
//!   ACK's Ed25519 signature check, and the four 16 KiB TLS records those
//!   blocks travel in (rustls in memory, one side each);
//! - the AUTH timing of unknown and known queues;
//! - resident memory per idle queue, from 100k queues created on a fresh
//!   router (`BENCH_QUEUES` to change).
//!
//! Routers run in child processes, so their RSS and CPU are their own.
//! `BENCH_QUICK=1` runs it in under a minute.

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smp_core::client::smp::CreateQueueOptions;
use smp_core::crypto::backend::{self, Backend};
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::crypto::keys::PrivateKey;
use smp_core::crypto::secretbox::{CbNonce, cb_decrypt, cb_encrypt};
use support::{Goal, Router, cpu_seconds, figure, quick, rss_kib, throughput};

fn messages() -> usize {
    std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick() { 4_000 } else { 20_000 })
}
const QUEUES: usize = 64;
const BLOCK: usize = 16384;

/// Seconds per call of `f`, best of three rounds of `n`.
fn time_per(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..n {
            f(i);
        }
        best = best.min(t.elapsed().as_secs_f64() / n as f64);
    }
    best
}

/// Seconds of one side's work on a 16 KiB TLS 1.3 record (the mean of a
/// seal and an open), with our rustls configs in memory, no sockets.
fn tls_record_seconds() -> f64 {
    use rustls::{ClientConnection, ServerConnection};
    use std::io::{Read, Write};
    let (identity, _) =
        smp_core::tls::ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
    let scfg = smp_core::tls::server_config(&identity, smp_core::tls::SMP_SERVER_ALPN).unwrap();
    let ccfg =
        smp_core::tls::client_config(identity.fingerprint(), smp_core::tls::ALPN_SMP).unwrap();
    let mut c = ClientConnection::new(Arc::new(ccfg), "127.0.0.1".try_into().unwrap()).unwrap();
    let mut s = ServerConnection::new(Arc::new(scfg)).unwrap();
    let mut wire = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        wire.clear();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.read_tls(&mut &wire[..]).unwrap();
        s.process_new_packets().unwrap();
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        c.read_tls(&mut &wire[..]).unwrap();
        c.process_new_packets().unwrap();
    }
    let block = vec![7u8; BLOCK];
    let mut got = vec![0u8; BLOCK];
    let pair = time_per(4000, |_| {
        wire.clear();
        c.writer().write_all(&block).unwrap();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        s.reader().read_exact(&mut got).unwrap();
    });
    pair / 2.0
}

/// Seconds of mandatory crypto in the router for one delivered message
/// (see the module docs), on the active backend.
fn mandatory_seconds() -> f64 {
    let key = [7u8; 32];
    let msg = vec![1u8; 16000];
    let nonce = |i: usize| {
        let mut n = [0u8; 24];
        n[..8].copy_from_slice(&(i as u64).to_le_bytes());
        CbNonce(n)
    };
    let seal = time_per(4000, |i| {
        std::hint::black_box(cb_encrypt(&key, &nonce(i), &msg, BLOCK - 16).unwrap());
    });
    let sealed = cb_encrypt(&key, &nonce(0), &msg, BLOCK - 16).unwrap();
    let open = time_per(4000, |_| {
        std::hint::black_box(cb_decrypt(&key, &nonce(0), &sealed).unwrap());
    });
    let body = time_per(4000, |i| {
        std::hint::black_box(cb_encrypt(&key, &nonce(i), &msg[..100], 16106).unwrap());
    });
    let signer = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let public = signer.public_key();
    let signed = vec![5u8; 200];
    let sig = signer.sign(&signed).unwrap();
    let verify = time_per(4000, |_| assert!(public.verify(&signed, &sig)));
    2.0 * open + 2.0 * seal + body + verify + 4.0 * tls_record_seconds()
}

/// Median microseconds of a SUB answered `AUTH` for an unknown queue and
/// for a known queue with a wrong key: the router must not tell them apart.
async fn auth_timing(r: &Router) -> (f64, f64) {
    let (c, _) = r.connect().await;
    let q = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    let wrong = smp_core::crypto::keys::PrivateKey::generate(KeyAlgorithm::Ed25519);
    let mut unknown = Vec::new();
    let mut bad_sig = Vec::new();
    for i in 0..4000 {
        let id = if i % 2 == 0 {
            vec![9u8; 24]
        } else {
            q.rcv_id.clone()
        };
        let auth = c.client_auth(&wrong).unwrap();
        let t = Instant::now();
        let e = c
            .request(None, &id, &smp_core::smp::Command::Sub, Some(auth))
            .await;
        let us = t.elapsed().as_secs_f64() * 1e6;
        assert!(e.is_err());
        if i % 2 == 0 {
            unknown.push(us)
        } else {
            bad_sig.push(us)
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    (median(&mut unknown), median(&mut bad_sig))
}

/// Bytes of router RSS per idle queue.
async fn idle_queue_bytes(n: usize) -> f64 {
    let r = Router::spawn(None);
    let (c, _) = r.connect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(r.child.id());
    let opts = CreateQueueOptions {
        subscribe: false,
        ..CreateQueueOptions::default()
    };
    let made = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (c, made, opts) = (c.clone(), made.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            while made.fetch_add(1, Ordering::Relaxed) < n {
                c.create_queue(&opts).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib(r.child.id());
    (after.saturating_sub(before) * 1024) as f64 / n as f64
}

/// Direct SEND→MSG msg/s on a fresh router running `b`, with this
/// process's clients on `b` too, and the router's CPU seconds per message.
async fn direct_on(b: Backend) -> (f64, f64) {
    backend::select(b);
    let r = Router::spawn_on(None, b);
    let n = messages();
    let (u0, s0) = cpu_seconds(Some(r.child.id()));
    let rate = throughput(&r, None, QUEUES, n, 100).await;
    let (u1, s1) = cpu_seconds(Some(r.child.id()));
    backend::select(Backend::build_default());
    (rate, (u1 - u0 + s1 - s0) / n as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--router") {
        return support::router_child(args.get(2).map(String::as_str));
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    backend::select(Backend::RustCrypto);
    let mandatory_rust = mandatory_seconds();
    backend::select(Backend::Sodium);
    let mandatory = mandatory_seconds();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (sodium, cpu) = direct_on(Backend::Sodium).await;
        let (rust, rust_cpu) = direct_on(Backend::RustCrypto).await;
        figure(
            "direct SEND->MSG, libsodium",
            sodium,
            "msg/s",
            Goal::AtLeast(50000.0),
        );
        figure("direct SEND->MSG, RustCrypto", rust, "msg/s", Goal::None);
        figure(
            "direct msg/s, libsodium / RustCrypto",
            sodium / rust,
            "ratio",
            Goal::AtLeast(1.8),
        );
        figure(
            "mandatory crypto per message (libsodium)",
            mandatory * 1e6,
            "µs",
            Goal::None,
        );
        figure(
            "mandatory crypto per message (RustCrypto)",
            mandatory_rust * 1e6,
            "µs",
            Goal::None,
        );
        // Signatures and TLS records do not change with the backend: this
        // is as far as the backend alone can move the router.
        figure(
            "mandatory crypto, RustCrypto / libsodium",
            mandatory_rust / mandatory,
            "ratio",
            Goal::None,
        );
        figure(
            "router CPU per message, libsodium",
            cpu * 1e6,
            "µs",
            Goal::None,
        );
        figure(
            "router CPU per message, RustCrypto",
            rust_cpu * 1e6,
            "µs",
            Goal::None,
        );
        figure(
            "router CPU / mandatory crypto",
            cpu / mandatory,
            "ratio",
            Goal::AtMost(1.5),
        );
        let relay = Router::spawn(None);
        let proxy = Router::spawn(Some(format!("relay.bench={}", relay.port)));
        let proxied = throughput(&relay, Some(&proxy), QUEUES, messages(), 100).await;
        figure("through a proxy pair", proxied, "msg/s", Goal::None);
        figure("proxy pair / direct", proxied / sodium, "ratio", Goal::None);
        let (unknown, bad) = auth_timing(&relay).await;
        figure(
            "AUTH median round trip, unknown queue",
            unknown,
            "µs",
            Goal::None,
        );
        figure("AUTH median round trip, wrong key", bad, "µs", Goal::None);
        figure(
            "AUTH unknown / wrong key",
            unknown / bad,
            "ratio",
            Goal::None,
        );
        let n = std::env::var("BENCH_QUEUES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if quick() { 20_000 } else { 100_000 });
        let per = idle_queue_bytes(n).await;
        figure(
            &format!("router RSS per idle queue ({n} queues)"),
            per,
            "bytes",
            Goal::AtMost(1024.0),
        );
    });
}
