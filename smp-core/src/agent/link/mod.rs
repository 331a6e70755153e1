//! Connection links (agent.md §2): the full links people exchange to connect
//! — 1-time invitations and contact addresses (`ConnectionRequestUri`) — in
//! their text and binary forms, the short links that stand for them on an
//! SMP server, and the IO-free half of resolving a short link.
//!
//! ```text
//! link   = ("simplex:" | "https://" host) "/" ("invitation" | "contact") ["/"] "#/?" query
//! query  = "v=" agentVRange "&smp=" esc(queueUri *(";" queueUri)) ["&e2e=" esc(e2eParams)] ["&data=" esc(text)]
//! binary = ('I' | 'C') ‖ agentVRange ‖ NonEmpty SMPQueueUri ‖ Maybe(Large clientData) [‖ E2eParamsUri if 'I']
//! ```
//!
//! Text links are always written with `simplex:`, whatever scheme they were
//! read with, as the reference does.

mod data;
mod e2e_uri;
mod query;
mod short;

pub use data::{
    ConnLinkData, FIXED_DATA_PADDED_LEN, FixedLinkData, LinkQuery, LinkQueryCommand, OwnerAuth,
    OwnerError, ResolvedLink, SealedLinkData, USER_DATA_PADDED_LEN, UserContactData, UserLinkData,
    contact_link_kdf, decrypt_link_data, encrypt_link_blob, invitation_link_kdf, seal_link_data,
    validate_link_owners,
};
pub use short::{ContactType, LinkKey, ShortLink, ShortLinkScheme, ShortLinkType};

use alloc::string::String;
use alloc::vec::Vec;
use core::str::FromStr;

use crate::agent::version::DUPLEX_HANDSHAKE_AGENT_VERSION;
use crate::agent::x3dh::E2eParamsUri;
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::smp::command::QueueMode;
use crate::smp::queue_uri::{QueueUri, QueueUriError};
use crate::xftp::handshake::VersionRange;
use query::{Query, escape_into, lossy_utf8, parse_range, range_text};

/// Why a link, or the data behind a short link, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("unknown link scheme (expected simplex: or https://host)")]
    Scheme,
    #[error("unknown connection mode (expected invitation or contact)")]
    Mode,
    #[error("expected \"#/?\" after the connection mode")]
    MissingQuery,
    #[error("missing agent version range (v=)")]
    MissingVersion,
    #[error("invalid agent version range")]
    Version,
    #[error("the link has no SMP queues (smp=)")]
    NoQueues,
    #[error("SMP queue: {0}")]
    Queue(#[from] QueueUriError),
    #[error("an invitation needs e2e ratchet parameters (e2e=)")]
    MissingE2e,
    #[error("missing or invalid e2e version range")]
    E2eVersion,
    #[error("e2e parameters need two X448 keys (x3dh=)")]
    E2eKey,
    #[error("invalid sntrup761 key or ciphertext in the e2e parameters")]
    E2eKem,
    #[error("invalid %-escape or text in the query")]
    Escape,
    #[error("unexpected text at the end of the link")]
    Trailing,
    #[error("unknown short link type")]
    ShortLinkType,
    #[error("short link ID or key is not base64url")]
    Base64,
    #[error("a link key is 32 bytes, got {0}")]
    LinkKeyLength(usize),
    #[error("short link without a server")]
    NoServer,
    #[error("invalid server host, port or key hash in the short link")]
    Server,
    #[error("binary form: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    #[error("link data does not decrypt with the link key")]
    Decrypt,
    #[error("{len} bytes of signed link data do not fit {padded} padded bytes")]
    DataTooLarge { len: usize, padded: usize },
    #[error("link data must be signed with an Ed25519 key")]
    SigningKey,
    #[error("link data is not valid: {0}")]
    Data(DecodeError),
    #[error("link data is for a different connection mode")]
    DataMode,
    #[error("link data hash does not match the link key")]
    DataHash,
    #[error("fixed link data signature is not by its root key")]
    FixedSignature,
    #[error("user link data signature is not by the root key or an owner")]
    UserSignature,
    #[error("link owners: {0}")]
    Owners(#[from] OwnerError),
    #[error("link data is for a different queue address")]
    DifferentAddress,
}

/// The two kinds of connection: a 1-time invitation, or a reusable contact
/// address (also used by groups and channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionMode {
    Invitation,
    Contact,
}

impl ConnectionMode {
    /// The binary tag (`'I'`/`'C'`).
    pub const fn byte(self) -> u8 {
        match self {
            Self::Invitation => b'I',
            Self::Contact => b'C',
        }
    }
    /// Reads the tag, refusing anything but `'I'`/`'C'`.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            b'I' => Ok(Self::Invitation),
            b'C' => Ok(Self::Contact),
            _ => Err(DecodeError::Invalid("connection mode")),
        }
    }
    const fn name(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::Contact => "contact",
        }
    }
}

/// What both kinds of link carry (`ConnReqUriData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnReqData {
    /// Agent protocol versions the link's creator supports.
    pub agent_versions: VersionRange,
    /// Never empty; the joiner uses the first one.
    pub queues: Vec<QueueUri>,
    /// Free text for the application (the chat puts JSON for groups here).
    pub client_data: Option<String>,
}

/// A full connection link (`ConnectionRequestUri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionRequest {
    /// A 1-time invitation: the creator's ratchet keys are in the link.
    Invitation {
        data: ConnReqData,
        e2e: E2eParamsUri,
    },
    /// A contact address: ratchet keys come later in the invitation message.
    Contact(ConnReqData),
}

impl ConnectionRequest {
    /// Which kind of link this is, for checks against short-link data.
    pub fn mode(&self) -> ConnectionMode {
        match self {
            Self::Invitation { .. } => ConnectionMode::Invitation,
            Self::Contact(_) => ConnectionMode::Contact,
        }
    }
    /// The part both kinds share.
    pub fn data(&self) -> &ConnReqData {
        match self {
            Self::Invitation { data, .. } | Self::Contact(data) => data,
        }
    }
    /// For adjusting queues (a resolved short link's server, for one).
    pub fn data_mut(&mut self) -> &mut ConnReqData {
        match self {
            Self::Invitation { data, .. } | Self::Contact(data) => data,
        }
    }
    /// The queue a joiner connects to (`connReqQueue`).
    pub fn first_queue(&self) -> Option<&QueueUri> {
        self.data().queues.first()
    }
    /// The creator's ratchet keys; only invitations carry them.
    pub fn e2e(&self) -> Option<&E2eParamsUri> {
        match self {
            Self::Invitation { e2e, .. } => Some(e2e),
            Self::Contact(_) => None,
        }
    }

    /// The text form, byte-identical to the reference's `strEncode`.
    pub fn to_link_string(&self) -> Result<String, LinkError> {
        let data = self.data();
        if data.queues.is_empty() {
            return Err(LinkError::NoQueues);
        }
        let mut smp = String::new();
        for (i, q) in data.queues.iter().enumerate() {
            if i > 0 {
                smp.push(';');
            }
            smp.push_str(&q.to_uri_string());
        }
        let mut s = String::from("simplex:/");
        s.push_str(self.mode().name());
        s.push_str("#/?v=");
        escape_into(&mut s, range_text(&data.agent_versions).as_bytes());
        s.push_str("&smp=");
        escape_into(&mut s, smp.as_bytes());
        if let Some(e2e) = self.e2e() {
            s.push_str("&e2e=");
            escape_into(&mut s, e2e.to_uri_string().as_bytes());
        }
        if let Some(d) = &data.client_data {
            s.push_str("&data=");
            escape_into(&mut s, d.as_bytes());
        }
        Ok(s)
    }

    /// Parses a full link (`connReqUriP`): `simplex:` or `https://host[:port]`,
    /// an optional `/` after the mode, query keys in any order, unknown keys
    /// ignored. A contact address's agent range is raised to at least 2
    /// (`adjustAgentVRange`), so that old published addresses still work.
    pub fn parse(s: &str) -> Result<Self, LinkError> {
        let rest = skip_scheme(s)?;
        let rest = rest.strip_prefix('/').ok_or(LinkError::Mode)?;
        let (mode, rest) = if let Some(r) = rest.strip_prefix("invitation") {
            (ConnectionMode::Invitation, r)
        } else if let Some(r) = rest.strip_prefix("contact") {
            (ConnectionMode::Contact, r)
        } else {
            return Err(LinkError::Mode);
        };
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let query = rest.strip_prefix("#/?").ok_or(LinkError::MissingQuery)?;
        if query.contains([' ', '\n']) {
            return Err(LinkError::Trailing);
        }
        let q = Query::parse(query)?;
        let versions = q.get_str("v")?.ok_or(LinkError::MissingVersion)?;
        let agent_versions = parse_range(versions).ok_or(LinkError::Version)?;
        let smp = q.get_str("smp")?.ok_or(LinkError::NoQueues)?;
        if smp.is_empty() {
            return Err(LinkError::NoQueues);
        }
        let queues = smp
            .split(';')
            .map(QueueUri::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let client_data = q.get("data").map(lossy_utf8);
        let mut data = ConnReqData {
            agent_versions,
            queues,
            client_data,
        };
        match mode {
            ConnectionMode::Invitation => {
                let e2e = q.get_str("e2e")?.ok_or(LinkError::MissingE2e)?;
                let e2e = E2eParamsUri::parse_uri(e2e)?;
                Ok(Self::Invitation { data, e2e })
            }
            ConnectionMode::Contact => {
                data.agent_versions = adjust_contact_range(data.agent_versions);
                Ok(Self::Contact(data))
            }
        }
    }

    /// The binary form, as inside short-link data.
    pub fn write(&self, w: &mut Writer) -> Result<(), LinkError> {
        let data = self.data();
        w.u8(self.mode().byte());
        data.agent_versions.write(w);
        if data.queues.is_empty() {
            return Err(LinkError::NoQueues);
        }
        let n = u8::try_from(data.queues.len()).map_err(|_| EncodeError::ListTooLong {
            len: data.queues.len(),
        })?;
        w.u8(n);
        for q in &data.queues {
            q.write(w)?;
        }
        w.maybe(data.client_data.as_ref(), |w, d| {
            w.large(d.as_bytes()).map(|_| ())
        })?;
        if let Self::Invitation { e2e, .. } = self {
            e2e.write(w)?;
        }
        Ok(())
    }

    /// The binary form as one buffer.
    pub fn encode(&self) -> Result<Vec<u8>, LinkError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    /// Reads the binary form from a larger structure. Queues that come out
    /// without a mode are taken as contact queues (`ConnReqUriData` `smpP`):
    /// the binary form never omits the mode of a queue the sender may secure.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, LinkError> {
        let mode = ConnectionMode::read(r)?;
        let (min, max) = (r.u16()?, r.u16()?);
        let agent_versions = VersionRange::new(min, max).ok_or(LinkError::Version)?;
        let n = r.u8()?;
        if n == 0 {
            return Err(LinkError::NoQueues);
        }
        let mut queues = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let mut q = QueueUri::read(r)?;
            q.queue_mode.get_or_insert(QueueMode::Contact);
            queues.push(q);
        }
        let client_data = r.maybe(|r| r.large().map(lossy_utf8))?;
        let data = ConnReqData {
            agent_versions,
            queues,
            client_data,
        };
        Ok(match mode {
            ConnectionMode::Invitation => Self::Invitation {
                data,
                e2e: E2eParamsUri::read(r)?,
            },
            ConnectionMode::Contact => Self::Contact(data),
        })
    }

    /// The binary form as a whole input.
    pub fn decode(b: &[u8]) -> Result<Self, LinkError> {
        let mut r = Reader::new(b);
        let c = Self::read(&mut r)?;
        r.end()?;
        Ok(c)
    }
}

/// `ServiceScheme` `strP`: `simplex:` or `https://` host [`:` port]; the
/// host ends at any of `: # , ; /` or a space.
fn skip_scheme(s: &str) -> Result<&str, LinkError> {
    if let Some(r) = s.strip_prefix("simplex:") {
        return Ok(r);
    }
    let r = s.strip_prefix("https://").ok_or(LinkError::Scheme)?;
    let host = r.find([':', '#', ',', ';', '/', ' ']).unwrap_or(r.len());
    if host == 0 {
        return Err(LinkError::Scheme);
    }
    let r = &r[host..];
    match r.strip_prefix(':') {
        Some(p) => {
            let digits = p.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(LinkError::Scheme);
            }
            Ok(&p[digits..])
        }
        None => Ok(r),
    }
}

/// `adjustAgentVRange`: a contact address's minimum is raised to the oldest
/// agent version still supported, and the maximum to at least that.
fn adjust_contact_range(vr: VersionRange) -> VersionRange {
    let v = vr.min().max(DUPLEX_HANDSHAKE_AGENT_VERSION);
    VersionRange::new(v, v.max(vr.max())).unwrap_or(vr)
}

impl FromStr for ConnectionRequest {
    type Err = LinkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
