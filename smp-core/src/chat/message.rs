//! The chat message envelope (`AppMessageJson`, agent.md §6.1) and its
//! events.
//!
//! On the wire: `{"v":"1-18","msgId":"...","event":"x.msg.new","params":{...}}`
//! with these four keys in this order (`msgId` omitted when absent) and every
//! object inside `params` with sorted keys.

use alloc::string::String;
use alloc::vec::Vec;

use serde_json::Value;

use super::content::{MsgContainer, MsgContent};
use super::file::FileDescr;
use super::ids::{SharedMsgId, XContactId};
use super::json::{self, Object, as_object, optional, put, put_opt, required};
use super::profile::Profile;
use super::version::{
    INITIAL_CHAT_VRANGE, SUPPORTED_CHAT_VRANGE, VersionRange, parse_vrange, vrange_text,
};
use super::{ChatError, FieldProblem};

/// The params of `x.contact`, the conn info of a request sent to a contact
/// address (`XContact`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRequest {
    pub profile: Profile,
    pub contact_req_id: Option<XContactId>,
    pub welcome_msg_id: Option<SharedMsgId>,
    /// A message sent with the request; the reference only takes it when
    /// both its `msgId` and `content` are present.
    pub request_msg: Option<(SharedMsgId, MsgContent)>,
}

/// A chat event. Events this crate does not type, whether the reference
/// knows them (see [`is_reference_event`]) or not, arrive as `Unknown` with
/// their params, so that a client can report "unsupported" and go on.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// `x.msg.new`: a new message.
    MsgNew(MsgContainer),
    /// `x.msg.file.descr`: a part of the XFTP description of the file
    /// offered by the message `msg_id`.
    MsgFileDescr {
        msg_id: SharedMsgId,
        file_descr: FileDescr,
    },
    /// `x.msg.deleted`.
    MsgDeleted,
    /// `x.file.cancel`: the sender cancelled the file of message `msg_id`.
    FileCancel {
        msg_id: SharedMsgId,
    },
    /// `x.info`: the sender's profile (handshake and profile updates).
    Info(Profile),
    /// `x.contact`: a contact request to an address.
    Contact(ContactRequest),
    /// `x.ok`: the accepting side's answer in some handshakes.
    Ok,
    Unknown {
        event: String,
        params: Object,
    },
}

impl ChatEvent {
    /// The event tag on the wire.
    pub fn tag(&self) -> &str {
        match self {
            ChatEvent::MsgNew(_) => "x.msg.new",
            ChatEvent::MsgFileDescr { .. } => "x.msg.file.descr",
            ChatEvent::MsgDeleted => "x.msg.deleted",
            ChatEvent::FileCancel { .. } => "x.file.cancel",
            ChatEvent::Info(_) => "x.info",
            ChatEvent::Contact(_) => "x.contact",
            ChatEvent::Ok => "x.ok",
            ChatEvent::Unknown { event, .. } => event,
        }
    }

    /// Whether the agent message should ask for a push notification
    /// (`MsgFlags`, the reference's `hasNotification`), decided by tag.
    pub fn has_notification(&self) -> bool {
        matches!(
            self.tag(),
            "x.msg.new"
                | "x.file"
                | "x.contact"
                | "x.grp.inv"
                | "x.grp.mem.fwd"
                | "x.grp.del"
                | "x.call.inv"
        )
    }

    fn params(&self) -> Object {
        let mut o = Object::new();
        match self {
            ChatEvent::MsgNew(c) => return c.to_json(),
            ChatEvent::MsgFileDescr { msg_id, file_descr } => {
                put(&mut o, "msgId", msg_id.to_json());
                put(&mut o, "fileDescr", file_descr.to_json());
            }
            ChatEvent::MsgDeleted | ChatEvent::Ok => {}
            ChatEvent::FileCancel { msg_id } => put(&mut o, "msgId", msg_id.to_json()),
            ChatEvent::Info(p) => put(&mut o, "profile", p.to_json()),
            ChatEvent::Contact(r) => {
                put(&mut o, "profile", r.profile.to_json());
                put_opt(
                    &mut o,
                    "contactReqId",
                    r.contact_req_id.as_ref().map(XContactId::to_json),
                );
                put_opt(
                    &mut o,
                    "welcomeMsgId",
                    r.welcome_msg_id.as_ref().map(SharedMsgId::to_json),
                );
                if let Some((id, content)) = &r.request_msg {
                    put(&mut o, "msgId", id.to_json());
                    put(&mut o, "content", content.to_json());
                }
            }
            ChatEvent::Unknown { params, .. } => return params.clone(),
        }
        o
    }

    fn from_params(event: &str, p: &Object) -> Result<Self, ChatError> {
        let msg_id = |key: &'static str| SharedMsgId::from_json(required(p, key)?, key);
        Ok(match event {
            "x.msg.new" => ChatEvent::MsgNew(MsgContainer::from_json(p)?),
            "x.msg.file.descr" => ChatEvent::MsgFileDescr {
                msg_id: msg_id("msgId")?,
                file_descr: FileDescr::from_json(required(p, "fileDescr")?)?,
            },
            "x.msg.deleted" => ChatEvent::MsgDeleted,
            "x.file.cancel" => ChatEvent::FileCancel {
                msg_id: msg_id("msgId")?,
            },
            "x.info" => ChatEvent::Info(Profile::from_json(required(p, "profile")?)?),
            "x.contact" => {
                let req_id = optional(p, "msgId")
                    .map(|v| SharedMsgId::from_json(v, "msgId"))
                    .transpose()?;
                let content = optional(p, "content")
                    .map(MsgContent::from_json)
                    .transpose()?;
                ChatEvent::Contact(ContactRequest {
                    profile: Profile::from_json(required(p, "profile")?)?,
                    contact_req_id: optional(p, "contactReqId")
                        .map(|v| XContactId::from_json(v, "contactReqId"))
                        .transpose()?,
                    welcome_msg_id: optional(p, "welcomeMsgId")
                        .map(|v| SharedMsgId::from_json(v, "welcomeMsgId"))
                        .transpose()?,
                    request_msg: req_id.zip(content),
                })
            }
            "x.ok" => ChatEvent::Ok,
            _ => ChatEvent::Unknown {
                event: String::from(event),
                params: p.clone(),
            },
        })
    }
}

/// The JSON event tags the reference parses (its `CMEventTag`s), for telling
/// an unsupported-but-valid event from an unknown one.
pub fn is_reference_event(tag: &str) -> bool {
    const TAGS: &[&str] = &[
        "x.msg.new",
        "x.msg.file.descr",
        "x.msg.update",
        "x.msg.del",
        "x.msg.deleted",
        "x.msg.react",
        "x.file",
        "x.file.acpt",
        "x.file.acpt.inv",
        "x.file.cancel",
        "x.info",
        "x.contact",
        "x.member",
        "x.direct.del",
        "x.grp.inv",
        "x.grp.acpt",
        "x.grp.link.inv",
        "x.grp.link.reject",
        "x.grp.link.mem",
        "x.grp.link.acpt",
        "x.grp.relay.inv",
        "x.grp.relay.acpt",
        "x.grp.relay.test",
        "x.grp.mem.new",
        "x.grp.mem.intro",
        "x.grp.mem.inv",
        "x.grp.mem.fwd",
        "x.grp.mem.info",
        "x.grp.mem.role",
        "x.grp.mem.restrict",
        "x.grp.mem.con",
        "x.grp.mem.con.all",
        "x.grp.mem.del",
        "x.grp.leave",
        "x.grp.del",
        "x.grp.info",
        "x.grp.prefs",
        "x.grp.direct.inv",
        "x.grp.msg.forward",
        "x.info.probe",
        "x.info.probe.check",
        "x.info.probe.ok",
        "x.call.inv",
        "x.call.offer",
        "x.call.answer",
        "x.call.extra",
        "x.call.end",
        "x.ok",
    ];
    TAGS.contains(&tag)
}

/// One chat message (`ChatMessage 'Json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// The sender's chat version range (`"v"`; 1 when absent).
    pub chat_vrange: VersionRange,
    /// Set on every sent message, absent in conn info.
    pub msg_id: Option<SharedMsgId>,
    pub event: ChatEvent,
}

impl ChatMessage {
    pub fn new(chat_vrange: VersionRange, msg_id: Option<SharedMsgId>, event: ChatEvent) -> Self {
        Self {
            chat_vrange,
            msg_id,
            event,
        }
    }

    /// The JSON bytes as the reference writes them (`J.encode` of
    /// `AppMessageJson`), with no size check.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"v\":");
        json::write_string(&mut out, &vrange_text(&self.chat_vrange));
        if let Some(id) = &self.msg_id {
            out.extend_from_slice(b",\"msgId\":");
            json::write_string(&mut out, &id.to_text());
        }
        out.extend_from_slice(b",\"event\":");
        json::write_string(&mut out, self.event.tag());
        out.extend_from_slice(b",\"params\":");
        json::write_object(&mut out, &self.event.params());
        out.push(b'}');
        out
    }

    /// The conn info a profile sends in its confirmations (`x.info`).
    pub fn profile_info(profile: &Profile) -> Vec<u8> {
        Self::new(
            SUPPORTED_CHAT_VRANGE,
            None,
            ChatEvent::Info(profile.clone()),
        )
        .encode()
    }

    /// The conn info a profile sends with a contact request (`x.contact`,
    /// no request message).
    pub fn contact_request(profile: &Profile) -> Vec<u8> {
        let req = ContactRequest {
            profile: profile.clone(),
            contact_req_id: None,
            welcome_msg_id: None,
            request_msg: None,
        };
        Self::new(SUPPORTED_CHAT_VRANGE, None, ChatEvent::Contact(req)).encode()
    }

    /// Parses one JSON message (a body starting with `{`).
    pub fn decode(bytes: &[u8]) -> Result<Self, ChatError> {
        Self::from_json(&json::parse(bytes)?)
    }

    /// `appJsonToCM`: the envelope, then the event's params by its tag.
    pub fn from_json(v: &Value) -> Result<Self, ChatError> {
        let o = as_object(v, "message")?;
        let chat_vrange = match optional(o, "v") {
            None => INITIAL_CHAT_VRANGE,
            Some(v) => parse_vrange(v.as_str().ok_or(ChatError::Field {
                field: "v",
                problem: FieldProblem::WrongType("string"),
            })?)?,
        };
        let msg_id = optional(o, "msgId")
            .map(|v| SharedMsgId::from_json(v, "msgId"))
            .transpose()?;
        let event = json::req_str(o, "event")?;
        // The reference takes JSON tags only when they start with 'x' and
        // hold no space (its tag parser stops at a space).
        if !event.starts_with('x') || event.contains(' ') {
            return Err(ChatError::BadEventTag(event));
        }
        let params = as_object(required(o, "params")?, "params")?;
        Ok(Self {
            chat_vrange,
            msg_id,
            event: ChatEvent::from_params(&event, params)?,
        })
    }
}
