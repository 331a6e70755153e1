//! Chat protocol versions (`VersionChat`, agent.md §1.4). Every message
//! carries the sender's range as `"v"`; features are gated on the agreed
//! (highest common) version.

use alloc::string::String;
use core::fmt::Write as _;

use super::ChatError;
pub use crate::xftp::handshake::VersionRange;

/// `initialChatVersion`: what a message without `"v"` is taken to support.
pub const INITIAL_CHAT_VERSION: u16 = 1;
/// `currentChatVersion`.
pub const CURRENT_CHAT_VERSION: u16 = 18;
/// Compression (`X` bodies) and PQ encryption (`pqEncryptionCompressionVersion`).
pub const PQ_ENCRYPTION_COMPRESSION_VERSION: u16 = 8;
/// JSON-array batches in direct chats (`batchSend2Version`).
pub const BATCH_SEND2_VERSION: u16 = 9;
/// Short link data in links (`shortLinkDataVersion`).
pub const SHORT_LINK_DATA_VERSION: u16 = 16;

/// `supportedChatVRange`: what current apps advertise (`"1-18"`).
pub const SUPPORTED_CHAT_VRANGE: VersionRange =
    match VersionRange::new(INITIAL_CHAT_VERSION, CURRENT_CHAT_VERSION) {
        Some(r) => r,
        None => panic!("static range"),
    };

/// The range assumed for a peer whose message has no `"v"`.
pub const INITIAL_CHAT_VRANGE: VersionRange =
    match VersionRange::new(INITIAL_CHAT_VERSION, INITIAL_CHAT_VERSION) {
        Some(r) => r,
        None => panic!("static range"),
    };

/// `agentToChatVersion`: the chat version assumed from the agent version
/// for a peer whose chat range is not known yet.
pub const fn agent_to_chat_version(agent_version: u16) -> u16 {
    if agent_version < crate::agent::version::PQDR_AGENT_VERSION {
        INITIAL_CHAT_VERSION
    } else {
        PQ_ENCRYPTION_COMPRESSION_VERSION
    }
}

/// `strEncode VersionRange`: `"n"` when min = max, else `"min-max"`.
pub fn vrange_text(r: &VersionRange) -> String {
    let mut s = String::new();
    if r.min() == r.max() {
        let _ = write!(s, "{}", r.min());
    } else {
        let _ = write!(s, "{}-{}", r.min(), r.max());
    }
    s
}

/// Parses `"n"` or `"min-max"` (decimal, `min <= max`).
pub fn parse_vrange(s: &str) -> Result<VersionRange, ChatError> {
    let bad = || ChatError::BadVersionRange(String::from(s));
    let num = |t: &str| -> Result<u16, ChatError> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let (min, max) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(s)?;
            (n, n)
        }
    };
    VersionRange::new(min, max).ok_or_else(bad)
}
