//! Properties of the encodings, key DER, boxes and file crypto: no decoder
//! panics on random or truncated input, and encoders round-trip.

use proptest::prelude::*;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey, Signature};
use smp_core::crypto::secretbox::{self, CbNonce, SbKey, SbStream};
use smp_core::encoding::pad;
use smp_core::encoding::string::{b64_decode, b64_encode};
use smp_core::encoding::{Reader, Writer};
use smp_core::file::crypto::{FileDecryptor, decrypt_bytes, encrypt_bytes};
use smp_core::file::header::FileHeader;

/// Runs a program of reads (one opcode per step) over arbitrary bytes.
fn read_program(ops: &[u8], data: &[u8]) {
    let mut r = Reader::new(data);
    for op in ops {
        let _ = match op % 12 {
            0 => r.u8().map(drop),
            1 => r.u16().map(drop),
            2 => r.u32().map(drop),
            3 => r.i64().map(drop),
            4 => r.short().map(drop),
            5 => r.large().map(drop),
            6 => r.bool().map(drop),
            7 => r.maybe(|r| r.short().map(drop)).map(drop),
            8 => r.list(|r| r.large().map(drop)).map(drop),
            9 => r.non_empty(|r| r.short().map(drop)).map(drop),
            10 => r.space(),
            _ => {
                r.tag();
                Ok(())
            }
        };
        assert!(r.position() <= data.len());
    }
    let _ = r.end();
    r.tail();
    assert!(r.is_empty());
}

fn valid_key_ders() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for alg in [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Ed448,
        KeyAlgorithm::X25519,
    ] {
        let k = PrivateKey::from_raw(alg, &vec![5u8; alg.private_len()]).unwrap();
        v.push(k.to_der().to_vec());
        v.push(k.public_key().to_der());
    }
    v
}

proptest! {
    #[test]
    fn reader_never_panics(ops in proptest::collection::vec(any::<u8>(), 0..32), data in proptest::collection::vec(any::<u8>(), 0..600)) {
        read_program(&ops, &data);
    }

    #[test]
    fn writer_reader_round_trip(
        a in any::<u16>(), b in any::<u32>(), c in any::<i64>(), t in any::<bool>(),
        s in proptest::collection::vec(any::<u8>(), 0..=255),
        l in proptest::collection::vec(any::<u8>(), 0..2000),
        m in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..10),
    ) {
        let mut w = Writer::new();
        w.u16(a).u32(b).i64(c).bool(t);
        w.short(&s).unwrap();
        w.large(&l).unwrap();
        w.maybe(m.as_deref(), |w, x| w.short(x).map(drop)).unwrap();
        w.non_empty(&items, |w, x| w.short(x).map(drop)).unwrap();
        let bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(r.u16().unwrap(), a);
        prop_assert_eq!(r.u32().unwrap(), b);
        prop_assert_eq!(r.i64().unwrap(), c);
        prop_assert_eq!(r.bool().unwrap(), t);
        prop_assert_eq!(r.short().unwrap(), &s[..]);
        prop_assert_eq!(r.large().unwrap(), &l[..]);
        prop_assert_eq!(r.maybe(|r| r.short().map(<[u8]>::to_vec)).unwrap(), m);
        prop_assert_eq!(r.non_empty(|r| r.short().map(<[u8]>::to_vec)).unwrap(), items);
        prop_assert!(r.end().is_ok());
        // Every strict prefix fails somewhere instead of panicking.
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let ok = r.u16().is_ok() && r.u32().is_ok() && r.i64().is_ok() && r.bool().is_ok()
                && r.short().is_ok() && r.large().is_ok()
                && r.maybe(|r| r.short().map(drop)).is_ok()
                && r.non_empty(|r| r.short().map(drop)).is_ok();
            prop_assert!(!ok, "prefix of {} bytes decoded", cut);
        }
    }

    #[test]
    fn padding_round_trips_and_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..3000), extra in 0usize..500, junk in proptest::collection::vec(any::<u8>(), 0..100)) {
        let n = msg.len() + 2 + extra;
        let padded = pad::pad(&msg, n).unwrap();
        prop_assert_eq!(padded.len(), n);
        prop_assert_eq!(pad::unpad(&padded).unwrap(), &msg[..]);
        prop_assert!(pad::pad(&msg, msg.len() + 1).is_err());
        let lazy = pad::pad_lazy(&msg, (msg.len() + 8 + extra) as u64).unwrap();
        let (len, content) = pad::split_len(&lazy).unwrap();
        prop_assert_eq!((len, content), (msg.len() as u64, &msg[..]));
        let _ = pad::unpad(&junk);
        let _ = pad::split_len(&junk);
    }

    #[test]
    fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..200), text in "[A-Za-z0-9_=+/-]{0,80}") {
        let t = b64_encode(&bytes);
        prop_assert_eq!(b64_decode(&t).unwrap(), bytes.clone());
        prop_assert_eq!(b64_decode(t.trim_end_matches('=')).unwrap(), bytes);
        let _ = b64_decode(&text);
    }

    #[test]
    fn key_der_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..120), which in 0usize..6, pos in any::<usize>(), byte in any::<u8>()) {
        let _ = PublicKey::from_der(&data);
        let _ = PrivateKey::from_der(&data);
        let _ = Signature::from_bytes(&data);
        let valid = &valid_key_ders()[which];
        for cut in 0..valid.len() {
            prop_assert!(PublicKey::from_der(&valid[..cut]).is_err());
            prop_assert!(PrivateKey::from_der(&valid[..cut]).is_err());
        }
        let mut mutated = valid.clone();
        let i = pos % mutated.len();
        mutated[i] = byte;
        let _ = PublicKey::from_der(&mutated);
        let _ = PrivateKey::from_der(&mutated);
    }

    #[test]
    fn boxes_reject_garbage(key in any::<[u8; 32]>(), nonce in any::<[u8; 24]>(), data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let n = CbNonce(nonce);
        // A random box authenticates with probability 2^-128.
        prop_assert!(secretbox::crypto_box_open(&key, &n, &data).is_err());
        prop_assert!(secretbox::cb_decrypt(&key, &n, &data).is_err());
        prop_assert!(secretbox::sb_decrypt_tail_tag(&SbKey(key), &n, &data).is_err());
    }

    #[test]
    fn stream_split_does_not_matter(key in any::<[u8; 32]>(), data in proptest::collection::vec(any::<u8>(), 0..2000), cuts in proptest::collection::vec(0usize..2000, 0..8)) {
        let n = CbNonce([3; 24]);
        let mut whole = data.clone();
        let mut s = SbStream::new(&key, &n);
        s.encrypt(&mut whole);
        let tag = s.tag();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        points.sort();
        let mut pieces = data.clone();
        let mut s = SbStream::new(&key, &n);
        let mut start = 0;
        for p in points.into_iter().chain([data.len()]) {
            s.encrypt(&mut pieces[start..p]);
            start = p;
        }
        prop_assert_eq!(&pieces, &whole);
        prop_assert_eq!(s.tag(), tag);
    }

    #[test]
    fn file_header_round_trips(name in "\\PC{0,60}", extra in proptest::option::of("\\PC{0,30}"), junk in proptest::collection::vec(any::<u8>(), 0..600)) {
        let h = FileHeader { file_name: name, file_extra: extra };
        if let Ok(enc) = h.encode() {
            prop_assert_eq!(FileHeader::decode_prefix(&enc).unwrap(), (h, enc.len()));
        }
        let _ = FileHeader::decode_prefix(&junk);
    }

    #[test]
    fn file_decryption_never_panics(key in any::<[u8; 32]>(), data in proptest::collection::vec(any::<u8>(), 0..400), enc_size in 0u64..600, split in 1usize..64) {
        let n = CbNonce([1; 24]);
        let _ = decrypt_bytes(&SbKey(key), &n, &data);
        if let Ok(mut d) = FileDecryptor::new(&SbKey(key), &n, enc_size) {
            let mut out = Vec::new();
            let mut failed = false;
            for piece in data.chunks(split) {
                if d.update(piece, &mut out).is_err() {
                    failed = true;
                    break;
                }
            }
            if !failed {
                prop_assert!(d.finish().is_err());
            }
        }
    }

    #[test]
    fn files_round_trip_with_any_split(content in proptest::collection::vec(any::<u8>(), 0..5000), name in "[a-z]{0,20}", split in 1usize..700) {
        let key = SbKey([9; 32]);
        let n = CbNonce([4; 24]);
        let h = FileHeader::new(name);
        let size = (content.len() + 100) as u64 + 24;
        let enc = encrypt_bytes(&key, &n, &h, &content, size).unwrap();
        prop_assert_eq!(enc.len() as u64, size);
        let mut d = FileDecryptor::new(&key, &n, size).unwrap();
        let mut out = Vec::new();
        for piece in enc.chunks(split) {
            d.update(piece, &mut out).unwrap();
        }
        prop_assert_eq!(d.finish().unwrap(), h);
        prop_assert_eq!(out, content);
    }
}
