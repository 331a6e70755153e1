//! The agent runtime: drives [`Connection`]s over the SMP client pool with
//! the crash-safe [`Store`] in between.
//!
//! For every received message the order is: open it, run the connection,
//! commit (new state, "processed" mark, outgoing commands, notices for the
//! application) in one transaction, then `ACK`, then run the outbox. A crash
//! anywhere therefore loses nothing and repeats nothing: a message that was
//! not committed is redelivered by the router and processed then; one that
//! was is recognised by its router message id and only acknowledged again;
//! commands still in the outbox are sent at the next start.
//!
//! Messages to a queue on a router other than the user's own first router
//! go through that router as a private-routing proxy, as the apps do by
//! default, so the destination router never sees the user's connection.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::store::{
    Commit, ConnId, InboxId, InboxItem, OutboxId, OutboxItem, ProcessedMsg, QueueRef,
    RcvQueueRecord, Store, StoreError,
};
use crate::address::ServerAddress;
use crate::agent::connection::AgentEntropy;
use crate::agent::connection::{
    AgentError, AgentEvent, Connection, ContactAddress, Output, QueueAddr,
};
use crate::agent::link::{
    ConnLinkData, ConnectionRequest, LinkQueryCommand, ShortLink, ShortLinkScheme, ShortLinkType,
    UserContactData, UserLinkData, seal_link_data,
};
use crate::agent::message::MsgIntegrity;
use crate::agent::version::AGENT_VERSIONS;
use crate::agent::x3dh::{OsRng, RngEntropy, os_entropy};
use crate::client::smp::{
    CreateQueueOptions, NewQueueLink, PoolEvents, ProxiedRelay, RawMessage, RcvQueue, SmpClient,
    SmpClientError, SmpClientOptions, SmpClientPool, SmpEvent,
};
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use crate::crypto::random_array;
use crate::smp::command::{QueueLinkData, QueueMode};
use crate::smp::error::ErrorType;
use crate::smp::message::RcvMsgBody;
use crate::smp::response::Response;

/// Status word of the row that holds the contact address.
const ADDRESS_STATUS: &str = "address";

/// What the runtime needs beyond the store.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub smp: SmpClientOptions,
    /// Propose / accept the PQ ratchet on new connections.
    pub pq: bool,
    /// The application's conn info for confirmations (the chat's `x.info`).
    pub conn_info: Vec<u8>,
    /// The conn info sent with contact requests (the chat's `x.contact`).
    pub contact_info: Vec<u8>,
    /// Send to other routers through the user's own router.
    pub private_routing: bool,
    /// Create queues without a mode (as SimpleGo devices do), so peers use
    /// the legacy handshake with us.
    pub legacy_queues: bool,
    /// Give new invitations and addresses short links, as the apps do, with
    /// these bytes as the link's user data (the chat's profile JSON); `None`
    /// gives full links. A router too old for short links gets a full one.
    pub link_data: Option<Vec<u8>>,
    /// Acknowledge a router message only once the application has taken
    /// every notice it gave ([`Agent::done`], [`Agent::keep`]), as the
    /// reference's agent leaves `ACK` to the chat: the router keeps the
    /// message (and sends no next one on that queue) until then. Without
    /// it the `ACK` follows the commit.
    pub hold_acks: bool,
    /// Hand every sent message back as a [`Notice::Sent`], committed in the
    /// same transaction as the send, so that an application keeping its
    /// own history elsewhere (the device's card) records each one even if
    /// it stops right after sending.
    pub sent_notices: bool,
}

/// Runtime failures, in words a command can print.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("router: {0}")]
    Smp(#[from] SmpClientError),
    #[error("{0}")]
    Agent(#[from] AgentError),
    #[error("the link is not valid: {0}")]
    Link(String),
    #[error("no such contact: {0}")]
    NoContact(String),
    #[error("the profile has no SMP router")]
    NoRouter,
    #[error("not a router address: {0}")]
    BadRouter(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

/// What the application is told, durably (from the inbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The peer's conn info arrived (its profile).
    PeerInfo(Vec<u8>),
    Connected,
    /// A message: the sender's agent message id, the chat body and the
    /// hash-chain verdict.
    Message {
        msg_id: i64,
        body: Vec<u8>,
        integrity: MsgIntegrity,
    },
    /// The peer received our message with this id.
    Received(i64),
    /// We sent this chat body with this id ([`AgentOptions::sent_notices`]).
    Sent {
        msg_id: i64,
        body: Vec<u8>,
    },
    /// A message that could not be used (kept as a notice, not fatal).
    Skipped(String),
}

impl Notice {
    fn to_item(&self) -> InboxItem {
        let (kind, body) = match self {
            Self::PeerInfo(b) => ("info", b.clone()),
            Self::Connected => ("connected", Vec::new()),
            Self::Message {
                msg_id,
                body,
                integrity,
            } => {
                let mut b = msg_id.to_be_bytes().to_vec();
                b.push(match integrity {
                    MsgIntegrity::Ok => b'O',
                    MsgIntegrity::Duplicate => b'D',
                    MsgIntegrity::BadHash => b'H',
                    MsgIntegrity::BadId(_) => b'I',
                    MsgIntegrity::Skipped { .. } => b'S',
                });
                b.extend_from_slice(body);
                ("msg", b)
            }
            Self::Received(id) => ("rcvd", id.to_be_bytes().to_vec()),
            Self::Sent { msg_id, body } => {
                let mut b = msg_id.to_be_bytes().to_vec();
                b.extend_from_slice(body);
                ("sent", b)
            }
            Self::Skipped(why) => ("skipped", why.as_bytes().to_vec()),
        };
        InboxItem {
            kind: kind.to_string(),
            body,
        }
    }

    fn from_item(item: &InboxItem) -> Result<Self, RuntimeError> {
        let bad = || RuntimeError::Corrupt(format!("inbox item {}", item.kind));
        let id = |b: &[u8]| -> Result<i64, RuntimeError> {
            Ok(i64::from_be_bytes(
                b.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?,
            ))
        };
        Ok(match item.kind.as_str() {
            "info" => Self::PeerInfo(item.body.clone()),
            "connected" => Self::Connected,
            "msg" => {
                let msg_id = id(&item.body)?;
                let integrity = match item.body.get(8) {
                    Some(b'O') => MsgIntegrity::Ok,
                    Some(b'D') => MsgIntegrity::Duplicate,
                    Some(b'H') => MsgIntegrity::BadHash,
                    Some(b'I') => MsgIntegrity::BadId(msg_id),
                    Some(b'S') => MsgIntegrity::Skipped { from: 0, to: 0 },
                    _ => return Err(bad()),
                };
                Self::Message {
                    msg_id,
                    body: item.body[9..].to_vec(),
                    integrity,
                }
            }
            "rcvd" => Self::Received(id(&item.body)?),
            "sent" => Self::Sent {
                msg_id: id(&item.body)?,
                body: item.body[8..].to_vec(),
            },
            "skipped" => Self::Skipped(String::from_utf8_lossy(&item.body).into_owned()),
            _ => return Err(bad()),
        })
    }
}

/// An outgoing command as kept in the outbox (our own encoding in the
/// item's body: a tag byte, then what the command needs).
enum Op<'a> {
    Send(&'a [u8], Option<Arc<PrivateKey>>),
    Skey(Arc<PrivateKey>),
    Key(PublicKey),
}

fn server_text(s: &ServerAddress) -> String {
    s.to_string()
}

fn parse_server(s: &str) -> Result<ServerAddress, RuntimeError> {
    ServerAddress::parse(s).map_err(|e| RuntimeError::Corrupt(format!("router address: {e}")))
}

/// What the runtime knows about one receive queue.
struct Subscribed {
    conn: ConnId,
    server: ServerAddress,
    /// Shared, not copied per message, so that the recipient key's derived
    /// signing key (see `PrivateKey`) is kept for the next `ACK`.
    queue: Arc<RcvQueue>,
}

/// The running agent of one profile.
pub struct Agent {
    store: Store,
    pool: Arc<SmpClientPool>,
    events: PoolEvents,
    opts: AgentOptions,
    ent: RngEntropy<OsRng>,
    /// By (router, recipient id).
    queues: HashMap<(String, Vec<u8>), Subscribed>,
    /// Proxy sessions by destination router, with the proxy that holds
    /// each (the proxy changes when a router goes down).
    proxies: HashMap<ServerAddress, (ServerAddress, ProxiedRelay)>,
    own_routers: Vec<ServerAddress>,
    /// Inbox items handed to the application in this run and not yet done
    /// (it may keep some open, e.g. parts of a file description).
    handed: std::collections::HashSet<InboxId>,
    /// Outbox items the router accepted whose removal is not committed yet:
    /// it goes into the next commit (or [`Agent::flush_outbox`], the wait
    /// in [`Agent::next`], or drop), so a send costs one fsync, not two.
    /// Until then they are skipped when the outbox runs; after a crash they
    /// are sent again, which the recipient drops as duplicates (as it
    /// always did for a crash between the router's OK and the removal).
    sent: Vec<OutboxId>,
    /// Parsed sender keys by their DER, so that each send does not parse
    /// the key and derive its public half again.
    /// A few, most recent last.
    sender_keys: Vec<(Zeroizing<Vec<u8>>, Arc<PrivateKey>)>,
    /// The connections committed in this run, decoded, with the exact
    /// state bytes committed. Used only while the stored state is still
    /// those bytes (checked on every load), so it can never be stale; it
    /// saves decoding and keeps what the keys derived (the e2e DH secret,
    /// signing keys) from one message to the next.
    conns: HashMap<ConnId, (Zeroizing<Vec<u8>>, Connection)>,
    /// Routers that cannot be reached now: their commands wait in the
    /// outbox, new queues go elsewhere, and they are tried again in the
    /// background with growing delays, never given up.
    down: HashMap<ServerAddress, Down>,
    /// When the outbox runs again for commands that had to wait, and the
    /// delay that led there (doubling while they keep waiting).
    outbox_retry: Option<(Instant, Duration)>,
    /// Router messages whose `ACK` the application released, to be sent
    /// from [`Agent::next`].
    acks_due: Vec<ProcessedMsg>,
    /// Results of the background connection attempts.
    attempts: (AttemptTx, AttemptRx),
}

/// A finished connection attempt: the router, and whether it answered.
type AttemptTx = tokio::sync::mpsc::UnboundedSender<(ServerAddress, bool)>;
type AttemptRx = tokio::sync::mpsc::UnboundedReceiver<(ServerAddress, bool)>;

/// A router that is down, and when it is tried next.
#[derive(Debug)]
struct Down {
    retry_at: Instant,
    delay: Duration,
    /// An attempt is under way.
    trying: bool,
}

/// The first retry comes at once (a restarting router is usually back in
/// a moment), then after 1 s, doubling up to a minute.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How many decoded connections [`Agent`] keeps.
const CONN_CACHE: usize = 64;

impl Drop for Agent {
    fn drop(&mut self) {
        if let Err(e) = self.persist_sent() {
            tracing::warn!("removing sent outbox items failed: {e}");
        }
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("queues", &self.queues.len())
            .finish_non_exhaustive()
    }
}

fn rcv_queue_from(rec: &RcvQueueRecord) -> Result<RcvQueue, RuntimeError> {
    let bad = |e: crate::crypto::CryptoError| RuntimeError::Corrupt(format!("queue keys: {e}"));
    let rcv_auth_key = PrivateKey::from_der(&rec.rcv_auth_key_der).map_err(bad)?;
    let rcv_dh_key = PrivateKey::from_der(&rec.rcv_dh_key_der).map_err(bad)?;
    let server_dh_key = PublicKey::from_der(&rec.server_dh_key_der).map_err(bad)?;
    let rcv_dh_secret = rcv_dh_key.dh(&server_dh_key).map_err(bad)?;
    Ok(RcvQueue {
        rcv_id: rec.rcv_id.clone(),
        snd_id: rec.snd_id.clone(),
        rcv_auth_key,
        rcv_dh_key,
        server_dh_key,
        rcv_dh_secret,
        queue_mode: match rec.mode {
            Some(b'M') => Some(QueueMode::Messaging),
            Some(b'C') => Some(QueueMode::Contact),
            _ => None,
        },
        link_id: None,
    })
}

fn record_of(server: &ServerAddress, q: &RcvQueue) -> RcvQueueRecord {
    RcvQueueRecord {
        server: server_text(server),
        rcv_id: q.rcv_id.clone(),
        snd_id: q.snd_id.clone(),
        rcv_auth_key_der: Zeroizing::new(q.rcv_auth_key.to_der().to_vec()),
        rcv_dh_key_der: Zeroizing::new(q.rcv_dh_key.to_der().to_vec()),
        server_dh_key_der: q.server_dh_key.to_der(),
        mode: q.queue_mode.map(|m| match m {
            QueueMode::Messaging => b'M',
            QueueMode::Contact => b'C',
        }),
    }
}

/// Splits outputs into outbox items and notices.
fn split(
    own: &QueueAddr,
    outputs: Vec<Output>,
) -> (Vec<OutboxItem>, Vec<Notice>, Vec<Vec<u8>>, bool) {
    let mut outbox = Vec::new();
    let mut notices = Vec::new();
    let mut infos = Vec::new();
    let mut confirmation = false;
    for o in outputs {
        match o {
            Output::Send {
                server,
                snd_id,
                sender_key,
                notify,
                body,
            } => {
                let mut b = vec![b'S'];
                b.extend_from_slice(&body);
                outbox.push(OutboxItem {
                    queue: QueueRef {
                        server: server_text(&server),
                        snd_id,
                    },
                    body: b,
                    sender_key: sender_key.map(|k| Zeroizing::new(k.to_der().to_vec())),
                    notify,
                });
            }
            Output::SecurePeerQueue {
                server,
                snd_id,
                sender_key,
            } => outbox.push(OutboxItem {
                queue: QueueRef {
                    server: server_text(&server),
                    snd_id,
                },
                body: vec![b'K'],
                sender_key: Some(Zeroizing::new(sender_key.to_der().to_vec())),
                notify: false,
            }),
            Output::SecureOwnQueue { rcv_id, sender_key } => {
                let mut b = vec![b'O'];
                b.extend_from_slice(&sender_key.to_der());
                outbox.push(OutboxItem {
                    queue: QueueRef {
                        server: server_text(&own.server),
                        snd_id: rcv_id,
                    },
                    body: b,
                    sender_key: None,
                    notify: false,
                });
            }
            Output::Event(e) => match e {
                AgentEvent::Confirmation { conn_info } => {
                    confirmation = true;
                    infos.push(conn_info.clone());
                    notices.push(Notice::PeerInfo(conn_info));
                }
                AgentEvent::Info { conn_info } => {
                    infos.push(conn_info.clone());
                    notices.push(Notice::PeerInfo(conn_info));
                }
                AgentEvent::Connected => notices.push(Notice::Connected),
                AgentEvent::Message {
                    msg_id,
                    integrity,
                    body,
                    ..
                } => notices.push(Notice::Message {
                    msg_id,
                    body,
                    integrity,
                }),
                AgentEvent::Receipts(r) => {
                    notices.extend(r.into_iter().map(|r| Notice::Received(r.agent_msg_id)))
                }
                AgentEvent::Duplicate | AgentEvent::RepeatedConfirmation => {}
                AgentEvent::Unsupported(what) => notices.push(Notice::Skipped(what.to_string())),
                AgentEvent::MessageError(e) => {
                    notices.push(Notice::Skipped(format!("message not decrypted: {e}")))
                }
            },
        }
    }
    (outbox, notices, infos, confirmation)
}

impl Agent {
    /// Opens the profile's store, subscribes every stored queue and sends
    /// what the outbox still holds.
    pub async fn open(dir: &Path, opts: AgentOptions) -> Result<Self, RuntimeError> {
        Self::with_store(Store::open(dir)?, opts)
    }

    /// As [`Agent::open`], with a store the caller already opened.
    pub fn with_store(mut store: Store, opts: AgentOptions) -> Result<Self, RuntimeError> {
        store.hold_acks(opts.hold_acks);
        let own_routers = store
            .profile()?
            .map(|p| p.smp_servers)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| ServerAddress::parse(s).ok())
            .collect();
        let (pool, events) = SmpClientPool::new(opts.smp.clone());
        let mut agent = Self {
            store,
            pool: Arc::new(pool),
            events,
            opts,
            ent: os_entropy(),
            queues: HashMap::new(),
            proxies: HashMap::new(),
            own_routers,
            handed: Default::default(),
            sent: Vec::new(),
            sender_keys: Vec::new(),
            conns: HashMap::new(),
            down: HashMap::new(),
            outbox_retry: None,
            acks_due: Vec::new(),
            attempts: tokio::sync::mpsc::unbounded_channel(),
        };
        for (conn, rec) in agent.store.rcv_queues()? {
            let server = parse_server(&rec.server)?;
            let queue = Arc::new(rcv_queue_from(&rec)?);
            agent.queues.insert(
                (rec.server.clone(), rec.rcv_id.clone()),
                Subscribed {
                    conn,
                    server,
                    queue,
                },
            );
        }
        Ok(agent)
    }

    /// Subscribes every queue and runs the outbox; messages waiting in the
    /// queues are processed. The routers are dialled at once, so one that
    /// cannot be reached costs one connect timeout, not one per router;
    /// those are tried again in the background (see [`Agent::next`]).
    pub async fn start(&mut self) -> Result<(), RuntimeError> {
        self.flush_outbox().await?;
        let mut servers: Vec<ServerAddress> = Vec::new();
        for s in self.queues.values() {
            if !servers.contains(&s.server) {
                servers.push(s.server.clone());
            }
        }
        let mut dials = tokio::task::JoinSet::new();
        for server in servers {
            let pool = self.pool.clone();
            dials.spawn(async move {
                let ok = pool.client(&server).await.is_ok();
                (server, ok)
            });
        }
        while let Some(r) = dials.join_next().await {
            let Ok((server, ok)) = r else { continue };
            // Up now, whatever the first outbox run found.
            self.down.remove(&server);
            if !ok || !self.subscribe_all(&server).await? {
                self.mark_down(&server, RETRY_FIRST);
            }
        }
        self.flush_outbox().await
    }

    /// The user's routers, the one new queues go to first.
    pub fn routers(&self) -> &[ServerAddress] {
        &self.own_routers
    }

    /// Replaces the user's routers (kept in the profile). New queues and
    /// private routing use them from now on; existing queues stay where
    /// they are, as in the apps.
    pub fn set_routers(&mut self, list: &[String]) -> Result<(), RuntimeError> {
        let parsed = list
            .iter()
            .map(|s| ServerAddress::parse(s).map_err(|e| RuntimeError::BadRouter(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(RuntimeError::NoRouter);
        }
        let mut profile = self.store.profile()?.ok_or(RuntimeError::NoRouter)?;
        profile.smp_servers = parsed.iter().map(ToString::to_string).collect();
        self.store.set_profile(&profile)?;
        self.own_routers = parsed;
        Ok(())
    }

    /// The routers that cannot be reached now (being retried).
    pub fn unreachable(&self) -> Vec<ServerAddress> {
        let mut v: Vec<_> = self.down.keys().cloned().collect();
        v.sort_by_key(|s| s.to_string());
        v
    }

    /// Subscribes every queue on `server` over the pooled connection and
    /// processes what they hold; false when the connection failed.
    async fn subscribe_all(&mut self, server: &ServerAddress) -> Result<bool, RuntimeError> {
        let keys: Vec<_> = self
            .queues
            .iter()
            .filter(|(_, s)| &s.server == server)
            .map(|(k, _)| k.clone())
            .collect();
        let Ok(client) = self.pool.client(server).await else {
            return Ok(false);
        };
        for key in keys {
            let Some(queue) = self.queues.get(&key).map(|s| s.queue.clone()) else {
                continue;
            };
            match client.subscribe(&queue).await {
                Ok(Some(msg)) => self.process_or_retry_later(&key, msg).await?,
                Ok(None) => {}
                Err(SmpClientError::Closed)
                | Err(SmpClientError::Timeout(_))
                | Err(SmpClientError::Io(_)) => return Ok(false),
                Err(e) => tracing::warn!("subscribing a queue failed: {e}"),
            }
        }
        Ok(true)
    }

    /// Notes `server` as down, to be tried after `after` (or sooner if it
    /// already was). Kept as is when it is already known down.
    fn mark_down(&mut self, server: &ServerAddress, after: Duration) {
        self.proxies
            .retain(|dest, (proxy, _)| dest != server && proxy != server);
        self.down.entry(server.clone()).or_insert_with(|| Down {
            retry_at: Instant::now() + after,
            delay: RETRY_FIRST,
            trying: false,
        });
    }

    /// Starts a background attempt for every down router that is due;
    /// returns when the next one is due.
    fn start_attempts(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (server, d) in self.down.iter_mut() {
            if d.trying {
                continue;
            }
            if d.retry_at <= now {
                d.trying = true;
                let (pool, tx, server) =
                    (self.pool.clone(), self.attempts.0.clone(), server.clone());
                tokio::spawn(async move {
                    let ok = pool.client(&server).await.is_ok();
                    let _ = tx.send((server, ok));
                });
            } else {
                next = Some(next.map_or(d.retry_at, |n| n.min(d.retry_at)));
            }
        }
        next
    }

    /// A background attempt ended: on success the router's queues are
    /// subscribed again and the outbox runs; else the delay doubles.
    async fn attempt_done(&mut self, server: ServerAddress, ok: bool) -> Result<(), RuntimeError> {
        // Out of `down` while its queues are subscribed, so that what they
        // hold can be acknowledged at once.
        let Some(mut d) = self.down.remove(&server) else {
            return Ok(());
        };
        if ok && self.subscribe_all(&server).await? {
            tracing::info!("a router is reachable again");
            return self.run_outbox().await;
        }
        d.trying = false;
        // Up to a fifth less, so that devices that lost the same router do
        // not all come back at the same instant.
        let jitter = d
            .delay
            .mul_f64(f64::from(random_array::<1>()[0]) / 255.0 / 5.0);
        d.retry_at = Instant::now() + d.delay - jitter;
        d.delay = (d.delay * 2).min(RETRY_MAX);
        self.proxies
            .retain(|dest, (proxy, _)| *dest != server && *proxy != server);
        self.down.insert(server, d);
        Ok(())
    }

    /// The pooled connection to `server`, failing at once while it is
    /// known to be down; a failed dial marks it down.
    async fn client(&mut self, server: &ServerAddress) -> Result<SmpClient, SmpClientError> {
        if self.down.contains_key(server) {
            return Err(SmpClientError::Closed);
        }
        match self.pool.client(server).await {
            Ok(c) => Ok(c),
            Err(e) => {
                if matches!(
                    e,
                    SmpClientError::Connect(_)
                        | SmpClientError::Timeout(_)
                        | SmpClientError::Io(_)
                        | SmpClientError::Closed
                        | SmpClientError::Tls(_)
                ) {
                    self.mark_down(server, RETRY_FIRST);
                }
                Err(e)
            }
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// A connection's current state (for status and PQ checks).
    pub fn connection(&self, id: ConnId) -> Result<Connection, RuntimeError> {
        self.load(id)
    }

    fn router(&self, preferred: Option<&ServerAddress>) -> Result<ServerAddress, RuntimeError> {
        preferred
            .cloned()
            .or_else(|| self.first_up())
            .ok_or(RuntimeError::NoRouter)
    }

    async fn new_queue(
        &mut self,
        server: &ServerAddress,
        mode: QueueMode,
    ) -> Result<(QueueAddr, RcvQueue), RuntimeError> {
        let client = self.client(server).await?;
        let q = client
            .create_queue(&CreateQueueOptions {
                mode,
                legacy: self.opts.legacy_queues,
                ..CreateQueueOptions::default()
            })
            .await?;
        Ok((queue_addr(server, &q), q))
    }

    fn remember(
        &mut self,
        conn: ConnId,
        server: &ServerAddress,
        q: RcvQueue,
    ) -> Result<(), RuntimeError> {
        self.store.add_rcv_queue(conn, &record_of(server, &q))?;
        self.queues.insert(
            (server_text(server), q.rcv_id.clone()),
            Subscribed {
                conn,
                server: server.clone(),
                queue: Arc::new(q),
            },
        );
        Ok(())
    }

    /// Creates a queue whose link data `seal` builds from the queue's
    /// address-to-be (no receive ID yet). `None` when the router is too old.
    async fn new_linked_queue<T>(
        &mut self,
        server: &ServerAddress,
        mode: QueueMode,
        seal: impl FnOnce(&mut Self, QueueAddr) -> Result<(T, SealedLink), RuntimeError>,
    ) -> Result<Option<(T, SealedLink, QueueAddr, RcvQueue)>, RuntimeError> {
        let client = self.client(server).await?;
        if self.opts.legacy_queues || client.version() < crate::smp::version::SHORT_LINKS_VERSION {
            return Ok(None);
        }
        let corr_id: [u8; 24] = random_array();
        let pending = QueueAddr {
            server: server.clone(),
            rcv_id: Vec::new(),
            snd_id: NewQueueLink::sender_id(&corr_id),
            mode: Some(mode),
        };
        let (made, sealed) = seal(self, pending)?;
        let q = client
            .create_queue(&CreateQueueOptions {
                mode,
                link: Some(NewQueueLink {
                    corr_id,
                    link_id: sealed.data.link_id.map(|id| id.to_vec()),
                    data: QueueLinkData {
                        fixed: sealed.data.enc_fixed.clone(),
                        user: sealed.data.enc_user.clone(),
                    },
                }),
                ..CreateQueueOptions::default()
            })
            .await?;
        let addr = queue_addr(server, &q);
        if addr.mode != Some(mode) {
            return Err(RuntimeError::Smp(SmpClientError::UnexpectedResponse(
                "IDS with another queue mode than requested",
            )));
        }
        Ok(Some((made, sealed, addr, q)))
    }

    /// Signs and encrypts link data for `req` with a fresh root key.
    fn seal(
        &mut self,
        req: &ConnectionRequest,
        user: &ConnLinkData,
    ) -> Result<SealedLink, RuntimeError> {
        let root = self.ent.key(KeyAlgorithm::Ed25519);
        let (n1, n2) = (self.ent.nonce(), self.ent.nonce());
        let data = seal_link_data(req, user, &root, (&n1, &n2))
            .map_err(|e| RuntimeError::Link(e.to_string()))?;
        Ok(SealedLink { data })
    }

    /// The text of a new short link to `server`, shortened for a preset.
    fn short_link_text(
        server: &ServerAddress,
        link_type: ShortLinkType,
        sealed: &SealedLink,
    ) -> String {
        let mut l = ShortLink {
            scheme: ShortLinkScheme::Server,
            link_type,
            server: server.clone(),
            link_key: sealed.data.link_key,
        };
        l.shorten(&preset_addresses());
        l.to_link_string()
    }

    /// A new one-time invitation link: a short one when
    /// [`AgentOptions::link_data`] is set and the router allows it.
    pub async fn invite(
        &mut self,
        server: Option<&ServerAddress>,
    ) -> Result<(ConnId, String), RuntimeError> {
        let server = self.router(server)?;
        if let Some(user_data) = self.opts.link_data.clone() {
            let pq = self.opts.pq;
            let made = self
                .new_linked_queue(&server, QueueMode::Messaging, |me, pending| {
                    let (conn, req) =
                        Connection::create_short_invitation(pending, pq, &mut me.ent)?;
                    let user = ConnLinkData::Invitation {
                        agent_versions: AGENT_VERSIONS,
                        user_data: UserLinkData(user_data),
                    };
                    let sealed = me.seal(&req, &user)?;
                    Ok((conn, sealed))
                })
                .await?;
            if let Some((mut conn, sealed, addr, q)) = made {
                conn.bind_rcv_id(addr.rcv_id.clone());
                let link_id = q.link_id.clone().unwrap_or_default();
                let text =
                    Self::short_link_text(&server, ShortLinkType::Invitation { link_id }, &sealed);
                let id = self
                    .store
                    .create_connection(None, &conn.encode().map_err(enc)?)?;
                self.store.set_status(id, conn.status())?;
                self.remember(id, &server, q)?;
                return Ok((id, text));
            }
        }
        let (addr, q) = self.new_queue(&server, QueueMode::Messaging).await?;
        let (conn, link) = Connection::create_invitation(addr, self.opts.pq, &mut self.ent)?;
        let text = link
            .to_link_string()
            .map_err(|e| RuntimeError::Link(e.to_string()))?;
        let id = self
            .store
            .create_connection(None, &conn.encode().map_err(enc)?)?;
        self.store.set_status(id, conn.status())?;
        self.remember(id, &server, q)?;
        Ok((id, text))
    }

    /// The profile's long-term contact address, created on first use.
    pub async fn address(
        &mut self,
        server: Option<&ServerAddress>,
    ) -> Result<String, RuntimeError> {
        for c in self.store.connections()? {
            if c.status == ADDRESS_STATUS {
                let a = ContactAddress::decode(&c.state)
                    .map_err(|e| RuntimeError::Corrupt(format!("address: {e}")))?;
                if let (Some(l), true) = (a.short_link(), self.opts.link_data.is_some()) {
                    return Ok(l.to_string());
                }
                return a
                    .link()
                    .to_link_string()
                    .map_err(|e| RuntimeError::Link(e.to_string()));
            }
        }
        let server = self.router(server)?;
        if let Some(user_data) = self.opts.link_data.clone() {
            let made = self
                .new_linked_queue(&server, QueueMode::Contact, |me, pending| {
                    let (a, req) = ContactAddress::create(pending, &mut me.ent);
                    let user = ConnLinkData::Contact {
                        agent_versions: AGENT_VERSIONS,
                        data: UserContactData {
                            direct: true,
                            owners: Vec::new(),
                            relays: Vec::new(),
                            user_data: UserLinkData(user_data),
                        },
                    };
                    let sealed = me.seal(&req, &user)?;
                    Ok((a, sealed))
                })
                .await?;
            if let Some((mut a, sealed, addr, q)) = made {
                a.bind_rcv_id(addr.rcv_id.clone());
                let text = Self::short_link_text(
                    &server,
                    ShortLinkType::Contact(crate::agent::link::ContactType::Contact),
                    &sealed,
                );
                a.set_short_link(text.clone());
                let id = self
                    .store
                    .create_connection(None, &a.encode().map_err(enc)?)?;
                self.store.set_status(id, ADDRESS_STATUS)?;
                self.remember(id, &server, q)?;
                return Ok(text);
            }
        }
        let (addr, q) = self.new_queue(&server, QueueMode::Contact).await?;
        let (a, link) = ContactAddress::create(addr, &mut self.ent);
        let id = self
            .store
            .create_connection(None, &a.encode().map_err(enc)?)?;
        self.store.set_status(id, ADDRESS_STATUS)?;
        self.remember(id, &server, q)?;
        link.to_link_string()
            .map_err(|e| RuntimeError::Link(e.to_string()))
    }

    /// Joins an invitation or asks a contact address for a connection.
    pub async fn connect(
        &mut self,
        link: &str,
        local_name: Option<&str>,
        server: Option<&ServerAddress>,
    ) -> Result<ConnId, RuntimeError> {
        let text = link.trim();
        let (req, secured) = if looks_short(text) {
            let short = ShortLink::parse(text).map_err(|e| RuntimeError::Link(e.to_string()))?;
            self.resolve_short_link(short).await?
        } else {
            let req =
                ConnectionRequest::parse(text).map_err(|e| RuntimeError::Link(e.to_string()))?;
            (req, None)
        };
        let server = self.router(server)?;
        let (addr, q) = self.new_queue(&server, QueueMode::Messaging).await?;
        let (conn, out) = match (&req, &secured) {
            (ConnectionRequest::Invitation { .. }, Some((_, key))) => Connection::join_secured(
                &req,
                addr,
                &self.opts.conn_info,
                self.opts.pq,
                key.clone(),
                &mut self.ent,
            )?,
            (ConnectionRequest::Invitation { .. }, None) => Connection::join(
                &req,
                addr,
                &self.opts.conn_info,
                self.opts.pq,
                &mut self.ent,
            )?,
            (ConnectionRequest::Contact(_), _) => Connection::request_contact(
                &req,
                addr,
                &self.opts.contact_info,
                self.opts.pq,
                &mut self.ent,
            )?,
        };
        let id = self
            .store
            .create_connection(local_name, &conn.encode().map_err(enc)?)?;
        self.remember(id, &server, q)?;
        self.commit(id, conn, None, out)?;
        if let Some((link_key, _)) = secured {
            self.store.forget_short_link_key(&link_key)?;
        }
        self.flush_outbox().await?;
        Ok(id)
    }

    /// Fetches and checks a short link's data: the connection request in
    /// it and, for an invitation, the sender key its queue is now secured
    /// with (with the link key it is kept under until the join is stored).
    async fn resolve_short_link(
        &mut self,
        mut short: ShortLink,
    ) -> Result<(ConnectionRequest, Option<(Vec<u8>, PrivateKey)>), RuntimeError> {
        let mut known = self.own_routers.clone();
        known.extend(preset_addresses());
        if !short.restore_server(&known) {
            return Err(RuntimeError::Link(format!(
                "it names router {} without its identity, and that is not a preset router",
                short.server.hosts()[0]
            )));
        }
        let query = short.query();
        let secured = match query.command {
            LinkQueryCommand::Lget => None,
            LinkQueryCommand::Lkey => {
                let fresh = self.ent.key(KeyAlgorithm::Ed25519).to_der();
                let der = self
                    .store
                    .short_link_sender_key(&short.link_key.0, &fresh)?;
                let key = PrivateKey::from_der(&der)
                    .map_err(|e| RuntimeError::Corrupt(format!("short link key: {e}")))?;
                Some((short.link_key.0.to_vec(), key))
            }
        };
        let answer = self
            .link_request(
                &short.server,
                &query.link_id,
                secured.as_ref().map(|s| &s.1),
            )
            .await;
        let (sender_id, data) = match answer {
            Ok(a) => a,
            Err(
                SmpClientError::Protocol(ErrorType::Auth) | SmpClientError::Relay(ErrorType::Auth),
            ) => {
                return Err(RuntimeError::Link(if short.is_invitation() {
                    "this invitation was used already or deleted".into()
                } else {
                    "this address was deleted".into()
                }));
            }
            Err(e) => return Err(e.into()),
        };
        let resolved = short
            .resolve(&sender_id, &data.fixed, &data.user)
            .map_err(|e| RuntimeError::Link(e.to_string()))?;
        Ok((resolved.fixed.conn_req, secured))
    }

    /// `LGET`, or `LKEY` with `key`, on a link's router; through the
    /// user's router when that is another one, as messages are sent.
    async fn link_request(
        &mut self,
        server: &ServerAddress,
        link_id: &[u8],
        key: Option<&PrivateKey>,
    ) -> Result<(Vec<u8>, QueueLinkData), SmpClientError> {
        match self.proxy_for(server) {
            None => {
                let client = self.client(server).await?;
                match key {
                    Some(k) => client.secure_get_link(link_id, k).await,
                    None => client.get_link(link_id).await,
                }
            }
            Some(proxy) => {
                let client = self.client(&proxy).await?;
                let relay = match self.proxies.get(server) {
                    Some((p, r)) if *p == proxy => r.clone(),
                    _ => {
                        let r = client.proxy_session(server, None).await?;
                        self.proxies
                            .insert(server.clone(), (proxy.clone(), r.clone()));
                        r
                    }
                };
                let r = match key {
                    Some(k) => client.proxy_secure_get_link(&relay, link_id, k).await,
                    None => client.proxy_get_link(&relay, link_id).await,
                };
                if matches!(r, Err(ref e) if !matches!(e, SmpClientError::Relay(_))) {
                    self.proxies.remove(server);
                }
                r
            }
        }
    }

    fn load(&self, id: ConnId) -> Result<Connection, RuntimeError> {
        let c = self
            .store
            .connection(id)?
            .ok_or_else(|| RuntimeError::NoContact(format!("#{}", id.0)))?;
        match self.conns.get(&id) {
            Some((state, conn)) if state.as_slice() == c.state.as_slice() => Ok(conn.clone()),
            _ => decode_connection(&c.state),
        }
    }

    /// [`Agent::load`] for a step: the cached connection is taken out (the
    /// step's commit puts the new one back).
    fn take(&mut self, id: ConnId) -> Result<Connection, RuntimeError> {
        let c = self
            .store
            .connection(id)?
            .ok_or_else(|| RuntimeError::NoContact(format!("#{}", id.0)))?;
        self.take_decoded(id, &c.state)
    }

    fn take_decoded(&mut self, id: ConnId, stored: &[u8]) -> Result<Connection, RuntimeError> {
        match self.conns.remove(&id) {
            Some((state, conn)) if state.as_slice() == stored => Ok(conn),
            _ => decode_connection(stored),
        }
    }

    /// Commits a connection's step: state, processed mark, outbox, notices.
    fn commit(
        &mut self,
        id: ConnId,
        conn: Connection,
        processed: Option<ProcessedMsg>,
        out: Vec<Output>,
    ) -> Result<bool, RuntimeError> {
        self.commit_with(id, conn, processed, out, None)
    }

    /// [`Self::commit`] with one more notice for the application.
    fn commit_with(
        &mut self,
        id: ConnId,
        conn: Connection,
        processed: Option<ProcessedMsg>,
        out: Vec<Output>,
        extra: Option<Notice>,
    ) -> Result<bool, RuntimeError> {
        let (outbox, mut notices, infos, confirmation) = split(conn.own_queue(), out);
        notices.extend(extra);
        let state = conn.encode().map_err(enc)?;
        self.store.commit_step(
            &Commit {
                conn: id,
                state: &state,
                processed,
                outbox,
                inbox: notices.iter().map(Notice::to_item).collect(),
            },
            Some(conn.status()),
            &self.sent,
        )?;
        self.sent.clear();
        debug_assert!(
            Connection::decode(&state).is_ok_and(|d| d == conn),
            "a connection must decode to what was encoded"
        );
        if self.conns.len() >= CONN_CACHE {
            self.conns.clear();
        }
        self.conns.insert(id, (state, conn));
        if let Some(name) = infos.last().and_then(|info| peer_name(info)) {
            let local = self.store.connection(id)?.and_then(|c| c.local_name);
            self.store.set_names(id, local.as_deref(), Some(&name))?;
        }
        Ok(confirmation)
    }

    /// Sends a chat body to a connection; returns its agent message id.
    pub async fn send(&mut self, id: ConnId, body: &[u8]) -> Result<i64, RuntimeError> {
        let mut conn = self.take(id)?;
        let (msg_id, out) = conn.send_message(body, &mut self.ent)?;
        let sent = self.opts.sent_notices.then(|| Notice::Sent {
            msg_id,
            body: body.to_vec(),
        });
        self.commit_with(id, conn, None, out, sent)?;
        self.run_outbox().await?;
        Ok(msg_id)
    }

    /// Sends a receipt for a received message.
    pub async fn receipt(
        &mut self,
        id: ConnId,
        msg_id: i64,
        hash: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let mut conn = self.take(id)?;
        let r = crate::agent::message::AMessageReceipt {
            agent_msg_id: msg_id,
            msg_hash: hash,
            rcpt_info: Vec::new(),
        };
        let out = conn.send_receipts(vec![r], &mut self.ent)?;
        self.commit(id, conn, None, out)?;
        self.run_outbox().await
    }

    /// The next notice for the application: from the inbox, else after
    /// processing what the routers send, until `deadline`. Call
    /// [`Agent::done`] once it is handled.
    pub async fn next(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<(InboxId, ConnId, Notice)>, RuntimeError> {
        loop {
            self.send_due_acks().await?;
            let handed = &self.handed;
            let fresh = self.store.inbox_first(|iid| handed.contains(&iid))?;
            if let Some((iid, conn, item)) = fresh {
                self.handed.insert(iid);
                return Ok(Some((iid, conn, Notice::from_item(&item)?)));
            }
            // About to wait: what was sent is removed for good now.
            self.persist_sent()?;
            let wake = [
                deadline,
                self.start_attempts(),
                self.outbox_retry.map(|(at, _)| at),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => std::future::pending().await,
                }
            };
            enum Woken {
                Event(Option<Box<(ServerAddress, SmpEvent)>>),
                Attempt(ServerAddress, bool),
                Timer,
            }
            let woken = tokio::select! {
                e = self.events.recv() => Woken::Event(e.map(Box::new)),
                Some((s, ok)) = self.attempts.1.recv() => Woken::Attempt(s, ok),
                () = sleep => Woken::Timer,
            };
            match woken {
                Woken::Timer => {
                    let now = Instant::now();
                    if let Some((at, delay)) = self.outbox_retry
                        && at <= now
                    {
                        self.outbox_retry = None;
                        self.run_outbox().await?;
                        if self.outbox_retry.is_some() {
                            let delay = (delay * 2).min(RETRY_MAX);
                            self.outbox_retry = Some((now + delay, delay));
                        }
                    }
                    if deadline.is_some_and(|d| now >= d) {
                        return Ok(None);
                    }
                }
                Woken::Attempt(server, ok) => self.attempt_done(server, ok).await?,
                Woken::Event(None) => return Ok(None),
                Woken::Event(Some(e)) => {
                    let (server, ev) = *e;
                    match ev {
                        // A late reply to an ACK that timed out but reached
                        // the router carries the queue's next message.
                        SmpEvent::Server {
                            entity_id,
                            response: Response::Msg { msg_id, body },
                        }
                        | SmpEvent::LateReply {
                            entity_id,
                            response: Ok(Response::Msg { msg_id, body }),
                        } => {
                            let key = (server_text(&server), entity_id);
                            if self.queues.contains_key(&key) {
                                self.process_or_retry_later(&key, RawMessage { msg_id, body })
                                    .await?;
                            }
                        }
                        SmpEvent::Disconnected => {
                            tracing::info!("a router connection closed; reconnecting");
                            self.mark_down(&server, Duration::ZERO);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Marks a notice as handled. With [`AgentOptions::hold_acks`], the
    /// router message it came from is acknowledged (from the next
    /// [`Agent::next`]) once no other notice of it is open.
    pub fn done(&mut self, id: InboxId) -> Result<(), RuntimeError> {
        self.handed.remove(&id);
        if let Some(p) = self.store.inbox_done_held(id)? {
            self.acks_due.push(p);
        }
        Ok(())
    }

    /// Keeps a notice open (it stays in the store and comes again at the
    /// next start) but lets its router message be acknowledged: for what
    /// the application holds on to for long, such as the parts of a file
    /// description, whose queue would otherwise wait.
    pub fn keep(&mut self, id: InboxId) -> Result<(), RuntimeError> {
        if let Some(p) = self.store.inbox_release(id)? {
            self.acks_due.push(p);
        }
        Ok(())
    }

    /// Sends the `ACK`s the application released; what each returns is
    /// processed. One that fails is sent when the router redelivers the
    /// message (it is recognised as processed and no longer held).
    async fn send_due_acks(&mut self) -> Result<(), RuntimeError> {
        for p in std::mem::take(&mut self.acks_due) {
            let key = (p.server.clone(), p.rcv_id.clone());
            let Some((server, queue)) = self
                .queues
                .get(&key)
                .map(|s| (s.server.clone(), s.queue.clone()))
            else {
                continue;
            };
            if self.down.contains_key(&server) {
                // Sent once the router is back (or, if it redelivers the
                // message first, acknowledged then and refused here).
                self.acks_due.push(p);
                continue;
            }
            let next = match self.client(&server).await {
                Ok(c) => c.ack(&queue, &p.msg_id).await,
                Err(e) => Err(e),
            };
            match next {
                Ok(Some(msg)) => self.process_or_retry_later(&key, msg).await?,
                Ok(None) => {}
                // Refused (e.g. NO_MSG: acknowledged already): done with.
                Err(SmpClientError::Protocol(e)) => {
                    tracing::debug!("a released ACK was refused: {e:?}")
                }
                Err(e) => {
                    tracing::debug!("a released ACK is tried again: {e}");
                    self.acks_due.push(p);
                }
            }
        }
        Ok(())
    }

    /// [`Agent::process`], where a router failure (e.g. one that cannot be
    /// reached while a contact request is accepted) only postpones the
    /// message: it stays unacknowledged and comes again. Store failures
    /// still end the run.
    async fn process_or_retry_later(
        &mut self,
        key: &(String, Vec<u8>),
        msg: RawMessage,
    ) -> Result<(), RuntimeError> {
        match self.process(key, msg).await {
            Err(RuntimeError::Smp(e)) => {
                tracing::warn!("a received message is postponed: {e}");
                Ok(())
            }
            r => r,
        }
    }

    /// One received message: processed and committed, then acknowledged;
    /// the message the ACK returns, if any, is processed next.
    async fn process(
        &mut self,
        key: &(String, Vec<u8>),
        first: RawMessage,
    ) -> Result<(), RuntimeError> {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            let (conn_id, server, queue) = {
                let s = &self.queues[key];
                (s.conn, s.server.clone(), s.queue.clone())
            };
            let processed = ProcessedMsg {
                server: key.0.clone(),
                rcv_id: key.1.clone(),
                msg_id: msg.msg_id.clone(),
            };
            if !self
                .store
                .is_processed(&processed.server, &processed.rcv_id, &processed.msg_id)?
            {
                match queue.decrypt(&msg) {
                    Ok(RcvMsgBody::Message { body, .. }) => {
                        self.handle(conn_id, &body, processed).await?;
                    }
                    // Nothing for the connection: just acknowledge.
                    Ok(RcvMsgBody::Quota { .. }) | Err(_) => {}
                }
            }
            if self.opts.hold_acks && self.store.holds(&key.0, &key.1, &msg.msg_id)? {
                // Acknowledged once the application takes it.
                self.run_outbox().await?;
                break;
            }
            let client = self.client(&server).await?;
            next = client.ack(&queue, &msg.msg_id).await?;
            self.run_outbox().await?;
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        conn_id: ConnId,
        body: &[u8],
        processed: ProcessedMsg,
    ) -> Result<(), RuntimeError> {
        let row = self
            .store
            .connection(conn_id)?
            .ok_or_else(|| RuntimeError::Corrupt("queue of a deleted connection".into()))?;
        if row.status == ADDRESS_STATUS {
            let address = ContactAddress::decode(&row.state)
                .map_err(|e| RuntimeError::Corrupt(format!("address: {e}")))?;
            return self
                .accept_request(conn_id, &address, body, processed)
                .await;
        }
        let mut conn = self.take_decoded(conn_id, &row.state)?;
        match conn.receive(body, &mut self.ent) {
            Ok(mut out) => {
                // Invitations are allowed at once, as the apps do.
                if out
                    .iter()
                    .any(|o| matches!(o, Output::Event(AgentEvent::Confirmation { .. })))
                {
                    out.extend(conn.allow(&self.opts.conn_info, &mut self.ent)?);
                }
                self.commit(conn_id, conn, Some(processed), out)?;
            }
            Err(e) => {
                // Refused without a state change: record it, so a crash
                // does not make us look at it again.
                let note = Output::Event(AgentEvent::Unsupported("refused message"));
                tracing::debug!("message refused: {e}");
                self.commit(conn_id, conn, Some(processed), vec![note])?;
            }
        }
        Ok(())
    }

    /// A contact request on the address: accepted by joining the
    /// requester's invitation on a new connection.
    async fn accept_request(
        &mut self,
        address_id: ConnId,
        address: &ContactAddress,
        body: &[u8],
        processed: ProcessedMsg,
    ) -> Result<(), RuntimeError> {
        let state = address.encode().map_err(enc)?;
        let req = match address.receive(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("contact request refused: {e}");
                self.store.commit(&Commit {
                    conn: address_id,
                    state: &state,
                    processed: Some(processed),
                    outbox: Vec::new(),
                    inbox: Vec::new(),
                })?;
                return Ok(());
            }
        };
        let own = self.router(None)?;
        let (addr, q) = self.new_queue(&own, QueueMode::Messaging).await?;
        let (conn, out) = Connection::join(
            &req.invitation,
            addr,
            &self.opts.conn_info,
            self.opts.pq,
            &mut self.ent,
        )?;
        let id = self
            .store
            .create_connection(None, &conn.encode().map_err(enc)?)?;
        self.remember(id, &own, q)?;
        // The requester's x.contact names it until its x.info arrives.
        let mut out = out;
        out.push(Output::Event(AgentEvent::Info {
            conn_info: req.conn_info.clone(),
        }));
        // One transaction: the new connection's step and the request's
        // "processed" mark, so a crash cannot lose the acceptance.
        self.commit(id, conn, Some(processed), out)?;
        Ok(())
    }

    /// Runs the outbox in order; stops at the first command a router could
    /// not take for a passing reason (kept for later), drops one it refused.
    /// What was sent is removed from the store before this returns.
    pub async fn flush_outbox(&mut self) -> Result<(), RuntimeError> {
        let r = self.run_outbox().await;
        self.persist_sent()?;
        r
    }

    /// Commits the removal of what the router accepted (see `sent`).
    fn persist_sent(&mut self) -> Result<(), RuntimeError> {
        if !self.sent.is_empty() {
            self.store.outbox_done_all(&self.sent)?;
            self.sent.clear();
        }
        Ok(())
    }

    /// [`Agent::flush_outbox`], leaving the removals to the next commit.
    /// A connection whose command must wait (a full queue, a router that
    /// is down) keeps the rest of its commands, in order, for later; other
    /// connections' commands still go.
    async fn run_outbox(&mut self) -> Result<(), RuntimeError> {
        let mut waiting: Vec<ConnId> = Vec::new();
        for (oid, conn, item) in self.store.outbox()? {
            if self.sent.contains(&oid) || waiting.contains(&conn) {
                continue;
            }
            match self.run_op(&item).await {
                Ok(()) => self.sent.push(oid),
                // A full queue takes the message later; a stale session is
                // opened again.
                Err(SmpClientError::Protocol(ErrorType::Quota | ErrorType::Session))
                | Err(SmpClientError::Relay(ErrorType::Quota)) => waiting.push(conn),
                Err(SmpClientError::Protocol(e)) | Err(SmpClientError::Relay(e)) => {
                    tracing::warn!("router refused a command for a connection: {e:?}");
                    self.sent.push(oid);
                }
                Err(e) => {
                    tracing::debug!("a connection's commands wait: {e}");
                    waiting.push(conn);
                }
            }
        }
        if waiting.is_empty() {
            self.outbox_retry = None;
        } else if self.outbox_retry.is_none() {
            self.outbox_retry = Some((Instant::now() + RETRY_FIRST, RETRY_FIRST));
        }
        Ok(())
    }

    /// Takes the results of background connection attempts that have
    /// ended and starts those that are due, without waiting.
    async fn poll_attempts(&mut self) -> Result<(), RuntimeError> {
        while let Ok((server, ok)) = self.attempts.1.try_recv() {
            self.attempt_done(server, ok).await?;
        }
        self.start_attempts();
        Ok(())
    }

    async fn run_op(&mut self, item: &OutboxItem) -> Result<(), SmpClientError> {
        let server = ServerAddress::parse(&item.queue.server)
            .map_err(|_| SmpClientError::UnexpectedResponse("stored router address"))?;
        let key = match &item.sender_key {
            None => None,
            Some(der) => Some(self.sender_key(der).map_err(SmpClientError::from)?),
        };
        let op = match (item.body.split_first(), key) {
            (Some((b'S', rest)), key) => Op::Send(rest, key),
            (Some((b'K', _)), Some(key)) => Op::Skey(key),
            (Some((b'O', rest)), _) => {
                Op::Key(PublicKey::from_der(rest).map_err(SmpClientError::from)?)
            }
            _ => return Err(SmpClientError::UnexpectedResponse("stored command")),
        };
        let snd_id = &item.queue.snd_id;
        match (op, self.proxy_for(&server)) {
            // KEY goes to our own queue, whose id the item holds.
            (Op::Key(k), _) => {
                let (server, queue) = self
                    .queues
                    .get(&(item.queue.server.clone(), snd_id.clone()))
                    .map(|s| (s.server.clone(), s.queue.clone()))
                    .ok_or(SmpClientError::UnexpectedResponse(
                        "KEY for an unknown queue",
                    ))?;
                let client = self.client(&server).await?;
                client.secure_queue(&queue, &k).await
            }
            (Op::Send(body, key), None) => {
                let client = self.client(&server).await?;
                client.send(snd_id, key.as_deref(), item.notify, body).await
            }
            (Op::Skey(key), None) => {
                let client = self.client(&server).await?;
                client.secure_queue_sender(snd_id, &key).await
            }
            (op, Some(proxy)) => {
                let client = self.client(&proxy).await?;
                let relay = match self.proxies.get(&server) {
                    Some((p, r)) if *p == proxy => r.clone(),
                    _ => {
                        let r = client.proxy_session(&server, None).await?;
                        self.proxies
                            .insert(server.clone(), (proxy.clone(), r.clone()));
                        r
                    }
                };
                let r = match op {
                    Op::Send(body, key) => {
                        client
                            .proxy_send(&relay, snd_id, key.as_deref(), item.notify, body)
                            .await
                    }
                    Op::Skey(key) => client.proxy_skey(&relay, snd_id, &key).await,
                    Op::Key(_) => Err(SmpClientError::UnexpectedResponse("KEY through a proxy")),
                };
                if r.is_err() {
                    // A stale session is opened again next time.
                    self.proxies.remove(&server);
                }
                r
            }
        }
    }

    /// A sender key from its DER, parsed once while it is in use.
    fn sender_key(&mut self, der: &[u8]) -> Result<Arc<PrivateKey>, crate::crypto::CryptoError> {
        if let Some((_, k)) = self.sender_keys.iter().find(|(d, _)| d.as_slice() == der) {
            return Ok(k.clone());
        }
        let k = Arc::new(PrivateKey::from_der(der)?);
        if self.sender_keys.len() >= 16 {
            self.sender_keys.remove(0);
        }
        self.sender_keys
            .push((Zeroizing::new(der.to_vec()), k.clone()));
        Ok(k)
    }

    /// The proxy for a destination router: the user's first router that
    /// is up, unless the destination is one of the user's own routers.
    fn proxy_for(&self, dest: &ServerAddress) -> Option<ServerAddress> {
        if !self.opts.private_routing || self.own_routers.iter().any(|r| r == dest) {
            return None;
        }
        self.first_up()
    }

    /// The user's first router not known to be down (else the first).
    fn first_up(&self) -> Option<ServerAddress> {
        self.own_routers
            .iter()
            .find(|r| !self.down.contains_key(*r))
            .or(self.own_routers.first())
            .cloned()
    }

    /// Waits until no outbox item is left or `deadline` passes, retrying.
    pub async fn drain_outbox(&mut self, deadline: Instant) -> Result<bool, RuntimeError> {
        loop {
            self.poll_attempts().await?;
            self.flush_outbox().await?;
            if self.store.outbox()?.is_empty() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The display name in a peer's conn info (`x.info`, or `x.contact` from
/// a requester), if it is chat JSON.
fn peer_name(info: &[u8]) -> Option<String> {
    match crate::chat::ChatMessage::decode(info).ok()?.event {
        crate::chat::ChatEvent::Info(p) => Some(p.display_name),
        crate::chat::ChatEvent::Contact(c) => Some(c.profile.display_name),
        _ => None,
    }
}

fn decode_connection(state: &[u8]) -> Result<Connection, RuntimeError> {
    Connection::decode(state).map_err(|e| RuntimeError::Corrupt(format!("connection: {e}")))
}

fn enc(e: crate::encoding::EncodeError) -> RuntimeError {
    RuntimeError::Corrupt(format!("cannot encode state: {e}"))
}

/// The connection layer's view of a queue the router just created.
fn queue_addr(server: &ServerAddress, q: &RcvQueue) -> QueueAddr {
    QueueAddr {
        server: server.clone(),
        rcv_id: q.rcv_id.clone(),
        snd_id: q.snd_id.clone(),
        mode: q.queue_mode,
    }
}

/// Link data sealed for a new queue.
struct SealedLink {
    data: crate::agent::link::SealedLinkData,
}

/// A short link has a one-letter type after the host (`/i#`, `/a#` …),
/// a full one a word (`/invitation#`, `/contact#`).
fn looks_short(link: &str) -> bool {
    let rest = link.strip_prefix("simplex:").or_else(|| {
        link.strip_prefix("https://")
            .and_then(|r| r.find('/').map(|i| &r[i..]))
    });
    rest.and_then(|r| r.strip_prefix('/'))
        .is_some_and(|r| (r.len() > 1 && r.as_bytes()[1] == b'#') || r.get(1..3) == Some("/#"))
}

/// The preset routers' addresses: shortened links to them name only the host.
fn preset_addresses() -> Vec<ServerAddress> {
    crate::smp::presets::preset_routers()
        .into_iter()
        .filter_map(|r| r.address)
        .collect()
}
