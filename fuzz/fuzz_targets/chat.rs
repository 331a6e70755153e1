#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::chat::message::ChatMessage;

// Chat messages (JSON, compressed batches): decode → encode → decode is
// stable.
fuzz_target!(|data: &[u8]| {
    let _ = smp_core::chat::json::parse(data);
    let _ = smp_core::chat::body::parse_chat_messages(data);
    if let Ok(m) = ChatMessage::decode(data) {
        let again = m.encode();
        assert_eq!(ChatMessage::decode(&again).ok(), Some(m));
    }
});
