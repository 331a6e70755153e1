//! TLS for SMP and XFTP, compatible with the reference (simplexmq over
//! hs-tls): TLS 1.3, Ed448/Ed25519 certificates, identity pinning by CA hash,
//! and the session id = tls-unique (client Finished) that both protocols put
//! into every handshake and signature.

pub mod ed448;
pub mod engine;
pub mod finished;
pub mod rustcrypto;
pub mod verifier;

#[cfg(feature = "std")]
pub mod config;
#[cfg(feature = "std")]
pub mod identity;
#[cfg(feature = "std")]
mod stream;
#[cfg(feature = "std")]
pub mod unique;

#[cfg(feature = "std")]
pub use config::{
    Suite, client_config, client_config_with_suites, server_config, server_config_with_suites,
};
#[cfg(feature = "std")]
pub use identity::{
    GeneratedIdentity, IdentityError, KeyAlgorithm, ServerIdentity, load_fingerprint,
};
#[cfg(feature = "std")]
pub use stream::*;

pub use finished::SessionIdError;
pub use verifier::{KeyHash, PinError, PinnedServerVerifier, cert_fingerprint};

/// ALPN of XFTP (the application protocol is still HTTP/2).
pub const ALPN_XFTP: &[u8] = b"xftp/1";
/// ALPN of SMP.
pub const ALPN_SMP: &[u8] = b"smp/1";
/// Server ALPN list of the reference XFTP server.
pub const XFTP_SERVER_ALPN: &[&[u8]] = &[b"xftp/1", b"h2", b"http/1.1"];
/// Server ALPN list of the reference SMP server.
pub const SMP_SERVER_ALPN: &[&[u8]] = &[b"smp/1", b"h2", b"http/1.1"];

/// The 32-byte tls-unique session id (SHA-256 suites only).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 32]);

impl core::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "SessionId({})",
            crate::encoding::string::b64_encode(&self.0)
        )
    }
}

impl AsRef<[u8]> for SessionId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
