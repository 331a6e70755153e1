//! Malformed input gets the reference's error or a closed connection, never
//! a panic, and other clients keep being served.

mod support;

use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::random_bytes;
use smp_core::smp::transmission::encode_batch;
use smp_core::smp::{Command, ErrorType, Response};
use support::*;

fn random_vec(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    random_bytes(&mut v);
    v
}

#[tokio::test]
async fn random_blocks_and_transmissions() {
    let env = Env::new();
    let srv = env.start().await;
    let mut bystander = env.client(&srv, 18).await;
    let q = bystander.new_queue().await;
    for v in [6u16, 7, 18] {
        let mut c = env.client(&srv, v).await;
        for i in 0..60 {
            // Whole random blocks (plain sessions) or a corrupted encrypted
            // block whose chain step both sides take (encrypted sessions).
            let block = if c.block_encryption {
                let mut b = c.writer.seal(&[1, 0, 0]).unwrap();
                b[100 + i] ^= 0x55;
                b
            } else {
                random_vec(16384)
            };
            c.writer.write_raw(&block).await.unwrap();
            let rs = c.recv().await;
            assert_eq!(
                rs[0].response,
                Ok(Response::Err(ErrorType::Block)),
                "v{v} block {i}"
            );
            // Random transmissions inside a valid batch: some error, never silence.
            let n = 1 + (i * 37) % 300;
            c.send(&[random_vec(n)]).await;
            let rs = c.recv().await;
            assert_eq!(rs.len(), 1);
            assert!(
                matches!(rs[0].response, Ok(Response::Err(_))),
                "v{v}: {:?}",
                rs[0].response
            );
        }
        assert_eq!(c.cmd(b"", &Command::Ping, None).await, Ok(Response::Pong));
    }
    // The bystander never noticed.
    assert_eq!(bystander.snd(&q, b"ok").await, Ok(Response::Ok));
    srv.stop().await;
}

#[tokio::test]
async fn bad_signatures_and_credentials() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    // A signature over other bytes.
    let mut t = c.encode(&corr(), &q.ids.rcv_id, &Command::Sub, Some(&q.rcv_key));
    t[5] ^= 1;
    c.send(&[t]).await;
    assert_eq!(
        c.recv().await[0].response,
        Ok(Response::Err(ErrorType::Auth))
    );
    // An Ed448 signature where the queue key is Ed25519.
    let k448 = PrivateKey::generate(KeyAlgorithm::Ed448);
    assert_eq!(
        c.cmd(&q.ids.rcv_id, &Command::Sub, Some(&k448)).await,
        Err(ErrorType::Auth)
    );
    // Unsigned recipient command; signed PING; NEW with an entity.
    let e = c.cmd(&q.ids.rcv_id, &Command::Sub, None).await;
    assert_eq!(
        e,
        Err(ErrorType::Cmd(smp_core::smp::error::CommandError::NoAuth))
    );
    let e = c.cmd(b"", &Command::Ping, Some(&q.rcv_key)).await;
    assert_eq!(
        e,
        Err(ErrorType::Cmd(smp_core::smp::error::CommandError::HasAuth))
    );
    // A 2-byte authorization is not a valid size: BLOCK with the corrId.
    let cr = corr();
    let mut raw = vec![2, 0, 0, b'0'];
    raw.push(24);
    raw.extend_from_slice(&cr);
    raw.push(0);
    raw.extend_from_slice(b"PING");
    c.send(&[raw]).await;
    let r = c.recv().await;
    assert_eq!(r[0].corr_id, cr);
    assert_eq!(r[0].response, Ok(Response::Err(ErrorType::Block)));
    // Oversized transmissions cannot be framed; an oversized SEND body is LARGE_MSG.
    let big = vec![0u8; 16049];
    assert_eq!(c.snd(&q, &big).await, Err(ErrorType::LargeMsg));
    assert!(encode_batch(&[vec![0u8; 70000]]).is_err());
    srv.stop().await;
}

#[tokio::test]
async fn garbage_handshakes_close_without_harm() {
    use tokio::io::AsyncWriteExt;
    let env = Env::new();
    let srv = env.start().await;
    // Plain TCP junk instead of TLS.
    let mut s = tokio::net::TcpStream::connect(srv.addr()).await.unwrap();
    let _ = s.write_all(&random_vec(5000)).await;
    drop(s);
    // The 35-byte hello `00 0d ‖ 20 keyHash` is fine at v13 ...
    let mut h = Hello::v(13);
    h.send_key = false;
    let mut short = RawClient::connect(srv.addr(), env.key_hash(), h)
        .await
        .unwrap();
    assert!(short.cmd(b"", &Command::Ping, None).await.is_ok());
    // ... but claiming v14 it lacks the proxy byte: closed silently (PARSE).
    h.wire_version = Some(14);
    assert!(
        RawClient::connect(srv.addr(), env.key_hash(), h)
            .await
            .is_none()
    );
    let c = RawClient::connect(srv.addr(), env.key_hash(), Hello::v(18)).await;
    assert!(c.is_some(), "the router still serves");
    srv.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_held_back_and_others_are_served() {
    let env = Env::new();
    let srv = env.start().await;
    let mut flood = env.client(&srv, 18).await;
    // Every GET is answered with a 16 KiB MSG that the client never reads.
    let q = flood.new_queue().await;
    assert_eq!(flood.snd(&q, &[1; 16000]).await, Ok(Response::Ok));
    let get = flood.encode(&corr(), &q.ids.rcv_id, &Command::Get, Some(&q.rcv_key));
    let batch = encode_batch(&[get]).unwrap();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = written.clone();
    let task = tokio::spawn(async move {
        for _ in 0..5000 {
            if flood.writer.write_content(&batch).await.is_err() {
                return;
            }
            w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let n = written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n < 5000,
        "the router kept reading a client that reads nothing ({n} blocks)"
    );
    let mut other = env.client(&srv, 18).await;
    assert_eq!(
        other.cmd(b"", &Command::Ping, None).await,
        Ok(Response::Pong)
    );
    task.abort();
    srv.stop().await;
}
