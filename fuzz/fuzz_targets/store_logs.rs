#![no_main]

use libfuzzer_sys::fuzz_target;

// Store-log and message-log lines: a line that reads writes back to a
// line that reads the same.
fuzz_target!(|data: &[u8]| {
    if let Ok(r) = smp_core::smp::store_log::StoreLogRecord::parse(data)
        && let Ok(line) = r.encode_line()
    {
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        assert_eq!(
            smp_core::smp::store_log::StoreLogRecord::parse(line).ok(),
            Some(r)
        );
    }
    if let Ok(m) = smp_core::smp::store_log::MsgLogRecord::parse(data)
        && let Ok(line) = m.encode_line()
    {
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        assert_eq!(
            smp_core::smp::store_log::MsgLogRecord::parse(line).ok(),
            Some(m)
        );
    }
    if let Ok(r) = xftp_server::store_log::StoreLogRecord::decode(data) {
        let line = r.encode();
        assert_eq!(
            xftp_server::store_log::StoreLogRecord::decode(line.as_bytes()).ok(),
            Some(r)
        );
    }
});
