//! Server addresses (`smp://`, `ntf://`, `xftp://`) in the reference's text
//! form: simplexmq `ProtocolServer`, `ProtoServerWithAuth`, `TransportHost`.
//!
//! ```text
//! scheme "://" keyHash [":" basicAuth] "@" host *("," host) [":" port]
//! ```
//!
//! Parsing follows `serverStrP` choice by choice (including which host kind
//! wins for an ambiguous token), and formatting follows `strEncode`, so a
//! description written by us is byte-identical to the reference's. The
//! `Ord` is the reference's derived one because it decides the order of
//! replica groups in descriptions.
//!
//! Deliberate differences, all on input nothing real produces: a port above
//! 65535 and an IPv4 last octet above 255 are refused (the reference keeps
//! the first as text and silently wraps the second modulo 256).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt::{self, Write as _};
use core::str::FromStr;

use crate::encoding::string::{b64_decode, b64_encode};

/// Why a server address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("unknown scheme {0:?} (expected smp, ntf or xftp)")]
    UnknownScheme(String),
    #[error("expected \"://\" after the scheme")]
    MissingSchemeSeparator,
    #[error("wrong scheme: expected {expected}://, found {found}://")]
    WrongScheme { expected: Scheme, found: Scheme },
    #[error("missing key hash after \"://\"")]
    MissingKeyHash,
    #[error("key hash is not valid base64url")]
    InvalidKeyHash,
    #[error("key hash must be 32 bytes (SHA-256 of the identity certificate), got {0}")]
    KeyHashLength(usize),
    #[error("basic auth (server password) has an invalid character")]
    InvalidBasicAuth,
    #[error("basic auth (server password) is not allowed here")]
    BasicAuthNotAllowed,
    #[error("expected '@' between the key hash and the hosts")]
    MissingAt,
    #[error("invalid host at {0:?}")]
    InvalidHost(String),
    #[error("port {0} is out of range")]
    PortOutOfRange(String),
    #[error("unexpected text after the address: {0:?}")]
    TrailingInput(String),
    #[error("a server needs at least one host")]
    NoHosts,
}

/// The protocol a server speaks; the order is the reference's `ProtocolType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Smp,
    Ntf,
    Xftp,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Smp => "smp",
            Scheme::Ntf => "ntf",
            Scheme::Xftp => "xftp",
        }
    }

    /// The port clients use when the address has none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Smp => 5223,
            Scheme::Ntf | Scheme::Xftp => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host of a server. Variant order and contents give the reference's
/// derived `Ord` (IPv4 < IPv6 < onion < domain, then value).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransportHost {
    Ipv4([u8; 4]),
    /// Eight 16-bit groups; comparing them equals comparing the reference's four `Word32`s.
    Ipv6([u16; 8]),
    /// Full name including the `.onion` suffix.
    Onion(String),
    Domain(String),
}

impl TransportHost {
    pub fn is_onion(&self) -> bool {
        matches!(self, TransportHost::Onion(_))
    }

    /// Parses one host exactly as the whole text (no port, no list).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let (host, used) = parse_host(s)?;
        if used != s.len() {
            return Err(AddressError::TrailingInput(s[used..].to_string()));
        }
        Ok(host)
    }

    /// The host as it goes into a URL authority (IPv6 in brackets).
    pub fn url_host(&self) -> String {
        match self {
            TransportHost::Ipv6(_) => alloc::format!("[{self}]"),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for TransportHost {
    /// The reference's `strEncode`: IPv6 without brackets, in iproute's RFC 5952 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportHost::Ipv4([a, b, c, d]) => write!(f, "{a}.{b}.{c}.{d}"),
            TransportHost::Ipv6(g) => fmt_ipv6(f, g),
            TransportHost::Onion(s) | TransportHost::Domain(s) => f.write_str(s),
        }
    }
}

fn fmt_ipv6(f: &mut fmt::Formatter<'_>, g: &[u16; 8]) -> fmt::Result {
    let v4 = |f: &mut fmt::Formatter<'_>| {
        let [a, b] = g[6].to_be_bytes();
        let [c, d] = g[7].to_be_bytes();
        write!(f, "{a}.{b}.{c}.{d}")
    };
    if g[..5].iter().all(|&x| x == 0) && g[5] == 0xffff {
        f.write_str("::ffff:")?;
        return v4(f);
    }
    if g[..6].iter().all(|&x| x == 0) && g[6] != 0 {
        f.write_str("::")?;
        return v4(f);
    }
    // Longest run of zero groups, the first one on a tie; only runs of 2+ are compressed.
    let (mut best_start, mut best_len, mut run_start, mut run_len) = (0, 0, 0, 0);
    for (i, &x) in g.iter().enumerate() {
        if x == 0 {
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if run_len > best_len {
                best_start = run_start;
                best_len = run_len;
            }
        } else {
            run_len = 0;
        }
    }
    let join = |f: &mut fmt::Formatter<'_>, part: &[u16]| -> fmt::Result {
        for (i, x) in part.iter().enumerate() {
            if i > 0 {
                f.write_char(':')?;
            }
            write!(f, "{x:x}")?;
        }
        Ok(())
    };
    if best_len > 1 {
        join(f, &g[..best_start])?;
        f.write_str("::")?;
        join(f, &g[best_start + best_len..])
    } else {
        join(f, g)
    }
}

/// The server identity: a hash of its identity certificate. The reference
/// keeps any non-empty byte string here; [`ServerAddress::parse`] insists on
/// the 32 bytes a real SHA-256 fingerprint has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyHash(Vec<u8>);

impl KeyHash {
    pub fn new(bytes: Vec<u8>) -> Self {
        KeyHash(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Whether it can be a SHA-256 certificate fingerprint at all.
    pub fn is_sha256(&self) -> bool {
        self.0.len() == 32
    }
}

impl From<[u8; 32]> for KeyHash {
    fn from(b: [u8; 32]) -> Self {
        KeyHash(b.to_vec())
    }
}

/// A server password (`keyhash:password@…`), only valid in client
/// configuration, never inside file descriptions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BasicAuth(String);

impl BasicAuth {
    /// Checks the reference's charset: printable (Latin-1 view of the bytes),
    /// not a space, and none of `@ : /`.
    pub fn new(s: &str) -> Result<Self, AddressError> {
        if !s.is_empty() && s.bytes().all(basic_auth_byte) {
            Ok(BasicAuth(s.to_string()))
        } else {
            Err(AddressError::InvalidBasicAuth)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// GHC's `isPrint c && not (isSpace c)` on a byte read as Latin-1, minus `@ : /`.
fn basic_auth_byte(b: u8) -> bool {
    let printable = matches!(b, 0x21..=0x7e) || (b >= 0xa1 && b != 0xad);
    printable && !matches!(b, b'@' | b':' | b'/')
}

/// A server address: scheme, one or more hosts, an optional port shared by
/// all hosts, and the key hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddress {
    scheme: Scheme,
    hosts: Vec<TransportHost>,
    port: Option<u16>,
    key_hash: KeyHash,
}

impl ServerAddress {
    pub fn new(
        scheme: Scheme,
        hosts: Vec<TransportHost>,
        port: Option<u16>,
        key_hash: KeyHash,
    ) -> Result<Self, AddressError> {
        if hosts.is_empty() {
            return Err(AddressError::NoHosts);
        }
        Ok(ServerAddress {
            scheme,
            hosts,
            port,
            key_hash,
        })
    }

    /// Parses an address without basic auth, requiring a 32-byte key hash:
    /// anything shorter can never match a certificate, so it is refused early.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let a = Self::parse_lenient(s)?;
        if !a.key_hash.is_sha256() {
            return Err(AddressError::KeyHashLength(a.key_hash.0.len()));
        }
        Ok(a)
    }

    /// Parses exactly what the reference accepts (any non-empty key hash),
    /// so descriptions it wrote (e.g. its test fixture) read back unchanged.
    pub fn parse_lenient(s: &str) -> Result<Self, AddressError> {
        let (server, auth) = parse_server(s)?;
        if auth.is_some() {
            return Err(AddressError::BasicAuthNotAllowed);
        }
        Ok(server)
    }

    /// Fails unless the address is for `scheme`.
    pub fn expect_scheme(self, scheme: Scheme) -> Result<Self, AddressError> {
        if self.scheme == scheme {
            Ok(self)
        } else {
            Err(AddressError::WrongScheme {
                expected: scheme,
                found: self.scheme,
            })
        }
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// Never empty.
    pub fn hosts(&self) -> &[TransportHost] {
        &self.hosts
    }
    /// The port as written, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// The port clients connect to: the written one or the scheme's default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }
    pub fn key_hash(&self) -> &KeyHash {
        &self.key_hash
    }

    /// The host a client without a SOCKS proxy connects to: the first
    /// non-onion one, or the first host when all are onion (reference
    /// `chooseTransportHost`, default host mode).
    pub fn preferred_host(&self) -> &TransportHost {
        let first = &self.hosts[0];
        self.hosts.iter().find(|h| !h.is_onion()).unwrap_or(first)
    }

    /// The first onion host, for clients that connect through a SOCKS proxy.
    pub fn onion_host(&self) -> Option<&TransportHost> {
        self.hosts.iter().find(|h| h.is_onion())
    }

    /// `https://host[:port]` of the first host, the port left out when it is
    /// 443; what browser clients send requests to.
    pub fn https_origin(&self) -> String {
        let mut s = String::from("https://");
        s.push_str(&self.hosts[0].url_host());
        let port = self.effective_port();
        if port != 443 {
            let _ = write!(s, ":{port}");
        }
        s
    }

    fn port_text(&self) -> PortText {
        PortText::new(self.port)
    }
}

impl Ord for ServerAddress {
    /// The reference's derived order: scheme, hosts, port as a string
    /// (so "5443" < "80"), key hash bytes.
    fn cmp(&self, other: &Self) -> Ordering {
        self.scheme
            .cmp(&other.scheme)
            .then_with(|| self.hosts.cmp(&other.hosts))
            .then_with(|| {
                self.port_text()
                    .as_bytes()
                    .cmp(other.port_text().as_bytes())
            })
            .then_with(|| self.key_hash.cmp(&other.key_hash))
    }
}

impl PartialOrd for ServerAddress {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A port rendered as decimal text without allocating (empty when absent).
struct PortText {
    buf: [u8; 5],
    start: usize,
}

impl PortText {
    fn new(port: Option<u16>) -> Self {
        let mut buf = [0u8; 5];
        let mut start = 5;
        if let Some(mut p) = port {
            loop {
                start -= 1;
                buf[start] = b'0' + (p % 10) as u8;
                p /= 10;
                if p == 0 {
                    break;
                }
            }
        }
        PortText { buf, start }
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn write_server(
    f: &mut fmt::Formatter<'_>,
    s: &ServerAddress,
    auth: Option<&BasicAuth>,
) -> fmt::Result {
    write!(f, "{}://{}", s.scheme, b64_encode(&s.key_hash.0))?;
    if let Some(a) = auth {
        write!(f, ":{}", a.0)?;
    }
    f.write_char('@')?;
    for (i, h) in s.hosts.iter().enumerate() {
        if i > 0 {
            f.write_char(',')?;
        }
        write!(f, "{h}")?;
    }
    if let Some(p) = s.port {
        write!(f, ":{p}")?;
    }
    Ok(())
}

impl fmt::Display for ServerAddress {
    /// The reference's `strEncode`: padded key hash, `:port` only when given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_server(f, self, None)
    }
}

impl FromStr for ServerAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A server address with its optional password, as in client configuration
/// (reference `ProtoServerWithAuth`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerWithAuth {
    pub server: ServerAddress,
    pub auth: Option<BasicAuth>,
}

impl ServerWithAuth {
    /// Like [`ServerAddress::parse`] (32-byte key hash) but with the password allowed.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let a = Self::parse_lenient(s)?;
        if !a.server.key_hash.is_sha256() {
            return Err(AddressError::KeyHashLength(a.server.key_hash.0.len()));
        }
        Ok(a)
    }

    /// The reference grammar, any non-empty key hash.
    pub fn parse_lenient(s: &str) -> Result<Self, AddressError> {
        let (server, auth) = parse_server(s)?;
        Ok(ServerWithAuth { server, auth })
    }
}

impl fmt::Display for ServerWithAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_server(f, &self.server, self.auth.as_ref())
    }
}

impl FromStr for ServerWithAuth {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn is_b64url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Length of a base64url token as the reference's `base64urlP` takes it:
/// one or more alphabet characters, then any number of `=`.
pub(crate) fn b64_token_len(s: &[u8]) -> usize {
    let body = s.iter().take_while(|&&b| is_b64url_char(b)).count();
    if body == 0 {
        return 0;
    }
    body + s[body..].iter().take_while(|&&b| b == b'=').count()
}

/// `serverStrP` followed by end of input.
fn parse_server(s: &str) -> Result<(ServerAddress, Option<BasicAuth>), AddressError> {
    let b = s.as_bytes();
    let scheme_len = b
        .iter()
        .position(|&c| c == b':' || c == b' ')
        .unwrap_or(b.len());
    let scheme = match &s[..scheme_len] {
        "smp" => Scheme::Smp,
        "ntf" => Scheme::Ntf,
        "xftp" => Scheme::Xftp,
        other => return Err(AddressError::UnknownScheme(other.to_string())),
    };
    let mut i = scheme_len;
    if !b[i..].starts_with(b"://") {
        return Err(AddressError::MissingSchemeSeparator);
    }
    i += 3;

    let kh_len = b64_token_len(&b[i..]);
    if kh_len == 0 {
        return Err(AddressError::MissingKeyHash);
    }
    let key_hash = b64_decode(&s[i..i + kh_len]).map_err(|_| AddressError::InvalidKeyHash)?;
    i += kh_len;

    let mut auth = None;
    if b.get(i) == Some(&b':') {
        let len = b[i + 1..].iter().take_while(|&&c| c != b'@').count();
        if len > 0 {
            auth = Some(BasicAuth::new(&s[i + 1..i + 1 + len])?);
            i += 1 + len;
        }
    }
    if b.get(i) != Some(&b'@') {
        return Err(AddressError::MissingAt);
    }
    i += 1;

    let mut hosts = Vec::new();
    let (h, used) = parse_host(&s[i..])?;
    hosts.push(h);
    i += used;
    while b.get(i) == Some(&b',') {
        match parse_host(&s[i + 1..]) {
            Ok((h, used)) => {
                hosts.push(h);
                i += 1 + used;
            }
            // `sepBy1'` gives the comma back; end of input then fails on it.
            Err(_) => break,
        }
    }

    let mut port = None;
    if b.get(i) == Some(&b':') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            let text = &s[i + 1..i + 1 + digits];
            let value = text
                .bytes()
                .try_fold(0u32, |acc, d| {
                    acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
                })
                .and_then(|v| u16::try_from(v).ok())
                .ok_or_else(|| AddressError::PortOutOfRange(text.to_string()))?;
            port = Some(value);
            i += 1 + digits;
        }
    }
    if i != b.len() {
        return Err(AddressError::TrailingInput(s[i..].to_string()));
    }
    Ok((
        ServerAddress {
            scheme,
            hosts,
            port,
            key_hash: KeyHash(key_hash),
        },
        auth,
    ))
}

/// The reference's host choice: IPv4, else IPv6, else onion, else domain;
/// the first alternative that matches a prefix wins. Returns the host and
/// the number of bytes it used.
fn parse_host(s: &str) -> Result<(TransportHost, usize), AddressError> {
    let b = s.as_bytes();
    if let Some(r) = parse_ipv4_prefix(b) {
        return r;
    }
    if let Some(r) = parse_ipv6_prefix(s) {
        return Ok(r);
    }
    let label = b
        .iter()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .count();
    if b[label..].starts_with(b".onion") {
        let used = label + 6;
        return Ok((TransportHost::Onion(s[..used].to_string()), used));
    }
    let used = b
        .iter()
        .take_while(|c| {
            !matches!(
                c,
                b':' | b'#' | b',' | b';' | b'/' | b' ' | b'\n' | b'\r' | b'\t'
            )
        })
        .count();
    if used == 0 || s[..used].ends_with(".onion") {
        return Err(AddressError::InvalidHost(s.to_string()));
    }
    Ok((TransportHost::Domain(s[..used].to_string()), used))
}

fn decimal_prefix(b: &[u8]) -> Option<(u32, usize)> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    // Saturate: any value past 255 is out of range either way.
    let v = b[..n].iter().fold(0u32, |acc, d| {
        acc.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    });
    Some((v, n))
}

/// `None` when the IPv4 alternative does not match (the next one is tried);
/// `Some(Err)` when it matched but the last octet is out of range.
fn parse_ipv4_prefix(b: &[u8]) -> Option<Result<(TransportHost, usize), AddressError>> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for o in octets.iter_mut().take(3) {
        let (v, n) = decimal_prefix(&b[i..])?;
        if v > 255 || b.get(i + n) != Some(&b'.') {
            return None;
        }
        *o = v as u8;
        i += n + 1;
    }
    let (v, n) = decimal_prefix(&b[i..])?;
    i += n;
    Some(match u8::try_from(v) {
        Ok(v) => {
            octets[3] = v;
            Ok((TransportHost::Ipv4(octets), i))
        }
        Err(_) => Err(AddressError::InvalidHost(
            String::from_utf8_lossy(&b[..i]).into_owned(),
        )),
    })
}

fn parse_ipv6_prefix(s: &str) -> Option<(TransportHost, usize)> {
    let b = s.as_bytes();
    let (text, used) = if b.first() == Some(&b'[') {
        let len = b[1..].iter().take_while(|&&c| c != b']').count();
        if len == 0 || b.get(1 + len) != Some(&b']') {
            return None;
        }
        // `readMaybe` lets spaces through before and whitespace after.
        let inner = s[1..1 + len]
            .trim_start_matches(' ')
            .trim_end_matches(|c: char| c.is_whitespace());
        (inner, len + 2)
    } else {
        let len = b
            .iter()
            .take_while(|c| c.is_ascii_hexdigit() || **c == b':')
            .count();
        if len == 0 {
            return None;
        }
        (&s[..len], len)
    };
    parse_ipv6(text).map(|g| (TransportHost::Ipv6(g), used))
}

/// RFC 4291 text form: 1–4 hex digits per group, at most one `::` standing
/// for at least one group, optionally ending in a dotted IPv4.
fn parse_ipv6(s: &str) -> Option<[u16; 8]> {
    fn groups(part: &str, allow_v4_tail: bool) -> Option<Vec<u16>> {
        let mut out = Vec::new();
        if part.is_empty() {
            return Some(out);
        }
        let items: Vec<&str> = part.split(':').collect();
        for (i, item) in items.iter().enumerate() {
            let last = i + 1 == items.len();
            if last && allow_v4_tail && item.contains('.') {
                let v4 = parse_strict_ipv4(item)?;
                out.push(u16::from_be_bytes([v4[0], v4[1]]));
                out.push(u16::from_be_bytes([v4[2], v4[3]]));
            } else {
                if item.is_empty() || item.len() > 4 || !item.bytes().all(|c| c.is_ascii_hexdigit())
                {
                    return None;
                }
                out.push(u16::from_str_radix(item, 16).ok()?);
            }
        }
        Some(out)
    }
    let mut g = [0u16; 8];
    if let Some(pos) = s.find("::") {
        let (head, tail) = (&s[..pos], &s[pos + 2..]);
        if tail.contains("::") {
            return None;
        }
        let h = groups(head, false)?;
        let t = groups(tail, true)?;
        if h.len() + t.len() > 7 {
            return None;
        }
        g[..h.len()].copy_from_slice(&h);
        g[8 - t.len()..].copy_from_slice(&t);
    } else {
        let all = groups(s, true)?;
        if all.len() != 8 {
            return None;
        }
        g.copy_from_slice(&all);
    }
    Some(g)
}

/// Dotted IPv4 inside IPv6 as iproute reads it: octets `0` or without a leading zero, ≤ 255.
fn parse_strict_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if p.len() > 1 && p.starts_with('0') {
            return None;
        }
        *o = p.parse::<u16>().ok().and_then(|v| u8::try_from(v).ok())?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}
