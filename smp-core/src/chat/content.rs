//! What `x.msg.new` carries (agent.md §6.3): the message container and its
//! content.

use alloc::string::String;

use serde_json::Value;

use super::ChatError;
use super::file::FileInvitation;
use super::json::{
    Object, as_object, opt_bool, opt_i64, optional, put, put_opt, req_i64, req_str, rest,
};

/// Text shown for content of a type the app does not know
/// (`unknownMsgType`).
pub const UNKNOWN_MSG_TYPE_TEXT: &str = "unknown message type";

/// Message content (`MsgContent`). Types this crate does not model (link,
/// report, chat, and future ones) are kept whole as `Other`, so they can be
/// shown as "unknown" and re-encoded unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum MsgContent {
    Text {
        text: String,
    },
    /// A file offer's caption; the file is in the container's `file`.
    File {
        text: String,
    },
    /// `image` is a `data:` URI thumbnail; the picture itself is the file.
    Image {
        text: String,
        image: String,
    },
    Video {
        text: String,
        image: String,
        duration: i64,
    },
    /// `duration` in seconds.
    Voice {
        text: String,
        duration: i64,
    },
    Other {
        tag: String,
        json: Object,
    },
}

impl MsgContent {
    pub fn text(text: &str) -> Self {
        MsgContent::Text {
            text: String::from(text),
        }
    }

    /// The `type` tag on the wire.
    pub fn tag(&self) -> &str {
        match self {
            MsgContent::Text { .. } => "text",
            MsgContent::File { .. } => "file",
            MsgContent::Image { .. } => "image",
            MsgContent::Video { .. } => "video",
            MsgContent::Voice { .. } => "voice",
            MsgContent::Other { tag, .. } => tag,
        }
    }

    /// The text to show; for unmodelled types their `text` if any, else the
    /// reference's "unknown message type".
    pub fn display_text(&self) -> &str {
        match self {
            MsgContent::Text { text }
            | MsgContent::File { text }
            | MsgContent::Image { text, .. }
            | MsgContent::Video { text, .. }
            | MsgContent::Voice { text, .. } => text,
            MsgContent::Other { json, .. } => json
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or(UNKNOWN_MSG_TYPE_TEXT),
        }
    }

    pub fn from_json(v: &Value) -> Result<Self, ChatError> {
        let o = as_object(v, "content")?;
        let tag = req_str(o, "type")?;
        Ok(match tag.as_str() {
            "text" => MsgContent::Text {
                text: req_str(o, "text")?,
            },
            "file" => MsgContent::File {
                text: req_str(o, "text")?,
            },
            "image" => MsgContent::Image {
                text: req_str(o, "text")?,
                image: req_str(o, "image")?,
            },
            "video" => MsgContent::Video {
                text: req_str(o, "text")?,
                image: req_str(o, "image")?,
                duration: req_i64(o, "duration")?,
            },
            "voice" => MsgContent::Voice {
                text: req_str(o, "text")?,
                duration: req_i64(o, "duration")?,
            },
            _ => MsgContent::Other {
                tag,
                json: o.clone(),
            },
        })
    }

    pub fn to_json(&self) -> Value {
        if let MsgContent::Other { json, .. } = self {
            return Value::Object(json.clone());
        }
        let mut o = Object::new();
        put(&mut o, "type", Value::String(String::from(self.tag())));
        match self {
            MsgContent::Text { text } | MsgContent::File { text } => {
                put(&mut o, "text", Value::String(text.clone()));
            }
            MsgContent::Image { text, image } => {
                put(&mut o, "text", Value::String(text.clone()));
                put(&mut o, "image", Value::String(image.clone()));
            }
            MsgContent::Video {
                text,
                image,
                duration,
            } => {
                put(&mut o, "text", Value::String(text.clone()));
                put(&mut o, "image", Value::String(image.clone()));
                put(&mut o, "duration", Value::from(*duration));
            }
            MsgContent::Voice { text, duration } => {
                put(&mut o, "text", Value::String(text.clone()));
                put(&mut o, "duration", Value::from(*duration));
            }
            MsgContent::Other { .. } => {}
        }
        Value::Object(o)
    }
}

const CONTAINER_TYPED: &[&str] = &["content", "file", "ttl", "live"];

/// The params of `x.msg.new` (`MsgContainer`). Quotes, mentions, scopes,
/// comments and forwards are kept as raw JSON in `extra` (keys `quote`,
/// `mentions`, `scope`, `asGroup`, `parent`, `forward`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct MsgContainer {
    pub content: MsgContent,
    pub file: Option<FileInvitation>,
    /// Disappearing-message time in seconds.
    pub ttl: Option<i64>,
    /// A live (still being typed) message.
    pub live: Option<bool>,
    pub extra: Object,
}

impl MsgContainer {
    /// A plain message with nothing but content (`mcSimple`).
    pub fn simple(content: MsgContent) -> Self {
        Self {
            content,
            file: None,
            ttl: None,
            live: None,
            extra: Object::new(),
        }
    }

    pub fn from_json(o: &Object) -> Result<Self, ChatError> {
        let content = optional(o, "content").ok_or(ChatError::Field {
            field: "content",
            problem: super::FieldProblem::Missing,
        })?;
        Ok(Self {
            content: MsgContent::from_json(content)?,
            file: optional(o, "file")
                .map(FileInvitation::from_json)
                .transpose()?,
            ttl: opt_i64(o, "ttl")?,
            live: opt_bool(o, "live")?,
            extra: rest(o, CONTAINER_TYPED),
        })
    }

    pub fn to_json(&self) -> Object {
        let mut o = self.extra.clone();
        put(&mut o, "content", self.content.to_json());
        put_opt(
            &mut o,
            "file",
            self.file.as_ref().map(FileInvitation::to_json),
        );
        put_opt(&mut o, "ttl", self.ttl.map(Value::from));
        put_opt(&mut o, "live", self.live.map(Value::Bool));
        o
    }
}
