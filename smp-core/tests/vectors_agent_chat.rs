//! vectors/agent/chat.json: the chat-protocol JSON (envelope, x.info,
//! x.msg.new, XFTP file offers and description parts, batches, x.contact,
//! x.ok), the `X` compression framing, and outside samples from the
//! simplex-chat tests and SimpleGo.
//!
//! Every entry of `cases`, `compression` and `outside_samples` is checked.
//! Not test data, so not checked: `about`, `provenance`, `follows`, `note`,
//! `name`, `source` (descriptions); `confidence`; `rules` except its version
//! range example.

mod support;

use serde_json::Value;
use smp_core::chat::*;
use support::{agent, cases, hex, str_of};

fn vectors() -> Value {
    agent("chat.json")
}

fn all_ok(body: &[u8]) -> Vec<ChatMessage> {
    parse_chat_messages(body)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("message does not parse: {e}")))
        .collect()
}

fn u64_at(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// The typed view of a parsed message agrees with the JSON it came from.
fn check_typed(msg: &ChatMessage, v: &Value) {
    assert_eq!(msg.event.tag(), str_of(&v["event"]));
    assert_eq!(vrange_text(&msg.chat_vrange), str_of(&v["v"]));
    match (&msg.msg_id, v.get("msgId")) {
        (None, None) => {}
        (Some(id), Some(t)) => assert_eq!(id.to_text(), str_of(t)),
        other => panic!("msgId mismatch: {other:?}"),
    }
    let p = &v["params"];
    match &msg.event {
        ChatEvent::Info(profile) => check_profile(profile, &p["profile"]),
        ChatEvent::Contact(req) => {
            check_profile(&req.profile, &p["profile"]);
            match (&req.contact_req_id, p.get("contactReqId")) {
                (None, None) => {}
                (Some(id), Some(t)) => assert_eq!(id.to_json(), *t),
                other => panic!("contactReqId mismatch: {other:?}"),
            }
        }
        ChatEvent::MsgNew(c) => {
            assert_eq!(c.content.tag(), str_of(&p["content"]["type"]));
            assert_eq!(c.content.display_text(), str_of(&p["content"]["text"]));
            match (&c.file, p.get("file")) {
                (None, None) => {}
                (Some(f), Some(fv)) => {
                    assert_eq!(f.file_name, str_of(&fv["fileName"]));
                    assert_eq!(f.file_size, u64_at(&fv["fileSize"]));
                    match (&f.file_descr, fv.get("fileDescr")) {
                        (None, None) => {}
                        (Some(d), Some(dv)) => check_descr(d, dv),
                        other => panic!("fileDescr mismatch: {other:?}"),
                    }
                }
                other => panic!("file mismatch: {other:?}"),
            }
        }
        ChatEvent::MsgFileDescr { msg_id, file_descr } => {
            assert_eq!(msg_id.to_text(), str_of(&p["msgId"]));
            check_descr(file_descr, &p["fileDescr"]);
        }
        ChatEvent::FileCancel { msg_id } => assert_eq!(msg_id.to_text(), str_of(&p["msgId"])),
        ChatEvent::Ok | ChatEvent::MsgDeleted => {
            assert_eq!(p, &Value::Object(Default::default()))
        }
        ChatEvent::Unknown { event, .. } => panic!("vector event {event} is not typed"),
    }
}

fn check_profile(p: &Profile, v: &Value) {
    assert_eq!(p.display_name, str_of(&v["displayName"]));
    assert_eq!(p.full_name, str_of(&v["fullName"]));
    assert_eq!(p.short_descr.as_deref(), v.get("shortDescr").map(str_of));
    assert_eq!(
        p.preferences.clone().map(Value::Object).as_ref(),
        v.get("preferences")
    );
}

fn check_descr(d: &FileDescr, v: &Value) {
    assert_eq!(d.text, str_of(&v["fileDescrText"]));
    assert_eq!(d.part_no as u64, u64_at(&v["fileDescrPartNo"]));
    assert_eq!(Some(d.complete), v["fileDescrComplete"].as_bool());
}

fn case<'a>(v: &'a Value, prefix: &str) -> &'a Value {
    cases(v, "cases")
        .iter()
        .find(|c| str_of(&c["name"]).starts_with(prefix))
        .unwrap_or_else(|| panic!("no case named {prefix}..."))
}

/// Every case: `encoded` is `encoded_text`, has `encoded_length` bytes,
/// parses, every message's typed view matches its JSON, and re-encoding
/// (and re-batching) gives `encoded` byte for byte.
#[test]
fn cases_parse_and_reencode_byte_exact() {
    let v = vectors();
    for c in cases(&v, "cases") {
        let name = str_of(&c["name"]);
        let encoded = hex(&c["encoded"]);
        assert_eq!(encoded, str_of(&c["encoded_text"]).as_bytes(), "{name}");
        assert_eq!(encoded.len() as u64, u64_at(&c["encoded_length"]), "{name}");
        let msgs = all_ok(&encoded);
        let json: Value = serde_json::from_slice(&encoded).unwrap();
        let items = match &json {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        assert_eq!(msgs.len(), items.len(), "{name}");
        for (m, j) in msgs.iter().zip(&items) {
            check_typed(m, j);
        }
        let bodies: Vec<Vec<u8>> = msgs.iter().map(ChatMessage::encode).collect();
        let parts: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        assert_eq!(encode_json_batch(&parts), encoded, "{name}: re-encoding");
        if let Some(id) = c.get("shared_msg_id") {
            assert_eq!(msgs[0].msg_id.as_ref().unwrap().0, hex(id), "{name}");
        }
    }
}

fn text_of(c: &Value) -> String {
    let j: Value = serde_json::from_str(str_of(&c["encoded_text"])).unwrap();
    str_of(&j["params"]["content"]["text"]).to_string()
}

fn msg_id_of(c: &Value) -> SharedMsgId {
    let j: Value = serde_json::from_str(str_of(&c["encoded_text"])).unwrap();
    SharedMsgId::from_json(&j["msgId"], "msgId").unwrap()
}

/// The messages a sender makes, built from our constructors, are the
/// vector's bytes.
#[test]
fn cases_built_from_scratch() {
    let v = vectors();
    let vr = SUPPORTED_CHAT_VRANGE;
    let rules_v = str_of(&v["rules"]["v"]);
    assert!(
        rules_v.contains(&format!("'{}'", vrange_text(&vr))),
        "{rules_v}"
    );

    let c = case(&v, "x.info with a minimal profile");
    let m = ChatMessage::new(vr, None, ChatEvent::Info(Profile::new("bob")));
    assert_eq!(encode_conn_info(&m, true).unwrap(), hex(&c["encoded"]));

    let c = case(&v, "x.msg.new, text");
    let id = SharedMsgId(hex(&c["shared_msg_id"]));
    let m = ChatMessage::new(
        vr,
        Some(id),
        ChatEvent::MsgNew(MsgContainer::simple(MsgContent::text(&text_of(c)))),
    );
    assert_eq!(encode_message(&m).unwrap(), hex(&c["encoded"]));

    let c = case(&v, "x.msg.new, text with non-ASCII");
    let m = ChatMessage::new(
        vr,
        Some(msg_id_of(c)),
        ChatEvent::MsgNew(MsgContainer::simple(MsgContent::text(&text_of(c)))),
    );
    assert_eq!(m.encode(), hex(&c["encoded"]));

    let c = case(&v, "x.msg.new offering a file");
    let j: Value = serde_json::from_str(str_of(&c["encoded_text"])).unwrap();
    let f = &j["params"]["file"];
    let mut container = MsgContainer::simple(MsgContent::File { text: text_of(c) });
    container.file = Some(FileInvitation::xftp(
        str_of(&f["fileName"]),
        u64_at(&f["fileSize"]),
    ));
    let m = ChatMessage::new(
        vr,
        Some(SharedMsgId(hex(&c["shared_msg_id"]))),
        ChatEvent::MsgNew(container),
    );
    assert_eq!(m.encode(), hex(&c["encoded"]));

    let c = case(&v, "x.ok");
    assert_eq!(
        ChatMessage::new(vr, None, ChatEvent::Ok).encode(),
        hex(&c["encoded"])
    );

    let c = case(&v, "batch of two");
    let bodies: Vec<Vec<u8>> = all_ok(&hex(&c["encoded"]))
        .iter()
        .map(|m| m.encode())
        .collect();
    let batches = batch_messages(&bodies, MAX_ENCODED_MSG_LENGTH);
    assert_eq!(batches.len(), 1);
    let b = batches[0].as_ref().unwrap();
    assert_eq!(b.items, 0..2);
    assert_eq!(b.body, hex(&c["encoded"]));
}

/// The description of the 14000-part case split at 14000 is that one part;
/// split at 200 it gives `all_parts` (numbers, completeness, lengths in
/// characters), the first and last of which are the two 200-part cases;
/// the parts reassemble to the description.
#[test]
fn file_description_parts() {
    let v = vectors();
    let whole = case(&v, "x.msg.file.descr part 1 of 1");
    let whole_msg = &all_ok(&hex(&whole["encoded"]))[0];
    let (msg_id, descr) = match &whole_msg.event {
        ChatEvent::MsgFileDescr { msg_id, file_descr } => (msg_id.clone(), file_descr.clone()),
        e => panic!("unexpected {e:?}"),
    };
    let text = descr.text.clone();
    let events = file_descr_events(&msg_id, &text, XFTP_DESCR_PART_SIZE);
    assert_eq!(events.len(), 1);
    let m = ChatMessage::new(SUPPORTED_CHAT_VRANGE, None, events[0].clone());
    assert_eq!(m.encode(), hex(&whole["encoded"]));

    let first = case(&v, "x.msg.file.descr split with part size 200 (");
    let last = case(&v, "x.msg.file.descr split with part size 200 - last");
    let parts = split_file_descr(&text, 200);
    assert_eq!(parts.len() as u64, u64_at(&first["parts_total"]));
    let expected = cases(first, "all_parts");
    assert_eq!(parts.len(), expected.len());
    for (p, e) in parts.iter().zip(expected) {
        assert_eq!(p.part_no as u64, u64_at(&e["part_no"]));
        assert_eq!(Some(p.complete), e["complete"].as_bool());
        assert_eq!(p.text.chars().count() as u64, u64_at(&e["text_length"]));
    }
    let events = file_descr_events(&msg_id, &text, 200);
    for (ev, c) in [(&events[0], first), (events.last().unwrap(), last)] {
        let m = ChatMessage::new(SUPPORTED_CHAT_VRANGE, None, ev.clone());
        assert_eq!(m.encode(), hex(&c["encoded"]), "{}", str_of(&c["name"]));
    }

    let mut asm =
        FileDescrAssembler::from_offer(&FileDescr::placeholder(), DEFAULT_MAX_FILE_DESCR_LENGTH)
            .unwrap();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(asm.push(p).unwrap(), i + 1 == parts.len());
    }
    assert_eq!(asm.text(), Some(text.as_str()));
}

/// Both compression examples decode to `body` (whose message re-encodes to
/// `body`); the passthrough one is what our encoder makes; for the zstd one
/// (not canonical bytes) the frame is `zstd_frame`, our own compression of
/// `body` decodes back to it, and a limit below the body's size is refused.
#[test]
fn compression_framing() {
    let v = vectors();
    for c in cases(&v, "compression") {
        let name = str_of(&c["name"]);
        let body = hex(&c["body"]);
        let encoded = hex(&c["encoded"]);
        assert_eq!(encoded[0], b'X', "{name}");
        let items = decode_compressed_batch(&encoded[1..]).unwrap();
        assert_eq!(items.len(), 1, "{name}");
        let layout = str_of(&c["layout"]);
        match &items[0] {
            Compressed::Passthrough(b) => {
                assert!(layout.contains("'0'"), "{name}");
                assert_eq!(b, &body);
                assert_eq!(compressed_batch_body(&body).unwrap(), encoded, "{name}");
            }
            Compressed::Zstd(frame) => {
                assert!(layout.contains("'1'"), "{name}");
                assert_eq!(frame, &hex(&c["zstd_frame"]), "{name}");
                assert_eq!(
                    decompress(frame, MAX_DECOMPRESSED_MSG_LENGTH).unwrap(),
                    body
                );
                assert_eq!(
                    decompress(frame, body.len() - 1),
                    Err(ChatError::DecompressedTooLarge {
                        limit: body.len() - 1
                    })
                );
                let ours = compressed_batch_body(&body).unwrap();
                let back = decode_compressed_batch(&ours[1..]).unwrap();
                assert_eq!(
                    back[0].decompress(MAX_DECOMPRESSED_MSG_LENGTH).unwrap(),
                    body
                );
            }
        }
        let msgs = all_ok(&encoded);
        assert_eq!(msgs.len(), 1, "{name}");
        assert_eq!(msgs[0].encode(), body, "{name}");
    }
}

/// Each outside literal parses; our encoding is the vector's `ours`; it is
/// byte-equal and value-equal to the literal exactly as the vector says.
#[test]
fn outside_samples() {
    let v = vectors();
    for s in cases(&v, "outside_samples") {
        let literal = str_of(&s["literal"]);
        let ours = str_of(&s["ours"]);
        let msgs = all_ok(literal.as_bytes());
        assert_eq!(msgs.len(), 1);
        let lv: Value = serde_json::from_str(literal).unwrap();
        check_typed(&msgs[0], &lv);
        let encoded = msgs[0].encode();
        assert_eq!(
            String::from_utf8(encoded.clone()).unwrap(),
            ours,
            "{literal}"
        );
        assert_eq!(
            encoded == literal.as_bytes(),
            s["byte_equal"].as_bool().unwrap(),
            "{literal}"
        );
        let ev: Value = serde_json::from_slice(&encoded).unwrap();
        assert_eq!(ev == lv, s["value_equal"].as_bool().unwrap(), "{literal}");
    }
}
