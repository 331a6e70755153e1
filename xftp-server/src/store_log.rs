//! The store log `file-server-store.log`: the reference's line format
//! (simplexmq `Simplex.FileTransfer.Server.StoreLog`), durable appends,
//! replay and crash-safe compaction (`readWriteStoreLog`).
//!
//! Lines are input: every parse path returns a typed error, never panics.
//! Diagnostics carry line numbers and error kinds only, never IDs or keys.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use smp_core::crypto::keys::{KeyAlgorithm, PublicKey};
use smp_core::encoding::string::{b64_decode, b64_encode};
use smp_core::xftp::command::FileInfo;
use smp_core::xftp::error::{BlockingInfo, XftpErrorType};

use smp_core::log_file::{self, AppendLog, LineError, LogStore};
pub use smp_core::log_file::{
    ReplayReport, iso8601_date, iso8601_parse, iso8601_show, remove_store_log_backups, unix_parts,
};

use crate::store::{FILE_ID_SIZE, FileId, FileStatus, FileStore};

/// The log's file name inside the log directory.
pub const STORE_LOG_FILE: &str = "file-server-store.log";

/// One line of the store log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLogRecord {
    /// `FNEW <sId> <sndKey> <size> <digest> <createdAt> <status>`
    AddFile {
        sender_id: FileId,
        info: FileInfo,
        created_at: i64,
        status: FileStatus,
    },
    /// `FPUT <sId> <b64u(path)>`
    PutFile { sender_id: FileId, path: PathBuf },
    /// `FADD <sId> <rId>:<rKey>[,...]` (never empty)
    AddRecipients {
        sender_id: FileId,
        recipients: Vec<(FileId, PublicKey)>,
    },
    /// `FDEL <sId>`
    DeleteFile { sender_id: FileId },
    /// `FBLK <sId> <blocking info>`
    BlockFile {
        sender_id: FileId,
        info: BlockingInfo,
    },
    /// `FACK <rId>`
    AckFile { recipient_id: FileId },
}

/// Why a log line did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogParseError {
    #[error("unknown record tag")]
    UnknownTag,
    #[error("missing field")]
    MissingField,
    #[error("unexpected trailing input")]
    TrailingInput,
    #[error("invalid base64url")]
    Base64,
    #[error("ID is not {FILE_ID_SIZE} bytes")]
    IdLength,
    #[error("invalid public key")]
    Key,
    #[error("invalid number")]
    Number,
    #[error("invalid status")]
    Status,
    #[error("invalid blocking info")]
    BlockingInfo,
    #[error("empty recipient list")]
    EmptyRecipients,
    #[error("invalid recipient")]
    Recipient,
}

/// Failures of opening, replaying or compacting the log (the server cannot
/// start without a usable log).
#[derive(Debug, thiserror::Error)]
pub enum StoreLogError {
    #[error("store log I/O error: {0}")]
    Io(#[from] io::Error),
}

impl StoreLogRecord {
    /// The line without its `\n`.
    pub fn encode(&self) -> String {
        match self {
            Self::AddFile {
                sender_id,
                info,
                created_at,
                status,
            } => format!(
                "FNEW {} {} {} {} {} {}",
                b64_encode(sender_id),
                b64_encode(&info.snd_key.to_der()),
                info.size,
                b64_encode(&info.digest),
                created_at,
                status.encode()
            ),
            Self::PutFile { sender_id, path } => format!(
                "FPUT {} {}",
                b64_encode(sender_id),
                b64_encode(&path_to_bytes(path))
            ),
            Self::AddRecipients {
                sender_id,
                recipients,
            } => {
                let list: Vec<String> = recipients
                    .iter()
                    .map(|(rid, key)| format!("{}:{}", b64_encode(rid), b64_encode(&key.to_der())))
                    .collect();
                format!("FADD {} {}", b64_encode(sender_id), list.join(","))
            }
            Self::DeleteFile { sender_id } => format!("FDEL {}", b64_encode(sender_id)),
            Self::BlockFile { sender_id, info } => {
                format!("FBLK {} {}", b64_encode(sender_id), info.encode())
            }
            Self::AckFile { recipient_id } => format!("FACK {}", b64_encode(recipient_id)),
        }
    }

    /// Parses one whole line (without `\n`); nothing may be left over.
    pub fn decode(line: &[u8]) -> Result<Self, LogParseError> {
        let (tag, rest) = split_first(line).ok_or(LogParseError::UnknownTag)?;
        match tag {
            b"FNEW" => {
                let mut f = rest.splitn(6, |&c| c == b' ');
                let sender_id = id_field(f.next())?;
                let snd_key = key_field(f.next())?;
                let size = u32_field(f.next())?;
                let digest = b64_field(f.next())?;
                let created_at = i64_field(f.next())?;
                let status = match f.next() {
                    None => FileStatus::Active,
                    Some(s) => FileStatus::decode(s).ok_or(LogParseError::Status)?,
                };
                Ok(Self::AddFile {
                    sender_id,
                    info: FileInfo {
                        snd_key,
                        size,
                        digest,
                    },
                    created_at,
                    status,
                })
            }
            b"FPUT" => {
                let (sid, path) = two_fields(rest)?;
                let sender_id = id_field(Some(sid))?;
                let path = path_from_bytes(b64_field(Some(path))?);
                Ok(Self::PutFile { sender_id, path })
            }
            b"FADD" => {
                let (sid, list) = two_fields(rest)?;
                let sender_id = id_field(Some(sid))?;
                let mut recipients = Vec::new();
                for item in list.split(|&c| c == b',') {
                    let colon = item
                        .iter()
                        .position(|&c| c == b':')
                        .ok_or(LogParseError::Recipient)?;
                    let rid = id_field(Some(&item[..colon]))?;
                    let key = key_field(Some(&item[colon + 1..]))?;
                    recipients.push((rid, key));
                }
                if recipients.is_empty() {
                    return Err(LogParseError::EmptyRecipients);
                }
                Ok(Self::AddRecipients {
                    sender_id,
                    recipients,
                })
            }
            b"FDEL" => Ok(Self::DeleteFile {
                sender_id: single_id(rest)?,
            }),
            b"FACK" => Ok(Self::AckFile {
                recipient_id: single_id(rest)?,
            }),
            b"FBLK" => {
                let (sid, info) = split_first(rest).ok_or(LogParseError::MissingField)?;
                let sender_id = id_field(Some(sid))?;
                let info = BlockingInfo::decode(info).ok_or(LogParseError::BlockingInfo)?;
                Ok(Self::BlockFile { sender_id, info })
            }
            _ => Err(LogParseError::UnknownTag),
        }
    }

    /// Applies a replayed record with the reference's store rules.
    pub fn apply(self, store: &mut FileStore) -> Result<(), XftpErrorType> {
        match self {
            Self::AddFile {
                sender_id,
                info,
                created_at,
                status,
            } => store.add_file(sender_id, info, created_at, status),
            Self::PutFile { sender_id, path } => store.set_file_path(&sender_id, path),
            Self::AddRecipients {
                sender_id,
                recipients,
            } => recipients
                .into_iter()
                .try_for_each(|(rid, key)| store.add_recipient(&sender_id, rid, key)),
            Self::DeleteFile { sender_id } => store.delete_file(&sender_id).map(drop),
            Self::BlockFile { sender_id, info } => store.block_file(&sender_id, info).map(drop),
            Self::AckFile { recipient_id } => store.ack_file(&recipient_id),
        }
    }
}

/// `(tag, rest)` split at the first space; the rest must be non-empty.
fn split_first(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

fn two_fields(b: &[u8]) -> Result<(&[u8], &[u8]), LogParseError> {
    let (a, rest) = split_first(b).ok_or(LogParseError::MissingField)?;
    if rest.contains(&b' ') {
        return Err(LogParseError::TrailingInput);
    }
    Ok((a, rest))
}

fn single_id(b: &[u8]) -> Result<FileId, LogParseError> {
    if b.contains(&b' ') {
        return Err(LogParseError::TrailingInput);
    }
    id_field(Some(b))
}

fn b64_field(f: Option<&[u8]>) -> Result<Vec<u8>, LogParseError> {
    let f = f.ok_or(LogParseError::MissingField)?;
    let s = std::str::from_utf8(f).map_err(|_| LogParseError::Base64)?;
    b64_decode(s).map_err(|_| LogParseError::Base64)
}

fn id_field(f: Option<&[u8]>) -> Result<FileId, LogParseError> {
    b64_field(f)?
        .as_slice()
        .try_into()
        .map_err(|_| LogParseError::IdLength)
}

/// Auth keys (`APublicAuthKey`): Ed25519, Ed448 or X25519.
fn key_field(f: Option<&[u8]>) -> Result<PublicKey, LogParseError> {
    let key = PublicKey::from_der(&b64_field(f)?).map_err(|_| LogParseError::Key)?;
    if key.algorithm() == KeyAlgorithm::X448 {
        return Err(LogParseError::Key);
    }
    Ok(key)
}

fn digits(f: &[u8]) -> Result<&str, LogParseError> {
    if f.is_empty() || !f.iter().all(u8::is_ascii_digit) {
        return Err(LogParseError::Number);
    }
    std::str::from_utf8(f).map_err(|_| LogParseError::Number)
}

fn u32_field(f: Option<&[u8]>) -> Result<u32, LogParseError> {
    let f = f.ok_or(LogParseError::MissingField)?;
    digits(f)?.parse().map_err(|_| LogParseError::Number)
}

fn i64_field(f: Option<&[u8]>) -> Result<i64, LogParseError> {
    let f = f.ok_or(LogParseError::MissingField)?;
    let (neg, d) = match f.split_first() {
        Some((b'-', d)) => (true, d),
        Some((b'+', d)) => (false, d),
        _ => (false, f),
    };
    let v: i64 = digits(d)?.parse().map_err(|_| LogParseError::Number)?;
    Ok(if neg { -v } else { v })
}

#[cfg(unix)]
fn path_to_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(unix)]
fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(not(unix))]
fn path_to_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(not(unix))]
fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

/// An open store log in append mode.
#[derive(Debug)]
pub struct StoreLog(AppendLog);

impl StoreLog {
    /// Appends one record and makes it durable before returning: the server
    /// answers OK only after this, so an acknowledged change survives a crash.
    pub fn append(&mut self, record: &StoreLogRecord) -> io::Result<()> {
        self.write(record)?;
        self.sync()
    }

    /// Writes one record without waiting for the disk; [`StoreLog::sync`]
    /// then makes every record written so far durable at once (group commit).
    pub fn write(&mut self, record: &StoreLogRecord) -> io::Result<()> {
        self.0.write_line(record.encode().as_bytes())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl LogStore for FileStore {
    fn apply_line(&mut self, line: &[u8]) -> Result<(), LineError> {
        let r = StoreLogRecord::decode(line).map_err(|e| LineError::Parse(e.to_string()))?;
        r.apply(self)
            .map_err(|e| LineError::Rejected(String::from_utf8_lossy(&e.encode()).into_owned()))
    }

    fn compacted_lines(&self) -> Vec<Vec<u8>> {
        compacted_records(self)
            .iter()
            .map(|r| r.encode().into_bytes())
            .collect()
    }
}

/// Replays `data` into `store`: complete lines only; bad or refused lines
/// are counted and skipped.
pub fn replay(data: &[u8], store: &mut FileStore, report: &mut ReplayReport) {
    log_file::replay(data, store, report)
}

/// The compacted form of a store: per file in sender-ID order, `FNEW` with
/// its status, one `FADD` with the remaining recipients (if any), `FPUT` if
/// a path is set (also for blocked files, as the reference does).
pub fn compacted_records(store: &FileStore) -> Vec<StoreLogRecord> {
    let mut out = Vec::new();
    for f in store.files() {
        out.push(StoreLogRecord::AddFile {
            sender_id: f.sender_id,
            info: f.info.clone(),
            created_at: f.created_at,
            status: f.status,
        });
        let recipients: Vec<(FileId, PublicKey)> = f
            .recipient_ids
            .iter()
            .filter_map(|rid| store.recipient_key(rid).map(|k| (*rid, k.clone())))
            .collect();
        if !recipients.is_empty() {
            out.push(StoreLogRecord::AddRecipients {
                sender_id: f.sender_id,
                recipients,
            });
        }
        if let Some(path) = &f.path {
            out.push(StoreLogRecord::PutFile {
                sender_id: f.sender_id,
                path: path.clone(),
            });
        }
    }
    out
}

/// Opens the store log at start-up (`readWriteStoreLog`), using the current
/// time for the backup name and retention.
pub fn open_store_log(
    path: &Path,
    store: &mut FileStore,
) -> Result<(StoreLog, ReplayReport), StoreLogError> {
    open_store_log_at(path, store, SystemTime::now())
}

/// [`open_store_log`] with an explicit clock, for tests (see
/// [`log_file::open_log_at`] for the crash-safe steps).
pub fn open_store_log_at(
    path: &Path,
    store: &mut FileStore,
    now: SystemTime,
) -> Result<(StoreLog, ReplayReport), StoreLogError> {
    let (log, report) = log_file::open_log_at(path, store, now)?;
    Ok((StoreLog(log), report))
}
