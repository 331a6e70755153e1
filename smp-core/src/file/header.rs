//! The file header encrypted in front of the content: the file name and an
//! optional extra string (`FileHeader`).

use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::string::String;
use alloc::vec::Vec;

/// Only this many bytes after the length prefix are offered to the header
/// parser, as in the reference (bounds the work on hostile input).
pub const HEADER_PARSE_LIMIT: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub file_name: String,
    pub file_extra: Option<String>,
}

impl FileHeader {
    pub fn new(file_name: impl Into<String>) -> Self {
        Self {
            file_name: file_name.into(),
            file_extra: None,
        }
    }

    /// `short(name) ‖ Maybe(short(extra))`. A name over 255 bytes is refused
    /// rather than corrupted (the reference wraps the length byte).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.short(self.file_name.as_bytes())?;
        w.maybe(self.file_extra.as_deref(), |w, x| {
            w.short(x.as_bytes()).map(drop)
        })?;
        Ok(w.into_vec())
    }

    /// Parses a header at the start of `bytes`, returning it and its encoded
    /// length. Invalid UTF-8 is decoded leniently, each bad byte becoming `?`.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, usize), DecodeError> {
        let bytes = &bytes[..bytes.len().min(HEADER_PARSE_LIMIT)];
        let mut r = Reader::new(bytes);
        let file_name = lenient_utf8(r.short()?);
        let file_extra = r.maybe(|r| r.short().map(lenient_utf8))?;
        Ok((
            Self {
                file_name,
                file_extra,
            },
            r.position(),
        ))
    }
}

/// UTF-8 decoding where every invalid byte becomes `?` (the reference's
/// `safeDecodeUtf8`), so a hostile name never fails a download.
pub fn lenient_utf8(mut b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    loop {
        match core::str::from_utf8(b) {
            Ok(v) => {
                s.push_str(v);
                return s;
            }
            Err(e) => {
                let (good, rest) = b.split_at(e.valid_up_to());
                // Valid by construction: from_utf8 vouched for this prefix.
                s.push_str(core::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                s.push('?');
                b = &rest[bad..];
            }
        }
    }
}

/// A file name from a (sender-chosen) file header made safe to create in
/// a directory: no path separators, no `..`, no control characters, not
/// empty. The CLI and the device use the same rule.
pub fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.replace("..", "_");
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || trimmed == "." {
        String::from("file")
    } else {
        String::from(trimmed)
    }
}
