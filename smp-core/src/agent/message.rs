//! What travels inside the double ratchet (agent.md §5): the connection
//! info of a confirmation, the re-sync marker, and agent messages with their
//! id and hash chain, plus the integrity rule a receiver applies to them.
//!
//! ```text
//! AgentMessage = 'I' ‖ Tail(connInfo)                              ; AgentConnInfo
//!              | 'D' ‖ NonEmpty SMPQueueInfo ‖ Tail(connInfo)      ; AgentConnInfoReply
//!              | 'R' ‖ Tail(info)                                  ; AgentRatchetInfo
//!              | 'M' ‖ Int64 sndMsgId ‖ short(prevMsgHash) ‖ AMessage
//! AMessage = 'H' | 'M' ‖ Tail(body) | 'V' ‖ NonEmpty(Int64 ‖ short(hash) ‖ Large(info))
//!          | "QC" ‖ sndQAddr | "QA" ‖ NonEmpty(SMPQueueUri ‖ Maybe sndQAddr)
//!          | "QK" ‖ NonEmpty(SMPQueueInfo ‖ short(auth key DER))
//!          | "QU" ‖ NonEmpty(sndQAddr ‖ Bool) | "QT" ‖ NonEmpty sndQAddr | 'E' ‖ Int64
//! ```

use alloc::vec::Vec;

use super::queue_info::{SmpQueueInfo, SndQAddr};
use crate::crypto::digest::sha256;
use crate::crypto::keys::PublicKey;
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::smp::command::{read_auth_key, write_key};
use crate::smp::queue_uri::{QueueUri, QueueUriError};

/// Why a ratchet plaintext could not be read as an agent message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentMessageError {
    #[error("malformed agent message: {0}")]
    Decode(#[from] DecodeError),
    #[error("queue address: {0}")]
    Queue(#[from] QueueUriError),
    #[error("unknown agent message tag {0:#04x}")]
    UnknownTag(u8),
    #[error("unknown AMessage tag {0:?}")]
    UnknownAMessageTag(Vec<u8>),
    #[error("the sender auth key must be Ed25519, Ed448 or X25519")]
    AuthKey,
}

/// A delivery receipt for one received `A_MSG` (`AMessageReceipt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AMessageReceipt {
    /// The *sender's* `sndMsgId` of the received message.
    pub agent_msg_id: i64,
    /// SHA-256 of the received `AgentMessage` plaintext, so the sender can
    /// tell that the peer got exactly what it sent.
    pub msg_hash: Vec<u8>,
    /// Opaque to the agent; the chat sends it empty.
    pub rcpt_info: Vec<u8>,
}

impl AMessageReceipt {
    /// The receipt for a received agent message plaintext.
    pub fn for_received(snd_msg_id: i64, agent_message: &[u8], rcpt_info: Vec<u8>) -> Self {
        Self {
            agent_msg_id: snd_msg_id,
            msg_hash: sha256(agent_message).to_vec(),
            rcpt_info,
        }
    }

    fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.i64(self.agent_msg_id)
            .short(&self.msg_hash)?
            .large(&self.rcpt_info)?;
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            agent_msg_id: r.i64()?,
            msg_hash: r.short()?.to_vec(),
            rcpt_info: r.large()?.to_vec(),
        })
    }
}

/// The messages agents exchange once a connection exists (`AMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AMessage {
    /// Legacy handshake: "my queue is secured" (not sent in the SKEY flow).
    Hello,
    /// The application's message (chat JSON).
    AMsg(Vec<u8>),
    /// Delivery receipts (`A_RCVD`).
    ARcvd(Vec<AMessageReceipt>),
    /// "Continue sending to this queue" after a QUOTA (`A_QCONT`).
    AQcont(SndQAddr),
    /// Rotation step 1: the recipient's new queue, replacing the given one.
    Qadd(Vec<(QueueUri, Option<SndQAddr>)>),
    /// Rotation step 2: the sender's queue info (with its new e2e key) and auth key.
    Qkey(Vec<(SmpQueueInfo, PublicKey)>),
    /// Rotation step 3: the new queues are ready; `true` marks the primary one.
    Quse(Vec<(SndQAddr, bool)>),
    /// Rotation step 4: sent to the new queue to finish the switch.
    Qtest(Vec<SndQAddr>),
    /// Ratchet re-sync done; the last `sndMsgId` decrypted before it.
    Eready(i64),
}

impl AMessage {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::Hello => {
                w.u8(b'H');
            }
            Self::AMsg(body) => {
                w.u8(b'M').raw(body);
            }
            Self::ARcvd(rs) => {
                w.u8(b'V');
                w.non_empty(rs, |w, r| r.write(w))?;
            }
            Self::AQcont(addr) => {
                w.raw(b"QC");
                addr.write(w)?;
            }
            Self::Qadd(qs) => {
                w.raw(b"QA");
                w.non_empty(qs, |w, (uri, replaced)| {
                    uri.write(w)?;
                    w.maybe(replaced.as_ref(), |w, a| a.write(w))?;
                    Ok(())
                })?;
            }
            Self::Qkey(qs) => {
                w.raw(b"QK");
                w.non_empty(qs, |w, (info, key)| {
                    info.write(w)?;
                    write_key(w, key)
                })?;
            }
            Self::Quse(qs) => {
                w.raw(b"QU");
                w.non_empty(qs, |w, (addr, primary)| {
                    addr.write(w)?;
                    w.bool(*primary);
                    Ok(())
                })?;
            }
            Self::Qtest(qs) => {
                w.raw(b"QT");
                w.non_empty(qs, |w, a| a.write(w))?;
            }
            Self::Eready(id) => {
                w.u8(b'E').i64(*id);
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    /// Reads an `AMessage` that runs to the end of the input (`A_MSG` is a
    /// tail, so nothing may follow any of them).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, AgentMessageError> {
        let m = match r.u8()? {
            b'H' => Self::Hello,
            b'M' => Self::AMsg(r.tail().to_vec()),
            b'V' => Self::ARcvd(r.non_empty(AMessageReceipt::read)?),
            b'E' => Self::Eready(r.i64()?),
            b'Q' => match r.u8()? {
                b'C' => Self::AQcont(SndQAddr::read(r)?),
                b'A' => Self::Qadd(non_empty(r, |r| {
                    let uri = QueueUri::read(r)?;
                    let replaced = match r.u8()? {
                        b'0' => None,
                        b'1' => Some(SndQAddr::read(r)?),
                        b => return Err(DecodeError::BadMaybe(b).into()),
                    };
                    Ok((uri, replaced))
                })?),
                b'K' => Self::Qkey(non_empty(r, |r| {
                    let info = SmpQueueInfo::read(r)?;
                    let key = read_auth_key(r).map_err(|_| AgentMessageError::AuthKey)?;
                    Ok((info, key))
                })?),
                b'U' => Self::Quse(non_empty(r, |r| {
                    let addr = SndQAddr::read(r)?;
                    Ok((addr, r.bool()?))
                })?),
                b'T' => Self::Qtest(non_empty(r, |r| Ok(SndQAddr::read(r)?))?),
                b => return Err(AgentMessageError::UnknownAMessageTag(alloc::vec![b'Q', b])),
            },
            b => return Err(AgentMessageError::UnknownAMessageTag(alloc::vec![b])),
        };
        Ok(m)
    }

    pub fn decode(b: &[u8]) -> Result<Self, AgentMessageError> {
        let mut r = Reader::new(b);
        let m = Self::read(&mut r)?;
        r.end()?;
        Ok(m)
    }
}

/// `NonEmpty` with an item reader whose error is richer than `DecodeError`.
fn non_empty<T>(
    r: &mut Reader<'_>,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<T, AgentMessageError>,
) -> Result<Vec<T>, AgentMessageError> {
    let n = r.u8()?;
    if n == 0 {
        return Err(DecodeError::EmptyList.into());
    }
    (0..n).map(|_| item(r)).collect()
}

/// The id and hash-chain link of an agent message (`APrivHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct APrivHeader {
    /// The sender's sequential id (the confirmation took 1).
    pub snd_msg_id: i64,
    /// SHA-256 of the previous plaintext the sender put into the ratchet.
    pub prev_msg_hash: Vec<u8>,
}

/// A decrypted ratchet plaintext (`AgentMessage` in the reference, which
/// also covers the confirmation's connection info and the re-sync marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMessage {
    /// The initiator's connection info in its confirmation (`AgentConnInfo`).
    ConnInfo(Vec<u8>),
    /// The joiner's connection info with its reply queue(s) (`AgentConnInfoReply`).
    ConnInfoReply {
        reply_queues: Vec<SmpQueueInfo>,
        conn_info: Vec<u8>,
    },
    /// Rides in `AgentRatchetKey`, outside the ratchet (`AgentRatchetInfo`).
    RatchetInfo(Vec<u8>),
    /// An agent message proper, with its place in the hash chain.
    Message {
        header: APrivHeader,
        message: AMessage,
    },
}

impl AgentMessage {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::ConnInfo(info) => {
                w.u8(b'I').raw(info);
            }
            Self::ConnInfoReply {
                reply_queues,
                conn_info,
            } => {
                w.u8(b'D');
                w.non_empty(reply_queues, |w, q| q.write(w))?;
                w.raw(conn_info);
            }
            Self::RatchetInfo(info) => {
                w.u8(b'R').raw(info);
            }
            Self::Message { header, message } => {
                w.u8(b'M')
                    .i64(header.snd_msg_id)
                    .short(&header.prev_msg_hash)?;
                message.write(w)?;
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    pub fn decode(b: &[u8]) -> Result<Self, AgentMessageError> {
        let mut r = Reader::new(b);
        let m = match r.u8()? {
            b'I' => Self::ConnInfo(r.tail().to_vec()),
            b'D' => Self::ConnInfoReply {
                reply_queues: non_empty(&mut r, |r| Ok(SmpQueueInfo::read(r)?))?,
                conn_info: r.tail().to_vec(),
            },
            b'R' => Self::RatchetInfo(r.tail().to_vec()),
            b'M' => {
                let header = APrivHeader {
                    snd_msg_id: r.i64()?,
                    prev_msg_hash: r.short()?.to_vec(),
                };
                Self::Message {
                    header,
                    message: AMessage::read(&mut r)?,
                }
            }
            b => return Err(AgentMessageError::UnknownTag(b)),
        };
        r.end()?;
        Ok(m)
    }
}

/// The sender's side of the hash chain (§5.2): every plaintext put into the
/// ratchet — confirmation, re-sync info or agent message — takes the next
/// id, and its SHA-256 becomes the next message's `prevMsgHash`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SndMsgChain {
    last_id: i64,
    last_hash: Vec<u8>,
}

impl SndMsgChain {
    /// A new connection: no id used, empty previous hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a stored state.
    pub fn from_state(last_id: i64, last_hash: Vec<u8>) -> Self {
        Self { last_id, last_hash }
    }

    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    pub fn last_hash(&self) -> &[u8] {
        &self.last_hash
    }

    /// Records a plaintext that is not an `AgentMessage` 'M' (the
    /// confirmation's conn info, `AgentRatchetInfo`); returns the id it took.
    pub fn record(&mut self, plaintext: &[u8]) -> i64 {
        self.last_id += 1;
        self.last_hash = sha256(plaintext).to_vec();
        self.last_id
    }

    /// Builds and encodes the next agent message; returns its id and the
    /// plaintext to encrypt.
    pub fn next_message(&mut self, message: AMessage) -> Result<(i64, Vec<u8>), EncodeError> {
        let id = self.last_id + 1;
        let plain = AgentMessage::Message {
            header: APrivHeader {
                snd_msg_id: id,
                prev_msg_hash: self.last_hash.clone(),
            },
            message,
        }
        .encode()?;
        self.record(&plain);
        Ok((id, plain))
    }
}

/// What the receiver concluded about a message's place in the chain
/// (`MsgIntegrity`); the message is delivered in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgIntegrity {
    Ok,
    /// An id lower than the last one received.
    BadId(i64),
    /// The same id as the last one.
    Duplicate,
    /// Ids `from..=to` never arrived.
    Skipped {
        from: i64,
        to: i64,
    },
    /// The next id, but the previous hash does not match.
    BadHash,
}

/// The receiver's side of the hash chain (§5.2, `checkMsgIntegrity`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcvMsgChain {
    last_id: i64,
    last_hash: Vec<u8>,
}

impl RcvMsgChain {
    /// Before the confirmation: id 0, empty hash.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_state(last_id: i64, last_hash: Vec<u8>) -> Self {
        Self { last_id, last_hash }
    }

    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    pub fn last_hash(&self) -> &[u8] {
        &self.last_hash
    }

    /// The confirmation was processed: its conn-info plaintext counts as
    /// the sender's message 1.
    pub fn confirmation(&mut self, conn_info_plaintext: &[u8]) {
        self.last_id = 1;
        self.last_hash = sha256(conn_info_plaintext).to_vec();
    }

    /// Classifies a received message and moves the state to it. As in the
    /// reference the state follows every received message, even one with a
    /// bad id or hash.
    pub fn check(&mut self, header: &APrivHeader, plaintext: &[u8]) -> MsgIntegrity {
        let (last, id) = (self.last_id, header.snd_msg_id);
        let next = last.checked_add(1);
        let result = if Some(id) == next && header.prev_msg_hash == self.last_hash {
            MsgIntegrity::Ok
        } else if id < last {
            MsgIntegrity::BadId(id)
        } else if id == last {
            MsgIntegrity::Duplicate
        } else if next.is_some_and(|n| id > n) {
            MsgIntegrity::Skipped {
                from: last + 1,
                to: id - 1,
            }
        } else {
            MsgIntegrity::BadHash
        };
        self.last_id = id;
        self.last_hash = sha256(plaintext).to_vec();
        result
    }

    /// Parses a ratchet plaintext on a connection and checks an agent
    /// message; other kinds of plaintext are returned unchecked (`None`)
    /// and leave the state alone, as the reference ignores them here.
    pub fn receive(
        &mut self,
        plaintext: &[u8],
    ) -> Result<(AgentMessage, Option<MsgIntegrity>), AgentMessageError> {
        let m = AgentMessage::decode(plaintext)?;
        let integrity = match &m {
            AgentMessage::Message { header, .. } => Some(self.check(header, plaintext)),
            _ => None,
        };
        Ok((m, integrity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_from_confirmation_on() {
        let conf = b"I{\"v\":\"1-18\"}";
        let mut snd = SndMsgChain::new();
        assert_eq!(snd.record(conf), 1);
        let mut rcv = RcvMsgChain::new();
        rcv.confirmation(conf);
        let (id, m2) = snd.next_message(AMessage::AMsg(b"a".to_vec())).unwrap();
        assert_eq!(id, 2);
        let (_, i) = rcv.receive(&m2).unwrap();
        assert_eq!(i, Some(MsgIntegrity::Ok));
        // Duplicate of 2.
        assert_eq!(rcv.receive(&m2).unwrap().1, Some(MsgIntegrity::Duplicate));
        let (_, m3) = snd.next_message(AMessage::Hello).unwrap();
        let (_, m4) = snd.next_message(AMessage::Eready(3)).unwrap();
        let (_, m5) = snd.next_message(AMessage::Hello).unwrap();
        // 3 lost: 4 arrives after 2.
        assert_eq!(
            rcv.receive(&m4).unwrap().1,
            Some(MsgIntegrity::Skipped { from: 3, to: 3 })
        );
        assert_eq!(rcv.last_id(), 4);
        assert_eq!(rcv.receive(&m3).unwrap().1, Some(MsgIntegrity::BadId(3)));
        // The state followed 3, so 5 now looks skipped (4 "missing").
        assert_eq!(
            rcv.receive(&m5).unwrap().1,
            Some(MsgIntegrity::Skipped { from: 4, to: 4 })
        );
        // A wrong hash at the right id.
        let mut bad = RcvMsgChain::from_state(5, alloc::vec![0; 32]);
        let (_, m6) = snd.next_message(AMessage::Hello).unwrap();
        assert_eq!(bad.receive(&m6).unwrap().1, Some(MsgIntegrity::BadHash));
        // Conn info does not move the chain.
        let before = rcv.clone();
        assert_eq!(rcv.receive(b"Iinfo").unwrap().1, None);
        assert_eq!(rcv, before);
    }

    #[test]
    fn refuses_malformed_messages() {
        for (bad, why) in [
            (&b""[..], "empty"),
            (b"X", "tag"),
            (b"M\0\0\0\0\0\0\0\x02\x00", "no AMessage"),
            (b"M\0\0\0\0\0\0\0\x02\x00Z", "AMessage tag"),
            (b"M\0\0\0\0\0\0\0\x02\x00QZ", "Q tag"),
            (b"M\0\0\0\0\0\0\0\x02\x00V\x00", "empty receipts"),
            (b"M\0\0\0\0\0\0\0\x02\x00QT\x00", "empty QTEST"),
            (b"M\0\0\0\0\0\0\0\x02\x00E\0\0", "short EREADY"),
            (b"M\0\0\0\0\0\0\0\x02\x00H!", "trailing"),
            (b"D\x00info", "no reply queue"),
        ] {
            assert!(AgentMessage::decode(bad).is_err(), "{why}");
        }
        assert_eq!(
            AgentMessage::decode(b"X"),
            Err(AgentMessageError::UnknownTag(b'X'))
        );
        assert_eq!(
            AMessage::decode(b"QZ"),
            Err(AgentMessageError::UnknownAMessageTag(b"QZ".to_vec()))
        );
        assert_eq!(
            AMessage::decode(b"QT\x00"),
            Err(AgentMessageError::Decode(DecodeError::EmptyList))
        );
    }
}
