//! Client-side server check as the reference does it: no system roots, the
//! server is identified by the SHA-256 of its identity (CA) certificate taken
//! from the server address, and the chain's last certificate is the only
//! trust anchor. Host names are not checked: SimpleX leaves carry only a CN.

use alloc::sync::Arc;
use alloc::vec::Vec;

#[cfg(feature = "std")]
use rustls::OtherError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of the server's identity certificate DER (the `keyHash` of an address).
pub type KeyHash = [u8; 32];

/// Reasons the pinning step rejects a chain; carried inside the rustls error
/// so the connection shell can turn them into [`super::TlsError`] variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("server identity does not match the pinned key hash")]
    IdentityMismatch,
    #[error("server sent {0} certificates, expected 2 to 4")]
    ChainLength(usize),
}

/// Pins the server identity and validates the chain against it.
#[derive(Debug, Clone)]
pub struct PinnedServerVerifier {
    key_hash: KeyHash,
    algorithms: WebPkiSupportedAlgorithms,
    /// The last pin failure: without std a rustls error cannot carry it.
    rejected: Arc<spin::Mutex<Option<PinError>>>,
}

impl PinnedServerVerifier {
    /// With ring's Ed25519 and our Ed448 (the std shell).
    #[cfg(feature = "std")]
    pub fn new(key_hash: KeyHash) -> Self {
        Self::with_algorithms(key_hash, super::ed448::SUPPORTED_ALGORITHMS)
    }

    /// With the signature algorithms of a chosen provider.
    pub fn with_algorithms(key_hash: KeyHash, algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self {
            key_hash,
            algorithms,
            rejected: Arc::default(),
        }
    }

    /// Why the chain was refused, if it was the pinning step that refused it.
    pub fn rejection(&self) -> Option<PinError> {
        self.rejected.lock().clone()
    }

    fn reject(&self, e: PinError) -> rustls::Error {
        *self.rejected.lock() = Some(e.clone());
        #[cfg(feature = "std")]
        let e = CertificateError::Other(OtherError(Arc::new(e)));
        #[cfg(not(feature = "std"))]
        let e = CertificateError::ApplicationVerificationFailure;
        rustls::Error::InvalidCertificate(e)
    }
}

/// SHA-256 of a DER certificate, as used for server fingerprints.
pub fn cert_fingerprint(der: &[u8]) -> KeyHash {
    Sha256::digest(der).into()
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let n = intermediates.len() + 1;
        // Reference `chainIdCaCerts`: [leaf, id], [leaf, id, ca], [leaf, id, _, ca].
        let (Some(id_cert), Some(ca_cert)) = (intermediates.first(), intermediates.last()) else {
            return Err(self.reject(PinError::ChainLength(n)));
        };
        if n > 4 {
            return Err(self.reject(PinError::ChainLength(n)));
        }
        if !bool::from(cert_fingerprint(id_cert).ct_eq(&self.key_hash)) {
            return Err(self.reject(PinError::IdentityMismatch));
        }
        let anchor = webpki::anchor_from_trusted_cert(ca_cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let path_certs = &intermediates[..intermediates.len() - 1];
        ee.verify_for_usage(
            self.algorithms.all,
            &[anchor],
            path_certs,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(webpki_error)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Configs are TLS 1.3 only; tls-unique is derived for 1.3 only.
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn webpki_error(e: webpki::Error) -> rustls::Error {
    let ce = match e {
        webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        webpki::Error::CertExpired { .. } | webpki::Error::InvalidCertValidity => {
            CertificateError::Expired
        }
        webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
        webpki::Error::BadDer | webpki::Error::BadDerTime => CertificateError::BadEncoding,
        #[cfg(feature = "std")]
        other => CertificateError::Other(OtherError(Arc::new(other))),
        #[cfg(not(feature = "std"))]
        _ => CertificateError::BadEncoding,
    };
    rustls::Error::InvalidCertificate(ce)
}
