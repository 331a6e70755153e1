//! A log whose disk fills and then frees (issue 14, fault 1): the write
//! that fails part-way must not leave a fragment that the next, acknowledged
//! record is glued onto. The "disk" is the file-size limit of a child
//! process (`ulimit -f`, SIGXFSZ ignored, so a write past it is cut short
//! and fails with EFBIG), raised again from outside with `prlimit`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use smp_core::log_file::open_append;

const CHILD: &str = "SMP_CORE_FULL_DISK_CHILD";
const TEST: &str = "a_failed_write_never_swallows_the_next_record";

fn record(i: usize, len: usize) -> Vec<u8> {
    let mut r = format!("rec {i} ").into_bytes();
    r.resize(len, b'a' + (i % 26) as u8);
    r
}

/// Parses a line written by [`record`]; `None` for anything else.
fn parse(line: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(line).ok()?;
    let mut parts = s.splitn(3, ' ');
    (parts.next()? == "rec").then_some(())?;
    let i: usize = parts.next()?.parse().ok()?;
    let body = parts.next()?;
    let fill = (b'a' + (i % 26) as u8) as char;
    body.chars().all(|c| c == fill).then_some(i)
}

fn child(path: &str) {
    let mut log = open_append(std::path::Path::new(path)).unwrap();
    let mut acked = Vec::new();
    let mut i = 0;
    // Fill the "disk": 1000-byte records until one fails part-way.
    while log.write_line(&record(i, 999)).is_ok() {
        acked.push(i);
        i += 1;
    }
    println!("full after {} records", acked.len());
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    // Space again: every record now is acknowledged.
    for j in i + 1..i + 6 {
        log.write_line(&record(j, 299)).unwrap();
        acked.push(j);
    }
    log.sync().unwrap();
    let list: Vec<String> = acked.iter().map(ToString::to_string).collect();
    println!("acked {}", list.join(","));
}

#[test]
fn a_failed_write_never_swallows_the_next_record() {
    if let Ok(path) = std::env::var(CHILD) {
        return child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.log");
    // 16 KiB of "disk", in bash's 1024-byte units.
    let mut c = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -S -f 16 && trap "" XFSZ && exec "$0" --exact "$1" --nocapture"#)
        .arg(std::env::current_exe().unwrap())
        .arg(TEST)
        .env(CHILD, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    let next_line = |out: &mut BufReader<_>, line: &mut String, prefix: &str| loop {
        line.clear();
        assert!(out.read_line(line).unwrap() > 0, "the child ended early");
        if line.starts_with(prefix) {
            return;
        }
    };
    next_line(&mut out, &mut line, "full after ");
    let full_after: usize = line["full after ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(full_after > 0 && full_after < 17, "{line}");
    // The disk has room again.
    let st = Command::new("prlimit")
        .arg(format!("--pid={}", c.id()))
        .arg("--fsize=unlimited:")
        .status()
        .unwrap();
    assert!(st.success(), "prlimit failed");
    writeln!(c.stdin.take().unwrap(), "go").unwrap();
    next_line(&mut out, &mut line, "acked ");
    let acked: Vec<usize> = line["acked ".len()..]
        .trim()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(c.wait().unwrap().success());

    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.last(), Some(&b'\n'));
    let lines: Vec<&[u8]> = data[..data.len() - 1].split(|&b| b == b'\n').collect();
    let found: Vec<Option<usize>> = lines.iter().map(|l| parse(l)).collect();
    // Every line is one whole record: the fragment was cut off.
    assert!(
        found.iter().all(Option::is_some),
        "a line that is not a record: {:?}",
        lines
            .iter()
            .find(|l| parse(l).is_none())
            .map(|l| String::from_utf8_lossy(&l[..l.len().min(60)]).into_owned())
    );
    let found: Vec<usize> = found.into_iter().flatten().collect();
    assert_eq!(
        found, acked,
        "the acknowledged records, in order, and nothing else"
    );
}

/// A log killed mid-write before it was opened: the fragment stays one bad
/// line of its own, and the next record is whole.
#[test]
fn a_torn_tail_found_at_open_is_not_glued_to_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.log");
    std::fs::write(&path, b"rec 0 aaaa\nrec 1 bb").unwrap();
    let mut log = open_append(&path).unwrap();
    log.write_line(&record(2, 20)).unwrap();
    log.write_line(&record(3, 20)).unwrap();
    log.sync().unwrap();
    let data = std::fs::read(&path).unwrap();
    let lines: Vec<Option<usize>> = data[..data.len() - 1]
        .split(|&b| b == b'\n')
        .map(parse)
        .collect();
    assert_eq!(lines, [Some(0), Some(1), Some(2), Some(3)]);
}
