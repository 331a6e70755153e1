//! The XSalsa20-Poly1305 backends: one interface, chosen at build time (as
//! rustls picks a crypto provider).
//!
//! * [`RustCrypto`] — pure Rust (`salsa20` + `poly1305`), always built: it is
//!   the only one on `no_std`/bare metal.
//! * [`Sodium`] — libsodium's SIMD code (feature `sodium`, on with `std`),
//!   about four times faster on x86_64.
//!
//! [`Active`] is the one [`SbStream`](super::secretbox::SbStream) and every
//! box use. Without the `sodium` feature it is RustCrypto. With it, the
//! build picks a default — libsodium, unless built with
//! `SMP_CORE_CRYPTO_BACKEND=rustcrypto` (see `build.rs`) — and a process
//! may switch at run time ([`select`], or the same variable in its
//! environment), so that benches can measure one against the other in the
//! same run. Both compute the same bytes; the tests here compare them.

mod rustcrypto;
#[cfg(feature = "sodium")]
mod sodium;

pub use rustcrypto::RustCrypto;
#[cfg(feature = "sodium")]
pub use sodium::Sodium;

/// An incremental XSalsa20-Poly1305 state as simplexmq uses it: the 32-byte
/// secret goes through HSalsa20 with a zero nonce, XSalsa20(subkey, nonce)
/// keystream bytes 0..32 key Poly1305, and data is XORed from keystream byte
/// 32 on. Any split of the data into calls must give the same bytes, and a
/// clone must continue exactly like the original.
pub trait XSalsa20Poly1305: Clone + Send + Sync {
    /// Keys the state from a 32-byte secret and a 24-byte nonce.
    fn new(secret: &[u8; 32], nonce: &[u8; 24]) -> Self;
    /// Encrypts `buf` in place and authenticates the ciphertext.
    fn encrypt(&mut self, buf: &mut [u8]);
    /// Authenticates the ciphertext in `buf`, then decrypts it in place.
    fn decrypt(&mut self, buf: &mut [u8]);
    /// The Poly1305 tag over all ciphertext seen so far.
    fn tag(self) -> [u8; 16];
}

/// A backend by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sodium,
    RustCrypto,
}

impl Backend {
    /// `"sodium"` or `"rustcrypto"`, as `SMP_CORE_CRYPTO_BACKEND` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sodium => "sodium",
            Self::RustCrypto => "rustcrypto",
        }
    }

    /// The build's default (see `build.rs`).
    pub const fn build_default() -> Self {
        if cfg!(smp_sodium) {
            Self::Sodium
        } else {
            Self::RustCrypto
        }
    }
}

/// The backend new states are keyed with.
#[cfg(not(feature = "sodium"))]
pub type Active = RustCrypto;

/// Without libsodium there is nothing to choose.
#[cfg(not(feature = "sodium"))]
pub fn active() -> Backend {
    Backend::RustCrypto
}

#[cfg(feature = "sodium")]
mod switch {
    use super::{Backend, RustCrypto, Sodium, XSalsa20Poly1305};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// 0: not decided yet; then 1 + the `Backend` discriminant.
    static CHOSEN: AtomicU8 = AtomicU8::new(0);

    fn encode(b: Backend) -> u8 {
        match b {
            Backend::Sodium => 1,
            Backend::RustCrypto => 2,
        }
    }

    /// Makes new states use `backend`, process-wide (states already keyed
    /// keep theirs). For measuring one backend against the other in one
    /// run; both give the same bytes.
    pub fn select(backend: Backend) {
        CHOSEN.store(encode(backend), Ordering::Relaxed);
    }

    /// The backend in use: [`select`]'s choice, else
    /// `SMP_CORE_CRYPTO_BACKEND` read from the environment at first use
    /// (so a bench can run child processes on either), else the build's
    /// default.
    pub fn active() -> Backend {
        match CHOSEN.load(Ordering::Relaxed) {
            1 => Backend::Sodium,
            2 => Backend::RustCrypto,
            _ => {
                let b = match std::env::var("SMP_CORE_CRYPTO_BACKEND").as_deref() {
                    Ok("sodium") => Backend::Sodium,
                    Ok("rustcrypto") => Backend::RustCrypto,
                    _ => Backend::build_default(),
                };
                // A racing `select` wins over the environment.
                let _ = CHOSEN.compare_exchange(0, encode(b), Ordering::Relaxed, Ordering::Relaxed);
                active()
            }
        }
    }

    /// A state of whichever backend was active when it was keyed: one
    /// branch per call, next to kilobytes of cipher work.
    // Unboxed on purpose: boxing the larger state would cost an allocation
    // per box opened or sealed, and a state is one per message or chunk.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone)]
    pub enum Switched {
        Sodium(Sodium),
        RustCrypto(RustCrypto),
    }

    impl XSalsa20Poly1305 for Switched {
        fn new(secret: &[u8; 32], nonce: &[u8; 24]) -> Self {
            match active() {
                Backend::Sodium => Self::Sodium(Sodium::new(secret, nonce)),
                Backend::RustCrypto => Self::RustCrypto(RustCrypto::new(secret, nonce)),
            }
        }
        fn encrypt(&mut self, buf: &mut [u8]) {
            match self {
                Self::Sodium(s) => s.encrypt(buf),
                Self::RustCrypto(s) => s.encrypt(buf),
            }
        }
        fn decrypt(&mut self, buf: &mut [u8]) {
            match self {
                Self::Sodium(s) => s.decrypt(buf),
                Self::RustCrypto(s) => s.decrypt(buf),
            }
        }
        fn tag(self) -> [u8; 16] {
            match self {
                Self::Sodium(s) => s.tag(),
                Self::RustCrypto(s) => s.tag(),
            }
        }
    }
}

#[cfg(feature = "sodium")]
pub use switch::{Switched, active, select};

/// The state every box and stream uses: with libsodium built in, either
/// backend, as [`active`] says when the state is keyed.
#[cfg(feature = "sodium")]
pub type Active = Switched;

#[cfg(all(test, feature = "sodium"))]
mod tests;
