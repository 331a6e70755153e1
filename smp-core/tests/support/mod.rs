//! Shared helpers for the data-driven vector tests.
#![allow(dead_code)]

use serde_json::Value;

/// Loads `vectors/<dir>/<file>` from the workspace copy of the vectors.
pub fn load(dir: &str, file: &str) -> Value {
    let path = format!("{}/../vectors/{dir}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

pub fn xftp(file: &str) -> Value {
    load("xftp", file)
}

/// The cases of a list field; an absent or empty list fails the test, so a
/// renamed field cannot make a test pass vacuously.
pub fn cases<'a>(v: &'a Value, field: &str) -> &'a Vec<Value> {
    let list = v[field]
        .as_array()
        .unwrap_or_else(|| panic!("vector field {field} missing"));
    assert!(!list.is_empty(), "vector field {field} is empty");
    list
}

pub fn hex(v: &Value) -> Vec<u8> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("expected a hex string, got {v}"));
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s}: {e}"))
}

pub fn arr<const N: usize>(v: &Value) -> [u8; N] {
    hex(v)
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("expected {N} bytes, got {}", b.len()))
}

pub fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

pub fn u64_of(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("bad number {s}")),
        _ => v
            .as_u64()
            .unwrap_or_else(|| panic!("expected a number, got {v}")),
    }
}

/// The "ramp" plaintext of the vectors: byte i = i mod 251.
pub fn ramp(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Seed of a labelled key: first `n` bytes of SHA-256("xftp-vectors/" + label).
pub fn seed(label: &str, n: usize) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(format!("xftp-vectors/{label}").as_bytes())[..n].to_vec()
}

pub fn agent(file: &str) -> Value {
    load("agent", file)
}

/// A byte string of the agent vectors: plain hex, or `{length, sha256, hex}`
/// for large values (the digest and length are checked here).
pub fn bytes(v: &Value) -> Vec<u8> {
    use sha2::Digest;
    if v.is_object() {
        let b = hex(&v["hex"]);
        assert_eq!(
            b.len() as u64,
            u64_of(&v["length"]),
            "length of a large value"
        );
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&b)),
            str_of(&v["sha256"]),
            "sha256 of a large value"
        );
        b
    } else {
        hex(v)
    }
}

/// A private key from an agent-vector key object (`alg`, `private_raw` or
/// `seed`); checks that it derives the recorded public key and DER.
pub fn agent_private_key(k: &Value) -> smp_core::crypto::PrivateKey {
    use smp_core::crypto::{KeyAlgorithm, PrivateKey};
    let alg = match str_of(&k["alg"]) {
        "X25519" => KeyAlgorithm::X25519,
        "X448" => KeyAlgorithm::X448,
        "Ed25519" => KeyAlgorithm::Ed25519,
        a => panic!("unknown key algorithm {a}"),
    };
    let raw = if k["seed"].is_string() {
        hex(&k["seed"])
    } else {
        hex(&k["private_raw"])
    };
    let sk = PrivateKey::from_raw(alg, &raw).expect("vector private key");
    let pk = sk.public_key();
    assert_eq!(
        pk.raw(),
        hex(&k["public_raw"]),
        "public key of {}",
        k["label"]
    );
    assert_eq!(
        pk.to_der(),
        hex(&k["public_der_spki"]),
        "DER of {}",
        k["label"]
    );
    sk
}

use smp_core::crypto::kem::{KemKeyPair, KemSecret};
use smp_core::crypto::{CryptoError, PrivateKey};
use std::collections::{BTreeMap, VecDeque};
use zeroize::Zeroizing;

/// Replays the keys a vector run recorded: X448 keys by label in the order a
/// party asks for them, KEM key pairs in order, encapsulations by public key.
pub struct Scripted {
    pub x448: VecDeque<PrivateKey>,
    pub kem_pairs: VecDeque<KemKeyPair>,
    pub enc: BTreeMap<Vec<u8>, (Vec<u8>, Vec<u8>)>,
}

impl smp_core::agent::x3dh::RatchetEntropy for Scripted {
    fn x448_key(&mut self) -> PrivateKey {
        self.x448
            .pop_front()
            .expect("the run asked for an unrecorded X448 key")
    }
    fn kem_keypair(&mut self) -> Result<KemKeyPair, CryptoError> {
        Ok(self
            .kem_pairs
            .pop_front()
            .expect("the run asked for an unrecorded KEM key pair"))
    }
    fn kem_encapsulate(&mut self, public: &[u8]) -> Result<(Vec<u8>, KemSecret), CryptoError> {
        let (ct, ss) = self
            .enc
            .get(public)
            .expect("the run encapsulated to an unrecorded key");
        Ok((
            ct.clone(),
            Zeroizing::new(ss.as_slice().try_into().unwrap()),
        ))
    }
}

pub fn key(keys: &Value, label: &str) -> PrivateKey {
    agent_private_key(&keys[label])
}

pub fn party(keys: &Value, who: &str) -> Scripted {
    let mut x448 = VecDeque::new();
    x448.push_back(key(keys, &format!("{who}-x3dh-1")));
    x448.push_back(key(keys, &format!("{who}-x3dh-2")));
    if who == "bob" {
        x448.push_back(key(keys, "bob-ratchet-dh-0"));
    }
    for n in 1..=4 {
        let label = format!("{who}-ratchet-dh-{n}");
        if keys.get(&label).is_some() {
            x448.push_back(key(keys, &label));
        }
    }
    Scripted {
        x448,
        kem_pairs: VecDeque::new(),
        enc: BTreeMap::new(),
    }
}
