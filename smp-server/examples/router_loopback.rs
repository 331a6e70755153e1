//! Two SimpleGo routers on loopback with fresh identities: a queue on
//! router B, one message sent to it directly, one through router A as a
//! private-routing proxy; both received, decrypted and checked.
//!
//!     cargo run --release -p smp-server --example router_loopback

use std::net::SocketAddr;

use smp_core::address::ServerAddress;
use smp_core::client::smp::{CreateQueueOptions, SmpClient, SmpClientOptions, SmpEvent};
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::smp::message::RcvMsgBody;
use smp_core::tls::ServerIdentity;
use smp_server::app::{RunningServer, Settings, start};

async fn router(name: &str, relay: Option<(&str, SocketAddr)>) -> (RunningServer, String) {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
    let mut s = Settings::new(identity.clone(), "127.0.0.1:0".parse().unwrap());
    if let Some((host, addr)) = relay {
        s.proxy.resolve.insert(host.to_string(), addr);
    }
    let srv = start(s).await.unwrap();
    let fp = identity.fingerprint_b64();
    println!("router {name}: smp://{fp}@127.0.0.1:{}", srv.addr().port());
    (srv, fp)
}

async fn connect(srv: &RunningServer, fp: &str) -> (SmpClient, smp_core::client::smp::SmpEvents) {
    let addr =
        ServerAddress::parse(&format!("smp://{fp}@127.0.0.1:{}", srv.addr().port())).unwrap();
    let opts = SmpClientOptions {
        socket_addr: Some(srv.addr()),
        ..SmpClientOptions::default()
    };
    SmpClient::connect(&addr, &opts).await.unwrap()
}

#[tokio::main]
async fn main() {
    let (b, b_fp) = router("B (hosts the queue)", None).await;
    let (a, a_fp) = router("A (proxy)", Some(("router-b.local", b.addr()))).await;

    let (alice, mut inbox) = connect(&b, &b_fp).await;
    println!(
        "recipient connected to B at relay version {}",
        alice.version()
    );
    let q = alice
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    println!("queue created on B (messaging mode, subscribed)");

    let (direct, _) = connect(&b, &b_fp).await;
    direct
        .send(&q.snd_id, None, false, b"hello, directly")
        .await
        .unwrap();
    println!("sent one message directly to B");

    let (via_a, _) = connect(&a, &a_fp).await;
    let relay_addr = ServerAddress::parse(&format!("smp://{b_fp}@router-b.local")).unwrap();
    let relay = via_a.proxy_session(&relay_addr, None).await.unwrap();
    println!(
        "proxy session A -> B, forwarding at version {}",
        relay.version
    );

    let mut expected = vec![b"hello, directly".to_vec(), b"hello, through A".to_vec()];
    let mut sent_proxied = false;
    while !expected.is_empty() {
        let Some(SmpEvent::Server { response, .. }) = inbox.recv().await else {
            continue;
        };
        let (id, body) = q.decrypt_response(&response).unwrap();
        let RcvMsgBody::Message { body, .. } = body else {
            panic!("unexpected quota marker")
        };
        println!("received: {}", String::from_utf8_lossy(&body));
        assert_eq!(body, expected.remove(0), "bytes differ");
        if !sent_proxied {
            via_a
                .proxy_send(&relay, &q.snd_id, None, false, b"hello, through A")
                .await
                .unwrap();
            println!("sent one message through A (A saw only ciphertext, B never saw the sender)");
            sent_proxied = true;
        }
        if let Some(next) = alice.ack(&q, &id).await.unwrap() {
            inbox_push(&q, next, &mut expected);
        }
    }
    println!("both messages arrived intact");
    a.stop().await;
    b.stop().await;
}

fn inbox_push(
    q: &smp_core::client::smp::RcvQueue,
    m: smp_core::client::smp::RawMessage,
    expected: &mut Vec<Vec<u8>>,
) {
    if let Ok(RcvMsgBody::Message { body, .. }) = q.decrypt(&m) {
        println!("received: {}", String::from_utf8_lossy(&body));
        assert_eq!(body, expected.remove(0), "bytes differ");
    }
}
