//! encoding.json, padding.json, keys.json and secretbox.json: every case.

mod support;

use serde_json::Value;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey, Signature};
use smp_core::crypto::secretbox::{self, CbNonce, SbKey, SbStream};
use smp_core::encoding::pad;
use smp_core::encoding::string::b64_encode;
use smp_core::encoding::{DecodeError, Reader, Writer};
use support::*;

fn enc(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    f(&mut w);
    w.into_vec()
}

fn items(v: &Value) -> Vec<Vec<u8>> {
    v.as_array().unwrap().iter().map(hex).collect()
}

#[test]
fn encoding_integers_and_bool() {
    let v = xftp("encoding.json");
    for c in cases(&v, "word16") {
        let n = c["value"].as_u64().unwrap() as u16;
        assert_eq!(
            enc(|w| {
                w.u16(n);
            }),
            hex(&c["encoded"])
        );
        assert_eq!(Reader::new(&hex(&c["encoded"])).u16().unwrap(), n);
    }
    for c in cases(&v, "word32") {
        let n = c["value"].as_u64().unwrap() as u32;
        assert_eq!(
            enc(|w| {
                w.u32(n);
            }),
            hex(&c["encoded"])
        );
        assert_eq!(Reader::new(&hex(&c["encoded"])).u32().unwrap(), n);
    }
    for c in cases(&v, "int64") {
        let n: i64 = str_of(&c["value"]).parse().unwrap();
        assert_eq!(
            enc(|w| {
                w.i64(n);
            }),
            hex(&c["encoded"])
        );
        assert_eq!(Reader::new(&hex(&c["encoded"])).i64().unwrap(), n);
    }
    for c in cases(&v, "bool") {
        let b = c["value"].as_bool().unwrap();
        assert_eq!(
            enc(|w| {
                w.bool(b);
            }),
            hex(&c["encoded"])
        );
        assert_eq!(Reader::new(&hex(&c["encoded"])).bool().unwrap(), b);
    }
}

#[test]
fn encoding_strings_and_containers() {
    let v = xftp("encoding.json");
    for c in cases(&v, "bytes") {
        let input = hex(&c["input"]);
        assert_eq!(
            enc(|w| {
                w.short(&input).unwrap();
            }),
            hex(&c["encoded"])
        );
        let e = hex(&c["encoded"]);
        let mut r = Reader::new(&e);
        assert_eq!(r.short().unwrap(), &input[..]);
        r.end().unwrap();
    }
    for c in cases(&v, "bytes_encode_errors") {
        let n = c["input_length"].as_u64().unwrap() as usize;
        assert!(Writer::new().short(&vec![0; n]).is_err());
    }
    for c in cases(&v, "string") {
        let t = str_of(&c["text"]);
        assert_eq!(
            enc(|w| {
                w.short(t.as_bytes()).unwrap();
            }),
            hex(&c["encoded"])
        );
        let e = hex(&c["encoded"]);
        assert_eq!(Reader::new(&e).short().unwrap(), t.as_bytes());
    }
    for c in cases(&v, "large") {
        let input = hex(&c["input"]);
        assert_eq!(
            enc(|w| {
                w.large(&input).unwrap();
            }),
            hex(&c["encoded"])
        );
        let e = hex(&c["encoded"]);
        assert_eq!(Reader::new(&e).large().unwrap(), &input[..]);
    }
    for c in cases(&v, "large_encode_errors") {
        let n = c["input_length"].as_u64().unwrap() as usize;
        assert!(Writer::new().large(&vec![0; n]).is_err());
    }
    for c in cases(&v, "tail") {
        let input = hex(&c["input"]);
        assert_eq!(
            enc(|w| {
                w.raw(&input);
            }),
            hex(&c["encoded"])
        );
        let e = hex(&c["encoded"]);
        assert_eq!(Reader::new(&e).tail(), &input[..]);
    }
    for field in ["maybe_bytes", "maybe_string"] {
        for c in cases(&v, field) {
            let val: Option<Vec<u8>> = match &c["value"] {
                Value::Null => None,
                s if field == "maybe_string" => Some(str_of(s).as_bytes().to_vec()),
                s => Some(hex(s)),
            };
            let e = hex(&c["encoded"]);
            assert_eq!(
                enc(|w| {
                    w.maybe(val.as_deref(), |w, x| w.short(x).map(drop))
                        .unwrap();
                }),
                e
            );
            let got = Reader::new(&e)
                .maybe(|r| r.short().map(<[u8]>::to_vec))
                .unwrap();
            assert_eq!(got, val);
        }
    }
    for c in cases(&v, "nonempty_bytes") {
        let it = items(&c["items"]);
        let e = hex(&c["encoded"]);
        assert_eq!(
            enc(|w| {
                w.non_empty(&it, |w, x| w.short(x).map(drop)).unwrap();
            }),
            e
        );
        assert_eq!(
            Reader::new(&e)
                .non_empty(|r| r.short().map(<[u8]>::to_vec))
                .unwrap(),
            it
        );
    }
    for c in cases(&v, "nonempty_encode_errors") {
        let it = items(&c["items"]);
        assert!(
            Writer::new()
                .non_empty(&it, |w, x| w.short(x).map(drop))
                .is_err()
        );
    }
    for c in cases(&v, "nonempty_large") {
        let it = items(&c["items"]);
        let e = hex(&c["encoded"]);
        assert_eq!(
            enc(|w| {
                w.non_empty(&it, |w, x| w.large(x).map(drop)).unwrap();
            }),
            e
        );
        assert_eq!(
            Reader::new(&e)
                .non_empty(|r| r.large().map(<[u8]>::to_vec))
                .unwrap(),
            it
        );
    }
    for c in cases(&v, "list_bytes") {
        let it = items(&c["items"]);
        let e = hex(&c["encoded"]);
        assert_eq!(
            enc(|w| {
                w.list(&it, |w, x| w.short(x).map(drop)).unwrap();
            }),
            e
        );
        assert_eq!(
            Reader::new(&e)
                .list(|r| r.short().map(<[u8]>::to_vec))
                .unwrap(),
            it
        );
    }
}

#[test]
fn encoding_decode_errors() {
    let v = xftp("encoding.json");
    for c in cases(&v, "decode_errors") {
        let input = hex(&c["input"]);
        let mut r = Reader::new(&input);
        let res: Result<(), DecodeError> = match str_of(&c["decoder"]) {
            "word16" => r.u16().map(drop),
            "word32" => r.u32().map(drop),
            "bytes" => r.short().map(drop),
            "large" => r.large().map(drop),
            "bool" => r.bool().map(drop),
            "maybe_bytes" => r.maybe(|r| r.short().map(drop)).map(drop),
            "nonempty_bytes" => r.non_empty(|r| r.short().map(drop)).map(drop),
            other => panic!("unknown decoder {other}"),
        };
        assert!(
            res.is_err(),
            "decoder {} accepted {}",
            c["decoder"],
            c["input"]
        );
    }
}

#[test]
fn block_padding() {
    let v = xftp("padding.json");
    for field in ["pad_16384", "pad_small", "pad_4096"] {
        for c in cases(&v, field) {
            let msg = hex(&c["message"]);
            let n = c["padded_length"].as_u64().unwrap() as usize;
            let padded = hex(&c["padded"]);
            assert_eq!(pad::pad(&msg, n).unwrap(), padded, "{field}");
            assert_eq!(pad::unpad(&padded).unwrap(), &msg[..]);
        }
    }
    for c in cases(&v, "pad_16384_errors") {
        let n = c["message_length"].as_u64().unwrap() as usize;
        assert!(pad::pad(&ramp(n), pad::BLOCK_SIZE).is_err());
    }
    for c in cases(&v, "pad_small_errors") {
        let n = c["padded_length"].as_u64().unwrap() as usize;
        assert!(pad::pad(&hex(&c["message"]), n).is_err());
    }
    for c in cases(&v, "unpad") {
        assert_eq!(
            pad::unpad(&hex(&c["padded"])).unwrap(),
            &hex(&c["message"])[..]
        );
    }
    for c in cases(&v, "unpad_errors") {
        assert!(pad::unpad(&hex(&c["padded"])).is_err(), "{c}");
    }
}

#[test]
fn file_padding() {
    let v = xftp("padding.json");
    for c in cases(&v, "pad_lazy") {
        let msg = hex(&c["message"]);
        assert_eq!(msg.len() as u64, u64_of(&c["message_length"]));
        let n = u64_of(&c["padded_length"]);
        assert_eq!(pad::pad_lazy(&msg, n).unwrap(), hex(&c["padded"]));
    }
    for c in cases(&v, "pad_lazy_errors") {
        assert!(pad::pad_lazy(&hex(&c["message"]), u64_of(&c["padded_length"])).is_err());
    }
    for c in cases(&v, "split_len") {
        let input = hex(&c["input"]);
        let (len, content) = pad::split_len(&input).unwrap();
        assert_eq!(len, u64_of(&c["len"]));
        assert_eq!(content, &hex(&c["content"])[..]);
    }
    for c in cases(&v, "split_len_errors") {
        assert!(pad::split_len(&hex(&c["input"])).is_err());
    }
}

#[test]
fn ed25519_keys_der_and_signatures() {
    let v = xftp("keys.json");
    for c in cases(&v, "ed25519") {
        let seed = hex(&c["seed"]);
        if let Some(label) = c["label"].as_str().filter(|l| !l.starts_with("bytes-")) {
            assert_eq!(support::seed(label, 32), seed, "seed rule for {label}");
        }
        let sk = PrivateKey::from_raw(KeyAlgorithm::Ed25519, &seed).unwrap();
        let pk = sk.public_key();
        assert_eq!(pk.raw(), &hex(&c["public_raw"])[..]);
        assert_eq!(
            [&seed[..], pk.raw()].concat(),
            hex(&c["private_libsodium_64"])
        );
        assert_eq!(pk.to_der(), hex(&c["public_der_spki"]));
        assert_eq!(*sk.to_der(), hex(&c["private_der_pkcs8"]));
        assert_eq!(b64_encode(&pk.to_der()), str_of(&c["public_der_base64url"]));
        assert_eq!(
            b64_encode(&sk.to_der()),
            str_of(&c["private_der_base64url"])
        );
        assert_eq!(
            smp_core::crypto::digest::sha256(&pk.to_der()).to_vec(),
            hex(&c["sha256_of_public_der"])
        );
        assert_eq!(
            PublicKey::from_der(&hex(&c["public_der_spki"])).unwrap(),
            pk
        );
        assert_eq!(
            PrivateKey::from_der(&hex(&c["private_der_pkcs8"])).unwrap(),
            sk
        );
    }
    for c in cases(&v, "ed25519_signatures") {
        let pk = PublicKey::from_raw(KeyAlgorithm::Ed25519, &hex(&c["public_raw"])).unwrap();
        let msg = hex(&c["message"]);
        let sig = Signature::from_bytes(&hex(&c["signature"])).unwrap();
        assert_eq!(pk.verify(&msg, &sig), c["verify"].as_bool().unwrap());
        let label = str_of(&c["key_label"]);
        let seed = v["ed25519"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["label"] == label)
            .unwrap();
        let sk = PrivateKey::from_raw(KeyAlgorithm::Ed25519, &hex(&seed["seed"])).unwrap();
        assert_eq!(
            sk.sign(&msg).unwrap(),
            sig,
            "deterministic signature for {label}"
        );
    }
    for c in cases(&v, "ed25519_verify_negative") {
        let pk = PublicKey::from_raw(KeyAlgorithm::Ed25519, &hex(&c["public_raw"])).unwrap();
        let sig = Signature::from_bytes(&hex(&c["signature"])).unwrap();
        assert!(!pk.verify(&hex(&c["message"]), &sig), "{}", c["case"]);
    }
}

#[test]
fn x25519_keys_and_dh() {
    let v = xftp("keys.json");
    for c in cases(&v, "x25519") {
        let sk = PrivateKey::from_raw(KeyAlgorithm::X25519, &hex(&c["private_raw"])).unwrap();
        let pk = sk.public_key();
        assert_eq!(pk.raw(), &hex(&c["public_raw"])[..]);
        assert_eq!(pk.to_der(), hex(&c["public_der_spki"]));
        assert_eq!(*sk.to_der(), hex(&c["private_der_pkcs8"]));
        assert_eq!(b64_encode(&pk.to_der()), str_of(&c["public_der_base64url"]));
        assert_eq!(
            b64_encode(&sk.to_der()),
            str_of(&c["private_der_base64url"])
        );
        assert_eq!(
            PrivateKey::from_der(&hex(&c["private_der_pkcs8"])).unwrap(),
            sk
        );
    }
    for c in cases(&v, "x25519_dh") {
        let a = PrivateKey::from_raw(KeyAlgorithm::X25519, &hex(&c["private_a"])).unwrap();
        let b = PublicKey::from_raw(KeyAlgorithm::X25519, &hex(&c["public_b"])).unwrap();
        assert_eq!(a.dh(&b).unwrap().to_vec(), hex(&c["shared_secret"]));
    }
    let p = &v["der_prefixes"];
    let k = [7u8; 32];
    assert_eq!(
        PublicKey::from_raw(KeyAlgorithm::Ed25519, &k)
            .unwrap()
            .to_der()[..12],
        hex(&p["ed25519_spki"])[..]
    );
    assert_eq!(
        PublicKey::from_raw(KeyAlgorithm::X25519, &k)
            .unwrap()
            .to_der()[..12],
        hex(&p["x25519_spki"])[..]
    );
    let ed448 = PublicKey::from_raw(KeyAlgorithm::Ed448, &[7u8; 57])
        .unwrap()
        .to_der();
    assert_eq!(ed448[..12], hex(&p["ed448_spki"])[..]);
    assert_eq!(ed448.len(), 69);
    assert_eq!(
        PrivateKey::from_raw(KeyAlgorithm::Ed25519, &k)
            .unwrap()
            .to_der()[..16],
        hex(&p["ed25519_pkcs8"])[..]
    );
    assert_eq!(
        PrivateKey::from_raw(KeyAlgorithm::X25519, &k)
            .unwrap()
            .to_der()[..16],
        hex(&p["x25519_pkcs8"])[..]
    );
    for c in cases(&v, "der_decode_errors") {
        let alg = match str_of(&c["decoder"]) {
            "decodePubKeyEd25519" => KeyAlgorithm::Ed25519,
            "decodePubKeyX25519" => KeyAlgorithm::X25519,
            d => panic!("unknown decoder {d}"),
        };
        assert!(PublicKey::from_der_as(alg, &hex(&c["input"])).is_err());
    }
}

fn nonce(c: &Value) -> CbNonce {
    CbNonce(arr(&c["nonce"]))
}

#[test]
fn secretbox_symmetric_and_dh() {
    let v = xftp("secretbox.json");
    for c in cases(&v, "crypto_box_symmetric") {
        let key = arr::<32>(&c["key"]);
        let boxed = hex(&c["box"]);
        assert_eq!(
            secretbox::crypto_box(&key, &nonce(c), &hex(&c["message"])),
            boxed
        );
        assert_eq!(
            secretbox::crypto_box_open(&key, &nonce(c), &boxed).unwrap(),
            hex(&c["message"])
        );
    }
    for c in cases(&v, "cb_encrypt_padded") {
        let key = arr::<32>(&c["key"]);
        let n = c["padded_length"].as_u64().unwrap() as usize;
        let boxed = hex(&c["box"]);
        assert_eq!(boxed.len() as u64, u64_of(&c["box_length"]));
        assert_eq!(
            secretbox::cb_encrypt(&key, &nonce(c), &hex(&c["message"]), n).unwrap(),
            boxed
        );
        assert_eq!(
            secretbox::cb_decrypt(&key, &nonce(c), &boxed).unwrap(),
            hex(&c["message"])
        );
    }
    for c in cases(&v, "cb_encrypt_errors") {
        let key = arr::<32>(&c["key"]);
        let m = ramp(c["message_length"].as_u64().unwrap() as usize);
        let n = c["padded_length"].as_u64().unwrap() as usize;
        assert!(secretbox::cb_encrypt(&key, &nonce(c), &m, n).is_err());
    }
    for c in cases(&v, "cb_decrypt_errors") {
        let key = arr::<32>(&c["key"]);
        assert!(
            secretbox::cb_decrypt(&key, &nonce(c), &hex(&c["box"])).is_err(),
            "{}",
            c["case"]
        );
    }
    for c in cases(&v, "crypto_box_dh") {
        let a = PrivateKey::from_raw(KeyAlgorithm::X25519, &hex(&c["private_a"])).unwrap();
        let b = PrivateKey::from_raw(KeyAlgorithm::X25519, &hex(&c["private_b"])).unwrap();
        let pub_b = PublicKey::from_raw(KeyAlgorithm::X25519, &hex(&c["public_b"])).unwrap();
        let pub_a = PublicKey::from_raw(KeyAlgorithm::X25519, &hex(&c["public_a"])).unwrap();
        assert_eq!(b.public_key(), pub_b);
        let secret = a.dh(&pub_b).unwrap();
        assert_eq!(secret.to_vec(), hex(&c["dh_secret"]));
        let boxed = hex(&c["box"]);
        assert_eq!(
            secretbox::crypto_box(&secret, &nonce(c), &hex(&c["message"])),
            boxed
        );
        let other = b.dh(&pub_a).unwrap();
        assert_eq!(
            secretbox::crypto_box_open(&other, &nonce(c), &boxed).unwrap(),
            hex(&c["message"])
        );
    }
    for c in cases(&v, "crypto_box_dh_padded") {
        let a = PrivateKey::from_raw(KeyAlgorithm::X25519, &hex(&c["private_a"])).unwrap();
        let pub_b = PublicKey::from_raw(KeyAlgorithm::X25519, &hex(&c["public_b"])).unwrap();
        let secret = a.dh(&pub_b).unwrap();
        assert_eq!(secret.to_vec(), hex(&c["dh_secret"]));
        let n = c["padded_length"].as_u64().unwrap() as usize;
        let boxed = hex(&c["box"]);
        assert_eq!(
            secretbox::cb_encrypt(&secret, &nonce(c), &hex(&c["message"]), n).unwrap(),
            boxed
        );
        assert_eq!(
            secretbox::cb_decrypt(&secret, &nonce(c), &boxed).unwrap(),
            hex(&c["message"])
        );
    }
}

#[test]
fn crypto_box_authenticator() {
    let v = xftp("secretbox.json");
    for c in cases(&v, "cb_authenticator") {
        let peer = PublicKey::from_raw(KeyAlgorithm::X25519, &hex(&c["peer_public"])).unwrap();
        let own = PrivateKey::from_raw(KeyAlgorithm::X25519, &hex(&c["own_private"])).unwrap();
        let msg = hex(&c["message"]);
        let auth = secretbox::cb_authenticate(&peer, &own, &nonce(c), &msg).unwrap();
        assert_eq!(auth.to_vec(), hex(&c["authenticator"]));
        let w = &c["verify_with"];
        let vpeer = PublicKey::from_raw(KeyAlgorithm::X25519, &hex(&w["peer_public"])).unwrap();
        let vown = PrivateKey::from_raw(KeyAlgorithm::X25519, &hex(&w["own_private"])).unwrap();
        assert_eq!(
            secretbox::cb_verify(&vpeer, &vown, &nonce(c), &auth, &msg),
            w["valid"].as_bool().unwrap()
        );
        assert!(!secretbox::cb_verify(
            &vpeer,
            &vown,
            &nonce(c),
            &auth,
            b"another message"
        ));
    }
}

#[test]
fn streaming_tail_tag() {
    let v = xftp("secretbox.json");
    for c in cases(&v, "sb_tail_tag") {
        let key = SbKey(arr(&c["key"]));
        let msg = hex(&c["message"]);
        assert_eq!(msg.len() as u64, u64_of(&c["message_length"]));
        let out = hex(&c["ciphertext_with_tag"]);
        assert_eq!(
            secretbox::sb_encrypt_tail_tag(&key, &nonce(c), &msg, u64_of(&c["padded_length"]))
                .unwrap(),
            out
        );
        assert_eq!(
            secretbox::sb_decrypt_tail_tag(&key, &nonce(c), &out).unwrap(),
            msg
        );
        let mut bad = out.clone();
        bad[0] ^= 1;
        assert!(secretbox::sb_decrypt_tail_tag(&key, &nonce(c), &bad).is_err());
    }
    for c in cases(&v, "stream_chunked") {
        let key: [u8; 32] = arr(&c["key"]);
        let msg = hex(&c["message"]);
        let ct = hex(&c["ciphertext"]);
        let tag = hex(&c["tag"]);
        let points: Vec<usize> = c["split_points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as usize)
            .collect();
        let mut buf = msg.clone();
        let mut s = SbStream::new(&key, &nonce(c));
        let mut start = 0;
        for &p in points.iter().chain(std::iter::once(&msg.len())) {
            s.encrypt(&mut buf[start..p]);
            start = p;
        }
        assert_eq!(buf, ct);
        assert_eq!(s.tag().to_vec(), tag);
        // Every other split decrypts to the same bytes with the same tag.
        for split in [1, 7, 16, 17, 33, msg.len()] {
            let mut d = ct.clone();
            let mut s = SbStream::new(&key, &nonce(c));
            for piece in d.chunks_mut(split) {
                s.decrypt(piece);
            }
            s.verify(&tag).unwrap();
            assert_eq!(d, msg);
        }
    }
}
