//! The store log `file-server-store.log`: the reference's line format
//! (simplexmq `Simplex.FileTransfer.Server.StoreLog`), durable appends,
//! replay and crash-safe compaction (`readWriteStoreLog`).
//!
//! Lines are input: every parse path returns a typed error, never panics.
//! Diagnostics carry line numbers and error kinds only, never IDs or keys.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smp_core::crypto::keys::{KeyAlgorithm, PublicKey};
use smp_core::encoding::string::{b64_decode, b64_encode};
use smp_core::xftp::command::FileInfo;
use smp_core::xftp::error::{BlockingInfo, XftpErrorType};

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
pub struct StoreLog {
    file: File,
    path: PathBuf,
}

impl StoreLog {
    /// Appends one record and makes it durable before returning: the server
    /// answers OK only after this, so an acknowledged change survives a crash.
    /// One `write_all` of the whole line keeps concurrent lines unmixed.
    pub fn append(&mut self, record: &StoreLogRecord) -> io::Result<()> {
        self.write(record)?;
        self.sync()
    }

    /// Writes one record without waiting for the disk; [`StoreLog::sync`]
    /// then makes every record written so far durable at once (group commit).
    pub fn write(&mut self, record: &StoreLogRecord) -> io::Result<()> {
        let mut line = record.encode().into_bytes();
        line.push(b'\n');
        self.file.write_all(&line)
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What start-up found, for the caller's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// No log existed: an empty one was created.
    pub created: bool,
    /// `.start` existed (crash during compaction) and was used.
    pub used_start_backup: bool,
    /// Complete lines read.
    pub lines: usize,
    /// Lines that did not parse (skipped).
    pub parse_errors: usize,
    /// Lines the store refused (skipped).
    pub rejected: usize,
    /// The last line had no `\n` (killed mid-write) and was skipped.
    pub torn_tail: bool,
    /// The timestamped copy of the replayed log.
    pub backup: Option<PathBuf>,
    /// Old backups removed by the retention rule.
    pub removed_backups: usize,
}

/// Replays `data` into `store`: complete lines only; bad or refused lines
/// are counted and skipped.
pub fn replay(data: &[u8], store: &mut FileStore, report: &mut ReplayReport) {
    let mut rest = data;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&c| c == b'\n') else {
            report.torn_tail = true;
            tracing::warn!(
                line = report.lines + 1,
                "store log: incomplete last line skipped"
            );
            break;
        };
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        report.lines += 1;
        match StoreLogRecord::decode(line) {
            Err(e) => {
                report.parse_errors += 1;
                tracing::warn!(line = report.lines, "store log parsing error ({e})");
            }
            Ok(r) => {
                if let Err(e) = r.apply(store) {
                    report.rejected += 1;
                    let e = String::from_utf8_lossy(&e.encode()).into_owned();
                    tracing::warn!(line = report.lines, "store log processing error ({e})");
                }
            }
        }
    }
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

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Makes renames and file creation in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes the compacted log to `path` (truncating) and returns it open for
/// appending, durable.
fn write_compacted(path: &Path, store: &FileStore) -> io::Result<File> {
    let mut buf = Vec::new();
    for r in compacted_records(store) {
        buf.extend_from_slice(r.encode().as_bytes());
        buf.push(b'\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(&buf)?;
    file.sync_all()?;
    drop(file);
    sync_dir(&parent_dir(path))?;
    OpenOptions::new().append(true).open(path)
}

/// Opens the store log at start-up (`readWriteStoreLog`), using the current
/// time for the backup name and retention.
pub fn open_store_log(
    path: &Path,
    store: &mut FileStore,
) -> Result<(StoreLog, ReplayReport), StoreLogError> {
    open_store_log_at(path, store, SystemTime::now())
}

/// [`open_store_log`] with an explicit clock, for tests.
///
/// Steps, each durable before the next: a leftover `.start` (crash during
/// compaction) replaces the log, the incomplete log is kept as `.bak`; the
/// log is replayed; renamed to `.start`; the compacted log is written;
/// `.start` is renamed to `<log>.<ISO-8601 UTC>`. A kill at any point leaves
/// `.start` (the complete old log) or a complete new log.
pub fn open_store_log_at(
    path: &Path,
    store: &mut FileStore,
    now: SystemTime,
) -> Result<(StoreLog, ReplayReport), StoreLogError> {
    let mut report = ReplayReport::default();
    let dir = parent_dir(path);
    let start = with_suffix(path, ".start");
    if start.exists() {
        tracing::warn!("server terminated abnormally on last start, restoring state from .start");
        if path.exists() {
            fs::rename(path, with_suffix(path, ".bak"))?;
            tracing::info!("preserved incomplete store log as .bak");
        }
        fs::rename(&start, path)?;
        sync_dir(&dir)?;
        report.used_start_backup = true;
    }
    if !path.exists() {
        tracing::info!("creating store log...");
        let file = write_compacted(path, store)?;
        report.created = true;
        let log = StoreLog {
            file,
            path: path.to_path_buf(),
        };
        return Ok((log, report));
    }
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    replay(&data, store, &mut report);
    drop(data);
    fs::rename(path, &start)?;
    sync_dir(&dir)?;
    tracing::info!("compacting store log (do not terminate)...");
    let file = write_compacted(path, store)?;
    let (secs, nanos) = unix_parts(now);
    let backup = with_suffix(path, &format!(".{}", iso8601_show(secs, nanos)));
    fs::rename(&start, &backup)?;
    sync_dir(&dir)?;
    report.backup = Some(backup);
    report.removed_backups = remove_store_log_backups(path, now)?;
    let log = StoreLog {
        file,
        path: path.to_path_buf(),
    };
    Ok((log, report))
}

const DAY: i64 = 86_400;
/// Backups older than this are removed ...
const OLD_BACKUP_TTL: i64 = 21 * DAY;
/// ... except this many newest of those older than a day.
const MIN_OLD_BACKUPS: usize = 3;

/// Backup retention (`removeStoreLogBackups`): backups older than 21 days
/// are removed, but the 3 newest backups older than 24 h are always kept.
/// Returns how many were removed.
pub fn remove_store_log_backups(path: &Path, now: SystemTime) -> io::Result<usize> {
    let dir = parent_dir(path);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(0);
    };
    let prefix = format!("{name}.");
    let mut backups: Vec<((i64, u32), PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if let Some(t) = fname.strip_prefix(&prefix).and_then(iso8601_parse) {
            backups.push((t, entry.path()));
        }
    }
    backups.sort();
    let (now_s, now_n) = unix_parts(now);
    let new = (now_s - DAY, now_n);
    let old = (now_s - OLD_BACKUP_TTL, now_n);
    let older_than_day: Vec<_> = backups.into_iter().filter(|(t, _)| *t < new).collect();
    let candidates = older_than_day.len().saturating_sub(MIN_OLD_BACKUPS);
    let mut removed = 0;
    for (t, p) in older_than_day.into_iter().take(candidates) {
        if t < old {
            match fs::remove_file(&p) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("could not remove old store log backup: {e}"),
            }
        }
    }
    if removed > 0 {
        tracing::info!("removed {removed} store log backups");
    }
    Ok(removed)
}

/// Seconds and nanoseconds since the epoch (negative before it).
pub fn unix_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d: Duration = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC date `YYYY-MM-DD` of Unix seconds.
pub fn iso8601_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `iso8601Show` of a `UTCTime`: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the
/// fraction without trailing zeros and absent when zero.
pub fn iso8601_show(secs: i64, nanos: u32) -> String {
    let tod = secs.rem_euclid(DAY);
    let mut s = format!(
        "{}T{:02}:{:02}:{:02}",
        iso8601_date(secs),
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    );
    if nanos > 0 {
        let frac = format!("{:09}", nanos.min(999_999_999));
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses the [`iso8601_show`] form (any number of fraction digits; digits
/// past nanoseconds are dropped). `None` for anything else.
pub fn iso8601_parse(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let f = b.get(r)?;
        if f.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(f).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(i64::from(y), mo)
        || h > 23
        || mi > 59
        || se > 60
    {
        return None;
    }
    let rest = &b[19..];
    let nanos = match rest {
        b"Z" => 0,
        [b'.', frac @ .., b'Z'] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => {
            let mut n = 0u32;
            for i in 0..9 {
                n = n * 10 + frac.get(i).map_or(0, |c| u32::from(c - b'0'));
            }
            n
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * DAY + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se);
    Some((secs, nanos))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}
