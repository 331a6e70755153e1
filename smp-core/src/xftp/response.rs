//! XFTP responses (server → client), `FileResponse` in simplexmq.

use super::command::{read_dh_key, split_tag, syntax};
use super::error::{CommandError, XftpErrorType};
use super::handshake::BLOCKED_FILES_VERSION;
use crate::crypto::keys::PublicKey;
use crate::crypto::secretbox::CbNonce;
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::vec::Vec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileResponse {
    /// FNEW succeeded: the sender ID and one recipient ID per key, in order.
    SndIds {
        sender_id: Vec<u8>,
        recipient_ids: Vec<Vec<u8>>,
    },
    /// FADD succeeded: the new recipient IDs, in order.
    RcvIds {
        recipient_ids: Vec<Vec<u8>>,
    },
    /// FGET accepted: the server's fresh X25519 key and the nonce that key
    /// the encrypted chunk following the block.
    File {
        srv_dh_key: PublicKey,
        nonce: CbNonce,
    },
    Ok,
    Err(XftpErrorType),
    Pong,
}

fn write_ids(w: &mut Writer, ids: &[Vec<u8>]) -> Result<(), EncodeError> {
    w.non_empty(ids, |w, id| w.short(id).map(|_| ()))?;
    Ok(())
}

fn read_ids(r: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, DecodeError> {
    r.non_empty(|r| r.short().map(<[u8]>::to_vec))
}

impl FileResponse {
    pub fn tag(&self) -> &'static str {
        match self {
            Self::SndIds { .. } => "SIDS",
            Self::RcvIds { .. } => "RIDS",
            Self::File { .. } => "FILE",
            Self::Ok => "OK",
            Self::Err(_) => "ERR",
            Self::Pong => "PONG",
        }
    }

    /// Encodes for a session of `version`: clients older than
    /// [`BLOCKED_FILES_VERSION`] do not know `BLOCKED` and get `AUTH`.
    pub fn encode(&self, version: u16) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.raw(self.tag().as_bytes());
        match self {
            Self::SndIds {
                sender_id,
                recipient_ids,
            } => {
                w.raw(b" ");
                w.short(sender_id)?;
                write_ids(&mut w, recipient_ids)?;
            }
            Self::RcvIds { recipient_ids } => {
                w.raw(b" ");
                write_ids(&mut w, recipient_ids)?;
            }
            Self::File { srv_dh_key, nonce } => {
                w.raw(b" ");
                w.short(&srv_dh_key.to_der())?;
                w.raw(&nonce.0);
            }
            Self::Err(e) => {
                w.raw(b" ");
                let e = match e {
                    XftpErrorType::Blocked(_) if version < BLOCKED_FILES_VERSION => {
                        XftpErrorType::Auth
                    }
                    e => *e,
                };
                w.raw(&e.encode());
            }
            Self::Ok | Self::Pong => {}
        }
        Ok(w.into_vec())
    }

    /// Parses response bytes; errors are what the reference client reports.
    pub fn decode(b: &[u8]) -> Result<Self, XftpErrorType> {
        let (tag, mut r) = split_tag(b);
        let resp = match tag {
            b"SIDS" => {
                r.space().map_err(syntax)?;
                let sender_id = r.short().map_err(syntax)?.to_vec();
                let recipient_ids = read_ids(&mut r).map_err(syntax)?;
                Self::SndIds {
                    sender_id,
                    recipient_ids,
                }
            }
            b"RIDS" => {
                r.space().map_err(syntax)?;
                Self::RcvIds {
                    recipient_ids: read_ids(&mut r).map_err(syntax)?,
                }
            }
            b"FILE" => {
                r.space().map_err(syntax)?;
                let srv_dh_key = read_dh_key(&mut r).map_err(syntax)?;
                let nonce = CbNonce(r.array().map_err(syntax)?);
                Self::File { srv_dh_key, nonce }
            }
            b"OK" => Self::Ok,
            b"PONG" => Self::Pong,
            b"ERR" => {
                r.space().map_err(syntax)?;
                let e = XftpErrorType::decode(r.tail())
                    .ok_or(XftpErrorType::Cmd(CommandError::Syntax))?;
                Self::Err(e)
            }
            _ => return Err(XftpErrorType::Cmd(CommandError::Unknown)),
        };
        r.end().map_err(syntax)?;
        Ok(resp)
    }

    /// `checkCredentials` for responses, applied by clients.
    pub fn check_credentials(&self, entity_id: &[u8]) -> Result<(), XftpErrorType> {
        match self {
            Self::Err(_) => Ok(()),
            Self::SndIds { .. } | Self::Pong if !entity_id.is_empty() => {
                Err(XftpErrorType::Cmd(CommandError::HasAuth))
            }
            Self::SndIds { .. } | Self::Pong => Ok(()),
            _ if entity_id.is_empty() => Err(XftpErrorType::Cmd(CommandError::NoEntity)),
            _ => Ok(()),
        }
    }
}
