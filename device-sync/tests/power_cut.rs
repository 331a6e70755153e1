//! Power cuts on the real card stack: FAT32 over embedded-sdmmc, write
//! coalescing, and a block device that stops writing after N blocks (or
//! tears the block it was writing). For N spread over a whole download,
//! including inside journal writes and directory updates: reboot, resume,
//! finish. The extracted file is byte-exact every time, no record nonce is
//! ever written twice with other bytes, and no damaged file is complete.

mod support;

use std::collections::HashMap;

use device_sync::blockdev::{Coalesce, CutMode, PowerCut, RamDisk};
use device_sync::card::Card;
use device_sync::catalog::{extract, list, verify};
use device_sync::format::journal::JobState;
use device_sync::format::layout::Runs;
use device_sync::job::{Job, JobError};
use device_sync::storage::{FileStore, OpenMode};
use sha2::{Digest, Sha256};
use support::*;

type Dev = Coalesce<PowerCut<RamDisk>>;

fn base_card() -> RamDisk {
    let disk = RamDisk::formatted(40 << 20).unwrap();
    let card = Card::init(Coalesce::new(disk)).unwrap();
    card.into_device().into_inner()
}

fn mount(disk: RamDisk, budget: u64, mode: CutMode) -> Card<Dev> {
    Card::mount(Coalesce::new(PowerCut::new(disk, budget, mode))).unwrap()
}

/// Power lost: what the run had not pushed to the disk is gone.
fn power_off(card: Card<Dev>) -> (RamDisk, u64) {
    let cut = card.into_device().into_inner();
    let n = cut.blocks_applied();
    (cut.into_inner(), n)
}

/// `(file, nonce) → SHA-256(ciphertext)` of every record on the card.
fn audit(card: &mut Card<Dev>, runs: &Runs, seen: &mut HashMap<(String, [u8; 12]), [u8; 32]>) {
    for (name, _) in FileStore::list(card).unwrap() {
        if !name.ends_with(".SGF") {
            continue;
        }
        let f = FileStore::open(card, &name, OpenMode::ReadOnly).unwrap();
        let len = FileStore::len(card, f).unwrap();
        let mut chunk = runs.chunk(0);
        while let Some(c) = chunk {
            for r in 0..c.records {
                let (o, l) = (c.record_offset(r), c.record_len(r));
                if o + l as u64 > len {
                    continue;
                }
                let mut rec = vec![0u8; l];
                FileStore::read_at(card, f, o, &mut rec).unwrap();
                if rec[..12] == [0; 12] {
                    continue;
                }
                let nonce: [u8; 12] = rec[..12].try_into().unwrap();
                let h: [u8; 32] = Sha256::digest(&rec[12..]).into();
                if let Some(prev) = seen.insert((name.clone(), nonce), h) {
                    assert_eq!(prev, h, "a nonce of {name} holds two different ciphertexts");
                }
            }
            chunk = c.next(runs);
        }
        FileStore::close(card, f).unwrap();
    }
}

/// `F` + 7 hex digits `.SG[FJM]`: a job file.
fn ours(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12
        && b[0] == b'F'
        && b[1..8].iter().all(u8::is_ascii_hexdigit)
        && &name[8..11] == ".SG"
        && matches!(b[11], b'F' | b'J' | b'M')
}

fn content_of(card: &mut Card<Dev>, base: &str) -> Vec<u8> {
    let mut out = Vec::new();
    extract::<_, ()>(card, &device_keys(), base, false, |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    out
}

/// One download cut after `budget` blocks, then resumed to the end.
fn cut_then_resume(base: &RamDisk, p: &Published, budget: u64, mode: CutMode) {
    let keys = device_keys();
    let runs = Runs::from_chunk_sizes(
        &p.desc
            .chunks
            .iter()
            .map(|c| c.chunk_size)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut seen = HashMap::new();
    let mut card = mount(base.clone(), budget, mode);
    let mut rng = TestRng(budget);
    let first = Job::create(&mut card, &keys, &p.desc, &mut rng)
        .and_then(|mut j| fetch_all(&mut j, &mut card, p, &mut rng).map(|_| j));
    if let Ok(j) = first {
        j.close(&mut card).unwrap();
    }
    let (disk, _) = power_off(card);

    // Reboot.
    let mut card = mount(disk, u64::MAX, CutMode::FailStop);
    audit(&mut card, &runs, &mut seen);
    // Whatever is listed complete right after the cut must check out.
    for f in list(&mut card, &keys).unwrap().into_iter().flatten() {
        if f.state == JobState::Verified {
            let v = verify(&mut card, &keys, &f.base).unwrap();
            assert!(
                v.damaged.is_empty() && !v.truncated,
                "budget {budget}: {v:?}"
            );
        }
    }
    let bases: Vec<String> = FileStore::list(&mut card)
        .unwrap()
        .into_iter()
        .filter_map(|(n, _)| n.strip_suffix(".SGF").map(String::from))
        .collect();
    let mut rng = TestRng(budget ^ 0x5555);
    let mut job = match bases.first() {
        None => Job::create(&mut card, &keys, &p.desc, &mut rng).unwrap(),
        Some(b) => match Job::resume(&mut card, &keys, b) {
            Ok(j) => j,
            Err(JobError::NotStarted) => {
                for ext in ["SGF", "SGJ", "SGM"] {
                    let _ = FileStore::delete(&mut card, &format!("{b}.{ext}"));
                }
                Job::create(&mut card, &keys, &p.desc, &mut rng).unwrap()
            }
            Err(e) => panic!("budget {budget} {mode:?}: resume: {e}"),
        },
    };
    // Leftovers of a job whose data file never got its header. A torn
    // directory block can also leave an entry whose name is garbage: it is
    // not one of ours and is left alone (fsck.fat reclaims it).
    for (n, _) in FileStore::list(&mut card).unwrap() {
        if ours(&n) && !n.starts_with(&job.names().base) {
            FileStore::delete(&mut card, &n).unwrap();
        }
    }
    if job.state() == JobState::Fetching {
        if job.next_chunk(&mut card).unwrap().is_none() {
            job.finish(&mut card).unwrap();
        } else {
            fetch_all(&mut job, &mut card, p, &mut rng).unwrap();
        }
    }
    assert_eq!(job.state(), JobState::Verified, "budget {budget} {mode:?}");
    let b = job.names().base.clone();
    job.close(&mut card).unwrap();
    audit(&mut card, &runs, &mut seen);
    assert!(
        content_of(&mut card, &b) == p.content,
        "budget {budget} {mode:?}: bytes differ"
    );
    let v = verify(&mut card, &keys, &b).unwrap();
    assert!(v.damaged.is_empty() && !v.truncated, "{v:?}");
}

#[test]
fn cuts_spread_over_a_whole_download() {
    let p = publish(content(600_000, 21), 1);
    let base = base_card();
    // An uninterrupted run: how many blocks it writes.
    let mut card = mount(base.clone(), u64::MAX, CutMode::FailStop);
    let mut rng = TestRng(0);
    let mut job = Job::create(&mut card, &device_keys(), &p.desc, &mut rng).unwrap();
    fetch_all(&mut job, &mut card, &p, &mut rng).unwrap();
    job.close(&mut card).unwrap();
    let (_, total) = power_off(card);
    assert!(total > 1000, "{total} block writes");
    // 60 points spread evenly, plus the first 40 blocks (job creation:
    // header, manifest, journal, their directory entries).
    let mut budgets: Vec<u64> = (0..60).map(|i| 1 + i * (total - 1) / 59).collect();
    budgets.extend(1..40);
    budgets.sort();
    budgets.dedup();
    for (i, &b) in budgets.iter().enumerate() {
        let mode = if i % 2 == 0 {
            CutMode::FailStop
        } else {
            CutMode::TearLast { keep: 100 }
        };
        cut_then_resume(&base, &p, b, mode);
    }
}
