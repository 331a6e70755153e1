#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::chat::message::ChatMessage;

// Chat messages (JSON, compressed batches): what decodes encodes to text
// that decodes and encodes to the same text (a whole float is written as
// an integer, as aeson does, so the value's number kind may change once).
fuzz_target!(|data: &[u8]| {
    let _ = smp_core::chat::json::parse(data);
    let _ = smp_core::chat::body::parse_chat_messages(data);
    if let Ok(m) = ChatMessage::decode(data) {
        let first = m.encode();
        let again = ChatMessage::decode(&first).expect("our own encoding decodes");
        assert_eq!(again.encode(), first);
    }
});
