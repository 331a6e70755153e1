//! Append-only store logs as the reference servers keep them: line
//! replay that skips (and counts) bad lines, a torn last line from a crash,
//! crash-safe compaction at start (`readWriteStoreLog`: `.start` backup,
//! timestamped copies, their retention) and the ISO-8601 names they use.
//! Shared by the XFTP and SMP servers; the record formats live with them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An append-only log file that never lets a failed write swallow the next
/// record: a write that fails part-way (a full disk) is cut off again, and
/// if even that fails, the next record starts on a line of its own, so the
/// fragment is one bad line that replay skips and counts.
#[derive(Debug)]
pub struct AppendLog {
    file: File,
    path: PathBuf,
    /// The file's length before any fragment of a failed write.
    whole: u64,
    /// A failed write left a fragment that could not be cut off yet.
    cut_pending: bool,
    /// The file ends without a newline (killed mid-write before it was
    /// opened): the next record starts with one.
    newline_first: bool,
}

impl AppendLog {
    /// Writes one line (without its `\n`) in a single `write_all`, so
    /// concurrent lines never mix; durable only after [`AppendLog::sync`].
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.cut_pending && self.file.set_len(self.whole).is_ok() {
            self.cut_pending = false;
        }
        let mut buf = Vec::with_capacity(line.len() + 2);
        if self.cut_pending || self.newline_first {
            buf.push(b'\n');
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        match self.file.write_all(&buf) {
            Ok(()) => {
                self.whole = if self.cut_pending {
                    // The fragment's length is unknown: ask the file.
                    self.file.metadata()?.len()
                } else {
                    self.whole + buf.len() as u64
                };
                self.cut_pending = false;
                self.newline_first = false;
                Ok(())
            }
            Err(e) => {
                // Part of the line may be in the file: cut it off now, or
                // before the next write.
                if self.file.set_len(self.whole).is_err() {
                    self.cut_pending = true;
                }
                Err(e)
            }
        }
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens `path` for appending (created if missing). A file that does not
/// end with a newline (killed mid-write) gets its next record on a line of
/// its own.
pub fn open_append(path: &Path) -> io::Result<AppendLog> {
    tighten(path)?;
    let mut file = private(&mut OpenOptions::new())
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let whole = file.metadata()?.len();
    let newline_first = whole > 0 && {
        use std::io::Seek;
        let mut last = [0u8; 1];
        file.seek(io::SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        last[0] != b'\n'
    };
    Ok(AppendLog {
        file,
        path: path.to_path_buf(),
        whole,
        cut_pending: false,
        newline_first,
    })
}

/// Logs hold queue keys and message bodies: owner-only from the moment
/// they exist, not chmod'ed afterwards (which leaves a window).
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Writes a report meant for monitoring tools (statistics, metrics):
/// readable by others, writable only by its owner whatever the umask.
pub fn write_public(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o644);
    }
    options.open(path)?.write_all(bytes)
}

/// Narrows an existing file that others may read (written by an older
/// version, or by hand) to its owner. Returns whether it had to.
pub fn tighten(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
            tracing::warn!(
                file = %path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                "file was readable by others; narrowed to 0600"
            );
            return Ok(true);
        }
        Ok(false)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(false)
    }
}

/// Makes a rename or creation of `path` durable (fsync of its directory).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(&parent_dir(path))
}

/// Replaces `path` with what `write` produces, crash-safely: written to
/// `<path>.tmp`, made durable, renamed over `path`, directory synced. A
/// crash leaves either the old file or the new one.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let file = private(&mut OpenOptions::new())
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    // A `.tmp` left by an older version may be wider than the new file.
    tighten(&tmp)?;
    let mut f = io::BufWriter::new(file);
    write(&mut f)?;
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// A store a log replays into and compacts from.
pub trait LogStore {
    /// Applies one line (without `\n`).
    fn apply_line(&mut self, line: &[u8]) -> Result<(), LineError>;
    /// The lines that recreate the current state.
    fn compacted_lines(&self) -> Vec<Vec<u8>>;
}

/// Why a replayed line was skipped; the texts carry no IDs or keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    Parse(String),
    Rejected(String),
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
pub fn replay<S: LogStore + ?Sized>(data: &[u8], store: &mut S, report: &mut ReplayReport) {
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
        match store.apply_line(line) {
            Ok(()) => {}
            Err(LineError::Parse(e)) => {
                report.parse_errors += 1;
                tracing::warn!(line = report.lines, "store log parsing error ({e})");
            }
            Err(LineError::Rejected(e)) => {
                report.rejected += 1;
                tracing::warn!(line = report.lines, "store log processing error ({e})");
            }
        }
    }
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
fn write_compacted<S: LogStore + ?Sized>(path: &Path, store: &S) -> io::Result<AppendLog> {
    let mut buf = Vec::new();
    for line in store.compacted_lines() {
        buf.extend_from_slice(&line);
        buf.push(b'\n');
    }
    let mut file = private(&mut OpenOptions::new())
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(&buf)?;
    file.sync_all()?;
    drop(file);
    sync_dir(&parent_dir(path))?;
    open_append(path)
}

/// Opens a store log at start-up (`readWriteStoreLog`) at time `now`.
///
/// Steps, each durable before the next: a leftover `.start` (crash during
/// compaction) replaces the log, the incomplete log is kept as `.bak`; the
/// log is replayed; renamed to `.start`; the compacted log is written;
/// `.start` is renamed to `<log>.<ISO-8601 UTC>`. A kill at any point leaves
/// `.start` (the complete old log) or a complete new log.
pub fn open_log_at<S: LogStore + ?Sized>(
    path: &Path,
    store: &mut S,
    now: SystemTime,
) -> io::Result<(AppendLog, ReplayReport)> {
    let mut report = ReplayReport::default();
    let dir = parent_dir(path);
    let start = with_suffix(path, ".start");
    if start.exists() {
        tracing::warn!("server terminated abnormally on last start, restoring state from .start");
        if path.exists() {
            tighten(path)?;
            fs::rename(path, with_suffix(path, ".bak"))?;
            tracing::info!("preserved incomplete store log as .bak");
        }
        fs::rename(&start, path)?;
        sync_dir(&dir)?;
        report.used_start_backup = true;
    }
    if !path.exists() {
        tracing::info!("creating store log...");
        let log = write_compacted(path, store)?;
        report.created = true;
        return Ok((log, report));
    }
    // The log becomes the timestamped backup below: an older version's
    // 0644 log must not leave a readable copy behind.
    tighten(path)?;
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    replay(&data, store, &mut report);
    drop(data);
    fs::rename(path, &start)?;
    sync_dir(&dir)?;
    tracing::info!("compacting store log (do not terminate)...");
    let log = write_compacted(path, store)?;
    let (secs, nanos) = unix_parts(now);
    let backup = with_suffix(path, &format!(".{}", iso8601_show(secs, nanos)));
    fs::rename(&start, &backup)?;
    sync_dir(&dir)?;
    report.backup = Some(backup);
    report.removed_backups = remove_store_log_backups(path, now)?;
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
            // Backups an older version left readable are narrowed too.
            if let Err(e) = tighten(&entry.path()) {
                tracing::warn!("could not narrow a store log backup to 0600: {e}");
            }
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
