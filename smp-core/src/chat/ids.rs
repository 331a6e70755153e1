//! Random ids that chat messages carry as base64url text.

use alloc::vec::Vec;

use serde_json::Value;

use super::{ChatError, FieldProblem};
use crate::encoding::string::{b64_decode, b64_encode};

/// Length of the ids the apps generate (12 random bytes).
pub const SHARED_MSG_ID_LENGTH: usize = 12;

fn id_from_json(v: &Value, field: &'static str) -> Result<Vec<u8>, ChatError> {
    let s = v.as_str().ok_or(ChatError::Field {
        field,
        problem: FieldProblem::WrongType("string"),
    })?;
    b64_decode(s).map_err(|_| ChatError::Field {
        field,
        problem: FieldProblem::BadBase64,
    })
}

/// `SharedMsgId`: names a message across both ends, so that later events
/// (file description parts, updates, quotes) can refer to it. The bytes are
/// kept as received; the apps send 12.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedMsgId(pub Vec<u8>);

impl SharedMsgId {
    /// base64url with padding, as `strEncode` writes it.
    pub fn to_text(&self) -> alloc::string::String {
        b64_encode(&self.0)
    }
    pub fn to_json(&self) -> Value {
        Value::String(self.to_text())
    }
    /// Parses the base64url text (padded or not) of the field `field`.
    pub fn from_json(v: &Value, field: &'static str) -> Result<Self, ChatError> {
        id_from_json(v, field).map(Self)
    }
}

/// `XContactId`: lets an address owner recognise a repeated contact request
/// from the same requester.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XContactId(pub Vec<u8>);

impl XContactId {
    pub fn to_json(&self) -> Value {
        Value::String(b64_encode(&self.0))
    }
    pub fn from_json(v: &Value, field: &'static str) -> Result<Self, ChatError> {
        id_from_json(v, field).map(Self)
    }
}
