//! Chunk files in the `[FILES] path` directory, named `b64u(senderId)`.
//!
//! Each upload goes to a file of its own, `<name>.<n>.part`, renamed only
//! when complete and verified, so the final name always holds a whole,
//! correct chunk, a kill at any moment leaves at most `.part` files for the
//! start-up sweep, and two uploads of one chunk at once (a client retrying
//! on a second connection) never write into each other.
//! Memory per transfer is one fixed buffer, whatever the chunk size.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use sha2::{Digest, Sha256};
use smp_core::encoding::string::b64_encode;
use smp_core::xftp::error::XftpErrorType;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::store::FileId;

/// Body pieces are read in the reference's block size.
pub const FILE_BLOCK_SIZE: usize = 16_384;

/// Suffix of an upload in progress.
pub const PART_SUFFIX: &str = ".part";

/// Bytes gathered before one write to the chunk file.
const WRITE_BUFFER: usize = 256 * 1024;

/// Why an upload or a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The body was shorter or longer than the declared size.
    #[error("chunk body size does not match")]
    Size,
    /// The body's SHA-256 differs from the declared digest.
    #[error("chunk digest does not match")]
    Digest,
    /// Reading the body failed (connection trouble, not the disk).
    #[error("reading the chunk body failed: {0}")]
    Body(io::Error),
    /// The storage quota ran out while the body arrived.
    #[error("storage quota used up")]
    Quota,
    /// The file system failed (missing directory, disk full, ...).
    #[error("chunk file I/O error: {0}")]
    Io(#[from] io::Error),
}

impl From<&ChunkError> for XftpErrorType {
    fn from(e: &ChunkError) -> Self {
        match e {
            ChunkError::Size => Self::Size,
            ChunkError::Digest => Self::Digest,
            // The reference answers FILE_IO for any exception other than an
            // HTTP/2 error; the caller maps its own HTTP/2 errors to TIMEOUT.
            ChunkError::Body(_) | ChunkError::Io(_) => Self::FileIo,
            ChunkError::Quota => Self::Quota,
        }
    }
}

impl From<ChunkError> for XftpErrorType {
    fn from(e: ChunkError) -> Self {
        Self::from(&e)
    }
}

/// `b64u(senderId)`, padded (24 characters for 16-byte IDs).
pub fn chunk_file_name(sender_id: &FileId) -> String {
    b64_encode(sender_id)
}

/// `<dir>/<b64u(senderId)>`: the path stored in the record and the log.
pub fn chunk_path(dir: &Path, sender_id: &FileId) -> PathBuf {
    dir.join(chunk_file_name(sender_id))
}

/// One upload's temporary file and the chunk's final path.
#[derive(Debug)]
pub struct PartFile {
    part: PathBuf,
    path: PathBuf,
}

impl PartFile {
    /// A temporary file name no other upload in this process uses.
    pub fn new(dir: &Path, sender_id: &FileId) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = chunk_path(dir, sender_id);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let part = dir.join(format!("{}.{n}{PART_SUFFIX}", chunk_file_name(sender_id)));
        Self { part, path }
    }

    /// Where the body is written until it is committed.
    pub fn part(&self) -> &Path {
        &self.part
    }

    /// Gives the verified body the chunk's name (rename, then the
    /// directory fsynced). Atomic: the name holds one whole upload.
    pub async fn commit(&self) -> Result<PathBuf, ChunkError> {
        tokio::fs::rename(&self.part, &self.path).await?;
        sync_dir(&self.path).await?;
        Ok(self.path.clone())
    }

    /// Removes the temporary file (a failed, timed out or redundant upload).
    pub async fn discard(&self) {
        remove_if_exists(&self.part).await;
    }
}

/// Reads a body as the reference does (`getHTTP2Body`'s buffered
/// `bodyPart`): in pieces of exactly one block, only the last piece before
/// the end of the body being shorter.
struct Pieces<'a, R: ?Sized> {
    body: &'a mut R,
    buf: Vec<u8>,
}

impl<'a, R: AsyncRead + Unpin + ?Sized> Pieces<'a, R> {
    fn new(body: &'a mut R) -> Self {
        Self {
            body,
            buf: vec![0u8; FILE_BLOCK_SIZE],
        }
    }

    /// The next piece: [`FILE_BLOCK_SIZE`] bytes, fewer only at the end of
    /// the body, empty once it has ended.
    async fn next(&mut self) -> Result<&[u8], ChunkError> {
        let mut n = 0;
        while n < self.buf.len() {
            let got = self
                .body
                .read(&mut self.buf[n..])
                .await
                .map_err(ChunkError::Body)?;
            if got == 0 {
                break;
            }
            n += got;
        }
        Ok(&self.buf[..n])
    }
}

/// A body that fails with `TimedOut` when no byte arrives for `stall`:
/// an upload that stops sending gives back its slot, file and quota long
/// before the whole-upload timeout.
pub struct StallTimeout<R> {
    inner: R,
    stall: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<R> StallTimeout<R> {
    pub fn new(inner: R, stall: Duration) -> Self {
        Self {
            inner,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for StallTimeout<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.stall;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "upload stalled",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// For FPUT on an already uploaded chunk (`skipCommitted`): consumes the
/// body without storing it and answers as soon as exactly `size` bytes
/// have been read (later bytes are not examined); the body ending early, or
/// a piece going past `size`, is SIZE.
pub async fn drain_exact<R>(body: &mut R, size: u32) -> Result<(), ChunkError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut pieces = Pieces::new(body);
    let mut left = u64::from(size);
    loop {
        let n = pieces.next().await?.len() as u64;
        if n == left {
            return Ok(());
        }
        if n == 0 || n > left {
            return Err(ChunkError::Size);
        }
        left -= n;
    }
}

/// Receives an upload into `<dir>/<b64u(senderId)>` and returns that path:
/// [`receive_part`] into a fresh [`PartFile`] (no quota), then
/// [`PartFile::commit`].
pub async fn receive_chunk<R>(
    body: &mut R,
    dir: &Path,
    sender_id: &FileId,
    size: u32,
    digest: &[u8],
) -> Result<PathBuf, ChunkError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let part = PartFile::new(dir, sender_id);
    receive_part(body, &part, size, digest, &mut |_| true).await?;
    let r = part.commit().await;
    if r.is_err() {
        part.discard().await;
    }
    r
}

/// Takes storage for bytes about to be written; `false` when the quota is
/// used up. Called as the body arrives, so an upload that stalls holds
/// what it sent (rounded up to [`CHARGE_GRAIN`]), not what it promised.
pub type Charge<'a> = &'a mut (dyn FnMut(u64) -> bool + Send);

/// Storage is taken from the quota in steps of this size.
pub const CHARGE_GRAIN: u64 = 64 * 1024;

/// Writes an upload's body into its part file, checks size and SHA-256 and
/// fsyncs the file; on any failure the part file is gone. The upload
/// timeout is the caller's (drop this future on timeout and call
/// [`PartFile::discard`]).
pub async fn receive_part<R>(
    body: &mut R,
    part: &PartFile,
    size: u32,
    digest: &[u8],
    charge: Charge<'_>,
) -> Result<(), ChunkError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let r = receive_into(body, &part.part, size, digest, charge).await;
    if r.is_err() {
        part.discard().await;
    }
    r
}

async fn receive_into<R>(
    body: &mut R,
    part: &Path,
    size: u32,
    digest: &[u8],
    charge: Charge<'_>,
) -> Result<(), ChunkError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .await?;
    // Each write to a tokio file is a hop to the blocking pool: batch the
    // 16 KiB body pieces into large writes.
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    // `hReceiveFile`: pieces are written until the body ends; a piece that
    // goes past `size` (also after exactly `size` bytes) or an early end is
    // SIZE, so the body must be exactly `size` bytes long. A size of 0
    // reads nothing (`hReceiveFile _ _ 0 = pure 0`).
    let mut pieces = Pieces::new(body);
    let mut left = u64::from(size);
    let mut charged = 0u64;
    if size > 0 {
        loop {
            let piece = pieces.next().await?;
            let n = piece.len() as u64;
            if n > left {
                return Err(ChunkError::Size);
            }
            if n == 0 {
                if left == 0 {
                    break;
                }
                return Err(ChunkError::Size);
            }
            let written = u64::from(size) - left;
            if written + n > charged {
                let more = n.max(CHARGE_GRAIN).min(u64::from(size) - charged);
                if !charge(more) {
                    return Err(ChunkError::Quota);
                }
                charged += more;
            }
            hasher.update(piece);
            file.write_all(piece).await?;
            left -= n;
        }
    }
    let got = hasher.finalize();
    if !bool::from(got.as_slice().ct_eq(digest)) {
        return Err(ChunkError::Digest);
    }
    file.flush().await?;
    let file = file.into_inner();
    file.sync_all().await?;
    Ok(())
}

async fn remove_if_exists(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove partial chunk file: {e}");
    }
}

async fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        tokio::fs::File::open(dir).await?.sync_all().await
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Opens a stored chunk for FGET; `Ok(None)` when it is missing on disk
/// (the reference then answers AUTH).
pub async fn open_chunk(path: &Path) -> Result<Option<tokio::fs::File>, ChunkError> {
    match tokio::fs::File::open(path).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ChunkError::Io(e)),
    }
}

/// Deletes a stored chunk. `Ok(false)` if it was already gone (not an
/// error, as in the reference); other failures → FILE_IO.
pub async fn delete_chunk(path: &Path) -> Result<bool, ChunkError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ChunkError::Io(e)),
    }
}

/// Start-up sweep: removes `*.part` files and chunk-named files that no
/// record with a path refers to, so a kill at any moment leaves no orphans.
/// Files whose names are not chunk names are left alone. A missing
/// directory sweeps nothing. Returns how many files were removed.
pub async fn sweep_orphans(dir: &Path, referenced: &[PathBuf]) -> Result<usize, ChunkError> {
    sweep(dir, Some(referenced_names(dir, referenced))).await
}

/// Start-up sweep without a store log: only `*.part` files (abandoned
/// uploads) are removed. Without a log no record says which chunk files
/// are orphans, and a later start with the log still owns them (the
/// reference keeps them; xftp.md §11.2 scenarios 21–22).
pub async fn sweep_partials(dir: &Path) -> Result<usize, ChunkError> {
    sweep(dir, None).await
}

/// `keep`: the chunk names records own; `None` keeps every chunk file.
async fn sweep(dir: &Path, keep: Option<HashSet<String>>) -> Result<usize, ChunkError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ChunkError::Io(e)),
    };
    let mut removed = 0;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let orphan = match name.strip_suffix(PART_SUFFIX) {
            Some(base) => is_part_base(base),
            None => keep
                .as_ref()
                .is_some_and(|keep| is_chunk_name(name) && !keep.contains(name)),
        };
        if orphan && entry.file_type().await?.is_file() {
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ChunkError::Io(e)),
            }
        }
    }
    if removed > 0 {
        tracing::info!("removed {removed} orphaned chunk files");
    }
    Ok(removed)
}

/// Names of referenced files that live in `dir`, comparing canonical
/// directories (a log may hold `./files/x` while the config says `files`).
fn referenced_names(dir: &Path, referenced: &[PathBuf]) -> HashSet<String> {
    let dir_c = std::fs::canonicalize(dir).ok();
    referenced
        .iter()
        .filter(|p| {
            let parent = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            parent == dir || (dir_c.is_some() && std::fs::canonicalize(parent).ok() == dir_c)
        })
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect()
}

/// A padded base64url name of a 16-byte ID: 22 alphabet chars then `==`.
/// `<chunk name>.<n>` (or a bare chunk name, as earlier versions wrote).
fn is_part_base(base: &str) -> bool {
    match base.split_once('.') {
        Some((name, n)) => {
            is_chunk_name(name) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => is_chunk_name(base),
    }
}

fn is_chunk_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}
