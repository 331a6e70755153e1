#![no_main]

use device_sync::format::{BLOCK, header::SgfHeader, journal::JournalEntry, marker};
use libfuzzer_sys::fuzz_target;

// The card's file header, journal entries and markers with fixed keys:
// forged or damaged bytes are refused without a panic.
fuzz_target!(|data: &[u8]| {
    let key = [5u8; 32];
    let _ = JournalEntry::decode(data, &key);
    let _ = marker::CardMarker::decode(data, &key, &[6u8; 16]);
    if let Ok(block) = <&[u8; BLOCK]>::try_from(data) {
        let _ = SgfHeader::decode(block, &key);
    }
});
