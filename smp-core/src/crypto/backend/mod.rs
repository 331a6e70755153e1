//! The XSalsa20-Poly1305 backends: one interface, chosen at build time (as
//! rustls picks a crypto provider).
//!
//! * [`RustCrypto`] — pure Rust (`salsa20` + `poly1305`), always built: it is
//!   the only one on `no_std`/bare metal.
//! * [`Sodium`] — libsodium's SIMD code (feature `sodium`, on with `std`),
//!   about four times faster on x86_64.
//!
//! [`Active`] is the one [`SbStream`](super::secretbox::SbStream) and every
//! box use: `Sodium` when the `sodium` feature is on, unless the build was
//! made with `SMP_CORE_CRYPTO_BACKEND=rustcrypto` (so that the vector tests
//! can be run against the pure-Rust backend in a std build; see `build.rs`).
//! Both compute the same bytes; the tests here compare them.

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

/// The backend this build uses.
#[cfg(smp_sodium)]
pub type Active = Sodium;
/// The backend this build uses.
#[cfg(not(smp_sodium))]
pub type Active = RustCrypto;

/// The name of [`Active`] (`"sodium"` or `"rustcrypto"`), for logs and for
/// tests that check a build got the backend it asked for.
pub const ACTIVE: &str = if cfg!(smp_sodium) {
    "sodium"
} else {
    "rustcrypto"
};

#[cfg(all(test, feature = "sodium"))]
mod tests;
