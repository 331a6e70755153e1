//! Key derivation (device.md §4.2): one master key per device
//! (`files_mk`, in the key store), a fresh salt and file id per job, so no
//! two jobs ever share a key.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A 32-byte secret key, wiped on drop.
pub type Key = Zeroizing<[u8; 32]>;

/// The three keys of one stored file.
pub struct FileKeys {
    /// AES-256-GCM of the data records.
    pub data: Key,
    /// AES-256-GCM of the manifest.
    pub manifest: Key,
    /// HMAC-SHA256 of the header and the journal.
    pub mac: Key,
}

fn expand(prk: &Hkdf<Sha256>, label: &[u8], file_id: &[u8; 16], device_id: &[u8; 16]) -> Key {
    let mut info = [0u8; 48];
    let n = label.len();
    info[..n].copy_from_slice(label);
    info[n..n + 16].copy_from_slice(file_id);
    info[n + 16..n + 32].copy_from_slice(device_id);
    let mut k = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's output limit.
    let _ = prk.expand(&info[..n + 32], &mut k[..]);
    k
}

impl FileKeys {
    /// `prk = HKDF-Extract(salt, files_mk)`, then one expand per purpose
    /// with the file id and device id in the info.
    pub fn derive(
        files_mk: &[u8; 32],
        salt: &[u8; 32],
        file_id: &[u8; 16],
        device_id: &[u8; 16],
    ) -> Self {
        let prk = Hkdf::<Sha256>::new(Some(salt), files_mk);
        Self {
            data: expand(&prk, b"SGF1 data", file_id, device_id),
            manifest: expand(&prk, b"SGF1 manifest", file_id, device_id),
            mac: expand(&prk, b"SGF1 mac", file_id, device_id),
        }
    }
}

/// The card marker's MAC key: `HKDF(salt = card_id, files_mk, "SGC1" ‖ device_id)`.
pub fn card_key(files_mk: &[u8; 32], card_id: &[u8; 16], device_id: &[u8; 16]) -> Key {
    let prk = Hkdf::<Sha256>::new(Some(card_id), files_mk);
    let mut info = [0u8; 20];
    info[..4].copy_from_slice(b"SGC1");
    info[4..].copy_from_slice(device_id);
    let mut k = Zeroizing::new([0u8; 32]);
    let _ = prk.expand(&info, &mut k[..]);
    k
}

/// HMAC-SHA256 truncated to 16 bytes, as every MAC on the card.
pub fn mac16(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Checks a 16-byte MAC in constant time.
pub fn mac16_ok(key: &[u8; 32], data: &[u8], tag: &[u8]) -> bool {
    bool::from(mac16(key, data).as_slice().ct_eq(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_purpose_file_and_device() {
        let mk = [7u8; 32];
        let a = FileKeys::derive(&mk, &[1; 32], &[2; 16], &[3; 16]);
        assert_ne!(*a.data, *a.manifest);
        assert_ne!(*a.data, *a.mac);
        let other_file = FileKeys::derive(&mk, &[1; 32], &[9; 16], &[3; 16]);
        assert_ne!(*a.data, *other_file.data);
        let other_device = FileKeys::derive(&mk, &[1; 32], &[2; 16], &[4; 16]);
        assert_ne!(*a.data, *other_device.data);
        let other_salt = FileKeys::derive(&mk, &[5; 32], &[2; 16], &[3; 16]);
        assert_ne!(*a.data, *other_salt.data);
        // Same inputs, same keys.
        assert_eq!(
            *a.mac,
            *FileKeys::derive(&mk, &[1; 32], &[2; 16], &[3; 16]).mac
        );
    }

    #[test]
    fn hkdf_matches_rfc5869_expansion() {
        // T(1) = HMAC(PRK, info ‖ 0x01), PRK = HMAC(salt, IKM): computed here
        // with HMAC alone, independently of the hkdf crate.
        let (mk, salt, id, dev) = ([7u8; 32], [1u8; 32], [2u8; 16], [3u8; 16]);
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&salt).unwrap();
        m.update(&mk);
        let prk = m.finalize().into_bytes();
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&prk).unwrap();
        m.update(b"SGF1 data");
        m.update(&id);
        m.update(&dev);
        m.update(&[1]);
        let t1 = m.finalize().into_bytes();
        assert_eq!(
            &*FileKeys::derive(&mk, &salt, &id, &dev).data,
            t1.as_slice()
        );
    }

    #[test]
    fn mac_is_checked_in_full() {
        let k = [1u8; 32];
        let t = mac16(&k, b"abc");
        assert!(mac16_ok(&k, b"abc", &t));
        assert!(!mac16_ok(&k, b"abd", &t));
        assert!(!mac16_ok(&k, b"abc", &t[..15]));
    }
}
