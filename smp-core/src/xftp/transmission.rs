//! Transmissions and the 16384-byte blocks that carry them.
//!
//! ```text
//! block        = pad(0x01 ‖ large(transmission), 16384)
//! transmission = short(auth) ‖ authorized
//! authorized   = short(sessionId) ‖ short(corrId) ‖ short(entityId) ‖ command
//! ```
//! XFTP sends the session ID on the wire and signs it (`implySessId = False`);
//! the signed bytes are exactly `authorized`.

use super::command::FileCommand;
use super::error::XftpErrorType;
use super::response::FileResponse;
use crate::crypto::CryptoError;
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey, Signature};
use crate::crypto::secretbox::{self, AUTHENTICATOR_SIZE, CbNonce};
use crate::encoding::pad::{self, BLOCK_SIZE, PadError};
use crate::encoding::{EncodeError, Reader, Writer};
use alloc::string::String;
use alloc::vec::Vec;
use subtle::ConstantTimeEq;

/// Why a client could not build a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransmissionEncodeError {
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    #[error("the transmission does not fit a block: {0}")]
    Pad(#[from] PadError),
    #[error("cannot authorize: {0}")]
    Crypto(#[from] CryptoError),
}

/// The authorization of a transmission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransmissionAuth {
    Signature(Signature),
    /// crypto_box authenticator: the file key is X25519, so the client
    /// proves it by DH with the server's session key.
    Authenticator([u8; AUTHENTICATOR_SIZE]),
}

impl TransmissionAuth {
    /// `decodeTAuthBytes`: empty is none, 80 bytes an authenticator, 64 or
    /// 114 a signature; any other length is rejected.
    pub fn decode(b: &[u8]) -> Result<Option<Self>, XftpErrorType> {
        if b.is_empty() {
            return Ok(None);
        }
        if let Ok(a) = <[u8; AUTHENTICATOR_SIZE]>::try_from(b) {
            return Ok(Some(Self::Authenticator(a)));
        }
        Signature::from_bytes(b)
            .map(|s| Some(Self::Signature(s)))
            .map_err(|_| XftpErrorType::Block)
    }
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Signature(s) => s.as_bytes(),
            Self::Authenticator(a) => a,
        }
    }
}

/// The key a client authorizes a command with.
#[derive(Debug, Clone, Copy)]
pub enum AuthKey<'a> {
    /// An Ed25519 or Ed448 private key: the transmission is signed.
    Sign(&'a PrivateKey),
    /// An X25519 private key and the server's session key from the handshake.
    Authenticate {
        own: &'a PrivateKey,
        server_session_key: &'a PublicKey,
    },
}

/// `short(sessionId) ‖ short(corrId) ‖ short(entityId) ‖ command`: the bytes
/// that are signed.
pub fn authorized_bytes(
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    command: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::with_capacity(command.len() + 3 + session_id.len() + entity_id.len());
    w.short(session_id)?
        .short(corr_id)?
        .short(entity_id)?
        .raw(command);
    Ok(w.into_vec())
}

/// Authorizes `authorized`. The authenticator's nonce is `cbNonce(corrId)`.
pub fn authorize(
    key: AuthKey<'_>,
    authorized: &[u8],
    corr_id: &[u8],
) -> Result<TransmissionAuth, CryptoError> {
    match key {
        AuthKey::Sign(k) => k.sign(authorized).map(TransmissionAuth::Signature),
        AuthKey::Authenticate {
            own,
            server_session_key,
        } => secretbox::cb_authenticate(
            server_session_key,
            own,
            &CbNonce::normalize(corr_id),
            authorized,
        )
        .map(TransmissionAuth::Authenticator),
    }
}

/// `short(auth) ‖ authorized`.
pub fn encode_transmission(
    auth: Option<&TransmissionAuth>,
    authorized: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::with_capacity(authorized.len() + 116);
    w.short(auth.map_or(&[][..], |a| a.as_bytes()))?;
    w.raw(authorized);
    Ok(w.into_vec())
}

/// A batch of one: `0x01 ‖ large(transmission)`.
pub fn encode_batch(transmission: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::with_capacity(transmission.len() + 3);
    w.u8(1).large(transmission)?;
    Ok(w.into_vec())
}

/// Pads a batch to a [`BLOCK_SIZE`] block.
pub fn encode_block(batch: &[u8]) -> Result<Vec<u8>, PadError> {
    pad::pad(batch, BLOCK_SIZE)
}

/// A complete client request block (for FPUT the chunk follows it).
pub fn encode_command_block(
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    command: &FileCommand,
    key: Option<AuthKey<'_>>,
) -> Result<Vec<u8>, TransmissionEncodeError> {
    let authorized = authorized_bytes(session_id, corr_id, entity_id, &command.encode()?)?;
    let auth = key
        .map(|k| authorize(k, &authorized, corr_id))
        .transpose()?;
    let t = encode_transmission(auth.as_ref(), &authorized)?;
    Ok(encode_block(&encode_batch(&t)?)?)
}

/// A complete server response block: empty auth, echoing corrId and entityId.
pub fn encode_response_block(
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    response: &FileResponse,
    version: u16,
) -> Result<Vec<u8>, TransmissionEncodeError> {
    let authorized = authorized_bytes(session_id, corr_id, entity_id, &response.encode(version)?)?;
    let t = encode_transmission(None, &authorized)?;
    Ok(encode_block(&encode_batch(&t)?)?)
}

/// One transmission taken out of a block, before its command is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTransmission<'a> {
    /// The raw auth field (possibly empty).
    pub auth_bytes: &'a [u8],
    /// The signed bytes.
    pub authorized: &'a [u8],
    pub session_id: &'a [u8],
    pub corr_id: &'a [u8],
    pub entity_id: &'a [u8],
    pub command: &'a [u8],
}

/// Unpads a block and takes out its single transmission (`tParse` with a
/// batch of exactly one).
pub fn parse_block(block: &[u8]) -> Option<RawTransmission<'_>> {
    let content = pad::unpad(block).ok()?;
    let mut r = Reader::new(content);
    if r.u8().ok()? != 1 {
        return None;
    }
    let t = r.large().ok()?;
    r.end().ok()?;
    let mut r = Reader::new(t);
    let auth_bytes = r.short().ok()?;
    let authorized = r.tail();
    let mut r = Reader::new(authorized);
    let session_id = r.short().ok()?;
    let corr_id = r.short().ok()?;
    let entity_id = r.short().ok()?;
    let command = r.tail();
    Some(RawTransmission {
        auth_bytes,
        authorized,
        session_id,
        corr_id,
        entity_id,
        command,
    })
}

/// A failed request, with what the error response must echo (the reference
/// keeps the corrId it could read, and the entityId only for command errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub corr_id: Vec<u8>,
    pub entity_id: Vec<u8>,
    pub error: XftpErrorType,
}

/// A request the server decoded: the command still has to be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTransmission<'a> {
    pub raw: RawTransmission<'a>,
    pub auth: Option<TransmissionAuth>,
    pub command: FileCommand,
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Server side: decodes a request block as the reference does (block size,
/// padding, batch → `BLOCK`; session → `SESSION`; auth length → `BLOCK`;
/// command → `CMD UNKNOWN`/`SYNTAX`; then `checkCredentials`).
pub fn decode_request_block<'a>(
    block: &'a [u8],
    session_id: &[u8],
) -> Result<ServerTransmission<'a>, RequestError> {
    let fail = |corr_id: &[u8], entity_id: &[u8], error| RequestError {
        corr_id: corr_id.to_vec(),
        entity_id: entity_id.to_vec(),
        error,
    };
    if block.len() != BLOCK_SIZE {
        return Err(fail(b"", b"", XftpErrorType::Block));
    }
    let raw = parse_block(block).ok_or_else(|| fail(b"", b"", XftpErrorType::Block))?;
    if !ct_eq(raw.session_id, session_id) {
        return Err(fail(raw.corr_id, b"", XftpErrorType::Session));
    }
    let auth = TransmissionAuth::decode(raw.auth_bytes).map_err(|e| fail(raw.corr_id, b"", e))?;
    let command = FileCommand::decode(raw.command)
        .and_then(|c| {
            c.check_credentials(auth.is_some(), raw.entity_id)
                .map(|_| c)
        })
        .map_err(|e| fail(raw.corr_id, raw.entity_id, e))?;
    Ok(ServerTransmission { raw, auth, command })
}

/// Keys whose only purpose is to make a failed lookup cost the same time as
/// a real verification (values of the reference's `dummyKey*`).
const DUMMY_ED25519: [u8; 32] = [
    0xd7, 0x7f, 0x4e, 0xaa, 0xce, 0x10, 0x82, 0x9a, 0x9b, 0x02, 0x60, 0x74, 0xa3, 0xba, 0xd9, 0x7f,
    0xa4, 0xf5, 0xf6, 0xbc, 0xa5, 0xec, 0x4e, 0xb9, 0x93, 0x80, 0x18, 0x7b, 0x49, 0x04, 0xdd, 0x0b,
];
const DUMMY_ED448: [u8; 57] = [
    0xea, 0x26, 0xd0, 0x73, 0xd5, 0xe9, 0x91, 0x22, 0xed, 0xc2, 0xb7, 0xfb, 0x3c, 0xbb, 0xe9, 0xf3,
    0x5a, 0x96, 0xfd, 0xeb, 0x62, 0xba, 0x67, 0x24, 0x54, 0x52, 0x26, 0x08, 0xc4, 0x5d, 0x7e, 0xd7,
    0x06, 0xfd, 0x7a, 0x29, 0x6c, 0xe4, 0x9a, 0xab, 0xda, 0xb2, 0x2e, 0x1a, 0xe0, 0x25, 0x62, 0x8e,
    0x2f, 0x23, 0x6b, 0x40, 0xf3, 0x55, 0xbe, 0x93, 0x00,
];
const DUMMY_X25519: [u8; 32] = [
    0xe0, 0x91, 0x92, 0x31, 0x88, 0x6d, 0xd7, 0xc1, 0xf8, 0x99, 0xab, 0x3f, 0x8c, 0x77, 0x81, 0xc1,
    0xf7, 0x0c, 0xee, 0x32, 0xf0, 0x35, 0x82, 0x4d, 0x38, 0x08, 0x62, 0xdb, 0xf8, 0x38, 0x45, 0x78,
];

fn dummy_key(alg: KeyAlgorithm) -> Option<PublicKey> {
    let raw: &[u8] = match alg {
        KeyAlgorithm::Ed25519 => &DUMMY_ED25519,
        KeyAlgorithm::Ed448 => &DUMMY_ED448,
        KeyAlgorithm::X25519 => &DUMMY_X25519,
        KeyAlgorithm::X448 => return None,
    };
    PublicKey::from_raw(alg, raw).ok()
}

fn signature_algorithm(s: &Signature) -> KeyAlgorithm {
    match s {
        Signature::Ed25519(_) => KeyAlgorithm::Ed25519,
        Signature::Ed448(_) => KeyAlgorithm::Ed448,
    }
}

fn verify_authenticator(
    key: &PublicKey,
    a: &[u8; AUTHENTICATOR_SIZE],
    authorized: &[u8],
    corr_id: &[u8],
    server_session_key: Option<&PrivateKey>,
) -> bool {
    match server_session_key {
        Some(pk) => secretbox::cb_verify(key, pk, &CbNonce::normalize(corr_id), a, authorized),
        None => false,
    }
}

/// `verifyCmdAuthorization`: checks `auth` with the entity's key. A
/// signature of the wrong algorithm, or an authenticator for a non-X25519
/// key, still runs a verification with a dummy key so timing does not tell
/// which case failed. `server_session_key` is the per-session X25519 key
/// (absent on the handshake-less v1 path, where authenticators fail).
pub fn verify_auth(
    auth: Option<&TransmissionAuth>,
    authorized: &[u8],
    corr_id: &[u8],
    key: &PublicKey,
    server_session_key: Option<&PrivateKey>,
) -> bool {
    match auth {
        None => false,
        Some(TransmissionAuth::Signature(s)) => {
            if key.algorithm() == signature_algorithm(s) {
                key.verify(authorized, s)
            } else {
                let _ = dummy_verify(auth, authorized, corr_id, server_session_key);
                false
            }
        }
        Some(TransmissionAuth::Authenticator(a)) => {
            if key.algorithm() == KeyAlgorithm::X25519 {
                verify_authenticator(key, a, authorized, corr_id, server_session_key)
            } else {
                let _ = dummy_verify(auth, authorized, corr_id, server_session_key);
                false
            }
        }
    }
}

/// `dummyVerifyCmd`: spends the time of a real verification when there is
/// no key (unknown entity). Always `false`.
pub fn dummy_verify(
    auth: Option<&TransmissionAuth>,
    authorized: &[u8],
    corr_id: &[u8],
    server_session_key: Option<&PrivateKey>,
) -> bool {
    let r = match auth {
        None => false,
        Some(TransmissionAuth::Signature(s)) => dummy_key(signature_algorithm(s))
            .map(|k| k.verify(authorized, s))
            .unwrap_or(false),
        Some(TransmissionAuth::Authenticator(a)) => dummy_key(KeyAlgorithm::X25519)
            .map(|k| verify_authenticator(&k, a, authorized, corr_id, server_session_key))
            .unwrap_or(false),
    };
    // The result is used so the work is not optimised away, but never trusted.
    let _ = core::hint::black_box(r);
    false
}

/// A response transmission a client decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTransmission {
    pub corr_id: Vec<u8>,
    pub entity_id: Vec<u8>,
    /// The response, or why it was rejected (`tDecodeClient`).
    pub response: Result<FileResponse, XftpErrorType>,
}

/// Why a response block held no transmission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseBlockError {
    /// A bare padded error word instead of a transmission (handshake-phase
    /// errors). `error` is set when the word is a known error.
    #[error("server error {word}")]
    Bare {
        word: String,
        error: Option<XftpErrorType>,
    },
    #[error("malformed response block")]
    Block,
    #[error("response session ID does not match")]
    Session { corr_id: Vec<u8> },
}

impl ResponseBlockError {
    /// The error a client reports for it.
    pub fn error_type(&self) -> XftpErrorType {
        match self {
            Self::Bare { error, .. } => error.unwrap_or(XftpErrorType::Block),
            Self::Block => XftpErrorType::Block,
            Self::Session { .. } => XftpErrorType::Session,
        }
    }
}

/// Recognises a bare error word as xftp-web does: the unpadded content is
/// shorter than 20 bytes and only `A–Z` and `_`.
pub fn bare_error_word(block: &[u8]) -> Option<&str> {
    let content = pad::unpad(block).ok()?;
    let ok = !content.is_empty()
        && content.len() < 20
        && content.iter().all(|&c| c.is_ascii_uppercase() || c == b'_');
    // Only ASCII passed the check above.
    ok.then(|| core::str::from_utf8(content).ok()).flatten()
}

/// Client side: decodes a response block (any padded size; the server
/// always sends 16384 bytes) and checks its session ID.
pub fn decode_response_block(
    block: &[u8],
    session_id: &[u8],
) -> Result<ResponseTransmission, ResponseBlockError> {
    if let Some(word) = bare_error_word(block) {
        return Err(ResponseBlockError::Bare {
            word: String::from(word),
            error: XftpErrorType::decode(word.as_bytes()),
        });
    }
    let raw = parse_block(block).ok_or(ResponseBlockError::Block)?;
    if !ct_eq(raw.session_id, session_id) {
        return Err(ResponseBlockError::Session {
            corr_id: raw.corr_id.to_vec(),
        });
    }
    let response = FileResponse::decode(raw.command)
        .and_then(|r| r.check_credentials(raw.entity_id).map(|_| r));
    Ok(ResponseTransmission {
        corr_id: raw.corr_id.to_vec(),
        entity_id: raw.entity_id.to_vec(),
        response,
    })
}
