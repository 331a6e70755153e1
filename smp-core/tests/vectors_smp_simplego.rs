//! SimpleGo candidate vectors (v6/v7 traffic recorded from live servers),
//! rebuilt with our encoders (vectors/smp/simplego-v7.json).

mod support;

use serde_json::Value;
use smp_core::crypto::digest::sha256;
use smp_core::smp::error::ErrorType;
use smp_core::smp::message::RcvMsgBody;
use smp_core::smp::response::Response;
use smp_core::smp::transmission::{
    batch_transmissions, encode_block, encode_response_transmission, parse_batch,
};
use support::{cases, hex, str_of};

fn vector<'a>(f: &'a Value, id: &str) -> &'a Value {
    cases(f, "vectors")
        .iter()
        .find(|v| str_of(&v["id"]) == id)
        .unwrap_or_else(|| panic!("vector {id} missing"))
}

/// Server transmissions at v7 with 24-byte ids, as SimpleGo saw them.
fn content(responses: &[(&[u8], &[u8], Response)]) -> Vec<u8> {
    let ts: Vec<Vec<u8>> = responses
        .iter()
        .map(|(c, e, r)| encode_response_transmission(7, &[0x55; 32], c, e, r).unwrap())
        .collect();
    let mut blocks = batch_transmissions(&ts).unwrap();
    assert_eq!(blocks.len(), 1);
    blocks.remove(0)
}

#[test]
fn simplego_v7_server_blocks() {
    let f = support::load("smp", "simplego-v7.json");
    let (corr, rcv, msg_id) = ([0xc1; 24], [0xa2; 24], [0x3d; 24]);

    let v = vector(&f, "sg-v7-err-block");
    let c = content(&[(b"", b"", Response::Err(ErrorType::Block))]);
    assert_eq!(c, hex(&v["hex"]));
    assert_eq!(
        hex::encode(sha256(&encode_block(&c).unwrap())),
        str_of(&v["block_sha256"])
    );

    let v = vector(&f, "sg-v7-sub-ok-plus-msg-batch");
    let msg = Response::Msg {
        msg_id: msg_id.to_vec(),
        body: vec![0x77; 16122],
    };
    let c = content(&[(&corr, &rcv, Response::Ok), (b"", &rcv, msg)]);
    let block = encode_block(&c).unwrap();
    assert!(block.starts_with(&hex(&v["hex"])));
    let items = parse_batch(&c).unwrap();
    assert_eq!(
        items.iter().map(|t| t.len()).collect::<Vec<_>>(),
        [53, 16178]
    );
    assert_eq!(c.len(), 16236);

    let v = vector(&f, "sg-v7-err-no-msg");
    let c = content(&[(&corr, &rcv, Response::Err(ErrorType::NoMsg))]);
    assert!(encode_block(&c).unwrap().starts_with(&hex(&v["hex"])));
    assert_eq!(c.len(), 0x40);

    let v = vector(&f, "sg-v7-pong");
    let c = content(&[(&corr, b"", Response::Pong)]);
    assert!(encode_block(&c).unwrap().starts_with(&hex(&v["hex"])));
    assert_eq!(c.len(), 0x22);
}

#[test]
fn simplego_msg_plaintext_prefixes() {
    let f = support::load("smp", "simplego-v7.json");
    for id in ["sg-msg-plaintext-prefix-s9", "sg-msg-plaintext-prefix-s10"] {
        let p = hex(&vector(&f, id)["hex"]);
        let len = u16::from_be_bytes([p[0], p[1]]) as usize;
        // 10 bytes of ts + flags + space, then a 15992-byte confirmation envelope
        assert_eq!(len, 10 + 15992, "{id}");
        let mut body = p[2..].to_vec();
        body.resize(len, 0);
        let RcvMsgBody::Message {
            ts,
            notification,
            body,
        } = RcvMsgBody::decode(&body).unwrap()
        else {
            panic!("{id}")
        };
        // sessions ran January–March 2026
        assert!((1_767_225_600..1_775_000_000).contains(&ts), "{id}");
        assert!(notification);
        // PubHeader: client version 4, Just (shortString of a 44-byte X25519 SPKI)
        assert_eq!(&body[..4], &[0, 4, b'1', 44], "{id}");
    }
}
