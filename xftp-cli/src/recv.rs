//! `xftp recv`: download every chunk concurrently into a temporary file,
//! decrypt it streaming into a temporary file next to the destination, and
//! rename that into place only after the tag, the file digest and the size
//! checked out. On any failure nothing is left behind.

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
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::error::{CliError, Op};
use crate::pool::{Pool, TransferOptions};
use crate::progress::Progress;
use crate::{sanitize_file_name, unique_combine};

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
    /// Directory for the downloaded encrypted chunks (`--tmp`).
    pub tmp_dir: PathBuf,
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
        let (_, digest, yaml) = fetch(&pool, &desc, &opts.tmp_dir, progress, Vec::new()).await?;
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
    let dst = std::io::BufWriter::with_capacity(1 << 20, dst);
    let (header, digest, _) = fetch(&pool, &desc, &opts.tmp_dir, progress, dst).await?;
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

/// Which chunks of the temporary file are downloaded and verified, shared
/// between the download tasks and the decrypting thread.
#[derive(Default)]
struct Arrivals {
    state: std::sync::Mutex<ArrivalState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct ArrivalState {
    done: Vec<bool>,
    /// The downloads failed: the decryption must stop.
    aborted: bool,
}

impl Arrivals {
    fn new(chunks: usize) -> Self {
        Self {
            state: std::sync::Mutex::new(ArrivalState {
                done: vec![false; chunks],
                aborted: false,
            }),
            changed: std::sync::Condvar::new(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut ArrivalState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_all();
    }

    /// Blocks until chunk `i` is in; `false` if the downloads were aborted.
    fn wait(&self, i: usize) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !st.done[i] && !st.aborted {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        !st.aborted
    }
}

/// Reads the temporary file in order, each chunk only once it arrived, so
/// decryption runs while later chunks are still downloading.
struct ArrivedReader {
    file: std::fs::File,
    /// End offset of each chunk.
    ends: Vec<u64>,
    arrivals: Arc<Arrivals>,
    pos: u64,
    chunk: usize,
    /// Plaintext progress for the bar.
    read: Arc<AtomicU64>,
}

impl std::io::Read for ArrivedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk < self.ends.len() && self.pos == self.ends[self.chunk] {
            self.chunk += 1;
        }
        if self.chunk == self.ends.len() || buf.is_empty() {
            return Ok(0);
        }
        if !self.arrivals.wait(self.chunk) {
            return Err(std::io::Error::other("the download stopped"));
        }
        let want = ((self.ends[self.chunk] - self.pos) as usize).min(buf.len());
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Downloads every chunk (first replica, as the reference) into one
/// temporary file at the chunk's offset, several at a time per server, and
/// decrypts the file into `dst` as its chunks arrive in order. Returns the
/// header, the SHA-512 of the encrypted file (the caller compares it with
/// the description) and `dst`, which holds unauthenticated bytes if this
/// fails.
async fn fetch<W: Write + Send + 'static>(
    pool: &Arc<Pool>,
    desc: &FileDescription,
    tmp_dir: &Path,
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
    let tmp = tempfile::Builder::new()
        .prefix("xftp.encrypted")
        .tempfile_in(tmp_dir)
        .map_err(|e| CliError::io(format!("creating a file in {}", tmp_dir.display()), e))?;
    tmp.as_file()
        .set_len(desc.size)
        .map_err(|e| CliError::io("allocating the temporary file", e))?;
    let arrivals = Arc::new(Arrivals::new(desc.chunks.len()));
    let read = Arc::new(AtomicU64::new(0));
    let decryption = {
        let reader = ArrivedReader {
            file: tmp
                .reopen()
                .map_err(|e| CliError::io("temporary file", e))?,
            ends: desc
                .chunks
                .iter()
                .scan(0u64, |end, c| {
                    *end += u64::from(c.chunk_size);
                    Some(*end)
                })
                .collect(),
            arrivals: arrivals.clone(),
            pos: 0,
            chunk: 0,
            read: read.clone(),
        };
        let (size, key, nonce) = (desc.size, SbKey(desc.key), CbNonce(desc.nonce));
        tokio::task::spawn_blocking(move || {
            let mut dst = dst;
            let r = decrypt_file(
                std::io::BufReader::with_capacity(1 << 20, reader),
                size,
                &key,
                &nonce,
                &mut dst,
            );
            r.map(|(h, d)| (h, d, dst))
        })
    };
    let down_bar = progress.bar("downloading", desc.size, Some("Downloaded"));
    let dec_bar = progress.bar("decrypting", desc.size, None);
    let mut shown = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let mut tasks = JoinSet::new();
    let mut offset = 0u64;
    for (i, chunk) in desc.chunks.iter().enumerate() {
        let chunk = chunk.clone();
        let at = offset;
        offset += u64::from(chunk.chunk_size);
        let path = tmp.path().to_path_buf();
        let pool = pool.clone();
        tasks.spawn(async move {
            download_one(&pool, &chunk, &path, at).await?;
            Ok::<_, CliError>((i, chunk.chunk_size))
        });
    }
    let result: Result<(), CliError> = async {
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(Ok((i, size)))) => {
                        arrivals.update(|s| s.done[i] = true);
                        down_bar.chunk_done(u64::from(size));
                    }
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                },
                _ = tick.tick() => {
                    let now = read.load(Ordering::Relaxed);
                    dec_bar.inc(now - shown);
                    shown = now;
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        arrivals.update(|s| s.aborted = true);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let _ = decryption.await;
        return Err(e);
    }
    down_bar.finish();
    progress.item("Decrypting file...");
    let decrypted = decryption
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    dec_bar.inc(read.load(Ordering::Relaxed) - shown);
    dec_bar.finish();
    decrypted.map_err(|e| match e {
        StreamError::Io(io) => CliError::io("decrypting", io),
        other => CliError::Decrypt(other),
    })
}

async fn download_one(
    pool: &Pool,
    chunk: &FileChunk,
    path: &Path,
    offset: u64,
) -> Result<(), CliError> {
    let replica = &chunk.replicas[0];
    let conn = pool.get(&replica.server);
    let _slot = conn.slots.acquire().await.expect("semaphore never closed");
    let key = PrivateKey::from_der(replica.replica_key.as_der())
        .map_err(|_| CliError::Description(DescriptionError::ReplicaKey))?;
    let key = &key;
    conn.client
        .retry(pool.options().retries, |c| async move {
            use smp_core::client::xftp::XftpClientError as E;
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .await
                .map_err(E::Sink)?;
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(E::Sink)?;
            let mut w = tokio::io::BufWriter::with_capacity(64 << 10, f);
            c.download_chunk(
                &replica.replica_id,
                key,
                chunk.chunk_size,
                &chunk.digest,
                &mut w,
            )
            .await?;
            w.flush().await.map_err(E::Sink)
        })
        .await
        .map_err(|e| CliError::server(Op::Download, &replica.server, e))?;
    tracing::debug!(
        "chunk {} downloaded from {}",
        chunk.chunk_no,
        replica.server
    );
    Ok(())
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

    fn reader(chunks: &[&[u8]]) -> (ArrivedReader, Arc<Arrivals>, tempfile::NamedTempFile) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        for c in chunks {
            tmp.write_all(c).unwrap();
        }
        let arrivals = Arc::new(Arrivals::new(chunks.len()));
        let r = ArrivedReader {
            file: tmp.reopen().unwrap(),
            ends: chunks
                .iter()
                .scan(0u64, |e, c| {
                    *e += c.len() as u64;
                    Some(*e)
                })
                .collect(),
            arrivals: arrivals.clone(),
            pos: 0,
            chunk: 0,
            read: Arc::new(AtomicU64::new(0)),
        };
        (r, arrivals, tmp)
    }

    #[test]
    fn bytes_are_read_only_in_order_of_arrived_chunks() {
        let (mut r, arrivals, _tmp) = reader(&[b"first-", b"second-", b"third"]);
        let read = r.read.clone();
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        });
        arrivals.update(|s| s.done[2] = true);
        arrivals.update(|s| s.done[1] = true);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            read.load(Ordering::SeqCst),
            0,
            "read past a missing chunk 0"
        );
        arrivals.update(|s| s.done[0] = true);
        assert_eq!(t.join().unwrap().unwrap(), b"first-second-third");
    }

    #[test]
    fn an_aborted_download_ends_the_reader_with_an_error() {
        let (mut r, arrivals, _tmp) = reader(&[b"abc", b"def"]);
        arrivals.update(|s| s.done[0] = true);
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            let e = r.read_to_end(&mut out);
            (e.is_err(), out)
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        arrivals.update(|s| s.aborted = true);
        let (failed, out) = t.join().unwrap();
        assert!(failed);
        assert_eq!(out, b"abc", "the arrived chunk was read, nothing after it");
    }
}
