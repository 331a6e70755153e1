//! The `xftp` client as a library: what the binary runs, reusable by other
//! programs and tests.
//!
//! - [`send::send_file`]: streaming encryption into a temporary file,
//!   chunks spread over the servers and uploaded concurrently.
//! - [`recv::receive_file`]: concurrent download into a temporary file,
//!   chunk and file digests checked, decrypted into a temporary output
//!   file renamed into place only when everything checked out; follows one
//!   redirect.
//! - [`del::delete_file`], [`info::info_lines`].
//! - [`profile`]: the messaging profile directory and `xftp profile`.

pub mod cli;
pub mod del;
pub mod error;
pub mod info;
pub mod messaging;
pub mod pool;
pub mod profile;
pub mod progress;
pub mod recv;
pub mod resume;
pub mod send;
pub mod servers;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use error::CliError;

/// Chunk buffers (4 MiB each) `send` and `recv` pass round between the
/// network and the file crypto: their memory budget, and how many chunks
/// are in flight at once.
pub(crate) const CHUNK_BUFFERS: usize = 3;

/// The reference's fixed version string (`xftpClientVersion`).
pub const CLIENT_VERSION: &str = "SimpleX XFTP client v1.0.1";

/// A reader that reports how many bytes went through it.
pub struct CountingReader<R, F> {
    inner: R,
    on_read: F,
}

impl<R, F: FnMut(u64)> CountingReader<R, F> {
    pub fn new(inner: R, on_read: F) -> Self {
        Self { inner, on_read }
    }
}

impl<R: Read, F: FnMut(u64)> Read for CountingReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_read)(n as u64);
        Ok(n)
    }
}

/// `dir/name`, or if that exists `dir/<stem>_1<exts>`, `_2`, … with the
/// suffix before the first dot (the reference's `uniqueCombine`).
pub fn unique_combine(dir: &Path, name: &str) -> PathBuf {
    let (stem, ext) = match name.find('.') {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    let mut n = 0u64;
    loop {
        let candidate = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{stem}_{n}{ext}"))
        };
        if std::fs::symlink_metadata(&candidate).is_err() {
            return candidate;
        }
        n += 1;
    }
}

/// The shared rule for names from a sender-chosen file header (see
/// [`smp_core::file::header::safe_file_name`]).
pub use smp_core::file::header::safe_file_name as sanitize_file_name;

/// `~/Downloads`, the reference's default `recv` directory.
pub fn default_download_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join("Downloads"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize_file_name("report.pdf"), "report.pdf");
        assert_eq!(sanitize_file_name("../../etc/passwd"), "____etc_passwd");
        assert_eq!(sanitize_file_name(".."), "_");
        assert_eq!(sanitize_file_name(""), "file");
        assert_eq!(sanitize_file_name("."), "file");
        assert_eq!(sanitize_file_name("a\nb\u{1b}c"), "a_b_c");
        assert_eq!(sanitize_file_name("C:\\x"), "C:_x");
    }

    #[test]
    fn unique_names() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            unique_combine(d.path(), "a.tar.gz"),
            d.path().join("a.tar.gz")
        );
        std::fs::write(d.path().join("a.tar.gz"), b"").unwrap();
        assert_eq!(
            unique_combine(d.path(), "a.tar.gz"),
            d.path().join("a_1.tar.gz")
        );
        std::fs::write(d.path().join("a_1.tar.gz"), b"").unwrap();
        assert_eq!(
            unique_combine(d.path(), "a.tar.gz"),
            d.path().join("a_2.tar.gz")
        );
        std::fs::write(d.path().join("noext"), b"").unwrap();
        assert_eq!(unique_combine(d.path(), "noext"), d.path().join("noext_1"));
    }
}
