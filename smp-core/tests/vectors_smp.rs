//! SMP wire vectors: transmissions, batches, commands, responses, errors,
//! handshake and the NEW/IDS version bands (vectors/smp).

mod support;

use serde_json::Value;
use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::encoding::pad;
use smp_core::smp::command::{
    BasicAuth, Command, NewNtfCreds, NewQueue, QueueLinkData, QueueMode, QueueReqData,
    SubscriptionMode, sender_id_for_corr_id,
};
use smp_core::smp::error::{BlockingInfo, BlockingReason, ClientNotice, ErrorType};
use smp_core::smp::handshake::{
    ClientHello, ClientService, ServerHandshakeResponse, ServerHello, ServiceRole, SignedKey,
    certificate_public_key, sign_session_key,
};
use smp_core::smp::response::{QueueIds, Response, ServerNtfCreds};
use smp_core::smp::transmission::{
    self, AuthKey, ClientAuth, TransmissionAuth, decode_command_transmission,
    decode_response_transmission, encode_batch, encode_block, encode_response_transmission,
    encode_transmission, parse_batch, verify_auth,
};
use smp_core::smp::version::{self, SUPPORTED_RANGE};
use support::{cases, hex, str_of, u64_of};

fn smp(file: &str) -> Value {
    support::load("smp", file)
}

fn opt_hex(v: &Value) -> Option<Vec<u8>> {
    (!v.is_null()).then(|| hex(v))
}

/// A private key from a vector key object (`seed`, `seed_57` or `private_raw`).
fn private_key(info: &Value) -> PrivateKey {
    let alg = match str_of(&info["alg"]) {
        "Ed25519" => KeyAlgorithm::Ed25519,
        "Ed448" => KeyAlgorithm::Ed448,
        "X25519" => KeyAlgorithm::X25519,
        a => panic!("unknown alg {a}"),
    };
    let raw = ["seed", "seed_57", "private_raw"]
        .iter()
        .find_map(|k| opt_hex(&info[*k]))
        .expect("key has private bytes");
    let k = PrivateKey::from_raw(alg, &raw).unwrap();
    assert_eq!(k.public_key().to_der(), hex(&info["public_der_spki"]));
    k
}

fn public_der(info: &Value) -> PublicKey {
    PublicKey::from_der(&hex(&info["public_der_spki"])).unwrap()
}

fn version_of(c: &Value) -> u16 {
    u64_of(&c["version"]) as u16
}

fn block_sha(content: &[u8]) -> String {
    hex::encode(sha256(&encode_block(content).unwrap()))
}

#[test]
fn client_transmissions() {
    let f = smp("transmissions.json");
    let session = hex(&f["fixed"]["session_id"]);
    let server_key = private_key(&f["fixed"]["server_session_x25519"]);
    for c in cases(&f, "client") {
        let name = str_of(&c["name"]);
        let v = version_of(c);
        let t = hex(&c["transmission"]);
        assert_eq!(t.len() as u64, u64_of(&c["transmission_length"]), "{name}");
        let corr = hex(&c["corr_id"]);
        let entity = hex(&c["entity_id"]);
        let st = decode_command_transmission(&t, v, &session)
            .unwrap_or_else(|e| panic!("{name} v{v}: {e:?}"));
        assert_eq!(st.raw.corr_id, corr, "{name}");
        assert_eq!(st.raw.entity_id, entity, "{name}");
        assert_eq!(st.raw.auth, hex(&c["authorization"]), "{name}");
        let p = &c["parsed"]["transmission"];
        assert_eq!(
            st.raw.service_sig.is_some(),
            p["service_sig_field_present"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(
            st.raw.session_id.map(hex::encode),
            p["session_id_on_wire"].as_str().map(String::from),
            "{name}"
        );
        let svc = opt_hex(&c["service_sig"]);
        assert_eq!(
            st.service_sig.as_ref().map(|s| s.as_bytes().to_vec()),
            svc,
            "{name}"
        );
        assert_eq!(
            st.command.tag(),
            str_of(&c["parsed"]["command"]["tag"]),
            "{name}"
        );
        let cmd = match opt_hex(&c["command"]) {
            Some(cmd) => {
                assert_eq!(st.raw.command, cmd, "{name}");
                cmd
            }
            None => {
                assert_eq!(
                    st.raw.command.len() as u64,
                    u64_of(&c["command_length"]),
                    "{name}"
                );
                st.raw.command.to_vec()
            }
        };
        // decode → encode gives the same command bytes
        assert_eq!(
            st.command.encode(v).unwrap(),
            cmd,
            "{name}: command re-encoding"
        );
        if let Some(sb) = opt_hex(&c["signed_bytes"]) {
            assert_eq!(st.signed, sb, "{name}: signed bytes");
        }
        assert_eq!(
            encode_transmission(
                v,
                &session,
                st.auth.as_ref(),
                st.service_sig.as_ref(),
                &corr,
                &entity,
                &cmd
            )
            .unwrap(),
            t,
            "{name}: transmission re-encoding"
        );
        // Authorization verifies, and re-authorizing gives the same bytes.
        if let Some(detail) = c.get("authorization_detail").filter(|d| !d.is_null()) {
            let signer = private_key(&detail["signer"]);
            let service = detail.get("service_key").map(private_key);
            let cert_hash = opt_hex(&detail["service_cert_hash"]);
            let entity_signed = match &cert_hash {
                Some(h) => [h.as_slice(), &st.signed].concat(),
                None => st.signed.clone(),
            };
            assert!(
                verify_auth(
                    st.auth.as_ref(),
                    &entity_signed,
                    &corr,
                    &signer.public_key(),
                    Some(&server_key)
                ),
                "{name}: authorization does not verify"
            );
            if let (Some(s), Some(sig)) = (&service, &st.service_sig) {
                assert!(
                    s.public_key().verify(&st.signed, sig),
                    "{name}: service sig"
                );
            }
            let server_pub = server_key.public_key();
            let key = if signer.algorithm() == KeyAlgorithm::X25519 {
                AuthKey::Authenticate {
                    own: &signer,
                    server_session_key: &server_pub,
                }
            } else {
                AuthKey::Sign(&signer)
            };
            let auth = ClientAuth {
                key,
                service: service.as_ref().zip(cert_hash.as_deref()),
            };
            let built = transmission::encode_command_transmission(
                v,
                &session,
                &corr,
                &entity,
                &st.command,
                Some(auth),
            )
            .unwrap();
            assert_eq!(built, t, "{name}: client encoder");
            // A wrong key must not verify.
            let other = PrivateKey::from_raw(KeyAlgorithm::Ed25519, &[7; 32]).unwrap();
            assert!(!verify_auth(
                st.auth.as_ref(),
                &entity_signed,
                &corr,
                &other.public_key(),
                Some(&server_key)
            ));
        } else {
            assert!(st.auth.is_none(), "{name}");
            let built = transmission::encode_command_transmission(
                v,
                &session,
                &corr,
                &entity,
                &st.command,
                None,
            )
            .unwrap();
            assert_eq!(built, t, "{name}: client encoder");
        }
        let content = encode_batch(&[&t]).unwrap();
        if let Some(bc) = opt_hex(&c["block_content"]) {
            assert_eq!(content, bc, "{name}");
        }
        assert_eq!(block_sha(&content), str_of(&c["block_sha256"]), "{name}");
    }
}

fn blocked_with_notice() -> ErrorType {
    ErrorType::Blocked(BlockingInfo {
        reason: BlockingReason::Spam,
        notice: Some(ClientNotice { ttl: Some(86400) }),
    })
}

#[test]
fn server_transmissions() {
    let f = smp("transmissions.json");
    let session = hex(&f["fixed"]["session_id"]);
    let mut checked_shapes = 0;
    for c in cases(&f, "server") {
        let name = str_of(&c["name"]);
        let v = version_of(c);
        let t = hex(&c["transmission"]);
        assert_eq!(t.len() as u64, u64_of(&c["transmission_length"]), "{name}");
        let corr = hex(&c["corr_id"]);
        let entity = hex(&c["entity_id"]);
        let rt = decode_response_transmission(&t, v, &session).unwrap();
        assert_eq!(rt.corr_id, corr, "{name}");
        assert_eq!(rt.entity_id, entity, "{name}");
        let resp = rt.response.unwrap_or_else(|e| panic!("{name} v{v}: {e:?}"));
        let pr = &c["parsed"]["response"];
        assert_eq!(resp.tag(v), str_of(&pr["tag"]), "{name}");
        let bytes = resp.encode(v).unwrap();
        match opt_hex(&c["response"]) {
            Some(r) => assert_eq!(bytes, r, "{name}"),
            None => assert_eq!(bytes.len() as u64, u64_of(&c["response_length"]), "{name}"),
        }
        assert!(t.ends_with(&bytes), "{name}");
        assert_eq!(
            encode_response_transmission(v, &session, &corr, &entity, &resp).unwrap(),
            t,
            "{name}"
        );
        // Version shaping from the unshaped value.
        let unshaped = if name.starts_with("DELD") {
            Some(Response::Deld)
        } else if name.starts_with("SUB reply") {
            Some(Response::Sok(None))
        } else if name.starts_with("ERR BLOCKED with notice") {
            Some(Response::Err(blocked_with_notice()))
        } else {
            None
        };
        if let Some(u) = unshaped {
            assert_eq!(u.encode(v).unwrap(), bytes, "{name}: shaping at v{v}");
            checked_shapes += 1;
        }
        match (&resp, str_of(&pr["tag"])) {
            (Response::Msg { msg_id, body }, _) => {
                assert_eq!(*msg_id, hex(&pr["msg_id"]));
                assert_eq!(body.len() as u64, u64_of(&pr["enc_body_length"]));
                assert_eq!(hex::encode(sha256(body)), str_of(&pr["enc_body_sha256"]));
            }
            (Response::Ids(ids), _) => {
                assert_eq!(ids.rcv_id, hex(&pr["rcv_id"]));
                assert_eq!(ids.snd_id, hex(&pr["snd_id"]));
                assert_eq!(ids.server_dh_key.to_der(), hex(&pr["server_dh_key"]));
            }
            (Response::Soks(n) | Response::Ends(n), _) => {
                assert_eq!(*n as u64, u64_of(&pr["count"]))
            }
            (Response::Pres(b) | Response::Rres(b), _) => {
                assert_eq!(b.len() as u64, u64_of(&pr["enc_length"]));
                assert_eq!(hex::encode(sha256(b)), str_of(&pr["enc_sha256"]));
            }
            (
                Response::Pkey {
                    session_id,
                    versions,
                    key,
                },
                _,
            ) => {
                assert_eq!(*session_id, hex(&pr["session_id"]));
                assert_eq!(
                    (versions.min() as u64, versions.max() as u64),
                    (
                        u64_of(&pr["version_range"][0]),
                        u64_of(&pr["version_range"][1])
                    )
                );
                assert_eq!(
                    key.cert_chain.len(),
                    pr["cert_chain_der"].as_array().unwrap().len()
                );
            }
            (Response::Nid { notifier_id, .. }, _) => {
                assert_eq!(*notifier_id, hex(&pr["notifier_id"]))
            }
            (Response::Nmsg { nonce, enc_meta }, _) => {
                assert_eq!(nonce.to_vec(), hex(&pr["nonce"]));
                assert_eq!(*enc_meta, hex(&pr["enc_meta"]));
                assert_eq!(enc_meta.len(), 144);
            }
            (Response::Info(j), _) => assert_eq!(j.as_slice(), str_of(&pr["json"]).as_bytes()),
            (Response::Sok(s), "SOK") => assert_eq!(s.clone(), opt_hex(&pr["service_id"])),
            _ => {}
        }
        let content = encode_batch(&[&t]).unwrap();
        if let Some(bc) = opt_hex(&c["block_content"]) {
            assert_eq!(content, bc, "{name}");
        }
        assert_eq!(block_sha(&content), str_of(&c["block_sha256"]), "{name}");
    }
    assert_eq!(checked_shapes, 15);
}

#[test]
fn v6_session_mismatch_is_rejected() {
    let f = smp("transmissions.json");
    let session = hex(&f["fixed"]["session_id"]);
    let c = cases(&f, "client")
        .iter()
        .find(|c| version_of(c) == 6 && str_of(&c["name"]) == "SUB")
        .unwrap();
    let t = hex(&c["transmission"]);
    let mut other = session.clone();
    other[0] ^= 1;
    let e = decode_command_transmission(&t, 6, &other).unwrap_err();
    assert_eq!(e.error, ErrorType::Session);
    assert_eq!(e.corr_id, hex(&c["corr_id"]));
    assert!(e.entity_id.is_empty());
    // at v7+ the session is only signed: a wrong session changes the signed bytes
    let c7 = cases(&f, "client")
        .iter()
        .find(|c| version_of(c) == 7 && str_of(&c["name"]) == "SUB")
        .unwrap();
    let t7 = hex(&c7["transmission"]);
    let st = decode_command_transmission(&t7, 7, &other).unwrap();
    let signer = private_key(&c7["authorization_detail"]["signer"]);
    assert!(!verify_auth(
        st.auth.as_ref(),
        &st.signed,
        st.raw.corr_id,
        &signer.public_key(),
        None
    ));
}

#[test]
fn bad_authorization_length_is_block() {
    // 10-byte authorization, SUB
    let t = [&[10u8][..], &[1; 10], &[1, b'c'], &[1, b'e'], b"SUB"].concat();
    let e = decode_command_transmission(&t, 7, b"").unwrap_err();
    assert_eq!(e.error, ErrorType::Block);
    assert_eq!(e.corr_id, b"c");
    assert!(e.entity_id.is_empty());
    // truncated transmission: BLOCK with empty corrId
    let e = decode_command_transmission(&[5, 1], 7, b"").unwrap_err();
    assert_eq!((e.error, e.corr_id.len()), (ErrorType::Block, 0));
}

#[test]
fn batches() {
    let f = smp("transmissions.json");
    for b in cases(&f, "batches") {
        let name = str_of(&b["name"]);
        let content = hex(&b["block_content"]);
        assert_eq!(content.len() as u64, u64_of(&b["block_content_length"]));
        let items = parse_batch(&content).unwrap();
        let lens: Vec<u64> = b["transmission_lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(u64_of)
            .collect();
        assert_eq!(
            items.iter().map(|t| t.len() as u64).collect::<Vec<_>>(),
            lens,
            "{name}"
        );
        let packed = transmission::batch_transmissions(&items).unwrap();
        assert_eq!(packed, vec![content.clone()], "{name}");
        if let Some(block) = opt_hex(&b["block"]) {
            assert_eq!(encode_block(&content).unwrap(), block, "{name}");
            assert_eq!(
                transmission::decode_block(&block).unwrap(),
                content.as_slice()
            );
        }
        assert_eq!(block_sha(&content), str_of(&b["block_sha256"]), "{name}");
        let v = version_of(b);
        let session = hex(&f["fixed"]["session_id"]);
        for t in items {
            if str_of(&b["direction"]).starts_with("client") {
                decode_command_transmission(t, v, &session).unwrap();
            } else {
                decode_response_transmission(t, v, &session)
                    .unwrap()
                    .response
                    .unwrap();
            }
        }
    }
    // malformed batches
    assert_eq!(parse_batch(&[]), Err(ErrorType::Block));
    assert_eq!(parse_batch(&[0]), Err(ErrorType::Block));
    assert_eq!(parse_batch(&[1, 0, 2, 1]), Err(ErrorType::Block));
    assert_eq!(parse_batch(&[1, 0, 1, 1, 9]), Err(ErrorType::Block));
    // a transmission that can never fit is refused, several are split
    assert!(transmission::batch_transmissions(&[vec![0u8; 16364]]).is_err());
    let big = vec![vec![0u8; 9000], vec![0u8; 9000]];
    assert_eq!(transmission::batch_transmissions(&big).unwrap().len(), 2);
}

#[test]
fn errors() {
    let f = smp("errors.json");
    let session = hex(&smp("transmissions.json")["fixed"]["session_id"]);
    for c in cases(&f, "errors") {
        let text = str_of(&c["encoded_text"]);
        let enc = hex(&c["encoded"]);
        let e = ErrorType::decode(&enc).unwrap_or_else(|x| panic!("{text}: {x}"));
        assert_eq!(e.encode().unwrap(), enc, "{text}");
        assert_eq!(
            str_of(&c["parsed"]["type"]),
            e.encode()
                .unwrap()
                .split(|&b| b == b' ')
                .next()
                .map(|w| String::from_utf8(w.to_vec()).unwrap())
                .unwrap()
        );
        for (v, r) in c["err_response_by_version"].as_object().unwrap() {
            let v: u16 = v.parse().unwrap();
            assert_eq!(
                Response::Err(e.clone()).encode(v).unwrap(),
                hex(&r["response"]),
                "{text} at v{v}"
            );
        }
        let t = hex(&c["transmission_v18"]);
        let rt = decode_response_transmission(&t, 18, &session).unwrap();
        assert_eq!(rt.response, Ok(Response::Err(e.clone())), "{text}");
        assert_eq!(
            encode_response_transmission(
                18,
                &session,
                &rt.corr_id,
                &rt.entity_id,
                &Response::Err(e)
            )
            .unwrap(),
            t
        );
    }
    for c in cases(&f, "parse_only") {
        let text = str_of(&c["encoded_text"]);
        let r = ErrorType::decode(&hex(&c["encoded"]));
        assert_eq!(r.is_ok(), c["ok"].as_bool().unwrap(), "{text}: {r:?}");
    }
    use smp_core::smp::error::{BrokerError, CommandError, NetworkError, ProxyError};
    assert_eq!(
        ErrorType::decode(b"CMD NO_QUEUE"),
        Ok(ErrorType::Cmd(CommandError::NoEntity))
    );
    let net = |n| ErrorType::Proxy(Box::new(ProxyError::Broker(BrokerError::Network(n))));
    assert_eq!(
        ErrorType::decode(b"PROXY BROKER NETWORK"),
        Ok(net(NetworkError::Failed))
    );
    assert_eq!(
        ErrorType::decode(b"PROXY BROKER NETWORK CONNECT \x07refused"),
        Ok(net(NetworkError::Connect(b"refused".to_vec())))
    );
    assert_eq!(
        net(NetworkError::UnknownCa).encode().unwrap(),
        b"PROXY BROKER NETWORK"
    );
    let values = f["transport_errors_in_handshake"]["values"]
        .as_array()
        .unwrap();
    assert!(!values.is_empty());
    for v in values {
        let t = smp_core::smp::error::TransportError::read(&mut smp_core::encoding::Reader::new(
            str_of(v).as_bytes(),
        ))
        .unwrap();
        assert_eq!(t.encode(), str_of(v).as_bytes());
    }
}

#[test]
fn handshake_server_hello() {
    let f = smp("handshake.json");
    let session = hex(&f["fixed"]["session_id"]);
    let key_hash = hex(&f["fixed"]["key_hash"]);
    let server_pub = public_der(&f["fixed"]["server_session_x25519"]);
    for c in cases(&f, "server_hello") {
        let name = str_of(&c["name"]);
        let body = hex(&c["body"]);
        let h = ServerHello::decode(&body).unwrap();
        assert_eq!(h.encode().unwrap(), body, "{name}");
        let block = h.encode_block().unwrap();
        assert_eq!(
            hex::encode(sha256(&block)),
            str_of(&c["block_sha256"]),
            "{name}"
        );
        assert_eq!(hex(&c["block"]), block, "{name}");
        assert_eq!(ServerHello::decode_block(&block).unwrap(), h);
        assert_eq!(h.session_id, hex(&c["session_id"]));
        assert_eq!(h.versions.min() as u64, u64_of(&c["version_range"][0]));
        assert_eq!(h.versions.max() as u64, u64_of(&c["version_range"][1]));
        match &h.auth_pub_key {
            None => assert!(c["cert_chain"].is_null(), "{name}"),
            Some(k) => {
                let chain: Vec<Vec<u8>> = c["cert_chain"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(hex)
                    .collect();
                assert_eq!(k.cert_chain, chain);
                assert_eq!(k.signed_pub_key, hex(&c["signed_pub_key_der"]));
            }
        }
        let leaf = h
            .auth_pub_key
            .as_ref()
            .map(|k| certificate_public_key(&k.cert_chain[0]).unwrap());
        let dummy_leaf = PrivateKey::from_raw(KeyAlgorithm::Ed25519, &[1; 32])
            .unwrap()
            .public_key();
        let (v, key) = h
            .check(
                &session,
                &SUPPORTED_RANGE,
                &key_hash_for(&f, &h),
                leaf.as_ref().unwrap_or(&dummy_leaf),
            )
            .unwrap();
        assert_eq!(v, h.versions.max());
        assert_eq!(key.is_some(), h.auth_pub_key.is_some());
        if let Some(k) = key {
            assert_eq!(k, server_pub);
            // a wrong leaf key or identity is refused
            assert!(
                h.check(
                    &session,
                    &SUPPORTED_RANGE,
                    &key_hash_for(&f, &h),
                    &dummy_leaf
                )
                .is_err()
            );
            assert!(
                h.check(&session, &SUPPORTED_RANGE, &[0; 32], leaf.as_ref().unwrap())
                    .is_err()
            );
        }
        assert!(
            h.check(&[0; 32], &SUPPORTED_RANGE, &key_hash, &dummy_leaf)
                .is_err()
        );
    }
}

/// The key hash for the chain the hello carries (Ed25519 or Ed448 vectors).
fn key_hash_for(f: &Value, h: &ServerHello) -> Vec<u8> {
    match &h.auth_pub_key {
        None => hex(&f["fixed"]["key_hash"]),
        Some(k) => sha256(&k.cert_chain[1]).to_vec(),
    }
}

#[test]
fn handshake_signed_server_key() {
    let f = smp("handshake.json");
    for c in cases(&f, "signed_server_key") {
        let signer = private_key(&c["signer"]);
        let x = public_der(&c["x25519_key"]);
        let der = hex(&c["der"]);
        assert_eq!(sign_session_key(&x, &signer).unwrap(), der);
        let sk = SignedKey::decode(&der).unwrap();
        assert_eq!(sk.signed_object, hex(&c["signed_object_der"]));
        assert_eq!(sk.key.to_der(), hex(&c["spki"]));
        assert_eq!(sk.signature.as_bytes(), hex(&c["signature"]));
        assert!(sk.verify(&signer.public_key()));
    }
}

#[test]
fn handshake_client_hello() {
    let f = smp("handshake.json");
    let identity: [u8; 32] = hex(&f["fixed"]["key_hash"]).try_into().unwrap();
    for c in cases(&f, "client_hello") {
        let name = str_of(&c["name"]);
        let body = hex(&c["body"]);
        let p = &c["parsed"];
        let client_service = c["client_service_input"]
            .as_object()
            .map(|_| ClientService {
                role: ServiceRole::from_byte(str_of(&p["client_service"]["role"]).as_bytes()[0])
                    .unwrap(),
                key: smp_core::smp::CertChainPubKey {
                    cert_chain: p["client_service"]["cert_chain_der"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(hex)
                        .collect(),
                    signed_pub_key: hex(&f["fixed"]["service_signed_key_der"]),
                },
            });
        let hello = ClientHello {
            version: u64_of(&c["smp_version"]) as u16,
            key_hash: hex(&c["key_hash"]),
            auth_pub_key: opt_hex(&c["auth_pub_key_input"])
                .map(|d| PublicKey::from_der(&d).unwrap()),
            proxy_server: c["proxy_server_input"].as_bool().unwrap(),
            client_service,
        };
        assert_eq!(hello.encode().unwrap(), body, "{name}");
        let block = hello.encode_block().unwrap();
        assert_eq!(hex(&c["block"]), block, "{name}");
        assert_eq!(hex::encode(sha256(&block)), str_of(&c["block_sha256"]));
        let d = ClientHello::decode_block(&block).unwrap();
        assert_eq!(d.version as u64, u64_of(&p["smp_version"]));
        assert_eq!(
            d.auth_pub_key.as_ref().map(|k| k.to_der()),
            opt_hex(&p["auth_pub_key"]),
            "{name}"
        );
        assert_eq!(d.proxy_server, p["proxy_server"].as_bool().unwrap());
        assert_eq!(d.client_service.is_some(), !p["client_service"].is_null());
        if let Some(s) = &d.client_service {
            assert_eq!(
                s.key.signed_pub_key,
                hex(&f["fixed"]["service_signed_key_der"])
            );
            // the service key verifies against its own chain and cert hash
            let svc = s
                .key
                .verify(
                    &hex(&f["fixed"]["service_cert_hash"]),
                    None,
                    KeyAlgorithm::Ed25519,
                )
                .unwrap();
            assert_eq!(svc, public_der(&f["fixed"]["service_session_ed25519"]));
        }
        assert_eq!(
            d.block_encryption(),
            c["block_encryption"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(
            d.accept(&SUPPORTED_RANGE, &identity).is_ok(),
            c["server_accepts_with_6_18"].as_bool().unwrap(),
            "{name}"
        );
        assert!(d.accept(&SUPPORTED_RANGE, &[0; 32]).is_err());
        assert_eq!(
            d.accept(&version::LEGACY_SERVER_RANGE, &identity).is_ok(),
            d.version == 6
        );
    }
    for c in cases(&f, "client_hello_parse") {
        let name = str_of(&c["name"]);
        let r = ClientHello::decode_block(&hex(&c["block"]));
        assert_eq!(r.is_ok(), c["ok"].as_bool().unwrap(), "{name}: {r:?}");
        if let Ok(h) = r {
            assert_eq!(
                h.auth_pub_key.map(|k| k.to_der()),
                opt_hex(&c["parsed"]["auth_pub_key"]),
                "{name}"
            );
        }
    }
    for c in cases(&f, "server_handshake_response") {
        let body = hex(&c["body"]);
        let r = ServerHandshakeResponse::decode(&body).unwrap();
        assert_eq!(r.encode().unwrap(), body);
        assert_eq!(pad::pad(&body, 16384).unwrap(), hex(&c["block"]));
    }
}

fn key_from_fixed(f: &Value, name: &str) -> PublicKey {
    public_der(&f["fixed"][name])
}

#[test]
fn new_commands() {
    let f = smp("new_ids.json");
    let fx = &f["fixed"];
    let session = hex(&fx["session_id"]);
    let rcv = private_key(&fx["rcv_auth_ed25519"]);
    for c in cases(&f, "new") {
        let name = str_of(&c["name"]);
        let v = version_of(c);
        let corr = hex(&c["corr_id"]);
        let i = &c["inputs"];
        let data = QueueLinkData {
            fixed: hex(&fx["link_data_fixed"]),
            user: hex(&fx["link_data_user"]),
        };
        let has_data = i["queue_req_data"]["has_data"].as_bool() == Some(true);
        let sender = sender_id_for_corr_id(&corr).to_vec();
        let q = match i["queue_req_data"]["mode"].as_str() {
            None => None,
            Some("M") => Some(QueueReqData::Messaging(
                has_data.then(|| (sender.clone(), data.clone())),
            )),
            Some(_) => {
                Some(QueueReqData::Contact(has_data.then(|| {
                    (hex(&fx["link_id"]), sender.clone(), data.clone())
                })))
            }
        };
        let new = NewQueue {
            rcv_auth_key: key_from_fixed(&f, "rcv_auth_ed25519"),
            rcv_dh_key: key_from_fixed(&f, "rcv_dh_x25519"),
            basic_auth: i["basic_auth"]
                .as_str()
                .map(|s| BasicAuth::new(s.as_bytes()).unwrap()),
            sub_mode: if str_of(&i["sub_mode"]) == "S" {
                SubscriptionMode::Subscribe
            } else {
                SubscriptionMode::OnlyCreate
            },
            queue_req_data: q,
            ntf_creds: i["ntf_creds"].as_bool().unwrap().then(|| NewNtfCreds {
                auth_key: key_from_fixed(&f, "ntf_auth_ed25519"),
                dh_key: key_from_fixed(&f, "ntf_dh_x25519"),
            }),
        };
        let cmd = Command::New(new);
        let bytes = hex(&c["command"]);
        assert_eq!(cmd.encode(v).unwrap(), bytes, "{name} v{v}");
        assert!(bytes.ends_with(&hex(&c["tail"])));
        let Command::New(d) = Command::decode(&bytes, v).unwrap() else {
            panic!()
        };
        let p = &c["parsed"];
        assert_eq!(
            d.basic_auth.as_ref().map(|a| a.as_bytes().to_vec()),
            p["basic_auth"].as_str().map(|s| s.as_bytes().to_vec())
        );
        assert_eq!(d.rcv_auth_key.to_der(), hex(&p["rcv_auth_key"]));
        assert_eq!(d.rcv_dh_key.to_der(), hex(&p["rcv_dh_key"]));
        match (&d.queue_req_data, p["queue_req_data"].as_object()) {
            (None, None) => {}
            (Some(q), Some(pq)) => {
                assert_eq!(
                    q.mode().byte(),
                    pq["mode"].as_str().unwrap().as_bytes()[0],
                    "{name}"
                );
                let pd = &pq["data"];
                assert_eq!(
                    q.sender_id().map(<[u8]>::to_vec),
                    opt_hex(&pd["sender_id"]),
                    "{name}"
                );
                if let QueueReqData::Contact(Some((l, _, _))) = q {
                    assert_eq!(*l, hex(&pd["link_id"]));
                }
            }
            (a, b) => panic!("{name}: {a:?} vs {b:?}"),
        }
        assert_eq!(
            d.ntf_creds.is_some(),
            !p["ntf_creds"].is_null() && p.get("ntf_creds").is_some(),
            "{name}"
        );
        if let Some(s) = p["snd_secure"].as_bool() {
            assert_eq!(
                matches!(d.queue_req_data, Some(QueueReqData::Messaging(_))),
                s
            );
        }
        let t = transmission::encode_command_transmission(
            v,
            &session,
            &corr,
            b"",
            &Command::New(d),
            Some(ClientAuth {
                key: AuthKey::Sign(&rcv),
                service: None,
            }),
        )
        .unwrap();
        assert_eq!(t, hex(&c["transmission"]), "{name}");
    }
}

#[test]
fn ids_responses() {
    let f = smp("new_ids.json");
    for c in cases(&f, "ids") {
        let name = str_of(&c["name"]);
        let v = version_of(c);
        let i = &c["inputs"];
        let ids = QueueIds {
            rcv_id: hex(&f["fixed"]["rcv_id"]),
            snd_id: hex(&f["fixed"]["snd_id"]),
            server_dh_key: key_from_fixed(&f, "server_queue_dh_x25519"),
            queue_mode: i["queue_mode"]
                .as_str()
                .map(|m| QueueMode::from_byte(m.as_bytes()[0]).unwrap()),
            link_id: opt_hex(&i["link_id"]),
            service_id: opt_hex(&i["service_id"]),
            ntf_creds: i["server_ntf_creds"].as_object().map(|n| ServerNtfCreds {
                notifier_id: hex(&n["notifier_id"]),
                dh_key: PublicKey::from_der(&hex(&n["server_ntf_dh_key"])).unwrap(),
            }),
        };
        let bytes = hex(&c["response"]);
        assert_eq!(Response::Ids(ids).encode(v).unwrap(), bytes, "{name} v{v}");
        assert!(bytes.ends_with(&hex(&c["tail"])) || hex(&c["tail"]).is_empty());
        let Response::Ids(d) = Response::decode(&bytes, v).unwrap() else {
            panic!()
        };
        let p = &c["parsed"];
        let expect_mode = p["queue_mode"]
            .as_str()
            .map(|m| QueueMode::from_byte(m.as_bytes()[0]).unwrap());
        assert_eq!(d.queue_mode, expect_mode, "{name}");
        assert_eq!(d.link_id, opt_hex(&p["link_id"]), "{name}");
        assert_eq!(d.service_id, opt_hex(&p["service_id"]), "{name}");
        assert_eq!(
            d.ntf_creds.as_ref().map(|n| n.notifier_id.clone()),
            opt_hex(&p["server_ntf_creds"]["notifier_id"]),
            "{name}"
        );
        assert_eq!(Response::Ids(d).encode(v).unwrap(), bytes);
    }
}

#[test]
fn command_syntax_errors() {
    use smp_core::smp::error::CommandError::*;
    let cmd = |b: &[u8]| Command::decode(b, 18).err();
    assert_eq!(cmd(b"FOO"), Some(ErrorType::Cmd(Unknown)));
    assert_eq!(cmd(b"SUB "), Some(ErrorType::Cmd(Syntax)));
    assert_eq!(cmd(b"SUB x"), Some(ErrorType::Cmd(Syntax)));
    assert_eq!(cmd(b"ACK"), Some(ErrorType::Cmd(Syntax)));
    assert_eq!(cmd(b"ACK \x01ab"), Some(ErrorType::Cmd(Syntax)));
    assert_eq!(cmd(b"SEND X hello"), Some(ErrorType::Cmd(Syntax)));
    assert_eq!(cmd(b"ACK \x00"), None);
    // reserved flag bytes are skipped
    assert_eq!(
        Command::decode(b"SEND Tabc body", 18),
        Ok(Command::Send {
            notification: true,
            body: b"body".to_vec()
        })
    );
    // credentials
    assert_eq!(
        Command::Sub.check_credentials(true, b""),
        Err(ErrorType::Cmd(NoAuth))
    );
    assert_eq!(
        Command::Ping.check_credentials(false, b"x"),
        Err(ErrorType::Cmd(HasAuth))
    );
    assert_eq!(
        Command::Lget.check_credentials(true, b"x"),
        Err(ErrorType::Cmd(HasAuth))
    );
    assert_eq!(
        (Command::Send {
            notification: false,
            body: vec![]
        })
        .check_credentials(false, b""),
        Err(ErrorType::Cmd(NoEntity))
    );
    assert_eq!(Response::decode(b"OK x", 18), Err(ErrorType::Cmd(Syntax)));
    assert_eq!(
        Response::Pong.check_credentials(b"e"),
        Err(ErrorType::Cmd(HasAuth))
    );
    let _ = TransmissionAuth::decode(&[]);
}
