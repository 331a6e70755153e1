//! Files: the header, chunk sizing, the encryption of whole files, the
//! descriptions that tell a recipient where the chunks are, and web links.

pub mod chunks;
pub mod crypto;
pub mod description;
pub mod header;
#[cfg(feature = "std")]
pub mod stream;
pub mod weblink;
