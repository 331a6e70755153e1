//! Persistence: the queue store log `smp-server-store.log` (every change
//! written before the client sees OK) and the memory message store's export
//! `smp-server-messages.log`, both in the reference's formats.
//!
//! Writes go to the OS before the reply, so a killed process loses nothing
//! acknowledged; `fsync` is left to shutdown and compaction, as in the
//! reference (`hFlush` per record).

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use smp_core::log_file::{self, AppendLog, LineError, LogStore, ReplayReport};
use smp_core::smp::ErrorType;
use smp_core::smp::store_log::{EntityStatus, MsgLogRecord, StoreLogRecord, StoredMessage};

use crate::store::{Id, Queue, QueueStore};

/// The queue store log's file name in the log directory.
pub const STORE_LOG_FILE: &str = "smp-server-store.log";
/// The memory message store's export, written at shutdown.
pub const MESSAGES_FILE: &str = "smp-server-messages.log";
/// Notifications not yet delivered, written at shutdown.
pub const NTFS_FILE: &str = "smp-server-ntfs.log";

#[derive(Debug, Default)]
pub struct Persistence {
    log: Option<Mutex<AppendLog>>,
    /// Messages are additionally journaled per change (crash safety).
    journal: Option<Mutex<AppendLog>>,
    /// Bytes appended to the journal since it was last rewritten.
    journal_growth: std::sync::atomic::AtomicU64,
}

/// The journal is rewritten with only the live messages once this much was
/// appended to it, so a long-running router's file does not grow forever.
pub const JOURNAL_COMPACT_BYTES: u64 = 256 << 20;

fn store_err(e: io::Error) -> ErrorType {
    tracing::error!("store log write failed: {}", e.kind());
    ErrorType::Store("store log write failed".into())
}

impl Persistence {
    /// No persistence (`[STORE_LOG] enable: off`).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn with_log(log: AppendLog) -> Self {
        Self {
            log: Some(Mutex::new(log)),
            ..Self::default()
        }
    }

    pub fn set_journal(&mut self, j: AppendLog) {
        self.journal = Some(Mutex::new(j));
    }

    pub fn log(&self, rec: &StoreLogRecord) -> Result<(), ErrorType> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let line = rec
            .encode()
            .map_err(|_| ErrorType::Store("cannot encode record".into()))?;
        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
        l.write_line(line.as_bytes()).map_err(store_err)
    }

    fn journal(&self, line: &[u8]) -> Result<(), ErrorType> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        let mut j = j.lock().unwrap_or_else(|p| p.into_inner());
        j.write_line(line).map_err(store_err)?;
        self.journal_growth
            .fetch_add(line.len() as u64 + 1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Rewrites the journal with the live messages when it has grown past
    /// `limit` bytes. Called with the state locked, so nothing is appended
    /// meanwhile; a crash during the rewrite leaves the old file (the new
    /// one replaces it by rename).
    pub fn maybe_compact_journal(&self, store: &QueueStore, limit: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(j) = &self.journal else {
            return;
        };
        if self.journal_growth.load(Relaxed) < limit {
            return;
        }
        let mut j = j.lock().unwrap_or_else(|p| p.into_inner());
        let path = j.path().to_path_buf();
        match write_messages(&path, store).and_then(|()| log_file::open_append(&path)) {
            Ok(fresh) => {
                *j = fresh;
                self.journal_growth.store(0, Relaxed);
            }
            Err(e) => tracing::error!("message journal compaction failed: {}", e.kind()),
        }
    }

    /// A message was stored.
    pub fn write_msg(&self, rid: &[u8], m: &StoredMessage) -> Result<(), ErrorType> {
        if self.journal.is_none() {
            return Ok(());
        }
        let line = MsgLogRecord {
            rid: rid.to_vec(),
            message: m.clone(),
        }
        .encode()
        .map_err(|_| ErrorType::Internal)?;
        self.journal(line.as_bytes())
    }

    /// The head message `id` was acknowledged and deleted.
    pub fn ack_msg(&self, rid: &[u8], id: &[u8]) -> Result<(), ErrorType> {
        if self.journal.is_none() {
            return Ok(());
        }
        self.journal(ack_line(rid, id).as_bytes())
    }

    /// After expiry: records the queue's remaining head.
    pub fn rewrite_queue(&self, rid: &[u8], q: &Queue) {
        if self.journal.is_none() {
            return;
        }
        let keep = q.msgs.front().map(|m| crate::store::msg_id(m).to_vec());
        let line = expire_line(rid, keep.as_deref());
        let _ = self.journal(line.as_bytes());
    }

    /// Flushes files to disk (shutdown).
    pub fn sync(&self) {
        for l in [&self.log, &self.journal].into_iter().flatten() {
            let mut l = l.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = l.sync() {
                tracing::error!("store sync failed: {}", e.kind());
            }
        }
    }
}

/// Journal-only record of an acknowledgement (our addition, never in the
/// reference's messages file: see [`MessageJournal`]).
fn ack_line(rid: &[u8], id: &[u8]) -> String {
    use smp_core::encoding::string::b64_encode;
    format!("ACK {} {}", b64_encode(rid), b64_encode(id))
}

fn expire_line(rid: &[u8], head: Option<&[u8]>) -> String {
    use smp_core::encoding::string::b64_encode;
    match head {
        Some(h) => format!("EXPIRE {} {}", b64_encode(rid), b64_encode(h)),
        None => format!("EXPIRE {}", b64_encode(rid)),
    }
}

/// Replays store-log lines into the queue store.
struct QueueReplay<'a>(&'a mut QueueStore);

impl LogStore for QueueReplay<'_> {
    fn apply_line(&mut self, line: &[u8]) -> Result<(), LineError> {
        let r = StoreLogRecord::parse(line).map_err(|e| LineError::Parse(e.to_string()))?;
        apply(self.0, r).map_err(|e| LineError::Rejected(e.into()))
    }

    fn compacted_lines(&self) -> Vec<Vec<u8>> {
        compacted(self.0)
    }
}

/// Applies one replayed record with the store's rules.
pub fn apply(store: &mut QueueStore, r: StoreLogRecord) -> Result<(), &'static str> {
    match r {
        StoreLogRecord::CreateQueue { rid, queue } => {
            if store.add(rid, *queue) {
                Ok(())
            } else {
                Err("duplicate queue id")
            }
        }
        StoreLogRecord::CreateLink { rid, link } => {
            store.get(&rid).ok_or("no queue")?;
            store.set_link(&rid, Some(link));
            Ok(())
        }
        StoreLogRecord::DeleteLink { rid } => {
            store.get(&rid).ok_or("no queue")?;
            store.set_link(&rid, None);
            Ok(())
        }
        StoreLogRecord::SecureQueue { rid, sender_key } => {
            let qu = store.get_mut(&rid).ok_or("no queue")?;
            qu.rec.sender_key = Some(sender_key);
            Ok(())
        }
        StoreLogRecord::UpdateKeys { rid, keys } => {
            let qu = store.get_mut(&rid).ok_or("no queue")?;
            qu.rec.recipient_keys = keys;
            Ok(())
        }
        StoreLogRecord::AddNotifier { rid, creds } => {
            store.get(&rid).ok_or("no queue")?;
            if store.set_notifier(&rid, Some(creds)) {
                Ok(())
            } else {
                Err("duplicate notifier id")
            }
        }
        StoreLogRecord::DeleteNotifier { rid } => {
            store.get(&rid).ok_or("no queue")?;
            store.set_notifier(&rid, None);
            Ok(())
        }
        StoreLogRecord::SuspendQueue { rid } => {
            let qu = store.get_mut(&rid).ok_or("no queue")?;
            qu.rec.status = EntityStatus::Off;
            Ok(())
        }
        StoreLogRecord::BlockQueue { rid, info } => {
            let qu = store.get_mut(&rid).ok_or("no queue")?;
            qu.rec.status = EntityStatus::Blocked(info);
            Ok(())
        }
        StoreLogRecord::UnblockQueue { rid } => {
            let qu = store.get_mut(&rid).ok_or("no queue")?;
            qu.rec.status = EntityStatus::Active;
            Ok(())
        }
        StoreLogRecord::DeleteQueue { rid } => store.delete(&rid).map(drop).ok_or("no queue"),
        StoreLogRecord::UpdateTime { rid, date } => {
            let qu = store.get_mut(&rid).ok_or("no queue")?;
            qu.rec.updated_at = Some(date);
            Ok(())
        }
        // Services are not supported; their records are kept out of the store.
        StoreLogRecord::NewService(_) | StoreLogRecord::QueueService { .. } => Ok(()),
    }
}

/// One `CREATE` per queue with its current state.
pub fn compacted(store: &QueueStore) -> Vec<Vec<u8>> {
    let mut v: Vec<(&Id, &Queue)> = store.queues().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.into_iter()
        .filter(|(_, q)| q.rec.parses_back())
        .filter_map(|(rid, q)| {
            StoreLogRecord::CreateQueue {
                rid: rid.clone(),
                queue: q.rec.clone(),
            }
            .encode()
            .ok()
            .map(String::into_bytes)
        })
        .collect()
}

/// Opens (replays, compacts) the queue store log.
pub fn open_store_log(
    path: &Path,
    store: &mut QueueStore,
) -> io::Result<(AppendLog, ReplayReport)> {
    log_file::open_log_at(path, &mut QueueReplay(store), SystemTime::now())
}

/// The message journal: `smp-server-messages.log` lines (`v3 …`) appended on
/// every SEND, plus `ACK`/`EXPIRE` lines of ours, so that a killed router
/// loses no message. At start it is replayed and rewritten in the
/// reference's export format (only `v3` lines), which is also what a clean
/// shutdown leaves, so the reference server can import it.
pub struct MessageJournal;

impl MessageJournal {
    /// Replays `path` (if present) into the store's queues, then rewrites it
    /// compacted; returns it open for appending.
    pub fn open(path: &Path, store: &mut QueueStore) -> io::Result<(AppendLog, usize)> {
        let mut restored = 0;
        if path.exists() {
            let f = BufReader::new(File::open(path)?);
            let mut skipped = 0;
            for line in f.split(b'\n') {
                let line = line?;
                match replay_msg_line(store, &line) {
                    Ok(n) => restored += n,
                    Err(()) => skipped += 1,
                }
            }
            if skipped > 0 {
                tracing::warn!("message log: {skipped} unreadable lines skipped");
            }
        }
        write_messages(path, store)?;
        let log = log_file::open_append(path)?;
        Ok((log, restored))
    }
}

/// Applies one journal line; how many messages it restored, or `Err` for
/// a line that could not be read (a torn write: skipped and counted).
fn replay_msg_line(store: &mut QueueStore, line: &[u8]) -> Result<usize, ()> {
    use smp_core::encoding::string::b64_decode;
    let text = std::str::from_utf8(line).unwrap_or("");
    let mut words = text.split(' ');
    match words.next() {
        Some("ACK") => {
            let (Some(r), Some(i)) = (words.next(), words.next()) else {
                return Err(());
            };
            let (Ok(rid), Ok(id)) = (b64_decode(r), b64_decode(i)) else {
                return Err(());
            };
            store.delete_head_if(&rid, &id);
            Ok(0)
        }
        Some("EXPIRE") => {
            let Some(Ok(rid)) = words.next().map(b64_decode) else {
                return Err(());
            };
            let keep = words.next().and_then(|h| b64_decode(h).ok());
            if let Some(q) = store.get_mut(&rid) {
                while let Some(m) = q.msgs.front() {
                    if keep.as_deref() == Some(crate::store::msg_id(m)) {
                        break;
                    }
                    q.msgs.pop_front();
                }
                if q.msgs.is_empty() {
                    q.can_write = true;
                }
            }
            Ok(0)
        }
        _ => match MsgLogRecord::parse(line) {
            Ok(r) => {
                // A queue deleted after the message was stored.
                let Some(q) = store.get_mut(&r.rid) else {
                    return Ok(0);
                };
                if matches!(r.message, StoredMessage::Quota { .. }) {
                    q.can_write = false;
                }
                q.msgs.push_back(r.message);
                Ok(1)
            }
            Err(_) => Err(()),
        },
    }
}

/// Writes every stored message in the reference's export format,
/// atomically (temporary file, fsync, rename).
pub fn write_messages(path: &Path, store: &QueueStore) -> io::Result<()> {
    let mut v: Vec<(&Id, &Queue)> = store.queues().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    log_file::write_atomically(path, |f| {
        for (rid, q) in v {
            for m in &q.msgs {
                let rec = MsgLogRecord {
                    rid: rid.clone(),
                    message: m.clone(),
                };
                if let Ok(line) = rec.encode_line() {
                    f.write_all(&line)?;
                }
            }
        }
        Ok(())
    })
}

/// Notifications waiting for their push server, by notifier ID.
pub type PendingNtfs =
    std::collections::HashMap<Id, std::collections::VecDeque<crate::handler::PendingNtf>>;

/// `v1 <notifierId> <msgId> <ts> <nonce> <encMeta>` (the reference's
/// `NLRv1`), base64url fields, oldest first.
fn ntf_line(nid: &[u8], n: &crate::handler::PendingNtf) -> String {
    use smp_core::encoding::string::b64_encode;
    format!(
        "v1 {} {} {} {} {}",
        b64_encode(nid),
        b64_encode(&n.msg_id),
        n.ts,
        b64_encode(&n.nonce),
        b64_encode(&n.enc_meta)
    )
}

fn parse_ntf_line(line: &str) -> Option<(Id, crate::handler::PendingNtf)> {
    use smp_core::encoding::string::b64_decode;
    let mut w = line.split(' ');
    if w.next()? != "v1" {
        return None;
    }
    let nid = b64_decode(w.next()?).ok()?;
    let msg_id = b64_decode(w.next()?).ok()?;
    let ts = w.next()?.parse().ok()?;
    let nonce = <[u8; 24]>::try_from(b64_decode(w.next()?).ok()?.as_slice()).ok()?;
    let enc_meta = b64_decode(w.next()?).ok()?;
    if w.next().is_some() {
        return None;
    }
    Some((
        nid,
        crate::handler::PendingNtf {
            msg_id,
            ts,
            nonce,
            enc_meta,
        },
    ))
}

/// Saves undelivered notifications (clean stop), atomically.
pub fn write_ntfs(path: &Path, ntfs: &PendingNtfs) -> io::Result<()> {
    let mut ids: Vec<&Id> = ntfs.keys().collect();
    ids.sort();
    log_file::write_atomically(path, |f| {
        for nid in ids {
            for n in &ntfs[nid] {
                f.write_all(ntf_line(nid, n).as_bytes())?;
                f.write_all(b"\n")?;
            }
        }
        Ok(())
    })
}

/// Restores saved notifications for notifiers that still exist, dropping
/// those older than `cutoff`; the file is kept as `.bak`, as the reference
/// does. Returns how many were restored.
pub fn read_ntfs(
    path: &Path,
    store: &QueueStore,
    cutoff: i64,
    into: &mut PendingNtfs,
) -> io::Result<usize> {
    if !path.exists() {
        return Ok(0);
    }
    let mut n = 0;
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        match parse_ntf_line(&line) {
            Some((nid, ntf))
                if ntf.ts >= cutoff
                    && store.resolve(crate::store::Party::Notifier, &nid).is_some() =>
            {
                into.entry(nid).or_default().push_back(ntf);
                n += 1;
            }
            Some(_) => {}
            None => tracing::warn!("notifications file: a line did not parse"),
        }
    }
    let mut bak = path.as_os_str().to_owned();
    bak.push(".bak");
    fs::rename(path, PathBuf::from(bak))?;
    Ok(n)
}
