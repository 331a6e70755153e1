//! X3DH, the double ratchet and its sntrup761 extension against
//! vectors/agent/x3dh.json, ratchet.json and pq.json: every message is
//! re-encrypted byte for byte by its sender and decrypted by its receiver,
//! and every recorded KDF step is recomputed.

mod support;

use serde_json::Value;
use smp_core::agent::ratchet::{
    DecryptPath, EncMessageHeader, EncRatchetMessage, MsgHeader, Ratchet, RatchetError,
    SkippedKeys, chain_kdf, padded_header_len, root_kdf,
};
use smp_core::agent::x3dh::{
    E2eKeys, E2eParams, KemParams, RatchetEntropy, UseKem, generate_e2e_params, x3dh_creator,
    x3dh_joiner,
};
use smp_core::crypto::kem::KemKeyPair;
use support::{Scripted, agent, bytes, cases, hex, key, party, str_of};
use zeroize::Zeroizing;

/// `kem_material`: key pairs go to the party whose seed block they are in
/// (the harness numbers each party's requests from its own base), and
/// encapsulations are deterministic per public key.
fn load_kem(material: &Value, alice: &mut Scripted, bob: &mut Scripted, alice_base: u64) {
    let list = material.as_array().expect("kem_material list");
    assert!(!list.is_empty());
    for m in list {
        match str_of(&m[0]) {
            "keypair" => {
                let seed = m[1].as_u64().unwrap();
                let pair = KemKeyPair::from_parts(bytes(&m[2][0]), bytes(&m[2][1])).unwrap();
                if seed / 1000 == alice_base / 1000 {
                    alice.kem_pairs.push_back(pair);
                } else {
                    bob.kem_pairs.push_back(pair);
                }
            }
            "enc" => {
                let (pk, ct, ss) = (bytes(&m[1]), bytes(&m[2]), hex(&m[3]));
                // Our real sntrup761 must agree with the recorded secret.
                for p in [&mut *alice, &mut *bob] {
                    p.enc.insert(pk.clone(), (ct.clone(), ss.clone()));
                }
            }
            other => panic!("unknown kem material {other}"),
        }
    }
}

struct Pair {
    alice: Ratchet,
    bob: Ratchet,
    alice_ent: Scripted,
    bob_ent: Scripted,
    alice_skipped: SkippedKeys,
    bob_skipped: SkippedKeys,
}

/// Both sides from the vector keys: Alice's link parameters (with a KEM
/// proposal when `alice_kem`), Bob's reply (accepting or proposing as the
/// link and `bob_kem` say), X3DH on both sides checked against `x3dh`.
fn start(
    x3dh: &Value,
    mut alice_ent: Scripted,
    mut bob_ent: Scripted,
    alice_pq: bool,
    bob_pq: bool,
) -> Pair {
    let alice_use = alice_pq.then_some(UseKem::Propose);
    let (alice_keys, alice_params) = generate_e2e_params(3, alice_use, &mut alice_ent).unwrap();
    let bob_use = match (&alice_params.kem, bob_pq) {
        (Some(KemParams::Proposed { public }), true) => Some(UseKem::Accept(public.clone())),
        (None, true) => Some(UseKem::Propose),
        _ => None,
    };
    let (bob_keys, bob_params) = generate_e2e_params(3, bob_use, &mut bob_ent).unwrap();
    let (bob_init, bob_kem) = x3dh_joiner(&bob_keys, &alice_params).unwrap();
    let (alice_init, alice_kem) = x3dh_creator(&alice_keys, &bob_params).unwrap();
    same_secrets(&bob_init, &alice_init);
    assert_eq!(bob_init.assoc_data, hex(&x3dh["assoc_data"]));
    let rk = x3dh.get("root_key").or(x3dh.get("rk")).unwrap();
    assert_eq!(bob_init.root_key.to_vec(), hex(rk));
    assert_eq!(bob_init.snd_header_key.to_vec(), hex(&x3dh["hk"]));
    assert_eq!(bob_init.rcv_next_header_key.to_vec(), hex(&x3dh["nhk"]));
    if let Some(ss) = x3dh.get("kem_shared_secret").filter(|v| !v.is_null()) {
        assert_eq!(
            &bob_init.kem_accepted.as_ref().unwrap().shared[..],
            &hex(ss)[..]
        );
    }
    let bob_ratchet_key = bob_ent.x448_key();
    let bob = Ratchet::init_joiner(
        3,
        alice_params.key2.clone(),
        bob_ratchet_key,
        bob_init,
        bob_kem,
    )
    .unwrap();
    let E2eKeys { key2, .. } = alice_keys;
    let alice = Ratchet::init_creator(3, key2, alice_init, alice_kem, alice_pq);
    Pair {
        alice,
        bob,
        alice_ent,
        bob_ent,
        alice_skipped: SkippedKeys::new(),
        bob_skipped: SkippedKeys::new(),
    }
}

/// Both sides derive the same keys (their KEM records differ: each keeps
/// the other's public key).
fn same_secrets(a: &smp_core::agent::x3dh::RatchetInit, b: &smp_core::agent::x3dh::RatchetInit) {
    assert_eq!(a.assoc_data, b.assoc_data);
    assert_eq!(a.root_key, b.root_key);
    assert_eq!(a.snd_header_key, b.snd_header_key);
    assert_eq!(a.rcv_next_header_key, b.rcv_next_header_key);
    assert_eq!(
        a.kem_accepted
            .as_ref()
            .map(|k| (k.shared.clone(), k.ciphertext.clone())),
        b.kem_accepted
            .as_ref()
            .map(|k| (k.shared.clone(), k.ciphertext.clone()))
    );
}

fn check_kdf_step(keys: &Value, step: &Value) {
    let own = key(keys, str_of(&step["old_own_key"]));
    let new = key(keys, str_of(&step["new_own_key"]));
    let peer = smp_core::crypto::PublicKey::from_raw(
        smp_core::crypto::KeyAlgorithm::X448,
        &hex(&step["peer_ratchet_key"]),
    )
    .unwrap();
    let ss = |v: &Value| -> Option<[u8; 32]> { (!v.is_null()).then(|| hex(v).try_into().unwrap()) };
    let rk: [u8; 32] = hex(&step["root_key_in"]).try_into().unwrap();
    let (rk1, ckr, nhkr) = root_kdf(
        &rk,
        &own.dh_x448(&peer).unwrap()[..],
        ss(&step["kem_ss_rcv"]).as_ref(),
    );
    let r = &step["recv_root_kdf"];
    assert_eq!(rk1.to_vec(), hex(&r["root_key"]));
    assert_eq!(ckr.to_vec(), hex(&r["chain_key_recv"]));
    assert_eq!(nhkr.to_vec(), hex(&r["next_header_key_recv"]));
    let (rk2, cks, nhks) = root_kdf(
        &rk1,
        &new.dh_x448(&peer).unwrap()[..],
        ss(&step["kem_ss_snd"]).as_ref(),
    );
    let s = &step["send_root_kdf"];
    assert_eq!(rk2.to_vec(), hex(&s["root_key"]));
    assert_eq!(cks.to_vec(), hex(&s["chain_key_send"]));
    assert_eq!(nhks.to_vec(), hex(&s["next_header_key_send"]));
}

/// The layout of one recorded message: chain KDF, header plaintext and
/// encryption, body AAD, and the whole encoding.
fn check_layout(m: &Value, pq_header: bool) {
    let ck: [u8; 32] = hex(&m["chain_key_in"]).try_into().unwrap();
    let (ck2, mk, header_iv) = chain_kdf(&ck);
    assert_eq!(ck2.to_vec(), hex(&m["chain_key_out"]));
    assert_eq!(mk.key.to_vec(), hex(&m["message_key"]));
    assert_eq!(mk.iv.to_vec(), hex(&m["message_iv"]));
    assert_eq!(header_iv.to_vec(), hex(&m["header_iv"]));
    let wire = bytes(&m["enc_ratchet_message"]);
    if let Some(n) = m.get("enc_ratchet_message_length") {
        assert_eq!(wire.len() as u64, n.as_u64().unwrap());
    }
    let enc = EncRatchetMessage::decode(&wire).unwrap();
    assert_eq!(
        enc.encode(3).unwrap(),
        wire,
        "re-encoding EncRatchetMessage"
    );
    assert_eq!(enc.tag.to_vec(), hex(&m["body_auth_tag"]));
    assert_eq!(enc.body, &bytes(&m["body_ciphertext"])[..]);
    if let Some(h) = m.get("em_header") {
        assert_eq!(enc.header, &bytes(h)[..]);
    }
    let eh = EncMessageHeader::decode(enc.header).unwrap();
    assert_eq!(eh.encode().unwrap(), enc.header);
    assert_eq!(eh.version, m["version"].as_u64().unwrap() as u16);
    assert_eq!(eh.iv.to_vec(), hex(&m["header_iv"]));
    assert_eq!(eh.tag.to_vec(), hex(&m["header_auth_tag"]));
    assert_eq!(eh.body, bytes(&m["header_ciphertext"]));
    let plain = bytes(&m["header_plain"]);
    let header = MsgHeader::decode(3, &plain).unwrap();
    assert_eq!(header.encode(3).unwrap(), plain);
    assert_eq!(header.ns as u64, m["ns"].as_u64().unwrap());
    assert_eq!(header.pn as u64, m["pn"].as_u64().unwrap());
    assert_eq!(
        header.max_version as u64,
        m["msg_max_version"].as_u64().unwrap()
    );
    match (m.get("header_kem").filter(|k| !k.is_null()), &header.kem) {
        (None, None) => {}
        (Some(k), Some(KemParams::Proposed { public })) => {
            assert_eq!(str_of(&k["type"]), "proposed");
            assert_eq!(public, &bytes(&k["kem_public_key"]));
        }
        (Some(k), Some(KemParams::Accepted { ciphertext, public })) => {
            assert_eq!(str_of(&k["type"]), "accepted");
            assert_eq!(ciphertext, &bytes(&k["ciphertext"]));
            assert_eq!(public, &bytes(&k["kem_public_key"]));
        }
        (k, h) => panic!("header KEM {h:?} where the vector has {k:?}"),
    }
    let hlen = m["header_padded_length"].as_u64().unwrap() as usize;
    assert_eq!(hlen, padded_header_len(3, pq_header));
    let padded = bytes(&m["header_padded"]);
    assert_eq!(padded.len(), hlen);
    assert_eq!(smp_core::encoding::pad::unpad(&padded).unwrap(), &plain[..]);
    if let Some(pp) = m.get("padded_plaintext") {
        assert_eq!(
            smp_core::encoding::pad::unpad(&bytes(pp)).unwrap(),
            &hex(&m["plaintext"])[..]
        );
    }
    let ad = bytes(&m["body_assoc_data"]);
    assert!(ad.ends_with(enc.header), "body AAD = AD ‖ emHeader");
}

/// Sends `m` from its sender (comparing every byte) and receives it.
fn exchange(p: &mut Pair, keys: &Value, m: &Value, reception: Option<&Value>) {
    let plaintext = hex(&m["plaintext"]);
    let padded = m
        .get("padded_length")
        .map_or(100, |v| v.as_u64().unwrap() as usize);
    let wire = bytes(&m["enc_ratchet_message"]);
    let bob_sends = str_of(&m["sender"]) == "bob";
    let (sender, receiver, rent, rskipped) = if bob_sends {
        (
            &mut p.bob,
            &mut p.alice,
            &mut p.alice_ent,
            &mut p.alice_skipped,
        )
    } else {
        (&mut p.alice, &mut p.bob, &mut p.bob_ent, &mut p.bob_skipped)
    };
    let ours = sender.encrypt(&plaintext, padded, None).unwrap();
    assert_eq!(
        hex::encode(&ours),
        hex::encode(&wire),
        "ciphertext of {}",
        m["message"]
    );
    check_layout(m, sender.pq_support());
    let d = receiver.decrypt(rskipped, &wire, rent).unwrap();
    let path = reception
        .map(|r| str_of(&r["path"]).to_string())
        .or_else(|| m.get("receiver_path").map(|v| str_of(v).to_string()))
        .unwrap();
    assert_eq!(path_name(d.path), path);
    *receiver = d.ratchet;
    d.skipped.apply(rskipped);
    assert_eq!(d.plaintext.unwrap(), plaintext);
    let steps = reception
        .map(|r| &r["ratchet_steps"])
        .or_else(|| m.get("receiver_ratchet_steps"))
        .unwrap();
    for s in steps.as_array().unwrap() {
        check_kdf_step(keys, s);
    }
    if let Some(h) = reception.map(|r| &r["header"]) {
        let eh =
            EncMessageHeader::decode(EncRatchetMessage::decode(&wire).unwrap().header).unwrap();
        let _ = eh;
        assert_eq!(h["pn"], m["pn"]);
        assert_eq!(h["ns"], m["ns"]);
    }
}

fn path_name(p: DecryptPath) -> &'static str {
    match p {
        DecryptPath::Same => "same",
        DecryptPath::Advance => "advance",
        DecryptPath::Skipped => "skipped",
    }
}

fn find<'a>(msgs: &'a [Value], name: &str) -> &'a Value {
    msgs.iter()
        .find(|m| m["message"] == name)
        .unwrap_or_else(|| panic!("message {name} missing"))
}

/// Alice receives Bob's messages again from a fresh state in another order.
fn out_of_order(run: &Value, keys: &Value, fresh: impl Fn() -> Pair) {
    let mut p = fresh();
    let msgs = cases(run, "messages");
    for step in cases(run, "out_of_order") {
        let m = find(msgs, str_of(&step["message"]));
        let wire = bytes(&m["enc_ratchet_message"]);
        let d = p
            .alice
            .decrypt(&p.alice_skipped, &wire, &mut p.alice_ent)
            .unwrap();
        assert_eq!(path_name(d.path), str_of(&step["path"]));
        p.alice = d.ratchet;
        d.skipped.apply(&mut p.alice_skipped);
        assert_eq!(d.plaintext.unwrap(), hex(&m["plaintext"]));
        assert_eq!(
            p.alice.counters().1 as u64,
            step["receiving_nr_after"].as_u64().unwrap()
        );
        let mut want = SkippedKeys::new();
        for k in step["skipped_keys_after"].as_array().unwrap() {
            want.entry(hex(&k["header_key"]).try_into().unwrap())
                .or_default()
                .insert(
                    k["msg_ns"].as_u64().unwrap() as u32,
                    smp_core::agent::ratchet::MessageKey {
                        key: hex(&k["message_key"]).try_into().unwrap(),
                        iv: hex(&k["message_iv"]).try_into().unwrap(),
                    },
                );
        }
        assert_eq!(
            p.alice_skipped, want,
            "skipped keys after {}",
            step["message"]
        );
    }
    // The error cases continue from this state.
    let errors = cases(run, "errors");
    assert_eq!(errors.len(), 2);
    let b2 = bytes(&find(msgs, "b2")["enc_ratchet_message"]);
    let d = p
        .alice
        .decrypt(&p.alice_skipped, &b2, &mut p.alice_ent)
        .unwrap();
    assert_eq!(str_of(&errors[0]["error"]), "CERatchetEarlierMessage");
    assert_eq!(d.plaintext, Err(RatchetError::Earlier(1)));
    // In-order state: b1, b2, b3 then b3 again.
    let mut q = fresh();
    for name in ["b1", "b2", "b3"] {
        let wire = bytes(&find(msgs, name)["enc_ratchet_message"]);
        q.alice
            .decrypt_in_place(&mut q.alice_skipped, &wire, &mut q.alice_ent)
            .unwrap();
    }
    let b3 = bytes(&find(msgs, "b3")["enc_ratchet_message"]);
    assert_eq!(str_of(&errors[1]["error"]), "CERatchetDuplicateMessage");
    let d = q
        .alice
        .decrypt(&q.alice_skipped, &b3, &mut q.alice_ent)
        .unwrap();
    assert_eq!(d.plaintext, Err(RatchetError::Duplicate));
    let _ = keys;
}

#[test]
fn x3dh_cases() {
    let v = agent("x3dh.json");
    for c in cases(&v, "cases") {
        let a1 = support::agent_private_key(&c["alice_key1"]);
        let a2 = support::agent_private_key(&c["alice_key2"]);
        let b1 = support::agent_private_key(&c["bob_key1"]);
        let b2 = support::agent_private_key(&c["bob_key2"]);
        assert_eq!(
            &a1.dh_x448(&b2.public_key()).unwrap()[..],
            &hex(&c["dh1"])[..]
        );
        assert_eq!(
            &a2.dh_x448(&b1.public_key()).unwrap()[..],
            &hex(&c["dh2"])[..]
        );
        assert_eq!(
            &a2.dh_x448(&b2.public_key()).unwrap()[..],
            &hex(&c["dh3"])[..]
        );
        assert_eq!(hex(&c["hkdf_salt"]), vec![0u8; 64]);
        assert_eq!(hex(&c["hkdf_info"]), b"SimpleXX3DH");
        let kem = &c["kem"];
        let (alice_kem, bob_kem, kem_params) = if kem.is_null() {
            (None, None, None)
        } else {
            let ak = KemKeyPair::from_parts(
                bytes(&kem["alice_kem_public"]),
                bytes(&kem["alice_kem_secret"]),
            )
            .unwrap();
            let bk = KemKeyPair::from_parts(
                bytes(&kem["bob_kem_public"]),
                bytes(&kem["bob_kem_secret"]),
            )
            .unwrap();
            let ct = bytes(&kem["ciphertext_to_alice"]);
            let ss: [u8; 32] = hex(&kem["shared_secret"]).try_into().unwrap();
            // A real sntrup761 recovers the recorded secret.
            assert_eq!(
                *smp_core::crypto::kem::decapsulate(&ak.secret, &ct).unwrap(),
                ss
            );
            (
                Some(smp_core::agent::x3dh::PrivKem::Proposed(ak.clone())),
                Some(smp_core::agent::x3dh::PrivKem::Accepted {
                    ciphertext: ct.clone(),
                    shared: Zeroizing::new(ss),
                    keys: bk.clone(),
                }),
                Some((
                    KemParams::Proposed {
                        public: ak.public.clone(),
                    },
                    KemParams::Accepted {
                        ciphertext: ct,
                        public: bk.public.clone(),
                    },
                )),
            )
        };
        let alice = E2eKeys {
            key1: a1,
            key2: a2,
            kem: alice_kem,
        };
        let bob = E2eKeys {
            key1: b1,
            key2: b2,
            kem: bob_kem,
        };
        let alice_params = E2eParams {
            version: 3,
            key1: alice.key1.public_key(),
            key2: alice.key2.public_key(),
            kem: kem_params.as_ref().map(|k| k.0.clone()),
        };
        let bob_params = E2eParams {
            version: 3,
            key1: bob.key1.public_key(),
            key2: bob.key2.public_key(),
            kem: kem_params.as_ref().map(|k| k.1.clone()),
        };
        let (bi, _) = x3dh_joiner(&bob, &alice_params).unwrap();
        let (ai, _) = x3dh_creator(&alice, &bob_params).unwrap();
        same_secrets(&ai, &bi);
        let out = hex(&c["hkdf_output_96"]);
        assert_eq!(bi.snd_header_key.to_vec(), out[..32]);
        assert_eq!(bi.rcv_next_header_key.to_vec(), out[32..64]);
        assert_eq!(bi.root_key.to_vec(), out[64..]);
        assert_eq!(bi.assoc_data, hex(&c["assoc_data"]));
        let mut ikm = hex(&c["dh1"]);
        ikm.extend(hex(&c["dh2"]));
        ikm.extend(hex(&c["dh3"]));
        if !kem.is_null() {
            ikm.extend(hex(&kem["shared_secret"]));
        }
        assert_eq!(ikm, hex(&c["hkdf_ikm"]));
        // Bob's first root step with a fresh ratchet key.
        let s = &c["bob_init_snd_ratchet"];
        let fresh =
            support::agent_private_key(&agent("ratchet.json")["x448_keys"]["bob-ratchet-dh-0"]);
        assert_eq!(
            &fresh.dh_x448(&alice.key2.public_key()).unwrap()[..],
            &hex(&s["dh_out"])[..]
        );
        assert_eq!(hex(&s["hkdf_salt"]), bi.root_key.to_vec());
        assert_eq!(hex(&s["hkdf_info"]), b"SimpleXRootRatchet");
        let ss: Option<[u8; 32]> =
            (!s["kem_ss"].is_null()).then(|| hex(&s["kem_ss"]).try_into().unwrap());
        let (rk, cks, nhks) = root_kdf(&bi.root_key, &hex(&s["dh_out"]), ss.as_ref());
        assert_eq!(rk.to_vec(), hex(&s["root_key"]));
        assert_eq!(cks.to_vec(), hex(&s["chain_key_send"]));
        assert_eq!(nhks.to_vec(), hex(&s["next_header_key_send"]));
        assert_eq!(bi.snd_header_key.to_vec(), hex(&s["header_key_send"]));
        assert_eq!(
            bi.rcv_next_header_key.to_vec(),
            hex(&s["next_header_key_recv"])
        );
        let a = &c["alice_init_rcv_ratchet"];
        assert_eq!(hex(&a["root_key"]), bi.root_key.to_vec());
        assert_eq!(hex(&a["next_header_key_recv"]), bi.snd_header_key.to_vec());
        assert_eq!(
            hex(&a["next_header_key_send"]),
            bi.rcv_next_header_key.to_vec()
        );
    }
}

#[test]
fn ratchet_run_both_directions() {
    let v = agent("ratchet.json");
    let keys = &v["x448_keys"];
    let run = &v["run"];
    assert_eq!(str_of(&run["bob_initial_ratchet_key"]), "bob-ratchet-dh-0");
    assert_eq!(str_of(&run["alice_initial_ratchet_key"]), "alice-x3dh-2");
    let fresh = || {
        start(
            &run["x3dh"],
            party(keys, "alice"),
            party(keys, "bob"),
            false,
            false,
        )
    };
    let mut p = fresh();
    let msgs = cases(run, "messages");
    let receptions = cases(run, "receptions");
    assert_eq!(msgs.len(), receptions.len());
    for (m, r) in msgs.iter().zip(receptions) {
        assert_eq!(m["message"], r["message"]);
        exchange(&mut p, keys, m, Some(r));
    }
    out_of_order(run, keys, fresh);
}

fn pq_parties(v: &Value, material: &Value) -> (Scripted, Scripted) {
    let keys = &v["x448_keys"];
    let mut alice = party(keys, "alice");
    let mut bob = party(keys, "bob");
    load_kem(material, &mut alice, &mut bob, 3000);
    (alice, bob)
}

#[test]
fn pq_compact_run() {
    let v = agent("pq.json");
    assert_eq!(v["kem"]["public_key_bytes"], 1158);
    assert_eq!(v["kem"]["ciphertext_bytes"], 1039);
    let keys = &v["x448_keys"];
    let run = &v["compact_run"];
    let fresh = || {
        let (a, b) = pq_parties(&v, &run["kem_material"]);
        start(&run["x3dh"], a, b, true, true)
    };
    let mut p = fresh();
    let msgs = cases(run, "messages");
    for (m, r) in msgs.iter().zip(cases(run, "receptions")) {
        exchange(&mut p, keys, m, Some(r));
    }
    assert!(p.alice.pq_support() && p.bob.pq_support());
    assert_eq!(p.bob.pq_chains(), (true, true));
    // The replay from a fresh state: Alice's new KEM pair only feeds her
    // sending chain, which the out-of-order checks do not reach.
    out_of_order(run, keys, fresh);
}

#[test]
fn pq_proposal_ignored() {
    let v = agent("pq.json");
    let keys = &v["x448_keys"];
    let run = &v["proposal_ignored_run"];
    let mut alice = party(keys, "alice");
    let mut bob = party(keys, "bob");
    let kp = &run["bob_kem_keypair"];
    bob.kem_pairs
        .push_back(KemKeyPair::from_parts(bytes(&kp["pk"]), bytes(&kp["sk"])).unwrap());
    alice.kem_pairs.clear();
    let mut p = start(&run["x3dh"], alice, bob, false, true);
    let msgs = cases(run, "messages");
    assert_eq!(msgs.len(), 3);
    for m in msgs {
        exchange(&mut p, keys, m, None);
    }
    // Bob stopped proposing but keeps the large headers.
    assert!(p.bob.pq_support());
    assert!(!p.bob.pq_enabled());
    assert!(!p.alice.pq_support());
}

#[test]
fn corrupted_and_replayed_messages_keep_state() {
    let v = agent("ratchet.json");
    let keys = &v["x448_keys"];
    let run = &v["run"];
    let mut p = start(
        &run["x3dh"],
        party(keys, "alice"),
        party(keys, "bob"),
        false,
        false,
    );
    let b1 = bytes(&find(cases(run, "messages"), "b1")["enc_ratchet_message"]);
    let before = p.alice.clone();
    // A flipped header byte: no key opens it, the state is untouched.
    let mut bad = b1.clone();
    bad[40] ^= 1;
    assert_eq!(
        p.alice
            .decrypt(&p.alice_skipped, &bad, &mut p.alice_ent)
            .unwrap_err(),
        RatchetError::Header
    );
    // Truncated: a parse error.
    assert!(matches!(
        p.alice
            .decrypt(&p.alice_skipped, &b1[..10], &mut p.alice_ent)
            .unwrap_err(),
        RatchetError::Malformed(_)
    ));
    assert_eq!(p.alice, before);
    // A flipped body byte: the chain still advances, as the reference's does.
    let mut bad_body = b1.clone();
    let last = bad_body.len() - 1;
    bad_body[last] ^= 1;
    let d = p
        .alice
        .decrypt(&p.alice_skipped, &bad_body, &mut p.alice_ent)
        .unwrap();
    assert_eq!(d.plaintext, Err(RatchetError::Body));
    assert_eq!(d.ratchet.counters().1, 1);
}

#[test]
fn state_survives_encoding_mid_conversation() {
    let v = agent("pq.json");
    let keys = &v["x448_keys"];
    let run = &v["compact_run"];
    let (a, b) = pq_parties(&v, &run["kem_material"]);
    let mut p = start(&run["x3dh"], a, b, true, true);
    let msgs = cases(run, "messages");
    for (i, (m, r)) in msgs.iter().zip(cases(run, "receptions")).enumerate() {
        exchange(&mut p, keys, m, Some(r));
        // Save and reload both sides between messages, as the agent does.
        p.alice = Ratchet::decode(&p.alice.encode().unwrap()).unwrap();
        p.bob = Ratchet::decode(&p.bob.encode().unwrap()).unwrap();
        let sk = smp_core::agent::ratchet::encode_skipped(&p.alice_skipped);
        assert_eq!(
            smp_core::agent::ratchet::decode_skipped(&sk).unwrap(),
            p.alice_skipped
        );
        let enc = p.bob.encode().unwrap();
        assert!(
            Ratchet::decode(&enc[..enc.len() - 1]).is_err(),
            "truncated state {i}"
        );
    }
}
