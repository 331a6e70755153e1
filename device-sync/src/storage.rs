//! What the job needs from the card: a flat directory of named files with
//! positioned reads and writes, a per-file flush (the FAT directory entry)
//! and a device barrier. The card over embedded-sdmmc implements it; tests
//! also use an in-memory one ([`MemFiles`]).

use alloc::string::String;
use alloc::vec::Vec;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// A new file; fails if it exists.
    CreateNew,
    ReadWrite,
    ReadOnly,
    /// An existing file cut to length 0 (the only truncation FAT allows here).
    Truncate,
}

/// Storage failures the job tells apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("the card is full")]
    Full,
    #[error("no such file on the card")]
    NotFound,
    #[error("the file exists already")]
    Exists,
    #[error("card error: {0}")]
    Io(String),
}

/// A flat directory of files on the card.
pub trait FileStore {
    type Handle: Copy;
    fn open(&mut self, name: &str, mode: OpenMode) -> Result<Self::Handle, StorageError>;
    fn close(&mut self, h: Self::Handle) -> Result<(), StorageError>;
    fn len(&mut self, h: Self::Handle) -> Result<u64, StorageError>;
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end.
    fn read_at(
        &mut self,
        h: Self::Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError>;
    /// Writes at `offset` ≤ the current length (overwrite and/or append).
    fn write_at(&mut self, h: Self::Handle, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// Puts the file's size and first cluster into its directory entry.
    fn flush(&mut self, h: Self::Handle) -> Result<(), StorageError>;
    /// Returns once every earlier write is on the medium.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Deletes a closed file.
    fn delete(&mut self, name: &str) -> Result<(), StorageError>;
    /// `(name, size)` of every file.
    fn list(&mut self) -> Result<Vec<(String, u64)>, StorageError>;
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn read_exact<S: FileStore>(
    s: &mut S,
    h: S::Handle,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), StorageError> {
    if s.read_at(h, offset, buf)? != buf.len() {
        return Err(StorageError::Io(String::from(
            "file is shorter than expected",
        )));
    }
    Ok(())
}

/// An in-memory [`FileStore`] with a capacity, for tests of the job
/// logic apart from FAT.
#[derive(Debug, Clone, Default)]
pub struct MemFiles {
    files: Vec<(String, Vec<u8>, bool)>,
    open: Vec<Option<usize>>,
    /// Total bytes the store may hold; `None` is unlimited.
    pub capacity: Option<u64>,
    /// Counts `write_at` calls (for power-cut tests: fail after a budget).
    pub writes: u64,
    /// Fail every write after this many.
    pub write_budget: Option<u64>,
}

impl MemFiles {
    fn find(&self, name: &str) -> Option<usize> {
        self.files
            .iter()
            .position(|(n, _, live)| *live && n == name)
    }
    fn file(&mut self, h: usize) -> Result<&mut Vec<u8>, StorageError> {
        let i = self
            .open
            .get(h)
            .copied()
            .flatten()
            .ok_or(StorageError::NotFound)?;
        Ok(&mut self.files[i].1)
    }
    fn used(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.2)
            .map(|f| f.1.len() as u64)
            .sum()
    }
    /// Forgets every open handle, as a reboot does.
    pub fn reset_handles(&mut self) {
        self.open.clear();
    }

    /// A file's bytes, for tests that tamper with them.
    pub fn bytes_mut(&mut self, name: &str) -> Option<&mut Vec<u8>> {
        let i = self.find(name)?;
        Some(&mut self.files[i].1)
    }
}

impl FileStore for MemFiles {
    type Handle = usize;
    fn open(&mut self, name: &str, mode: OpenMode) -> Result<usize, StorageError> {
        let i = match (self.find(name), mode) {
            (Some(_), OpenMode::CreateNew) => return Err(StorageError::Exists),
            (None, OpenMode::CreateNew) => {
                self.files.push((String::from(name), Vec::new(), true));
                self.files.len() - 1
            }
            (None, _) => return Err(StorageError::NotFound),
            (Some(i), OpenMode::Truncate) => {
                self.files[i].1.clear();
                i
            }
            (Some(i), _) => i,
        };
        self.open.push(Some(i));
        Ok(self.open.len() - 1)
    }
    fn close(&mut self, h: usize) -> Result<(), StorageError> {
        *self.open.get_mut(h).ok_or(StorageError::NotFound)? = None;
        Ok(())
    }
    fn len(&mut self, h: usize) -> Result<u64, StorageError> {
        Ok(self.file(h)?.len() as u64)
    }
    fn read_at(&mut self, h: usize, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        let f = self.file(h)?;
        let start = (offset as usize).min(f.len());
        let n = buf.len().min(f.len() - start);
        buf[..n].copy_from_slice(&f[start..start + n]);
        Ok(n)
    }
    fn write_at(&mut self, h: usize, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.writes += 1;
        if self.write_budget.is_some_and(|b| self.writes > b) {
            return Err(StorageError::Io(String::from("power cut")));
        }
        let used = self.used();
        let cap = self.capacity;
        let f = self.file(h)?;
        let offset = offset as usize;
        if offset > f.len() {
            return Err(StorageError::Io(String::from("write beyond the end")));
        }
        let grow = (offset + data.len()).saturating_sub(f.len()) as u64;
        if cap.is_some_and(|c| used + grow > c) {
            return Err(StorageError::Full);
        }
        let end = offset + data.len();
        if end > f.len() {
            f.resize(end, 0);
        }
        f[offset..end].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self, h: usize) -> Result<(), StorageError> {
        self.file(h).map(|_| ())
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    fn delete(&mut self, name: &str) -> Result<(), StorageError> {
        let i = self.find(name).ok_or(StorageError::NotFound)?;
        if self.open.contains(&Some(i)) {
            return Err(StorageError::Io(String::from("file is open")));
        }
        self.files[i].2 = false;
        self.files[i].1 = Vec::new();
        Ok(())
    }
    fn list(&mut self) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self
            .files
            .iter()
            .filter(|f| f.2)
            .map(|f| (f.0.clone(), f.1.len() as u64))
            .collect())
    }
}
