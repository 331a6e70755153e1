#![no_main]

use device_sync::format::{
    BLOCK,
    header::SgfHeader,
    journal::JournalEntry,
    keys::{card_key, mac16},
    marker::CardMarker,
};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [5u8; 32];
const DEVICE: [u8; 16] = [6u8; 16];

// The card's file header, journal entries and markers. Forged bytes are
// refused without a panic; the same bytes with a correct MAC (so the field
// checks behind the MAC are reached) either are refused or decode to a
// value that encodes back to a block that decodes to the same value.
fuzz_target!(|data: &[u8]| {
    let _ = JournalEntry::decode(data, &KEY);
    let _ = CardMarker::decode(data, &KEY, &DEVICE);
    let Ok(block) = <[u8; BLOCK]>::try_from(data) else {
        return;
    };
    let _ = SgfHeader::decode(&block, &KEY);

    let signed = |mut b: [u8; BLOCK], key: &[u8; 32]| {
        let tag = mac16(key, &b[..496]);
        b[496..].copy_from_slice(&tag);
        b
    };

    let b = signed(block, &KEY);
    if let Ok(e) = JournalEntry::decode(&b, &KEY) {
        let again = JournalEntry::decode(&e.encode(&KEY), &KEY).expect("own journal entry");
        assert_eq!(again, e);
    }
    if let Ok(h) = SgfHeader::decode(&b, &KEY) {
        let enc = h.encode(&KEY).expect("a decoded header encodes");
        assert_eq!(SgfHeader::decode(&enc, &KEY).expect("own header"), h);
    }

    let mut card_id = [0u8; 16];
    card_id.copy_from_slice(&block[4..20]);
    let b = signed(block, &*card_key(&KEY, &card_id, &DEVICE));
    if let Ok(m) = CardMarker::decode(&b, &KEY, &DEVICE) {
        assert_eq!(m.card_id, card_id);
        let again =
            CardMarker::decode(&m.encode(&KEY, &DEVICE), &KEY, &DEVICE).expect("own marker");
        assert_eq!(again, m);
    }
});
