//! Browser (web) mode: the `[WEB] cert`/`key` credential served to clients
//! that send SNI, the TLS parameters used when it is configured, CORS
//! headers and static files for SNI `GET`s.
//!
//! The XFTP protocol side of web mode (web hello, identity proof,
//! `pad("SESSION")`) is in `server.rs`'s handshake state machine.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::tls::ServerIdentity;
use smp_core::tls::ed448::Ed448SigningKey;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The web credential (`web.crt` chain and `web.key`) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no certificate")]
    NoCertificate(String),
    #[error("{0}: no private key")]
    NoKey(String),
    #[error("{0}: unsupported private key (use ECDSA, RSA, Ed25519 or Ed448)")]
    UnsupportedKey(String),
    #[error("the private key does not match the certificate")]
    KeyMismatch,
}

/// The certificate chain and key served to SNI clients.
#[derive(Clone)]
pub struct WebCredential {
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for WebCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCredential")
            .field("certificates", &self.certified.cert.len())
            .finish_non_exhaustive()
    }
}

impl WebCredential {
    /// Reads `cert` (every certificate in it forms the chain, leaf first,
    /// as the reference loads it with no CA file) and `key` (PKCS#8, PKCS#1
    /// or SEC1 PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CredentialError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| CredentialError::Io {
                file: p.display().to_string(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            CredentialError::NoCertificate(_) => {
                CredentialError::NoCertificate(cert.display().to_string())
            }
            CredentialError::NoKey(_) => CredentialError::NoKey(key.display().to_string()),
            CredentialError::UnsupportedKey(_) => {
                CredentialError::UnsupportedKey(key.display().to_string())
            }
            e => e,
        })
    }

    /// From PEM texts: a certificate chain and a private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CredentialError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|_| CredentialError::NoCertificate("certificate".into()))?;
        if chain.is_empty() {
            return Err(CredentialError::NoCertificate("certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| CredentialError::NoKey("key".into()))?;
        let signing = signing_key(&key)?;
        let certified = CertifiedKey::new(chain, signing);
        // A key whose public half rustls cannot compute is accepted as is;
        // a key that provably belongs to another certificate is not.
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            certified.keys_match()
        {
            return Err(CredentialError::KeyMismatch);
        }
        Ok(Self {
            certified: Arc::new(certified),
        })
    }

    /// The chain as DER, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }
}

/// Any key ring can sign with (ECDSA P-256/P-384, RSA, Ed25519), or Ed448.
fn signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, CredentialError> {
    if let Ok(k) = ring::sign::any_supported_type(key) {
        return Ok(k);
    }
    if let PrivateKeyDer::Pkcs8(pkcs8) = key
        && let Ok(k) = PrivateKey::from_der(pkcs8.secret_pkcs8_der())
        && k.algorithm() == KeyAlgorithm::Ed448
        && let Some(signer) = Ed448SigningKey::new(k)
    {
        return Ok(Arc::new(signer));
    }
    Err(CredentialError::UnsupportedKey("key".into()))
}

/// Serves the web certificate to clients that sent SNI (any name) and the
/// XFTP chain `[server.crt, ca.crt]` to the others.
#[derive(Debug)]
struct SniResolver {
    xftp: Arc<CertifiedKey>,
    web: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(if hello.server_name().is_some() {
            self.web.clone()
        } else {
            self.xftp.clone()
        })
    }
}

/// The TLS configuration when web credentials are configured, used for
/// every connection as the reference does (`defaultSupportedParamsHTTPS`):
/// TLS 1.3 only still; the key-exchange groups ring offers (X25519, P-256,
/// P-384); the SHA-256 suites only (ChaCha20-Poly1305 and AES-128-GCM),
/// because the session id (tls-unique) is 32 bytes throughout and a
/// SHA-384 suite would make it 48. Signature schemes follow the
/// certificate chosen: Ed448/Ed25519 for XFTP, whatever the web key is
/// for SNI clients.
pub fn server_config(
    identity: &ServerIdentity,
    web: &WebCredential,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = CryptoProvider {
        cipher_suites: vec![
            ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ],
        ..ring::default_provider()
    };
    let xftp = Arc::new(CertifiedKey::new(
        identity.chain().to_vec(),
        identity.signing_key().clone(),
    ));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            xftp,
            web: web.certified.clone(),
        }));
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// `Access-Control-Allow-Origin: *` and `Access-Control-Expose-Headers: *`,
/// added to every XFTP response on an SNI connection.
pub fn add_cors(headers: &mut HeaderMap) {
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("*"),
    );
}

/// The answer to an `OPTIONS` preflight on an SNI connection.
pub fn preflight<B>(body: B) -> Response<B> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// What an SNI `GET` gets: a file under the static root, or 404.
pub enum StaticReply {
    File {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
    NotFound,
}

impl StaticReply {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::File { .. } => StatusCode::OK,
            Self::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// Maps a request path to a file under `root`: percent-decoded, `.`
/// dropped, and any `..`, backslash or NUL refused (so the path can never
/// leave the root); a directory (or `/`) gives its `index.html`. Symlinks
/// are followed only if they stay inside the canonical root.
pub async fn static_file(root: &Path, method: &Method, uri_path: &str) -> StaticReply {
    if method != Method::GET {
        return StaticReply::NotFound;
    }
    let Some(rel) = relative_path(uri_path) else {
        return StaticReply::NotFound;
    };
    let Ok(root) = tokio::fs::canonicalize(root).await else {
        return StaticReply::NotFound;
    };
    let mut path = root.join(&rel);
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
    }
    let Ok(real) = tokio::fs::canonicalize(&path).await else {
        return StaticReply::NotFound;
    };
    if !real.starts_with(&root) || !tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_file()) {
        return StaticReply::NotFound;
    }
    match tokio::fs::read(&real).await {
        Ok(bytes) => StaticReply::File {
            bytes,
            content_type: content_type(&real),
        },
        Err(_) => StaticReply::NotFound,
    }
}

/// The request path as a relative path of normal components, or `None`
/// when it tries to climb or contains bytes a file name must not have.
fn relative_path(uri_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(uri_path)?;
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    let mut rel = PathBuf::new();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(rel)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        assert_eq!(relative_path("/"), Some(PathBuf::new()));
        assert_eq!(
            relative_path("/a/./b.html"),
            Some(PathBuf::from("a/b.html"))
        );
        assert_eq!(relative_path("/a%2Fb"), Some(PathBuf::from("a/b")));
        assert_eq!(relative_path("/../etc/passwd"), None);
        assert_eq!(relative_path("/a/%2e%2e/%2e%2e/x"), None);
        assert_eq!(relative_path("/a\\..\\x"), None);
        assert_eq!(relative_path("/%00"), None);
        assert_eq!(relative_path("/%zz"), None);
        assert_eq!(relative_path("/%e2"), None);
    }
}
