//! Browser (web) mode, xftp.md §6.7 and the SNI/CORS/web-handshake
//! scenarios 31–40 of §11.2: a server with `[WEB] cert`/`key` serves the
//! web certificate to SNI clients and the XFTP chain to the others, answers
//! web hellos with an identity proof, adds CORS headers on SNI connections
//! only, answers preflights and serves static files to SNI GETs.

mod support;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::crypto::secretbox::SbStream;
use smp_core::encoding::pad::{BLOCK_SIZE, pad, unpad};
use smp_core::tls::{self, KeyHash, ServerIdentity, TlsError};
use smp_core::xftp::command::FileCommand;
use smp_core::xftp::handshake::{
    ClientHandshake, ClientHello, ServerHandshake, verify_identity_proof,
};
use smp_core::xftp::response::FileResponse;
use smp_core::xftp::transmission::{AuthKey, decode_response_block, encode_command_block};
use support::*;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use xftp_server::server::WebMode;
use xftp_server::web::WebCredential;

/// A web identity (Ed25519 leaf + CA, `CN=localhost`) as PEM files would
/// hold it: `web.crt` with the chain, `web.key` with the leaf key.
struct WebCert {
    credential: WebCredential,
    fingerprint: KeyHash,
    leaf: Vec<u8>,
}

fn web_cert() -> WebCert {
    let (id, pem) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "localhost").unwrap();
    let chain = format!("{}{}", pem.server_crt, pem.ca_crt);
    let credential = WebCredential::from_pem(chain.as_bytes(), pem.server_key.as_bytes()).unwrap();
    assert_eq!(credential.chain().len(), 2);
    WebCert {
        credential,
        fingerprint: id.fingerprint(),
        leaf: id.chain()[0].to_vec(),
    }
}

async fn web_server(env: &Env, static_path: Option<std::path::PathBuf>) -> (Server, WebCert) {
    let web = web_cert();
    let mut s = env.settings();
    s.web = Some(WebMode {
        credential: web.credential.clone(),
        static_path,
    });
    (env.start(s).await, web)
}

/// A hand-driven HTTP/2 connection that may send SNI, with full control
/// over method and headers, and the response headers visible.
struct WebConn {
    sender: SendRequest<Full<Bytes>>,
    session_id: [u8; 32],
    alpn: Option<Vec<u8>>,
    peer_chain: Vec<CertificateDer<'static>>,
    conn: JoinHandle<()>,
}

impl Drop for WebConn {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl WebConn {
    /// `sni`: the host name to send; the chain is pinned to `pin`.
    async fn connect(
        server: &Server,
        sni: Option<&str>,
        alpn: &[u8],
        pin: KeyHash,
    ) -> Result<Self, TlsError> {
        let tcp = TcpStream::connect(server.running.addr).await.unwrap();
        let mut cfg = tls::client_config(pin, alpn)?;
        let name = match sni {
            Some(host) => {
                cfg.enable_sni = true;
                ServerName::try_from(host.to_string()).unwrap()
            }
            None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let tls = tls::connect_with_server_name(tcp, &cfg, name).await?;
        let session_id = tls.session_id().0;
        let alpn = tls.alpn().map(<[u8]>::to_vec);
        let peer_chain = tls.peer_certificates().unwrap_or_default().to_vec();
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            session_id,
            alpn,
            peer_chain,
            conn,
        })
    }

    async fn sni(server: &Server, web: &WebCert) -> Self {
        Self::connect(server, Some("localhost"), b"h2", web.fingerprint)
            .await
            .expect("SNI connection")
    }

    async fn plain(server: &Server) -> Self {
        Self::connect(server, None, b"xftp/1", server.key_hash)
            .await
            .expect("connection without SNI")
    }

    async fn send(&self, method: Method, path: &str, headers: &[&str], body: Vec<u8>) -> Answer {
        let mut sender = self.sender.clone();
        sender.ready().await.expect("connection ready");
        let mut req = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        for h in headers {
            req = req.header(*h, "1");
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        tokio::time::timeout(PATIENCE, async {
            let resp = sender.send_request(req).await.expect("response");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("body").to_bytes().to_vec();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
        .await
        .expect("server answers in time")
    }

    async fn post(&self, headers: &[&str], body: Vec<u8>) -> Answer {
        let a = self.send(Method::POST, "/", headers, body).await;
        assert_eq!(a.status, StatusCode::OK);
        a
    }

    /// Web hello with a fresh challenge; checks the answer is a server
    /// handshake and returns it with the challenge.
    async fn web_hello(&self) -> (ServerHandshake, [u8; 32], Answer) {
        let mut challenge = [0u8; 32];
        smp_core::crypto::random_bytes(&mut challenge);
        let body = ClientHello {
            web_challenge: Some(challenge),
        }
        .encode_body()
        .unwrap();
        let a = self.post(&["xftp-web-hello"], body).await;
        assert_eq!(a.body.len(), BLOCK_SIZE);
        let hs = ServerHandshake::decode_block(&a.body).expect("a server handshake");
        (hs, challenge, a)
    }

    async fn client_handshake(&self, headers: &[&str], version: u16, key_hash: &KeyHash) -> Answer {
        let body = ClientHandshake {
            version,
            key_hash: key_hash.to_vec(),
        }
        .encode_block()
        .unwrap();
        self.post(headers, body).await
    }

    fn block(
        &self,
        entity: &[u8],
        cmd: &FileCommand,
        key: Option<&smp_core::crypto::keys::PrivateKey>,
    ) -> Vec<u8> {
        encode_command_block(&self.session_id, b"", entity, cmd, key.map(AuthKey::Sign)).unwrap()
    }

    fn response(&self, body: &[u8]) -> FileResponse {
        decode_response_block(&body[..BLOCK_SIZE], &self.session_id)
            .expect("a response transmission")
            .response
            .expect("a well-formed response")
    }
}

fn has_cors(h: &HeaderMap) -> bool {
    h.get("access-control-allow-origin").map(|v| v.as_bytes()) == Some(b"*")
        && h.get("access-control-expose-headers").map(|v| v.as_bytes()) == Some(b"*")
}

fn no_cors(h: &HeaderMap) -> bool {
    !h.keys().any(|k| k.as_str().starts_with("access-control-"))
}

fn bare(word: &str) -> Vec<u8> {
    pad(word.as_bytes(), BLOCK_SIZE).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_gets_the_web_certificate_and_no_sni_the_xftp_chain() {
    let env = Env::new();
    let (server, web) = web_server(&env, None).await;

    // Scenario 31: SNI + h2 → the web certificate, ALPN h2.
    let sni = WebConn::sni(&server, &web).await;
    assert_eq!(sni.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(sni.peer_chain[0].as_ref(), web.leaf.as_slice());
    // Pinned to the XFTP identity, an SNI client is refused: it is not
    // offered the XFTP chain.
    let wrong = WebConn::connect(&server, Some("localhost"), b"h2", server.key_hash).await;
    assert!(matches!(wrong, Err(TlsError::Pin(_))), "{:?}", wrong.err());

    // Scenario 32: no SNI → the XFTP chain, ALPN xftp/1.
    let plain = WebConn::plain(&server).await;
    assert_eq!(plain.alpn.as_deref(), Some(&b"xftp/1"[..]));
    assert_eq!(plain.peer_chain, env.identity.chain().to_vec());

    // Scenario 36: the native client works unchanged.
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(65536, 7), 1).await;
    let got = download(&client, &c, 0).await.expect("download");
    assert_eq!(got, c.content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_on_sni_connections_only() {
    let env = Env::new();
    let (server, web) = web_server(&env, None).await;

    // Scenario 33 (and 40 for the body): no session yet → SESSION, with CORS.
    let sni = WebConn::sni(&server, &web).await;
    let a = sni.post(&[], Vec::new()).await;
    assert!(has_cors(&a.headers), "{:?}", a.headers);
    assert_eq!(a.body, bare("SESSION"));

    // Scenario 35: without SNI, an empty POST is a native hello, no CORS.
    let plain = WebConn::plain(&server).await;
    let a = plain.post(&[], Vec::new()).await;
    assert!(no_cors(&a.headers), "{:?}", a.headers);
    let hs = ServerHandshake::decode_block(&a.body).expect("server handshake");
    assert_eq!(hs.session_id, plain.session_id);
    assert_eq!(hs.web_identity_proof, None);
    // The web hello header means nothing without SNI: this is a client
    // handshake attempt (state "hello sent") and fails as such.
    let a = plain.post(&["xftp-web-hello"], Vec::new()).await;
    assert_eq!(a.body, bare("HANDSHAKE"));
    assert!(no_cors(&a.headers));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_preflight_with_sni_and_plain_xftp_without() {
    let env = Env::new();
    let (server, web) = web_server(&env, None).await;

    // Scenario 34.
    let sni = WebConn::sni(&server, &web).await;
    let a = sni.send(Method::OPTIONS, "/", &[], Vec::new()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.is_empty());
    let h = |k: &str| a.headers.get(k).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(
        h("access-control-allow-methods").as_deref(),
        Some("POST, OPTIONS")
    );
    assert_eq!(h("access-control-allow-headers").as_deref(), Some("*"));
    assert_eq!(h("access-control-max-age").as_deref(), Some("86400"));
    // A preflight does not touch the session: still no state.
    assert_eq!(sni.post(&[], Vec::new()).await.body, bare("SESSION"));

    // Without SNI, OPTIONS with an empty body is just a native hello.
    let plain = WebConn::plain(&server).await;
    let a = plain.send(Method::OPTIONS, "/", &[], Vec::new()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(no_cors(&a.headers));
    ServerHandshake::decode_block(&a.body).expect("server handshake");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_handshake_with_proof_and_rehandshake() {
    let env = Env::new();
    let (server, web) = web_server(&env, None).await;
    let sni = WebConn::sni(&server, &web).await;

    // Scenario 37: proof over challenge ‖ sessionId, XFTP chain.
    let (hs, challenge, a) = sni.web_hello().await;
    assert!(has_cors(&a.headers));
    assert_eq!(hs.session_id, sni.session_id);
    assert_eq!(
        hs.cert_chain,
        env.identity
            .chain()
            .iter()
            .map(|c| c.to_vec())
            .collect::<Vec<_>>()
    );
    assert!(hs.web_identity_proof.is_some());
    assert!(verify_identity_proof(&hs, &challenge, &server.key_hash));
    // The proof is bound to the challenge and to the identity.
    let mut other = challenge;
    other[0] ^= 1;
    assert!(!verify_identity_proof(&hs, &other, &server.key_hash));
    assert!(!verify_identity_proof(&hs, &challenge, &web.fingerprint));

    // Scenario 38: client handshake (version 1) without headers → empty.
    let a = sni.client_handshake(&[], 1, &server.key_hash).await;
    assert!(a.body.is_empty());
    assert!(has_cors(&a.headers));

    // Scenario 39: a new hello on the accepted session: same session id
    // and the same session key.
    let (hs2, challenge2, _) = sni.web_hello().await;
    assert_eq!(hs2.session_id, hs.session_id);
    assert_eq!(hs2.signed_key, hs.signed_key);
    assert!(verify_identity_proof(&hs2, &challenge2, &server.key_hash));
    let a = sni.client_handshake(&[], 3, &server.key_hash).await;
    assert!(a.body.is_empty());

    // Accepted: a PING is a command now.
    let ping = sni.block(b"", &FileCommand::Ping, None);
    let a = sni.post(&[], ping.clone()).await;
    assert_eq!(sni.response(&a.body), FileResponse::Pong);
    assert!(has_cors(&a.headers));

    // `xftp-handshake` on an accepted session is a client handshake: a
    // wrong key hash fails, the session stays accepted; a good one passes.
    let a = sni
        .client_handshake(&["xftp-handshake"], 3, &web.fingerprint)
        .await;
    assert_eq!(a.body, bare("HANDSHAKE"));
    assert!(has_cors(&a.headers));
    assert_eq!(
        sni.response(&sni.post(&[], ping.clone()).await.body),
        FileResponse::Pong
    );
    let a = sni
        .client_handshake(&["xftp-handshake"], 2, &server.key_hash)
        .await;
    assert!(a.body.is_empty());
    assert_eq!(
        sni.response(&sni.post(&[], ping).await.body),
        FileResponse::Pong
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_hello_variants_and_stale_session() {
    let env = Env::new();
    let (server, web) = web_server(&env, None).await;

    // Scenario 40: first request without the hello header → SESSION.
    let sni = WebConn::sni(&server, &web).await;
    let a = sni.post(&[], bare("PING")).await;
    assert_eq!(a.body.len(), BLOCK_SIZE);
    assert_eq!(unpad(&a.body).unwrap(), b"SESSION");

    // An empty web hello is a hello without proof.
    let a = sni.post(&["xftp-web-hello"], Vec::new()).await;
    let hs = ServerHandshake::decode_block(&a.body).expect("server handshake");
    assert_eq!(hs.web_identity_proof, None);

    // A challenge of the wrong length, or garbage → HANDSHAKE.
    let sni = WebConn::sni(&server, &web).await;
    let mut short = vec![b'1', 16];
    short.extend_from_slice(&[7; 16]);
    let a = sni
        .post(&["xftp-web-hello"], pad(&short, BLOCK_SIZE).unwrap())
        .await;
    assert_eq!(a.body, bare("HANDSHAKE"));
    assert!(has_cors(&a.headers));
    let a = sni.post(&["xftp-web-hello"], vec![0xff; 100]).await;
    assert_eq!(a.body, bare("HANDSHAKE"));
    // Still no session after the failures.
    assert_eq!(sni.post(&[], Vec::new()).await.body, bare("SESSION"));
    // A client handshake before any hello has no session either.
    let a = sni.client_handshake(&[], 3, &server.key_hash).await;
    assert_eq!(a.body, bare("SESSION"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_client_uploads_and_downloads_a_chunk() {
    let env = Env::new();
    let (server, web) = web_server(&env, None).await;
    let sni = WebConn::sni(&server, &web).await;
    let (hs, challenge, _) = sni.web_hello().await;
    assert!(verify_identity_proof(&hs, &challenge, &server.key_hash));
    assert!(
        sni.client_handshake(&[], 3, &server.key_hash)
            .await
            .body
            .is_empty()
    );

    let content = chunk(65536, 9);
    let snd = ed25519();
    let rcv = ed25519();
    let fnew = FileCommand::Fnew {
        file: info(&snd, &content),
        rcv_keys: vec![rcv.public_key()],
        auth: None,
    };
    let a = sni.post(&[], sni.block(b"", &fnew, Some(&snd))).await;
    assert!(has_cors(&a.headers));
    let FileResponse::SndIds {
        sender_id,
        recipient_ids,
    } = sni.response(&a.body)
    else {
        panic!("FNEW → SIDS")
    };

    let mut put = sni.block(&sender_id, &FileCommand::Fput, Some(&snd));
    put.extend_from_slice(&content);
    let a = sni.post(&[], put).await;
    assert_eq!(sni.response(&a.body), FileResponse::Ok);

    let dh = smp_core::crypto::keys::PrivateKey::generate(KeyAlgorithm::X25519);
    let fget = FileCommand::Fget {
        rcv_dh_key: dh.public_key(),
    };
    let a = sni
        .post(&[], sni.block(&recipient_ids[0], &fget, Some(&rcv)))
        .await;
    assert!(has_cors(&a.headers), "FGET carries CORS too");
    let FileResponse::File { srv_dh_key, nonce } = sni.response(&a.body) else {
        panic!("FGET → FILE")
    };
    let mut body = a.body[BLOCK_SIZE..].to_vec();
    assert_eq!(body.len(), content.len() + 16);
    let tag = body.split_off(content.len());
    let mut sb = SbStream::for_dh(&srv_dh_key, &dh, &nonce).unwrap();
    sb.decrypt(&mut body);
    sb.verify(&tag).expect("tag verifies");
    assert_eq!(body, content);

    // And the same chunk through the native client without SNI.
    let client = server.client().await;
    let c = Chunk {
        content: content.clone(),
        snd,
        sid: sender_id,
        rcv: vec![rcv],
        rids: recipient_ids,
    };
    assert_eq!(download(&client, &c, 0).await.expect("download"), content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_get_serves_static_files_inside_the_root() {
    let env = Env::new();
    let site = env.dir.path().join("www");
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(site.join("docs/index.html"), "docs").unwrap();
    std::fs::write(site.join("app.js"), "let x = 1;").unwrap();
    std::fs::write(env.dir.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(env.dir.path().join("secret.txt"), site.join("link.txt")).unwrap();
    let (server, web) = web_server(&env, Some(site)).await;
    let sni = WebConn::sni(&server, &web).await;

    let get = |p: &'static str| {
        let sni = &sni;
        async move { sni.send(Method::GET, p, &[], Vec::new()).await }
    };
    let a = get("/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, b"<h1>home</h1>");
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    assert!(no_cors(&a.headers), "static files carry no CORS headers");
    assert_eq!(get("/docs/").await.body, b"docs");
    assert_eq!(get("/docs").await.body, b"docs");
    let a = get("/app.js").await;
    assert_eq!(a.body, b"let x = 1;");
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "text/javascript; charset=utf-8"
    );
    for p in [
        "/missing.html",
        "/../secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/link.txt",
    ] {
        let a = get(p).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{p}");
        assert_ne!(a.body, b"secret");
    }
    server.stop().await;

    // No static_path: 404 (the reference leaves the stream unanswered).
    let env = Env::new();
    let (server, web) = web_server(&env, None).await;
    let sni = WebConn::sni(&server, &web).await;
    let a = sni.send(Method::GET, "/", &[], Vec::new()).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Without SNI a GET is an XFTP request: an empty one is a hello.
    let plain = WebConn::plain(&server).await;
    let a = plain.send(Method::GET, "/", &[], Vec::new()).await;
    assert_eq!(a.status, StatusCode::OK);
    ServerHandshake::decode_block(&a.body).expect("server handshake");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_web_credentials_sni_is_ignored() {
    let env = Env::new();
    let server = env.start_default().await;
    // The XFTP chain even with SNI, and h2 is not an XFTP session then.
    let c = WebConn::connect(&server, Some("localhost"), b"h2", server.key_hash)
        .await
        .expect("SNI client gets the XFTP chain");
    let a = c.post(&[], Vec::new()).await;
    assert!(a.body.is_empty());
    assert!(no_cors(&a.headers));
    let a = c.send(Method::OPTIONS, "/", &[], Vec::new()).await;
    assert!(no_cors(&a.headers));
    // With xftp/1 and SNI: a normal native handshake, no web rows.
    let c = WebConn::connect(&server, Some("localhost"), b"xftp/1", server.key_hash)
        .await
        .unwrap();
    let a = c.post(&[], Vec::new()).await;
    ServerHandshake::decode_block(&a.body).expect("server handshake");
    assert!(no_cors(&a.headers));
    server.stop().await;
}

#[test]
fn web_credentials_load_from_pem() {
    // Ed448 (our own signer) loads; a key of another certificate does not.
    let (_, ed448) = ServerIdentity::generate(KeyAlgorithm::Ed448, "localhost").unwrap();
    WebCredential::from_pem(ed448.server_crt.as_bytes(), ed448.server_key.as_bytes())
        .expect("Ed448 web credential");
    let (_, other) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "localhost").unwrap();
    let (_, ed25519) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "localhost").unwrap();
    assert!(matches!(
        WebCredential::from_pem(ed25519.server_crt.as_bytes(), other.server_key.as_bytes()),
        Err(xftp_server::web::CredentialError::KeyMismatch)
    ));
    assert!(WebCredential::from_pem(b"", ed25519.server_key.as_bytes()).is_err());
    assert!(WebCredential::from_pem(ed25519.server_crt.as_bytes(), b"").is_err());
}

/// A browser-like client: node's HTTP/2 with SNI does the preflight and the
/// web hello and verifies the proof as xftp-web does
/// (`tests/node/web_hello.mjs`). Node is required (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_browser_client_verifies_the_web_hello() {
    let env = Env::new();
    let (server, _web) = web_server(&env, None).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/web_hello.mjs");
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new("node")
            .arg(script)
            .arg(server.running.addr.port().to_string())
            .arg(&server.fingerprint)
            .output(),
    )
    .await
    .expect("node finishes in time")
    .expect("node runs (install it, or set XFTP_SKIP_NODE=1)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ed448 server key (the test identity): 114-byte proof.
    assert!(
        stdout.contains(r#""ok":true"#)
            && stdout.contains(r#""versions":[1,3]"#)
            && stdout.contains(r#""sessionIdLength":32"#)
            && stdout.contains(r#""proofLength":114"#)
            && stdout.contains(r#""leafKeyType":"ed448""#),
        "{stdout}"
    );
    server.stop().await;
}
