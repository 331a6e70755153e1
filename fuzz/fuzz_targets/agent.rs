#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::agent::envelope::AgentMsgEnvelope;
use smp_core::agent::message::AgentMessage;
use smp_core::agent::ratchet;

// Agent envelopes, messages and ratchet headers: decode → encode →
// decode is stable; ratchet messages never panic.
fuzz_target!(|data: &[u8]| {
    if let Ok(e) = AgentMsgEnvelope::decode(data)
        && let Ok(again) = e.encode()
    {
        assert_eq!(AgentMsgEnvelope::decode(&again).ok(), Some(e));
    }
    if let Ok(m) = AgentMessage::decode(data)
        && let Ok(again) = m.encode()
    {
        assert_eq!(AgentMessage::decode(&again).ok(), Some(m));
    }
    // The body's length form is guessed from its first byte (`largeP`),
    // which holds for the 32+ byte bodies real headers carry.
    if let Ok(h) = ratchet::EncMessageHeader::decode(data)
        && h.body.len() >= 32
        && let Ok(again) = h.encode()
    {
        assert_eq!(ratchet::EncMessageHeader::decode(&again).ok(), Some(h));
    }
    let _ = ratchet::EncRatchetMessage::decode(data);
    let _ = ratchet::Ratchet::decode(data);
});
