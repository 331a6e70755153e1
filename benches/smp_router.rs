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

use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smp_core::address::ServerAddress;
use smp_core::client::smp::{
    CreateQueueOptions, RawMessage, SmpClient, SmpClientError, SmpClientOptions, SmpEvent,
};
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::crypto::secretbox::{CbNonce, cb_encrypt};
use smp_core::smp::ErrorType;
use smp_core::smp::Response;
use smp_core::smp::message::RcvMsgBody;
use smp_core::tls::ServerIdentity;
use support::rss_kib;

fn messages() -> usize {
    std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}
const QUEUES: usize = 64;

/// `--router [RELAY_HOST=PORT]`: prints `READY <port> <fingerprint>` and
/// serves until stdin closes.
fn router_child(relay: Option<&str>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
        let mut s =
            smp_server::app::Settings::new(identity.clone(), "127.0.0.1:0".parse().unwrap());
        if let Some((host, port)) = relay.and_then(|r| r.split_once('=')) {
            let addr = SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap()));
            s.proxy.resolve.insert(host.to_string(), addr);
        }
        let server = smp_server::app::start(s).await.unwrap();
        support::announce_ready(&format!(
            "{} {}",
            server.addr().port(),
            identity.fingerprint_b64()
        ));
        tokio::task::spawn_blocking(support::wait_for_stdin_eof)
            .await
            .unwrap();
        server.stop().await;
    });
}

struct Router {
    child: Child,
    port: u16,
    fingerprint: String,
}

impl Router {
    fn spawn(relay: Option<String>) -> Self {
        let mut args = vec!["--router".to_string()];
        args.extend(relay);
        let (child, fields) = support::spawn_ready(&args);
        Self {
            child,
            port: fields[0].parse().unwrap(),
            fingerprint: fields[1].clone(),
        }
    }

    fn address(&self, host: &str) -> ServerAddress {
        ServerAddress::parse(&format!("smp://{}@{host}:{}", self.fingerprint, self.port)).unwrap()
    }

    async fn connect(&self) -> (SmpClient, smp_core::client::smp::SmpEvents) {
        let opts = SmpClientOptions {
            socket_addr: Some(SocketAddr::from(([127, 0, 0, 1], self.port))),
            ..SmpClientOptions::default()
        };
        SmpClient::connect(&self.address("127.0.0.1"), &opts)
            .await
            .unwrap()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

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

/// Messages per second from `QUEUES` senders to one subscriber that ACKs
/// each message; `proxy` routes every SEND through the proxy router.
async fn throughput(relay: &Router, proxy: Option<&Router>) -> f64 {
    let (rcv, mut events) = relay.connect().await;
    let mut queues = Vec::new();
    for _ in 0..QUEUES {
        queues.push(Arc::new(
            rcv.create_queue(&CreateQueueOptions::default())
                .await
                .unwrap(),
        ));
    }
    let (snd, _) = match proxy {
        Some(p) => p.connect().await,
        None => relay.connect().await,
    };
    let session = match proxy {
        Some(_) => Some(
            snd.proxy_session(&relay.address("relay.bench"), None)
                .await
                .unwrap(),
        ),
        None => None,
    };
    let per_queue = messages() / QUEUES;
    let received = Arc::new(AtomicUsize::new(0));
    let by_id: std::collections::HashMap<Vec<u8>, Arc<_>> = queues
        .iter()
        .map(|q| (q.rcv_id.clone(), q.clone()))
        .collect();
    let start = Instant::now();
    let reader = {
        let (rcv, received) = (rcv.clone(), received.clone());
        tokio::spawn(async move {
            while received.load(Ordering::Relaxed) < per_queue * QUEUES {
                let Some(SmpEvent::Server {
                    entity_id,
                    response: Response::Msg { msg_id, body },
                }) = events.recv().await
                else {
                    continue;
                };
                let q = by_id[&entity_id].clone();
                let (rcv, received) = (rcv.clone(), received.clone());
                tokio::spawn(async move {
                    // Messages are opened as a client would; quota markers
                    // are acknowledged but not counted. The ACK's reply may
                    // be the next message.
                    let mut next = Some(RawMessage { msg_id, body });
                    while let Some(m) = next {
                        if let Ok(RcvMsgBody::Message { .. }) = q.decrypt(&m) {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        next = rcv.ack(&q, &m.msg_id).await.unwrap();
                    }
                });
            }
        })
    };
    let mut senders = Vec::new();
    for q in &queues {
        let (snd, q, session) = (snd.clone(), q.clone(), session.clone());
        senders.push(tokio::spawn(async move {
            let body = vec![0x42u8; 100];
            for _ in 0..per_queue {
                loop {
                    let r = match &session {
                        Some(s) => snd.proxy_send(s, &q.snd_id, None, false, &body).await,
                        None => snd.send(&q.snd_id, None, false, &body).await,
                    };
                    match r {
                        Ok(()) => break,
                        // A full queue (128): wait for the recipient, as an
                        // agent waits for QCONT.
                        Err(SmpClientError::Protocol(ErrorType::Quota))
                        | Err(SmpClientError::Relay(ErrorType::Quota)) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("send: {e}"),
                    }
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    // The last messages may come as ACK replies, not events: poll the count.
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < per_queue * QUEUES {
        assert!(
            Instant::now() < deadline,
            "only {} of {} messages arrived",
            received.load(Ordering::Relaxed),
            per_queue * QUEUES
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = (per_queue * QUEUES) as f64 / start.elapsed().as_secs_f64();
    reader.abort();
    rate
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
        return router_child(args.get(2).map(String::as_str));
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let seals = seal_rate();
    println!("baseline: {seals:.0} XSalsa20-Poly1305 seals of 16 KiB per second on one core");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let relay = Router::spawn(None);
        let direct = throughput(&relay, None).await;
        println!(
            "direct: {direct:.0} msg/s ({:.2} of the seal rate; target >= 50000 msg/s)",
            direct / seals
        );
        let proxy = Router::spawn(Some(format!("relay.bench={}", relay.port)));
        let proxied = throughput(&relay, Some(&proxy)).await;
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
