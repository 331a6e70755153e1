//! `xftp recv`: download every chunk concurrently into a temporary file,
//! decrypt it streaming into a temporary file next to the destination, and
//! rename that into place only after the tag, the file digest and the size
//! checked out. On any failure nothing is left behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smp_core::crypto::keys::PrivateKey;
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::chunks::CHUNK_4M;
use smp_core::file::description::{
    DescriptionError, FileChunk, FileDescription, FileParty, ValidFileDescription,
};
use smp_core::file::stream::{StreamError, decrypt_file};
use smp_core::file::weblink::{WebLinkError, decode_web_link};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::error::{CliError, Op};
use crate::pool::{Pool, TransferOptions};
use crate::progress::Progress;
use crate::{CountingReader, sanitize_file_name, unique_combine};

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
        let enc = download(&pool, &desc, &opts.tmp_dir, progress).await?;
        let mut yaml = Vec::new();
        let (_, digest) = decrypt_file(
            std::fs::File::open(enc.path()).map_err(|e| CliError::io("temporary file", e))?,
            desc.size,
            &SbKey(desc.key),
            &CbNonce(desc.nonce),
            &mut yaml,
        )
        .map_err(CliError::Decrypt)?;
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
    let enc = download(&pool, &desc, &opts.tmp_dir, progress).await?;
    let size = std::fs::metadata(enc.path())
        .map_err(|e| CliError::io("temporary file", e))?
        .len();
    if size != desc.size {
        return Err(CliError::FileSize {
            expected: desc.size,
            found: size,
        });
    }

    progress.item("Decrypting file...");
    let out_dir = target.dir();
    let tmp_out = tempfile::Builder::new()
        .prefix(".xftp-recv")
        .suffix(".part")
        .tempfile_in(&out_dir)
        .map_err(|e| CliError::io(format!("creating a file in {}", out_dir.display()), e))?;
    let bar = progress.bar("decrypting", desc.size, None);
    let src = std::fs::File::open(enc.path()).map_err(|e| CliError::io("temporary file", e))?;
    let dst = tmp_out
        .as_file()
        .try_clone()
        .map_err(|e| CliError::io("temporary file", e))?;
    let (header, digest) = decrypt_file(
        std::io::BufReader::with_capacity(1 << 20, CountingReader::new(src, |n| bar.inc(n))),
        desc.size,
        &SbKey(desc.key),
        &CbNonce(desc.nonce),
        std::io::BufWriter::with_capacity(1 << 20, dst),
    )
    .map_err(|e| match e {
        StreamError::Io(io) => CliError::io("decrypting", io),
        other => CliError::Decrypt(other),
    })?;
    bar.finish();
    drop(enc);
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

/// Downloads every chunk (first replica, as the reference) into one
/// temporary file at the chunk's offset, several at a time per server.
async fn download(
    pool: &Arc<Pool>,
    desc: &FileDescription,
    tmp_dir: &Path,
    progress: &Progress,
) -> Result<tempfile::NamedTempFile, CliError> {
    let tmp = tempfile::Builder::new()
        .prefix("xftp.encrypted")
        .tempfile_in(tmp_dir)
        .map_err(|e| CliError::io(format!("creating a file in {}", tmp_dir.display()), e))?;
    tmp.as_file()
        .set_len(desc.size)
        .map_err(|e| CliError::io("allocating the temporary file", e))?;
    let bar = progress.bar("downloading", desc.size, Some("Downloaded"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut tasks = JoinSet::new();
    let mut offset = 0u64;
    for chunk in &desc.chunks {
        let chunk = chunk.clone();
        let at = offset;
        offset += u64::from(chunk.chunk_size);
        let path = tmp.path().to_path_buf();
        let pool = pool.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            download_one(&pool, &chunk, &path, at).await?;
            let _ = tx.send(u64::from(chunk.chunk_size));
            Ok::<_, CliError>(())
        });
    }
    drop(tx);
    let result: Result<(), CliError> = async {
        loop {
            tokio::select! {
                Some(n) = rx.recv() => bar.chunk_done(n),
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                },
            }
        }
        while let Ok(n) = rx.try_recv() {
            bar.chunk_done(n);
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    result?;
    bar.finish();
    Ok(tmp)
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
