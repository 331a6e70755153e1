//! The simplex-chat protocol that rides in `A_MSG` bodies and connection
//! info (agent.md §6): the JSON message envelope and its events, profiles,
//! XFTP file offers and description parts, JSON-array batches and the `X`
//! compression framing, with the size limits the apps enforce.
//!
//! Everything here is IO-free and `no_std` + `alloc`. The JSON is written
//! byte for byte as the reference (aeson) writes it, so vectors can be
//! compared exactly; receivers of ours parse JSON, so only the values matter
//! for interop.

pub mod batch;
pub mod body;
pub mod compression;
pub mod content;
pub mod file;
pub mod ids;
pub mod json;
pub mod message;
pub mod profile;
pub mod version;

pub use batch::{MsgBatch, batch_messages, encode_json_batch};
pub use body::{encode_conn_info, encode_message, parse_chat_messages, prepare_message_body};
pub use compression::{Compressed, compressed_batch_body, decode_compressed_batch, decompress};
pub use content::{MsgContainer, MsgContent};
pub use file::{
    DEFAULT_MAX_FILE_DESCR_LENGTH, FileDescr, FileDescrAssembler, FileDescrError, FileInvitation,
    InlineFileMode, file_descr_events, split_file_descr,
};
pub use ids::{SharedMsgId, XContactId};
pub use message::{ChatEvent, ChatMessage, ContactRequest, is_reference_event};
pub use profile::{Profile, short_link_data, short_link_profile};
pub use version::*;

use alloc::string::String;

use crate::encoding::{DecodeError, EncodeError};

/// Largest chat JSON of one message (`maxEncodedMsgLength`): leaves room for
/// the forwarding header of groups inside the 15780-byte file chunk budget.
pub const MAX_ENCODED_MSG_LENGTH: usize = 15602;
/// Largest chat JSON of connection info (`maxEncodedInfoLength`): the conn
/// info padding is 1008 bytes smaller than a message's (agent.md §8).
pub const MAX_ENCODED_INFO_LENGTH: usize = 14694;
/// A message body over this is compressed when compression applies, and a
/// compressed body must fit it (`maxCompressedMsgLength`): room left by the
/// smaller PQ padding.
pub const MAX_COMPRESSED_MSG_LENGTH: usize = 13380;
/// The same for connection info (`maxCompressedInfoLength`).
pub const MAX_COMPRESSED_INFO_LENGTH: usize = 10968;
/// Limit on one inflated element (`maxDecompressedMsgLength`); a peer cannot
/// make us allocate more.
pub const MAX_DECOMPRESSED_MSG_LENGTH: usize = 65536;
/// Characters per `x.msg.file.descr` part (`xftpDescrPartSize`).
pub const XFTP_DESCR_PART_SIZE: usize = 14000;

/// What is wrong with one JSON field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    Missing,
    WrongType(&'static str),
    OutOfRange,
    BadBase64,
    BadValue,
}

impl core::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FieldProblem::Missing => f.write_str("missing"),
            FieldProblem::WrongType(t) => write!(f, "expected {t}"),
            FieldProblem::OutOfRange => f.write_str("number out of range"),
            FieldProblem::BadBase64 => f.write_str("invalid base64url"),
            FieldProblem::BadValue => f.write_str("invalid value"),
        }
    }
}

/// Why a chat message or body could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("empty message body")]
    Empty,
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("field {field}: {problem}")]
    Field {
        field: &'static str,
        problem: FieldProblem,
    },
    #[error("invalid chat version range {0:?}")]
    BadVersionRange(String),
    #[error("invalid event tag {0:?}")]
    BadEventTag(String),
    /// A body or batch element kind this crate does not handle (signed or
    /// forwarded group elements, binary file chunks, or garbage).
    #[error("unsupported message element prefix {0:#04x}")]
    UnsupportedElement(u8),
    #[error("binary framing: {0}")]
    Framing(#[from] DecodeError),
    #[error("unknown Compressed tag {0:#04x}")]
    BadCompressedTag(u8),
    #[error("zstd frame: {0}")]
    Zstd(String),
    #[error("decompressed element is over {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("encoded message is {len} bytes, over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
}

#[cfg(test)]
mod tests;
