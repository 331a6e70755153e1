//! Helpers shared by the `tls_*` integration tests: temp dirs, the shared
//! reference fixture, node/openssl drivers and a line exchange over TLS.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;
use smp_core::tls::{
    self, ALPN_SMP, ALPN_XFTP, ServerIdentity, Suite, TlsConnection, XFTP_SERVER_ALPN,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};

/// Base64url pin of the reference fixture's ca.crt.
pub const FIXTURE_PIN: &str = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI";

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "smp-core-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `shared/fixtures/reference-ed448`, beside the workspace root (as CI lays it
/// out), or under `$SIMPLEGO_SHARED` when set (git worktrees). Panics with a
/// clear message when absent: these tests must not pass silently.
pub fn fixture_dir() -> PathBuf {
    let shared = match std::env::var_os("SIMPLEGO_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared")
            .to_path_buf(),
    };
    let dir = shared.join("fixtures/reference-ed448");
    assert!(
        dir.join("ca.crt").is_file()
            && dir.join("server.crt").is_file()
            && dir.join("server.key").is_file(),
        "shared/ is missing: expected the reference Ed448 fixture at {} \
         (shared/ must sit beside the workspace root, or set SIMPLEGO_SHARED)",
        dir.display()
    );
    dir
}

pub fn node_script(name: &str) -> String {
    format!("{}/tests/node/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Spawns `node <script> <json>`; fails the test if node is missing.
pub fn spawn_node(script: &str, opts: &serde_json::Value) -> (Child, NodeOutput) {
    let mut child = Command::new("node")
        .arg(node_script(script))
        .arg(opts.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node (v20+) must be installed to run the TLS interop tests");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, NodeOutput(BufReader::new(stdout)))
}

pub struct NodeOutput(BufReader<ChildStdout>);

impl NodeOutput {
    /// Next line of the form `<key> <value>`; fails on ERROR or EOF.
    pub async fn expect(&mut self, key: &str) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            self.0.read_line(&mut line),
        )
        .await
        .expect("node timed out")
        .expect("read node output");
        assert!(n > 0, "node exited before printing {key}");
        let line = line.trim_end();
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        assert_eq!(k, key, "unexpected node output line: {line}");
        v.to_string()
    }
}

pub async fn wait_ok(mut child: Child) {
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("node did not exit")
        .expect("wait node");
    assert!(status.success(), "node exited with {status}");
}

pub async fn write_line<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut TlsConnection<S>,
    text: &str,
) {
    conn.write_all(format!("{text}\n").as_bytes())
        .await
        .expect("write over TLS");
    conn.flush().await.expect("flush TLS");
}

pub async fn read_line<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut TlsConnection<S>) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::io::AsyncReadExt::read(conn, &mut byte)
            .await
            .expect("read over TLS");
        assert!(n == 1, "peer closed before a full line");
        if byte[0] == b'\n' {
            break;
        }
        out.push(byte[0]);
    }
    String::from_utf8(out).expect("utf8 line")
}

pub fn run_openssl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command line must be installed for these tests")
}

/// Orderly close: send close_notify, wait for the peer's side to end.
pub async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut conn: TlsConnection<S>) {
    conn.shutdown().await.expect("TLS shutdown");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut rest),
    )
    .await;
}

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
    close(conn).await;
    wait_ok(child).await;
}

/// Our client, a node server: our derived value must equal OpenSSL's peer Finished.
pub async fn our_client_node_server(
    pin: [u8; 32],
    cert_paths: &[&std::path::Path],
    key_path: &std::path::Path,
    suite: Suite,
    ciphers: &str,
    request_cert: bool,
) {
    let (child, mut out) = spawn_node(
        "server.js",
        &json!({"cert": cert_paths, "key": key_path, "ciphers": ciphers, "alpn": ["smp/1", "h2"],
                "requestCert": request_cert}),
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
    close(conn).await;
    wait_ok(child).await;
}
