//! Files: the header, chunk sizing and the encryption of whole files.

pub mod chunks;
pub mod crypto;
pub mod header;
#[cfg(feature = "std")]
pub mod stream;
