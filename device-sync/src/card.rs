//! The card: `/SIMPLEGO/FILES/` on a FAT32 volume, through embedded-sdmmc
//! 0.10, with the checks its crash-unsafe metadata needs (`design/device.md`
//! §1, §4.1).
//!
//! embedded-sdmmc trusts the disk: garbage geometry divides by zero, a
//! cluster number past the volume overflows, a torn `make_dir` entry (start
//! cluster 0) opens as the root directory, and a file with a size but no
//! cluster trips an `assert!` on flush. So before embedded-sdmmc sees a
//! volume, a directory or a file, this module checks it with its own reads
//! (the geometry, the directory entry, the whole FAT chain) and reports
//! [`CardError::BadFormat`] or [`CardError::NeedsRepair`] instead.
//!
//! embedded-sdmmc's delete only marks the directory entry free and leaks the
//! clusters, so [`Card::delete`] frees the chain itself (§ "delete" below).

use alloc::string::String;
use alloc::vec::Vec;

use embedded_sdmmc::{
    DirEntry, Error as FsError, Mode, RawDirectory, RawFile, RawVolume, ShortFileName, TimeSource,
    Timestamp, VolumeIdx, VolumeManager,
};

use crate::blockdev::{Block, BlockDevice, BlockIdx, Durable};

/// Our directory under the root.
pub const TOP_DIR: &str = "SIMPLEGO";
/// Where our files live, under [`TOP_DIR`].
pub const FILES_DIR: &str = "FILES";

/// The limits of §1: a download holds SGF + SGJ, the history one more.
type Vm<D> = VolumeManager<D, FixedTime, 4, 6, 1>;

/// A FAT timestamp that never changes (2000-01-01 00:00:00), so the card
/// does not reveal when files arrived (§3).
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedTime;

impl TimeSource for FixedTime {
    fn get_timestamp(&self) -> Timestamp {
        Timestamp {
            year_since_1970: 30,
            zero_indexed_month: 0,
            zero_indexed_day: 0,
            hours: 0,
            minutes: 0,
            seconds: 0,
        }
    }
}

/// What can go wrong on the card.
#[derive(Debug, thiserror::Error)]
pub enum CardError<E: core::error::Error + 'static> {
    /// `/SIMPLEGO/FILES` is missing: run card init.
    #[error("card not initialised")]
    NotInitialised,
    /// Metadata is inconsistent (torn mkdir, broken FAT chain, size without
    /// clusters): using it would corrupt the card further.
    #[error("card needs repair")]
    NeedsRepair,
    /// No free cluster left.
    #[error("card is full")]
    Full,
    /// No such file.
    #[error("file not found")]
    NotFound,
    /// The name is taken.
    #[error("file exists")]
    Exists,
    /// The file is open (delete needs it closed; a file opens once).
    #[error("file is open")]
    Open,
    /// Past the handle limit (6 files).
    #[error("too many open files")]
    TooManyOpen,
    /// Not an upper-case 8.3 name.
    #[error("bad file name")]
    BadName,
    /// A handle that is not open on this card.
    #[error("bad file handle")]
    BadHandle,
    /// `write_at`/`read_at` past the end of the file.
    #[error("offset beyond end of file")]
    BadOffset,
    /// FAT files end at 4 GiB - 1.
    #[error("file would exceed 4 GiB")]
    TooLarge,
    /// Write on a read-only handle.
    #[error("file opened read-only")]
    ReadOnly,
    /// No MBR + FAT32 volume we can use.
    #[error("not a usable FAT32 card: {0}")]
    BadFormat(&'static str),
    /// The block device failed.
    #[error("device error: {0}")]
    Io(#[source] E),
    /// Any other embedded-sdmmc error.
    #[error("filesystem error: {0}")]
    Fs(FsError<E>),
}

fn fs_err<E: core::error::Error + 'static>(e: FsError<E>) -> CardError<E> {
    match e {
        FsError::DeviceError(e) => CardError::Io(e),
        FsError::NotEnoughSpace | FsError::DiskFull => CardError::Full,
        FsError::NotFound => CardError::NotFound,
        FsError::FileAlreadyExists | FsError::DirAlreadyExists => CardError::Exists,
        FsError::FileAlreadyOpen => CardError::Open,
        FsError::TooManyOpenFiles => CardError::TooManyOpen,
        FsError::FilenameError(_) => CardError::BadName,
        FsError::BadHandle => CardError::BadHandle,
        FsError::ReadOnly => CardError::ReadOnly,
        FsError::FormatError(s) => CardError::BadFormat(s),
        FsError::BadCluster | FsError::UnterminatedFatChain | FsError::AllocationError => {
            CardError::NeedsRepair
        }
        e => CardError::Fs(e),
    }
}

/// How [`Card::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create an empty file; [`CardError::Exists`] if the name is taken.
    CreateNew,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Open an existing file for reading.
    ReadOnly,
}

/// An open file on a [`Card`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(RawFile);

/// Where the FAT32 structures are, from our own parse of MBR + BPB, so that
/// cluster numbers can be checked before embedded-sdmmc does arithmetic on
/// them.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    fat_start: u32,
    fat_size: u32,
    num_fats: u32,
    blocks_per_cluster: u32,
    clusters: u32,
    root: u32,
    fsinfo: u32,
}

fn le16(b: &[u8], o: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Cluster count embedded-sdmmc needs to read a volume as FAT32.
pub const MIN_FAT32_CLUSTERS: u32 = 65_525;

impl Geometry {
    /// Replays embedded-sdmmc's parse (same fields, same formulas) with every
    /// check it skips.
    fn read<D: BlockDevice>(dev: &D) -> Result<Geometry, CardError<D::Error>> {
        use CardError::BadFormat;
        let total_dev = dev.num_blocks().map_err(CardError::Io)?.0;
        let mut b = [Block::new()];
        let rd = |b: &mut [Block; 1], i: u32| dev.read(b, BlockIdx(i)).map_err(CardError::Io);
        if total_dev == 0 {
            return Err(BadFormat("empty device"));
        }
        rd(&mut b, 0)?;
        let mbr = &b[0].contents;
        if le16(mbr, 510) != 0xAA55 {
            return Err(BadFormat("no MBR signature"));
        }
        let p = &mbr[446..462];
        if p[0] & 0x7F != 0 {
            return Err(BadFormat("bad partition status"));
        }
        if p[4] != 0x0B && p[4] != 0x0C {
            return Err(BadFormat("partition 1 is not FAT32"));
        }
        let (start, len) = (le32(p, 8), le32(p, 12));
        if start == 0 || len == 0 || start.checked_add(len).is_none_or(|e| e > total_dev) {
            return Err(BadFormat("partition outside the device"));
        }
        rd(&mut b, start)?;
        let bpb = &b[0].contents;
        if le16(bpb, 510) != 0xAA55 {
            return Err(BadFormat("no boot sector signature"));
        }
        if le16(bpb, 11) != 512 {
            return Err(BadFormat("sector size is not 512"));
        }
        let spc = u32::from(bpb[13]);
        if !spc.is_power_of_two() || spc > 128 {
            return Err(BadFormat("bad cluster size"));
        }
        let reserved = le16(bpb, 14);
        let num_fats = u32::from(bpb[16]);
        if reserved == 0 || !(1..=2).contains(&num_fats) || le16(bpb, 17) != 0 {
            return Err(BadFormat("bad FAT32 layout"));
        }
        let fat_size = match le16(bpb, 22) {
            0 => le32(bpb, 36),
            n => n,
        };
        let total = match le16(bpb, 19) {
            0 => le32(bpb, 32),
            n => n,
        };
        if fat_size == 0 || total > len {
            return Err(BadFormat("bad FAT32 sizes"));
        }
        let non_data = num_fats
            .checked_mul(fat_size)
            .and_then(|f| f.checked_add(reserved))
            .filter(|&n| n < total)
            .ok_or(BadFormat("FATs larger than the volume"))?;
        let clusters = (total - non_data) / spc;
        if clusters < MIN_FAT32_CLUSTERS {
            return Err(BadFormat("too few clusters for FAT32"));
        }
        if clusters > 0x0FFF_FFF5 || u64::from(fat_size) * 128 < u64::from(clusters) + 2 {
            return Err(BadFormat("FAT too small for the clusters"));
        }
        if le16(bpb, 42) != 0 {
            return Err(BadFormat("unknown FAT32 version"));
        }
        let root = le32(bpb, 44);
        let fsinfo = le16(bpb, 48);
        let g = Geometry {
            fat_start: start + reserved,
            fat_size,
            num_fats,
            blocks_per_cluster: spc,
            clusters,
            root,
            fsinfo: start + fsinfo,
        };
        if !g.valid(root) || fsinfo == 0 || fsinfo >= reserved {
            return Err(BadFormat("bad root cluster or FSInfo"));
        }
        rd(&mut b, g.fsinfo)?;
        let fi = &b[0].contents;
        if le32(fi, 0) != 0x4161_5252
            || le32(fi, 484) != 0x6141_7272
            || le32(fi, 508) != 0xAA55_0000
        {
            return Err(BadFormat("bad FSInfo"));
        }
        Ok(g)
    }

    /// A cluster number that addresses data on this volume.
    fn valid(&self, c: u32) -> bool {
        c >= 2 && c - 2 < self.clusters
    }

    fn cluster_bytes(&self) -> u64 {
        u64::from(self.blocks_per_cluster) * Block::LEN as u64
    }
}

/// One FAT link.
enum Link {
    Next(u32),
    End,
    Broken,
}

/// The open volume and `/SIMPLEGO/FILES`.
struct Mounted {
    vol: RawVolume,
    files: RawDirectory,
}

/// `/SIMPLEGO/FILES` on a card, with at most 6 open files.
///
/// All calls are synchronous: embedded-sdmmc is blocking, and the card is
/// local (§2). Close files (or call [`Card::into_device`]) before dropping:
/// a file's size reaches its directory entry only on [`Card::flush`] or
/// [`Card::close`].
pub struct Card<D: BlockDevice + Durable> {
    vm: Vm<D>,
    geo: Geometry,
    mounted: Option<Mounted>,
    open: Vec<RawFile>,
    /// Clusters freed by `delete` behind embedded-sdmmc's back: its in-memory
    /// free count lacks them until the volume is reopened (see `settle`).
    pending_free: u32,
}

type R<T, D> = Result<T, CardError<<D as BlockDevice>::Error>>;

impl<D: BlockDevice + Durable> Card<D> {
    /// Card init on an already FAT32-formatted card: creates `SIMPLEGO` and
    /// `SIMPLEGO/FILES` if absent (the only place directories are ever
    /// created, §1), syncs, and returns the mounted card. Writing the card
    /// marker is the caller's job.
    pub fn init(dev: D) -> R<Self, D> {
        Self::init_or_give_back(dev).map_err(|(e, _)| e)
    }

    /// Opens volume 0 and `/SIMPLEGO/FILES`: [`CardError::NotInitialised`]
    /// if missing, [`CardError::NeedsRepair`] if a directory entry is torn.
    pub fn mount(dev: D) -> R<Self, D> {
        Self::mount_or_give_back(dev).map_err(|(e, _)| e)
    }

    /// [`Card::mount`] that hands the device back on failure (to repair or
    /// re-init it).
    pub fn mount_or_give_back(dev: D) -> Result<Self, (CardError<D::Error>, D)> {
        Self::start(dev, false)
    }

    /// [`Card::init`] that hands the device back on failure.
    pub fn init_or_give_back(dev: D) -> Result<Self, (CardError<D::Error>, D)> {
        Self::start(dev, true)
    }

    fn start(dev: D, create: bool) -> Result<Self, (CardError<D::Error>, D)> {
        let geo = match Geometry::read(&dev) {
            Ok(g) => g,
            Err(e) => return Err((e, dev)),
        };
        let mut card = Card {
            vm: VolumeManager::new_with_limits(dev, FixedTime, 1),
            geo,
            mounted: None,
            open: Vec::new(),
            pending_free: 0,
        };
        match card.attach(create) {
            Ok(()) => Ok(card),
            Err(e) => Err((e, card.into_device())),
        }
    }

    /// Opens the volume and the FILES directory (creating the directories
    /// first when `create`). Closes what it opened on failure.
    fn attach(&mut self, create: bool) -> R<(), D> {
        let vol = self.vm.open_raw_volume(VolumeIdx(0)).map_err(fs_err)?;
        let r = self.open_files_dir(vol, create);
        match r {
            Ok(files) => {
                self.mounted = Some(Mounted { vol, files });
                Ok(())
            }
            Err(e) => {
                let _ = self.vm.close_volume(vol);
                Err(e)
            }
        }
    }

    fn open_files_dir(&self, vol: RawVolume, create: bool) -> R<RawDirectory, D> {
        self.check_chain(self.geo.root, None)?;
        let root = self.vm.open_root_dir(vol).map_err(fs_err)?;
        let r = (|| {
            if create {
                self.ensure_dir(root, TOP_DIR)?;
            }
            let top = self.open_checked_dir(root, TOP_DIR)?;
            let r = (|| {
                if create {
                    self.ensure_dir(top, FILES_DIR)?;
                }
                self.open_checked_dir(top, FILES_DIR)
            })();
            let _ = self.vm.close_dir(top);
            r
        })();
        let _ = self.vm.close_dir(root);
        r
    }

    fn ensure_dir(&self, parent: RawDirectory, name: &str) -> R<(), D> {
        match self.vm.find_directory_entry(parent, name) {
            Ok(e) if e.attributes.is_directory() => Ok(()),
            Ok(_) => Err(CardError::Exists),
            Err(FsError::NotFound) => {
                self.vm.make_dir_in_dir(parent, name).map_err(fs_err)?;
                self.vm.device(|d| d.sync()).map_err(CardError::Io)
            }
            Err(e) => Err(fs_err(e)),
        }
    }

    /// Opens a directory only after checking its entry: start cluster 0
    /// would open as the root (torn `make_dir`, §1).
    fn open_checked_dir(&self, parent: RawDirectory, name: &str) -> R<RawDirectory, D> {
        let e = match self.vm.find_directory_entry(parent, name) {
            Ok(e) => e,
            Err(FsError::NotFound) => return Err(CardError::NotInitialised),
            Err(e) => return Err(fs_err(e)),
        };
        if !e.attributes.is_directory() {
            return Err(CardError::NotInitialised);
        }
        let (cluster, _) = self.raw_entry(&e)?;
        if cluster == 0 {
            return Err(CardError::NeedsRepair);
        }
        self.check_chain(cluster, None)?;
        self.vm.open_dir(parent, name).map_err(fs_err)
    }

    fn read_block(&self, idx: u32, b: &mut [Block; 1]) -> R<(), D> {
        self.vm
            .device(|d| d.read(b, BlockIdx(idx)))
            .map_err(CardError::Io)
    }

    fn write_block(&self, idx: u32, b: &[Block; 1]) -> R<(), D> {
        self.vm
            .device(|d| d.write(b, BlockIdx(idx)))
            .map_err(CardError::Io)
    }

    /// (start cluster, size) from the on-disk entry (embedded-sdmmc keeps
    /// the cluster number private).
    fn raw_entry(&self, e: &DirEntry) -> R<(u32, u32), D> {
        let off = e.entry_offset as usize;
        if off > Block::LEN - 32 || !off.is_multiple_of(32) {
            return Err(CardError::NeedsRepair);
        }
        let mut b = [Block::new()];
        self.read_block(e.entry_block.0, &mut b)?;
        let d = &b[0].contents[off..off + 32];
        Ok((le16(d, 20) << 16 | le16(d, 26), le32(d, 28)))
    }

    fn link(&self, c: u32, cache: &mut (Option<u32>, [Block; 1])) -> R<Link, D> {
        let idx = self.geo.fat_start + c / 128;
        if cache.0 != Some(idx) {
            cache.0 = None;
            self.read_block(idx, &mut cache.1)?;
            cache.0 = Some(idx);
        }
        let v = le32(&cache.1[0].contents, (c % 128) as usize * 4) & 0x0FFF_FFFF;
        Ok(match v {
            1 | 0x0FFF_FFF8..=0x0FFF_FFFF => Link::End,
            v if self.geo.valid(v) => Link::Next(v),
            _ => Link::Broken,
        })
    }

    /// Walks a whole chain: every link in range, no cycle, and enough
    /// clusters for `size`. Returns the chain length.
    fn check_chain(&self, first: u32, size: Option<u32>) -> R<u32, D> {
        let size = u64::from(size.unwrap_or(0));
        if first == 0 {
            return if size == 0 {
                Ok(0)
            } else {
                Err(CardError::NeedsRepair)
            };
        }
        if !self.geo.valid(first) {
            return Err(CardError::NeedsRepair);
        }
        let mut cache = (None, [Block::new()]);
        let (mut c, mut n) = (first, 1u32);
        loop {
            match self.link(c, &mut cache)? {
                Link::End => break,
                Link::Next(next) if n < self.geo.clusters => {
                    n += 1;
                    c = next;
                }
                _ => return Err(CardError::NeedsRepair),
            }
        }
        if u64::from(n) * self.geo.cluster_bytes() < size {
            return Err(CardError::NeedsRepair);
        }
        Ok(n)
    }

    /// Marks a checked chain free in every FAT copy, one block
    /// read-modify-write at a time. Returns the clusters freed.
    fn free_chain(&self, first: u32) -> R<u32, D> {
        let mut cache = (None, [Block::new()]);
        let (mut c, mut n) = (first, 0u32);
        loop {
            let next = self.link(c, &mut cache)?;
            let Some(idx) = cache.0 else {
                return Err(CardError::NeedsRepair);
            };
            let o = (c % 128) as usize * 4;
            let e = &mut cache.1[0].contents[o..o + 4];
            let keep = le32(e, 0) & 0xF000_0000;
            e.copy_from_slice(&keep.to_le_bytes());
            n += 1;
            let next = match next {
                Link::Next(x) if n < self.geo.clusters => Some(x),
                Link::End => None,
                _ => return Err(CardError::NeedsRepair),
            };
            let leaving = next.is_none_or(|x| self.geo.fat_start + x / 128 != idx);
            if leaving {
                for k in 0..self.geo.num_fats {
                    self.write_block(idx + k * self.geo.fat_size, &cache.1)?;
                }
            }
            match next {
                Some(x) => c = x,
                None => return Ok(n),
            }
        }
    }

    /// Hands embedded-sdmmc the clusters `delete` freed: close the volume
    /// (it writes its free count to FSInfo), add ours there, reopen (it
    /// reads the count back). Only possible with no file open; until then
    /// the FSInfo count stays low, which FAT allows (it is a hint).
    fn settle(&mut self) -> R<(), D> {
        if self.pending_free == 0 || !self.open.is_empty() {
            return Ok(());
        }
        let Some(m) = self.mounted.take() else {
            return Ok(());
        };
        let _ = self.vm.close_dir(m.files);
        let closed = self.vm.close_volume(m.vol).map_err(fs_err);
        let patched = self.add_free_to_fsinfo();
        // The reopen reads the MBR first, which evicts embedded-sdmmc's one
        // cached block, so it cannot hold the FSInfo we just wrote.
        self.attach(false)?;
        closed.and(patched)
    }

    fn add_free_to_fsinfo(&mut self) -> R<(), D> {
        let mut b = [Block::new()];
        self.read_block(self.geo.fsinfo, &mut b)?;
        let count = le32(&b[0].contents, 488);
        if count != u32::MAX {
            let new = count
                .saturating_add(self.pending_free)
                .min(self.geo.clusters);
            b[0].contents[488..492].copy_from_slice(&new.to_le_bytes());
            self.write_block(self.geo.fsinfo, &b)?;
        }
        self.pending_free = 0;
        Ok(())
    }

    fn m(&self) -> R<&Mounted, D> {
        self.mounted.as_ref().ok_or(CardError::NotInitialised)
    }

    fn handle(&self, f: FileId) -> R<RawFile, D> {
        if self.open.contains(&f.0) {
            Ok(f.0)
        } else {
            Err(CardError::BadHandle)
        }
    }

    /// Finds a regular file's entry and checks its chain.
    fn checked_file(&self, name: &str) -> R<DirEntry, D> {
        check_name(name)?;
        let e = self
            .vm
            .find_directory_entry(self.m()?.files, name)
            .map_err(fs_err)?;
        if e.attributes.is_directory() || e.attributes.is_volume() {
            return Err(CardError::NotFound);
        }
        let (cluster, size) = self.raw_entry(&e)?;
        self.check_chain(cluster, Some(size))?;
        Ok(e)
    }

    /// Opens (or creates) `name` in `/SIMPLEGO/FILES`. A file can be open
    /// once at a time.
    pub fn open(&mut self, name: &str, mode: OpenMode) -> R<FileId, D> {
        check_name(name)?;
        let files = self.m()?.files;
        let raw = match mode {
            OpenMode::CreateNew => {
                match self.vm.open_file_in_dir(files, name, Mode::ReadWriteCreate) {
                    // An open file's name is taken too.
                    Err(FsError::FileAlreadyOpen) => Err(FsError::FileAlreadyExists),
                    r => r,
                }
            }
            OpenMode::ReadWrite | OpenMode::ReadOnly => {
                self.checked_file(name)?;
                let m = if mode == OpenMode::ReadOnly {
                    Mode::ReadOnly
                } else {
                    Mode::ReadWriteAppend
                };
                self.vm.open_file_in_dir(files, name, m)
            }
        }
        .map_err(fs_err)?;
        self.open.push(raw);
        Ok(FileId(raw))
    }

    /// Flushes and closes a file. The handle is gone even on error.
    pub fn close(&mut self, f: FileId) -> R<(), D> {
        let raw = self.handle(f)?;
        self.open.retain(|&r| r != raw);
        let r = self.vm.close_file(raw).map_err(fs_err);
        r.and(self.settle())
    }

    /// Writes `data` at `offset` ≤ the current length: overwrites and/or
    /// appends. Full blocks are written without a read; a partial block
    /// costs a read-modify-write. On error the file's content past `offset`
    /// is unknown.
    pub fn write_at(&mut self, f: FileId, offset: u64, data: &[u8]) -> R<(), D> {
        let raw = self.handle(f)?;
        let len = u64::from(self.vm.file_length(raw).map_err(fs_err)?);
        if offset > len {
            return Err(CardError::BadOffset);
        }
        if offset + data.len() as u64 > u64::from(embedded_sdmmc::MAX_FILE_SIZE) {
            return Err(CardError::TooLarge);
        }
        self.vm
            .file_seek_from_start(raw, offset as u32)
            .map_err(fs_err)?;
        self.vm.write(raw, data).map_err(fs_err)
    }

    /// Reads from `offset` ≤ length into `buf`; returns the bytes read
    /// (short only at the end of the file).
    pub fn read_at(&mut self, f: FileId, offset: u64, buf: &mut [u8]) -> R<usize, D> {
        let raw = self.handle(f)?;
        let len = u64::from(self.vm.file_length(raw).map_err(fs_err)?);
        if offset > len {
            return Err(CardError::BadOffset);
        }
        self.vm
            .file_seek_from_start(raw, offset as u32)
            .map_err(fs_err)?;
        let mut done = 0;
        while done < buf.len() {
            let n = self.vm.read(raw, &mut buf[done..]).map_err(fs_err)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    /// The file's current length, including unflushed writes.
    pub fn len(&self, f: FileId) -> R<u64, D> {
        let raw = self.handle(f)?;
        Ok(u64::from(self.vm.file_length(raw).map_err(fs_err)?))
    }

    /// Writes the size and first cluster to the directory entry (and the
    /// free count to FSInfo). Only then does a reboot see appended data.
    pub fn flush(&mut self, f: FileId) -> R<(), D> {
        let raw = self.handle(f)?;
        self.vm.flush_file(raw).map_err(fs_err)
    }

    /// The device barrier ([`Durable::sync`]): every earlier write is on the
    /// medium when it returns.
    pub fn sync(&mut self) -> R<(), D> {
        self.vm.device(|d| d.sync()).map_err(CardError::Io)
    }

    /// Deletes a closed file and frees its clusters.
    ///
    /// embedded-sdmmc only marks the entry free, so the clusters are freed
    /// here, after the entry: a cut in between leaks clusters (fsck reclaims
    /// them) but never leaves a file pointing at free space. A chain that
    /// fails the check is left allocated rather than freeing a cross-link.
    pub fn delete(&mut self, name: &str) -> R<(), D> {
        check_name(name)?;
        let files = self.m()?.files;
        let e = self.vm.find_directory_entry(files, name).map_err(fs_err)?;
        if e.attributes.is_directory() || e.attributes.is_volume() {
            return Err(CardError::NotFound);
        }
        let (cluster, _) = self.raw_entry(&e)?;
        let chain_ok = cluster != 0 && self.check_chain(cluster, None).is_ok();
        self.vm.delete_entry_in_dir(files, name).map_err(fs_err)?;
        // embedded-sdmmc's one-block cache now holds the directory block
        // (delete rewrote it), not a FAT block, so our FAT writes below
        // cannot be undone by a stale cached copy.
        if chain_ok {
            let n = self.free_chain(cluster)?;
            self.pending_free = self.pending_free.saturating_add(n);
        }
        self.settle()
    }

    /// The regular files in `/SIMPLEGO/FILES` as (8.3 name, size). Sizes of
    /// open files are those of their last flush.
    pub fn list(&self) -> R<Vec<(String, u64)>, D> {
        let mut out = Vec::new();
        self.vm
            .iterate_dir(self.m()?.files, |e| {
                let a = e.attributes;
                if !a.is_directory() && !a.is_volume() && !a.is_lfn() {
                    out.push((short_name(&e.name), u64::from(e.size)));
                }
                core::ops::ControlFlow::Continue(())
            })
            .map_err(fs_err)?;
        Ok(out)
    }

    /// Whether a regular file `name` exists.
    pub fn exists(&self, name: &str) -> R<bool, D> {
        check_name(name)?;
        match self.vm.find_directory_entry(self.m()?.files, name) {
            Ok(e) => Ok(!e.attributes.is_directory() && !e.attributes.is_volume()),
            Err(FsError::NotFound) => Ok(false),
            Err(e) => Err(fs_err(e)),
        }
    }

    /// Number of open files.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    /// Runs `f` on the device (e.g. to read [`crate::blockdev::Counting`]).
    pub fn with_device<T>(&self, f: impl FnOnce(&D) -> T) -> T {
        self.vm.device(|d| f(d))
    }

    /// Closes what can be closed (ignoring errors: after a power cut the
    /// device refuses writes) and gives the device back.
    pub fn into_device(mut self) -> D {
        for raw in core::mem::take(&mut self.open) {
            let _ = self.vm.close_file(raw);
        }
        if let Some(m) = self.mounted.take() {
            let _ = self.vm.close_dir(m.files);
            let _ = self.vm.close_volume(m.vol);
        }
        if self.pending_free > 0 {
            let _ = self.add_free_to_fsinfo();
        }
        self.vm.free().0
    }
}

/// Upper-case 8.3 names only: embedded-sdmmc creates no long names, and
/// SimpleGo's FatFS has LFN off (§1).
fn check_name<E: core::error::Error + 'static>(name: &str) -> Result<(), CardError<E>> {
    let ok_char = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'-';
    let (base, ext) = match name.split_once('.') {
        Some((b, e)) => (b, Some(e)),
        None => (name, None),
    };
    let good = (1..=8).contains(&base.len())
        && base.bytes().all(ok_char)
        && ext.is_none_or(|e| (1..=3).contains(&e.len()) && e.bytes().all(ok_char));
    if good {
        Ok(())
    } else {
        Err(CardError::BadName)
    }
}

fn short_name(n: &ShortFileName) -> String {
    let chr = |b: &u8| {
        if b.is_ascii_graphic() {
            char::from(*b)
        } else {
            '?'
        }
    };
    let mut s: String = n.base_name().iter().map(chr).collect();
    if !n.extension().is_empty() {
        s.push('.');
        s.extend(n.extension().iter().map(chr));
    }
    s
}

fn storage_err<E: core::error::Error + 'static>(e: CardError<E>) -> crate::storage::StorageError {
    use crate::storage::StorageError as S;
    match e {
        CardError::Full => S::Full,
        CardError::NotFound => S::NotFound,
        CardError::Exists => S::Exists,
        e => S::Io(alloc::string::ToString::to_string(&e)),
    }
}

/// The job's view of the card.
impl<D: BlockDevice + Durable> crate::storage::FileStore for Card<D> {
    type Handle = FileId;
    fn open(
        &mut self,
        name: &str,
        mode: crate::storage::OpenMode,
    ) -> Result<FileId, crate::storage::StorageError> {
        use crate::storage::OpenMode as M;
        let m = match mode {
            M::CreateNew => OpenMode::CreateNew,
            M::ReadWrite => OpenMode::ReadWrite,
            M::ReadOnly => OpenMode::ReadOnly,
            M::Truncate => {
                // embedded-sdmmc's truncation miscounts freed clusters;
                // delete (which frees the chain itself) and create again.
                Card::delete(self, name).map_err(storage_err)?;
                OpenMode::CreateNew
            }
        };
        Card::open(self, name, m).map_err(storage_err)
    }
    fn close(&mut self, h: FileId) -> Result<(), crate::storage::StorageError> {
        Card::close(self, h).map_err(storage_err)
    }
    fn len(&mut self, h: FileId) -> Result<u64, crate::storage::StorageError> {
        Card::len(self, h).map_err(storage_err)
    }
    fn read_at(
        &mut self,
        h: FileId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, crate::storage::StorageError> {
        Card::read_at(self, h, offset, buf).map_err(storage_err)
    }
    fn write_at(
        &mut self,
        h: FileId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), crate::storage::StorageError> {
        Card::write_at(self, h, offset, data).map_err(storage_err)
    }
    fn flush(&mut self, h: FileId) -> Result<(), crate::storage::StorageError> {
        Card::flush(self, h).map_err(storage_err)
    }
    fn sync(&mut self) -> Result<(), crate::storage::StorageError> {
        Card::sync(self).map_err(storage_err)
    }
    fn delete(&mut self, name: &str) -> Result<(), crate::storage::StorageError> {
        Card::delete(self, name).map_err(storage_err)
    }
    fn list(&mut self) -> Result<Vec<(String, u64)>, crate::storage::StorageError> {
        Card::list(self).map_err(storage_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        type E = crate::blockdev::DiskError;
        assert!(check_name::<E>("F1A2B3C4.SGF").is_ok());
        assert!(check_name::<E>("CARD.SGC").is_ok());
        assert!(check_name::<E>("NOEXT").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "f1.sgf",
            "TOOLONGNAME.SGF",
            "A.SGFX",
            "A.",
            "A/B",
            "A.B.C",
        ] {
            assert!(check_name::<E>(bad).is_err(), "{bad}");
        }
    }
}
