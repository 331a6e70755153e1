//! Our SMP client (`smp_core::client::smp`) against our router: the queue
//! life a messaging app goes through, and reconnect with resubscription
//! after the router restarts.

mod support;

use std::time::Duration;

use smp_core::address::ServerAddress;
use smp_core::client::smp::{
    Backoff, CreateQueueOptions, ReconnectingSmpClient, SmpClient, SmpClientError,
    SmpClientOptions, SmpEvent, SmpEvents,
};
use smp_core::smp::message::RcvMsgBody;
use smp_core::smp::{ErrorType, Response};
use support::*;

fn address(env: &Env) -> ServerAddress {
    let fp = smp_core::encoding::string::b64_encode(&env.key_hash());
    ServerAddress::parse(&format!("smp://{fp}@localhost")).unwrap()
}

fn options(addr: std::net::SocketAddr) -> SmpClientOptions {
    SmpClientOptions {
        socket_addr: Some(addr),
        ..SmpClientOptions::default()
    }
}

async fn event(events: &mut SmpEvents) -> SmpEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .unwrap()
        .unwrap()
}

async fn server_event(events: &mut SmpEvents) -> Response {
    loop {
        if let SmpEvent::Server { response, .. } = event(events).await {
            return response;
        }
    }
}

#[tokio::test]
async fn queue_life_with_our_client() {
    let env = Env::new();
    let mut s = env.settings();
    s.create_password = Some(zeroize::Zeroizing::new(b"letmein".to_vec()));
    let srv = smp_server::app::start(s).await.unwrap();
    let (alice, mut alice_events) = SmpClient::connect(&address(&env), &options(srv.addr()))
        .await
        .unwrap();
    assert_eq!(alice.version(), 18);
    assert!(alice.block_encryption());
    // Without the password NEW is refused; with it, accepted.
    let e = alice.create_queue(&CreateQueueOptions::default()).await;
    assert!(
        matches!(e, Err(SmpClientError::Protocol(ErrorType::Auth))),
        "{e:?}"
    );
    let opts = CreateQueueOptions {
        basic_auth: smp_core::smp::command::BasicAuth::new(b"letmein"),
        ..CreateQueueOptions::default()
    };
    let q = alice.create_queue(&opts).await.unwrap();

    let (bob, _) = SmpClient::connect(&address(&env), &options(srv.addr()))
        .await
        .unwrap();
    let bob_key = ed25519();
    bob.secure_queue_sender(&q.snd_id, &bob_key).await.unwrap();
    for i in 0..3u8 {
        bob.send(&q.snd_id, Some(&bob_key), false, &[i; 100])
            .await
            .unwrap();
    }
    // Delivered one at a time: the next comes as the reply to ACK.
    let first = server_event(&mut alice_events).await;
    let (id, m) = q.decrypt_response(&first).unwrap();
    assert_eq!(body_of(&m), [0u8; 100]);
    let next = alice
        .ack(&q, &id)
        .await
        .unwrap()
        .expect("next message as the ACK reply");
    let m = q.decrypt(&next).unwrap();
    assert_eq!(body_of(&m), [1u8; 100]);

    // Another device subscribes: Alice's connection gets END.
    let (carol, mut carol_events) = SmpClient::connect(&address(&env), &options(srv.addr()))
        .await
        .unwrap();
    // SUB answers SOK; the unacknowledged message follows as an event.
    assert!(carol.subscribe(&q).await.unwrap().is_none());
    let again = server_event(&mut carol_events).await;
    assert_eq!(body_of(&q.decrypt_response(&again).unwrap().1), [1u8; 100]);
    assert_eq!(server_event(&mut alice_events).await, Response::End);

    // Quota: 128 messages fit, the next SEND is QUOTA.
    let q2 = alice
        .create_queue(&CreateQueueOptions {
            subscribe: false,
            ..opts.clone()
        })
        .await
        .unwrap();
    for i in 0..128u32 {
        bob.send(&q2.snd_id, None, false, &i.to_be_bytes())
            .await
            .unwrap();
    }
    let e = bob.send(&q2.snd_id, None, false, b"one too many").await;
    assert!(
        matches!(e, Err(SmpClientError::Protocol(ErrorType::Quota))),
        "{e:?}"
    );
    let got = alice.get(&q2).await.unwrap().unwrap();
    assert!(matches!(
        q2.decrypt(&got).unwrap(),
        RcvMsgBody::Message { .. }
    ));

    // Delete: the sender's next SEND is AUTH.
    alice.delete(&q2).await.unwrap();
    let e = bob.send(&q2.snd_id, None, false, b"gone").await;
    assert!(
        matches!(e, Err(SmpClientError::Protocol(ErrorType::Auth))),
        "{e:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn reconnects_and_resubscribes_after_a_restart() {
    let env = Env::new();
    let srv = smp_server::app::start(env.persistent_settings())
        .await
        .unwrap();
    let addr = srv.addr();
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let (rc, mut events) = ReconnectingSmpClient::connect(address(&env), options(addr), backoff)
        .await
        .unwrap();
    let q = rc
        .client()
        .unwrap()
        .create_queue(&CreateQueueOptions {
            subscribe: false,
            ..CreateQueueOptions::default()
        })
        .await
        .unwrap();
    assert!(rc.subscribe(&q).await.unwrap().is_none());
    srv.stop().await;
    assert_eq!(event(&mut events).await, SmpEvent::Disconnected);
    let mut s = env.persistent_settings();
    s.listen = vec![addr];
    let srv = smp_server::app::start(s).await.unwrap();
    loop {
        if event(&mut events).await == SmpEvent::Reconnected {
            break;
        }
    }
    let (snd, _) = SmpClient::connect(&address(&env), &options(addr))
        .await
        .unwrap();
    snd.send(&q.snd_id, None, false, b"after restart")
        .await
        .unwrap();
    let m = server_event(&mut events).await;
    assert_eq!(
        body_of(&q.decrypt_response(&m).unwrap().1),
        b"after restart"
    );
    srv.stop().await;
}

#[tokio::test]
async fn one_pooled_connection_per_router() {
    use smp_core::client::smp::SmpClientPool;
    let (e1, e2) = (Env::new(), Env::new());
    let (r1, r2) = (e1.start().await, e2.start().await);
    let at = |env: &Env, srv: &smp_server::app::RunningServer| {
        let fp = smp_core::encoding::string::b64_encode(&env.key_hash());
        ServerAddress::parse(&format!("smp://{fp}@127.0.0.1:{}", srv.addr().port())).unwrap()
    };
    let (a1, a2) = (at(&e1, &r1), at(&e2, &r2));
    let (pool, mut events) = SmpClientPool::new(SmpClientOptions::default());
    let c1 = pool.client(&a1).await.unwrap();
    let q1 = c1
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    let q2 = pool
        .client(&a1)
        .await
        .unwrap()
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    assert!(pool.client(&a1).await.unwrap().same_connection(&c1));
    let c2 = pool.client(&a2).await.unwrap();
    assert!(!c2.same_connection(&c1));
    assert_eq!(pool.open_connections().await, 2);
    assert_eq!(
        r1.router.connections_seen(),
        1,
        "both queues on one connection"
    );
    // Events carry their router.
    c2.send(&q1.snd_id, None, false, b"x").await.unwrap_err();
    pool.client(&a1)
        .await
        .unwrap()
        .send(&q2.snd_id, None, false, b"to q2")
        .await
        .unwrap();
    let (from, ev) = tokio::time::timeout(PATIENCE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, a1);
    let SmpEvent::Server { entity_id, .. } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(entity_id, q2.rcv_id);
    // A router that went away is dialled again on the next use.
    r1.stop().await;
    let mut s = e1.settings();
    s.listen = vec![a1_socket(&a1)];
    let r1 = smp_server::app::start(s).await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !c1.is_closed() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let again = pool.client(&a1).await.unwrap();
    assert!(!again.same_connection(&c1));
    again.ping().await.unwrap();
    r1.stop().await;
    r2.stop().await;
}

fn a1_socket(a: &ServerAddress) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], a.effective_port()))
}
