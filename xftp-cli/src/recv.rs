//! `xftp recv`: download the chunks concurrently into memory, decrypt them
//! in order as they arrive into a hidden file next to the destination, and
//! rename that into place only after the tag, the file digest and the size
//! checked out. An interrupted receive keeps what it decrypted, with
//! checkpoints (crate::resume), and a rerun goes on from there; a corrupt
//! file, or one given up with `--no-resume`, leaves nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::BTreeMap;

use smp_core::address::ServerAddress;
use smp_core::crypto::keys::PrivateKey;
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::chunks::CHUNK_4M;
use smp_core::file::crypto::Checkpoint;
use smp_core::file::description::{
    DescriptionError, FileChunk, FileChunkReplica, FileDescription, FileParty, ValidFileDescription,
};
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{Resumed, StreamError, decrypt_chunks, replay_file};
use smp_core::file::weblink::{WebLinkError, decode_web_link};
use tokio::task::JoinSet;

use crate::error::{CliError, Op, exit};
use crate::pool::{Pool, TransferOptions};
use crate::progress::Progress;
use crate::resume::{
    RecvResume, RecvState, open_own, recv_identity, recv_paths, remove_if_present, vanished,
};
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
    /// Go on from what an interrupted receive of the same file into the
    /// same directory kept, and keep what this one gets if it fails
    /// (`--no-resume` clears this).
    pub resume: bool,
}

#[derive(Debug)]
pub struct RecvOutcome {
    pub path: PathBuf,
    /// Plaintext size.
    pub size: u64,
    /// Chunks whose acknowledgement (FACK) failed; the file is complete.
    pub ack_failures: Vec<CliError>,
    /// Servers that failed a download, each with its first error; their
    /// chunks came from other replicas.
    pub failed_servers: Vec<(ServerAddress, String)>,
}

/// Servers that failed this receive: consulted before each download so a
/// dead server costs its retries once, and reported at the end.
#[derive(Default)]
struct Failures(std::sync::Mutex<BTreeMap<ServerAddress, String>>);

impl Failures {
    fn record(&self, server: &ServerAddress, e: &CliError) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(server.clone()).or_insert_with(|| e.to_string());
    }
    fn forget(&self, server: &ServerAddress) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(server);
    }
    fn has(&self, server: &ServerAddress) -> bool {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.contains_key(server)
    }
    fn into_list(self) -> Vec<(ServerAddress, String)> {
        let m = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        m.into_iter().collect()
    }
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
    let failures = Arc::new(Failures::default());
    progress.item("Downloading file...");
    let mut ack_failures = Vec::new();
    let desc = if let Some(redirect) = desc.redirect.clone() {
        // The redirect file holds the real description's YAML.
        if desc.size > u64::from(CHUNK_4M) {
            return Err(CliError::RedirectMismatch);
        }
        let (_, digest, yaml) = fetch(
            &pool,
            &failures,
            &desc,
            progress,
            None,
            Vec::new(),
            |_, _| Ok(()),
        )
        .await?;
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
        ack_failures.extend(ack_all(&pool, &failures, &desc).await);
        inner
    } else {
        desc
    };
    let out_dir = target.dir();
    let (fixed_part, state_path) = recv_paths(&out_dir, &desc);
    if !opts.resume {
        // What an earlier receive kept goes, once no receive is using it.
        match RecvState::resume(&state_path, &recv_identity(&desc))? {
            RecvResume::Found(st, _) | RecvResume::Unusable(st, _) => {
                remove_if_present(&fixed_part)?;
                st.remove()?;
            }
            RecvResume::None => {}
        }
    }
    let (state, from) = prepare(opts.resume, &desc, &fixed_part, &state_path, progress).await?;
    // Resuming: the fixed name, guarded by the state's lock. Otherwise a
    // file of this run's own, removed with it whatever happens.
    let (part, part_path, _guard) = if state.is_some() {
        let part = open_own(&fixed_part, true)?.ok_or_else(|| vanished(&fixed_part))?;
        (part, fixed_part, None)
    } else {
        let tmp = tempfile::Builder::new()
            .prefix(".xftp-recv")
            .suffix(".part")
            .tempfile_in(&out_dir)
            .map_err(|e| CliError::io(format!("creating a file in {}", out_dir.display()), e))?;
        let (file, guard) = tmp.into_parts();
        (file, guard.to_path_buf(), Some(guard))
    };
    let kept = from.as_ref().map_or(0, |(_, cp)| cp.content);
    let io = |e| CliError::io(format!("writing {}", part_path.display()), e);
    part.set_len(kept).map_err(io)?;
    let mut dst = part.try_clone().map_err(io)?;
    std::io::Seek::seek(&mut dst, std::io::SeekFrom::Start(kept)).map_err(io)?;
    let on_chunk = {
        let state = state.clone();
        let durable = part.try_clone().map_err(io)?;
        move |i: usize, cp: Checkpoint| -> std::io::Result<()> {
            if let Some(state) = &state {
                // The content first: a checkpoint must never cover bytes
                // a power cut could still take away.
                durable.sync_data()?;
                lock(state).record(i, &cp)?;
            }
            Ok(())
        }
    };
    let from = from.map(|(r, _)| r);
    let saved = async {
        let (header, digest, _) =
            fetch(&pool, &failures, &desc, progress, from, dst, on_chunk).await?;
        if digest[..] != desc.digest[..] {
            return Err(CliError::FileDigest);
        }
        let size = part.metadata().map_err(io)?.len();
        part.sync_all()
            .map_err(|e| CliError::io("writing the output file", e))?;
        Ok((persist(&part_path, &target, &header.file_name)?, size))
    }
    .await;
    let (path, plain_size) = match saved {
        Ok(done) => done,
        Err(e) => {
            // A complete file that has nowhere to go is not kept either:
            // a rerun would fail the same way.
            let keep = !matches!(e, CliError::OutputExists(_))
                && state.as_ref().is_some_and(|s| lock(s).has_records())
                && e.exit_code() != exit::CORRUPT;
            if keep {
                eprintln!(
                    "Kept what was received so far in {}: run the same command again to go on",
                    part_path.display()
                );
            } else {
                let _ = std::fs::remove_file(&part_path);
                if let Some(state) = &state {
                    let _ = lock(state).remove();
                }
            }
            return Err(e);
        }
    };
    if let Some(state) = &state
        && let Err(e) = lock(state).remove()
    {
        eprintln!("Warning: the file was received, but {e}");
    }
    ack_failures.extend(ack_all(&pool, &failures, &desc).await);
    let failures = Arc::try_unwrap(failures).unwrap_or_default();
    Ok(RecvOutcome {
        path,
        size: plain_size,
        ack_failures,
        failed_servers: failures.into_list(),
    })
}

type SharedState = Arc<std::sync::Mutex<RecvState>>;

fn lock(s: &SharedState) -> std::sync::MutexGuard<'_, RecvState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state of this receive (none with `--no-resume`) and, when an
/// earlier one left a usable checkpoint, the decryption rebuilt from the
/// content it kept. Anything unusable is said and started again: nothing
/// is on a server to clean up, only time is lost.
async fn prepare(
    resume: bool,
    desc: &FileDescription,
    part_path: &Path,
    state_path: &Path,
    progress: &Progress,
) -> Result<(Option<SharedState>, Option<(Resumed, Checkpoint)>), CliError> {
    if !resume {
        return Ok((None, None));
    }
    let ident = recv_identity(desc);
    let (mut state, checkpoint) = match RecvState::resume(state_path, &ident)? {
        RecvResume::Found(state, cp) => (state, cp),
        RecvResume::None => (RecvState::begin(state_path, &ident)?, None),
        RecvResume::Unusable(mut state, why) => {
            progress.item(&format!("Starting the download again: {why}"));
            state.reset(&ident)?;
            (state, None)
        }
    };
    let mut from = None;
    if let Some(cp) = checkpoint {
        match replay(desc, part_path, &cp).await {
            Ok(r) => {
                progress.item(&format!(
                    "Resuming: {} of {} chunks already received",
                    r.chunks_done(),
                    desc.chunks.len()
                ));
                from = Some((r, cp));
            }
            Err(why) => {
                progress.item(&format!(
                    "Starting the download again: the part received earlier {why}"
                ));
                state.reset(&ident)?;
            }
        }
    }
    Ok((Some(Arc::new(std::sync::Mutex::new(state))), from))
}

/// Replays the kept content up to `cp` (see smp_core::file::stream::replay_file).
async fn replay(
    desc: &FileDescription,
    part_path: &Path,
    cp: &Checkpoint,
) -> Result<Resumed, String> {
    let file = std::fs::File::open(part_path).map_err(|_| "is gone".to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < cp.content {
        return Err("is shorter than its state says".into());
    }
    let (key, nonce) = (SbKey(desc.key), CbNonce(desc.nonce));
    let sizes: Vec<u32> = desc.chunks.iter().map(|c| c.chunk_size).collect();
    let digests: Vec<[u8; 32]> = desc
        .chunks
        .iter()
        .map(|c| c.digest.as_slice().try_into().unwrap_or([0; 32]))
        .collect();
    let cp = cp.clone();
    let reader = std::io::Read::take(file, cp.content);
    tokio::task::spawn_blocking(move || replay_file(reader, &cp, &key, &nonce, &sizes, &digests))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(|e| match e {
            StreamError::ReplayMismatch { chunk } => {
                format!("does not match chunk {} of the file", chunk + 1)
            }
            other => other.to_string(),
        })
}

fn load_inner(yaml: &str) -> Result<FileDescription, CliError> {
    match ValidFileDescription::from_yaml(yaml, FileParty::Recipient) {
        Ok(d) => Ok(d.into_inner()),
        Err(e) => Err(CliError::Description(e)),
    }
}

/// Renames the verified content file to its final name without replacing
/// anything that appeared meanwhile.
fn persist(part: &Path, target: &Target, header_name: &str) -> Result<PathBuf, CliError> {
    loop {
        let path = match target {
            Target::Dir(d) => unique_combine(d, &sanitize_file_name(header_name)),
            Target::Path(p) => p.clone(),
        };
        match tempfile::TempPath::try_from_path(part)
            .map_err(|e| CliError::io(format!("saving {}", path.display()), e))?
            .persist_noclobber(&path)
        {
            Ok(()) => return Ok(path),
            Err(e) => {
                // Still ours to keep: a rerun finds it.
                let _ = e.path.keep();
                if e.error.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(CliError::io(format!("saving {}", path.display()), e.error));
                }
                if let Target::Path(p) = target {
                    return Err(CliError::OutputExists(p.clone()));
                }
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

/// Downloads every chunk (from its first replica that answers) into memory,
/// several at a time, and decrypts the file into `dst` in chunk order as
/// the chunks arrive: no temporary file, and at most [`CHUNK_BUFFERS`]
/// chunks in memory. Returns the header, the SHA-512 of the encrypted file
/// (the caller compares it with the description) and `dst`, which holds
/// unauthenticated bytes if this fails.
async fn fetch<W, F>(
    pool: &Arc<Pool>,
    failures: &Arc<Failures>,
    desc: &FileDescription,
    progress: &Progress,
    from: Option<Resumed>,
    dst: W,
    on_chunk: F,
) -> Result<(FileHeader, [u8; 64], W), CliError>
where
    W: Write + Send + 'static,
    F: FnMut(usize, Checkpoint) -> std::io::Result<()> + Send + 'static,
{
    let ctx = Arc::new(Fetch {
        pool: pool.clone(),
        failures: failures.clone(),
        desc: Arc::new(desc.clone()),
        rebuild: Rebuild::new(desc),
    });
    let sum: u64 = desc.chunks.iter().map(|c| u64::from(c.chunk_size)).sum();
    if sum != desc.size {
        return Err(CliError::FileSize {
            expected: desc.size,
            found: sum,
        });
    }
    let (key, nonce) = (SbKey(desc.key), CbNonce(desc.nonce));
    let from = match from {
        Some(r) => r,
        None => Resumed::start(&key, &nonce, desc.size).map_err(CliError::Decrypt)?,
    };
    let skip = from.chunks_done();
    let n = desc.chunks.len();
    let already: u64 = desc.chunks[..skip.min(n)]
        .iter()
        .map(|c| u64::from(c.chunk_size))
        .sum();
    let read = Arc::new(AtomicU64::new(already));
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNK_BUFFERS);
    let (free, mut buffers) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNK_BUFFERS);
    for _ in 0..(n - skip.min(n)).min(CHUNK_BUFFERS) {
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
        let sizes: Vec<u32> = desc.chunks.iter().map(|c| c.chunk_size).collect();
        tokio::task::spawn_blocking(move || {
            let mut dst = dst;
            let r = decrypt_chunks(from, reader, &sizes, &mut dst, on_chunk);
            r.map(|(h, d)| (h, d, dst))
        })
    };
    let down_bar = progress.bar("downloading", desc.size, Some("Downloaded"));
    if already > 0 {
        down_bar.chunk_done(already);
    }
    let dec_bar = progress.bar("decrypting", desc.size, None);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    // Buffers are taken in chunk order, so the chunk the decryption waits
    // for always has one: no deadlock.
    let mut tasks = JoinSet::new();
    let mut waiting = std::collections::BTreeMap::new();
    let (mut started, mut delivered) = (skip, skip);
    // `Ok(Some(..))`: the decryption ended before every chunk was handed to
    // it (a corrupt file); then its result is the answer, and the downloads
    // still in flight are dropped with the task set.
    let result: Result<Option<_>, CliError> = async {
        while delivered < n {
            tokio::select! {
                ended = &mut decryption => return Ok(Some(ended)),
                Some(buf) = buffers.recv(), if started < n => {
                    let (i, ctx) = (started, ctx.clone());
                    started += 1;
                    tasks.spawn(async move {
                        let data = obtain(&ctx, i, buf).await?;
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

/// How hard a download tries a chunk's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effort {
    /// One attempt each, passing over servers that did not answer one
    /// earlier: for a chunk that can be had another way (another replica,
    /// its parity group), so a dead server costs no retry delays.
    Quick,
    /// Every retry (`-r`) on each replica, passing over only servers that
    /// exhausted theirs earlier in this receive.
    Thorough,
}

/// One chunk into `buf` from the first of its replicas that delivers it
/// (digest checked by the client). Any server error moves on to the next
/// replica: an unreachable server, a copy it lost (AUTH) or one that fails
/// its digest. On failure the buffer comes back.
async fn download_any(
    pool: &Pool,
    failures: &Failures,
    chunk: &FileChunk,
    mut buf: Vec<u8>,
    effort: Effort,
) -> Result<Vec<u8>, (CliError, Vec<u8>)> {
    let mut order: Vec<&FileChunkReplica> = chunk.replicas.iter().collect();
    order.sort_by_key(|r| failures.has(&r.server));
    let mut details = Vec::new();
    let mut code = exit::UNREACHABLE;
    for replica in order {
        let conn = pool.get(&replica.server);
        if conn.is_unreachable() || (effort == Effort::Quick && conn.is_suspect()) {
            details.push(format!(
                "  {}: unreachable (earlier in this transfer)",
                replica.server
            ));
            continue;
        }
        match download_one(pool, chunk, replica, buf, effort).await {
            Ok(data) => {
                // A server that missed a quick try but answers now is not
                // passed over any more, nor reported as failed.
                if conn.clear_suspect() {
                    failures.forget(&replica.server);
                }
                return Ok(data);
            }
            Err((e, back)) => {
                buf = back;
                if !matches!(e, CliError::Server { .. }) || e.exit_code() == exit::NO_SPACE {
                    return Err((e, buf));
                }
                tracing::warn!("{e}; trying another replica of chunk {}", chunk.chunk_no);
                failures.record(&replica.server, &e);
                code = e.exit_code();
                details.push(format!("  {}: {e}", replica.server));
            }
        }
    }
    let e = CliError::ChunkUnavailable {
        chunk_no: chunk.chunk_no,
        tried: chunk.replicas.len(),
        details: details.join("\n"),
        code,
    };
    Err((e, buf))
}

/// A data chunk: from the group's rebuild if there was one, else from its
/// replicas, else rebuilt from its parity group. While there is another
/// way to the chunk, its replicas get one attempt each; the retries are
/// spent only when nothing else is left.
async fn obtain(ctx: &Fetch, i: usize, buf: Vec<u8>) -> Result<Vec<u8>, CliError> {
    let chunk = &ctx.desc.chunks[i];
    if let Some(r) = &ctx.rebuild
        && let Some(data) = r.cached(i).await
    {
        r.give_back(buf);
        return Ok(data);
    }
    let alternatives = ctx.rebuild.is_some() || chunk.replicas.len() > 1;
    let effort = if alternatives {
        Effort::Quick
    } else {
        Effort::Thorough
    };
    let buf = match download_any(&ctx.pool, &ctx.failures, chunk, buf, effort).await {
        Ok(data) => {
            if let Some(r) = &ctx.rebuild {
                r.forget(i).await;
            }
            return Ok(data);
        }
        Err((CliError::ChunkUnavailable { .. }, buf)) if alternatives => buf,
        Err((e, _)) => return Err(e),
    };
    match &ctx.rebuild {
        Some(r) => {
            r.give_back(buf);
            r.rebuilt(ctx, i).await
        }
        None => download_any(&ctx.pool, &ctx.failures, chunk, buf, Effort::Thorough)
            .await
            .map_err(|(e, _)| e),
    }
}

/// What [`fetch`]'s downloads share.
struct Fetch {
    pool: Arc<Pool>,
    failures: Arc<Failures>,
    desc: Arc<FileDescription>,
    rebuild: Option<Rebuild>,
}

/// Rebuilds of parity groups: the first lost data chunk of a group
/// downloads the group's other chunks, rebuilds every data chunk of it and
/// keeps them until each is taken (or downloaded anyway), so the group is
/// fetched once. A rebuilding group holds up to K+M chunks in memory.
struct Rebuild {
    parity: smp_core::file::description::Parity,
    groups: Vec<tokio::sync::Mutex<GroupState>>,
    /// Buffers that go round between the rebuilds and the downloads that
    /// took a rebuilt chunk instead (fresh ones per group would leave the
    /// allocator's heap growing with the file).
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

#[derive(Default)]
struct GroupState {
    tried: bool,
    chunks: BTreeMap<usize, Vec<u8>>,
    /// Data chunks that arrived from their replicas: not kept when rebuilt.
    arrived: std::collections::BTreeSet<usize>,
    /// Why the group could not be rebuilt: the missing chunks, the number
    /// of chunks it had, and an exit code.
    failed: Option<(String, usize, i32)>,
}

impl Rebuild {
    fn new(desc: &FileDescription) -> Option<Self> {
        let parity = desc.parity.clone()?;
        let n = smp_core::file::description::Parity::groups(parity.data, desc.chunks.len());
        let groups = (0..n).map(|_| Default::default()).collect();
        Some(Self {
            parity,
            groups,
            spare: Default::default(),
        })
    }

    fn take_buffer(&self) -> Vec<u8> {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        spare.pop().unwrap_or_default()
    }

    /// A buffer for a later rebuild; at most a group's worth is kept.
    fn give_back(&self, buf: Vec<u8>) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if buf.capacity() > 0
            && spare.len() < usize::from(self.parity.data) + usize::from(self.parity.parity)
        {
            spare.push(buf);
        }
    }

    /// Chunk `i` if its group was rebuilt (waiting for a rebuild under way).
    async fn cached(&self, i: usize) -> Option<Vec<u8>> {
        let mut g = self.groups[self.parity.group_of(i)].lock().await;
        g.chunks.remove(&i)
    }

    /// Chunk `i` arrived from its replicas: a rebuilt copy is not needed.
    async fn forget(&self, i: usize) {
        let mut g = self.groups[self.parity.group_of(i)].lock().await;
        g.chunks.remove(&i);
        g.arrived.insert(i);
    }

    async fn rebuilt(&self, ctx: &Fetch, i: usize) -> Result<Vec<u8>, CliError> {
        let gi = self.parity.group_of(i);
        let mut g = self.groups[gi].lock().await;
        if !g.tried {
            g.tried = true;
            match self.rebuild_group(ctx, gi, i).await {
                Ok(mut chunks) => {
                    chunks.retain(|j, _| !g.arrived.contains(j));
                    g.chunks = chunks;
                }
                Err(why) => g.failed = Some(why),
            }
        }
        if let Some(data) = g.chunks.remove(&i) {
            return Ok(data);
        }
        let (missing, have, code) = g.failed.clone().unwrap_or_default();
        Err(CliError::Unrecoverable {
            chunk_no: ctx.desc.chunks[i].chunk_no,
            have,
            need: self.parity.group_data(gi, ctx.desc.chunks.len()).len(),
            missing,
            code,
        })
    }

    /// Downloads every chunk of group `gi` but `lost`, concurrently and
    /// with one attempt each, then the missing ones with every retry if
    /// fewer than K arrived, and rebuilds its data chunks from whichever K
    /// arrived; each rebuilt chunk must match its digest in the
    /// description.
    async fn rebuild_group(
        &self,
        ctx: &Fetch,
        gi: usize,
        lost: usize,
    ) -> Result<BTreeMap<usize, Vec<u8>>, (String, usize, i32)> {
        let desc = &ctx.desc;
        let data = self.parity.group_data(gi, desc.chunks.len());
        let k = data.len();
        let members: Vec<(&FileChunk, bool)> = desc.chunks[data.clone()]
            .iter()
            .map(|c| (c, true))
            .chain(
                self.parity.chunks[self.parity.group_parity(gi)]
                    .iter()
                    .map(|c| (c, false)),
            )
            .collect();
        let shard = members.iter().map(|(c, _)| c.chunk_size).max().unwrap_or(0) as usize;
        let fetch = |effort: Effort, wanted: Vec<usize>| {
            let members = &members;
            futures_util::future::join_all(wanted.into_iter().map(move |j| async move {
                let buf = self.take_buffer();
                let got = download_any(&ctx.pool, &ctx.failures, members[j].0, buf, effort)
                    .await
                    .map_err(|(e, buf)| {
                        self.give_back(buf);
                        e.exit_code()
                    });
                (j, got)
            }))
        };
        let mut results: Vec<Result<Vec<u8>, i32>> = vec![Err(exit::UNREACHABLE); members.len()];
        let first: Vec<usize> = (0..members.len())
            .filter(|j| data.start + j != lost)
            .collect();
        for (j, got) in fetch(Effort::Quick, first).await {
            results[j] = got;
        }
        if results.iter().filter(|r| r.is_ok()).count() < k {
            let missing = (0..members.len())
                .filter(|j| results[*j].is_err())
                .collect();
            for (j, got) in fetch(Effort::Thorough, missing).await {
                results[j] = got;
            }
        }
        let mut shards: Vec<(Vec<u8>, bool)> = Vec::with_capacity(members.len());
        let (mut missing, mut code) = (Vec::new(), exit::UNREACHABLE);
        for ((c, is_data), r) in members.iter().zip(results) {
            match r {
                Ok(mut v) => {
                    v.resize(shard, 0);
                    shards.push((v, true));
                }
                Err(c_code) => {
                    code = c_code;
                    let servers: Vec<String> =
                        c.replicas.iter().map(|r| r.server.to_string()).collect();
                    let kind = if *is_data { "data" } else { "parity" };
                    missing.push(format!(
                        "  {kind} chunk {} on {}",
                        c.chunk_no,
                        servers.join(", ")
                    ));
                    shards.push((self.take_buffer(), false));
                }
            }
        }
        let have = shards.iter().filter(|s| s.1).count();
        if have < k {
            shards.into_iter().for_each(|(b, _)| self.give_back(b));
            return Err((missing.join("\n"), have, code));
        }
        // Rebuilt chunks are cut to their sizes and checked against their
        // digests (downloaded ones were checked as they arrived).
        let expected: Vec<Option<(usize, Vec<u8>)>> = shards[..k]
            .iter()
            .zip(&desc.chunks[data.clone()])
            .map(|(s, c)| (!s.1).then(|| (c.chunk_size as usize, c.digest.clone())))
            .collect();
        let m = usize::from(self.parity.parity);
        let (mut shards, wrong) = tokio::task::spawn_blocking(move || {
            smp_core::file::parity::rebuild_group(k, m, &mut shards)?;
            let wrong = shards.iter_mut().zip(&expected).position(|((v, _), e)| {
                e.as_ref().is_some_and(|(size, digest)| {
                    v.truncate(*size);
                    smp_core::crypto::digest::sha256(v)[..] != digest[..]
                })
            });
            Ok((shards, wrong))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(|e: smp_core::file::parity::ParityError| (e.to_string(), have, exit::FAILURE))?;
        if let Some(j) = wrong {
            return Err((
                format!(
                    "  data chunk {}: rebuilt bytes do not match its digest",
                    desc.chunks[data.start + j].chunk_no
                ),
                have,
                exit::CORRUPT,
            ));
        }
        shards.drain(k..).for_each(|(b, _)| self.give_back(b));
        let mut out = BTreeMap::new();
        for (j, (mut v, _)) in shards.into_iter().enumerate() {
            v.truncate(desc.chunks[data.start + j].chunk_size as usize);
            out.insert(data.start + j, v);
        }
        tracing::info!("rebuilt chunk group {} from its parity", gi + 1);
        Ok(out)
    }
}

/// One chunk from one replica; on failure the buffer comes back for the next.
async fn download_one(
    pool: &Pool,
    chunk: &FileChunk,
    replica: &FileChunkReplica,
    buf: Vec<u8>,
    effort: Effort,
) -> Result<Vec<u8>, (CliError, Vec<u8>)> {
    let buf = tokio::sync::Mutex::new(buf);
    let give_back = |e, buf: tokio::sync::Mutex<Vec<u8>>| (e, buf.into_inner());
    let conn = pool.get(&replica.server);
    let _slot = conn.slots.acquire().await.expect("semaphore never closed");
    let key = match PrivateKey::from_der(replica.replica_key.as_der()) {
        Ok(k) => k,
        Err(_) => {
            return Err(give_back(
                CliError::Description(DescriptionError::ReplicaKey),
                buf,
            ));
        }
    };
    let (key, buf_ref) = (&key, &buf);
    // A quick try is one attempt on a fresh connection, but a pooled one
    // the server may have dropped meanwhile gets a second (a reconnect),
    // so a stale connection does not pass for a dead server.
    let attempts = match effort {
        Effort::Quick if conn.client.is_connected().await => 2.min(pool.options().retries),
        Effort::Quick => 1,
        Effort::Thorough => pool.options().retries,
    };
    let r = conn
        .client
        .retry(attempts, |c| async move {
            let mut buf = buf_ref.lock().await;
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
        .await;
    if let Err(e) = r {
        let e = CliError::server(Op::Download, &replica.server, e);
        if e.exit_code() == exit::UNREACHABLE {
            match effort {
                Effort::Quick => conn.mark_suspect(),
                Effort::Thorough => conn.mark_unreachable(),
            }
        }
        return Err(give_back(e, buf));
    }
    tracing::debug!(
        "chunk {} downloaded from {}",
        chunk.chunk_no,
        replica.server
    );
    Ok(buf.into_inner())
}

/// FACK for every replica of every chunk (parity ones too), except on servers that already
/// failed this receive (their copies expire on the server); returns the
/// failures.
async fn ack_all(pool: &Arc<Pool>, failures: &Failures, desc: &FileDescription) -> Vec<CliError> {
    let mut tasks = JoinSet::new();
    let parity = desc.parity.iter().flat_map(|p| &p.chunks);
    for chunk in desc.chunks.iter().chain(parity) {
        for replica in chunk.replicas.iter().filter(|r| !failures.has(&r.server)) {
            let replica = replica.clone();
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
