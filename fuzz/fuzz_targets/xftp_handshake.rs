#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::xftp::handshake;

// XFTP handshakes: decode → encode → decode is stable.
fuzz_target!(|data: &[u8]| {
    if let Ok(h) = handshake::ClientHello::decode(data) {
        let again = h.encode();
        assert_eq!(handshake::ClientHello::decode(&again).ok(), Some(h));
    }
    if let Ok(h) = handshake::ServerHandshake::decode(data)
        && let Ok(again) = h.encode()
    {
        assert_eq!(handshake::ServerHandshake::decode(&again).ok(), Some(h));
    }
    if let Ok(h) = handshake::ClientHandshake::decode(data)
        && let Ok(again) = h.encode()
    {
        assert_eq!(handshake::ClientHandshake::decode(&again).ok(), Some(h));
    }
    let _ = handshake::ClientHello::decode_body(data);
    let _ = handshake::ServerHandshake::decode_block(data);
});
