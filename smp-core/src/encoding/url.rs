//! Percent-escaping of query values as http-types does it for SimpleX
//! links and queue URIs (`urlEncode True` / `urlDecode True`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Appends `v` percent-encoded: only `A–Z a–z 0–9 - _ . ~` stay, every other
/// byte (space included) becomes upper-case `%XX`.
pub fn escape_into(out: &mut String, v: &[u8]) {
    for &b in v {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Decodes `+` as a space and `%XX` as a byte; `None` for a malformed
/// escape (the reference keeps it as literal text, but no encoder writes
/// one, so it most likely means a damaged link).
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let digit = |c: u8| (c as char).to_digit(16);
                out.push((digit(hex[0])? * 16 + digit(hex[1])?) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let mut s = String::new();
        escape_into(&mut s, b"a=b c/%~");
        assert_eq!(s, "a%3Db%20c%2F%25~");
        assert_eq!(unescape(&s).unwrap(), b"a=b c/%~");
        assert_eq!(unescape("a+b").unwrap(), b"a b");
        assert_eq!(unescape("%4"), None);
        assert_eq!(unescape("%zz"), None);
    }
}
