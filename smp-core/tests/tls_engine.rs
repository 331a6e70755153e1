//! The OS-free TLS engine (rustls unbuffered over the RustCrypto provider)
//! against our std server on 127.0.0.1: the same tls-unique on both ends,
//! pinning, a forged chain, SMP-sized writes, close_notify and garbage.

use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smp_core::tls::engine::{Client, EngineError};
use smp_core::tls::{self, ALPN_SMP, KeyAlgorithm, PinError, SMP_SERVER_ALPN, ServerIdentity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod tls_support;
use tls_support::TempDir;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn seeded() {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    tls::rustcrypto::seed(&seed);
}

/// Writes what the engine has for the socket, then reads until `done`.
fn drive(
    c: &mut Client,
    sock: &mut StdTcpStream,
    done: impl Fn(&Client) -> bool,
) -> Result<(), EngineError> {
    loop {
        let out = c.outgoing().to_vec();
        sock.write_all(&out).unwrap();
        c.sent(out.len());
        if done(c) {
            return Ok(());
        }
        let n = sock.read(c.read_buf()).unwrap();
        if n == 0 {
            return Err(EngineError::Closed);
        }
        c.received(n)?;
    }
}

/// A std server that echoes what it reads, reporting its session id.
async fn echo_server(
    identity: &ServerIdentity,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<([u8; 32], usize), tls::TlsError>>,
) {
    echo_server_with(identity, tls::config::SERVER_SUITES).await
}

async fn echo_server_with(
    identity: &ServerIdentity,
    suites: &'static [tls::Suite],
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<([u8; 32], usize), tls::TlsError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = tls::server_config_with_suites(identity, SMP_SERVER_ALPN, suites).unwrap();
    let task = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut conn = tls::accept(sock, &cfg).await?;
        let id = conn.session_id().0;
        let mut total = 0;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Ok((id, total));
            }
            total += n;
            conn.write_all(&buf[..n]).await?;
        }
    });
    (addr, task)
}

async fn connect(
    addr: std::net::SocketAddr,
    pin: [u8; 32],
) -> (Result<Client, EngineError>, StdTcpStream) {
    tokio::task::spawn_blocking(move || {
        seeded();
        let mut sock = StdTcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut c = match Client::connect(pin, ALPN_SMP, now()) {
            Ok(c) => c,
            Err(e) => return (Err(e), sock),
        };
        let r = drive(&mut c, &mut sock, |c| c.session_id().is_some());
        (r.map(|()| c), sock)
    })
    .await
    .unwrap()
}

async fn roundtrip(alg: KeyAlgorithm, suites: &'static [tls::Suite]) {
    let dir = TempDir::new("engine");
    let identity = ServerIdentity::init(dir.path(), alg, "127.0.0.1").unwrap();
    let (addr, server) = echo_server_with(&identity, suites).await;
    let (client, sock) = connect(addr, identity.fingerprint()).await;
    let mut client = client.unwrap();
    assert_eq!(client.alpn(), Some(ALPN_SMP));
    assert_eq!(client.peer_certificates().unwrap(), identity.chain());
    let id = client.session_id().unwrap().0;
    assert_ne!(id, [0u8; 32]);

    // An SMP block is 16 KiB: more than one record each way.
    let block: Vec<u8> = (0..16384u32).map(|i| (i * 7 + 3) as u8).collect();
    let echoed = tokio::task::spawn_blocking(move || {
        let mut sock = sock;
        client.write(&block).unwrap();
        drive(&mut client, &mut sock, |c| c.plaintext().len() >= 16384).unwrap();
        let got = client.plaintext().to_vec();
        client.consume(got.len());
        client.close().unwrap();
        drive(&mut client, &mut sock, |_| true).unwrap();
        // The write after close is refused, not sent.
        assert!(matches!(client.write(b"late"), Err(EngineError::Closed)));
        (got == block, got.len())
    })
    .await
    .unwrap();
    assert_eq!(echoed, (true, 16384));
    // close_notify ends the server's read cleanly; both ends agree on tls-unique.
    let (server_id, total) = server.await.unwrap().unwrap();
    assert_eq!(server_id, id, "tls-unique differs between the ends");
    assert_eq!(total, 16384);
}

#[tokio::test]
async fn ed25519_server_session_id_and_data_both_ways() {
    roundtrip(KeyAlgorithm::Ed25519, tls::config::SERVER_SUITES).await;
}

/// The suite a server picks when it does not offer ChaCha20 (our client
/// offers it second); ring's records on one end, RustCrypto's on the other.
#[tokio::test]
async fn aes_128_gcm_when_the_server_prefers_it() {
    roundtrip(KeyAlgorithm::Ed448, &[tls::Suite::Aes128GcmSha256]).await;
}

#[tokio::test]
async fn ed448_server_session_id_and_data_both_ways() {
    roundtrip(KeyAlgorithm::Ed448, tls::config::SERVER_SUITES).await;
}

#[tokio::test]
async fn wrong_pin_is_refused_with_the_pin_error() {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "localhost").unwrap();
    let mut pin = identity.fingerprint();
    pin[31] ^= 0x80;
    let (addr, server) = echo_server(&identity).await;
    let (client, sock) = connect(addr, pin).await;
    assert!(
        matches!(client, Err(EngineError::Pin(PinError::IdentityMismatch))),
        "{client:?}"
    );
    // The caller closes the socket on any engine error.
    drop(sock);
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn a_leaf_not_signed_by_the_pinned_ca_is_refused() {
    let (a, b) = (TempDir::new("engine-a"), TempDir::new("engine-b"));
    let ca = ServerIdentity::init(a.path(), KeyAlgorithm::Ed25519, "localhost").unwrap();
    ServerIdentity::init(b.path(), KeyAlgorithm::Ed25519, "localhost").unwrap();
    let forged = ServerIdentity::from_pem(
        &std::fs::read(b.path().join("server.crt")).unwrap(),
        &std::fs::read(a.path().join("ca.crt")).unwrap(),
        &std::fs::read(b.path().join("server.key")).unwrap(),
    )
    .unwrap();
    let (addr, _server) = echo_server(&forged).await;
    let (client, _sock) = connect(addr, ca.fingerprint()).await;
    assert!(
        matches!(
            client,
            Err(EngineError::Tls(rustls::Error::InvalidCertificate(_)))
        ),
        "{client:?}"
    );
}

#[test]
fn garbage_from_the_server_is_an_error_not_a_panic() {
    seeded();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut hello = [0u8; 512];
        let _ = s.read(&mut hello);
        // A handshake record header with a body that is not a ServerHello.
        let mut junk = vec![22, 3, 3, 0x40, 0x00];
        junk.extend((0..0x4000u32).map(|i| (i * 31) as u8));
        let _ = s.write_all(&junk);
    });
    let mut sock = StdTcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = Client::connect([0u8; 32], ALPN_SMP, now()).unwrap();
    let r = drive(&mut c, &mut sock, |c| c.session_id().is_some());
    assert!(matches!(r, Err(EngineError::Tls(_))), "{r:?}");
    // A closed engine stays closed.
    assert!(matches!(c.write(b"x"), Err(EngineError::Closed)));
    server.join().unwrap();
}
