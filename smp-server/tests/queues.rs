//! Queue semantics a client relies on (smp.md §7): GET and ACK, the
//! wildcard ACK, quota with its marker, expiry, OFF, basic auth for NEW,
//! short-link data, and the rules that keep SUB and GET apart.

mod support;

use std::time::Duration;

use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::smp::command::{QueueLinkData, SubscriptionMode, sender_id_for_corr_id};
use smp_core::smp::error::CommandError;
use smp_core::smp::message::RcvMsgBody;
use smp_core::smp::{Command, ErrorType, QueueReqData, Response};
use support::*;

#[tokio::test]
async fn get_ack_and_the_wildcard_ack() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    assert_eq!(c.rcv(&q, &Command::Get).await, Ok(Response::Ok));
    for b in [b"one", b"two"] {
        assert_eq!(c.snd(&q, b).await, Ok(Response::Ok));
    }
    let r = c
        .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
        .await
        .unwrap();
    let (id1, m) = open_msg(&q, &r);
    assert_eq!(body_of(&m), b"one");
    // GET again without ACK: the same message.
    let r = c
        .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
        .await
        .unwrap();
    assert_eq!(open_msg(&q, &r).0, id1);
    // SUB on a queue read with GET on this connection is refused.
    assert_eq!(
        c.rcv(&q, &Command::Sub).await,
        Err(ErrorType::Cmd(CommandError::Prohibited))
    );
    // ACK with a wrong ID: NO_MSG; the right one: OK (GET mode).
    assert_eq!(
        c.rcv(&q, &Command::Ack(vec![1; 24])).await,
        Err(ErrorType::NoMsg)
    );
    assert_eq!(c.rcv(&q, &Command::Ack(id1)).await, Ok(Response::Ok));
    let r = c
        .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
        .await
        .unwrap();
    let (id2, m) = open_msg(&q, &r);
    assert_eq!(body_of(&m), b"two");

    // SUB mode on another connection: an empty ACK clears the delivered
    // mark but deletes nothing, so the same message comes again.
    let mut s = env.client(&srv, 7).await;
    let t = s.encode(&corr(), &q.ids.rcv_id, &Command::Sub, Some(&q.rcv_key));
    s.send(&[t]).await;
    let rs = s.recv().await;
    assert_eq!(rs.len(), 2);
    assert_eq!(open_msg(&q, rs[1].response.as_ref().unwrap()).0, id2);
    let again = s
        .cmd(&q.ids.rcv_id, &Command::Ack(vec![]), Some(&q.rcv_key))
        .await
        .unwrap();
    assert_eq!(open_msg(&q, &again).0, id2, "wildcard ACK re-delivers");
    let done = s
        .cmd(&q.ids.rcv_id, &Command::Ack(id2), Some(&q.rcv_key))
        .await;
    assert_eq!(done, Ok(Response::Ok));
    assert_eq!(
        s.rcv(&q, &Command::Ack(vec![])).await,
        Err(ErrorType::NoMsg)
    );
    srv.stop().await;
}

#[tokio::test]
async fn quota_marker_then_reopens_when_drained() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    for i in 0..128u32 {
        let r = c
            .cmd(&q.ids.snd_id, &send_cmd(&i.to_be_bytes()), None)
            .await;
        assert_eq!(r, Ok(Response::Ok), "message {i}");
    }
    assert_eq!(c.snd(&q, b"full").await, Err(ErrorType::Quota));
    assert_eq!(c.snd(&q, b"full").await, Err(ErrorType::Quota));
    // Drain: 128 messages, then the QUOTA marker, then empty.
    let mut seen = 0;
    loop {
        let r = c
            .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
            .await
            .unwrap();
        let Response::Msg { .. } = r else { break };
        let (id, m) = open_msg(&q, &r);
        if let RcvMsgBody::Quota { .. } = m {
            assert_eq!(seen, 128);
        } else {
            assert_eq!(body_of(&m), (seen as u32).to_be_bytes());
            seen += 1;
        }
        assert_eq!(c.rcv(&q, &Command::Ack(id)).await, Ok(Response::Ok));
    }
    assert_eq!(seen, 128);
    assert_eq!(c.snd(&q, b"again").await, Ok(Response::Ok));
    srv.stop().await;
}

#[tokio::test]
async fn messages_expire() {
    let env = Env::new();
    let mut s = env.settings();
    s.msg_ttl = Some(Duration::from_secs(1));
    s.expire_interval = Duration::from_millis(200);
    let srv = smp_server::app::start(s).await.unwrap();
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    assert_eq!(c.snd(&q, b"old").await, Ok(Response::Ok));
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(c.rcv(&q, &Command::Get).await, Ok(Response::Ok));
    srv.stop().await;
}

#[tokio::test]
async fn off_stops_senders_but_not_the_recipient() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    assert_eq!(c.snd(&q, b"before").await, Ok(Response::Ok));
    assert_eq!(c.rcv(&q, &Command::Off).await, Ok(Response::Ok));
    assert_eq!(c.snd(&q, b"after").await, Err(ErrorType::Auth));
    let r = c
        .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
        .await
        .unwrap();
    assert_eq!(body_of(&open_msg(&q, &r).1), b"before");
    srv.stop().await;
}

#[tokio::test]
async fn basic_auth_and_new_queues_off() {
    let env = Env::new();
    let mut s = env.settings();
    s.create_password = Some(zeroize::Zeroizing::new(b"pw".to_vec()));
    let srv = smp_server::app::start(s).await.unwrap();
    let mut c = env.client(&srv, 18).await;
    let req = || Some(QueueReqData::Messaging(None));
    assert_eq!(
        c.new_queue_with(SubscriptionMode::Subscribe, req(), None)
            .await
            .err(),
        Some(ErrorType::Auth)
    );
    assert_eq!(
        c.new_queue_with(SubscriptionMode::Subscribe, req(), Some(b"px"))
            .await
            .err(),
        Some(ErrorType::Auth)
    );
    let q = c
        .new_queue_with(SubscriptionMode::Subscribe, req(), Some(b"pw"))
        .await
        .unwrap();
    // Sending never needs the password.
    let mut other = env.client(&srv, 18).await;
    assert_eq!(other.snd(&q, b"hi").await, Ok(Response::Ok));
    // NEW subscribed the creating connection: the message is pushed.
    let ev = c.recv().await;
    assert_eq!(
        body_of(&open_msg(&q, ev[0].response.as_ref().unwrap()).1),
        b"hi"
    );
    srv.stop().await;

    let mut s = env.settings();
    s.allow_new_queues = false;
    let srv = smp_server::app::start(s).await.unwrap();
    let mut c = env.client(&srv, 18).await;
    assert_eq!(
        c.new_queue_with(SubscriptionMode::Subscribe, req(), None)
            .await
            .err(),
        Some(ErrorType::Auth)
    );
    srv.stop().await;
}

#[tokio::test]
async fn short_link_data_with_the_sender_id_rule() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 18).await;
    let rk = ed25519();
    let dh = PrivateKey::generate(KeyAlgorithm::X25519);
    let data = QueueLinkData {
        fixed: vec![1; 40],
        user: vec![2; 60],
    };
    let new = |sid: Vec<u8>| {
        Command::New(smp_core::smp::command::NewQueue {
            rcv_auth_key: rk.public_key(),
            rcv_dh_key: dh.public_key(),
            basic_auth: None,
            sub_mode: SubscriptionMode::OnlyCreate,
            queue_req_data: Some(QueueReqData::Messaging(Some((sid, data.clone())))),
            ntf_creds: None,
        })
    };
    // A sender ID that is not SHA3-384(corrId)[..24] is refused.
    assert_eq!(
        c.cmd(b"", &new(vec![5; 24]), Some(&rk)).await,
        Err(ErrorType::Cmd(CommandError::Prohibited))
    );
    let cr = corr();
    let sid = sender_id_for_corr_id(&cr).to_vec();
    let t = c.encode(&cr, b"", &new(sid.clone()), Some(&rk));
    c.send(&[t]).await;
    let rs = c.recv().await;
    let Ok(Response::Ids(ids)) = &rs[0].response else {
        panic!("{:?}", rs[0].response)
    };
    assert_eq!(ids.snd_id, sid);
    let link_id = ids.link_id.clone().expect("a link ID for link data");
    // LKEY by the sender: secures and returns the data.
    let sk = ed25519();
    let r = c
        .cmd(&link_id, &Command::Lkey(sk.public_key()), Some(&sk))
        .await;
    assert_eq!(
        r,
        Ok(Response::Lnk {
            sender_id: sid.clone(),
            data: data.clone()
        })
    );
    // LGET works only for contact queues.
    assert_eq!(
        c.cmd(&link_id, &Command::Lget, None).await,
        Err(ErrorType::Auth)
    );
    // The first SEND to a secured one-time queue drops the link.
    assert_eq!(
        c.cmd(&sid, &send_cmd(b"hi"), Some(&sk)).await,
        Ok(Response::Ok)
    );
    assert_eq!(
        c.cmd(&link_id, &Command::Lkey(sk.public_key()), Some(&sk))
            .await,
        Err(ErrorType::Auth)
    );
    srv.stop().await;
}

#[tokio::test]
async fn contact_queue_links_via_lset_and_lget() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 18).await;
    let q = c.new_contact_queue().await;
    let link_id = vec![3u8; 24];
    let data = QueueLinkData {
        fixed: vec![4; 10],
        user: vec![5; 10],
    };
    let lset = Command::Lset {
        link_id: link_id.clone(),
        data: data.clone(),
    };
    assert_eq!(
        c.cmd(&q.ids.rcv_id, &lset, Some(&q.rcv_key)).await,
        Ok(Response::Ok)
    );
    assert_eq!(
        c.cmd(&link_id, &Command::Lget, None).await,
        Ok(Response::Lnk {
            sender_id: q.ids.snd_id.clone(),
            data: data.clone()
        })
    );
    // Changing the fixed part is refused; the user part may change.
    let changed = Command::Lset {
        link_id: link_id.clone(),
        data: QueueLinkData {
            fixed: vec![9; 10],
            user: vec![5; 10],
        },
    };
    assert_eq!(
        c.cmd(&q.ids.rcv_id, &changed, Some(&q.rcv_key)).await,
        Err(ErrorType::Auth)
    );
    assert_eq!(c.rcv(&q, &Command::Ldel).await, Ok(Response::Ok));
    assert_eq!(
        c.cmd(&link_id, &Command::Lget, None).await,
        Err(ErrorType::Auth)
    );
    srv.stop().await;
}

#[tokio::test]
async fn service_subscriptions_answer_a_clean_error() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    // No service certificates here: SUBS/NSUBS cannot be served.
    for cmd in [Command::Subs, Command::Nsubs] {
        assert_eq!(
            c.rcv(&q, &cmd).await,
            Err(ErrorType::Cmd(CommandError::Prohibited))
        );
    }
    srv.stop().await;
}
