//! Interop with OpenSSL through node: the session id we derive must equal
//! what OpenSSL reports as the client Finished (`getFinished` on a node
//! client, `getPeerFinished` on a node server), for each suite and with HRR.

mod tls_support;

use serde_json::json;
use smp_core::tls::{
    self, ALPN_SMP, ALPN_XFTP, KeyAlgorithm, SMP_SERVER_ALPN, ServerIdentity, Suite,
    XFTP_SERVER_ALPN,
};
use tls_support::{TempDir, read_line, spawn_node, wait_ok, write_line};
use tokio::net::{TcpListener, TcpStream};

/// Our server, a node client: both ends must agree on tls-unique.
pub async fn our_server_node_client(
    identity: &ServerIdentity,
    ca_path: &std::path::Path,
    ciphers: &str,
    ecdh: &str,
    expect_hrr: bool,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = tls::server_config(identity, XFTP_SERVER_ALPN).unwrap();
    let (child, mut out) = spawn_node(
        "client.js",
        &json!({"port": port, "ca": ca_path, "ciphers": ciphers, "ecdhCurve": ecdh, "alpn": "xftp/1"}),
    );
    let (sock, _) = listener.accept().await.unwrap();
    let mut conn = tls::accept(sock, &cfg).await.expect("our server handshake");
    let ours = hex::encode(conn.session_id().0);
    write_line(&mut conn, &ours).await;
    let node_finished = read_line(&mut conn).await;

    assert_eq!(out.expect("FINISHED").await, node_finished);
    assert_eq!(out.expect("CIPHER").await, ciphers);
    assert_eq!(out.expect("ALPN").await, "xftp/1");
    assert_eq!(out.expect("SERVER").await, ours);
    assert_eq!(
        ours, node_finished,
        "server tls-unique != OpenSSL client Finished"
    );
    assert_eq!(conn.alpn(), Some(ALPN_XFTP));
    let hrr = conn.handshake_kind() == Some(rustls::HandshakeKind::FullWithHelloRetryRequest);
    assert_eq!(
        hrr,
        expect_hrr,
        "handshake kind {:?}",
        conn.handshake_kind()
    );
    tls_support::close(conn).await;
    wait_ok(child).await;
}

/// Our client, a node server: our derived value must equal OpenSSL's peer Finished.
pub async fn our_client_node_server(
    pin: [u8; 32],
    cert_paths: &[&std::path::Path],
    key_path: &std::path::Path,
    suite: Suite,
    ciphers: &str,
) {
    let (child, mut out) = spawn_node(
        "server.js",
        &json!({"cert": cert_paths, "key": key_path, "ciphers": ciphers, "alpn": ["smp/1", "h2"]}),
    );
    let port: u16 = out.expect("LISTENING").await.parse().unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let cfg = tls::client_config_with_suites(pin, ALPN_SMP, &[suite]).unwrap();
    let mut conn = tls::connect_with_config(sock, &cfg)
        .await
        .expect("our client handshake");
    let ours = hex::encode(conn.session_id().0);
    let node_peer_finished = read_line(&mut conn).await;
    write_line(&mut conn, &ours).await;

    assert_eq!(out.expect("PEER_FINISHED").await, node_peer_finished);
    assert_eq!(out.expect("CIPHER").await, ciphers);
    assert_eq!(out.expect("ALPN").await, "smp/1");
    assert_eq!(out.expect("CLIENT").await, ours);
    assert_eq!(
        ours, node_peer_finished,
        "client tls-unique != OpenSSL server's peer Finished"
    );
    assert_eq!(conn.alpn(), Some(ALPN_SMP));
    tls_support::close(conn).await;
    wait_ok(child).await;
}

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

async fn client_case(alg: KeyAlgorithm, suite: Suite, ciphers: &str) {
    let (dir, id) = generated(alg);
    let p = dir.path();
    our_client_node_server(
        id.fingerprint(),
        &[&p.join("server.crt"), &p.join("ca.crt")],
        &p.join("server.key"),
        suite,
        ciphers,
    )
    .await;
}

#[tokio::test]
async fn client_chacha_ed25519() {
    client_case(KeyAlgorithm::Ed25519, Suite::Chacha20Poly1305Sha256, CHACHA).await;
}

#[tokio::test]
async fn client_chacha_ed448() {
    client_case(KeyAlgorithm::Ed448, Suite::Chacha20Poly1305Sha256, CHACHA).await;
}

#[tokio::test]
async fn client_aes128_ed448() {
    client_case(KeyAlgorithm::Ed448, Suite::Aes128GcmSha256, AES128).await;
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
