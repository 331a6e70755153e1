//! The download job over an in-memory store: a whole file, retries after
//! wrong bytes and cut bodies, an expired file, a full card, a power cut
//! after every single write, and tampering with the stored records.

mod support;

use std::collections::HashMap;

use device_sync::catalog::{ExtractError, extract, list, verify};
use device_sync::format::journal::{Failure, JobState};
use device_sync::format::layout::Runs;
use device_sync::job::{ChunkDone, ChunkError, Job, JobError};
use device_sync::storage::{FileStore, MemFiles, OpenMode, StorageError};
use sha2::{Digest, Sha256};
use smp_core::xftp::error::XftpErrorType;
use support::*;

/// Records every record write to a data file: `(file, nonce) → SHA-256(ct)`.
/// A nonce seen again with other ciphertext is the failure §5 forbids.
#[derive(Default)]
struct NonceAudit {
    seen: HashMap<(String, [u8; 12]), [u8; 32]>,
    records: usize,
}

impl NonceAudit {
    /// Every record of the layout that differs from `before` was written
    /// in between.
    fn check(&mut self, store: &MemFiles, before: &MemFiles, runs: &Runs) {
        let mut b = before.clone();
        let mut s = store.clone();
        for (name, _) in s.list().unwrap() {
            if !name.ends_with(".SGF") {
                continue;
            }
            let new = s.bytes_mut(&name).unwrap().clone();
            let old = b.bytes_mut(&name).map(|v| v.clone()).unwrap_or_default();
            let mut chunk = runs.chunk(0);
            while let Some(c) = chunk {
                for r in 0..c.records {
                    let (o, l) = (c.record_offset(r) as usize, c.record_len(r));
                    if let Some(rec) = new.get(o..o + l)
                        && old.get(o..o + l) != Some(rec)
                    {
                        self.record(&name, rec);
                    }
                }
                chunk = c.next(runs);
            }
        }
    }

    fn record(&mut self, file: &str, rec: &[u8]) {
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&rec[..12]);
        let h: [u8; 32] = Sha256::digest(&rec[12..]).into();
        self.records += 1;
        if let Some(prev) = self.seen.insert((file.to_string(), nonce), h) {
            assert_eq!(prev, h, "nonce reused with other ciphertext in {file}");
        }
    }
}

fn runs_of(p: &Published) -> Runs {
    let sizes: Vec<u32> = p.desc.chunks.iter().map(|c| c.chunk_size).collect();
    Runs::from_chunk_sizes(&sizes).unwrap()
}

fn only_job(store: &mut MemFiles) -> String {
    let l = list(store, &device_keys()).unwrap();
    assert_eq!(l.len(), 1, "{l:?}");
    l[0].as_ref().unwrap().base.clone()
}

fn extracted(store: &mut MemFiles) -> Vec<u8> {
    let base = only_job(store);
    let mut out = Vec::new();
    extract::<_, ()>(store, &device_keys(), &base, false, |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn a_whole_file_is_fetched_listed_and_extracted() {
    let p = publish(content(700_000, 1), 1);
    assert!(p.desc.chunks.len() >= 3, "{}", p.desc.chunks.len());
    let mut store = MemFiles::default();
    let mut rng = TestRng(1);
    let mut job = Job::create(&mut store, &device_keys(), &p.desc, &mut rng).unwrap();
    fetch_all(&mut job, &mut store, &p, &mut rng).unwrap();
    assert_eq!(job.state(), JobState::Verified);
    job.close(&mut store).unwrap();
    assert_eq!(extracted(&mut store), p.content);
    let f = list(&mut store, &device_keys()).unwrap().remove(0).unwrap();
    assert_eq!(f.header.unwrap().file_name, "report.bin");
    assert_eq!(f.content_len, Some(700_000));
    assert_eq!(
        (f.chunks_done, f.chunks),
        (f.chunks, p.desc.chunks.len() as u32)
    );
    let v = verify(&mut store, &device_keys(), &f.base).unwrap();
    assert!(
        v.damaged.is_empty() && !v.truncated && v.records > 170,
        "{v:?}"
    );
    // Another device (key) reads nothing.
    let mut other = device_keys();
    other.device_id = [1; 16];
    assert!(verify(&mut store, &other, &f.base).is_err());
}

#[test]
fn wrong_bytes_and_cut_bodies_are_fetched_again_under_new_nonces() {
    let p = publish(content(300_000, 2), 2);
    let mut store = MemFiles::default();
    let mut rng = TestRng(2);
    let mut audit = NonceAudit::default();
    let mut job = Job::create(&mut store, &device_keys(), &p.desc, &mut rng).unwrap();
    let faults = [
        Fault::Flip(1000),
        Fault::Flip(200_000),
        Fault::Cut(5000),
        Fault::Flip(usize::MAX - 3),
    ];
    let mut done = false;
    for (i, f) in faults.into_iter().enumerate() {
        let before = store.clone();
        let e = fetch_chunk(&mut job, &mut store, &p, i % 2, f, 4096, &mut rng).unwrap_err();
        audit.check(&store, &before, &runs_of(&p));
        assert!(e.is_retryable(), "{e}");
        assert!(
            matches!(
                e,
                JobError::Chunk(ChunkError::Body(
                    XftpErrorType::Crypto | XftpErrorType::Size | XftpErrorType::Digest
                ))
            ),
            "{e:?}"
        );
        // The right bytes from the other replica.
        let before = store.clone();
        let r = fetch_chunk(
            &mut job,
            &mut store,
            &p,
            (i + 1) % 2,
            Fault::None,
            999,
            &mut rng,
        );
        audit.check(&store, &before, &runs_of(&p));
        if r.unwrap() == ChunkDone::Verified {
            done = true;
            break;
        }
    }
    while !done {
        let before = store.clone();
        let r = fetch_chunk(&mut job, &mut store, &p, 0, Fault::None, 999, &mut rng).unwrap();
        audit.check(&store, &before, &runs_of(&p));
        done = r == ChunkDone::Verified;
    }
    job.close(&mut store).unwrap();
    assert!(audit.records > 70);
    assert_eq!(extracted(&mut store), p.content);
}

#[test]
fn an_expired_file_fails_and_frees_its_space() {
    let p = publish(content(300_000, 3), 1);
    let mut store = MemFiles::default();
    let mut rng = TestRng(3);
    let mut job = Job::create(&mut store, &device_keys(), &p.desc, &mut rng).unwrap();
    fetch_chunk(&mut job, &mut store, &p, 0, Fault::None, 5000, &mut rng).unwrap();
    let e = fetch_chunk(&mut job, &mut store, &p, 0, Fault::Auth, 5000, &mut rng).unwrap_err();
    assert_eq!(e, JobError::Failed(Failure::Gone));
    assert!(!e.is_retryable());
    job.close(&mut store).unwrap();
    let f = list(&mut store, &device_keys()).unwrap().remove(0).unwrap();
    assert_eq!((f.state, f.failure), (JobState::Failed, Failure::Gone));
    let files = store.list().unwrap();
    assert!(files.iter().all(|(n, _)| !n.ends_with(".SGM")), "{files:?}");
    let sgf = files.iter().find(|(n, _)| n.ends_with(".SGF")).unwrap();
    assert_eq!(sgf.1, 512, "only the header is left");
    let r = extract::<_, ()>(&mut store, &device_keys(), &f.base, true, |_| Ok(()));
    assert!(matches!(r, Err(ExtractError::Incomplete(JobState::Failed))));
}

#[test]
fn a_full_card_fails_the_file_cleanly() {
    let p = publish(content(700_000, 4), 1);
    let mut store = MemFiles::default();
    store.capacity = Some(400_000);
    let mut rng = TestRng(4);
    let mut job = Job::create(&mut store, &device_keys(), &p.desc, &mut rng).unwrap();
    let e = fetch_all(&mut job, &mut store, &p, &mut rng).unwrap_err();
    assert_eq!(e, JobError::Failed(Failure::Full));
    job.close(&mut store).unwrap();
    let f = list(&mut store, &device_keys()).unwrap().remove(0).unwrap();
    assert_eq!((f.state, f.failure), (JobState::Failed, Failure::Full));
    let used: u64 = store.list().unwrap().iter().map(|f| f.1).sum();
    assert!(used < 4096, "space freed: {used}");
}

/// Runs a job until the store's write budget cuts it, then "reboots" and
/// resumes (or, with no valid journal, starts again), to the end.
fn cut_and_resume(p: &Published, budget: u64, audit: &mut NonceAudit) -> Vec<u8> {
    let keys = device_keys();
    let mut store = MemFiles::default();
    store.write_budget = Some(budget);
    let mut rng = TestRng(budget);
    let before = store.clone();
    let first = Job::create(&mut store, &keys, &p.desc, &mut rng)
        .and_then(|mut job| fetch_all(&mut job, &mut store, p, &mut rng));
    audit.check(&store, &before, &runs_of(p));
    if first.is_ok() {
        return extracted(&mut store);
    }
    // Power back: every handle is gone, writes work again.
    store.write_budget = None;
    store.reset_handles();
    let mut rng = TestRng(budget ^ 0xffff);
    let before = store.clone();
    let names: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|(n, _)| n.strip_suffix(".SGF").map(String::from))
        .collect();
    let mut job = match names.first() {
        None => Job::create(&mut store, &keys, &p.desc, &mut rng).unwrap(),
        Some(base) => match Job::resume(&mut store, &keys, base) {
            Ok(j) => j,
            Err(JobError::NotStarted) => {
                for (n, _) in store.list().unwrap() {
                    store.delete(&n).unwrap();
                }
                Job::create(&mut store, &keys, &p.desc, &mut rng).unwrap()
            }
            Err(e) => panic!("budget {budget}: resume failed: {e}"),
        },
    };
    if job.state() == JobState::Fetching {
        match job.next_chunk(&mut store).unwrap() {
            None => job.finish(&mut store).unwrap(),
            Some(_) => fetch_all(&mut job, &mut store, p, &mut rng).unwrap(),
        }
    }
    assert_eq!(job.state(), JobState::Verified, "budget {budget}");
    job.close(&mut store).unwrap();
    audit.check(&store, &before, &runs_of(p));
    extracted(&mut store)
}

#[test]
fn a_power_cut_after_any_write_resumes_to_the_same_bytes() {
    let p = publish(content(200_000, 5), 1);
    // Count the writes of an uninterrupted run.
    let mut store = MemFiles::default();
    let mut rng = TestRng(0);
    let mut job = Job::create(&mut store, &device_keys(), &p.desc, &mut rng).unwrap();
    fetch_all(&mut job, &mut store, &p, &mut rng).unwrap();
    let total = store.writes;
    assert!(total > 50, "{total}");
    let mut audit = NonceAudit::default();
    for budget in 0..=total {
        assert_eq!(
            cut_and_resume(&p, budget, &mut audit),
            p.content,
            "budget {budget}"
        );
    }
}

#[test]
fn damaged_moved_and_truncated_records_are_named() {
    let p = publish(content(300_000, 6), 1);
    let mut store = MemFiles::default();
    let mut rng = TestRng(6);
    let mut job = Job::create(&mut store, &device_keys(), &p.desc, &mut rng).unwrap();
    fetch_all(&mut job, &mut store, &p, &mut rng).unwrap();
    job.close(&mut store).unwrap();
    let base = only_job(&mut store);
    let sgf = format!("{base}.SGF");
    let clean = store.clone();
    let extract_err = |s: &mut MemFiles| {
        extract::<_, String>(s, &device_keys(), &base, false, |_| Ok(()))
            .unwrap_err()
            .to_string()
    };
    // A flipped bit inside record 5.
    let mut s = clean.clone();
    s.bytes_mut(&sgf).unwrap()[512 + 5 * 4096 + 100] ^= 1;
    let v = verify(&mut s, &device_keys(), &base).unwrap();
    assert_eq!(v.damaged, vec![5]);
    assert!(extract_err(&mut s).contains("record 5"));
    // Records 2 and 3 swapped.
    let mut s = clean.clone();
    let f = s.bytes_mut(&sgf).unwrap();
    let (a, b) = (512 + 2 * 4096, 512 + 3 * 4096);
    let r2 = f[a..a + 4096].to_vec();
    f.copy_within(b..b + 4096, a);
    f[b..b + 4096].copy_from_slice(&r2);
    assert_eq!(
        verify(&mut s, &device_keys(), &base).unwrap().damaged,
        vec![2, 3]
    );
    // Truncated.
    let mut s = clean.clone();
    let f = s.bytes_mut(&sgf).unwrap();
    f.truncate(f.len() - 4096);
    let v = verify(&mut s, &device_keys(), &base).unwrap();
    assert!(v.truncated && !v.damaged.is_empty(), "{v:?}");
    assert!(extract_err(&mut s).contains("record"));
    // A damaged header: the file cannot be read at all, with its reason.
    let mut s = clean.clone();
    s.bytes_mut(&sgf).unwrap()[60] ^= 1;
    let e = verify(&mut s, &device_keys(), &base)
        .unwrap_err()
        .to_string();
    assert!(e.contains("header"), "{e}");
    // The clean copy still reads.
    let mut s = clean;
    assert_eq!(extracted(&mut s), p.content);
    let _ = (OpenMode::ReadOnly, StorageError::Full);
}
