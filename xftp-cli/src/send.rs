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
use smp_core::file::description::{ReplicaKey, UploadedChunk, UploadedFile, split_descriptions};
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{EncryptedFile, StreamError, encrypt_file_by_chunk};
use smp_core::file::weblink::web_link;
use smp_core::xftp::command::{BasicAuth, FileInfo};
use tokio::task::JoinSet;

use crate::error::{CliError, Op, exit};
use crate::pool::{Pool, ServerConn, TransferOptions};
use crate::progress::Progress;
use crate::servers::plan_chunks;
use crate::{CHUNK_BUFFERS, CountingReader, unique_combine};

pub struct SendOptions {
    pub file: PathBuf,
    /// Where `<name>.xftp/` is created (the reference's `DIR`, default `.`).
    pub out_dir: PathBuf,
    /// Number of recipient descriptions (`-n`).
    pub recipients: usize,
    pub servers: Vec<ServerWithAuth>,
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
    /// The server of each chunk, in chunk order.
    pub chunk_servers: Vec<ServerAddress>,
}

/// Sends `opts.file`; see the module docs.
pub async fn send_file(opts: &SendOptions, progress: &Progress) -> Result<SendOutcome, CliError> {
    if opts.servers.is_empty() {
        return Err(CliError::NoServers);
    }
    let recipients = opts.recipients.max(1);
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

    // Encryption and hashing run in one streaming pass on blocking threads;
    // each finished chunk is handed over in memory and uploaded at once,
    // while later chunks are still being encrypted. Chunks live in
    // `CHUNK_BUFFERS` buffers that go round (the encryption waits for a free
    // one), which bounds memory whatever the file size; a chunk stays in
    // its buffer until it is uploaded, for the retries.
    progress.item("Encrypting file...");
    let key = SbKey::generate();
    let nonce = CbNonce::generate();
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
    let pool = Arc::new(Pool::new(opts.transfer));
    let pipeline = Pipeline {
        specs: &specs,
        read: &read,
        content_len: meta.len(),
        recipients,
    };
    let (encrypted, uploaded) = pipeline
        .run(&pool, &opts.servers, encryption, ready_rx, free, progress)
        .await
        .map_err(|e| match e {
            Failure::Cli(e) => e,
            Failure::Encrypt(StreamError::Io(io)) => {
                CliError::io(format!("encrypting {}", opts.file.display()), io)
            }
            Failure::Encrypt(other) => CliError::Decrypt(other),
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
    let chunk_servers = uploaded.iter().map(|c| c.server.clone()).collect();
    let (rcv, snd) = split_descriptions(&file, &uploaded).map_err(CliError::Description)?;
    let link = web_link(&rcv[0]).map_err(CliError::WebLink)?;
    let dir = unique_combine(&opts.out_dir, &format!("{name}.xftp"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
    let mut recipient_descriptions = Vec::with_capacity(rcv.len());
    for (i, d) in rcv.iter().enumerate() {
        let p = dir.join(format!("rcv{}.xftp", i + 1));
        write_private(&p, d.to_yaml().as_bytes())?;
        recipient_descriptions.push(p);
    }
    let sender_description = dir.join("snd.xftp.private");
    write_private(&sender_description, snd.to_yaml().as_bytes())?;
    Ok(SendOutcome {
        dir,
        sender_description,
        recipient_descriptions,
        web_link: link,
        chunk_servers,
    })
}

/// Descriptions hold private keys: owner-only on Unix.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let res = o
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes));
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
/// per server. A chunk whose server is unreachable after the retries moves
/// to the next reachable server; the send fails when none is left.
struct Pipeline<'a> {
    specs: &'a [ChunkSpec],
    /// Plaintext bytes the encryption has read (its progress).
    read: &'a AtomicU64,
    content_len: u64,
    recipients: usize,
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
    ) -> Result<(EncryptedFile, Vec<UploadedChunk>), Failure> {
        let plan = plan_chunks(self.specs.len(), servers.len());
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
        let enc_size = self.specs.iter().map(|c| u64::from(c.size)).sum();
        let enc_bar = progress.bar("encrypting", self.content_len, None);
        let up_bar = progress.bar("uploading", enc_size, Some("Uploaded"));
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        let mut tasks = JoinSet::new();
        let mut encrypted = None;
        let mut done = Vec::with_capacity(self.specs.len());
        let result = loop {
            tokio::select! {
                Some(Ready { i, digest, data }) = ready.recv() => {
                    let job = Job {
                        data,
                        spec: self.specs[i],
                        chunk_no: i as u32 + 1,
                        digest,
                        recipients: self.recipients,
                    };
                    let (conns, first, retries) = (conns.clone(), plan[i], pool.options().retries);
                    let free = free.clone();
                    tasks.spawn(async move {
                        let r = upload_with_failover(&conns, first, &job, retries).await;
                        // The buffer goes back for the next chunk (a new one
                        // if something still shares it, which nothing should).
                        let buf = job.data.try_into_mut().map(Vec::from).unwrap_or_default();
                        let _ = free.try_send(buf);
                        r
                    });
                }
                joined = &mut encryption, if encrypted.is_none() => match joined {
                    Ok(Ok(e)) => encrypted = Some(e),
                    Ok(Err(e)) => break Err(Failure::Encrypt(e)),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                },
                Some(joined) = tasks.join_next() => match joined {
                    Ok(Ok(c)) => {
                        up_bar.chunk_done(u64::from(c.chunk_size));
                        done.push(c);
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
        debug_assert_eq!(done.len(), self.specs.len());
        done.sort_by_key(|c| c.chunk_no);
        Ok((encrypted, done))
    }
}

async fn upload_with_failover(
    conns: &[(Arc<ServerConn>, Option<BasicAuth>)],
    first: usize,
    job: &Job,
    retries: u32,
) -> Result<UploadedChunk, CliError> {
    let mut last = None;
    for k in 0..conns.len() {
        let (conn, auth) = &conns[(first + k) % conns.len()];
        if conn.is_unreachable() {
            continue;
        }
        match upload_one(conn, auth.clone(), job, retries).await {
            Ok(c) => return Ok(c),
            Err(e) if e.exit_code() == exit::UNREACHABLE => {
                tracing::warn!("{e}; chunk {} moves to another server", job.chunk_no);
                conn.mark_unreachable();
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(CliError::NoServers))
}

async fn upload_one(
    conn: &ServerConn,
    auth: Option<BasicAuth>,
    job: &Job,
    retries: u32,
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
    let sid = &sender_id;
    conn.client
        .retry(retries, |c| async move {
            let reader = std::io::Cursor::new(job.data.clone());
            c.upload_chunk(sid, snd_ref, reader, job.spec.size).await
        })
        .await
        .map_err(|e| CliError::server(Op::Upload, server, e))?;
    tracing::debug!("chunk {} uploaded to {server}", job.chunk_no);
    let key = |k: &PrivateKey| ReplicaKey::from_der(&k.to_der()).map_err(CliError::Description);
    Ok(UploadedChunk {
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
    })
}
