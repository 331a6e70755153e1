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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use smp_core::address::ServerAddress;
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::encoding::string::{b64_decode, b64_encode};
use smp_core::file::description::{ReplicaKey, UploadedChunk};
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
