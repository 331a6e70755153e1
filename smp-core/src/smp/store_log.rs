//! The router's persistence formats, IO-free: the queue store log
//! (`smp-server-store.log`), the memory message store export
//! (`smp-server-messages.log`) and the journal message store's file names,
//! journal lines and queue state lines.
//!
//! These are text formats, one record per line terminated by `\n`; the
//! functions here work on one line at a time. [`StoreLogRecord::encode`] gives
//! the line without its newline, [`StoreLogRecord::encode_line`] with it;
//! the parsers take the line without the newline (as a line reader returns it)
//! and require the whole input to be consumed, as the reference does.
//!
//! Only needed for file compatibility with the reference server (simplexmq
//! 6.5.5): `Server/StoreLog.hs`, `Server/QueueStore.hs`, `Server/MsgStore.hs`,
//! `Server/MsgStore/Journal.hs`. The parsers follow the reference grammar,
//! including its optional fields and one quirk: a blocking notice in a queue
//! status is read to the end of the line, so a `CREATE` line whose status is
//! blocked with a notice and that also has ` rsrv=` does not parse (the
//! reference skips such a queue when it reads the log); [`QueueRec::parses_back`]
//! tells whether a record is in that shape.
//!
//! Numbers are parsed like the reference's `Int`/`Int64` decimal parsers:
//! digits accumulate with two's complement wrap-around (never a panic).

use super::command::{QueueLinkData, QueueMode};
use super::error::{BlockingInfo, BlockingReason};
use super::handshake::ServiceRole;
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::encoding::string::{b64_decode, b64_encode};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Every way a line can fail to parse or a record fail to encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreLogError {
    #[error("unknown record tag")]
    UnknownTag,
    #[error("expected `{0}`")]
    Expected(&'static str),
    #[error("{0}: invalid base64url")]
    Base64(&'static str),
    #[error("{0}: invalid public key")]
    Key(&'static str),
    #[error("{0}: a DH secret must be 32 bytes")]
    DhSecret(&'static str),
    #[error("{0}: invalid number")]
    Number(&'static str),
    #[error("{0}: invalid value")]
    Invalid(&'static str),
    #[error("unexpected data at byte {0}")]
    Trailing(usize),
    #[error("cannot encode: {0} is empty")]
    Empty(&'static str),
}

type Result<T> = core::result::Result<T, StoreLogError>;

/// A text line as written to a file: the line and its `\n`.
fn terminated(line: String) -> Vec<u8> {
    let mut v = line.into_bytes();
    v.push(b'\n');
    v
}

/// A queue's status (`ServerEntityStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityStatus {
    Active,
    Blocked(BlockingInfo),
    /// Suspended (`OFF`).
    Off,
}

impl EntityStatus {
    /// `active`, `blocked,reason=…[,notice=…]` or `off`.
    pub fn encode(&self) -> String {
        match self {
            Self::Active => String::from("active"),
            Self::Blocked(b) => {
                let mut s = String::from("blocked,");
                s.push_str(&b.encode());
                s
            }
            Self::Off => String::from("off"),
        }
    }
}

/// Notifier credentials of a queue (`NtfCreds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtfCreds {
    pub notifier_id: Vec<u8>,
    pub notifier_key: PublicKey,
    pub rcv_ntf_dh_secret: [u8; 32],
    /// The notification server's service, if it subscribed as one.
    pub ntf_service_id: Option<Vec<u8>>,
}

/// A short link of a queue: its id and the encrypted link data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLink {
    pub link_id: Vec<u8>,
    pub data: QueueLinkData,
}

/// A queue as `CREATE` stores it (`QueueRec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRec {
    /// Never empty in a valid record.
    pub recipient_keys: Vec<PublicKey>,
    pub rcv_dh_secret: [u8; 32],
    pub sender_id: Vec<u8>,
    pub sender_key: Option<PublicKey>,
    /// `None` for queues created before v9 (or unknown).
    pub queue_mode: Option<QueueMode>,
    pub link: Option<QueueLink>,
    pub notifier: Option<NtfCreds>,
    /// Day-rounded Unix seconds.
    pub updated_at: Option<i64>,
    pub status: EntityStatus,
    pub rcv_service_id: Option<Vec<u8>>,
}

impl QueueRec {
    /// `false` for the one shape the reference writes but cannot read back:
    /// blocked with a notice and with a recipient service.
    pub fn parses_back(&self) -> bool {
        !(matches!(
            self.status,
            EntityStatus::Blocked(BlockingInfo {
                notice: Some(_),
                ..
            })
        ) && self.rcv_service_id.is_some())
    }
}

/// A service certificate record (`ServiceRec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRec {
    pub service_id: Vec<u8>,
    pub role: ServiceRole,
    /// DER certificates, leaf first. Not validated as X.509 here (the
    /// reference refuses a line whose certificates do not decode); may be
    /// empty, as the reference's list parser allows.
    pub cert_chain: Vec<Vec<u8>>,
    /// The fingerprint of the service's identity certificate.
    pub cert_hash: Vec<u8>,
    /// Day-rounded Unix seconds.
    pub created_at: i64,
}

/// Which subscriber of a queue a service association is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceParty {
    /// `R`: recipient service.
    Recipient,
    /// `N`: notifier service.
    Notifier,
}

impl ServiceParty {
    pub const fn byte(self) -> u8 {
        match self {
            Self::Recipient => b'R',
            Self::Notifier => b'N',
        }
    }
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'R' => Some(Self::Recipient),
            b'N' => Some(Self::Notifier),
            _ => None,
        }
    }
}

/// One line of `smp-server-store.log` (`StoreLogRecord`). Every record but
/// `NewService` is keyed by the recipient id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLogRecord {
    /// `CREATE rid=… <QueueRec>`
    /// (boxed: it is much larger than the other records)
    CreateQueue { rid: Vec<u8>, queue: Box<QueueRec> },
    /// `LINK <rid> <linkId> <fixed> <user>`
    CreateLink { rid: Vec<u8>, link: QueueLink },
    /// `LDELETE <rid>`
    DeleteLink { rid: Vec<u8> },
    /// `SECURE <rid> <senderKey>`
    SecureQueue { rid: Vec<u8>, sender_key: PublicKey },
    /// `KEYS <rid> <key>[,<key>…]`
    UpdateKeys { rid: Vec<u8>, keys: Vec<PublicKey> },
    /// `NOTIFIER <rid> <nId> <nKey> <dhSecret>[ nsrv=<id>]`
    AddNotifier { rid: Vec<u8>, creds: NtfCreds },
    /// `SUSPEND <rid>`
    SuspendQueue { rid: Vec<u8> },
    /// `BLOCK <rid> reason=…[,notice=…]`
    BlockQueue { rid: Vec<u8>, info: BlockingInfo },
    /// `UNBLOCK <rid>`
    UnblockQueue { rid: Vec<u8> },
    /// `DELETE <rid>`
    DeleteQueue { rid: Vec<u8> },
    /// `NDELETE <rid>`
    DeleteNotifier { rid: Vec<u8> },
    /// `TIME <rid> <day-rounded secs>`
    UpdateTime { rid: Vec<u8>, date: i64 },
    /// `NEW_SERVICE service_id=… role=… cert=… cert_hash=… created_at=…`
    NewService(ServiceRec),
    /// `QUEUE_SERVICE <rid> R|N <serviceId>|""`
    QueueService {
        rid: Vec<u8>,
        party: ServiceParty,
        service_id: Option<Vec<u8>>,
    },
}

// ---------------------------------------------------------------- encoding

fn id(out: &mut String, field: &'static str, b: &[u8]) -> Result<()> {
    if b.is_empty() {
        return Err(StoreLogError::Empty(field));
    }
    out.push_str(&b64_encode(b));
    Ok(())
}

fn key(out: &mut String, k: &PublicKey) {
    out.push_str(&b64_encode(&k.to_der()));
}

fn keys(out: &mut String, field: &'static str, ks: &[PublicKey]) -> Result<()> {
    if ks.is_empty() {
        return Err(StoreLogError::Empty(field));
    }
    for (i, k) in ks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        key(out, k);
    }
    Ok(())
}

fn link_data(out: &mut String, d: &QueueLinkData) -> Result<()> {
    id(out, "fixed link data", &d.fixed)?;
    out.push(' ');
    id(out, "user link data", &d.user)
}

fn ntf_creds(out: &mut String, n: &NtfCreds) -> Result<()> {
    id(out, "notifier id", &n.notifier_id)?;
    out.push(' ');
    key(out, &n.notifier_key);
    out.push(' ');
    out.push_str(&b64_encode(&n.rcv_ntf_dh_secret));
    if let Some(s) = &n.ntf_service_id {
        out.push_str(" nsrv=");
        id(out, "service id", s)?;
    }
    Ok(())
}

fn queue_rec(out: &mut String, q: &QueueRec) -> Result<()> {
    out.push_str("rk=");
    keys(out, "recipient keys", &q.recipient_keys)?;
    out.push_str(" rdh=");
    out.push_str(&b64_encode(&q.rcv_dh_secret));
    out.push_str(" sid=");
    id(out, "sender id", &q.sender_id)?;
    out.push_str(" sk=");
    if let Some(k) = &q.sender_key {
        key(out, k);
    }
    if let Some(m) = q.queue_mode {
        out.push_str(" queue_mode=");
        out.push(m.byte() as char);
    }
    if let Some(l) = &q.link {
        out.push_str(" link_id=");
        id(out, "link id", &l.link_id)?;
        out.push_str(" queue_data=");
        link_data(out, &l.data)?;
    }
    if let Some(n) = &q.notifier {
        out.push_str(" notifier=");
        ntf_creds(out, n)?;
    }
    if let Some(t) = q.updated_at {
        let _ = write!(out, " updated_at={t}");
    }
    if q.status != EntityStatus::Active {
        out.push_str(" status=");
        out.push_str(&q.status.encode());
    }
    if let Some(s) = &q.rcv_service_id {
        out.push_str(" rsrv=");
        id(out, "service id", s)?;
    }
    Ok(())
}

impl StoreLogRecord {
    /// The tag word of the record.
    pub fn tag(&self) -> &'static str {
        match self {
            Self::CreateQueue { .. } => "CREATE",
            Self::CreateLink { .. } => "LINK",
            Self::DeleteLink { .. } => "LDELETE",
            Self::SecureQueue { .. } => "SECURE",
            Self::UpdateKeys { .. } => "KEYS",
            Self::AddNotifier { .. } => "NOTIFIER",
            Self::SuspendQueue { .. } => "SUSPEND",
            Self::BlockQueue { .. } => "BLOCK",
            Self::UnblockQueue { .. } => "UNBLOCK",
            Self::DeleteQueue { .. } => "DELETE",
            Self::DeleteNotifier { .. } => "NDELETE",
            Self::UpdateTime { .. } => "TIME",
            Self::NewService(_) => "NEW_SERVICE",
            Self::QueueService { .. } => "QUEUE_SERVICE",
        }
    }

    /// The line, without its newline. Refuses only what could not be
    /// written as a field at all (empty ids, data or key lists).
    pub fn encode(&self) -> Result<String> {
        let mut s = String::from(self.tag());
        s.push(' ');
        match self {
            Self::CreateQueue { rid, queue } => {
                s.push_str("rid=");
                id(&mut s, "recipient id", rid)?;
                s.push(' ');
                queue_rec(&mut s, queue)?;
            }
            Self::CreateLink { rid, link } => {
                id(&mut s, "recipient id", rid)?;
                s.push(' ');
                id(&mut s, "link id", &link.link_id)?;
                s.push(' ');
                link_data(&mut s, &link.data)?;
            }
            Self::SecureQueue { rid, sender_key } => {
                id(&mut s, "recipient id", rid)?;
                s.push(' ');
                key(&mut s, sender_key);
            }
            Self::UpdateKeys { rid, keys: ks } => {
                id(&mut s, "recipient id", rid)?;
                s.push(' ');
                keys(&mut s, "recipient keys", ks)?;
            }
            Self::AddNotifier { rid, creds } => {
                id(&mut s, "recipient id", rid)?;
                s.push(' ');
                ntf_creds(&mut s, creds)?;
            }
            Self::BlockQueue { rid, info } => {
                id(&mut s, "recipient id", rid)?;
                s.push(' ');
                s.push_str(&info.encode());
            }
            Self::UpdateTime { rid, date } => {
                id(&mut s, "recipient id", rid)?;
                let _ = write!(s, " {date}");
            }
            Self::DeleteLink { rid }
            | Self::SuspendQueue { rid }
            | Self::UnblockQueue { rid }
            | Self::DeleteQueue { rid }
            | Self::DeleteNotifier { rid } => id(&mut s, "recipient id", rid)?,
            Self::NewService(r) => {
                s.push_str("service_id=");
                id(&mut s, "service id", &r.service_id)?;
                s.push_str(" role=");
                s.push(r.role.byte() as char);
                s.push_str(" cert=");
                for (i, c) in r.cert_chain.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    id(&mut s, "certificate", c)?;
                }
                s.push_str(" cert_hash=");
                id(&mut s, "certificate hash", &r.cert_hash)?;
                let _ = write!(s, " created_at={}", r.created_at);
            }
            Self::QueueService {
                rid,
                party,
                service_id,
            } => {
                id(&mut s, "recipient id", rid)?;
                s.push(' ');
                s.push(party.byte() as char);
                s.push(' ');
                if let Some(sid) = service_id {
                    id(&mut s, "service id", sid)?;
                }
            }
        }
        Ok(s)
    }

    /// The line with its `\n`, as appended to the file.
    pub fn encode_line(&self) -> Result<Vec<u8>> {
        self.encode().map(terminated)
    }

    /// Parses one line (without its newline); the whole line must be used.
    pub fn parse(line: &[u8]) -> Result<Self> {
        let mut p = Parser::new(line);
        let r = record(&mut p)?;
        p.end()?;
        Ok(r)
    }
}

// ------------------------------------------------------------------ parsing

/// A cursor over one line. Optional parts are tried on a copy and dropped on
/// failure, which is how the reference's `optional`/`<|>` behave.
#[derive(Clone, Copy)]
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

fn is_space(c: u8) -> bool {
    c == b' ' || (b'\t'..=b'\r').contains(&c)
}

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

impl<'a> Parser<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, i: 0 }
    }
    fn rest(&self) -> &'a [u8] {
        self.b.get(self.i..).unwrap_or_default()
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn end(&self) -> Result<()> {
        if self.i >= self.b.len() {
            Ok(())
        } else {
            Err(StoreLogError::Trailing(self.i))
        }
    }
    /// Consumes `s` if the input continues with it.
    fn lit(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s.as_bytes()) {
            self.i += s.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &'static str) -> Result<()> {
        if self.lit(s) {
            Ok(())
        } else {
            Err(StoreLogError::Expected(s))
        }
    }
    /// One separator of a tuple (`strP_`): a space or any of `\t`..`\r`,
    /// as attoparsec's `space` accepts.
    fn sp(&mut self) -> Result<()> {
        match self.peek() {
            Some(c) if is_space(c) => {
                self.i += 1;
                Ok(())
            }
            _ => Err(StoreLogError::Expected(" ")),
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().position(|&c| !f(c)).unwrap_or(rest.len());
        self.i += n;
        &rest[..n]
    }
    fn byte(&mut self, field: &'static str) -> Result<u8> {
        let c = self.peek().ok_or(StoreLogError::Expected(field))?;
        self.i += 1;
        Ok(c)
    }
    /// A non-empty base64url field (`base64urlP`): letters, digits, `-`,
    /// `_`, then any `=`.
    fn b64(&mut self, field: &'static str) -> Result<Vec<u8>> {
        let start = self.i;
        if self.take_while(is_b64).is_empty() {
            return Err(StoreLogError::Base64(field));
        }
        self.take_while(|c| c == b'=');
        let text = &self.b[start..self.i];
        // only ASCII was taken
        let text = core::str::from_utf8(text).map_err(|_| StoreLogError::Base64(field))?;
        b64_decode(text).map_err(|_| StoreLogError::Base64(field))
    }
    fn dh_secret(&mut self, field: &'static str) -> Result<[u8; 32]> {
        self.b64(field)?
            .try_into()
            .map_err(|_| StoreLogError::DhSecret(field))
    }
    fn auth_key(&mut self, field: &'static str) -> Result<PublicKey> {
        auth_key_of(&self.b64(field)?, field)
    }
    /// A comma-separated non-empty list; each item runs to `,`, space or
    /// end and must be one whole base64url value (`listItem`).
    fn list(&mut self, field: &'static str) -> Result<Vec<Vec<u8>>> {
        let mut items = Vec::new();
        loop {
            let item = self.take_while(|c| c != b',' && c != b' ' && c != b'\n');
            let mut ip = Parser::new(item);
            let v = ip.b64(field)?;
            ip.end().map_err(|_| StoreLogError::Base64(field))?;
            items.push(v);
            if !self.lit(",") {
                return Ok(items);
            }
        }
    }
    fn key_list(&mut self, field: &'static str) -> Result<Vec<PublicKey>> {
        self.list(field)?
            .iter()
            .map(|d| auth_key_of(d, field))
            .collect()
    }
    /// `A.signed A.decimal` at `Int64`, wrapping like the reference.
    fn signed(&mut self, field: &'static str) -> Result<i64> {
        let neg = if self.lit("-") {
            true
        } else {
            self.lit("+");
            false
        };
        let n = self.unsigned(field)?;
        Ok(if neg { n.wrapping_neg() } else { n })
    }
    /// `A.decimal` at `Int`/`Int64`, wrapping like the reference.
    fn unsigned(&mut self, field: &'static str) -> Result<i64> {
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            return Err(StoreLogError::Number(field));
        }
        Ok(digits.iter().fold(0i64, |a, &d| {
            a.wrapping_mul(10).wrapping_add(i64::from(d - b'0'))
        }))
    }
    /// `T` or `F` (`smpP` of `Bool`).
    fn bool(&mut self, field: &'static str) -> Result<bool> {
        match self.byte(field)? {
            b'T' => Ok(true),
            b'F' => Ok(false),
            _ => Err(StoreLogError::Invalid(field)),
        }
    }
    /// Runs `f` on a copy; keeps its progress only if it succeeds.
    fn optional<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Option<T> {
        let mut q = *self;
        match f(&mut q) {
            Ok(v) => {
                *self = q;
                Some(v)
            }
            Err(_) => None,
        }
    }
    /// `strP` of `BlockingInfo`: the reason, then a notice read to the end
    /// of the input if it is valid JSON (otherwise no notice, and the
    /// `,notice=…` stays unread).
    fn blocking_info(&mut self) -> Result<BlockingInfo> {
        self.expect("reason=")?;
        let reason = if self.lit("spam") {
            BlockingReason::Spam
        } else if self.lit("content") {
            BlockingReason::Content
        } else {
            return Err(StoreLogError::Invalid("blocking reason"));
        };
        let rest = self.rest();
        if rest.starts_with(b",notice=") {
            let mut whole = Vec::with_capacity(7 + reason.wire().len() + rest.len());
            whole.extend_from_slice(b"reason=");
            whole.extend_from_slice(reason.wire().as_bytes());
            whole.extend_from_slice(rest);
            if let Some(info) = BlockingInfo::decode(&whole) {
                self.i = self.b.len();
                return Ok(info);
            }
        }
        Ok(BlockingInfo {
            reason,
            notice: None,
        })
    }
    fn status(&mut self) -> Result<EntityStatus> {
        if self.lit("active") {
            Ok(EntityStatus::Active)
        } else if self.lit("blocked,") {
            Ok(EntityStatus::Blocked(self.blocking_info()?))
        } else if self.lit("off") {
            Ok(EntityStatus::Off)
        } else {
            Err(StoreLogError::Invalid("status"))
        }
    }
    fn link_data(&mut self) -> Result<QueueLinkData> {
        let fixed = self.b64("fixed link data")?;
        self.sp()?;
        let user = self.b64("user link data")?;
        Ok(QueueLinkData { fixed, user })
    }
    fn ntf_creds(&mut self) -> Result<NtfCreds> {
        let notifier_id = self.b64("notifier id")?;
        self.sp()?;
        let notifier_key = self.auth_key("notifier key")?;
        self.sp()?;
        let rcv_ntf_dh_secret = self.dh_secret("notifier DH secret")?;
        let ntf_service_id = self.optional(|p| {
            p.expect(" nsrv=")?;
            p.b64("notifier service id")
        });
        Ok(NtfCreds {
            notifier_id,
            notifier_key,
            rcv_ntf_dh_secret,
            ntf_service_id,
        })
    }
    fn queue_rec(&mut self) -> Result<QueueRec> {
        self.expect("rk=")?;
        let recipient_keys = self.key_list("recipient keys")?;
        self.sp()?;
        self.expect("rdh=")?;
        let rcv_dh_secret = self.dh_secret("recipient DH secret")?;
        self.sp()?;
        self.expect("sid=")?;
        let sender_id = self.b64("sender id")?;
        self.sp()?;
        self.expect("sk=")?;
        let sender_key = self.optional(|p| p.auth_key("sender key"));
        // legacy ` sndSecure=T|F`: T was a messaging queue, F a contact queue
        let queue_mode = self
            .optional(|p| {
                p.expect(" sndSecure=")?;
                Ok(if p.bool("sndSecure")? {
                    QueueMode::Messaging
                } else {
                    QueueMode::Contact
                })
            })
            .or_else(|| {
                self.optional(|p| {
                    p.expect(" queue_mode=")?;
                    QueueMode::from_byte(p.byte("queue mode")?)
                        .ok_or(StoreLogError::Invalid("queue mode"))
                })
            });
        let link = self.optional(|p| {
            p.expect(" link_id=")?;
            let link_id = p.b64("link id")?;
            p.expect(" queue_data=")?;
            Ok(QueueLink {
                link_id,
                data: p.link_data()?,
            })
        });
        let notifier = self.optional(|p| {
            p.expect(" notifier=")?;
            p.ntf_creds()
        });
        let updated_at = self.optional(|p| {
            p.expect(" updated_at=")?;
            p.signed("updated_at")
        });
        let status = self
            .optional(|p| {
                p.expect(" status=")?;
                p.status()
            })
            .unwrap_or(EntityStatus::Active);
        let rcv_service_id = self.optional(|p| {
            p.expect(" rsrv=")?;
            p.b64("recipient service id")
        });
        Ok(QueueRec {
            recipient_keys,
            rcv_dh_secret,
            sender_id,
            sender_key,
            queue_mode,
            link,
            notifier,
            updated_at,
            status,
            rcv_service_id,
        })
    }
    fn service_rec(&mut self) -> Result<ServiceRec> {
        self.expect("service_id=")?;
        let service_id = self.b64("service id")?;
        self.expect(" role=")?;
        let role =
            ServiceRole::from_byte(self.byte("role")?).ok_or(StoreLogError::Invalid("role"))?;
        self.expect(" cert=")?;
        // `strListP` allows no items at all (and an empty chain decodes)
        let cert_chain = self.optional(|p| p.list("certificate")).unwrap_or_default();
        self.expect(" cert_hash=")?;
        let cert_hash = self.b64("certificate hash")?;
        self.expect(" created_at=")?;
        let created_at = self.signed("created_at")?;
        Ok(ServiceRec {
            service_id,
            role,
            cert_chain,
            cert_hash,
            created_at,
        })
    }
    fn message(&mut self) -> Result<StoredMessage> {
        let msg_id = self.b64("message id")?;
        self.sp()?;
        let msg_ts = self.signed("message timestamp")?;
        self.sp()?;
        if self.lit("quota") {
            return Ok(StoredMessage::Quota { msg_id, msg_ts });
        }
        let notification = self
            .optional(|p| {
                p.expect("flags=")?;
                let n = p.bool("flags")?;
                // later flags are skipped, as the reference does
                p.take_while(|c| c != b' ');
                p.sp()?;
                Ok(n)
            })
            .unwrap_or(false);
        let body = self.b64("message body")?;
        Ok(StoredMessage::Message {
            msg_id,
            msg_ts,
            notification,
            body,
        })
    }
    fn journal_state(&mut self) -> Result<JournalState> {
        let journal_id = self.take_while(|c| c != b',').to_vec();
        let mut n = [0i64; 4];
        for v in &mut n {
            self.expect(",")?;
            *v = self.unsigned("journal position")?;
        }
        Ok(JournalState {
            journal_id,
            msg_pos: n[0],
            msg_count: n[1],
            byte_pos: n[2],
            byte_count: n[3],
        })
    }
}

fn auth_key_of(der: &[u8], field: &'static str) -> Result<PublicKey> {
    let k = PublicKey::from_der(der).map_err(|_| StoreLogError::Key(field))?;
    if k.algorithm() == KeyAlgorithm::X448 {
        return Err(StoreLogError::Key(field));
    }
    Ok(k)
}

fn record(p: &mut Parser<'_>) -> Result<StoreLogRecord> {
    let tag = p.take_while(|c| !is_space(c));
    p.sp()?;
    Ok(match tag {
        b"CREATE" => {
            p.expect("rid=")?;
            let rid = p.b64("recipient id")?;
            p.sp()?;
            StoreLogRecord::CreateQueue {
                rid,
                queue: Box::new(p.queue_rec()?),
            }
        }
        b"LINK" => {
            let rid = p.b64("recipient id")?;
            p.sp()?;
            let link_id = p.b64("link id")?;
            p.sp()?;
            StoreLogRecord::CreateLink {
                rid,
                link: QueueLink {
                    link_id,
                    data: p.link_data()?,
                },
            }
        }
        b"SECURE" => {
            let rid = p.b64("recipient id")?;
            p.sp()?;
            StoreLogRecord::SecureQueue {
                rid,
                sender_key: p.auth_key("sender key")?,
            }
        }
        b"KEYS" => {
            let rid = p.b64("recipient id")?;
            p.sp()?;
            StoreLogRecord::UpdateKeys {
                rid,
                keys: p.key_list("recipient keys")?,
            }
        }
        b"NOTIFIER" => {
            let rid = p.b64("recipient id")?;
            p.sp()?;
            StoreLogRecord::AddNotifier {
                rid,
                creds: p.ntf_creds()?,
            }
        }
        b"BLOCK" => {
            let rid = p.b64("recipient id")?;
            p.sp()?;
            StoreLogRecord::BlockQueue {
                rid,
                info: p.blocking_info()?,
            }
        }
        b"TIME" => {
            let rid = p.b64("recipient id")?;
            p.sp()?;
            StoreLogRecord::UpdateTime {
                rid,
                date: p.signed("time")?,
            }
        }
        b"LDELETE" => StoreLogRecord::DeleteLink {
            rid: p.b64("recipient id")?,
        },
        b"SUSPEND" => StoreLogRecord::SuspendQueue {
            rid: p.b64("recipient id")?,
        },
        b"UNBLOCK" => StoreLogRecord::UnblockQueue {
            rid: p.b64("recipient id")?,
        },
        b"DELETE" => StoreLogRecord::DeleteQueue {
            rid: p.b64("recipient id")?,
        },
        b"NDELETE" => StoreLogRecord::DeleteNotifier {
            rid: p.b64("recipient id")?,
        },
        b"NEW_SERVICE" => StoreLogRecord::NewService(p.service_rec()?),
        b"QUEUE_SERVICE" => {
            let rid = p.b64("recipient id")?;
            p.sp()?;
            let party =
                ServiceParty::from_byte(p.byte("party")?).ok_or(StoreLogError::Invalid("party"))?;
            p.sp()?;
            let service_id = p.optional(|p| p.b64("service id"));
            StoreLogRecord::QueueService {
                rid,
                party,
                service_id,
            }
        }
        _ => return Err(StoreLogError::UnknownTag),
    })
}

// ------------------------------------------------------------ message stores

/// A stored message (`Message` in its string form): a message, or the
/// marker left when a queue reached its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredMessage {
    /// `<msgId> <ts> flags=<T|F> <body>`
    Message {
        msg_id: Vec<u8>,
        /// Unix seconds.
        msg_ts: i64,
        notification: bool,
        /// The encrypted body as the server holds it.
        body: Vec<u8>,
    },
    /// `<msgId> <ts> quota`: id and time of the rejected message.
    Quota { msg_id: Vec<u8>, msg_ts: i64 },
}

impl StoredMessage {
    /// The line without its newline (a journal line).
    pub fn encode(&self) -> Result<String> {
        let mut s = String::new();
        match self {
            Self::Message {
                msg_id,
                msg_ts,
                notification,
                body,
            } => {
                id(&mut s, "message id", msg_id)?;
                let _ = write!(
                    s,
                    " {msg_ts} flags={} ",
                    if *notification { 'T' } else { 'F' }
                );
                id(&mut s, "message body", body)?;
            }
            Self::Quota { msg_id, msg_ts } => {
                id(&mut s, "message id", msg_id)?;
                let _ = write!(s, " {msg_ts} quota");
            }
        }
        Ok(s)
    }
    /// The line with its `\n`, as appended to a journal file; its length is
    /// what the journal byte positions count.
    pub fn encode_line(&self) -> Result<Vec<u8>> {
        self.encode().map(terminated)
    }
    /// Parses a journal line (without its newline). A missing `flags=` is
    /// read as no notification, as the reference does for old lines.
    pub fn parse(line: &[u8]) -> Result<Self> {
        let mut p = Parser::new(line);
        let m = p.message()?;
        p.end()?;
        Ok(m)
    }
}

/// One line of the memory store export `smp-server-messages.log`
/// (`MsgLogRecord` `MLRv3`): `v3 <rid> <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgLogRecord {
    pub rid: Vec<u8>,
    pub message: StoredMessage,
}

impl MsgLogRecord {
    pub fn encode(&self) -> Result<String> {
        let mut s = String::from("v3 ");
        id(&mut s, "recipient id", &self.rid)?;
        s.push(' ');
        s.push_str(&self.message.encode()?);
        Ok(s)
    }
    pub fn encode_line(&self) -> Result<Vec<u8>> {
        self.encode().map(terminated)
    }
    pub fn parse(line: &[u8]) -> Result<Self> {
        let mut p = Parser::new(line);
        p.expect("v3 ")?;
        let rid = p.b64("recipient id")?;
        p.sp()?;
        let message = p.message()?;
        p.end()?;
        Ok(Self { rid, message })
    }
}

/// Directory depth of the journal store (`journalMsgStoreDepth`).
pub const JOURNAL_STORE_DEPTH: usize = 5;
/// Messages per journal file before a new one is started (`maxJournalMsgCount`).
pub const MAX_JOURNAL_MSG_COUNT: usize = 256;

/// A queue's directory below the journal store path: base64url of the
/// recipient id cut into 2-character segments, the last segment holding the
/// rest (`msgQueueDirectory`; `parts` is [`JOURNAL_STORE_DEPTH`]).
pub fn queue_directory(rid: &[u8], parts: usize) -> String {
    let enc = b64_encode(rid);
    let mut s = enc.as_str();
    let mut n = parts;
    let mut out = String::new();
    while !s.is_empty() {
        if !out.is_empty() {
            out.push('/');
        }
        if n == 1 {
            out.push_str(s);
            break;
        }
        // base64url text is ASCII, so any byte index is a char boundary
        let (seg, tail) = s.split_at(s.len().min(2));
        out.push_str(seg);
        s = tail;
        n = n.wrapping_sub(1);
    }
    out
}

/// `queue_state.<rid>.log`, in the queue directory.
pub fn queue_state_file_name(rid: &[u8]) -> String {
    let mut s = String::from("queue_state.");
    s.push_str(&b64_encode(rid));
    s.push_str(".log");
    s
}

/// A journal id: base64url of 12 random bytes (`newJournalId`).
pub fn journal_id(random: &[u8; 12]) -> String {
    b64_encode(random)
}

/// `messages.<journalId>.log`, in the queue directory.
pub fn journal_file_name(journal_id: &str) -> String {
    let mut s = String::from("messages.");
    s.push_str(journal_id);
    s.push_str(".log");
    s
}

/// A position in a queue's journals (`JournalState`):
/// `<journalId>,<msgPos>,<msgCount>,<bytePos>,<byteCount>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalState {
    /// The text after `messages.` in the journal's file name; any bytes but
    /// `,` are accepted when parsing, as in the reference.
    pub journal_id: Vec<u8>,
    pub msg_pos: i64,
    pub msg_count: i64,
    pub byte_pos: i64,
    pub byte_count: i64,
}

impl JournalState {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.journal_id);
        let mut s = String::new();
        let _ = write!(
            s,
            ",{},{},{},{}",
            self.msg_pos, self.msg_count, self.byte_pos, self.byte_count
        );
        out.extend_from_slice(s.as_bytes());
    }
}

/// One line of `queue_state.<rid>.log` (`MsgQueueState`); the last line is
/// the queue's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgQueueState {
    pub write: JournalState,
    pub read: JournalState,
    pub can_write: bool,
    pub size: i64,
}

impl MsgQueueState {
    /// `write=<state> read=<state> canWrite=<T|F> size=<n>`, no newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = b"write=".to_vec();
        self.write.write(&mut v);
        v.extend_from_slice(b" read=");
        self.read.write(&mut v);
        v.extend_from_slice(if self.can_write {
            b" canWrite=T size="
        } else {
            b" canWrite=F size="
        });
        let mut s = String::new();
        let _ = write!(s, "{}", self.size);
        v.extend_from_slice(s.as_bytes());
        v
    }
    pub fn encode_line(&self) -> Vec<u8> {
        let mut v = self.encode();
        v.push(b'\n');
        v
    }
    pub fn parse(line: &[u8]) -> Result<Self> {
        let mut p = Parser::new(line);
        p.expect("write=")?;
        let write = p.journal_state()?;
        p.expect(" read=")?;
        let read = p.journal_state()?;
        p.expect(" canWrite=")?;
        let can_write = p.bool("canWrite")?;
        p.expect(" size=")?;
        let size = p.signed("size")?;
        p.end()?;
        Ok(Self {
            write,
            read,
            can_write,
            size,
        })
    }
}
