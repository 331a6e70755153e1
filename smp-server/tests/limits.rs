//! Bounds that hold whatever clients do (issue 14, fault 6): a subscriber
//! that never reads holds a fixed number of queued deliveries, not one
//! block per subscribed queue, and still gets every message once it reads;
//! connections beyond `max_connections` are closed at once.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use smp_core::smp::command::SubscriptionMode;
use smp_core::smp::{QueueReqData, Response};
use smp_core::tls;
use support::*;
use tokio::net::TcpStream;

/// What another client may wait for a connection, a queue and a message
/// while the non-reading subscriber holds its queues.
const LATENCY: Duration = Duration::from_secs(5);

/// Resident memory of this process (the router runs in it), in KiB.
fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn make_queues(c: &mut RawClient, n: usize, mode: SubscriptionMode) -> Vec<TestQueue> {
    let mut queues = Vec::new();
    for _ in 0..n {
        let q = c
            .new_queue_with(mode, Some(QueueReqData::Messaging(None)), None)
            .await
            .unwrap();
        queues.push(q);
    }
    queues
}

/// How much the process grew while one message went to each queue.
async fn growth_sending(snd: &mut RawClient, queues: &[TestQueue], body: &[u8]) -> i64 {
    let before = rss_kib();
    for q in queues {
        assert_eq!(snd.snd(q, body).await, Ok(Response::Ok));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    rss_kib() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_holds_bounded_deliveries_and_misses_none() {
    const QUEUES: usize = 1500;
    let env = Env::new();
    let srv = env.start().await;
    let mut sub = env.client(&srv, 18).await;
    let mut other = env.client(&srv, 18).await;
    let mut snd = env.client(&srv, 18).await;
    let body = vec![b'm'; 15_000];
    // The messages themselves are stored whoever subscribes: measure that
    // first, with queues nobody subscribes to.
    let unsubscribed = make_queues(&mut other, QUEUES, SubscriptionMode::OnlyCreate).await;
    let stored = growth_sending(&mut snd, &unsubscribed, &body).await;
    // Now a subscriber that reads nothing.
    let queues = make_queues(&mut sub, QUEUES, SubscriptionMode::Subscribe).await;
    let subscribed = growth_sending(&mut snd, &queues, &body).await;
    // Unbounded, every delivery waited in the subscriber's outbox beside
    // the stored copy: ~22 MB more here (288 MB with 20,000 queues in the
    // report). Bounded, 64 deliveries: about 1 MB.
    assert!(
        subscribed - stored < 8 * 1024,
        "{QUEUES} undelivered messages grew the router by {subscribed} KiB, \
         storing them alone by {stored} KiB"
    );

    // Meanwhile other clients are served promptly: a new queue, a message
    // to it and its delivery.
    let t0 = std::time::Instant::now();
    let mut alice = env.client(&srv, 18).await;
    let q = make_queues(&mut alice, 1, SubscriptionMode::Subscribe).await;
    assert_eq!(snd.snd(&q[0], b"hello").await, Ok(Response::Ok));
    let t = alice.recv().await.remove(0);
    assert_eq!(body_of(&open_msg(&q[0], &t.response.unwrap()).1), b"hello");
    assert!(
        t0.elapsed() < LATENCY,
        "another client waited {:?} beside the non-reading one",
        t0.elapsed()
    );

    // Reading now, every queue's message arrives, once.
    let by_rid: HashMap<Vec<u8>, &TestQueue> =
        queues.iter().map(|q| (q.ids.rcv_id.clone(), q)).collect();
    let mut seen = HashSet::new();
    while seen.len() < QUEUES {
        for t in sub.recv().await {
            let r = t.response.unwrap();
            let q = by_rid[&t.entity_id];
            let (_, m) = open_msg(q, &r);
            assert_eq!(body_of(&m), &body[..]);
            assert!(seen.insert(t.entity_id.clone()), "delivered twice");
        }
    }
    srv.stop().await;
}

/// Whether a new connection is refused: the TCP connection is taken and
/// closed before TLS, so the handshake fails at once rather than hanging.
async fn refused(env: &Env, srv: &smp_server::app::RunningServer) -> bool {
    let tcp = TcpStream::connect(srv.addr()).await.unwrap();
    let cfg = tls::client_config(env.key_hash(), tls::ALPN_SMP).unwrap();
    tokio::time::timeout(PATIENCE, tls::connect_with_config(tcp, &cfg))
        .await
        .expect("answered at once, not left hanging")
        .is_err()
}

/// `[LIMITS] max_connections` across the router: with 3 clients connected
/// a fourth is closed, the three keep working, and a place that is given
/// back is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_and_places_come_back() {
    let env = Env::new();
    let mut s = env.settings();
    s.max_connections = 3;
    let srv = smp_server::app::start(s).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(env.client(&srv, 18).await);
    }
    for _ in 0..5 {
        assert!(refused(&env, &srv).await, "a fourth connection is refused");
    }
    // The connected ones are served throughout.
    let mut a = clients.remove(0);
    let q = make_queues(&mut a, 1, SubscriptionMode::Subscribe).await;
    let mut b = clients.remove(0);
    assert_eq!(b.snd(&q[0], b"still served").await, Ok(Response::Ok));
    let t = a.recv().await.remove(0);
    let (_, m) = open_msg(&q[0], &t.response.unwrap());
    assert_eq!(body_of(&m), b"still served");
    // One leaves: its place is taken again (the server notices the close
    // a moment later).
    drop(b);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let again = loop {
        if let Some(c) = RawClient::connect(srv.addr(), env.key_hash(), Hello::v(18)).await {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(again);
    srv.stop().await;
}
