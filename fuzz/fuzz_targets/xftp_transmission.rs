#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::xftp;

// Request and response blocks as the server and the client read them.
fuzz_target!(|data: &[u8]| {
    let session = [9u8; 32];
    let _ = xftp::transmission::parse_block(data);
    let _ = xftp::transmission::decode_request_block(data, &session);
    let _ = xftp::transmission::decode_response_block(data, &session);
});
