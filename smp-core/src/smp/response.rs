//! Server responses and events (`BrokerMsg`), encoded for the session's
//! version: `SOK` is `OK` below 16, `DELD` is `END` below 10, `ERR BLOCKED`
//! is shaped by [`ErrorType::for_version`], and the `IDS` tail follows the band.

use super::command::{QueueLinkData, QueueMode, read_dh_key, split_tag, write_key};
use super::error::{CommandError, ErrorType};
use super::handshake::CertChainPubKey;
use super::version::{self, NewBand, Version, VersionRange};
use crate::crypto::keys::PublicKey;
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::vec::Vec;

/// Notifier credentials the server created (`ServerNtfCreds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerNtfCreds {
    pub notifier_id: Vec<u8>,
    pub dh_key: PublicKey,
}

/// `QueueIdsKeys`: the parameters of `IDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueIds {
    pub rcv_id: Vec<u8>,
    pub snd_id: Vec<u8>,
    pub server_dh_key: PublicKey,
    /// 9–14 carry it as `sndSecure` (`T` only for messaging queues).
    pub queue_mode: Option<QueueMode>,
    pub link_id: Option<Vec<u8>>,
    pub service_id: Option<Vec<u8>>,
    pub ntf_creds: Option<ServerNtfCreds>,
}

/// A server response or event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Ids(QueueIds),
    Lnk {
        sender_id: Vec<u8>,
        data: QueueLinkData,
    },
    /// Subscribed; below v16 written as `OK`.
    Sok(Option<Vec<u8>>),
    Soks(i64),
    Msg {
        msg_id: Vec<u8>,
        /// The server-encrypted body ([`super::message`]).
        body: Vec<u8>,
    },
    Nid {
        notifier_id: Vec<u8>,
        server_ntf_dh_key: PublicKey,
    },
    Nmsg {
        nonce: [u8; 24],
        enc_meta: Vec<u8>,
    },
    Pkey {
        session_id: Vec<u8>,
        versions: VersionRange,
        key: CertChainPubKey,
    },
    Rres(Vec<u8>),
    Pres(Vec<u8>),
    End,
    Ends(i64),
    /// Deleted; below v10 written as `END`.
    Deld,
    /// `QueueInfo` JSON.
    Info(Vec<u8>),
    Ok,
    Err(ErrorType),
    Pong,
}

impl Response {
    /// The tag actually written at `v`.
    pub fn tag(&self, v: Version) -> &'static str {
        match self {
            Self::Ids(_) => "IDS",
            Self::Lnk { .. } => "LNK",
            Self::Sok(_) if version::has_sok(v) => "SOK",
            Self::Sok(_) | Self::Ok => "OK",
            Self::Soks(_) => "SOKS",
            Self::Msg { .. } => "MSG",
            Self::Nid { .. } => "NID",
            Self::Nmsg { .. } => "NMSG",
            Self::Pkey { .. } => "PKEY",
            Self::Rres(_) => "RRES",
            Self::Pres(_) => "PRES",
            Self::End => "END",
            Self::Ends(_) => "ENDS",
            Self::Deld if version::has_deleted_event(v) => "DELD",
            Self::Deld => "END",
            Self::Info(_) => "INFO",
            Self::Err(_) => "ERR",
            Self::Pong => "PONG",
        }
    }

    pub fn encode(&self, v: Version) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.raw(self.tag(v).as_bytes());
        match self {
            Self::Ok | Self::End | Self::Deld | Self::Pong => {}
            Self::Sok(s) => {
                if version::has_sok(v) {
                    w.u8(b' ')
                        .maybe(s.as_ref(), |w, s| w.short(s).map(|_| ()))?;
                }
            }
            Self::Ids(ids) => {
                w.u8(b' ').short(&ids.rcv_id)?.short(&ids.snd_id)?;
                write_key(&mut w, &ids.server_dh_key)?;
                let band = version::new_band(v);
                match band {
                    NewBand::Legacy => {}
                    NewBand::SndSecure => {
                        w.bool(ids.queue_mode == Some(QueueMode::Messaging));
                    }
                    _ => {
                        w.maybe(ids.queue_mode, |w, m| {
                            w.u8(m.byte());
                            Ok(())
                        })?;
                        w.maybe(ids.link_id.as_ref(), |w, l| w.short(l).map(|_| ()))?;
                        if band != NewBand::ShortLinks {
                            w.maybe(ids.service_id.as_ref(), |w, s| w.short(s).map(|_| ()))?;
                        }
                        if band == NewBand::NtfCreds {
                            w.maybe(ids.ntf_creds.as_ref(), |w, c| {
                                w.short(&c.notifier_id)?;
                                write_key(w, &c.dh_key)
                            })?;
                        }
                    }
                }
            }
            Self::Lnk { sender_id, data } => {
                w.u8(b' ').short(sender_id)?;
                data.write(&mut w)?;
            }
            Self::Soks(n) | Self::Ends(n) => {
                w.u8(b' ').i64(*n);
            }
            Self::Msg { msg_id, body } => {
                w.u8(b' ').short(msg_id)?.raw(body);
            }
            Self::Nid {
                notifier_id,
                server_ntf_dh_key,
            } => {
                w.u8(b' ').short(notifier_id)?;
                write_key(&mut w, server_ntf_dh_key)?;
            }
            Self::Nmsg { nonce, enc_meta } => {
                w.u8(b' ').raw(nonce).short(enc_meta)?;
            }
            Self::Pkey {
                session_id,
                versions,
                key,
            } => {
                w.u8(b' ').short(session_id)?;
                versions.write(&mut w);
                key.write(&mut w)?;
            }
            Self::Rres(t) | Self::Pres(t) | Self::Info(t) => {
                w.u8(b' ').raw(t);
            }
            Self::Err(e) => {
                w.u8(b' ');
                e.for_version(v).write(&mut w)?;
            }
        }
        Ok(w.into_vec())
    }

    /// Parses a response as a client at version `v` does.
    pub fn decode(b: &[u8], v: Version) -> Result<Self, ErrorType> {
        let (tag, params) = split_tag(b);
        let syntax = |_| ErrorType::Cmd(CommandError::Syntax);
        match tag {
            b"OK" | b"END" | b"DELD" | b"PONG" if !params.is_empty() => {
                Err(ErrorType::Cmd(CommandError::Syntax))
            }
            b"OK" => Ok(Self::Ok),
            b"END" => Ok(Self::End),
            b"DELD" => Ok(Self::Deld),
            b"PONG" => Ok(Self::Pong),
            b"IDS" | b"LNK" | b"SOK" | b"SOKS" | b"MSG" | b"NID" | b"NMSG" | b"PKEY" | b"RRES"
            | b"PRES" | b"ENDS" | b"INFO" | b"ERR" => {
                Self::decode_params(tag, params, v).map_err(syntax)
            }
            _ => Err(ErrorType::Cmd(CommandError::Unknown)),
        }
    }

    fn decode_params(tag: &[u8], params: &[u8], v: Version) -> Result<Self, DecodeError> {
        let mut r = Reader::new(params);
        r.space()?;
        let resp = match tag {
            b"IDS" => {
                let rcv_id = r.short()?.to_vec();
                let snd_id = r.short()?.to_vec();
                let server_dh_key = read_dh_key(&mut r)?;
                let mut ids = QueueIds {
                    rcv_id,
                    snd_id,
                    server_dh_key,
                    queue_mode: None,
                    link_id: None,
                    service_id: None,
                    ntf_creds: None,
                };
                let band = version::new_band(v);
                match band {
                    NewBand::Legacy => {}
                    NewBand::SndSecure => {
                        ids.queue_mode = Some(if r.bool()? {
                            QueueMode::Messaging
                        } else {
                            QueueMode::Contact
                        });
                    }
                    _ => {
                        ids.queue_mode = r.maybe(QueueMode::read)?;
                        ids.link_id = r.maybe(|r| r.short().map(<[u8]>::to_vec))?;
                        if band != NewBand::ShortLinks {
                            ids.service_id = r.maybe(|r| r.short().map(<[u8]>::to_vec))?;
                        }
                        if band == NewBand::NtfCreds {
                            ids.ntf_creds = r.maybe(|r| {
                                Ok(ServerNtfCreds {
                                    notifier_id: r.short()?.to_vec(),
                                    dh_key: read_dh_key(r)?,
                                })
                            })?;
                        }
                    }
                }
                Self::Ids(ids)
            }
            b"LNK" => Self::Lnk {
                sender_id: r.short()?.to_vec(),
                data: QueueLinkData::read(&mut r)?,
            },
            b"SOK" => Self::Sok(r.maybe(|r| r.short().map(<[u8]>::to_vec))?),
            b"SOKS" => Self::Soks(r.i64()?),
            b"ENDS" => Self::Ends(r.i64()?),
            b"MSG" => Self::Msg {
                msg_id: r.short()?.to_vec(),
                body: r.tail().to_vec(),
            },
            b"NID" => Self::Nid {
                notifier_id: r.short()?.to_vec(),
                server_ntf_dh_key: read_dh_key(&mut r)?,
            },
            b"NMSG" => Self::Nmsg {
                nonce: r.array()?,
                enc_meta: r.short()?.to_vec(),
            },
            b"PKEY" => Self::Pkey {
                session_id: r.short()?.to_vec(),
                versions: super::handshake::read_range(&mut r)?,
                key: CertChainPubKey::read(&mut r)?,
            },
            b"RRES" => Self::Rres(r.tail().to_vec()),
            b"PRES" => Self::Pres(r.tail().to_vec()),
            b"INFO" => Self::Info(r.tail().to_vec()),
            b"ERR" => Self::Err(ErrorType::decode(r.tail())?),
            _ => return Err(DecodeError::Invalid("tag")),
        };
        r.end()?;
        Ok(resp)
    }

    /// The client's `checkCredentials`: which responses carry an entity ID.
    pub fn check_credentials(&self, entity_id: &[u8]) -> Result<(), ErrorType> {
        match self {
            Self::Err(_) | Self::Ids(_) => Ok(()),
            Self::Pong | Self::Pkey { .. } | Self::Rres(_) => {
                if entity_id.is_empty() {
                    Ok(())
                } else {
                    Err(ErrorType::Cmd(CommandError::HasAuth))
                }
            }
            _ => {
                if entity_id.is_empty() {
                    Err(ErrorType::Cmd(CommandError::NoEntity))
                } else {
                    Ok(())
                }
            }
        }
    }
}
