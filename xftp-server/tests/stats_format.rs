//! Statistics texts (xftp.md §8.10).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use xftp_server::stats::{
    FileServerStats, FileServerStatsData, PeriodStatsData, StatsParseError, add, id_hash, inc,
    prometheus_metrics, secs_until_daily_log,
};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

const SAT_2026_06_13: u64 = 1_781_308_800;
const MON_2026_06_15: u64 = 1_781_481_600;
const MON_2026_06_01: u64 = 1_780_272_000;
const WED_2026_07_01: u64 = 1_782_864_000;

/// Computed with Python: int.from_bytes(sha256(bytes([1]*16))[:8], 'big', signed=True).
const H1: i64 = -3_707_355_172_489_364_403;
const H2: i64 = 2_966_462_459_034_887_734;

#[test]
fn download_sets_hold_hashes() {
    assert_eq!(id_hash(&[1; 16]), H1);
    assert_eq!(id_hash(&[2; 16]), H2);
    let s = FileServerStats::new(t(0));
    s.record_download(&[1; 16]);
    s.record_download(&[1; 16]);
    s.record_download(&[2; 16]);
    let d = s.snapshot();
    assert_eq!(d.file_downloads, 3);
    assert_eq!(d.files_downloaded.day, BTreeSet::from([H1, H2]));
}

fn busy_stats(from: u64) -> FileServerStats {
    let s = FileServerStats::new(t(from));
    add(&s.files_created, 2);
    add(&s.file_recipients, 5);
    s.record_upload(65_536);
    s.record_upload(1_000);
    s.record_file_removed(1_000);
    inc(&s.files_deleted);
    inc(&s.files_expired);
    inc(&s.files_blocked);
    s.record_download(&[1; 16]);
    inc(&s.file_download_acks);
    s
}

#[test]
fn daily_csv_lines() {
    let s = busy_stats(SAT_2026_06_13 - 86_400 + 5);
    // Saturday: only the day set is written and reset.
    assert_eq!(
        s.daily_line(t(SAT_2026_06_13)),
        "2026-06-12,2,5,2,1,1,,,1,1,1,65536,1"
    );
    // Everything plain was reset; totals stay; the period started at the last line.
    assert_eq!(
        s.daily_line(t(SAT_2026_06_13 + 86_400)),
        "2026-06-13,0,0,0,0,0,,,0,0,1,65536,0"
    );
    // Monday: the week set (still holding the download) is written and reset.
    s.record_download(&[2; 16]);
    assert_eq!(
        s.daily_line(t(MON_2026_06_15)),
        "2026-06-14,0,0,0,0,1,2,,1,0,1,65536,0"
    );
    assert_eq!(
        s.daily_line(t(MON_2026_06_15 + 1)),
        "2026-06-15,0,0,0,0,0,0,,0,0,1,65536,0"
    );
    let m = busy_stats(MON_2026_06_01 - 86_400);
    assert_eq!(
        m.daily_line(t(MON_2026_06_01)),
        "2026-05-31,2,5,2,1,1,1,1,1,1,1,65536,1"
    );
    let w = busy_stats(WED_2026_07_01 - 86_400);
    assert_eq!(
        w.daily_line(t(WED_2026_07_01)),
        "2026-06-30,2,5,2,1,1,,1,1,1,1,65536,1"
    );
    assert_eq!(
        w.snapshot().files_downloaded,
        PeriodStatsData {
            day: BTreeSet::new(),
            week: BTreeSet::from([H1]),
            month: BTreeSet::new(),
        }
    );
}

#[test]
fn daily_schedule() {
    assert_eq!(secs_until_daily_log(t(SAT_2026_06_13)), 0);
    assert_eq!(secs_until_daily_log(t(SAT_2026_06_13 + 3600)), 82_800);
}

fn sample_data() -> FileServerStatsData {
    FileServerStatsData {
        from_time: (SAT_2026_06_13 as i64, 500_000_000),
        files_created: 1,
        file_recipients: 2,
        files_uploaded: 3,
        files_expired: 4,
        files_deleted: 5,
        files_blocked: 6,
        files_downloaded: PeriodStatsData {
            day: BTreeSet::from([H2, H1]),
            week: BTreeSet::from([H1]),
            month: BTreeSet::new(),
        },
        file_downloads: 7,
        file_download_acks: 8,
        files_count: 9,
        files_size: 10,
    }
}

const BACKUP: &str = "fromTime=2026-06-13T00:00:00.5Z
filesCreated=1
fileRecipients=2
filesUploaded=3
filesExpired=4
filesDeleted=5
filesBlocked=6
filesCount=9
filesSize=10
filesDownloaded:
dayHashes=-3707355172489364403,2966462459034887734
weekHashes=-3707355172489364403
monthHashes=
fileDownloads=7
fileDownloadAcks=8
";

#[test]
fn backup_text() {
    let d = sample_data();
    assert_eq!(d.encode_backup(), BACKUP);
    assert_eq!(BACKUP.lines().count(), 15);
    assert_eq!(
        FileServerStatsData::decode_backup(BACKUP.as_bytes()),
        Ok(d.clone())
    );
    let crlf = BACKUP.replace('\n', "\r\n");
    assert_eq!(FileServerStatsData::decode_backup(crlf.as_bytes()), Ok(d));
}

#[test]
fn backup_old_forms_and_errors() {
    // Older servers: no filesExpired/filesBlocked/filesCount/filesSize, and
    // download sets as base64url IDs.
    let old = "fromTime=2026-06-13T00:00:00Z\nfilesCreated=1\nfileRecipients=2\nfilesUploaded=3\nfilesDeleted=5\n\
               filesDownloaded:\nday=AQEBAQEBAQEBAQEBAQEBAQ==\nweek=\nmonth=AQEBAQEBAQEBAQEBAQEBAQ==,AgICAgICAgICAgICAgICAg==\n\
               fileDownloads=7\nfileDownloadAcks=8\n";
    let d = FileServerStatsData::decode_backup(old.as_bytes()).unwrap();
    assert_eq!(
        (
            d.files_expired,
            d.files_blocked,
            d.files_count,
            d.files_size
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(d.files_downloaded.day, BTreeSet::from([H1]));
    assert_eq!(d.files_downloaded.month, BTreeSet::from([H1, H2]));
    let dec = |s: &str| FileServerStatsData::decode_backup(s.as_bytes());
    assert_eq!(
        dec(&format!("{BACKUP}x")),
        Err(StatsParseError::TrailingInput)
    );
    assert_eq!(
        dec(&BACKUP.replace("filesCreated=1", "filesCreated=x")),
        Err(StatsParseError::Value("filesCreated="))
    );
    assert_eq!(
        dec(&BACKUP.replace("fileDownloads=7\n", "")),
        Err(StatsParseError::Expected("fileDownloads="))
    );
    assert_eq!(
        dec(&BACKUP[..BACKUP.len() - 1]),
        Err(StatsParseError::Expected("fileDownloadAcks="))
    );
    assert!(dec("").is_err());
}

#[test]
fn restore_takes_totals_from_store() {
    let s = FileServerStats::new(t(0));
    s.restore(&sample_data(), 42, 4242);
    let d = s.snapshot();
    assert_eq!((d.files_count, d.files_size), (42, 4242));
    assert_eq!(d.files_blocked, 6);
    assert_eq!(d.files_downloaded, sample_data().files_downloaded);
}

#[test]
fn prometheus_text() {
    let now = UNIX_EPOCH + Duration::from_millis(1_781_352_000_123) + Duration::from_nanos(999);
    let ts = "1781352000123";
    let m = |name: &str, help: &str, kind: &str, v: &str, field: &str| {
        format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v} {ts}\n# {field}\n\n")
    };
    let expected = [
        "# Recorded at: 2026-06-13T12:00:00.123000999Z\n# Stats from: 2026-06-13T00:00:00.5Z\n\n# Files\n# -----\n\n".to_owned(),
        m("simplex_xftp_files_created", "Created files", "counter", "1", "filesCreated"),
        m("simplex_xftp_files_recipients", "Files recipients", "counter", "2", "fileRecipients"),
        m("simplex_xftp_files_uploaded", "Uploaded files", "counter", "3", "filesUploaded"),
        m("simplex_xftp_files_expired", "Expired files", "counter", "4", "filesExpired"),
        m("simplex_xftp_files_deleted", "Deleted files", "counter", "5", "filesDeleted"),
        m("simplex_xftp_files_blocked", "Blocked files", "counter", "6", "filesBlocked"),
        m("simplex_xftp_file_downloads", "File downloads", "counter", "7", "fileDownloads"),
        m("simplex_xftp_file_download_acks", "File download ACKs", "counter", "8", "fileDownloadAcks"),
        m("simplex_xftp_files_count_total", "Total files count ", "gauge", "9", "filesCount"),
        m("simplex_xftp_files_size", "Size of files ", "gauge", "10", "filesSize "),
        m("simplex_xftp_files_count_daily", "Daily files count", "gauge", "2", "filesDownloaded.dayCount"),
        m("simplex_xftp_files_count_weekly", "Weekly files count", "gauge", "1", "filesDownloaded.weekCount"),
        m("simplex_xftp_files_count_monthly", "Monthly files count", "gauge", "0", "filesDownloaded.monthCount"),
        "# Info\n# ----\n\n# HELP simplex_xftp_info Server information. RTS options have to be passed via XFTP_RTS_OPTIONS env var\n\
         # TYPE simplex_xftp_info gauge\nsimplex_xftp_info{version=\"6.5.5.0\",rts_options=\"set XFTP_RTS_OPTIONS\"} 1\n\n"
            .to_owned(),
    ]
    .concat();
    assert_eq!(
        prometheus_metrics(&sample_data(), now, "6.5.5.0", None),
        expected
    );
    let with_opts = prometheus_metrics(&sample_data(), now, "6.5.5.0", Some("+RTS -N"));
    assert!(
        with_opts.contains("simplex_xftp_info{version=\"6.5.5.0\",rts_options=\"+RTS -N\"} 1\n")
    );
}
