//! XFTP files: descriptions and web links.

pub mod description;
pub mod weblink;
