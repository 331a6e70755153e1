//! The whole fast-flow connection of vectors/agent/flow.json at real sizes,
//! rebuilt layer by layer by both parties: Bob's confirmation with his reply
//! queue, Alice's confirmation, three messages, a reply, a receipt and an
//! out-of-order reception. Every envelope is re-made byte for byte by its
//! sender and opened by its receiver.

mod support;

use serde_json::Value;
use smp_core::agent::envelope::{
    AgentMsgEnvelope, ClientMessage, ClientMsgEnvelope, PrivHeader, PubHeader, e2e_secret, open,
    seal,
};
use smp_core::agent::message::{
    AMessage, AMessageReceipt, AgentMessage, MsgIntegrity, RcvMsgChain, SndMsgChain,
};
use smp_core::agent::queue_info::SmpQueueInfo;
use smp_core::agent::ratchet::{DecryptPath, Ratchet, SkippedKeys};
use smp_core::agent::x3dh::{RatchetEntropy, generate_e2e_params, x3dh_creator, x3dh_joiner};
use smp_core::crypto::PrivateKey;
use smp_core::crypto::digest::sha256;
use smp_core::crypto::secretbox::CbNonce;
use support::{Scripted, agent, agent_private_key, bytes, hex, party, str_of};

const AGENT_VERSION: u16 = 7;
const CLIENT_VERSION: u16 = 4;

struct Side {
    ratchet: Option<Ratchet>,
    ent: Scripted,
    skipped: SkippedKeys,
    snd: SndMsgChain,
    rcv: RcvMsgChain,
}

fn nonce(v: &Value) -> CbNonce {
    CbNonce(hex(v).try_into().unwrap())
}

fn path(p: DecryptPath) -> &'static str {
    match p {
        DecryptPath::Same => "same",
        DecryptPath::Advance => "advance",
        DecryptPath::Skipped => "skipped",
    }
}

/// Seals `env` as the sender would and compares every layer with `step`.
fn send(
    step: &Value,
    secret: &[u8; 32],
    sender_key: Option<&PrivateKey>,
    env: &AgentMsgEnvelope,
    env_field: &str,
) -> Vec<u8> {
    assert_eq!(
        env.encode().unwrap(),
        bytes(&step[env_field]),
        "{env_field}"
    );
    if let Some(cm) = step.get("client_message") {
        let m = ClientMessage {
            header: PrivHeader::Empty,
            body: env.encode().unwrap(),
        };
        assert_eq!(m.encode().unwrap(), bytes(cm), "client_message");
    }
    let header = PubHeader {
        client_version: CLIENT_VERSION,
        e2e_key: sender_key.map(PrivateKey::public_key),
    };
    let sealed = seal(
        secret,
        header,
        nonce(&step["nonce"]),
        PrivHeader::Empty,
        env,
    )
    .unwrap();
    let wire = sealed.encode().unwrap();
    assert_eq!(
        hex::encode(&wire),
        hex::encode(bytes(&step["envelope"])),
        "envelope"
    );
    wire
}

/// Opens a wire envelope with the recipient's per-queue key.
fn receive(wire: &[u8], secret: &[u8; 32], with_key: bool) -> AgentMsgEnvelope {
    let env = ClientMsgEnvelope::decode(wire).unwrap();
    assert_eq!(env.header.client_version, CLIENT_VERSION);
    assert_eq!(env.header.e2e_key.is_some(), with_key);
    let (ph, agent_env) = open(secret, &env).unwrap();
    assert_eq!(
        ph,
        PrivHeader::Empty,
        "fast flow: no key in the private header"
    );
    agent_env
}

fn decrypt(side: &mut Side, enc: &[u8], want_path: &str) -> Vec<u8> {
    let rc = side.ratchet.as_ref().unwrap();
    let d = rc.decrypt(&side.skipped, enc, &mut side.ent).unwrap();
    assert_eq!(path(d.path), want_path);
    side.ratchet = Some(d.ratchet);
    d.skipped.apply(&mut side.skipped);
    d.plaintext.unwrap()
}

fn enc_message(env: AgentMsgEnvelope) -> Vec<u8> {
    match env {
        AgentMsgEnvelope::Message {
            agent_version,
            enc_agent_message,
        } => {
            assert_eq!(agent_version, AGENT_VERSION);
            enc_agent_message
        }
        e => panic!("expected a message envelope, got {e:?}"),
    }
}

/// Ratchet-encrypts an agent message as `side` sends it (checked against
/// the step's `enc_agent_message`) and seals its envelope.
fn send_agent_message(side: &mut Side, step: &Value, plain: &[u8], secret: &[u8; 32]) -> Vec<u8> {
    let enc = side
        .ratchet
        .as_mut()
        .unwrap()
        .encrypt(plain, 15840, None)
        .unwrap();
    assert_eq!(
        hex::encode(&enc),
        hex::encode(bytes(&step["enc_agent_message"]))
    );
    let env = AgentMsgEnvelope::Message {
        agent_version: AGENT_VERSION,
        enc_agent_message: enc,
    };
    send(step, secret, None, &env, "agent_msg_envelope")
}

#[test]
fn fast_flow_at_real_sizes() {
    let v = agent("flow.json");
    let keys = &v["keys"];
    let x448 = &v["x448_keys"];
    let f = &v["flow"];
    let alice_queue = agent_private_key(&keys["alice_queue_e2e_x25519"]);
    let bob_queue = agent_private_key(&keys["bob_queue_e2e_x25519"]);
    let bob_snd = agent_private_key(&keys["bob_snd_e2e_x25519"]);
    let alice_snd = agent_private_key(&keys["alice_snd_e2e_x25519"]);
    let mut alice = Side {
        ratchet: None,
        ent: party(x448, "alice"),
        skipped: SkippedKeys::new(),
        snd: SndMsgChain::new(),
        rcv: RcvMsgChain::new(),
    };
    let mut bob = Side {
        ratchet: None,
        ent: party(x448, "bob"),
        skipped: SkippedKeys::new(),
        snd: SndMsgChain::new(),
        rcv: RcvMsgChain::new(),
    };

    // The invitation: Alice's link keys (no KEM in this flow).
    assert!(f["invitation"]["alice_kem_keypair"].is_null());
    let (alice_keys, alice_params) = generate_e2e_params(3, None, &mut alice.ent).unwrap();

    // Step 1: Bob joins and sends his confirmation with his reply queue.
    let s1 = &f["step1_bob_confirmation"];
    let (bob_keys, bob_params) = generate_e2e_params(3, None, &mut bob.ent).unwrap();
    assert_eq!(bob_params.encode().unwrap(), hex(&s1["e2e_params"]));
    let (init, kem) = x3dh_joiner(&bob_keys, &alice_params).unwrap();
    assert_eq!(init.assoc_data, hex(&f["x3dh"]["ad"]));
    assert_eq!(init.root_key.to_vec(), hex(&f["x3dh"]["rk"]));
    let ratchet_key = bob.ent.x448_key();
    bob.ratchet =
        Some(Ratchet::init_joiner(3, alice_params.key2.clone(), ratchet_key, init, kem).unwrap());
    let reply_queue = SmpQueueInfo::decode(&hex(&s1["reply_queue_info"])).unwrap();
    assert_eq!(reply_queue.encode().unwrap(), hex(&s1["reply_queue_info"]));
    assert_eq!(
        reply_queue.dh_key,
        bob_queue.public_key(),
        "reply queue carries Bob's queue key"
    );
    let conn_info_reply = AgentMessage::ConnInfoReply {
        reply_queues: vec![reply_queue],
        conn_info: hex(&s1["conn_info"]),
    }
    .encode()
    .unwrap();
    assert_eq!(conn_info_reply, hex(&s1["agent_conn_info_reply"]));
    let enc = bob
        .ratchet
        .as_mut()
        .unwrap()
        .encrypt(&conn_info_reply, 14832, None)
        .unwrap();
    assert_eq!(hex::encode(&enc), hex::encode(bytes(&s1["enc_conn_info"])));
    assert_eq!(
        bob.snd.record(&conn_info_reply),
        1,
        "the confirmation consumes id 1"
    );
    let conf = AgentMsgEnvelope::Confirmation {
        agent_version: AGENT_VERSION,
        e2e_params: Some(bob_params),
        enc_conn_info: enc,
    };
    let secret = e2e_secret(&bob_snd, &alice_queue.public_key()).unwrap();
    assert_eq!(secret.to_vec(), hex(&s1["e2e_dh_secret"]));
    let wire = send(s1, &secret, Some(&bob_snd), &conf, "agent_confirmation");

    // Step 2: Alice opens it with her queue key and starts her ratchet.
    let alice_secret = e2e_secret(&alice_queue, &bob_snd.public_key()).unwrap();
    let (params, enc) = match receive(&wire, &alice_secret, true) {
        AgentMsgEnvelope::Confirmation {
            agent_version,
            e2e_params: Some(p),
            enc_conn_info,
        } => {
            assert_eq!(agent_version, AGENT_VERSION);
            (p, enc_conn_info)
        }
        e => panic!("expected Bob's confirmation, got {e:?}"),
    };
    let (init, kem) = x3dh_creator(&alice_keys, &params).unwrap();
    alice.ratchet = Some(Ratchet::init_creator(
        3,
        alice_keys.key2.clone(),
        init,
        kem,
        false,
    ));
    let plain = decrypt(&mut alice, &enc, str_of(&f["step2_alice_decrypts"]["path"]));
    assert_eq!(plain, conn_info_reply);
    match AgentMessage::decode(&plain).unwrap() {
        AgentMessage::ConnInfoReply { conn_info, .. } => {
            assert_eq!(conn_info, hex(&s1["conn_info"]))
        }
        m => panic!("conf: not AgentConnInfoReply: {m:?}"),
    }
    alice.rcv.confirmation(&plain);

    // Step 3: Alice's confirmation to Bob's reply queue.
    let s3 = &f["step3_alice_confirmation"];
    let conn_info = AgentMessage::ConnInfo(hex(&s3["conn_info"]))
        .encode()
        .unwrap();
    assert_eq!(conn_info, hex(&s3["agent_conn_info"]));
    let enc = alice
        .ratchet
        .as_mut()
        .unwrap()
        .encrypt(&conn_info, 14832, None)
        .unwrap();
    assert_eq!(hex::encode(&enc), hex::encode(bytes(&s3["enc_conn_info"])));
    assert_eq!(alice.snd.record(&conn_info), 1);
    let conf = AgentMsgEnvelope::Confirmation {
        agent_version: AGENT_VERSION,
        e2e_params: None,
        enc_conn_info: enc,
    };
    let secret = e2e_secret(&alice_snd, &bob_queue.public_key()).unwrap();
    assert_eq!(secret.to_vec(), hex(&s3["e2e_dh_secret"]));
    let wire = send(s3, &secret, Some(&alice_snd), &conf, "agent_confirmation");

    // Step 4: Bob opens it (no e2e parameters this time).
    let bob_secret = e2e_secret(&bob_queue, &alice_snd.public_key()).unwrap();
    let enc = match receive(&wire, &bob_secret, true) {
        AgentMsgEnvelope::Confirmation {
            e2e_params: None,
            enc_conn_info,
            ..
        } => enc_conn_info,
        e => panic!("expected Alice's confirmation, got {e:?}"),
    };
    let plain = decrypt(&mut bob, &enc, str_of(&f["step4_bob_decrypts"]["path"]));
    assert_eq!(plain, conn_info);
    bob.rcv.confirmation(&plain);

    // Step 5: Bob's three messages (ids 2, 3, 4), no key in the header now.
    let msgs = f["step5_bob_messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    let alice_before_messages = alice.ratchet.clone().unwrap();
    let bob_to_alice = e2e_secret(&bob_snd, &alice_queue.public_key()).unwrap();
    let mut wires = Vec::new();
    for m in msgs {
        let (id, plain) = bob
            .snd
            .next_message(AMessage::AMsg(hex(&m["chat_message"])))
            .unwrap();
        assert_eq!(id as u64, m["snd_msg_id"].as_u64().unwrap());
        assert_eq!(plain, hex(&m["agent_message"]));
        assert_eq!(sha256(&plain).to_vec(), hex(&m["msg_hash"]));
        wires.push(send_agent_message(&mut bob, m, &plain, &bob_to_alice));
    }
    assert_eq!(
        hex(&msgs[0]["prev_msg_hash"]),
        sha256(&conn_info_reply).to_vec()
    );

    // Step 6: Alice decrypts them in order; the hash chain holds.
    for ((wire, m), r) in wires
        .iter()
        .zip(msgs)
        .zip(f["step6_alice_decrypts"].as_array().unwrap())
    {
        let enc = enc_message(receive(wire, &alice_secret, false));
        let plain = decrypt(&mut alice, &enc, str_of(&r["path"]));
        assert_eq!(plain, hex(&m["agent_message"]));
        let AgentMessage::Message { header, message } = AgentMessage::decode(&plain).unwrap()
        else {
            panic!("not an agent message");
        };
        assert_eq!(alice.rcv.check(&header, &plain), MsgIntegrity::Ok);
        assert_eq!(message, AMessage::AMsg(hex(&m["chat_message"])));
    }

    // Step 7: Alice's reply (her id 2, chained on her own confirmation).
    let s7 = &f["step7_alice_reply"];
    let (id, plain) = alice
        .snd
        .next_message(AMessage::AMsg(hex(&s7["chat_message"])))
        .unwrap();
    assert_eq!(id, 2);
    assert_eq!(plain, hex(&s7["agent_message"]));
    assert_eq!(hex(&s7["prev_msg_hash"]), sha256(&conn_info).to_vec());
    let alice_to_bob = e2e_secret(&alice_snd, &bob_queue.public_key()).unwrap();
    let wire = send_agent_message(&mut alice, s7, &plain, &alice_to_bob);

    // Step 8: Bob decrypts the reply.
    let enc = enc_message(receive(&wire, &bob_secret, false));
    let reply = decrypt(&mut bob, &enc, str_of(&f["step8_bob_decrypts"]["path"]));
    assert_eq!(reply, plain);
    let AgentMessage::Message { header, .. } = AgentMessage::decode(&reply).unwrap() else {
        panic!("not an agent message");
    };
    assert_eq!(bob.rcv.check(&header, &reply), MsgIntegrity::Ok);

    // Step 9: Bob's receipt for it (his id 5), sent like any message.
    let s9 = &f["step9_bob_receipt"];
    let receipt = AMessageReceipt::for_received(header.snd_msg_id, &reply, Vec::new());
    let (id, plain) = bob
        .snd
        .next_message(AMessage::ARcvd(vec![receipt]))
        .unwrap();
    assert_eq!(id as u64, s9["snd_msg_id"].as_u64().unwrap());
    assert_eq!(plain, hex(&s9["agent_message"]));
    assert_eq!(hex(&s9["prev_msg_hash"]), hex(&msgs[2]["msg_hash"]));
    let wire = send_agent_message(&mut bob, s9, &plain, &bob_to_alice);
    let enc = enc_message(receive(&wire, &alice_secret, false));
    assert_eq!(decrypt(&mut alice, &enc, "advance"), plain);

    // Alice again from before step 6, receiving Bob's messages as 1, 3, 2.
    let mut replay = Side {
        ratchet: Some(alice_before_messages),
        ent: party(x448, "alice"),
        skipped: SkippedKeys::new(),
        snd: SndMsgChain::new(),
        rcv: RcvMsgChain::new(),
    };
    for _ in 0..3 {
        replay.ent.x448_key(); // her link keys and first step key were used
    }
    for o in f["out_of_order_alice"].as_array().unwrap() {
        let i = o["order_index"].as_u64().unwrap() as usize - 1;
        let enc = enc_message(receive(&wires[i], &alice_secret, false));
        let plain = decrypt(&mut replay, &enc, str_of(&o["path"]));
        assert_eq!(plain, hex(&msgs[i]["agent_message"]));
        let mut want = SkippedKeys::new();
        for (hk, mks) in o["skipped_after"].as_object().unwrap() {
            for (n, mk) in mks.as_object().unwrap() {
                want.entry(hex(&Value::String(hk.clone())).try_into().unwrap())
                    .or_default()
                    .insert(
                        n.parse().unwrap(),
                        smp_core::agent::ratchet::MessageKey {
                            key: hex(&mk["mk"]).try_into().unwrap(),
                            iv: hex(&mk["iv"]).try_into().unwrap(),
                        },
                    );
            }
        }
        assert_eq!(replay.skipped, want, "skipped keys after message {}", i + 1);
    }
}
