//! Store log lines, replay, compaction and crash handling (xftp.md §8.6).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smp_core::crypto::keys::{KeyAlgorithm, PublicKey};
use smp_core::xftp::command::{FileInfo, FileParty};
use smp_core::xftp::error::{BlockingInfo, BlockingReason, ClientNotice};
use xftp_server::store::{FileStatus, FileStore};
use xftp_server::store_log::{
    LogParseError, ReplayReport, STORE_LOG_FILE, StoreLogRecord, compacted_records, iso8601_parse,
    iso8601_show, open_store_log_at, remove_store_log_backups, replay,
};

// Expected texts computed independently (Python base64.urlsafe_b64encode).
const ID1: &str = "AQEBAQEBAQEBAQEBAQEBAQ==";
const ID2: &str = "AgICAgICAgICAgICAgICAg==";
const ID3: &str = "AwMDAwMDAwMDAwMDAwMDAw==";
/// Ed25519 SPKI DER of 32 zero bytes.
const KEY0: &str = "MCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
/// Ed25519 SPKI DER of 32 bytes 0x07.
const KEY7: &str = "MCowBQYDK2VwAyEABwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// 32 bytes 0xab.
const DIGEST: &str = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
/// `files/AQEBAQEBAQEBAQEBAQEBAQ==` base64url-encoded.
const PATH1: &str = "ZmlsZXMvQVFFQkFRRUJBUUVCQVFFQkFRRUJBUT09";

fn key(b: u8) -> PublicKey {
    PublicKey::from_raw(KeyAlgorithm::Ed25519, &[b; 32]).unwrap()
}

fn info(size: u32) -> FileInfo {
    FileInfo {
        snd_key: key(0),
        size,
        digest: vec![0xab; 32],
    }
}

fn blocked_ttl() -> BlockingInfo {
    BlockingInfo {
        reason: BlockingReason::Content,
        notice: Some(ClientNotice { ttl: Some(60) }),
    }
}

fn all_records() -> Vec<(StoreLogRecord, String)> {
    vec![
        (
            StoreLogRecord::AddFile {
                sender_id: [1; 16],
                info: info(65536),
                created_at: 1_767_225_600,
                status: FileStatus::Active,
            },
            format!("FNEW {ID1} {KEY0} 65536 {DIGEST} 1767225600 active"),
        ),
        (
            StoreLogRecord::AddFile {
                sender_id: [2; 16],
                info: info(64000),
                created_at: 3600,
                status: FileStatus::Blocked(blocked_ttl()),
            },
            format!(
                "FNEW {ID2} {KEY0} 64000 {DIGEST} 3600 blocked,reason=content,notice={{\"ttl\":60}}"
            ),
        ),
        (
            StoreLogRecord::AddFile {
                sender_id: [3; 16],
                info: info(1),
                created_at: 0,
                status: FileStatus::Off,
            },
            format!("FNEW {ID3} {KEY0} 1 {DIGEST} 0 off"),
        ),
        (
            StoreLogRecord::PutFile {
                sender_id: [1; 16],
                path: PathBuf::from(format!("files/{ID1}")),
            },
            format!("FPUT {ID1} {PATH1}"),
        ),
        (
            StoreLogRecord::AddRecipients {
                sender_id: [1; 16],
                recipients: vec![([2; 16], key(7)), ([3; 16], key(0))],
            },
            format!("FADD {ID1} {ID2}:{KEY7},{ID3}:{KEY0}"),
        ),
        (
            StoreLogRecord::DeleteFile { sender_id: [1; 16] },
            format!("FDEL {ID1}"),
        ),
        (
            StoreLogRecord::BlockFile {
                sender_id: [2; 16],
                info: BlockingInfo {
                    reason: BlockingReason::Spam,
                    notice: None,
                },
            },
            format!("FBLK {ID2} reason=spam"),
        ),
        (
            StoreLogRecord::AckFile {
                recipient_id: [3; 16],
            },
            format!("FACK {ID3}"),
        ),
    ]
}

#[test]
fn exact_line_text_and_round_trip() {
    for (rec, line) in all_records() {
        assert_eq!(rec.encode(), line);
        assert_eq!(StoreLogRecord::decode(line.as_bytes()), Ok(rec));
    }
}

#[test]
fn parser_leniency_and_rejections() {
    // Missing status parses as active; unpadded base64 is accepted.
    let l = format!("FNEW {} {KEY0} 10 {DIGEST} 3600", ID1.trim_end_matches('='));
    match StoreLogRecord::decode(l.as_bytes()).unwrap() {
        StoreLogRecord::AddFile { status, info, .. } => {
            assert_eq!(status, FileStatus::Active);
            assert_eq!(info.size, 10);
        }
        r => panic!("{r:?}"),
    }
    let bad: Vec<(String, LogParseError)> = vec![
        (String::new(), LogParseError::UnknownTag),
        ("FDEL".into(), LogParseError::UnknownTag),
        (format!("FXXX {ID1}"), LogParseError::UnknownTag),
        (format!("FDEL {ID1} x"), LogParseError::TrailingInput),
        ("FDEL AQEB".into(), LogParseError::IdLength),
        ("FDEL !!!!".into(), LogParseError::Base64),
        (
            format!("FNEW {ID1} {KEY0} 10 {DIGEST} 3600 "),
            LogParseError::Status,
        ),
        (
            format!("FNEW {ID1} {KEY0} 10 {DIGEST} 3600 blocked"),
            LogParseError::Status,
        ),
        (
            format!("FNEW {ID1} {KEY0} -10 {DIGEST} 3600"),
            LogParseError::Number,
        ),
        (
            format!("FNEW {ID1} {KEY0} 4294967296 {DIGEST} 3600"),
            LogParseError::Number,
        ),
        (
            format!("FNEW {ID1} {KEY0} 10 {DIGEST}"),
            LogParseError::MissingField,
        ),
        (
            format!("FNEW {ID1} {DIGEST} 10 {DIGEST} 3600"),
            LogParseError::Key,
        ),
        (format!("FADD {ID1} {ID2}{KEY0}"), LogParseError::Recipient),
        (
            format!("FADD {ID1} {ID2}:{KEY0},"),
            LogParseError::Recipient,
        ),
        (
            format!("FBLK {ID1} reason=other"),
            LogParseError::BlockingInfo,
        ),
        (format!("FPUT {ID1}"), LogParseError::MissingField),
        (format!("FDEL {ID1}\r"), LogParseError::Base64),
    ];
    for (line, e) in bad {
        assert_eq!(StoreLogRecord::decode(line.as_bytes()), Err(e), "{line:?}");
    }
}

fn lines(ls: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in ls {
        v.extend_from_slice(l.as_bytes());
        v.push(b'\n');
    }
    v
}

#[test]
fn replay_rules() {
    let log = lines(&[
        format!("FNEW {ID1} {KEY0} 65536 {DIGEST} 3600 active"),
        format!("FNEW {ID1} {KEY0} 65536 {DIGEST} 3600 active"), // duplicate
        format!("FNEW {ID2} {KEY0} 0 {DIGEST} 3600 active"),     // size 0
        format!("FNEW {ID2} {KEY0} 64000 {DIGEST} 3600"),        // any size > 0
        "garbage".into(),
        format!("FADD {ID1} {ID2}:{KEY7},{ID1}:{KEY7}"),
        format!("FADD {ID2} {ID3}:{KEY0},{ID2}:{KEY0},{ID1}:{KEY0}"), // ID2 ok? no: ID2 rcp used
        format!("FPUT {ID1} {PATH1}"),
        format!("FPUT {ID1} {PATH1}"), // already has a path
        format!("FPUT {ID3} {PATH1}"), // unknown
        format!("FBLK {ID2} reason=spam"),
        format!("FPUT {ID2} {PATH1}"), // not active
        format!("FACK {ID1}"),
        format!("FACK {ID1}"), // unknown now
        format!("FDEL {ID3}"), // unknown
    ]);
    let mut st = FileStore::new(None);
    let mut rep = ReplayReport::default();
    replay(&log, &mut st, &mut rep);
    assert_eq!(rep.lines, 15);
    assert_eq!(rep.parse_errors, 1);
    // dup FNEW, size 0, FADD #2 (second rcp), FPUT x3, FACK, FDEL
    assert_eq!(rep.rejected, 8);
    assert!(!rep.torn_tail);
    assert_eq!(st.file_count(), 2);
    let f1 = st.get_file(FileParty::Sender, &[1; 16]).unwrap().file;
    assert_eq!(f1.path, Some(PathBuf::from(format!("files/{ID1}"))));
    // ID2 and ID1 were added to file 1, then ID1 was acknowledged.
    assert_eq!(
        f1.recipient_ids.iter().copied().collect::<Vec<_>>(),
        vec![[2; 16]]
    );
    // The second FADD added ID3 before failing on ID2.
    let f2 = st.get_file(FileParty::Recipient, &[3; 16]).unwrap().file;
    assert_eq!(f2.sender_id, [2; 16]);
    assert_eq!(f2.info.size, 64000);
    assert!(f2.blocked().is_some());
    assert_eq!(f2.path, None);
}

#[test]
fn compaction_output() {
    let mut st = FileStore::new(None);
    // Insert out of order: compaction sorts by sender ID.
    st.add_file([2; 16], info(64000), 3600, FileStatus::Active)
        .unwrap();
    st.add_file([1; 16], info(65536), 7200, FileStatus::Active)
        .unwrap();
    st.add_recipient(&[1; 16], [3; 16], key(7)).unwrap();
    st.add_recipient(&[1; 16], [2; 16], key(0)).unwrap();
    st.set_file_path(&[1; 16], format!("files/{ID1}").into())
        .unwrap();
    st.set_file_path(&[2; 16], "x".into()).unwrap();
    st.block_file(&[2; 16], blocked_ttl()).unwrap();
    let text: Vec<String> = compacted_records(&st).iter().map(|r| r.encode()).collect();
    assert_eq!(
        text,
        vec![
            format!("FNEW {ID1} {KEY0} 65536 {DIGEST} 7200 active"),
            format!("FADD {ID1} {ID2}:{KEY0},{ID3}:{KEY7}"),
            format!("FPUT {ID1} {PATH1}"),
            format!(
                "FNEW {ID2} {KEY0} 64000 {DIGEST} 3600 blocked,reason=content,notice={{\"ttl\":60}}"
            ),
            format!("FPUT {ID2} eA=="),
        ]
    );
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

const NOW: u64 = 1_781_352_000; // 2026-06-13T12:00:00Z

fn log_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(STORE_LOG_FILE);
    (d, p)
}

fn dir_names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn start_creates_then_compacts_and_backs_up() {
    let (d, p) = log_dir();
    let mut st = FileStore::new(None);
    let (mut log, rep) = open_store_log_at(&p, &mut st, t(NOW)).unwrap();
    assert!(rep.created);
    assert_eq!(fs::read(&p).unwrap(), b"");
    for (r, _) in all_records().into_iter().take(5) {
        log.append(&r).unwrap();
    }
    log.append(&StoreLogRecord::AckFile {
        recipient_id: [2; 16],
    })
    .unwrap();
    drop(log);
    let mut st = FileStore::new(None);
    let (_log, rep) = open_store_log_at(&p, &mut st, t(NOW + 1)).unwrap();
    assert_eq!((rep.lines, rep.parse_errors, rep.rejected), (6, 0, 0));
    let backup = d.path().join("file-server-store.log.2026-06-13T12:00:01Z");
    assert_eq!(rep.backup.as_deref(), Some(backup.as_path()));
    assert_eq!(
        dir_names(d.path()),
        vec![
            STORE_LOG_FILE.to_owned(),
            "file-server-store.log.2026-06-13T12:00:01Z".into()
        ]
    );
    let expected = lines(&[
        format!("FNEW {ID1} {KEY0} 65536 {DIGEST} 1767225600 active"),
        format!("FADD {ID1} {ID3}:{KEY0}"),
        format!("FPUT {ID1} {PATH1}"),
        format!(
            "FNEW {ID2} {KEY0} 64000 {DIGEST} 3600 blocked,reason=content,notice={{\"ttl\":60}}"
        ),
        format!("FNEW {ID3} {KEY0} 1 {DIGEST} 0 off"),
    ]);
    assert_eq!(fs::read(&p).unwrap(), expected);
    assert_eq!(st.reset_used_storage(), 65536 + 64000 + 1);
}

#[test]
fn start_backup_replaces_log() {
    let (d, p) = log_dir();
    let start = d.path().join("file-server-store.log.start");
    fs::write(
        &start,
        lines(&[format!("FNEW {ID1} {KEY0} 10 {DIGEST} 3600")]),
    )
    .unwrap();
    fs::write(&p, b"FNEW partial").unwrap();
    let mut st = FileStore::new(None);
    let (_log, rep) = open_store_log_at(&p, &mut st, t(NOW)).unwrap();
    assert!(rep.used_start_backup);
    assert_eq!(st.file_count(), 1);
    assert_eq!(
        fs::read(d.path().join("file-server-store.log.bak")).unwrap(),
        b"FNEW partial"
    );
    assert!(!start.exists());
    assert_eq!(
        fs::read(&p).unwrap(),
        lines(&[format!("FNEW {ID1} {KEY0} 10 {DIGEST} 3600 active")])
    );
}

fn sample_log() -> Vec<u8> {
    let mut ls: Vec<String> = all_records().into_iter().map(|(_, l)| l).collect();
    ls.push(format!("FNEW {ID1} {KEY7} 262144 {DIGEST} 7200 active"));
    ls.push(format!("FADD {ID1} {ID2}:{KEY7}"));
    lines(&ls)
}

fn summary(st: &FileStore) -> Vec<String> {
    compacted_records(st).iter().map(|r| r.encode()).collect()
}

#[test]
fn every_truncation_replays_a_prefix() {
    let full = sample_log();
    // Reference results: the store after replaying the first k complete lines.
    let ends: Vec<usize> = full
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let prefix_states: Vec<Vec<String>> = std::iter::once(0)
        .chain(ends.iter().copied())
        .map(|end| {
            let mut st = FileStore::new(None);
            replay(&full[..end], &mut st, &mut ReplayReport::default());
            summary(&st)
        })
        .collect();
    for cut in 0..=full.len() {
        let mut st = FileStore::new(None);
        let mut rep = ReplayReport::default();
        replay(&full[..cut], &mut st, &mut rep);
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(summary(&st), prefix_states[complete], "cut at {cut}");
        assert_eq!(rep.torn_tail, cut > 0 && !ends.contains(&cut));
        assert_eq!(rep.parse_errors, 0);
    }
}

#[test]
fn torn_log_on_disk_restarts_cleanly() {
    let full = sample_log();
    let (_d, p) = log_dir();
    fs::write(&p, &full[..full.len() - 5]).unwrap();
    let mut st = FileStore::new(None);
    let (_log, rep) = open_store_log_at(&p, &mut st, t(NOW)).unwrap();
    assert!(rep.torn_tail);
    // The compacted log has only complete lines and replays without errors.
    let mut st2 = FileStore::new(None);
    let mut rep2 = ReplayReport::default();
    replay(&fs::read(&p).unwrap(), &mut st2, &mut rep2);
    assert_eq!(
        (rep2.parse_errors, rep2.rejected, rep2.torn_tail),
        (0, 0, false)
    );
    assert_eq!(summary(&st2), summary(&st));
}

/// What a kill can leave on disk: (log content, `.start` content).
type DiskState = (Option<Vec<u8>>, Option<Vec<u8>>);

#[test]
fn crash_during_compaction_keeps_a_usable_log() {
    let full = sample_log();
    let mut expected_st = FileStore::new(None);
    replay(&full, &mut expected_st, &mut ReplayReport::default());
    let expected = summary(&expected_st);
    let compacted = lines(&expected);
    // States a kill can leave: (log content, .start content).
    let states: Vec<DiskState> = {
        let mut v = vec![(None, Some(full.clone()))]; // after rename to .start
        for cut in 0..=compacted.len() {
            v.push((Some(compacted[..cut].to_vec()), Some(full.clone()))); // mid-write
        }
        v.push((Some(compacted.clone()), None)); // after rename to backup
        v
    };
    for (i, (log, start)) in states.into_iter().enumerate() {
        let (d, p) = log_dir();
        if let Some(l) = log {
            fs::write(&p, l).unwrap();
        }
        if let Some(s) = start {
            fs::write(d.path().join("file-server-store.log.start"), s).unwrap();
        }
        let mut st = FileStore::new(None);
        open_store_log_at(&p, &mut st, t(NOW)).unwrap();
        assert_eq!(summary(&st), expected, "state {i}");
    }
}

#[test]
fn backup_retention() {
    let (d, p) = log_dir();
    let day = 86_400;
    // Ages in days: 0.5 (new), 2, 3, 22, 23, 30 → older than a day: 2,3,22,23,30;
    // keep the 3 newest of those (2, 3, 22), remove the others older than 21 days.
    let ages = [day / 2, 2 * day, 3 * day, 22 * day, 23 * day, 30 * day];
    for a in ages {
        let name = format!("{STORE_LOG_FILE}.{}", iso8601_show((NOW - a) as i64, 0));
        fs::write(d.path().join(name), b"").unwrap();
    }
    fs::write(d.path().join(format!("{STORE_LOG_FILE}.bak")), b"").unwrap();
    fs::write(d.path().join(format!("{STORE_LOG_FILE}.garbage")), b"").unwrap();
    let removed = remove_store_log_backups(&p, t(NOW)).unwrap();
    assert_eq!(removed, 2);
    let left = dir_names(d.path());
    assert_eq!(left.len(), 6);
    assert!(!left.contains(&format!(
        "{STORE_LOG_FILE}.{}",
        iso8601_show((NOW - 23 * day) as i64, 0)
    )));
    assert!(left.contains(&format!(
        "{STORE_LOG_FILE}.{}",
        iso8601_show((NOW - 22 * day) as i64, 0)
    )));
}

#[test]
fn iso8601_texts() {
    assert_eq!(iso8601_show(1_781_352_000, 0), "2026-06-13T12:00:00Z");
    assert_eq!(
        iso8601_show(1_781_352_000, 123_456_789),
        "2026-06-13T12:00:00.123456789Z"
    );
    assert_eq!(
        iso8601_show(1_781_352_000, 100_000_000),
        "2026-06-13T12:00:00.1Z"
    );
    assert_eq!(iso8601_show(0, 0), "1970-01-01T00:00:00Z");
    assert_eq!(iso8601_show(951_825_600, 0), "2000-02-29T12:00:00Z");
    assert_eq!(
        iso8601_parse("2026-06-13T12:00:00.1Z"),
        Some((1_781_352_000, 100_000_000))
    );
    assert_eq!(
        iso8601_parse("2000-02-29T12:00:00Z"),
        Some((951_825_600, 0))
    );
    assert_eq!(iso8601_parse("2001-02-29T12:00:00Z"), None);
    assert_eq!(iso8601_parse("2026-06-13T12:00:00"), None);
    assert_eq!(iso8601_parse("2026-06-13T12:00:00.Z"), None);
}

#[test]
fn replay_never_panics_on_arbitrary_bytes() {
    use proptest::prelude::*;
    proptest!(|(data in proptest::collection::vec(any::<u8>(), 0..400))| {
        let mut st = FileStore::new(None);
        replay(&data, &mut st, &mut ReplayReport::default());
    });
    proptest!(|(line in "(FNEW|FPUT|FADD|FDEL|FBLK|FACK) [A-Za-z0-9_=:,{}\" -]{0,120}")| {
        let _ = StoreLogRecord::decode(line.as_bytes());
    });
}
