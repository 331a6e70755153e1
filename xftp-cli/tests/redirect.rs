//! `recv` follows one level of redirect (xftp.md §4.4): the outer
//! description points at a one-chunk file whose plaintext is the real
//! recipient description; a redirect whose inner description does not match
//! its size and digest, or that redirects again, is refused.

mod support;

use smp_core::address::ServerAddress;
use smp_core::client::xftp::{XftpClient, XftpClientOptions};
use smp_core::crypto::digest::{sha256, sha512};
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::chunks::{FILE_OVERHEAD, single_chunk_size};
use smp_core::file::crypto::encrypt_bytes;
use smp_core::file::description::{
    FileChunk, FileChunkReplica, FileDescription, FileParty, RedirectFileInfo, ReplicaKey,
    ValidFileDescription,
};
use smp_core::file::header::FileHeader;
use smp_core::xftp::command::FileInfo;
use support::*;
use xftp_cli::error::exit;

/// Uploads `yaml` as a redirect file (name "", one chunk) to `server` and
/// returns the outer description pointing at it with `redirect` info.
async fn redirect_description(server: &str, yaml: &[u8], redirect: RedirectFileInfo) -> String {
    let addr: ServerAddress = server.parse().unwrap();
    let header = FileHeader::new("");
    let payload = header.encode().unwrap().len() as u64 + yaml.len() as u64 + FILE_OVERHEAD;
    let chunk_size = single_chunk_size(payload).expect("a description fits one chunk");
    let key = SbKey::generate();
    let nonce = CbNonce::generate();
    let enc = encrypt_bytes(&key, &nonce, &header, yaml, chunk_size as u64).unwrap();
    let client = XftpClient::connect(&addr, XftpClientOptions::default())
        .await
        .unwrap();
    let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let rcv = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let info = FileInfo {
        snd_key: snd.public_key(),
        size: chunk_size,
        digest: sha256(&enc).to_vec(),
    };
    let (sid, rids) = client
        .create_file(&snd, info, vec![rcv.public_key()], None)
        .await
        .unwrap();
    client
        .upload_chunk(&sid, &snd, std::io::Cursor::new(enc.clone()), chunk_size)
        .await
        .unwrap();
    FileDescription {
        party: FileParty::Recipient,
        size: chunk_size as u64,
        digest: sha512(&enc).to_vec(),
        key: key.0,
        nonce: nonce.0,
        chunk_size,
        chunks: vec![FileChunk {
            chunk_no: 1,
            chunk_size,
            digest: sha256(&enc).to_vec(),
            replicas: vec![FileChunkReplica {
                server: addr,
                replica_id: rids[0].clone(),
                replica_key: ReplicaKey::from_der(&rcv.to_der()).unwrap(),
            }],
        }],
        redirect: Some(redirect),
        parity: None,
    }
    .to_yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_follows_one_redirect() {
    let servers = Servers::start(2).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("behind-redirect.bin");
    write_file(&src, 300_000, 11);
    let run = xftp(&[
        "send",
        p(&src),
        p(work.path()),
        "-s",
        &servers.list(),
        "-n",
        "2",
    ])
    .await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    let inner_yaml = std::fs::read(work.path().join("behind-redirect.bin.xftp/rcv1.xftp")).unwrap();
    let inner = ValidFileDescription::from_yaml(
        std::str::from_utf8(&inner_yaml).unwrap(),
        FileParty::Recipient,
    )
    .unwrap()
    .into_inner();
    let info = RedirectFileInfo {
        size: inner.size,
        digest: inner.digest.clone(),
    };

    // The redirect is followed and the real file arrives.
    let outer = redirect_description(&servers.servers[1].address, &inner_yaml, info.clone()).await;
    let outer_path = work.path().join("outer.xftp");
    std::fs::write(&outer_path, &outer).unwrap();
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = xftp(&["recv", p(&outer_path), p(&out), "-y"]).await;
    assert_eq!(r.status, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read(out.join("behind-redirect.bin")).unwrap(),
        std::fs::read(&src).unwrap()
    );

    // A redirect whose inner description does not match what it announces.
    let inner2 = std::fs::read(work.path().join("behind-redirect.bin.xftp/rcv2.xftp")).unwrap();
    let lying = RedirectFileInfo {
        size: info.size,
        digest: vec![0u8; 64],
    };
    let outer = redirect_description(&servers.servers[0].address, &inner2, lying).await;
    std::fs::write(&outer_path, &outer).unwrap();
    let out2 = work.path().join("out2");
    std::fs::create_dir(&out2).unwrap();
    let r = xftp(&["recv", p(&outer_path), p(&out2), "-y"]).await;
    assert_eq!(
        r.status,
        exit::BAD_DESCRIPTION,
        "a mismatching redirect: {}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("does not match its redirect"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_dir(&out2).unwrap().count(),
        0,
        "no output file"
    );

    // A redirect to another redirect, announced correctly: only one level
    // is followed.
    let middle = ValidFileDescription::from_yaml(&outer, FileParty::Recipient)
        .unwrap()
        .into_inner();
    let chain = redirect_description(
        &servers.servers[0].address,
        outer.as_bytes(),
        RedirectFileInfo {
            size: middle.size,
            digest: middle.digest.clone(),
        },
    )
    .await;
    std::fs::write(&outer_path, &chain).unwrap();
    let r = xftp(&["recv", p(&outer_path), p(&out2), "-y"]).await;
    assert_eq!(
        r.status,
        exit::BAD_DESCRIPTION,
        "a redirect chain: {}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stderr.contains("Redirect chain too long"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(&out2).unwrap().count(),
        0,
        "no output file"
    );
    servers.stop_all().await;
}
