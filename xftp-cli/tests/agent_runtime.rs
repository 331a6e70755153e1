//! The agent runtime with real routers on 127.0.0.1 (in this process): the
//! legacy handshake against mode-less queues, PQ on, off and declined, and
//! private routing — a router never sees the connection of a sender on
//! another router.

use std::time::Duration;

use smp_core::address::ServerAddress;
use smp_core::client::agent::runtime::{Agent, AgentOptions, Notice};
use smp_core::client::agent::store::{ConnId, Profile, Store};
use smp_core::client::smp::SmpClientOptions;
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::tls::ServerIdentity;
use smp_server::app::{RunningServer, Settings, start};
use tokio::time::Instant;

async fn router() -> (RunningServer, String) {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
    let srv = start(Settings::new(
        identity.clone(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let addr = format!(
        "smp://{}@127.0.0.1:{}",
        identity.fingerprint_b64(),
        srv.addr().port()
    );
    (srv, addr)
}

async fn agent(dir: &std::path::Path, name: &str, router: &str, pq: bool, legacy: bool) -> Agent {
    agent_with(dir, name, router, pq, legacy, false, |_| {}).await
}

/// `short`: new invitations and addresses get short links; `app` sets
/// what the application asks of the agent (held ACKs, sent notices).
async fn agent_with(
    dir: &std::path::Path,
    name: &str,
    router: &str,
    pq: bool,
    legacy: bool,
    short: bool,
    app: fn(&mut AgentOptions),
) -> Agent {
    let mut store = Store::open(dir).unwrap();
    store
        .set_profile(&Profile {
            display_name: name.into(),
            smp_servers: vec![router.into()],
            created_at: 0,
        })
        .unwrap();
    let mut opts = AgentOptions {
        hold_acks: false,
        sent_notices: false,
        smp: SmpClientOptions::default(),
        pq,
        conn_info: format!("info {name}").into_bytes(),
        contact_info: format!("request {name}").into_bytes(),
        private_routing: true,
        legacy_queues: legacy,
        link_data: short.then(|| format!("link of {name}").into_bytes()),
    };
    app(&mut opts);
    let mut a = Agent::with_store(store, opts).unwrap();
    a.start().await.unwrap();
    a
}

/// Runs both agents in turn until neither has anything for a while;
/// returns what each was told.
async fn pump(a: &mut Agent, b: &mut Agent) -> (Vec<Notice>, Vec<Notice>) {
    let (mut na, mut nb) = (Vec::new(), Vec::new());
    let mut quiet = 0;
    while quiet < 3 {
        let mut got = false;
        for (agent, out) in [(&mut *a, &mut na), (&mut *b, &mut nb)] {
            while let Some((iid, _, n)) = agent
                .next(Some(Instant::now() + Duration::from_millis(100)))
                .await
                .unwrap()
            {
                agent.done(iid).unwrap();
                out.push(n);
                got = true;
            }
        }
        quiet = if got { 0 } else { quiet + 1 };
    }
    (na, nb)
}

fn texts(n: &[Notice]) -> Vec<String> {
    n.iter()
        .filter_map(|n| match n {
            Notice::Message { body, .. } => Some(String::from_utf8_lossy(body).into_owned()),
            _ => None,
        })
        .collect()
}

/// Connects `a` (inviting) and `b`, then exchanges messages both ways with
/// turns, so ratchet steps happen on both sides.
async fn connect_and_talk(a: &mut Agent, b: &mut Agent) -> (ConnId, ConnId) {
    let (ca, link) = a.invite(None).await.unwrap();
    let cb = b.connect(&link, None, None).await.unwrap();
    let (na, nb) = pump(a, b).await;
    assert!(na.contains(&Notice::Connected), "{na:?}");
    assert!(nb.contains(&Notice::Connected), "{nb:?}");
    for round in 0..3 {
        a.send(ca, format!("a{round}").as_bytes()).await.unwrap();
        let (_, nb) = pump(a, b).await;
        assert_eq!(texts(&nb), vec![format!("a{round}")]);
        b.send(cb, format!("b{round}").as_bytes()).await.unwrap();
        let (na, _) = pump(a, b).await;
        assert_eq!(texts(&na), vec![format!("b{round}")]);
    }
    (ca, cb)
}

#[tokio::test]
async fn legacy_handshake_with_mode_less_queues() {
    let (_r, addr) = router().await;
    let t = tempfile::tempdir().unwrap();
    let mut a = agent(&t.path().join("a"), "alice", &addr, false, true).await;
    let mut b = agent(&t.path().join("b"), "bob", &addr, false, true).await;
    let (ca, cb) = connect_and_talk(&mut a, &mut b).await;
    assert!(a.connection(ca).unwrap().is_connected());
    assert!(b.connection(cb).unwrap().is_connected());
}

#[tokio::test]
async fn pq_on_off_and_declined() {
    let (_r, addr) = router().await;
    for (i, (apq, bpq)) in [(true, true), (true, false), (false, true), (false, false)]
        .into_iter()
        .enumerate()
    {
        let t = tempfile::tempdir().unwrap();
        let mut a = agent(&t.path().join(format!("a{i}")), "alice", &addr, apq, false).await;
        let mut b = agent(&t.path().join(format!("b{i}")), "bob", &addr, bpq, false).await;
        let (ca, cb) = connect_and_talk(&mut a, &mut b).await;
        let (pa, pb) = (
            a.connection(ca).unwrap().pq_support(),
            b.connection(cb).unwrap().pq_support(),
        );
        if apq && bpq {
            assert!(pa && pb, "PQ on both sides ({apq},{bpq})");
        }
        if !bpq {
            // The joiner declined: it never proposed nor accepted.
            assert!(!pb, "joiner declined ({apq},{bpq})");
        }
        if !apq && !bpq {
            assert!(!pa);
        }
    }
}

#[tokio::test]
async fn private_routing_hides_the_sender_from_the_destination_router() {
    let (ra, addr_a) = router().await;
    let (rb, addr_b) = router().await;
    let t = tempfile::tempdir().unwrap();
    let mut a = agent(&t.path().join("a"), "alice", &addr_a, false, false).await;
    let mut b = agent(&t.path().join("b"), "bob", &addr_b, false, false).await;
    connect_and_talk(&mut a, &mut b).await;
    // Each router saw its own user's connection and the other router's
    // proxy session, never the other user directly.
    assert_eq!(ra.router.connections_seen(), 2, "router A");
    assert_eq!(rb.router.connections_seen(), 2, "router B");
    let _ = ServerAddress::parse(&addr_a).unwrap();
}

/// Joins `link` from `b` and checks that both sides connect and talk.
async fn join_and_talk(a: &mut Agent, b: &mut Agent, link: &str) -> (ConnId, ConnId) {
    let cb = b.connect(link, None, None).await.unwrap();
    let (na, nb) = pump(a, b).await;
    assert!(na.contains(&Notice::Connected), "{na:?}");
    assert!(nb.contains(&Notice::Connected), "{nb:?}");
    let ca = a
        .store()
        .connections()
        .unwrap()
        .into_iter()
        .filter(|c| c.status != "address")
        .map(|c| c.id)
        .next_back()
        .unwrap();
    a.send(ca, b"hello b").await.unwrap();
    let (_, nb) = pump(a, b).await;
    assert_eq!(texts(&nb), vec!["hello b"]);
    b.send(cb, b"hello a").await.unwrap();
    let (na, _) = pump(a, b).await;
    assert_eq!(texts(&na), vec!["hello a"]);
    (ca, cb)
}

#[tokio::test]
async fn short_invitation_link_works_once() {
    let (_r, addr) = router().await;
    let t = tempfile::tempdir().unwrap();
    let mut a = agent_with(
        &t.path().join("a"),
        "alice",
        &addr,
        true,
        false,
        true,
        |_| {},
    )
    .await;
    let mut b = agent(&t.path().join("b"), "bob", &addr, true, false).await;
    let (_, link) = a.invite(None).await.unwrap();
    assert!(link.starts_with("https://127.0.0.1/i#"), "{link}");
    // Far shorter than a full link, and it names the router's identity.
    assert!(link.len() < 200, "{} bytes: {link}", link.len());
    let server = ServerAddress::parse(&addr).unwrap();
    assert!(
        link.contains(&format!("p={}", server.port().unwrap())),
        "{link}"
    );
    // LKEY secures alice's queue with bob's key; an SKEY with another key
    // would be refused and the connection would not complete.
    let (ca, cb) = join_and_talk(&mut a, &mut b, &link).await;
    // The KEM key came in the link data: PQ from the first message.
    assert!(a.connection(ca).unwrap().pq_support());
    assert!(b.connection(cb).unwrap().pq_support());
    // A second joiner is refused in plain words, and nothing is stored.
    let mut c = agent(&t.path().join("c"), "carol", &addr, true, false).await;
    let e = c.connect(&link, None, None).await.unwrap_err().to_string();
    assert!(e.contains("used already"), "{e}");
    assert!(c.store().connections().unwrap().is_empty());
}

#[tokio::test]
async fn short_contact_address_takes_many_requests() {
    let (_r, addr) = router().await;
    let t = tempfile::tempdir().unwrap();
    let mut a = agent_with(
        &t.path().join("a"),
        "alice",
        &addr,
        true,
        false,
        true,
        |_| {},
    )
    .await;
    let link = a.address(None).await.unwrap();
    assert!(link.starts_with("https://127.0.0.1/a#"), "{link}");
    assert_eq!(a.address(None).await.unwrap(), link, "the address stays");
    for (i, name) in ["bob", "carol"].into_iter().enumerate() {
        let mut b = agent(&t.path().join(name), name, &addr, i == 0, false).await;
        join_and_talk(&mut a, &mut b, &link).await;
    }
}

#[tokio::test]
async fn short_link_through_private_routing() {
    let (ra, addr_a) = router().await;
    let (rb, addr_b) = router().await;
    let t = tempfile::tempdir().unwrap();
    let mut a = agent_with(
        &t.path().join("a"),
        "alice",
        &addr_a,
        false,
        false,
        true,
        |_| {},
    )
    .await;
    let mut b = agent(&t.path().join("b"), "bob", &addr_b, false, false).await;
    let (_, link) = a.invite(None).await.unwrap();
    join_and_talk(&mut a, &mut b, &link).await;
    // LKEY went to router A through router B, like the messages.
    assert_eq!(ra.router.connections_seen(), 2, "router A");
    assert_eq!(rb.router.connections_seen(), 2, "router B");
}

#[tokio::test]
async fn tampered_short_links_are_refused() {
    let (_r, addr) = router().await;
    let t = tempfile::tempdir().unwrap();
    let mut a = agent_with(
        &t.path().join("a"),
        "alice",
        &addr,
        false,
        false,
        true,
        |_| {},
    )
    .await;
    let mut b = agent(&t.path().join("b"), "bob", &addr, false, false).await;
    let contact = a.address(None).await.unwrap();
    // Another link key: the data is looked up elsewhere or fails to decrypt.
    let (head, tail) = contact.split_once('#').unwrap();
    let (key, query) = tail.split_once('?').unwrap();
    let mut k = key.as_bytes().to_vec();
    k[5] = if k[5] == b'A' { b'B' } else { b'A' };
    let bad = format!("{head}#{}?{query}", String::from_utf8(k).unwrap());
    let e = b.connect(&bad, None, None).await.unwrap_err().to_string();
    assert!(e.contains("link"), "{e}");
    // A link whose router is neither a preset nor known.
    let e = b
        .connect(&format!("https://unknown.example/a#{key}"), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("preset"), "{e}");
    assert!(b.store().connections().unwrap().is_empty());
    // The real link still works.
    join_and_talk(&mut a, &mut b, &contact).await;
}

/// With `hold_acks`, the router keeps a message until its notice is done:
/// the next message on that queue comes only after it, and a restart
/// without `done` hands the same message out again (a device acknowledges
/// only what is on its card).
#[tokio::test]
async fn held_acks_wait_for_the_application() {
    let (_r, addr) = router().await;
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let mut a = agent(&da, "alice", &addr, true, false).await;
    let mut b = agent_with(&db, "bob", &addr, true, false, false, |o| {
        o.hold_acks = true
    })
    .await;
    let (ca, _) = connect_and_talk(&mut a, &mut b).await;
    for m in ["one", "two"] {
        a.send(ca, m.as_bytes()).await.unwrap();
    }
    a.flush_outbox().await.unwrap();
    let soon = || Some(Instant::now() + Duration::from_millis(1500));
    let message = |n: &Notice| match n {
        Notice::Message { body, .. } => String::from_utf8_lossy(body).into_owned(),
        other => panic!("a message, not {other:?}"),
    };

    let (first, _, n) = b.next(soon()).await.unwrap().expect("the first message");
    assert_eq!(message(&n), "one");
    // Not done: "two" stays on the router behind the unacknowledged "one".
    assert!(
        b.next(soon()).await.unwrap().is_none(),
        "two came before one was done"
    );

    // A restart without done: "one" again, from the store, and still held.
    drop(b);
    let mut b = agent_with(&db, "bob", &addr, true, false, false, |o| {
        o.hold_acks = true
    })
    .await;
    let (again, _, n) = b.next(soon()).await.unwrap().expect("one again");
    assert_eq!(message(&n), "one");
    assert_eq!(again, first);
    assert!(
        b.next(soon()).await.unwrap().is_none(),
        "two came before one was done"
    );

    b.done(again).unwrap();
    let (second, _, n) = b.next(soon()).await.unwrap().expect("the second message");
    assert_eq!(message(&n), "two");
    b.done(second).unwrap();
    assert!(b.next(soon()).await.unwrap().is_none());
}

/// With `sent_notices`, a sent message comes back through the inbox,
/// committed with the send: it is there again after a restart until done,
/// so an application writing its own history cannot miss it.
#[tokio::test]
async fn sent_notices_are_committed_with_the_send() {
    let (_r, addr) = router().await;
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let sent = |o: &mut AgentOptions| o.sent_notices = true;
    let mut a = agent_with(&da, "alice", &addr, true, false, false, sent).await;
    let mut b = agent(&db, "bob", &addr, true, false).await;
    let (ca, _) = connect_and_talk(&mut a, &mut b).await;
    let id = a.send(ca, b"for the record").await.unwrap();
    let soon = || Some(Instant::now() + Duration::from_millis(500));
    let want = Notice::Sent {
        msg_id: id,
        body: b"for the record".to_vec(),
    };
    let (first, conn, n) = a.next(soon()).await.unwrap().expect("the sent notice");
    assert_eq!((conn, &n), (ca, &want));

    // Stopped before it was written down: it comes again.
    drop(a);
    let mut a = agent_with(&da, "alice", &addr, true, false, false, sent).await;
    let (again, _, n) = a
        .next(soon())
        .await
        .unwrap()
        .expect("the sent notice again");
    assert_eq!((again, n), (first, want));
    a.done(again).unwrap();
    assert!(a.next(soon()).await.unwrap().is_none());
    let (_, nb) = pump(&mut a, &mut b).await;
    assert_eq!(texts(&nb), ["for the record"]);
}
