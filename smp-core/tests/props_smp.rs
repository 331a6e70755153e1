//! No decoder of the SMP layer panics on any input, and encoders round-trip.

use proptest::prelude::*;
use smp_core::crypto::secretbox::CbNonce;
use smp_core::smp::block_crypto::BlockCipher;
use smp_core::smp::command::Command;
use smp_core::smp::error::ErrorType;
use smp_core::smp::handshake::{ClientHello, ServerHandshakeResponse, ServerHello};
use smp_core::smp::message::{ClientMessage, ClientMsgEnvelope, RcvMsgBody, decrypt_rcv_msg};
use smp_core::smp::proxy::{self, FwdResponse, FwdTransmission};
use smp_core::smp::response::Response;
use smp_core::smp::transmission::{
    RawTransmission, decode_block, decode_command_transmission, decode_response_transmission,
    encode_batch, parse_batch,
};

/// Inputs that start with a real tag so the parameter parsers are reached.
fn tagged() -> impl Strategy<Value = Vec<u8>> {
    let tags = prop::sample::select(vec![
        "NEW ",
        "KEY ",
        "RKEY ",
        "LSET ",
        "NKEY ",
        "ACK ",
        "SKEY ",
        "SEND ",
        "LKEY ",
        "PRXY ",
        "PFWD ",
        "RFWD ",
        "IDS ",
        "LNK ",
        "SOK ",
        "SOKS ",
        "MSG ",
        "NID ",
        "NMSG ",
        "PKEY ",
        "RRES ",
        "ERR ",
        "ERR PROXY ",
        "ERR PROXY BROKER ",
        "ERR BLOCKED ",
        "ENDS ",
        "INFO ",
        "SUB",
        "PING",
        "OK",
    ]);
    (tags, prop::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(t, rest)| [t.as_bytes(), &rest].concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn commands_and_responses_never_panic(b in tagged(), v in 6u16..=18) {
        let _ = Command::decode(&b, v);
        let _ = Response::decode(&b, v);
        let _ = ErrorType::decode(b.get(4..).unwrap_or_default());
        if let Ok(c) = Command::decode(&b, v) {
            // what we accept we re-encode to the same bytes (NEW drops nothing it parsed)
            let again = Command::decode(&c.encode(v).unwrap(), v).unwrap();
            prop_assert_eq!(again, c);
        }
        if let Ok(r) = Response::decode(&b, v) {
            let _ = r.encode(v);
        }
    }

    #[test]
    fn transmissions_never_panic(b in prop::collection::vec(any::<u8>(), 0..400), v in 6u16..=18) {
        let _ = RawTransmission::parse(&b, v);
        let _ = decode_command_transmission(&b, v, &[1; 32]);
        let _ = decode_response_transmission(&b, v, &[1; 32]);
        let _ = parse_batch(&b);
        let _ = decode_block(&b);
    }

    #[test]
    fn batches_round_trip(items in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 1..20)) {
        let c = encode_batch(&items).unwrap();
        let parsed = parse_batch(&c).unwrap();
        prop_assert_eq!(parsed, items.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn handshakes_never_panic(b in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = ServerHello::decode(&b);
        let _ = ClientHello::decode(&b);
        let _ = ServerHandshakeResponse::decode(&b);
        for v in [6u16, 7, 14, 16, 18] {
            let mut x = v.to_be_bytes().to_vec();
            x.extend_from_slice(&b);
            if let Ok(h) = ClientHello::decode(&x) {
                let _ = h.encode();
                let _ = h.block_encryption();
            }
        }
    }

    #[test]
    fn message_layers_never_panic(b in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = RcvMsgBody::decode(&b);
        let _ = ClientMsgEnvelope::decode(&b);
        let _ = ClientMessage::decode(&b);
        let _ = FwdTransmission::decode(&b);
        let _ = FwdResponse::decode(&b);
        let _ = decrypt_rcv_msg(&[3; 32], &[4; 24], &b);
        let n = CbNonce([5; 24]);
        let _ = proxy::decrypt_command(&[3; 32], &n, &b);
        let _ = proxy::unwrap_forward(&[3; 32], &n, &b);
        let _ = proxy::unwrap_response(&[3; 32], &n, &b);
        let mut c = BlockCipher::server(&[1; 32], &[2; 32]);
        let _ = c.decrypt_block(&b);
    }

    #[test]
    fn rcv_msg_body_round_trips(ts in any::<i64>(), n in any::<bool>(), body in prop::collection::vec(any::<u8>(), 0..100)) {
        let m = RcvMsgBody::Message { ts, notification: n, body };
        prop_assert_eq!(RcvMsgBody::decode(&m.encode()).unwrap(), m);
    }
}
