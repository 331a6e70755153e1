//! One SimpleX connection as a sans-IO state machine, in the manner of
//! quinn-proto: the runtime feeds it received message bodies and user
//! commands and carries out the [`Output`]s it returns (SMP commands to
//! run, in order, and events for the application). It never touches a
//! socket, a clock or the OS random generator, so both roles of both
//! handshakes can be run against each other in memory.
//!
//! Flows (agent.md §3): the invitation creator [`Connection::create_invitation`]
//! and the joiner [`Connection::join`], in the fast flow (the sender secures
//! each queue with `SKEY`, no `HELLO`) or the legacy flow (the recipient
//! secures with `KEY` after a `'K'` confirmation, then `HELLO` both ways),
//! chosen per queue by its mode; the contact-address host [`ContactAddress`]
//! and the requester [`Connection::request_contact`].
//!
//! State changes happen only on success, except where the reference keeps a
//! ratchet change after a failed decryption: those come back as
//! [`AgentEvent::MessageError`] with the new state already applied. After
//! any `Ok` the caller must persist [`Connection::encode`] before it
//! acknowledges the SMP message or runs the outputs.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::str::FromStr;

use super::envelope::{
    AgentMsgEnvelope, ClientMsgEnvelope, PrivHeader, PubHeader, agent_msg_padded_length,
    conn_info_padded_length, e2e_secret, open, seal, seal_once,
};
use super::link::{ConnReqData, ConnectionRequest};
use super::message::{
    AMessage, AMessageReceipt, AgentMessage, MsgIntegrity, RcvMsgChain, SndMsgChain,
};
use super::queue_info::SmpQueueInfo;
use super::ratchet::{self, Ratchet, RatchetError, SkippedKeys, read_kem_pair, write_kem_pair};
use super::version::{AGENT_VERSIONS, E2E_VERSIONS, pq_supported};
use super::x3dh::{
    E2eKeys, E2eParamsUri, KemParams, PrivKem, RatchetEntropy, RngEntropy, UseKem,
    generate_e2e_params, x3dh_creator, x3dh_joiner,
};
use crate::address::ServerAddress;
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use crate::crypto::secretbox::CbNonce;
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::smp::command::QueueMode;
use crate::smp::queue_uri::{QueueUri, SUPPORTED_CLIENT_RANGE, sender_can_secure};
use crate::xftp::handshake::VersionRange;

/// Fresh keys and nonces beyond the ratchet's.
pub trait AgentEntropy: RatchetEntropy {
    fn key(&mut self, alg: KeyAlgorithm) -> PrivateKey;
    fn nonce(&mut self) -> CbNonce;
}

impl<R: rand_core::CryptoRng> AgentEntropy for RngEntropy<R> {
    fn key(&mut self, alg: KeyAlgorithm) -> PrivateKey {
        PrivateKey::generate_with(alg, &mut self.0)
    }
    fn nonce(&mut self) -> CbNonce {
        let mut n = [0u8; 24];
        self.0.fill_bytes(&mut n);
        CbNonce(n)
    }
}

/// Why a connection refused an input; its state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No version in common (`A_VERSION`).
    #[error("no common protocol version with the peer")]
    Version,
    /// Not allowed in this state (`A_PROHIBITED`).
    #[error("prohibited: {0}")]
    Prohibited(&'static str),
    /// A message that does not parse (`A_MESSAGE`).
    #[error("malformed message: {0}")]
    Message(String),
    /// The per-queue layer did not open (`A_CRYPTO`).
    #[error("message does not decrypt")]
    Crypto,
    /// The ratchet refused the message without changing.
    #[error("ratchet: {0}")]
    Ratchet(RatchetError),
    /// A link without what this operation needs.
    #[error("link: {0}")]
    Link(&'static str),
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl From<EncodeError> for AgentError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e.to_string())
    }
}

impl From<RatchetError> for AgentError {
    fn from(e: RatchetError) -> Self {
        Self::Ratchet(e)
    }
}

/// A queue the runtime created for this connection (from `IDS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAddr {
    pub server: ServerAddress,
    pub rcv_id: Vec<u8>,
    pub snd_id: Vec<u8>,
    /// As the router reported it; `None` below SMP v9 (legacy flow).
    pub mode: Option<QueueMode>,
}

/// Something the runtime must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `SKEY` on the peer's queue, signed by `sender_key`.
    SecurePeerQueue {
        server: ServerAddress,
        snd_id: Vec<u8>,
        sender_key: PrivateKey,
    },
    /// `KEY` on our own queue with the sender's key (legacy flow).
    SecureOwnQueue {
        rcv_id: Vec<u8>,
        sender_key: PublicKey,
    },
    /// `SEND` to a queue; signed when `sender_key` is given.
    Send {
        server: ServerAddress,
        snd_id: Vec<u8>,
        sender_key: Option<PrivateKey>,
        notify: bool,
        body: Vec<u8>,
    },
    Event(AgentEvent),
}

/// What the application learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// (creator) The joiner's confirmation: answer with
    /// [`Connection::allow`] and your own conn info (`CONF`).
    Confirmation { conn_info: Vec<u8> },
    /// (joiner) The creator's conn info (`INFO`).
    Info { conn_info: Vec<u8> },
    /// Both queues work (`CON`).
    Connected,
    /// A message from the peer (`MSG`): the chat body, with the sender's
    /// id and the result of the hash-chain check.
    Message {
        msg_id: i64,
        integrity: MsgIntegrity,
        body: Vec<u8>,
        /// SHA-256 of the agent plaintext, for a receipt.
        hash: Vec<u8>,
    },
    /// The peer's receipts for our messages (`RCVD`).
    Receipts(Vec<AMessageReceipt>),
    /// A message the ratchet had already seen: acknowledge and drop.
    Duplicate,
    /// A repeated confirmation (its ACK was lost): acknowledge and drop.
    RepeatedConfirmation,
    /// A valid message this implementation does not act on (queue
    /// rotation, ratchet re-sync); the connection goes on.
    Unsupported(&'static str),
    /// A message the ratchet could not decrypt; the ratchet's change was
    /// kept, as the reference keeps it, and later messages still decrypt.
    MessageError(RatchetError),
}

/// A received contact request (`REQ`): accept it by joining `invitation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    pub invitation: ConnectionRequest,
    pub conn_info: Vec<u8>,
}

/// Which side of the handshake this connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Made the invitation (the reference's "receiving" ratchet).
    Creator,
    /// Joined it.
    Joiner,
}

/// Where the handshake stands; [`Connection::status`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// (creator) Waiting for the joiner's confirmation.
    AwaitConfirmation(E2eKeys),
    /// (creator) Confirmation processed; waiting for the application.
    AwaitAllow {
        legacy_key: Option<PublicKey>,
    },
    /// (joiner) Confirmation sent; waiting for the creator's.
    AwaitReply,
    /// (legacy) Waiting for the peer's HELLO.
    AwaitHello,
    Connected,
}

/// Our receive queue of this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnQueue {
    addr: QueueAddr,
    /// Our per-queue e2e key (`dh=` in the link / queue info).
    e2e_key: PrivateKey,
    /// The sender's per-queue key, from its first message.
    peer_e2e: Option<PublicKey>,
}

/// The peer's queue we send to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerQueue {
    server: ServerAddress,
    snd_id: Vec<u8>,
    mode: Option<QueueMode>,
    /// The recipient's per-queue e2e key.
    peer_e2e: PublicKey,
    /// Our per-queue key towards it (sent in the first message's header).
    own_e2e: PrivateKey,
    /// Our Ed25519 sender key.
    sender_key: PrivateKey,
}

impl PeerQueue {
    fn new(
        server: ServerAddress,
        snd_id: Vec<u8>,
        mode: Option<QueueMode>,
        peer_e2e: PublicKey,
        ent: &mut impl AgentEntropy,
    ) -> Self {
        Self {
            server,
            snd_id,
            mode,
            peer_e2e,
            own_e2e: ent.key(KeyAlgorithm::X25519),
            sender_key: ent.key(KeyAlgorithm::Ed25519),
        }
    }
    fn fast(&self) -> bool {
        sender_can_secure(self.mode)
    }
}

/// A connection's whole state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    role: Role,
    phase: Phase,
    agent_version: u16,
    client_version: u16,
    /// Our PQ setting, and whether the versions allow it.
    pq: bool,
    own: OwnQueue,
    peer: Option<PeerQueue>,
    ratchet: Option<Ratchet>,
    skipped: SkippedKeys,
    snd: SndMsgChain,
    rcv: RcvMsgChain,
    /// SHA-256 of the last received encrypted agent messages: a copy that
    /// arrives again after the ratchet moved on (a sender that crashed after
    /// the router took it resends it) fails to decrypt and is recognised
    /// here as a duplicate (`checkDuplicateHash`).
    seen: alloc::collections::VecDeque<[u8; 32]>,
}

/// How many received message hashes a connection keeps.
const SEEN_HASHES: usize = 256;

/// The link's queue: its mode as the router reported it (none below SMP v9,
/// which makes the joiner use the legacy flow).
fn queue_uri(addr: &QueueAddr, dh_key: PublicKey, mode: Option<QueueMode>) -> QueueUri {
    QueueUri {
        client_versions: SUPPORTED_CLIENT_RANGE,
        server: addr.server.clone(),
        sender_id: addr.snd_id.clone(),
        dh_key,
        queue_mode: mode,
    }
}

fn agreed(ours: VersionRange, theirs: VersionRange) -> Result<u16, AgentError> {
    ours.compatible(&theirs)
        .map(|r| r.max())
        .ok_or(AgentError::Version)
}

fn decode_envelope(body: &[u8]) -> Result<ClientMsgEnvelope, AgentError> {
    ClientMsgEnvelope::decode(body).map_err(|e| AgentError::Message(e.to_string()))
}

fn open_with(
    secret: &[u8; 32],
    env: &ClientMsgEnvelope,
) -> Result<(PrivHeader, AgentMsgEnvelope), AgentError> {
    use super::envelope::EnvelopeError;
    use crate::smp::message::MessageError;
    open(secret, env).map_err(|e| match e {
        EnvelopeError::Crypto(_) | EnvelopeError::Message(MessageError::Crypto(_)) => {
            AgentError::Crypto
        }
        e => AgentError::Message(e.to_string()),
    })
}

fn secret(own: &PrivateKey, peer: &PublicKey) -> Result<[u8; 32], AgentError> {
    e2e_secret(own, peer).map_err(|_| AgentError::Crypto)
}

impl Connection {
    /// A new 1-time invitation on `own`, a messaging queue the runtime just
    /// created. Returns the link to give the peer. As in the apps' full
    /// links, no sntrup761 key is in it (it would make the link and its QR
    /// code 1.5 KiB longer): with `pq` the joiner proposes PQ in its reply
    /// and the first ratchet steps take it up.
    pub fn create_invitation(
        own: QueueAddr,
        pq: bool,
        ent: &mut impl AgentEntropy,
    ) -> Result<(Self, ConnectionRequest), AgentError> {
        Self::invitation(own, pq, false, ent)
    }

    /// A new 1-time invitation for a short link. The link data is stored
    /// with the queue when it is created, so `own` has no receive ID yet
    /// (give it with [`Self::bind_rcv_id`]) and its sender ID is the one the
    /// runtime will ask for. With `pq` the sntrup761 key goes into the link,
    /// as the apps do for short links: its size does not matter there.
    pub fn create_short_invitation(
        own: QueueAddr,
        pq: bool,
        ent: &mut impl AgentEntropy,
    ) -> Result<(Self, ConnectionRequest), AgentError> {
        Self::invitation(own, pq, true, ent)
    }

    /// Sets our queue's receive ID once the router created the queue a
    /// short link's data was sealed for.
    pub fn bind_rcv_id(&mut self, rcv_id: Vec<u8>) {
        self.own.addr.rcv_id = rcv_id;
    }

    /// `link_kem`: put a KEM key into the link (`IKUsePQ`, the reference's
    /// choice for the invitation inside a contact request).
    fn invitation(
        own: QueueAddr,
        pq: bool,
        link_kem: bool,
        ent: &mut impl AgentEntropy,
    ) -> Result<(Self, ConnectionRequest), AgentError> {
        let e2e_key = ent.key(KeyAlgorithm::X25519);
        let pq = pq && crate::crypto::kem::available();
        let (keys, params) = generate_e2e_params(
            E2E_VERSIONS.max(),
            (pq && link_kem).then_some(UseKem::Propose),
            ent,
        )
        .map_err(|_| AgentError::Prohibited("PQ keys unavailable"))?;
        let link = ConnectionRequest::Invitation {
            data: ConnReqData {
                agent_versions: AGENT_VERSIONS,
                queues: vec![queue_uri(&own, e2e_key.public_key(), own.mode)],
                client_data: None,
            },
            e2e: E2eParamsUri {
                versions: E2E_VERSIONS,
                key1: params.key1,
                key2: params.key2,
                kem: params.kem,
            },
        };
        let conn = Self {
            role: Role::Creator,
            phase: Phase::AwaitConfirmation(keys),
            agent_version: AGENT_VERSIONS.max(),
            client_version: SUPPORTED_CLIENT_RANGE.max(),
            pq,
            own: OwnQueue {
                addr: own,
                e2e_key,
                peer_e2e: None,
            },
            peer: None,
            ratchet: None,
            skipped: SkippedKeys::new(),
            snd: SndMsgChain::new(),
            rcv: RcvMsgChain::new(),
            seen: Default::default(),
        };
        Ok((conn, link))
    }

    /// Joins an invitation: `own` is the reply queue the runtime created,
    /// `conn_info` the application's profile message. The outputs secure the
    /// creator's queue (fast flow) and send the confirmation.
    pub fn join(
        link: &ConnectionRequest,
        own: QueueAddr,
        conn_info: &[u8],
        pq: bool,
        ent: &mut impl AgentEntropy,
    ) -> Result<(Self, Vec<Output>), AgentError> {
        Self::join_with(link, own, conn_info, pq, None, ent)
    }

    /// Joins an invitation whose queue this side already secured with
    /// `sender_key` (the `LKEY` of a short link): no `SKEY` is sent, and the
    /// confirmation is signed with that key.
    pub fn join_secured(
        link: &ConnectionRequest,
        own: QueueAddr,
        conn_info: &[u8],
        pq: bool,
        sender_key: PrivateKey,
        ent: &mut impl AgentEntropy,
    ) -> Result<(Self, Vec<Output>), AgentError> {
        if sender_key.algorithm() != KeyAlgorithm::Ed25519 {
            return Err(AgentError::Prohibited("sender key must be Ed25519"));
        }
        Self::join_with(link, own, conn_info, pq, Some(sender_key), ent)
    }

    fn join_with(
        link: &ConnectionRequest,
        own: QueueAddr,
        conn_info: &[u8],
        pq: bool,
        secured_with: Option<PrivateKey>,
        ent: &mut impl AgentEntropy,
    ) -> Result<(Self, Vec<Output>), AgentError> {
        let ConnectionRequest::Invitation { data, e2e } = link else {
            return Err(AgentError::Link(
                "a contact address is joined with request_contact",
            ));
        };
        let queue = data.queues.first().ok_or(AgentError::Link("no queue"))?;
        let agent_version = agreed(AGENT_VERSIONS, data.agent_versions)?;
        let client_version = agreed(SUPPORTED_CLIENT_RANGE, queue.client_versions)?;
        let e2e_version = agreed(E2E_VERSIONS, e2e.versions)?;
        let pq = pq && crate::crypto::kem::available() && pq_supported(agent_version, e2e_version);
        let use_kem = pq.then(|| match &e2e.kem {
            Some(KemParams::Proposed { public }) => UseKem::Accept(public.clone()),
            _ => UseKem::Propose,
        });
        let (keys, params) = generate_e2e_params(e2e_version, use_kem, ent)
            .map_err(|_| AgentError::Prohibited("PQ keys unavailable"))?;
        let link_params = super::x3dh::E2eParams {
            version: e2e_version,
            key1: e2e.key1.clone(),
            key2: e2e.key2.clone(),
            kem: e2e.kem.clone(),
        };
        let (init, kem) = x3dh_joiner(&keys, &link_params)
            .map_err(|_| AgentError::Prohibited("KEM parameters"))?;
        let ratchet_key = ent.x448_key();
        let mut rc = Ratchet::init_joiner(e2e_version, e2e.key2.clone(), ratchet_key, init, kem)?;
        let e2e_key = ent.key(KeyAlgorithm::X25519);
        let mut peer = PeerQueue::new(
            queue.server.clone(),
            queue.sender_id.clone(),
            queue.queue_mode,
            queue.dh_key.clone(),
            ent,
        );
        let presecured = secured_with.is_some();
        if let Some(k) = secured_with {
            peer.sender_key = k;
        }
        let reply = AgentMessage::ConnInfoReply {
            reply_queues: vec![SmpQueueInfo {
                client_version,
                server: own.server.clone(),
                sender_id: own.snd_id.clone(),
                dh_key: e2e_key.public_key(),
                queue_mode: own.mode,
            }],
            conn_info: conn_info.to_vec(),
        }
        .encode()?;
        let enc = rc.encrypt(&reply, conn_info_padded_length(agent_version, pq), None)?;
        let mut snd = SndMsgChain::new();
        snd.record(&reply);
        let envelope = AgentMsgEnvelope::Confirmation {
            agent_version,
            e2e_params: Some(params),
            enc_conn_info: enc,
        };
        let conn = Self {
            role: Role::Joiner,
            phase: Phase::AwaitReply,
            agent_version,
            client_version,
            pq,
            own: OwnQueue {
                addr: own,
                e2e_key,
                peer_e2e: None,
            },
            peer: Some(peer),
            ratchet: Some(rc),
            skipped: SkippedKeys::new(),
            snd,
            rcv: RcvMsgChain::new(),
            seen: Default::default(),
        };
        let out = conn.confirmation_outputs(&envelope, presecured, ent)?;
        Ok((conn, out))
    }

    /// Asks a contact address for a connection: a new invitation on `own`
    /// (a messaging queue the runtime created), sent to the address queue
    /// with `conn_info` (the chat's `x.contact`). The returned connection
    /// then waits for the host's confirmation like any invitation creator.
    pub fn request_contact(
        address: &ConnectionRequest,
        own: QueueAddr,
        conn_info: &[u8],
        pq: bool,
        ent: &mut impl AgentEntropy,
    ) -> Result<(Self, Vec<Output>), AgentError> {
        let ConnectionRequest::Contact(data) = address else {
            return Err(AgentError::Link("an invitation is joined with join"));
        };
        let queue = data.queues.first().ok_or(AgentError::Link("no queue"))?;
        let agent_version = agreed(AGENT_VERSIONS, data.agent_versions)?;
        let client_version = agreed(SUPPORTED_CLIENT_RANGE, queue.client_versions)?;
        let (conn, link) = Self::invitation(own, pq, true, ent)?;
        let text = link
            .to_link_string()
            .map_err(|e| AgentError::Encode(e.to_string()))?;
        let envelope = AgentMsgEnvelope::Invitation {
            agent_version,
            conn_req: text,
            conn_info: conn_info.to_vec(),
        };
        let one_off = ent.key(KeyAlgorithm::X25519);
        let sealed = seal_once(
            &one_off,
            &queue.dh_key,
            client_version,
            ent.nonce(),
            &envelope,
        )
        .map_err(|e| AgentError::Encode(e.to_string()))?;
        let out = vec![Output::Send {
            server: queue.server.clone(),
            snd_id: queue.sender_id.clone(),
            sender_key: None,
            notify: true,
            body: sealed.encode()?,
        }];
        Ok((conn, out))
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// A short word for the handshake state, for listings.
    pub fn status(&self) -> &'static str {
        match self.phase {
            Phase::AwaitConfirmation(_) => "invited",
            Phase::AwaitAllow { .. } => "confirmed",
            Phase::AwaitReply => "joined",
            Phase::AwaitHello => "securing",
            Phase::Connected => "connected",
        }
    }

    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// Our receive queue, to subscribe and to match incoming messages.
    pub fn own_queue(&self) -> &QueueAddr {
        &self.own.addr
    }

    /// The peer's queue, once known: its router and sender id.
    pub fn peer_queue(&self) -> Option<(&ServerAddress, &[u8])> {
        self.peer.as_ref().map(|p| (&p.server, &p.snd_id[..]))
    }

    /// Whether the ratchet uses PQ headers.
    pub fn pq_support(&self) -> bool {
        self.ratchet.as_ref().is_some_and(Ratchet::pq_support)
    }

    /// (creator) Answers the joiner's confirmation with our conn info:
    /// secures the joiner's reply queue (fast flow) or asks it to (legacy)
    /// and sends our confirmation.
    pub fn allow(
        &mut self,
        conn_info: &[u8],
        ent: &mut impl AgentEntropy,
    ) -> Result<Vec<Output>, AgentError> {
        let Phase::AwaitAllow { legacy_key } = &self.phase else {
            return Err(AgentError::Prohibited("allow: no confirmation to allow"));
        };
        let legacy_key = legacy_key.clone();
        let mut next = self.clone();
        let plain = AgentMessage::ConnInfo(conn_info.to_vec()).encode()?;
        let padded = conn_info_padded_length(next.agent_version, next.pq);
        let rc = next
            .ratchet
            .as_mut()
            .ok_or(AgentError::Prohibited("no ratchet"))?;
        let enc = rc.encrypt(&plain, padded, None)?;
        next.snd.record(&plain);
        let envelope = AgentMsgEnvelope::Confirmation {
            agent_version: next.agent_version,
            e2e_params: None,
            enc_conn_info: enc,
        };
        let mut out = Vec::new();
        if let Some(sender_key) = legacy_key {
            out.push(Output::SecureOwnQueue {
                rcv_id: next.own.addr.rcv_id.clone(),
                sender_key,
            });
        }
        out.extend(next.confirmation_outputs(&envelope, false, ent)?);
        let fast = next.peer.as_ref().is_some_and(PeerQueue::fast);
        next.phase = if fast {
            out.push(Output::Event(AgentEvent::Connected));
            Phase::Connected
        } else {
            Phase::AwaitHello
        };
        *self = next;
        Ok(out)
    }

    /// The first message to the peer's queue: with our e2e key in the public
    /// header, after `SKEY` when the queue allows it, else unsigned with our
    /// sender key in the private header for the recipient to `KEY`.
    /// `presecured`: the peer's queue is already secured with our sender key.
    fn confirmation_outputs(
        &self,
        envelope: &AgentMsgEnvelope,
        presecured: bool,
        ent: &mut impl AgentEntropy,
    ) -> Result<Vec<Output>, AgentError> {
        let peer = self
            .peer
            .as_ref()
            .ok_or(AgentError::Prohibited("no peer queue"))?;
        let s = secret(&peer.own_e2e, &peer.peer_e2e)?;
        let header = PubHeader {
            client_version: self.client_version,
            e2e_key: Some(peer.own_e2e.public_key()),
        };
        let mut out = Vec::new();
        let (priv_header, signer) = if presecured {
            (PrivHeader::Empty, Some(peer.sender_key.clone()))
        } else if peer.fast() {
            out.push(Output::SecurePeerQueue {
                server: peer.server.clone(),
                snd_id: peer.snd_id.clone(),
                sender_key: peer.sender_key.clone(),
            });
            (PrivHeader::Empty, Some(peer.sender_key.clone()))
        } else {
            (PrivHeader::Confirmation(peer.sender_key.public_key()), None)
        };
        let sealed = seal(&s, header, ent.nonce(), priv_header, envelope)
            .map_err(|e| AgentError::Encode(e.to_string()))?;
        out.push(Output::Send {
            server: peer.server.clone(),
            snd_id: peer.snd_id.clone(),
            sender_key: signer,
            notify: true,
            body: sealed.encode()?,
        });
        Ok(out)
    }

    /// Encrypts an agent message for the peer's queue.
    fn agent_message(
        &mut self,
        message: AMessage,
        notify: bool,
        ent: &mut impl AgentEntropy,
    ) -> Result<(i64, Output), AgentError> {
        let padded = agent_msg_padded_length(self.agent_version, self.pq);
        let mut snd = self.snd.clone();
        let (id, plain) = snd.next_message(message)?;
        let mut rc = self
            .ratchet
            .clone()
            .ok_or(AgentError::Prohibited("no ratchet"))?;
        let enc = rc.encrypt(&plain, padded, None)?;
        let peer = self
            .peer
            .as_ref()
            .ok_or(AgentError::Prohibited("no peer queue"))?;
        let envelope = AgentMsgEnvelope::Message {
            agent_version: AGENT_VERSIONS.max(),
            enc_agent_message: enc,
        };
        let s = secret(&peer.own_e2e, &peer.peer_e2e)?;
        let header = PubHeader {
            client_version: self.client_version,
            e2e_key: None,
        };
        let sealed = seal(&s, header, ent.nonce(), PrivHeader::Empty, &envelope)
            .map_err(|e| AgentError::Encode(e.to_string()))?;
        let out = Output::Send {
            server: peer.server.clone(),
            snd_id: peer.snd_id.clone(),
            sender_key: Some(peer.sender_key.clone()),
            notify,
            body: sealed.encode()?,
        };
        self.snd = snd;
        self.ratchet = Some(rc);
        Ok((id, out))
    }

    /// Sends a chat message; returns its agent message id (for receipts).
    /// Allowed once connected, and for the joiner as soon as the fast flow
    /// secured the creator's queue (agent v7, `JOINED` with a secured queue).
    pub fn send_message(
        &mut self,
        body: &[u8],
        ent: &mut impl AgentEntropy,
    ) -> Result<(i64, Vec<Output>), AgentError> {
        let early_ok = self.phase == Phase::AwaitReply
            && self.peer.as_ref().is_some_and(PeerQueue::fast)
            && self.agent_version >= super::version::RATCHET_ON_CONF_AGENT_VERSION;
        if self.phase != Phase::Connected && !early_ok {
            return Err(AgentError::Prohibited("send: not connected yet"));
        }
        let (id, out) = self.agent_message(AMessage::AMsg(body.to_vec()), true, ent)?;
        Ok((id, vec![out]))
    }

    /// Sends receipts for received messages (`A_RCVD`, agent v4+; sent
    /// without a notification, as the reference does).
    pub fn send_receipts(
        &mut self,
        receipts: Vec<AMessageReceipt>,
        ent: &mut impl AgentEntropy,
    ) -> Result<Vec<Output>, AgentError> {
        if self.phase != Phase::Connected {
            return Err(AgentError::Prohibited("receipt: not connected"));
        }
        if self.agent_version < super::version::DELIVERY_RECEIPTS_AGENT_VERSION
            || receipts.is_empty()
        {
            return Ok(Vec::new());
        }
        let (_, out) = self.agent_message(AMessage::ARcvd(receipts), false, ent)?;
        Ok(vec![out])
    }

    /// Processes the body of a message received on our queue (the SMP
    /// layer already opened: `RcvMsgBody::Message` body).
    pub fn receive(
        &mut self,
        body: &[u8],
        ent: &mut impl AgentEntropy,
    ) -> Result<Vec<Output>, AgentError> {
        let env = decode_envelope(body)?;
        match (&self.own.peer_e2e, &env.header.e2e_key) {
            (None, Some(key)) => self.receive_confirmation(key.clone(), &env, ent),
            (Some(_), Some(_)) => Ok(vec![Output::Event(AgentEvent::RepeatedConfirmation)]),
            (Some(key), None) => {
                let s = secret(&self.own.e2e_key, key)?;
                let (ph, agent_env) = open_with(&s, &env)?;
                if ph != PrivHeader::Empty {
                    return Err(AgentError::Prohibited("msg: key in a message"));
                }
                match agent_env {
                    AgentMsgEnvelope::Message {
                        enc_agent_message, ..
                    } => self.receive_message(&enc_agent_message, ent),
                    AgentMsgEnvelope::RatchetKey { .. } => Ok(vec![Output::Event(
                        AgentEvent::Unsupported("ratchet re-synchronisation"),
                    )]),
                    _ => Err(AgentError::Prohibited("msg: unexpected envelope")),
                }
            }
            (None, None) => Err(AgentError::Prohibited("msg: no keys")),
        }
    }

    fn receive_confirmation(
        &mut self,
        key: PublicKey,
        env: &ClientMsgEnvelope,
        ent: &mut impl AgentEntropy,
    ) -> Result<Vec<Output>, AgentError> {
        let s = secret(&self.own.e2e_key, &key)?;
        let (ph, agent_env) = open_with(&s, env)?;
        let AgentMsgEnvelope::Confirmation {
            agent_version,
            e2e_params,
            enc_conn_info,
        } = agent_env
        else {
            return Err(AgentError::Prohibited("conf: not a confirmation"));
        };
        if !AGENT_VERSIONS.contains(agent_version) {
            return Err(AgentError::Version);
        }
        let legacy_key = match ph {
            PrivHeader::Empty if sender_can_secure(self.own.addr.mode) => None,
            PrivHeader::Empty => {
                return Err(AgentError::Prohibited("handshake: missing sender key"));
            }
            PrivHeader::Confirmation(k) => Some(k),
        };
        let mut next = self.clone();
        next.own.peer_e2e = Some(key);
        let mut out = Vec::new();
        match (&self.phase, e2e_params) {
            (Phase::AwaitConfirmation(keys), Some(params)) => {
                if !E2E_VERSIONS.contains(params.version) {
                    return Err(AgentError::Version);
                }
                let pq = next.pq && pq_supported(agent_version, params.version);
                let (init, kem) = x3dh_creator(keys, &params)
                    .map_err(|_| AgentError::Prohibited("conf: KEM state"))?;
                let rc = Ratchet::init_creator(params.version, keys.key2.clone(), init, kem, pq);
                let mut d = rc
                    .decrypt(&next.skipped, &enc_conn_info, ent)
                    .map_err(|_| AgentError::Prohibited("conf: decrypt error"))?;
                let plain = core::mem::replace(&mut d.plaintext, Ok(Vec::new()))
                    .map_err(|_| AgentError::Prohibited("conf: decrypt error"))?;
                let AgentMessage::ConnInfoReply {
                    reply_queues,
                    conn_info,
                } = AgentMessage::decode(&plain).map_err(|e| AgentError::Message(e.to_string()))?
                else {
                    return Err(AgentError::Prohibited("conf: not AgentConnInfoReply"));
                };
                let q = reply_queues
                    .into_iter()
                    .next()
                    .ok_or(AgentError::Link("no reply queue"))?;
                next.agent_version = agent_version;
                next.client_version = q.client_version.min(SUPPORTED_CLIENT_RANGE.max());
                next.pq = pq;
                next.ratchet = Some(d.ratchet);
                d.skipped.apply(&mut next.skipped);
                next.rcv.confirmation(&plain);
                next.peer = Some(PeerQueue::new(
                    q.server,
                    q.sender_id,
                    q.queue_mode,
                    q.dh_key,
                    ent,
                ));
                next.phase = Phase::AwaitAllow { legacy_key };
                out.push(Output::Event(AgentEvent::Confirmation { conn_info }));
            }
            (Phase::AwaitReply, None) => {
                let rc = next
                    .ratchet
                    .as_ref()
                    .ok_or(AgentError::Prohibited("no ratchet"))?;
                let d = rc
                    .decrypt(&next.skipped, &enc_conn_info, ent)
                    .map_err(|_| AgentError::Prohibited("conf: decrypt error"))?;
                let plain = d
                    .plaintext
                    .map_err(|_| AgentError::Prohibited("conf: decrypt error"))?;
                let AgentMessage::ConnInfo(conn_info) =
                    AgentMessage::decode(&plain).map_err(|e| AgentError::Message(e.to_string()))?
                else {
                    return Err(AgentError::Prohibited("conf: not AgentConnInfo"));
                };
                next.ratchet = Some(d.ratchet);
                d.skipped.apply(&mut next.skipped);
                next.rcv.confirmation(&plain);
                out.push(Output::Event(AgentEvent::Info { conn_info }));
                match legacy_key {
                    None => {
                        next.phase = Phase::Connected;
                        out.push(Output::Event(AgentEvent::Connected));
                    }
                    Some(k) => {
                        out.push(Output::SecureOwnQueue {
                            rcv_id: next.own.addr.rcv_id.clone(),
                            sender_key: k,
                        });
                        let (_, hello) = next.agent_message(AMessage::Hello, false, ent)?;
                        out.push(hello);
                        next.phase = Phase::AwaitHello;
                    }
                }
            }
            _ => return Err(AgentError::Prohibited("conf: unexpected confirmation")),
        }
        *self = next;
        Ok(out)
    }

    fn receive_message(
        &mut self,
        enc: &[u8],
        ent: &mut impl AgentEntropy,
    ) -> Result<Vec<Output>, AgentError> {
        let rc = self
            .ratchet
            .as_ref()
            .ok_or(AgentError::Prohibited("msg: no ratchet"))?;
        let hash = crate::crypto::digest::sha256(enc);
        let seen = self.seen.contains(&hash);
        let d = match rc.decrypt(&self.skipped, enc, ent) {
            Ok(d) => d,
            Err(_) if seen => return Ok(vec![Output::Event(AgentEvent::Duplicate)]),
            Err(e) => return Err(AgentError::Ratchet(e)),
        };
        // From here the ratchet's change is kept whatever the body gives.
        self.ratchet = Some(d.ratchet);
        d.skipped.apply(&mut self.skipped);
        let plain = match d.plaintext {
            Ok(p) => p,
            Err(RatchetError::Duplicate) => return Ok(vec![Output::Event(AgentEvent::Duplicate)]),
            Err(_) if seen => return Ok(vec![Output::Event(AgentEvent::Duplicate)]),
            Err(e) => return Ok(vec![Output::Event(AgentEvent::MessageError(e))]),
        };
        if self.seen.len() == SEEN_HASHES {
            self.seen.pop_front();
        }
        self.seen.push_back(hash);
        let m = match AgentMessage::decode(&plain) {
            Ok(m) => m,
            Err(e) => {
                return Ok(vec![Output::Event(AgentEvent::MessageError(
                    RatchetError::Malformed(DecodeError::Invalid(match e {
                        super::message::AgentMessageError::Decode(_) => "agent message",
                        _ => "agent message tag",
                    })),
                ))]);
            }
        };
        let AgentMessage::Message { header, message } = m else {
            return Ok(vec![Output::Event(AgentEvent::Unsupported(
                "non-message plaintext after the handshake",
            ))]);
        };
        let integrity = self.rcv.check(&header, &plain);
        let mut out = Vec::new();
        match message {
            AMessage::Hello => match (self.phase.clone(), self.role) {
                (Phase::AwaitHello, Role::Creator) => {
                    let (_, hello) = self.agent_message(AMessage::Hello, false, ent)?;
                    out.push(hello);
                    self.phase = Phase::Connected;
                    out.push(Output::Event(AgentEvent::Connected));
                }
                (Phase::AwaitHello, Role::Joiner) => {
                    self.phase = Phase::Connected;
                    out.push(Output::Event(AgentEvent::Connected));
                }
                _ => out.push(Output::Event(AgentEvent::Unsupported("hello: active"))),
            },
            AMessage::AMsg(body) => out.push(Output::Event(AgentEvent::Message {
                msg_id: header.snd_msg_id,
                integrity,
                body,
                hash: crate::crypto::digest::sha256(&plain).to_vec(),
            })),
            AMessage::ARcvd(r) => out.push(Output::Event(AgentEvent::Receipts(r))),
            AMessage::Eready(_) => {}
            AMessage::AQcont(_) => {}
            AMessage::Qadd(_) | AMessage::Qkey(_) | AMessage::Quse(_) | AMessage::Qtest(_) => {
                out.push(Output::Event(AgentEvent::Unsupported("queue rotation")));
            }
        }
        Ok(out)
    }
}

/// A long-term contact address hosted on a contact-mode queue: it only
/// ever receives contact requests, each opened with the one-off key in its
/// header (no secret is stored, so any number may arrive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactAddress {
    addr: QueueAddr,
    e2e_key: PrivateKey,
    /// The short link to this address, when it has one.
    short_link: Option<String>,
}

impl ContactAddress {
    /// A new address on `own`, a contact queue the runtime created.
    pub fn create(own: QueueAddr, ent: &mut impl AgentEntropy) -> (Self, ConnectionRequest) {
        let e2e_key = ent.key(KeyAlgorithm::X25519);
        let link = ConnectionRequest::Contact(ConnReqData {
            agent_versions: AGENT_VERSIONS,
            queues: vec![queue_uri(
                &own,
                e2e_key.public_key(),
                Some(QueueMode::Contact),
            )],
            client_data: None,
        });
        (
            Self {
                addr: own,
                e2e_key,
                short_link: None,
            },
            link,
        )
    }

    pub fn queue(&self) -> &QueueAddr {
        &self.addr
    }

    /// Sets the queue's receive ID once the router created the queue a
    /// short link's data was sealed for (see [`Connection::bind_rcv_id`]).
    pub fn bind_rcv_id(&mut self, rcv_id: Vec<u8>) {
        self.addr.rcv_id = rcv_id;
    }

    /// Remembers the short link given out for this address.
    pub fn set_short_link(&mut self, link: String) {
        self.short_link = Some(link);
    }

    /// The short link, if the address has one.
    pub fn short_link(&self) -> Option<&str> {
        self.short_link.as_deref()
    }

    /// The address link again (it does not change).
    pub fn link(&self) -> ConnectionRequest {
        ConnectionRequest::Contact(ConnReqData {
            agent_versions: AGENT_VERSIONS,
            queues: vec![queue_uri(
                &self.addr,
                self.e2e_key.public_key(),
                Some(QueueMode::Contact),
            )],
            client_data: None,
        })
    }

    /// Opens a contact request (`AgentInvitation`).
    pub fn receive(&self, body: &[u8]) -> Result<ContactRequest, AgentError> {
        let env = decode_envelope(body)?;
        let key = env
            .header
            .e2e_key
            .as_ref()
            .ok_or(AgentError::Prohibited("inv: no key"))?;
        let s = secret(&self.e2e_key, key)?;
        let (_, agent_env) = open_with(&s, &env)?;
        let AgentMsgEnvelope::Invitation {
            agent_version,
            conn_req,
            conn_info,
        } = agent_env
        else {
            return Err(AgentError::Prohibited("inv: not an invitation"));
        };
        if !AGENT_VERSIONS.contains(agent_version) {
            return Err(AgentError::Version);
        }
        let invitation = ConnectionRequest::from_str(&conn_req)
            .map_err(|e| AgentError::Message(e.to_string()))?;
        if !matches!(invitation, ConnectionRequest::Invitation { .. }) {
            return Err(AgentError::Prohibited("inv: not an invitation link"));
        }
        Ok(ContactRequest {
            invitation,
            conn_info,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.u8(STATE_FORMAT);
        write_addr(&mut w, &self.addr)?;
        write_private(&mut w, &self.e2e_key)?;
        // Added later: absent in addresses stored before short links.
        if let Some(l) = &self.short_link {
            w.large(l.as_bytes())?;
        }
        Ok(w.into_vec())
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8()? != STATE_FORMAT {
            return Err(DecodeError::Invalid("unknown address state format"));
        }
        let addr = read_addr(&mut r)?;
        let e2e_key = read_private(&mut r)?;
        let short_link = if r.is_empty() {
            None
        } else {
            let b = r.large()?;
            Some(
                String::from_utf8(b.to_vec())
                    .map_err(|_| DecodeError::Invalid("short link text"))?,
            )
        };
        r.end()?;
        Ok(Self {
            addr,
            e2e_key,
            short_link,
        })
    }
}

/// Version of our own storage format for connection state.
const STATE_FORMAT: u8 = 1;

fn write_mode(w: &mut Writer, mode: Option<QueueMode>) {
    w.u8(match mode {
        None => b'0',
        Some(QueueMode::Messaging) => b'M',
        Some(QueueMode::Contact) => b'C',
    });
}

fn write_addr(w: &mut Writer, a: &QueueAddr) -> Result<(), EncodeError> {
    w.large(a.server.to_string().as_bytes())?
        .short(&a.rcv_id)?
        .short(&a.snd_id)?;
    write_mode(w, a.mode);
    Ok(())
}

fn read_server(r: &mut Reader<'_>) -> Result<ServerAddress, DecodeError> {
    let s = core::str::from_utf8(r.large()?).map_err(|_| DecodeError::Invalid("server"))?;
    ServerAddress::parse(s).map_err(|_| DecodeError::Invalid("server"))
}

fn read_mode(r: &mut Reader<'_>) -> Result<Option<QueueMode>, DecodeError> {
    match r.u8()? {
        b'0' => Ok(None),
        b'M' => Ok(Some(QueueMode::Messaging)),
        b'C' => Ok(Some(QueueMode::Contact)),
        _ => Err(DecodeError::Invalid("queue mode")),
    }
}

fn read_addr(r: &mut Reader<'_>) -> Result<QueueAddr, DecodeError> {
    Ok(QueueAddr {
        server: read_server(r)?,
        rcv_id: r.short()?.to_vec(),
        snd_id: r.short()?.to_vec(),
        mode: read_mode(r)?,
    })
}

fn write_private(w: &mut Writer, k: &PrivateKey) -> Result<(), EncodeError> {
    w.short(&k.to_der())?;
    Ok(())
}

fn read_private(r: &mut Reader<'_>) -> Result<PrivateKey, DecodeError> {
    PrivateKey::from_der(r.short()?).map_err(|_| DecodeError::Invalid("stored key"))
}

fn write_public(w: &mut Writer, k: &PublicKey) -> Result<(), EncodeError> {
    w.short(&k.to_der())?;
    Ok(())
}

fn read_public(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
    PublicKey::from_der(r.short()?).map_err(|_| DecodeError::Invalid("stored key"))
}

fn write_chain(w: &mut Writer, id: i64, hash: &[u8]) -> Result<(), EncodeError> {
    w.i64(id).short(hash)?;
    Ok(())
}

impl Connection {
    /// The whole state for storage (secrets included: keep it in a 0600
    /// store). Our own format, versioned.
    pub fn encode(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, EncodeError> {
        let mut w = Writer::with_capacity(1024);
        w.u8(STATE_FORMAT);
        w.u8(match self.role {
            Role::Creator => b'C',
            Role::Joiner => b'J',
        });
        match &self.phase {
            Phase::AwaitConfirmation(keys) => {
                w.u8(b'1');
                write_private(&mut w, &keys.key1)?;
                write_private(&mut w, &keys.key2)?;
                let pair = match &keys.kem {
                    Some(PrivKem::Proposed(k)) => Some(k),
                    _ => None,
                };
                w.maybe(pair, write_kem_pair)?;
            }
            Phase::AwaitAllow { legacy_key } => {
                w.u8(b'2');
                w.maybe(legacy_key.as_ref(), write_public)?;
            }
            Phase::AwaitReply => {
                w.u8(b'3');
            }
            Phase::AwaitHello => {
                w.u8(b'4');
            }
            Phase::Connected => {
                w.u8(b'5');
            }
        }
        w.u16(self.agent_version)
            .u16(self.client_version)
            .bool(self.pq);
        write_addr(&mut w, &self.own.addr)?;
        write_private(&mut w, &self.own.e2e_key)?;
        w.maybe(self.own.peer_e2e.as_ref(), write_public)?;
        w.maybe(self.peer.as_ref(), |w, p| {
            w.large(p.server.to_string().as_bytes())?.short(&p.snd_id)?;
            write_mode(w, p.mode);
            write_public(w, &p.peer_e2e)?;
            write_private(w, &p.own_e2e)?;
            write_private(w, &p.sender_key)
        })?;
        match &self.ratchet {
            None => {
                w.u8(b'0');
            }
            Some(rc) => {
                w.u8(b'1').large(&rc.encode()?)?;
            }
        }
        w.large(&ratchet::encode_skipped(&self.skipped))?;
        write_chain(&mut w, self.snd.last_id(), self.snd.last_hash())?;
        write_chain(&mut w, self.rcv.last_id(), self.rcv.last_hash())?;
        w.u16(self.seen.len() as u16);
        for h in &self.seen {
            w.raw(h);
        }
        Ok(zeroize::Zeroizing::new(w.into_vec()))
    }

    /// Reads a state written by [`Connection::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8()? != STATE_FORMAT {
            return Err(DecodeError::Invalid("unknown connection state format"));
        }
        let role = match r.u8()? {
            b'C' => Role::Creator,
            b'J' => Role::Joiner,
            _ => return Err(DecodeError::Invalid("role")),
        };
        let phase = match r.u8()? {
            b'1' => {
                let key1 = read_private(&mut r)?;
                let key2 = read_private(&mut r)?;
                let kem = r.maybe(read_kem_pair)?.map(PrivKem::Proposed);
                Phase::AwaitConfirmation(E2eKeys { key1, key2, kem })
            }
            b'2' => Phase::AwaitAllow {
                legacy_key: r.maybe(read_public)?,
            },
            b'3' => Phase::AwaitReply,
            b'4' => Phase::AwaitHello,
            b'5' => Phase::Connected,
            _ => return Err(DecodeError::Invalid("phase")),
        };
        let agent_version = r.u16()?;
        let client_version = r.u16()?;
        let pq = r.bool()?;
        let addr = read_addr(&mut r)?;
        let e2e_key = read_private(&mut r)?;
        let peer_e2e = r.maybe(read_public)?;
        let peer = r.maybe(|r| {
            Ok(PeerQueue {
                server: read_server(r)?,
                snd_id: r.short()?.to_vec(),
                mode: read_mode(r)?,
                peer_e2e: read_public(r)?,
                own_e2e: read_private(r)?,
                sender_key: read_private(r)?,
            })
        })?;
        let ratchet = r.maybe(|r| Ratchet::decode(r.large()?))?;
        let skipped = ratchet::decode_skipped(r.large()?)?;
        let snd = SndMsgChain::from_state(r.i64()?, r.short()?.to_vec());
        let rcv = RcvMsgChain::from_state(r.i64()?, r.short()?.to_vec());
        let n = usize::from(r.u16()?).min(SEEN_HASHES);
        let mut seen = alloc::collections::VecDeque::with_capacity(n);
        for _ in 0..n {
            seen.push_back(r.array()?);
        }
        r.end()?;
        Ok(Self {
            role,
            phase,
            agent_version,
            client_version,
            pq,
            own: OwnQueue {
                addr,
                e2e_key,
                peer_e2e,
            },
            peer,
            ratchet,
            skipped,
            snd,
            rcv,
            seen,
        })
    }
}
