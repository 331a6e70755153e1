//! Whole `A_MSG` bodies and connection info: how a received body is split
//! into chat messages (`parseChatMessages`), and how an outgoing one is
//! sized and, when the reference would, compressed.

use alloc::vec;
use alloc::vec::Vec;

use serde_json::Value;

use super::compression::{compressed_batch_body, decode_compressed_batch};
use super::json;
use super::message::ChatMessage;
use super::{
    ChatError, MAX_COMPRESSED_INFO_LENGTH, MAX_COMPRESSED_MSG_LENGTH, MAX_DECOMPRESSED_MSG_LENGTH,
    MAX_ENCODED_INFO_LENGTH, MAX_ENCODED_MSG_LENGTH,
};
use crate::encoding::Reader;

/// Every chat message in a received body, by its first byte: `{` one
/// message, `[` a JSON array, `X` compressed elements (each parsed again by
/// its first byte), `=` a binary batch of `Large` elements. As in the
/// reference each message succeeds or fails on its own; a framing error is
/// one failed entry. Signed (`/`), forwarded (`>`) and binary file chunk
/// (`F`) elements, which only groups and legacy transfers use, are reported
/// as [`ChatError::UnsupportedElement`].
pub fn parse_chat_messages(body: &[u8]) -> Vec<Result<ChatMessage, ChatError>> {
    match body.first() {
        None => vec![Err(ChatError::Empty)],
        Some(b'X') => match decode_compressed_batch(&body[1..]) {
            Err(e) => vec![Err(e)],
            Ok(items) => items
                .iter()
                .flat_map(|c| match c.decompress(MAX_DECOMPRESSED_MSG_LENGTH) {
                    Err(e) => vec![Err(e)],
                    Ok(inner) if inner.is_empty() => vec![Err(ChatError::Empty)],
                    Ok(inner) => parse_uncompressed(&inner),
                })
                .collect(),
        },
        Some(_) => parse_uncompressed(body),
    }
}

fn parse_uncompressed(s: &[u8]) -> Vec<Result<ChatMessage, ChatError>> {
    match s[0] {
        b'[' => match json::parse(s) {
            Err(e) => vec![Err(e)],
            Ok(Value::Array(items)) => items.iter().map(ChatMessage::from_json).collect(),
            Ok(_) => vec![Err(ChatError::Json("expected an array".into()))],
        },
        b'=' => parse_binary_batch(&s[1..]),
        _ => vec![parse_element(s)],
    }
}

/// `'=' ‖ count ‖ (Large element)*`, all input used.
fn parse_binary_batch(s: &[u8]) -> Vec<Result<ChatMessage, ChatError>> {
    let mut r = Reader::new(s);
    let elements = r.list(|r| r.large()).and_then(|v| r.end().map(|_| v));
    match elements {
        Err(e) => vec![Err(e.into())],
        Ok(elements) => elements.into_iter().map(parse_element).collect(),
    }
}

fn parse_element(s: &[u8]) -> Result<ChatMessage, ChatError> {
    match s.first() {
        None => Err(ChatError::Empty),
        Some(b'{') => ChatMessage::decode(s),
        Some(&c) => Err(ChatError::UnsupportedElement(c)),
    }
}

/// `encodeChatMessage maxEncodedMsgLength`: the JSON of a message to send,
/// refused when over [`MAX_ENCODED_MSG_LENGTH`].
pub fn encode_message(msg: &ChatMessage) -> Result<Vec<u8>, ChatError> {
    limited(msg.encode(), MAX_ENCODED_MSG_LENGTH)
}

fn limited(body: Vec<u8>, limit: usize) -> Result<Vec<u8>, ChatError> {
    if body.len() > limit {
        Err(ChatError::TooLarge {
            len: body.len(),
            limit,
        })
    } else {
        Ok(body)
    }
}

/// Compresses `body` when over `threshold`; the result must then fit it.
fn compress_over(body: Vec<u8>, threshold: usize) -> Result<Vec<u8>, ChatError> {
    if body.len() > threshold {
        limited(compressed_batch_body(&body)?, threshold)
    } else {
        Ok(body)
    }
}

/// `encodeConnInfoPQ`: the conn info bytes for a confirmation or
/// invitation (a message without msgId, normally `x.info` or `x.contact`).
/// `compress` is the reference's condition: the connection has PQ support
/// and the peer's chat version is ≥ 8. Then info over
/// [`MAX_COMPRESSED_INFO_LENGTH`] is compressed and must fit that limit.
pub fn encode_conn_info(msg: &ChatMessage, compress: bool) -> Result<Vec<u8>, ChatError> {
    let info = limited(msg.encode(), MAX_ENCODED_INFO_LENGTH)?;
    if compress {
        compress_over(info, MAX_COMPRESSED_INFO_LENGTH)
    } else {
        Ok(info)
    }
}

/// The body to hand to the agent for one `A_MSG` (a message or a batch).
/// `compress` is decided per delivery batch in the reference
/// (`deliverMessagesB`): true when any connection in the batch has PQ
/// support and agreed chat version ≥ 8. Then a body over
/// [`MAX_COMPRESSED_MSG_LENGTH`] is compressed and must fit that limit.
pub fn prepare_message_body(body: Vec<u8>, compress: bool) -> Result<Vec<u8>, ChatError> {
    if compress {
        compress_over(body, MAX_COMPRESSED_MSG_LENGTH)
    } else {
        Ok(body)
    }
}
