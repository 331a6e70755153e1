//! Command semantics: what each verified XFTP command does to the store,
//! the chunk files and the store log, and what it answers (xftp.md §8.2).
//! Sockets are the caller's; a request arrives as its block plus the rest
//! of its body.

use crate::chunk_files::{self, ChunkError};
use crate::server::{SessionContext, Upload};
use crate::stats::{FileServerStats, inc};
use crate::store::{FILE_ID_SIZE, FileId, FileStore, expire_cutoff};
use crate::store_log::{StoreLog, StoreLogRecord};
use bytes::Bytes;
use futures_util::Stream;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::crypto::secretbox::{CbNonce, SbStream};
use smp_core::xftp::command::{BasicAuth, FileCommand, FileParty};
use smp_core::xftp::error::{BlockingInfo, XftpErrorType};
use smp_core::xftp::response::FileResponse;
use smp_core::xftp::transmission::{
    ServerTransmission, decode_request_block, dummy_verify, encode_response_block, verify_auth,
};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;

/// Bytes read from a chunk file per piece of an FGET body.
const READ_PIECE: usize = 128 * 1024;

/// What the handler answers: a block, or a block followed by a stream.
pub enum Reply {
    Block(Vec<u8>),
    Stream {
        block: Vec<u8>,
        body: Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>,
    },
}

/// Settings that change what commands do.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allowed_chunk_sizes: Vec<u32>,
    pub allow_new_files: bool,
    pub create_password: Option<BasicAuth>,
    pub upload_timeout: Duration,
    /// An upload that sends nothing for this long is dropped (TIMEOUT).
    pub upload_stall: Duration,
    /// Uploads receiving at once, server-wide; more wait for a slot (each
    /// holds an open file and a write buffer).
    pub upload_slots: Arc<tokio::sync::Semaphore>,
    pub files_dir: PathBuf,
}

/// Default `[LIMITS] concurrent_uploads`.
pub const DEFAULT_CONCURRENT_UPLOADS: usize = 256;
/// Default `[LIMITS] upload_stall_timeout`.
pub const DEFAULT_UPLOAD_STALL: Duration = Duration::from_secs(60);

impl Policy {
    pub fn new(files_dir: PathBuf) -> Self {
        Self {
            allowed_chunk_sizes: smp_core::file::chunks::SERVER_CHUNK_SIZES.to_vec(),
            allow_new_files: true,
            create_password: None,
            upload_timeout: Duration::from_secs(300),
            upload_stall: DEFAULT_UPLOAD_STALL,
            upload_slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_CONCURRENT_UPLOADS)),
            files_dir,
        }
    }
}

pub struct Handler {
    store: Mutex<FileStore>,
    log: Option<LogQueue>,
    pub stats: FileServerStats,
    pub policy: Policy,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Store operations cannot leave half-done state, so a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn random_id(buf: &mut [u8]) {
    smp_core::crypto::random_bytes(buf);
}

fn file_id(entity_id: &[u8]) -> Option<FileId> {
    <[u8; FILE_ID_SIZE]>::try_from(entity_id).ok()
}

type Answer = Result<FileResponse, XftpErrorType>;

/// What a verified command acts on.
enum Target {
    NewFile,
    Ping,
    File(FileId),
}

impl Handler {
    pub fn new(
        store: FileStore,
        log: Option<StoreLog>,
        stats: FileServerStats,
        policy: Policy,
    ) -> Self {
        Self {
            store: Mutex::new(store),
            log: log.map(LogQueue::start),
            stats,
            policy,
        }
    }

    /// Read access to the store (stats, tests, shutdown).
    pub fn with_store<T>(&self, f: impl FnOnce(&FileStore) -> T) -> T {
        f(&lock(&self.store))
    }

    /// Applies `change` to the store and makes its log records durable
    /// before returning, so nothing is acknowledged that a crash could lose.
    /// Records are queued while the store is locked, so the log keeps the
    /// store's order; concurrent commits share one fsync.
    async fn commit<T>(
        &self,
        change: impl FnOnce(&mut FileStore) -> Result<(T, Vec<StoreLogRecord>), XftpErrorType>,
    ) -> Result<T, XftpErrorType> {
        let (value, durable) = {
            let mut store = lock(&self.store);
            let (value, records) = change(&mut store)?;
            let durable = match &self.log {
                Some(log) if !records.is_empty() => Some(log.submit(records)),
                _ => None,
            };
            (value, durable)
        };
        if let Some(durable) = durable
            && !matches!(durable.await, Ok(Ok(())))
        {
            tracing::debug!("store log write failed; the change is not acknowledged");
            return Err(XftpErrorType::Internal);
        }
        Ok(value)
    }

    /// Handles one request block (and the rest of its body, for FPUT).
    pub async fn process(&self, ctx: &SessionContext, block: &[u8], mut upload: Upload) -> Reply {
        let t = match decode_request_block(block, &ctx.session_id) {
            Ok(t) => t,
            Err(e) => return self.respond(ctx, &e.corr_id, &e.entity_id, Err(e.error)),
        };
        let (corr_id, entity_id) = (t.raw.corr_id.to_vec(), t.raw.entity_id.to_vec());
        let answer = match self.verify(ctx, &t) {
            Err(e) => Err(e),
            Ok(Target::NewFile) => self.new_file(&t).await,
            Ok(Target::Ping) => Ok(FileResponse::Pong),
            Ok(Target::File(id)) => match &t.command {
                FileCommand::Fadd { rcv_keys } => self.add_recipients(&id, rcv_keys).await,
                FileCommand::Fput => self.put(&id, &mut upload).await,
                FileCommand::Fdel => self.delete(&id).await.map(|()| FileResponse::Ok),
                FileCommand::Fack => self.ack(&id).await,
                FileCommand::Fget { rcv_dh_key } => {
                    return match self.get(&id, rcv_dh_key).await {
                        Ok((resp, body)) => match self.encode(ctx, &corr_id, &entity_id, &resp) {
                            Reply::Block(block) => Reply::Stream { block, body },
                            other => other,
                        },
                        Err(e) => self.respond(ctx, &corr_id, &entity_id, Err(e)),
                    };
                }
                // `verify` gives these their own targets.
                FileCommand::Fnew { .. } | FileCommand::Ping => Err(XftpErrorType::Internal),
            },
        };
        self.respond(ctx, &corr_id, &entity_id, answer)
    }

    fn respond(
        &self,
        ctx: &SessionContext,
        corr_id: &[u8],
        entity_id: &[u8],
        answer: Answer,
    ) -> Reply {
        let resp = answer.unwrap_or_else(FileResponse::Err);
        self.encode(ctx, corr_id, entity_id, &resp)
    }

    fn encode(
        &self,
        ctx: &SessionContext,
        corr_id: &[u8],
        entity_id: &[u8],
        resp: &FileResponse,
    ) -> Reply {
        match encode_response_block(&ctx.session_id, corr_id, entity_id, resp, ctx.version) {
            Ok(b) => Reply::Block(b),
            // Only over-long echoed IDs could fail; the reference sends this text.
            Err(_) => Reply::Block(b"padding error".to_vec()),
        }
    }

    /// `verifyXFTPTransmission`: FNEW is checked with the key it carries,
    /// PING needs nothing, every other command with the key of the file its
    /// entity ID names. Unknown IDs cost a dummy verification; blocked files
    /// answer BLOCKED unverified.
    fn verify(
        &self,
        ctx: &SessionContext,
        t: &ServerTransmission<'_>,
    ) -> Result<Target, XftpErrorType> {
        let auth = t.auth.as_ref();
        let key = ctx.session_key.as_ref();
        let party = match &t.command {
            FileCommand::Ping => return Ok(Target::Ping),
            FileCommand::Fnew { file, .. } => {
                return if verify_auth(auth, t.raw.authorized, t.raw.corr_id, &file.snd_key, key) {
                    Ok(Target::NewFile)
                } else {
                    Err(XftpErrorType::Auth)
                };
            }
            c => c.party(),
        };
        let found = file_id(t.raw.entity_id)
            .ok_or(XftpErrorType::Auth)
            .and_then(|id| lock(&self.store).get_file(party, &id).map(|l| (id, l)));
        match found {
            Err(_) => {
                dummy_verify(auth, t.raw.authorized, t.raw.corr_id, key);
                Err(XftpErrorType::Auth)
            }
            Ok((id, lookup)) => {
                if let Some(info) = lookup.file.blocked() {
                    return Err(XftpErrorType::Blocked(info));
                }
                let active = lookup.file.status == crate::store::FileStatus::Active;
                if verify_auth(auth, t.raw.authorized, t.raw.corr_id, &lookup.key, key) && active {
                    Ok(Target::File(id))
                } else {
                    Err(XftpErrorType::Auth)
                }
            }
        }
    }

    async fn new_file(&self, t: &ServerTransmission<'_>) -> Answer {
        let FileCommand::Fnew {
            file,
            rcv_keys,
            auth,
        } = &t.command
        else {
            return Err(XftpErrorType::Internal);
        };
        let p = &self.policy;
        let password_ok = match (&p.create_password, auth) {
            (None, _) => true,
            (Some(want), Some(given)) => want.ct_eq(given.as_bytes()),
            (Some(_), None) => false,
        };
        if !p.allow_new_files || !password_ok {
            return Err(XftpErrorType::Auth);
        }
        if !p.allowed_chunk_sizes.contains(&file.size) {
            return Err(XftpErrorType::Size);
        }
        let now = now_unix();
        let (sender_id, recipients) = self
            .commit(|store| {
                let sid = store.create_file(&mut random_id, file.clone(), now)?;
                let rec = store.get_file(FileParty::Sender, &sid)?.file;
                let recipients = store.create_recipients(&mut random_id, &sid, rcv_keys)?;
                let records = vec![
                    StoreLogRecord::AddFile {
                        sender_id: sid,
                        info: rec.info,
                        created_at: rec.created_at,
                        status: rec.status,
                    },
                    StoreLogRecord::AddRecipients {
                        sender_id: sid,
                        recipients: recipients.clone(),
                    },
                ];
                Ok(((sid, recipients), records))
            })
            .await?;
        inc(&self.stats.files_created);
        crate::stats::add(&self.stats.file_recipients, recipients.len() as i64);
        Ok(FileResponse::SndIds {
            sender_id: sender_id.to_vec(),
            recipient_ids: recipients.iter().map(|(id, _)| id.to_vec()).collect(),
        })
    }

    async fn add_recipients(&self, sid: &FileId, keys: &[PublicKey]) -> Answer {
        let recipients = self
            .commit(|store| {
                let recipients = store.create_recipients(&mut random_id, sid, keys)?;
                let record = StoreLogRecord::AddRecipients {
                    sender_id: *sid,
                    recipients: recipients.clone(),
                };
                Ok((recipients, vec![record]))
            })
            .await?;
        crate::stats::add(&self.stats.file_recipients, recipients.len() as i64);
        Ok(FileResponse::RcvIds {
            recipient_ids: recipients.iter().map(|(id, _)| id.to_vec()).collect(),
        })
    }

    async fn put(&self, sid: &FileId, body: &mut Upload) -> Answer {
        let rec = lock(&self.store).get_file(FileParty::Sender, sid)?.file;
        let size = rec.info.size;
        if rec.path.is_some() {
            // A retried upload: consume the body, keep what is stored.
            return chunk_files::drain_exact(body, size)
                .await
                .map(|()| FileResponse::Ok)
                .map_err(upload_error);
        }
        // QUOTA at once when the whole chunk cannot fit, as the reference;
        // the storage itself is taken as the bytes arrive, so uploads that
        // stall cannot hold the quota against everyone else.
        if !lock(&self.store).fits(size) {
            return Err(XftpErrorType::Quota);
        }
        let started = tokio::time::Instant::now();
        let Ok(Ok(_slot)) = tokio::time::timeout(
            self.policy.upload_timeout,
            self.policy.upload_slots.acquire(),
        )
        .await
        else {
            return Err(XftpErrorType::Timeout);
        };
        let mut body = chunk_files::StallTimeout::new(body, self.policy.upload_stall);
        // Each upload writes a file of its own: a second upload of this
        // chunk at once (a client retrying on another connection) cannot
        // touch this one's bytes.
        let part = chunk_files::PartFile::new(&self.policy.files_dir, sid);
        let mut charged = 0u64;
        let mut charge = |n: u64| {
            let taken = u32::try_from(n).is_ok_and(|n| lock(&self.store).reserve(n).is_ok());
            if taken {
                charged += n;
            }
            taken
        };
        let received = tokio::time::timeout_at(
            started + self.policy.upload_timeout,
            chunk_files::receive_part(&mut body, &part, size, &rec.info.digest, &mut charge),
        )
        .await;
        let release = |n: u64| lock(&self.store).release(u32::try_from(n).unwrap_or(u32::MAX));
        match received {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                release(charged);
                return Err(upload_error(e));
            }
            Err(_) => {
                part.discard().await;
                release(charged);
                return Err(XftpErrorType::Timeout);
            }
        }
        if self.stored(sid) {
            // Another upload of the same bytes (the digest matched) was
            // committed first: this one is a retry that raced it.
            part.discard().await;
            lock(&self.store).release(size);
            return Ok(FileResponse::Ok);
        }
        let path = match part.commit().await {
            Ok(path) => path,
            Err(e) => {
                part.discard().await;
                lock(&self.store).release(size);
                return Err(upload_error(e));
            }
        };
        let committed = self
            .commit(|store| {
                store.set_file_path(sid, path.clone())?;
                let record = StoreLogRecord::PutFile {
                    sender_id: *sid,
                    path: path.clone(),
                };
                Ok(((), vec![record]))
            })
            .await;
        if let Err(e) = committed {
            lock(&self.store).release(size);
            if e == XftpErrorType::Auth && self.stored(sid) {
                // Two verified uploads of the same bytes took the name at
                // once (a rename is atomic, the digest made them equal) and
                // the other one was logged first: the chunk stays.
                return Ok(FileResponse::Ok);
            }
            // Deleted or blocked while the body was arriving.
            let _ = chunk_files::delete_chunk(&path).await;
            return Err(e);
        }
        self.stats.record_upload(size);
        Ok(FileResponse::Ok)
    }

    /// Whether the file's chunk is committed.
    fn stored(&self, sid: &FileId) -> bool {
        lock(&self.store)
            .get_file(FileParty::Sender, sid)
            .is_ok_and(|f| f.file.path.is_some())
    }

    /// FDEL (and the control port's delete): log, remove the chunk, drop
    /// the record.
    pub async fn delete(&self, sid: &FileId) -> Result<(), XftpErrorType> {
        let rec = lock(&self.store).get_file(FileParty::Sender, sid)?.file;
        if let Some(path) = &rec.path {
            chunk_files::delete_chunk(path)
                .await
                .map_err(|_| XftpErrorType::FileIo)?;
        }
        self.commit(|store| {
            store.delete_file(sid)?;
            Ok(((), vec![StoreLogRecord::DeleteFile { sender_id: *sid }]))
        })
        .await?;
        inc(&self.stats.files_deleted);
        // A blocked file's chunk was already counted out when it was blocked.
        if rec.path.is_some() && rec.blocked().is_none() {
            self.stats.record_file_removed(rec.info.size);
        }
        Ok(())
    }

    /// The sender ID of the file a recipient ID belongs to (control port);
    /// unknown → AUTH. Blocked files are found too.
    pub fn sender_of(&self, rid: &FileId) -> Result<FileId, XftpErrorType> {
        Ok(lock(&self.store)
            .get_file(FileParty::Recipient, rid)?
            .file
            .sender_id)
    }

    /// Blocking by the operator (control port `block`, by recipient ID):
    /// removes the chunk, logs `FBLK`, keeps the record with status
    /// blocked (every later command on it answers BLOCKED) and gives its
    /// storage back. Blocking a blocked file again succeeds and logs again.
    pub async fn block(&self, rid: &FileId, info: BlockingInfo) -> Result<(), XftpErrorType> {
        let rec = lock(&self.store).get_file(FileParty::Recipient, rid)?.file;
        let sid = rec.sender_id;
        if let Some(path) = &rec.path {
            chunk_files::delete_chunk(path)
                .await
                .map_err(|_| XftpErrorType::FileIo)?;
        }
        let before = self
            .commit(|store| {
                let before = store.block_file(&sid, info)?;
                Ok((
                    before,
                    vec![StoreLogRecord::BlockFile {
                        sender_id: sid,
                        info,
                    }],
                ))
            })
            .await?;
        inc(&self.stats.files_blocked);
        // The reference subtracts again on every repeated block; the chunk
        // is counted out once here.
        if before.path.is_some() && before.blocked().is_none() {
            self.stats.record_file_removed(before.info.size);
        }
        Ok(())
    }

    async fn ack(&self, rid: &FileId) -> Answer {
        self.commit(|store| {
            store.ack_file(rid)?;
            Ok(((), vec![StoreLogRecord::AckFile { recipient_id: *rid }]))
        })
        .await?;
        inc(&self.stats.file_download_acks);
        Ok(FileResponse::Ok)
    }

    async fn get(
        &self,
        rid: &FileId,
        rcv_dh_key: &PublicKey,
    ) -> Result<
        (
            FileResponse,
            Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>,
        ),
        XftpErrorType,
    > {
        let rec = lock(&self.store).get_file(FileParty::Recipient, rid)?.file;
        let path = rec.path.ok_or(XftpErrorType::NoFile)?;
        let file = chunk_files::open_chunk(&path)
            .await
            .map_err(|_| XftpErrorType::FileIo)?
            .ok_or(XftpErrorType::Auth)?;
        let srv_key = PrivateKey::generate(KeyAlgorithm::X25519);
        let nonce = CbNonce::generate();
        let stream =
            SbStream::for_dh(rcv_dh_key, &srv_key, &nonce).map_err(|_| XftpErrorType::Internal)?;
        self.stats.record_download(&rec.sender_id);
        let body = encrypted_chunk(file, rec.info.size as u64, stream);
        Ok((
            FileResponse::File {
                srv_dh_key: srv_key.public_key(),
                nonce,
            },
            body,
        ))
    }

    /// One expiry pass: removes every file older than the TTL (plus the
    /// reference's hour of slack). Returns how many were removed.
    pub async fn expire(&self, ttl: Duration, pause: Duration) -> usize {
        let cutoff = expire_cutoff(now_unix(), ttl.as_secs() as i64);
        let expired = lock(&self.store).expired_files(cutoff);
        let mut n = 0;
        for f in expired {
            if let Some(path) = &f.path
                && let Err(e) = chunk_files::delete_chunk(path).await
            {
                tracing::warn!("could not remove an expired chunk: {e}");
            }
            let done = self
                .commit(|store| {
                    store.delete_file(&f.sender_id)?;
                    Ok((
                        (),
                        vec![StoreLogRecord::DeleteFile {
                            sender_id: f.sender_id,
                        }],
                    ))
                })
                .await;
            if done.is_ok() {
                inc(&self.stats.files_expired);
                n += 1;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        n
    }
}

type Durable = tokio::sync::oneshot::Receiver<io::Result<()>>;

/// The store log behind a writer thread that commits in groups: it writes
/// every record queued so far, fsyncs once, then answers all their waiters.
struct LogQueue {
    tx: std::sync::mpsc::Sender<(
        Vec<StoreLogRecord>,
        tokio::sync::oneshot::Sender<io::Result<()>>,
    )>,
}

impl LogQueue {
    fn start(mut log: StoreLog) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<(
            Vec<StoreLogRecord>,
            tokio::sync::oneshot::Sender<io::Result<()>>,
        )>();
        std::thread::Builder::new()
            .name("store-log".into())
            .spawn(move || {
                // A failed write (a full disk) is cut off again by the log,
                // so the next record never glues onto a fragment: changes
                // are refused while writes fail and accepted again after.
                let mut failing = false;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let written = batch
                        .iter()
                        .try_for_each(|(records, _)| records.iter().try_for_each(|r| log.write(r)))
                        .and_then(|()| log.sync());
                    match (&written, failing) {
                        (Err(e), false) => {
                            failing = true;
                            tracing::error!(
                                "store log write failed ({}): changes are refused until it can be written again",
                                e.kind()
                            );
                        }
                        (Ok(()), true) => {
                            failing = false;
                            tracing::info!("store log written again: changes are accepted");
                        }
                        _ => {}
                    }
                    for (_, done) in batch {
                        let _ = done.send(match &written {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::new(e.kind(), "store log write failed")),
                        });
                    }
                }
            })
            .expect("cannot start the store log thread");
        Self { tx }
    }

    fn submit(&self, records: Vec<StoreLogRecord>) -> Durable {
        let (done, durable) = tokio::sync::oneshot::channel();
        // If the writer is gone the sender is dropped and the waiter sees an error.
        let _ = self.tx.send((records, done));
        durable
    }
}

fn upload_error(e: ChunkError) -> XftpErrorType {
    match e {
        // The reference answers TIMEOUT when the HTTP/2 stream fails mid-upload.
        ChunkError::Body(_) => XftpErrorType::Timeout,
        e => e.into(),
    }
}

/// The FGET body: the stored chunk encrypted for this download, then the tag.
fn encrypted_chunk(
    file: tokio::fs::File,
    size: u64,
    stream: SbStream,
) -> Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>> {
    struct State {
        file: tokio::fs::File,
        left: u64,
        stream: Option<SbStream>,
    }
    let state = State {
        file,
        left: size,
        stream: Some(stream),
    };
    Box::pin(futures_util::stream::try_unfold(
        state,
        |mut s| async move {
            let Some(mut stream) = s.stream.take() else {
                return Ok(None);
            };
            if s.left == 0 {
                return Ok(Some((Bytes::copy_from_slice(&stream.tag()), s)));
            }
            let mut buf = vec![0u8; (s.left as usize).min(READ_PIECE)];
            s.file.read_exact(&mut buf).await?;
            stream.encrypt(&mut buf);
            s.left -= buf.len() as u64;
            s.stream = Some(stream);
            Ok(Some((Bytes::from(buf), s)))
        },
    ))
}
