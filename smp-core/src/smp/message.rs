//! The message encryption layers and their sizes.
//!
//! ```text
//! server → recipient (MSG): encBody = cbEncrypt(rcvDhSecret, msgId, rcvMsgBody, 16106)
//!   rcvMsgBody = Int64 ts ‖ 'T'|'F' ‖ ' ' ‖ body  |  "QUOTA " ‖ Int64 ts
//! end-to-end (inside SEND): ClientMsgEnvelope = PubHeader ‖ nonce:24 ‖ Tail(box)
//!   PubHeader = u16 clientVersion ‖ Maybe short(X25519 key)
//!   box = cbEncrypt(e2eSecret, nonce, PrivHeader ‖ body, 16000 | 15904 with key)
//!   PrivHeader = 'K' short(sender auth key) | '_'
//! NMSG metadata: cbEncrypt(rcvNtfDhSecret, nonce, short(msgId) ‖ Int64 ts, 128)
//! ```

use super::command::{read_auth_key, read_dh_key, write_key};
use crate::crypto::CryptoError;
use crate::crypto::keys::PublicKey;
use crate::crypto::secretbox::{self, CbNonce, TAG_SIZE};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::vec::Vec;

/// `MaxMessageLen`: the longest body this layer carries (v6–7 SEND limit).
pub const MAX_MESSAGE_LENGTH: usize = 16088;
/// `MaxRcvMessageLen`: a body plus its timestamp and flags.
pub const MAX_RCV_MESSAGE_LENGTH: usize = 16104;
/// Padded length of the MSG plaintext.
pub const RCV_PADDED_LENGTH: usize = MAX_RCV_MESSAGE_LENGTH + 2;
/// Size of every MSG encrypted body.
pub const ENC_RCV_BODY_LENGTH: usize = RCV_PADDED_LENGTH + TAG_SIZE;
/// `e2eEncMessageLength`.
pub const E2E_MESSAGE_LENGTH: usize = 16000;
/// `e2eEncConfirmationLength` (the envelope also carries the sender's key).
pub const E2E_CONFIRMATION_LENGTH: usize = 15904;
/// Padded length of NMSG metadata.
pub const NTF_META_PADDED_LENGTH: usize = 128;

/// Why a message layer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    #[error("message body of {0} bytes is too long")]
    TooLong(usize),
}

/// What the recipient finds inside a MSG (`RcvMsgBody`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcvMsgBody {
    Message {
        /// Server receive time, seconds.
        ts: i64,
        notification: bool,
        body: Vec<u8>,
    },
    /// The queue was full; the sender should wait for `QCONT`.
    Quota { ts: i64 },
}

impl RcvMsgBody {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Self::Message {
                ts,
                notification,
                body,
            } => {
                w.i64(*ts).bool(*notification).u8(b' ').raw(body);
            }
            Self::Quota { ts } => {
                w.raw(b"QUOTA ").i64(*ts);
            }
        }
        w.into_vec()
    }
    /// `clientRcvMsgBodyP`: reserved flag bytes up to the space are skipped.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if let Some(rest) = b.strip_prefix(b"QUOTA ") {
            let mut r = Reader::new(rest);
            let ts = r.i64()?;
            r.end()?;
            return Ok(Self::Quota { ts });
        }
        let mut r = Reader::new(b);
        let ts = r.i64()?;
        let notification = r.bool()?;
        while r.peek().is_some_and(|c| c != b' ') {
            r.u8()?;
        }
        r.space()?;
        Ok(Self::Message {
            ts,
            notification,
            body: r.tail().to_vec(),
        })
    }
}

/// `encryptMsg`: the 16122-byte MSG body, nonce = the 24-byte message ID.
pub fn encrypt_rcv_msg(
    rcv_dh_secret: &[u8; 32],
    msg_id: &[u8],
    body: &RcvMsgBody,
) -> Result<Vec<u8>, MessageError> {
    if let RcvMsgBody::Message { body, .. } = body
        && body.len() > MAX_MESSAGE_LENGTH
    {
        return Err(MessageError::TooLong(body.len()));
    }
    Ok(secretbox::cb_encrypt(
        rcv_dh_secret,
        &CbNonce::normalize(msg_id),
        &body.encode(),
        RCV_PADDED_LENGTH,
    )?)
}

/// The recipient's side of [`encrypt_rcv_msg`].
pub fn decrypt_rcv_msg(
    rcv_dh_secret: &[u8; 32],
    msg_id: &[u8],
    enc_body: &[u8],
) -> Result<RcvMsgBody, MessageError> {
    let plain = zeroize::Zeroizing::new(secretbox::cb_decrypt(
        rcv_dh_secret,
        &CbNonce::normalize(msg_id),
        enc_body,
    )?);
    Ok(RcvMsgBody::decode(&plain)?)
}

/// `PubHeader`: the client version and, in confirmations, the sender's e2e key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubHeader {
    pub client_version: u16,
    pub e2e_key: Option<PublicKey>,
}

impl PubHeader {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u16(self.client_version)
            .maybe(self.e2e_key.as_ref(), write_key)?;
        Ok(())
    }
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            client_version: r.u16()?,
            e2e_key: r.maybe(read_dh_key)?,
        })
    }
    /// The padded plaintext length the envelope uses.
    pub fn padded_length(&self) -> usize {
        if self.e2e_key.is_some() {
            E2E_CONFIRMATION_LENGTH
        } else {
            E2E_MESSAGE_LENGTH
        }
    }
}

/// `PrivHeader`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivHeader {
    /// Legacy: asks the recipient to secure the queue with this key (`KEY`).
    Confirmation(PublicKey),
    Empty,
}

/// `ClientMessage`: the plaintext of the e2e layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    pub header: PrivHeader,
    pub body: Vec<u8>,
}

impl ClientMessage {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(self.body.len() + 50);
        match &self.header {
            PrivHeader::Confirmation(k) => {
                w.u8(b'K');
                write_key(&mut w, k)?;
            }
            PrivHeader::Empty => {
                w.u8(b'_');
            }
        }
        w.raw(&self.body);
        Ok(w.into_vec())
    }
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let header = match r.u8()? {
            b'K' => PrivHeader::Confirmation(read_auth_key(&mut r)?),
            b'_' => PrivHeader::Empty,
            _ => return Err(DecodeError::Invalid("private header")),
        };
        Ok(Self {
            header,
            body: r.tail().to_vec(),
        })
    }
}

/// `ClientMsgEnvelope`: what a sender puts in the SEND body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMsgEnvelope {
    pub header: PubHeader,
    pub nonce: CbNonce,
    pub cipher: Vec<u8>,
}

impl ClientMsgEnvelope {
    /// `agentCbEncrypt` with a given nonce.
    pub fn seal(
        e2e_secret: &[u8; 32],
        header: PubHeader,
        nonce: CbNonce,
        message: &ClientMessage,
    ) -> Result<Self, MessageError> {
        let plain = zeroize::Zeroizing::new(message.encode()?);
        let cipher = secretbox::cb_encrypt(e2e_secret, &nonce, &plain, header.padded_length())?;
        Ok(Self {
            header,
            nonce,
            cipher,
        })
    }
    pub fn open(&self, e2e_secret: &[u8; 32]) -> Result<ClientMessage, MessageError> {
        let plain = zeroize::Zeroizing::new(secretbox::cb_decrypt(
            e2e_secret,
            &self.nonce,
            &self.cipher,
        )?);
        Ok(ClientMessage::decode(&plain)?)
    }
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(self.cipher.len() + 80);
        self.header.write(&mut w)?;
        w.raw(&self.nonce.0).raw(&self.cipher);
        Ok(w.into_vec())
    }
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        Ok(Self {
            header: PubHeader::read(&mut r)?,
            nonce: CbNonce(r.array()?),
            cipher: r.tail().to_vec(),
        })
    }
}

/// NMSG metadata (`NMsgMeta`): the message ID and timestamp for the notifier.
pub fn encrypt_ntf_meta(
    rcv_ntf_dh_secret: &[u8; 32],
    nonce: &CbNonce,
    msg_id: &[u8],
    ts: i64,
) -> Result<Vec<u8>, MessageError> {
    let mut w = Writer::new();
    w.short(msg_id)?.i64(ts);
    Ok(secretbox::cb_encrypt(
        rcv_ntf_dh_secret,
        nonce,
        &w.into_vec(),
        NTF_META_PADDED_LENGTH,
    )?)
}

/// Opens NMSG metadata; receivers allow trailing bytes.
pub fn decrypt_ntf_meta(
    rcv_ntf_dh_secret: &[u8; 32],
    nonce: &CbNonce,
    enc_meta: &[u8],
) -> Result<(Vec<u8>, i64), MessageError> {
    let plain = secretbox::cb_decrypt(rcv_ntf_dh_secret, nonce, enc_meta)?;
    let mut r = Reader::new(&plain);
    let msg_id = r.short()?.to_vec();
    let ts = r.i64()?;
    Ok((msg_id, ts))
}
