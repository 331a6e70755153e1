//! Each contact's message history on the card, encrypted.
//!
//! SimpleGo's own SGH files (device.md §1) reuse nonces after a power cut
//! and bind nothing to a record's place. Ours keep SGH's record framing but
//! fix both: every record has a fresh random 96-bit IV, so a record that is
//! written again after a cut never shares a nonce with the torn one, and the
//! AAD binds each record to its contact and its index, so records cannot be
//! swapped, moved to another contact or replayed at another place without
//! the tag failing. The header holds no counter: the history is whatever
//! authenticates when the file is scanned from the start, so there is
//! nothing to get out of step with the records when power fails.
//!
//! File `Hxxxxxxx.SGH` (contact id in hex) in `/SIMPLEGO/FILES`:
//! - header, 32 bytes: `"SGH\x01"`, version 3, three zero bytes, contact
//!   id u32 BE, 20 zero bytes;
//! - records: `u16 BE n ‖ iv(12) ‖ ciphertext ‖ tag(16)` with n = 28 + the
//!   plaintext's length; plaintext `direction u8 ‖ status u8 ‖ i64 BE unix
//!   time ‖ i64 BE agent message id ‖ u16 BE text length ‖ UTF-8 text`;
//! - a torn tail is covered, before the next append, by a filler:
//!   `u16 0 ‖ u32 BE k ‖ k bytes`, skipped by readers and unauthenticated
//!   (it carries nothing). FAT on embedded-sdmmc cannot shrink a file.
//!
//! Key: HKDF-SHA256(salt "simplego-history", ikm the files master key, info
//! `"sgh3" ‖ device id ‖ contact id u32 BE`), so a key is never shared
//! between contacts or devices (contact ids are never reused).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use device_sync::job::Entropy;
use device_sync::storage::{FileStore, OpenMode, StorageError, read_exact};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"SGH\x01";
const VERSION: u8 = 3;
const HEADER: u64 = 32;
const IV: usize = 12;
const TAG: usize = 16;
/// direction, status, time, message id, text length.
const FIXED: usize = 1 + 1 + 8 + 8 + 2;
/// The longest text a record holds (an SMP message body is smaller).
pub const MAX_TEXT: usize = u16::MAX as usize - IV - TAG - FIXED;
const FILLER_HEAD: usize = 6;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Received,
    Sent,
}

/// One message as kept on the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub direction: Direction,
    /// SGH's status byte: 0 for received; for sent, 1 once the router took it.
    pub status: u8,
    /// Unix seconds, 0 when the device had no clock.
    pub time: i64,
    /// The agent's message id (the sender's for received messages, ours
    /// for sent ones): how a message redelivered after a reset is
    /// recognised as already stored.
    pub msg_id: i64,
    pub text: String,
}

/// Why a history could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("the history file has no valid header")]
    BadHeader,
    /// A record that fails its tag with more records after it: not a torn
    /// tail but damage (or tampering). Nothing is appended after it.
    #[error("record {0} of the history is damaged")]
    Damaged(u32),
    #[error("the text is longer than {MAX_TEXT} bytes")]
    TooLong,
}

/// The card file of a contact's history.
pub fn file_name(contact: u32) -> String {
    alloc::format!("H{:07X}.SGH", contact & 0x0fff_ffff)
}

fn history_key(files_mk: &[u8; 32], device_id: &[u8; 16], contact: u32) -> Zeroizing<[u8; 32]> {
    let prk = Hkdf::<Sha256>::new(Some(b"simplego-history"), files_mk);
    let mut info = [0u8; 4 + 16 + 4];
    info[..4].copy_from_slice(b"sgh3");
    info[4..20].copy_from_slice(device_id);
    info[20..].copy_from_slice(&contact.to_be_bytes());
    let mut k = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    prk.expand(&info, &mut k[..]).expect("32-byte HKDF output");
    k
}

fn aad(contact: u32, index: u32) -> [u8; 12] {
    let mut a = [0u8; 12];
    a[..4].copy_from_slice(b"SGH3");
    a[4..8].copy_from_slice(&contact.to_be_bytes());
    a[8..].copy_from_slice(&index.to_be_bytes());
    a
}

/// An open history: where the next record goes and what the scan found.
pub struct History<S: FileStore> {
    file: S::Handle,
    cipher: Aes256Gcm,
    contact: u32,
    /// Authenticated records so far.
    count: u32,
    /// Offset after the last authenticated record (or filler).
    end: u64,
    /// The file's length; beyond `end` lies a torn tail.
    len: u64,
    /// The highest agent message id on the card, received and sent (the
    /// agent's ids only grow, in each direction).
    last: [Option<i64>; 2],
}

fn slot(d: Direction) -> usize {
    match d {
        Direction::Received => 0,
        Direction::Sent => 1,
    }
}

fn note(last: &mut [Option<i64>; 2], e: &Entry) {
    let l = &mut last[slot(e.direction)];
    *l = Some(l.map_or(e.msg_id, |l| l.max(e.msg_id)));
}

impl<S: FileStore> History<S> {
    /// Opens (or creates) the contact's history and scans it to its real
    /// end, so that a record torn by a power cut is found and covered.
    pub fn open(
        store: &mut S,
        files_mk: &[u8; 32],
        device_id: &[u8; 16],
        contact: u32,
    ) -> Result<Self, HistoryError> {
        let name = file_name(contact);
        let file = match store.open(&name, OpenMode::ReadWrite) {
            Ok(f) => f,
            Err(StorageError::NotFound) => {
                let f = store.open(&name, OpenMode::CreateNew)?;
                let mut h = [0u8; HEADER as usize];
                h[..4].copy_from_slice(MAGIC);
                h[4] = VERSION;
                h[8..12].copy_from_slice(&contact.to_be_bytes());
                store.write_at(f, 0, &h)?;
                store.flush(f)?;
                store.sync()?;
                f
            }
            Err(e) => return Err(e.into()),
        };
        let key = history_key(files_mk, device_id, contact);
        let mut h = History {
            file,
            cipher: Aes256Gcm::new(&(*key).into()),
            contact,
            count: 0,
            end: HEADER,
            len: 0,
            last: [None; 2],
        };
        match h.scan(store, |_| {}) {
            Ok(()) => Ok(h),
            Err(e) => {
                let _ = store.close(file);
                Err(e)
            }
        }
    }

    /// Reads every record from the start, calling `each`; leaves `end`
    /// after the last good one.
    fn scan(&mut self, store: &mut S, mut each: impl FnMut(Entry)) -> Result<(), HistoryError> {
        self.len = store.len(self.file)?;
        let mut head = [0u8; HEADER as usize];
        if self.len < HEADER {
            return Err(HistoryError::BadHeader);
        }
        read_exact(store, self.file, 0, &mut head)?;
        if &head[..4] != MAGIC || head[4] != VERSION || head[8..12] != self.contact.to_be_bytes() {
            return Err(HistoryError::BadHeader);
        }
        let (mut at, mut count, mut last) = (HEADER, 0u32, [None; 2]);
        let mut buf = Vec::new();
        loop {
            let mut n = [0u8; 2];
            if at + 2 > self.len {
                break;
            }
            read_exact(store, self.file, at, &mut n)?;
            let n = u16::from_be_bytes(n) as u64;
            if n == 0 {
                let mut k = [0u8; 4];
                if at + FILLER_HEAD as u64 > self.len {
                    break;
                }
                read_exact(store, self.file, at + 2, &mut k)?;
                let next = at + FILLER_HEAD as u64 + u64::from(u32::from_be_bytes(k));
                if next > self.len {
                    break;
                }
                at = next;
                continue;
            }
            let next = at + 2 + n;
            if next > self.len || n < (IV + TAG + FIXED) as u64 {
                // Torn (or not a record at all): the tail is covered on the
                // next append.
                break;
            }
            buf.resize(n as usize, 0);
            read_exact(store, self.file, at + 2, &mut buf)?;
            match self.open_record(count, &mut buf) {
                Some(e) => {
                    note(&mut last, &e);
                    each(e);
                }
                None if next == self.len => break,
                None => return Err(HistoryError::Damaged(count)),
            }
            count += 1;
            at = next;
        }
        self.count = count;
        self.end = at;
        self.last = last;
        Ok(())
    }

    fn open_record(&self, index: u32, rec: &mut [u8]) -> Option<Entry> {
        let (iv, rest) = rec.split_at_mut(IV);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG);
        let tag: [u8; TAG] = (&*tag).try_into().ok()?;
        let iv: [u8; IV] = (&*iv).try_into().ok()?;
        self.cipher
            .decrypt_inout_detached(
                &Nonce::from(iv),
                &aad(self.contact, index),
                body.into(),
                &Tag::from(tag),
            )
            .ok()?;
        let direction = match body[0] {
            0 => Direction::Received,
            1 => Direction::Sent,
            _ => return None,
        };
        let status = body[1];
        let time = i64::from_be_bytes(body[2..10].try_into().ok()?);
        let msg_id = i64::from_be_bytes(body[10..18].try_into().ok()?);
        let tl = u16::from_be_bytes(body[18..20].try_into().ok()?) as usize;
        let text = core::str::from_utf8(body.get(FIXED..FIXED + tl)?).ok()?;
        Some(Entry {
            direction,
            status,
            time,
            msg_id,
            text: String::from(text),
        })
    }

    /// Records that authenticate.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the message with this agent id, in this direction, is on
    /// the card already (it came again after a reset, before it was
    /// released).
    pub fn has(&self, direction: Direction, msg_id: i64) -> bool {
        self.last[slot(direction)].is_some_and(|l| msg_id <= l)
    }

    /// Appends `e` and returns once it is on the medium (the caller may
    /// then acknowledge the message).
    pub fn append(
        &mut self,
        store: &mut S,
        e: &Entry,
        rng: &mut impl Entropy,
    ) -> Result<(), HistoryError> {
        let text = e.text.as_bytes();
        if text.len() > MAX_TEXT {
            return Err(HistoryError::TooLong);
        }
        let mut rec = vec![0u8; 2 + IV + FIXED + text.len() + TAG];
        let n = (rec.len() - 2) as u16;
        rec[..2].copy_from_slice(&n.to_be_bytes());
        let mut iv = [0u8; IV];
        rng.fill(&mut iv);
        rec[2..2 + IV].copy_from_slice(&iv);
        {
            let body = &mut rec[2 + IV..2 + IV + FIXED + text.len()];
            body[0] = match e.direction {
                Direction::Received => 0,
                Direction::Sent => 1,
            };
            body[1] = e.status;
            body[2..10].copy_from_slice(&e.time.to_be_bytes());
            body[10..18].copy_from_slice(&e.msg_id.to_be_bytes());
            body[18..20].copy_from_slice(&(text.len() as u16).to_be_bytes());
            body[FIXED..].copy_from_slice(text);
        }
        let tag_at = rec.len() - TAG;
        let (head, tag_out) = rec.split_at_mut(tag_at);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &Nonce::from(iv),
                &aad(self.contact, self.count),
                (&mut head[2 + IV..]).into(),
            )
            .map_err(|_| HistoryError::TooLong)?;
        tag_out.copy_from_slice(&tag);
        let mut at = self.end;
        if self.len > at {
            // Cover the torn tail so that the record goes where readers
            // will look for it.
            let k = (self.len - at).saturating_sub(FILLER_HEAD as u64) as u32;
            let mut f = [0u8; FILLER_HEAD];
            f[2..].copy_from_slice(&k.to_be_bytes());
            store.write_at(self.file, at, &f)?;
            at += FILLER_HEAD as u64 + u64::from(k);
        }
        store.write_at(self.file, at, &rec)?;
        store.flush(self.file)?;
        store.sync()?;
        self.end = at + rec.len() as u64;
        self.len = self.len.max(self.end);
        self.count += 1;
        note(&mut self.last, e);
        Ok(())
    }

    /// Every message, oldest first.
    pub fn read_all(&mut self, store: &mut S) -> Result<Vec<Entry>, HistoryError> {
        let mut out = Vec::new();
        self.scan(store, |e| out.push(e))?;
        Ok(out)
    }

    pub fn close(self, store: &mut S) -> Result<(), HistoryError> {
        Ok(store.close(self.file)?)
    }
}
