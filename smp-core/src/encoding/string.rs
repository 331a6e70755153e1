//! The string encoding (simplexmq `strEncode`/`strP`): base64url with `=`
//! padding on output; input accepted padded or unpadded, as the reference's
//! parser does.

use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE};

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    #[error("empty base64url text")]
    Empty,
    #[error("invalid base64url text")]
    Invalid,
}

/// base64url with `=` padding.
pub fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

/// base64url, padded or not; empty text is refused as in the reference.
pub fn b64_decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    if text.trim_end_matches('=').is_empty() {
        return Err(Base64Error::Empty);
    }
    LENIENT.decode(text).map_err(|_| Base64Error::Invalid)
}
