//! The device core's heap, counted by this binary's global allocator (its
//! own test binary: the counters are process-wide). Opening a contact's
//! history scans the whole file, appending writes one record, and a chat
//! message is parsed and dropped: none of it may grow with the number of
//! messages already on the card.

use device_sync::blockdev::{Coalesce, RamDisk};
use device_sync::card::Card;
use device_sync::heap;
use device_sync::job::Entropy;
use firmware::chat::{Chats, Step, text_message};
use firmware::history::{Direction, Entry, History};

#[global_allocator]
static A: heap::CountingAlloc = heap::CountingAlloc;

const MK: [u8; 32] = [3; 32];
const DEV: [u8; 16] = [4; 16];

struct Counter(u64);
impl Entropy for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        self.0 += 1;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (self.0 >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
}

fn entry(i: i64) -> Entry {
    Entry {
        direction: Direction::Received,
        status: 0,
        time: 1_700_000_000 + i,
        msg_id: i,
        text: format!("message {i} {}", "x".repeat(400)),
    }
}

/// The heap peak above the baseline for: a contact history holding `n`
/// messages opened (scanned) again, one chat message received, and one
/// more appended.
fn peak_with(n: i64) -> usize {
    let disk = RamDisk::formatted(40 << 20).unwrap();
    let mut card = Card::init(Coalesce::new(disk)).unwrap();
    let mut rng = Counter(0);
    let mut h = History::open(&mut card, &MK, &DEV, 1).unwrap();
    for i in 1..=n {
        h.append(&mut card, &entry(i), &mut rng).unwrap();
    }
    h.close(&mut card).unwrap();
    let body = text_message(&"y".repeat(400), &mut rng);
    let mut chats = Chats::new();

    let base = heap::reset_peak();
    let mut h = History::open(&mut card, &MK, &DEV, 1).unwrap();
    assert_eq!(h.len() as i64, n);
    let steps = chats.receive(1, &body);
    let Some(Step::Text(text)) = steps.into_iter().next() else {
        panic!("a text message gives its text");
    };
    let mut e = entry(n + 1);
    e.text = text;
    h.append(&mut card, &e, &mut rng).unwrap();
    h.close(&mut card).unwrap();
    drop(e);
    heap::peak() - base
}

#[test]
fn the_core_heap_does_not_grow_with_the_history() {
    let small = peak_with(10);
    let big = peak_with(3000);
    eprintln!("core heap peak: 10 messages {small} B, 3000 messages {big} B");
    assert!(big <= 8 * 1024, "peaked at {big} B with 3000 messages");
    assert!(
        big.abs_diff(small) <= 1024,
        "grows with the history: {small} B for 10, {big} B for 3000"
    );
}
