//! Async SMP client (tokio): one TLS connection to a router multiplexes
//! every request and the router's events.
//!
//! A writer task sends commands, packing those queued together into shared
//! blocks; a reader task routes
//! each received transmission: a non-empty corrId goes to the request that
//! sent it (same corrId and the same entity, as the reference's
//! `processMsg`), an empty corrId is an event (`MSG`, `END`, `DELD`, `ERR`)
//! for the [`SmpEvent`] receiver returned by [`SmpClient::connect`]. When the
//! connection drops, waiting requests fail with [`SmpClientError::Closed`] and
//! the receiver gets [`SmpEvent::Disconnected`].
//!
//! Everything is encoded for the version negotiated in the handshake.

mod connection;
mod error;
mod pool;
mod proxy;
mod reconnect;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use crate::crypto::random_array;
use crate::smp::command::{
    BasicAuth, Command, NewQueue, QueueLinkData, QueueMode, QueueReqData, SubscriptionMode,
    sender_id_for_corr_id,
};
use crate::smp::error::{ErrorType, TransportError};
use crate::smp::message::{RcvMsgBody, decrypt_rcv_msg};
use crate::smp::response::Response;
use crate::smp::transmission::{
    AuthKey, ClientAuth, MAX_TRANSMISSION_IN_BATCH, encode_command_transmission,
};
use crate::smp::version::{self, Version, VersionRange};
use crate::tls::{ALPN_SMP, SessionId};

pub use crate::client::xftp::Backoff;
pub use error::{SmpClientError, TimeoutKind};
pub use pool::{PoolEvents, SmpClientPool};
pub use proxy::ProxiedRelay;
pub use reconnect::ReconnectingSmpClient;

/// How to connect. Timeouts follow the reference's `defaultNetworkConfig`
/// (TCP connect 25 s, command 15 s), so a slow link behaves the same.
#[derive(Debug, Clone)]
pub struct SmpClientOptions {
    /// Dial this socket instead of resolving the address's host (tests,
    /// or a caller that resolved the host itself). TLS is still pinned to
    /// the address's key hash.
    pub socket_addr: Option<SocketAddr>,
    /// Relay versions offered; the client uses the highest in common.
    pub versions: VersionRange,
    /// ALPN protocol; `None` sends no ALPN, so a reference router offers
    /// only v6 (legacy clients).
    pub alpn: Option<&'static [u8]>,
    /// Send an X25519 session key in the client hello (reference clients
    /// always do; it turns on block encryption from v11).
    pub send_session_key: bool,
    /// Say in the hello that this client is a router acting as a proxy
    /// (v14+); that turns block encryption off.
    pub proxy_server: bool,
    /// The router's password for creating queues, if it has one.
    pub basic_auth: Option<BasicAuth>,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for SmpClientOptions {
    fn default() -> Self {
        Self {
            socket_addr: None,
            versions: version::SUPPORTED_RANGE,
            alpn: Some(ALPN_SMP),
            send_session_key: true,
            proxy_server: false,
            basic_auth: None,
            connect_timeout: Duration::from_secs(25),
            handshake_timeout: Duration::from_secs(25),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// What the router sent outside of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmpEvent {
    /// A transmission with an empty corrId: `MSG`, `END`, `DELD`, `NMSG`,
    /// `ERR` (e.g. `ERR BLOCK` for a block the router could not read).
    Server {
        entity_id: Vec<u8>,
        response: Response,
    },
    /// A transmission or block from the router that did not parse.
    Invalid {
        entity_id: Vec<u8>,
        error: ErrorType,
    },
    /// A reply whose request had already given up (timed out).
    LateReply {
        entity_id: Vec<u8>,
        response: Result<Response, ErrorType>,
    },
    /// The connection closed; waiting requests failed.
    Disconnected,
    /// ([`ReconnectingSmpClient`]) the router refused to resubscribe a
    /// queue after reconnecting (e.g. `AUTH` for a deleted queue).
    ResubscribeFailed {
        entity_id: Vec<u8>,
        error: ErrorType,
    },
    /// ([`ReconnectingSmpClient`]) connected again and re-subscribed.
    Reconnected,
}

/// Receives [`SmpEvent`]s of one connection.
pub type SmpEvents = mpsc::UnboundedReceiver<SmpEvent>;

/// A message as the router sent it (still encrypted with the queue's DH secret).
#[derive(Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub msg_id: Vec<u8>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for RawMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawMessage({} bytes)", self.body.len())
    }
}

/// Parameters of `NEW`.
#[derive(Debug, Clone)]
pub struct CreateQueueOptions {
    /// The recipient's authorization key (reference agents use Ed25519).
    pub auth_algorithm: KeyAlgorithm,
    /// Subscribe this connection right away (`S`) or only create (`C`).
    pub subscribe: bool,
    /// Messaging (the sender may `SKEY`) or contact queue; sent from v9.
    pub mode: QueueMode,
    /// Overrides the password of [`SmpClientOptions::basic_auth`].
    pub basic_auth: Option<BasicAuth>,
    /// Send no queue data, so the queue has no mode, as every queue below
    /// SMP v9 (and SimpleGo's): senders cannot `SKEY` it and use the legacy
    /// handshake (`KEY` by the recipient, then `HELLO`).
    pub legacy: bool,
    /// Short-link data to store with the queue (v15+).
    pub link: Option<NewQueueLink>,
}

impl Default for CreateQueueOptions {
    fn default() -> Self {
        Self {
            auth_algorithm: KeyAlgorithm::Ed25519,
            subscribe: true,
            mode: QueueMode::Messaging,
            basic_auth: None,
            legacy: false,
            link: None,
        }
    }
}

/// The link data of a new queue. The data names the queue's sender ID, so
/// the client picks it: the router takes SHA3-384 of `NEW`'s correlation ID
/// (see [`NewQueueLink::sender_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueueLink {
    pub corr_id: [u8; 24],
    /// A contact link's ID, derived from its key; `None` for an invitation,
    /// whose link ID the router assigns.
    pub link_id: Option<Vec<u8>>,
    pub data: QueueLinkData,
}

impl NewQueueLink {
    /// The sender ID the queue will have.
    pub fn sender_id(corr_id: &[u8; 24]) -> Vec<u8> {
        sender_id_for_corr_id(corr_id).to_vec()
    }
}

/// A queue this client created, with what the recipient needs to use it.
#[derive(Clone)]
pub struct RcvQueue {
    pub rcv_id: Vec<u8>,
    pub snd_id: Vec<u8>,
    pub rcv_auth_key: PrivateKey,
    pub rcv_dh_key: PrivateKey,
    pub server_dh_key: PublicKey,
    /// X25519(server DH key, own DH key): decrypts `MSG` bodies.
    pub rcv_dh_secret: Zeroizing<[u8; 32]>,
    /// As the router reported it (none below v9).
    pub queue_mode: Option<QueueMode>,
    pub link_id: Option<Vec<u8>>,
}

impl std::fmt::Debug for RcvQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcvQueue")
            .field("queue_mode", &self.queue_mode)
            .finish_non_exhaustive()
    }
}

impl RcvQueue {
    /// Opens a `MSG` body received for this queue.
    pub fn decrypt(&self, msg: &RawMessage) -> Result<RcvMsgBody, SmpClientError> {
        Ok(decrypt_rcv_msg(
            &self.rcv_dh_secret,
            &msg.msg_id,
            &msg.body,
        )?)
    }

    /// Opens a `MSG` response or event: `(msg_id, body)`.
    pub fn decrypt_response(
        &self,
        response: &Response,
    ) -> Result<(Vec<u8>, RcvMsgBody), SmpClientError> {
        match response {
            Response::Msg { msg_id, body } => Ok((
                msg_id.clone(),
                decrypt_rcv_msg(&self.rcv_dh_secret, msg_id, body)?,
            )),
            r => Err(SmpClientError::UnexpectedResponse(
                r.tag(version::CURRENT_VERSION),
            )),
        }
    }
}

/// One waiting request.
struct Pending {
    entity_id: Vec<u8>,
    reply: oneshot::Sender<Result<Response, SmpClientError>>,
}

/// What the reader task shares with the client handles.
struct Shared {
    /// `None` once the connection closed.
    pending: StdMutex<Option<HashMap<Vec<u8>, Pending>>>,
    events: mpsc::UnboundedSender<SmpEvent>,
}

impl Shared {
    fn event(&self, e: SmpEvent) {
        // The receiver may be gone; events are then dropped.
        let _ = self.events.send(e);
    }

    fn take_pending(&self, corr_id: &[u8]) -> Option<Pending> {
        self.pending
            .lock()
            .ok()?
            .as_mut()
            .and_then(|m| m.remove(corr_id))
    }

    /// Fails every waiting request and reports the disconnect once.
    fn close(&self) {
        let waiting = self.pending.lock().ok().and_then(|mut p| p.take());
        if let Some(waiting) = waiting {
            for (_, p) in waiting {
                let _ = p.reply.send(Err(SmpClientError::Closed));
            }
            self.event(SmpEvent::Disconnected);
        }
    }
}

/// Removes a request from the waiting map when its future ends early.
struct PendingGuard<'a> {
    shared: &'a Shared,
    corr_id: Vec<u8>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.take_pending(&self.corr_id);
    }
}

struct Inner {
    version: Version,
    session_id: SessionId,
    server_key: Option<PublicKey>,
    /// The range the router offered and its signed chain (for a proxy's `PKEY`).
    server_versions: VersionRange,
    server_chain_key: Option<crate::smp::handshake::CertChainPubKey>,
    /// X25519(router session key, our hello key), when both exist.
    session_secret: Option<Zeroizing<[u8; 32]>>,
    block_encryption: bool,
    outbox: mpsc::UnboundedSender<connection::Outgoing>,
    shared: Arc<Shared>,
    options: SmpClientOptions,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// A connected, handshaken SMP client. Cheap to clone; clones share the
/// connection, which closes when the last clone is dropped.
#[derive(Clone)]
pub struct SmpClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmpClient")
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

impl SmpClient {
    /// The negotiated relay version.
    pub fn version(&self) -> Version {
        self.inner.version
    }

    /// The session ID (tls-unique) both sides sign with.
    pub fn session_id(&self) -> &SessionId {
        &self.inner.session_id
    }

    /// The router's per-connection X25519 key (from v7).
    pub fn server_session_key(&self) -> Option<&PublicKey> {
        self.inner.server_key.as_ref()
    }

    /// The version range the router offered in its hello.
    pub fn server_versions(&self) -> VersionRange {
        self.inner.server_versions
    }

    /// The router's certificate chain and signed session key from its hello
    /// (what a proxy passes on in `PKEY`).
    pub fn server_cert_chain_key(&self) -> Option<&crate::smp::handshake::CertChainPubKey> {
        self.inner.server_chain_key.as_ref()
    }

    /// The secret shared with the router from the hello keys: a proxy's
    /// `RFWD`/`RRES` layer.
    pub fn session_secret(&self) -> Option<Zeroizing<[u8; 32]>> {
        self.inner.session_secret.clone()
    }

    /// Whether blocks are encrypted (v11+, own key sent, not a proxy).
    pub fn block_encryption(&self) -> bool {
        self.inner.block_encryption
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.inner
            .shared
            .pending
            .lock()
            .map_or(true, |p| p.is_none())
    }

    /// Whether both handles use the same connection.
    pub fn same_connection(&self, other: &SmpClient) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The authorization for a command signed (Ed25519/Ed448) or
    /// authenticated (X25519, with the server's session key) by `key`.
    pub fn client_auth<'a>(
        &'a self,
        key: &'a PrivateKey,
    ) -> Result<ClientAuth<'a>, SmpClientError> {
        let key = match key.algorithm() {
            KeyAlgorithm::X25519 => AuthKey::Authenticate {
                own: key,
                server_session_key: self
                    .inner
                    .server_key
                    .as_ref()
                    .ok_or(SmpClientError::NoServerKey)?,
            },
            _ => AuthKey::Sign(key),
        };
        Ok(ClientAuth { key, service: None })
    }

    /// Sends one command and waits for its reply. `corr_id` defaults to
    /// 24 random bytes (authenticators use it as their nonce). `ERR`
    /// replies become [`SmpClientError::Protocol`] / [`SmpClientError::Proxy`].
    pub async fn request(
        &self,
        corr_id: Option<Vec<u8>>,
        entity_id: &[u8],
        command: &Command,
        auth: Option<ClientAuth<'_>>,
    ) -> Result<Response, SmpClientError> {
        let corr_id = corr_id.unwrap_or_else(|| random_array::<24>().to_vec());
        let t = encode_command_transmission(
            self.inner.version,
            self.inner.session_id.as_ref(),
            &corr_id,
            entity_id,
            command,
            auth,
        )?;
        match self.exchange(corr_id, entity_id, &t).await? {
            Response::Err(e) => Err(e.into()),
            r => Ok(r),
        }
    }

    /// Sends an encoded transmission and waits for the reply to `corr_id`.
    async fn exchange(
        &self,
        corr_id: Vec<u8>,
        entity_id: &[u8],
        transmission: &[u8],
    ) -> Result<Response, SmpClientError> {
        if transmission.len() > MAX_TRANSMISSION_IN_BATCH {
            return Err(SmpClientError::Transport(TransportError::LargeMsg));
        }
        let shared = &self.inner.shared;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = shared.pending.lock().map_err(|_| SmpClientError::Closed)?;
            let map = pending.as_mut().ok_or(SmpClientError::Closed)?;
            if map.contains_key(&corr_id) {
                return Err(SmpClientError::CorrIdInUse);
            }
            map.insert(
                corr_id.clone(),
                Pending {
                    entity_id: entity_id.to_vec(),
                    reply: tx,
                },
            );
        }
        let _guard = PendingGuard { shared, corr_id };
        let exchange = async {
            let (written, done) = oneshot::channel();
            self.inner
                .outbox
                .send(connection::Outgoing {
                    transmission: transmission.to_vec(),
                    written,
                })
                .map_err(|_| SmpClientError::Closed)?;
            match done.await.map_err(|_| SmpClientError::Closed)? {
                Ok(()) => {}
                Err(connection::WriteFailure::TooLarge) => {
                    return Err(SmpClientError::Transport(TransportError::LargeMsg));
                }
                Err(connection::WriteFailure::Io(kind)) => {
                    return Err(SmpClientError::Io(kind.into()));
                }
            }
            rx.await.map_err(|_| SmpClientError::Closed)?
        };
        tokio::time::timeout(self.inner.options.request_timeout, exchange)
            .await
            .map_err(|_| SmpClientError::Timeout(TimeoutKind::Request))?
    }

    async fn expect_ok(
        &self,
        entity_id: &[u8],
        command: &Command,
        key: Option<&PrivateKey>,
    ) -> Result<(), SmpClientError> {
        let auth = key.map(|k| self.client_auth(k)).transpose()?;
        match self.request(None, entity_id, command, auth).await? {
            Response::Ok => Ok(()),
            r => Err(unexpected(&r, self.version())),
        }
    }

    /// `NEW`: creates a queue with fresh keys. The queue mode is sent from
    /// v9 (as `sndSecure` below v15), never with link data.
    pub async fn create_queue(
        &self,
        opts: &CreateQueueOptions,
    ) -> Result<RcvQueue, SmpClientError> {
        let rcv_auth_key = PrivateKey::generate(opts.auth_algorithm);
        let rcv_dh_key = PrivateKey::generate(KeyAlgorithm::X25519);
        let (req_data, corr_id) = match (&opts.link, opts.mode) {
            (None, QueueMode::Messaging) => (QueueReqData::Messaging(None), None),
            (None, QueueMode::Contact) => (QueueReqData::Contact(None), None),
            (Some(l), mode) => {
                if opts.legacy || self.version() < version::SHORT_LINKS_VERSION {
                    return Err(SmpClientError::Unsupported(
                        "the router is too old for short links (SMP v15)",
                    ));
                }
                let sid = NewQueueLink::sender_id(&l.corr_id);
                let d = match (mode, &l.link_id) {
                    (QueueMode::Messaging, None) => {
                        QueueReqData::Messaging(Some((sid, l.data.clone())))
                    }
                    (QueueMode::Contact, Some(lid)) => {
                        QueueReqData::Contact(Some((lid.clone(), sid, l.data.clone())))
                    }
                    _ => {
                        return Err(SmpClientError::Unsupported(
                            "a contact link needs a link ID and an invitation none",
                        ));
                    }
                };
                (d, Some(l.corr_id.to_vec()))
            }
        };
        let command = Command::New(NewQueue {
            rcv_auth_key: rcv_auth_key.public_key(),
            rcv_dh_key: rcv_dh_key.public_key(),
            basic_auth: opts
                .basic_auth
                .clone()
                .or_else(|| self.inner.options.basic_auth.clone()),
            sub_mode: if opts.subscribe {
                SubscriptionMode::Subscribe
            } else {
                SubscriptionMode::OnlyCreate
            },
            queue_req_data: (!opts.legacy).then_some(req_data),
            ntf_creds: None,
        });
        let auth = self.client_auth(&rcv_auth_key)?;
        let ids = match self.request(corr_id, b"", &command, Some(auth)).await? {
            Response::Ids(ids) => ids,
            r => return Err(unexpected(&r, self.version())),
        };
        if let Some(l) = &opts.link {
            let expect_link = l
                .link_id
                .as_ref()
                .map(|id| ids.link_id.as_ref() == Some(id));
            if ids.snd_id != NewQueueLink::sender_id(&l.corr_id)
                || ids.link_id.is_none()
                || expect_link == Some(false)
            {
                return Err(SmpClientError::UnexpectedResponse(
                    "IDS with other sender or link IDs than the link data names",
                ));
            }
        }
        let rcv_dh_secret = rcv_dh_key.dh(&ids.server_dh_key)?;
        Ok(RcvQueue {
            rcv_id: ids.rcv_id,
            snd_id: ids.snd_id,
            rcv_auth_key,
            rcv_dh_key,
            server_dh_key: ids.server_dh_key,
            rcv_dh_secret,
            queue_mode: ids.queue_mode,
            link_id: ids.link_id,
        })
    }

    /// `LGET`: a contact link's data, as `(sender ID, data)`.
    pub async fn get_link(
        &self,
        link_id: &[u8],
    ) -> Result<(Vec<u8>, QueueLinkData), SmpClientError> {
        link_answer(
            self.request(None, link_id, &Command::Lget, None).await?,
            self.version(),
        )
    }

    /// `LKEY`: secures a 1-time invitation's queue with `sender_key` and
    /// returns its link data. Repeating it with the same key is allowed.
    pub async fn secure_get_link(
        &self,
        link_id: &[u8],
        sender_key: &PrivateKey,
    ) -> Result<(Vec<u8>, QueueLinkData), SmpClientError> {
        let cmd = Command::Lkey(sender_key.public_key());
        let auth = self.client_auth(sender_key)?;
        link_answer(
            self.request(None, link_id, &cmd, Some(auth)).await?,
            self.version(),
        )
    }

    /// `KEY`: the recipient secures the queue with the sender's key.
    pub async fn secure_queue(
        &self,
        queue: &RcvQueue,
        sender_key: &PublicKey,
    ) -> Result<(), SmpClientError> {
        let cmd = Command::Key(sender_key.clone());
        self.expect_ok(&queue.rcv_id, &cmd, Some(&queue.rcv_auth_key))
            .await
    }

    /// `SKEY`: the sender secures a messaging queue with its own key
    /// (signed by that key).
    pub async fn secure_queue_sender(
        &self,
        snd_id: &[u8],
        sender_key: &PrivateKey,
    ) -> Result<(), SmpClientError> {
        let cmd = Command::Skey(sender_key.public_key());
        self.expect_ok(snd_id, &cmd, Some(sender_key)).await
    }

    /// `SEND`: unsigned to an unsecured queue, signed once it is secured.
    pub async fn send(
        &self,
        snd_id: &[u8],
        sender_key: Option<&PrivateKey>,
        notify: bool,
        body: &[u8],
    ) -> Result<(), SmpClientError> {
        let cmd = Command::Send {
            notification: notify,
            body: body.to_vec(),
        };
        self.expect_ok(snd_id, &cmd, sender_key).await
    }

    /// Commands whose reply may be a message (`SUB`, `ACK`, `GET`).
    async fn maybe_message(
        &self,
        queue: &RcvQueue,
        command: &Command,
    ) -> Result<Option<RawMessage>, SmpClientError> {
        let auth = self.client_auth(&queue.rcv_auth_key)?;
        match self
            .request(None, &queue.rcv_id, command, Some(auth))
            .await?
        {
            Response::Ok | Response::Sok(_) => Ok(None),
            Response::Msg { msg_id, body } => Ok(Some(RawMessage { msg_id, body })),
            r => Err(unexpected(&r, self.version())),
        }
    }

    /// `SUB`: answered `OK`/`SOK`; a waiting message usually follows as an
    /// event, but a `MSG` reply is accepted too and returned.
    pub async fn subscribe(&self, queue: &RcvQueue) -> Result<Option<RawMessage>, SmpClientError> {
        self.maybe_message(queue, &Command::Sub).await
    }

    /// `ACK`: the reply is the next message when one is waiting.
    pub async fn ack(
        &self,
        queue: &RcvQueue,
        msg_id: &[u8],
    ) -> Result<Option<RawMessage>, SmpClientError> {
        self.maybe_message(queue, &Command::Ack(msg_id.to_vec()))
            .await
    }

    /// `GET`: the head message, or `None` when the queue is empty.
    pub async fn get(&self, queue: &RcvQueue) -> Result<Option<RawMessage>, SmpClientError> {
        self.maybe_message(queue, &Command::Get).await
    }

    /// `OFF`: no more messages are accepted.
    pub async fn suspend(&self, queue: &RcvQueue) -> Result<(), SmpClientError> {
        self.expect_ok(&queue.rcv_id, &Command::Off, Some(&queue.rcv_auth_key))
            .await
    }

    /// `DEL`: deletes the queue and its messages.
    pub async fn delete(&self, queue: &RcvQueue) -> Result<(), SmpClientError> {
        self.expect_ok(&queue.rcv_id, &Command::Del, Some(&queue.rcv_auth_key))
            .await
    }

    /// `PING` ⇒ `PONG`.
    pub async fn ping(&self) -> Result<(), SmpClientError> {
        match self.request(None, b"", &Command::Ping, None).await? {
            Response::Pong => Ok(()),
            r => Err(unexpected(&r, self.version())),
        }
    }
}

/// The `LNK` that answers `LGET` and `LKEY`.
pub(crate) fn link_answer(
    r: Response,
    v: Version,
) -> Result<(Vec<u8>, QueueLinkData), SmpClientError> {
    match r {
        Response::Lnk { sender_id, data } => Ok((sender_id, data)),
        r => Err(unexpected(&r, v)),
    }
}

fn unexpected(r: &Response, v: Version) -> SmpClientError {
    SmpClientError::UnexpectedResponse(r.tag(v))
}
