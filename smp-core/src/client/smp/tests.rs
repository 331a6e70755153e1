//! The client against a small in-test router: real TLS with a generated
//! identity, the server side of the hello exchange, block encryption, and
//! just enough commands (signatures checked) to exercise the routing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::address::{KeyHash, Scheme, ServerAddress, TransportHost};
use crate::crypto::secretbox::CbNonce;
use crate::smp::block_crypto::BlockCipher;
use crate::smp::error::{CommandError, ProxyError};
use crate::smp::handshake::{CertChainPubKey, ClientHello, ServerHello, sign_session_key};
use crate::smp::message::encrypt_rcv_msg;
use crate::smp::proxy::{decrypt_command, encrypt_response};
use crate::smp::response::QueueIds;
use crate::smp::transmission::encode_batch;
use crate::smp::transmission::{
    decode_command_transmission, encode_response_transmission, parse_batch, verify_auth,
};
use crate::tls::{self, ServerIdentity, TlsConnection};
use crate::transport::{BlockReader, BlockWriter};

/// What the fake router does besides the normal answers.
#[derive(Clone, Copy, Default)]
struct Quirks {
    /// Hold PONGs until two PINGs arrived, then answer both in reverse
    /// order in one block.
    reverse_pongs: bool,
}

struct Router {
    address: ServerAddress,
    socket: SocketAddr,
}

async fn start(quirks: Quirks) -> Router {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "localhost").unwrap();
    let identity = Arc::new(identity);
    let cfg = Arc::new(tls::server_config(&identity, tls::SMP_SERVER_ALPN).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = listener.local_addr().unwrap();
    let queues: Queues = Arc::default();
    let fingerprint = identity.fingerprint();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (cfg, identity, queues) = (cfg.clone(), identity.clone(), queues.clone());
            tokio::spawn(async move {
                if let Ok(tls) = tls::accept(tcp, &cfg).await {
                    serve(tls, &identity, &queues, quirks).await;
                }
            });
        }
    });
    let address = ServerAddress::new(
        Scheme::Smp,
        vec![TransportHost::Domain("router.invalid".into())],
        None,
        KeyHash::from(fingerprint),
    )
    .unwrap();
    Router { address, socket }
}

fn signed_key(identity: &ServerIdentity, key: &PrivateKey) -> CertChainPubKey {
    CertChainPubKey {
        cert_chain: identity.chain().iter().map(|c| c.to_vec()).collect(),
        signed_pub_key: sign_session_key(&key.public_key(), identity.leaf_key()).unwrap(),
    }
}

/// Queues outlive connections, so a reconnecting client can resubscribe.
type Queues = Arc<std::sync::Mutex<HashMap<Vec<u8>, Queue>>>;

#[derive(Clone)]
struct Queue {
    auth_key: PublicKey,
    dh_secret: [u8; 32],
    snd_id: Vec<u8>,
}

async fn serve(
    tls: TlsConnection<TcpStream>,
    identity: &ServerIdentity,
    queues: &Queues,
    quirks: Quirks,
) {
    let sid = tls.session_id().0.to_vec();
    let offered = if tls.alpn().is_some() {
        version::SUPPORTED_RANGE
    } else {
        version::LEGACY_SERVER_RANGE
    };
    let session_key = PrivateKey::generate(KeyAlgorithm::X25519);
    let (r, w) = tokio::io::split(tls);
    let (mut r, mut w) = (BlockReader::new(r), BlockWriter::new(w));
    let hello = ServerHello {
        versions: offered,
        session_id: sid.clone(),
        auth_pub_key: (offered.max() >= 7).then(|| signed_key(identity, &session_key)),
    };
    w.write_raw(&hello.encode_block().unwrap()).await.unwrap();
    let Ok(Some(block)) = r.read_handshake().await else {
        return;
    };
    let ch = ClientHello::decode_block(&block).unwrap();
    let Ok(v) = ch.accept(&offered, &identity.fingerprint()) else {
        return;
    };
    if ch.block_encryption() {
        let secret = session_key.dh(ch.auth_pub_key.as_ref().unwrap()).unwrap();
        let (sealer, opener) = BlockCipher::server(&sid, &secret).split();
        w.set_cipher(sealer);
        r.set_cipher(opener);
    }
    // The relay side of PRXY: this router is also the relay.
    let relay_sid: Vec<u8> = random_array::<32>().to_vec();
    let relay_key = PrivateKey::generate(KeyAlgorithm::X25519);
    let mut held_pongs: Vec<Vec<u8>> = Vec::new();
    let resp = |corr: &[u8], entity: &[u8], r: Response| {
        encode_response_transmission(v, &sid, corr, entity, &r).unwrap()
    };

    while let Ok(Some(content)) = r.read_content().await {
        let content = content.unwrap();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for t in parse_batch(&content).unwrap() {
            let mut queues = queues.lock().unwrap();
            let st = match decode_command_transmission(t, v, &sid) {
                Ok(st) => st,
                Err(e) => {
                    out.push(resp(&e.corr_id, &e.entity_id, Response::Err(e.error)));
                    continue;
                }
            };
            let (corr, entity) = (st.raw.corr_id.to_vec(), st.raw.entity_id.to_vec());
            let authorized = |key: &PublicKey| {
                verify_auth(st.auth.as_ref(), &st.signed, &corr, key, Some(&session_key))
            };
            let reply = match &st.command {
                Command::Ping if quirks.reverse_pongs => {
                    held_pongs.push(corr.clone());
                    if held_pongs.len() == 2 {
                        for c in held_pongs.drain(..).rev() {
                            out.push(resp(&c, b"", Response::Pong));
                        }
                    }
                    continue;
                }
                Command::Ping => Response::Pong,
                Command::New(n) => {
                    if !authorized(&n.rcv_auth_key) {
                        Response::Err(ErrorType::Auth)
                    } else {
                        let rcv_id = random_array::<24>().to_vec();
                        let snd_id = random_array::<24>().to_vec();
                        let q_key = PrivateKey::generate(KeyAlgorithm::X25519);
                        let dh_secret = *q_key.dh(&n.rcv_dh_key).unwrap();
                        queues.insert(
                            rcv_id.clone(),
                            Queue {
                                auth_key: n.rcv_auth_key.clone(),
                                dh_secret,
                                snd_id: snd_id.clone(),
                            },
                        );
                        Response::Ids(QueueIds {
                            rcv_id,
                            snd_id,
                            server_dh_key: q_key.public_key(),
                            queue_mode: n.queue_req_data.as_ref().map(|q| q.mode()),
                            link_id: None,
                            service_id: None,
                            ntf_creds: None,
                        })
                    }
                }
                Command::Sub => match queues.get(&entity) {
                    Some(q) if authorized(&q.auth_key) => {
                        // OK, then a waiting message as an event.
                        out.push(resp(&corr, &entity, Response::Sok(None)));
                        let msg_id = random_array::<24>().to_vec();
                        let body = RcvMsgBody::Message {
                            ts: 1_767_225_600,
                            notification: true,
                            body: b"hello".to_vec(),
                        };
                        let enc = encrypt_rcv_msg(&q.dh_secret, &msg_id, &body).unwrap();
                        out.push(resp(b"", &entity, Response::Msg { msg_id, body: enc }));
                        continue;
                    }
                    _ => Response::Err(ErrorType::Auth),
                },
                Command::Get => match queues.get(&entity) {
                    // GET answers with a message (corrId set), as the reference does.
                    Some(q) if authorized(&q.auth_key) => {
                        let msg_id = random_array::<24>().to_vec();
                        let body = RcvMsgBody::Quota { ts: 7 };
                        let enc = encrypt_rcv_msg(&q.dh_secret, &msg_id, &body).unwrap();
                        Response::Msg { msg_id, body: enc }
                    }
                    _ => Response::Err(ErrorType::Auth),
                },
                Command::Send { .. } => {
                    if queues.values().any(|q| q.snd_id == entity) && st.auth.is_none() {
                        Response::Ok
                    } else {
                        Response::Err(ErrorType::Auth)
                    }
                }
                // Answered for another entity: the client must not accept it.
                Command::Ldel => {
                    out.push(resp(&corr, b"another", Response::Ok));
                    continue;
                }
                // Never answered: the request must time out.
                Command::Off => continue,
                // The connection is dropped without an answer.
                Command::Del => return,
                Command::Prxy { auth: Some(_), .. } => {
                    Response::Err(ErrorType::Proxy(Box::new(ProxyError::BasicAuth)))
                }
                Command::Prxy { .. } => Response::Pkey {
                    session_id: relay_sid.clone(),
                    versions: VersionRange::new(8, 17).unwrap(),
                    key: signed_key(identity, &relay_key),
                },
                Command::Pfwd {
                    version: fv,
                    key,
                    encrypted,
                } if entity == relay_sid => {
                    let secret = relay_key.dh(key).unwrap();
                    let nonce = CbNonce::normalize(&corr);
                    let inner = decrypt_command(&secret, &nonce, encrypted).unwrap();
                    let it = decode_command_transmission(&inner, *fv, &relay_sid).unwrap();
                    let known = queues.values().any(|q| q.snd_id == it.raw.entity_id);
                    let inner_resp = match it.command {
                        Command::Send { .. } if known => Response::Ok,
                        _ => Response::Err(ErrorType::Auth),
                    };
                    let rt = encode_response_transmission(
                        *fv,
                        &relay_sid,
                        it.raw.corr_id,
                        it.raw.entity_id,
                        &inner_resp,
                    )
                    .unwrap();
                    Response::Pres(encrypt_response(&secret, &nonce, &rt).unwrap())
                }
                _ => Response::Err(ErrorType::Cmd(CommandError::Unknown)),
            };
            out.push(resp(&corr, &entity, reply));
        }
        if !out.is_empty() {
            let batch = encode_batch(&out).unwrap();
            if w.write_content(&batch).await.is_err() {
                return;
            }
        }
    }
}

fn opts(router: &Router) -> SmpClientOptions {
    SmpClientOptions {
        socket_addr: Some(router.socket),
        request_timeout: Duration::from_secs(5),
        ..SmpClientOptions::default()
    }
}

async fn next_event(events: &mut SmpEvents) -> SmpEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event in time")
        .expect("events open")
}

#[tokio::test]
async fn handshake_at_18_with_block_encryption_and_ping() {
    let router = start(Quirks::default()).await;
    let (c, _events) = SmpClient::connect(&router.address, &opts(&router))
        .await
        .unwrap();
    assert_eq!(c.version(), 18);
    assert!(c.block_encryption());
    assert!(c.server_session_key().is_some());
    c.ping().await.unwrap();
    c.ping().await.unwrap();
}

#[tokio::test]
async fn without_session_key_blocks_stay_plain() {
    let router = start(Quirks::default()).await;
    let o = SmpClientOptions {
        send_session_key: false,
        ..opts(&router)
    };
    let (c, _events) = SmpClient::connect(&router.address, &o).await.unwrap();
    assert_eq!(c.version(), 18);
    assert!(!c.block_encryption());
    c.ping().await.unwrap();
}

#[tokio::test]
async fn no_alpn_negotiates_v6_with_session_id_on_the_wire() {
    let router = start(Quirks::default()).await;
    let o = SmpClientOptions {
        alpn: None,
        ..opts(&router)
    };
    let (c, _events) = SmpClient::connect(&router.address, &o).await.unwrap();
    assert_eq!(c.version(), 6);
    assert!(c.server_session_key().is_none());
    c.ping().await.unwrap();
    // Signed commands at v6 carry the session ID; NEW/IDS use the legacy shape.
    let q = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    assert_eq!(q.queue_mode, None);
}

#[tokio::test]
async fn version_range_is_negotiated_down() {
    let router = start(Quirks::default()).await;
    let o = SmpClientOptions {
        versions: VersionRange::new(9, 10).unwrap(),
        ..opts(&router)
    };
    let (c, _events) = SmpClient::connect(&router.address, &o).await.unwrap();
    assert_eq!(c.version(), 10);
    assert!(!c.block_encryption());
    let q = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    assert_eq!(q.queue_mode, Some(QueueMode::Messaging));
}

#[tokio::test]
async fn wrong_fingerprint_is_refused() {
    let router = start(Quirks::default()).await;
    let wrong = ServerAddress::new(
        Scheme::Smp,
        vec![TransportHost::Domain("router.invalid".into())],
        None,
        KeyHash::from([7u8; 32]),
    )
    .unwrap();
    let err = SmpClient::connect(&wrong, &opts(&router))
        .await
        .unwrap_err();
    assert!(err.is_identity_mismatch(), "{err:?}");
}

#[tokio::test]
async fn replies_are_routed_by_corr_id() {
    let router = start(Quirks {
        reverse_pongs: true,
    })
    .await;
    let (c, _events) = SmpClient::connect(&router.address, &opts(&router))
        .await
        .unwrap();
    // Both PINGs are answered together, in reverse order.
    let (a, b) = tokio::join!(c.ping(), c.ping());
    a.unwrap();
    b.unwrap();
    // A caller-chosen corrId is echoed back to that caller.
    let (x, y) = tokio::join!(
        c.request(Some(b"first".to_vec()), b"", &Command::Ping, None),
        c.request(Some(b"second".to_vec()), b"", &Command::Ping, None),
    );
    assert_eq!(x.unwrap(), Response::Pong);
    assert_eq!(y.unwrap(), Response::Pong);
}

#[tokio::test]
async fn queue_lifecycle_with_event_delivery() {
    let router = start(Quirks::default()).await;
    let (c, mut events) = SmpClient::connect(&router.address, &opts(&router))
        .await
        .unwrap();
    for alg in [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Ed448,
        KeyAlgorithm::X25519,
    ] {
        let q = c
            .create_queue(&CreateQueueOptions {
                auth_algorithm: alg,
                ..CreateQueueOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(q.queue_mode, Some(QueueMode::Messaging));
        // SUB answers SOK; the message comes as an event and decrypts.
        assert_eq!(c.subscribe(&q).await.unwrap(), None);
        let SmpEvent::Server {
            entity_id,
            response,
        } = next_event(&mut events).await
        else {
            panic!("expected a server event");
        };
        assert_eq!(entity_id, q.rcv_id);
        let (_, body) = q.decrypt_response(&response).unwrap();
        assert_eq!(
            body,
            RcvMsgBody::Message {
                ts: 1_767_225_600,
                notification: true,
                body: b"hello".to_vec()
            }
        );
        // GET's reply is a message.
        let m = c.get(&q).await.unwrap().unwrap();
        assert_eq!(q.decrypt(&m).unwrap(), RcvMsgBody::Quota { ts: 7 });
        c.send(&q.snd_id, None, false, b"hi").await.unwrap();
    }
}

#[tokio::test]
async fn errors_are_typed() {
    let router = start(Quirks::default()).await;
    let (c, _events) = SmpClient::connect(&router.address, &opts(&router))
        .await
        .unwrap();
    let err = c.send(b"unknown", None, false, b"x").await.unwrap_err();
    assert!(
        matches!(err, SmpClientError::Protocol(ErrorType::Auth)),
        "{err:?}"
    );
    // QUE needs the recipient's authorization.
    let err = c
        .request(None, b"q", &Command::Que, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SmpClientError::Protocol(ErrorType::Cmd(CommandError::NoAuth))
        ),
        "{err:?}"
    );
    // A reply with the right corrId but another entity is refused.
    let q = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    let auth = c.client_auth(&q.rcv_auth_key).unwrap();
    let err = c
        .request(None, &q.rcv_id, &Command::Ldel, Some(auth))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SmpClientError::UnexpectedResponse(_)),
        "{err:?}"
    );
    // A corrId that is still waiting cannot be reused.
    let o = SmpClientOptions {
        request_timeout: Duration::from_millis(300),
        ..opts(&router)
    };
    let (c, _events) = SmpClient::connect(&router.address, &o).await.unwrap();
    let q = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    let auth = c.client_auth(&q.rcv_auth_key).unwrap();
    let (a, b) = tokio::join!(
        c.request(Some(b"same".to_vec()), &q.rcv_id, &Command::Off, Some(auth)),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.request(Some(b"same".to_vec()), b"", &Command::Ping, None)
                .await
        }
    );
    // OFF is never answered by this router.
    assert!(
        matches!(a, Err(SmpClientError::Timeout(TimeoutKind::Request))),
        "{a:?}"
    );
    assert!(matches!(b, Err(SmpClientError::CorrIdInUse)), "{b:?}");
    // After the timeout the connection still works.
    c.ping().await.unwrap();
}

#[tokio::test]
async fn disconnect_fails_waiting_requests_and_reports() {
    let router = start(Quirks::default()).await;
    let (c, mut events) = SmpClient::connect(&router.address, &opts(&router))
        .await
        .unwrap();
    let q = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    // This router drops the connection on DEL.
    let err = c.delete(&q).await.unwrap_err();
    assert!(matches!(err, SmpClientError::Closed), "{err:?}");
    assert_eq!(next_event(&mut events).await, SmpEvent::Disconnected);
    assert!(c.is_closed());
    assert!(matches!(c.ping().await, Err(SmpClientError::Closed)));
}

#[tokio::test]
async fn private_routing_through_the_proxy() {
    let router = start(Quirks::default()).await;
    let (c, _events) = SmpClient::connect(&router.address, &opts(&router))
        .await
        .unwrap();
    let q = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    let relay = c.proxy_session(&router.address, None).await.unwrap();
    assert_eq!(relay.version, 17);
    c.proxy_send(&relay, &q.snd_id, None, true, b"via proxy")
        .await
        .unwrap();
    // The relay's own refusal comes back inside PRES.
    let err = c
        .proxy_send(&relay, b"unknown", None, true, b"x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, SmpClientError::Relay(ErrorType::Auth)),
        "{err:?}"
    );
    // The proxy's refusal is ERR PROXY.
    let pwd = crate::smp::command::BasicAuth::new(b"secret").unwrap();
    let err = c
        .proxy_session(&router.address, Some(pwd))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SmpClientError::Proxy(ProxyError::BasicAuth)),
        "{err:?}"
    );
    // A relay whose chain does not hash to the expected identity is refused.
    let other = ServerAddress::new(
        Scheme::Smp,
        vec![TransportHost::Domain("relay.invalid".into())],
        None,
        KeyHash::from([9u8; 32]),
    )
    .unwrap();
    let err = c.proxy_session(&other, None).await.unwrap_err();
    assert!(matches!(err, SmpClientError::RelayIdentity(_)), "{err:?}");
}

#[tokio::test]
async fn reconnects_and_resubscribes() {
    let router = start(Quirks::default()).await;
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    let (rc, mut events) =
        ReconnectingSmpClient::connect(router.address.clone(), opts(&router), backoff)
            .await
            .unwrap();
    let c = rc.client().unwrap();
    let q = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    assert_eq!(rc.subscribe(&q).await.unwrap(), None);
    assert!(matches!(
        next_event(&mut events).await,
        SmpEvent::Server { .. }
    ));
    assert_eq!(rc.subscription_count(), 1);
    // Break the connection (this router drops it on DEL of any queue).
    let other = c
        .create_queue(&CreateQueueOptions::default())
        .await
        .unwrap();
    let _ = c.delete(&other).await;
    assert_eq!(next_event(&mut events).await, SmpEvent::Disconnected);
    // The new connection re-sends SUB; the router answers with the
    // waiting message, which arrives on the same receiver.
    assert_eq!(next_event(&mut events).await, SmpEvent::Reconnected);
    let e = next_event(&mut events).await;
    let SmpEvent::Server {
        entity_id,
        response,
    } = e
    else {
        panic!("expected the message after resubscribing, got {e:?}");
    };
    assert_eq!(entity_id, q.rcv_id);
    assert!(q.decrypt_response(&response).is_ok());
    let c2 = rc.client().unwrap();
    assert!(!c2.same_connection(&c));
    c2.ping().await.unwrap();
}
