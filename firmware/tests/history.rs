//! The message history on the real card stack (FAT32 over embedded-sdmmc
//! with write coalescing): what a contact said survives resets and power
//! cuts at every block write, records cannot be moved or swapped, and a
//! damaged record is reported rather than written past.

use device_sync::blockdev::{Coalesce, CutMode, PowerCut, RamDisk};
use device_sync::card::Card;
use device_sync::job::Entropy;
use device_sync::storage::{FileStore, OpenMode};
use firmware::history::{Direction, Entry, History, HistoryError, file_name};

const MK: [u8; 32] = [7; 32];
const DEV: [u8; 16] = [9; 16];

type Dev = Coalesce<PowerCut<RamDisk>>;

/// A counter-based "random" source: distinct IVs, repeatable runs.
struct Counter(u64);
impl Entropy for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        self.0 += 1;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (self.0 >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
}

fn base_card() -> RamDisk {
    let disk = RamDisk::formatted(40 << 20).unwrap();
    Card::init(Coalesce::new(disk))
        .unwrap()
        .into_device()
        .into_inner()
}

fn mount(disk: RamDisk, budget: u64, mode: CutMode) -> Card<Dev> {
    Card::mount(Coalesce::new(PowerCut::new(disk, budget, mode))).unwrap()
}

fn entry(i: i64) -> Entry {
    Entry {
        direction: if i % 3 == 2 {
            Direction::Sent
        } else {
            Direction::Received
        },
        status: 0,
        time: 1_700_000_000 + i,
        msg_id: i,
        text: format!("message {i} {}", "é".repeat(i as usize * 37 % 300)),
    }
}

#[test]
fn messages_read_back_in_order_after_a_reset() {
    let mut card = mount(base_card(), u64::MAX, CutMode::FailStop);
    let mut rng = Counter(0);
    let mut h = History::open(&mut card, &MK, &DEV, 5).unwrap();
    assert!(h.is_empty());
    for i in 1..=20 {
        h.append(&mut card, &entry(i), &mut rng).unwrap();
    }
    h.close(&mut card).unwrap();
    let disk = card.into_device().into_inner().into_inner();

    let mut card = mount(disk, u64::MAX, CutMode::FailStop);
    let mut h = History::open(&mut card, &MK, &DEV, 5).unwrap();
    assert_eq!(h.len(), 20);
    assert!(h.has(Direction::Received, 19));
    assert!(!h.has(Direction::Received, 21));
    assert!(h.has(Direction::Sent, 20));
    assert!(!h.has(Direction::Sent, 23));
    let all = h.read_all(&mut card).unwrap();
    assert_eq!(all, (1..=20).map(entry).collect::<Vec<_>>());
    // Another contact's history is a file of its own, under its own key.
    let mut other = History::open(&mut card, &MK, &DEV, 6).unwrap();
    assert!(other.read_all(&mut card).unwrap().is_empty());
    other.close(&mut card).unwrap();
    h.close(&mut card).unwrap();
    // The key is the device's: another device's keys see a damaged file.
    let r = History::open(&mut card, &[8; 32], &DEV, 5);
    assert_eq!(r.err(), Some(HistoryError::Damaged(0)));
}

/// Byte offsets of each record in a history file.
fn record_spans(card: &mut Card<Dev>, contact: u32) -> (Vec<u8>, Vec<(usize, usize)>) {
    let f = FileStore::open(card, &file_name(contact), OpenMode::ReadOnly).unwrap();
    let len = FileStore::len(card, f).unwrap() as usize;
    let mut bytes = vec![0u8; len];
    FileStore::read_at(card, f, 0, &mut bytes).unwrap();
    FileStore::close(card, f).unwrap();
    let mut spans = Vec::new();
    let mut at = 32;
    while at + 2 <= len {
        let n = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
        spans.push((at, 2 + n));
        at += 2 + n;
    }
    (bytes, spans)
}

fn rewrite(card: &mut Card<Dev>, contact: u32, bytes: &[u8]) {
    let f = FileStore::open(card, &file_name(contact), OpenMode::ReadWrite).unwrap();
    FileStore::write_at(card, f, 0, bytes).unwrap();
    FileStore::flush(card, f).unwrap();
    FileStore::close(card, f).unwrap();
}

#[test]
fn swapped_moved_or_flipped_records_are_refused() {
    let mut card = mount(base_card(), u64::MAX, CutMode::FailStop);
    let mut rng = Counter(0);
    let mut h = History::open(&mut card, &MK, &DEV, 1).unwrap();
    // Equal lengths, so a swap keeps the framing intact.
    for i in 0..4 {
        let e = Entry {
            text: format!("same length {i}"),
            ..entry(i)
        };
        h.append(&mut card, &e, &mut rng).unwrap();
    }
    h.close(&mut card).unwrap();
    let (good, spans) = record_spans(&mut card, 1);
    assert_eq!(spans.len(), 4);

    let mut swapped = good.clone();
    let (a, b) = (spans[1], spans[2]);
    swapped[a.0..a.0 + a.1].copy_from_slice(&good[b.0..b.0 + b.1]);
    swapped[b.0..b.0 + b.1].copy_from_slice(&good[a.0..a.0 + a.1]);
    rewrite(&mut card, 1, &swapped);
    let r = History::open(&mut card, &MK, &DEV, 1);
    assert_eq!(r.err(), Some(HistoryError::Damaged(1)));

    let mut flipped = good.clone();
    flipped[spans[2].0 + 20] ^= 1;
    rewrite(&mut card, 1, &flipped);
    let r = History::open(&mut card, &MK, &DEV, 1);
    assert_eq!(r.err(), Some(HistoryError::Damaged(2)));

    // Contact 1's file under contact 2's name: the header names contact 1.
    rewrite(&mut card, 1, &good);
    let f = FileStore::open(&mut card, &file_name(2), OpenMode::CreateNew).unwrap();
    FileStore::write_at(&mut card, f, 0, &good).unwrap();
    FileStore::flush(&mut card, f).unwrap();
    FileStore::close(&mut card, f).unwrap();
    let r = History::open(&mut card, &MK, &DEV, 2);
    assert_eq!(r.err(), Some(HistoryError::BadHeader));

    // A flipped byte in the last record is indistinguishable from a torn
    // write: that record is dropped and the next one takes its place.
    let mut last = good.clone();
    last[spans[3].0 + 20] ^= 1;
    rewrite(&mut card, 1, &last);
    let mut h = History::open(&mut card, &MK, &DEV, 1).unwrap();
    assert_eq!(h.len(), 3);
    h.append(&mut card, &entry(9), &mut rng).unwrap();
    let all = h.read_all(&mut card).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3], entry(9));
}

/// Power lost at every block write of five appends (whole and torn
/// blocks): after the reboot every append that returned is there, nothing
/// else but a prefix of the one in progress, and the history takes new
/// messages that read back.
#[test]
fn a_power_cut_at_any_write_loses_no_stored_message() {
    let base = {
        let mut card = mount(base_card(), u64::MAX, CutMode::FailStop);
        let h = History::open(&mut card, &MK, &DEV, 3).unwrap();
        h.close(&mut card).unwrap();
        card.into_device().into_inner().into_inner()
    };
    // How many block writes the five appends take uncut.
    let total = {
        let mut card = mount(base.clone(), u64::MAX, CutMode::FailStop);
        let mut h = History::open(&mut card, &MK, &DEV, 3).unwrap();
        let mut rng = Counter(0);
        for i in 1..=5 {
            h.append(&mut card, &entry(i), &mut rng).unwrap();
        }
        h.close(&mut card).unwrap();
        card.into_device().into_inner().blocks_applied()
    };
    assert!(total > 5, "{total} block writes");
    let mut cuts = 0;
    for budget in 0..=total {
        for mode in [CutMode::FailStop, CutMode::TearLast { keep: 100 }] {
            let mut card = mount(base.clone(), budget, mode);
            let mut rng = Counter(budget * 10);
            let mut done = 0;
            if let Ok(mut h) = History::open(&mut card, &MK, &DEV, 3) {
                for i in 1..=5 {
                    if h.append(&mut card, &entry(i), &mut rng).is_err() {
                        break;
                    }
                    done = i;
                }
                let _ = h.close(&mut card);
            }
            let cut = card.into_device().into_inner();
            cuts += usize::from(cut.is_cut());
            let disk = cut.into_inner();

            let mut card = mount(disk, u64::MAX, CutMode::FailStop);
            let mut h = History::open(&mut card, &MK, &DEV, 3)
                .unwrap_or_else(|e| panic!("budget {budget} {mode:?}: {e}"));
            let got = h.read_all(&mut card).unwrap();
            assert!(
                got.len() as i64 >= done && got.len() as i64 <= done + 1,
                "budget {budget} {mode:?}: {} read, {done} stored",
                got.len()
            );
            assert_eq!(got, (1..=got.len() as i64).map(entry).collect::<Vec<_>>());
            h.append(&mut card, &entry(50), &mut rng).unwrap();
            h.close(&mut card).unwrap();
            let mut h = History::open(&mut card, &MK, &DEV, 3).unwrap();
            let again = h.read_all(&mut card).unwrap();
            assert_eq!(again.len(), got.len() + 1);
            assert_eq!(again.last(), Some(&entry(50)));
            h.close(&mut card).unwrap();
        }
    }
    assert!(cuts as u64 >= total, "{cuts} cuts");
}
