//! Command semantics: verification with the constant-time AUTH rule,
//! then the reference's processing of each command (§7.2 of the shared SMP
//! notes), all under one state lock so that delivery marks, quota and
//! subscriptions change atomically. Message encryption for `MSG` happens
//! after the lock is released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::crypto::random_array;
use smp_core::crypto::secretbox::CbNonce;
use smp_core::smp::command::{NewQueue, sender_id_for_corr_id};
use smp_core::smp::error::{BrokerError, CommandError, ProxyError, TransportError};
use smp_core::smp::message::{RcvMsgBody, encrypt_rcv_msg};
use smp_core::smp::proxy::{
    FwdResponse, decrypt_command, encrypt_response, unwrap_forward, wrap_response,
};
use smp_core::smp::store_log::{EntityStatus, QueueLink, QueueRec, StoreLogRecord, StoredMessage};
use smp_core::smp::transmission::{
    ServerTransmission, decode_command_transmission, dummy_verify, encode_response_transmission,
    verify_auth,
};
use smp_core::smp::version::{self, SUPPORTED_RANGE, Version};
use smp_core::smp::{Command, ErrorType, QueueIds, QueueMode, QueueReqData, Response};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::persist::Persistence;
use crate::stats::Stats;
use crate::store::{self, ID_SIZE, Id, Party, QueueStore, WriteOutcome};

/// A group of transmissions for one connection's writer. A group is packed
/// into as few blocks as fit; on v6/v7 sessions it is never merged with
/// another group, so unrelated events reach old clients one per block.
pub struct Outgoing {
    pub transmissions: Vec<Vec<u8>>,
    /// Held until written: a client that sends commands without reading the
    /// answers runs out of permits and is no longer read (backpressure, as
    /// the reference's bounded send queue).
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Outgoing {
    pub fn event(transmissions: Vec<Vec<u8>>) -> Self {
        Self {
            transmissions,
            permit: None,
        }
    }
}

pub type Outbox = mpsc::UnboundedSender<Outgoing>;

/// Response groups a connection may have waiting for its writer (`tbqSize`).
pub const REPLY_QUEUE: usize = 128;

/// What other connections need to reach a client.
#[derive(Debug)]
pub struct ClientRef {
    pub id: u64,
    pub version: Version,
    pub session_id: Vec<u8>,
    pub outbox: Outbox,
    /// Proxied commands (PRXY/PFWD) this client may have in flight
    /// (`client_concurrency`).
    pub proxy_slots: Arc<tokio::sync::Semaphore>,
    /// `MSG` deliveries waiting for this client's writer
    /// ([`MAX_QUEUED_DELIVERIES`]): a subscriber that does not read holds
    /// this many blocks at most, whatever its subscriptions.
    pub delivery_slots: Arc<tokio::sync::Semaphore>,
    /// Queues whose next message found no slot: delivered when the writer
    /// frees one. Only touched with a slot decision, under this lock.
    pub deferred: Mutex<std::collections::VecDeque<Id>>,
}

/// `MSG` events one connection may have queued for its writer.
pub const MAX_QUEUED_DELIVERIES: usize = 64;

impl ClientRef {
    fn encode(&self, corr_id: &[u8], entity: &[u8], r: &Response) -> Option<Vec<u8>> {
        encode_response_transmission(self.version, &self.session_id, corr_id, entity, r).ok()
    }

    pub fn new(id: u64, version: Version, session_id: Vec<u8>, outbox: Outbox) -> Self {
        Self {
            id,
            version,
            session_id,
            outbox,
            proxy_slots: Arc::new(tokio::sync::Semaphore::new(
                crate::proxy::DEFAULT_CLIENT_CONCURRENCY,
            )),
            delivery_slots: Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_DELIVERIES)),
            deferred: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Queues one event in a block of its own.
    pub fn send_event(&self, entity: &[u8], r: &Response) {
        if let Some(t) = self.encode(b"", entity, r) {
            let _ = self.outbox.send(Outgoing::event(vec![t]));
        }
    }

    /// Queues a `MSG`; its slot is given back once the writer sent it.
    pub fn send_delivery(&self, entity: &[u8], mut m: PendingMsg) {
        let slot = m.slot.take();
        if let Some(t) = self.encode(b"", entity, &m.seal()) {
            let _ = self.outbox.send(Outgoing {
                transmissions: vec![t],
                permit: slot,
            });
        }
    }

    /// A delivery slot, or `rid` remembered for later. Called under the
    /// state lock, so that the queue's delivery mark is set only with a slot.
    fn slot_or_defer(&self, rid: &Id) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        match self.delivery_slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                if !deferred.contains(rid) {
                    deferred.push_back(rid.clone());
                }
                None
            }
        }
    }

    /// Whether deliveries wait for a slot.
    pub fn has_deferred(&self) -> bool {
        !self
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// A message to deliver, encrypted for the recipient once the lock is gone.
#[derive(Debug)]
pub struct PendingMsg {
    rcv_dh_secret: Zeroizing<[u8; 32]>,
    msg: StoredMessage,
    /// The subscriber's delivery slot it holds, if it is an event.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl PendingMsg {
    fn new(rec: &QueueRec, msg: &StoredMessage) -> Self {
        Self {
            rcv_dh_secret: Zeroizing::new(rec.rcv_dh_secret),
            msg: msg.clone(),
            slot: None,
        }
    }

    /// `encryptMsg`: the `MSG` response.
    pub fn seal(&self) -> Response {
        let (msg_id, body) = match &self.msg {
            StoredMessage::Message {
                msg_id,
                msg_ts,
                notification,
                body,
            } => (
                msg_id,
                RcvMsgBody::Message {
                    ts: *msg_ts,
                    notification: *notification,
                    body: body.clone(),
                },
            ),
            StoredMessage::Quota { msg_id, msg_ts } => (msg_id, RcvMsgBody::Quota { ts: *msg_ts }),
        };
        match encrypt_rcv_msg(&self.rcv_dh_secret, msg_id, &body) {
            Ok(b) => Response::Msg {
                msg_id: msg_id.clone(),
                body: b,
            },
            Err(_) => Response::Err(ErrorType::Internal),
        }
    }
}

/// A reply body: a plain response or a message still to encrypt.
#[derive(Debug)]
pub enum Out {
    Resp(Response),
    Msg(PendingMsg),
}

impl Out {
    pub fn into_response(self) -> Response {
        match self {
            Self::Resp(r) => r,
            Self::Msg(m) => m.seal(),
        }
    }
}

impl From<Response> for Out {
    fn from(r: Response) -> Self {
        Self::Resp(r)
    }
}

fn err(e: ErrorType) -> Out {
    Out::Resp(Response::Err(e))
}

/// The active subscriber of a queue.
#[derive(Debug)]
pub struct Sub {
    pub client: Arc<ClientRef>,
    /// The message sent and not yet acknowledged.
    pub delivered: Option<Id>,
}

#[derive(Debug, Default)]
pub struct State {
    pub store: QueueStore,
    pub subs: HashMap<Id, Sub>,
    /// Notifier ID → the connection subscribed with NSUB (a push server).
    pub ntf_subs: HashMap<Id, Arc<ClientRef>>,
    /// Notifications for notifiers nobody subscribes yet (newest kept).
    pub ntf_pending: HashMap<Id, std::collections::VecDeque<PendingNtf>>,
}

/// A sealed `NMSG` waiting for its notifier to subscribe.
#[derive(Debug, Clone)]
pub struct PendingNtf {
    pub msg_id: Vec<u8>,
    pub ts: i64,
    pub nonce: [u8; 24],
    pub enc_meta: Vec<u8>,
}

/// Notifications kept per notifier while nobody subscribes.
pub const MAX_PENDING_NTFS: usize = 128;
/// Undelivered notifications expire after `expire_ntfs_hours` (24).
pub const NTF_TTL_SECS: i64 = 24 * 3600;

/// Router-wide settings the command handler needs.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `[AUTH] new_queues`.
    pub allow_new_queues: bool,
    /// `[AUTH] create_password`, for `NEW` and `PRXY`.
    pub create_password: Option<Zeroizing<Vec<u8>>>,
}

/// The per-connection state a command sees.
pub struct Conn {
    pub me: Arc<ClientRef>,
    /// Per-connection X25519 key (signed in the server hello).
    pub server_key: PrivateKey,
    /// X25519(client hello key, server key): proxy layer of `RFWD`.
    pub sess_secret: Option<Zeroizing<[u8; 32]>>,
    /// Queues read with GET on this connection, with the message delivered.
    pub gets: HashMap<Id, Option<Id>>,
}

/// One response (or `MSG`) for a transmission, plus events it causes.
pub struct Outcome {
    pub corr_id: Vec<u8>,
    pub entity_id: Vec<u8>,
    pub out: Out,
    /// A `MSG` event for this connection after the response (after `SUB`).
    pub follow: Option<(Id, PendingMsg)>,
    /// Events for other connections.
    pub events: Vec<(Arc<ClientRef>, Id, Out)>,
}

pub struct Router {
    pub state: Mutex<State>,
    pub policy: Policy,
    /// Journal size that triggers its rewrite ([`crate::persist::JOURNAL_COMPACT_BYTES`]).
    pub journal_compact_bytes: u64,
    pub persist: Persistence,
    pub stats: Stats,
    next_client: AtomicU64,
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn auth_err() -> ErrorType {
    ErrorType::Auth
}

/// `withQueue_` refuses blocked queues with their blocking info.
fn not_blocked(rec: &QueueRec) -> Result<(), ErrorType> {
    match rec.status {
        EntityStatus::Blocked(info) => Err(ErrorType::Blocked(info)),
        _ => Ok(()),
    }
}

impl Router {
    pub fn new(state: State, policy: Policy, persist: Persistence, stats: Stats) -> Self {
        Self {
            state: Mutex::new(state),
            policy,
            journal_compact_bytes: crate::persist::JOURNAL_COMPACT_BYTES,
            persist,
            stats,
            next_client: AtomicU64::new(1),
        }
    }

    /// How many connections finished their handshake so far.
    pub fn connections_seen(&self) -> u64 {
        self.next_client.load(Ordering::Relaxed) - 1
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; keep serving with the
        // state as it is rather than taking every connection down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers what waited for `client`'s slots, as slots allow: each
    /// queue still subscribed by it, with nothing delivered, gets its
    /// oldest message.
    pub fn deliver_deferred(&self, client: &ClientRef) {
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            let mut deferred = client.deferred.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(rid) = deferred.front().cloned() {
                let Some(sub) = st.subs.get_mut(&rid) else {
                    deferred.pop_front();
                    continue;
                };
                let head = st.store.get(&rid).and_then(|q| {
                    q.msgs
                        .front()
                        .map(|m| (store::msg_id(m).to_vec(), PendingMsg::new(&q.rec, m)))
                });
                if sub.client.id != client.id || sub.delivered.is_some() || head.is_none() {
                    deferred.pop_front();
                    continue;
                }
                let Ok(slot) = client.delivery_slots.clone().try_acquire_owned() else {
                    break;
                };
                deferred.pop_front();
                let (id, mut m) = head.expect("checked above");
                sub.delivered = Some(id);
                m.slot = Some(slot);
                out.push((rid, m));
            }
        }
        for (rid, m) in out {
            client.send_delivery(&rid, m);
        }
    }

    /// Forgets a closed connection's subscriptions.
    pub fn client_gone(&self, client_id: u64) {
        let mut st = self.lock();
        st.subs.retain(|_, s| s.client.id != client_id);
        st.ntf_subs.retain(|_, c| c.id != client_id);
    }

    /// Verifies and runs one decoded command transmission at version `v`
    /// (the session's, or the forwarded one inside `RFWD`).
    pub fn process(&self, conn: &mut Conn, t: &ServerTransmission<'_>, v: Version) -> Outcome {
        let corr_id = t.raw.corr_id.to_vec();
        let entity_id = t.raw.entity_id.to_vec();
        let mut o = Outcome {
            corr_id,
            entity_id,
            out: Out::Resp(Response::Ok),
            follow: None,
            events: Vec::new(),
        };
        if t.service_sig.is_some() {
            // No service sessions here (client certificates are not requested).
            o.out = err(ErrorType::Service);
            return o;
        }
        o.out = match &t.command {
            Command::Ping => Out::Resp(Response::Pong),
            Command::New(n) => self.new_queue(conn, t, n, &mut o),
            // Service subscriptions need service certificates, which are
            // never requested here.
            Command::Nsubs | Command::Subs => err(ErrorType::Cmd(CommandError::Prohibited)),
            Command::Rfwd(_) | Command::Prxy { .. } | Command::Pfwd { .. } => {
                // Handled by the connection (async proxy work, relay layer).
                err(ErrorType::Cmd(CommandError::Prohibited))
            }
            _ => self.queue_command(conn, t, v, &mut o),
        };
        o
    }

    fn verify_with(
        conn: &Conn,
        t: &ServerTransmission<'_>,
        keys: &[&PublicKey],
    ) -> Result<(), ErrorType> {
        let auth = t.auth.as_ref();
        let mut ok = false;
        for k in keys {
            // Every key is tried so the time does not depend on which matched.
            ok |= verify_auth(auth, &t.signed, t.raw.corr_id, k, Some(&conn.server_key));
        }
        if keys.is_empty() {
            dummy_verify(auth, &t.signed, t.raw.corr_id, Some(&conn.server_key));
        }
        if ok { Ok(()) } else { Err(auth_err()) }
    }

    fn dummy(conn: &Conn, t: &ServerTransmission<'_>) -> ErrorType {
        if t.auth.is_some() {
            dummy_verify(
                t.auth.as_ref(),
                &t.signed,
                t.raw.corr_id,
                Some(&conn.server_key),
            );
        }
        auth_err()
    }

    fn new_queue(
        &self,
        conn: &mut Conn,
        t: &ServerTransmission<'_>,
        n: &NewQueue,
        o: &mut Outcome,
    ) -> Out {
        let allowed = self.policy.allow_new_queues
            && match &self.policy.create_password {
                None => true,
                Some(p) => n.basic_auth.as_ref().is_some_and(|a| a.matches(p)),
            };
        let verified = Self::verify_with(conn, t, &[&n.rcv_auth_key]);
        if !allowed || verified.is_err() {
            return err(auth_err());
        }
        if let Some(sid) = n.queue_req_data.as_ref().and_then(QueueReqData::sender_id)
            && sid != sender_id_for_corr_id(t.raw.corr_id)
        {
            return err(ErrorType::Cmd(CommandError::Prohibited));
        }
        let server_dh = PrivateKey::generate(KeyAlgorithm::X25519);
        let Ok(secret) = server_dh.dh(&n.rcv_dh_key) else {
            return err(ErrorType::Internal);
        };
        let queue_mode = n.queue_req_data.as_ref().map(QueueReqData::mode);
        let mut st = self.lock();
        for _ in 0..3 {
            let rid = random_array::<ID_SIZE>().to_vec();
            let (sender_id, link) = match &n.queue_req_data {
                Some(QueueReqData::Messaging(Some((sid, data)))) => (
                    sid.clone(),
                    Some(QueueLink {
                        link_id: random_array::<ID_SIZE>().to_vec(),
                        data: data.clone(),
                    }),
                ),
                Some(QueueReqData::Contact(Some((lid, sid, data)))) => (
                    sid.clone(),
                    Some(QueueLink {
                        link_id: lid.clone(),
                        data: data.clone(),
                    }),
                ),
                _ => (random_array::<ID_SIZE>().to_vec(), None),
            };
            let client_ids = n
                .queue_req_data
                .as_ref()
                .and_then(|q| q.sender_id())
                .is_some();
            let rec = QueueRec {
                recipient_keys: vec![n.rcv_auth_key.clone()],
                rcv_dh_secret: *secret,
                sender_id: sender_id.clone(),
                sender_key: None,
                queue_mode,
                link: link.clone(),
                notifier: None,
                updated_at: Some(day_start(now_secs())),
                status: EntityStatus::Active,
                rcv_service_id: None,
            };
            let record = StoreLogRecord::CreateQueue {
                rid: rid.clone(),
                queue: Box::new(rec.clone()),
            };
            if !st.store.add(rid.clone(), rec) {
                if client_ids {
                    // A client-chosen ID that is taken: the reference's DUPLICATE.
                    return err(auth_err());
                }
                continue;
            }
            if let Err(e) = self.persist.log(&record) {
                st.store.delete(&rid);
                return err(e);
            }
            self.stats.queue_created();
            let ntf_creds = match &n.ntf_creds {
                Some(c) => match self.add_notifier(&mut st, &rid, c, o) {
                    Ok((notifier_id, dh_key)) => Some(smp_core::smp::response::ServerNtfCreds {
                        notifier_id,
                        dh_key,
                    }),
                    Err(e) => return err(e),
                },
                None => None,
            };
            if n.sub_mode == smp_core::smp::SubscriptionMode::Subscribe {
                st.subs.insert(
                    rid.clone(),
                    Sub {
                        client: conn.me.clone(),
                        delivered: None,
                    },
                );
            }
            o.entity_id.clear();
            return Out::Resp(Response::Ids(QueueIds {
                rcv_id: rid,
                snd_id: sender_id,
                server_dh_key: server_dh.public_key(),
                queue_mode,
                link_id: link.map(|l| l.link_id),
                service_id: None,
                ntf_creds,
            }));
        }
        err(ErrorType::Internal)
    }

    /// Commands on an existing queue: resolve, verify, then execute.
    fn queue_command(
        &self,
        conn: &mut Conn,
        t: &ServerTransmission<'_>,
        v: Version,
        o: &mut Outcome,
    ) -> Out {
        let party = match &t.command {
            Command::Send { .. } | Command::Skey(_) => Party::Sender,
            Command::Lkey(_) | Command::Lget => Party::Link,
            Command::Nsub => Party::Notifier,
            _ => Party::Recipient,
        };
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(rid) = st.store.resolve(party, t.raw.entity_id).cloned() else {
            return err(Self::dummy(conn, t));
        };
        let Some(q) = st.store.get(&rid) else {
            return err(Self::dummy(conn, t));
        };
        let rec = &q.rec;
        let verified = match &t.command {
            Command::Send { .. } => match &rec.sender_key {
                Some(k) => Self::verify_with(conn, t, &[k]),
                None if t.auth.is_none() => Ok(()),
                None => Err(Self::dummy(conn, t)),
            },
            Command::Skey(k) | Command::Lkey(k) => Self::verify_with(conn, t, &[k]),
            Command::Lget => Ok(()),
            Command::Nsub => match &rec.notifier {
                Some(n) => Self::verify_with(conn, t, &[&n.notifier_key]),
                None => Err(Self::dummy(conn, t)),
            },
            _ => {
                let keys: Vec<&PublicKey> = rec.recipient_keys.iter().collect();
                Self::verify_with(conn, t, &keys)
            }
        };
        if let Err(e) = verified {
            return err(e);
        }
        if !matches!(
            t.command,
            Command::Send { .. } | Command::Off | Command::Del
        ) && let Err(e) = self.touch(st, &rid)
        {
            return err(e);
        }
        let r = match &t.command {
            Command::Send { notification, body } => self.send(st, &rid, v, *notification, body, o),
            Command::Sub => self.subscribe(st, conn, &rid, o),
            Command::Get => self.get(st, conn, &rid),
            Command::Ack(id) => self.ack(st, conn, &rid, id),
            Command::Key(k) => self.secure(st, &rid, k, false),
            Command::Skey(k) => self.secure(st, &rid, k, true),
            Command::Lkey(k) => self
                .secure(st, &rid, k, true)
                .and_then(|_| link_reply(st, &rid, false)),
            Command::Lget => link_reply(st, &rid, true),
            Command::Lset { link_id, data } => self.set_link(st, &rid, link_id, data),
            Command::Ldel => self.delete_link(st, &rid),
            Command::Rkey(keys) => self.set_recipient_keys(st, &rid, keys),
            Command::Off => self.suspend(st, &rid),
            Command::Nkey(creds) => self.add_notifier(st, &rid, creds, o).map(|(nid, key)| {
                Out::Resp(Response::Nid {
                    notifier_id: nid,
                    server_ntf_dh_key: key,
                })
            }),
            Command::Ndel => self.delete_notifier(st, &rid, o),
            Command::Nsub => self.subscribe_notifier(st, conn, &rid, o),
            Command::Del => self.delete(st, conn, &rid, o),
            Command::Que => Ok(Out::Resp(Response::Info(queue_info(st, &rid)))),
            _ => Err(ErrorType::Cmd(CommandError::Prohibited)),
        };
        r.unwrap_or_else(err)
    }

    /// `withQueue_`: records the day a queue was last used, at most once a
    /// day (`TIME`), as the reference does for its inactive-queue statistics.
    fn touch(&self, st: &mut State, rid: &Id) -> Result<(), ErrorType> {
        let today = day_start(now_secs());
        let q = st.store.get_mut(rid).ok_or(auth_err())?;
        if q.rec.updated_at.is_some_and(|d| d >= today) {
            return Ok(());
        }
        self.persist.log(&StoreLogRecord::UpdateTime {
            rid: rid.clone(),
            date: today,
        })?;
        q.rec.updated_at = Some(today);
        Ok(())
    }

    fn send(
        &self,
        st: &mut State,
        rid: &Id,
        v: Version,
        notification: bool,
        body: &[u8],
        o: &mut Outcome,
    ) -> Result<Out, ErrorType> {
        if body.len() > version::max_message_length(v) {
            return Err(ErrorType::LargeMsg);
        }
        let q = st.store.get(rid).ok_or(auth_err())?;
        match q.rec.status {
            EntityStatus::Off => return Err(auth_err()),
            EntityStatus::Blocked(info) => return Err(ErrorType::Blocked(info)),
            EntityStatus::Active => {}
        }
        // A secured one-time queue's link data goes with the first SEND, as
        // in the reference (before the write, whatever its outcome).
        if q.rec.link.is_some() && store::is_secured_msg_queue(&q.rec) {
            self.persist
                .log(&StoreLogRecord::DeleteLink { rid: rid.clone() })?;
            st.store.set_link(rid, None);
        }
        let msg = StoredMessage::Message {
            msg_id: random_array::<ID_SIZE>().to_vec(),
            msg_ts: now_secs(),
            notification,
            body: body.to_vec(),
        };
        match st.store.write_msg(rid, msg.clone()) {
            None => Err(auth_err()),
            Some(WriteOutcome::Quota(marker)) => {
                if let Some(m) = marker {
                    self.persist.write_msg(rid, &m)?;
                }
                Err(ErrorType::Quota)
            }
            Some(WriteOutcome::Stored { was_empty }) => {
                if let Err(e) = self.persist.write_msg(rid, &msg) {
                    st.store.delete_tail(rid);
                    return Err(e);
                }
                self.stats.msg_sent();
                self.persist
                    .maybe_compact_journal(&st.store, self.journal_compact_bytes);
                if notification {
                    self.notify(st, rid, &msg, o);
                }
                if was_empty
                    && let Some(sub) = st.subs.get_mut(rid)
                    && sub.delivered.is_none()
                    && let Some(slot) = sub.client.slot_or_defer(rid)
                {
                    let q = st.store.get(rid).ok_or(auth_err())?;
                    sub.delivered = Some(store::msg_id(&msg).to_vec());
                    let mut m = PendingMsg::new(&q.rec, &msg);
                    m.slot = Some(slot);
                    o.events
                        .push((sub.client.clone(), rid.clone(), Out::Msg(m)));
                }
                Ok(Out::Resp(Response::Ok))
            }
        }
    }

    fn subscribe(
        &self,
        st: &mut State,
        conn: &mut Conn,
        rid: &Id,
        o: &mut Outcome,
    ) -> Result<Out, ErrorType> {
        let q = st.store.get(rid).ok_or(auth_err())?;
        not_blocked(&q.rec)?;
        if conn.gets.contains_key(rid) {
            return Err(ErrorType::Cmd(CommandError::Prohibited));
        }
        let head = q.msgs.front().cloned();
        let rec = q.rec.clone();
        match st.subs.get_mut(rid) {
            Some(s) if s.client.id == conn.me.id => {}
            prev => {
                if let Some(p) = prev {
                    o.events
                        .push((p.client.clone(), rid.clone(), Out::Resp(Response::End)));
                }
                st.subs.insert(
                    rid.clone(),
                    Sub {
                        client: conn.me.clone(),
                        delivered: None,
                    },
                );
            }
        }
        if let (Some(m), Some(s)) = (head, st.subs.get_mut(rid))
            && let Some(slot) = conn.me.slot_or_defer(rid)
        {
            s.delivered = Some(store::msg_id(&m).to_vec());
            let mut p = PendingMsg::new(&rec, &m);
            p.slot = Some(slot);
            o.follow = Some((rid.clone(), p));
        }
        Ok(Out::Resp(Response::Sok(None)))
    }

    fn get(&self, st: &mut State, conn: &mut Conn, rid: &Id) -> Result<Out, ErrorType> {
        let q = st.store.get(rid).ok_or(auth_err())?;
        not_blocked(&q.rec)?;
        if st.subs.get(rid).is_some_and(|s| s.client.id == conn.me.id) {
            return Err(ErrorType::Cmd(CommandError::Prohibited));
        }
        let head = q.msgs.front();
        conn.gets
            .insert(rid.clone(), head.map(|m| store::msg_id(m).to_vec()));
        Ok(match head {
            Some(m) => Out::Msg(PendingMsg::new(&q.rec, m)),
            None => Out::Resp(Response::Ok),
        })
    }

    fn ack(&self, st: &mut State, conn: &mut Conn, rid: &Id, id: &[u8]) -> Result<Out, ErrorType> {
        let q = st.store.get(rid).ok_or(auth_err())?;
        not_blocked(&q.rec)?;
        let sub_mode = st.subs.get(rid).is_some_and(|s| s.client.id == conn.me.id);
        let delivered = if sub_mode {
            st.subs.get_mut(rid).map(|s| &mut s.delivered)
        } else {
            conn.gets.get_mut(rid)
        };
        let Some(delivered) = delivered else {
            return Err(ErrorType::NoMsg);
        };
        // An empty ID matches whatever was delivered (the reference's quirk
        // that SimpleGo's "wildcard ACK" relies on); it deletes nothing.
        match delivered {
            Some(d) if id.is_empty() || d.as_slice() == id => {}
            _ => return Err(ErrorType::NoMsg),
        }
        *delivered = None;
        if st.store.delete_head_if(rid, id) {
            self.persist.ack_msg(rid, id)?;
            self.stats.msg_received();
        }
        if !sub_mode {
            return Ok(Out::Resp(Response::Ok));
        }
        let q = st.store.get(rid).ok_or(auth_err())?;
        match q.msgs.front() {
            Some(m) => {
                let p = PendingMsg::new(&q.rec, m);
                if let Some(s) = st.subs.get_mut(rid) {
                    s.delivered = Some(store::msg_id(m).to_vec());
                }
                Ok(Out::Msg(p))
            }
            None => Ok(Out::Resp(Response::Ok)),
        }
    }

    fn secure(
        &self,
        st: &mut State,
        rid: &Id,
        k: &PublicKey,
        by_sender: bool,
    ) -> Result<Out, ErrorType> {
        let q = st.store.get_mut(rid).ok_or(auth_err())?;
        not_blocked(&q.rec)?;
        if by_sender && q.rec.queue_mode != Some(QueueMode::Messaging) {
            return Err(auth_err());
        }
        match &q.rec.sender_key {
            Some(existing) if existing == k => Ok(Out::Resp(Response::Ok)),
            Some(_) => Err(auth_err()),
            None => {
                self.persist.log(&StoreLogRecord::SecureQueue {
                    rid: rid.clone(),
                    sender_key: k.clone(),
                })?;
                q.rec.sender_key = Some(k.clone());
                self.stats.queue_secured();
                Ok(Out::Resp(Response::Ok))
            }
        }
    }

    /// `NKEY` (and notifier credentials in `NEW`): new notifier ID and
    /// server DH key each time; a previous notifier's subscriber is told.
    fn add_notifier(
        &self,
        st: &mut State,
        rid: &Id,
        creds: &smp_core::smp::command::NewNtfCreds,
        o: &mut Outcome,
    ) -> Result<(Id, PublicKey), ErrorType> {
        not_blocked(&st.store.get(rid).ok_or(auth_err())?.rec)?;
        let server_dh = PrivateKey::generate(KeyAlgorithm::X25519);
        let secret = server_dh
            .dh(&creds.dh_key)
            .map_err(|_| ErrorType::Internal)?;
        for _ in 0..3 {
            let nid = random_array::<ID_SIZE>().to_vec();
            if st.store.id_used(&nid) {
                continue;
            }
            let ntf = smp_core::smp::store_log::NtfCreds {
                notifier_id: nid.clone(),
                notifier_key: creds.auth_key.clone(),
                rcv_ntf_dh_secret: *secret,
                ntf_service_id: None,
            };
            self.persist.log(&StoreLogRecord::AddNotifier {
                rid: rid.clone(),
                creds: ntf.clone(),
            })?;
            self.drop_notifier_sub(st, rid, o);
            st.store.set_notifier(rid, Some(ntf));
            return Ok((nid, server_dh.public_key()));
        }
        Err(ErrorType::Internal)
    }

    /// Forgets the queue's current notifier subscription and pending
    /// notifications; the push server is told the notifier is gone.
    fn drop_notifier_sub(&self, st: &mut State, rid: &Id, o: &mut Outcome) {
        let Some(n) = st.store.get(rid).and_then(|q| q.rec.notifier.as_ref()) else {
            return;
        };
        let nid = n.notifier_id.clone();
        st.ntf_pending.remove(&nid);
        if let Some(c) = st.ntf_subs.remove(&nid) {
            o.events.push((c, nid, Out::Resp(Response::Deld)));
        }
    }

    fn delete_notifier(&self, st: &mut State, rid: &Id, o: &mut Outcome) -> Result<Out, ErrorType> {
        let q = st.store.get(rid).ok_or(auth_err())?;
        not_blocked(&q.rec)?;
        if q.rec.notifier.is_some() {
            self.persist
                .log(&StoreLogRecord::DeleteNotifier { rid: rid.clone() })?;
            self.drop_notifier_sub(st, rid, o);
            st.store.set_notifier(rid, None);
        }
        Ok(Out::Resp(Response::Ok))
    }

    /// `NSUB`: one subscriber per notifier (the previous gets `END`);
    /// notifications that waited are sent now.
    fn subscribe_notifier(
        &self,
        st: &mut State,
        conn: &Conn,
        rid: &Id,
        o: &mut Outcome,
    ) -> Result<Out, ErrorType> {
        let q = st.store.get(rid).ok_or(auth_err())?;
        let nid = q
            .rec
            .notifier
            .as_ref()
            .ok_or(auth_err())?
            .notifier_id
            .clone();
        if let Some(prev) = st.ntf_subs.insert(nid.clone(), conn.me.clone())
            && prev.id != conn.me.id
        {
            o.events.push((prev, nid.clone(), Out::Resp(Response::End)));
        }
        let cutoff = now_secs() - NTF_TTL_SECS;
        for n in st.ntf_pending.remove(&nid).unwrap_or_default() {
            if n.ts >= cutoff {
                o.events.push((
                    conn.me.clone(),
                    nid.clone(),
                    Out::Resp(Response::Nmsg {
                        nonce: n.nonce,
                        enc_meta: n.enc_meta,
                    }),
                ));
            }
        }
        Ok(Out::Resp(Response::Sok(None)))
    }

    /// A message with the notification flag: `NMSG` to the push server
    /// (its ID and time sealed for the recipient's notification key).
    fn notify(&self, st: &mut State, rid: &Id, msg: &StoredMessage, o: &mut Outcome) {
        let Some(n) = st.store.get(rid).and_then(|q| q.rec.notifier.as_ref()) else {
            return;
        };
        let nonce = random_array::<24>();
        let Ok(enc_meta) = smp_core::smp::message::encrypt_ntf_meta(
            &n.rcv_ntf_dh_secret,
            &CbNonce(nonce),
            store::msg_id(msg),
            store::msg_ts(msg),
        ) else {
            return;
        };
        let nid = n.notifier_id.clone();
        match st.ntf_subs.get(&nid) {
            Some(c) => o.events.push((
                c.clone(),
                nid,
                Out::Resp(Response::Nmsg { nonce, enc_meta }),
            )),
            None => {
                let pending = st.ntf_pending.entry(nid).or_default();
                if pending.len() >= MAX_PENDING_NTFS {
                    pending.pop_front();
                }
                pending.push_back(PendingNtf {
                    msg_id: store::msg_id(msg).to_vec(),
                    ts: store::msg_ts(msg),
                    nonce,
                    enc_meta,
                });
            }
        }
    }

    fn set_link(
        &self,
        st: &mut State,
        rid: &Id,
        link_id: &[u8],
        data: &smp_core::smp::QueueLinkData,
    ) -> Result<Out, ErrorType> {
        let q = st.store.get(rid).ok_or(auth_err())?;
        not_blocked(&q.rec)?;
        if store::is_secured_msg_queue(&q.rec) {
            return Err(auth_err());
        }
        match &q.rec.link {
            Some(l) if l.link_id != link_id || l.data.fixed != data.fixed => {
                return Err(auth_err());
            }
            Some(_) => {}
            None => {
                if st.store.id_used(link_id) {
                    return Err(auth_err());
                }
            }
        }
        let link = QueueLink {
            link_id: link_id.to_vec(),
            data: data.clone(),
        };
        self.persist.log(&StoreLogRecord::CreateLink {
            rid: rid.clone(),
            link: link.clone(),
        })?;
        st.store.set_link(rid, Some(link));
        Ok(Out::Resp(Response::Ok))
    }

    fn delete_link(&self, st: &mut State, rid: &Id) -> Result<Out, ErrorType> {
        let q = st.store.get(rid).ok_or(auth_err())?;
        not_blocked(&q.rec)?;
        if q.rec.link.is_some() {
            self.persist
                .log(&StoreLogRecord::DeleteLink { rid: rid.clone() })?;
            st.store.set_link(rid, None);
        }
        Ok(Out::Resp(Response::Ok))
    }

    fn set_recipient_keys(
        &self,
        st: &mut State,
        rid: &Id,
        keys: &[PublicKey],
    ) -> Result<Out, ErrorType> {
        let q = st.store.get_mut(rid).ok_or(auth_err())?;
        not_blocked(&q.rec)?;
        if !store::is_contact_queue(&q.rec) {
            return Err(auth_err());
        }
        self.persist.log(&StoreLogRecord::UpdateKeys {
            rid: rid.clone(),
            keys: keys.to_vec(),
        })?;
        q.rec.recipient_keys = keys.to_vec();
        Ok(Out::Resp(Response::Ok))
    }

    fn suspend(&self, st: &mut State, rid: &Id) -> Result<Out, ErrorType> {
        let q = st.store.get_mut(rid).ok_or(auth_err())?;
        if q.rec.status != EntityStatus::Off {
            self.persist
                .log(&StoreLogRecord::SuspendQueue { rid: rid.clone() })?;
            q.rec.status = EntityStatus::Off;
        }
        Ok(Out::Resp(Response::Ok))
    }

    fn delete(
        &self,
        st: &mut State,
        conn: &mut Conn,
        rid: &Id,
        o: &mut Outcome,
    ) -> Result<Out, ErrorType> {
        self.persist
            .log(&StoreLogRecord::DeleteQueue { rid: rid.clone() })?;
        if let Some(q) = st.store.delete(rid)
            && let Some(n) = &q.rec.notifier
        {
            st.ntf_pending.remove(&n.notifier_id);
            if let Some(c) = st.ntf_subs.remove(&n.notifier_id) {
                o.events
                    .push((c, n.notifier_id.clone(), Out::Resp(Response::Deld)));
            }
        }
        self.stats.queue_deleted();
        conn.gets.remove(rid);
        if let Some(s) = st.subs.remove(rid)
            && s.client.id != conn.me.id
        {
            o.events
                .push((s.client, rid.clone(), Out::Resp(Response::Deld)));
        }
        Ok(Out::Resp(Response::Ok))
    }

    /// `RFWD` on a proxy's session: opens the proxy and client layers,
    /// runs the sender command at the forwarded version and seals the reply.
    pub fn relay_forward(
        &self,
        conn: &mut Conn,
        corr_id: &[u8],
        data: &[u8],
    ) -> (Out, Vec<(Arc<ClientRef>, Id, Out)>) {
        let Some(sess) = conn.sess_secret.clone() else {
            return (
                err(ErrorType::Proxy(Box::new(ProxyError::Broker(
                    BrokerError::Transport(TransportError::NoAuth),
                )))),
                Vec::new(),
            );
        };
        let m = CbNonce::normalize(corr_id);
        let fwd = match unwrap_forward(&sess, &m, data) {
            Ok(f) => f,
            Err(e) => return (err(e.error_type()), Vec::new()),
        };
        if !SUPPORTED_RANGE.contains(fwd.version) {
            // Outside our own range: refused as the notes advise.
            return (err(ErrorType::Cmd(CommandError::Syntax)), Vec::new());
        }
        let Ok(client_secret) = conn.server_key.dh(&fwd.key) else {
            return (err(ErrorType::Crypto), Vec::new());
        };
        let inner = match decrypt_command(&client_secret, &fwd.corr_id, &fwd.encrypted) {
            Ok(t) => t,
            Err(e) => return (err(e.error_type()), Vec::new()),
        };
        self.stats.proxied_received();
        let session_id = conn.me.session_id.clone();
        let (c, e, out, events) =
            match decode_command_transmission(&inner, fwd.version, &session_id) {
                Err(re) => (re.corr_id, re.entity_id, err(re.error), Vec::new()),
                Ok(t) if !t.command.is_proxiable() => (
                    t.raw.corr_id.to_vec(),
                    t.raw.entity_id.to_vec(),
                    err(ErrorType::Cmd(CommandError::Prohibited)),
                    Vec::new(),
                ),
                Ok(t) => {
                    let o = self.process(conn, &t, fwd.version);
                    (o.corr_id, o.entity_id, o.out, o.events)
                }
            };
        let resp = out.into_response();
        let sealed = encode_response_transmission(fwd.version, &session_id, &c, &e, &resp)
            .map_err(|_| ErrorType::Internal)
            .and_then(|t| {
                encrypt_response(&client_secret, &fwd.corr_id, &t).map_err(|e| e.error_type())
            })
            .and_then(|r2| {
                wrap_response(
                    &sess,
                    &m,
                    &FwdResponse {
                        corr_id: fwd.corr_id,
                        encrypted: r2,
                    },
                )
                .map_err(|e| e.error_type())
            });
        match sealed {
            Ok(b) => (Out::Resp(Response::Rres(b)), events),
            Err(e) => (err(e), events),
        }
    }

    /// Drops expired messages (`expireMessagesThread`).
    pub fn expire_messages(&self, ttl_secs: i64) -> usize {
        let cutoff = now_secs() - ttl_secs;
        let mut st = self.lock();
        let touched = st.store.expire(cutoff);
        let mut n = 0;
        for (rid, count) in &touched {
            n += count;
            if let Some(q) = st.store.get(rid) {
                self.persist.rewrite_queue(rid, q);
            }
        }
        n
    }

    /// Whether this client subscribes any queue or notifier (an idle
    /// connection without subscriptions may be closed; a push server's
    /// connection holds only notifier subscriptions).
    pub fn has_subscriptions(&self, client_id: u64) -> bool {
        let st = self.lock();
        st.subs.values().any(|s| s.client.id == client_id)
            || st.ntf_subs.values().any(|c| c.id == client_id)
    }
}

/// `LNK` for `LKEY` (after securing) or `LGET` (contact queues only).
fn link_reply(st: &State, rid: &Id, contact_only: bool) -> Result<Out, ErrorType> {
    let q = st.store.get(rid).ok_or(auth_err())?;
    not_blocked(&q.rec)?;
    match &q.rec.link {
        Some(l) if !contact_only || store::is_contact_queue(&q.rec) => {
            Ok(Out::Resp(Response::Lnk {
                sender_id: q.rec.sender_id.clone(),
                data: l.data.clone(),
            }))
        }
        _ => Err(auth_err()),
    }
}

/// Unix seconds rounded down to the start of the day (`updated_at`).
pub fn day_start(t: i64) -> i64 {
    t - t.rem_euclid(86400)
}

/// `QueueInfo` as JSON (`QUE`, a debugging command).
fn queue_info(st: &State, rid: &Id) -> Vec<u8> {
    let Some(q) = st.store.get(rid) else {
        return b"{}".to_vec();
    };
    let mut s = format!(
        "{{\"qiSnd\":{},\"qiNtf\":{}",
        q.rec.sender_key.is_some(),
        q.rec.notifier.is_some()
    );
    if let Some(sub) = st.subs.get(rid) {
        s.push_str(",\"qiSub\":{\"qSubThread\":\"subscribed\"");
        if let Some(d) = &sub.delivered {
            s.push_str(&format!(
                ",\"qDelivered\":\"{}\"",
                smp_core::encoding::string::b64_encode(d)
            ));
        }
        s.push('}');
    }
    s.push_str(&format!(",\"qiSize\":{}", q.msgs.len()));
    if let Some(m) = q.msgs.front() {
        let kind = match m {
            StoredMessage::Message { .. } => "message",
            StoredMessage::Quota { .. } => "quota",
        };
        s.push_str(&format!(
            ",\"qiMsg\":{{\"msgId\":\"{}\",\"msgTs\":{},\"msgType\":\"{kind}\"}}",
            smp_core::encoding::string::b64_encode(store::msg_id(m)),
            store::msg_ts(m)
        ));
    }
    s.push('}');
    s.into_bytes()
}
