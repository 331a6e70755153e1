//! `vectors/agent/envelopes.json`: queue infos, queue URIs (binary), e2e
//! params, every `AMessage` inside `AgentMessage`, conn infos, the four
//! agent envelopes and two per-queue e2e envelopes. Every case is built
//! from its inputs (keys, servers, ids, texts) and encoded, the bytes
//! compared exactly, then the vector bytes are decoded and compared with
//! the same value.

mod support;

use serde_json::Value;
use smp_core::address::ServerAddress;
use smp_core::agent::envelope::{
    self, AgentMsgEnvelope, CONFIRMATION_ENVELOPE_LENGTH, ClientMessage, ClientMsgEnvelope,
    E2E_CONFIRMATION_LENGTH, EnvelopeError, PrivHeader, PubHeader,
};
use smp_core::agent::message::{
    AMessage, AMessageReceipt, APrivHeader, AgentMessage, AgentMessageError,
};
use smp_core::agent::queue_info::{SmpQueueInfo, SndQAddr};
use smp_core::agent::x3dh::{E2eParams, KemParams};
use smp_core::crypto::digest::{sha256, sha512};
use smp_core::crypto::{CbNonce, KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::encoding::{DecodeError, Writer};
use smp_core::smp::command::RelayServer;
use smp_core::smp::queue_uri::QueueUriError;
use smp_core::smp::{QueueMode, QueueUri, VersionRange};
use support::{agent, agent_private_key, bytes, cases, hex, str_of, u64_of};

/// The sender id of the queue created for rotation (QADD/QKEY); the vector
/// has it only inside those messages, not as a separate field.
const ROTATED_SENDER_ID: &str = "185e098834fade5983a6bd2fc59bde3ff1cdee294885b17b";
/// The receipts' message hashes of the A_RCVD cases (only inside the bytes).
const RECEIPT_HASH_7: &str = "a5412b94868cf109e6d5420e4bfc7aa878d96ea8220d6acfe773aaf48bcad077";
const RECEIPT_HASH_8: &str = "62122efb97975063340aeaa800e3f540bae146de95787aff6363b3d26ea1b011";
/// The chat JSON inside the conn infos and A_MSG (only inside the bytes).
const X_OK: &str = r#"{"v":"1-18","event":"x.ok","params":{}}"#;
const ALICE_X_INFO: &str =
    r#"{"v":"1-18","event":"x.info","params":{"profile":{"displayName":"alice","fullName":""}}}"#;
const BOB_X_INFO: &str =
    r#"{"v":"1-18","event":"x.info","params":{"profile":{"displayName":"bob","fullName":""}}}"#;

fn vectors() -> Value {
    agent("envelopes.json")
}

fn key(v: &Value, name: &str) -> PrivateKey {
    agent_private_key(&v["keys"][name])
}

fn public(v: &Value, name: &str) -> PublicKey {
    key(v, name).public_key()
}

fn server(v: &Value, name: &str) -> ServerAddress {
    ServerAddress::parse(str_of(&v["servers"][name]["str"])).expect("vector server")
}

fn sender_id(v: &Value, name: &str) -> Vec<u8> {
    hex(&v["sender_ids"][name])
}

fn mode(m: &Value) -> Option<QueueMode> {
    match m.as_str() {
        None => None,
        Some("None") => None,
        Some("M") => Some(QueueMode::Messaging),
        Some("C") => Some(QueueMode::Contact),
        Some(x) => panic!("unknown queue mode {x}"),
    }
}

fn alice_addr(v: &Value) -> SndQAddr {
    SndQAddr {
        server: server(v, "alice"),
        sender_id: sender_id(v, "alice_queue"),
    }
}

/// Bob's reply queue as the vectors use it everywhere.
fn bob_queue_info(v: &Value, client_version: u16, queue_mode: Option<QueueMode>) -> SmpQueueInfo {
    SmpQueueInfo {
        client_version,
        server: server(v, "bob"),
        sender_id: sender_id(v, "bob_queue"),
        dh_key: public(v, "bob_queue_e2e_x25519"),
        queue_mode,
    }
}

/// Bob's e2e ratchet params at version 3 without KEM (the confirmation's).
fn bob_e2e_params(v: &Value, version: u16, kem: Option<KemParams>) -> E2eParams {
    E2eParams {
        version,
        key1: public(v, "bob_x3dh_1"),
        key2: public(v, "bob_x3dh_2"),
        kem,
    }
}

#[test]
fn keys_follow_their_labels_and_servers_their_binary_form() {
    let v = vectors();
    let keys = v["keys"].as_object().expect("keys");
    assert!(!keys.is_empty());
    for (name, k) in keys {
        let sk = agent_private_key(k);
        let label = format!("agent-vectors/{}", str_of(&k["label"]));
        let want = match sk.algorithm() {
            KeyAlgorithm::X448 => sha512(label.as_bytes())[..56].to_vec(),
            _ => sha256(label.as_bytes()).to_vec(),
        };
        assert_eq!(sk.raw(), want, "private key of {name} from its label");
    }
    let servers = v["servers"].as_object().expect("servers");
    assert_eq!(servers.len(), 2);
    for name in servers.keys() {
        let s = server(&v, name);
        let mut w = Writer::new();
        RelayServer::from_address(&s).write(&mut w).unwrap();
        let bin = w.into_vec();
        assert_eq!(bin, hex(&v["servers"][name]["bin"]), "server {name}");
        let mut r = smp_core::encoding::Reader::new(&bin);
        assert_eq!(RelayServer::read(&mut r).unwrap().to_address().unwrap(), s);
        r.end().unwrap();
    }
    for id in v["sender_ids"].as_object().expect("sender ids").values() {
        assert_eq!(hex(id).len(), 24);
    }
}

#[test]
fn smp_queue_info_every_client_version() {
    let v = vectors();
    for c in cases(&v, "smp_queue_info") {
        let ver = u64_of(&c["client_version"]) as u16;
        let q = bob_queue_info(&v, ver, mode(&c["queue_mode"]));
        let want = hex(&c["encoded"]);
        let enc = q.encode().unwrap();
        assert_eq!(enc, want, "v{ver} {:?}", q.queue_mode);
        assert_eq!(enc.len() as u64, u64_of(&c["encoded_length"]));
        let back = SmpQueueInfo::decode(&want).unwrap();
        let expect = SmpQueueInfo {
            queue_mode: mode(&c["parsed_queue_mode"]),
            ..q
        };
        assert_eq!(back, expect, "v{ver} decoded");
        assert_eq!(back.encode().unwrap(), want, "v{ver} re-encoded");
    }
}

#[test]
fn smp_queue_uri_binary_every_case() {
    let v = vectors();
    for c in cases(&v, "smp_queue_uri_binary") {
        let r = c["client_version_range"].as_array().expect("range");
        let range = VersionRange::new(u64_of(&r[0]) as u16, u64_of(&r[1]) as u16).unwrap();
        let uri = QueueUri {
            client_versions: range,
            server: server(&v, "bob"),
            sender_id: sender_id(&v, "bob_queue"),
            dh_key: public(&v, "bob_queue_e2e_x25519"),
            queue_mode: mode(&c["queue_mode"]),
        };
        let want = hex(&c["encoded"]);
        assert_eq!(uri.encode().unwrap(), want, "{range:?}");
        // Every case's tail carries its mode, so it reads back unchanged.
        assert_eq!(QueueUri::decode(&want).unwrap(), uri, "{range:?} decoded");
        // The same queue as a queue info at the range's top version.
        let info = SmpQueueInfo::from_uri(&uri, range.max());
        assert_eq!(info.to_uri(range), uri);
    }
}

/// The KEM part of an e2e-params case, rebuilt from its description.
fn kem_of(c: &Value) -> Option<KemParams> {
    let d = c["kem"].as_str()?;
    if d.starts_with("proposed") {
        // "(0..255)*4 ++ 134 zero bytes"
        let mut pk: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
        pk.extend([0; 134]);
        assert_eq!(pk.len(), 1158);
        Some(KemParams::Proposed { public: pk })
    } else if d == "accepted" {
        assert!(str_of(&c["note"]).contains("ct = 1039 zero bytes, pk = 1158 zero bytes"));
        Some(KemParams::Accepted {
            ciphertext: vec![0; 1039],
            public: vec![0; 1158],
        })
    } else {
        panic!("unknown KEM description {d}")
    }
}

#[test]
fn e2e_ratchet_params_every_case() {
    let v = vectors();
    for c in cases(&v, "e2e_ratchet_params") {
        let p = bob_e2e_params(&v, u64_of(&c["version"]) as u16, kem_of(c));
        let want = bytes(&c["encoded"]);
        assert_eq!(p.encode().unwrap(), want, "{}", c["kem"]);
        assert_eq!(want.len() as u64, u64_of(&c["encoded_length"]));
        let mut r = smp_core::encoding::Reader::new(&want);
        assert_eq!(E2eParams::read(&mut r).unwrap(), p);
        r.end().unwrap();
    }
}

/// The `AMessage` a case's name stands for, built from the vector's keys,
/// servers and ids.
fn a_message_of(v: &Value, name: &str) -> AMessage {
    let rotated = SmpQueueInfo {
        sender_id: hex::decode(ROTATED_SENDER_ID).unwrap(),
        ..bob_queue_info(v, 4, Some(QueueMode::Messaging))
    };
    let receipt = |id, h: &str, info: &[u8]| AMessageReceipt {
        agent_msg_id: id,
        msg_hash: hex::decode(h).unwrap(),
        rcpt_info: info.to_vec(),
    };
    match name {
        "HELLO" => AMessage::Hello,
        "A_MSG" => AMessage::AMsg(X_OK.as_bytes().to_vec()),
        "A_RCVD one receipt, empty rcptInfo" => {
            AMessage::ARcvd(vec![receipt(7, RECEIPT_HASH_7, b"")])
        }
        "A_RCVD two receipts" => AMessage::ARcvd(vec![
            receipt(7, RECEIPT_HASH_7, b""),
            receipt(8, RECEIPT_HASH_8, b"info"),
        ]),
        "A_QCONT" => AMessage::AQcont(alice_addr(v)),
        "QADD" => AMessage::Qadd(vec![(
            rotated.to_uri(VersionRange::new(1, 4).unwrap()),
            Some(alice_addr(v)),
        )]),
        "QKEY" => AMessage::Qkey(vec![(
            SmpQueueInfo {
                dh_key: public(v, "alice_snd_e2e_x25519"),
                ..rotated
            },
            public(v, "bob_snd_auth_ed25519"),
        )]),
        "QUSE" => AMessage::Quse(vec![(alice_addr(v), true)]),
        "QTEST" => AMessage::Qtest(vec![alice_addr(v)]),
        "EREADY" => AMessage::Eready(5),
        n => panic!("unknown AMessage case {n}"),
    }
}

#[test]
fn agent_messages_every_case() {
    let v = vectors();
    let am = &v["agent_messages"];
    assert!(str_of(&am["prev_msg_hash_rule"]).contains("'previous agent message'"));
    let prev = hex(&am["prev_msg_hash"]);
    assert_eq!(prev, sha256(b"previous agent message"));
    let header = APrivHeader {
        snd_msg_id: u64_of(&am["snd_msg_id"]) as i64,
        prev_msg_hash: prev,
    };
    let list = cases(am, "cases");
    assert_eq!(list.len(), 10);
    for c in list {
        let name = str_of(&c["name"]);
        let a = a_message_of(&v, name);
        let a_bytes = hex(&c["a_message"]);
        assert_eq!(a.encode().unwrap(), a_bytes, "{name}");
        assert_eq!(AMessage::decode(&a_bytes).unwrap(), a, "{name} decoded");
        let m = AgentMessage::Message {
            header: header.clone(),
            message: a,
        };
        let m_bytes = hex(&c["agent_message"]);
        assert_eq!(m.encode().unwrap(), m_bytes, "{name} in AgentMessage");
        assert_eq!(AgentMessage::decode(&m_bytes).unwrap(), m, "{name} decoded");
    }
}

#[test]
fn receipt_hash_is_the_hash_of_the_received_plaintext() {
    let v = vectors();
    let c = &cases(&v["agent_messages"], "cases")[1];
    let received = hex(&c["agent_message"]);
    let r = AMessageReceipt::for_received(42, &received, Vec::new());
    assert_eq!(r.msg_hash, sha256(&received));
    assert_eq!(r.agent_msg_id, 42);
}

#[test]
fn conn_infos_and_ratchet_info() {
    let v = vectors();
    let am = &v["agent_messages"];
    let cases = [
        (
            "agent_conn_info",
            AgentMessage::ConnInfo(ALICE_X_INFO.as_bytes().to_vec()),
        ),
        (
            "agent_conn_info_reply",
            AgentMessage::ConnInfoReply {
                reply_queues: vec![bob_queue_info(&v, 4, Some(QueueMode::Messaging))],
                conn_info: BOB_X_INFO.as_bytes().to_vec(),
            },
        ),
        ("agent_ratchet_info", AgentMessage::RatchetInfo(Vec::new())),
    ];
    for (field, m) in cases {
        let want = hex(&am[field]);
        assert_eq!(m.encode().unwrap(), want, "{field}");
        assert_eq!(AgentMessage::decode(&want).unwrap(), m, "{field} decoded");
    }
}

/// The agent envelope a case stands for.
fn envelope_of(v: &Value, c: &Value, placeholder: &[u8]) -> AgentMsgEnvelope {
    let name = str_of(&c["name"]);
    let e = match name {
        "AgentConfirmation from the joining party (with e2e params)" => {
            AgentMsgEnvelope::Confirmation {
                agent_version: 7,
                e2e_params: Some(bob_e2e_params(v, 3, None)),
                enc_conn_info: placeholder.to_vec(),
            }
        }
        "AgentConfirmation from the initiating party (no e2e params)" => {
            AgentMsgEnvelope::Confirmation {
                agent_version: 7,
                e2e_params: None,
                enc_conn_info: placeholder.to_vec(),
            }
        }
        "AgentMsgEnvelope" => AgentMsgEnvelope::Message {
            agent_version: 7,
            enc_agent_message: placeholder.to_vec(),
        },
        "AgentInvitation (to a contact address; connInfo = x.contact JSON, per-queue e2e only)" => {
            AgentMsgEnvelope::Invitation {
                agent_version: 7,
                conn_req: str_of(&c["link"]).to_string(),
                conn_info: hex(&c["conn_info"]),
            }
        }
        "AgentRatchetKey (ratchet re-sync)" => AgentMsgEnvelope::RatchetKey {
            agent_version: 7,
            e2e_params: bob_e2e_params(v, 3, None),
            info: AgentMessage::RatchetInfo(Vec::new()).encode().unwrap(),
        },
        n => panic!("unknown envelope case {n}"),
    };
    let kind = match e {
        AgentMsgEnvelope::Confirmation { .. } => "AgentConfirmation",
        AgentMsgEnvelope::Message { .. } => "AgentMsgEnvelope",
        AgentMsgEnvelope::Invitation { .. } => "AgentInvitation",
        AgentMsgEnvelope::RatchetKey { .. } => "AgentRatchetKey",
    };
    assert_eq!(kind, str_of(&c["parsed_type"]), "{name}");
    e
}

fn placeholder(v: &Value) -> Vec<u8> {
    // Only the first case names it; the others carry the same bytes.
    str_of(&cases(v, "envelopes")[0]["encConnInfo_placeholder"])
        .as_bytes()
        .to_vec()
}

#[test]
fn agent_envelopes_every_case() {
    let v = vectors();
    let ph = placeholder(&v);
    for c in cases(&v, "envelopes") {
        let e = envelope_of(&v, c, &ph);
        let want = hex(&c["encoded"]);
        assert_eq!(e.encode().unwrap(), want, "{}", c["name"]);
        assert_eq!(want.len() as u64, u64_of(&c["encoded_length"]));
        assert_eq!(AgentMsgEnvelope::decode(&want).unwrap(), e, "{}", c["name"]);
    }
    // The x.contact JSON of the invitation is the chat's text.
    let inv = &cases(&v, "envelopes")[3];
    let info = String::from_utf8(hex(&inv["conn_info"])).unwrap();
    assert!(info.starts_with(r#"{"v":"1-18","event":"x.contact""#));
}

fn nonce_of(label: &str) -> CbNonce {
    CbNonce::normalize(&sha256(format!("agent-vectors/nonce/{label}").as_bytes())[..24])
}

#[test]
fn contact_invitation_client_msg_envelope() {
    let v = vectors();
    let c = &cases(&v, "client_msg_envelopes")[0];
    assert!(str_of(&c["name"]).starts_with("AgentInvitation sent to a contact address"));
    let one_off = agent_private_key(&c["sender_one_off_key"]);
    let contact = agent_private_key(&c["contact_queue_e2e_key"]);
    let secret = envelope::e2e_secret(&one_off, &contact.public_key()).unwrap();
    assert_eq!(secret.to_vec(), hex(&c["dh_secret"]));
    let rcv_secret = envelope::e2e_secret(&contact, &one_off.public_key()).unwrap();
    assert_eq!(rcv_secret, secret);
    let nonce = CbNonce(support::arr(&c["nonce"]));
    assert_eq!(nonce, nonce_of("agent-invitation"));

    let ph = placeholder(&v);
    let inv = envelope_of(&v, &cases(&v, "envelopes")[3], &ph);
    let cm = ClientMessage {
        header: PrivHeader::Empty,
        body: inv.encode().unwrap(),
    };
    assert_eq!(cm.encode().unwrap(), hex(&c["client_message"]));

    let header = PubHeader {
        client_version: 4,
        e2e_key: Some(one_off.public_key()),
    };
    let mut w = Writer::new();
    header.write(&mut w).unwrap();
    assert_eq!(w.into_vec(), hex(&c["pub_header"]));
    assert_eq!(header.padded_length() as u64, u64_of(&c["padded_length"]));
    assert_eq!(E2E_CONFIRMATION_LENGTH as u64, u64_of(&c["padded_length"]));

    let want = bytes(&c["envelope"]);
    assert_eq!(want.len(), CONFIRMATION_ENVELOPE_LENGTH);
    let sealed = envelope::seal_once(&one_off, &contact.public_key(), 4, nonce, &inv).unwrap();
    assert_eq!(sealed.encode().unwrap(), want, "sealed bytes");

    let got = ClientMsgEnvelope::decode(&want).unwrap();
    assert_eq!(got.header, header);
    assert_eq!(got.nonce, nonce);
    let (ph_got, env) = envelope::open(&rcv_secret, &got).unwrap();
    assert_eq!(ph_got, PrivHeader::Empty);
    assert_eq!(env, inv);
}

#[test]
fn legacy_confirmation_client_msg_envelope() {
    let v = vectors();
    let c = &cases(&v, "client_msg_envelopes")[1];
    assert!(str_of(&c["name"]).starts_with("legacy confirmation: PrivHeader 'K'"));
    let auth = agent_private_key(&c["sender_auth_key"]);
    assert_eq!(auth.public_key(), public(&v, "bob_snd_auth_ed25519"));
    // Bob's new send-queue e2e key against Alice's queue key (her dh=).
    let bob = key(&v, "bob_snd_e2e_x25519");
    let alice = key(&v, "alice_queue_e2e_x25519");
    let secret = envelope::e2e_secret(&bob, &alice.public_key()).unwrap();
    assert_eq!(secret.to_vec(), hex(&c["dh_secret"]));
    assert_eq!(
        envelope::e2e_secret(&alice, &bob.public_key()).unwrap(),
        secret
    );
    let nonce = CbNonce(support::arr(&c["nonce"]));
    assert_eq!(nonce, nonce_of("legacy-confirmation"));

    let ph = placeholder(&v);
    let conf = envelope_of(&v, &cases(&v, "envelopes")[0], &ph);
    let cm = ClientMessage {
        header: PrivHeader::Confirmation(auth.public_key()),
        body: conf.encode().unwrap(),
    };
    let cm_bytes = cm.encode().unwrap();
    assert_eq!(cm_bytes, hex(&c["client_message"]));
    assert!(cm_bytes.starts_with(&hex(&c["client_message_prefix"])));

    let header = PubHeader {
        client_version: 4,
        e2e_key: Some(bob.public_key()),
    };
    let want = bytes(&c["envelope"]);
    assert_eq!(want.len(), CONFIRMATION_ENVELOPE_LENGTH);
    let sealed = envelope::seal(
        &secret,
        header.clone(),
        nonce,
        PrivHeader::Confirmation(auth.public_key()),
        &conf,
    )
    .unwrap();
    assert_eq!(sealed.encode().unwrap(), want, "sealed bytes");

    let got = ClientMsgEnvelope::decode(&want).unwrap();
    assert_eq!(got.header, header);
    let (priv_header, env) = envelope::open(&secret, &got).unwrap();
    assert_eq!(priv_header, PrivHeader::Confirmation(auth.public_key()));
    assert_eq!(env, conf);
    // A wrong secret does not open it.
    assert!(matches!(
        envelope::open(&[0; 32], &got),
        Err(EnvelopeError::Message(_))
    ));
}

#[test]
fn truncated_agent_messages_are_refused() {
    let v = vectors();
    for c in cases(&v["agent_messages"], "cases") {
        let name = str_of(&c["name"]);
        if name == "A_MSG" {
            continue; // its body is a tail: every prefix is a shorter message
        }
        let b = hex(&c["agent_message"]);
        for n in 0..b.len() {
            assert!(AgentMessage::decode(&b[..n]).is_err(), "{name} cut at {n}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(
            matches!(
                AgentMessage::decode(&longer),
                Err(AgentMessageError::Decode(DecodeError::TrailingBytes(1)))
            ),
            "{name} with a trailing byte"
        );
    }
}

#[test]
fn malformed_inputs_get_typed_errors() {
    let v = vectors();
    let msgs = cases(&v["agent_messages"], "cases");
    let by_name = |n: &str| hex(&msgs.iter().find(|c| c["name"] == n).expect("case")["a_message"]);

    // Unknown tags.
    let mut qt = by_name("QTEST");
    qt[1] = b'X';
    assert_eq!(
        AMessage::decode(&qt),
        Err(AgentMessageError::UnknownAMessageTag(b"QX".to_vec()))
    );
    let mut env = hex(&cases(&v, "envelopes")[2]["encoded"]);
    env[2] = b'Z';
    assert_eq!(
        AgentMsgEnvelope::decode(&env),
        Err(EnvelopeError::UnknownTag(b'Z'))
    );
    let mut ci = hex(&v["agent_messages"]["agent_conn_info"]);
    ci[0] = b'Y';
    assert_eq!(
        AgentMessage::decode(&ci),
        Err(AgentMessageError::UnknownTag(b'Y'))
    );

    // Empty NonEmpty lists.
    for tag in [&b"V"[..], b"QC", b"QA", b"QK", b"QU", b"QT"] {
        let mut b = tag.to_vec();
        b.push(0);
        assert!(AMessage::decode(&b).is_err(), "{tag:?} with no items");
    }
    assert_eq!(
        AMessage::decode(b"QT\x00"),
        Err(AgentMessageError::Decode(DecodeError::EmptyList))
    );
    assert_eq!(
        AgentMessage::decode(b"D\x00{}"),
        Err(AgentMessageError::Decode(DecodeError::EmptyList))
    );

    // Wrong key kinds: an Ed25519 key where the X25519 dh key goes (same
    // DER length, other OID).
    let x25519_oid = hex::decode("302a300506032b656e032100").unwrap();
    let ed25519_oid = hex::decode("302a300506032b6570032100").unwrap();
    let replace = |b: &[u8], from: &[u8], to: &[u8]| {
        let i = b
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern");
        let mut out = b.to_vec();
        out[i..i + from.len()].copy_from_slice(to);
        out
    };
    let qi = hex(&cases(&v, "smp_queue_info")[0]["encoded"]);
    assert_eq!(
        SmpQueueInfo::decode(&replace(&qi, &x25519_oid, &ed25519_oid)),
        Err(QueueUriError::DhKey)
    );
    // An X448 key as the QKEY sender auth key.
    let qkey = AMessage::Qkey(vec![(
        bob_queue_info(&v, 4, Some(QueueMode::Messaging)),
        public(&v, "alice_x3dh_1"),
    )]);
    assert_eq!(
        AMessage::decode(&qkey.encode().unwrap()),
        Err(AgentMessageError::AuthKey)
    );
    // X25519 keys where the e2e params need X448.
    let wrong = AgentMsgEnvelope::RatchetKey {
        agent_version: 7,
        e2e_params: E2eParams {
            version: 3,
            key1: public(&v, "alice_queue_e2e_x25519"),
            key2: public(&v, "bob_queue_e2e_x25519"),
            kem: None,
        },
        info: b"R".to_vec(),
    };
    assert!(matches!(
        AgentMsgEnvelope::decode(&wrong.encode().unwrap()),
        Err(EnvelopeError::Decode(DecodeError::Invalid(_)))
    ));
    // An X448 key in the public header of an e2e envelope.
    let mut w = Writer::new();
    w.u16(4).u8(b'1');
    w.short(&public(&v, "alice_x3dh_1").to_der()).unwrap();
    w.raw(&[0; 24]).raw(b"box");
    assert!(ClientMsgEnvelope::decode(&w.into_vec()).is_err());
    // An unknown private header.
    assert!(ClientMessage::decode(b"Zbody").is_err());

    // Truncated envelopes.
    let conf = hex(&cases(&v, "envelopes")[0]["encoded"]);
    for n in 0..40 {
        assert!(AgentMsgEnvelope::decode(&conf[..n]).is_err(), "cut at {n}");
    }
    let inv = hex(&cases(&v, "envelopes")[3]["encoded"]);
    assert!(AgentMsgEnvelope::decode(&inv[..100]).is_err());
}

#[test]
fn integrity_chain_over_vector_messages() {
    // The vector's messages all claim id 42 after the same previous
    // message: the first is Ok for a receiver at (41, that hash), the same
    // id again is a duplicate, and an id jump is reported as skipped.
    let v = vectors();
    let list = cases(&v["agent_messages"], "cases");
    let prev = hex(&v["agent_messages"]["prev_msg_hash"]);
    let mut rcv = smp_core::agent::message::RcvMsgChain::from_state(41, prev);
    use smp_core::agent::message::MsgIntegrity;
    let first = hex(&list[0]["agent_message"]);
    assert_eq!(rcv.receive(&first).unwrap().1, Some(MsgIntegrity::Ok));
    assert_eq!(rcv.last_hash(), sha256(&first));
    let second = hex(&list[1]["agent_message"]);
    assert_eq!(
        rcv.receive(&second).unwrap().1,
        Some(MsgIntegrity::Duplicate)
    );
    let mut later = rcv.clone();
    let mut snd = smp_core::agent::message::SndMsgChain::from_state(44, sha256(&second).to_vec());
    let (id, plain) = snd.next_message(AMessage::Hello).unwrap();
    assert_eq!(id, 45);
    assert_eq!(
        later.receive(&plain).unwrap().1,
        Some(MsgIntegrity::Skipped { from: 43, to: 44 })
    );
}

/// The §8 sizes against the full-size runs of `flow.json` (no PQ) and
/// `pq.json` (PQ on, agent version 7): every step that carries a ratchet
/// body and an e2e envelope has the padded and envelope lengths named here.
#[test]
fn sizes_agree_with_the_full_size_flows() {
    use smp_core::agent::envelope::{
        AGENT_MSG_ENVELOPE_OVERHEAD, MESSAGE_ENVELOPE_LENGTH, agent_msg_padded_length,
        conn_info_padded_length,
    };
    for (file, pq) in [("flow.json", false), ("pq.json", true)] {
        let f = agent(file);
        let steps = f["flow"].as_object().expect("flow steps");
        let (mut confs, mut msgs) = (0, 0);
        for step in steps.values() {
            let items = match step.as_array() {
                Some(list) => list.iter().collect::<Vec<_>>(),
                None => vec![step],
            };
            for s in items {
                let body = &s["ratchet"]["body_ciphertext"]["length"];
                if body.is_null() || s["envelope"]["length"].is_null() {
                    continue;
                }
                let (body, env) = (u64_of(body) as usize, u64_of(&s["envelope"]["length"]));
                if !s["enc_conn_info"].is_null() {
                    assert_eq!(body, conn_info_padded_length(7, pq), "{file}");
                    assert_eq!(env as usize, CONFIRMATION_ENVELOPE_LENGTH, "{file}");
                    confs += 1;
                } else if !s["enc_agent_message"].is_null() {
                    assert_eq!(body, agent_msg_padded_length(7, pq), "{file}");
                    assert_eq!(env as usize, MESSAGE_ENVELOPE_LENGTH, "{file}");
                    if !s["agent_msg_envelope"].is_null() {
                        assert_eq!(
                            u64_of(&s["agent_msg_envelope"]["length"]) as usize,
                            u64_of(&s["enc_agent_message"]["length"]) as usize
                                + AGENT_MSG_ENVELOPE_OVERHEAD,
                            "{file}"
                        );
                    }
                    msgs += 1;
                }
            }
        }
        assert!(
            confs >= 2 && msgs >= 4,
            "{file}: {confs} confirmations, {msgs} messages"
        );
    }
}
