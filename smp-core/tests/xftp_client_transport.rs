//! Client behaviour that needs a socket but no XFTP server: identity
//! pinning against a real TLS listener, connect failures and timeouts, and
//! the reconnecting retry helper. End-to-end tests against the XFTP server
//! live in `xftp-server/tests/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use smp_core::address::{KeyHash, Scheme, ServerAddress, TransportHost};
use smp_core::client::xftp::{
    Backoff, ReconnectingClient, TimeoutKind, XftpClient, XftpClientError, XftpClientOptions,
};
use smp_core::tls::{self, KeyAlgorithm, PinError, ServerIdentity, TlsError, XFTP_SERVER_ALPN};
use tokio::net::TcpListener;

fn local(port: u16, key_hash: [u8; 32]) -> ServerAddress {
    ServerAddress::new(
        Scheme::Xftp,
        vec![TransportHost::Ipv4([127, 0, 0, 1])],
        Some(port),
        KeyHash::from(key_hash),
    )
    .unwrap()
}

fn short() -> XftpClientOptions {
    XftpClientOptions {
        connect_timeout: Duration::from_millis(500),
        handshake_timeout: Duration::from_millis(500),
        command_timeout: Duration::from_millis(500),
        chunk_timeout: Duration::from_millis(500),
        per_kib: Duration::from_millis(1),
    }
}

/// A TLS listener with a real XFTP identity that completes TLS and then
/// only holds the connection; the client must fail before HTTP/2.
async fn tls_listener(identity: ServerIdentity) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = tls::server_config(&identity, XFTP_SERVER_ALPN).unwrap();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let cfg = cfg.clone();
            tokio::spawn(async move {
                if let Ok(conn) = tls::accept(sock, &cfg).await {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    drop(conn);
                }
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn wrong_key_hash_is_a_pin_error_and_final() {
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
    let mut wrong = identity.fingerprint();
    wrong[0] ^= 1;
    let (port, task) = tls_listener(identity).await;
    let err = XftpClient::connect(&local(port, wrong), short())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            XftpClientError::Tls(TlsError::Pin(PinError::IdentityMismatch))
        ),
        "{err:?}"
    );
    assert!(err.is_identity_mismatch());
    assert!(!err.is_retryable());
    task.abort();
}

#[tokio::test]
async fn right_identity_but_no_http2_times_out_in_connect() {
    // TLS succeeds (so pinning passed) but the peer never speaks HTTP/2.
    let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
    let kh = identity.fingerprint();
    let (port, task) = tls_listener(identity).await;
    let started = Instant::now();
    let err = XftpClient::connect(&local(port, kh), short())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            XftpClientError::Timeout(TimeoutKind::Connect | TimeoutKind::Handshake)
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(3));
    task.abort();
}

#[tokio::test]
async fn silent_tcp_peer_hits_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let started = Instant::now();
    let err = XftpClient::connect(&local(port, [0; 32]), short())
        .await
        .unwrap_err();
    assert!(
        matches!(err, XftpClientError::Timeout(TimeoutKind::Connect)),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(3));
    task.abort();
}

async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
    // dropped: nothing listens there any more
}

#[tokio::test]
async fn refused_connection_is_retryable_and_retried_with_reconnects() {
    let port = closed_port().await;
    let err = XftpClient::connect(&local(port, [0; 32]), short())
        .await
        .unwrap_err();
    assert!(matches!(err, XftpClientError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());

    let rc = ReconnectingClient::new(
        local(port, [0; 32]),
        short(),
        Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
        },
    );
    // Every attempt tries to connect again; the operation never runs.
    let ran = Arc::new(AtomicU32::new(0));
    let r: Result<(), _> = rc
        .retry(3, |c| {
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                c.ping().await
            }
        })
        .await;
    assert!(matches!(r, Err(XftpClientError::Connect(_))), "{r:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unusable_addresses_are_refused_before_dialling() {
    let short_hash = ServerAddress::new(
        Scheme::Xftp,
        vec![TransportHost::Ipv4([127, 0, 0, 1])],
        Some(1),
        KeyHash::new(vec![1, 2, 3]),
    )
    .unwrap();
    let err = XftpClient::connect(&short_hash, short()).await.unwrap_err();
    assert!(matches!(err, XftpClientError::Address(_)), "{err:?}");

    let onion = ServerAddress::new(
        Scheme::Xftp,
        vec![TransportHost::Onion(
            "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion".into(),
        )],
        None,
        KeyHash::from([1; 32]),
    )
    .unwrap();
    let err = XftpClient::connect(&onion, short()).await.unwrap_err();
    assert!(matches!(err, XftpClientError::Address(_)), "{err:?}");
}
