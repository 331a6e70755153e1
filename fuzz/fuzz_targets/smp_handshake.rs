#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::smp::handshake::{ClientHello, ServerHello};

// Hellos: decode → encode → decode is stable; blocks never panic.
fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ServerHello::decode(data)
        && let Ok(again) = h.encode()
    {
        assert_eq!(ServerHello::decode(&again).ok(), Some(h));
    }
    if let Ok(h) = ClientHello::decode(data)
        && let Ok(again) = h.encode()
    {
        assert_eq!(ClientHello::decode(&again).ok(), Some(h));
    }
    let _ = ServerHello::decode_block(data);
    let _ = ClientHello::decode_block(data);
});
