//! Client commands (`Command` in the reference), their binary encodings per
//! version and `checkCredentials`.
//!
//! ```text
//! command = tag [' ' params]        params run to the end of the transmission
//! ```
//! Unknown tags are `CMD UNKNOWN`, bad or trailing parameters `CMD SYNTAX`.
//! Only `NEW` depends on the version; every tag is accepted at every version.

use super::error::{CommandError, ErrorType};
use super::version::{self, NewBand, Version};
use crate::address::{AddressError, KeyHash, Scheme, ServerAddress, TransportHost};
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Splits `tag ‖ params` at the first space; `params` keeps that space so
/// that a bare tag followed by a space is a syntax error, as in the reference.
pub(crate) fn split_tag(b: &[u8]) -> (&[u8], &[u8]) {
    let n = b.iter().position(|&c| c == b' ').unwrap_or(b.len());
    b.split_at(n)
}

/// Reads a shortString-wrapped public key allowed for command authorization.
pub(crate) fn read_auth_key(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
    let k = PublicKey::from_der(r.short()?).map_err(|_| DecodeError::Invalid("public key"))?;
    match k.algorithm() {
        KeyAlgorithm::Ed25519 | KeyAlgorithm::Ed448 | KeyAlgorithm::X25519 => Ok(k),
        KeyAlgorithm::X448 => Err(DecodeError::Invalid("auth key algorithm")),
    }
}

/// Reads a shortString-wrapped X25519 public key.
pub(crate) fn read_dh_key(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
    PublicKey::from_der_as(KeyAlgorithm::X25519, r.short()?)
        .map_err(|_| DecodeError::Invalid("X25519 key"))
}

pub(crate) fn write_key(w: &mut Writer, k: &PublicKey) -> Result<(), EncodeError> {
    w.short(&k.to_der())?;
    Ok(())
}

/// The server password (`BasicAuth`): printable ASCII without space, `@ : /`.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth(Vec<u8>);

impl core::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("BasicAuth(<secret>)")
    }
}

impl Drop for BasicAuth {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl BasicAuth {
    pub fn new(b: &[u8]) -> Option<Self> {
        let ok = !b.is_empty()
            && b.len() <= 255
            && b.iter()
                .all(|&c| c.is_ascii_graphic() && !matches!(c, b'@' | b':' | b'/'));
        ok.then(|| Self(b.to_vec()))
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Constant-time comparison with the configured password.
    pub fn matches(&self, configured: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.as_slice().ct_eq(configured))
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::new(r.short()?).ok_or(DecodeError::Invalid("basic auth"))
    }
}

/// Whether `NEW` also subscribes the creating connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionMode {
    Subscribe,
    OnlyCreate,
}

impl SubscriptionMode {
    fn byte(self) -> u8 {
        match self {
            Self::Subscribe => b'S',
            Self::OnlyCreate => b'C',
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            b'S' => Ok(Self::Subscribe),
            b'C' => Ok(Self::OnlyCreate),
            _ => Err(DecodeError::Invalid("subscription mode")),
        }
    }
}

/// Messaging (one-time, sender may `SKEY`) or contact-address queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueMode {
    Messaging,
    Contact,
}

impl QueueMode {
    pub const fn byte(self) -> u8 {
        match self {
            Self::Messaging => b'M',
            Self::Contact => b'C',
        }
    }
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'M' => Some(Self::Messaging),
            b'C' => Some(Self::Contact),
            _ => None,
        }
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::from_byte(r.u8()?).ok_or(DecodeError::Invalid("queue mode"))
    }
}

/// Encrypted short-link data the server stores opaquely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLinkData {
    pub fixed: Vec<u8>,
    pub user: Vec<u8>,
}

impl QueueLinkData {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.large(&self.fixed)?.large(&self.user)?;
        Ok(())
    }
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            fixed: r.large()?.to_vec(),
            user: r.large()?.to_vec(),
        })
    }
}

/// `QueueReqData`: the queue mode and optional link data of `NEW` (v15+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueReqData {
    /// `(senderId, data)`; the server checks senderId = SHA3-384(corrId)[..24].
    Messaging(Option<(Vec<u8>, QueueLinkData)>),
    /// `(linkId, (senderId, data))`.
    Contact(Option<(Vec<u8>, Vec<u8>, QueueLinkData)>),
}

impl QueueReqData {
    pub fn mode(&self) -> QueueMode {
        match self {
            Self::Messaging(_) => QueueMode::Messaging,
            Self::Contact(_) => QueueMode::Contact,
        }
    }
    /// The client-supplied sender ID, if any.
    pub fn sender_id(&self) -> Option<&[u8]> {
        match self {
            Self::Messaging(Some((s, _))) | Self::Contact(Some((_, s, _))) => Some(s),
            _ => None,
        }
    }
    fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::Messaging(d) => {
                w.u8(b'M').maybe(d.as_ref(), |w, (s, d)| {
                    w.short(s)?;
                    d.write(w)
                })?;
            }
            Self::Contact(d) => {
                w.u8(b'C').maybe(d.as_ref(), |w, (l, s, d)| {
                    w.short(l)?.short(s)?;
                    d.write(w)
                })?;
            }
        }
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match QueueMode::read(r)? {
            QueueMode::Messaging => {
                Ok(Self::Messaging(r.maybe(|r| {
                    Ok((r.short()?.to_vec(), QueueLinkData::read(r)?))
                })?))
            }
            QueueMode::Contact => Ok(Self::Contact(r.maybe(|r| {
                Ok((
                    r.short()?.to_vec(),
                    r.short()?.to_vec(),
                    QueueLinkData::read(r)?,
                ))
            })?)),
        }
    }
}

/// The sender ID a client must propose with link data: SHA3-384(corrId)[..24].
pub fn sender_id_for_corr_id(corr_id: &[u8]) -> [u8; 24] {
    use sha3::Digest;
    let h = sha3::Sha3_384::digest(corr_id);
    let mut a = [0u8; 24];
    a.copy_from_slice(&h[..24]);
    a
}

/// Notifier credentials requested in `NEW` (v17+) or by `NKEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNtfCreds {
    pub auth_key: PublicKey,
    pub dh_key: PublicKey,
}

impl NewNtfCreds {
    fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        write_key(w, &self.auth_key)?;
        write_key(w, &self.dh_key)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            auth_key: read_auth_key(r)?,
            dh_key: read_dh_key(r)?,
        })
    }
}

/// `NewQueueReq`: the parameters of `NEW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueue {
    pub rcv_auth_key: PublicKey,
    pub rcv_dh_key: PublicKey,
    pub basic_auth: Option<BasicAuth>,
    pub sub_mode: SubscriptionMode,
    /// Below v9 never sent (queue without mode); at 9–14 only the mode.
    pub queue_req_data: Option<QueueReqData>,
    /// Only sent from v17.
    pub ntf_creds: Option<NewNtfCreds>,
}

/// A relay address as `PRXY` carries it (`ProtocolServer` binary form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayServer {
    /// Host names or addresses, as text.
    pub hosts: Vec<String>,
    /// Empty means the default port.
    pub port: String,
    pub key_hash: Vec<u8>,
}

impl RelayServer {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.non_empty(&self.hosts, |w, h| w.short(h.as_bytes()).map(|_| ()))?;
        w.short(self.port.as_bytes())?.short(&self.key_hash)?;
        Ok(())
    }
    /// The binary form of an address (hosts as text, port as text, empty
    /// when the address has none).
    pub fn from_address(a: &ServerAddress) -> Self {
        Self {
            hosts: a.hosts().iter().map(ToString::to_string).collect(),
            port: a.port().map(|p| p.to_string()).unwrap_or_default(),
            key_hash: a.key_hash().as_bytes().to_vec(),
        }
    }
    /// Back to an `smp://` address; the key hash is kept as given.
    pub fn to_address(&self) -> Result<ServerAddress, AddressError> {
        let hosts = self
            .hosts
            .iter()
            .map(|h| TransportHost::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        let port = if self.port.is_empty() {
            None
        } else {
            Some(
                self.port
                    .parse::<u16>()
                    .map_err(|_| AddressError::PortOutOfRange(self.port.clone()))?,
            )
        };
        ServerAddress::new(
            Scheme::Smp,
            hosts,
            port,
            KeyHash::new(self.key_hash.clone()),
        )
    }
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let text = |b: &[u8]| {
            core::str::from_utf8(b)
                .map(String::from)
                .map_err(|_| DecodeError::Invalid("host"))
        };
        let hosts = r.non_empty(|r| {
            let h = r.short()?;
            if h.is_empty() {
                return Err(DecodeError::Invalid("empty host"));
            }
            text(h)
        })?;
        let port = text(r.short()?)?;
        if !port.bytes().all(|c| c.is_ascii_digit()) {
            return Err(DecodeError::Invalid("port"));
        }
        let key_hash = r.short()?.to_vec();
        Ok(Self {
            hosts,
            port,
            key_hash,
        })
    }
}

/// An SMP command sent by a client (recipient, sender, notifier, proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    New(NewQueue),
    Sub,
    /// Subscribe all queues of a service (v16).
    Subs,
    Key(PublicKey),
    Rkey(Vec<PublicKey>),
    Lset {
        link_id: Vec<u8>,
        data: QueueLinkData,
    },
    Ldel,
    Nkey(NewNtfCreds),
    Ndel,
    Get,
    Ack(Vec<u8>),
    Off,
    Del,
    Que,
    Skey(PublicKey),
    Send {
        notification: bool,
        body: Vec<u8>,
    },
    Ping,
    Lkey(PublicKey),
    Lget,
    Nsub,
    Nsubs,
    Prxy {
        server: RelayServer,
        auth: Option<BasicAuth>,
    },
    Pfwd {
        version: Version,
        key: PublicKey,
        encrypted: Vec<u8>,
    },
    Rfwd(Vec<u8>),
}

impl Command {
    pub fn tag(&self) -> &'static str {
        match self {
            Self::New(_) => "NEW",
            Self::Sub => "SUB",
            Self::Subs => "SUBS",
            Self::Key(_) => "KEY",
            Self::Rkey(_) => "RKEY",
            Self::Lset { .. } => "LSET",
            Self::Ldel => "LDEL",
            Self::Nkey(_) => "NKEY",
            Self::Ndel => "NDEL",
            Self::Get => "GET",
            Self::Ack(_) => "ACK",
            Self::Off => "OFF",
            Self::Del => "DEL",
            Self::Que => "QUE",
            Self::Skey(_) => "SKEY",
            Self::Send { .. } => "SEND",
            Self::Ping => "PING",
            Self::Lkey(_) => "LKEY",
            Self::Lget => "LGET",
            Self::Nsub => "NSUB",
            Self::Nsubs => "NSUBS",
            Self::Prxy { .. } => "PRXY",
            Self::Pfwd { .. } => "PFWD",
            Self::Rfwd(_) => "RFWD",
        }
    }

    /// Encodes for version `v`. Below v15 `NEW` drops link data, below v17
    /// notifier credentials, and below v9 the queue mode, as the reference does.
    pub fn encode(&self, v: Version) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.raw(self.tag().as_bytes());
        match self {
            Self::Sub
            | Self::Subs
            | Self::Ldel
            | Self::Ndel
            | Self::Get
            | Self::Off
            | Self::Del
            | Self::Que
            | Self::Ping
            | Self::Lget
            | Self::Nsub
            | Self::Nsubs => {}
            Self::New(n) => {
                w.u8(b' ');
                write_key(&mut w, &n.rcv_auth_key)?;
                write_key(&mut w, &n.rcv_dh_key)?;
                match version::new_band(v) {
                    NewBand::Legacy => {
                        if let Some(a) = &n.basic_auth {
                            w.u8(b'A').short(a.as_bytes())?;
                        }
                        w.u8(n.sub_mode.byte());
                    }
                    NewBand::SndSecure => {
                        w.maybe(n.basic_auth.as_ref(), |w, a| {
                            w.short(a.as_bytes()).map(|_| ())
                        })?;
                        w.u8(n.sub_mode.byte());
                        let snd_secure =
                            matches!(n.queue_req_data, Some(QueueReqData::Messaging(_)));
                        w.bool(snd_secure);
                    }
                    band => {
                        w.maybe(n.basic_auth.as_ref(), |w, a| {
                            w.short(a.as_bytes()).map(|_| ())
                        })?;
                        w.u8(n.sub_mode.byte());
                        w.maybe(n.queue_req_data.as_ref(), |w, q| q.write(w))?;
                        if band == NewBand::NtfCreds {
                            w.maybe(n.ntf_creds.as_ref(), |w, c| c.write(w))?;
                        }
                    }
                }
            }
            Self::Key(k) | Self::Skey(k) | Self::Lkey(k) => {
                w.u8(b' ');
                write_key(&mut w, k)?;
            }
            Self::Rkey(keys) => {
                w.u8(b' ');
                w.non_empty(keys, write_key)?;
            }
            Self::Lset { link_id, data } => {
                w.u8(b' ').short(link_id)?;
                data.write(&mut w)?;
            }
            Self::Nkey(c) => {
                w.u8(b' ');
                c.write(&mut w)?;
            }
            Self::Ack(m) => {
                w.u8(b' ').short(m)?;
            }
            Self::Send { notification, body } => {
                w.u8(b' ').bool(*notification).u8(b' ').raw(body);
            }
            Self::Prxy { server, auth } => {
                w.u8(b' ');
                server.write(&mut w)?;
                w.maybe(auth.as_ref(), |w, a| w.short(a.as_bytes()).map(|_| ()))?;
            }
            Self::Pfwd {
                version,
                key,
                encrypted,
            } => {
                w.u8(b' ').u16(*version);
                write_key(&mut w, key)?;
                w.raw(encrypted);
            }
            Self::Rfwd(t) => {
                w.u8(b' ').raw(t);
            }
        }
        Ok(w.into_vec())
    }

    /// Parses a command as the server does at version `v`.
    pub fn decode(b: &[u8], v: Version) -> Result<Self, ErrorType> {
        let (tag, params) = split_tag(b);
        let bare = |c: Command| {
            if params.is_empty() {
                Ok(c)
            } else {
                Err(ErrorType::Cmd(CommandError::Syntax))
            }
        };
        let cmd = match tag {
            b"SUB" => return bare(Self::Sub),
            b"SUBS" => return bare(Self::Subs),
            b"LDEL" => return bare(Self::Ldel),
            b"NDEL" => return bare(Self::Ndel),
            b"GET" => return bare(Self::Get),
            b"OFF" => return bare(Self::Off),
            b"DEL" => return bare(Self::Del),
            b"QUE" => return bare(Self::Que),
            b"PING" => return bare(Self::Ping),
            b"LGET" => return bare(Self::Lget),
            b"NSUB" => return bare(Self::Nsub),
            b"NSUBS" => return bare(Self::Nsubs),
            b"NEW" | b"KEY" | b"RKEY" | b"LSET" | b"NKEY" | b"ACK" | b"SKEY" | b"SEND"
            | b"LKEY" | b"PRXY" | b"PFWD" | b"RFWD" => tag,
            _ => return Err(ErrorType::Cmd(CommandError::Unknown)),
        };
        Self::decode_params(cmd, params, v).map_err(|_| ErrorType::Cmd(CommandError::Syntax))
    }

    fn decode_params(tag: &[u8], params: &[u8], v: Version) -> Result<Self, DecodeError> {
        let mut r = Reader::new(params);
        r.space()?;
        let c = match tag {
            b"NEW" => Self::New(Self::read_new(&mut r, v)?),
            b"KEY" => Self::Key(read_auth_key(&mut r)?),
            b"SKEY" => Self::Skey(read_auth_key(&mut r)?),
            b"LKEY" => Self::Lkey(read_auth_key(&mut r)?),
            b"RKEY" => Self::Rkey(r.non_empty(read_auth_key)?),
            b"LSET" => Self::Lset {
                link_id: r.short()?.to_vec(),
                data: QueueLinkData::read(&mut r)?,
            },
            b"NKEY" => Self::Nkey(NewNtfCreds::read(&mut r)?),
            b"ACK" => Self::Ack(r.short()?.to_vec()),
            b"SEND" => {
                let notification = r.bool()?;
                // Reserved flag bytes up to the next space are skipped.
                while r.peek().is_some_and(|c| c != b' ') {
                    r.u8()?;
                }
                r.space()?;
                Self::Send {
                    notification,
                    body: r.tail().to_vec(),
                }
            }
            b"PRXY" => Self::Prxy {
                server: RelayServer::read(&mut r)?,
                auth: r.maybe(BasicAuth::read)?,
            },
            b"PFWD" => Self::Pfwd {
                version: r.u16()?,
                key: read_dh_key(&mut r)?,
                encrypted: r.tail().to_vec(),
            },
            b"RFWD" => Self::Rfwd(r.tail().to_vec()),
            _ => return Err(DecodeError::Invalid("tag")),
        };
        r.end()?;
        Ok(c)
    }

    fn read_new(r: &mut Reader<'_>, v: Version) -> Result<NewQueue, DecodeError> {
        let rcv_auth_key = read_auth_key(r)?;
        let rcv_dh_key = read_dh_key(r)?;
        let (basic_auth, sub_mode, queue_req_data, ntf_creds) = match version::new_band(v) {
            NewBand::Legacy => {
                let auth = if r.peek() == Some(b'A') {
                    r.u8()?;
                    Some(BasicAuth::read(r)?)
                } else {
                    None
                };
                (auth, SubscriptionMode::read(r)?, None, None)
            }
            NewBand::SndSecure => {
                let auth = r.maybe(BasicAuth::read)?;
                let mode = SubscriptionMode::read(r)?;
                let q = if r.bool()? {
                    QueueReqData::Messaging(None)
                } else {
                    QueueReqData::Contact(None)
                };
                (auth, mode, Some(q), None)
            }
            band => {
                let auth = r.maybe(BasicAuth::read)?;
                let mode = SubscriptionMode::read(r)?;
                let q = r.maybe(QueueReqData::read)?;
                let n = if band == NewBand::NtfCreds {
                    r.maybe(NewNtfCreds::read)?
                } else {
                    None
                };
                (auth, mode, q, n)
            }
        };
        Ok(NewQueue {
            rcv_auth_key,
            rcv_dh_key,
            basic_auth,
            sub_mode,
            queue_req_data,
            ntf_creds,
        })
    }

    /// `checkCredentials`: which commands need an entity and an authorization.
    pub fn check_credentials(&self, has_auth: bool, entity_id: &[u8]) -> Result<(), ErrorType> {
        let err = |e| Err(ErrorType::Cmd(e));
        match self {
            Self::New(_) => {
                if !has_auth {
                    err(CommandError::NoAuth)
                } else if !entity_id.is_empty() {
                    err(CommandError::HasAuth)
                } else {
                    Ok(())
                }
            }
            Self::Send { .. } => {
                if entity_id.is_empty() {
                    err(CommandError::NoEntity)
                } else {
                    Ok(())
                }
            }
            Self::Lget | Self::Pfwd { .. } => {
                if entity_id.is_empty() {
                    err(CommandError::NoEntity)
                } else if has_auth {
                    err(CommandError::HasAuth)
                } else {
                    Ok(())
                }
            }
            Self::Ping | Self::Prxy { .. } | Self::Rfwd(_) => {
                if has_auth || !entity_id.is_empty() {
                    err(CommandError::HasAuth)
                } else {
                    Ok(())
                }
            }
            _ => {
                if !has_auth || entity_id.is_empty() {
                    err(CommandError::NoAuth)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// `useServiceAuth`: commands that carry a service signature in a
    /// service session (and must not outside one).
    pub fn uses_service_auth(&self) -> bool {
        matches!(self, Self::New(_) | Self::Sub | Self::Nsub)
    }

    /// Commands a relay executes when they arrive forwarded inside `RFWD`.
    pub fn is_proxiable(&self) -> bool {
        matches!(
            self,
            Self::Send { .. } | Self::Skey(_) | Self::Lkey(_) | Self::Lget
        )
    }
}
