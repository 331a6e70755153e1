//! One XFTP file fetched onto the card (device.md §5, §6), sans-IO towards
//! the network: the caller sends the FGET block this job builds, feeds the
//! response block and then the body bytes, in pieces of any size, and
//! calls [`Job::end_body`]. Storage is called directly (it is local and
//! blocking).
//!
//! Per chunk: transit decryption and SHA-256 (the chunk digest), the file
//! SHA-512, the XFTP file stream (XSalsa20-Poly1305) decrypted as it
//! streams, re-encrypted into card records under a fresh `attempt`, and
//! committed only when the chunk checked out:
//!
//! 1. every record of run `i` written; 2. data file flushed + sync;
//! 3. journal `{next_chunk = i+1, attempt = fresh, data_end, ct_done,
//!    SHA-512 state}` + sync.
//!
//! A chunk that fails its checks is fetched again (from the next replica)
//! under a new `attempt`, so no (key, nonce) pair is ever used for two
//! different plaintexts. After the last chunk the file tag, the SHA-512
//! digest and the size are checked; only then is the file VERIFIED.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use sha2::Sha512;
use sha2::digest::common::hazmat::SerializableState;
use smp_core::crypto::digest::Digest;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::crypto::secretbox::{CbNonce, SbStream};
use smp_core::file::description::FileDescription;
use smp_core::xftp::command::FileCommand;
use smp_core::xftp::error::XftpErrorType;
use smp_core::xftp::fget::FgetDecoder;
use smp_core::xftp::response::FileResponse;
use smp_core::xftp::transmission::{AuthKey, decode_response_block, encode_command_block};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::format::header::SgfHeader;
use crate::format::journal::{Failure, JOURNAL_LEN, JobState, JournalEntry, SHA512_STATE};
use crate::format::keys::FileKeys;
use crate::format::layout::{ChunkLayout, FILE_TAG, RECORD, Runs};
use crate::format::manifest::{ENTRY, MAX_REPLICAS, ManifestChunk, ManifestHead, ManifestReplica};
use crate::format::record::{RecordCipher, record_nonce};
use crate::format::{BLOCK, FormatError};
use crate::storage::{FileStore, OpenMode, StorageError, read_exact};

/// The device's randomness (a CSPRNG seeded from the TRNG).
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]);
}

/// What the device's key store holds for file storage.
pub struct DeviceKeys {
    /// The files master key (`sg_files_mk`).
    pub files_mk: Zeroizing<[u8; 32]>,
    pub device_id: [u8; 16],
    /// Which master key this is (written into each file).
    pub key_id: u32,
}

/// A job failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("the file description cannot be stored: {0}")]
    Description(&'static str),
    /// No valid journal slot: the job never started (power lost while it
    /// was being created). Delete its files and start again.
    #[error("the job never started")]
    NotStarted,
    #[error("the file is {0:?}, not being fetched")]
    NotFetching(JobState),
    #[error("no chunk is being fetched")]
    NoAttempt,
    /// This chunk attempt failed; fetch the chunk again (another replica).
    #[error("chunk download failed: {0}")]
    Chunk(ChunkError),
    /// The file failed for good; the reason is in the journal.
    #[error("the file failed: {0:?}")]
    Failed(Failure),
}

/// Why one chunk attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("server answered {0}")]
    Server(XftpErrorType),
    #[error("the response block is malformed")]
    BadResponse,
    #[error("chunk body: {0}")]
    Body(XftpErrorType),
    #[error("the connection ended before the chunk did")]
    Interrupted,
}

impl JobError {
    /// A chunk attempt failed; the job goes on with another attempt.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Chunk(_))
    }
}

/// The three files of a job, named after its id: `F1A2B3C.SG?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNames {
    pub base: String,
}

impl JobNames {
    pub fn new(file_id: &[u8; 16]) -> Self {
        // 'F' + 7 hex digits: 8.3 names, no counter, no time.
        let n = u32::from_be_bytes([file_id[0], file_id[1], file_id[2], file_id[3]]) >> 4;
        Self {
            base: format!("F{n:07X}"),
        }
    }
    pub fn from_base(base: &str) -> Self {
        Self {
            base: String::from(base),
        }
    }
    pub fn data(&self) -> String {
        format!("{}.SGF", self.base)
    }
    pub fn journal(&self) -> String {
        format!("{}.SGJ", self.base)
    }
    pub fn manifest(&self) -> String {
        format!("{}.SGM", self.base)
    }
}

/// The XFTP file stream and digest over the committed (or tentative) part.
#[derive(Clone)]
struct FileState {
    stream: SbStream,
    sha: Sha512,
}

/// What a replay found whole.
struct Replayed {
    done: u32,
    ct_done: u64,
    data_end: u64,
    state: FileState,
}

/// A chunk being fetched.
struct Attempt {
    layout: ChunkLayout,
    entry: ManifestChunk,
    attempt: u32,
    rand: u32,
    dh: Option<PrivateKey>,
    decoder: Option<FgetDecoder>,
    state: FileState,
    /// Chunk bytes (XFTP ciphertext) seen so far.
    seen: u64,
    /// Record being filled, and how much of its plaintext is in `buf`.
    record: u32,
    fill: usize,
    buf: Box<[u8; RECORD]>,
    /// The XFTP file tag, at the end of the last chunk.
    file_tag: [u8; 16],
}

/// A replica to fetch a chunk from, as the shell needs it.
pub struct Replica<'a> {
    /// `xftp://` address.
    pub server: &'a str,
    pub id: &'a [u8],
}

/// What a finished chunk means for the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkDone {
    /// More chunks to fetch.
    More,
    /// The last chunk: every check passed, the file is complete.
    Verified,
}

/// A download job on an open card.
pub struct Job<S: FileStore> {
    names: JobNames,
    data: S::Handle,
    journal_file: S::Handle,
    keys: FileKeys,
    records: RecordCipher,
    header: SgfHeader,
    head: ManifestHead,
    manifest_blocks: u64,
    journal: JournalEntry,
    /// The reserved `attempt` was not used by any write yet.
    attempt_fresh: bool,
    committed: FileState,
    current: Option<Attempt>,
}

fn serialize_sha(sha: &Sha512) -> [u8; SHA512_STATE] {
    let mut out = [0u8; SHA512_STATE];
    let s = sha.serialize();
    out.copy_from_slice(&s);
    out
}

fn file_state(head: &ManifestHead) -> FileState {
    FileState {
        stream: SbStream::new(&head.key, &CbNonce(head.nonce)),
        sha: Sha512::new(),
    }
}

fn random_u32(rng: &mut impl Entropy) -> u32 {
    let mut b = [0u8; 4];
    rng.fill(&mut b);
    u32::from_be_bytes(b)
}

/// The description's content in the manifest's form.
fn manifest_of(desc: &FileDescription) -> Result<(ManifestHead, Vec<ManifestChunk>), JobError> {
    let bad = JobError::Description;
    let digest: [u8; 64] = desc
        .digest
        .as_slice()
        .try_into()
        .map_err(|_| bad("digest"))?;
    let mut servers: Vec<String> = Vec::new();
    let mut chunks = Vec::with_capacity(desc.chunks.len());
    for (i, c) in desc.chunks.iter().enumerate() {
        if c.chunk_no as usize != i + 1 {
            return Err(bad("chunks out of order"));
        }
        let digest: [u8; 32] = c
            .digest
            .as_slice()
            .try_into()
            .map_err(|_| bad("chunk digest"))?;
        if c.replicas.is_empty() {
            return Err(bad("a chunk without replicas"));
        }
        let mut replicas = Vec::new();
        for r in c.replicas.iter().take(MAX_REPLICAS) {
            let text = r.server.to_string();
            let idx = match servers.iter().position(|s| *s == text) {
                Some(i) => i,
                None => {
                    servers.push(text);
                    servers.len() - 1
                }
            };
            replicas.push(ManifestReplica {
                server: u8::try_from(idx).map_err(|_| bad("too many servers"))?,
                id: r.replica_id.clone(),
                key: Zeroizing::new(r.replica_key.as_der().to_vec()),
            });
        }
        chunks.push(ManifestChunk {
            chunk_no: c.chunk_no,
            size: c.chunk_size,
            digest,
            replicas,
        });
    }
    Ok((
        ManifestHead {
            key: desc.key,
            nonce: desc.nonce,
            digest,
            size: desc.size,
            servers,
        },
        chunks,
    ))
}

impl<S: FileStore> Job<S> {
    /// Creates the job's files for a (validated, recipient) description:
    /// data header, manifest, then the journal, which makes the job real.
    pub fn create(
        store: &mut S,
        keys: &DeviceKeys,
        desc: &FileDescription,
        rng: &mut impl Entropy,
    ) -> Result<Self, JobError> {
        if desc.redirect.is_some() {
            return Err(JobError::Description("a redirect must be resolved first"));
        }
        let sizes: Vec<u32> = desc.chunks.iter().map(|c| c.chunk_size).collect();
        let runs =
            Runs::from_chunk_sizes(&sizes).map_err(|_| JobError::Description("chunk sizes"))?;
        if runs.enc_size() != desc.size {
            return Err(JobError::Description(
                "chunk sizes do not add up to the size",
            ));
        }
        let (head, chunks) = manifest_of(desc)?;
        let existing: Vec<String> = store.list()?.into_iter().map(|(n, _)| n).collect();
        let mut file_id = [0u8; 16];
        let names = loop {
            rng.fill(&mut file_id);
            let n = JobNames::new(&file_id);
            if !existing.iter().any(|e| e.starts_with(&n.base)) {
                break n;
            }
        };
        let mut salt = [0u8; 32];
        rng.fill(&mut salt);
        let fkeys = FileKeys::derive(&keys.files_mk, &salt, &file_id, &keys.device_id);
        let header = SgfHeader {
            file_id,
            salt,
            key_id: keys.key_id,
            runs,
        };
        // Data header, flushed at once so the directory entry has its
        // first cluster (an unflushed file leaks its clusters).
        let data = store.open(&names.data(), OpenMode::CreateNew)?;
        store.write_at(data, 0, &header.encode(&fkeys.mac)?)?;
        store.flush(data)?;
        // The manifest, written once.
        let m = store.open(&names.manifest(), OpenMode::CreateNew)?;
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce);
        let count = chunks.len() as u32;
        let sealed_head = head.seal(&fkeys.manifest, &file_id, count, &nonce)?;
        store.write_at(m, 0, &sealed_head)?;
        let mut off = sealed_head.len() as u64;
        for (i, c) in chunks.iter().enumerate() {
            rng.fill(&mut nonce);
            let e = c.seal(&fkeys.manifest, &file_id, i as u32, count, &nonce)?;
            store.write_at(m, off, &e)?;
            off += ENTRY as u64;
        }
        store.flush(m)?;
        store.close(m)?;
        // The journal last, at its final size: both slots, slot A valid.
        let committed = file_state(&head);
        let journal = JournalEntry {
            seq: 0,
            state: JobState::Fetching,
            failure: Failure::None,
            next_chunk: 0,
            attempt: 1,
            data_end: crate::format::layout::DATA_START,
            ct_done: 0,
            sha512: serialize_sha(&committed.sha),
            ack_next: 0,
            file_tag: [0; 16],
        };
        let mut j = [0u8; JOURNAL_LEN];
        j[..BLOCK].copy_from_slice(&journal.encode(&fkeys.mac));
        let jf = store.open(&names.journal(), OpenMode::CreateNew)?;
        store.write_at(jf, 0, &j)?;
        store.flush(jf)?;
        store.sync()?;
        Ok(Self {
            names,
            data,
            journal_file: jf,
            records: RecordCipher::new(&fkeys.data),
            keys: fkeys,
            header,
            manifest_blocks: sealed_head.len() as u64 / BLOCK as u64,
            head,
            journal,
            attempt_fresh: true,
            committed,
            current: None,
        })
    }

    /// Opens a job after a restart: checks the header, takes the journal's
    /// valid slot, rolls back what the data file does not hold, and
    /// replays the committed records (checking each one's tag) to rebuild
    /// the file tag state. [`JobError::NotStarted`] means the job's files
    /// should be deleted.
    pub fn resume(store: &mut S, keys: &DeviceKeys, base: &str) -> Result<Self, JobError> {
        let names = JobNames::from_base(base);
        let data = store.open(&names.data(), OpenMode::ReadWrite)?;
        let r = Self::open_with(store, keys, names, data);
        if r.is_err() {
            let _ = store.close(data);
        }
        r
    }

    fn open_with(
        store: &mut S,
        keys: &DeviceKeys,
        names: JobNames,
        data: S::Handle,
    ) -> Result<Self, JobError> {
        let mut block = [0u8; BLOCK];
        if store.read_at(data, 0, &mut block)? != BLOCK {
            return Err(JobError::NotStarted);
        }
        let inputs = SgfHeader::key_inputs(&block)?;
        let fkeys = FileKeys::derive(
            &keys.files_mk,
            &inputs.salt,
            &inputs.file_id,
            &keys.device_id,
        );
        let header = SgfHeader::decode(&block, &fkeys.mac)?;
        let jf = match store.open(&names.journal(), OpenMode::ReadWrite) {
            Ok(h) => h,
            Err(StorageError::NotFound) => return Err(JobError::NotStarted),
            Err(e) => return Err(e.into()),
        };
        let mut j = [0u8; JOURNAL_LEN];
        let n = store.read_at(jf, 0, &mut j)?;
        let Some(journal) = (n == JOURNAL_LEN)
            .then(|| JournalEntry::recover(&j, &fkeys.mac))
            .flatten()
        else {
            let _ = store.close(jf);
            return Err(JobError::NotStarted);
        };
        let (head, manifest_blocks) = match read_head(store, &names, &fkeys, &header) {
            Ok(h) => h,
            Err(e) => {
                let _ = store.close(jf);
                return Err(e);
            }
        };
        let mut job = Self {
            names,
            data,
            journal_file: jf,
            records: RecordCipher::new(&fkeys.data),
            committed: file_state(&head),
            keys: fkeys,
            header,
            head,
            manifest_blocks,
            journal,
            attempt_fresh: false,
            current: None,
        };
        if job.journal.state == JobState::Fetching {
            job.replay(store)?;
        }
        Ok(job)
    }

    /// Rebuilds the committed file state from the stored records, rolling
    /// back runs the data file does not fully hold or whose records do not
    /// open (a card that damaged them on power loss).
    fn replay(&mut self, store: &mut S) -> Result<(), JobError> {
        let len = store.len(self.data)?;
        let mut start = file_state(&self.head);
        let mut saved = false;
        if len >= self.journal.data_end {
            // The saved digest state covers exactly the committed chunks.
            let s: [u8; SHA512_STATE] = self.journal.sha512;
            if let Ok(sha) = Sha512::deserialize(&s.into()) {
                start.sha = sha;
                saved = true;
            }
        }
        let mut r = self.replay_runs(store, len, self.journal.next_chunk, start, !saved)?;
        if r.done < self.journal.next_chunk && saved {
            // Rolled back: the saved digest is of a longer prefix.
            r = self.replay_runs(store, len, r.done, file_state(&self.head), true)?;
        }
        let count = self.header.runs.chunk_count();
        if r.done < self.journal.next_chunk {
            self.journal.next_chunk = r.done;
            self.journal.ct_done = r.ct_done;
            self.journal.data_end = r.data_end;
            self.journal.sha512 = serialize_sha(&r.state.sha);
        } else if r.done == count && !saved {
            // The file tag ends the digest; it is never stored as a record.
            r.state.sha.update(self.journal.file_tag);
        }
        self.committed = r.state;
        Ok(())
    }

    /// Opens runs `0..upto` in order, feeding the file stream (and the
    /// digest if `hash`), and stops at the first run that is not whole.
    fn replay_runs(
        &self,
        store: &mut S,
        len: u64,
        upto: u32,
        mut state: FileState,
        hash: bool,
    ) -> Result<Replayed, JobError> {
        let runs = &self.header.runs;
        let mut buf = Box::new([0u8; RECORD]);
        let mut out = Replayed {
            done: 0,
            ct_done: 0,
            data_end: crate::format::layout::DATA_START,
            state: state.clone(),
        };
        let mut chunk = runs.chunk(0);
        'runs: while let Some(c) = chunk {
            if c.index >= upto || c.end() > len {
                break;
            }
            for r in 0..c.records {
                let rec = &mut buf[..c.record_len(r)];
                let ok = read_exact(store, self.data, c.record_offset(r), rec).is_ok()
                    && self.records.open(&c, r, rec).is_ok();
                if !ok {
                    break 'runs;
                }
                let ct = &mut rec[12..12 + c.record_plain(r)];
                state.stream.encrypt(ct);
                if hash {
                    state.sha.update(&*ct);
                }
            }
            out = Replayed {
                done: c.index + 1,
                ct_done: out.ct_done + u64::from(c.size),
                data_end: c.end(),
                state: state.clone(),
            };
            chunk = c.next(runs);
        }
        Ok(out)
    }

    pub fn names(&self) -> &JobNames {
        &self.names
    }

    pub fn state(&self) -> JobState {
        self.journal.state
    }

    pub fn failure(&self) -> Failure {
        self.journal.failure
    }

    /// `(chunks committed, chunks)`.
    pub fn chunks(&self) -> (u32, u32) {
        (self.journal.next_chunk, self.header.runs.chunk_count())
    }

    /// `(XFTP bytes committed, XFTP size)`.
    pub fn bytes(&self) -> (u64, u64) {
        (self.journal.ct_done, self.head.size)
    }

    /// Size of the chunk being fetched.
    pub fn current_chunk_size(&self) -> Option<u32> {
        self.current.as_ref().map(|a| a.layout.size)
    }

    /// SHA-512 of the XFTP file, from the description: which job a
    /// description belongs to.
    pub fn digest(&self) -> &[u8; 64] {
        &self.head.digest
    }

    /// The journal's highest sequence number (tests check that it moves).
    pub fn journal_entry(&self) -> &JournalEntry {
        &self.journal
    }

    fn write_journal(&mut self, store: &mut S, next: JournalEntry) -> Result<(), JobError> {
        let b = next.encode(&self.keys.mac);
        store.write_at(self.journal_file, next.slot(), &b)?;
        store.sync()?;
        self.journal = next;
        Ok(())
    }

    /// The manifest entry of the next chunk to fetch, or `None` when every
    /// chunk is committed.
    pub fn next_chunk(&mut self, store: &mut S) -> Result<Option<ManifestChunk>, JobError> {
        if self.journal.state != JobState::Fetching {
            return Err(JobError::NotFetching(self.journal.state));
        }
        let i = self.journal.next_chunk;
        let count = self.header.runs.chunk_count();
        if i >= count {
            return Ok(None);
        }
        let m = store.open(&self.names.manifest(), OpenMode::ReadOnly)?;
        let mut e = [0u8; ENTRY];
        let r = read_exact(
            store,
            m,
            (self.manifest_blocks + u64::from(i)) * BLOCK as u64,
            &mut e,
        );
        store.close(m)?;
        r?;
        let c = ManifestChunk::open(&self.keys.manifest, &self.header.file_id, i, count, &e)?;
        let layout = self
            .header
            .runs
            .chunk(i)
            .ok_or(FormatError::Invalid("manifest", "chunk"))?;
        if c.size != layout.size || c.chunk_no != i + 1 {
            return Err(FormatError::Invalid("manifest", "chunk size").into());
        }
        Ok(Some(c))
    }

    /// The replicas of a chunk with their server addresses.
    pub fn replica<'a>(&'a self, c: &'a ManifestChunk, k: usize) -> Option<Replica<'a>> {
        let r = c.replicas.get(k)?;
        Some(Replica {
            server: self.head.servers.get(r.server as usize)?,
            id: &r.id,
        })
    }

    /// Starts an attempt at chunk `entry` (from [`Job::next_chunk`]): makes
    /// sure its `attempt` number was never used, then starts from the
    /// committed state.
    pub fn begin(
        &mut self,
        store: &mut S,
        entry: ManifestChunk,
        rng: &mut impl Entropy,
    ) -> Result<(), JobError> {
        if self.journal.state != JobState::Fetching {
            return Err(JobError::NotFetching(self.journal.state));
        }
        let layout = self
            .header
            .runs
            .chunk(self.journal.next_chunk)
            .ok_or(JobError::NoAttempt)?;
        if !self.attempt_fresh {
            let mut next = self.journal.clone();
            next.seq += 1;
            next.attempt += 1;
            self.write_journal(store, next)?;
        }
        self.attempt_fresh = false;
        self.current = Some(Attempt {
            layout,
            entry,
            attempt: self.journal.attempt,
            rand: random_u32(rng),
            dh: None,
            decoder: None,
            state: self.committed.clone(),
            seen: 0,
            record: 0,
            fill: 0,
            buf: Box::new([0u8; RECORD]),
            file_tag: [0; 16],
        });
        Ok(())
    }

    /// The FGET request block for replica `k` of the current chunk, for a
    /// connection with `session_id` (and, for X25519 replica keys, the
    /// server's session key).
    pub fn fget_request(
        &mut self,
        k: usize,
        session_id: &[u8],
        server_session_key: Option<&PublicKey>,
        rng: &mut impl Entropy,
    ) -> Result<Vec<u8>, JobError> {
        let a = self.current.as_mut().ok_or(JobError::NoAttempt)?;
        let r = a.entry.replicas.get(k).ok_or(JobError::NoAttempt)?;
        let key = PrivateKey::from_der(&r.key)
            .map_err(|_| FormatError::Invalid("manifest", "replica key"))?;
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill(&mut seed[..]);
        let dh = PrivateKey::from_raw(KeyAlgorithm::X25519, &seed[..])
            .map_err(|_| JobError::NoAttempt)?;
        let cmd = FileCommand::Fget {
            rcv_dh_key: dh.public_key(),
        };
        let auth = match (key.algorithm(), server_session_key) {
            (KeyAlgorithm::X25519, Some(s)) => AuthKey::Authenticate {
                own: &key,
                server_session_key: s,
            },
            (KeyAlgorithm::X25519, None) => {
                return Err(JobError::Chunk(ChunkError::Server(
                    XftpErrorType::Handshake,
                )));
            }
            _ => AuthKey::Sign(&key),
        };
        let block = encode_command_block(session_id, b"", &r.id, &cmd, Some(auth))
            .map_err(|_| JobError::Chunk(ChunkError::BadResponse))?;
        a.dh = Some(dh);
        Ok(block)
    }

    /// Takes the response block. `ERR AUTH` means the file expired or was
    /// deleted: the job fails ([`Failure::Gone`]).
    pub fn response(
        &mut self,
        store: &mut S,
        block: &[u8],
        session_id: &[u8],
    ) -> Result<(), JobError> {
        let a = self.current.as_mut().ok_or(JobError::NoAttempt)?;
        let dh = a.dh.as_ref().ok_or(JobError::NoAttempt)?;
        let t = match decode_response_block(block, session_id) {
            Ok(t) => t,
            Err(_) => return Err(JobError::Chunk(ChunkError::BadResponse)),
        };
        match t.response {
            Ok(FileResponse::File { srv_dh_key, nonce }) => {
                let d = FgetDecoder::new(&srv_dh_key, dh, &nonce, u64::from(a.layout.size))
                    .map_err(|_| JobError::Chunk(ChunkError::BadResponse))?;
                a.decoder = Some(d);
                Ok(())
            }
            Ok(FileResponse::Err(XftpErrorType::Auth)) => {
                self.fail(store, Failure::Gone)?;
                Err(JobError::Failed(Failure::Gone))
            }
            Ok(FileResponse::Err(e)) => Err(JobError::Chunk(ChunkError::Server(e))),
            _ => Err(JobError::Chunk(ChunkError::BadResponse)),
        }
    }

    /// Takes the next body bytes (decrypted in place).
    pub fn body(&mut self, store: &mut S, piece: &mut [u8]) -> Result<(), JobError> {
        let a = self.current.as_mut().ok_or(JobError::NoAttempt)?;
        let d = a.decoder.as_mut().ok_or(JobError::NoAttempt)?;
        let n = d
            .update(piece)
            .map_err(|e| JobError::Chunk(ChunkError::Body(e)))?;
        let r = Self::absorb(&self.records, store, self.data, a, &mut piece[..n]);
        match r {
            Err(JobError::Storage(StorageError::Full)) => {
                self.current = None;
                self.fail(store, Failure::Full)?;
                Err(JobError::Failed(Failure::Full))
            }
            r => r,
        }
    }

    /// Chunk bytes (XFTP ciphertext) into the digest, the file stream and
    /// the records.
    fn absorb(
        records: &RecordCipher,
        store: &mut S,
        data: S::Handle,
        a: &mut Attempt,
        ct: &mut [u8],
    ) -> Result<(), JobError> {
        a.state.sha.update(&*ct);
        let plain_end = u64::from(a.layout.plain);
        // The last chunk ends with the file tag, which is not stored.
        let stored = usize::try_from(plain_end.saturating_sub(a.seen))
            .unwrap_or(usize::MAX)
            .min(ct.len());
        let total = ct.len() as u64;
        let (body, tag) = ct.split_at_mut(stored);
        for (j, b) in tag.iter().enumerate() {
            let at = (a.seen + (stored + j) as u64 - plain_end) as usize;
            if at < FILE_TAG as usize {
                a.file_tag[at] = *b;
            }
        }
        a.seen += total;
        a.state.stream.decrypt(body);
        let mut rest: &[u8] = body;
        while !rest.is_empty() {
            let m = a.layout.record_plain(a.record);
            let take = (m - a.fill).min(rest.len());
            a.buf[12 + a.fill..12 + a.fill + take].copy_from_slice(&rest[..take]);
            a.fill += take;
            rest = &rest[take..];
            if a.fill == m {
                let g = a.layout.first_record + a.record;
                let len = a.layout.record_len(a.record);
                records.seal(
                    &a.layout,
                    a.record,
                    record_nonce(a.attempt, a.rand, g),
                    &mut a.buf[..len],
                );
                store.write_at(data, a.layout.record_offset(a.record), &a.buf[..len])?;
                a.record += 1;
                a.fill = 0;
            }
        }
        Ok(())
    }

    /// The body ended: checks the chunk and commits it, or drops the
    /// attempt ([`JobError::Chunk`]: fetch it again).
    pub fn end_body(&mut self, store: &mut S) -> Result<ChunkDone, JobError> {
        let mut a = self.current.take().ok_or(JobError::NoAttempt)?;
        let d = a.decoder.take().ok_or(JobError::NoAttempt)?;
        d.finish(&a.entry.digest)
            .map_err(|e| JobError::Chunk(ChunkError::Body(e)))?;
        if a.record != a.layout.records || a.fill != 0 {
            return Err(JobError::Chunk(ChunkError::Body(XftpErrorType::Size)));
        }
        store.flush(self.data)?;
        store.sync()?;
        let mut next = self.journal.clone();
        next.seq += 1;
        next.next_chunk += 1;
        next.attempt = a.attempt + 1;
        next.data_end = a.layout.end();
        next.ct_done += u64::from(a.layout.size);
        next.sha512 = serialize_sha(&a.state.sha);
        if a.layout.last {
            next.file_tag = a.file_tag;
        }
        self.write_journal(store, next)?;
        self.attempt_fresh = true;
        self.committed = a.state;
        if a.layout.last {
            self.finish(store)?;
            return Ok(ChunkDone::Verified);
        }
        Ok(ChunkDone::More)
    }

    /// Gives up the current attempt (a connection error): its number is
    /// used, the next attempt reserves another.
    pub fn abandon(&mut self) {
        self.current = None;
    }

    /// Every chunk is committed: checks the file tag, the SHA-512 digest
    /// and the size, then marks the file VERIFIED (or FAILED).
    pub fn finish(&mut self, store: &mut S) -> Result<(), JobError> {
        if self.journal.next_chunk != self.header.runs.chunk_count() {
            return Err(JobError::NoAttempt);
        }
        let state = self.committed.clone();
        let tag_ok = state.stream.verify(&self.journal.file_tag).is_ok();
        let digest = state.sha.finalize();
        let digest_ok = bool::from(digest.as_slice().ct_eq(&self.head.digest));
        let size_ok = self.journal.ct_done == self.head.size;
        let failure = match (size_ok, digest_ok, tag_ok) {
            (false, _, _) => Some(Failure::Size),
            (_, false, _) => Some(Failure::Digest),
            (_, _, false) => Some(Failure::Tag),
            _ => None,
        };
        if let Some(f) = failure {
            self.fail(store, f)?;
            return Err(JobError::Failed(f));
        }
        let mut next = self.journal.clone();
        next.seq += 1;
        next.state = JobState::Verified;
        self.write_journal(store, next)
    }

    /// Marks the file FAILED and frees its space: the journal first, then
    /// the data file is cut back to its header and the manifest deleted.
    pub fn fail(&mut self, store: &mut S, why: Failure) -> Result<(), JobError> {
        self.current = None;
        if self.journal.state != JobState::Failed {
            let mut next = self.journal.clone();
            next.seq += 1;
            next.state = JobState::Failed;
            next.failure = why;
            self.write_journal(store, next)?;
        }
        self.free_space(store)
    }

    /// The cleanup of a failed job (again after a restart, if it was cut).
    pub fn free_space(&mut self, store: &mut S) -> Result<(), JobError> {
        store.close(self.data)?;
        let d = store.open(&self.names.data(), OpenMode::Truncate)?;
        self.data = d;
        store.write_at(d, 0, &self.header.encode(&self.keys.mac)?)?;
        store.flush(d)?;
        match store.delete(&self.names.manifest()) {
            Ok(()) | Err(StorageError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        store.sync()?;
        Ok(())
    }

    /// Closes the job's files.
    pub fn close(self, store: &mut S) -> Result<(), JobError> {
        store.close(self.data)?;
        store.close(self.journal_file)?;
        Ok(())
    }
}

/// Reads and opens the manifest head; returns it and its length in blocks.
fn read_head<S: FileStore>(
    store: &mut S,
    names: &JobNames,
    keys: &FileKeys,
    header: &SgfHeader,
) -> Result<(ManifestHead, u64), JobError> {
    let m = match store.open(&names.manifest(), OpenMode::ReadOnly) {
        Ok(m) => m,
        Err(StorageError::NotFound) => {
            // A failed job's manifest is deleted; its head is not needed.
            return Ok((
                ManifestHead {
                    key: [0; 32],
                    nonce: [0; 24],
                    digest: [0; 64],
                    size: header.runs.enc_size(),
                    servers: Vec::new(),
                },
                0,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let r = (|| {
        let mut first = [0u8; BLOCK];
        read_exact(store, m, 0, &mut first)?;
        let len = ManifestHead::sealed_len(&first)?;
        let mut sealed = Zeroizing::new(alloc::vec![0u8; len]);
        read_exact(store, m, 0, &mut sealed)?;
        let (head, file_id, count) = ManifestHead::open(&keys.manifest, &mut sealed)?;
        if file_id != header.file_id || count != header.runs.chunk_count() {
            return Err(JobError::Format(FormatError::Invalid(
                "manifest",
                "another file",
            )));
        }
        if head.size != header.runs.enc_size() {
            return Err(JobError::Format(FormatError::Invalid("manifest", "size")));
        }
        Ok((head, (len / BLOCK) as u64))
    })();
    store.close(m)?;
    r
}
