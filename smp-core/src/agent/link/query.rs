//! The query strings links are made of (`Agent/QueryString.hs`, http-types):
//! percent-escaping of values, splitting a query into pairs, and version
//! ranges in their text form.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::LinkError;
use crate::xftp::handshake::VersionRange;

pub(crate) use crate::encoding::url::escape_into;

/// Renders `k=v&k=v` with every name and value escaped (`QSP QEscape`).
pub(crate) fn render_escaped(params: &[(&str, &[u8])]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        escape_into(&mut s, k.as_bytes());
        s.push('=');
        escape_into(&mut s, v);
    }
    s
}

/// `urlDecode True`, refusing a malformed escape.
pub(crate) fn unescape(s: &str) -> Result<Vec<u8>, LinkError> {
    crate::encoding::url::unescape(s).ok_or(LinkError::Escape)
}

/// A parsed query: pairs in their order, names and values unescaped.
pub(crate) struct Query(Vec<(Vec<u8>, Vec<u8>)>);

impl Query {
    /// `parseSimpleQuery`: pairs split on `&` or `;`, the name ending at the
    /// first `=`; a pair without `=` has an empty value.
    pub(crate) fn parse(q: &str) -> Result<Self, LinkError> {
        let mut pairs = Vec::new();
        for p in q.split(['&', ';']).filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            pairs.push((unescape(k)?, unescape(v)?));
        }
        Ok(Self(pairs))
    }

    /// The first value of `name`, as the reference's `queryParamStr`.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The value of `name` as UTF-8 text (values we parse further are ASCII).
    pub(crate) fn get_str(&self, name: &str) -> Result<Option<&str>, LinkError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => core::str::from_utf8(v)
                .map(Some)
                .map_err(|_| LinkError::Escape),
        }
    }
}

/// `VersionRange` text: `"2-7"`, or one number when min = max.
pub(crate) fn write_range(s: &mut String, r: &VersionRange) {
    if r.min() == r.max() {
        let _ = write!(s, "{}", r.min());
    } else {
        let _ = write!(s, "{}-{}", r.min(), r.max());
    }
}

pub(crate) fn range_text(r: &VersionRange) -> String {
    let mut s = String::new();
    write_range(&mut s, r);
    s
}

/// Parses `"n"` or `"n-m"` with `n ≤ m` (decimal `Word16`s).
pub(crate) fn parse_range(s: &str) -> Option<VersionRange> {
    let num = |t: &str| {
        if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse::<u16>().ok()
        } else {
            None
        }
    };
    match s.split_once('-') {
        Some((a, b)) => VersionRange::new(num(a)?, num(b)?),
        None => {
            let v = num(s)?;
            VersionRange::new(v, v)
        }
    }
}

/// Text that the reference decodes with `safeDecodeUtf8`: each invalid
/// UTF-8 sequence becomes `?`.
pub(crate) fn lossy_utf8(mut b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    loop {
        match core::str::from_utf8(b) {
            Ok(t) => {
                s.push_str(t);
                return s;
            }
            Err(e) => {
                let good = e.valid_up_to();
                // The prefix was just checked to be valid.
                s.push_str(core::str::from_utf8(&b[..good]).unwrap_or_default());
                s.push('?');
                let bad = e.error_len().unwrap_or(b.len() - good);
                b = &b[good + bad..];
            }
        }
    }
}
