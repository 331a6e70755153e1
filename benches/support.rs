//! What the benches share: the run size, a cheap byte source, a counting
//! sink and peak RSS from /proc.
#![allow(dead_code)]

use std::io::{self, Read, Write};

pub const PIECE: usize = 1 << 20;

/// Bytes per run: `BENCH_MIB` MiB, 1 GiB by default.
pub fn size() -> u64 {
    std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
        << 20
}

/// Non-repeating bytes that cost almost nothing to produce, so the source
/// does not weigh on the figures.
pub struct Source {
    left: u64,
    block: Vec<u8>,
    counter: u64,
}

impl Source {
    pub fn new(len: u64) -> Self {
        Self {
            left: len,
            block: (0..PIECE).map(|i| (i * 131 % 251) as u8).collect(),
            counter: 0,
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left).min(PIECE as u64) as usize;
        buf[..n].copy_from_slice(&self.block[..n]);
        if n >= 8 {
            buf[..8].copy_from_slice(&self.counter.to_le_bytes());
        }
        self.counter += 1;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Discards bytes, counting them.
pub struct Count(pub u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Peak resident memory (VmHWM) of a process, in KiB; `None` = this one.
pub fn peak_rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Current resident set (`VmRSS`) of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
