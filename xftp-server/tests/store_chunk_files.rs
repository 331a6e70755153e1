//! Chunk files on disk (xftp.md §8.2 FPUT/FGET/FDEL, §7.6).

use std::fs;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use smp_core::xftp::error::XftpErrorType;
use tokio::io::AsyncReadExt;
use xftp_server::chunk_files::{
    ChunkError, PartFile, chunk_file_name, chunk_path, delete_chunk, drain_exact, open_chunk,
    receive_chunk, receive_part, sweep_orphans,
};

const SID: [u8; 16] = [1; 16];

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn digest(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn names(d: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn name_is_padded_b64url() {
    assert_eq!(chunk_file_name(&SID), "AQEBAQEBAQEBAQEBAQEBAQ==");
    assert_eq!(chunk_file_name(&[0xfb; 16]), "-_v7-_v7-_v7-_v7-_v7-w==");
    assert_eq!(
        chunk_path("files".as_ref(), &SID),
        PathBuf::from("files/AQEBAQEBAQEBAQEBAQEBAQ==")
    );
}

#[tokio::test]
async fn upload_then_read_back() {
    let d = tempfile::tempdir().unwrap();
    let data = body(100_000);
    // A slow reader with small pieces, to exercise the loop.
    let mut r = tokio_test_reader(&data, 1000);
    let p = receive_chunk(&mut r, d.path(), &SID, data.len() as u32, &digest(&data))
        .await
        .unwrap();
    assert_eq!(p, d.path().join("AQEBAQEBAQEBAQEBAQEBAQ=="));
    assert_eq!(names(d.path()), vec!["AQEBAQEBAQEBAQEBAQEBAQ=="]);
    let mut f = open_chunk(&p).await.unwrap().unwrap();
    let mut back = Vec::new();
    f.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, data);
    assert!(delete_chunk(&p).await.unwrap());
    assert!(!delete_chunk(&p).await.unwrap());
    assert!(open_chunk(&p).await.unwrap().is_none());
}

/// Splits `data` into reads of at most `piece` bytes.
fn tokio_test_reader(data: &[u8], piece: usize) -> impl tokio::io::AsyncRead + Unpin {
    let chunks: Vec<Vec<u8>> = data.chunks(piece).map(<[u8]>::to_vec).collect();
    let mut b = tokio_util_like::Builder::new();
    for c in chunks {
        b.read(c);
    }
    b.build()
}

/// A minimal piecewise reader (the workspace's tokio-test is not a dependency).
mod tokio_util_like {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, ReadBuf};

    pub struct Builder(Vec<Vec<u8>>);
    impl Builder {
        pub fn new() -> Self {
            Self(Vec::new())
        }
        pub fn read(&mut self, c: Vec<u8>) {
            self.0.push(c);
        }
        pub fn build(mut self) -> Pieces {
            self.0.reverse();
            Pieces(self.0)
        }
    }
    pub struct Pieces(Vec<Vec<u8>>);
    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(mut c) = self.0.pop() {
                let n = c.len().min(buf.remaining());
                buf.put_slice(&c[..n]);
                if n < c.len() {
                    self.0.push(c.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }
}

async fn expect_err(data: &[u8], size: u32, dg: &[u8]) -> ChunkError {
    let d = tempfile::tempdir().unwrap();
    let mut r = data;
    let e = receive_chunk(&mut r, d.path(), &SID, size, dg)
        .await
        .unwrap_err();
    assert!(names(d.path()).is_empty(), "partial file left behind");
    e
}

#[tokio::test]
async fn size_and_digest_errors_leave_nothing() {
    let data = body(5000);
    let e = expect_err(&data[..4999], 5000, &digest(&data)).await;
    assert_eq!(XftpErrorType::from(e), XftpErrorType::Size);
    // Longer in the same piece → SIZE.
    let e = expect_err(&data, 4999, &digest(&data[..4999])).await;
    assert_eq!(XftpErrorType::from(e), XftpErrorType::Size);
    let e = expect_err(&data, 5000, &digest(b"other")).await;
    assert_eq!(XftpErrorType::from(e), XftpErrorType::Digest);
}

#[tokio::test]
async fn bytes_after_size_are_size() {
    // The reference (`hReceiveFile`) keeps reading after exactly `size`
    // bytes until the body ends: more bytes, even in a later piece, → SIZE.
    let d = tempfile::tempdir().unwrap();
    let data = body(2000);
    let mut r = tokio_test_reader(&data, 1000);
    let e = receive_chunk(&mut r, d.path(), &SID, 1000, &digest(&data[..1000]))
        .await
        .unwrap_err();
    assert_eq!(XftpErrorType::from(e), XftpErrorType::Size);
    assert!(names(d.path()).is_empty(), "partial file left behind");
    let mut r = tokio_test_reader(&data[..1001], 1000);
    let e = receive_chunk(&mut r, d.path(), &SID, 1000, &digest(&data[..1000]))
        .await
        .unwrap_err();
    assert_eq!(XftpErrorType::from(e), XftpErrorType::Size);
    // Exactly `size` bytes, in any pieces, are accepted.
    let mut r = tokio_test_reader(&data[..1000], 300);
    let p = receive_chunk(&mut r, d.path(), &SID, 1000, &digest(&data[..1000]))
        .await
        .unwrap();
    assert_eq!(fs::read(p).unwrap(), &data[..1000]);
}

#[tokio::test]
async fn drain_stops_reading_at_size() {
    // A retried upload of a stored chunk (`skipCommitted`) answers as soon
    // as exactly `size` bytes arrived in whole pieces; later bytes are not read.
    let data = body(40_000);
    let mut r = tokio_test_reader(&data, 16_384);
    drain_exact(&mut r, 32_768).await.unwrap();
}

#[tokio::test]
async fn missing_directory_is_file_io() {
    let d = tempfile::tempdir().unwrap();
    let data = body(10);
    let mut r = &data[..];
    let e = receive_chunk(&mut r, &d.path().join("nope"), &SID, 10, &digest(&data))
        .await
        .unwrap_err();
    assert!(matches!(e, ChunkError::Io(_)));
    assert_eq!(XftpErrorType::from(e), XftpErrorType::FileIo);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn disk_full_is_file_io() {
    // /dev/full fails every write with ENOSPC: the upload's `.part` file
    // is a symlink to it.
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let part = PartFile::new(d.path(), &SID);
    std::os::unix::fs::symlink("/dev/full", part.part()).unwrap();
    let data = body(20_000);
    let mut r = &data[..];
    let e = receive_part(&mut r, &part, 20_000, &digest(&data), &mut |_| true)
        .await
        .unwrap_err();
    assert_eq!(XftpErrorType::from(&e), XftpErrorType::FileIo, "{e}");
    assert!(names(d.path()).is_empty());
}

#[tokio::test]
async fn drain_counts_exactly() {
    let data = body(40_000);
    let mut r = tokio_test_reader(&data, 16_384);
    drain_exact(&mut r, 40_000).await.unwrap();
    let mut r = &data[..39_999];
    assert!(matches!(
        drain_exact(&mut r, 40_000).await,
        Err(ChunkError::Size)
    ));
    let mut r = &data[..];
    assert!(matches!(
        drain_exact(&mut r, 39_999).await,
        Err(ChunkError::Size)
    ));
}

#[tokio::test]
async fn sweep_removes_orphans_only() {
    let d = tempfile::tempdir().unwrap();
    let kept = chunk_path(d.path(), &[1; 16]);
    let orphan = chunk_path(d.path(), &[2; 16]);
    fs::write(&kept, b"a").unwrap();
    fs::write(&orphan, b"b").unwrap();
    // Uploads in progress, as earlier versions and as this one name them.
    for part in [
        format!("{}.part", chunk_file_name(&[3; 16])),
        format!("{}.17.part", chunk_file_name(&[4; 16])),
    ] {
        fs::write(d.path().join(part), b"c").unwrap();
    }
    // Look-alikes that no upload writes are left alone.
    for other in [
        "README".to_owned(),
        format!("{}.x.part", chunk_file_name(&[5; 16])),
    ] {
        fs::write(d.path().join(other), b"d").unwrap();
    }
    // The record's path may spell the directory differently.
    let referenced = vec![d.path().join(".").join(chunk_file_name(&[1; 16]))];
    assert_eq!(sweep_orphans(d.path(), &referenced).await.unwrap(), 3);
    assert_eq!(
        names(d.path()),
        vec![
            "AQEBAQEBAQEBAQEBAQEBAQ==".to_owned(),
            "BQUFBQUFBQUFBQUFBQUFBQ==.x.part".into(),
            "README".into()
        ]
    );
    assert_eq!(
        sweep_orphans(&d.path().join("missing"), &[]).await.unwrap(),
        0
    );
    PartFile::new(d.path(), &[3; 16]).discard().await; // nothing there: no error
}
