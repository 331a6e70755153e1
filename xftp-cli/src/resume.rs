//! What an interrupted `xftp send` had done, kept in a state file beside
//! its output so that running it again finishes the job instead of
//! uploading the file twice.
//!
//! The file is text, one record per line, appended and fsynced as the
//! send goes: its header holds what identifies the send (the source
//! file's size and modification time, the arguments) and the file key and
//! nonce, so the rerun encrypts to the same chunks; then `created` (a
//! chunk's sender id, written before its bytes go out) and `uploaded` (a
//! finished copy with every id and key of the description). A copy created
//! but never finished is deleted from its server on resume, so the
//! servers never keep a chunk twice. Keys inside: the file is 0600.
//!
//! An interrupted `xftp recv` keeps the content it decrypted so far in a
//! hidden file beside its output, with a state file whose records are
//! checkpoints at chunk boundaries (fsynced after the content). A rerun
//! replays that content through the cipher, which checks it against the
//! chunk digests and rebuilds the hashes, and downloads only the rest.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use smp_core::address::ServerAddress;
use smp_core::crypto::digest::sha256;
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::encoding::string::{b64_decode, b64_encode};
use smp_core::file::crypto::Checkpoint;
use smp_core::file::description::{FileDescription, ReplicaKey, UploadedChunk};
use zeroize::Zeroizing;

use crate::error::CliError;

const MAGIC: &str = "xftp send state 1";

/// A chunk's place in the send: a data chunk or a parity chunk, by number.
pub type ChunkRef = (bool, u32);

/// A copy whose upload started but was not recorded as finished.
pub struct Orphan {
    pub server: ServerAddress,
    pub sender_id: Vec<u8>,
    pub sender_key: ReplicaKey,
}

/// What the state file says was done.
pub struct Resumed {
    pub key: SbKey,
    pub nonce: CbNonce,
    /// Finished copies of each chunk, in the order they finished.
    pub uploaded: BTreeMap<ChunkRef, Vec<UploadedChunk>>,
    pub orphans: Vec<Orphan>,
}

/// The open state file of a send in progress.
pub struct SendState {
    path: PathBuf,
    file: std::sync::Mutex<std::fs::File>,
    /// Whether any chunk record is in the file (this run's or an earlier one's).
    records: std::sync::atomic::AtomicBool,
}

/// Where the state of sending `name` into `out_dir` lives.
pub fn state_path(out_dir: &Path, name: &str) -> PathBuf {
    out_dir.join(format!("{name}.xftp-send-state"))
}

/// The lines identifying a send: a rerun must give the same ones.
pub fn identity(file: &Path, fields: &[(&str, String)]) -> Result<Vec<String>, CliError> {
    let meta = std::fs::metadata(file)
        .map_err(|e| CliError::io(format!("reading {}", file.display()), e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut lines = vec![
        format!("size {}", meta.len()),
        format!("modified {modified}"),
    ];
    lines.extend(fields.iter().map(|(k, v)| format!("{k} {v}")));
    Ok(lines)
}

impl SendState {
    /// Starts a new state file (replacing none: a leftover one is the
    /// caller's to resume or remove).
    pub fn begin(
        path: &Path,
        identity: &[String],
        key: &SbKey,
        nonce: &CbNonce,
    ) -> Result<Self, CliError> {
        let mut text = Zeroizing::new(format!("{MAGIC}\n"));
        for l in identity {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str(&format!(
            "key {}\nnonce {}\n",
            b64_encode(&key.0),
            b64_encode(&nonce.0)
        ));
        let mut o = std::fs::OpenOptions::new();
        o.append(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let io = |e| CliError::io(format!("writing {}", path.display()), e);
        let mut file = o.open(path).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_parent(path);
        Ok(Self {
            path: path.to_path_buf(),
            file: std::sync::Mutex::new(file),
            records: false.into(),
        })
    }

    /// Opens the state an earlier run left at `path`, if any, and checks
    /// that it is the same send.
    pub fn resume(path: &Path, identity: &[String]) -> Result<Option<(Self, Resumed)>, CliError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CliError::io(format!("reading {}", path.display()), e)),
        };
        // A record cut off by the kill was never acted on: drop it.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let corrupt = |why: &str| CliError::ResumeState {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let text = std::str::from_utf8(&bytes[..whole]).map_err(|_| corrupt("not text"))?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(corrupt("not an xftp send state"));
        }
        for want in identity {
            let found = lines.next().ok_or_else(|| corrupt("cut short"))?;
            if found != want {
                let what = want.split(' ').next().unwrap_or_default();
                return Err(CliError::ResumeMismatch {
                    path: path.to_path_buf(),
                    what: what_differs(what),
                });
            }
        }
        let mut field = |name: &str| -> Result<Zeroizing<Vec<u8>>, CliError> {
            let l = lines.next().ok_or_else(|| corrupt("cut short"))?;
            let v = l
                .strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .ok_or_else(|| corrupt("no key"))?;
            b64_decode(v)
                .map(Zeroizing::new)
                .map_err(|_| corrupt("bad key"))
        };
        let key = SbKey::from_slice(&field("key")?).map_err(|_| corrupt("bad key"))?;
        let nonce = field("nonce")?;
        if nonce.len() != 24 {
            return Err(corrupt("bad nonce"));
        }
        let nonce = CbNonce::normalize(&nonce);
        let mut uploaded: BTreeMap<ChunkRef, Vec<UploadedChunk>> = BTreeMap::new();
        let mut created: Vec<(ChunkRef, Orphan)> = Vec::new();
        for l in lines {
            let bad = || corrupt("a malformed record");
            let mut w = l.split(' ');
            let kind = w.next().ok_or_else(bad)?;
            let part = match w.next() {
                Some("d") => false,
                Some("p") => true,
                _ => return Err(bad()),
            };
            let no: u32 = w.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let server: ServerAddress = w.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let mut bin = || w.next().and_then(|s| b64_decode(s).ok()).ok_or_else(bad);
            let sender_id = bin()?;
            let sender_key = ReplicaKey::from_der(&Zeroizing::new(bin()?)).map_err(|_| bad())?;
            match kind {
                "created" => created.push((
                    (part, no),
                    Orphan {
                        server,
                        sender_id,
                        sender_key,
                    },
                )),
                "uploaded" => {
                    let mut num = || w.next().and_then(|s| s.parse::<u32>().ok()).ok_or_else(bad);
                    let chunk_size = num()?;
                    let digest = w.next().and_then(|s| b64_decode(s).ok()).ok_or_else(bad)?;
                    let mut recipients = Vec::new();
                    for r in w {
                        let (id, k) = r.split_once(':').ok_or_else(bad)?;
                        let id = b64_decode(id).map_err(|_| bad())?;
                        let k = Zeroizing::new(b64_decode(k).map_err(|_| bad())?);
                        recipients.push((id, ReplicaKey::from_der(&k).map_err(|_| bad())?));
                    }
                    created.retain(|(_, o)| o.server != server || o.sender_id != sender_id);
                    uploaded.entry((part, no)).or_default().push(UploadedChunk {
                        chunk_no: no,
                        chunk_size,
                        digest,
                        server,
                        sender_id,
                        sender_key,
                        recipients,
                    });
                }
                _ => return Err(bad()),
            }
        }
        let io = |e| CliError::io(format!("writing {}", path.display()), e);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io)?;
        file.set_len(whole as u64).map_err(io)?;
        let state = Self {
            path: path.to_path_buf(),
            file: std::sync::Mutex::new(file),
            records: (!uploaded.is_empty() || !created.is_empty()).into(),
        };
        let resumed = Resumed {
            key,
            nonce,
            uploaded,
            orphans: created.into_iter().map(|(_, o)| o).collect(),
        };
        Ok(Some((state, resumed)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Before a copy's bytes are sent: whoever finds this record without
    /// its `uploaded` one deletes the copy.
    pub fn created(
        &self,
        chunk: ChunkRef,
        server: &ServerAddress,
        sender_id: &[u8],
        sender_key: &ReplicaKey,
    ) -> Result<(), CliError> {
        let line = Zeroizing::new(format!(
            "created {} {} {server} {} {}\n",
            if chunk.0 { "p" } else { "d" },
            chunk.1,
            b64_encode(sender_id),
            b64_encode(sender_key.as_der()),
        ));
        self.append(&line)
    }

    /// A finished copy, with everything its description lines need.
    pub fn uploaded(&self, parity: bool, c: &UploadedChunk) -> Result<(), CliError> {
        let mut line = Zeroizing::new(format!(
            "uploaded {} {} {} {} {} {} {}",
            if parity { "p" } else { "d" },
            c.chunk_no,
            c.server,
            b64_encode(&c.sender_id),
            b64_encode(c.sender_key.as_der()),
            c.chunk_size,
            b64_encode(&c.digest),
        ));
        for (id, k) in &c.recipients {
            line.push_str(&format!(" {}:{}", b64_encode(id), b64_encode(k.as_der())));
        }
        line.push('\n');
        self.append(&line)
    }

    pub fn has_records(&self) -> bool {
        self.records.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn append(&self, line: &str) -> Result<(), CliError> {
        self.records
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |e| CliError::io(format!("writing {}", self.path.display()), e);
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)
    }

    /// The send finished: its state goes.
    pub fn finish(&self) -> Result<(), CliError> {
        std::fs::remove_file(&self.path)
            .map_err(|e| CliError::io(format!("removing {}", self.path.display()), e))?;
        sync_parent(&self.path);
        Ok(())
    }
}

fn what_differs(field: &str) -> String {
    match field {
        "size" | "modified" => "the file changed".into(),
        "servers" => "the server list differs".into(),
        other => format!("the {other} option differs"),
    }
}

/// Makes a created or removed directory entry durable (best effort: not
/// every file system can sync a directory).
fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

const RECV_MAGIC: &str = "xftp recv state 1";

/// The hidden content file and state file of receiving the file with this
/// description into `dir`. Named after the file's digest, so any
/// description of the same file (another recipient's, a web link) resumes
/// it; hashed again so the name says nothing about the file.
pub fn recv_paths(dir: &Path, desc: &FileDescription) -> (PathBuf, PathBuf) {
    let id: String = sha256(&desc.digest)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (
        dir.join(format!(".xftp-recv-{id}.part")),
        dir.join(format!(".xftp-recv-{id}.state")),
    )
}

/// The lines a receive's state starts with: the encrypted file and how it
/// is cut into chunks (a checkpoint is only good for the same cut).
pub fn recv_identity(desc: &FileDescription) -> Vec<String> {
    let mut cut = Vec::new();
    for c in &desc.chunks {
        cut.extend_from_slice(&c.chunk_size.to_be_bytes());
        cut.extend_from_slice(&c.digest);
    }
    vec![
        format!("size {}", desc.size),
        format!("digest {}", b64_encode(&desc.digest)),
        format!("chunks {}", b64_encode(&sha256(&cut))),
    ]
}

/// The open, locked state file of a receive in progress.
pub struct RecvState {
    path: PathBuf,
    file: std::fs::File,
    records: bool,
}

/// What an unusable state file was, for the note that says the receive
/// starts again.
pub enum RecvResume {
    /// No state: a fresh start.
    None,
    /// A state file this receive can use, with its last checkpoint if any.
    Found(RecvState, Option<Checkpoint>),
    /// A state file that cannot be used (still locked, to be reset), and why.
    Unusable(RecvState, String),
}

impl RecvState {
    /// Starts a state file at `path`, replacing any left there.
    pub fn begin(path: &Path, identity: &[String]) -> Result<Self, CliError> {
        let file = open_locked(path, true)?.ok_or_else(|| vanished(path))?;
        let mut state = Self {
            path: path.to_path_buf(),
            file,
            records: false,
        };
        state.reset(identity)?;
        sync_parent(path);
        Ok(state)
    }

    /// Empties the state down to its identity: a fresh start.
    pub fn reset(&mut self, identity: &[String]) -> Result<(), CliError> {
        let io = |e| CliError::io(format!("writing {}", self.path.display()), e);
        self.file.set_len(0).map_err(io)?;
        let mut text = format!("{RECV_MAGIC}\n");
        for l in identity {
            text.push_str(l);
            text.push('\n');
        }
        std::io::Seek::seek(&mut self.file, std::io::SeekFrom::Start(0)).map_err(io)?;
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_all().map_err(io)?;
        self.records = false;
        Ok(())
    }

    /// Opens the state a receive left at `path`, if any.
    pub fn resume(path: &Path, identity: &[String]) -> Result<RecvResume, CliError> {
        let io = |e| CliError::io(format!("reading {}", path.display()), e);
        let Some(mut file) = open_locked(path, false)? else {
            return Ok(RecvResume::None);
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io)?;
        let mut state = Self {
            path: path.to_path_buf(),
            file,
            records: false,
        };
        // A record cut off by the kill was never acted on: drop it.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let unusable = |state, why: &str| Ok(RecvResume::Unusable(state, why.to_string()));
        let Ok(text) = std::str::from_utf8(&bytes[..whole]) else {
            return unusable(state, "its state is not text");
        };
        let mut lines = text.lines();
        if lines.next() != Some(RECV_MAGIC) {
            return unusable(state, "its state is not an xftp recv state");
        }
        for want in identity {
            if lines.next() != Some(want.as_str()) {
                return unusable(state, "its state is of another cut of the file");
            }
        }
        let mut last = None;
        for l in lines {
            match parse_checkpoint(l) {
                Some(cp) => last = Some(cp),
                None => return unusable(state, "its state has a malformed record"),
            }
        }
        state.file.set_len(whole as u64).map_err(io)?;
        state.records = last.is_some();
        Ok(RecvResume::Found(state, last))
    }

    /// Appends a checkpoint; the content it covers must already be durable.
    pub fn record(&mut self, chunk: usize, cp: &Checkpoint) -> std::io::Result<()> {
        let line = format!(
            "chunk {} content {} padding {} head {}\n",
            chunk + 1,
            cp.content,
            cp.padding,
            b64_encode(&cp.head)
        );
        std::io::Seek::seek(&mut self.file, std::io::SeekFrom::End(0))?;
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        self.records = true;
        Ok(())
    }

    /// Whether a checkpoint is on record, so the content file is worth keeping.
    pub fn has_records(&self) -> bool {
        self.records
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The receive finished or is given up: the state goes.
    pub fn remove(&self) -> Result<(), CliError> {
        remove_if_present(&self.path)?;
        sync_parent(&self.path);
        Ok(())
    }
}

fn parse_checkpoint(line: &str) -> Option<Checkpoint> {
    let mut w = line.split(' ');
    let mut field = |name: &str| (w.next() == Some(name)).then(|| w.next()).flatten();
    let _chunk: usize = field("chunk")?.parse().ok()?;
    let content = field("content")?.parse().ok()?;
    let padding = field("padding")?.parse().ok()?;
    let head = b64_decode(field("head")?).ok()?;
    Some(Checkpoint {
        head,
        content,
        padding,
    })
}

/// A state or content file is removed; one that is not there is fine.
pub fn remove_if_present(path: &Path) -> Result<(), CliError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::io(format!("removing {}", path.display()), e)),
    }
}

/// [`open_own`] creating the file: the name went away while it was opened.
pub fn vanished(path: &Path) -> CliError {
    CliError::io(
        format!("creating {}", path.display()),
        std::io::ErrorKind::NotFound.into(),
    )
}

/// Opens `path` read-write (creating it, 0600, when asked) and checks that
/// the name still leads to this very file, a regular one. The names of a
/// receive's files can be predicted from its description, so a symlink
/// planted under one is refused before anything is written through it.
pub fn open_own(path: &Path, create: bool) -> Result<Option<std::fs::File>, CliError> {
    let io = |e| CliError::io(format!("opening {}", path.display()), e);
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(create);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = match o.open(path) {
        Ok(f) => f,
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    match same_file(path, &file).map_err(io)? {
        Some(true) => Ok(Some(file)),
        Some(false) => Err(io(std::io::Error::other(
            "not a regular file of this receive (a link?)",
        ))),
        None => Ok(None),
    }
}

/// Whether `path` names `file` itself (not a link to it); `None` when
/// the name is gone.
fn same_file(path: &Path, file: &std::fs::File) -> std::io::Result<Option<bool>> {
    let named = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let open = file.metadata()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some(
            named.file_type().is_file() && named.dev() == open.dev() && named.ino() == open.ino(),
        ))
    }
    #[cfg(not(unix))]
    Ok(Some(named.file_type().is_file() && open.is_file()))
}

/// Opens and locks a state file. Two receives of one file into one
/// directory would write over each other's content, so the second is
/// refused while the first runs; a lock won on a file that a finishing run
/// removed meanwhile is let go and the name opened again.
fn open_locked(path: &Path, create: bool) -> Result<Option<std::fs::File>, CliError> {
    for _ in 0..8 {
        let Some(file) = open_own(path, create)? else {
            return Ok(None);
        };
        lock(&file, path)?;
        let still = same_file(path, &file)
            .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
        if still == Some(true) {
            return Ok(Some(file));
        }
        if !create && still.is_none() {
            return Ok(None);
        }
    }
    Err(CliError::ReceiveInProgress(
        path.parent().map(Path::to_path_buf).unwrap_or_default(),
    ))
}

/// Two receives of one file into one directory would write over each
/// other's content: the second is refused while the first runs.
fn lock(file: &std::fs::File, path: &Path) -> Result<(), CliError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::ReceiveInProgress(
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(CliError::io(format!("locking {}", path.display()), e))
        }
    }
}
