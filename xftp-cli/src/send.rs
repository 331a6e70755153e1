//! `xftp send`: encrypt a file in one streaming pass while its finished
//! chunks are already uploaded from memory, concurrently over the servers;
//! then write the descriptions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use smp_core::address::{ServerAddress, ServerWithAuth};
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::chunks::CHUNK_4M;
use smp_core::file::chunks::MAX_FILE_SIZE;
use smp_core::file::chunks::{ChunkSpec, prepare_chunk_specs};
use smp_core::file::crypto::FilePlan;
use smp_core::file::description::{
    Parity, ReplicaKey, UploadedChunk, UploadedFile, UploadedParity, split_descriptions_with_parity,
};
use smp_core::file::header::FileHeader;
use smp_core::file::parity::GroupEncoder;
use smp_core::file::stream::{EncryptedFile, StreamError, encrypt_file_by_chunk};
use smp_core::file::weblink::web_link;
use smp_core::xftp::command::{BasicAuth, FileInfo};
use tokio::task::JoinSet;

use crate::error::{CliError, Op, exit};
use crate::pool::{Pool, ServerConn, TransferOptions};
use crate::progress::Progress;
use crate::resume::{ChunkRef, SendState, identity, remove_if_present, state_path};
use crate::servers::{plan_chunks, plan_parity_chunks};
use crate::{CHUNK_BUFFERS, CountingReader, unique_combine};

pub struct SendOptions {
    pub file: PathBuf,
    /// Where `<name>.xftp/` is created (the reference's `DIR`, default `.`).
    pub out_dir: PathBuf,
    /// Number of recipient descriptions (`-n`).
    pub recipients: usize,
    pub servers: Vec<ServerWithAuth>,
    /// `--replicas`: copies of each chunk, each on a different server
    /// (1, the reference's behaviour, unless asked).
    pub replicas: usize,
    /// `--parity K:M`: M Reed–Solomon parity chunks per K data chunks.
    pub parity: Option<(u16, u16)>,
    /// Continue an interrupted send of the same file with the same
    /// arguments from its state file (`--no-resume` clears this).
    pub resume: bool,
    /// `--tmp`: `send` itself writes no temporary file (chunks go from
    /// memory to the servers); the messaging commands put their temporary
    /// descriptions here.
    pub tmp_dir: PathBuf,
    pub transfer: TransferOptions,
}

#[derive(Debug)]
pub struct SendOutcome {
    /// `<DIR>/<name>.xftp`
    pub dir: PathBuf,
    pub sender_description: PathBuf,
    pub recipient_descriptions: Vec<PathBuf>,
    pub web_link: String,
    /// The servers of each chunk (one per replica), in chunk order.
    pub chunk_servers: Vec<Vec<ServerAddress>>,
}

/// Sends `opts.file`; see the module docs.
pub async fn send_file(opts: &SendOptions, progress: &Progress) -> Result<SendOutcome, CliError> {
    if opts.servers.is_empty() {
        return Err(CliError::NoServers);
    }
    let recipients = opts.recipients.max(1);
    let replicas = opts.replicas.max(1);
    if replicas > opts.servers.len() {
        return Err(CliError::TooFewServers {
            copies: replicas,
            servers: opts.servers.len(),
        });
    }
    if let Some((k, m)) = opts.parity {
        Parity::check_scheme(k, m).map_err(CliError::Description)?;
    }
    let meta = std::fs::metadata(&opts.file)
        .map_err(|e| CliError::io(format!("reading {}", opts.file.display()), e))?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(CliError::FileTooLarge {
            path: opts.file.clone(),
            size: meta.len(),
        });
    }
    let name = opts
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());

    // The state of an interrupted run of this same send, or a new one.
    let state_file = state_path(&opts.out_dir, &name);
    let servers_line: Vec<String> = opts.servers.iter().map(|s| s.server.to_string()).collect();
    let ident = identity(
        &opts.file,
        &[
            ("recipients", recipients.to_string()),
            ("replicas", replicas.to_string()),
            (
                "parity",
                opts.parity
                    .map_or_else(|| "none".into(), |(k, m)| format!("{k}:{m}")),
            ),
            ("servers", servers_line.join(";")),
        ],
    )?;
    if !opts.resume {
        remove_if_present(&state_file)?;
    }
    let pool = Arc::new(Pool::new(opts.transfer));
    let (state, key, nonce, prior) = match SendState::resume(&state_file, &ident)? {
        Some((state, resumed)) => {
            progress.item("Resuming an interrupted send...");
            delete_orphans(&pool, resumed.orphans).await;
            (state, resumed.key, resumed.nonce, resumed.uploaded)
        }
        None => {
            let (key, nonce) = (SbKey::generate(), CbNonce::generate());
            let state = SendState::begin(&state_file, &ident, &key, &nonce)?;
            (state, key, nonce, Default::default())
        }
    };
    let state = Arc::new(state);
    // Encryption and hashing run in one streaming pass on blocking threads;
    // each finished chunk is handed over in memory and uploaded at once,
    // while later chunks are still being encrypted. Chunks live in
    // `CHUNK_BUFFERS` buffers that go round (the encryption waits for a free
    // one), which bounds memory whatever the file size; a chunk stays in
    // its buffer until it is uploaded, for the retries.
    progress.item("Encrypting file...");
    let header = FileHeader::new(name.clone());
    let plan = FilePlan::new(&header, meta.len()).map_err(|e| CliError::Decrypt(e.into()))?;
    let specs = prepare_chunk_specs(&plan.chunk_sizes);
    let read = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let (collector, free) = Collector::new();
    let encryption = {
        let src = std::fs::File::open(&opts.file)
            .map_err(|e| CliError::io(format!("opening {}", opts.file.display()), e))?;
        let (key, nonce, read, len) = (key.clone(), nonce, read.clone(), meta.len());
        tokio::task::spawn_blocking(move || {
            encrypt_file_by_chunk(
                CountingReader::new(src, |n| {
                    read.fetch_add(n, Ordering::Relaxed);
                }),
                len,
                &header,
                &key,
                &nonce,
                collector.clone(),
                |i, digest| {
                    let data = Bytes::from(collector.take());
                    ready_tx.send(Ready { i, digest, data }).is_ok()
                },
            )
        })
    };
    progress.item("Uploading file...");
    let pipeline = Pipeline {
        state: state.clone(),
        prior: Arc::new(std::sync::Mutex::new(prior)),
        specs: &specs,
        read: &read,
        content_len: meta.len(),
        recipients,
        replicas,
        parity: opts.parity,
    };
    let (encrypted, uploaded, parity_uploaded) = pipeline
        .run(&pool, &opts.servers, encryption, ready_rx, free, progress)
        .await
        .map_err(|e| match e {
            Failure::Cli(e) => e,
            Failure::Encrypt(StreamError::Io(io)) => {
                CliError::io(format!("encrypting {}", opts.file.display()), io)
            }
            Failure::Encrypt(other) => CliError::Decrypt(other),
        })
        .inspect_err(|_| {
            // Nothing reached a server: nothing to resume, and a rerun
            // with mended arguments must not be refused.
            if !state.has_records() {
                let _ = state.finish();
            }
        })?;
    tracing::debug!(
        "encrypted {} bytes into {} chunks of {} bytes",
        meta.len(),
        encrypted.chunk_sizes.len(),
        encrypted.enc_size
    );
    progress.item("File uploaded!");

    // 3. Descriptions.
    let file = UploadedFile {
        size: encrypted.enc_size,
        digest: encrypted.digest.to_vec(),
        key: key.0,
        nonce: nonce.0,
        chunk_size: encrypted.chunk_sizes[0],
        redirect: None,
    };
    let mut chunk_servers: Vec<Vec<ServerAddress>> = vec![Vec::new(); encrypted.chunk_sizes.len()];
    for c in &uploaded {
        chunk_servers[c.chunk_no as usize - 1].push(c.server.clone());
    }
    let parity = opts.parity.map(|(data, parity)| UploadedParity {
        data,
        parity,
        chunks: &parity_uploaded,
    });
    let (rcv, snd) =
        split_descriptions_with_parity(&file, &uploaded, parity).map_err(CliError::Description)?;
    let link = web_link(&rcv[0]).map_err(CliError::WebLink)?;
    // The descriptions are written into a hidden folder that is renamed
    // into place once complete and durable, so a send killed meanwhile
    // leaves no half-written descriptions under the real name (the rerun,
    // which holds the same state lock, clears the hidden one first).
    let dir = unique_combine(&opts.out_dir, &format!("{name}.xftp"));
    let partial = opts.out_dir.join(format!(".{name}.xftp.partial"));
    let io = |what: &str, p: &Path, e| CliError::io(format!("{what} {}", p.display()), e);
    match std::fs::remove_dir_all(&partial) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("removing", &partial, e));
        }
        _ => {}
    }
    let written = (|| {
        std::fs::create_dir_all(&partial).map_err(|e| io("creating", &partial, e))?;
        for (i, d) in rcv.iter().enumerate() {
            let p = partial.join(format!("rcv{}.xftp", i + 1));
            write_private(&p, d.to_yaml().as_bytes())?;
        }
        write_private(&partial.join("snd.xftp.private"), snd.to_yaml().as_bytes())?;
        sync_dir(&partial).map_err(|e| io("syncing", &partial, e))?;
        std::fs::rename(&partial, &dir).map_err(|e| io("renaming", &partial, e))
    })();
    if let Err(e) = written {
        // Private keys are not left in a folder nobody will look in.
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    sync_dir(&opts.out_dir).map_err(|e| io("syncing", &opts.out_dir, e))?;
    let recipient_descriptions = (0..rcv.len())
        .map(|i| dir.join(format!("rcv{}.xftp", i + 1)))
        .collect();
    let sender_description = dir.join("snd.xftp.private");
    state.finish()?;
    Ok(SendOutcome {
        dir,
        sender_description,
        recipient_descriptions,
        web_link: link,
        chunk_servers,
    })
}

/// Makes a directory's entries durable (a no-op where directories cannot
/// be opened).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Descriptions hold private keys: owner-only on Unix.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let res = o.open(path).and_then(|mut f| {
        std::io::Write::write_all(&mut f, bytes)?;
        // Durable before the send's state goes.
        f.sync_all()
    });
    res.map_err(|e| CliError::io(format!("writing {}", path.display()), e))
}

/// Collects the chunk being written by the encryption in a buffer taken
/// from the free ones, waiting for one when all are uploading.
#[derive(Clone)]
struct Collector {
    current: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    free: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Vec<u8>>>>,
}

impl Collector {
    /// The collector, and where uploads give buffers back.
    fn new() -> (Self, std::sync::mpsc::SyncSender<Vec<u8>>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(CHUNK_BUFFERS);
        for _ in 0..CHUNK_BUFFERS {
            tx.send(Vec::new())
                .expect("the channel has room for every buffer");
        }
        let c = Self {
            current: Arc::default(),
            free: Arc::new(std::sync::Mutex::new(rx)),
        };
        (c, tx)
    }

    fn take(&self) -> Vec<u8> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.take().unwrap_or_default()
    }
}

impl std::io::Write for Collector {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.is_none() {
            let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let mut b = free
                .recv()
                .map_err(|_| std::io::Error::other("the uploads stopped"))?;
            b.clear();
            b.reserve_exact(CHUNK_4M as usize);
            *cur = Some(b);
        }
        cur.as_mut().expect("set above").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A chunk the encryption finished.
struct Ready {
    i: usize,
    digest: [u8; 32],
    data: Bytes,
}

struct Job {
    data: Bytes,
    spec: ChunkSpec,
    chunk_no: u32,
    digest: [u8; 32],
    recipients: usize,
}

enum Failure {
    Cli(CliError),
    Encrypt(StreamError),
}

/// Encryption on a blocking thread feeding uploads: each chunk reported
/// ready is uploaded at once, spread by [`plan_chunks`], several at a time
/// per server, its replicas concurrently to the servers after its first. A
/// copy whose server is unreachable after the retries moves to the next
/// reachable server the chunk is not on yet; the send fails when none is left.
struct Pipeline<'a> {
    state: Arc<SendState>,
    /// Copies an interrupted run finished, taken as their chunks come by.
    prior: Arc<std::sync::Mutex<std::collections::BTreeMap<ChunkRef, Vec<UploadedChunk>>>>,
    specs: &'a [ChunkSpec],
    /// Plaintext bytes the encryption has read (its progress).
    read: &'a AtomicU64,
    content_len: u64,
    recipients: usize,
    replicas: usize,
    parity: Option<(u16, u16)>,
}

/// A finished group's number and its encrypted parity chunks, each with
/// its SHA-256.
type GroupParity = (usize, Vec<(Vec<u8>, [u8; 32])>);

/// What one upload task finished.
enum Done {
    /// A data chunk's copies, and its group's parity chunks (with the
    /// permit they are uploaded under) when it was the group's last data
    /// chunk to be added.
    Data(
        Vec<UploadedChunk>,
        Option<(GroupParity, tokio::sync::OwnedSemaphorePermit)>,
    ),
    Parity(Vec<UploadedChunk>),
}

/// The parity of each group, made when the group's first data chunk
/// arrives (so only groups being encrypted hold their M chunks).
struct Groups {
    data: usize,
    parity: usize,
    /// Each group's longest data chunk: its parity chunks' size.
    shard: Vec<u32>,
    encoders: Vec<std::sync::Mutex<Option<GroupEncoder>>>,
    /// Uploaded parity chunks' buffers, for the next groups' parity (fresh
    /// ones per group would leave the allocator's heap growing with the
    /// file).
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Groups {
    fn new(specs: &[ChunkSpec], data: usize, parity: usize) -> Self {
        let shard: Vec<u32> = specs
            .chunks(data)
            .map(|g| g.iter().map(|c| c.size).max().unwrap_or(0))
            .collect();
        let encoders = shard.iter().map(|_| std::sync::Mutex::new(None)).collect();
        Self {
            data,
            parity,
            shard,
            encoders,
            spare: Default::default(),
        }
    }

    /// An uploaded parity chunk's buffer, for a later group.
    fn give_back(&self, chunk: Bytes) {
        if let Ok(buf) = chunk.try_into_mut() {
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            if spare.len() < 2 * self.parity {
                spare.push(buf.into());
            }
        }
    }

    /// Adds data chunk `i`; the group's parity chunks once it is complete.
    fn add(&self, i: usize, n: usize, chunk: &[u8]) -> Result<Option<GroupParity>, CliError> {
        let g = i / self.data;
        let in_group = self.data.min(n - g * self.data);
        let mut slot = self.encoders[g].lock().unwrap_or_else(|p| p.into_inner());
        let enc = match &mut *slot {
            Some(e) => e,
            None => {
                let buffers = {
                    let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
                    let keep = spare.len().saturating_sub(self.parity);
                    spare.split_off(keep)
                };
                slot.insert(
                    GroupEncoder::with_buffers(
                        in_group,
                        self.parity,
                        self.shard[g] as usize,
                        buffers,
                    )
                    .map_err(CliError::Parity)?,
                )
            }
        };
        enc.add(i - g * self.data, chunk)
            .map_err(CliError::Parity)?;
        if !enc.is_complete() {
            return Ok(None);
        }
        let done = slot.take().expect("set above");
        let parity = done.finish().map_err(CliError::Parity)?;
        let parity = parity
            .into_iter()
            .map(|c| {
                let digest = smp_core::crypto::digest::sha256(&c);
                (c, digest)
            })
            .collect();
        Ok(Some((g, parity)))
    }
}

impl Pipeline<'_> {
    /// The copies of a chunk an interrupted run finished; its digest must be
    /// the one they were uploaded with, or the file is not the same any more.
    fn earlier(&self, chunk: ChunkRef, digest: &[u8; 32]) -> Result<Vec<UploadedChunk>, CliError> {
        let mut prior = self.prior.lock().unwrap_or_else(|p| p.into_inner());
        let have = prior.remove(&chunk).unwrap_or_default();
        if have.iter().any(|c| c.digest[..] != digest[..]) {
            return Err(CliError::ResumeMismatch {
                path: self.state.path().to_path_buf(),
                what: "the file's content changed".into(),
            });
        }
        Ok(have)
    }
}

type Encryption = tokio::task::JoinHandle<Result<EncryptedFile, StreamError>>;

impl Pipeline<'_> {
    async fn run(
        &self,
        pool: &Arc<Pool>,
        servers: &[ServerWithAuth],
        mut encryption: Encryption,
        mut ready: tokio::sync::mpsc::UnboundedReceiver<Ready>,
        free: std::sync::mpsc::SyncSender<Vec<u8>>,
        progress: &Progress,
    ) -> Result<(EncryptedFile, Vec<UploadedChunk>, Vec<UploadedChunk>), Failure> {
        let n = self.specs.len();
        let (plan, parity_plan) = match self.parity {
            Some((k, m)) => plan_parity_chunks(n, k.into(), m.into(), servers.len()),
            None => (plan_chunks(n, servers.len()), Vec::new()),
        };
        let groups = self
            .parity
            .map(|(k, m)| Arc::new(Groups::new(self.specs, k.into(), m.into())));
        let parity_total: u64 = groups.as_ref().map_or(0, |g| {
            g.shard
                .iter()
                .map(|s| u64::from(*s) * g.parity as u64)
                .sum()
        });
        let conns: Arc<Vec<(Arc<ServerConn>, Option<BasicAuth>)>> = Arc::new(
            servers
                .iter()
                .map(|s| {
                    let auth = s
                        .auth
                        .as_ref()
                        .and_then(|a| BasicAuth::new(a.as_str().as_bytes()));
                    (pool.get(&s.server), auth)
                })
                .collect(),
        );
        let enc_size: u64 = self.specs.iter().map(|c| u64::from(c.size)).sum();
        let enc_bar = progress.bar("encrypting", self.content_len, None);
        let up_bar = progress.bar(
            "uploading",
            (enc_size + parity_total) * self.replicas as u64,
            Some("Uploaded"),
        );
        // One group's parity chunks are uploaded at a time: the task that
        // completes the next group keeps its buffer until they are done,
        // so the encryption waits rather than parity piling up in memory.
        let parity_slot = Arc::new(tokio::sync::Semaphore::new(1));
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        let mut tasks = JoinSet::new();
        let mut encrypted = None;
        let mut done = Vec::with_capacity(self.specs.len());
        let mut parity_done = Vec::new();
        let result = 'run: loop {
            tokio::select! {
                Some(Ready { i, digest, data }) = ready.recv() => {
                    let have = match self.earlier((false, i as u32 + 1), &digest) {
                        Ok(h) => h,
                        Err(e) => break Err(Failure::Cli(e)),
                    };
                    let job = Job {
                        data,
                        spec: self.specs[i],
                        chunk_no: i as u32 + 1,
                        digest,
                        recipients: self.recipients,
                    };
                    let (conns, first, retries) = (conns.clone(), plan[i], pool.options().retries);
                    let (free, copies, groups) = (free.clone(), self.replicas, groups.clone());
                    let (state, parity_slot) = (self.state.clone(), parity_slot.clone());
                    tasks.spawn(async move {
                        // The chunk goes into its group's parity on a
                        // blocking thread while it is being uploaded.
                        let parity = groups.map(|g| {
                            let data = job.data.clone();
                            tokio::task::spawn_blocking(move || g.add(i, n, &data))
                        });
                        let r = upload_replicas(&conns, first, &job, retries, copies, have, (&state, false)).await;
                        let finished = match parity {
                            Some(t) => t.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                            None => Ok(None),
                        };
                        let finished = match finished {
                            // A failed upload is reported now, not after the
                            // previous group's parity.
                            Ok(Some(p)) if r.is_ok() => {
                                let permit = parity_slot.acquire_owned().await.expect("never closed");
                                Ok(Some((p, permit)))
                            }
                            Ok(_) => Ok(None),
                            Err(e) => Err(e),
                        };
                        // The buffer goes back for the next chunk (a new one
                        // if something still shares it, which nothing should).
                        let buf = job.data.try_into_mut().map(Vec::from).unwrap_or_default();
                        let _ = free.try_send(buf);
                        Ok(Done::Data(r?, finished?))
                    });
                }
                joined = &mut encryption, if encrypted.is_none() => match joined {
                    Ok(Ok(e)) => encrypted = Some(e),
                    Ok(Err(e)) => break Err(Failure::Encrypt(e)),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                },
                Some(joined) = tasks.join_next() => match joined {
                    Ok(Ok(Done::Data(copies, finished))) => {
                        up_bar.chunk_done(copies.iter().map(|c| u64::from(c.chunk_size)).sum());
                        done.extend(copies);
                        if let Some(((g, parity), permit)) = finished {
                            let permit = Arc::new(permit);
                            let m = parity.len();
                            for (j, (chunk, digest)) in parity.into_iter().enumerate() {
                                let p = g * m + j;
                                let size = chunk.len() as u32;
                                let have = match self.earlier((true, p as u32 + 1), &digest) {
                                    Ok(h) => h,
                                    Err(e) => break 'run Err(Failure::Cli(e)),
                                };
                                let job = Job {
                                    digest,
                                    data: Bytes::from(chunk),
                                    spec: ChunkSpec { offset: 0, size },
                                    chunk_no: p as u32 + 1,
                                    recipients: self.recipients,
                                };
                                let (conns, first) = (conns.clone(), parity_plan[p]);
                                let (retries, copies) = (pool.options().retries, self.replicas);
                                let (state, permit) = (self.state.clone(), permit.clone());
                                let groups = groups.clone().expect("parity comes from groups");
                                tasks.spawn(async move {
                                    let r = upload_replicas(&conns, first, &job, retries, copies, have, (&state, true)).await;
                                    // The chunk's memory goes round before the permit is let go.
                                    groups.give_back(job.data);
                                    drop(permit);
                                    Ok(Done::Parity(r?))
                                });
                            }
                        }
                    }
                    Ok(Ok(Done::Parity(copies))) => {
                        up_bar.chunk_done(copies.iter().map(|c| u64::from(c.chunk_size)).sum());
                        parity_done.extend(copies);
                    }
                    Ok(Err(e)) => break Err(Failure::Cli(e)),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                },
                _ = tick.tick() => {
                    enc_bar.advance_to(self.read.load(Ordering::Relaxed));
                }
            }
            if encrypted.is_some() && tasks.is_empty() && ready.is_empty() {
                break Ok(());
            }
        };
        if let Err(e) = result {
            tasks.abort_all();
            // Closing the channels stops the encryption at its next chunk;
            // wait for it so no thread outlives the send.
            drop(ready);
            drop(free);
            if encrypted.is_none() {
                let _ = encryption.await;
            }
            while tasks.join_next().await.is_some() {}
            return Err(e);
        }
        enc_bar.advance_to(self.read.load(Ordering::Relaxed));
        enc_bar.finish();
        up_bar.finish();
        let encrypted = encrypted.expect("the loop ends only once encryption is done");
        debug_assert_eq!(done.len(), self.specs.len() * self.replicas);
        // Stable: a chunk's copies keep their replica order.
        done.sort_by_key(|c| c.chunk_no);
        parity_done.sort_by_key(|c| c.chunk_no);
        Ok((encrypted, done, parity_done))
    }
}

/// `copies` uploads of one chunk, concurrently, to distinct servers: the
/// chunk's planned one and those after it in the list. Each copy takes the
/// next server nobody has tried for this chunk, so an unreachable server
/// is replaced and never holds two copies.
async fn upload_replicas(
    conns: &[(Arc<ServerConn>, Option<BasicAuth>)],
    first: usize,
    job: &Job,
    retries: u32,
    copies: usize,
    have: Vec<UploadedChunk>,
    (state, parity): (&SendState, bool),
) -> Result<Vec<UploadedChunk>, CliError> {
    let tried = std::sync::Mutex::new(0usize);
    let next_server = || {
        let mut k = tried.lock().unwrap_or_else(|p| p.into_inner());
        while *k < conns.len() {
            let i = (first + *k) % conns.len();
            *k += 1;
            let holds = have.iter().any(|c| &c.server == conns[i].0.address());
            if !holds && !conns[i].0.is_unreachable() {
                return Some(i);
            }
        }
        None
    };
    let missing = copies.saturating_sub(have.len());
    let next_server = &next_server;
    let one = move |_| async move {
        let mut last = None;
        while let Some(i) = next_server() {
            let (conn, auth) = &conns[i];
            match upload_one(conn, auth.clone(), job, retries, (state, parity)).await {
                Ok(c) => return Ok(c),
                Err(e) if e.exit_code() == exit::UNREACHABLE => {
                    tracing::warn!("{e}; chunk {} moves to another server", job.chunk_no);
                    conn.mark_unreachable();
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(CliError::TooFewReachable {
            chunk_no: job.chunk_no,
            copies,
        }))
    };
    let new = futures_util::future::try_join_all((0..missing).map(one)).await?;
    let mut all = have.clone();
    all.extend(new);
    Ok(all)
}

/// Deletes the copies an interrupted run created but did not finish, so no
/// server keeps a chunk nobody describes (a server that cannot be reached
/// now lets it expire).
async fn delete_orphans(pool: &Arc<Pool>, orphans: Vec<crate::resume::Orphan>) {
    let mut tasks = JoinSet::new();
    for o in orphans {
        let pool = pool.clone();
        tasks.spawn(async move {
            let conn = pool.get(&o.server);
            let _slot = conn.slots.acquire().await.expect("semaphore never closed");
            let Ok(key) = PrivateKey::from_der(o.sender_key.as_der()) else {
                return;
            };
            let (key, id) = (&key, &o.sender_id);
            let r = conn
                .client
                .retry(pool.options().retries, |c| async move {
                    c.delete_file(id, key).await
                })
                .await;
            if let Err(e) = r {
                let e = CliError::server(Op::Delete, &o.server, e);
                tracing::warn!("{e}; an unfinished chunk copy stays until it expires");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn upload_one(
    conn: &ServerConn,
    auth: Option<BasicAuth>,
    job: &Job,
    retries: u32,
    (state, parity): (&SendState, bool),
) -> Result<UploadedChunk, CliError> {
    let _slot = conn.slots.acquire().await.expect("semaphore never closed");
    let server = conn.address();
    let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let rcv: Vec<PrivateKey> = (0..job.recipients)
        .map(|_| PrivateKey::generate(KeyAlgorithm::Ed25519))
        .collect();
    let info = FileInfo {
        snd_key: snd.public_key(),
        size: job.spec.size,
        digest: job.digest.to_vec(),
    };
    let (snd_ref, rcv_ref, info_ref, auth_ref) = (&snd, &rcv, &info, &auth);
    let (sender_id, recipient_ids) = conn
        .client
        .retry(retries, |c| async move {
            c.create_file(
                snd_ref,
                info_ref.clone(),
                rcv_ref.iter().map(PrivateKey::public_key).collect(),
                auth_ref.clone(),
            )
            .await
        })
        .await
        .map_err(|e| CliError::server(Op::Create, server, e))?;
    let key = |k: &PrivateKey| ReplicaKey::from_der(&k.to_der()).map_err(CliError::Description);
    state.created((parity, job.chunk_no), server, &sender_id, &key(&snd)?)?;
    let sid = &sender_id;
    conn.client
        .retry(retries, |c| async move {
            let reader = std::io::Cursor::new(job.data.clone());
            c.upload_chunk(sid, snd_ref, reader, job.spec.size).await
        })
        .await
        .map_err(|e| CliError::server(Op::Upload, server, e))?;
    tracing::debug!("chunk {} uploaded", job.chunk_no);
    let done = UploadedChunk {
        chunk_no: job.chunk_no,
        chunk_size: job.spec.size,
        digest: job.digest.to_vec(),
        server: server.clone(),
        sender_id,
        sender_key: key(&snd)?,
        recipients: recipient_ids
            .into_iter()
            .zip(&rcv)
            .map(|(id, k)| Ok((id, key(k)?)))
            .collect::<Result<_, CliError>>()?,
    };
    state.uploaded(parity, &done)?;
    Ok(done)
}
