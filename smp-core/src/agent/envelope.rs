//! The two envelopes around every agent message (agent.md §3.5, §3.6, §8):
//! the agent envelope (`AgentMsgEnvelope`) and, around it, the per-queue
//! e2e envelope (`ClientMsgEnvelope`, whose types live in
//! [`crate::smp::message`] and are re-exported here).
//!
//! ```text
//! ClientMsgEnvelope = PubHeader ‖ nonce:24 ‖ Tail(cbEncrypt(e2eSecret, nonce, ClientMessage, L))
//!   ClientMessage   = ('_' | 'K' ‖ short(sender auth key DER)) ‖ Tail(AgentMsgEnvelope)
//!   L = 15904 when PubHeader carries a key, else 16000
//! AgentMsgEnvelope  = u16 agentVersion ‖ 'C' ‖ Maybe E2eParams ‖ Tail(encConnInfo)
//!                   | u16 agentVersion ‖ 'M' ‖ Tail(encAgentMessage)
//!                   | u16 agentVersion ‖ 'I' ‖ Large(connReq text) ‖ Tail(connInfo)
//!                   | u16 agentVersion ‖ 'R' ‖ E2eParams ‖ Tail(info)
//! ```
//! `encConnInfo` and `encAgentMessage` are opaque `EncRatchetMessage` bytes
//! here; the ratchet produces and opens them.

use alloc::string::String;
use alloc::vec::Vec;

use super::version::PQDR_AGENT_VERSION;
use super::x3dh::E2eParams;
use crate::crypto::CryptoError;
use crate::crypto::keys::{PrivateKey, PublicKey};
use crate::crypto::secretbox::{CbNonce, NONCE_SIZE, TAG_SIZE};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
pub use crate::smp::message::{
    ClientMessage, ClientMsgEnvelope, E2E_CONFIRMATION_LENGTH, E2E_MESSAGE_LENGTH, MessageError,
    PrivHeader, PubHeader,
};

/// Padded conn-info plaintext inside the ratchet (`e2eEncConnInfoLength`).
pub const E2E_ENC_CONN_INFO_LENGTH: usize = 14832;
/// The same with PQ on: smaller, to leave room for the KEM in header and params.
pub const E2E_ENC_CONN_INFO_LENGTH_PQ: usize = 11106;
/// Padded agent-message plaintext inside the ratchet (`e2eEncAgentMsgLength`).
pub const E2E_ENC_AGENT_MSG_LENGTH: usize = 15840;
/// The same with PQ on (the PQ header is 2222 bytes longer).
pub const E2E_ENC_AGENT_MSG_LENGTH_PQ: usize = 13618;

/// DER length of an X25519 public key, as it sits in a `PubHeader`.
const X25519_DER_LENGTH: usize = 44;
/// `PubHeader` with the sender's key: version, `'1'`, length byte, DER.
pub const PUB_HEADER_WITH_KEY_LENGTH: usize = 2 + 1 + 1 + X25519_DER_LENGTH;
/// `PubHeader` without a key: version and `'0'`.
pub const PUB_HEADER_LENGTH: usize = 2 + 1;
/// Every confirmation or invitation `ClientMsgEnvelope` (15992): all are
/// padded to one size so a relay cannot tell them apart by length.
pub const CONFIRMATION_ENVELOPE_LENGTH: usize =
    PUB_HEADER_WITH_KEY_LENGTH + NONCE_SIZE + TAG_SIZE + E2E_CONFIRMATION_LENGTH;
/// Every later `ClientMsgEnvelope` (16043).
pub const MESSAGE_ENVELOPE_LENGTH: usize =
    PUB_HEADER_LENGTH + NONCE_SIZE + TAG_SIZE + E2E_MESSAGE_LENGTH;
/// Bytes an `AgentMsgEnvelope` 'M' adds to its `EncRatchetMessage`.
pub const AGENT_MSG_ENVELOPE_OVERHEAD: usize = 3;

/// The conn-info padding for a connection (`e2eEncConnInfoLength`): the PQ
/// size only when PQ is on and the agreed agent version knows it.
pub const fn conn_info_padded_length(agent_version: u16, pq_support: bool) -> usize {
    if pq_support && agent_version >= PQDR_AGENT_VERSION {
        E2E_ENC_CONN_INFO_LENGTH_PQ
    } else {
        E2E_ENC_CONN_INFO_LENGTH
    }
}

/// The agent-message padding for a connection (`e2eEncAgentMsgLength`).
pub const fn agent_msg_padded_length(agent_version: u16, pq_support: bool) -> usize {
    if pq_support && agent_version >= PQDR_AGENT_VERSION {
        E2E_ENC_AGENT_MSG_LENGTH_PQ
    } else {
        E2E_ENC_AGENT_MSG_LENGTH
    }
}

/// Why an envelope could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode envelope: {0}")]
    Encode(#[from] EncodeError),
    #[error("unknown agent envelope tag {0:#04x}")]
    UnknownTag(u8),
    #[error("connection link is not UTF-8 text")]
    ConnReqText,
    #[error("per-queue e2e layer: {0}")]
    Message(#[from] MessageError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

/// The agent envelope: what the per-queue e2e layer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMsgEnvelope {
    /// The first message on a queue (`AgentConfirmation`): the joiner's
    /// ratchet parameters (none from the initiator) and its encrypted
    /// `AgentConnInfo(Reply)`. `agent_version` is the agreed one.
    Confirmation {
        agent_version: u16,
        e2e_params: Option<E2eParams>,
        enc_conn_info: Vec<u8>,
    },
    /// Every later message: an encrypted `AgentMessage`. `agent_version` is
    /// the sender's maximum.
    Message {
        agent_version: u16,
        enc_agent_message: Vec<u8>,
    },
    /// A contact request (`AgentInvitation`), protected by the per-queue
    /// layer only: the requester's own invitation link (text form) and its
    /// conn info. `agent_version` is the agreed one.
    Invitation {
        agent_version: u16,
        conn_req: String,
        conn_info: Vec<u8>,
    },
    /// Starts ratchet re-synchronisation (`AgentRatchetKey`) with new
    /// parameters; `info` is the encoded `AgentRatchetInfo`. `agent_version`
    /// is the sender's maximum.
    RatchetKey {
        agent_version: u16,
        e2e_params: E2eParams,
        info: Vec<u8>,
    },
}

impl AgentMsgEnvelope {
    pub fn agent_version(&self) -> u16 {
        match self {
            Self::Confirmation { agent_version, .. }
            | Self::Message { agent_version, .. }
            | Self::Invitation { agent_version, .. }
            | Self::RatchetKey { agent_version, .. } => *agent_version,
        }
    }

    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u16(self.agent_version());
        match self {
            Self::Confirmation {
                e2e_params,
                enc_conn_info,
                ..
            } => {
                w.u8(b'C');
                w.maybe(e2e_params.as_ref(), |w, p| p.write(w))?;
                w.raw(enc_conn_info);
            }
            Self::Message {
                enc_agent_message, ..
            } => {
                w.u8(b'M').raw(enc_agent_message);
            }
            Self::Invitation {
                conn_req,
                conn_info,
                ..
            } => {
                w.u8(b'I').large(conn_req.as_bytes())?.raw(conn_info);
            }
            Self::RatchetKey {
                e2e_params, info, ..
            } => {
                w.u8(b'R');
                e2e_params.write(w)?;
                w.raw(info);
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    /// Reads a whole envelope. The invitation link is only checked to be
    /// text; parsing it is the connection-link module's job.
    pub fn decode(b: &[u8]) -> Result<Self, EnvelopeError> {
        let mut r = Reader::new(b);
        let agent_version = r.u16()?;
        let e = match r.u8()? {
            b'C' => Self::Confirmation {
                agent_version,
                e2e_params: r.maybe(E2eParams::read)?,
                enc_conn_info: r.tail().to_vec(),
            },
            b'M' => Self::Message {
                agent_version,
                enc_agent_message: r.tail().to_vec(),
            },
            b'I' => Self::Invitation {
                agent_version,
                conn_req: String::from_utf8(r.large()?.to_vec())
                    .map_err(|_| EnvelopeError::ConnReqText)?,
                conn_info: r.tail().to_vec(),
            },
            b'R' => Self::RatchetKey {
                agent_version,
                e2e_params: E2eParams::read(&mut r)?,
                info: r.tail().to_vec(),
            },
            t => return Err(EnvelopeError::UnknownTag(t)),
        };
        r.end()?;
        Ok(e)
    }
}

/// The per-queue e2e secret (`e2eDhSecret`): raw X25519 of one party's
/// private key and the other's public key.
pub fn e2e_secret(own: &PrivateKey, peer: &PublicKey) -> Result<[u8; 32], EnvelopeError> {
    Ok(*own.dh(peer)?)
}

/// `agentCbEncrypt`: puts an agent envelope into a `ClientMsgEnvelope`.
/// The padding follows from whether `header` carries a key.
pub fn seal(
    e2e_secret: &[u8; 32],
    header: PubHeader,
    nonce: CbNonce,
    priv_header: PrivHeader,
    envelope: &AgentMsgEnvelope,
) -> Result<ClientMsgEnvelope, EnvelopeError> {
    let message = ClientMessage {
        header: priv_header,
        body: envelope.encode()?,
    };
    Ok(ClientMsgEnvelope::seal(
        e2e_secret, header, nonce, &message,
    )?)
}

/// `agentCbEncryptOnce`: a message to a queue whose secret nobody stores
/// (a contact request): the sender's key is a fresh one-off X25519 pair,
/// sent in the header, and the private header is empty.
pub fn seal_once(
    one_off: &PrivateKey,
    recipient_dh_key: &PublicKey,
    client_version: u16,
    nonce: CbNonce,
    envelope: &AgentMsgEnvelope,
) -> Result<ClientMsgEnvelope, EnvelopeError> {
    let secret = zeroize::Zeroizing::new(e2e_secret(one_off, recipient_dh_key)?);
    let header = PubHeader {
        client_version,
        e2e_key: Some(one_off.public_key()),
    };
    seal(&secret, header, nonce, PrivHeader::Empty, envelope)
}

/// `agentCbDecrypt`: opens a `ClientMsgEnvelope` and reads the agent
/// envelope inside.
pub fn open(
    e2e_secret: &[u8; 32],
    envelope: &ClientMsgEnvelope,
) -> Result<(PrivHeader, AgentMsgEnvelope), EnvelopeError> {
    let message = envelope.open(e2e_secret)?;
    let agent = AgentMsgEnvelope::decode(&message.body)?;
    Ok((message.header, agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_add_up() {
        assert_eq!(CONFIRMATION_ENVELOPE_LENGTH, 15992);
        assert_eq!(MESSAGE_ENVELOPE_LENGTH, 16043);
        assert_eq!(conn_info_padded_length(7, false), 14832);
        assert_eq!(conn_info_padded_length(7, true), 11106);
        assert_eq!(conn_info_padded_length(4, true), 14832);
        assert_eq!(agent_msg_padded_length(5, true), 13618);
        assert_eq!(agent_msg_padded_length(7, false), 15840);
    }

    #[test]
    fn refuses_malformed_envelopes() {
        assert_eq!(
            AgentMsgEnvelope::decode(b"\x00\x07X"),
            Err(EnvelopeError::UnknownTag(b'X'))
        );
        assert!(matches!(
            AgentMsgEnvelope::decode(b"\x00"),
            Err(EnvelopeError::Decode(DecodeError::UnexpectedEnd))
        ));
        // 'C' with a bad Maybe tag.
        assert!(matches!(
            AgentMsgEnvelope::decode(b"\x00\x07C2"),
            Err(EnvelopeError::Decode(DecodeError::BadMaybe(b'2')))
        ));
        // 'I' whose Large length runs past the end.
        assert!(AgentMsgEnvelope::decode(b"\x00\x07I\x00\x10abc").is_err());
        // 'I' whose link is not text.
        assert_eq!(
            AgentMsgEnvelope::decode(b"\x00\x07I\x00\x01\xffinfo"),
            Err(EnvelopeError::ConnReqText)
        );
        // 'R' needs its parameters.
        assert!(AgentMsgEnvelope::decode(b"\x00\x07R").is_err());
    }
}
