//! tls-unique for TLS 1.3: the client's Finished `verify_data`, which the
//! reference uses as the session id on both ends (`getFinished` on the client,
//! `getPeerFinished` on the server). rustls exposes neither, so we read the
//! Finished out of the client's own encrypted handshake records: the client
//! handshake traffic secret comes from a per-connection [`KeyLog`], the records
//! from a [`Tap`] on the socket. Decrypting what was actually sent needs no
//! transcript logic, so HRR, coalesced or split records and client
//! certificates change nothing.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use ring::{aead, hkdf};
use rustls::CipherSuite;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zeroize::Zeroizing;

/// Upper bound on captured client→server handshake bytes. Far above any sane
/// handshake (a 40 KB client chain still fits); hitting it fails closed.
pub const CAPTURE_LIMIT: usize = 256 * 1024;

const CLIENT_HS_LABEL: &str = "CLIENT_HANDSHAKE_TRAFFIC_SECRET";
const CT_CHANGE_CIPHER_SPEC: u8 = 20;
const CT_HANDSHAKE: u8 = 22;
const CT_APPLICATION_DATA: u8 = 23;
const HS_CERTIFICATE: u8 = 11;
const HS_CERTIFICATE_VERIFY: u8 = 15;
const HS_FINISHED: u8 = 20;
const TAG_LEN: usize = 16;

/// Why tls-unique could not be derived. Every case closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    #[error("client handshake traffic secret was not logged")]
    NoSecret,
    #[error("captured handshake exceeded {CAPTURE_LIMIT} bytes")]
    CaptureOverflow,
    #[error("unsupported cipher suite for tls-unique: {0:?}")]
    UnsupportedSuite(CipherSuite),
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

/// One-slot [`KeyLog`] bound to a single connection (its config is cloned per
/// connection), so secrets never need matching up and never leak across
/// connections.
#[derive(Debug, Default)]
pub struct SecretSlot(Mutex<Option<Zeroizing<Vec<u8>>>>);

impl SecretSlot {
    /// The secret, consumed: it is needed exactly once.
    pub fn take(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

impl rustls::KeyLog for SecretSlot {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == CLIENT_HS_LABEL
            && let Ok(mut g) = self.0.lock()
        {
            // After an HRR only the second ClientHello's secret is logged,
            // so the last value is the one in use.
            *g = Some(Zeroizing::new(secret.to_vec()));
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_HS_LABEL
    }
}

/// Which direction of the socket carries the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapSide {
    /// Server: the client's records are the bytes we read.
    Reads,
    /// Client: the client's records are the bytes we write.
    Writes,
}

#[derive(Debug)]
struct Capture {
    side: TapSide,
    buf: Vec<u8>,
    recording: bool,
    overflow: bool,
}

impl Capture {
    fn record(&mut self, bytes: &[u8]) {
        if !self.recording {
            return;
        }
        if self.buf.len() + bytes.len() > CAPTURE_LIMIT {
            self.overflow = true;
            self.recording = false;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(bytes);
    }
}

/// Socket wrapper that copies the client's side of the handshake; after
/// [`Tap::finish`] it is a plain pass-through for the life of the connection.
#[derive(Debug)]
pub struct Tap<S> {
    inner: S,
    capture: Capture,
}

impl<S> Tap<S> {
    pub fn new(inner: S, side: TapSide) -> Self {
        Self {
            inner,
            capture: Capture {
                side,
                buf: Vec::new(),
                recording: true,
                overflow: false,
            },
        }
    }

    /// Stops recording and hands out what was captured (or the overflow).
    pub fn finish(&mut self) -> Result<Vec<u8>, SessionIdError> {
        self.capture.recording = false;
        let buf = std::mem::take(&mut self.capture.buf);
        if self.capture.overflow {
            return Err(SessionIdError::CaptureOverflow);
        }
        Ok(buf)
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.capture.side == TapSide::Reads
            && let Poll::Ready(Ok(())) = res
        {
            this.capture.record(&buf.filled()[before..]);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, data);
        if this.capture.side == TapSide::Writes
            && let Poll::Ready(Ok(n)) = res
        {
            this.capture.record(&data[..n.min(data.len())]);
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Shared handle so the connection shell can hand a fresh slot to each config clone.
pub(crate) fn new_slot() -> Arc<SecretSlot> {
    Arc::new(SecretSlot::default())
}

struct SuiteParams {
    hkdf: hkdf::Algorithm,
    aead: &'static aead::Algorithm,
    key_len: usize,
    hash_len: usize,
}

fn suite_params(suite: CipherSuite) -> Result<SuiteParams, SessionIdError> {
    match suite {
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => Ok(SuiteParams {
            hkdf: hkdf::HKDF_SHA256,
            aead: &aead::CHACHA20_POLY1305,
            key_len: 32,
            hash_len: 32,
        }),
        CipherSuite::TLS13_AES_128_GCM_SHA256 => Ok(SuiteParams {
            hkdf: hkdf::HKDF_SHA256,
            aead: &aead::AES_128_GCM,
            key_len: 16,
            hash_len: 32,
        }),
        CipherSuite::TLS13_AES_256_GCM_SHA384 => Ok(SuiteParams {
            hkdf: hkdf::HKDF_SHA384,
            aead: &aead::AES_256_GCM,
            key_len: 32,
            hash_len: 48,
        }),
        other => Err(SessionIdError::UnsupportedSuite(other)),
    }
}

struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// RFC 8446 §7.1 HKDF-Expand-Label with an empty context.
fn expand_label(
    alg: hkdf::Algorithm,
    secret: &[u8],
    label: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, SessionIdError> {
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let out_len = u16::try_from(len).map_err(|_| SessionIdError::Malformed)?;
    let full_label_len = u8::try_from(6 + label.len()).map_err(|_| SessionIdError::Malformed)?;
    let len_bytes = out_len.to_be_bytes();
    let info: [&[u8]; 5] = [&len_bytes, &[full_label_len], b"tls13 ", label, &[0u8]];
    let okm = prk
        .expand(&info, OutLen(len))
        .map_err(|_| SessionIdError::Malformed)?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    okm.fill(&mut out).map_err(|_| SessionIdError::Malformed)?;
    Ok(out)
}

/// Derives tls-unique from the client handshake traffic secret and the bytes
/// the client sent, for the negotiated TLS 1.3 suite.
pub fn derive_tls_unique(
    secret: &[u8],
    suite: CipherSuite,
    client_bytes: &[u8],
) -> Result<Vec<u8>, SessionIdError> {
    let params = suite_params(suite)?;
    if secret.len() != params.hash_len {
        return Err(SessionIdError::NoSecret);
    }
    let key_bytes = expand_label(params.hkdf, secret, b"key", params.key_len)?;
    let iv = expand_label(params.hkdf, secret, b"iv", aead::NONCE_LEN)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(params.aead, &key_bytes).map_err(|_| SessionIdError::Malformed)?,
    );

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
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce.copy_from_slice(&iv);
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        seq += 1;
        let mut plain = Zeroizing::new(payload.to_vec());
        let opened = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(header),
                &mut plain,
            )
            .map_err(|_| SessionIdError::Decrypt)?;
        let Some(type_pos) = opened.iter().rposition(|&b| b != 0) else {
            return Err(SessionIdError::Malformed);
        };
        if opened[type_pos] != CT_HANDSHAKE {
            return Err(SessionIdError::UnexpectedMessage(opened[type_pos]));
        }
        handshake.extend_from_slice(&opened[..type_pos]);
        if let Some(finished) = scan_messages(&mut handshake, params.hash_len)? {
            return Ok(finished);
        }
    }
    Err(SessionIdError::NoFinished)
}

/// Consumes whole handshake messages from `buf`; returns the Finished body if seen.
fn scan_messages(buf: &mut Vec<u8>, hash_len: usize) -> Result<Option<Vec<u8>>, SessionIdError> {
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
                if len != hash_len {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_label_layout_matches_rfc8448() {
        // RFC 8448 §3 "Simple 1-RTT Handshake": client handshake traffic secret
        // and the key/iv the RFC derives from it (AES-128-GCM).
        let secret = hex_bytes("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21");
        let key = expand_label(hkdf::HKDF_SHA256, &secret, b"key", 16).unwrap();
        let iv = expand_label(hkdf::HKDF_SHA256, &secret, b"iv", 12).unwrap();
        assert_eq!(&key[..], &hex_bytes("dbfaa693d1762c5b666af5d950258d01")[..]);
        assert_eq!(&iv[..], &hex_bytes("5bd3c71b836e0b76bb73265f")[..]);
    }

    #[test]
    fn overflow_fails_closed() {
        let mut cap = Capture {
            side: TapSide::Reads,
            buf: Vec::new(),
            recording: true,
            overflow: false,
        };
        cap.record(&vec![0u8; CAPTURE_LIMIT]);
        cap.record(&[1]);
        assert!(cap.overflow && cap.buf.is_empty());
        let mut tap = Tap {
            inner: (),
            capture: cap,
        };
        assert_eq!(tap.finish(), Err(SessionIdError::CaptureOverflow));
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let secret = [7u8; 32];
        let suite = CipherSuite::TLS13_CHACHA20_POLY1305_SHA256;
        assert!(derive_tls_unique(&secret, suite, &[]).is_err());
        assert!(derive_tls_unique(&secret, suite, &[23, 3, 3, 0, 40, 1, 2]).is_err());
        assert!(derive_tls_unique(&secret, suite, &[23, 3, 3, 0, 3, 1, 2, 3]).is_err());
        assert_eq!(
            derive_tls_unique(
                &secret,
                suite,
                &[
                    23, 3, 3, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
                ]
            ),
            Err(SessionIdError::Decrypt)
        );
        assert!(derive_tls_unique(&[0u8; 31], suite, &[]).is_err());
    }

    /// Encrypts `inner` (content ‖ type ‖ padding) as client record `seq`.
    fn seal(suite: CipherSuite, secret: &[u8], seq: u64, inner: &[u8]) -> Vec<u8> {
        let p = suite_params(suite).unwrap();
        let key = expand_label(p.hkdf, secret, b"key", p.key_len).unwrap();
        let iv = expand_label(p.hkdf, secret, b"iv", 12).unwrap();
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(p.aead, &key).unwrap());
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
        for suite in [
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            CipherSuite::TLS13_AES_256_GCM_SHA384,
        ] {
            let hash_len = suite_params(suite).unwrap().hash_len;
            let secret = vec![0x42u8; hash_len];
            let finished: Vec<u8> = (0..hash_len as u8).collect();
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
        let suite = CipherSuite::TLS13_CHACHA20_POLY1305_SHA256;
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

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
