#![no_main]

use libfuzzer_sys::fuzz_target;

// INI files as both servers read them: values or clear errors.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let _ = smp_core::ini::Ini::parse(text);
    let _ = xftp_server::config::ServerConfig::parse(text);
    let _ = smp_server::config::ServerConfig::parse(text);
});
