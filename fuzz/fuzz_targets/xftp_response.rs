#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::xftp::response::FileResponse;

// FileResponse decode → encode → decode gives the same response.
fuzz_target!(|data: &[u8]| {
    if let Ok(r) = FileResponse::decode(data)
        && let Ok(again) = r.encode(3)
    {
        assert_eq!(FileResponse::decode(&again).ok(), Some(r));
    }
});
