//! A file sent and received through two of our XFTP servers on loopback.
//!
//! Starts two servers with fresh Ed448 identities on 127.0.0.1, encrypts a
//! file as the reference sender does, uploads its chunks spread over both
//! servers (FNEW + FPUT), writes the recipient's file description (YAML),
//! then — as the recipient — parses that description, downloads every chunk
//! (FGET, re-encrypted per download), checks chunk digests, the file digest
//! and size, decrypts, compares with the original, and acknowledges (FACK).
//!
//! `cargo run --release -p xftp-server --example server_loopback [FILE]`
//! (without FILE, 5 MiB of generated data are sent).

use smp_core::address::ServerAddress;
use smp_core::client::xftp::{XftpClient, XftpClientOptions};
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::description::{
    FileDescription, FileParty, ReplicaKey, UploadedChunk, UploadedFile, ValidFileDescription,
    split_descriptions,
};
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{chunk_specs, decrypt_file, encrypt_file};
use smp_core::tls::ServerIdentity;
use smp_core::xftp::command::FileInfo;
use std::error::Error;
use xftp_server::app::{Settings, start};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Res<()> {
    let work = std::env::temp_dir().join(format!("xftp-loopback-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn run(work: &std::path::Path) -> Res<()> {
    let (name, content) = match std::env::args().nth(1) {
        Some(path) => {
            let name = std::path::Path::new(&path)
                .file_name()
                .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
            (name, std::fs::read(&path)?)
        }
        None => (
            "sample.bin".to_string(),
            (0..5 * 1024 * 1024u32)
                .map(|i| (i * 7 % 251) as u8)
                .collect(),
        ),
    };

    // Two servers, each with its own identity, chunk directory and store log.
    let mut servers = Vec::new();
    let mut addresses = Vec::new();
    for i in 0..2 {
        let dir = work.join(format!("server{i}"));
        std::fs::create_dir_all(dir.join("files"))?;
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1")?;
        let mut s = Settings::new(identity.clone(), "127.0.0.1:0".parse()?, dir.join("files"));
        s.store_log = Some(dir.join("file-server-store.log"));
        let server = start(s).await?;
        let addr: ServerAddress = format!(
            "xftp://{}@127.0.0.1:{}",
            identity.fingerprint_b64(),
            server.addr.port()
        )
        .parse()?;
        println!("server {}: {addr}", i + 1);
        addresses.push(addr);
        servers.push(server);
    }

    // Sender: encrypt to a temporary file, then upload chunk by chunk.
    let key = SbKey::generate();
    let nonce = CbNonce::generate();
    let enc_path = work.join("file.enc");
    let encrypted = encrypt_file(
        &content[..],
        content.len() as u64,
        &FileHeader::new(name.clone()),
        &key,
        &nonce,
        std::fs::File::create(&enc_path)?,
    )?;
    let enc = std::fs::read(&enc_path)?;
    println!(
        "encrypted {name}: {} bytes -> {} bytes in {} chunks",
        content.len(),
        encrypted.enc_size,
        encrypted.chunk_sizes.len()
    );

    let mut clients = Vec::new();
    for a in &addresses {
        clients.push(XftpClient::connect(a, XftpClientOptions::default()).await?);
    }
    let mut uploaded = Vec::new();
    for (i, (spec, digest)) in chunk_specs(&encrypted)
        .iter()
        .zip(&encrypted.chunk_digests)
        .enumerate()
    {
        let server = i % clients.len();
        let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
        let rcv = PrivateKey::generate(KeyAlgorithm::Ed25519);
        let info = FileInfo {
            snd_key: snd.public_key(),
            size: spec.size,
            digest: digest.to_vec(),
        };
        let (sid, rids) = clients[server]
            .create_file(&snd, info, vec![rcv.public_key()], None)
            .await?;
        let bytes = enc[spec.offset as usize..(spec.offset + spec.size as u64) as usize].to_vec();
        clients[server]
            .upload_chunk(&sid, &snd, std::io::Cursor::new(bytes), spec.size)
            .await?;
        uploaded.push(UploadedChunk {
            chunk_no: i as u32 + 1,
            chunk_size: spec.size,
            digest: digest.to_vec(),
            server: addresses[server].clone(),
            sender_id: sid,
            sender_key: ReplicaKey::from_der(&snd.to_der())?,
            recipients: vec![(rids[0].clone(), ReplicaKey::from_der(&rcv.to_der())?)],
        });
        println!(
            "uploaded chunk {} ({} bytes) to server {}",
            i + 1,
            spec.size,
            server + 1
        );
    }
    let file = UploadedFile {
        size: encrypted.enc_size,
        digest: encrypted.digest.to_vec(),
        key: key.0,
        nonce: nonce.0,
        chunk_size: encrypted.chunk_sizes[0],
        redirect: None,
    };
    let (recipients, _sender) = split_descriptions(&file, &uploaded)?;
    let yaml = recipients[0].to_yaml();
    println!("\nrecipient description:\n{yaml}");

    // Recipient: parse and validate the description, download, verify, decrypt.
    let desc: FileDescription =
        ValidFileDescription::from_yaml(&yaml, FileParty::Recipient)?.into_inner();
    let mut received = Vec::with_capacity(desc.size as usize);
    for chunk in &desc.chunks {
        let replica = &chunk.replicas[0];
        let client = XftpClient::connect(&replica.server, XftpClientOptions::default()).await?;
        let rcv = PrivateKey::from_der(replica.replica_key.as_der())?;
        client
            .download_chunk(
                &replica.replica_id,
                &rcv,
                chunk.chunk_size,
                &chunk.digest,
                &mut received,
            )
            .await?;
        client.ack_file(&replica.replica_id, &rcv).await?;
    }
    let mut plain = Vec::new();
    let (header, digest) = decrypt_file(
        &received[..],
        desc.size,
        &SbKey(desc.key),
        &CbNonce(desc.nonce),
        &mut plain,
    )?;
    if digest.as_slice() != desc.digest.as_slice() || plain != content {
        return Err("the received file differs from the sent one".into());
    }
    println!(
        "received {} ({} bytes) from {} chunks: digest and content match",
        header.file_name,
        plain.len(),
        desc.chunks.len()
    );
    for s in servers {
        s.stop().await;
    }
    Ok(())
}
