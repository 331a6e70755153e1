//! Our server + our client on 127.0.0.1 with generated identities: files and
//! modes, OpenSSL's view of the chain, pinning, ALPN and tls-unique agreement.

mod tls_support;

use std::os::unix::fs::PermissionsExt;

use smp_core::encoding::string::b64_decode;
use smp_core::tls::{
    self, ALPN_SMP, ALPN_XFTP, KeyAlgorithm, PinError, SMP_SERVER_ALPN, ServerIdentity, TlsError,
    XFTP_SERVER_ALPN,
};
use tls_support::{TempDir, read_line, run_openssl, write_line};
use tokio::net::{TcpListener, TcpStream};

async fn roundtrip(
    identity: &ServerIdentity,
    server_alpn: &'static [&'static [u8]],
    pin: [u8; 32],
    client_alpn: &'static [u8],
) -> (
    Result<tls::TlsConnection<TcpStream>, TlsError>,
    Result<tls::TlsConnection<TcpStream>, TlsError>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = tls::server_config(identity, server_alpn).unwrap();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tls::accept(sock, &cfg).await
    });
    let sock = TcpStream::connect(addr).await.unwrap();
    let client = tls::connect(sock, pin, client_alpn).await;
    (server.await.unwrap(), client)
}

async fn check_generated(alg: KeyAlgorithm) {
    let dir = TempDir::new("gen");
    let identity = ServerIdentity::init(dir.path(), alg, "127.0.0.1").unwrap();

    for (file, mode) in [("ca.key", 0o600), ("server.key", 0o600)] {
        let m = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, mode, "{file} mode");
    }
    // Refuses to overwrite an existing identity.
    assert!(ServerIdentity::init(dir.path(), alg, "127.0.0.1").is_err());

    // OpenSSL accepts the chain and sees the reference's extensions.
    let ca = dir.path().join("ca.crt");
    let srv = dir.path().join("server.crt");
    let out = run_openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        srv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = run_openssl(&["x509", "-in", srv.to_str().unwrap(), "-noout", "-text"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    for needle in [
        "Version: 3",
        "Issuer: CN = SMP server CA, O = SimpleX",
        "Subject: CN = 127.0.0.1",
        "CA:FALSE",
        "Digital Signature, Non Repudiation, Key Agreement",
        "TLS Web Server Authentication",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(needle), "server.crt lacks {needle}:\n{text}");
    }
    let ca_text = run_openssl(&["x509", "-in", ca.to_str().unwrap(), "-noout", "-text"]);
    let ca_text = String::from_utf8_lossy(&ca_text.stdout).to_string();
    assert!(
        ca_text.contains("X509v3 Basic Constraints: critical"),
        "{ca_text}"
    );
    assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
    let key_check = run_openssl(&[
        "pkey",
        "-in",
        dir.path().join("server.key").to_str().unwrap(),
        "-noout",
    ]);
    assert!(key_check.status.success(), "openssl cannot read server.key");

    // The fingerprint is SHA-256 of ca.crt, as OpenSSL computes it.
    let fp = run_openssl(&[
        "x509",
        "-in",
        ca.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let fp_hex: String = String::from_utf8_lossy(&fp.stdout)
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(hex::encode(identity.fingerprint()), fp_hex);
    assert_eq!(
        b64_decode(&identity.fingerprint_b64()).unwrap(),
        identity.fingerprint()
    );
    assert_eq!(tls::load_fingerprint(&ca).unwrap(), identity.fingerprint());

    // The files load back into the same identity.
    let loaded = ServerIdentity::load(dir.path()).unwrap();
    assert_eq!(loaded.fingerprint(), identity.fingerprint());
    assert_eq!(loaded.chain(), identity.chain());

    let (server, client) =
        roundtrip(&loaded, XFTP_SERVER_ALPN, identity.fingerprint(), ALPN_XFTP).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    assert_eq!(server.session_id(), client.session_id());
    assert_ne!(server.session_id().0, [0u8; 32]);
    assert_eq!(server.alpn(), Some(ALPN_XFTP));
    assert_eq!(client.alpn(), Some(ALPN_XFTP));
    assert_eq!(client.peer_certificates().unwrap(), identity.chain());
    // The tap is a pass-through after the handshake.
    write_line(&mut client, "ping").await;
    assert_eq!(read_line(&mut server).await, "ping");
    write_line(&mut server, "pong").await;
    assert_eq!(read_line(&mut client).await, "pong");
}

#[tokio::test]
async fn generated_ed25519_identity_roundtrip() {
    check_generated(KeyAlgorithm::Ed25519).await;
}

#[tokio::test]
async fn generated_ed448_identity_roundtrip() {
    check_generated(KeyAlgorithm::Ed448).await;
}

#[tokio::test]
async fn session_ids_differ_between_connections() {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "localhost").unwrap();
    let (s1, c1) = roundtrip(&identity, SMP_SERVER_ALPN, identity.fingerprint(), ALPN_SMP).await;
    let (s2, c2) = roundtrip(&identity, SMP_SERVER_ALPN, identity.fingerprint(), ALPN_SMP).await;
    let (s1, c1, s2, c2) = (s1.unwrap(), c1.unwrap(), s2.unwrap(), c2.unwrap());
    assert_eq!(s1.session_id(), c1.session_id());
    assert_eq!(s2.session_id(), c2.session_id());
    assert_ne!(s1.session_id(), s2.session_id());
    assert_eq!(s1.alpn(), Some(ALPN_SMP));
}

#[tokio::test]
async fn wrong_pin_is_refused_with_typed_error() {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "localhost").unwrap();
    let mut pin = identity.fingerprint();
    pin[0] ^= 1;
    let (server, client) = roundtrip(&identity, SMP_SERVER_ALPN, pin, ALPN_SMP).await;
    assert!(
        matches!(client, Err(TlsError::Pin(PinError::IdentityMismatch))),
        "client: {client:?}"
    );
    assert!(server.is_err(), "server must see the handshake fail");
}

#[tokio::test]
async fn foreign_ca_with_same_pin_shape_is_refused() {
    // A chain signed by another CA cannot pass even if its own CA is pinned
    // by mistake for a different server: pin A, talk to B.
    let (a, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "localhost").unwrap();
    let (b, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "localhost").unwrap();
    let (_, client) = roundtrip(&b, SMP_SERVER_ALPN, a.fingerprint(), ALPN_SMP).await;
    assert!(matches!(
        client,
        Err(TlsError::Pin(PinError::IdentityMismatch))
    ));
}

#[tokio::test]
async fn leaf_not_signed_by_pinned_ca_is_refused() {
    // Leaf of B presented with A's CA: pin matches, path validation must fail.
    let dir_a = TempDir::new("forge-a");
    let dir_b = TempDir::new("forge-b");
    let a = ServerIdentity::init(dir_a.path(), KeyAlgorithm::Ed448, "localhost").unwrap();
    ServerIdentity::init(dir_b.path(), KeyAlgorithm::Ed448, "localhost").unwrap();
    let forged = ServerIdentity::from_pem(
        &std::fs::read(dir_b.path().join("server.crt")).unwrap(),
        &std::fs::read(dir_a.path().join("ca.crt")).unwrap(),
        &std::fs::read(dir_b.path().join("server.key")).unwrap(),
    )
    .unwrap();
    let (_, client) = roundtrip(&forged, SMP_SERVER_ALPN, a.fingerprint(), ALPN_SMP).await;
    assert!(
        matches!(
            client,
            Err(TlsError::Handshake(rustls::Error::InvalidCertificate(_)))
        ),
        "client: {client:?}"
    );
}

#[tokio::test]
async fn alpn_without_overlap_fails_the_handshake() {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "localhost").unwrap();
    let (server, client) = roundtrip(
        &identity,
        SMP_SERVER_ALPN,
        identity.fingerprint(),
        b"nope/1",
    )
    .await;
    assert!(
        matches!(
            server,
            Err(TlsError::Handshake(rustls::Error::NoApplicationProtocol))
        ),
        "{server:?}"
    );
    assert!(client.is_err());
}

#[tokio::test]
async fn mismatched_key_is_refused_on_load() {
    let dir_a = TempDir::new("mm-a");
    let dir_b = TempDir::new("mm-b");
    ServerIdentity::init(dir_a.path(), KeyAlgorithm::Ed25519, "localhost").unwrap();
    ServerIdentity::init(dir_b.path(), KeyAlgorithm::Ed25519, "localhost").unwrap();
    let res = ServerIdentity::from_pem(
        &std::fs::read(dir_a.path().join("server.crt")).unwrap(),
        &std::fs::read(dir_a.path().join("ca.crt")).unwrap(),
        &std::fs::read(dir_b.path().join("server.key")).unwrap(),
    );
    assert!(
        matches!(res, Err(tls::IdentityError::KeyMismatch)),
        "{res:?}"
    );
}
