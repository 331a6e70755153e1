//! The host board's side of a download (std): its key store (a 0600 file
//! beside the card image, the stand-in for the device's NVS), its
//! randomness, and the network loop that drives a [`Job`] over real XFTP
//! servers with smp-core's client. The job itself is the device's code.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use smp_core::address::ServerAddress;
use smp_core::client::xftp::{XftpClient, XftpClientError, XftpClientOptions};
use smp_core::crypto::random_array;
use zeroize::Zeroizing;

use crate::blockdev::{Coalesce, FileDisk};
use crate::card::Card;
use crate::catalog;
use crate::format::journal::JobState;
use crate::format::marker::CardMarker;
use crate::job::{ChunkDone, ChunkError, DeviceKeys, Entropy, Job, JobError};
use crate::storage::{FileStore, OpenMode, StorageError};
use smp_core::file::description::ValidFileDescription;

/// The OS CSPRNG.
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        for piece in buf.chunks_mut(32) {
            let r: [u8; 32] = random_array();
            piece.copy_from_slice(&r[..piece.len()]);
        }
    }
}

/// The key file's default place: beside the image.
pub fn default_key_path(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".keys");
    PathBuf::from(p)
}

/// Key store problems, in words.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write the key file {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("the key file {0} is not a device-sync key file")]
    Malformed(PathBuf),
    #[error("the key file {0} exists already; refusing to replace the keys of a card")]
    Exists(PathBuf),
    #[error("the key file {0} can be read by other users (mode {1:o}); run chmod 600 on it")]
    Permissions(PathBuf, u32),
}

const KEY_FILE_HEAD: &str = "device-sync keys v1";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// New random keys, written 0600 and atomically (temporary file, fsync,
/// rename) so a cut leaves either no key file or a whole one.
pub fn create_keys(path: &Path) -> Result<DeviceKeys, KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists(path.to_path_buf()));
    }
    let keys = DeviceKeys {
        files_mk: Zeroizing::new(random_array()),
        device_id: random_array(),
        key_id: 1,
    };
    let text = Zeroizing::new(format!(
        "{KEY_FILE_HEAD}\nfiles_mk={}\ndevice_id={}\nkey_id={}\n",
        hex(&keys.files_mk[..]),
        hex(&keys.device_id),
        keys.key_id
    ));
    let tmp = path.with_extension("keys.tmp");
    let w = |e| KeyFileError::Write(path.to_path_buf(), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(w)?;
    f.write_all(text.as_bytes()).map_err(w)?;
    f.sync_all().map_err(w)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(w)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(keys)
}

/// Reads the key file; refuses one others can read.
pub fn load_keys(path: &Path) -> Result<DeviceKeys, KeyFileError> {
    let r = |e| KeyFileError::Read(path.to_path_buf(), e);
    let meta = std::fs::metadata(path).map_err(r)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions(path.to_path_buf(), mode));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(r)?);
    let bad = || KeyFileError::Malformed(path.to_path_buf());
    let mut lines = text.lines();
    if lines.next() != Some(KEY_FILE_HEAD) {
        return Err(bad());
    }
    let (mut mk, mut dev, mut id) = (None, None, None);
    for l in lines {
        match l.split_once('=') {
            Some(("files_mk", v)) => mk = unhex::<32>(v),
            Some(("device_id", v)) => dev = unhex::<16>(v),
            Some(("key_id", v)) => id = v.parse().ok(),
            _ => return Err(bad()),
        }
    }
    Ok(DeviceKeys {
        files_mk: Zeroizing::new(mk.ok_or_else(bad)?),
        device_id: dev.ok_or_else(bad)?,
        key_id: id.ok_or_else(bad)?,
    })
}

/// The host board's card: an image file behind the write-coalescing layer.
pub type HostCard = Card<Coalesce<FileDisk>>;

/// The card marker's name in `/SIMPLEGO/FILES`.
pub const MARKER: &str = "CARD.SGC";

/// Why a card image could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum CardSetupError {
    #[error("{0} exists already")]
    Exists(PathBuf),
    #[error("cannot open the image {0}: {1}")]
    Image(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Card(PathBuf, String),
    #[error("the card has no SimpleGo marker; run init")]
    NoMarker,
    #[error("this card belongs to another device or key file; it is left untouched")]
    Foreign,
    #[error("{0}")]
    Keys(#[from] KeyFileError),
}

/// Creates a FAT32 image of `size` bytes, its key file, the card
/// directories and the marker (written last, so a card without one is
/// known to be unfinished).
pub fn init_card(image: &Path, size: u64, keys_path: &Path) -> Result<DeviceKeys, CardSetupError> {
    if image.exists() {
        return Err(CardSetupError::Exists(image.to_path_buf()));
    }
    let io = |e: String| CardSetupError::Card(image.to_path_buf(), e);
    crate::image::create(image, size).map_err(|e| io(e.to_string()))?;
    let keys = create_keys(keys_path)?;
    let disk = FileDisk::open(image).map_err(|e| CardSetupError::Image(image.to_path_buf(), e))?;
    let mut card = Card::init(Coalesce::new(disk)).map_err(|e| io(e.to_string()))?;
    let mut card_id = [0u8; 16];
    OsEntropy.fill(&mut card_id);
    let marker = CardMarker {
        card_id,
        key_id: keys.key_id,
    }
    .encode(&keys.files_mk, &keys.device_id);
    let st = |e: StorageError| io(e.to_string());
    let m = FileStore::open(&mut card, MARKER, OpenMode::CreateNew).map_err(st)?;
    card.write_at(m, 0, &marker)
        .map_err(|e| io(e.to_string()))?;
    FileStore::flush(&mut card, m).map_err(st)?;
    FileStore::close(&mut card, m).map_err(st)?;
    FileStore::sync(&mut card).map_err(st)?;
    drop(card.into_device());
    Ok(keys)
}

/// Mounts the image and checks that its marker was made with these keys.
pub fn open_card(image: &Path, keys: &DeviceKeys) -> Result<HostCard, CardSetupError> {
    let disk = FileDisk::open(image).map_err(|e| CardSetupError::Image(image.to_path_buf(), e))?;
    let mut card = Card::mount(Coalesce::new(disk))
        .map_err(|e| CardSetupError::Card(image.to_path_buf(), e.to_string()))?;
    let m = FileStore::open(&mut card, MARKER, OpenMode::ReadOnly)
        .map_err(|_| CardSetupError::NoMarker)?;
    let mut b = [0u8; 512];
    let n = card.read_at(m, 0, &mut b);
    let _ = card.close(m);
    match n {
        Ok(512) if CardMarker::decode(&b, &keys.files_mk, &keys.device_id).is_ok() => Ok(card),
        _ => Err(CardSetupError::Foreign),
    }
}

/// The job for `desc` on the host: [`catalog::job_for`] with the OS's
/// randomness.
pub fn job_for<S: FileStore>(
    card: &mut S,
    keys: &DeviceKeys,
    desc: &ValidFileDescription,
) -> Result<Job<S>, JobError> {
    catalog::job_for(card, keys, desc, &mut OsEntropy)
}

/// How hard a download tries.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub client: XftpClientOptions,
    /// Rounds over a chunk's replicas before the file fails.
    pub rounds: usize,
    /// First wait between attempts (doubled up to `max_backoff`).
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            client: XftpClientOptions::default(),
            rounds: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Why a fetch ended without a complete file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Job(#[from] JobError),
    #[error("the description names an unusable server: {0}")]
    Server(String),
    /// Every replica of a chunk failed, `rounds` times over. The job stays
    /// as it is: fetching again later resumes it.
    #[error(
        "could not download chunk {chunk} from any of its servers ({last}); run fetch again later to resume"
    )]
    Unreachable { chunk: u32, last: String },
}

/// Drives `job` to VERIFIED (or FAILED) over the network. `progress` gets
/// `(bytes committed or in flight, total)`.
pub async fn run_job<S: FileStore>(
    store: &mut S,
    job: &mut Job<S>,
    opts: &FetchOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), FetchError> {
    let mut fetch = XftpFetch::new(opts.clone());
    while fetch.chunk(store, job, &mut progress).await? == Fetched::More {}
    Ok(())
}

/// Where a job is after [`XftpFetch::chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// A chunk is committed; more remain.
    More,
    /// The file is verified on the card.
    Done,
}

/// Fetches a job's chunks over the network, keeping one connection per
/// server across chunks (and across jobs), so that a caller can do other
/// work between chunks.
pub struct XftpFetch {
    opts: FetchOptions,
    clients: HashMap<String, XftpClient>,
}

impl XftpFetch {
    pub fn new(opts: FetchOptions) -> Self {
        XftpFetch {
            opts,
            clients: HashMap::new(),
        }
    }

    /// Fetches and commits the job's next chunk, trying its replicas in
    /// turn with backoff.
    pub async fn chunk<S: FileStore>(
        &mut self,
        store: &mut S,
        job: &mut Job<S>,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<Fetched, FetchError> {
        let mut rng = OsEntropy;
        let opts = &self.opts;
        loop {
            match job.state() {
                JobState::Fetching => {}
                JobState::Failed => return Err(JobError::Failed(job.failure()).into()),
                JobState::Verified | JobState::Acked => return Ok(Fetched::Done),
            }
            let Some(entry) = job.next_chunk(store)? else {
                job.finish(store)?;
                continue;
            };
            let n = entry.replicas.len();
            let mut wait = opts.backoff;
            let mut tries = 0usize;
            loop {
                let k = tries % n;
                let server = job
                    .replica(&entry, k)
                    .map(|r| r.server.to_string())
                    .ok_or_else(|| FetchError::Server("replica without a server".into()))?;
                job.begin(store, entry.clone(), &mut rng)?;
                let r = attempt(store, job, &mut self.clients, &server, k, opts, progress).await;
                match r {
                    Ok(ChunkDone::More) => return Ok(Fetched::More),
                    Ok(ChunkDone::Verified) => {
                        let (d, t) = job.bytes();
                        progress(d, t);
                        return Ok(Fetched::Done);
                    }
                    Err(FetchError::Job(e)) if e.is_retryable() => {
                        job.abandon();
                        tries += 1;
                        if tries >= n * opts.rounds {
                            return Err(FetchError::Unreachable {
                                chunk: entry.chunk_no,
                                last: e.to_string(),
                            });
                        }
                        tracing::debug!("chunk attempt failed, retrying: {e}");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(opts.max_backoff);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn net(_: XftpClientError) -> FetchError {
    FetchError::Job(JobError::Chunk(ChunkError::Interrupted))
}

async fn attempt<S: FileStore>(
    store: &mut S,
    job: &mut Job<S>,
    clients: &mut HashMap<String, XftpClient>,
    server: &str,
    k: usize,
    opts: &FetchOptions,
    progress: &mut impl FnMut(u64, u64),
) -> Result<ChunkDone, FetchError> {
    let client = match clients.get(server).filter(|c| !c.is_closed()) {
        Some(c) => c.clone(),
        None => {
            let addr =
                ServerAddress::parse(server).map_err(|e| FetchError::Server(e.to_string()))?;
            let c = XftpClient::connect(&addr, opts.client).await.map_err(|e| {
                clients.remove(server);
                net(e)
            })?;
            clients.insert(server.to_string(), c.clone());
            c
        }
    };
    let block = job.fget_request(
        k,
        client.session_id().as_ref(),
        client.server_session_key(),
        &mut OsEntropy,
    )?;
    let mut resp = match client.request_raw(block, opts.client.command_timeout).await {
        Ok(r) => r,
        Err(e) => {
            clients.remove(server);
            return Err(net(e));
        }
    };
    job.response(store, &resp.block, client.session_id().as_ref())?;
    let size = job.current_chunk_size().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + opts.client.download_body_timeout(u64::from(size));
    let (base, total) = job.bytes();
    let mut got = 0u64;
    loop {
        let piece = match tokio::time::timeout_at(deadline, resp.next_piece()).await {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                clients.remove(server);
                return Err(net(e));
            }
            Err(_) => {
                clients.remove(server);
                return Err(FetchError::Job(JobError::Chunk(ChunkError::Interrupted)));
            }
        };
        let mut buf = piece.to_vec();
        job.body(store, &mut buf)?;
        got += buf.len() as u64;
        progress((base + got).min(total), total);
    }
    Ok(job.end_body(store)?)
}
