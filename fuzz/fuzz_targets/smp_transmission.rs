#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::smp::transmission;

// A block from a client: padding, batch, transmissions, commands. The
// router's path must answer every input with a value, never a panic.
fuzz_target!(|data: &[u8]| {
    let Some((&v, block)) = data.split_first() else {
        return;
    };
    let v = 6 + u16::from(v % 13);
    let session = [7u8; 32];
    if let Ok(content) = transmission::decode_block(block)
        && let Ok(items) = transmission::parse_batch(content)
    {
        for t in items {
            let _ = transmission::decode_command_transmission(t, v, &session);
            let _ = transmission::decode_response_transmission(t, v, &session);
        }
    }
    if let Ok(items) = transmission::parse_batch(block) {
        for t in items {
            let _ = transmission::decode_command_transmission(t, v, &session);
        }
    }
});
