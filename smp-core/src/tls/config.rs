//! rustls configurations matching the reference's TLS parameters (TLS 1.3
//! part): X25519, Ed448/Ed25519 only, no SNI, no resumption, no client certs.
//! rustls has no X448, so a reference client (X448 first) gets one HRR.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, ring};
use rustls::server::NoServerSessionStorage;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ServerConfig, SupportedCipherSuite};

use super::TlsError;
use super::identity::ServerIdentity;
use super::verifier::{KeyHash, PinnedServerVerifier};

/// TLS 1.3 suites we speak; all use SHA-256, so the session id is 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// The only suite the reference offers and the default for our client.
    Chacha20Poly1305Sha256,
    Aes128GcmSha256,
}

impl Suite {
    fn rustls(self) -> SupportedCipherSuite {
        match self {
            Self::Chacha20Poly1305Sha256 => ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            Self::Aes128GcmSha256 => ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        }
    }
}

/// Suites a server accepts (client preference decides).
pub const SERVER_SUITES: &[Suite] = &[Suite::Chacha20Poly1305Sha256, Suite::Aes128GcmSha256];
/// Suites our client offers, as the reference client.
pub const CLIENT_SUITES: &[Suite] = &[Suite::Chacha20Poly1305Sha256];

fn provider(suites: &[Suite]) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: suites.iter().map(|s| s.rustls()).collect(),
        kx_groups: vec![ring::kx_group::X25519],
        ..ring::default_provider()
    })
}

/// Server config serving `identity`; `alpn` is the server's protocol list
/// (e.g. `["smp/1", "h2", "http/1.1"]`). A client offering ALPN with nothing
/// in common is refused, as hs-tls does.
pub fn server_config(identity: &ServerIdentity, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    server_config_with_suites(identity, alpn, SERVER_SUITES)
}

/// As [`server_config`] with a chosen suite list (interop testing).
pub fn server_config_with_suites(
    identity: &ServerIdentity,
    alpn: &[&[u8]],
    suites: &[Suite],
) -> Result<ServerConfig, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider(suites))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::unwrap_or_clone(
            identity.certified_key(),
        ))));
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// Client config pinned to `key_hash`, offering one ALPN protocol
/// (`xftp/1` or `smp/1`) and the reference's suite.
pub fn client_config(key_hash: KeyHash, alpn: &[u8]) -> Result<ClientConfig, TlsError> {
    client_config_with_suites(key_hash, alpn, CLIENT_SUITES)
}

/// As [`client_config`] with a chosen suite list (interop testing).
pub fn client_config_with_suites(
    key_hash: KeyHash,
    alpn: &[u8],
    suites: &[Suite],
) -> Result<ClientConfig, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(provider(suites))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(key_hash)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg.enable_sni = false;
    cfg.resumption = Resumption::disabled();
    Ok(cfg)
}
