//! Streaming file encryption and decryption over `Read`/`Write`, in
//! constant memory. Hashing runs on its own threads beside the cipher, since
//! XSalsa20, SHA-512 and SHA-256 each run at a few hundred MiB/s per core.

use super::chunks::prepare_chunk_specs;
use super::crypto::{Checkpoint, FileCryptoError, FileDecryptor, FileEncryptor, FilePlan};
use super::header::FileHeader;
use crate::crypto::digest::{Digest, Sha256, Sha512};
use crate::crypto::secretbox::{CbNonce, SbKey};
use crate::encoding::pad::PAD_BYTE;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Size of the pieces moved between threads: small enough that the pieces
/// in flight cost little of a 32 MiB budget, large enough that moving them
/// costs nothing next to the hashing.
pub const PIECE: usize = 256 << 10;
/// Pieces in flight per channel.
const IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Crypto(#[from] FileCryptoError),
    #[error("the source file changed while it was read: expected {expected} bytes")]
    SourceChanged { expected: u64 },
    /// The content kept from an interrupted download does not encrypt back
    /// to chunk `chunk` (0-based): it changed, or the checkpoint is wrong.
    #[error("the partly received file does not match chunk {} of the file", chunk + 1)]
    ReplayMismatch { chunk: usize },
    #[error("the checkpoint does not end at a chunk boundary")]
    ReplayBoundary,
}

/// What a sender needs to describe an encrypted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedFile {
    pub enc_size: u64,
    /// SHA-512 of the whole encrypted file (the description's `digest`).
    pub digest: [u8; 64],
    pub chunk_sizes: Vec<u32>,
    /// SHA-256 of each chunk (FNEW and the description's replica lines).
    pub chunk_digests: Vec<[u8; 32]>,
}

type Piece = Arc<Vec<u8>>;

fn fill(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hashes every piece with SHA-512, after what `h` already took.
fn sha512_worker(rx: Receiver<Piece>, mut h: Sha512) -> [u8; 64] {
    for p in rx {
        h.update(&p[..]);
    }
    h.finalize().into()
}

/// Writes every piece and hashes each chunk with SHA-256. At each chunk's
/// end `dst` is flushed and `on_chunk(index, digest)` called, so the chunk
/// can be uploaded while later ones are still being encrypted; `false`
/// from it stops the encryption.
fn chunk_worker(
    rx: Receiver<Piece>,
    sizes: &[u32],
    dst: &mut impl Write,
    on_chunk: &mut dyn FnMut(usize, [u8; 32]) -> bool,
) -> io::Result<Vec<[u8; 32]>> {
    let mut digests = Vec::with_capacity(sizes.len());
    let size_of = |i: usize| sizes.get(i).map_or(u64::MAX, |&s| u64::from(s));
    let mut left = size_of(0);
    let mut h = Sha256::new();
    for p in rx {
        let mut data = &p[..];
        while !data.is_empty() {
            let n = (data.len() as u64).min(left) as usize;
            dst.write_all(&data[..n])?;
            h.update(&data[..n]);
            data = &data[n..];
            left -= n as u64;
            if left == 0 {
                dst.flush()?;
                let digest: [u8; 32] = h.finalize_reset().into();
                if !on_chunk(digests.len(), digest) {
                    return Err(io::Error::other("the chunk consumer stopped"));
                }
                digests.push(digest);
                left = size_of(digests.len());
            }
        }
    }
    dst.flush()?;
    Ok(digests)
}

fn send_both(a: &SyncSender<Piece>, b: &SyncSender<Piece>, p: Vec<u8>) -> io::Result<()> {
    let p = Arc::new(p);
    let gone = || io::Error::other("a worker thread stopped early");
    a.send(p.clone()).map_err(|_| gone())?;
    b.send(p).map_err(|_| gone())
}

/// Encrypts `content_len` bytes of `src` as the file named in `header`,
/// writing exactly `enc_size` bytes to `dst`.
pub fn encrypt_file<R: Read, W: Write + Send>(
    src: R,
    content_len: u64,
    header: &FileHeader,
    key: &SbKey,
    nonce: &CbNonce,
    dst: W,
) -> Result<EncryptedFile, StreamError> {
    encrypt_file_by_chunk(src, content_len, header, key, nonce, dst, |_, _| true)
}

/// [`encrypt_file`] that reports each chunk as soon as its bytes are in
/// `dst` (flushed) and its SHA-256 is known: `on_chunk(index, digest)`, in
/// chunk order, from another thread. Returning `false` stops the work with
/// an error. The file digest needs every byte, so it comes only at the end.
pub fn encrypt_file_by_chunk<R: Read, W: Write + Send>(
    mut src: R,
    content_len: u64,
    header: &FileHeader,
    key: &SbKey,
    nonce: &CbNonce,
    mut dst: W,
    mut on_chunk: impl FnMut(usize, [u8; 32]) -> bool + Send,
) -> Result<EncryptedFile, StreamError> {
    let plan = FilePlan::new(header, content_len)?;
    let (mut enc, first) =
        FileEncryptor::new(key, nonce, &plan.header, content_len, plan.enc_size)?;
    let (tx_hash, rx_hash) = sync_channel::<Piece>(IN_FLIGHT);
    let (tx_write, rx_write) = sync_channel::<Piece>(IN_FLIGHT);
    let sizes = plan.chunk_sizes.clone();
    let (digest, chunk_digests, produced) = std::thread::scope(|s| {
        let hasher = s.spawn(move || sha512_worker(rx_hash, Sha512::new()));
        let writer = s.spawn(|| chunk_worker(rx_write, &sizes, &mut dst, &mut on_chunk));
        let produced = (|| -> Result<(), StreamError> {
            send_both(&tx_hash, &tx_write, first)?;
            while enc.content_left() > 0 {
                let want = (enc.content_left()).min(PIECE as u64) as usize;
                let mut buf = vec![0u8; want];
                let n = fill(&mut src, &mut buf)?;
                if n < want {
                    return Err(StreamError::SourceChanged {
                        expected: content_len,
                    });
                }
                enc.encrypt_content(&mut buf)?;
                send_both(&tx_hash, &tx_write, buf)?;
            }
            if src.read(&mut [0u8; 1])? != 0 {
                return Err(StreamError::SourceChanged {
                    expected: content_len,
                });
            }
            while enc.padding_left() > 0 {
                let mut buf = vec![0u8; enc.padding_left().min(PIECE as u64) as usize];
                enc.encrypt_padding(&mut buf);
                send_both(&tx_hash, &tx_write, buf)?;
            }
            send_both(&tx_hash, &tx_write, enc.finish()?.to_vec())?;
            Ok(())
        })();
        drop(tx_hash);
        drop(tx_write);
        let digest = hasher.join().expect("hash thread panicked");
        let chunks = writer.join().expect("writer thread panicked");
        (digest, chunks, produced)
    });
    // The writer's own error (a full disk, a stopped consumer) explains a
    // failed send better than the producer's "worker stopped".
    let chunk_digests = chunk_digests?;
    produced?;
    debug_assert_eq!(chunk_digests.len(), plan.chunk_sizes.len());
    Ok(EncryptedFile {
        enc_size: plan.enc_size,
        digest,
        chunk_sizes: plan.chunk_sizes,
        chunk_digests,
    })
}

/// Decrypts an encrypted file of `enc_size` bytes from `src` into `dst`,
/// returning its header and the SHA-512 of the encrypted bytes. `dst` holds
/// unauthenticated bytes until this returns `Ok`: write to a temporary file.
pub fn decrypt_file<R: Read, W: Write>(
    src: R,
    enc_size: u64,
    key: &SbKey,
    nonce: &CbNonce,
    dst: W,
) -> Result<(FileHeader, [u8; 64]), StreamError> {
    let start = Resumed::start(key, nonce, enc_size)?;
    decrypt_chunks(start, src, &[], dst, |_, _| Ok(()))
}

/// A decryption part way through a file, at a chunk boundary: fresh from
/// [`Resumed::start`] or rebuilt by [`replay_file`].
pub struct Resumed {
    dec: FileDecryptor,
    sha512: Sha512,
    enc_size: u64,
    /// Encrypted bytes behind it, and whole chunks among them.
    enc_done: u64,
    chunks_done: usize,
}

impl Resumed {
    /// A decryption at the start of the file.
    pub fn start(key: &SbKey, nonce: &CbNonce, enc_size: u64) -> Result<Self, StreamError> {
        Ok(Self {
            dec: FileDecryptor::new(key, nonce, enc_size)?,
            sha512: Sha512::new(),
            enc_size,
            enc_done: 0,
            chunks_done: 0,
        })
    }

    /// Whole chunks already behind this decryption.
    pub fn chunks_done(&self) -> usize {
        self.chunks_done
    }
}

/// Rebuilds the decryption of an interrupted download from its checkpoint
/// and the content it had written (`content`, read from its start): the
/// content is encrypted again, each chunk checked against its digest, and
/// the hashes and cipher state are where the first run left them. Costs a
/// pass over the content kept, no download.
pub fn replay_file<R: Read>(
    mut content: R,
    checkpoint: &Checkpoint,
    key: &SbKey,
    nonce: &CbNonce,
    chunk_sizes: &[u32],
    chunk_digests: &[[u8; 32]],
) -> Result<Resumed, StreamError> {
    let enc_size = chunk_sizes.iter().map(|&s| u64::from(s)).sum();
    let mut r = Resumed::start(key, nonce, enc_size)?;
    let target = checkpoint.encrypted_len();
    let mut boundary = 0u64;
    let mut chunks = 0;
    while boundary < target {
        let Some(&size) = chunk_sizes.get(chunks) else {
            return Err(StreamError::ReplayBoundary);
        };
        boundary += u64::from(size);
        chunks += 1;
    }
    if boundary != target || chunk_digests.len() < chunks {
        return Err(StreamError::ReplayBoundary);
    }
    // The plaintext stream is head, content, padding; replayed piece by
    // piece so memory stays flat whatever was kept.
    let mut pos = 0u64;
    let mut chunk = 0usize;
    let mut chunk_end = chunk_sizes.first().map_or(0, |&s| u64::from(s));
    let mut h256 = Sha256::new();
    let head_len = checkpoint.head.len() as u64;
    let content_end = head_len + checkpoint.content;
    while pos < target {
        let want = (target - pos).min(chunk_end - pos).min(PIECE as u64) as usize;
        let mut buf = vec![0u8; want];
        let mut at = 0;
        if pos < head_len {
            let n = want.min((head_len - pos) as usize);
            buf[..n].copy_from_slice(&checkpoint.head[pos as usize..pos as usize + n]);
            at = n;
        }
        if at < want && pos + (at as u64) < content_end {
            let n = (want - at).min((content_end - pos - at as u64) as usize);
            let got = fill(&mut content, &mut buf[at..at + n])?;
            if got < n {
                return Err(StreamError::ReplayMismatch { chunk });
            }
            at += n;
        }
        buf[at..].fill(PAD_BYTE);
        r.dec.replay(&mut buf)?;
        r.sha512.update(&buf);
        h256.update(&buf);
        pos += want as u64;
        if pos == chunk_end {
            let digest: [u8; 32] = h256.finalize_reset().into();
            if digest != chunk_digests[chunk] {
                return Err(StreamError::ReplayMismatch { chunk });
            }
            chunk += 1;
            chunk_end += chunk_sizes.get(chunk).map_or(0, |&s| u64::from(s));
        }
    }
    if r.dec.checkpoint().as_ref() != Some(checkpoint) {
        return Err(StreamError::ReplayMismatch {
            chunk: chunks.saturating_sub(1),
        });
    }
    r.enc_done = target;
    r.chunks_done = chunks;
    Ok(r)
}

/// Decrypts the rest of a file from `from` on: `src` gives the encrypted
/// bytes after those `from` has behind it. At each boundary in
/// `chunk_sizes` (none given: no checkpoints), once the chunk's content is
/// written and `dst` flushed, `on_chunk(index, checkpoint)` may make it
/// durable; an error from it stops the decryption. No checkpoint is given
/// where one cannot be replayed (inside the header, or once the tag began).
pub fn decrypt_chunks<R: Read, W: Write>(
    from: Resumed,
    mut src: R,
    chunk_sizes: &[u32],
    mut dst: W,
    mut on_chunk: impl FnMut(usize, Checkpoint) -> io::Result<()>,
) -> Result<(FileHeader, [u8; 64]), StreamError> {
    let Resumed {
        mut dec,
        sha512,
        enc_size,
        enc_done,
        chunks_done,
    } = from;
    let (tx, rx) = sync_channel::<Piece>(IN_FLIGHT);
    std::thread::scope(|s| {
        let hasher = s.spawn(move || sha512_worker(rx, sha512));
        let result = (|| -> Result<FileHeader, StreamError> {
            let mut left = enc_size - enc_done;
            let mut chunk = chunks_done;
            let mut chunk_left = chunk_sizes.get(chunk).map_or(u64::MAX, |&s| u64::from(s));
            let mut out = Vec::with_capacity(PIECE);
            while left > 0 {
                let want = left.min(PIECE as u64).min(chunk_left) as usize;
                let mut buf = vec![0u8; want];
                let n = fill(&mut src, &mut buf)?;
                buf.truncate(n);
                if n == 0 {
                    break;
                }
                left -= n as u64;
                dec.update(&buf, &mut out)?;
                tx.send(Arc::new(buf))
                    .map_err(|_| io::Error::other("hash thread stopped"))?;
                dst.write_all(&out)?;
                out.clear();
                chunk_left -= n as u64;
                if chunk_left == 0 {
                    dst.flush()?;
                    if let Some(cp) = dec.checkpoint() {
                        on_chunk(chunk, cp)?;
                    }
                    chunk += 1;
                    chunk_left = chunk_sizes.get(chunk).map_or(u64::MAX, |&s| u64::from(s));
                }
            }
            if left == 0 && src.read(&mut [0u8; 1])? != 0 {
                return Err(FileCryptoError::TooLong { enc_size }.into());
            }
            dst.flush()?;
            Ok(dec.finish()?)
        })();
        drop(tx);
        let digest = hasher.join().expect("hash thread panicked");
        result.map(|h| (h, digest))
    })
}

/// Chunk byte ranges of an encrypted file, for cutting it into uploads.
pub use super::chunks::ChunkSpec;

/// The chunk specs of an encrypted file.
pub fn chunk_specs(file: &EncryptedFile) -> Vec<ChunkSpec> {
    prepare_chunk_specs(&file.chunk_sizes)
}
