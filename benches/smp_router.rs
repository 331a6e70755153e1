//! SMP router throughput and memory, one run:
//! - SEND→MSG messages per second through one router (v18, block
//!   encryption on), and through a proxy pair (sender → A → B → recipient);
//! - resident memory per idle queue, from 100k queues created on a fresh
//!   router (`BENCH_QUEUES` to change).
//!
//! Each delivered message costs the router a 16 KiB crypto_box (the `MSG`
//! body is always padded to 16106 bytes) plus block encryption on both
//! ends, so the figures are also given as a ratio to the XSalsa20-Poly1305
//! rate of this machine measured in the same run (16 KiB seals per second
//! on one core). Routers run in child processes, so their RSS is their own.

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smp_core::client::smp::CreateQueueOptions;
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::crypto::secretbox::{CbNonce, cb_encrypt};
use support::{Router, rss_kib, throughput};

fn messages() -> usize {
    std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}
const QUEUES: usize = 64;

/// 16 KiB XSalsa20-Poly1305 seals per second on one core.
fn seal_rate() -> f64 {
    let key = [7u8; 32];
    let msg = vec![1u8; 16000];
    let n = 20_000;
    let t = Instant::now();
    for i in 0..n {
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
        std::hint::black_box(cb_encrypt(&key, &CbNonce(nonce), &msg, 16106).unwrap());
    }
    n as f64 / t.elapsed().as_secs_f64()
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--router") {
        return support::router_child(args.get(2).map(String::as_str));
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let seals = seal_rate();
    println!("baseline: {seals:.0} XSalsa20-Poly1305 seals of 16 KiB per second on one core");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let relay = Router::spawn(None);
        let direct = throughput(&relay, None, QUEUES, messages(), 100).await;
        println!(
            "direct: {direct:.0} msg/s ({:.2} of the seal rate; target >= 50000 msg/s)",
            direct / seals
        );
        let proxy = Router::spawn(Some(format!("relay.bench={}", relay.port)));
        let proxied = throughput(&relay, Some(&proxy), QUEUES, messages(), 100).await;
        println!(
            "through a proxy pair: {proxied:.0} msg/s ({:.2} of direct)",
            proxied / direct
        );
        let (unknown, bad) = auth_timing(&relay).await;
        println!(
            "AUTH timing (median SUB round trip): unknown queue {unknown:.0} µs, wrong key {bad:.0} µs (ratio {:.2})",
            unknown / bad
        );
        let n = std::env::var("BENCH_QUEUES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100_000);
        let per = idle_queue_bytes(n).await;
        println!("idle queues: {per:.0} bytes of router RSS per queue over {n} (target <= 1024)");
    });
}
