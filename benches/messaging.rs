//! Text messages per second between two agent profiles through one router,
//! as a ratio to the router's raw SEND→MSG rate measured in the same run.
//!
//! - Baseline: one `SmpClient` sender and one receiver on one queue, SEND
//!   bodies of an agent message's size on the wire (16043 bytes), sent as
//!   fast as the receiver ACKs (a sender that meets QUOTA waits 5 ms).
//! - Measured: two `Agent`s in this process (each with its own SQLite
//!   profile in a temp dir, WAL + `synchronous=FULL`), connected by a
//!   one-time invitation; alice sends N short chat messages (`Agent::send`)
//!   while bob takes them (`Agent::next` + `done`); from the first send to
//!   the last arrival.
//!
//! The router runs in a child process, so the CPU split (this process vs
//! the router) comes from `/proc`. `BENCH_MESSAGES` sets N; `BENCH_QUICK=1`
//! runs a small N.

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use smp_core::agent::envelope::MESSAGE_ENVELOPE_LENGTH;
use smp_core::chat::{
    ChatEvent, ChatMessage, MsgContainer, MsgContent, Profile as ChatProfile,
    SUPPORTED_CHAT_VRANGE, SharedMsgId,
};
use smp_core::client::agent::runtime::{Agent, AgentOptions, Notice};
use smp_core::client::agent::store::{Profile, Store};
use smp_core::client::smp::SmpClientOptions;
use support::{Router, cpu_seconds, throughput};

const TARGET_RATIO: f64 = 0.8;

fn messages() -> usize {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 300 } else { 5000 })
}

/// CPU seconds (user, system) of this process and of the router.
struct Cpu {
    me: (f64, f64),
    router: (f64, f64),
    wall: Instant,
}

impl Cpu {
    fn now(router: &Router) -> Self {
        Self {
            me: cpu_seconds(None),
            router: cpu_seconds(Some(router.child.id())),
            wall: Instant::now(),
        }
    }

    /// One line: CPU microseconds per message on each side, and the share
    /// of the wall time the two cores were busy.
    fn split_since(&self, router: &Router, n: usize) -> String {
        let now = Self::now(router);
        let us = |s: f64| s * 1e6 / n as f64;
        let (mu, ms) = (now.me.0 - self.me.0, now.me.1 - self.me.1);
        let (ru, rs) = (now.router.0 - self.router.0, now.router.1 - self.router.1);
        let wall = now.wall.duration_since(self.wall).as_secs_f64();
        format!(
            "bench process {:.0} µs user + {:.0} µs sys, router {:.0} µs user + {:.0} µs sys per message; \
             CPU busy {:.0}% of {:.1} s wall on 2 cores",
            us(mu),
            us(ms),
            us(ru),
            us(rs),
            100.0 * (mu + ms + ru + rs) / (2.0 * wall),
            wall
        )
    }
}

fn chat(event: ChatEvent, with_id: bool) -> Vec<u8> {
    let id = with_id.then(|| SharedMsgId(smp_core::crypto::random_array::<12>().to_vec()));
    ChatMessage::new(SUPPORTED_CHAT_VRANGE, id, event).encode()
}

fn text(i: usize) -> Vec<u8> {
    chat(
        ChatEvent::MsgNew(MsgContainer::simple(MsgContent::Text {
            text: format!("message {i}: hello there"),
        })),
        true,
    )
}

/// A fresh profile in `dir` whose only router is `router`, and its agent
/// (as `xftp-cli` opens one, private routing off: there is one router).
async fn open_agent(dir: &std::path::Path, name: &str, router: &Router) -> Agent {
    let mut store = Store::open(dir).unwrap();
    store
        .set_profile(&Profile {
            display_name: name.to_string(),
            smp_servers: vec![router.address("127.0.0.1").to_string()],
            created_at: 0,
        })
        .unwrap();
    let me = ChatProfile::new(name);
    let opts = AgentOptions {
        hold_acks: false,
        sent_notices: false,
        smp: SmpClientOptions::default(),
        pq: true,
        conn_info: ChatMessage::profile_info(&me),
        contact_info: ChatMessage::contact_request(&me),
        private_routing: false,
        legacy_queues: false,
        link_data: None,
    };
    let mut agent = Agent::with_store(store, opts).unwrap();
    agent.start().await.unwrap();
    agent
}

/// Processes notices until `Connected` (marking each done).
async fn until_connected(mut agent: Agent) -> Agent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (iid, _, notice) = agent
            .next(Some(deadline))
            .await
            .unwrap()
            .expect("the connection did not complete within 30 s");
        agent.done(iid).unwrap();
        if notice == Notice::Connected {
            return agent;
        }
    }
}

/// Where the agents' time went, measured around the runtime calls.
#[derive(Default, Debug)]
struct Timing {
    /// Alice: inside `Agent::send` (ratchet, commit, SEND), seconds.
    send: f64,
    /// Alice: waiting for a full queue to drain after the last send.
    drain: f64,
    /// Bob: inside `Agent::next` (router wait, open, ratchet, commit, ACK).
    next: f64,
    /// Bob: inside `Agent::done` (one inbox delete, committed).
    done: f64,
}

/// Text messages per second from alice to bob, with the time split.
async fn agent_rate(router: &Router, n: usize) -> (f64, Timing, String) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut alice = open_agent(da.path(), "alice", router).await;
    let mut bob = open_agent(db.path(), "bob", router).await;
    let (a_conn, link) = alice.invite(None).await.unwrap();
    let b_conn = bob.connect(&link, Some("alice"), None).await.unwrap();
    let (alice, bob) = tokio::join!(
        tokio::spawn(until_connected(alice)),
        tokio::spawn(until_connected(bob))
    );
    let (mut alice, mut bob) = (alice.unwrap(), bob.unwrap());
    let _ = b_conn;
    let bodies: Vec<Vec<u8>> = (0..n).map(text).collect();

    let cpu = Cpu::now(router);
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let mut t = Timing::default();
        for b in &bodies {
            let s = Instant::now();
            alice.send(a_conn, b).await.unwrap();
            t.send += s.elapsed().as_secs_f64();
        }
        // What a full queue kept back: retried as the raw sender retries.
        let s = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            alice.flush_outbox().await.unwrap();
            if alice.store().outbox().unwrap().is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "alice's outbox did not drain");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        t.drain = s.elapsed().as_secs_f64();
        (alice, t)
    });
    let receiver = tokio::spawn(async move {
        let mut t = Timing::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        let mut got = 0;
        while got < n {
            let s = Instant::now();
            let (iid, _, notice) = bob
                .next(Some(deadline))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("only {got} of {n} messages arrived"));
            t.next += s.elapsed().as_secs_f64();
            if let Notice::Message { body, .. } = &notice {
                let needle = format!("message {got}: ");
                assert!(
                    body.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "message {got} is missing or out of order"
                );
                got += 1;
            }
            let s = Instant::now();
            bob.done(iid).unwrap();
            t.done += s.elapsed().as_secs_f64();
        }
        (Instant::now(), bob, t)
    });
    let (end, _bob, tb) = receiver.await.unwrap();
    let (_alice, ta) = sender.await.unwrap();
    let rate = n as f64 / end.duration_since(start).as_secs_f64();
    (
        rate,
        Timing {
            send: ta.send,
            drain: ta.drain,
            next: tb.next,
            done: tb.done,
        },
        cpu.split_since(router, n),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--router") {
        return support::router_child(args.get(2).map(String::as_str));
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let n = messages();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let router = Router::spawn(None);

        let cpu = Cpu::now(&router);
        let raw = throughput(&router, None, 1, n, MESSAGE_ENVELOPE_LENGTH).await;
        println!(
            "raw SEND->MSG through one router, one queue, {MESSAGE_ENVELOPE_LENGTH}-byte bodies: {raw:.0} msg/s over {n} messages"
        );
        println!("  CPU: {}", cpu.split_since(&router, n));

        let (rate, t, cpu) = agent_rate(&router, n).await;
        let ratio = rate / raw;
        println!(
            "text messages through one router: {rate:.0} msg/s, ratio to raw SEND->MSG {ratio:.2} (target >= {TARGET_RATIO}): {}",
            if ratio >= TARGET_RATIO {
                "met"
            } else {
                "not met"
            }
        );
        println!("  CPU: {cpu}");
        let ms = |s: f64| s * 1e3 / n as f64;
        println!(
            "  per message: alice send {:.2} ms (+ {:.0} ms draining a full queue at the end), bob next {:.2} ms + done {:.2} ms",
            ms(t.send),
            t.drain * 1e3,
            ms(t.next),
            ms(t.done)
        );
    });
}
