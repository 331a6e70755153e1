#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_core::xftp::command::FileCommand;

// FileCommand decode → encode → decode gives the same command.
fuzz_target!(|data: &[u8]| {
    if let Ok(c) = FileCommand::decode(data)
        && let Ok(again) = c.encode()
    {
        assert_eq!(FileCommand::decode(&again).ok(), Some(c));
    }
});
