//! What the SimpleGo firmware needs from a router (smp.md §11), checked on
//! the wire: the blocks it recorded from the reference server
//! (`vectors/smp/simplego-v7.json`) byte for byte or by their fixed
//! prefixes, SNI accepted, certificates it can find by scanning for
//! `30 82`, and one event per block on v6/v7 sessions.

mod support;

use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::smp::Command;
use smp_core::tls::{self, ServerIdentity};
use support::*;

fn vector(id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vectors/smp/simplego-v7.json"
    ))
    .unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    all["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("vector {id}"))
        .clone()
}

fn hex_field(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap()).unwrap()
}

async fn raw_block(c: &mut RawClient) -> Vec<u8> {
    tokio::time::timeout(PATIENCE, c.reader.read_raw())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// SimpleGo's v7 hello: no key, 24-byte corrIds.
async fn simplego(env: &Env, addr: std::net::SocketAddr) -> RawClient {
    let mut h = Hello::v(7);
    h.send_key = false;
    RawClient::connect(addr, env.key_hash(), h).await.unwrap()
}

#[tokio::test]
async fn recorded_v7_blocks() {
    let env = Env::new();
    let srv = env.start().await;
    let mut c = simplego(&env, srv.addr()).await;

    // ERR BLOCK after a broken block: the whole block is fixed.
    c.writer.write_raw(&[0xffu8; 16384]).await.unwrap();
    let block = raw_block(&mut c).await;
    let v = vector("sg-v7-err-block");
    assert_eq!(&block[..17], hex_field(&v, "block_prefix_hex").as_slice());
    assert_eq!(
        hex::encode(sha256(&block)),
        v["block_sha256"].as_str().unwrap()
    );

    // PONG to a PING with a 24-byte corrId.
    let t = c.encode(&corr(), b"", &Command::Ping, None);
    c.send(&[t]).await;
    let block = raw_block(&mut c).await;
    assert!(block.starts_with(&hex_field(&vector("sg-v7-pong"), "hex")));
    assert_eq!(&block[2 + 31 + 3..2 + 31 + 3 + 1], b"#");

    // SUB with a waiting message: OK (53 bytes) and MSG (16178) in one block.
    let q = c.new_queue().await;
    assert!(c.snd(&q, b"hi").await.is_ok());
    let t = c.encode(&corr(), &q.ids.rcv_id, &Command::Sub, Some(&q.rcv_key));
    c.send(&[t]).await;
    let block = raw_block(&mut c).await;
    assert!(block.starts_with(&hex_field(&vector("sg-v7-sub-ok-plus-msg-batch"), "hex")));
    let tx2 = 2 + 1 + 2 + 53;
    assert_eq!(&block[tx2..tx2 + 2], &[0x3f, 0x32], "MSG is 16178 bytes");
    assert!(block[16384 - 146..].iter().all(|&b| b == b'#'));

    // The wildcard ACK with nothing delivered: ERR NO_MSG.
    let mut other = simplego(&env, srv.addr()).await;
    let q2 = other.new_queue().await;
    let t = other.encode(
        &corr(),
        &q2.ids.rcv_id,
        &Command::Ack(vec![]),
        Some(&q2.rcv_key),
    );
    other.send(&[t]).await;
    let block = raw_block(&mut other).await;
    assert!(block.starts_with(&hex_field(&vector("sg-v7-err-no-msg"), "hex")));
    srv.stop().await;
}

#[tokio::test]
async fn events_go_one_per_block_on_v7() {
    let env = Env::new();
    let srv = env.start().await;
    let mut rcv = simplego(&env, srv.addr()).await;
    let q1 = rcv.new_queue().await;
    let q2 = rcv.new_queue().await;
    for q in [&q1, &q2] {
        assert!(rcv.rcv(q, &Command::Sub).await.is_ok());
    }
    // Two SENDs in one block from another connection.
    let mut snd = env.client(&srv, 18).await;
    let t1 = snd.encode(&corr(), &q1.ids.snd_id, &send_cmd(b"a"), None);
    let t2 = snd.encode(&corr(), &q2.ids.snd_id, &send_cmd(b"b"), None);
    snd.send(&[t1, t2]).await;
    assert_eq!(
        snd.recv().await.len(),
        2,
        "responses of one block come together"
    );
    let e1 = rcv.recv().await;
    let e2 = rcv.recv().await;
    assert_eq!((e1.len(), e2.len()), (1, 1), "one MSG per block");
    srv.stop().await;
}

#[tokio::test]
async fn sni_is_accepted_and_certificates_are_findable_by_byte_scan() {
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Ed448] {
        let mut env = Env::new();
        env.identity = ServerIdentity::generate(alg, "smp.example.net").unwrap().0;
        for c in env.identity.chain() {
            assert!(
                (256..=65535).contains(&c.len()),
                "{alg:?} certificate of {} bytes: SimpleGo finds certificates by `30 82`",
                c.len()
            );
        }
        let srv = env.start().await;
        // mbedTLS sends SNI; the router must serve SMP regardless.
        let sock = tokio::net::TcpStream::connect(srv.addr()).await.unwrap();
        let mut cfg = tls::client_config(env.key_hash(), tls::ALPN_SMP).unwrap();
        cfg.enable_sni = true;
        let name = rustls::pki_types::ServerName::try_from("smp.example.net").unwrap();
        let conn = tls::connect_with_server_name(sock, &cfg, name)
            .await
            .unwrap();
        let sid = conn.session_id().0;
        let (r, _w) = tokio::io::split(conn);
        let mut reader = smp_core::transport::BlockReader::new(r);
        let block = reader.read_handshake().await.unwrap().unwrap();
        let content = smp_core::encoding::pad::unpad(&block).unwrap();
        assert_eq!(content[4], 32, "32-byte session id");
        assert_eq!(&content[5..37], &sid);
        // The firmware's scan: the second `30 82` starts the identity certificate.
        if !sid.windows(2).any(|w| w == [0x30, 0x82]) {
            let starts: Vec<usize> = content
                .windows(2)
                .enumerate()
                .filter(|(_, w)| *w == [0x30, 0x82])
                .map(|(i, _)| i)
                .collect();
            let second = starts
                .iter()
                .copied()
                .find(|&i| {
                    i > starts[0]
                        + 4
                        + u16::from_be_bytes([content[starts[0] + 2], content[starts[0] + 3]])
                            as usize
                        - 1
                })
                .unwrap();
            let len = 4 + u16::from_be_bytes([content[second + 2], content[second + 3]]) as usize;
            assert_eq!(sha256(&content[second..second + len]), env.key_hash());
        }
        srv.stop().await;
    }
}
