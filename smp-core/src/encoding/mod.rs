//! The binary encoding of SMP and XFTP (simplexmq `smpEncode`/`smpP`).
//!
//! Integers are big-endian, `short` strings carry a 1-byte length, `Large`
//! blobs a 2-byte length, `Maybe` is the ASCII digit `0` or `1`, `Bool` is
//! `T`/`F`, lists carry a 1-byte count. Unlike the reference encoder, which
//! silently wraps an over-long length byte, ours refuses to encode it.

pub mod pad;
pub mod string;
pub mod url;

use alloc::vec::Vec;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unexpected end of input")]
    UnexpectedEnd,
    #[error("invalid Bool tag {0:#04x}")]
    BadBool(u8),
    #[error("invalid Maybe tag {0:#04x}")]
    BadMaybe(u8),
    #[error("empty list where at least one item is required")]
    EmptyList,
    #[error("expected a space separator")]
    ExpectedSpace,
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{len} bytes do not fit a string with a 1-byte length")]
    ShortTooLong { len: usize },
    #[error("{len} bytes do not fit a Large with a 2-byte length")]
    LargeTooLong { len: usize },
    #[error("{len} items do not fit a list with a 1-byte count")]
    ListTooLong { len: usize },
    #[error("a NonEmpty list must have at least one item")]
    EmptyList,
}

/// Appends the binary encoding of values to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(if v { b'T' } else { b'F' })
    }
    /// Bytes with no prefix (`Tail`, fixed-size fields such as nonces, tags).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    /// A `ByteString`: 1-byte length then the bytes.
    pub fn short(&mut self, b: &[u8]) -> Result<&mut Self, EncodeError> {
        let len = u8::try_from(b.len()).map_err(|_| EncodeError::ShortTooLong { len: b.len() })?;
        self.buf.push(len);
        self.buf.extend_from_slice(b);
        Ok(self)
    }
    /// A `Large`: 2-byte length then the bytes.
    pub fn large(&mut self, b: &[u8]) -> Result<&mut Self, EncodeError> {
        let len = u16::try_from(b.len()).map_err(|_| EncodeError::LargeTooLong { len: b.len() })?;
        self.u16(len);
        self.buf.extend_from_slice(b);
        Ok(self)
    }
    /// `Maybe a`: `'0'` for nothing, `'1'` followed by the value.
    pub fn maybe<T>(
        &mut self,
        v: Option<T>,
        f: impl FnOnce(&mut Self, T) -> Result<(), EncodeError>,
    ) -> Result<&mut Self, EncodeError> {
        match v {
            None => {
                self.u8(b'0');
            }
            Some(x) => {
                self.u8(b'1');
                f(self, x)?;
            }
        }
        Ok(self)
    }
    /// A list with a 1-byte count (`smpEncodeList`).
    pub fn list<T>(
        &mut self,
        items: &[T],
        mut f: impl FnMut(&mut Self, &T) -> Result<(), EncodeError>,
    ) -> Result<&mut Self, EncodeError> {
        let n =
            u8::try_from(items.len()).map_err(|_| EncodeError::ListTooLong { len: items.len() })?;
        self.u8(n);
        for it in items {
            f(self, it)?;
        }
        Ok(self)
    }
    /// A `NonEmpty` list: as [`Writer::list`], refusing an empty one.
    pub fn non_empty<T>(
        &mut self,
        items: &[T],
        f: impl FnMut(&mut Self, &T) -> Result<(), EncodeError>,
    ) -> Result<&mut Self, EncodeError> {
        if items.is_empty() {
            return Err(EncodeError::EmptyList);
        }
        self.list(items, f)
    }
}

/// Reads binary-encoded values from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Fails unless every byte was consumed.
    pub fn end(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::UnexpectedEnd);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            b'T' => Ok(true),
            b'F' => Ok(false),
            b => Err(DecodeError::BadBool(b)),
        }
    }
    pub fn short(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    pub fn large(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    /// Everything that is left (`Tail`).
    pub fn tail(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    pub fn maybe<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            b'0' => Ok(None),
            b'1' => f(self).map(Some),
            b => Err(DecodeError::BadMaybe(b)),
        }
    }
    pub fn list<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.u8()? as usize;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }
    pub fn non_empty<T>(
        &mut self,
        f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        if self.peek() == Some(0) {
            return Err(DecodeError::EmptyList);
        }
        self.list(f)
    }
    /// Exactly one space (the reference's `_smpP` prefix).
    pub fn space(&mut self) -> Result<(), DecodeError> {
        match self.u8()? {
            b' ' => Ok(()),
            _ => Err(DecodeError::ExpectedSpace),
        }
    }
    /// A protocol tag: the bytes up to the first space, consuming that one
    /// space if present (the reference's `messageTagP`).
    pub fn tag(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        let n = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.pos += n;
        if self.peek() == Some(b' ') {
            self.pos += 1;
        }
        &rest[..n]
    }
}
