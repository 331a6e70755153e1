//! The core end to end on loopback, before any server exists: a fresh Ed448
//! identity, a TLS 1.3 server on 127.0.0.1, a client pinned to the identity's
//! fingerprint, both ends deriving the same session id (tls-unique), and a
//! file encrypted, cut into XFTP chunks, carried over the connection, checked
//! against its chunk digests and decrypted on the other side.
//!
//! Usage: `cargo run --release -p smp-core --example loopback [FILE]`
//! (without FILE, 5 MiB of generated data are sent).

use smp_core::crypto::digest::sha256;
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::encoding::string::b64_encode;
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{chunk_specs, decrypt_file, encrypt_file};
use smp_core::tls::{self, ALPN_XFTP, KeyAlgorithm, ServerIdentity, XFTP_SERVER_ALPN};
use std::error::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (name, content) = match std::env::args().nth(1) {
        Some(path) => {
            let name = std::path::Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            (name, std::fs::read(&path)?)
        }
        None => (
            "sample.bin".to_string(),
            (0..5 * 1024 * 1024).map(|i| (i * 7 % 251) as u8).collect(),
        ),
    };

    let (identity, _pem) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1")?;
    let fingerprint = identity.fingerprint();
    let config = tls::server_config(&identity, XFTP_SERVER_ALPN)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    println!(
        "server identity (Ed448): xftp://{}@127.0.0.1:{port}",
        identity.fingerprint_b64()
    );

    // Encrypt first, as a sender does, then move the chunks.
    let key = SbKey::generate();
    let nonce = CbNonce::generate();
    let header = FileHeader::new(name.clone());
    let mut encrypted = Vec::new();
    let file = encrypt_file(
        &content[..],
        content.len() as u64,
        &header,
        &key,
        &nonce,
        &mut encrypted,
    )?;
    println!(
        "encrypted {name}: {} bytes -> {} bytes in {} chunks, digest {}",
        content.len(),
        file.enc_size,
        file.chunk_sizes.len(),
        b64_encode(&file.digest)
    );

    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut conn = tls::accept(tcp, &config).await?;
        let sid = conn.session_id().0;
        // Frames: u32 length, then the chunk bytes; a zero length ends.
        let mut chunks = Vec::new();
        loop {
            let len = conn.read_u32().await? as usize;
            if len == 0 {
                break;
            }
            let mut chunk = vec![0u8; len];
            conn.read_exact(&mut chunk).await?;
            chunks.push(chunk);
        }
        conn.shutdown().await.ok();
        Ok::<_, Box<dyn Error + Send + Sync>>((sid, chunks))
    });

    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut conn = tls::connect(tcp, fingerprint, ALPN_XFTP).await?;
    let client_sid = conn.session_id().0;
    for spec in chunk_specs(&file) {
        let start = spec.offset as usize;
        conn.write_u32(spec.size).await?;
        conn.write_all(&encrypted[start..start + spec.size as usize])
            .await?;
    }
    conn.write_u32(0).await?;
    conn.flush().await?;
    let (server_sid, chunks) = server.await?.map_err(|e| e.to_string())?;

    println!("session id, client: {}", b64_encode(&client_sid));
    println!("session id, server: {}", b64_encode(&server_sid));
    if client_sid != server_sid {
        return Err("the two ends derived different session ids".into());
    }
    for (i, (chunk, digest)) in chunks.iter().zip(&file.chunk_digests).enumerate() {
        if sha256(chunk) != *digest {
            return Err(format!("chunk {} arrived corrupted", i + 1).into());
        }
    }
    let received = chunks.concat();
    let mut plain = Vec::new();
    let (got_header, digest) =
        decrypt_file(&received[..], file.enc_size, &key, &nonce, &mut plain)?;
    if digest != file.digest || plain != content {
        return Err("the received file differs from the sent one".into());
    }
    println!(
        "received {} chunks over TLS, digests match, decrypted {} ({} bytes): identical",
        chunks.len(),
        got_header.file_name,
        plain.len()
    );
    Ok(())
}
