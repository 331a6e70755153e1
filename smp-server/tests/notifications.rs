//! Push notifications as the official notification server uses them:
//! NKEY/NID, NSUB by the notifier key, NMSG for messages sent with the
//! notification flag (sealed for the recipient), NDEL, and notifier
//! credentials in a v17 NEW.

mod support;

use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::secretbox::CbNonce;
use smp_core::smp::command::{NewNtfCreds, NewQueue, SubscriptionMode};
use smp_core::smp::message::decrypt_ntf_meta;
use smp_core::smp::{Command, ErrorType, QueueReqData, Response};
use support::*;

struct NtfKeys {
    auth: PrivateKey,
    dh: PrivateKey,
}

impl NtfKeys {
    fn new() -> Self {
        Self {
            auth: ed25519(),
            dh: PrivateKey::generate(KeyAlgorithm::X25519),
        }
    }
    fn creds(&self) -> NewNtfCreds {
        NewNtfCreds {
            auth_key: self.auth.public_key(),
            dh_key: self.dh.public_key(),
        }
    }
}

fn send_flagged(body: &[u8]) -> Command {
    Command::Send {
        notification: true,
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn nkey_nsub_nmsg_ndel() {
    let env = Env::new();
    let srv = env.start().await;
    let mut rcv = env.client(&srv, 18).await;
    let q = rcv.new_queue().await;
    let keys = NtfKeys::new();
    let Ok(Response::Nid {
        notifier_id,
        server_ntf_dh_key,
    }) = rcv.rcv(&q, &Command::Nkey(keys.creds())).await
    else {
        panic!("NKEY answers NID")
    };
    let secret = keys.dh.dh(&server_ntf_dh_key).unwrap();
    // The push server subscribes with the notifier key (a wrong key is AUTH).
    let mut push = env.client(&srv, 18).await;
    let wrong = ed25519();
    assert_eq!(
        push.cmd(&notifier_id, &Command::Nsub, Some(&wrong)).await,
        Err(ErrorType::Auth)
    );
    assert_eq!(
        push.cmd(&notifier_id, &Command::Nsub, Some(&keys.auth))
            .await,
        Ok(Response::Sok(None))
    );
    // A message with the flag: NMSG with its ID and time; without: nothing.
    let mut snd = env.client(&srv, 18).await;
    assert_eq!(
        snd.cmd(&q.ids.snd_id, &send_flagged(b"ping me"), None)
            .await,
        Ok(Response::Ok)
    );
    let ev = push.recv().await;
    assert_eq!(ev[0].entity_id, notifier_id);
    let Ok(Response::Nmsg { nonce, enc_meta }) = &ev[0].response else {
        panic!("{:?}", ev[0].response)
    };
    let (msg_id, ts) = decrypt_ntf_meta(&secret, &CbNonce(*nonce), enc_meta).unwrap();
    let r = rcv.rcv(&q, &Command::Get).await.unwrap();
    let (id, m) = open_msg(&q, &r);
    assert_eq!(msg_id, id);
    let smp_core::smp::message::RcvMsgBody::Message { ts: msg_ts, .. } = m else {
        panic!()
    };
    assert_eq!(ts, msg_ts);
    assert_eq!(rcv.rcv(&q, &Command::Ack(id)).await, Ok(Response::Ok));
    assert_eq!(snd.snd(&q, b"quiet").await, Ok(Response::Ok));
    assert_eq!(
        push.cmd(b"", &Command::Ping, None).await,
        Ok(Response::Pong),
        "no NMSG came"
    );
    // NDEL: the push server hears the notifier is gone; NSUB is then AUTH.
    assert_eq!(rcv.rcv(&q, &Command::Ndel).await, Ok(Response::Ok));
    let ev = push.recv().await;
    assert_eq!(ev[0].response, Ok(Response::Deld));
    assert_eq!(
        push.cmd(&notifier_id, &Command::Nsub, Some(&keys.auth))
            .await,
        Err(ErrorType::Auth)
    );
    srv.stop().await;
}

#[tokio::test]
async fn notifications_wait_for_the_subscriber_and_notifiers_survive_a_restart() {
    let env = Env::new();
    let srv = smp_server::app::start(env.persistent_settings())
        .await
        .unwrap();
    let mut c = env.client(&srv, 17).await;
    // Notifier credentials right in NEW (v17).
    let rk = ed25519();
    let dh = PrivateKey::generate(KeyAlgorithm::X25519);
    let keys = NtfKeys::new();
    let new = Command::New(NewQueue {
        rcv_auth_key: rk.public_key(),
        rcv_dh_key: dh.public_key(),
        basic_auth: None,
        sub_mode: SubscriptionMode::OnlyCreate,
        queue_req_data: Some(QueueReqData::Messaging(None)),
        ntf_creds: Some(keys.creds()),
    });
    let Ok(Response::Ids(ids)) = c.cmd(b"", &new, Some(&rk)).await else {
        panic!("IDS")
    };
    let ntf = ids.ntf_creds.expect("IDS carries the notifier");
    // Sent before anyone subscribes: delivered right after NSUB.
    assert_eq!(
        c.cmd(&ids.snd_id, &send_flagged(b"early"), None).await,
        Ok(Response::Ok)
    );
    let mut first = env.client(&srv, 18).await;
    let t = first.encode(&corr(), &ntf.notifier_id, &Command::Nsub, Some(&keys.auth));
    first.send(&[t]).await;
    // SOK, then the waiting NMSG (possibly packed into the same block).
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(first.recv().await.into_iter().map(|r| r.response.unwrap()));
    }
    assert_eq!(got[0], Response::Sok(None));
    assert!(matches!(got[1], Response::Nmsg { .. }), "{:?}", got[1]);
    drop(first);
    // One more waits while nobody subscribes: saved at stop in the
    // reference's `smp-server-ntfs.log` format and sent after the restart.
    assert_eq!(
        c.cmd(&ids.snd_id, &send_flagged(b"saved"), None).await,
        Ok(Response::Ok)
    );
    drop(c);
    srv.stop().await;
    let saved = std::fs::read_to_string(env.dir.path().join("smp-server-ntfs.log")).unwrap();
    assert_eq!(saved.lines().count(), 1);
    let nid_b64 = smp_core::encoding::string::b64_encode(&ntf.notifier_id);
    assert!(saved.starts_with(&format!("v1 {nid_b64} ")), "{saved}");
    // The notifier survives a restart (store log), and so does the waiting NMSG.
    let srv = smp_server::app::start(env.persistent_settings())
        .await
        .unwrap();
    let mut push = env.client(&srv, 18).await;
    let t = push.encode(&corr(), &ntf.notifier_id, &Command::Nsub, Some(&keys.auth));
    push.send(&[t]).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(push.recv().await.into_iter().map(|r| r.response.unwrap()));
    }
    assert_eq!(got[0], Response::Sok(None));
    assert!(matches!(got[1], Response::Nmsg { .. }), "{:?}", got[1]);
    let mut c = env.client(&srv, 18).await;
    assert_eq!(
        c.cmd(&ids.snd_id, &send_flagged(b"late"), None).await,
        Ok(Response::Ok)
    );
    let ev = push.recv().await;
    assert!(matches!(ev[0].response, Ok(Response::Nmsg { .. })));
    srv.stop().await;
}

#[tokio::test]
async fn idle_connections_close_unless_they_subscribe_something() {
    let env = Env::new();
    let mut s = env.settings();
    s.inactive_ttl = Some(std::time::Duration::from_millis(300));
    let srv = smp_server::app::start(s).await.unwrap();
    let mut rcv = env.client(&srv, 18).await;
    let q = rcv.new_queue().await;
    let keys = NtfKeys::new();
    let Ok(Response::Nid { notifier_id, .. }) = rcv.rcv(&q, &Command::Nkey(keys.creds())).await
    else {
        panic!("NID")
    };
    assert_eq!(rcv.rcv(&q, &Command::Sub).await, Ok(Response::Sok(None)));
    let mut push = env.client(&srv, 18).await;
    assert_eq!(
        push.cmd(&notifier_id, &Command::Nsub, Some(&keys.auth))
            .await,
        Ok(Response::Sok(None))
    );
    let mut idle = env.client(&srv, 18).await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    // Nothing subscribed: closed. A queue or a notifier subscription: kept.
    let t = idle.encode(&corr(), b"", &Command::Ping, None);
    let _ = idle
        .writer
        .write_content(&smp_core::smp::transmission::encode_batch(&[t]).unwrap())
        .await;
    let closed = tokio::time::timeout(PATIENCE, idle.reader.read_content())
        .await
        .unwrap();
    assert!(
        !matches!(closed, Ok(Some(Ok(_)))),
        "an idle connection stayed open"
    );
    assert_eq!(rcv.cmd(b"", &Command::Ping, None).await, Ok(Response::Pong));
    assert_eq!(
        push.cmd(b"", &Command::Ping, None).await,
        Ok(Response::Pong)
    );
    srv.stop().await;
}
