//! Store rules and accounting (xftp.md §8.2–§8.5, §11.4).

use std::path::PathBuf;

use smp_core::crypto::keys::{KeyAlgorithm, PublicKey};
use smp_core::xftp::command::{FileInfo, FileParty};
use smp_core::xftp::error::{BlockingInfo, BlockingReason, XftpErrorType};
use xftp_server::store::{FileId, FileStatus, FileStore, expire_cutoff, round_file_time};

fn key(b: u8) -> PublicKey {
    PublicKey::from_raw(KeyAlgorithm::Ed25519, &[b; 32]).unwrap()
}

fn info(size: u32) -> FileInfo {
    FileInfo {
        snd_key: key(7),
        size,
        digest: vec![0xab; 32],
    }
}

fn spam() -> BlockingInfo {
    BlockingInfo {
        reason: BlockingReason::Spam,
        notice: None,
    }
}

/// An RNG that hands out the given IDs in order.
fn seq_rng(ids: Vec<FileId>) -> impl FnMut(&mut [u8]) {
    let mut it = ids.into_iter();
    move |buf: &mut [u8]| buf.copy_from_slice(&it.next().expect("rng exhausted"))
}

#[test]
fn hour_rounding_floors() {
    assert_eq!(round_file_time(7199), 3600);
    assert_eq!(round_file_time(7200), 7200);
    assert_eq!(round_file_time(-1), -3600);
}

#[test]
fn add_file_rules() {
    let mut st = FileStore::new(None);
    assert_eq!(
        st.add_file([1; 16], info(0), 0, FileStatus::Active),
        Err(XftpErrorType::Size)
    );
    assert_eq!(
        st.add_file([1; 16], info(10), 0, FileStatus::Active),
        Ok(())
    );
    assert_eq!(
        st.add_file([1; 16], info(10), 0, FileStatus::Active),
        Err(XftpErrorType::Duplicate)
    );
    assert_eq!(
        st.get_file(FileParty::Sender, &[9; 16]).unwrap_err(),
        XftpErrorType::Auth
    );
    assert_eq!(
        st.get_file(FileParty::Recipient, &[9; 16]).unwrap_err(),
        XftpErrorType::Auth
    );
}

#[test]
fn create_file_rounds_time_and_retries_ids() {
    let mut st = FileStore::new(None);
    st.add_file([1; 16], info(10), 0, FileStatus::Active)
        .unwrap();
    // Two collisions, then a free ID.
    let mut rng = seq_rng(vec![[1; 16], [1; 16], [2; 16]]);
    let id = st.create_file(&mut rng, info(10), 7300).unwrap();
    assert_eq!(id, [2; 16]);
    let f = st.get_file(FileParty::Sender, &id).unwrap();
    assert_eq!(f.file.created_at, 7200);
    assert_eq!(f.file.status, FileStatus::Active);
    assert_eq!(f.key, key(7));
    // Three collisions → INTERNAL.
    let mut rng = seq_rng(vec![[1; 16], [2; 16], [1; 16]]);
    assert_eq!(
        st.create_file(&mut rng, info(10), 0),
        Err(XftpErrorType::Internal)
    );
    assert_eq!(st.file_count(), 2);
}

#[test]
fn recipients_in_key_order_with_retries() {
    let mut st = FileStore::new(None);
    st.add_file([1; 16], info(10), 0, FileStatus::Active)
        .unwrap();
    let mut rng = seq_rng(vec![[1; 16], [3; 16], [3; 16], [4; 16]]);
    // Only the recipient map is checked, so a sender ID is a valid
    // recipient ID, as in the reference.
    let r = st
        .create_recipients(&mut rng, &[1; 16], &[key(1), key(2), key(3)])
        .unwrap();
    assert_eq!(
        r,
        vec![([1; 16], key(1)), ([3; 16], key(2)), ([4; 16], key(3))]
    );
    let l = st.get_file(FileParty::Recipient, &[4; 16]).unwrap();
    assert_eq!(l.key, key(3));
    assert_eq!(l.file.sender_id, [1; 16]);
    assert_eq!(
        st.add_recipient(&[1; 16], [3; 16], key(9)),
        Err(XftpErrorType::Duplicate)
    );
    assert_eq!(
        st.add_recipient(&[8; 16], [8; 16], key(9)),
        Err(XftpErrorType::Auth)
    );
    // Collisions exhaust the attempts: INTERNAL, earlier keys stay added.
    let mut rng = seq_rng(vec![[5; 16], [3; 16], [4; 16], [1; 16]]);
    assert_eq!(
        st.create_recipients(&mut rng, &[1; 16], &[key(5), key(6)]),
        Err(XftpErrorType::Internal)
    );
    assert!(st.get_file(FileParty::Recipient, &[5; 16]).is_ok());
}

#[test]
fn set_path_rules() {
    let mut st = FileStore::new(None);
    assert_eq!(
        st.set_file_path(&[1; 16], "a".into()),
        Err(XftpErrorType::Auth)
    );
    st.add_file([1; 16], info(10), 0, FileStatus::Active)
        .unwrap();
    st.set_file_path(&[1; 16], "a".into()).unwrap();
    assert_eq!(
        st.set_file_path(&[1; 16], "b".into()),
        Err(XftpErrorType::Auth)
    );
    let f = st.get_file(FileParty::Sender, &[1; 16]).unwrap().file;
    assert_eq!(f.path, Some(PathBuf::from("a")));
    st.add_file([2; 16], info(10), 0, FileStatus::Blocked(spam()))
        .unwrap();
    assert_eq!(
        st.set_file_path(&[2; 16], "c".into()),
        Err(XftpErrorType::Auth)
    );
    st.add_file([3; 16], info(10), 0, FileStatus::Off).unwrap();
    assert_eq!(
        st.set_file_path(&[3; 16], "c".into()),
        Err(XftpErrorType::Auth)
    );
}

#[test]
fn delete_ack_block() {
    let mut st = FileStore::new(None);
    st.add_file([1; 16], info(10), 0, FileStatus::Active)
        .unwrap();
    st.add_recipient(&[1; 16], [2; 16], key(2)).unwrap();
    st.add_recipient(&[1; 16], [3; 16], key(3)).unwrap();
    st.ack_file(&[2; 16]).unwrap();
    assert_eq!(st.ack_file(&[2; 16]), Err(XftpErrorType::Auth));
    assert_eq!(
        st.get_file(FileParty::Recipient, &[2; 16]).unwrap_err(),
        XftpErrorType::Auth
    );
    assert!(st.get_file(FileParty::Sender, &[1; 16]).is_ok());
    let before = st.block_file(&[1; 16], spam()).unwrap();
    assert_eq!(before.status, FileStatus::Active);
    let l = st.get_file(FileParty::Recipient, &[3; 16]).unwrap();
    assert_eq!(l.file.blocked(), Some(spam()));
    assert_eq!(l.file.status.encode(), "blocked,reason=spam");
    st.delete_file(&[1; 16]).unwrap();
    assert_eq!(
        st.get_file(FileParty::Recipient, &[3; 16]).unwrap_err(),
        XftpErrorType::Auth
    );
    assert_eq!(
        st.get_file(FileParty::Sender, &[1; 16]).unwrap_err(),
        XftpErrorType::Auth
    );
    assert_eq!(st.delete_file(&[1; 16]).unwrap_err(), XftpErrorType::Auth);
    assert_eq!(
        st.block_file(&[1; 16], spam()).unwrap_err(),
        XftpErrorType::Auth
    );
}

#[test]
fn expired_listing() {
    let mut st = FileStore::new(None);
    st.add_file([1; 16], info(10), 3600, FileStatus::Active)
        .unwrap();
    st.add_file([2; 16], info(20), 7200, FileStatus::Blocked(spam()))
        .unwrap();
    st.set_file_path(&[1; 16], "p".into()).unwrap();
    // createdAt + 3600 < cutoff
    assert!(st.expired_files(7200).is_empty());
    let e = st.expired_files(7201);
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].sender_id, e[0].path.clone(), e[0].size),
        ([1; 16], Some("p".into()), 10)
    );
    assert_eq!(st.expired_files(10_801).len(), 2);
    assert_eq!(expire_cutoff(100_000, 48 * 3600), 100_000 - 172_800);
}

#[test]
fn accounting_follows_reference() {
    let mut st = FileStore::new(Some(100));
    st.add_file([1; 16], info(40), 0, FileStatus::Active)
        .unwrap();
    st.add_file([2; 16], info(30), 0, FileStatus::Active)
        .unwrap();
    st.add_file([3; 16], info(20), 0, FileStatus::Blocked(spam()))
        .unwrap();
    // Start: all records count, uploaded or not, blocked or not.
    assert_eq!(st.reset_used_storage(), 90);
    assert_eq!(st.file_count(), 3);
    // Quirk: an upload after restart reserves again.
    assert_eq!(st.reserve(40), Err(XftpErrorType::Quota));
    assert_eq!(st.used_storage(), 90);
    assert_eq!(st.reserve(10), Ok(()));
    assert_eq!(st.used_storage(), 100); // used + size == quota is fine
    st.release(10); // failed upload
    assert_eq!(st.used_storage(), 90);
    st.reserve(10).unwrap();
    st.set_file_path(&[1; 16], "a".into()).unwrap(); // path does not count
    assert_eq!(st.used_storage(), 100);
    // Deleting a file that was never uploaded releases nothing.
    st.delete_file(&[2; 16]).unwrap();
    assert_eq!(st.used_storage(), 100);
    // Blocking an uploaded file releases its size once; a second block and
    // the later delete do not release again.
    st.block_file(&[1; 16], spam()).unwrap();
    assert_eq!(st.used_storage(), 60);
    st.block_file(&[1; 16], spam()).unwrap();
    st.delete_file(&[1; 16]).unwrap();
    assert_eq!(st.used_storage(), 60);
    // No quota means Int64 max.
    let mut free = FileStore::new(None);
    assert_eq!(free.quota(), i64::MAX);
    free.reserve(u32::MAX).unwrap();
}

#[test]
fn usable_behind_a_std_mutex() {
    let st = std::sync::Arc::new(std::sync::Mutex::new(FileStore::new(None)));
    let handles: Vec<_> = (0u8..4)
        .map(|i| {
            let st = st.clone();
            std::thread::spawn(move || {
                st.lock()
                    .unwrap()
                    .add_file([i; 16], info(1), 0, FileStatus::Active)
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert_eq!(st.lock().unwrap().file_count(), 4);
}
