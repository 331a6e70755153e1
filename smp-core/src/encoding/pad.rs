//! Padding: the strict block padding (2-byte length, `#` fill) used for every
//! 16 KiB transport block, and the file padding (8-byte length, `#` fill).

use alloc::vec::Vec;

/// Size of every SMP/XFTP transport block.
pub const BLOCK_SIZE: usize = 16384;
/// The fill byte of both paddings.
pub const PAD_BYTE: u8 = b'#';

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PadError {
    #[error("a {len}-byte message does not fit a {padded}-byte padded block")]
    TooLarge { len: usize, padded: usize },
    #[error("padded block shorter than its 2-byte length")]
    TooShort,
    #[error("padded block declares {declared} bytes but holds {available}")]
    BadLength { declared: usize, available: usize },
    #[error("file padding declares a negative length")]
    NegativeLength,
}

/// `u16be(len) ‖ msg ‖ '#'…` to exactly `padded_len` bytes.
pub fn pad(msg: &[u8], padded_len: usize) -> Result<Vec<u8>, PadError> {
    if msg.len() > u16::MAX as usize - 2 || msg.len() + 2 > padded_len {
        return Err(PadError::TooLarge {
            len: msg.len(),
            padded: padded_len,
        });
    }
    let mut out = Vec::with_capacity(padded_len);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out.resize(padded_len, PAD_BYTE);
    Ok(out)
}

/// The message inside a strictly padded block; the fill is not checked, as
/// in the reference.
pub fn unpad(padded: &[u8]) -> Result<&[u8], PadError> {
    if padded.len() < 2 {
        return Err(PadError::TooShort);
    }
    let declared = u16::from_be_bytes([padded[0], padded[1]]) as usize;
    let rest = &padded[2..];
    if rest.len() < declared {
        return Err(PadError::BadLength {
            declared,
            available: rest.len(),
        });
    }
    Ok(&rest[..declared])
}

/// Length of the file-padding prefix (`fileSizeLen`).
pub const FILE_LEN_SIZE: usize = 8;

/// `i64be(len) ‖ msg ‖ '#'…` to exactly `padded_len` bytes (the lazy
/// padding of whole files, built in memory; files use the streaming form).
pub fn pad_lazy(msg: &[u8], padded_len: u64) -> Result<Vec<u8>, PadError> {
    let len = msg.len() as u64;
    if len + FILE_LEN_SIZE as u64 > padded_len {
        return Err(PadError::TooLarge {
            len: msg.len(),
            padded: padded_len as usize,
        });
    }
    let mut out = Vec::with_capacity(padded_len as usize);
    out.extend_from_slice(&(len as i64).to_be_bytes());
    out.extend_from_slice(msg);
    out.resize(padded_len as usize, PAD_BYTE);
    Ok(out)
}

/// Splits the 8-byte length prefix off a (possibly partial) file payload,
/// returning the declared length and as much of the content as is present.
pub fn split_len(input: &[u8]) -> Result<(u64, &[u8]), PadError> {
    if input.len() < FILE_LEN_SIZE {
        return Err(PadError::TooShort);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&input[..8]);
    let len = i64::from_be_bytes(b);
    if len < 0 {
        return Err(PadError::NegativeLength);
    }
    let rest = &input[8..];
    let n = rest.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    Ok((len as u64, &rest[..n]))
}
