//! Queues and their messages in memory, with the four ID indexes of the
//! reference (recipient, sender, notifier, link). Pure state: persistence
//! is driven by the caller from the records these methods describe.

use std::collections::{HashMap, VecDeque};

use smp_core::smp::store_log::{EntityStatus, QueueRec, StoredMessage};

/// `defaultMsgQueueQuota`: messages a queue holds before `ERR QUOTA`.
pub const MSG_QUEUE_QUOTA: usize = 128;
/// Queue, notifier, link and message IDs are 24 random bytes.
pub const ID_SIZE: usize = 24;

pub type Id = Vec<u8>;

/// One queue: its record and its messages (head first). The record is
/// boxed so that the map's slots stay small (idle queues are most queues).
#[derive(Debug)]
pub struct Queue {
    pub rec: Box<QueueRec>,
    pub msgs: VecDeque<StoredMessage>,
    /// Closed for writes after a quota marker until fully drained.
    pub can_write: bool,
}

impl Queue {
    pub fn new(rec: QueueRec) -> Self {
        Self {
            rec: Box::new(rec),
            msgs: VecDeque::new(),
            can_write: true,
        }
    }
}

/// Which ID space a lookup is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Recipient,
    Sender,
    Notifier,
    Link,
}

/// What [`QueueStore::write_msg`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored; `was_empty` tells whether it became the head.
    Stored { was_empty: bool },
    /// The queue is full: a quota marker was added now (`Some`) or earlier.
    Quota(Option<StoredMessage>),
}

#[derive(Debug, Default)]
pub struct QueueStore {
    queues: HashMap<Id, Queue>,
    senders: HashMap<Id, Id>,
    notifiers: HashMap<Id, Id>,
    links: HashMap<Id, Id>,
}

pub fn msg_id(m: &StoredMessage) -> &[u8] {
    match m {
        StoredMessage::Message { msg_id, .. } | StoredMessage::Quota { msg_id, .. } => msg_id,
    }
}

pub fn msg_ts(m: &StoredMessage) -> i64 {
    match m {
        StoredMessage::Message { msg_ts, .. } | StoredMessage::Quota { msg_ts, .. } => *msg_ts,
    }
}

impl QueueStore {
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Whether `id` is taken in any of the four ID spaces.
    pub fn id_used(&self, id: &[u8]) -> bool {
        self.queues.contains_key(id)
            || self.senders.contains_key(id)
            || self.notifiers.contains_key(id)
            || self.links.contains_key(id)
    }

    /// Adds a queue; `false` (nothing changed) if any of its IDs is taken.
    pub fn add(&mut self, rid: Id, rec: QueueRec) -> bool {
        let link = rec.link.as_ref().map(|l| l.link_id.clone());
        let ntf = rec.notifier.as_ref().map(|n| n.notifier_id.clone());
        let ids = [
            Some(&rid),
            Some(&rec.sender_id),
            link.as_ref(),
            ntf.as_ref(),
        ];
        let mut seen: Vec<&Id> = Vec::new();
        for id in ids.into_iter().flatten() {
            if self.id_used(id) || seen.contains(&id) {
                return false;
            }
            seen.push(id);
        }
        self.senders.insert(rec.sender_id.clone(), rid.clone());
        if let Some(l) = link {
            self.links.insert(l, rid.clone());
        }
        if let Some(n) = ntf {
            self.notifiers.insert(n, rid.clone());
        }
        self.queues.insert(rid, Queue::new(rec));
        true
    }

    /// The recipient ID of the queue `id` names in `party`'s space.
    pub fn resolve(&self, party: Party, id: &[u8]) -> Option<&Id> {
        match party {
            Party::Recipient => self.queues.get_key_value(id).map(|(k, _)| k),
            Party::Sender => self.senders.get(id),
            Party::Notifier => self.notifiers.get(id),
            Party::Link => self.links.get(id),
        }
    }

    pub fn get(&self, rid: &[u8]) -> Option<&Queue> {
        self.queues.get(rid)
    }

    pub fn get_mut(&mut self, rid: &[u8]) -> Option<&mut Queue> {
        self.queues.get_mut(rid)
    }

    pub fn queues(&self) -> impl Iterator<Item = (&Id, &Queue)> {
        self.queues.iter()
    }

    pub fn queues_mut(&mut self) -> impl Iterator<Item = (&Id, &mut Queue)> {
        self.queues.iter_mut()
    }

    /// Removes a queue with its messages and every index entry.
    pub fn delete(&mut self, rid: &[u8]) -> Option<Queue> {
        let q = self.queues.remove(rid)?;
        self.senders.remove(&q.rec.sender_id);
        if let Some(l) = &q.rec.link {
            self.links.remove(&l.link_id);
        }
        if let Some(n) = &q.rec.notifier {
            self.notifiers.remove(&n.notifier_id);
        }
        Some(q)
    }

    /// Sets or replaces the link of a queue (index kept in step).
    pub fn set_link(&mut self, rid: &[u8], link: Option<smp_core::smp::store_log::QueueLink>) {
        let Some(q) = self.queues.get_mut(rid) else {
            return;
        };
        if let Some(old) = q.rec.link.take() {
            self.links.remove(&old.link_id);
        }
        if let Some(l) = link {
            self.links.insert(l.link_id.clone(), rid.to_vec());
            q.rec.link = Some(l);
        }
    }

    /// Sets or removes a queue's notifier credentials (index kept in step);
    /// `false` if the new notifier ID is taken.
    pub fn set_notifier(
        &mut self,
        rid: &[u8],
        creds: Option<smp_core::smp::store_log::NtfCreds>,
    ) -> bool {
        if let Some(c) = &creds
            && self.id_used(&c.notifier_id)
        {
            return false;
        }
        let Some(q) = self.queues.get_mut(rid) else {
            return false;
        };
        if let Some(old) = q.rec.notifier.take() {
            self.notifiers.remove(&old.notifier_id);
        }
        if let Some(c) = creds {
            self.notifiers.insert(c.notifier_id.clone(), rid.to_vec());
            q.rec.notifier = Some(c);
        }
        true
    }

    /// Appends a message unless the queue is full (`writeMsg`): the
    /// 129th message is refused and a quota marker carrying its ID and time
    /// is queued instead; the queue stays closed until it is empty.
    pub fn write_msg(&mut self, rid: &[u8], msg: StoredMessage) -> Option<WriteOutcome> {
        let q = self.queues.get_mut(rid)?;
        if !q.can_write {
            return Some(WriteOutcome::Quota(None));
        }
        if q.msgs.len() >= MSG_QUEUE_QUOTA {
            q.can_write = false;
            let marker = StoredMessage::Quota {
                msg_id: msg_id(&msg).to_vec(),
                msg_ts: msg_ts(&msg),
            };
            q.msgs.push_back(marker.clone());
            return Some(WriteOutcome::Quota(Some(marker)));
        }
        let was_empty = q.msgs.is_empty();
        q.msgs.push_back(msg);
        Some(WriteOutcome::Stored { was_empty })
    }

    /// Takes back the message just appended (its write could not be logged).
    pub fn delete_tail(&mut self, rid: &[u8]) {
        if let Some(q) = self.queues.get_mut(rid) {
            q.msgs.pop_back();
        }
    }

    /// Deletes the head message if its ID is `id`; reopens a drained queue.
    pub fn delete_head_if(&mut self, rid: &[u8], id: &[u8]) -> bool {
        let Some(q) = self.queues.get_mut(rid) else {
            return false;
        };
        let hit = q.msgs.front().is_some_and(|m| msg_id(m) == id);
        if hit {
            q.msgs.pop_front();
        }
        if q.msgs.is_empty() {
            q.can_write = true;
        }
        hit
    }

    /// Removes messages older than `cutoff` from the head of every queue;
    /// returns `(recipient ID, removed count)` for the queues touched.
    pub fn expire(&mut self, cutoff: i64) -> Vec<(Id, usize)> {
        let mut out = Vec::new();
        for (rid, q) in &mut self.queues {
            let mut n = 0;
            while q.msgs.front().is_some_and(|m| msg_ts(m) < cutoff) {
                q.msgs.pop_front();
                n += 1;
            }
            if q.msgs.is_empty() {
                q.can_write = true;
            }
            if n > 0 {
                out.push((rid.clone(), n));
            }
        }
        out
    }
}

/// `isSecuredMsgQueue`: a messaging queue (or a legacy one) with a sender key.
pub fn is_secured_msg_queue(rec: &QueueRec) -> bool {
    use smp_core::smp::QueueMode;
    rec.sender_key.is_some() && rec.queue_mode != Some(QueueMode::Contact)
}

/// `isContactQueue`: contact mode, or a legacy queue without a sender key.
pub fn is_contact_queue(rec: &QueueRec) -> bool {
    use smp_core::smp::QueueMode;
    match rec.queue_mode {
        Some(QueueMode::Contact) => true,
        Some(QueueMode::Messaging) => false,
        None => rec.sender_key.is_none(),
    }
}

pub fn is_active(rec: &QueueRec) -> bool {
    rec.status == EntityStatus::Active
}
