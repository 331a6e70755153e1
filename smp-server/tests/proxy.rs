//! Private message routing over two routers on loopback: router A is the
//! proxy, router B hosts the queue. The sender talks only to A; B sees
//! only A's connection; A sees only ciphertext.

mod support;

use std::net::SocketAddr;

use smp_core::address::ServerAddress;
use smp_core::client::smp::{
    CreateQueueOptions, SmpClient, SmpClientError, SmpClientOptions, SmpEvent, SmpEvents,
};
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::random_array;
use smp_core::crypto::secretbox::CbNonce;
use smp_core::smp::error::{BlockingInfo, BlockingReason, BrokerError, ProxyError};
use smp_core::smp::proxy::{decrypt_response, encrypt_command};
use smp_core::smp::store_log::EntityStatus;
use smp_core::smp::transmission::encode_command_transmission;
use smp_core::smp::version::VersionRange;
use smp_core::smp::{Command, ErrorType, Response};
use smp_server::app::RunningServer;
use support::*;

const RELAY_HOST: &str = "relay.test";

fn address(env: &Env, host: &str) -> ServerAddress {
    let fp = smp_core::encoding::string::b64_encode(&env.key_hash());
    ServerAddress::parse(&format!("smp://{fp}@{host}")).unwrap()
}

async fn connect(env: &Env, srv: &RunningServer, versions: VersionRange) -> (SmpClient, SmpEvents) {
    let opts = SmpClientOptions {
        socket_addr: Some(srv.addr()),
        versions,
        ..SmpClientOptions::default()
    };
    SmpClient::connect(&address(env, "127.0.0.1"), &opts)
        .await
        .unwrap()
}

struct Pair {
    a_env: Env,
    b_env: Env,
    a: RunningServer,
    b: RunningServer,
}

async fn pair(a_password: Option<&[u8]>) -> Pair {
    let (a_env, b_env) = (Env::new(), Env::new());
    let b = smp_server::app::start(b_env.settings()).await.unwrap();
    let mut s = a_env.settings();
    s.proxy.resolve.insert(RELAY_HOST.to_string(), b.addr());
    s.proxy.resolve.insert(
        "dead.test".to_string(),
        SocketAddr::from(([127, 0, 0, 1], 1)),
    );
    s.create_password = a_password.map(|p| zeroize::Zeroizing::new(p.to_vec()));
    let a = smp_server::app::start(s).await.unwrap();
    Pair { a_env, b_env, a, b }
}

async fn next_msg(events: &mut SmpEvents) -> Response {
    match tokio::time::timeout(PATIENCE, events.recv())
        .await
        .unwrap()
        .unwrap()
    {
        SmpEvent::Server { response, .. } => response,
        other => panic!("unexpected event {other:?}"),
    }
}

/// Two routers, a queue on B (its recipient connected to B) and a sender
/// connected to A with a proxy session to B.
struct Routed {
    p: Pair,
    /// Kept open: its events are the recipient's.
    _rcv: SmpClient,
    events: SmpEvents,
    q: smp_core::client::smp::RcvQueue,
    snd: SmpClient,
    relay: smp_core::client::smp::ProxiedRelay,
}

async fn routed() -> Routed {
    let p = pair(None).await;
    let (rcv, events) = connect(&p.b_env, &p.b, VersionRange::new(6, 18).unwrap()).await;
    let q = rcv
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    let (snd, _) = connect(&p.a_env, &p.a, VersionRange::new(6, 18).unwrap()).await;
    let relay = snd
        .proxy_session(&address(&p.b_env, RELAY_HOST), None)
        .await
        .unwrap();
    Routed {
        p,
        _rcv: rcv,
        events,
        q,
        snd,
        relay,
    }
}

#[tokio::test]
async fn a_message_through_the_proxy_arrives_intact() {
    let Routed {
        p,
        _rcv,
        mut events,
        q,
        snd,
        relay,
    } = routed().await;
    assert_eq!(relay.version, 17, "forwarded at min(18, 17)");
    // The sender secures the queue and sends, both through the proxy.
    let sk = ed25519();
    snd.proxy_skey(&relay, &q.snd_id, &sk).await.unwrap();
    let body = vec![0x5a; 15000];
    snd.proxy_send(&relay, &q.snd_id, Some(&sk), false, &body)
        .await
        .unwrap();
    let (_, m) = q.decrypt_response(&next_msg(&mut events).await).unwrap();
    assert_eq!(body_of(&m), body.as_slice());
    // An unsigned send to the now secured queue: the relay's AUTH comes back inside PRES.
    let e = snd.proxy_send(&relay, &q.snd_id, None, false, b"x").await;
    assert!(
        matches!(e, Err(SmpClientError::Relay(ErrorType::Auth))),
        "{e:?}"
    );
    // B saw two connections (the recipient and A's shared session), never the sender's.
    assert_eq!(p.b.router.connections_seen(), 2);
    assert_eq!(p.a.router.connections_seen(), 1);
    // A second PRXY reuses A's one session with B.
    let again = snd
        .proxy_session(&address(&p.b_env, RELAY_HOST), None)
        .await
        .unwrap();
    assert_eq!(again.session_id, relay.session_id);
    assert_eq!(p.b.router.connections_seen(), 2);
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test]
async fn the_proxy_sees_only_ciphertext() {
    let Routed {
        p,
        _rcv,
        mut events,
        q,
        snd,
        relay,
    } = routed().await;
    // Build the PFWD by hand to look at exactly what the proxy receives.
    let n: [u8; 24] = random_array();
    let secret_body = b"the proxy must not read this".to_vec();
    let inner = encode_command_transmission(
        relay.version,
        &relay.session_id,
        &n,
        &q.snd_id,
        &send_cmd(&secret_body),
        None,
    )
    .unwrap();
    let ek = PrivateKey::generate(KeyAlgorithm::X25519);
    let cmd_secret = ek.dh(&relay.relay_key).unwrap();
    let et = encrypt_command(&cmd_secret, &CbNonce(n), &inner).unwrap();
    let pfwd = Command::Pfwd {
        version: relay.version,
        key: ek.public_key(),
        encrypted: et,
    };
    let wire = pfwd.encode(snd.version()).unwrap();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&wire, &q.snd_id), "queue ID in clear");
    assert!(!contains(&wire, &secret_body), "message in clear");
    let r = snd
        .request(Some(n.to_vec()), &relay.session_id, &pfwd, None)
        .await
        .unwrap();
    let Response::Pres(r2) = r else {
        panic!("{r:?}")
    };
    assert!(decrypt_response(&cmd_secret, &CbNonce(n), &r2).is_ok());
    let (_, m) = q.decrypt_response(&next_msg(&mut events).await).unwrap();
    assert_eq!(body_of(&m), secret_body.as_slice());
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test]
async fn proxy_errors() {
    let p = pair(Some(b"pw")).await;
    let (snd, _) = connect(&p.a_env, &p.a, VersionRange::new(6, 18).unwrap()).await;
    let b_addr = address(&p.b_env, RELAY_HOST);
    // A password-protected proxy wants its password in PRXY.
    let e = snd.proxy_session(&b_addr, None).await;
    assert!(
        matches!(e, Err(SmpClientError::Proxy(ProxyError::BasicAuth))),
        "{e:?}"
    );
    let pw = smp_core::smp::command::BasicAuth::new(b"pw");
    let relay = snd.proxy_session(&b_addr, pw.clone()).await.unwrap();
    // A relay nobody answers at.
    let e = snd
        .proxy_session(&address(&p.b_env, "dead.test"), pw.clone())
        .await;
    assert!(
        matches!(e, Err(SmpClientError::Proxy(ProxyError::Broker(_)))),
        "{e:?}"
    );
    // A relay whose identity is not the one in the address: the proxy's
    // TLS pin refuses it, reported as the reference does (`BROKER NETWORK`).
    let wrong = address(&p.a_env, RELAY_HOST);
    let e = snd.proxy_session(&wrong, pw.clone()).await;
    assert!(
        matches!(
            e,
            Err(SmpClientError::Proxy(ProxyError::Broker(
                BrokerError::Network(_)
            )))
        ),
        "{e:?}"
    );
    // PFWD for a session the proxy does not have.
    let mut bogus = relay.clone();
    bogus.session_id = vec![1; 32];
    let e = snd.proxy_send(&bogus, &[2; 24], None, false, b"x").await;
    assert!(
        matches!(e, Err(SmpClientError::Proxy(ProxyError::NoSession))),
        "{e:?}"
    );
    // An unknown queue at the relay: AUTH from the relay, inside PRES.
    let e = snd.proxy_send(&relay, &[3; 24], None, false, b"x").await;
    assert!(
        matches!(e, Err(SmpClientError::Relay(ErrorType::Auth))),
        "{e:?}"
    );
    // A recipient command is not proxiable.
    let k = ed25519();
    let e = snd
        .proxy_command(&relay, &[3; 24], &Command::Sub, Some(&k))
        .await;
    assert!(
        matches!(
            e,
            Err(SmpClientError::Relay(ErrorType::Cmd(
                smp_core::smp::error::CommandError::Prohibited
            )))
        ),
        "{e:?}"
    );
    p.a.stop().await;
    p.b.stop().await;
}

/// The inner answer is shaped by the forwarded version: a blocked queue is
/// AUTH at 8 and BLOCKED without its notice at 17.
#[tokio::test]
async fn forwarded_version_shapes_the_inner_answer() {
    let p = pair(None).await;
    let (rcv, _) = connect(&p.b_env, &p.b, VersionRange::new(6, 18).unwrap()).await;
    let q = rcv
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    p.b.router
        .lock()
        .store
        .get_mut(&q.rcv_id)
        .unwrap()
        .rec
        .status = EntityStatus::Blocked(BlockingInfo {
        reason: BlockingReason::Content,
        notice: Some(smp_core::smp::error::ClientNotice { ttl: None }),
    });
    for (max, v, expected) in [
        (8u16, 8u16, ErrorType::Auth),
        (
            18,
            17,
            ErrorType::Blocked(BlockingInfo {
                reason: BlockingReason::Content,
                notice: None,
            }),
        ),
    ] {
        let (snd, _) = connect(&p.a_env, &p.a, VersionRange::new(6, max).unwrap()).await;
        let relay = snd
            .proxy_session(&address(&p.b_env, RELAY_HOST), None)
            .await
            .unwrap();
        assert_eq!(relay.version, v);
        let e = snd.proxy_send(&relay, &q.snd_id, None, false, b"x").await;
        match e {
            Err(SmpClientError::Relay(got)) => assert_eq!(got, expected, "at v{v}"),
            other => panic!("{other:?}"),
        }
    }
    p.a.stop().await;
    p.b.stop().await;
}
