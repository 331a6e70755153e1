//! Interop with OpenSSL through node: the session id we derive must equal
//! what OpenSSL reports as the client Finished (`getFinished` on a node
//! client, `getPeerFinished` on a node server), for each suite and with HRR.

mod tls_support;

use serde_json::json;
use smp_core::tls::{self, KeyAlgorithm, SMP_SERVER_ALPN, ServerIdentity, Suite};
use tls_support::{TempDir, our_client_node_server, our_server_node_client, spawn_node};
use tokio::net::TcpListener;

const CHACHA: &str = "TLS_CHACHA20_POLY1305_SHA256";
const AES128: &str = "TLS_AES_128_GCM_SHA256";

fn generated(alg: KeyAlgorithm) -> (TempDir, ServerIdentity) {
    let dir = TempDir::new("node");
    let identity = ServerIdentity::init(dir.path(), alg, "127.0.0.1").unwrap();
    (dir, identity)
}

#[tokio::test]
async fn server_chacha_ed25519() {
    let (dir, id) = generated(KeyAlgorithm::Ed25519);
    our_server_node_client(&id, &dir.path().join("ca.crt"), CHACHA, "X25519", false).await;
}

#[tokio::test]
async fn server_aes128_ed448() {
    let (dir, id) = generated(KeyAlgorithm::Ed448);
    our_server_node_client(&id, &dir.path().join("ca.crt"), AES128, "X25519", false).await;
}

#[tokio::test]
async fn server_chacha_ed448_hello_retry_request() {
    // The reference client offers X448 first; rustls has none, so it asks again.
    let (dir, id) = generated(KeyAlgorithm::Ed448);
    our_server_node_client(&id, &dir.path().join("ca.crt"), CHACHA, "X448:X25519", true).await;
}

#[tokio::test]
async fn server_aes128_ed25519_hello_retry_request() {
    let (dir, id) = generated(KeyAlgorithm::Ed25519);
    our_server_node_client(&id, &dir.path().join("ca.crt"), AES128, "X448:X25519", true).await;
}

async fn client_case(alg: KeyAlgorithm, suite: Suite, ciphers: &str, request_cert: bool) {
    let (dir, id) = generated(alg);
    let p = dir.path();
    our_client_node_server(
        id.fingerprint(),
        &[&p.join("server.crt"), &p.join("ca.crt")],
        &p.join("server.key"),
        suite,
        ciphers,
        request_cert,
    )
    .await;
}

#[tokio::test]
async fn client_chacha_ed25519() {
    client_case(
        KeyAlgorithm::Ed25519,
        Suite::Chacha20Poly1305Sha256,
        CHACHA,
        false,
    )
    .await;
}

#[tokio::test]
async fn client_chacha_ed448() {
    client_case(
        KeyAlgorithm::Ed448,
        Suite::Chacha20Poly1305Sha256,
        CHACHA,
        false,
    )
    .await;
}

#[tokio::test]
async fn client_aes128_ed448() {
    client_case(KeyAlgorithm::Ed448, Suite::Aes128GcmSha256, AES128, false).await;
}

#[tokio::test]
async fn node_client_refuses_server_with_unknown_ca() {
    // Guards the harness itself: node really checks the chain against `ca`.
    let (_dir_a, id_a) = generated(KeyAlgorithm::Ed448);
    let (dir_b, _) = generated(KeyAlgorithm::Ed448);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = tls::server_config(&id_a, SMP_SERVER_ALPN).unwrap();
    let (child, mut out) = spawn_node(
        "client.js",
        &json!({"port": port, "ca": dir_b.path().join("ca.crt"), "ciphers": CHACHA, "alpn": "smp/1"}),
    );
    let (sock, _) = listener.accept().await.unwrap();
    assert!(tls::accept(sock, &cfg).await.is_err());
    let err = out.expect("ERROR").await;
    assert!(!err.is_empty());
    let status = child.wait_with_output().await.unwrap().status;
    assert!(!status.success());
}

#[tokio::test]
async fn client_with_certificate_request_aes128_ed25519() {
    // Empty client Certificate before Finished, as with the reference SMP server.
    client_case(KeyAlgorithm::Ed25519, Suite::Aes128GcmSha256, AES128, true).await;
}
