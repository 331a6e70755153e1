//! Sessions at every version band the router must serve (smp.md §10.3):
//! handshake shapes, session IDs on the wire, NEW/IDS tails, size limits,
//! block encryption and the version-shaped events and errors.

mod support;

use smp_core::encoding::pad;
use smp_core::smp::command::SubscriptionMode;
use smp_core::smp::error::{BlockingInfo, BlockingReason, ClientNotice, CommandError};
use smp_core::smp::store_log::EntityStatus;
use smp_core::smp::version::max_message_length;
use smp_core::smp::{Command, ErrorType, QueueMode, Response};
use support::*;

#[tokio::test]
async fn no_alpn_offers_only_v6_without_a_key() {
    let env = Env::new();
    let srv = env.start().await;
    let mut h = Hello::v(6);
    h.alpn = false;
    let c = RawClient::connect(srv.addr(), env.key_hash(), h)
        .await
        .unwrap();
    let hello = &c.server_hello;
    assert_eq!((hello.versions.min(), hello.versions.max()), (6, 6));
    assert!(hello.auth_pub_key.is_none());
    // Exactly range + short(sid): 37 bytes of content.
    assert_eq!(hello.encode().unwrap().len(), 37);
    drop(c);
    let mut h7 = Hello::v(7);
    h7.alpn = false;
    assert!(
        RawClient::connect(srv.addr(), env.key_hash(), h7)
            .await
            .is_none(),
        "v7 is refused without ALPN"
    );
    srv.stop().await;
}

#[tokio::test]
async fn alpn_offers_6_to_18_and_refuses_19_and_a_wrong_key_hash() {
    let env = Env::new();
    let srv = env.start().await;
    let c = env.client(&srv, 18).await;
    assert_eq!(
        (c.server_hello.versions.min(), c.server_hello.versions.max()),
        (6, 18)
    );
    assert!(c.block_encryption, "v18 with a key encrypts blocks");
    assert!(
        RawClient::connect(srv.addr(), env.key_hash(), Hello::v(19))
            .await
            .is_none()
    );
    assert!(
        RawClient::connect(srv.addr(), env.key_hash(), Hello::v(5))
            .await
            .is_none()
    );
    // Right TLS pin, wrong key hash in the hello: closed without a word.
    let mut h = Hello::v(18);
    h.wrong_key_hash = true;
    assert!(
        RawClient::connect(srv.addr(), env.key_hash(), h)
            .await
            .is_none()
    );
    srv.stop().await;
}

/// The full queue life at a version: NEW (legacy or mode tail), KEY/SKEY,
/// SEND, SUB + MSG, ACK, DEL.
async fn lifecycle(v: u16) {
    let env = Env::new();
    let srv = env.start().await;
    let mut rcv = env.client(&srv, v).await;
    let mut snd = env.client(&srv, v).await;
    let q = rcv.new_queue().await;
    let expect_mode = if v >= 9 {
        Some(QueueMode::Messaging)
    } else {
        None
    };
    assert_eq!(q.ids.queue_mode, expect_mode, "IDS tail at v{v}");
    let snd_key = ed25519();
    if v >= 9 {
        // The sender secures the queue itself.
        let r = snd
            .cmd(
                &q.ids.snd_id,
                &Command::Skey(snd_key.public_key()),
                Some(&snd_key),
            )
            .await;
        assert_eq!(r, Ok(Response::Ok));
    } else {
        // Mode-less queue: SKEY is refused, the recipient's KEY works.
        let r = snd
            .cmd(
                &q.ids.snd_id,
                &Command::Skey(snd_key.public_key()),
                Some(&snd_key),
            )
            .await;
        assert_eq!(r, Err(ErrorType::Auth));
        let r = rcv
            .cmd(
                &q.ids.rcv_id,
                &Command::Key(snd_key.public_key()),
                Some(&q.rcv_key),
            )
            .await;
        assert_eq!(r, Ok(Response::Ok));
    }
    // Unsigned SEND to a secured queue is AUTH; signed is OK.
    assert_eq!(snd.snd(&q, b"x").await, Err(ErrorType::Auth));
    assert_eq!(
        snd.cmd(&q.ids.snd_id, &send_cmd(b"hello"), Some(&snd_key))
            .await,
        Ok(Response::Ok)
    );
    // SUB answers OK/SOK with the waiting MSG in the same block.
    let c = corr();
    let t = rcv.encode(&c, &q.ids.rcv_id, &Command::Sub, Some(&q.rcv_key));
    rcv.send(&[t]).await;
    let rs = rcv.recv().await;
    assert_eq!(rs.len(), 2, "OK and MSG in one block");
    assert_eq!(rs[0].corr_id, c);
    let sub_ok = if v >= 16 {
        Response::Sok(None)
    } else {
        Response::Ok
    };
    assert_eq!(rs[0].response, Ok(sub_ok));
    assert!(rs[1].is_event());
    let (id, m) = open_msg(&q, rs[1].response.as_ref().unwrap());
    assert_eq!(body_of(&m), b"hello");
    // ACK with nothing more: OK; a second ACK: NO_MSG.
    assert_eq!(
        rcv.cmd(&q.ids.rcv_id, &Command::Ack(id.clone()), Some(&q.rcv_key))
            .await,
        Ok(Response::Ok)
    );
    assert_eq!(rcv.rcv(&q, &Command::Ack(id)).await, Err(ErrorType::NoMsg));
    // A new message is pushed as an event.
    assert_eq!(
        snd.cmd(&q.ids.snd_id, &send_cmd(b"second"), Some(&snd_key))
            .await,
        Ok(Response::Ok)
    );
    let ev = rcv.recv().await;
    assert_eq!(ev.len(), 1);
    let (_, m) = open_msg(&q, ev[0].response.as_ref().unwrap());
    assert_eq!(body_of(&m), b"second");
    // Size limit of the version.
    let max = max_message_length(v);
    let big = vec![7u8; max + 1];
    assert_eq!(
        snd.cmd(&q.ids.snd_id, &send_cmd(&big), Some(&snd_key))
            .await,
        Err(ErrorType::LargeMsg)
    );
    assert_eq!(
        snd.cmd(&q.ids.snd_id, &send_cmd(&big[..max]), Some(&snd_key))
            .await,
        Ok(Response::Ok)
    );
    assert_eq!(rcv.rcv(&q, &Command::Del).await, Ok(Response::Ok));
    assert_eq!(
        snd.cmd(&q.ids.snd_id, &send_cmd(b"gone"), Some(&snd_key))
            .await,
        Err(ErrorType::Auth)
    );
    srv.stop().await;
}

#[tokio::test]
async fn lifecycle_v6() {
    lifecycle(6).await;
}
#[tokio::test]
async fn lifecycle_v7() {
    lifecycle(7).await;
}
#[tokio::test]
async fn lifecycle_v8() {
    lifecycle(8).await;
}
#[tokio::test]
async fn lifecycle_v11() {
    lifecycle(11).await;
}
#[tokio::test]
async fn lifecycle_v14() {
    lifecycle(14).await;
}
#[tokio::test]
async fn lifecycle_v17() {
    lifecycle(17).await;
}
#[tokio::test]
async fn lifecycle_v18() {
    lifecycle(18).await;
}

#[tokio::test]
async fn v6_carries_the_session_id_both_ways_and_a_wrong_one_is_refused() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 6).await;
    let q = c.new_queue().await;
    // A response on the wire: auth 00, then 20 <sid>, then corrId.
    let cr = corr();
    let t = c.encode(&cr, &q.ids.rcv_id, &Command::Sub, Some(&q.rcv_key));
    c.send(&[t]).await;
    let rs = c.recv().await;
    assert_eq!(rs[0].response, Ok(Response::Ok));
    // Same SUB with another session id: ERR SESSION, corrId kept, entity empty.
    let mut other = c.session_id.clone();
    other[0] ^= 0xff;
    let real = std::mem::replace(&mut c.session_id, other);
    let cr = corr();
    let t = c.encode(&cr, &q.ids.rcv_id, &Command::Sub, Some(&q.rcv_key));
    c.session_id = real;
    c.send(&[t]).await;
    let rs = c.recv().await;
    assert_eq!(rs[0].corr_id, cr);
    assert!(rs[0].entity_id.is_empty());
    assert_eq!(rs[0].response, Ok(Response::Err(ErrorType::Session)));
    srv.stop().await;
}

#[tokio::test]
async fn v6_legacy_new_with_password_and_short_corr_ids() {
    let env = Env::new();
    let mut s = env.settings();
    s.create_password = Some(zeroize::Zeroizing::new(b"secret".to_vec()));
    let srv = smp_server::app::start(s).await.unwrap();
    let mut c = env.client(&srv, 6).await;
    let none = c
        .new_queue_with(SubscriptionMode::Subscribe, None, None)
        .await;
    assert_eq!(none.err(), Some(ErrorType::Auth));
    let wrong = c
        .new_queue_with(SubscriptionMode::Subscribe, None, Some(b"wrong"))
        .await;
    assert_eq!(wrong.err(), Some(ErrorType::Auth));
    let q = c
        .new_queue_with(SubscriptionMode::Subscribe, None, Some(b"secret"))
        .await
        .unwrap();
    assert_eq!(q.ids.queue_mode, None);
    // SimpleGo's one-byte corrIds are fine.
    let t = c.encode(b"1", &q.ids.rcv_id, &Command::Sub, Some(&q.rcv_key));
    c.send(&[t]).await;
    let rs = c.recv().await;
    assert_eq!(rs[0].corr_id, b"1");
    assert_eq!(rs[0].response, Ok(Response::Ok));
    srv.stop().await;
}

#[tokio::test]
async fn v7_hello_without_a_key_and_x25519_authenticators() {
    let env = Env::new();
    let srv = env.start().await;
    let mut h = Hello::v(7);
    h.send_key = false;
    let mut c = RawClient::connect(srv.addr(), env.key_hash(), h)
        .await
        .unwrap();
    assert!(!c.block_encryption);
    // A queue whose recipient key is X25519: commands carry an 80-byte
    // authenticator made with the server's per-connection key.
    let rk =
        smp_core::crypto::keys::PrivateKey::generate(smp_core::crypto::keys::KeyAlgorithm::X25519);
    let dh =
        smp_core::crypto::keys::PrivateKey::generate(smp_core::crypto::keys::KeyAlgorithm::X25519);
    let cmd = Command::New(smp_core::smp::command::NewQueue {
        rcv_auth_key: rk.public_key(),
        rcv_dh_key: dh.public_key(),
        basic_auth: None,
        sub_mode: SubscriptionMode::OnlyCreate,
        queue_req_data: None,
        ntf_creds: None,
    });
    let Ok(Response::Ids(ids)) = c.cmd(b"", &cmd, Some(&rk)).await else {
        panic!("NEW with an authenticator")
    };
    assert_eq!(
        c.cmd(&ids.rcv_id, &Command::Sub, Some(&rk)).await,
        Ok(Response::Ok)
    );
    // A signature by another key is AUTH, like an unknown queue.
    let other = ed25519();
    assert_eq!(
        c.cmd(&ids.rcv_id, &Command::Get, Some(&other)).await,
        Err(ErrorType::Auth)
    );
    assert_eq!(
        c.cmd(&[9u8; 24], &Command::Get, Some(&rk)).await,
        Err(ErrorType::Auth)
    );
    srv.stop().await;
}

#[tokio::test]
async fn v9_contact_queue_refuses_skey() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 9).await;
    let q = c.new_contact_queue().await;
    assert_eq!(q.ids.queue_mode, Some(QueueMode::Contact));
    let k = ed25519();
    assert_eq!(
        c.cmd(&q.ids.snd_id, &Command::Skey(k.public_key()), Some(&k))
            .await,
        Err(ErrorType::Auth)
    );
    srv.stop().await;
}

async fn takeover_event(v: u16) -> Response {
    let env = Env::new();
    let srv = env.start().await;
    let mut a = env.client(&srv, v).await;
    let mut b = env.client(&srv, v).await;
    let q = a.new_queue().await;
    assert!(a.rcv(&q, &Command::Sub).await.is_ok());
    // B deletes the queue (same recipient key): A, the subscriber, is told.
    assert_eq!(b.rcv(&q, &Command::Del).await, Ok(Response::Ok));
    let ev = a.recv().await;
    assert_eq!(ev[0].entity_id, q.ids.rcv_id);
    srv.stop().await;
    ev[0].response.clone().unwrap()
}

#[tokio::test]
async fn deletion_event_is_end_below_v10_and_deld_from_v10() {
    assert_eq!(takeover_event(9).await, Response::End);
    assert_eq!(takeover_event(10).await, Response::Deld);
}

#[tokio::test]
async fn second_subscriber_takes_over_and_the_first_gets_end() {
    let env = Env::new();
    let srv = env.start().await;
    let mut a = env.client(&srv, 18).await;
    let mut b = env.client(&srv, 18).await;
    let q = a.new_queue().await;
    assert!(a.rcv(&q, &Command::Sub).await.is_ok());
    assert_eq!(b.rcv(&q, &Command::Sub).await, Ok(Response::Sok(None)));
    let ev = a.recv().await;
    assert_eq!(ev[0].response, Ok(Response::End));
    srv.stop().await;
}

async fn blocked_send(v: u16) -> ErrorType {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, v).await;
    let q = c.new_queue().await;
    let info = BlockingInfo {
        reason: BlockingReason::Spam,
        notice: Some(ClientNotice { ttl: Some(86400) }),
    };
    srv.router
        .lock()
        .store
        .get_mut(&q.ids.rcv_id)
        .unwrap()
        .rec
        .status = EntityStatus::Blocked(info);
    let r = c.snd(&q, b"x").await;
    srv.stop().await;
    r.unwrap_err()
}

#[tokio::test]
async fn blocked_is_auth_below_12_without_notice_below_18() {
    assert_eq!(blocked_send(11).await, ErrorType::Auth);
    let at12 = blocked_send(12).await;
    assert_eq!(
        at12,
        ErrorType::Blocked(BlockingInfo {
            reason: BlockingReason::Spam,
            notice: None
        })
    );
    let at18 = blocked_send(18).await;
    assert!(matches!(
        at18,
        ErrorType::Blocked(BlockingInfo {
            notice: Some(_),
            ..
        })
    ));
}

#[tokio::test]
async fn v14_hello_needs_the_proxy_byte_and_a_proxy_gets_plain_blocks() {
    let env = Env::new();
    let srv = env.start().await;
    let mut h = Hello::v(14);
    h.proxy = true;
    let mut c = RawClient::connect(srv.addr(), env.key_hash(), h)
        .await
        .unwrap();
    assert!(!c.block_encryption);
    assert!(c.cmd(b"", &Command::Ping, None).await.is_ok());
    let c2 = env.client(&srv, 14).await;
    assert!(c2.block_encryption);
    srv.stop().await;
}

#[tokio::test]
async fn bad_blocks_get_err_block_and_the_session_continues() {
    let env = Env::new();
    let srv = env.start().await;
    for v in [7u16, 18] {
        let mut c = env.client(&srv, v).await;
        // A batch with a count of 2 but one item.
        c.writer.write_content(&[2, 0, 1, b'x']).await.unwrap();
        let rs = c.recv().await;
        assert!(rs[0].corr_id.is_empty() && rs[0].entity_id.is_empty());
        assert_eq!(rs[0].response, Ok(Response::Err(ErrorType::Block)));
        // Unknown command and a bad authorization length.
        assert_eq!(c.cmd(b"", &Command::Ping, None).await, Ok(Response::Pong));
        let t = c.encode(&corr(), b"", &Command::Ping, None);
        let mut bad = t.clone();
        let tail = b"NOPE".to_vec();
        let n = bad.len();
        bad.truncate(n - 4);
        bad.extend(tail);
        c.send(&[bad]).await;
        let rs = c.recv().await;
        assert_eq!(
            rs[0].response,
            Ok(Response::Err(ErrorType::Cmd(CommandError::Unknown)))
        );
    }
    let _ = pad::BLOCK_SIZE;
    srv.stop().await;
}
