//! Card images for the host tool and tests: MBR with one FAT32 (LBA)
//! partition from LBA 2048 to the end, formatted by `fatfs` with label
//! `SGCARD` (`design/device.md` §1, §8).
//!
//! The cluster size is the largest power of two ≤ 32 KiB that still leaves
//! comfortably more than 65 525 clusters: below that embedded-sdmmc reads
//! the volume as FAT16 and fails.

#![cfg(feature = "std")]

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::blockdev::RamDisk;
use crate::card::MIN_FAT32_CLUSTERS;

/// First block of the partition (1 MiB alignment, as card vendors do).
pub const PARTITION_START: u64 = 2048;
const SECTOR: u64 = 512;
/// Headroom over the FAT32 minimum, so that FAT and reserved sectors
/// (which fatfs sizes itself) cannot push the count under it.
const MIN_CLUSTERS: u64 = MIN_FAT32_CLUSTERS as u64 + MIN_FAT32_CLUSTERS as u64 / 16;
/// The label must not equal a directory name such as `SIMPLEGO` (§1).
pub const LABEL: &[u8; 11] = b"SGCARD     ";

/// Bytes per cluster for a card of `size_bytes`, or an error if it is too
/// small (or too large) for FAT32.
pub fn cluster_size(size_bytes: u64) -> io::Result<u32> {
    let sectors = (size_bytes / SECTOR).saturating_sub(PARTITION_START);
    if size_bytes / SECTOR > u64::from(u32::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "card images are limited to 2 TiB (32-bit sector numbers in the MBR)",
        ));
    }
    for spc in [64u64, 32, 16, 8, 4, 2, 1] {
        // Two FATs of 4 bytes per cluster, 32 reserved sectors.
        let clusters = sectors.saturating_sub(32) * SECTOR / (spc * SECTOR + 8);
        if clusters >= MIN_CLUSTERS {
            return Ok((spc * SECTOR) as u32);
        }
    }
    let min_mib =
        (PARTITION_START + 32 + MIN_CLUSTERS + MIN_CLUSTERS * 8 / SECTOR + 1).div_ceil(2048);
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("card too small for FAT32: need at least {min_mib} MiB"),
    ))
}

/// Creates (or replaces) a sparse card image of `size_bytes` at `path`.
pub fn create(path: impl AsRef<Path>, size_bytes: u64) -> io::Result<()> {
    let clusters = cluster_size(size_bytes)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let size = size_bytes / SECTOR * SECTOR;
    f.set_len(size)?;
    format_into(f, size, clusters)
}

impl RamDisk {
    /// An in-memory card laid out exactly as [`create`] lays out a file.
    pub fn formatted(size_bytes: u64) -> io::Result<RamDisk> {
        let clusters = cluster_size(size_bytes)?;
        let size = size_bytes / SECTOR * SECTOR;
        let len = usize::try_from(size).map_err(io::Error::other)?;
        let mut cur = Cursor::new(vec![0u8; len]);
        format_into(&mut cur, size, clusters)?;
        Ok(RamDisk::from_image(cur.into_inner()))
    }
}

/// Writes MBR + FAT32 onto a zeroed disk of `size` bytes.
fn format_into<T: Read + Write + Seek>(mut disk: T, size: u64, cluster: u32) -> io::Result<()> {
    let part_sectors = size / SECTOR - PARTITION_START;
    let mut mbr = [0u8; 512];
    let p = &mut mbr[446..462];
    p[0] = 0x00; // not bootable
    p[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]); // CHS unused: LBA only
    p[4] = 0x0C; // FAT32 LBA
    p[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&(PARTITION_START as u32).to_le_bytes());
    p[12..16].copy_from_slice(&(part_sectors as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    disk.seek(SeekFrom::Start(0))?;
    disk.write_all(&mbr)?;
    let window = Window {
        inner: &mut disk,
        start: PARTITION_START * SECTOR,
        len: part_sectors * SECTOR,
        pos: 0,
    };
    let opts = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .bytes_per_cluster(cluster)
        .volume_label(*LABEL);
    fatfs::format_volume(window, opts)?;
    disk.flush()
}

/// The partition as a stream of its own: fatfs formats from offset 0.
struct Window<'a, T> {
    inner: &'a mut T,
    start: u64,
    len: u64,
    pos: u64,
}

impl<T: Seek> Window<'_, T> {
    fn place(&mut self, n: usize) -> io::Result<usize> {
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        Ok(n.min(self.len.saturating_sub(self.pos) as usize))
    }
}

impl<T: Read + Seek> Read for Window<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.place(buf.len())?;
        let n = self.inner.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<T: Write + Seek> Write for Window<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.place(buf.len())?;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the partition",
            ));
        }
        let n = self.inner.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Seek> Seek for Window<'_, T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}
