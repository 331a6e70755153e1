//! Private message routing: the encryption layers of `PFWD`/`RFWD`/`RRES`/`PRES`.
//!
//! ```text
//! client:  et  = cbEncrypt(cmdSecret, N, batch(T), 16226)     cmdSecret = X25519(ek, relayKey)
//!          PFWD u16 v ‖ short(EK) ‖ et                        corrId = N, entity = relay session
//! proxy:   fwd = short(N) ‖ u16 v ‖ short(EK) ‖ et            (FwdTransmission)
//!          RFWD cbEncryptNoPad(p2rSecret, M, fwd)             corrId = M
//! relay:   r2  = cbEncrypt(cmdSecret, reverse(N), batch(R), 16226)
//!          RRES cbEncryptNoPad(p2rSecret, reverse(M), short(N) ‖ r2)
//! proxy:   PRES r2                                            corrId = N
//! ```
//! Nonces are byte-reversed for responses, not incremented (the prose spec
//! differs; the code is followed).

use super::command::{read_dh_key, write_key};
use super::error::ErrorType;
use super::transmission::{encode_batch, parse_batch};
use super::version::{self, Version, VersionRange};
use crate::crypto::CryptoError;
use crate::crypto::keys::PublicKey;
use crate::crypto::secretbox::{self, CbNonce};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::vec::Vec;
use zeroize::Zeroizing;

/// `paddedProxiedTLength`: the padded inner batch (16242 once encrypted).
pub const PADDED_PROXIED_LENGTH: usize = 16226;

/// `reverseNonce`: the response nonce of a request nonce.
pub fn reverse_nonce(n: &CbNonce) -> CbNonce {
    let mut a = n.0;
    a.reverse();
    CbNonce(a)
}

/// Why a routing layer failed. `Crypto` maps to `ERR CRYPTO`, `Syntax` to
/// `CMD SYNTAX` and `Block` to `ERR BLOCK`, as in the reference relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyLayerError {
    #[error("decryption failed")]
    Crypto,
    #[error("malformed forwarded data")]
    Syntax,
    #[error("the forwarded batch must hold exactly one transmission")]
    Block,
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    #[error("does not fit: {0}")]
    Pad(CryptoError),
}

impl ProxyLayerError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            Self::Crypto | Self::Pad(_) => ErrorType::Crypto,
            Self::Syntax | Self::Encode(_) => ErrorType::Cmd(super::error::CommandError::Syntax),
            Self::Block => ErrorType::Block,
        }
    }
}

fn single(content: &[u8]) -> Result<Vec<u8>, ProxyLayerError> {
    match parse_batch(content)
        .map_err(|_| ProxyLayerError::Block)?
        .as_slice()
    {
        [t] => Ok(t.to_vec()),
        _ => Err(ProxyLayerError::Block),
    }
}

fn seal_one(secret: &[u8; 32], nonce: &CbNonce, t: &[u8]) -> Result<Vec<u8>, ProxyLayerError> {
    let b = encode_batch(&[t]).map_err(|_| ProxyLayerError::Block)?;
    secretbox::cb_encrypt(secret, nonce, &b, PADDED_PROXIED_LENGTH).map_err(ProxyLayerError::Pad)
}

fn open_one(secret: &[u8; 32], nonce: &CbNonce, c: &[u8]) -> Result<Vec<u8>, ProxyLayerError> {
    let b = Zeroizing::new(
        secretbox::cb_decrypt(secret, nonce, c).map_err(|_| ProxyLayerError::Crypto)?,
    );
    single(&b)
}

/// Client: encrypts the inner transmission for the relay (`et`).
pub fn encrypt_command(
    cmd_secret: &[u8; 32],
    n: &CbNonce,
    inner: &[u8],
) -> Result<Vec<u8>, ProxyLayerError> {
    seal_one(cmd_secret, n, inner)
}

/// Relay: the inner transmission of `et`.
pub fn decrypt_command(
    cmd_secret: &[u8; 32],
    n: &CbNonce,
    et: &[u8],
) -> Result<Vec<u8>, ProxyLayerError> {
    open_one(cmd_secret, n, et)
}

/// Relay: encrypts the inner response (`r2`) with the reversed nonce.
pub fn encrypt_response(
    cmd_secret: &[u8; 32],
    n: &CbNonce,
    response: &[u8],
) -> Result<Vec<u8>, ProxyLayerError> {
    seal_one(cmd_secret, &reverse_nonce(n), response)
}

/// Client: the inner response transmission of `PRES`.
pub fn decrypt_response(
    cmd_secret: &[u8; 32],
    n: &CbNonce,
    r2: &[u8],
) -> Result<Vec<u8>, ProxyLayerError> {
    open_one(cmd_secret, &reverse_nonce(n), r2)
}

/// `FwdTransmission`: what the proxy forwards inside `RFWD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwdTransmission {
    pub corr_id: CbNonce,
    pub version: Version,
    pub key: PublicKey,
    pub encrypted: Vec<u8>,
}

impl FwdTransmission {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(self.encrypted.len() + 80);
        w.short(&self.corr_id.0)?.u16(self.version);
        write_key(&mut w, &self.key)?;
        w.raw(&self.encrypted);
        Ok(w.into_vec())
    }
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let n = r.short()?;
        if n.len() != 24 {
            return Err(DecodeError::Invalid("nonce"));
        }
        Ok(Self {
            corr_id: CbNonce::normalize(n),
            version: r.u16()?,
            key: read_dh_key(&mut r)?,
            encrypted: r.tail().to_vec(),
        })
    }
}

/// `FwdResponse`: what the relay returns inside `RRES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwdResponse {
    pub corr_id: CbNonce,
    pub encrypted: Vec<u8>,
}

impl FwdResponse {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(self.encrypted.len() + 25);
        w.short(&self.corr_id.0)?.raw(&self.encrypted);
        Ok(w.into_vec())
    }
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let n = r.short()?;
        if n.len() != 24 {
            return Err(DecodeError::Invalid("nonce"));
        }
        Ok(Self {
            corr_id: CbNonce::normalize(n),
            encrypted: r.tail().to_vec(),
        })
    }
}

/// Proxy: the `RFWD` parameter (`cbEncryptNoPad` with the p2r secret, nonce M).
pub fn wrap_forward(
    p2r_secret: &[u8; 32],
    m: &CbNonce,
    fwd: &FwdTransmission,
) -> Result<Vec<u8>, ProxyLayerError> {
    Ok(secretbox::crypto_box(p2r_secret, m, &fwd.encode()?))
}

/// Relay: opens `RFWD` (failure ⇒ `ERR CRYPTO`, bad layout ⇒ `CMD SYNTAX`).
pub fn unwrap_forward(
    p2r_secret: &[u8; 32],
    m: &CbNonce,
    b: &[u8],
) -> Result<FwdTransmission, ProxyLayerError> {
    let plain =
        secretbox::crypto_box_open(p2r_secret, m, b).map_err(|_| ProxyLayerError::Crypto)?;
    FwdTransmission::decode(&plain).map_err(|_| ProxyLayerError::Syntax)
}

/// Relay: the `RRES` parameter (nonce reverse(M)).
pub fn wrap_response(
    p2r_secret: &[u8; 32],
    m: &CbNonce,
    resp: &FwdResponse,
) -> Result<Vec<u8>, ProxyLayerError> {
    Ok(secretbox::crypto_box(
        p2r_secret,
        &reverse_nonce(m),
        &resp.encode()?,
    ))
}

/// Proxy: opens `RRES`.
pub fn unwrap_response(
    p2r_secret: &[u8; 32],
    m: &CbNonce,
    b: &[u8],
) -> Result<FwdResponse, ProxyLayerError> {
    let plain = secretbox::crypto_box_open(p2r_secret, &reverse_nonce(m), b)
        .map_err(|_| ProxyLayerError::Crypto)?;
    FwdResponse::decode(&plain).map_err(|_| ProxyLayerError::Syntax)
}

/// Proxy: the range reported in `PKEY` for an agreed proxy–relay range,
/// capped to 8..17 (`None` ⇒ `ERR PROXY BROKER TRANSPORT VERSION`).
pub fn pkey_range(agreed: &VersionRange) -> Option<VersionRange> {
    agreed.compatible(&version::PROXIED_RANGE)
}

/// Client: the version to forward at, from the `PKEY` range.
pub fn forward_version(pkey: &VersionRange, client: &VersionRange) -> Option<Version> {
    pkey.compatible(client).map(|r| r.max())
}
