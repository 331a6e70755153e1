//! Linux's own FAT tools on our card images: `fsck.fat -n` and `mdir`.
//! With `CI` set a missing tool fails the test; without it the check is
//! skipped with a note.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use device_sync::image::PARTITION_START;

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing (CI installs dosfstools and mtools)"
        );
        eprintln!("note: {tool} not installed; Linux tool checks skipped");
    }
    found
}

/// Copies the partition out of `image` (fsck.fat has no offset option),
/// seeking over all-zero blocks so a sparse multi-GiB image stays sparse
/// and is never held in memory.
fn copy_partition_sparse(image: &Path, part: &Path) {
    let mut src = File::open(image).unwrap();
    let len = src.metadata().unwrap().len();
    let start = PARTITION_START * 512;
    src.seek(SeekFrom::Start(start)).unwrap();
    let mut dst = File::create(part).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = start;
    while at < len {
        let n = ((len - at) as usize).min(buf.len());
        src.read_exact(&mut buf[..n]).unwrap();
        if buf[..n].iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64)).unwrap();
        } else {
            dst.write_all(&buf[..n]).unwrap();
        }
        at += n as u64;
    }
    dst.set_len(len - start).unwrap();
}

/// What fsck.fat may report on an image whose writer was killed: FAT
/// metadata is not crash-ordered (design/device.md §1), so a kill can leak
/// a cluster and leave the FSInfo free count stale — both harmless by the
/// FAT spec. Anything else (cross-links, bad entries) is a failure.
fn benign_after_kill(line: &str) -> bool {
    let l = line.trim();
    l.is_empty()
        || l.starts_with("fsck.fat ")
        || l == "Leaving filesystem unchanged."
        || l.contains(" files, ")
        || l.starts_with("Reclaimed ")
        || l.starts_with("Free cluster summary")
        || l.starts_with("Auto-correcting")
}

/// Runs `fsck.fat -n` on the image's partition and returns what `mdir`
/// lists in /SIMPLEGO/FILES (empty if the tools are missing). `killed`:
/// the image's writer was killed at some point, so only the findings of
/// [`benign_after_kill`] are allowed; otherwise the image must be clean.
pub fn check(image: &Path, killed: bool) -> String {
    if !(have("fsck.fat") && have("mdir")) {
        return String::new();
    }
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("partition.img");
    copy_partition_sparse(image, &part);
    let o = Command::new("fsck.fat")
        .arg("-n")
        .arg(&part)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    if killed {
        assert!(text.lines().all(benign_after_kill), "fsck.fat: {text}");
    } else {
        assert!(
            o.status.success(),
            "fsck.fat: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!text.contains("Reclaimed"), "leaked clusters:\n{text}");
        assert!(!text.contains("wrong"), "FSInfo free count off:\n{text}");
    }
    let o = Command::new("mdir")
        .arg("-i")
        .arg(format!("{}@@1M", image.display()))
        .arg("::/SIMPLEGO/FILES")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mdir failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `mdir`'s listing names `name` (8.3, shown as `BASE     EXT`).
pub fn lists(listing: &str, name: &str) -> bool {
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    listing
        .lines()
        .any(|l| l.starts_with(base) && l.contains(&format!(" {ext} ")))
}
