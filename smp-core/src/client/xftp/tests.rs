use super::*;
use crate::crypto::digest::sha256;
use crate::tls::{KeyAlgorithm as CertAlgorithm, PinError, ServerIdentity, TlsError};
use crate::xftp::XftpErrorType;
use crate::xftp::handshake::{VersionRange, sign_session_key};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use std::sync::atomic::{AtomicU32, Ordering};

struct Server {
    leaf: Vec<u8>,
    ca: Vec<u8>,
    leaf_key: PrivateKey,
    ca_key: PrivateKey,
}

fn server(alg: CertAlgorithm) -> Server {
    let (_, files) = ServerIdentity::generate(alg, "127.0.0.1").unwrap();
    let cert = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    let key = |pem: &str| {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        PrivateKey::from_der(der.secret_pkcs8_der()).unwrap()
    };
    Server {
        leaf: cert(&files.server_crt),
        ca: cert(&files.ca_crt),
        leaf_key: key(&files.server_key),
        ca_key: key(&files.ca_key),
    }
}

fn handshake_block(
    s: &Server,
    session: &[u8],
    range: VersionRange,
    signer: &PrivateKey,
) -> Vec<u8> {
    let session_key = PrivateKey::generate(KeyAlgorithm::X25519).public_key();
    ServerHandshake {
        version_range: range,
        session_id: session.to_vec(),
        cert_chain: vec![s.leaf.clone(), s.ca.clone()],
        signed_key: sign_session_key(&session_key, signer).unwrap(),
        web_identity_proof: None,
    }
    .encode_block()
    .unwrap()
}

fn full_range() -> VersionRange {
    VersionRange::new(1, 3).unwrap()
}

#[test]
fn server_handshake_accepted_with_max_common_version() {
    for alg in [CertAlgorithm::Ed25519, CertAlgorithm::Ed448] {
        let s = server(alg);
        let sid = SessionId([7; 32]);
        let block = handshake_block(&s, &sid.0, full_range(), &s.leaf_key);
        let (v, key) = check_server_handshake(&block, &sid, Some(&s.leaf), &sha256(&s.ca)).unwrap();
        assert_eq!(v, 3);
        assert_eq!(key.algorithm(), KeyAlgorithm::X25519);
        let block = handshake_block(&s, &sid.0, VersionRange::new(2, 2).unwrap(), &s.leaf_key);
        let (v, _) = check_server_handshake(&block, &sid, Some(&s.leaf), &sha256(&s.ca)).unwrap();
        assert_eq!(v, 2);
    }
}

fn handshake_err(r: Result<(u16, PublicKey), XftpClientError>) -> HandshakeError {
    match r {
        Err(XftpClientError::Handshake(e)) => e,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn server_handshake_rejections() {
    let s = server(CertAlgorithm::Ed25519);
    let sid = SessionId([7; 32]);
    let kh = sha256(&s.ca);
    let good = handshake_block(&s, &sid.0, full_range(), &s.leaf_key);

    let other_sid = SessionId([8; 32]);
    let e = handshake_err(check_server_handshake(
        &good,
        &other_sid,
        Some(&s.leaf),
        &kh,
    ));
    assert_eq!(e, HandshakeError::Session);

    let mut wrong_kh = kh;
    wrong_kh[31] ^= 1;
    let r = check_server_handshake(&good, &sid, Some(&s.leaf), &wrong_kh);
    assert!(r.as_ref().unwrap_err().is_identity_mismatch());
    assert_eq!(handshake_err(r), HandshakeError::Identity);

    // Session key signed by the CA key, not the TLS leaf key.
    let by_ca = handshake_block(&s, &sid.0, full_range(), &s.ca_key);
    let e = handshake_err(check_server_handshake(&by_ca, &sid, Some(&s.leaf), &kh));
    assert_eq!(e, HandshakeError::BadSignature);

    // The TLS leaf is another server's certificate.
    let other = server(CertAlgorithm::Ed25519);
    let e = handshake_err(check_server_handshake(&good, &sid, Some(&other.leaf), &kh));
    assert_eq!(e, HandshakeError::BadSignature);

    let future = handshake_block(&s, &sid.0, VersionRange::new(4, 5).unwrap(), &s.leaf_key);
    let e = handshake_err(check_server_handshake(&future, &sid, Some(&s.leaf), &kh));
    assert_eq!(e, HandshakeError::Version);

    let e = handshake_err(check_server_handshake(&good, &sid, None, &kh));
    assert_eq!(e, HandshakeError::ChainLength(0));

    let session_key = PrivateKey::generate(KeyAlgorithm::X25519).public_key();
    let three = ServerHandshake {
        version_range: full_range(),
        session_id: sid.0.to_vec(),
        cert_chain: vec![s.leaf.clone(), s.ca.clone(), s.ca.clone()],
        signed_key: sign_session_key(&session_key, &s.leaf_key).unwrap(),
        web_identity_proof: None,
    }
    .encode_block()
    .unwrap();
    let e = handshake_err(check_server_handshake(&three, &sid, Some(&s.leaf), &kh));
    assert_eq!(e, HandshakeError::ChainLength(3));

    let bare = crate::encoding::pad::pad(b"HANDSHAKE", 16384).unwrap();
    let e = handshake_err(check_server_handshake(&bare, &sid, Some(&s.leaf), &kh));
    assert!(matches!(
        e,
        HandshakeError::ServerError {
            error: Some(XftpErrorType::Handshake),
            ..
        }
    ));

    // Garbage never panics.
    for n in [0, 1, 2, 100, 16384] {
        let junk: Vec<u8> = (0..n).map(|i| (i * 31 % 256) as u8).collect();
        assert!(check_server_handshake(&junk, &sid, Some(&s.leaf), &kh).is_err());
    }
}

#[test]
fn error_classification() {
    use std::io;
    let io_err = || io::Error::new(io::ErrorKind::ConnectionReset, "reset");
    assert!(XftpClientError::Connect(io_err()).is_retryable());
    assert!(XftpClientError::Timeout(TimeoutKind::Command).is_retryable());
    assert!(XftpClientError::Closed.is_retryable());
    assert!(XftpClientError::Tls(TlsError::Io(io_err())).is_retryable());
    assert!(XftpClientError::Protocol(XftpErrorType::Timeout).is_retryable());

    let pin = XftpClientError::Tls(TlsError::Pin(PinError::IdentityMismatch));
    assert!(!pin.is_retryable());
    assert!(pin.is_identity_mismatch());
    for e in [
        XftpErrorType::Auth,
        XftpErrorType::Size,
        XftpErrorType::Quota,
        XftpErrorType::Digest,
        XftpErrorType::NoFile,
    ] {
        let err = XftpClientError::Protocol(e);
        assert!(!err.is_retryable());
        assert!(!err.needs_reconnect());
        assert_eq!(err.xftp_error(), Some(e));
    }
    for e in [
        XftpClientError::ChunkSize,
        XftpClientError::ChunkCrypto,
        XftpClientError::ChunkDigest,
        XftpClientError::Handshake(HandshakeError::Identity),
        XftpClientError::Source(io_err()),
        XftpClientError::Sink(io_err()),
        XftpClientError::NoAttempts,
    ] {
        assert!(!e.is_retryable(), "{e:?}");
    }
    assert_eq!(
        XftpClientError::ChunkCrypto.xftp_error(),
        Some(XftpErrorType::Crypto)
    );
    assert_eq!(
        XftpClientError::ChunkSize.xftp_error(),
        Some(XftpErrorType::Size)
    );
    assert!(XftpClientError::Connect(io_err()).needs_reconnect());
}

#[test]
fn timeouts_follow_the_reference_formulas() {
    let o = XftpClientOptions::default();
    assert_eq!(o.connect_timeout, Duration::from_secs(45));
    assert_eq!(o.command_timeout, Duration::from_secs(75));
    // 4 MiB chunk: 4096 KiB × 5 ms = 20.48 s.
    let four_mib = 4 * 1024 * 1024;
    assert_eq!(
        o.upload_timeout(four_mib),
        Duration::from_millis(75_000 + 20_480)
    );
    assert_eq!(
        o.download_body_timeout(four_mib),
        Duration::from_millis(30_000 + 20_480)
    );
    // size div 1024: a partial KiB adds nothing.
    assert_eq!(o.upload_timeout(1023), Duration::from_secs(75));
}

#[test]
fn backoff_doubles_and_caps() {
    let b = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    assert_eq!(b.delay(0), Duration::from_millis(100));
    assert_eq!(b.delay(1), Duration::from_millis(200));
    assert_eq!(b.delay(3), Duration::from_millis(800));
    assert_eq!(b.delay(4), Duration::from_secs(1));
    assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
}

fn quick() -> Backoff {
    Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(2),
    }
}

#[tokio::test]
async fn retry_stops_on_success_and_on_final_errors() {
    let calls = AtomicU32::new(0);
    let r = retry(5, quick(), || async {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if n < 2 {
            Err(XftpClientError::Closed)
        } else {
            Ok(n)
        }
    })
    .await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let calls = AtomicU32::new(0);
    let r: Result<(), _> = retry(5, quick(), || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(XftpClientError::Protocol(XftpErrorType::Auth))
    })
    .await;
    assert!(matches!(
        r,
        Err(XftpClientError::Protocol(XftpErrorType::Auth))
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let calls = AtomicU32::new(0);
    let r: Result<(), _> = retry(3, quick(), || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(XftpClientError::Timeout(TimeoutKind::Command))
    })
    .await;
    assert!(matches!(r, Err(XftpClientError::Timeout(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let r: Result<(), _> = retry(0, quick(), || async { Ok(()) }).await;
    assert!(matches!(r, Err(XftpClientError::NoAttempts)));
}
