//! The server started from the reference's own Ed448 identity
//! (`shared/fixtures/reference-ed448`: ca.crt, server.crt, server.key made
//! by simplexmq's `init`), read in place — never copied into this
//! repository. Our client, pinned to the reference's test address hash,
//! uploads and downloads a chunk.

mod support;

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use smp_core::address::ServerAddress;
use smp_core::client::xftp::{XftpClient, XftpClientOptions};
use smp_core::encoding::string::b64_decode;
use smp_core::tls::{self, ServerIdentity};
use smp_core::xftp::response::FileResponse;
use support::*;
use xftp_server::app::{Settings, start};

/// SHA-256 of the fixture's ca.crt: the key hash of the reference's test
/// server address `xftp://LcJU…@localhost:8000`.
const FIXTURE_PIN: &str = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI";

/// `<workspace>/../shared/fixtures/reference-ed448`, or under
/// `$SIMPLEGO_SHARED` when set (as smp-core's TLS tests). Fails the test
/// with the folder's name when it is missing.
fn fixture_dir() -> PathBuf {
    let shared = match std::env::var_os("SIMPLEGO_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = shared.join("fixtures/reference-ed448");
    for name in ["ca.crt", "server.crt", "server.key"] {
        assert!(
            dir.join(name).is_file(),
            "missing {name} in the reference Ed448 fixture folder {} \
             (shared/ must sit beside the workspace root, or set SIMPLEGO_SHARED)",
            dir.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_identity_serves_our_client() {
    let dir = fixture_dir();
    let identity = ServerIdentity::load(&dir).expect("the fixture identity loads");
    let pin: [u8; 32] = b64_decode(FIXTURE_PIN).unwrap().try_into().unwrap();
    assert_eq!(identity.fingerprint(), pin);
    assert_eq!(
        tls::load_fingerprint(&dir.join("ca.crt")).unwrap(),
        pin,
        "the pin is SHA-256 of ca.crt"
    );

    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let mut settings = Settings::new(identity.clone(), "127.0.0.1:0".parse().unwrap(), files);
    settings.store_log = Some(tmp.path().join("file-server-store.log"));
    let running = start(settings).await.expect("server starts");
    let server = Server {
        key_hash: pin,
        fingerprint: FIXTURE_PIN.to_string(),
        running,
    };

    // Our client, pinned to the reference's address hash.
    let address: ServerAddress = format!(
        "xftp://{FIXTURE_PIN}@127.0.0.1:{}",
        server.running.addr.port()
    )
    .parse()
    .unwrap();
    let client = XftpClient::connect(&address, XftpClientOptions::default())
        .await
        .expect("our client accepts the reference's Ed448 chain");
    assert_eq!(client.version(), 3);
    let c = create_uploaded(&client, chunk(65536, 1), 2).await;
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    let other = server.client().await;
    assert_eq!(download(&other, &c, 1).await.unwrap(), c.content);
    client.ack_file(&c.rids[0], &c.rcv[0]).await.unwrap();
    client.delete_file(&c.sid, &c.snd).await.unwrap();

    // The handshake block carries the fixture chain [server.crt, ca.crt],
    // and the session key is signed by the fixture's Ed448 server.key.
    let raw = server.raw().await;
    let hs = raw.handshake(&pin).await;
    assert_eq!(hs.cert_chain.len(), 2);
    for (der, name) in hs.cert_chain.iter().zip(["server.crt", "ca.crt"]) {
        let pem = std::fs::read(dir.join(name)).unwrap();
        let want = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(der.as_slice(), want.as_ref(), "{name}");
    }
    let leaf = smp_core::xftp::handshake::certificate_public_key(&hs.cert_chain[0]).unwrap();
    assert_eq!(
        leaf.algorithm(),
        smp_core::crypto::keys::KeyAlgorithm::Ed448
    );
    smp_core::xftp::handshake::verify_session_key(&hs.signed_key, &leaf)
        .expect("the session key is signed by server.key");
    assert_eq!(raw.ping().await, FileResponse::Pong);

    // A client pinned to another hash is refused by its own TLS check.
    let mut wrong = pin;
    wrong[0] ^= 1;
    let wrong_address: ServerAddress = format!(
        "xftp://{}@127.0.0.1:{}",
        smp_core::encoding::string::b64_encode(&wrong).trim_end_matches('='),
        server.running.addr.port()
    )
    .parse()
    .unwrap();
    let refused = XftpClient::connect(&wrong_address, XftpClientOptions::default()).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.is_identity_mismatch()),
        "{refused:?}"
    );
    drop((client, other, raw));
    server.stop().await;
}
