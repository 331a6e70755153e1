//! Web links: a recipient description compressed into a URL fragment,
//! `https://<host>/#<base64url(raw DEFLATE(yaml))>` (reference
//! `encodeWebURI`, `decodeWebURI`, `fileWebLink`).
//!
//! Compressed bytes differ between DEFLATE implementations; only
//! decodability is shared, so links made here differ from the reference's
//! but both sides read each other's.

use alloc::string::String;
use alloc::vec::Vec;

use super::description::FileDescription;
use crate::encoding::string::{b64_decode, b64_encode};

/// The largest description text a fragment may inflate to. Descriptions of
/// the biggest files the reference allows stay well below it; the bound
/// turns a deflate bomb into an error instead of an allocation.
pub const MAX_DESCRIPTION_LEN: usize = 8 * 1024 * 1024;

/// Why a web link could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebLinkError {
    #[error("a description without chunks has no server to link to")]
    NoChunks,
    #[error("the link has no fragment (nothing after '#')")]
    NoFragment,
    #[error("the fragment is not valid base64url")]
    Base64,
    #[error("the fragment is not valid DEFLATE data")]
    Inflate,
    #[error("the fragment inflates to more than {0} bytes")]
    TooLarge(usize),
    #[error("the description in the fragment is not UTF-8")]
    NotUtf8,
    #[error("invalid description in the link: {0}")]
    Description(#[from] super::description::DescriptionError),
}

/// `base64url(raw DEFLATE(yaml))`, padded, without the leading `#`.
pub fn encode_fragment(fd: &FileDescription) -> String {
    let compressed = miniz_oxide::deflate::compress_to_vec(fd.to_yaml().as_bytes(), 6);
    b64_encode(&compressed)
}

/// `https://<first host of chunk 1's first replica>/#<fragment>`; the
/// server's port and other hosts are dropped and the host is written in its
/// address form (an IPv6 host without brackets), all as in the reference.
pub fn web_link(fd: &FileDescription) -> Result<String, WebLinkError> {
    let server = fd
        .chunks
        .first()
        .and_then(|c| c.replicas.first())
        .map(|r| &r.server)
        .ok_or(WebLinkError::NoChunks)?;
    let mut link = String::from("https://");
    link.push_str(&alloc::format!("{}", server.hosts()[0]));
    link.push_str("/#");
    link.push_str(&encode_fragment(fd));
    Ok(link)
}

/// The fragment of a link: everything after the first `#` of an
/// `http(s)://` link, or the whole input when it is a bare fragment.
pub fn fragment_of(input: &str) -> Result<&str, WebLinkError> {
    let input = input.trim();
    let frag = match input.split_once('#') {
        Some((_, f)) => f,
        None if input.starts_with("http://") || input.starts_with("https://") => "",
        None => input,
    };
    if frag.is_empty() {
        Err(WebLinkError::NoFragment)
    } else {
        Ok(frag)
    }
}

/// Decodes and inflates a fragment (padded or not) to the description text,
/// refusing output above `limit` bytes.
pub fn inflate_fragment_with_limit(fragment: &str, limit: usize) -> Result<String, WebLinkError> {
    let compressed: Vec<u8> = b64_decode(fragment).map_err(|_| WebLinkError::Base64)?;
    let yaml = miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed, limit).map_err(
        |e| match e.status {
            miniz_oxide::inflate::TINFLStatus::HasMoreOutput => WebLinkError::TooLarge(limit),
            _ => WebLinkError::Inflate,
        },
    )?;
    String::from_utf8(yaml).map_err(|_| WebLinkError::NotUtf8)
}

/// [`inflate_fragment_with_limit`] with [`MAX_DESCRIPTION_LEN`].
pub fn inflate_fragment(fragment: &str) -> Result<String, WebLinkError> {
    inflate_fragment_with_limit(fragment, MAX_DESCRIPTION_LEN)
}

#[cfg(feature = "std")]
mod decode {
    use super::*;
    use crate::file::description::{FileParty, ValidFileDescription};

    /// Fragment → validated recipient description (reference `decodeWebURI`).
    pub fn decode_fragment(fragment: &str) -> Result<ValidFileDescription, WebLinkError> {
        let yaml = inflate_fragment(fragment)?;
        Ok(ValidFileDescription::from_yaml(
            &yaml,
            FileParty::Recipient,
        )?)
    }

    /// Accepts `https://…#frag`, `http://…#frag` or a bare fragment, as the
    /// reference CLI's `recv` does.
    pub fn decode_web_link(input: &str) -> Result<ValidFileDescription, WebLinkError> {
        decode_fragment(fragment_of(input)?)
    }
}

#[cfg(feature = "std")]
pub use decode::{decode_fragment, decode_web_link};
