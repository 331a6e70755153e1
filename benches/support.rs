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

/// A `kB` line of `/proc/<pid>/status` (`None` = this process).
fn status_kib(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident memory (VmHWM) of a process, in KiB; `None` = this one.
pub fn peak_rss_kib(pid: Option<u32>) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Current resident set (`VmRSS`) of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(Some(pid), "VmRSS:")
}

/// A benchmark's server process: prints `READY <fields…>` once serving and
/// serves until its stdin closes. `spawn_ready` starts one (this bench
/// binary again, with `args`) and returns it with those fields.
pub fn announce_ready(fields: &str) {
    println!("READY {fields}");
    let _ = std::io::stdout().flush();
}

/// Blocks until stdin closes (the parent bench is done with this process).
pub fn wait_for_stdin_eof() {
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}

pub fn spawn_ready(args: &[String]) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fields: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
    assert!(!fields.is_empty(), "server process did not start");
    (child, fields)
}
