//! Whole-file encryption as sans-IO state machines.
//!
//! The encrypted file is `XSalsa20(i64be(L) ‖ header ‖ content ‖ '#'…) ‖ tag`
//! where L = header + content length, padded so that the whole file is
//! exactly the sum of its chunk sizes. The caller moves the bytes; these
//! types keep constant state whatever the file size.

use super::chunks::{FILE_OVERHEAD, prepare_chunk_sizes};
use super::header::{FileHeader, HEADER_PARSE_LIMIT};
use crate::crypto::CryptoError;
use crate::crypto::secretbox::{CbNonce, SbKey, SbStream, TAG_SIZE};
use crate::encoding::pad::{FILE_LEN_SIZE, PAD_BYTE};
use crate::encoding::{DecodeError, EncodeError};
use alloc::vec::Vec;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileCryptoError {
    #[error("Error decrypting file: incorrect auth tag")]
    AuthTag,
    #[error("invalid file header: {0}")]
    Header(#[from] DecodeError),
    #[error("file header cannot be encoded: {0}")]
    HeaderEncode(#[from] EncodeError),
    #[error("the encrypted size {enc_size} cannot hold {needed} bytes of header, content and tag")]
    TooSmall { enc_size: u64, needed: u64 },
    #[error("more content than the {expected} bytes announced")]
    TooMuchContent { expected: u64 },
    #[error("the encrypted file ended early: {missing} bytes missing")]
    Incomplete { missing: u64 },
    #[error("the encrypted file is longer than its {enc_size} bytes")]
    TooLong { enc_size: u64 },
    #[error("the decrypted length field is invalid")]
    BadLength,
}

impl From<CryptoError> for FileCryptoError {
    fn from(_: CryptoError) -> Self {
        Self::AuthTag
    }
}

/// Sizes of a file to be encrypted for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    pub header: Vec<u8>,
    pub content_len: u64,
    /// Encrypted size: the sum of `chunk_sizes`.
    pub enc_size: u64,
    pub chunk_sizes: Vec<u32>,
}

impl FilePlan {
    pub fn new(header: &FileHeader, content_len: u64) -> Result<Self, FileCryptoError> {
        let header = header.encode()?;
        let chunk_sizes = prepare_chunk_sizes(header.len() as u64 + content_len + FILE_OVERHEAD);
        let enc_size = chunk_sizes.iter().map(|&s| s as u64).sum();
        Ok(Self {
            header,
            content_len,
            enc_size,
            chunk_sizes,
        })
    }
}

/// Encrypts one file: first [`FileEncryptor::new`] gives the encrypted
/// length prefix and header, then the content goes through
/// [`FileEncryptor::encrypt_content`], then the padding, then the tag.
pub struct FileEncryptor {
    stream: SbStream,
    content_left: u64,
    padding_left: u64,
}

impl FileEncryptor {
    /// Returns the encryptor and the encrypted first bytes (length + header).
    pub fn new(
        key: &SbKey,
        nonce: &CbNonce,
        header: &[u8],
        content_len: u64,
        enc_size: u64,
    ) -> Result<(Self, Vec<u8>), FileCryptoError> {
        let len = header.len() as u64 + content_len;
        let needed = len + FILE_OVERHEAD;
        if needed > enc_size {
            return Err(FileCryptoError::TooSmall { enc_size, needed });
        }
        let mut stream = SbStream::new(&key.0, nonce);
        let mut first = Vec::with_capacity(FILE_LEN_SIZE + header.len());
        first.extend_from_slice(&(len as i64).to_be_bytes());
        first.extend_from_slice(header);
        stream.encrypt(&mut first);
        Ok((
            Self {
                stream,
                content_left: content_len,
                padding_left: enc_size - needed,
            },
            first,
        ))
    }

    /// Encrypts the next piece of content in place.
    pub fn encrypt_content(&mut self, buf: &mut [u8]) -> Result<(), FileCryptoError> {
        if buf.len() as u64 > self.content_left {
            return Err(FileCryptoError::TooMuchContent {
                expected: self.content_left,
            });
        }
        self.content_left -= buf.len() as u64;
        self.stream.encrypt(buf);
        Ok(())
    }

    pub fn content_left(&self) -> u64 {
        self.content_left
    }

    pub fn padding_left(&self) -> u64 {
        self.padding_left
    }

    /// Fills up to `buf.len()` bytes with encrypted padding; returns how many.
    pub fn encrypt_padding(&mut self, buf: &mut [u8]) -> usize {
        let n = (buf.len() as u64).min(self.padding_left) as usize;
        buf[..n].fill(PAD_BYTE);
        self.stream.encrypt(&mut buf[..n]);
        self.padding_left -= n as u64;
        n
    }

    /// The 16-byte tag that ends the file, once all content and padding went through.
    pub fn finish(self) -> Result<[u8; TAG_SIZE], FileCryptoError> {
        let missing = self.content_left + self.padding_left;
        if missing > 0 {
            return Err(FileCryptoError::Incomplete { missing });
        }
        Ok(self.stream.tag())
    }
}

/// Encrypts a whole in-memory file to `enc_size` bytes (small files, tests;
/// large files go through [`FileEncryptor`] directly).
pub fn encrypt_bytes(
    key: &SbKey,
    nonce: &CbNonce,
    header: &FileHeader,
    content: &[u8],
    enc_size: u64,
) -> Result<Vec<u8>, FileCryptoError> {
    let h = header.encode()?;
    let (mut enc, mut out) = FileEncryptor::new(key, nonce, &h, content.len() as u64, enc_size)?;
    let start = out.len();
    out.extend_from_slice(content);
    enc.encrypt_content(&mut out[start..])?;
    let start = out.len();
    out.resize(start + enc.padding_left() as usize, 0);
    enc.encrypt_padding(&mut out[start..]);
    out.extend_from_slice(&enc.finish()?);
    Ok(out)
}

enum DecryptState {
    /// Collecting the decrypted length field and header.
    Head(Vec<u8>),
    /// Emitting content; `left` content bytes still to come, then padding.
    Body { left: u64 },
}

/// Where a decryption stands, in plaintext terms: enough to rebuild it
/// later from the content already written out (see
/// [`FileDecryptor::replay`]), so an interrupted download need not fetch
/// those bytes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The decrypted length field and header, as they came.
    pub head: Vec<u8>,
    /// Content bytes handed out.
    pub content: u64,
    /// Padding bytes decrypted after the content.
    pub padding: u64,
}

impl Checkpoint {
    /// Encrypted bytes behind this checkpoint.
    pub fn encrypted_len(&self) -> u64 {
        // Saturating: a checkpoint read from a damaged state file must fail
        // its boundary check, not overflow.
        (self.head.len() as u64)
            .saturating_add(self.content)
            .saturating_add(self.padding)
    }
}

/// Decrypts one file whose encrypted size is known (from the description).
/// Content handed out before [`FileDecryptor::finish`] succeeds is not yet
/// authenticated: write it somewhere temporary.
pub struct FileDecryptor {
    stream: SbStream,
    /// Ciphertext bytes (without the tag) still expected.
    ct_left: u64,
    tag: Vec<u8>,
    header: Option<FileHeader>,
    state: DecryptState,
    /// The length field and header once parsed, for checkpoints.
    head: Vec<u8>,
    content_done: u64,
    padding_done: u64,
    /// Padding that is not the protocol's pad byte cannot be replayed from
    /// a checkpoint, so none is given once such a byte was seen.
    odd_padding: bool,
}

impl FileDecryptor {
    pub fn new(key: &SbKey, nonce: &CbNonce, enc_size: u64) -> Result<Self, FileCryptoError> {
        if enc_size < FILE_OVERHEAD + 1 {
            return Err(FileCryptoError::TooSmall {
                enc_size,
                needed: FILE_OVERHEAD + 1,
            });
        }
        Ok(Self {
            stream: SbStream::new(&key.0, nonce),
            ct_left: enc_size - TAG_SIZE as u64,
            tag: Vec::with_capacity(TAG_SIZE),
            header: None,
            state: DecryptState::Head(Vec::new()),
            head: Vec::new(),
            content_done: 0,
            padding_done: 0,
            odd_padding: false,
        })
    }

    /// Where this decryption stands, once the header is behind it and while
    /// no tag byte has arrived (the tag is not plaintext, so it cannot be
    /// replayed). `None` also after padding other than the pad byte.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let body = matches!(self.state, DecryptState::Body { .. });
        (body && self.tag.is_empty() && !self.odd_padding).then(|| Checkpoint {
            head: self.head.clone(),
            content: self.content_done,
            padding: self.padding_done,
        })
    }

    /// Takes the next plaintext of the encrypted stream (length field and
    /// header, content, padding: what a [`Checkpoint`] describes) and turns
    /// it into the ciphertext in place, as if that ciphertext had been
    /// decrypted: the state afterwards is the one `update` would have left.
    /// The caller compares the ciphertext with the chunk digests, since a
    /// changed plaintext replays into another ciphertext and only the tag
    /// at the end would tell.
    pub fn replay(&mut self, plain: &mut [u8]) -> Result<(), FileCryptoError> {
        if plain.len() as u64 > self.ct_left {
            return Err(FileCryptoError::TooLong {
                enc_size: self.ct_left,
            });
        }
        self.ct_left -= plain.len() as u64;
        self.route(plain, None)?;
        self.stream.encrypt(plain);
        Ok(())
    }

    /// Takes the next encrypted bytes (any split) and appends decrypted
    /// content to `out`.
    pub fn update(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), FileCryptoError> {
        let n = (data.len() as u64).min(self.ct_left) as usize;
        let (ct, tag) = data.split_at(n);
        if self.tag.len() + tag.len() > TAG_SIZE {
            return Err(FileCryptoError::TooLong {
                enc_size: self.ct_left,
            });
        }
        self.tag.extend_from_slice(tag);
        self.ct_left -= n as u64;
        if ct.is_empty() {
            return Ok(());
        }
        let mut plain = ct.to_vec();
        self.stream.decrypt(&mut plain);
        self.route(&plain, Some(out))
    }

    fn route(
        &mut self,
        mut plain: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<(), FileCryptoError> {
        if let DecryptState::Head(head) = &mut self.state {
            let want = FILE_LEN_SIZE + HEADER_PARSE_LIMIT;
            let take = plain.len().min(want.saturating_sub(head.len()));
            head.extend_from_slice(&plain[..take]);
            plain = &plain[take..];
            let ended = self.ct_left == 0;
            if head.len() < want && !ended {
                // The header may still be incomplete; parse once it must be whole.
                if matches!(
                    parse_head(head),
                    Err(FileCryptoError::Header(DecodeError::UnexpectedEnd))
                ) {
                    return Ok(());
                }
            }
            let (header, body_start, content_len) = parse_head(head)?;
            let body = head.split_off(body_start);
            self.head = core::mem::take(head);
            self.header = Some(header);
            self.state = DecryptState::Body { left: content_len };
            self.emit(&body, out.as_deref_mut());
        }
        self.emit(plain, out);
        Ok(())
    }

    fn emit(&mut self, plain: &[u8], out: Option<&mut Vec<u8>>) {
        if let DecryptState::Body { left } = &mut self.state {
            let n = (plain.len() as u64).min(*left) as usize;
            if let Some(out) = out {
                out.extend_from_slice(&plain[..n]);
            }
            *left -= n as u64;
            self.content_done += n as u64;
            let padding = &plain[n..];
            self.padding_done += padding.len() as u64;
            self.odd_padding |= padding.iter().any(|&b| b != PAD_BYTE);
        }
    }

    /// Checks the tag and that the whole content arrived; returns the header.
    pub fn finish(self) -> Result<FileHeader, FileCryptoError> {
        let missing = self.ct_left + (TAG_SIZE - self.tag.len()) as u64;
        if missing > 0 {
            return Err(FileCryptoError::Incomplete { missing });
        }
        self.stream.verify(&self.tag)?;
        match (self.state, self.header) {
            (DecryptState::Body { left: 0 }, Some(h)) => Ok(h),
            _ => Err(FileCryptoError::BadLength),
        }
    }
}

/// Parses `i64be(L) ‖ header` and returns the header, where the content
/// starts in `head`, and the content length.
fn parse_head(head: &[u8]) -> Result<(FileHeader, usize, u64), FileCryptoError> {
    if head.len() < FILE_LEN_SIZE {
        return Err(DecodeError::UnexpectedEnd.into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[..FILE_LEN_SIZE]);
    let len = i64::from_be_bytes(len);
    if len < 0 {
        return Err(FileCryptoError::BadLength);
    }
    let (header, hlen) = FileHeader::decode_prefix(&head[FILE_LEN_SIZE..])?;
    let content = (len as u64)
        .checked_sub(hlen as u64)
        .ok_or(FileCryptoError::BadLength)?;
    Ok((header, FILE_LEN_SIZE + hlen, content))
}

/// Decrypts a whole in-memory encrypted file.
pub fn decrypt_bytes(
    key: &SbKey,
    nonce: &CbNonce,
    encrypted: &[u8],
) -> Result<(FileHeader, Vec<u8>), FileCryptoError> {
    let mut d = FileDecryptor::new(key, nonce, encrypted.len() as u64)?;
    let mut out = Vec::new();
    d.update(encrypted, &mut out)?;
    let h = d.finish()?;
    Ok((h, out))
}
