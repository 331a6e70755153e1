//! Transmissions, batches and blocks.
//!
//! ```text
//! transmission = short(auth) [Maybe short(serviceSig)] [short(sessionId)]
//!                short(corrId) short(entityId) command
//!   serviceSig field: only v ≥ 16 with a non-empty auth
//!   sessionId:       only v = 6 (both directions); from v7 it is only signed
//! signed bytes = short(sessionId) ‖ short(corrId) ‖ short(entityId) ‖ command
//! batch        = count:u8 (1..255) ‖ { large(transmission) } × count
//! block        = pad(batch, 16384)   (or block-encrypted from v11)
//! ```

use super::command::Command;
use super::error::ErrorType;
use super::response::Response;
use super::version::{self, Version};
use crate::crypto::CryptoError;
use crate::crypto::keys::{PrivateKey, Signature};
use crate::encoding::pad::{self, BLOCK_SIZE, PadError};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::vec::Vec;
use subtle::ConstantTimeEq;

pub use crate::xftp::transmission::{
    AuthKey, TransmissionAuth, authorize, dummy_verify, verify_auth,
};

/// Bytes of a block not available to the batch: pad length, count byte and
/// the block-encryption tag (`batchTransmissions_` reserves them always).
pub const BATCH_OVERHEAD: usize = 19;
/// The most a reference sender puts into one batch item.
pub const MAX_TRANSMISSION_IN_BATCH: usize = BLOCK_SIZE - BATCH_OVERHEAD - 2;
/// Block content capacity without block encryption.
pub const PLAIN_CONTENT_SIZE: usize = BLOCK_SIZE - 2;

/// Why a transmission or batch could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransmissionError {
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    #[error("padding: {0}")]
    Pad(#[from] PadError),
    #[error("cannot authorize: {0}")]
    Crypto(#[from] CryptoError),
    /// `TELargeMsg`: one transmission does not fit a block.
    #[error("transmission of {0} bytes does not fit a block")]
    TooLarge(usize),
    #[error("a batch needs 1..=255 transmissions")]
    BatchCount,
}

/// `encodeTransmissionForAuth`: the bytes signed or authenticated.
pub fn signed_bytes(
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    command: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    crate::xftp::transmission::authorized_bytes(session_id, corr_id, entity_id, command)
}

/// What a service key signs together with the entity key (v16 services).
pub fn service_entity_signed_bytes(service_cert_hash: &[u8], signed: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(service_cert_hash.len() + signed.len());
    v.extend_from_slice(service_cert_hash);
    v.extend_from_slice(signed);
    v
}

/// One transmission split into its fields, before the command is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTransmission<'a> {
    pub auth: &'a [u8],
    /// `Some(None)` is the `'0'` field, `None` means no field at all.
    pub service_sig: Option<Option<&'a [u8]>>,
    /// The session ID as sent on the wire (v6 only).
    pub session_id: Option<&'a [u8]>,
    pub corr_id: &'a [u8],
    pub entity_id: &'a [u8],
    pub command: &'a [u8],
}

impl<'a> RawTransmission<'a> {
    /// `transmissionP` at version `v`.
    pub fn parse(t: &'a [u8], v: Version) -> Result<Self, DecodeError> {
        let mut r = Reader::new(t);
        let auth = r.short()?;
        let service_sig = if version::has_service_sig(v) && !auth.is_empty() {
            Some(r.maybe(|r| r.short())?)
        } else {
            None
        };
        let session_id = if version::implies_session_id(v) {
            None
        } else {
            Some(r.short()?)
        };
        let corr_id = r.short()?;
        let entity_id = r.short()?;
        Ok(Self {
            auth,
            service_sig,
            session_id,
            corr_id,
            entity_id,
            command: r.tail(),
        })
    }

    /// The signed bytes for a session (rebuilt from its session ID; at v6
    /// identical to the wire bytes when the session IDs match).
    pub fn signed_bytes(&self, session_id: &[u8]) -> Result<Vec<u8>, EncodeError> {
        signed_bytes(session_id, self.corr_id, self.entity_id, self.command)
    }
}

/// `tEncode`: the transmission bytes for version `v`.
pub fn encode_transmission(
    v: Version,
    session_id: &[u8],
    auth: Option<&TransmissionAuth>,
    service_sig: Option<&Signature>,
    corr_id: &[u8],
    entity_id: &[u8],
    command: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::with_capacity(command.len() + 256);
    let auth = auth.map_or(&[][..], |a| a.as_bytes());
    w.short(auth)?;
    if version::has_service_sig(v) && !auth.is_empty() {
        w.maybe(service_sig, |w, s| w.short(s.as_bytes()).map(|_| ()))?;
    }
    if !version::implies_session_id(v) {
        w.short(session_id)?;
    }
    w.short(corr_id)?.short(entity_id)?.raw(command);
    Ok(w.into_vec())
}

/// The keys a client authorizes one command with.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuth<'a> {
    pub key: AuthKey<'a>,
    /// In a service session: the service key and its certificate hash.
    pub service: Option<(&'a PrivateKey, &'a [u8])>,
}

/// A client command transmission, authorized as `mkTransmission_` does.
pub fn encode_command_transmission(
    v: Version,
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    command: &Command,
    auth: Option<ClientAuth<'_>>,
) -> Result<Vec<u8>, TransmissionError> {
    let cmd = command.encode(v)?;
    let signed = signed_bytes(session_id, corr_id, entity_id, &cmd)?;
    let (a, s) = match auth {
        None => (None, None),
        Some(ClientAuth { key, service: None }) => (Some(authorize(key, &signed, corr_id)?), None),
        Some(ClientAuth {
            key,
            service: Some((service_key, cert_hash)),
        }) => {
            let entity_signed = service_entity_signed_bytes(cert_hash, &signed);
            let a = authorize(key, &entity_signed, corr_id)?;
            (Some(a), Some(service_key.sign(&signed)?))
        }
    };
    Ok(encode_transmission(
        v,
        session_id,
        a.as_ref(),
        s.as_ref(),
        corr_id,
        entity_id,
        &cmd,
    )?)
}

/// A server response transmission: no authorization, never a serviceSig.
pub fn encode_response_transmission(
    v: Version,
    session_id: &[u8],
    corr_id: &[u8],
    entity_id: &[u8],
    response: &Response,
) -> Result<Vec<u8>, EncodeError> {
    encode_transmission(
        v,
        session_id,
        None,
        None,
        corr_id,
        entity_id,
        &response.encode(v)?,
    )
}

/// `count ‖ large(t)…` for 1..=255 transmissions.
pub fn encode_batch<T: AsRef<[u8]>>(items: &[T]) -> Result<Vec<u8>, TransmissionError> {
    let n = u8::try_from(items.len()).map_err(|_| TransmissionError::BatchCount)?;
    if n == 0 {
        return Err(TransmissionError::BatchCount);
    }
    let mut w =
        Writer::with_capacity(1 + items.iter().map(|t| 2 + t.as_ref().len()).sum::<usize>());
    w.u8(n);
    for t in items {
        w.large(t.as_ref())?;
    }
    Ok(w.into_vec())
}

/// `batchTransmissions_`: packs transmissions in order into as few block
/// contents as fit (19 bytes of each block reserved, at most 255 items).
pub fn batch_transmissions<T: AsRef<[u8]>>(items: &[T]) -> Result<Vec<Vec<u8>>, TransmissionError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, t) in items.iter().enumerate() {
        let len = t.as_ref().len();
        if len > MAX_TRANSMISSION_IN_BATCH {
            return Err(TransmissionError::TooLarge(len));
        }
        if i > start && (size + 2 + len > BLOCK_SIZE - BATCH_OVERHEAD || i - start == 255) {
            out.push(encode_batch(&items[start..i])?);
            start = i;
            size = 0;
        }
        size += 2 + len;
    }
    if start < items.len() {
        out.push(encode_batch(&items[start..])?);
    }
    Ok(out)
}

/// `tParse`: exactly `count` items (count ≥ 1) and nothing after them;
/// anything else is one `ERR BLOCK`.
pub fn parse_batch(content: &[u8]) -> Result<Vec<&[u8]>, ErrorType> {
    let mut r = Reader::new(content);
    let n = r.u8().map_err(|_| ErrorType::Block)?;
    if n == 0 {
        return Err(ErrorType::Block);
    }
    let mut v = Vec::with_capacity(n as usize);
    for _ in 0..n {
        v.push(r.large().map_err(|_| ErrorType::Block)?);
    }
    r.end().map_err(|_| ErrorType::Block)?;
    Ok(v)
}

/// An unencrypted block: `pad(content, 16384)`.
pub fn encode_block(content: &[u8]) -> Result<Vec<u8>, PadError> {
    pad::pad(content, BLOCK_SIZE)
}

/// The content of an unencrypted block (must be exactly 16384 bytes).
pub fn decode_block(block: &[u8]) -> Result<&[u8], ErrorType> {
    if block.len() != BLOCK_SIZE {
        return Err(ErrorType::Block);
    }
    pad::unpad(block).map_err(|_| ErrorType::Block)
}

/// A failed command, with what the `ERR` must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub corr_id: Vec<u8>,
    pub entity_id: Vec<u8>,
    pub error: ErrorType,
}

/// A command the server decoded; authorization still has to be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTransmission<'a> {
    pub raw: RawTransmission<'a>,
    pub auth: Option<TransmissionAuth>,
    pub service_sig: Option<Signature>,
    /// The bytes the authorization covers.
    pub signed: Vec<u8>,
    pub command: Command,
}

/// `tDecodeServer` for one transmission of a batch: unparsable ⇒ `BLOCK`
/// with empty corrId; bad auth length ⇒ `BLOCK`, v6 session mismatch ⇒
/// `SESSION` (corrId, empty entity); command and credential errors keep both.
pub fn decode_command_transmission<'a>(
    t: &'a [u8],
    v: Version,
    session_id: &[u8],
) -> Result<ServerTransmission<'a>, RequestError> {
    let fail = |c: &[u8], e: &[u8], error| RequestError {
        corr_id: c.to_vec(),
        entity_id: e.to_vec(),
        error,
    };
    let raw = RawTransmission::parse(t, v).map_err(|_| fail(b"", b"", ErrorType::Block))?;
    let auth =
        TransmissionAuth::decode(raw.auth).map_err(|_| fail(raw.corr_id, b"", ErrorType::Block))?;
    let service_sig = match raw.service_sig {
        Some(Some(s)) => {
            Some(Signature::from_bytes(s).map_err(|_| fail(raw.corr_id, b"", ErrorType::Block))?)
        }
        _ => None,
    };
    if let Some(s) = raw.session_id
        && !bool::from(s.ct_eq(session_id))
    {
        return Err(fail(raw.corr_id, b"", ErrorType::Session));
    }
    let command = Command::decode(raw.command, v)
        .and_then(|c| {
            c.check_credentials(auth.is_some(), raw.entity_id)
                .map(|_| c)
        })
        .map_err(|e| fail(raw.corr_id, raw.entity_id, e))?;
    let signed = raw
        .signed_bytes(session_id)
        .map_err(|_| fail(raw.corr_id, raw.entity_id, ErrorType::Block))?;
    Ok(ServerTransmission {
        raw,
        auth,
        service_sig,
        signed,
        command,
    })
}

/// A response the client decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTransmission {
    pub corr_id: Vec<u8>,
    pub entity_id: Vec<u8>,
    /// The response, or why it was rejected (`tDecodeClient`).
    pub response: Result<Response, ErrorType>,
}

impl ResponseTransmission {
    /// Events carry an empty corrId; replies echo the command's.
    pub fn is_event(&self) -> bool {
        self.corr_id.is_empty()
    }
}

/// `tDecodeClient` for one transmission: a v6 session mismatch is `SESSION`.
pub fn decode_response_transmission(
    t: &[u8],
    v: Version,
    session_id: &[u8],
) -> Result<ResponseTransmission, ErrorType> {
    let raw = RawTransmission::parse(t, v).map_err(|_| ErrorType::Block)?;
    let response = match raw.session_id {
        Some(s) if !bool::from(s.ct_eq(session_id)) => Err(ErrorType::Session),
        _ => Response::decode(raw.command, v)
            .and_then(|r| r.check_credentials(raw.entity_id).map(|_| r)),
    };
    Ok(ResponseTransmission {
        corr_id: raw.corr_id.to_vec(),
        entity_id: raw.entity_id.to_vec(),
        response,
    })
}
