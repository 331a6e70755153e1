//! Unit tests for what the vectors do not reach: error paths, limits,
//! batching order, reassembly rules and the zstd bounds.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::compression::MAX_LENGTH_PASSTHROUGH;
use super::*;

fn msg(json: &str) -> Result<ChatMessage, ChatError> {
    ChatMessage::decode(json.as_bytes())
}

fn field_err(field: &'static str, problem: FieldProblem) -> ChatError {
    ChatError::Field { field, problem }
}

fn text_msg(text: &str) -> ChatMessage {
    ChatMessage::new(
        SUPPORTED_CHAT_VRANGE,
        Some(SharedMsgId(vec![7; 12])),
        ChatEvent::MsgNew(MsgContainer::simple(MsgContent::text(text))),
    )
}

/// Deterministic text that zstd cannot shrink much (base64-like letters).
fn noisy_text(n: usize) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ALPHA[(x % 64) as usize] as char
        })
        .collect()
}

#[test]
fn aeson_escapes_and_key_order() {
    let j = r#"{"v":"1-18","event":"x.future","params":{"b":5.0,"a":{"z":null,"y":["\u0001\b\f\t\n\r\"\\/\u007f é"]}}}"#;
    let m = msg(j).unwrap();
    assert!(matches!(m.event, ChatEvent::Unknown { .. }));
    let out = String::from_utf8(m.encode()).unwrap();
    assert_eq!(
        out,
        "{\"v\":\"1-18\",\"event\":\"x.future\",\"params\":{\"a\":{\"y\":[\"\\u0001\\u0008\\u000c\\t\\n\\r\\\"\\\\/\u{7f} é\"],\"z\":null},\"b\":5}}"
    );
    assert!(!is_reference_event("x.future"));
    assert!(is_reference_event("x.info.probe"));
}

#[test]
fn envelope_errors_are_typed() {
    assert!(matches!(msg("{\"v\":"), Err(ChatError::Json(_))));
    assert!(matches!(
        msg("[1]"),
        Err(ChatError::Field {
            field: "message",
            ..
        })
    ));
    assert_eq!(
        msg(r#"{"v":"1","event":"x.ok"}"#),
        Err(field_err("params", FieldProblem::Missing))
    );
    assert_eq!(
        msg(r#"{"v":"1","event":"x.ok","params":[]}"#),
        Err(field_err("params", FieldProblem::WrongType("object")))
    );
    assert_eq!(
        msg(r#"{"v":"1","event":"y.ok","params":{}}"#),
        Err(ChatError::BadEventTag("y.ok".into()))
    );
    assert_eq!(
        msg(r#"{"v":"1","event":"x.ok x","params":{}}"#),
        Err(ChatError::BadEventTag("x.ok x".into()))
    );
    assert_eq!(
        msg(r#"{"v":"3-1","event":"x.ok","params":{}}"#),
        Err(ChatError::BadVersionRange("3-1".into()))
    );
    assert_eq!(
        msg(r#"{"v":"1-x","event":"x.ok","params":{}}"#),
        Err(ChatError::BadVersionRange("1-x".into()))
    );
    assert_eq!(
        msg(r#"{"v":"1","msgId":"!!","event":"x.ok","params":{}}"#),
        Err(field_err("msgId", FieldProblem::BadBase64))
    );
    // Without "v" the sender is taken to support version 1 only.
    let m = msg(r#"{"event":"x.ok","params":{}}"#).unwrap();
    assert_eq!(m.chat_vrange, INITIAL_CHAT_VRANGE);
    assert_eq!(m.event, ChatEvent::Ok);
}

#[test]
fn event_params_errors() {
    assert_eq!(
        msg(r#"{"v":"1","event":"x.info","params":{"profile":{"displayName":"a"}}}"#),
        Err(field_err("fullName", FieldProblem::Missing))
    );
    assert_eq!(
        msg(r#"{"v":"1","event":"x.msg.new","params":{"content":{"type":"text"}}}"#),
        Err(field_err("text", FieldProblem::Missing))
    );
    assert_eq!(
        msg(r#"{"v":"1","event":"x.msg.new","params":{}}"#),
        Err(field_err("content", FieldProblem::Missing))
    );
    assert_eq!(
        msg(
            r#"{"v":"1","event":"x.msg.new","params":{"content":{"type":"file","text":""},"file":{"fileName":"a","fileSize":-1}}}"#
        ),
        Err(field_err("fileSize", FieldProblem::OutOfRange))
    );
    assert_eq!(
        msg(
            r#"{"v":"1","event":"x.msg.new","params":{"content":{"type":"file","text":""},"file":{"fileName":"a","fileSize":1,"fileInline":"later"}}}"#
        ),
        Err(field_err("fileInline", FieldProblem::BadValue))
    );
    assert_eq!(
        msg(r#"{"v":"1","event":"x.msg.file.descr","params":{"msgId":"AQID"}}"#),
        Err(field_err("fileDescr", FieldProblem::Missing))
    );
}

#[test]
fn unmodelled_fields_survive_a_round_trip() {
    let j = r#"{"v":"1-18","msgId":"AQIDBA==","event":"x.msg.new","params":{"content":{"json":{"k":1},"text":"t","type":"link"},"file":{"fileDescr":{"fileDescrComplete":false,"fileDescrPartNo":0,"fileDescrText":""},"fileDigest":"AAEC","fileInline":"offer","fileName":"a.jpg","fileSize":10},"live":true,"quote":{"x":1},"ttl":60}}"#;
    let m = msg(j).unwrap();
    let ChatEvent::MsgNew(c) = &m.event else {
        panic!("{m:?}")
    };
    assert_eq!(c.content.tag(), "link");
    assert_eq!(c.content.display_text(), "t");
    assert_eq!((c.ttl, c.live), (Some(60), Some(true)));
    assert!(c.extra.contains_key("quote"));
    let f = c.file.as_ref().unwrap();
    assert_eq!(f.file_digest.as_deref(), Some(&[0u8, 1, 2][..]));
    assert_eq!(f.file_inline, Some(InlineFileMode::Offer));
    assert!(f.is_xftp());
    assert_eq!(m.encode(), j.as_bytes());

    let p = r#"{"v":"1-18","event":"x.info","params":{"profile":{"badge":{"a":[]},"contactLink":"simplex:/contact#/?v=2-7","displayName":"d","fullName":"","image":"data:image/png;base64,AA==","peerType":"bot"}}}"#;
    let m = msg(p).unwrap();
    let ChatEvent::Info(profile) = &m.event else {
        panic!("{m:?}")
    };
    assert_eq!(profile.peer_type.as_deref(), Some("bot"));
    assert!(profile.extra.contains_key("badge"));
    assert_eq!(m.encode(), p.as_bytes());
}

#[test]
fn contact_request_message_needs_both_parts() {
    let j = r#"{"v":"1-18","event":"x.contact","params":{"content":{"text":"hi","type":"text"},"msgId":"AQIDBA==","profile":{"displayName":"b","fullName":""},"welcomeMsgId":"BQY="}}"#;
    let m = msg(j).unwrap();
    let ChatEvent::Contact(r) = &m.event else {
        panic!("{m:?}")
    };
    let (id, content) = r.request_msg.as_ref().unwrap();
    assert_eq!(id.0, [1, 2, 3, 4]);
    assert_eq!(content, &MsgContent::text("hi"));
    assert_eq!(r.welcome_msg_id.as_ref().unwrap().0, [5, 6]);
    assert_eq!(m.encode(), j.as_bytes());
    let only_id = r#"{"v":"1","event":"x.contact","params":{"msgId":"AQIDBA==","profile":{"displayName":"b","fullName":""}}}"#;
    let ChatEvent::Contact(r) = msg(only_id).unwrap().event else {
        panic!()
    };
    assert_eq!(r.request_msg, None);
}

#[test]
fn body_prefixes() {
    let one = text_msg("one").encode();
    let two = text_msg("two").encode();
    assert_eq!(parse_chat_messages(b""), vec![Err(ChatError::Empty)]);
    assert_eq!(
        parse_chat_messages(b"/x"),
        vec![Err(ChatError::UnsupportedElement(b'/'))]
    );
    // '=' binary batch: count, then Large elements.
    let mut bin = vec![b'=', 2];
    for b in [&one, &two] {
        bin.extend_from_slice(&(b.len() as u16).to_be_bytes());
        bin.extend_from_slice(b);
    }
    let got = parse_chat_messages(&bin);
    assert_eq!(got, vec![Ok(text_msg("one")), Ok(text_msg("two"))]);
    bin.push(0);
    assert!(matches!(
        parse_chat_messages(&bin)[..],
        [Err(ChatError::Framing(_))]
    ));
    // One bad element of an array fails alone.
    let mut arr = b"[".to_vec();
    arr.extend_from_slice(&one);
    arr.extend_from_slice(br#",{"v":"1","event":"x.info","params":{}}]"#);
    let got = parse_chat_messages(&arr);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], Ok(text_msg("one")));
    assert_eq!(got[1], Err(field_err("profile", FieldProblem::Missing)));
    assert!(
        matches!(parse_chat_messages(b"[1,"), ref v if matches!(v[..], [Err(ChatError::Json(_))]))
    );
    // Compressed framing errors.
    assert!(matches!(
        parse_chat_messages(b"X\x00")[..],
        [Err(ChatError::Framing(
            crate::encoding::DecodeError::EmptyList
        ))]
    ));
    assert_eq!(
        parse_chat_messages(b"X\x012ab"),
        vec![Err(ChatError::BadCompressedTag(b'2'))]
    );
    assert!(matches!(
        parse_chat_messages(b"X\x010\x02{}extra")[..],
        [Err(ChatError::Framing(_))]
    ));
    // Passthrough of a nested batch is parsed again by its first byte, but
    // a nested 'X' is not.
    let mut nested = vec![b'X', 1, b'0', 0];
    let inner = compressed_batch_body(&one).unwrap();
    nested[3] = inner.len() as u8;
    nested.extend_from_slice(&inner);
    assert_eq!(
        parse_chat_messages(&nested),
        vec![Err(ChatError::UnsupportedElement(b'X'))]
    );
}

#[test]
fn zstd_round_trip_and_bounds() {
    let body = text_msg(&"lorem ipsum ".repeat(2500)).encode();
    assert!(body.len() > MAX_COMPRESSED_MSG_LENGTH);
    let c = Compressed::compress(&body);
    let Compressed::Zstd(frame) = &c else {
        panic!("not compressed")
    };
    assert!(frame.len() < body.len() / 4);
    assert_eq!(c.decompress(MAX_DECOMPRESSED_MSG_LENGTH).unwrap(), body);
    assert_eq!(
        c.decompress(1000),
        Err(ChatError::DecompressedTooLarge { limit: 1000 })
    );
    assert!(matches!(decompress(b"", 10), Err(ChatError::Zstd(_))));
    assert!(matches!(
        decompress(b"not zstd", 10),
        Err(ChatError::Zstd(_))
    ));
    assert!(matches!(
        decompress(&frame[..frame.len() / 2], MAX_DECOMPRESSED_MSG_LENGTH),
        Err(ChatError::Zstd(_))
    ));
    // A skippable frame before the real one is passed over.
    let mut skip = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9];
    skip.extend_from_slice(frame);
    assert_eq!(
        decompress(&skip, MAX_DECOMPRESSED_MSG_LENGTH).unwrap(),
        body
    );
    assert_eq!(
        Compressed::Passthrough(vec![0; 11]).decompress(10),
        Err(ChatError::DecompressedTooLarge { limit: 10 })
    );
    // Short bodies pass through.
    assert_eq!(
        Compressed::compress(&[1; MAX_LENGTH_PASSTHROUGH - 1]),
        Compressed::Passthrough(vec![1; MAX_LENGTH_PASSTHROUGH - 1])
    );
    assert!(matches!(
        Compressed::compress(&[1; MAX_LENGTH_PASSTHROUGH]),
        Compressed::Zstd(_)
    ));
}

#[test]
fn outgoing_sizes_and_compression_decision() {
    let small = text_msg("hi").encode();
    assert_eq!(prepare_message_body(small.clone(), true).unwrap(), small);

    let long = encode_message(&text_msg(&"lorem ipsum ".repeat(1200))).unwrap();
    assert!(long.len() > MAX_COMPRESSED_MSG_LENGTH && long.len() <= MAX_ENCODED_MSG_LENGTH);
    assert_eq!(prepare_message_body(long.clone(), false).unwrap(), long);
    let packed = prepare_message_body(long.clone(), true).unwrap();
    assert_eq!(packed[0], b'X');
    assert!(packed.len() <= MAX_COMPRESSED_MSG_LENGTH);
    assert_eq!(
        parse_chat_messages(&packed),
        vec![Ok(msg(core::str::from_utf8(&long).unwrap()).unwrap())]
    );

    let noisy = text_msg(&noisy_text(20000)).encode();
    assert!(matches!(
        prepare_message_body(noisy, true),
        Err(ChatError::TooLarge {
            limit: MAX_COMPRESSED_MSG_LENGTH,
            ..
        })
    ));
    assert!(matches!(
        encode_message(&text_msg(&"a".repeat(MAX_ENCODED_MSG_LENGTH))),
        Err(ChatError::TooLarge {
            limit: MAX_ENCODED_MSG_LENGTH,
            ..
        })
    ));

    let mut profile = Profile::new("bob");
    profile.image = Some("A".repeat(12000));
    let info = ChatMessage::new(SUPPORTED_CHAT_VRANGE, None, ChatEvent::Info(profile));
    let plain = encode_conn_info(&info, false).unwrap();
    assert!(plain.len() > MAX_COMPRESSED_INFO_LENGTH);
    let packed = encode_conn_info(&info, true).unwrap();
    assert_eq!(packed[0], b'X');
    assert_eq!(parse_chat_messages(&packed), vec![Ok(info.clone())]);
    let mut huge = Profile::new("bob");
    huge.image = Some("A".repeat(MAX_ENCODED_INFO_LENGTH));
    let huge = ChatMessage::new(SUPPORTED_CHAT_VRANGE, None, ChatEvent::Info(huge));
    assert!(matches!(
        encode_conn_info(&huge, true),
        Err(ChatError::TooLarge {
            limit: MAX_ENCODED_INFO_LENGTH,
            ..
        })
    ));
}

#[test]
fn batches_fill_from_the_end() {
    let b = |n: usize| vec![b'{'; n];
    // Two of three fit: the last two share a batch, as in the reference.
    let got = batch_messages(&[b(6), b(6), b(6)], 15);
    assert_eq!(
        got,
        vec![
            Ok(MsgBatch {
                body: b(6),
                items: 0..1
            }),
            Ok(MsgBatch {
                body: encode_json_batch(&[&b(6), &b(6)]),
                items: 1..3
            }),
        ]
    );
    let got = batch_messages(&[b(6), b(20), b(6)], 15);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].as_ref().unwrap().items, 0..1);
    assert_eq!(got[1], Err(ChatError::TooLarge { len: 20, limit: 15 }));
    assert_eq!(got[2].as_ref().unwrap().items, 2..3);
    assert_eq!(batch_messages(&[], 15), vec![]);
    assert_eq!(encode_json_batch(&[]), Vec::<u8>::new());
    // Exactly at the limit: 3 × 4 bytes + 2 commas + 2 brackets = 16.
    let got = batch_messages(&[b(4), b(4), b(4)], 16);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().unwrap().body.len(), 16);
}

#[test]
fn description_split_counts_characters() {
    let parts = split_file_descr("äöü€x", 2);
    let texts: Vec<&str> = parts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["äö", "ü€", "x"]);
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.part_no, p.complete))
            .collect::<Vec<_>>(),
        [(1, false), (2, false), (3, true)]
    );
    assert_eq!(
        split_file_descr("", 14000),
        vec![FileDescr {
            text: String::new(),
            part_no: 1,
            complete: true
        }]
    );
    assert_eq!(split_file_descr("abcd", 4).len(), 1);
}

#[test]
fn assembler_rules() {
    let part = |n: u32, t: &str, complete: bool| FileDescr {
        text: t.into(),
        part_no: n,
        complete,
    };
    assert_eq!(
        FileDescrAssembler::from_offer(&part(1, "", false), 100),
        Err(FileDescrError::FirstPartNotZero(1))
    );
    let mut a = FileDescrAssembler::new(10);
    assert_eq!(a.text(), None);
    assert_eq!(
        a.push(&part(2, "x", false)),
        Err(FileDescrError::OutOfOrder {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(a.push(&part(1, "abc", false)), Ok(false));
    assert_eq!(
        a.push(&part(1, "abc", false)),
        Err(FileDescrError::OutOfOrder {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        a.push(&part(2, "12345678", true)),
        Err(FileDescrError::TooLarge { limit: 10 })
    );
    assert_eq!(a.last_part(), 1);
    assert_eq!(a.push(&part(2, "de", true)), Ok(true));
    assert_eq!(a.text(), Some("abcde"));
    assert_eq!(
        a.push(&part(3, "", true)),
        Err(FileDescrError::AlreadyComplete(3))
    );
    // A complete description carried in the offer itself.
    let a = FileDescrAssembler::from_offer(&part(0, "all", true), 100).unwrap();
    assert_eq!(a.into_text().as_deref(), Some("all"));
    assert_eq!(
        FileDescrAssembler::from_offer(&part(0, "too long", false), 3),
        Err(FileDescrError::TooLarge { limit: 3 })
    );
}

#[test]
fn versions() {
    assert_eq!(vrange_text(&SUPPORTED_CHAT_VRANGE), "1-18");
    assert_eq!(vrange_text(&INITIAL_CHAT_VRANGE), "1");
    assert_eq!(parse_vrange("1-18").unwrap(), SUPPORTED_CHAT_VRANGE);
    assert_eq!(parse_vrange("7").unwrap(), VersionRange::new(7, 7).unwrap());
    for bad in ["", "-", "1-", "-1", "+1", "1-2-3", "70000"] {
        assert!(parse_vrange(bad).is_err(), "{bad}");
    }
    assert_eq!(agent_to_chat_version(4), 1);
    assert_eq!(agent_to_chat_version(7), PQ_ENCRYPTION_COMPRESSION_VERSION);
}
