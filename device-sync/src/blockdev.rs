//! Block devices under the card: the embedded-sdmmc trait, a durability
//! barrier, and wrappers for write coalescing, counting, RAM and file disks,
//! and power-cut injection (`design/device.md` §1, §9).
//!
//! Every wrapper takes `&self` (as `BlockDevice` does), so state lives in
//! `Cell`/`RefCell`. None of them is `Sync`; the `VolumeManager` is not
//! either.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

pub use embedded_sdmmc::{Block, BlockCount, BlockDevice, BlockIdx};

/// Errors of the devices in this module.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A block index past the end of the device.
    #[error("block out of range")]
    OutOfRange,
    /// A [`PowerCut`] fired: the device is "off" for writes.
    #[error("device powered off")]
    PoweredOff,
    /// The host file backing a [`FileDisk`] failed.
    #[cfg(feature = "std")]
    #[error("host file: {0}")]
    Io(#[from] std::io::Error),
}

/// Barrier: when `sync` returns, every earlier `write` is on the medium.
///
/// The commit protocol (§5) orders "data, then journal" with it; a device
/// that buffers (or a card with a write cache) must drain here.
pub trait Durable: BlockDevice {
    /// Blocks until every earlier write is durable.
    fn sync(&self) -> Result<(), Self::Error>;
}

/// Checks `start .. start + n` against a device of `total` blocks.
fn in_range(start: BlockIdx, n: usize, total: u32) -> bool {
    (start.0 as u64) + (n as u64) <= total as u64
}

// ---------------------------------------------------------------------------

/// Write-back of one run of consecutive blocks, pushed to the inner device as
/// ONE multi-block write.
///
/// embedded-sdmmc hands the device one block per call (its issue #124), so
/// without this a real card only ever sees CMD24. The run is pushed when a
/// write is not contiguous with it, when it is full, when a read overlaps it
/// (reads must see pending data) and on [`Durable::sync`]. Dropping it or
/// [`Coalesce::into_inner`] loses the pending run, like a power cut before
/// `sync`.
pub struct Coalesce<D> {
    inner: D,
    cap: usize,
    run: RefCell<Run>,
}

struct Run {
    start: u32,
    blocks: Vec<Block>,
}

impl<D: BlockDevice> Coalesce<D> {
    /// Default run length: 32 blocks = 16 KiB of RAM (§7).
    pub const DEFAULT_RUN: usize = 32;

    /// A wrapper with a [`Self::DEFAULT_RUN`]-block run.
    pub fn new(inner: D) -> Self {
        Self::with_run(inner, Self::DEFAULT_RUN)
    }

    /// A wrapper holding up to `blocks` (at least 1) pending blocks.
    pub fn with_run(inner: D, blocks: usize) -> Self {
        let cap = blocks.max(1);
        Coalesce {
            inner,
            cap,
            run: RefCell::new(Run {
                start: 0,
                blocks: Vec::with_capacity(cap),
            }),
        }
    }

    /// The inner device (pending blocks are not on it yet).
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Number of blocks waiting in the run.
    pub fn pending(&self) -> usize {
        self.run.borrow().blocks.len()
    }

    /// Gives back the inner device and drops the pending run unwritten.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Pushes the run to the inner device. The run is emptied even on error:
    /// the caller learns the loss, and stale blocks are never replayed later
    /// out of order.
    fn push(&self, run: &mut Run) -> Result<(), D::Error> {
        if run.blocks.is_empty() {
            return Ok(());
        }
        let r = self.inner.write(&run.blocks, BlockIdx(run.start));
        run.blocks.clear();
        r
    }
}

impl<D: BlockDevice> BlockDevice for Coalesce<D> {
    type Error = D::Error;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
        let mut run = self.run.borrow_mut();
        let (rs, rn) = (run.start as u64, run.blocks.len() as u64);
        let (s, n) = (start.0 as u64, blocks.len() as u64);
        if rn > 0 && s < rs + rn && rs < s + n {
            self.push(&mut run)?;
        }
        drop(run);
        self.inner.read(blocks, start)
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Self::Error> {
        let mut run = self.run.borrow_mut();
        for (i, b) in blocks.iter().enumerate() {
            let idx = start.0.wrapping_add(i as u32);
            let contiguous = run.start.checked_add(run.blocks.len() as u32) == Some(idx);
            if !run.blocks.is_empty() && !contiguous {
                self.push(&mut run)?;
            }
            if run.blocks.is_empty() {
                run.start = idx;
            }
            run.blocks.push(b.clone());
            if run.blocks.len() >= self.cap {
                self.push(&mut run)?;
            }
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
        self.inner.num_blocks()
    }
}

impl<D: Durable> Durable for Coalesce<D> {
    fn sync(&self) -> Result<(), Self::Error> {
        self.push(&mut self.run.borrow_mut())?;
        self.inner.sync()
    }
}

// ---------------------------------------------------------------------------

/// An in-memory disk of 512-byte blocks. Its image can be copied out and a
/// new disk built from the copy: that is a "reboot" in power-cut tests.
#[derive(Clone)]
pub struct RamDisk {
    data: RefCell<Vec<u8>>,
}

impl RamDisk {
    /// A zeroed disk of `blocks` blocks.
    pub fn new(blocks: u32) -> Self {
        RamDisk {
            data: RefCell::new(vec![0; blocks as usize * Block::LEN]),
        }
    }

    /// A disk over an image; a trailing partial block is cut off.
    pub fn from_image(mut image: Vec<u8>) -> Self {
        image.truncate(image.len() / Block::LEN * Block::LEN);
        RamDisk {
            data: RefCell::new(image),
        }
    }

    /// A copy of the whole image (snapshot).
    pub fn image(&self) -> Vec<u8> {
        self.data.borrow().clone()
    }

    /// The image, without a copy.
    pub fn into_image(self) -> Vec<u8> {
        self.data.into_inner()
    }

    /// Runs `f` over the image in place (tests patch bytes with it).
    pub fn with_image<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self.data.borrow_mut())
    }

    fn blocks(&self) -> u32 {
        (self.data.borrow().len() / Block::LEN) as u32
    }
}

impl BlockDevice for RamDisk {
    type Error = DiskError;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
        if !in_range(start, blocks.len(), self.blocks()) {
            return Err(DiskError::OutOfRange);
        }
        let data = self.data.borrow();
        let base = start.0 as usize * Block::LEN;
        for (i, b) in blocks.iter_mut().enumerate() {
            let o = base + i * Block::LEN;
            b.contents.copy_from_slice(&data[o..o + Block::LEN]);
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Self::Error> {
        if !in_range(start, blocks.len(), self.blocks()) {
            return Err(DiskError::OutOfRange);
        }
        let mut data = self.data.borrow_mut();
        let base = start.0 as usize * Block::LEN;
        for (i, b) in blocks.iter().enumerate() {
            let o = base + i * Block::LEN;
            data[o..o + Block::LEN].copy_from_slice(&b.contents);
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
        Ok(BlockCount(self.blocks()))
    }
}

impl Durable for RamDisk {
    /// RAM is as durable as it gets in a test.
    fn sync(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------

/// What a [`Counting`] device has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `write` calls (one SD command each: CMD24 or CMD25).
    pub write_calls: u64,
    /// Blocks written over all calls.
    pub blocks_written: u64,
    /// `read` calls.
    pub read_calls: u64,
    /// Blocks read over all calls.
    pub blocks_read: u64,
    /// `sync` calls.
    pub syncs: u64,
}

/// Counts device calls, for the write-calls-per-MiB bench and for tests
/// that assert [`Coalesce`] works.
pub struct Counting<D> {
    inner: D,
    counts: Cell<Counts>,
}

impl<D> Counting<D> {
    /// Wraps `inner` with all counters at 0.
    pub fn new(inner: D) -> Self {
        Counting {
            inner,
            counts: Cell::new(Counts::default()),
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        self.counts.get()
    }

    /// Sets all counters back to 0.
    pub fn reset(&self) {
        self.counts.set(Counts::default());
    }

    /// The inner device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Gives back the inner device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn bump(&self, f: impl FnOnce(&mut Counts)) {
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
    }
}

impl<D: BlockDevice> BlockDevice for Counting<D> {
    type Error = D::Error;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
        self.bump(|c| {
            c.read_calls += 1;
            c.blocks_read += blocks.len() as u64;
        });
        self.inner.read(blocks, start)
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Self::Error> {
        self.bump(|c| {
            c.write_calls += 1;
            c.blocks_written += blocks.len() as u64;
        });
        self.inner.write(blocks, start)
    }

    fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
        self.inner.num_blocks()
    }
}

impl<D: Durable> Durable for Counting<D> {
    fn sync(&self) -> Result<(), Self::Error> {
        self.bump(|c| c.syncs += 1);
        self.inner.sync()
    }
}

// ---------------------------------------------------------------------------

/// How a [`PowerCut`] treats the block write that hits the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// The cut block and all later ones are lost.
    FailStop,
    /// The cut block keeps its first `keep` new bytes, the rest stays old:
    /// the block-tear model of §9.
    TearLast {
        /// New bytes that reach the medium (clamped to 512).
        keep: usize,
    },
}

/// Applies the first `budget` block writes, then "loses power": the cut
/// write fails (torn per [`CutMode`]) and every later write and sync fails
/// with [`DiskError::PoweredOff`]. Reads keep working so the test can look;
/// a reboot is a new card over [`PowerCut::into_inner`] (or a copy of it).
pub struct PowerCut<D> {
    inner: D,
    mode: CutMode,
    left: Cell<u64>,
    applied: Cell<u64>,
    cut: Cell<bool>,
}

impl<D: BlockDevice<Error = DiskError>> PowerCut<D> {
    /// Cuts after `budget` block writes.
    pub fn new(inner: D, budget: u64, mode: CutMode) -> Self {
        PowerCut {
            inner,
            mode,
            left: Cell::new(budget),
            applied: Cell::new(0),
            cut: Cell::new(false),
        }
    }

    /// Whether the cut has happened.
    pub fn is_cut(&self) -> bool {
        self.cut.get()
    }

    /// Block writes that reached the inner device whole.
    pub fn blocks_applied(&self) -> u64 {
        self.applied.get()
    }

    /// The inner device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Gives back the inner device (the "rebooted" disk).
    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: BlockDevice<Error = DiskError>> BlockDevice for PowerCut<D> {
    type Error = DiskError;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
        self.inner.read(blocks, start)
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Self::Error> {
        if self.cut.get() {
            return Err(DiskError::PoweredOff);
        }
        let left = self.left.get();
        let ok = (blocks.len() as u64).min(left) as usize;
        if ok > 0 {
            self.inner.write(&blocks[..ok], start)?;
            self.left.set(left - ok as u64);
            self.applied.set(self.applied.get() + ok as u64);
        }
        if ok == blocks.len() {
            return Ok(());
        }
        self.cut.set(true);
        if let CutMode::TearLast { keep } = self.mode {
            let idx = BlockIdx(start.0 + ok as u32);
            let mut torn = [Block::new()];
            self.inner.read(&mut torn, idx)?;
            let keep = keep.min(Block::LEN);
            torn[0].contents[..keep].copy_from_slice(&blocks[ok].contents[..keep]);
            self.inner.write(&torn, idx)?;
        }
        Err(DiskError::PoweredOff)
    }

    fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
        self.inner.num_blocks()
    }
}

impl<D: Durable + BlockDevice<Error = DiskError>> Durable for PowerCut<D> {
    fn sync(&self) -> Result<(), Self::Error> {
        if self.cut.get() {
            return Err(DiskError::PoweredOff);
        }
        self.inner.sync()
    }
}

// ---------------------------------------------------------------------------

/// A card image in a host file (offset 0 = the MBR), for the host tool.
#[cfg(feature = "std")]
pub struct FileDisk {
    file: RefCell<std::fs::File>,
    blocks: u32,
}

#[cfg(feature = "std")]
impl FileDisk {
    /// Opens an existing image read-write.
    pub fn open(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let blocks = u32::try_from(file.metadata()?.len() / Block::LEN as u64)
            .map_err(|_| std::io::Error::other("image larger than 2 TiB"))?;
        Ok(FileDisk {
            file: RefCell::new(file),
            blocks,
        })
    }

    /// Gives back the file.
    pub fn into_file(self) -> std::fs::File {
        self.file.into_inner()
    }
}

#[cfg(feature = "std")]
impl BlockDevice for FileDisk {
    type Error = DiskError;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
        use std::io::{Read, Seek, SeekFrom};
        if !in_range(start, blocks.len(), self.blocks) {
            return Err(DiskError::OutOfRange);
        }
        let mut f = self.file.borrow_mut();
        f.seek(SeekFrom::Start(start.into_bytes()))?;
        for b in blocks {
            f.read_exact(&mut b.contents)?;
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Self::Error> {
        use std::io::{Seek, SeekFrom, Write};
        if !in_range(start, blocks.len(), self.blocks) {
            return Err(DiskError::OutOfRange);
        }
        let mut f = self.file.borrow_mut();
        f.seek(SeekFrom::Start(start.into_bytes()))?;
        if blocks.len() == 1 {
            f.write_all(&blocks[0].contents)?;
        } else {
            // One syscall per multi-block write, as CMD25 is one command.
            let mut buf = Vec::with_capacity(blocks.len() * Block::LEN);
            for b in blocks {
                buf.extend_from_slice(&b.contents);
            }
            f.write_all(&buf)?;
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
        Ok(BlockCount(self.blocks))
    }
}

#[cfg(feature = "std")]
impl Durable for FileDisk {
    fn sync(&self) -> Result<(), Self::Error> {
        self.file.borrow().sync_data()?;
        Ok(())
    }
}
