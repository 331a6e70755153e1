//! Double ratchet throughput: encrypt + decrypt of agent-message-sized
//! bodies (padded to 15840 bytes, the size of every SimpleX agent message),
//! with and without PQ, each against the same run's bare AES-256-GCM seal
//! and open of the same bytes (the ratchet's unavoidable cipher work).
//!
//! `cargo bench -p simplego-benches --bench ratchet` (`BENCH_QUICK=1` for a
//! shorter run).

use smp_core::agent::ratchet::{Ratchet, SkippedKeys};
use smp_core::agent::x3dh::{UseKem, generate_e2e_params, os_entropy, x3dh_creator, x3dh_joiner};
use smp_core::crypto::aead;
use std::time::Instant;

const PADDED: usize = 15840;

fn pair(pq: bool) -> (Ratchet, Ratchet) {
    let mut ent = os_entropy();
    let (alice_keys, alice_params) =
        generate_e2e_params(3, pq.then_some(UseKem::Propose), &mut ent).unwrap();
    let bob_use = alice_params
        .kem
        .as_ref()
        .map(|k| UseKem::Accept(k.public().to_vec()));
    let (bob_keys, bob_params) = generate_e2e_params(3, bob_use, &mut ent).unwrap();
    let (bi, bk) = x3dh_joiner(&bob_keys, &alice_params).unwrap();
    let (ai, ak) = x3dh_creator(&alice_keys, &bob_params).unwrap();
    let bob = Ratchet::init_joiner(3, alice_params.key2.clone(), ent_key(), bi, bk).unwrap();
    let alice = Ratchet::init_creator(3, alice_keys.key2.clone(), ai, ak, pq);
    (alice, bob)
}

fn ent_key() -> smp_core::crypto::PrivateKey {
    smp_core::crypto::PrivateKey::generate(smp_core::crypto::KeyAlgorithm::X448)
}

/// Messages per second; every `turn` messages the direction flips, so DH
/// (and KEM) steps are part of the figure as in a conversation.
fn ratchet_rate(pq: bool, n: usize, turn: usize) -> f64 {
    let (mut alice, mut bob) = pair(pq);
    let mut ent = os_entropy();
    let (mut sa, mut sb) = (SkippedKeys::new(), SkippedKeys::new());
    let body = vec![7u8; PADDED - 200];
    // The creator cannot send before it has received once.
    let first = bob.encrypt(b"hello", PADDED, None).unwrap();
    alice.decrypt_in_place(&mut sa, &first, &mut ent).unwrap();
    let start = Instant::now();
    for i in 0..n {
        let bob_sends = (i / turn).is_multiple_of(2);
        let (s, r, sk) = if bob_sends {
            (&mut bob, &mut alice, &mut sa)
        } else {
            (&mut alice, &mut bob, &mut sb)
        };
        let m = s.encrypt(&body, PADDED, None).unwrap();
        let p = r.decrypt_in_place(sk, &m, &mut ent).unwrap();
        assert_eq!(p.len(), body.len());
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn aes_rate(n: usize) -> f64 {
    let key = [1u8; 32];
    let iv = [2u8; 16];
    let body = vec![7u8; PADDED - 200];
    let start = Instant::now();
    for _ in 0..n {
        let (tag, ct) = aead::encrypt_padded(&key, &iv, PADDED, b"ad", &body).unwrap();
        let p = aead::decrypt_padded(&key, &iv, b"ad", &ct, &tag).unwrap();
        assert_eq!(p.len(), body.len());
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let n = if quick { 2_000 } else { 20_000 };
    let aes = aes_rate(n);
    println!("aes-256-gcm seal+open of {PADDED} B: {aes:.0} msg/s (baseline)");
    for (pq, turn) in [(false, 1_000_000), (false, 10), (true, 10)] {
        let name = match (pq, turn) {
            (false, 1_000_000) => "ratchet, one direction",
            (false, _) => "ratchet, turns every 10 messages",
            _ => "PQ ratchet, turns every 10 messages",
        };
        let r = ratchet_rate(pq, n, turn);
        println!(
            "{name}: {r:.0} msg/s encrypt+decrypt ({:.2} of the AES-GCM baseline)",
            r / aes
        );
    }
}
