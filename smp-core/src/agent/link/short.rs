//! Short links (agent.md §2.3, `instance StrEncoding (ConnShortLink m)`):
//! a server address, a link type, and a key from which the link data on
//! that server is found and decrypted.
//!
//! ```text
//! shortLink = ("https://" firstHost | "simplex:") "/" type "#" [b64(linkId) "/"] b64(linkKey) ["?" query]
//! type      = "i" invitation | "a" contact | "c" channel | "g" group | "r" relay
//! query     = ["h=" hosts] ["&p=" port] ["&c=" b64(keyHash)]   ; simplex: puts all hosts in h=
//! binary    = 'I' ‖ server ‖ short(linkId) ‖ short(linkKey) | 'C' ‖ typeChar ‖ server ‖ short(linkKey)
//! ```
//!
//! base64url here is written without padding. A link may name only a host
//! (the chat shortens links of preset servers); such a server has no port
//! and an empty key hash, and the caller must restore it from its list of
//! preset servers before connecting.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::LinkError;
use super::query::{Query, render_escaped};
use crate::address::{KeyHash, Scheme, ServerAddress, TransportHost, b64_token_len};
use crate::encoding::string::b64_decode;
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::smp::command::RelayServer;

/// The key in a short link: SHA3-256 of the link's fixed data, so the
/// link commits to the connection request it resolves to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkKey(pub [u8; 32]);

impl core::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LinkKey(<secret>)")
    }
}

impl LinkKey {
    /// Refuses anything but 32 bytes: no other length can match a SHA3-256 hash.
    pub fn from_slice(b: &[u8]) -> Result<Self, LinkError> {
        b.try_into()
            .map(Self)
            .map_err(|_| LinkError::LinkKeyLength(b.len()))
    }
}

/// What a contact-type short link leads to (`ContactConnType`); all of them
/// resolve the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactType {
    Contact,
    Channel,
    Group,
    Relay,
}

impl ContactType {
    /// The binary tag; the text form uses it in lower case.
    pub const fn byte(self) -> u8 {
        match self {
            Self::Contact => b'A',
            Self::Channel => b'C',
            Self::Group => b'G',
            Self::Relay => b'R',
        }
    }
    /// The type for a binary tag, if it is one.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'A' => Some(Self::Contact),
            b'C' => Some(Self::Channel),
            b'G' => Some(Self::Group),
            b'R' => Some(Self::Relay),
            _ => None,
        }
    }
}

/// The link type and what only invitations have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShortLinkType {
    /// A 1-time invitation: its ID on the server is random, so it is in the link.
    Invitation { link_id: Vec<u8> },
    /// A contact address: its ID on the server is derived from the key.
    Contact(ContactType),
}

/// How the link is written: both forms carry the same information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShortLinkScheme {
    /// `simplex:/…`, all hosts in `h=`.
    Simplex,
    /// `https://<first host>/…`, opens in a browser.
    Server,
}

/// A short connection link (`ConnShortLink`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortLink {
    pub scheme: ShortLinkScheme,
    pub link_type: ShortLinkType,
    /// An `smp` address; an empty key hash means the link did not name one.
    pub server: ServerAddress,
    pub link_key: LinkKey,
}

fn b64_unpadded(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A base64url token (`base64urlP`) at the start of `s`: its bytes and the rest.
fn b64_token(s: &str) -> Result<(Vec<u8>, &str), LinkError> {
    let n = b64_token_len(s.as_bytes());
    if n == 0 {
        return Err(LinkError::Base64);
    }
    let b = b64_decode(&s[..n]).map_err(|_| LinkError::Base64)?;
    Ok((b, &s[n..]))
}

impl ShortLink {
    /// Invitations are fetched with `LKEY` and work once; the rest with `LGET`.
    pub fn is_invitation(&self) -> bool {
        matches!(self.link_type, ShortLinkType::Invitation { .. })
    }

    /// The text form, byte-identical to the reference's `strEncode`.
    pub fn to_link_string(&self) -> String {
        let hosts = self.server.hosts();
        let mut s = String::new();
        let param_hosts = match self.scheme {
            ShortLinkScheme::Simplex => {
                s.push_str("simplex:");
                hosts
            }
            ShortLinkScheme::Server => {
                let _ = write!(s, "https://{}", hosts[0]);
                &hosts[1..]
            }
        };
        s.push('/');
        match &self.link_type {
            ShortLinkType::Invitation { link_id } => {
                s.push_str("i#");
                if !link_id.is_empty() {
                    s.push_str(&b64_unpadded(link_id));
                    s.push('/');
                }
            }
            ShortLinkType::Contact(ct) => {
                s.push(ct.byte().to_ascii_lowercase() as char);
                s.push('#');
            }
        }
        s.push_str(&b64_unpadded(&self.link_key.0));
        let mut params: Vec<(&str, String)> = Vec::new();
        if !param_hosts.is_empty() {
            let list: Vec<String> = param_hosts.iter().map(ToString::to_string).collect();
            params.push(("h", list.join(",")));
        }
        if let Some(p) = self.server.port() {
            params.push(("p", p.to_string()));
        }
        let kh = self.server.key_hash().as_bytes();
        if !kh.is_empty() {
            params.push(("c", b64_unpadded(kh)));
        }
        if !params.is_empty() {
            let pairs: Vec<(&str, &[u8])> =
                params.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
            s.push('?');
            s.push_str(&render_escaped(&pairs));
        }
        s
    }

    /// Parses the text form (`AConnShortLink` `strP`). The type letter may
    /// also be upper case for contact types, as the reference accepts.
    pub fn parse(s: &str) -> Result<Self, LinkError> {
        let (scheme, first_host, rest) = if let Some(r) = s.strip_prefix("simplex:") {
            (ShortLinkScheme::Simplex, None, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            let end = r.find('/').ok_or(LinkError::ShortLinkType)?;
            let h = TransportHost::parse(&r[..end]).map_err(|_| LinkError::Server)?;
            (ShortLinkScheme::Server, Some(h), &r[end..])
        } else {
            return Err(LinkError::Scheme);
        };
        let rest = rest.strip_prefix('/').ok_or(LinkError::ShortLinkType)?;
        let t = *rest.as_bytes().first().ok_or(LinkError::ShortLinkType)?;
        let contact = ContactType::from_byte(t.to_ascii_uppercase());
        if contact.is_none() && t != b'i' {
            return Err(LinkError::ShortLinkType);
        }
        let rest = &rest[1..];
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let rest = rest.strip_prefix('#').ok_or(LinkError::ShortLinkType)?;
        let (link_type, rest) = match contact {
            Some(ct) => (ShortLinkType::Contact(ct), rest),
            None => {
                let (link_id, r) = b64_token(rest)?;
                let r = r.strip_prefix('/').ok_or(LinkError::Base64)?;
                (ShortLinkType::Invitation { link_id }, r)
            }
        };
        let (key, rest) = b64_token(rest)?;
        let link_key = LinkKey::from_slice(&key)?;
        let server = match rest.strip_prefix('?') {
            None if rest.is_empty() => {
                let h = first_host.ok_or(LinkError::NoServer)?;
                ServerAddress::new(Scheme::Smp, alloc::vec![h], None, KeyHash::new(Vec::new()))
                    .map_err(|_| LinkError::NoServer)?
            }
            None => return Err(LinkError::Trailing),
            Some(query) => server_from_query(first_host, query)?,
        };
        Ok(Self {
            scheme,
            link_type,
            server,
            link_key,
        })
    }

    /// Whether the link names its server without a key hash (a shortened
    /// link of a preset server), so that [`Self::restore_server`] is needed
    /// before connecting.
    pub fn is_shortened(&self) -> bool {
        self.server.key_hash().as_bytes().is_empty()
    }

    /// Gives a shortened link the full address of the first of `known`
    /// (the preset routers) that has the link's host (`restoreShortLink`).
    /// Returns whether the link now has a key hash.
    pub fn restore_server(&mut self, known: &[ServerAddress]) -> bool {
        if self.is_shortened() {
            let host = &self.server.hosts()[0];
            if let Some(k) = known.iter().find(|k| k.hosts().contains(host)) {
                self.server = k.clone();
            }
        }
        !self.is_shortened()
    }

    /// Leaves only the host in a link to one of `presets`
    /// (`shortenShortLink`): whoever opens it knows the rest.
    pub fn shorten(&mut self, presets: &[ServerAddress]) {
        if presets.contains(&self.server) {
            let host = self.server.hosts()[0].clone();
            if let Ok(s) = ServerAddress::new(
                Scheme::Smp,
                alloc::vec![host],
                None,
                KeyHash::new(Vec::new()),
            ) {
                self.server = s;
            }
        }
    }

    /// The binary form (`smpEncode`), as in the relay list of link data.
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match &self.link_type {
            ShortLinkType::Invitation { link_id } => {
                w.u8(b'I');
                RelayServer::from_address(&self.server).write(w)?;
                w.short(link_id)?;
            }
            ShortLinkType::Contact(ct) => {
                w.u8(b'C').u8(ct.byte());
                RelayServer::from_address(&self.server).write(w)?;
            }
        }
        w.short(&self.link_key.0)?;
        Ok(())
    }

    /// Reads the binary form; it has no scheme, so links read back as `https://`.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mode = r.u8()?;
        let contact = match mode {
            b'I' => None,
            b'C' => Some(
                ContactType::from_byte(r.u8()?).ok_or(DecodeError::Invalid("contact link type"))?,
            ),
            _ => return Err(DecodeError::Invalid("connection mode")),
        };
        let server = RelayServer::read(r)?
            .to_address()
            .map_err(|_| DecodeError::Invalid("short link server"))?;
        let link_type = match contact {
            None => ShortLinkType::Invitation {
                link_id: r.short()?.to_vec(),
            },
            Some(ct) => ShortLinkType::Contact(ct),
        };
        let link_key =
            LinkKey::from_slice(r.short()?).map_err(|_| DecodeError::Invalid("link key"))?;
        Ok(Self {
            scheme: ShortLinkScheme::Server,
            link_type,
            server,
            link_key,
        })
    }
}

/// `serverQueryP`: the first host from the authority, then the `h=` hosts;
/// `p=` a decimal port, `c=` the key hash.
fn server_from_query(
    first: Option<TransportHost>,
    query: &str,
) -> Result<ServerAddress, LinkError> {
    if query.contains([' ', '\n']) {
        return Err(LinkError::Trailing);
    }
    let q = Query::parse(query)?;
    let mut hosts: Vec<TransportHost> = first.into_iter().collect();
    if let Some(h) = q.get_str("h")? {
        for t in h.split(',') {
            hosts.push(TransportHost::parse(t).map_err(|_| LinkError::Server)?);
        }
    }
    if hosts.is_empty() {
        return Err(LinkError::NoServer);
    }
    let port = match q.get_str("p")? {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| LinkError::Server)?)
        }
        Some(_) => return Err(LinkError::Server),
    };
    let key_hash = match q.get_str("c")? {
        None => Vec::new(),
        Some(c) => b64_decode(c).map_err(|_| LinkError::Server)?,
    };
    ServerAddress::new(Scheme::Smp, hosts, port, KeyHash::new(key_hash))
        .map_err(|_| LinkError::NoServer)
}

impl FromStr for ShortLink {
    type Err = LinkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
