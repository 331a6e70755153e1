//! SMP crypto layer vectors: transport block encryption, message layers and
//! private message routing (vectors/smp).

mod support;

use serde_json::Value;
use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::secretbox::CbNonce;
use smp_core::encoding::pad;
use smp_core::smp::block_crypto::{BlockCipher, BlockCryptoError, ChainKey};
use smp_core::smp::command::Command;
use smp_core::smp::error::ErrorType;
use smp_core::smp::message::{
    ClientMessage, ClientMsgEnvelope, PrivHeader, PubHeader, RcvMsgBody, decrypt_rcv_msg,
    encrypt_rcv_msg,
};
use smp_core::smp::proxy::{self, FwdResponse, FwdTransmission};
use smp_core::smp::response::Response;
use smp_core::smp::transmission::{
    decode_command_transmission, decode_response_transmission, encode_batch,
};
use smp_core::smp::version::{SUPPORTED_RANGE, VersionRange};
use support::{arr, cases, hex, ramp, str_of, u64_of};

fn smp(file: &str) -> Value {
    support::load("smp", file)
}

fn private_key(info: &Value) -> PrivateKey {
    let alg = match str_of(&info["alg"]) {
        "Ed25519" => KeyAlgorithm::Ed25519,
        "X25519" => KeyAlgorithm::X25519,
        a => panic!("unexpected alg {a}"),
    };
    let raw = ["seed", "private_raw"]
        .iter()
        .find_map(|k| info[*k].as_str().map(|s| hex::decode(s).unwrap()))
        .unwrap();
    let k = PrivateKey::from_raw(alg, &raw).unwrap();
    assert_eq!(k.public_key().to_der(), hex(&info["public_der_spki"]));
    k
}

/// A `{length, sha256, hex|prefix_hex}` value, checked and returned in full
/// when it is given in full.
fn large(v: &Value) -> Option<Vec<u8>> {
    let b = v["hex"].as_str().map(|s| hex::decode(s).unwrap())?;
    assert_eq!(b.len() as u64, u64_of(&v["length"]));
    assert_eq!(hex::encode(sha256(&b)), str_of(&v["sha256"]));
    Some(b)
}

fn check_large(v: &Value, bytes: &[u8], what: &str) {
    assert_eq!(bytes.len() as u64, u64_of(&v["length"]), "{what} length");
    assert_eq!(
        hex::encode(sha256(bytes)),
        str_of(&v["sha256"]),
        "{what} sha256"
    );
    if let Some(p) = v["prefix_hex"].as_str() {
        assert!(bytes.starts_with(&hex::decode(p).unwrap()), "{what} prefix");
    }
    if let Some(h) = v["hex"].as_str() {
        assert_eq!(hex::encode(bytes), h, "{what}");
    }
}

#[test]
fn block_encryption() {
    let f = smp("block_encryption.json");
    let i = &f["inputs"];
    let session = hex(&i["session_id"]);
    let server = private_key(&i["server_session_x25519"]);
    let client = private_key(&i["client_session_x25519"]);
    let secret = server.dh(&client.public_key()).unwrap();
    assert_eq!(secret.to_vec(), hex(&i["sess_secret"]));
    assert_eq!(*client.dh(&server.public_key()).unwrap(), *secret);
    let (ck1, ck2) = ChainKey::init(&session, &secret);
    assert_eq!(ck1.as_bytes().to_vec(), hex(&f["init"]["ck1"]));
    assert_eq!(ck2.as_bytes().to_vec(), hex(&f["init"]["ck2"]));
    for (steps, start) in [
        ("server_to_client_steps", &ck1),
        ("client_to_server_steps", &ck2),
    ] {
        let mut ck = start.clone();
        for s in cases(&f, steps) {
            assert_eq!(ck.as_bytes().to_vec(), hex(&s["chain_key_in"]));
            let k = ck.step();
            assert_eq!(k.key.to_vec(), hex(&s["key"]), "{steps}");
            assert_eq!(k.nonce.0.to_vec(), hex(&s["nonce"]), "{steps}");
            assert_eq!(ck.as_bytes().to_vec(), hex(&s["chain_key_out"]), "{steps}");
        }
    }
    let mut srv = BlockCipher::server(&session, &secret);
    let mut cli = BlockCipher::client(&session, &secret);
    let mut srv_rx = BlockCipher::server(&session, &secret);
    let mut cli_rx = BlockCipher::client(&session, &secret);
    let mut seen = 0;
    for b in cases(&f, "blocks") {
        let content = hex(&b["content"]);
        let block = hex(&b["block"]);
        assert_eq!(hex::encode(sha256(&block)), str_of(&b["block_sha256"]));
        assert_eq!(block[..16], hex(&b["tag"])[..]);
        let padded = pad::pad(&content, u64_of(&b["padded_plaintext_length"]) as usize).unwrap();
        assert_eq!(
            hex::encode(sha256(&padded)),
            str_of(&b["padded_plaintext_sha256"])
        );
        // Blocks of one direction are listed in chain order.
        let (tx, rx) = if str_of(&b["direction"]).starts_with("client") {
            (&mut cli, &mut srv_rx)
        } else {
            (&mut srv, &mut cli_rx)
        };
        assert_eq!(
            tx.encrypt_block(&content).unwrap(),
            block,
            "{}",
            str_of(&b["direction"])
        );
        assert_eq!(rx.decrypt_block(&block).unwrap(), content);
        seen += 1;
    }
    assert_eq!(seen, 4);
    // A tampered block fails and the chain still advances.
    let mut a = BlockCipher::client(&session, &secret);
    let mut b = BlockCipher::server(&session, &secret);
    let mut x = a.encrypt_block(b"\x01\x00\x01z").unwrap();
    x[100] ^= 1;
    assert_eq!(b.decrypt_block(&x), Err(BlockCryptoError::Decrypt));
    let y = a.encrypt_block(b"next").unwrap();
    assert_eq!(b.decrypt_block(&y).unwrap(), b"next");
    assert_eq!(b.decrypt_block(&y[..100]), Err(BlockCryptoError::Size));
}

#[test]
fn server_msg_layer() {
    let f = smp("msg_encryption.json");
    let k = &f["keys"];
    let rcv = private_key(&k["rcv_dh_x25519"]);
    let srv = private_key(&k["server_queue_dh_x25519"]);
    let secret = srv.dh(&rcv.public_key()).unwrap();
    assert_eq!(secret.to_vec(), hex(&k["rcv_dh_secret"]));
    let e2e_msg = large(&cases(&f, "e2e")[0]["envelope"]).unwrap();
    for c in cases(&f, "server") {
        let name = str_of(&c["name"]);
        let ts = c["msg_ts"].as_i64().unwrap();
        let body = if c["quota"].as_bool().unwrap() {
            RcvMsgBody::Quota { ts }
        } else {
            let b = match c["body"].as_str() {
                Some(h) => hex::decode(h).unwrap(),
                None if name.starts_with("chain") => e2e_msg.clone(),
                None => ramp(u64_of(&c["body_length"]) as usize),
            };
            assert_eq!(b.len() as u64, u64_of(&c["body_length"]));
            RcvMsgBody::Message {
                ts,
                notification: c["notification"].as_bool().unwrap(),
                body: b,
            }
        };
        let encoded = body.encode();
        assert_eq!(
            encoded.len() as u64,
            u64_of(&c["rcv_msg_body_length"]),
            "{name}"
        );
        if let Some(r) = c["rcv_msg_body"].as_str() {
            assert_eq!(hex::encode(&encoded), r, "{name}");
        }
        let padded = pad::pad(&encoded, 16106).unwrap();
        assert!(padded.starts_with(&hex(&c["padded_prefix"])));
        assert_eq!(hex::encode(sha256(&padded)), str_of(&c["padded_sha256"]));
        let msg_id = hex(&c["msg_id"]);
        let enc = encrypt_rcv_msg(&secret, &msg_id, &body).unwrap();
        assert_eq!(Some(enc.clone()), large(&c["enc_body"]), "{name}");
        // the recipient computes the same secret from its side
        let rsecret = rcv.dh(&srv.public_key()).unwrap();
        assert_eq!(decrypt_rcv_msg(&rsecret, &msg_id, &enc).unwrap(), body);
        let mut bad = enc.clone();
        bad[20] ^= 1;
        assert!(decrypt_rcv_msg(&rsecret, &msg_id, &bad).is_err());
    }
    assert!(
        encrypt_rcv_msg(
            &secret,
            &[0; 24],
            &RcvMsgBody::Message {
                ts: 0,
                notification: false,
                body: vec![0; 16089]
            }
        )
        .is_err()
    );
}

#[test]
fn e2e_envelopes() {
    let f = smp("msg_encryption.json");
    let k = &f["keys"];
    let rcv = private_key(&k["e2e_rcv_x25519"]);
    let snd = private_key(&k["e2e_snd_x25519"]);
    let secret = snd.dh(&rcv.public_key()).unwrap();
    assert_eq!(secret.to_vec(), hex(&k["e2e_secret"]));
    for c in cases(&f, "e2e") {
        let name = str_of(&c["name"]);
        let env_bytes = large(&c["envelope"]).unwrap();
        let env = ClientMsgEnvelope::decode(&env_bytes).unwrap();
        let mut w = smp_core::encoding::Writer::new();
        env.header.write(&mut w).unwrap();
        assert_eq!(w.into_vec(), hex(&c["pub_header"]), "{name}");
        assert_eq!(env.nonce.0.to_vec(), hex(&c["nonce"]));
        assert_eq!(
            env.header.padded_length() as u64,
            u64_of(&c["padded_length"])
        );
        let msg = env.open(&secret).unwrap();
        assert_eq!(msg.encode().unwrap(), hex(&c["client_message"]), "{name}");
        assert_eq!(msg.body, hex(&c["agent_body"]));
        match &msg.header {
            PrivHeader::Empty => assert_eq!(hex(&c["priv_header"]), b"_"),
            PrivHeader::Confirmation(key) => {
                assert_eq!(
                    [&b"K"[..], &[44], &key.to_der()].concat(),
                    hex(&c["priv_header"])
                )
            }
        }
        let resealed = ClientMsgEnvelope::seal(
            &secret,
            PubHeader {
                client_version: env.header.client_version,
                e2e_key: env.header.e2e_key.clone(),
            },
            CbNonce(arr(&c["nonce"])),
            &ClientMessage {
                header: msg.header.clone(),
                body: msg.body.clone(),
            },
        )
        .unwrap();
        assert_eq!(resealed.encode().unwrap(), env_bytes, "{name}");
        assert!(env.open(&[0; 32]).is_err());
    }
    // SimpleGo's logged MSG plaintext prefixes
    for c in cases(&f, "simplego_crosscheck") {
        assert_eq!(
            str_of(&c["our_padded_prefix"]),
            str_of(&c["simplego_fixed_prefix"])
        );
        let p = hex(&c["our_padded_prefix"]);
        let ts = i64::from_be_bytes(p[2..10].try_into().unwrap());
        assert_eq!(ts, c["msg_ts"].as_i64().unwrap());
        let len = u16::from_be_bytes([p[0], p[1]]) as usize;
        assert_eq!(len, 10 + 15992);
        let RcvMsgBody::Message {
            notification, body, ..
        } = RcvMsgBody::decode(&[&p[2..], &vec![0u8; len - (p.len() - 2)][..]].concat()).unwrap()
        else {
            panic!()
        };
        assert!(notification);
        assert_eq!(&body[..3], &[0, 4, b'1']);
    }
}

#[test]
fn message_chain() {
    let f = smp("msg_encryption.json");
    let c = &f["chain"];
    let session = hex(&smp("transmissions.json")["fixed"]["session_id"]);
    let env = large(&cases(&f, "e2e")[0]["envelope"]).unwrap();
    let snd = private_key(&smp("transmissions.json")["fixed"]["snd_auth_ed25519"]);
    let tr = smp("transmissions.json");
    let fx = &tr["fixed"];
    // reconstruct the SEND: its corrId is in the given prefix
    let prefix = hex(&c["send_transmission"]["prefix_hex"]);
    let corr = &prefix[1 + 64 + 1 + 1..1 + 64 + 1 + 1 + 24];
    let cmd = Command::Send {
        notification: true,
        body: env.clone(),
    };
    let t = smp_core::smp::transmission::encode_command_transmission(
        18,
        &session,
        corr,
        &hex(&fx["snd_id"]),
        &cmd,
        Some(smp_core::smp::transmission::ClientAuth {
            key: smp_core::smp::transmission::AuthKey::Sign(&snd),
            service: None,
        }),
    )
    .unwrap();
    check_large(&c["send_transmission"], &t, "SEND");
    let st = decode_command_transmission(&t, 18, &session).unwrap();
    check_large(&c["send_signed_bytes"], &st.signed, "signed");
    assert_eq!(st.raw.auth, hex(&c["send_authorization"]));
    assert!(t.len() <= smp_core::smp::transmission::MAX_TRANSMISSION_IN_BATCH);
}

#[test]
fn proxy_forwarding() {
    let f = smp("proxy.json");
    let s = &f["setup"];
    let prs = &s["proxy_relay_session"];
    let relay = private_key(&prs["relay_session_x25519"]);
    let proxy_hello = private_key(&prs["proxy_hello_x25519"]);
    let p2r = relay.dh(&proxy_hello.public_key()).unwrap();
    assert_eq!(p2r.to_vec(), hex(&prs["p2r_secret"]));
    let relay_session = hex(&prs["session_id"]);
    let cp_session = hex(&s["client_proxy_session"]["session_id"]);
    // PRXY / PKEY
    for c in s["prxy"].as_array().unwrap() {
        let t = hex(&c["transmission"]);
        let st = decode_command_transmission(&t, 18, &cp_session).unwrap();
        let Command::Prxy { server, .. } = &st.command else {
            panic!()
        };
        let mut w = smp_core::encoding::Writer::new();
        server.write(&mut w).unwrap();
        assert_eq!(w.into_vec(), hex(&s["relay_address"]["smp_server_binary"]));
        assert_eq!(st.command.encode(18).unwrap(), hex(&c["command"]));
    }
    let pk = &s["pkey"];
    let rt = decode_response_transmission(&hex(&pk["transmission"]), 18, &cp_session).unwrap();
    let Ok(Response::Pkey {
        session_id,
        versions,
        key,
    }) = rt.response
    else {
        panic!()
    };
    assert_eq!(session_id, relay_session);
    assert_eq!(versions, proxy::pkey_range(&SUPPORTED_RANGE).unwrap());
    let mut w = smp_core::encoding::Writer::new();
    key.write(&mut w).unwrap();
    assert_eq!(w.into_vec(), hex(&prs["relay_cert_chain_pub_key"]));
    let relay_pub = key
        .verify(&sha256(&key.cert_chain[1]), None, KeyAlgorithm::X25519)
        .unwrap();
    assert_eq!(relay_pub, relay.public_key());
    assert_eq!(
        proxy::forward_version(&versions, &SUPPORTED_RANGE),
        Some(17)
    );
    assert_eq!(proxy::pkey_range(&VersionRange::new(6, 7).unwrap()), None);

    let mut n_cases = 0;
    for c in cases(&f, "forwarding") {
        let name = str_of(&c["name"]);
        let v = u64_of(&c["fwd_version"]) as u16;
        let keys = &c["keys"];
        let ek = private_key(&keys["cmd_x25519"]);
        let n = CbNonce(arr(&keys["nonce_N"]));
        let m = CbNonce(arr(&keys["nonce_M"]));
        let cmd_secret = ek.dh(&relay_pub).unwrap();
        assert_eq!(cmd_secret.to_vec(), hex(&keys["cmd_secret"]), "{name}");
        // 1: inner transmission (parsed by the relay with the p2r session id)
        let s1 = &c["step1_client_inner_transmission"];
        let inner = hex(&s1["transmission"]);
        let st = decode_command_transmission(&inner, v, &relay_session).unwrap();
        assert!(st.command.is_proxiable());
        assert_eq!(st.raw.corr_id, n.0);
        if let Some(sb) = s1["signed_bytes"].as_str() {
            assert_eq!(hex::encode(&st.signed), sb);
        }
        if let Some(d) = s1["authorization_detail"].as_object() {
            let signer = private_key(&d["signer"]);
            assert!(
                smp_core::smp::transmission::verify_auth(
                    st.auth.as_ref(),
                    &st.signed,
                    &n.0,
                    &signer.public_key(),
                    Some(&relay)
                ),
                "{name}"
            );
        }
        // 2: et
        let s2 = &c["step2_client_encrypts"];
        assert_eq!(encode_batch(&[&inner]).unwrap(), hex(&s2["plaintext_b"]));
        let et = proxy::encrypt_command(&cmd_secret, &n, &inner).unwrap();
        assert_eq!(Some(et.clone()), large(&s2["et"]), "{name}");
        // 3: PFWD
        let pfwd = Command::Pfwd {
            version: v,
            key: ek.public_key(),
            encrypted: et.clone(),
        };
        let pcmd = pfwd.encode(18).unwrap();
        check_large(&c["step3_pfwd_client_to_proxy"]["command"], &pcmd, "PFWD");
        let pt = smp_core::smp::transmission::encode_command_transmission(
            18,
            &cp_session,
            &n.0,
            &relay_session,
            &pfwd,
            None,
        )
        .unwrap();
        check_large(
            &c["step3_pfwd_client_to_proxy"]["transmission"],
            &pt,
            "PFWD transmission",
        );
        check_large(
            &c["step3_pfwd_client_to_proxy"]["block_content"],
            &encode_batch(&[&pt]).unwrap(),
            "PFWD block",
        );
        assert_eq!(
            decode_command_transmission(&pt, 18, &cp_session)
                .unwrap()
                .command,
            pfwd
        );
        // 4: proxy wraps
        let s4 = &c["step4_proxy_wraps"];
        let fwd = FwdTransmission {
            corr_id: n,
            version: v,
            key: ek.public_key(),
            encrypted: et.clone(),
        };
        let fwd_bytes = fwd.encode().unwrap();
        assert_eq!(
            fwd_bytes.len() as u64,
            u64_of(&s4["fwd_transmission_length"])
        );
        assert!(fwd_bytes.starts_with(&hex(&s4["fwd_transmission_prefix"])));
        let rfwd_enc = proxy::wrap_forward(&p2r, &m, &fwd).unwrap();
        assert_eq!(
            Some(rfwd_enc.clone()),
            large(&s4["rfwd_encrypted"]),
            "{name}"
        );
        // 5: RFWD
        let s5 = &c["step5_rfwd_proxy_to_relay"];
        let rfwd = Command::Rfwd(rfwd_enc.clone());
        let rt5 = smp_core::smp::transmission::encode_command_transmission(
            18,
            &relay_session,
            &m.0,
            b"",
            &rfwd,
            None,
        )
        .unwrap();
        check_large(&s5["command"], &rfwd.encode(18).unwrap(), "RFWD");
        check_large(&s5["transmission"], &rt5, "RFWD transmission");
        let bc = encode_batch(&[&rt5]).unwrap();
        check_large(&s5["block_content"], &bc, "RFWD block");
        assert_eq!(
            hex::encode(sha256(&pad::pad(&bc, 16384).unwrap())),
            str_of(&s5["padded_block_sha256"])
        );
        // relay opens it
        let got = proxy::unwrap_forward(&p2r, &m, &rfwd_enc).unwrap();
        assert_eq!(got, fwd);
        let relay_secret = relay.dh(&got.key).unwrap();
        assert_eq!(
            proxy::decrypt_command(&relay_secret, &got.corr_id, &got.encrypted).unwrap(),
            inner
        );
        // 6: relay response
        let s6 = &c["step6_relay_response"];
        let resp_t = hex(&s6["response_transmission"]);
        let rr = decode_response_transmission(&resp_t, v, &relay_session).unwrap();
        assert_eq!(
            rr.response.as_ref().unwrap().tag(v),
            str_of(&s6["parsed"]["response"]["tag"]),
            "{name}"
        );
        assert_eq!(
            smp_core::smp::transmission::encode_response_transmission(
                v,
                &relay_session,
                &rr.corr_id,
                &rr.entity_id,
                rr.response.as_ref().unwrap()
            )
            .unwrap(),
            resp_t
        );
        assert_eq!(
            encode_batch(&[&resp_t]).unwrap(),
            hex(&s6["response_block"])
        );
        assert_eq!(proxy::reverse_nonce(&n).0.to_vec(), hex(&s6["reversed_N"]));
        let r2 = proxy::encrypt_response(&relay_secret, &n, &resp_t).unwrap();
        assert_eq!(Some(r2.clone()), large(&s6["r2"]), "{name}");
        // 7: relay wraps
        let s7 = &c["step7_relay_wraps"];
        let fr = FwdResponse {
            corr_id: n,
            encrypted: r2.clone(),
        };
        assert!(
            fr.encode()
                .unwrap()
                .starts_with(&hex(&s7["fwd_response_prefix"]))
        );
        let rres = proxy::wrap_response(&p2r, &m, &fr).unwrap();
        assert_eq!(Some(rres.clone()), large(&s7["rres_encrypted"]), "{name}");
        // 8: RRES
        let s8 = &c["step8_rres_relay_to_proxy"];
        let rres_r = Response::Rres(rres.clone());
        check_large(&s8["response"], &rres_r.encode(18).unwrap(), "RRES");
        check_large(
            &s8["transmission"],
            &smp_core::smp::transmission::encode_response_transmission(
                18,
                &relay_session,
                &m.0,
                b"",
                &rres_r,
            )
            .unwrap(),
            "RRES transmission",
        );
        assert_eq!(proxy::unwrap_response(&p2r, &m, &rres).unwrap(), fr);
        // 9: PRES
        let s9 = &c["step9_pres_proxy_to_client"];
        let pres = Response::Pres(r2.clone());
        check_large(&s9["response"], &pres.encode(18).unwrap(), "PRES");
        check_large(
            &s9["transmission"],
            &smp_core::smp::transmission::encode_response_transmission(
                18,
                &cp_session,
                &n.0,
                &relay_session,
                &pres,
            )
            .unwrap(),
            "PRES transmission",
        );
        // 10: client decrypts
        let plain = proxy::decrypt_response(&cmd_secret, &n, &r2).unwrap();
        assert_eq!(
            encode_batch(&[&plain]).unwrap(),
            hex(&c["step10_client_decrypts"]["plaintext"])
        );
        assert_eq!(plain, resp_t);
        // wrong keys fail as the relay reports them
        assert_eq!(
            proxy::unwrap_forward(&[0; 32], &m, &rfwd_enc)
                .unwrap_err()
                .error_type(),
            ErrorType::Crypto
        );
        assert!(proxy::decrypt_command(&relay_secret, &m, &et).is_err());
        n_cases += 1;
    }
    assert_eq!(n_cases, 5);
}

#[test]
fn proxy_errors() {
    let f = smp("proxy.json");
    for c in cases(&f, "errors") {
        let name = str_of(&c["name"]);
        let v = u64_of(&c["version"]) as u16;
        let t = hex(&c["transmission"]);
        // the session id does not matter at v ≥ 7
        let rt = decode_response_transmission(&t, v, b"").unwrap();
        assert_eq!(rt.corr_id, hex(&c["corr_id"]), "{name}");
        assert_eq!(rt.entity_id, hex(&c["entity_id"]), "{name}");
        let r = rt.response.unwrap();
        assert_eq!(r.encode(v).unwrap(), hex(&c["response"]), "{name}");
        assert_eq!(
            encode_batch(&[&t]).unwrap(),
            hex(&c["block_content"]),
            "{name}"
        );
    }
}
