//! What is on the card: listing the files, extracting one, and checking
//! every record of every file. Every read is authenticated, so a damaged,
//! moved or truncated record is reported, never returned.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use smp_core::encoding::pad::FILE_LEN_SIZE;
use smp_core::file::description::FileDescription;
use smp_core::file::header::FileHeader;

use crate::format::header::SgfHeader;
use crate::format::journal::{Failure, JOURNAL_LEN, JobState, JournalEntry};
use crate::format::keys::FileKeys;
use crate::format::layout::{ChunkLayout, RECORD, Runs};
use crate::format::record::RecordCipher;
use crate::format::{BLOCK, FormatError};
use crate::job::{DeviceKeys, Entropy, Job, JobError, JobNames};
use crate::storage::{FileStore, OpenMode, StorageError, read_exact};

/// One stored file, as `ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub base: String,
    pub state: JobState,
    pub failure: Failure,
    pub chunks_done: u32,
    pub chunks: u32,
    /// XFTP encrypted size.
    pub enc_size: u64,
    /// From record 0, once the first chunk is committed.
    pub header: Option<FileHeader>,
    pub content_len: Option<u64>,
}

/// An open data file with its keys and trusted journal entry.
struct Opened<S: FileStore> {
    data: S::Handle,
    header: SgfHeader,
    records: RecordCipher,
    journal: JournalEntry,
}

fn open_file<S: FileStore>(
    store: &mut S,
    keys: &DeviceKeys,
    base: &str,
) -> Result<Opened<S>, JobError> {
    let names = JobNames::from_base(base);
    let data = store.open(&names.data(), OpenMode::ReadOnly)?;
    let r = (|| {
        let mut block = [0u8; BLOCK];
        read_exact(store, data, 0, &mut block)?;
        let k = SgfHeader::key_inputs(&block)?;
        let fkeys = FileKeys::derive(&keys.files_mk, &k.salt, &k.file_id, &keys.device_id);
        let header = SgfHeader::decode(&block, &fkeys.mac)?;
        let j = store.open(&names.journal(), OpenMode::ReadOnly)?;
        let mut jb = [0u8; JOURNAL_LEN];
        let n = store.read_at(j, 0, &mut jb);
        store.close(j)?;
        if n? != JOURNAL_LEN {
            return Err(JobError::NotStarted);
        }
        let journal = JournalEntry::recover(&jb, &fkeys.mac).ok_or(JobError::NotStarted)?;
        Ok((header, RecordCipher::new(&fkeys.data), journal))
    })();
    match r {
        Ok((header, records, journal)) => Ok(Opened {
            data,
            header,
            records,
            journal,
        }),
        Err(e) => {
            let _ = store.close(data);
            Err(e)
        }
    }
}

/// Chunks whose records are trusted: all of them once verified.
fn trusted_chunks(o: &Opened<impl FileStore>) -> u32 {
    match o.journal.state {
        JobState::Verified | JobState::Acked => o.header.runs.chunk_count(),
        JobState::Fetching => o.journal.next_chunk,
        JobState::Failed => 0,
    }
}

/// Opens record `r` of chunk `c` into `buf`; returns its plaintext length.
fn read_record<S: FileStore>(
    store: &mut S,
    o: &Opened<S>,
    c: &ChunkLayout,
    r: u32,
    buf: &mut [u8; RECORD],
) -> Result<usize, FormatError> {
    let g = c.first_record + r;
    let rec = &mut buf[..c.record_len(r)];
    read_exact(store, o.data, c.record_offset(r), rec).map_err(|_| FormatError::Record(g))?;
    let n = o.records.open(c, r, rec)?.len();
    buf.copy_within(12..12 + n, 0);
    Ok(n)
}

/// The file header from record 0: `(header, offset of the content, content length)`.
fn parse_head(plain: &[u8]) -> Option<(FileHeader, usize, u64)> {
    let l = i64::from_be_bytes(plain.get(..FILE_LEN_SIZE)?.try_into().ok()?);
    let (h, hlen) = FileHeader::decode_prefix(plain.get(FILE_LEN_SIZE..)?).ok()?;
    let content = u64::try_from(l).ok()?.checked_sub(hlen as u64)?;
    Some((h, FILE_LEN_SIZE + hlen, content))
}

/// A listed job, or its name and why it could not be read.
pub type Listed = Result<StoredFile, (String, JobError)>;

/// Every job on the card; one that cannot be read is reported with why.
pub fn list<S: FileStore>(store: &mut S, keys: &DeviceKeys) -> Result<Vec<Listed>, StorageError> {
    let mut out = Vec::new();
    let mut bases: Vec<String> = store
        .list()?
        .into_iter()
        .filter_map(|(n, _)| n.strip_suffix(".SGF").map(String::from))
        .collect();
    bases.sort();
    for base in bases {
        out.push(describe(store, keys, &base).map_err(|e| (base, e)));
    }
    Ok(out)
}

fn describe<S: FileStore>(
    store: &mut S,
    keys: &DeviceKeys,
    base: &str,
) -> Result<StoredFile, JobError> {
    let o = open_file(store, keys, base)?;
    let mut head = None;
    if trusted_chunks(&o) > 0 {
        let c = o
            .header
            .runs
            .chunk(0)
            .ok_or(FormatError::Invalid("data file", "no chunk"))?;
        let mut buf = Box::new([0u8; RECORD]);
        if let Ok(n) = read_record(store, &o, &c, 0, &mut buf) {
            head = parse_head(&buf[..n]);
        }
    }
    let f = StoredFile {
        base: String::from(base),
        state: o.journal.state,
        failure: o.journal.failure,
        chunks_done: o.journal.next_chunk,
        chunks: o.header.runs.chunk_count(),
        enc_size: o.header.runs.enc_size(),
        content_len: head.as_ref().map(|h| h.2),
        header: head.map(|h| h.0),
    };
    store.close(o.data)?;
    Ok(f)
}

/// Why an extraction stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError<E> {
    #[error("{0}")]
    Job(#[from] JobError),
    #[error("the file is not complete ({0:?}); extract it partially if you want what arrived")]
    Incomplete(JobState),
    #[error("the file's first record holds no valid file header")]
    BadHeader,
    #[error("writing the output: {0}")]
    Output(E),
}

/// Streams a file's content (without the XFTP header and padding) to
/// `out`. Refuses incomplete files unless `partial`, which gives the
/// content of the committed chunks.
pub fn extract<S: FileStore, E>(
    store: &mut S,
    keys: &DeviceKeys,
    base: &str,
    partial: bool,
    mut out: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<FileHeader, ExtractError<E>> {
    let o = open_file(store, keys, base)?;
    let r = (|| {
        let complete = matches!(o.journal.state, JobState::Verified | JobState::Acked);
        if !complete && !partial {
            return Err(ExtractError::Incomplete(o.journal.state));
        }
        let upto = trusted_chunks(&o);
        if upto == 0 {
            return Err(ExtractError::Incomplete(o.journal.state));
        }
        let runs: Runs = o.header.runs.clone();
        let mut buf = Box::new([0u8; RECORD]);
        let mut chunk = runs.chunk(0);
        let mut header = None;
        let mut left = 0u64;
        while let Some(c) = chunk {
            if c.index >= upto {
                break;
            }
            for r in 0..c.records {
                let n = read_record(store, &o, &c, r, &mut buf).map_err(JobError::from)?;
                let mut p = &buf[..n];
                if header.is_none() {
                    let (h, start, len) = parse_head(p).ok_or(ExtractError::BadHeader)?;
                    header = Some(h);
                    left = len;
                    p = &p[start.min(p.len())..];
                }
                let take = (left.min(p.len() as u64)) as usize;
                if take > 0 {
                    out(&p[..take]).map_err(ExtractError::Output)?;
                    left -= take as u64;
                }
            }
            chunk = c.next(&runs);
        }
        if complete && left != 0 {
            return Err(ExtractError::BadHeader);
        }
        header.ok_or(ExtractError::BadHeader)
    })();
    let _ = store.close(o.data);
    r
}

/// What `verify` found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub state: JobState,
    /// Records checked.
    pub records: u32,
    /// Global indexes of records that failed their check.
    pub damaged: Vec<u32>,
    /// The data file is shorter than its committed records.
    pub truncated: bool,
}

/// Checks the header and journal MACs and the tag of every committed record.
pub fn verify<S: FileStore>(
    store: &mut S,
    keys: &DeviceKeys,
    base: &str,
) -> Result<VerifyReport, JobError> {
    let o = open_file(store, keys, base)?;
    let runs = o.header.runs.clone();
    let upto = trusted_chunks(&o);
    let len = store.len(o.data)?;
    let mut rep = VerifyReport {
        state: o.journal.state,
        records: 0,
        damaged: Vec::new(),
        truncated: false,
    };
    let mut buf = Box::new([0u8; RECORD]);
    let mut chunk = runs.chunk(0);
    while let Some(c) = chunk {
        if c.index >= upto {
            break;
        }
        if c.end() > len {
            rep.truncated = true;
        }
        for r in 0..c.records {
            rep.records += 1;
            if read_record(store, &o, &c, r, &mut buf).is_err() {
                rep.damaged.push(c.first_record + r);
            }
        }
        chunk = c.next(&runs);
    }
    store.close(o.data)?;
    Ok(rep)
}

/// The job already on the card for the file with this digest, still
/// fetching or complete.
pub fn find_job<S: FileStore>(
    card: &mut S,
    keys: &DeviceKeys,
    digest: &[u8],
) -> Result<Option<Job<S>>, JobError> {
    let listed = list(card, keys)?;
    for f in listed.into_iter().flatten() {
        if !matches!(
            f.state,
            JobState::Fetching | JobState::Verified | JobState::Acked
        ) {
            continue;
        }
        match Job::resume(card, keys, &f.base) {
            Ok(job) if job.digest().as_slice() == digest => return Ok(Some(job)),
            Ok(job) => job.close(card)?,
            Err(_) => {}
        }
    }
    Ok(None)
}

/// Deletes the files of jobs that never started (power lost at creation).
pub fn clean_unstarted<S: FileStore>(card: &mut S, keys: &DeviceKeys) -> Result<(), StorageError> {
    let listed = list(card, keys)?;
    for (base, e) in listed.into_iter().filter_map(Result::err) {
        if matches!(e, JobError::NotStarted) {
            for ext in ["SGF", "SGJ", "SGM"] {
                let _ = card.delete(&format!("{base}.{ext}"));
            }
        }
    }
    Ok(())
}

/// The job for `desc`: the one on the card (to resume or already done),
/// or a new one.
pub fn job_for<S: FileStore>(
    card: &mut S,
    keys: &DeviceKeys,
    desc: &FileDescription,
    rng: &mut impl Entropy,
) -> Result<Job<S>, JobError> {
    clean_unstarted(card, keys)?;
    match find_job(card, keys, &desc.digest)? {
        Some(j) => Ok(j),
        None => Job::create(card, keys, desc, rng),
    }
}
