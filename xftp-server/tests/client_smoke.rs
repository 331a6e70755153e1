//! The whole path through our server with our client: handshake, FNEW,
//! FPUT, FGET, FACK, FDEL over real TLS and HTTP/2 on 127.0.0.1.

mod support;

use smp_core::client::xftp::XftpClientError;
use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::xftp::command::FileInfo;
use smp_core::xftp::error::XftpErrorType;
use support::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_ack_delete() {
    let env = Env::new();
    let mut s = env.settings();
    s.store_log = Some(env.store_log());
    let server = env.start(s).await;
    let client = server.client().await;
    client.ping().await.unwrap();

    let chunk: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let rcv = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let info = FileInfo {
        snd_key: snd.public_key(),
        size: 65536,
        digest: sha256(&chunk).to_vec(),
    };
    let (sid, rids) = client
        .create_file(&snd, info, vec![rcv.public_key()], None)
        .await
        .unwrap();
    assert_eq!(rids.len(), 1);
    client
        .upload_chunk(&sid, &snd, std::io::Cursor::new(chunk.clone()), 65536)
        .await
        .unwrap();
    let mut out = Vec::new();
    client
        .download_chunk(&rids[0], &rcv, 65536, &sha256(&chunk), &mut out)
        .await
        .unwrap();
    assert_eq!(out, chunk);
    client.ack_file(&rids[0], &rcv).await.unwrap();
    let again = client
        .download_chunk(&rids[0], &rcv, 65536, &sha256(&chunk), &mut Vec::new())
        .await;
    assert!(
        matches!(again, Err(XftpClientError::Protocol(XftpErrorType::Auth))),
        "{again:?}"
    );
    client.delete_file(&sid, &snd).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_uploads() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new();
    let mut s = env.settings();
    s.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = env.start(s).await;
    let client = server.client().await;
    let chunk = vec![5u8; 65536];
    let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let rcv = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let info = FileInfo {
        snd_key: snd.public_key(),
        size: 65536,
        digest: sha256(&chunk).to_vec(),
    };
    let (sid, _) = client
        .create_file(&snd, info, vec![rcv.public_key()], None)
        .await
        .unwrap();
    client
        .upload_chunk(&sid, &snd, std::io::Cursor::new(chunk), 65536)
        .await
        .unwrap();

    let get = |path: &'static str| {
        let m = server.running.metrics_addr.unwrap();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(m).await.unwrap();
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            tcp.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            tcp.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let text = get("/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(line("simplex_xftp_files_created"), "1");
    assert_eq!(line("simplex_xftp_files_uploaded"), "1");
    assert!(get("/other").await.starts_with("HTTP/1.1 404"));
    server.stop().await;
}
