//! In-memory file store: chunk records, recipient index and storage
//! accounting, with the reference's rules and errors (simplexmq
//! `Simplex.FileTransfer.Server.Store`, STM store).
//!
//! Sans-IO and synchronous, so the server can keep it behind a
//! `std::sync::Mutex` and never hold the lock across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use smp_core::crypto::keys::PublicKey;
use smp_core::xftp::command::{FileInfo, FileParty};
use smp_core::xftp::error::{BlockingInfo, XftpErrorType};

/// Sender and recipient IDs are 16 random bytes (`fileIdSize`).
pub const FILE_ID_SIZE: usize = 16;

/// A sender or recipient ID.
pub type FileId = [u8; FILE_ID_SIZE];

/// `createdAt` is truncated to this many seconds, so the log and the store
/// leak no precise upload time.
pub const FILE_TIME_PRECISION: i64 = 3600;

/// How many random IDs are tried before giving up with `INTERNAL`.
pub const ID_ATTEMPTS: usize = 3;

/// Rounds Unix seconds down to the hour (floor, also for negative input).
pub fn round_file_time(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(FILE_TIME_PRECISION) * FILE_TIME_PRECISION
}

/// `ServerEntityStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Active,
    Blocked(BlockingInfo),
    Off,
}

impl FileStatus {
    /// `active` | `blocked,<info>` | `off`, as in the store log.
    pub fn encode(&self) -> String {
        match self {
            Self::Active => "active".to_owned(),
            Self::Blocked(info) => format!("blocked,{}", info.encode()),
            Self::Off => "off".to_owned(),
        }
    }

    /// The whole text must be one status.
    pub fn decode(b: &[u8]) -> Option<Self> {
        match b {
            b"active" => Some(Self::Active),
            b"off" => Some(Self::Off),
            _ => BlockingInfo::decode(b.strip_prefix(b"blocked,")?).map(Self::Blocked),
        }
    }
}

/// A copy of one file record, handed out so callers never hold the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRec {
    pub sender_id: FileId,
    pub info: FileInfo,
    /// Hour-rounded Unix seconds.
    pub created_at: i64,
    pub status: FileStatus,
    /// Set once the chunk has been uploaded and committed.
    pub path: Option<PathBuf>,
    pub recipient_ids: BTreeSet<FileId>,
}

impl FileRec {
    /// `ERR BLOCKED <info>` for every command on a blocked file.
    pub fn blocked(&self) -> Option<BlockingInfo> {
        match self.status {
            FileStatus::Blocked(info) => Some(info),
            _ => None,
        }
    }
}

/// What command verification needs: the record and the key that must have
/// signed the command (sender key or that recipient's key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLookup {
    pub file: FileRec,
    pub key: PublicKey,
}

/// An expired record as the expiry pass needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredFile {
    pub sender_id: FileId,
    pub path: Option<PathBuf>,
    pub size: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    rec: FileRec,
    /// Set when a block already gave this upload's storage back, so a later
    /// delete or expiry does not give it back a second time.
    released: bool,
}

/// The file store.
#[derive(Debug, Clone)]
pub struct FileStore {
    /// Ordered by sender ID: compaction writes in this order.
    files: BTreeMap<FileId, Entry>,
    /// recipient ID → (sender ID, recipient key).
    recipients: HashMap<FileId, (FileId, PublicKey)>,
    used_storage: i64,
    quota: i64,
}

impl FileStore {
    /// `quota = None` means no limit (the reference uses `maxBound :: Int64`).
    pub fn new(quota: Option<u64>) -> Self {
        Self {
            files: BTreeMap::new(),
            recipients: HashMap::new(),
            used_storage: 0,
            quota: quota.map_or(i64::MAX, |q| i64::try_from(q).unwrap_or(i64::MAX)),
        }
    }

    /// Adds a record with a given sender ID (replay, and the retry loop).
    pub fn add_file(
        &mut self,
        sender_id: FileId,
        info: FileInfo,
        created_at: i64,
        status: FileStatus,
    ) -> Result<(), XftpErrorType> {
        if info.size == 0 {
            return Err(XftpErrorType::Size);
        }
        if self.files.contains_key(&sender_id) {
            return Err(XftpErrorType::Duplicate);
        }
        self.files.insert(
            sender_id,
            Entry {
                rec: FileRec {
                    sender_id,
                    info,
                    created_at,
                    status,
                    path: None,
                    recipient_ids: BTreeSet::new(),
                },
                released: false,
            },
        );
        Ok(())
    }

    /// FNEW: a new record under a fresh random sender ID, active, with
    /// `created_at` rounded down to the hour here so no caller forgets it.
    pub fn create_file(
        &mut self,
        rng: &mut dyn FnMut(&mut [u8]),
        info: FileInfo,
        now_unix: i64,
    ) -> Result<FileId, XftpErrorType> {
        if info.size == 0 {
            return Err(XftpErrorType::Size);
        }
        let created_at = round_file_time(now_unix);
        for _ in 0..ID_ATTEMPTS {
            let id = random_id(rng);
            match self.add_file(id, info.clone(), created_at, FileStatus::Active) {
                Err(XftpErrorType::Duplicate) => continue,
                r => return r.map(|()| id),
            }
        }
        Err(XftpErrorType::Internal)
    }

    /// Adds one recipient under a given ID. An ID in use anywhere (for this
    /// file or another) is `DUPLICATE_`.
    pub fn add_recipient(
        &mut self,
        sender_id: &FileId,
        recipient_id: FileId,
        key: PublicKey,
    ) -> Result<(), XftpErrorType> {
        let entry = self.files.get_mut(sender_id).ok_or(XftpErrorType::Auth)?;
        if entry.rec.recipient_ids.contains(&recipient_id)
            || self.recipients.contains_key(&recipient_id)
        {
            return Err(XftpErrorType::Duplicate);
        }
        entry.rec.recipient_ids.insert(recipient_id);
        self.recipients.insert(recipient_id, (*sender_id, key));
        Ok(())
    }

    /// FNEW/FADD: one fresh recipient ID per key, in key order. As in the
    /// reference, recipients added before a failure stay added.
    pub fn create_recipients(
        &mut self,
        rng: &mut dyn FnMut(&mut [u8]),
        sender_id: &FileId,
        keys: &[PublicKey],
    ) -> Result<Vec<(FileId, PublicKey)>, XftpErrorType> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut added = None;
            for _ in 0..ID_ATTEMPTS {
                let id = random_id(rng);
                match self.add_recipient(sender_id, id, key.clone()) {
                    Err(XftpErrorType::Duplicate) => continue,
                    Err(e) => return Err(e),
                    Ok(()) => {
                        added = Some(id);
                        break;
                    }
                }
            }
            let id = added.ok_or(XftpErrorType::Internal)?;
            out.push((id, key.clone()));
        }
        Ok(out)
    }

    /// Commits an upload. Unknown, already uploaded or not active → AUTH,
    /// and the first path is kept. Does not touch used storage: that was
    /// reserved before the body was read.
    pub fn set_file_path(
        &mut self,
        sender_id: &FileId,
        path: PathBuf,
    ) -> Result<(), XftpErrorType> {
        let entry = self.files.get_mut(sender_id).ok_or(XftpErrorType::Auth)?;
        if entry.rec.path.is_some() || entry.rec.status != FileStatus::Active {
            return Err(XftpErrorType::Auth);
        }
        entry.rec.path = Some(path);
        Ok(())
    }

    /// Drops the record and all its recipient IDs; gives back the storage
    /// of an uploaded file. Call after the chunk file is removed.
    pub fn delete_file(&mut self, sender_id: &FileId) -> Result<FileRec, XftpErrorType> {
        let entry = self.files.remove(sender_id).ok_or(XftpErrorType::Auth)?;
        for rid in &entry.rec.recipient_ids {
            self.recipients.remove(rid);
        }
        if entry.rec.path.is_some() && !entry.released {
            self.release(entry.rec.info.size);
        }
        Ok(entry.rec)
    }

    /// Marks the record blocked, keeping it, its path and its recipients;
    /// gives back the storage of an uploaded file once. Call after the chunk
    /// file is removed. Returns the record as it was before.
    pub fn block_file(
        &mut self,
        sender_id: &FileId,
        info: BlockingInfo,
    ) -> Result<FileRec, XftpErrorType> {
        let entry = self.files.get_mut(sender_id).ok_or(XftpErrorType::Auth)?;
        let before = entry.rec.clone();
        entry.rec.status = FileStatus::Blocked(info);
        let release = entry.rec.path.is_some() && !entry.released;
        entry.released |= release;
        let size = entry.rec.info.size;
        if release {
            self.release(size);
        }
        Ok(before)
    }

    /// FACK: removes only this recipient ID.
    pub fn ack_file(&mut self, recipient_id: &FileId) -> Result<(), XftpErrorType> {
        let (sender_id, _) = self
            .recipients
            .remove(recipient_id)
            .ok_or(XftpErrorType::Auth)?;
        let entry = self.files.get_mut(&sender_id).ok_or(XftpErrorType::Auth)?;
        entry.rec.recipient_ids.remove(recipient_id);
        Ok(())
    }

    /// Looks a file up by the command's entity ID: a sender ID for sender
    /// commands, a recipient ID for recipient commands. Unknown → AUTH. The
    /// blocked check is the caller's (it needs the session version).
    pub fn get_file(&self, party: FileParty, id: &FileId) -> Result<FileLookup, XftpErrorType> {
        match party {
            FileParty::Sender => {
                let e = self.files.get(id).ok_or(XftpErrorType::Auth)?;
                Ok(FileLookup {
                    key: e.rec.info.snd_key.clone(),
                    file: e.rec.clone(),
                })
            }
            FileParty::Recipient => {
                let (sid, key) = self.recipients.get(id).ok_or(XftpErrorType::Auth)?;
                let e = self.files.get(sid).ok_or(XftpErrorType::Auth)?;
                Ok(FileLookup {
                    file: e.rec.clone(),
                    key: key.clone(),
                })
            }
        }
    }

    /// The key of one recipient (for compaction and tests).
    pub fn recipient_key(&self, recipient_id: &FileId) -> Option<&PublicKey> {
        self.recipients.get(recipient_id).map(|(_, k)| k)
    }

    /// Records with `created_at + 3600 < cutoff`, where the caller passes
    /// `cutoff = now − ttl` (see [`expire_cutoff`]).
    pub fn expired_files(&self, cutoff: i64) -> Vec<ExpiredFile> {
        self.files
            .values()
            .filter(|e| e.rec.created_at.saturating_add(FILE_TIME_PRECISION) < cutoff)
            .map(|e| ExpiredFile {
                sender_id: e.rec.sender_id,
                path: e.rec.path.clone(),
                size: e.rec.info.size,
            })
            .collect()
    }

    /// Whether `size` more bytes fit the quota now (nothing is taken).
    pub fn fits(&self, size: u32) -> bool {
        self.used_storage.saturating_add(i64::from(size)) <= self.quota
    }

    /// Takes storage for bytes of an upload as they arrive.
    pub fn reserve(&mut self, size: u32) -> Result<(), XftpErrorType> {
        let used = self.used_storage.saturating_add(i64::from(size));
        if used <= self.quota {
            self.used_storage = used;
            Ok(())
        } else {
            Err(XftpErrorType::Quota)
        }
    }

    /// Gives back a reservation (failed upload) or an upload's storage.
    pub fn release(&mut self, size: u32) {
        self.used_storage = self.used_storage.saturating_sub(i64::from(size));
    }

    /// Start-up accounting: every record counts, uploaded or not, blocked or
    /// not. Call once after replay. A record not yet uploaded is counted
    /// again when it is uploaded later (the reference's quirk).
    pub fn reset_used_storage(&mut self) -> i64 {
        let mut used = 0i64;
        for e in self.files.values_mut() {
            e.released = false;
            used = used.saturating_add(i64::from(e.rec.info.size));
        }
        self.used_storage = used;
        used
    }

    pub fn used_storage(&self) -> i64 {
        self.used_storage
    }

    /// The configured quota (`i64::MAX` when none).
    pub fn quota(&self) -> i64 {
        self.quota
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// All records in sender-ID order.
    pub fn files(&self) -> impl Iterator<Item = &FileRec> {
        self.files.values().map(|e| &e.rec)
    }

    /// Paths of all uploaded records (for the orphan sweep).
    pub fn stored_paths(&self) -> Vec<PathBuf> {
        self.files
            .values()
            .filter_map(|e| e.rec.path.clone())
            .collect()
    }
}

/// `now − ttl`, the cutoff for [`FileStore::expired_files`].
pub fn expire_cutoff(now_unix: i64, ttl_secs: i64) -> i64 {
    now_unix.saturating_sub(ttl_secs)
}

fn random_id(rng: &mut dyn FnMut(&mut [u8])) -> FileId {
    let mut id = [0u8; FILE_ID_SIZE];
    rng(&mut id);
    id
}
