//! What the device makes of its contacts' chat messages: texts to store
//! and show, and file offers whose descriptions arrive in parts, turned
//! into downloads once complete. It holds no IO; the shell stores, shows
//! and fetches what it is told to.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use device_sync::job::Entropy;
use smp_core::chat::{
    ChatEvent, ChatMessage, FileDescr, FileDescrAssembler, MsgContainer, MsgContent,
    SUPPORTED_CHAT_VRANGE, SharedMsgId, parse_chat_messages,
};

/// Descriptions longer than this are refused (a 1 GB file's is about 60 KB).
pub const MAX_DESCRIPTION: usize = 512 * 1024;

/// Offers waiting for their description at once, over all contacts.
pub const MAX_PENDING: usize = 8;

/// What the shell does with one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A text to store on the card and show as `NAME: TEXT`.
    Text(String),
    /// A file was offered; its description comes in later messages. `file`
    /// is the offer's shared message id, which its parts name too.
    Offered {
        file: Vec<u8>,
        name: String,
        size: u64,
    },
    /// A part of a file's description, not the last.
    Part { file: Vec<u8> },
    /// A file's description is complete: fetch it onto the card.
    Fetch {
        file: Vec<u8>,
        name: String,
        size: u64,
        description: String,
    },
    /// The message was read but carries nothing the device keeps.
    Ignored(&'static str),
    /// The message could not be used, in words.
    Refused(String),
}

struct Pending {
    contact: u32,
    msg_id: Vec<u8>,
    name: String,
    size: u64,
    assembler: FileDescrAssembler,
}

/// Offers in progress.
#[derive(Default)]
pub struct Chats {
    pending: Vec<Pending>,
}

impl Chats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a file of this contact still waits for description parts.
    pub fn has_pending(&self, contact: u32) -> bool {
        self.pending.iter().any(|p| p.contact == contact)
    }

    /// Reads one chat body (possibly a batch) from `contact`.
    pub fn receive(&mut self, contact: u32, body: &[u8]) -> Vec<Step> {
        let mut out = Vec::new();
        for m in parse_chat_messages(body) {
            let Ok(m) = m else {
                out.push(Step::Refused("a message could not be read".into()));
                continue;
            };
            out.push(self.event(contact, m.msg_id, m.event));
        }
        out
    }

    fn event(&mut self, contact: u32, msg_id: Option<SharedMsgId>, ev: ChatEvent) -> Step {
        match ev {
            ChatEvent::MsgNew(c) => match c.file {
                Some(f) if f.is_xftp() => {
                    let Some(id) = msg_id else {
                        return Step::Refused("a file offer without a message id".into());
                    };
                    let descr = f.file_descr.clone().unwrap_or_else(FileDescr::placeholder);
                    let assembler = match FileDescrAssembler::from_offer(&descr, MAX_DESCRIPTION) {
                        Ok(a) => a,
                        Err(e) => return Step::Refused(alloc::format!("file offer refused: {e}")),
                    };
                    if self.pending.len() >= MAX_PENDING {
                        return Step::Refused("too many files in progress; offer dropped".into());
                    }
                    // The same offer again (after a reset): start it afresh.
                    self.pending
                        .retain(|p| !(p.contact == contact && p.msg_id == id.0));
                    let (name, size) = (f.file_name.clone(), f.file_size);
                    let p = Pending {
                        contact,
                        msg_id: id.0,
                        name: name.clone(),
                        size,
                        assembler,
                    };
                    if p.assembler.is_complete() {
                        return finish(p);
                    }
                    let file = p.msg_id.clone();
                    self.pending.push(p);
                    Step::Offered { file, name, size }
                }
                Some(_) => Step::Ignored("an inline file"),
                None => Step::Text(c.content.display_text().to_string()),
            },
            ChatEvent::MsgFileDescr { msg_id, file_descr } => {
                let Some(pos) = self
                    .pending
                    .iter()
                    .position(|p| p.contact == contact && p.msg_id == msg_id.0)
                else {
                    return Step::Refused("a file description for an unknown file".into());
                };
                match self.pending[pos].assembler.push(&file_descr) {
                    Ok(true) => finish(self.pending.remove(pos)),
                    Ok(false) => Step::Part { file: msg_id.0 },
                    Err(e) => {
                        let p = self.pending.remove(pos);
                        Step::Refused(alloc::format!("file {} refused: {e}", p.name))
                    }
                }
            }
            ChatEvent::FileCancel { msg_id } => {
                self.pending
                    .retain(|p| !(p.contact == contact && p.msg_id == msg_id.0));
                Step::Ignored("a file cancel")
            }
            ChatEvent::Info(_) | ChatEvent::Ok | ChatEvent::Contact(_) => {
                Step::Ignored("a handshake message")
            }
            ChatEvent::MsgDeleted => Step::Ignored("a deletion"),
            ChatEvent::Unknown { .. } => Step::Ignored("an event the device does not show"),
        }
    }
}

fn finish(p: Pending) -> Step {
    match p.assembler.into_text() {
        Some(description) => Step::Fetch {
            file: p.msg_id,
            name: p.name,
            size: p.size,
            description,
        },
        None => Step::Refused("the file description is incomplete".into()),
    }
}

/// The texts of a chat body the device sent (possibly a batch).
pub fn sent_texts(body: &[u8]) -> Vec<String> {
    parse_chat_messages(body)
        .into_iter()
        .flatten()
        .filter_map(|m| match m.event {
            ChatEvent::MsgNew(c) if c.file.is_none() => Some(c.content.display_text().to_string()),
            _ => None,
        })
        .collect()
}

/// The chat body of a text message, with a fresh shared message id.
pub fn text_message(text: &str, rng: &mut impl Entropy) -> Vec<u8> {
    let mut id = [0u8; 12];
    rng.fill(&mut id);
    ChatMessage::new(
        SUPPORTED_CHAT_VRANGE,
        Some(SharedMsgId(id.to_vec())),
        ChatEvent::MsgNew(MsgContainer::simple(MsgContent::Text {
            text: text.to_string(),
        })),
    )
    .encode()
}
