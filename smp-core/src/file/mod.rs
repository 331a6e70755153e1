//! Files: the header, chunk sizing, the encryption of whole files, the
//! descriptions that tell a recipient where the chunks are, Reed–Solomon
//! parity over chunks, and web links.

pub mod chunks;
pub mod crypto;
pub mod description;
pub mod header;
pub mod parity;
#[cfg(feature = "std")]
pub mod stream;
pub mod weblink;
