//! XFTP file descriptions: the model, the reference's YAML text (written
//! byte-for-byte like simplexmq's `strEncode`, which is `Data.Yaml.encode`),
//! reading it back with the reference's folding and validation rules, and
//! building the recipient/sender descriptions of an upload.
//!
//! Writing needs only `alloc`; reading needs a YAML parser and so `std`.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::str::FromStr;

use crate::address::{AddressError, ServerAddress, b64_token_len};
use crate::crypto;
use crate::encoding::string::{b64_decode, b64_encode};

/// Why a description could not be read, or is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    #[error("not a YAML document: {0}")]
    Yaml(String),
    #[error("a description must be a YAML mapping")]
    NotAMapping,
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    #[error("field {field:?} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("unknown party {0:?} (expected recipient or sender)")]
    UnknownParty(String),
    #[error("incorrect XFTP party: expected a {expected} description, got {found}")]
    WrongParty {
        expected: FileParty,
        found: FileParty,
    },
    #[error("field {field:?}: {source}")]
    FileSize {
        field: &'static str,
        source: FileSizeError,
    },
    #[error("field {field:?} does not fit its type")]
    SizeOutOfRange { field: &'static str },
    #[error("field {0:?} is not valid base64url")]
    Base64(&'static str),
    #[error("key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("server {server:?}: {source}")]
    Server {
        server: String,
        source: AddressError,
    },
    #[error("server {0:?} carries basic auth (a password), not allowed in descriptions")]
    ServerWithBasicAuth(String),
    #[error("invalid replica line {0:?}")]
    ReplicaLine(String),
    #[error("replica key is not a PKCS#8 Ed25519, Ed448 or X25519 private key")]
    ReplicaKey,
    #[error("no digest for chunk {0}")]
    NoDigestForChunk(u32),
    #[error("different size or digest in replicas of chunk {0}")]
    DifferentSizeOrDigest(u32),
    #[error("parity {data}:{parity} is not possible: both at least 1, at most 256 together")]
    ParityScheme { data: u16, parity: u16 },
    #[error("the parity block lists {found} parity chunks, expected {expected} numbered 1..")]
    ParityChunks { expected: usize, found: usize },
    #[error("parity chunk {0} is not as long as the longest data chunk of its group")]
    ParityChunkSize(u32),
    #[error("chunk {0} has no replica: no server holds it")]
    NoReplicas(u32),
    #[error("chunk numbers are not sequential (expected 1..{0})")]
    ChunkNumbersNotSequential(usize),
    #[error("chunks total size {chunks} is different than file size {file}")]
    TotalSizeMismatch { file: u64, chunks: u64 },
    #[error("chunk {chunk_no} has {found} recipients, expected {expected}")]
    RecipientCount {
        chunk_no: u32,
        expected: usize,
        found: usize,
    },
}

/// Who a description is for: the recipient downloads, the sender deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileParty {
    Recipient,
    Sender,
}

impl FileParty {
    pub fn as_str(self) -> &'static str {
        match self {
            FileParty::Recipient => "recipient",
            FileParty::Sender => "sender",
        }
    }
}

impl fmt::Display for FileParty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FileParty {
    type Err = DescriptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "recipient" => Ok(FileParty::Recipient),
            "sender" => Ok(FileParty::Sender),
            _ => Err(DescriptionError::UnknownParty(s.to_string())),
        }
    }
}

/// Why a `FileSize` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileSizeError {
    #[error("{0:?} is not a size (expected digits, optionally followed by kb, mb or gb)")]
    Syntax(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// A byte count in the reference's `FileSize` text: the largest of
/// `gb`/`mb`/`kb` that divides it exactly, else plain decimal (so 0 is `0gb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileSize(pub u64);

impl fmt::Display for FileSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if !b.is_multiple_of(1024) {
            write!(f, "{b}")
        } else if !(b / 1024).is_multiple_of(1024) {
            write!(f, "{}kb", b / 1024)
        } else if !(b / (1024 * 1024)).is_multiple_of(1024) {
            write!(f, "{}mb", b / (1024 * 1024))
        } else {
            write!(f, "{}gb", b / (1024 * 1024 * 1024))
        }
    }
}

impl FromStr for FileSize {
    type Err = FileSizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_file_size_prefix(s)? {
            Some((v, used)) if used == s.len() => Ok(FileSize(v)),
            _ => Err(FileSizeError::Syntax(s.to_string())),
        }
    }
}

/// Digits with an optional unit at the start of `s`; `None` without digits.
fn parse_file_size_prefix(s: &str) -> Result<Option<(u64, usize)>, FileSizeError> {
    let b = s.as_bytes();
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return Ok(None);
    }
    let overflow = || FileSizeError::Overflow(s.to_string());
    let v = b[..n].iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let v = v.ok_or_else(overflow)?;
    let (mult, used) = match &b[n..] {
        [b'g', b'b', ..] => (1u64 << 30, n + 2),
        [b'm', b'b', ..] => (1 << 20, n + 2),
        [b'k', b'b', ..] => (1 << 10, n + 2),
        _ => (1, n),
    };
    Ok(Some((v.checked_mul(mult).ok_or_else(overflow)?, used)))
}

/// Algorithm of a replica's private authorization key (Ed25519, Ed448 or X25519).
pub use crate::crypto::keys::KeyAlgorithm;

/// A replica's private key as PKCS#8 DER, the form descriptions carry.
/// Only the RFC 8410 one-key forms the reference writes are accepted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReplicaKey {
    der: Vec<u8>,
    alg: KeyAlgorithm,
}

impl fmt::Debug for ReplicaKey {
    // A private key: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaKey({:?}, ..)", self.alg)
    }
}

impl ReplicaKey {
    pub fn from_der(der: &[u8]) -> Result<Self, DescriptionError> {
        // Exactly the form the reference writes: re-encoding gives the same bytes.
        let alg = match crypto::der::decode_pkcs8(der) {
            Ok((alg, raw))
                if alg != KeyAlgorithm::X448 && crypto::der::encode_pkcs8(alg, raw) == der =>
            {
                alg
            }
            _ => return Err(DescriptionError::ReplicaKey),
        };
        Ok(ReplicaKey {
            der: der.to_vec(),
            alg,
        })
    }
    /// Wraps a raw Ed25519 private key (seed) in its PKCS#8 DER.
    pub fn from_ed25519_seed(seed: &[u8; 32]) -> Self {
        ReplicaKey {
            der: crypto::der::encode_pkcs8(KeyAlgorithm::Ed25519, seed),
            alg: KeyAlgorithm::Ed25519,
        }
    }
    pub fn as_der(&self) -> &[u8] {
        &self.der
    }
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }
    /// The raw private key bytes after the DER header.
    pub fn raw(&self) -> &[u8] {
        &self.der[16..]
    }
}

/// One copy of a chunk on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunkReplica {
    pub server: ServerAddress,
    /// The party's ID for the chunk on that server.
    pub replica_id: Vec<u8>,
    /// The party's private key for that ID.
    pub replica_key: ReplicaKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk {
    pub chunk_no: u32,
    pub chunk_size: u32,
    /// SHA-256 of the encrypted chunk.
    pub digest: Vec<u8>,
    pub replicas: Vec<FileChunkReplica>,
}

/// Present when the described file is itself a (direct) description of the real file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectFileInfo {
    /// Encrypted size of the real file.
    pub size: u64,
    /// SHA-512 of the real encrypted file.
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDescription {
    pub party: FileParty,
    /// Total encrypted size (not the plaintext size).
    pub size: u64,
    /// SHA-512 of the encrypted file.
    pub digest: Vec<u8>,
    pub key: [u8; 32],
    pub nonce: [u8; 24],
    /// The default chunk size: chunks of this size carry no size of their own in YAML.
    pub chunk_size: u32,
    pub chunks: Vec<FileChunk>,
    pub redirect: Option<RedirectFileInfo>,
    /// Reed–Solomon parity chunks (ours; the reference's parsers skip it).
    pub parity: Option<Parity>,
}

/// Reed–Solomon parity over the data chunks, so that a group of `data`
/// chunks survives the loss of any `parity` of its chunks. Groups are runs
/// of consecutive data chunks: chunks 1..=K are group 1, and so on; the
/// last group may be shorter. Parity chunks are numbered on their own from
/// 1, group g's being (g-1)·M+1 ..= g·M. Each parity chunk is as long as
/// its group's longest data chunk; shorter data chunks count as padded
/// with zeros, and shard j of a group is its j-th data chunk, then its
/// parity chunks in order (`reed-solomon-erasure`'s GF(2^8) code).
///
/// In YAML it is the top-level `parity:` mapping (`data`, `parity`, and
/// `replicas` written as the file's own), placed before `party:`: the
/// reference CLI (aeson, unknown keys ignored) and xftp-web (a line
/// reader that reads only unindented keys and the `replicas:` block) both
/// skip it and download the data chunks as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parity {
    /// Data chunks per group (K).
    pub data: u16,
    /// Parity chunks per group (M).
    pub parity: u16,
    pub chunks: Vec<FileChunk>,
}

impl Parity {
    /// GF(2^8) codes have at most 256 shards per group.
    pub const MAX_SHARDS: usize = 256;

    /// Checks K and M before anything is encoded.
    pub fn check_scheme(data: u16, parity: u16) -> Result<(), DescriptionError> {
        if data == 0 || parity == 0 || usize::from(data) + usize::from(parity) > Self::MAX_SHARDS {
            return Err(DescriptionError::ParityScheme { data, parity });
        }
        Ok(())
    }

    /// Groups over `n` data chunks.
    pub fn groups(data: u16, n: usize) -> usize {
        n.div_ceil(usize::from(data.max(1)))
    }

    /// Indexes (0-based) of group `g`'s data chunks among `n`.
    pub fn group_data(&self, g: usize, n: usize) -> core::ops::Range<usize> {
        let k = usize::from(self.data);
        (g * k).min(n)..((g + 1) * k).min(n)
    }

    /// Indexes (0-based) of group `g`'s parity chunks.
    pub fn group_parity(&self, g: usize) -> core::ops::Range<usize> {
        let m = usize::from(self.parity);
        g * m..(g + 1) * m
    }

    /// The group of data chunk index `i`.
    pub fn group_of(&self, i: usize) -> usize {
        i / usize::from(self.data)
    }

    /// Every group has its M parity chunks, numbered in order, each as long
    /// as the group's longest data chunk and stored somewhere.
    pub fn validate(&self, data_chunks: &[FileChunk]) -> Result<(), DescriptionError> {
        Self::check_scheme(self.data, self.parity)?;
        let groups = Self::groups(self.data, data_chunks.len());
        let expected = groups * usize::from(self.parity);
        let sequential = self
            .chunks
            .iter()
            .enumerate()
            .all(|(i, c)| usize::try_from(c.chunk_no).ok() == Some(i + 1));
        if self.chunks.len() != expected || !sequential {
            return Err(DescriptionError::ParityChunks {
                expected,
                found: self.chunks.len(),
            });
        }
        for g in 0..groups {
            let longest = data_chunks[self.group_data(g, data_chunks.len())]
                .iter()
                .map(|c| c.chunk_size)
                .max()
                .unwrap_or(0);
            for c in &self.chunks[self.group_parity(g)] {
                if c.chunk_size != longest {
                    return Err(DescriptionError::ParityChunkSize(c.chunk_no));
                }
                if c.replicas.is_empty() {
                    return Err(DescriptionError::NoReplicas(c.chunk_no));
                }
            }
        }
        Ok(())
    }
}

/// A description that passed [`FileDescription::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidFileDescription(FileDescription);

impl ValidFileDescription {
    pub fn get(&self) -> &FileDescription {
        &self.0
    }
    pub fn into_inner(self) -> FileDescription {
        self.0
    }
}

impl core::ops::Deref for ValidFileDescription {
    type Target = FileDescription;
    fn deref(&self) -> &FileDescription {
        &self.0
    }
}

/// The reference's `nonce` reading: longer is cut, shorter is zero-padded.
pub fn normalize_nonce(bytes: &[u8]) -> [u8; 24] {
    let mut n = [0u8; 24];
    let len = bytes.len().min(24);
    n[..len].copy_from_slice(&bytes[..len]);
    n
}

/// A replica line as it appears in YAML, before folding into chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReplica {
    pub chunk_no: u32,
    pub server: ServerAddress,
    pub replica_id: Vec<u8>,
    pub replica_key: ReplicaKey,
    pub digest: Option<Vec<u8>>,
    pub chunk_size: Option<u32>,
}

impl ServerReplica {
    /// `chunkNo:id:key[:digest][:size]`, the reference's `encodeServerReplica`.
    pub fn encode_line(&self) -> String {
        let mut s = alloc::format!(
            "{}:{}:{}",
            self.chunk_no,
            b64_encode(&self.replica_id),
            b64_encode(self.replica_key.as_der())
        );
        if let Some(d) = &self.digest {
            let _ = write!(s, ":{}", b64_encode(d));
        }
        if let Some(sz) = self.chunk_size {
            let _ = write!(s, ":{}", FileSize(u64::from(sz)));
        }
        s
    }

    /// The reference's `serverReplicaP` over the whole line, including its
    /// backtracking: a `:field` that is not valid base64 may still be a size.
    pub fn parse_line(server: &ServerAddress, line: &str) -> Result<Self, DescriptionError> {
        let bad = || DescriptionError::ReplicaLine(line.to_string());
        let b = line.as_bytes();
        let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let chunk_no: u32 = line[..n].parse().map_err(|_| bad())?;
        let mut i = n;
        let field = |i: &mut usize| -> Option<Vec<u8>> {
            if b.get(*i) != Some(&b':') {
                return None;
            }
            let len = b64_token_len(&b[*i + 1..]);
            let v = b64_decode(&line[*i + 1..*i + 1 + len]).ok()?;
            *i += 1 + len;
            Some(v)
        };
        let replica_id = field(&mut i).ok_or_else(bad)?;
        let key_der = field(&mut i).ok_or_else(bad)?;
        let replica_key = ReplicaKey::from_der(&key_der)?;
        let digest = field(&mut i);
        let mut chunk_size = None;
        if b.get(i) == Some(&b':')
            && let Ok(Some((v, used))) = parse_file_size_prefix(&line[i + 1..])
        {
            chunk_size = Some(u32::try_from(v).map_err(|_| bad())?);
            i += 1 + used;
        }
        if i != b.len() {
            return Err(bad());
        }
        Ok(ServerReplica {
            chunk_no,
            server: server.clone(),
            replica_id,
            replica_key,
            digest,
            chunk_size,
        })
    }
}

impl FileDescription {
    /// Fails unless the description is for `party` (the reference's `checkParty`).
    pub fn check_party(self, party: FileParty) -> Result<Self, DescriptionError> {
        if self.party == party {
            Ok(self)
        } else {
            Err(DescriptionError::WrongParty {
                expected: party,
                found: self.party,
            })
        }
    }

    /// The reference's `validateFileDescription`: chunks numbered exactly
    /// 1..n in order, and their sizes adding up to the file size; and every
    /// chunk somewhere (parsed YAML always is; a description built in code
    /// might not be).
    pub fn validate(self) -> Result<ValidFileDescription, DescriptionError> {
        if let Some(c) = self.chunks.iter().find(|c| c.replicas.is_empty()) {
            return Err(DescriptionError::NoReplicas(c.chunk_no));
        }
        let n = self.chunks.len();
        let sequential = self
            .chunks
            .iter()
            .enumerate()
            .all(|(i, c)| usize::try_from(c.chunk_no).ok() == Some(i + 1));
        if !sequential {
            return Err(DescriptionError::ChunkNumbersNotSequential(n));
        }
        let total = self
            .chunks
            .iter()
            .fold(0u64, |s, c| s.saturating_add(u64::from(c.chunk_size)));
        if total != self.size {
            return Err(DescriptionError::TotalSizeMismatch {
                file: self.size,
                chunks: total,
            });
        }
        if let Some(p) = &self.parity {
            p.validate(&self.chunks)?;
        }
        Ok(ValidFileDescription(self))
    }

    /// Replica lines in chunk order: digest only on a chunk's first replica,
    /// size only there and only when it differs from the default.
    pub fn unfold_replicas(&self) -> Vec<ServerReplica> {
        unfold(&self.chunks, self.chunk_size)
    }

    /// Replica lines grouped per server, groups in server order, lines
    /// keeping their order (the reference's stable `groupAllWith`).
    pub fn replicas_by_server(&self) -> Vec<(ServerAddress, Vec<ServerReplica>)> {
        by_server(self.unfold_replicas())
    }

    /// The YAML text exactly as the reference writes it.
    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        yaml_kv(
            &mut y,
            "",
            "chunkSize",
            &FileSize(u64::from(self.chunk_size)).to_string(),
        );
        yaml_kv(&mut y, "", "digest", &b64_encode(&self.digest));
        yaml_kv(&mut y, "", "key", &b64_encode(&self.key));
        yaml_kv(&mut y, "", "nonce", &b64_encode(&self.nonce));
        if let Some(p) = &self.parity {
            // Indented throughout: see [`Parity`] for why this place.
            y.push_str("parity:\n");
            let _ = writeln!(y, "  data: {}", p.data);
            let _ = writeln!(y, "  parity: {}", p.parity);
            write_groups(&mut y, "  ", &by_server(unfold(&p.chunks, self.chunk_size)));
        }
        yaml_kv(&mut y, "", "party", self.party.as_str());
        if let Some(r) = &self.redirect {
            y.push_str("redirect:\n");
            yaml_kv(&mut y, "  ", "digest", &b64_encode(&r.digest));
            // A JSON number in the reference, so never quoted.
            let _ = writeln!(y, "  size: {}", r.size);
        }
        write_groups(&mut y, "", &self.replicas_by_server());
        yaml_kv(&mut y, "", "size", &FileSize(self.size).to_string());
        y
    }

    /// Builds chunks from replica lines as the reference's
    /// `foldReplicasToChunks`: per chunk, all given sizes and digests must
    /// agree, one digest is required, a missing size means the default;
    /// chunks come out sorted by number, replicas in line order.
    pub fn fold_replicas(
        default_chunk_size: u32,
        replicas: Vec<ServerReplica>,
    ) -> Result<Vec<FileChunk>, DescriptionError> {
        let mut sizes: BTreeMap<u32, u32> = BTreeMap::new();
        let mut digests: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for r in &replicas {
            if let Some(s) = r.chunk_size
                && *sizes.entry(r.chunk_no).or_insert(s) != s
            {
                return Err(DescriptionError::DifferentSizeOrDigest(r.chunk_no));
            }
            if let Some(d) = &r.digest
                && *digests.entry(r.chunk_no).or_insert_with(|| d.clone()) != *d
            {
                return Err(DescriptionError::DifferentSizeOrDigest(r.chunk_no));
            }
        }
        let mut chunks: BTreeMap<u32, FileChunk> = BTreeMap::new();
        for r in replicas {
            let replica = FileChunkReplica {
                server: r.server,
                replica_id: r.replica_id,
                replica_key: r.replica_key,
            };
            if let Some(c) = chunks.get_mut(&r.chunk_no) {
                c.replicas.push(replica);
                continue;
            }
            let digest = digests
                .get(&r.chunk_no)
                .cloned()
                .ok_or(DescriptionError::NoDigestForChunk(r.chunk_no))?;
            let chunk_size = sizes
                .get(&r.chunk_no)
                .copied()
                .unwrap_or(default_chunk_size);
            chunks.insert(
                r.chunk_no,
                FileChunk {
                    chunk_no: r.chunk_no,
                    chunk_size,
                    digest,
                    replicas: alloc::vec![replica],
                },
            );
        }
        Ok(chunks.into_values().collect())
    }
}

/// What the sender knows about one uploaded copy of a chunk: where it is
/// and the sender's and every recipient's ID and key for it. A chunk kept
/// on several servers is several of these with the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedChunk {
    pub chunk_no: u32,
    pub chunk_size: u32,
    pub digest: Vec<u8>,
    pub server: ServerAddress,
    pub sender_id: Vec<u8>,
    pub sender_key: ReplicaKey,
    /// `(recipient ID, recipient key)`, one per recipient, same order for every chunk.
    pub recipients: Vec<(Vec<u8>, ReplicaKey)>,
}

/// The file-level fields shared by all descriptions of one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedFile {
    pub size: u64,
    pub digest: Vec<u8>,
    pub key: [u8; 32],
    pub nonce: [u8; 24],
    pub chunk_size: u32,
    pub redirect: Option<RedirectFileInfo>,
}

/// One description per recipient plus the sender's, as the reference CLI
/// makes them after an upload. Every copy must list the same number of
/// recipients; copies of one chunk (in `chunks` order, which is the order
/// of their replicas) must agree on its size and digest.
pub fn split_descriptions(
    file: &UploadedFile,
    chunks: &[UploadedChunk],
) -> Result<(Vec<FileDescription>, FileDescription), DescriptionError> {
    split_descriptions_with_parity(file, chunks, None)
}

/// Parity chunks of an upload: K, M and their copies, numbered as in [`Parity`].
#[derive(Debug, Clone, Copy)]
pub struct UploadedParity<'a> {
    pub data: u16,
    pub parity: u16,
    pub chunks: &'a [UploadedChunk],
}

/// [`split_descriptions`], with every description carrying the parity.
pub fn split_descriptions_with_parity(
    file: &UploadedFile,
    chunks: &[UploadedChunk],
    parity: Option<UploadedParity<'_>>,
) -> Result<(Vec<FileDescription>, FileDescription), DescriptionError> {
    let n = chunks.first().map_or(0, |c| c.recipients.len());
    let all = chunks.iter().chain(parity.iter().flat_map(|p| p.chunks));
    if let Some(c) = all.clone().find(|c| c.recipients.len() != n) {
        return Err(DescriptionError::RecipientCount {
            chunk_no: c.chunk_no,
            expected: n,
            found: c.recipients.len(),
        });
    }
    let data = copies_by_number(chunks)?;
    let parity_copies = match &parity {
        Some(p) => Some(copies_by_number(p.chunks)?),
        None => None,
    };
    let describe =
        |party, pick: &dyn Fn(&UploadedChunk) -> (Vec<u8>, ReplicaKey)| FileDescription {
            party,
            size: file.size,
            digest: file.digest.clone(),
            key: file.key,
            nonce: file.nonce,
            chunk_size: file.chunk_size,
            chunks: file_chunks(&data, pick),
            redirect: file.redirect.clone(),
            parity: parity
                .as_ref()
                .zip(parity_copies.as_ref())
                .map(|(p, copies)| Parity {
                    data: p.data,
                    parity: p.parity,
                    chunks: file_chunks(copies, pick),
                }),
        };
    let recipients = (0..n)
        .map(|r| describe(FileParty::Recipient, &|c| c.recipients[r].clone()))
        .collect();
    let sender = describe(FileParty::Sender, &|c| {
        (c.sender_id.clone(), c.sender_key.clone())
    });
    Ok((recipients, sender))
}

/// Copies by chunk number, numbers ascending, copies in the given order;
/// the copies of one chunk must agree on its size and digest.
fn copies_by_number(
    chunks: &[UploadedChunk],
) -> Result<BTreeMap<u32, Vec<&UploadedChunk>>, DescriptionError> {
    let mut by_no: BTreeMap<u32, Vec<&UploadedChunk>> = BTreeMap::new();
    for c in chunks {
        let copies = by_no.entry(c.chunk_no).or_default();
        if let Some(first) = copies.first()
            && (first.chunk_size != c.chunk_size || first.digest != c.digest)
        {
            return Err(DescriptionError::DifferentSizeOrDigest(c.chunk_no));
        }
        copies.push(c);
    }
    Ok(by_no)
}

/// One party's view of grouped copies: its ID and key on each.
fn file_chunks(
    by_no: &BTreeMap<u32, Vec<&UploadedChunk>>,
    pick: &dyn Fn(&UploadedChunk) -> (Vec<u8>, ReplicaKey),
) -> Vec<FileChunk> {
    by_no
        .values()
        .map(|copies| FileChunk {
            chunk_no: copies[0].chunk_no,
            chunk_size: copies[0].chunk_size,
            digest: copies[0].digest.clone(),
            replicas: copies
                .iter()
                .map(|c| {
                    let (replica_id, replica_key) = pick(c);
                    FileChunkReplica {
                        server: c.server.clone(),
                        replica_id,
                        replica_key,
                    }
                })
                .collect(),
        })
        .collect()
}

/// Chunks into replica lines (see [`FileDescription::unfold_replicas`]).
fn unfold(chunks: &[FileChunk], default_size: u32) -> Vec<ServerReplica> {
    let mut out = Vec::new();
    for c in chunks {
        for (i, r) in c.replicas.iter().enumerate() {
            let first = i == 0;
            out.push(ServerReplica {
                chunk_no: c.chunk_no,
                server: r.server.clone(),
                replica_id: r.replica_id.clone(),
                replica_key: r.replica_key.clone(),
                digest: first.then(|| c.digest.clone()),
                chunk_size: (first && c.chunk_size != default_size).then_some(c.chunk_size),
            });
        }
    }
    out
}

fn by_server(mut all: Vec<ServerReplica>) -> Vec<(ServerAddress, Vec<ServerReplica>)> {
    all.sort_by(|a, b| a.server.cmp(&b.server));
    let mut groups: Vec<(ServerAddress, Vec<ServerReplica>)> = Vec::new();
    for r in all {
        match groups.last_mut() {
            Some((s, g)) if *s == r.server => g.push(r),
            _ => groups.push((r.server.clone(), alloc::vec![r])),
        }
    }
    groups
}

/// `replicas:` and its per-server groups, at `indent`.
fn write_groups(y: &mut String, indent: &str, groups: &[(ServerAddress, Vec<ServerReplica>)]) {
    if groups.is_empty() {
        let _ = writeln!(y, "{indent}replicas: []");
        return;
    }
    let _ = writeln!(y, "{indent}replicas:");
    let inner = alloc::format!("{indent}  ");
    for (server, lines) in groups {
        let _ = writeln!(y, "{indent}- chunks:");
        for l in lines {
            yaml_item(y, &inner, &l.encode_line());
        }
        yaml_kv(y, &inner, "server", &server.to_string());
    }
}

// ---------------------------------------------------------------- YAML text

fn yaml_kv(out: &mut String, indent: &str, key: &str, value: &str) {
    out.push_str(indent);
    out.push_str(key);
    out.push(':');
    if !value.is_empty() {
        out.push(' ');
    }
    yaml_scalar(out, value);
    out.push('\n');
}

fn yaml_item(out: &mut String, indent: &str, value: &str) {
    out.push_str(indent);
    out.push('-');
    if !value.is_empty() {
        out.push(' ');
    }
    yaml_scalar(out, value);
    out.push('\n');
}

/// Words that Data.Yaml quotes because they would read back as bool or null.
const SPECIAL_WORDS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~", "*",
];

/// Data.Yaml's `isNumeric`: `0x<hex>`, `0o<octal>` or `[+-]?d+(.d+)?([eE][+-]?d+)?`.
pub fn yaml_is_numeric(s: &str) -> bool {
    fn digits(b: &[u8]) -> usize {
        b.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    if let Some(h) = s.strip_prefix("0x") {
        return !h.is_empty() && h.bytes().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(o) = s.strip_prefix("0o") {
        return !o.is_empty() && o.bytes().all(|c| (b'0'..=b'7').contains(&c));
    }
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let n = digits(&b[i..]);
    if n == 0 {
        return false;
    }
    i += n;
    if b.get(i) == Some(&b'.') {
        let n = digits(&b[i + 1..]);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let n = digits(&b[j..]);
        if n > 0 {
            i = j + n;
        }
    }
    i == b.len()
}

/// Whether Data.Yaml single-quotes `s` to keep it a string.
pub fn yaml_is_special_string(s: &str) -> bool {
    SPECIAL_WORDS.contains(&s) || yaml_is_numeric(s)
}

/// libyaml's notion of a printable character.
fn yaml_printable(c: char) -> bool {
    matches!(c as u32, 0x0a | 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfffd) && c != '\u{feff}'
}

fn yaml_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// How libyaml writes a plain-styled scalar in block context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
}

/// The style the reference's encoder ends up with for a string value in a
/// block mapping or sequence: Data.Yaml asks for single quotes on special
/// strings and plain otherwise, and libyaml overrides plain when the text
/// would not read back as the same string.
pub fn yaml_scalar_style(s: &str) -> ScalarStyle {
    let chars: Vec<char> = s.chars().collect();
    // Breaks and unprintables: double quotes (Data.Yaml would use a literal
    // block for '\n'; nothing a description holds can contain one).
    if chars.iter().any(|&c| !yaml_printable(c) || yaml_break(c)) {
        return ScalarStyle::DoubleQuoted;
    }
    if yaml_is_special_string(s) {
        return ScalarStyle::SingleQuoted;
    }
    if chars.is_empty() {
        return ScalarStyle::Plain;
    }
    let blankz = |i: usize| chars.get(i).is_none_or(|&c| c == ' ' || c == '\t');
    let mut indicator = s.starts_with("---") || s.starts_with("...");
    for (i, &c) in chars.iter().enumerate() {
        if i == 0 {
            indicator |=
                "#,[]{}&*!|>'\"%@`".contains(c) || (matches!(c, '?' | ':' | '-') && blankz(1));
        } else {
            indicator |= (c == ':' && blankz(i + 1)) || (c == '#' && chars[i - 1] == ' ');
        }
    }
    let edge_space = chars[0] == ' ' || chars[chars.len() - 1] == ' ';
    if indicator || edge_space {
        ScalarStyle::SingleQuoted
    } else {
        ScalarStyle::Plain
    }
}

fn yaml_scalar(out: &mut String, s: &str) {
    match yaml_scalar_style(s) {
        ScalarStyle::Plain => out.push_str(s),
        ScalarStyle::SingleQuoted => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        ScalarStyle::DoubleQuoted => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\0' => out.push_str("\\0"),
                    '\u{7}' => out.push_str("\\a"),
                    '\u{8}' => out.push_str("\\b"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\u{b}' => out.push_str("\\v"),
                    '\u{c}' => out.push_str("\\f"),
                    '\r' => out.push_str("\\r"),
                    '\u{1b}' => out.push_str("\\e"),
                    '\u{85}' => out.push_str("\\N"),
                    '\u{2028}' => out.push_str("\\L"),
                    '\u{2029}' => out.push_str("\\P"),
                    c if yaml_printable(c) => out.push(c),
                    c if (c as u32) <= 0xff => {
                        let _ = write!(out, "\\x{:02X}", c as u32);
                    }
                    c if (c as u32) <= 0xffff => {
                        let _ = write!(out, "\\u{:04X}", c as u32);
                    }
                    c => {
                        let _ = write!(out, "\\U{:08X}", c as u32);
                    }
                }
            }
            out.push('"');
        }
    }
}

// ---------------------------------------------------------------- reading

mod reader {
    use super::*;
    use crate::address::Scheme;
    use saphyr::{ScalarStyle as YStyle, Yaml, YamlLoader};

    /// A scalar as Data.Yaml sees it: only quoted, folded or `!!str` scalars
    /// are certainly strings; plain ones may be null, bool or number.
    enum Value<'a> {
        Str(&'a str),
        Number(&'a str),
        Null,
        Other,
    }

    fn classify<'a>(node: &'a Yaml<'a>) -> Value<'a> {
        let Yaml::Representation(text, style, tag) = node else {
            return Value::Other;
        };
        let text: &str = text;
        let str_tag = tag
            .as_ref()
            .is_some_and(|t| t.suffix == "str" && t.handle.contains("yaml.org"));
        if matches!(
            style,
            YStyle::SingleQuoted | YStyle::DoubleQuoted | YStyle::Folded
        ) || str_tag
        {
            return Value::Str(text);
        }
        if ["null", "Null", "NULL", "~", ""].contains(&text) {
            return Value::Null;
        }
        let is_like = |w: &str| {
            let mut title = String::new();
            let mut cs = w.chars();
            if let Some(c) = cs.next() {
                title.push(c.to_ascii_uppercase());
                title.extend(cs);
            }
            text == w || text == w.to_ascii_uppercase() || text == title
        };
        if ["y", "yes", "on", "true", "n", "no", "off", "false"]
            .iter()
            .any(|w| is_like(w))
        {
            return Value::Other;
        }
        if yaml_is_numeric(text) {
            return Value::Number(text);
        }
        Value::Str(text)
    }

    fn get<'a>(map: &'a Yaml<'a>, key: &str) -> Option<&'a Yaml<'a>> {
        let Yaml::Mapping(m) = map else { return None };
        // Duplicate keys: the last one wins, as in Data.Yaml.
        m.iter()
            .filter(|(k, _)| matches!(k, Yaml::Representation(t, _, _) if t == key))
            .map(|(_, v)| v)
            .next_back()
    }

    fn req<'a>(map: &'a Yaml<'a>, key: &'static str) -> Result<&'a Yaml<'a>, DescriptionError> {
        get(map, key).ok_or(DescriptionError::MissingField(key))
    }

    fn string<'a>(node: &'a Yaml<'a>, field: &'static str) -> Result<&'a str, DescriptionError> {
        match classify(node) {
            Value::Str(s) => Ok(s),
            _ => Err(DescriptionError::WrongType {
                field,
                expected: "a string",
            }),
        }
    }

    fn b64_field(node: &Yaml<'_>, field: &'static str) -> Result<Vec<u8>, DescriptionError> {
        let s = string(node, field)?;
        // The reference's `base64urlP` followed by end of input.
        if b64_token_len(s.as_bytes()) != s.len() {
            return Err(DescriptionError::Base64(field));
        }
        b64_decode(s).map_err(|_| DescriptionError::Base64(field))
    }

    fn file_size_field(node: &Yaml<'_>, field: &'static str) -> Result<u64, DescriptionError> {
        let s = string(node, field)?;
        s.parse::<FileSize>()
            .map(|f| f.0)
            .map_err(|source| DescriptionError::FileSize { field, source })
    }

    /// An aeson `Int64` from a YAML number; negative sizes are refused.
    fn integer_field(node: &Yaml<'_>, field: &'static str) -> Result<u64, DescriptionError> {
        let wrong = DescriptionError::WrongType {
            field,
            expected: "a non-negative integer",
        };
        let Value::Number(text) = classify(node) else {
            return Err(wrong);
        };
        let v = number_to_u64(text).ok_or(wrong)?;
        if v > i64::MAX as u64 {
            return Err(DescriptionError::SizeOutOfRange { field });
        }
        Ok(v)
    }

    /// Integral value of a Data.Yaml number text (`1e3` and `2.0` count).
    fn number_to_u64(text: &str) -> Option<u64> {
        if let Some(h) = text.strip_prefix("0x") {
            return u64::from_str_radix(h, 16).ok();
        }
        if let Some(o) = text.strip_prefix("0o") {
            return u64::from_str_radix(o, 8).ok();
        }
        let t = text.strip_prefix('+').unwrap_or(text);
        if let Some(neg) = t.strip_prefix('-') {
            return neg.bytes().all(|c| c == b'0' || c == b'.').then_some(0);
        }
        let (mantissa, exp) = match t.find(['e', 'E']) {
            Some(p) => (&t[..p], t[p + 1..].parse::<i64>().ok()?),
            None => (t, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut digits: String = alloc::format!("{int}{frac}");
        let mut exp = exp.checked_sub(i64::try_from(frac.len()).ok()?)?;
        while exp < 0 {
            if !digits.ends_with('0') {
                return None;
            }
            digits.pop();
            exp += 1;
        }
        let mut v: u64 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        for _ in 0..exp {
            if v == 0 {
                break;
            }
            v = v.checked_mul(10)?;
        }
        Some(v)
    }

    fn parse_server(s: &str) -> Result<ServerAddress, DescriptionError> {
        let err = |source| DescriptionError::Server {
            server: s.to_string(),
            source,
        };
        match ServerAddress::parse_lenient(s) {
            Err(AddressError::BasicAuthNotAllowed) => {
                Err(DescriptionError::ServerWithBasicAuth(s.to_string()))
            }
            r => r.map_err(err)?.expect_scheme(Scheme::Xftp).map_err(err),
        }
    }

    /// Deeper than any description; bounds the recursion of building and
    /// dropping the tree, so hostile input (e.g. `- - - - …`) is an error
    /// rather than a stack overflow.
    const MAX_YAML_DEPTH: usize = 32;

    fn check_depth(yaml: &str) -> Result<(), DescriptionError> {
        use saphyr_parser::{Event, Parser};
        let mut depth = 0usize;
        for ev in Parser::new_from_str(yaml) {
            match ev.map_err(|e| DescriptionError::Yaml(e.to_string()))?.0 {
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    depth += 1;
                    if depth > MAX_YAML_DEPTH {
                        return Err(DescriptionError::Yaml("nesting too deep".into()));
                    }
                }
                Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    fn load(yaml: &str) -> Result<Yaml<'_>, DescriptionError> {
        check_depth(yaml)?;
        let mut loader: YamlLoader<'_, Yaml<'_>> = YamlLoader::default();
        loader.early_parse(false);
        loader.allow_duplicate_keys(true);
        let mut parser = saphyr_parser::Parser::new_from_str(yaml);
        parser
            .load(&mut loader, true)
            .map_err(|e| DescriptionError::Yaml(e.to_string()))?;
        if let Some(e) = loader.error() {
            return Err(DescriptionError::Yaml(e.to_string()));
        }
        let mut docs = loader.into_documents();
        if docs.len() != 1 {
            return Err(DescriptionError::Yaml(alloc::format!(
                "expected one document, found {}",
                docs.len()
            )));
        }
        Ok(docs.remove(0))
    }

    impl FileDescription {
        /// Reads a description of either party and folds its replicas into
        /// chunks; does not validate (see [`FileDescription::validate`]).
        pub fn from_yaml(yaml: &str) -> Result<Self, DescriptionError> {
            let doc = load(yaml)?;
            if !doc.is_mapping() {
                return Err(DescriptionError::NotAMapping);
            }
            let party: FileParty = string(req(&doc, "party")?, "party")?.parse()?;
            let size = file_size_field(req(&doc, "size")?, "size")?;
            if size > i64::MAX as u64 {
                return Err(DescriptionError::SizeOutOfRange { field: "size" });
            }
            let digest = b64_field(req(&doc, "digest")?, "digest")?;
            let key_bytes = b64_field(req(&doc, "key")?, "key")?;
            let key: [u8; 32] = key_bytes
                .as_slice()
                .try_into()
                .map_err(|_| DescriptionError::KeyLength(key_bytes.len()))?;
            let nonce = normalize_nonce(&b64_field(req(&doc, "nonce")?, "nonce")?);
            let chunk_size = file_size_field(req(&doc, "chunkSize")?, "chunkSize")?;
            let chunk_size = u32::try_from(chunk_size)
                .map_err(|_| DescriptionError::SizeOutOfRange { field: "chunkSize" })?;
            let redirect = match get(&doc, "redirect") {
                None => None,
                Some(r) if matches!(classify(r), Value::Null) => None,
                Some(r) if r.is_mapping() => Some(RedirectFileInfo {
                    size: integer_field(req(r, "size")?, "redirect.size")?,
                    digest: b64_field(req(r, "digest")?, "redirect.digest")?,
                }),
                Some(_) => {
                    return Err(DescriptionError::WrongType {
                        field: "redirect",
                        expected: "a mapping",
                    });
                }
            };
            let replicas = replica_lines(req(&doc, "replicas")?)?;
            let chunks = FileDescription::fold_replicas(chunk_size, replicas)?;
            let parity = match get(&doc, "parity") {
                None => None,
                Some(p) if p.is_mapping() => {
                    let small = |field: &'static str| -> Result<u16, DescriptionError> {
                        let v = integer_field(req(p, field)?, field)?;
                        u16::try_from(v).map_err(|_| DescriptionError::SizeOutOfRange { field })
                    };
                    let (data, parity) = (small("data")?, small("parity")?);
                    let lines = replica_lines(req(p, "replicas")?)?;
                    Some(Parity {
                        data,
                        parity,
                        chunks: FileDescription::fold_replicas(chunk_size, lines)?,
                    })
                }
                Some(_) => {
                    return Err(DescriptionError::WrongType {
                        field: "parity",
                        expected: "a mapping",
                    });
                }
            };
            Ok(FileDescription {
                party,
                size,
                digest,
                key,
                nonce,
                chunk_size,
                chunks,
                redirect,
                parity,
            })
        }
    }

    /// A `replicas:` list: per-server groups of replica lines.
    fn replica_lines(node: &Yaml<'_>) -> Result<Vec<ServerReplica>, DescriptionError> {
        let Yaml::Sequence(groups) = node else {
            return Err(DescriptionError::WrongType {
                field: "replicas",
                expected: "a list",
            });
        };
        let mut replicas = Vec::new();
        for g in groups {
            if !g.is_mapping() {
                return Err(DescriptionError::WrongType {
                    field: "replicas",
                    expected: "a list of mappings",
                });
            }
            let server = parse_server(string(req(g, "server")?, "server")?)?;
            let Yaml::Sequence(lines) = req(g, "chunks")? else {
                return Err(DescriptionError::WrongType {
                    field: "chunks",
                    expected: "a list",
                });
            };
            for l in lines {
                replicas.push(ServerReplica::parse_line(&server, string(l, "chunks")?)?);
            }
        }
        Ok(replicas)
    }

    impl ValidFileDescription {
        /// Reads, checks the party and validates, as every reference CLI path does.
        pub fn from_yaml(yaml: &str, party: FileParty) -> Result<Self, DescriptionError> {
            FileDescription::from_yaml(yaml)?
                .check_party(party)?
                .validate()
        }
    }
}
