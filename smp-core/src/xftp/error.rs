//! `XFTPErrorType`: the words after `ERR ` in a response, also sent bare
//! (padded, without a transmission) when the handshake fails.
//!
//! The wire text follows simplexmq's `Encoding XFTPErrorType`; `BLOCKED`
//! carries `reason=spam|content[,notice=<JSON>]`, parsed as the reference
//! parses it (the JSON is a `ClientNotice` object, read with aeson rules).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Why a command could not be accepted (`CommandError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandError {
    Unknown,
    Syntax,
    Prohibited,
    NoAuth,
    HasAuth,
    NoEntity,
}

impl CommandError {
    pub const fn wire(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Syntax => "SYNTAX",
            Self::Prohibited => "PROHIBITED",
            Self::NoAuth => "NO_AUTH",
            Self::HasAuth => "HAS_AUTH",
            Self::NoEntity => "NO_ENTITY",
        }
    }

    /// Parses the wire word; `NO_QUEUE` is the older name of `NO_ENTITY`.
    pub fn from_wire(word: &[u8]) -> Option<Self> {
        Some(match word {
            b"UNKNOWN" => Self::Unknown,
            b"SYNTAX" => Self::Syntax,
            b"PROHIBITED" => Self::Prohibited,
            b"NO_AUTH" => Self::NoAuth,
            b"HAS_AUTH" => Self::HasAuth,
            b"NO_ENTITY" | b"NO_QUEUE" => Self::NoEntity,
            _ => return None,
        })
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "unknown command",
            Self::Syntax => "command syntax error",
            Self::Prohibited => "command prohibited",
            Self::NoAuth => "command requires authorization and an entity ID",
            Self::HasAuth => "command must not have authorization or an entity ID",
            Self::NoEntity => "response requires an entity ID",
        })
    }
}

/// Why a file was blocked by the server operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockingReason {
    Spam,
    Content,
}

impl BlockingReason {
    pub const fn wire(self) -> &'static str {
        match self {
            Self::Spam => "spam",
            Self::Content => "content",
        }
    }
}

/// `ClientNotice`: shown to the user with a block; `ttl` in seconds, absent
/// meaning indefinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ClientNotice {
    pub ttl: Option<i64>,
}

/// `BlockingInfo`: the argument of `ERR BLOCKED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockingInfo {
    pub reason: BlockingReason,
    pub notice: Option<ClientNotice>,
}

impl BlockingInfo {
    /// `reason=<r>[,notice=<json>]`; the JSON is what aeson writes for
    /// `ClientNotice` (`Nothing` fields omitted).
    pub fn encode(&self) -> String {
        let mut s = String::from("reason=");
        s.push_str(self.reason.wire());
        if let Some(n) = self.notice {
            s.push_str(",notice=");
            match n.ttl {
                Some(t) => {
                    use core::fmt::Write;
                    let _ = write!(s, "{{\"ttl\":{t}}}");
                }
                None => s.push_str("{}"),
            }
        }
        s
    }

    /// Parses the whole argument; anything left over is an error, as in the
    /// reference (the notice runs to the end of the input).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let rest = b.strip_prefix(b"reason=")?;
        let (reason, rest) = if let Some(r) = rest.strip_prefix(b"spam") {
            (BlockingReason::Spam, r)
        } else if let Some(r) = rest.strip_prefix(b"content") {
            (BlockingReason::Content, r)
        } else {
            return None;
        };
        if rest.is_empty() {
            return Some(Self {
                reason,
                notice: None,
            });
        }
        let json = rest.strip_prefix(b",notice=")?;
        let notice = json::client_notice(json)?;
        Some(Self {
            reason,
            notice: Some(notice),
        })
    }
}

/// Every error an XFTP server or client can report (`XFTPErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum XftpErrorType {
    #[error("BLOCK: malformed transport block, padding, batch or authorization length")]
    Block,
    #[error("SESSION: the session ID does not match this TLS connection")]
    Session,
    #[error("HANDSHAKE: the XFTP handshake failed")]
    Handshake,
    #[error("CMD: {0}")]
    Cmd(CommandError),
    #[error("AUTH: authorization failed or the file does not exist")]
    Auth,
    #[error("BLOCKED: the file was blocked by the server operator ({})", .0.reason.wire())]
    Blocked(BlockingInfo),
    #[error("SIZE: wrong chunk size")]
    Size,
    #[error("QUOTA: server storage quota exceeded")]
    Quota,
    #[error("DIGEST: chunk digest mismatch")]
    Digest,
    #[error("CRYPTO: chunk decryption failed")]
    Crypto,
    #[error("NO_FILE: the chunk has not been uploaded")]
    NoFile,
    #[error("HAS_FILE: unexpected chunk body")]
    HasFile,
    #[error("FILE_IO: server file system error")]
    FileIo,
    #[error("TIMEOUT: chunk transfer timed out")]
    Timeout,
    #[error("INTERNAL: internal server error")]
    Internal,
    #[error("DUPLICATE_: internal duplicate error")]
    Duplicate,
}

impl XftpErrorType {
    /// The exact wire text.
    pub fn encode(&self) -> Vec<u8> {
        let word: &str = match self {
            Self::Block => "BLOCK",
            Self::Session => "SESSION",
            Self::Handshake => "HANDSHAKE",
            Self::Cmd(e) => {
                let mut v = b"CMD ".to_vec();
                v.extend_from_slice(e.wire().as_bytes());
                return v;
            }
            Self::Auth => "AUTH",
            Self::Blocked(info) => {
                let mut v = b"BLOCKED ".to_vec();
                v.extend_from_slice(info.encode().as_bytes());
                return v;
            }
            Self::Size => "SIZE",
            Self::Quota => "QUOTA",
            Self::Digest => "DIGEST",
            Self::Crypto => "CRYPTO",
            Self::NoFile => "NO_FILE",
            Self::HasFile => "HAS_FILE",
            Self::FileIo => "FILE_IO",
            Self::Timeout => "TIMEOUT",
            Self::Internal => "INTERNAL",
            Self::Duplicate => "DUPLICATE_",
        };
        word.as_bytes().to_vec()
    }

    /// Parses the complete wire text (no trailing bytes allowed).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let n = b.iter().position(|&c| c == b' ').unwrap_or(b.len());
        let (word, rest) = b.split_at(n);
        let simple = |e: Self| if rest.is_empty() { Some(e) } else { None };
        match word {
            b"BLOCK" => simple(Self::Block),
            b"SESSION" => simple(Self::Session),
            b"HANDSHAKE" => simple(Self::Handshake),
            b"CMD" => CommandError::from_wire(rest.strip_prefix(b" ")?).map(Self::Cmd),
            b"AUTH" => simple(Self::Auth),
            b"BLOCKED" => BlockingInfo::decode(rest.strip_prefix(b" ")?).map(Self::Blocked),
            b"SIZE" => simple(Self::Size),
            b"QUOTA" => simple(Self::Quota),
            b"DIGEST" => simple(Self::Digest),
            b"CRYPTO" => simple(Self::Crypto),
            b"NO_FILE" => simple(Self::NoFile),
            b"HAS_FILE" => simple(Self::HasFile),
            b"FILE_IO" => simple(Self::FileIo),
            b"TIMEOUT" => simple(Self::Timeout),
            b"INTERNAL" => simple(Self::Internal),
            b"DUPLICATE_" => simple(Self::Duplicate),
            _ => None,
        }
    }
}

/// The tiny part of JSON needed for `ClientNotice`: a full RFC 8259 value
/// grammar (so unknown fields are skipped correctly) with the aeson rules for
/// the `ttl` field: absent or `null` is `None`, otherwise an integral number
/// that fits `Int64`.
mod json {
    use super::ClientNotice;

    /// Nesting bound: deeper input is refused instead of risking the stack.
    const MAX_DEPTH: usize = 64;

    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    pub(super) fn client_notice(s: &[u8]) -> Option<ClientNotice> {
        let mut p = P { s, i: 0 };
        p.ws();
        let ttl = p.object_ttl()?;
        p.ws();
        (p.i == s.len()).then_some(ClientNotice { ttl })
    }

    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> Option<()> {
            (self.peek()? == c).then(|| self.i += 1)
        }
        fn lit(&mut self, w: &[u8]) -> Option<()> {
            let end = self.i.checked_add(w.len())?;
            (self.s.get(self.i..end)? == w).then(|| self.i = end)
        }

        /// The top-level object; returns the parsed `ttl`.
        fn object_ttl(&mut self) -> Option<Option<i64>> {
            self.eat(b'{')?;
            self.ws();
            let mut ttl = None;
            if self.eat(b'}').is_some() {
                return Some(ttl);
            }
            loop {
                self.ws();
                let key = self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
                if key {
                    ttl = self.ttl_value()?;
                } else {
                    self.value(1)?;
                }
                self.ws();
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        return Some(ttl);
                    }
                    _ => return None,
                }
            }
        }

        fn ttl_value(&mut self) -> Option<Option<i64>> {
            if self.lit(b"null").is_some() {
                return Some(None);
            }
            self.number().map(Some)
        }

        /// Skips a string; returns whether it was exactly `"ttl"`.
        fn string(&mut self) -> Option<bool> {
            self.eat(b'"')?;
            let start = self.i;
            let mut escaped = false;
            loop {
                let c = self.peek()?;
                self.i += 1;
                match c {
                    b'"' => break,
                    b'\\' => {
                        escaped = true;
                        match self.peek()? {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                            b'u' => {
                                self.i += 1;
                                for _ in 0..4 {
                                    if !self.peek()?.is_ascii_hexdigit() {
                                        return None;
                                    }
                                    self.i += 1;
                                }
                            }
                            _ => return None,
                        }
                    }
                    0..=0x1f => return None,
                    _ => {}
                }
            }
            let body = &self.s[start..self.i - 1];
            core::str::from_utf8(body).ok()?;
            Some(!escaped && body == b"ttl")
        }

        fn value(&mut self, depth: usize) -> Option<()> {
            if depth > MAX_DEPTH {
                return None;
            }
            match self.peek()? {
                b'{' => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b'}').is_some() {
                        return Some(());
                    }
                    loop {
                        self.ws();
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                        self.value(depth + 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b']').is_some() {
                        return Some(());
                    }
                    loop {
                        self.ws();
                        self.value(depth + 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                b'"' => self.string().map(|_| ()),
                b't' => self.lit(b"true"),
                b'f' => self.lit(b"false"),
                b'n' => self.lit(b"null"),
                _ => self.number_syntax().map(|_| ()),
            }
        }

        /// JSON number syntax; returns (negative, mantissa digits, exponent
        /// applied to them) without evaluating.
        fn number_syntax(&mut self) -> Option<(bool, &[u8], &[u8], i64)> {
            let neg = self.eat(b'-').is_some();
            let int_start = self.i;
            match self.peek()? {
                b'0' => self.i += 1,
                b'1'..=b'9' => {
                    while matches!(self.peek(), Some(b'0'..=b'9')) {
                        self.i += 1;
                    }
                }
                _ => return None,
            }
            let int = &self.s[int_start..self.i];
            let mut frac: &[u8] = &[];
            if self.eat(b'.').is_some() {
                let fs = self.i;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
                if self.i == fs {
                    return None;
                }
                frac = &self.s[fs..self.i];
            }
            let mut exp: i64 = 0;
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.i += 1;
                let eneg = match self.peek()? {
                    b'-' => {
                        self.i += 1;
                        true
                    }
                    b'+' => {
                        self.i += 1;
                        false
                    }
                    _ => false,
                };
                let es = self.i;
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    // Saturate: a huge exponent only decides "not an Int64".
                    exp = exp.saturating_mul(10).saturating_add((d - b'0') as i64);
                    self.i += 1;
                }
                if self.i == es {
                    return None;
                }
                if eneg {
                    exp = -exp;
                }
            }
            Some((neg, int, frac, exp))
        }

        /// An integral JSON number within `Int64` (aeson's
        /// `parseBoundedIntegral`: `1e3` and `5.0` are integers).
        fn number(&mut self) -> Option<i64> {
            let (neg, int, frac, exp) = self.number_syntax()?;
            // Mantissa digits with leading zeros and trailing zeros moved
            // into the exponent, so the magnitude checks stay cheap.
            let digits = int.iter().chain(frac.iter());
            let mut m: alloc::vec::Vec<u8> = digits.copied().skip_while(|&d| d == b'0').collect();
            let mut e = exp.saturating_sub(frac.len() as i64);
            while m.last() == Some(&b'0') {
                m.pop();
                e = e.saturating_add(1);
            }
            if m.is_empty() {
                return Some(0);
            }
            if !(0..=19).contains(&e) || m.len() > 19 {
                return None;
            }
            let mut v: i128 = 0;
            for d in m {
                v = v * 10 + (d - b'0') as i128;
            }
            for _ in 0..e {
                v = v.checked_mul(10)?;
            }
            if neg {
                v = -v;
            }
            i64::try_from(v).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_json_follows_aeson() {
        let n = |s: &str| json::client_notice(s.as_bytes());
        assert_eq!(n("{}"), Some(ClientNotice { ttl: None }));
        assert_eq!(
            n("{\"ttl\":86400}"),
            Some(ClientNotice { ttl: Some(86400) })
        );
        assert_eq!(n(" { \"ttl\" : null } "), Some(ClientNotice { ttl: None }));
        assert_eq!(
            n("{\"x\":[1,{\"a\":\"b\"}],\"ttl\":1e3}"),
            Some(ClientNotice { ttl: Some(1000) })
        );
        assert_eq!(n("{\"ttl\":5.0}"), Some(ClientNotice { ttl: Some(5) }));
        assert_eq!(n("{\"ttl\":-1}"), Some(ClientNotice { ttl: Some(-1) }));
        assert_eq!(n("{\"ttl\":1.5}"), None);
        assert_eq!(n("{\"ttl\":\"1\"}"), None);
        assert_eq!(n("{\"ttl\":99999999999999999999}"), None);
        assert_eq!(n("[]"), None);
        assert_eq!(n("{} x"), None);
        assert_eq!(n("{\"ttl\":1e999999999999999999999}"), None);
        assert_eq!(n(&format!("{{\"a\":{}", "[".repeat(1000))), None);
    }
}
