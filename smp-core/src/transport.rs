//! SMP's block stream over any async byte stream (TLS in practice): fixed
//! 16384-byte blocks, padded, or block-encrypted once the handshake turned
//! it on (v ≥ 11). Shared by the router and the client.
//!
//! Each block is written with one `write_all` and a flush, so it leaves as a
//! single TLS record: the SimpleGo firmware reads blocks with a 1-second
//! timeout and would see a short block if one were split with a pause.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::encoding::pad::{self, BLOCK_SIZE};
use crate::smp::block_crypto::{BlockOpener, BlockSealer};
use crate::smp::error::ErrorType;

/// Why a block could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BlockWriteError {
    #[error("content of {0} bytes does not fit a block")]
    TooLarge(usize),
    #[error("transport: {0}")]
    Io(#[from] io::Error),
}

/// The receiving half.
pub struct BlockReader<R> {
    inner: R,
    opener: Option<BlockOpener>,
    buf: Box<[u8; BLOCK_SIZE]>,
}

impl<R: AsyncRead + Unpin> BlockReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            opener: None,
            buf: Box::new([0; BLOCK_SIZE]),
        }
    }

    /// Turns on block decryption for every later block.
    pub fn set_cipher(&mut self, opener: BlockOpener) {
        self.opener = Some(opener);
    }

    /// The next whole block; `None` at end of stream (a short block counts
    /// as the end, as in the reference).
    pub async fn read_raw(&mut self) -> io::Result<Option<&[u8; BLOCK_SIZE]>> {
        match self.inner.read_exact(&mut self.buf[..]).await {
            Ok(_) => Ok(Some(&self.buf)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A handshake block's content (never encrypted).
    pub async fn read_handshake(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.read_raw().await?.map(|b| b.to_vec()))
    }

    /// The next batch content. A block that does not decrypt or unpad is
    /// `Err(ErrorType::Block)` (the chain has still advanced); the stream
    /// goes on.
    pub async fn read_content(&mut self) -> io::Result<Option<Result<Vec<u8>, ErrorType>>> {
        if self.read_raw().await?.is_none() {
            return Ok(None);
        }
        let block = &self.buf[..];
        Ok(Some(match &mut self.opener {
            Some(o) => o.decrypt_block(block).map_err(|_| ErrorType::Block),
            None => pad::unpad(block)
                .map(<[u8]>::to_vec)
                .map_err(|_| ErrorType::Block),
        }))
    }
}

/// The sending half.
pub struct BlockWriter<W> {
    inner: W,
    sealer: Option<BlockSealer>,
}

impl<W: AsyncWrite + Unpin> BlockWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            sealer: None,
        }
    }

    /// Turns on block encryption for every later block.
    pub fn set_cipher(&mut self, sealer: BlockSealer) {
        self.sealer = Some(sealer);
    }

    /// Writes an already padded 16384-byte block (handshakes).
    pub async fn write_raw(&mut self, block: &[u8]) -> Result<(), BlockWriteError> {
        if block.len() != BLOCK_SIZE {
            return Err(BlockWriteError::TooLarge(block.len()));
        }
        self.inner.write_all(block).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// The block for a batch content: padded, or encrypted (which advances
    /// the sending chain, so the block must then be sent).
    pub fn seal(&mut self, content: &[u8]) -> Result<Vec<u8>, BlockWriteError> {
        match &mut self.sealer {
            Some(s) => s
                .encrypt_block(content)
                .map_err(|_| BlockWriteError::TooLarge(content.len())),
            None => {
                pad::pad(content, BLOCK_SIZE).map_err(|_| BlockWriteError::TooLarge(content.len()))
            }
        }
    }

    /// Pads (or encrypts) a batch content into one block and sends it.
    pub async fn write_content(&mut self, content: &[u8]) -> Result<(), BlockWriteError> {
        let block = self.seal(content)?;
        self.write_raw(&block).await
    }

    /// Closes the sending direction (TLS close_notify).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }
}
