//! The `X` compressed-batch framing (simplexmq `Compression.hs`, agent.md
//! §6.5): `'X' ‖ NonEmpty Compressed`, each element `'0' ‖ shortString`
//! (passthrough) or `'1' ‖ Large(zstd frame)`.
//!
//! Inflating is bounded by
//! [`MAX_DECOMPRESSED_MSG_LENGTH`](super::MAX_DECOMPRESSED_MSG_LENGTH) like the
//! reference's fixed 64 KiB buffer, so a small frame cannot make us allocate
//! much. Without ruzstd's `hash` feature the optional frame checksum is not
//! verified (libzstd would); the ratchet has already authenticated the bytes.

use alloc::format;
use alloc::vec::Vec;

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use ruzstd::encoding::{CompressionLevel, compress_to_vec};

use super::ChatError;
use crate::encoding::{Reader, Writer};

/// Bodies shorter than this stay uncompressed inside the framing
/// (`maxLengthPassthrough` = 181): zstd gains nothing on them.
pub const MAX_LENGTH_PASSTHROUGH: usize = 181;

/// Largest zstd window we accept. Real frames for bodies of at most 64 KiB
/// declare far less (libzstd sizes the window to the input), and the decoder
/// reserves the whole window up front.
pub const MAX_ZSTD_WINDOW: u64 = 2 * 1024 * 1024;

/// One element of a compressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compressed {
    /// Kept as is (at most 255 bytes on the wire).
    Passthrough(Vec<u8>),
    /// A zstd frame.
    Zstd(Vec<u8>),
}

impl Compressed {
    /// `compress1`: passthrough below [`MAX_LENGTH_PASSTHROUGH`], else a zstd
    /// frame. The reference uses zstd level 3; ruzstd offers its "fastest"
    /// level (about 1) without std, which any zstd decoder reads the same.
    pub fn compress(body: &[u8]) -> Self {
        if body.len() < MAX_LENGTH_PASSTHROUGH {
            Compressed::Passthrough(body.to_vec())
        } else {
            Compressed::Zstd(compress_to_vec(body, CompressionLevel::Fastest))
        }
    }

    pub fn write(&self, w: &mut Writer) -> Result<(), ChatError> {
        match self {
            Compressed::Passthrough(b) => {
                w.u8(b'0').short(b)?;
            }
            Compressed::Zstd(b) => {
                w.u8(b'1').large(b)?;
            }
        }
        Ok(())
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, ChatError> {
        match r.u8()? {
            b'0' => Ok(Compressed::Passthrough(r.short()?.to_vec())),
            b'1' => Ok(Compressed::Zstd(r.large()?.to_vec())),
            t => Err(ChatError::BadCompressedTag(t)),
        }
    }

    /// The original bytes, refusing more than `limit` (`decompress1`).
    pub fn decompress(&self, limit: usize) -> Result<Vec<u8>, ChatError> {
        match self {
            Compressed::Passthrough(b) if b.len() > limit => {
                Err(ChatError::DecompressedTooLarge { limit })
            }
            Compressed::Passthrough(b) => Ok(b.clone()),
            Compressed::Zstd(frame) => decompress(frame, limit),
        }
    }
}

/// `compressedBatchMsgBody_`: `'X'` and a one-element list holding the body
/// compressed (the only form senders make).
pub fn compressed_batch_body(body: &[u8]) -> Result<Vec<u8>, ChatError> {
    let mut w = Writer::with_capacity(body.len() / 2 + 8);
    w.u8(b'X').u8(1);
    Compressed::compress(body).write(&mut w)?;
    Ok(w.into_vec())
}

/// Reads the elements after the `'X'` (all of the input must be used).
pub fn decode_compressed_batch(after_x: &[u8]) -> Result<Vec<Compressed>, ChatError> {
    let mut r = Reader::new(after_x);
    let n = r.u8()?;
    if n == 0 {
        return Err(crate::encoding::DecodeError::EmptyList.into());
    }
    let mut items = Vec::with_capacity(n as usize);
    for _ in 0..n {
        items.push(Compressed::read(&mut r)?);
    }
    r.end()?;
    Ok(items)
}

fn zstd_error(e: FrameDecoderError) -> ChatError {
    ChatError::Zstd(format!("{e}"))
}

/// Inflates zstd frames (skippable frames are skipped, several frames are
/// concatenated, as libzstd does), refusing output over `limit` bytes before
/// producing it: a declared content size over the limit fails at once, and
/// output is counted block by block otherwise.
pub fn decompress(frames: &[u8], limit: usize) -> Result<Vec<u8>, ChatError> {
    let too_large = ChatError::DecompressedTooLarge { limit };
    let mut input = frames;
    let mut out = Vec::new();
    let mut dec = FrameDecoder::new();
    dec.set_max_window_size(MAX_ZSTD_WINDOW);
    if input.is_empty() {
        return Err(ChatError::Zstd("empty input".into()));
    }
    while !input.is_empty() {
        match dec.reset(&mut input) {
            Ok(()) => {}
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                input = input
                    .get(length as usize..)
                    .ok_or(ChatError::Zstd("truncated skippable frame".into()))?;
                continue;
            }
            Err(e) => return Err(zstd_error(e)),
        }
        if dec.content_size() > limit as u64 {
            return Err(too_large);
        }
        loop {
            dec.decode_blocks(&mut input, BlockDecodingStrategy::UptoBytes(16 * 1024))
                .map_err(zstd_error)?;
            let finished = dec.is_finished();
            if let Some(chunk) = dec.collect() {
                if out.len() + chunk.len() > limit {
                    return Err(too_large);
                }
                out.extend_from_slice(&chunk);
            }
            if finished {
                break;
            }
            if dec.can_collect() == 0 && input.is_empty() {
                return Err(ChatError::Zstd("truncated frame".into()));
            }
        }
    }
    Ok(out)
}
