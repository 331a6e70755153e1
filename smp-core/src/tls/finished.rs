//! tls-unique for TLS 1.3: the client's Finished `verify_data`, which the
//! reference uses as the session id on both ends (`getFinished` on the client,
//! `getPeerFinished` on the server). rustls exposes neither, so it is read out
//! of the client's own encrypted handshake records, decrypted with the client
//! handshake traffic secret from a per-connection key log. Decrypting what was
//! actually sent needs no transcript logic, so HRR, coalesced or split records
//! and client certificates change nothing. A pure function over bytes, so the
//! std shell (socket tap) and the engine (its own output) share it.

use alloc::boxed::Box;
use alloc::vec::Vec;

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Upper bound on captured client→server handshake bytes. Far above any sane
/// handshake (a 40 KB client chain still fits); hitting it fails closed.
pub const CAPTURE_LIMIT: usize = 256 * 1024;

/// The key-log label of the one secret the derivation needs.
pub const CLIENT_HS_LABEL: &str = "CLIENT_HANDSHAKE_TRAFFIC_SECRET";

/// TLS 1.3 suite code points the derivation handles (all SHA-256: our
/// configurations offer no other, and the session id is 32 bytes).
pub const TLS13_AES_128_GCM_SHA256: u16 = 0x1301;
pub const TLS13_CHACHA20_POLY1305_SHA256: u16 = 0x1303;

const CT_CHANGE_CIPHER_SPEC: u8 = 20;
const CT_HANDSHAKE: u8 = 22;
const CT_APPLICATION_DATA: u8 = 23;
const HS_CERTIFICATE: u8 = 11;
const HS_CERTIFICATE_VERIFY: u8 = 15;
const HS_FINISHED: u8 = 20;
const TAG_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// Why tls-unique could not be derived. Every case closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    #[error("client handshake traffic secret was not logged")]
    NoSecret,
    #[error("captured handshake exceeded {CAPTURE_LIMIT} bytes")]
    CaptureOverflow,
    #[error("unsupported cipher suite for tls-unique: {0:#06x}")]
    UnsupportedSuite(u16),
    #[error("malformed client record stream")]
    Malformed,
    #[error("client handshake record failed to decrypt")]
    Decrypt,
    #[error("unexpected client handshake message type {0}")]
    UnexpectedMessage(u8),
    #[error("client Finished not found in captured records")]
    NoFinished,
    #[error("client Finished has length {0}, expected the suite's hash length")]
    BadFinishedLength(usize),
    #[error("session id must be 32 bytes, got {0}")]
    BadLength(usize),
}

/// One-slot key log bound to a single connection (its config is cloned per
/// connection), so secrets never need matching up and never leak across
/// connections. A spin lock: it is taken twice per handshake, never contended.
#[derive(Debug, Default)]
pub struct SecretSlot(spin::Mutex<Option<Zeroizing<Vec<u8>>>>);

impl SecretSlot {
    /// The secret, consumed: it is needed exactly once.
    pub fn take(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.0.lock().take()
    }
}

impl rustls::KeyLog for SecretSlot {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == CLIENT_HS_LABEL {
            // After an HRR only the second ClientHello's secret is logged,
            // so the last value is the one in use.
            *self.0.lock() = Some(Zeroizing::new(secret.to_vec()));
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_HS_LABEL
    }
}

/// The record protection of a handshake secret's direction.
enum Opener {
    Chacha(ChaCha20Poly1305),
    Aes128(Box<Aes128Gcm>),
}

impl Opener {
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<(), SessionIdError> {
        let (body, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
        let tag: &[u8] = tag;
        let r = match self {
            Self::Chacha(c) => {
                c.decrypt_inout_detached(nonce.into(), aad, body.into(), tag.try_into().unwrap())
            }
            Self::Aes128(c) => {
                c.decrypt_inout_detached(nonce.into(), aad, body.into(), tag.try_into().unwrap())
            }
        };
        r.map_err(|_| SessionIdError::Decrypt)
    }
}

/// RFC 8446 §7.1 HKDF-Expand-Label with an empty context, over SHA-256.
pub fn expand_label(secret: &[u8], label: &[u8], out: &mut [u8]) -> Result<(), SessionIdError> {
    let prk = Hkdf::<Sha256>::from_prk(secret).map_err(|_| SessionIdError::NoSecret)?;
    let out_len = u16::try_from(out.len()).map_err(|_| SessionIdError::Malformed)?;
    let full_label_len = u8::try_from(6 + label.len()).map_err(|_| SessionIdError::Malformed)?;
    let len_bytes = out_len.to_be_bytes();
    let info: [&[u8]; 5] = [&len_bytes, &[full_label_len], b"tls13 ", label, &[0u8]];
    prk.expand_multi_info(&info, out)
        .map_err(|_| SessionIdError::Malformed)
}

/// Derives tls-unique from the client handshake traffic secret and the bytes
/// the client sent, for the negotiated TLS 1.3 suite (its IANA code point).
pub fn derive_tls_unique(
    secret: &[u8],
    suite: u16,
    client_bytes: &[u8],
) -> Result<Vec<u8>, SessionIdError> {
    if secret.len() != HASH_LEN {
        return Err(SessionIdError::NoSecret);
    }
    let mut iv = [0u8; 12];
    expand_label(secret, b"iv", &mut iv)?;
    let opener = match suite {
        TLS13_CHACHA20_POLY1305_SHA256 => {
            let mut key = Zeroizing::new([0u8; 32]);
            expand_label(secret, b"key", &mut key[..])?;
            Opener::Chacha(ChaCha20Poly1305::new((&*key).into()))
        }
        TLS13_AES_128_GCM_SHA256 => {
            let mut key = Zeroizing::new([0u8; 16]);
            expand_label(secret, b"key", &mut key[..])?;
            Opener::Aes128(Box::new(Aes128Gcm::new((&*key).into())))
        }
        other => return Err(SessionIdError::UnsupportedSuite(other)),
    };

    let mut seq: u64 = 0;
    let mut handshake = Zeroizing::new(Vec::new());
    let mut rest = client_bytes;
    while rest.len() >= 5 {
        let content_type = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest.len() < 5 + len {
            // The capture ended mid-record before a Finished appeared.
            return Err(SessionIdError::NoFinished);
        }
        let (header, payload) = (&rest[..5], &rest[5..5 + len]);
        rest = &rest[5 + len..];
        match content_type {
            CT_HANDSHAKE | CT_CHANGE_CIPHER_SPEC => continue,
            CT_APPLICATION_DATA => {}
            _ => return Err(SessionIdError::Malformed),
        }
        if payload.len() < TAG_LEN + 1 {
            return Err(SessionIdError::Malformed);
        }
        let mut nonce = iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        seq += 1;
        let mut plain = Zeroizing::new(payload.to_vec());
        opener.open(&nonce, header, &mut plain)?;
        let opened = &plain[..plain.len() - TAG_LEN];
        let Some(type_pos) = opened.iter().rposition(|&b| b != 0) else {
            return Err(SessionIdError::Malformed);
        };
        if opened[type_pos] != CT_HANDSHAKE {
            return Err(SessionIdError::UnexpectedMessage(opened[type_pos]));
        }
        handshake.extend_from_slice(&opened[..type_pos]);
        if let Some(finished) = scan_messages(&mut handshake)? {
            return Ok(finished);
        }
    }
    Err(SessionIdError::NoFinished)
}

/// Consumes whole handshake messages from `buf`; returns the Finished body if seen.
fn scan_messages(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, SessionIdError> {
    let mut pos = 0;
    while buf.len() - pos >= 4 {
        let msg_type = buf[pos];
        let len = (usize::from(buf[pos + 1]) << 16)
            | (usize::from(buf[pos + 2]) << 8)
            | usize::from(buf[pos + 3]);
        if buf.len() - pos - 4 < len {
            break;
        }
        let body = &buf[pos + 4..pos + 4 + len];
        match msg_type {
            HS_FINISHED => {
                if len != HASH_LEN {
                    return Err(SessionIdError::BadFinishedLength(len));
                }
                return Ok(Some(body.to_vec()));
            }
            HS_CERTIFICATE | HS_CERTIFICATE_VERIFY => {}
            other => return Err(SessionIdError::UnexpectedMessage(other)),
        }
        pos += 4 + len;
    }
    buf.drain(..pos);
    Ok(None)
}

// The records are sealed with ring here, an implementation independent of
// the RustCrypto code under test.
#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use alloc::vec;
    use ring::{aead, hkdf};

    const SUITES: [u16; 2] = [TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_128_GCM_SHA256];

    #[test]
    fn hkdf_label_layout_matches_rfc8448() {
        // RFC 8448 §3 "Simple 1-RTT Handshake": client handshake traffic secret
        // and the key/iv the RFC derives from it (AES-128-GCM).
        let secret =
            hex::decode("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
                .unwrap();
        let (mut key, mut iv) = ([0u8; 16], [0u8; 12]);
        expand_label(&secret, b"key", &mut key).unwrap();
        expand_label(&secret, b"iv", &mut iv).unwrap();
        assert_eq!(hex::encode(key), "dbfaa693d1762c5b666af5d950258d01");
        assert_eq!(hex::encode(iv), "5bd3c71b836e0b76bb73265f");
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let secret = [7u8; 32];
        let suite = TLS13_CHACHA20_POLY1305_SHA256;
        assert!(derive_tls_unique(&secret, suite, &[]).is_err());
        assert!(derive_tls_unique(&secret, suite, &[23, 3, 3, 0, 40, 1, 2]).is_err());
        assert!(derive_tls_unique(&secret, suite, &[23, 3, 3, 0, 3, 1, 2, 3]).is_err());
        let mut zeros = vec![23, 3, 3, 0, 17];
        zeros.extend([0u8; 17]);
        assert_eq!(
            derive_tls_unique(&secret, suite, &zeros),
            Err(SessionIdError::Decrypt)
        );
        assert!(derive_tls_unique(&[0u8; 31], suite, &[]).is_err());
        assert_eq!(
            derive_tls_unique(&secret, 0x1302, &zeros),
            Err(SessionIdError::UnsupportedSuite(0x1302))
        );
    }

    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }

    fn ring_label(secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret);
        let l = (len as u16).to_be_bytes();
        let info: [&[u8]; 5] = [&l, &[6 + label.len() as u8], b"tls13 ", label, &[0]];
        let mut out = vec![0u8; len];
        prk.expand(&info, Len(len)).unwrap().fill(&mut out).unwrap();
        out
    }

    /// Encrypts `inner` (content ‖ type ‖ padding) as client record `seq`.
    fn seal(suite: u16, secret: &[u8], seq: u64, inner: &[u8]) -> Vec<u8> {
        let (alg, key_len) = match suite {
            TLS13_CHACHA20_POLY1305_SHA256 => (&aead::CHACHA20_POLY1305, 32),
            _ => (&aead::AES_128_GCM, 16),
        };
        let key = ring_label(secret, b"key", key_len);
        let iv = ring_label(secret, b"iv", 12);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key).unwrap());
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&iv);
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        let len = u16::try_from(inner.len() + TAG_LEN).unwrap().to_be_bytes();
        let header = [CT_APPLICATION_DATA, 3, 3, len[0], len[1]];
        let mut body = inner.to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(header),
            &mut body,
        )
        .unwrap();
        [&header[..], &body].concat()
    }

    fn message(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).unwrap().to_be_bytes();
        [&[msg_type, len[1], len[2], len[3]][..], body].concat()
    }

    #[test]
    fn reassembles_split_and_coalesced_messages_after_hrr() {
        for suite in SUITES {
            let secret = vec![0x42u8; HASH_LEN];
            let finished: Vec<u8> = (0..HASH_LEN as u8).collect();
            let cert = message(HS_CERTIFICATE, &[7u8; 300]);
            let tail = [
                &cert[200..],
                &message(HS_CERTIFICATE_VERIFY, &[8u8; 10])[..],
                &message(HS_FINISHED, &finished)[..],
                &[CT_HANDSHAKE, 0, 0, 0][..],
            ]
            .concat();
            let mut head = cert[..200].to_vec();
            head.push(CT_HANDSHAKE);
            // ClientHello 1, CCS, ClientHello 2 (HRR), then encrypted seq 0, 1.
            let stream = [
                &[CT_HANDSHAKE, 3, 1, 0, 3, 1, 0, 0][..],
                &[CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1][..],
                &[CT_HANDSHAKE, 3, 3, 0, 2, 1, 0][..],
                &seal(suite, &secret, 0, &head),
                &seal(suite, &secret, 1, &tail),
                &[CT_APPLICATION_DATA, 3, 3, 0, 1][..], // trailing partial app data
            ]
            .concat();
            assert_eq!(
                derive_tls_unique(&secret, suite, &stream).unwrap(),
                finished
            );

            // Records out of order (wrong sequence number) do not decrypt.
            let swapped = [
                &seal(suite, &secret, 1, &head)[..],
                &seal(suite, &secret, 0, &tail),
            ]
            .concat();
            assert_eq!(
                derive_tls_unique(&secret, suite, &swapped),
                Err(SessionIdError::Decrypt)
            );
        }
    }

    #[test]
    fn rejects_wrong_finished_length_and_foreign_messages() {
        let suite = TLS13_CHACHA20_POLY1305_SHA256;
        let secret = [3u8; 32];
        let short = [&message(HS_FINISHED, &[1u8; 12])[..], &[CT_HANDSHAKE]].concat();
        assert_eq!(
            derive_tls_unique(&secret, suite, &seal(suite, &secret, 0, &short)),
            Err(SessionIdError::BadFinishedLength(12))
        );
        let other = [&message(1, &[0u8; 4])[..], &[CT_HANDSHAKE]].concat();
        assert_eq!(
            derive_tls_unique(&secret, suite, &seal(suite, &secret, 0, &other)),
            Err(SessionIdError::UnexpectedMessage(1))
        );
        let alert = [2u8, 40, 21];
        assert_eq!(
            derive_tls_unique(&secret, suite, &seal(suite, &secret, 0, &alert)),
            Err(SessionIdError::UnexpectedMessage(21))
        );
        let padding_only = [0u8; 8];
        assert_eq!(
            derive_tls_unique(&secret, suite, &seal(suite, &secret, 0, &padding_only)),
            Err(SessionIdError::Malformed)
        );
    }
}
