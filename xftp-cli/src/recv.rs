//! `xftp recv`: download the chunks concurrently into memory, decrypt them
//! in order as they arrive into a temporary file next to the destination,
//! and rename that into place only after the tag, the file digest and the
//! size checked out. On any failure nothing is left behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use smp_core::crypto::keys::PrivateKey;
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::chunks::CHUNK_4M;
use smp_core::file::description::{
    DescriptionError, FileChunk, FileDescription, FileParty, ValidFileDescription,
};
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{StreamError, decrypt_file};
use smp_core::file::weblink::{WebLinkError, decode_web_link};
use tokio::task::JoinSet;

use crate::error::{CliError, Op};
use crate::pool::{Pool, TransferOptions};
use crate::progress::Progress;
use crate::{CHUNK_BUFFERS, sanitize_file_name, unique_combine};

/// Where a description comes from.
#[derive(Debug, Clone)]
pub enum DescriptionSource {
    File(PathBuf),
    /// `https://host/#fragment` (or `http://`), as `send` prints it.
    Link(String),
}

impl DescriptionSource {
    /// A link if it starts with `http://` or `https://`, else a file path.
    pub fn parse(input: &str) -> Self {
        if input.starts_with("https://") || input.starts_with("http://") {
            Self::Link(input.to_string())
        } else {
            Self::File(PathBuf::from(input))
        }
    }
}

/// Reads, parses and validates a description for `party`.
pub fn load_description(
    source: &DescriptionSource,
    party: FileParty,
) -> Result<FileDescription, CliError> {
    let parsed = match source {
        DescriptionSource::Link(link) => match decode_web_link(link) {
            Ok(d) => Ok(d),
            Err(WebLinkError::Description(e)) => Err(e),
            Err(e) => return Err(CliError::WebLink(e)),
        },
        DescriptionSource::File(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                CliError::Description(DescriptionError::Yaml("the file is not UTF-8 text".into()))
            })?;
            ValidFileDescription::from_yaml(&text, party)
        }
    };
    match parsed {
        Ok(d) => Ok(d.into_inner()),
        Err(DescriptionError::WrongParty { expected, found }) => {
            Err(CliError::WrongParty { expected, found })
        }
        Err(e) => Err(CliError::Description(e)),
    }
}

pub struct RecvOptions {
    pub source: DescriptionSource,
    /// The reference's `DIR`: an existing directory (the file gets the name
    /// from its header, made unique), or a path that does not exist yet (the
    /// file is saved there). `None`: `~/Downloads`.
    pub out: Option<PathBuf>,
    pub transfer: TransferOptions,
}

#[derive(Debug)]
pub struct RecvOutcome {
    pub path: PathBuf,
    /// Plaintext size.
    pub size: u64,
    /// Chunks whose acknowledgement (FACK) failed; the file is complete.
    pub ack_failures: Vec<CliError>,
}

/// Where the output goes: a directory (name from the header) or a path.
enum Target {
    Dir(PathBuf),
    Path(PathBuf),
}

impl Target {
    fn resolve(out: Option<&Path>) -> Result<Self, CliError> {
        let out = match out {
            Some(p) => p.to_path_buf(),
            None => crate::default_download_dir().ok_or_else(|| {
                CliError::io(
                    "finding ~/Downloads",
                    std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set"),
                )
            })?,
        };
        if out.is_dir() {
            Ok(Self::Dir(out))
        } else if std::fs::symlink_metadata(&out).is_ok() {
            Err(CliError::OutputExists(out))
        } else {
            Ok(Self::Path(out))
        }
    }

    /// The directory the temporary output is made in (same file system).
    fn dir(&self) -> PathBuf {
        match self {
            Self::Dir(d) => d.clone(),
            Self::Path(p) => match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }
}

/// Receives the file; see the module docs.
pub async fn receive_file(
    opts: &RecvOptions,
    progress: &Progress,
) -> Result<RecvOutcome, CliError> {
    let desc = load_description(&opts.source, FileParty::Recipient)?;
    let target = Target::resolve(opts.out.as_deref())?;
    let pool = Arc::new(Pool::new(opts.transfer));
    progress.item("Downloading file...");
    let mut ack_failures = Vec::new();
    let desc = if let Some(redirect) = desc.redirect.clone() {
        // The redirect file holds the real description's YAML.
        if desc.size > u64::from(CHUNK_4M) {
            return Err(CliError::RedirectMismatch);
        }
        let (_, digest, yaml) = fetch(&pool, &desc, progress, Vec::new()).await?;
        if digest[..] != desc.digest[..] {
            return Err(CliError::FileDigest);
        }
        let yaml = String::from_utf8(yaml)
            .map_err(|_| CliError::Description(DescriptionError::Yaml("not UTF-8".into())))?;
        let inner = load_inner(&yaml)?;
        if inner.size != redirect.size || inner.digest != redirect.digest {
            return Err(CliError::RedirectMismatch);
        }
        if inner.redirect.is_some() {
            return Err(CliError::RedirectChain);
        }
        ack_failures.extend(ack_all(&pool, &desc).await);
        inner
    } else {
        desc
    };
    let out_dir = target.dir();
    let tmp_out = tempfile::Builder::new()
        .prefix(".xftp-recv")
        .suffix(".part")
        .tempfile_in(&out_dir)
        .map_err(|e| CliError::io(format!("creating a file in {}", out_dir.display()), e))?;
    let dst = tmp_out
        .as_file()
        .try_clone()
        .map_err(|e| CliError::io("temporary file", e))?;
    let (header, digest, _) = fetch(&pool, &desc, progress, dst).await?;
    if digest[..] != desc.digest[..] {
        return Err(CliError::FileDigest);
    }
    let plain_size = tmp_out
        .as_file()
        .metadata()
        .map_err(|e| CliError::io("temporary file", e))?
        .len();
    tmp_out
        .as_file()
        .sync_all()
        .map_err(|e| CliError::io("writing the output file", e))?;
    let path = persist(tmp_out, &target, &header.file_name)?;
    ack_failures.extend(ack_all(&pool, &desc).await);
    Ok(RecvOutcome {
        path,
        size: plain_size,
        ack_failures,
    })
}

fn load_inner(yaml: &str) -> Result<FileDescription, CliError> {
    match ValidFileDescription::from_yaml(yaml, FileParty::Recipient) {
        Ok(d) => Ok(d.into_inner()),
        Err(e) => Err(CliError::Description(e)),
    }
}

/// Renames the verified temporary file to its final name without
/// replacing anything that appeared meanwhile.
fn persist(
    mut tmp: tempfile::NamedTempFile,
    target: &Target,
    header_name: &str,
) -> Result<PathBuf, CliError> {
    loop {
        let path = match target {
            Target::Dir(d) => unique_combine(d, &sanitize_file_name(header_name)),
            Target::Path(p) => p.clone(),
        };
        match tmp.persist_noclobber(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Target::Path(p) = target {
                    return Err(CliError::OutputExists(p.clone()));
                }
                tmp = e.file;
            }
            Err(e) => {
                return Err(CliError::io(format!("saving {}", path.display()), e.error));
            }
        }
    }
}

/// Chunk buffers going round: taken by a download, given back by the
/// decryption once it read the chunk. Allocated once and reused, so the
/// allocator never sees 4 MiB blocks come and go (glibc's would keep
/// freed ones resident and RSS would creep up with the file size).
type Buffers = tokio::sync::mpsc::Sender<Vec<u8>>;

/// Hands the decryption the chunks in order as they arrive; a chunk's
/// buffer goes back once it was read, so the next download can start.
struct InOrder {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    current: Option<Vec<u8>>,
    free: Buffers,
    at: usize,
    /// Encrypted bytes read so far (the bar).
    read: Arc<AtomicU64>,
}

impl std::io::Read for InOrder {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current
                && self.at < chunk.len()
            {
                let n = buf.len().min(chunk.len() - self.at);
                buf[..n].copy_from_slice(&chunk[self.at..self.at + n]);
                self.at += n;
                self.read.fetch_add(n as u64, Ordering::Relaxed);
                return Ok(n);
            }
            // Done with this chunk: its buffer goes back before waiting.
            if let Some(done) = self.current.take() {
                let _ = self.free.try_send(done);
            }
            self.at = 0;
            match self.rx.blocking_recv() {
                Some(next) => self.current = Some(next),
                // All chunks delivered, or the downloads stopped (then the
                // decryption reports the file as incomplete, and the
                // download error is the one shown).
                None => return Ok(0),
            }
        }
    }
}

/// Downloads every chunk (first replica, as the reference) into memory,
/// several at a time, and decrypts the file into `dst` in chunk order as
/// the chunks arrive: no temporary file, and at most [`CHUNK_BUFFERS`]
/// chunks in memory. Returns the header, the SHA-512 of the encrypted file
/// (the caller compares it with the description) and `dst`, which holds
/// unauthenticated bytes if this fails.
async fn fetch<W: Write + Send + 'static>(
    pool: &Arc<Pool>,
    desc: &FileDescription,
    progress: &Progress,
    dst: W,
) -> Result<(FileHeader, [u8; 64], W), CliError> {
    let sum: u64 = desc.chunks.iter().map(|c| u64::from(c.chunk_size)).sum();
    if sum != desc.size {
        return Err(CliError::FileSize {
            expected: desc.size,
            found: sum,
        });
    }
    let read = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNK_BUFFERS);
    let (free, mut buffers) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNK_BUFFERS);
    for _ in 0..desc.chunks.len().min(CHUNK_BUFFERS) {
        free.try_send(Vec::new()).expect("room for every buffer");
    }
    let mut decryption = {
        let reader = InOrder {
            rx,
            current: None,
            free,
            at: 0,
            read: read.clone(),
        };
        let (size, key, nonce) = (desc.size, SbKey(desc.key), CbNonce(desc.nonce));
        tokio::task::spawn_blocking(move || {
            let mut dst = dst;
            let r = decrypt_file(reader, size, &key, &nonce, &mut dst);
            r.map(|(h, d)| (h, d, dst))
        })
    };
    let down_bar = progress.bar("downloading", desc.size, Some("Downloaded"));
    let dec_bar = progress.bar("decrypting", desc.size, None);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    // Buffers are taken in chunk order, so the chunk the decryption waits
    // for always has one: no deadlock.
    let mut tasks = JoinSet::new();
    let mut waiting = std::collections::BTreeMap::new();
    let (mut started, mut delivered) = (0, 0);
    let n = desc.chunks.len();
    // `Ok(Some(..))`: the decryption ended before every chunk was handed to
    // it (a corrupt file); then its result is the answer, and the downloads
    // still in flight are dropped with the task set.
    let result: Result<Option<_>, CliError> = async {
        while delivered < n {
            tokio::select! {
                ended = &mut decryption => return Ok(Some(ended)),
                Some(buf) = buffers.recv(), if started < n => {
                    let (i, chunk, pool) = (started, desc.chunks[started].clone(), pool.clone());
                    started += 1;
                    tasks.spawn(async move {
                        let data = download_one(&pool, &chunk, buf).await?;
                        Ok::<_, CliError>((i, data))
                    });
                }
                Some(joined) = tasks.join_next() => match joined {
                    Ok(Ok((i, data))) => {
                        down_bar.chunk_done(data.len() as u64);
                        waiting.insert(i, data);
                        while let Some(next) = waiting.remove(&delivered) {
                            if tx.send(next).await.is_err() {
                                // The decryption ended early: it says why.
                                return Ok(Some((&mut decryption).await));
                            }
                            delivered += 1;
                        }
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                },
                _ = tick.tick() => {
                    dec_bar.advance_to(read.load(Ordering::Relaxed));
                }
            }
        }
        Ok(None)
    }
    .await;
    // No more chunks: the decryption sees the end of its input.
    drop(tx);
    let ended = match result {
        Ok(ended) => ended,
        Err(e) => {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let _ = decryption.await;
            return Err(e);
        }
    };
    down_bar.finish();
    progress.item("Decrypting file...");
    let decrypted = match ended {
        Some(r) => r,
        None => decryption.await,
    }
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    dec_bar.advance_to(read.load(Ordering::Relaxed));
    dec_bar.finish();
    decrypted.map_err(|e| match e {
        StreamError::Io(io) => CliError::io("decrypting", io),
        other => CliError::Decrypt(other),
    })
}

/// One chunk into `buf`, its digest checked by the client.
async fn download_one(pool: &Pool, chunk: &FileChunk, buf: Vec<u8>) -> Result<Vec<u8>, CliError> {
    let replica = &chunk.replicas[0];
    let conn = pool.get(&replica.server);
    let _slot = conn.slots.acquire().await.expect("semaphore never closed");
    let key = PrivateKey::from_der(replica.replica_key.as_der())
        .map_err(|_| CliError::Description(DescriptionError::ReplicaKey))?;
    let key = &key;
    let buf = &tokio::sync::Mutex::new(buf);
    conn.client
        .retry(pool.options().retries, |c| async move {
            let mut buf = buf.lock().await;
            // Each attempt starts over: a failed one's bytes are dropped.
            buf.clear();
            buf.reserve_exact(chunk.chunk_size as usize);
            c.download_chunk(
                &replica.replica_id,
                key,
                chunk.chunk_size,
                &chunk.digest,
                &mut *buf,
            )
            .await
        })
        .await
        .map_err(|e| CliError::server(Op::Download, &replica.server, e))?;
    let data = std::mem::take(&mut *buf.lock().await);
    tracing::debug!(
        "chunk {} downloaded from {}",
        chunk.chunk_no,
        replica.server
    );
    Ok(data)
}

/// FACK for every chunk (first replica); returns the failures.
async fn ack_all(pool: &Arc<Pool>, desc: &FileDescription) -> Vec<CliError> {
    let mut tasks = JoinSet::new();
    for chunk in &desc.chunks {
        let replica = chunk.replicas[0].clone();
        let pool = pool.clone();
        tasks.spawn(async move {
            let conn = pool.get(&replica.server);
            let _slot = conn.slots.acquire().await.expect("semaphore never closed");
            let key = PrivateKey::from_der(replica.replica_key.as_der())
                .map_err(|_| CliError::Description(DescriptionError::ReplicaKey))?;
            let key = &key;
            let id = &replica.replica_id;
            conn.client
                .retry(pool.options().retries, |c| async move {
                    c.ack_file(id, key).await
                })
                .await
                .map_err(|e| CliError::server(Op::Ack, &replica.server, e))
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn reader() -> (
        InOrder,
        tokio::sync::mpsc::Sender<Vec<u8>>,
        tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (free, freed) = tokio::sync::mpsc::channel(4);
        let r = InOrder {
            rx,
            current: None,
            free,
            at: 0,
            read: Arc::new(AtomicU64::new(0)),
        };
        (r, tx, freed)
    }

    #[test]
    fn chunks_are_read_in_order_and_each_buffer_returns_once_read() {
        let (mut r, tx, mut freed) = reader();
        tx.try_send(b"first-".to_vec()).unwrap();
        tx.try_send(b"second".to_vec()).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"firs");
        let mut rest = [0u8; 2];
        r.read_exact(&mut rest).unwrap();
        assert!(freed.try_recv().is_err(), "first chunk read, not yet left");
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"seco");
        assert_eq!(freed.try_recv().unwrap(), b"first-", "its buffer came back");
        drop(tx);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"nd");
        assert_eq!(freed.try_recv().unwrap(), b"second");
        assert_eq!(r.read.load(Ordering::SeqCst), 12);
    }

    #[test]
    fn a_closed_channel_ends_the_input() {
        let (mut r, tx, _freed) = reader();
        tx.try_send(b"abc".to_vec()).unwrap();
        drop(tx);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
    }
}
