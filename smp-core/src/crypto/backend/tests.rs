//! libsodium and RustCrypto must give the same bytes for the same inputs,
//! however the data is split into calls and wherever a stream is copied.

use super::{RustCrypto, Sodium, XSalsa20Poly1305};
use alloc::vec::Vec;
use proptest::prelude::*;

/// Encrypts `data` with `B`, one call per piece between `cuts`, and returns
/// the ciphertext and tag.
fn encrypt_split<B: XSalsa20Poly1305>(
    secret: &[u8; 32],
    nonce: &[u8; 24],
    data: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, [u8; 16]) {
    let mut buf = data.to_vec();
    let mut s = B::new(secret, nonce);
    let mut at = 0;
    for &c in cuts.iter().chain(core::iter::once(&data.len())) {
        let c = c.clamp(at, data.len());
        s.encrypt(&mut buf[at..c]);
        at = c;
    }
    (buf, s.tag())
}

/// Decrypts with `B` in the same pieces.
fn decrypt_split<B: XSalsa20Poly1305>(
    secret: &[u8; 32],
    nonce: &[u8; 24],
    ct: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, [u8; 16]) {
    let mut buf = ct.to_vec();
    let mut s = B::new(secret, nonce);
    let mut at = 0;
    for &c in cuts.iter().chain(core::iter::once(&ct.len())) {
        let c = c.clamp(at, ct.len());
        s.decrypt(&mut buf[at..c]);
        at = c;
    }
    (buf, s.tag())
}

fn bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random lengths up to 100 KiB, each backend with its own random split.
    #[test]
    fn same_bytes_for_any_length_and_split(
        secret in any::<[u8; 32]>(),
        nonce in any::<[u8; 24]>(),
        len in 0usize..=100 * 1024,
        seed in any::<u32>(),
        mut cuts_a in proptest::collection::vec(0usize..=100 * 1024, 0..12),
        mut cuts_b in proptest::collection::vec(0usize..=100 * 1024, 0..12),
    ) {
        let data = bytes(len, seed);
        cuts_a.sort_unstable();
        cuts_b.sort_unstable();
        let (ct_r, tag_r) = encrypt_split::<RustCrypto>(&secret, &nonce, &data, &cuts_a);
        let (ct_s, tag_s) = encrypt_split::<Sodium>(&secret, &nonce, &data, &cuts_b);
        prop_assert_eq!(&ct_r, &ct_s);
        prop_assert_eq!(tag_r, tag_s);
        if len > 0 {
            prop_assert_ne!(&ct_s, &data);
        }
        let (pt_r, dtag_r) = decrypt_split::<RustCrypto>(&secret, &nonce, &ct_s, &cuts_b);
        let (pt_s, dtag_s) = decrypt_split::<Sodium>(&secret, &nonce, &ct_r, &cuts_a);
        prop_assert_eq!(&pt_r, &data);
        prop_assert_eq!(&pt_s, &data);
        prop_assert_eq!(dtag_r, tag_r);
        prop_assert_eq!(dtag_s, tag_r);
    }

    /// Small pieces: many calls that start and end inside keystream blocks
    /// and Poly1305 blocks.
    #[test]
    fn same_bytes_in_small_pieces(
        secret in any::<[u8; 32]>(),
        nonce in any::<[u8; 24]>(),
        pieces in proptest::collection::vec(0usize..150, 0..60),
    ) {
        let len: usize = pieces.iter().sum();
        let data = bytes(len, len as u32);
        let cuts: Vec<usize> = pieces
            .iter()
            .scan(0, |at, p| {
                *at += p;
                Some(*at)
            })
            .collect();
        let whole = encrypt_split::<RustCrypto>(&secret, &nonce, &data, &[]);
        prop_assert_eq!(&encrypt_split::<Sodium>(&secret, &nonce, &data, &cuts), &whole);
        prop_assert_eq!(&encrypt_split::<RustCrypto>(&secret, &nonce, &data, &cuts), &whole);
    }

    /// A copy taken anywhere continues exactly like the original, and both
    /// like the other backend.
    #[test]
    fn a_copy_mid_stream_matches(
        secret in any::<[u8; 32]>(),
        nonce in any::<[u8; 24]>(),
        len in 0usize..5000,
        at in 0usize..5000,
        cut in 0usize..5000,
    ) {
        let data = bytes(len, 7);
        let at = at.min(len);
        let cut = cut.clamp(at, len);
        let want = encrypt_split::<RustCrypto>(&secret, &nonce, &data, &[]);
        let mut head = data[..at].to_vec();
        let mut s = Sodium::new(&secret, &nonce);
        s.encrypt(&mut head);
        let mut copy = s.clone();
        let mut r = RustCrypto::new(&secret, &nonce);
        r.encrypt(&mut data[..at].to_vec());
        let mut rcopy = r.clone();
        for st in [&mut s as &mut dyn FnEncrypt, &mut copy, &mut r, &mut rcopy] {
            let mut rest = data[at..].to_vec();
            st.enc(&mut rest[..cut - at]);
            st.enc(&mut rest[cut - at..]);
            prop_assert_eq!(&[head.clone(), rest].concat(), &want.0);
        }
        prop_assert_eq!(s.tag(), want.1);
        prop_assert_eq!(copy.tag(), want.1);
        prop_assert_eq!(r.tag(), want.1);
        prop_assert_eq!(rcopy.tag(), want.1);
    }
}

/// Lets the copy test drive both backends through one loop.
trait FnEncrypt {
    fn enc(&mut self, buf: &mut [u8]);
}
impl<B: XSalsa20Poly1305> FnEncrypt for B {
    fn enc(&mut self, buf: &mut [u8]) {
        self.encrypt(buf);
    }
}

/// One buffer cut at every offset in 0..200: every boundary position
/// relative to the 64-byte keystream block and 16-byte Poly1305 block.
#[test]
fn every_cut_below_200_gives_the_same_bytes() {
    let data = bytes(1000, 42);
    let (secret, nonce) = ([9u8; 32], [5u8; 24]);
    let want = encrypt_split::<RustCrypto>(&secret, &nonce, &data, &[]);
    assert_eq!(encrypt_split::<Sodium>(&secret, &nonce, &data, &[]), want);
    for cut in 0..200 {
        assert_eq!(
            encrypt_split::<Sodium>(&secret, &nonce, &data, &[cut]),
            want,
            "cut at {cut}"
        );
        // And a second cut a little later, so two boundaries fall in a block.
        assert_eq!(
            encrypt_split::<Sodium>(&secret, &nonce, &data, &[cut, cut + cut % 71]),
            want,
            "cuts at {cut}, {}",
            cut + cut % 71
        );
        let (pt, tag) = decrypt_split::<Sodium>(&secret, &nonce, &want.0, &[cut]);
        assert_eq!((pt.as_slice(), tag), (data.as_slice(), want.1));
    }
}

/// The tag of nothing depends only on the keys; a flipped bit or another
/// nonce changes it (so the comparisons above can fail).
#[test]
fn tags_agree_and_depend_on_everything() {
    let (secret, nonce) = ([1u8; 32], [2u8; 24]);
    let empty = Sodium::new(&secret, &nonce).tag();
    assert_eq!(empty, RustCrypto::new(&secret, &nonce).tag());
    let other_nonce = {
        let mut n = nonce;
        n[23] ^= 1;
        Sodium::new(&secret, &n).tag()
    };
    assert_ne!(empty, other_nonce);
    let data = bytes(333, 3);
    let (ct, tag) = encrypt_split::<Sodium>(&secret, &nonce, &data, &[100]);
    let mut flipped = ct.clone();
    flipped[200] ^= 0x10;
    let (_, bad) = decrypt_split::<Sodium>(&secret, &nonce, &flipped, &[]);
    assert_ne!(bad, tag);
    let (_, bad_r) = decrypt_split::<RustCrypto>(&secret, &nonce, &flipped, &[]);
    assert_eq!(bad, bad_r);
}
