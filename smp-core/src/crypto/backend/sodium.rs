//! The libsodium backend: `crypto_core_hsalsa20`, `crypto_stream_xsalsa20_xor_ic`
//! and the streaming `crypto_onetimeauth_poly1305_*` API. libsodium picks its
//! SSE2/AVX2 code at `sodium_init()`, which [`init`] runs once.
//!
//! The only `unsafe` in smp-core is here, each block with its proof.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use super::XSalsa20Poly1305;
use libsodium_sys as ffi;
use zeroize::Zeroize;

/// Salsa20's block: `crypto_stream_xsalsa20_xor_ic` counts in these.
const BLOCK: usize = 64;

/// Runs `sodium_init()` once per process, before any other libsodium call.
fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // SAFETY: sodium_init takes no arguments and is documented as safe
        // to call at any time from any thread; Once runs it a single time.
        let rc = unsafe { ffi::sodium_init() };
        // 0: initialised now, 1: already was; -1: cannot be used at all.
        assert!(rc >= 0, "libsodium failed to initialise");
        // SAFETY: a pure function of no arguments returning a constant.
        let state_len = unsafe { ffi::crypto_onetimeauth_poly1305_statebytes() };
        // The binding's state struct must be at least as large as the one
        // this libsodium writes, or the update/final calls below would write
        // past it.
        assert!(
            state_len <= size_of::<ffi::crypto_onetimeauth_poly1305_state>(),
            "libsodium's poly1305 state is larger than its binding"
        );
    });
}

/// XORs `buf` in place with the XSalsa20(key, nonce) keystream from block
/// `counter` on (keystream byte `64 * counter`).
fn xor_keystream(buf: &mut [u8], nonce: &[u8; 24], counter: u64, key: &[u8; 32]) {
    if buf.is_empty() {
        return;
    }
    // SAFETY: c and m are the same pointer to `buf.len()` initialised,
    // writable bytes (libsodium documents in-place XOR as supported: it
    // reads each input block before writing it); n points to 24 readable
    // bytes and k to 32, the sizes crypto_stream_xsalsa20 reads. `init` ran
    // in `Sodium::new`, the only way to get a key here.
    let rc = unsafe {
        ffi::crypto_stream_xsalsa20_xor_ic(
            buf.as_mut_ptr(),
            buf.as_ptr(),
            buf.len() as u64,
            nonce.as_ptr(),
            counter,
            key.as_ptr(),
        )
    };
    // Only fails past crypto_stream_xsalsa20_MESSAGEBYTES_MAX (2^64 - 1).
    debug_assert_eq!(rc, 0);
}

/// XSalsa20-Poly1305 through libsodium. `Clone` copies everything: the
/// Poly1305 state is plain data (no pointers into itself), so a copy
/// continues independently. Keys and states are wiped on drop.
#[derive(Clone)]
pub struct Sodium {
    /// HSalsa20(secret, 0): the XSalsa20 key.
    key: [u8; 32],
    nonce: [u8; 24],
    /// Keystream offset of the next data byte (data starts at 32).
    pos: u64,
    /// The keystream block holding `pos` when `pos` is inside a block:
    /// libsodium only starts at block boundaries, so the rest of a block
    /// cut by one call is kept for the next.
    block: [u8; BLOCK],
    mac: ffi::crypto_onetimeauth_poly1305_state,
}

impl Drop for Sodium {
    fn drop(&mut self) {
        self.key.zeroize();
        self.block.zeroize();
        self.mac.opaque.zeroize();
    }
}

impl Sodium {
    fn xor(&mut self, buf: &mut [u8]) {
        let mut i = 0;
        let off = (self.pos % BLOCK as u64) as usize;
        if off != 0 {
            let n = (BLOCK - off).min(buf.len());
            for (b, k) in buf[..n].iter_mut().zip(&self.block[off..off + n]) {
                *b ^= k;
            }
            i = n;
            self.pos += n as u64;
        }
        let rest = &mut buf[i..];
        if rest.is_empty() {
            return;
        }
        // Here `pos` is on a block boundary.
        let whole = rest.len() - rest.len() % BLOCK;
        let (head, tail) = rest.split_at_mut(whole);
        xor_keystream(head, &self.nonce, self.pos / BLOCK as u64, &self.key);
        self.pos += whole as u64;
        if !tail.is_empty() {
            self.block = [0; BLOCK];
            xor_keystream(
                &mut self.block,
                &self.nonce,
                self.pos / BLOCK as u64,
                &self.key,
            );
            for (b, k) in tail.iter_mut().zip(&self.block) {
                *b ^= k;
            }
            self.pos += tail.len() as u64;
        }
    }

    fn mac_update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // SAFETY: `mac` was set up by crypto_onetimeauth_poly1305_init in
        // `new` (or copied from such a state, which is plain data) and is at
        // least statebytes() long (checked in `init`); `data` is
        // `data.len()` readable bytes.
        let rc = unsafe {
            ffi::crypto_onetimeauth_poly1305_update(&mut self.mac, data.as_ptr(), data.len() as u64)
        };
        debug_assert_eq!(rc, 0);
    }
}

impl XSalsa20Poly1305 for Sodium {
    fn new(secret: &[u8; 32], nonce: &[u8; 24]) -> Self {
        init();
        let mut key = [0u8; 32];
        let zero = [0u8; 16];
        // SAFETY: out points to 32 writable bytes, in to 16 readable bytes,
        // k to 32 readable bytes — the sizes crypto_core_hsalsa20 uses; a
        // null c selects the standard "expand 32-byte k" constants, as
        // documented.
        let rc = unsafe {
            ffi::crypto_core_hsalsa20(
                key.as_mut_ptr(),
                zero.as_ptr(),
                secret.as_ptr(),
                core::ptr::null(),
            )
        };
        debug_assert_eq!(rc, 0);
        let mut s = Self {
            key,
            nonce: *nonce,
            pos: 32,
            block: [0; BLOCK],
            mac: ffi::crypto_onetimeauth_poly1305_state { opaque: [0; 256] },
        };
        key.zeroize();
        // Keystream block 0: bytes 0..32 key Poly1305, 32..64 are data's.
        xor_keystream(&mut s.block, &s.nonce, 0, &s.key);
        // SAFETY: `mac` is a writable state of at least statebytes() bytes
        // (checked in `init`), aligned as the binding declares; the key
        // pointer is to the 32 readable bytes of `block[..32]`.
        let rc = unsafe { ffi::crypto_onetimeauth_poly1305_init(&mut s.mac, s.block.as_ptr()) };
        debug_assert_eq!(rc, 0);
        s.block[..32].zeroize();
        s
    }

    fn encrypt(&mut self, buf: &mut [u8]) {
        self.xor(buf);
        self.mac_update(buf);
    }

    fn decrypt(&mut self, buf: &mut [u8]) {
        self.mac_update(buf);
        self.xor(buf);
    }

    fn tag(mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        // SAFETY: `mac` is an initialised state as in `mac_update`; out
        // points to the 16 writable bytes crypto_onetimeauth_poly1305_final
        // writes.
        let rc = unsafe { ffi::crypto_onetimeauth_poly1305_final(&mut self.mac, out.as_mut_ptr()) };
        debug_assert_eq!(rc, 0);
        out
    }
}
