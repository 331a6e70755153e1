//! Files offered in chat messages (agent.md §6.4): the `file` object of
//! `x.msg.new`, the XFTP description parts of `x.msg.file.descr`, and their
//! reassembly on the receiving side.
//!
//! The description text itself is the recipient YAML of `xftp.md` §4.2; it
//! is carried here as text (parsing it is `crate::file::description`).

use alloc::string::String;
use alloc::vec::Vec;

use serde_json::Value;

use super::ids::SharedMsgId;
use super::json::{
    Object, as_object, optional, put, put_opt, req_bool, req_str, req_unsigned, string_of,
};
use super::message::ChatEvent;
use super::{ChatError, FieldProblem};
use crate::encoding::string::{b64_decode, b64_encode};

/// One part of a recipient file description (`FileDescr`). Part 0 with an
/// empty text is the placeholder an XFTP offer carries before the upload
/// is done; the real text follows in parts 1.. of `x.msg.file.descr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDescr {
    pub text: String,
    pub part_no: u32,
    pub complete: bool,
}

impl FileDescr {
    /// `dummyFileDescr`: marks an offer as an XFTP file whose description
    /// comes later.
    pub fn placeholder() -> Self {
        Self {
            text: String::new(),
            part_no: 0,
            complete: false,
        }
    }

    pub fn from_json(v: &Value) -> Result<Self, ChatError> {
        let o = as_object(v, "fileDescr")?;
        Ok(Self {
            text: req_str(o, "fileDescrText")?,
            part_no: req_unsigned(o, "fileDescrPartNo")?,
            complete: req_bool(o, "fileDescrComplete")?,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut o = Object::new();
        put(&mut o, "fileDescrText", Value::String(self.text.clone()));
        put(&mut o, "fileDescrPartNo", Value::from(self.part_no));
        put(&mut o, "fileDescrComplete", Value::Bool(self.complete));
        Value::Object(o)
    }
}

/// Legacy inline transfer modes (`InlineFileMode`), still parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InlineFileMode {
    /// Sent inline once the recipient accepts.
    Offer,
    /// Sent inline without waiting.
    Sent,
}

impl InlineFileMode {
    fn text(self) -> &'static str {
        match self {
            InlineFileMode::Offer => "offer",
            InlineFileMode::Sent => "sent",
        }
    }
}

/// The `file` of `x.msg.new` (`FileInvitation`). Current apps send XFTP
/// files: `file_descr` present, no `file_conn_req`, no `file_inline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInvitation {
    pub file_name: String,
    pub file_size: u64,
    /// `fileDigest` (base64url on the wire), used by legacy transfers.
    pub file_digest: Option<Vec<u8>>,
    /// A separate SMP connection for a legacy transfer, as link text.
    pub file_conn_req: Option<String>,
    pub file_inline: Option<InlineFileMode>,
    pub file_descr: Option<FileDescr>,
}

impl FileInvitation {
    /// An XFTP offer as `xftpSndFileTransfer_` makes it: the description
    /// follows in `x.msg.file.descr` parts.
    pub fn xftp(file_name: &str, file_size: u64) -> Self {
        Self {
            file_name: String::from(file_name),
            file_size,
            file_digest: None,
            file_conn_req: None,
            file_inline: None,
            file_descr: Some(FileDescr::placeholder()),
        }
    }

    /// Whether the file travels over XFTP (rather than a legacy transfer).
    pub fn is_xftp(&self) -> bool {
        self.file_descr.is_some()
    }

    pub fn from_json(v: &Value) -> Result<Self, ChatError> {
        let o = as_object(v, "file")?;
        let file_digest = optional(o, "fileDigest")
            .map(|v| {
                b64_decode(&string_of(v, "fileDigest")?).map_err(|_| ChatError::Field {
                    field: "fileDigest",
                    problem: FieldProblem::BadBase64,
                })
            })
            .transpose()?;
        let file_inline = optional(o, "fileInline")
            .map(|v| match v.as_str() {
                Some("offer") => Ok(InlineFileMode::Offer),
                Some("sent") => Ok(InlineFileMode::Sent),
                _ => Err(ChatError::Field {
                    field: "fileInline",
                    problem: FieldProblem::BadValue,
                }),
            })
            .transpose()?;
        Ok(Self {
            file_name: req_str(o, "fileName")?,
            file_size: req_unsigned(o, "fileSize")?,
            file_digest,
            file_conn_req: optional(o, "fileConnReq")
                .map(|v| string_of(v, "fileConnReq"))
                .transpose()?,
            file_inline,
            file_descr: optional(o, "fileDescr")
                .map(FileDescr::from_json)
                .transpose()?,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut o = Object::new();
        put(&mut o, "fileName", Value::String(self.file_name.clone()));
        put(&mut o, "fileSize", Value::from(self.file_size));
        put_opt(
            &mut o,
            "fileDigest",
            self.file_digest
                .as_ref()
                .map(|d| Value::String(b64_encode(d))),
        );
        put_opt(
            &mut o,
            "fileConnReq",
            self.file_conn_req.clone().map(Value::String),
        );
        put_opt(
            &mut o,
            "fileInline",
            self.file_inline
                .map(|m| Value::String(String::from(m.text()))),
        );
        put_opt(
            &mut o,
            "fileDescr",
            self.file_descr.as_ref().map(FileDescr::to_json),
        );
        Value::Object(o)
    }
}

/// Splits a recipient description into parts of `part_size` characters
/// (Unicode scalar values, as the reference's `T.splitAt` counts), numbered
/// from 1, the last marked complete. An empty text gives one empty part.
/// A `part_size` of 0 is treated as 1.
pub fn split_file_descr(text: &str, part_size: usize) -> Vec<FileDescr> {
    let part_size = part_size.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    let mut part_no: u32 = 1;
    loop {
        let cut = rest
            .char_indices()
            .nth(part_size)
            .map_or(rest.len(), |(i, _)| i);
        let (part, tail) = rest.split_at(cut);
        let complete = tail.is_empty();
        parts.push(FileDescr {
            text: String::from(part),
            part_no,
            complete,
        });
        if complete {
            return parts;
        }
        rest = tail;
        part_no = part_no.saturating_add(1);
    }
}

/// The `x.msg.file.descr` events that deliver `text` for the file offered
/// by the message `msg_id` (`sendFileDescriptions`), one per part.
pub fn file_descr_events(msg_id: &SharedMsgId, text: &str, part_size: usize) -> Vec<ChatEvent> {
    split_file_descr(text, part_size)
        .into_iter()
        .map(|file_descr| ChatEvent::MsgFileDescr {
            msg_id: msg_id.clone(),
            file_descr,
        })
        .collect()
}

/// Why a description part was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileDescrError {
    /// The description in the offer itself must be part 0.
    #[error("the offer's description is part {0}, not 0")]
    FirstPartNotZero(u32),
    /// Parts must arrive in order, each one after the last.
    #[error("expected description part {expected}, got {got}")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("description part {0} after the description was complete")]
    AlreadyComplete(u32),
    #[error("description would exceed {limit} bytes")]
    TooLarge { limit: usize },
}

/// Default bound for [`FileDescrAssembler`]: far above any real description
/// (a maximum-size file has a few hundred chunk lines), far below what a
/// hostile peer could otherwise make us store.
pub const DEFAULT_MAX_FILE_DESCR_LENGTH: usize = 512 * 1024;

/// Joins the parts of one file's description as they arrive, with the
/// reference's rule (`appendRcvFD`): the offer holds part 0, then every part
/// must be the previous number plus one, and nothing may follow the part
/// marked complete. Pure state: the caller keys it by the offer's msgId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDescrAssembler {
    text: String,
    last_part: u32,
    complete: bool,
    max_len: usize,
}

impl FileDescrAssembler {
    /// Starts from the description carried in the offer (normally the
    /// empty placeholder; part 0 is the only number accepted).
    pub fn from_offer(descr: &FileDescr, max_len: usize) -> Result<Self, FileDescrError> {
        if descr.part_no != 0 {
            return Err(FileDescrError::FirstPartNotZero(descr.part_no));
        }
        if descr.text.len() > max_len {
            return Err(FileDescrError::TooLarge { limit: max_len });
        }
        Ok(Self {
            text: descr.text.clone(),
            last_part: 0,
            complete: descr.complete,
            max_len,
        })
    }

    /// Starts as after the placeholder offer.
    pub fn new(max_len: usize) -> Self {
        Self {
            text: String::new(),
            last_part: 0,
            complete: false,
            max_len,
        }
    }

    /// Appends a part; returns whether the description is now complete.
    /// A refused part leaves the state unchanged.
    pub fn push(&mut self, part: &FileDescr) -> Result<bool, FileDescrError> {
        if self.complete {
            return Err(FileDescrError::AlreadyComplete(part.part_no));
        }
        let expected = self.last_part.saturating_add(1);
        if part.part_no != expected {
            return Err(FileDescrError::OutOfOrder {
                expected,
                got: part.part_no,
            });
        }
        if self.text.len() + part.text.len() > self.max_len {
            return Err(FileDescrError::TooLarge {
                limit: self.max_len,
            });
        }
        self.text.push_str(&part.text);
        self.last_part = part.part_no;
        self.complete = part.complete;
        Ok(self.complete)
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The number of the last part accepted (0 before any).
    pub fn last_part(&self) -> u32 {
        self.last_part
    }

    /// The whole description, once complete.
    pub fn text(&self) -> Option<&str> {
        self.complete.then_some(self.text.as_str())
    }

    pub fn into_text(self) -> Option<String> {
        self.complete.then_some(self.text)
    }
}
