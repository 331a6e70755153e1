//! The reference's own Ed448 certificates (shared/fixtures/reference-ed448,
//! made by simplexmq's `init`): our client against an OpenSSL server using
//! them, our server using them against OpenSSL and our client, and Ed448
//! signatures identical to `openssl pkeyutl -rawin`.

mod tls_support;

use smp_core::encoding::string::b64_decode;
use smp_core::tls::{self, PinError, SMP_SERVER_ALPN, ServerIdentity, Suite, TlsError};
use tls_support::{
    FIXTURE_PIN, TempDir, fixture_dir, our_client_node_server, our_server_node_client, run_openssl,
    spawn_node,
};
use tokio::net::{TcpListener, TcpStream};

fn pin() -> [u8; 32] {
    b64_decode(FIXTURE_PIN).unwrap().try_into().unwrap()
}

#[test]
fn fixture_fingerprint_matches_the_pin() {
    let dir = fixture_dir();
    assert_eq!(tls::load_fingerprint(&dir.join("ca.crt")).unwrap(), pin());
    let identity = ServerIdentity::load(&dir).unwrap();
    assert_eq!(identity.fingerprint(), pin());
    assert_eq!(identity.chain().len(), 2);
}

#[tokio::test]
async fn our_client_against_openssl_server_with_fixture_chain() {
    let dir = fixture_dir();
    for (suite, ciphers) in [
        (
            Suite::Chacha20Poly1305Sha256,
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (Suite::Aes128GcmSha256, "TLS_AES_128_GCM_SHA256"),
    ] {
        our_client_node_server(
            pin(),
            &[&dir.join("server.crt"), &dir.join("ca.crt")],
            &dir.join("server.key"),
            suite,
            ciphers,
            false,
        )
        .await;
    }
    // The reference SMP server requests a client certificate; we send an
    // empty one, which then precedes our Finished.
    our_client_node_server(
        pin(),
        &[&dir.join("server.crt"), &dir.join("ca.crt")],
        &dir.join("server.key"),
        Suite::Chacha20Poly1305Sha256,
        "TLS_CHACHA20_POLY1305_SHA256",
        true,
    )
    .await;
}

#[tokio::test]
async fn our_client_refuses_fixture_server_under_wrong_pin() {
    let dir = fixture_dir();
    let (_child, mut out) = spawn_node(
        "server.js",
        &serde_json::json!({
            "cert": [dir.join("server.crt"), dir.join("ca.crt")],
            "key": dir.join("server.key"),
        }),
    );
    let port: u16 = out.expect("LISTENING").await.parse().unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut wrong = pin();
    wrong[31] ^= 0x80;
    let res = tls::connect(sock, wrong, tls::ALPN_SMP).await;
    assert!(
        matches!(res, Err(TlsError::Pin(PinError::IdentityMismatch))),
        "{res:?}"
    );
    // OpenSSL sees our alert and reports the failed handshake.
    assert!(!out.expect("ERROR").await.is_empty());
}

#[tokio::test]
async fn our_server_with_fixture_identity_against_openssl_client() {
    let dir = fixture_dir();
    let identity = ServerIdentity::load(&dir).unwrap();
    let ca = dir.join("ca.crt");
    our_server_node_client(
        &identity,
        &ca,
        "TLS_CHACHA20_POLY1305_SHA256",
        "X25519",
        false,
    )
    .await;
    // Like a reference client: X448 first, so one HelloRetryRequest.
    our_server_node_client(
        &identity,
        &ca,
        "TLS_CHACHA20_POLY1305_SHA256",
        "X448:X25519",
        true,
    )
    .await;
    our_server_node_client(&identity, &ca, "TLS_AES_128_GCM_SHA256", "X25519", false).await;
}

#[tokio::test]
async fn our_server_with_fixture_identity_against_our_client() {
    let identity = ServerIdentity::load(&fixture_dir()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = tls::server_config(&identity, SMP_SERVER_ALPN).unwrap();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tls::accept(sock, &cfg).await
    });
    let client = tls::connect(
        TcpStream::connect(addr).await.unwrap(),
        pin(),
        tls::ALPN_SMP,
    )
    .await
    .unwrap();
    let server = server.await.unwrap().unwrap();
    assert_eq!(client.session_id(), server.session_id());
    assert_eq!(client.peer_certificates().unwrap(), identity.chain());
}

#[test]
fn ed448_signatures_match_openssl_pkeyutl() {
    let dir = fixture_dir();
    let identity = ServerIdentity::load(&dir).unwrap();
    let signer = identity
        .signing_key()
        .choose_scheme(&[rustls::SignatureScheme::ED448])
        .expect("fixture key signs Ed448");
    let tmp = TempDir::new("pkeyutl");
    // OpenSSL 3.0 pkeyutl cannot sign an empty file, so no empty message.
    for msg in [&b"x"[..], b"SimpleX", &[0xa5; 1000]] {
        let msg_path = tmp.path().join("msg");
        std::fs::write(&msg_path, msg).unwrap();
        let out = run_openssl(&[
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            dir.join("server.key").to_str().unwrap(),
            "-in",
            msg_path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), 114);
        assert_eq!(signer.sign(msg).unwrap(), out.stdout);
    }
}
