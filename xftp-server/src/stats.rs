//! Server statistics (simplexmq `Simplex.FileTransfer.Server.Stats`,
//! `Prometheus`, `Server.logServerStats`): counters, the daily CSV line,
//! the `file-server-stats.log` backup and the Prometheus text.
//!
//! Download sets hold a 64-bit prefix of SHA-256(sender ID), never the ID:
//! the backup file stores them as the reference's decimal `Int` sets, so
//! either server can read the other's backup.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use smp_core::crypto::digest::sha256;
use smp_core::encoding::string::b64_decode;

use crate::store::FileId;
use crate::store_log::{iso8601_date, iso8601_parse, iso8601_show, unix_parts};

/// Daily CSV file name in the log directory.
pub const STATS_DAILY_FILE: &str = "file-server-stats.daily.log";
/// Backup file name in the log directory.
pub const STATS_BACKUP_FILE: &str = "file-server-stats.log";
/// Prometheus metrics file name in the log directory.
pub const METRICS_FILE: &str = "xftp-server-metrics.txt";
/// Environment variable shown in `simplex_xftp_info`.
pub const RTS_OPTIONS_ENV: &str = "XFTP_RTS_OPTIONS";

/// The hash kept in download sets.
pub fn id_hash(id: &[u8]) -> i64 {
    let h = sha256(id);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    i64::from_be_bytes(b)
}

/// Distinct downloaded files per day, week and month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodStatsData {
    pub day: BTreeSet<i64>,
    pub week: BTreeSet<i64>,
    pub month: BTreeSet<i64>,
}

/// A snapshot of all counters (`FileServerStatsData`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileServerStatsData {
    /// Start of the current period: Unix seconds and nanoseconds.
    pub from_time: (i64, u32),
    pub files_created: i64,
    pub file_recipients: i64,
    pub files_uploaded: i64,
    pub files_expired: i64,
    pub files_deleted: i64,
    pub files_blocked: i64,
    pub files_downloaded: PeriodStatsData,
    pub file_downloads: i64,
    pub file_download_acks: i64,
    pub files_count: i64,
    pub files_size: i64,
}

/// Why a stats backup did not parse (the reference then refuses to start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsParseError {
    #[error("stats backup: expected `{0}`")]
    Expected(&'static str),
    #[error("stats backup: invalid value for `{0}`")]
    Value(&'static str),
    #[error("stats backup: unexpected trailing input")]
    TrailingInput,
}

/// Live counters, updated concurrently by request handlers.
#[derive(Debug, Default)]
pub struct FileServerStats {
    from_time: Mutex<(i64, u32)>,
    pub files_created: AtomicI64,
    pub file_recipients: AtomicI64,
    pub files_uploaded: AtomicI64,
    pub files_expired: AtomicI64,
    pub files_deleted: AtomicI64,
    pub files_blocked: AtomicI64,
    files_downloaded: Mutex<PeriodStatsData>,
    pub file_downloads: AtomicI64,
    pub file_download_acks: AtomicI64,
    pub files_count: AtomicI64,
    pub files_size: AtomicI64,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicI64, n: i64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicI64) {
    add(counter, 1);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not stop statistics: the data stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FileServerStats {
    pub fn new(from: SystemTime) -> Self {
        Self {
            from_time: Mutex::new(unix_parts(from)),
            ..Self::default()
        }
    }

    /// A successful FGET reply: one download, and the file joins the
    /// day/week/month sets.
    pub fn record_download(&self, sender_id: &FileId) {
        inc(&self.file_downloads);
        let h = id_hash(sender_id);
        let mut p = lock(&self.files_downloaded);
        p.day.insert(h);
        p.week.insert(h);
        p.month.insert(h);
    }

    /// A committed upload: `filesUploaded`, `filesCount`, `filesSize`.
    pub fn record_upload(&self, size: u32) {
        inc(&self.files_uploaded);
        inc(&self.files_count);
        add(&self.files_size, i64::from(size));
    }

    /// A chunk file removed by delete or block (not by expiry, as in the
    /// reference): the current totals shrink.
    pub fn record_file_removed(&self, size: u32) {
        add(&self.files_count, -1);
        add(&self.files_size, -i64::from(size));
    }

    pub fn snapshot(&self) -> FileServerStatsData {
        let g = |c: &AtomicI64| c.load(Ordering::Relaxed);
        FileServerStatsData {
            from_time: *lock(&self.from_time),
            files_created: g(&self.files_created),
            file_recipients: g(&self.file_recipients),
            files_uploaded: g(&self.files_uploaded),
            files_expired: g(&self.files_expired),
            files_deleted: g(&self.files_deleted),
            files_blocked: g(&self.files_blocked),
            files_downloaded: lock(&self.files_downloaded).clone(),
            file_downloads: g(&self.file_downloads),
            file_download_acks: g(&self.file_download_acks),
            files_count: g(&self.files_count),
            files_size: g(&self.files_size),
        }
    }

    /// Restores a backup at start; `filesCount`/`filesSize` come from the
    /// store (its record count and used storage), not from the backup.
    pub fn restore(&self, d: &FileServerStatsData, files_count: i64, files_size: i64) {
        let s = |c: &AtomicI64, v: i64| c.store(v, Ordering::Relaxed);
        *lock(&self.from_time) = d.from_time;
        s(&self.files_created, d.files_created);
        s(&self.file_recipients, d.file_recipients);
        s(&self.files_uploaded, d.files_uploaded);
        s(&self.files_expired, d.files_expired);
        s(&self.files_deleted, d.files_deleted);
        s(&self.files_blocked, d.files_blocked);
        *lock(&self.files_downloaded) = d.files_downloaded.clone();
        s(&self.file_downloads, d.file_downloads);
        s(&self.file_download_acks, d.file_download_acks);
        s(&self.files_count, files_count);
        s(&self.files_size, files_size);
    }

    /// The daily CSV line (without `\n`) for the period ending `now`, and
    /// resets what the reference resets: the plain counters, the day set,
    /// the week set on Mondays and the month set on the 1st (UTC); on other
    /// days those fields are empty. `filesCount`/`filesSize` stay.
    pub fn daily_line(&self, now: SystemTime) -> String {
        let now = unix_parts(now);
        let from = std::mem::replace(&mut *lock(&self.from_time), now);
        let t = |c: &AtomicI64| c.swap(0, Ordering::Relaxed).to_string();
        let files_created = t(&self.files_created);
        let file_recipients = t(&self.file_recipients);
        let files_uploaded = t(&self.files_uploaded);
        let files_expired = t(&self.files_expired);
        let files_deleted = t(&self.files_deleted);
        let days = now.0.div_euclid(86_400);
        let monday = (days + 3).rem_euclid(7) == 0;
        let first = iso8601_date(now.0).ends_with("-01");
        let (day, week, month) = {
            let mut p = lock(&self.files_downloaded);
            let count = |set: &mut BTreeSet<i64>, reset: bool| {
                if reset {
                    std::mem::take(set).len().to_string()
                } else {
                    String::new()
                }
            };
            (
                count(&mut p.day, true),
                count(&mut p.week, monday),
                count(&mut p.month, first),
            )
        };
        let file_downloads = t(&self.file_downloads);
        let file_download_acks = t(&self.file_download_acks);
        let files_count = self.files_count.load(Ordering::Relaxed).to_string();
        let files_size = self.files_size.load(Ordering::Relaxed).to_string();
        [
            iso8601_date(from.0),
            files_created,
            file_recipients,
            files_uploaded,
            files_deleted,
            day,
            week,
            month,
            file_downloads,
            file_download_acks,
            files_count,
            files_size,
            files_expired,
        ]
        .join(",")
    }
}

/// Seconds from `now` to the next 00:00 UTC, when the daily line is due
/// (0 exactly at midnight).
pub fn secs_until_daily_log(now: SystemTime) -> u64 {
    let tod = unix_parts(now).0.rem_euclid(86_400);
    if tod == 0 { 0 } else { (86_400 - tod) as u64 }
}

fn int_set(s: &BTreeSet<i64>) -> String {
    s.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

impl FileServerStatsData {
    /// The 15-line backup text.
    pub fn encode_backup(&self) -> String {
        let p = &self.files_downloaded;
        format!(
            "fromTime={}\nfilesCreated={}\nfileRecipients={}\nfilesUploaded={}\nfilesExpired={}\n\
             filesDeleted={}\nfilesBlocked={}\nfilesCount={}\nfilesSize={}\nfilesDownloaded:\n\
             dayHashes={}\nweekHashes={}\nmonthHashes={}\nfileDownloads={}\nfileDownloadAcks={}\n",
            iso8601_show(self.from_time.0, self.from_time.1),
            self.files_created,
            self.file_recipients,
            self.files_uploaded,
            self.files_expired,
            self.files_deleted,
            self.files_blocked,
            self.files_count,
            self.files_size,
            int_set(&p.day),
            int_set(&p.week),
            int_set(&p.month),
            self.file_downloads,
            self.file_download_acks,
        )
    }

    /// Parses a backup as the reference does: `filesExpired`,
    /// `filesBlocked`, `filesCount` and `filesSize` may be missing (older
    /// servers), download sets may be in the old `day=<b64 IDs>` form; lines
    /// end in `\n` or `\r\n`; nothing may follow.
    pub fn decode_backup(text: &[u8]) -> Result<Self, StatsParseError> {
        let mut p = Lines { rest: text };
        let from_time = {
            let v = p.required("fromTime=")?;
            std::str::from_utf8(v)
                .ok()
                .and_then(iso8601_parse)
                .ok_or(StatsParseError::Value("fromTime"))?
        };
        let files_created = p.int("filesCreated=")?;
        let file_recipients = p.int("fileRecipients=")?;
        let files_uploaded = p.int("filesUploaded=")?;
        let files_expired = p.opt_int("filesExpired=")?;
        let files_deleted = p.int("filesDeleted=")?;
        let files_blocked = p.opt_int("filesBlocked=")?;
        let files_count = p.opt_int("filesCount=")?;
        let files_size = p.opt_int("filesSize=")?;
        if p.required("filesDownloaded:")? != b"" {
            return Err(StatsParseError::Expected("filesDownloaded:"));
        }
        let day = p.period("dayHashes=", "day=")?;
        let week = p.period("weekHashes=", "week=")?;
        let month = p.period("monthHashes=", "month=")?;
        let file_downloads = p.int("fileDownloads=")?;
        let file_download_acks = p.int("fileDownloadAcks=")?;
        if !p.rest.is_empty() {
            return Err(StatsParseError::TrailingInput);
        }
        Ok(Self {
            from_time,
            files_created,
            file_recipients,
            files_uploaded,
            files_expired,
            files_deleted,
            files_blocked,
            files_downloaded: PeriodStatsData { day, week, month },
            file_downloads,
            file_download_acks,
            files_count,
            files_size,
        })
    }
}

struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    /// The next line if it starts with `key` (value returned), consuming it.
    fn take(&mut self, key: &str) -> Option<&'a [u8]> {
        let body = self.rest.strip_prefix(key.as_bytes())?;
        let nl = body.iter().position(|&c| c == b'\n')?;
        let mut v = &body[..nl];
        if let Some(s) = v.strip_suffix(b"\r") {
            v = s;
        }
        self.rest = &body[nl + 1..];
        Some(v)
    }

    fn required(&mut self, key: &'static str) -> Result<&'a [u8], StatsParseError> {
        self.take(key).ok_or(StatsParseError::Expected(key))
    }

    fn int(&mut self, key: &'static str) -> Result<i64, StatsParseError> {
        parse_int(self.required(key)?).ok_or(StatsParseError::Value(key))
    }

    fn opt_int(&mut self, key: &'static str) -> Result<i64, StatsParseError> {
        match self.take(key) {
            None => Ok(0),
            Some(v) => parse_int(v).ok_or(StatsParseError::Value(key)),
        }
    }

    fn period(
        &mut self,
        key: &'static str,
        old_key: &'static str,
    ) -> Result<BTreeSet<i64>, StatsParseError> {
        if let Some(v) = self.take(key) {
            return split_list(v)
                .map(|i| parse_int(i).ok_or(StatsParseError::Value(key)))
                .collect();
        }
        let v = self.required(old_key)?;
        split_list(v)
            .map(|i| {
                std::str::from_utf8(i)
                    .ok()
                    .and_then(|s| b64_decode(s).ok())
                    .map(|id| id_hash(&id))
                    .ok_or(StatsParseError::Value(old_key))
            })
            .collect()
    }
}

fn split_list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&c| c == b',').filter(move |_| !v.is_empty())
}

fn parse_int(v: &[u8]) -> Option<i64> {
    let (neg, d) = match v.split_first() {
        Some((b'-', d)) => (true, d),
        Some((b'+', d)) => (false, d),
        _ => (false, v),
    };
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: i64 = std::str::from_utf8(d).ok()?.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// The text of `xftp-server-metrics.txt` at `now`. `version` is the
/// package version; `rts_options` the value of `XFTP_RTS_OPTIONS`, or
/// `None` to print the reference's hint.
pub fn prometheus_metrics(
    d: &FileServerStatsData,
    now: SystemTime,
    version: &str,
    rts_options: Option<&str>,
) -> String {
    let (secs, nanos) = unix_parts(now);
    let ts_ms = secs.saturating_mul(1000) + i64::from(nanos / 1_000_000);
    let mut out = format!(
        "# Recorded at: {}\n# Stats from: {}\n\n# Files\n# -----\n\n",
        iso8601_show(secs, nanos),
        iso8601_show(d.from_time.0, d.from_time.1)
    );
    let p = &d.files_downloaded;
    let metrics: [(&str, &str, &str, i64, &str); 13] = [
        (
            "simplex_xftp_files_created",
            "Created files",
            "counter",
            d.files_created,
            "filesCreated",
        ),
        (
            "simplex_xftp_files_recipients",
            "Files recipients",
            "counter",
            d.file_recipients,
            "fileRecipients",
        ),
        (
            "simplex_xftp_files_uploaded",
            "Uploaded files",
            "counter",
            d.files_uploaded,
            "filesUploaded",
        ),
        (
            "simplex_xftp_files_expired",
            "Expired files",
            "counter",
            d.files_expired,
            "filesExpired",
        ),
        (
            "simplex_xftp_files_deleted",
            "Deleted files",
            "counter",
            d.files_deleted,
            "filesDeleted",
        ),
        (
            "simplex_xftp_files_blocked",
            "Blocked files",
            "counter",
            d.files_blocked,
            "filesBlocked",
        ),
        (
            "simplex_xftp_file_downloads",
            "File downloads",
            "counter",
            d.file_downloads,
            "fileDownloads",
        ),
        (
            "simplex_xftp_file_download_acks",
            "File download ACKs",
            "counter",
            d.file_download_acks,
            "fileDownloadAcks",
        ),
        // The reference's text has these trailing spaces.
        (
            "simplex_xftp_files_count_total",
            "Total files count ",
            "gauge",
            d.files_count,
            "filesCount",
        ),
        (
            "simplex_xftp_files_size",
            "Size of files ",
            "gauge",
            d.files_size,
            "filesSize ",
        ),
        (
            "simplex_xftp_files_count_daily",
            "Daily files count",
            "gauge",
            p.day.len() as i64,
            "filesDownloaded.dayCount",
        ),
        (
            "simplex_xftp_files_count_weekly",
            "Weekly files count",
            "gauge",
            p.week.len() as i64,
            "filesDownloaded.weekCount",
        ),
        (
            "simplex_xftp_files_count_monthly",
            "Monthly files count",
            "gauge",
            p.month.len() as i64,
            "filesDownloaded.monthCount",
        ),
    ];
    for (name, help, kind, value, field) in metrics {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value} {ts_ms}\n# {field}\n\n"
        ));
    }
    let rts = match rts_options {
        Some(o) => o.to_owned(),
        None => format!("set {RTS_OPTIONS_ENV}"),
    };
    out.push_str(&format!(
        "# Info\n# ----\n\n# HELP simplex_xftp_info Server information. RTS options have to be passed via {RTS_OPTIONS_ENV} env var\n\
         # TYPE simplex_xftp_info gauge\nsimplex_xftp_info{{version=\"{version}\",rts_options=\"{rts}\"}} 1\n\n"
    ));
    out
}
