//! descriptions.json: base64url, FileSize text, the YAML of real
//! descriptions in both directions, validation, decode errors and web
//! fragments; plus the quoting rule, reader rules and robustness properties.

use proptest::prelude::*;
use serde_json::Value;
use smp_core::address::ServerAddress;
use smp_core::encoding::string::{b64_decode, b64_encode};
use smp_core::file::description::{
    DescriptionError, FileChunk, FileChunkReplica, FileDescription, FileParty, FileSize,
    RedirectFileInfo, ReplicaKey, ScalarStyle, UploadedChunk, UploadedFile, ValidFileDescription,
    split_descriptions, yaml_is_special_string, yaml_scalar_style,
};
use smp_core::file::weblink::{
    WebLinkError, decode_fragment, decode_web_link, encode_fragment, fragment_of, inflate_fragment,
    inflate_fragment_with_limit, web_link,
};

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vectors/xftp/descriptions.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read descriptions.json"))
        .expect("parse descriptions.json")
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn description(v: &Value, name: &str) -> Value {
    v["descriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"].as_str().unwrap() == name)
        .unwrap_or_else(|| panic!("no description {name}"))
        .clone()
}

#[test]
fn base64url_cases() {
    let v = vectors();
    for c in v["base64url"].as_array().unwrap() {
        let bytes = hx(&c["bytes"]);
        let text = c["text"].as_str().unwrap();
        assert_eq!(b64_encode(&bytes), text);
        if bytes.is_empty() {
            // The reference's parser refuses empty text (xftp-web decodes it to nothing).
            assert!(b64_decode(text).is_err());
        } else {
            assert_eq!(b64_decode(text).unwrap(), bytes);
        }
    }
    for c in v["base64url_decode_unpadded"].as_array().unwrap() {
        assert_eq!(
            b64_decode(c["text"].as_str().unwrap()).unwrap(),
            hx(&c["bytes"])
        );
    }
}

#[test]
fn file_size_cases() {
    let v = vectors();
    let cases = v["file_size_strings"].as_array().unwrap();
    assert!(cases.len() >= 18);
    for c in cases {
        let n = c["bytes"].as_u64().unwrap();
        let text = c["text"].as_str().unwrap();
        assert_eq!(FileSize(n).to_string(), text);
        assert_eq!(text.parse::<FileSize>().unwrap(), FileSize(n));
    }
    // Any unit is read, not only the canonical one.
    assert_eq!("1024kb".parse::<FileSize>().unwrap(), FileSize(1 << 20));
    assert_eq!("65536".parse::<FileSize>().unwrap(), FileSize(65536));
    for bad in [
        "",
        "kb",
        "1KB",
        "1 kb",
        "1kbx",
        "-1",
        "+1",
        "1.5mb",
        "1tb",
        "99999999999gb",
    ] {
        assert!(bad.parse::<FileSize>().is_err(), "{bad:?}");
    }
}

/// Checks a parsed description against the vector's `parsed` object.
fn assert_parsed(fd: &FileDescription, p: &Value, name: &str) {
    assert_eq!(fd.party.as_str(), p["party"].as_str().unwrap(), "{name}");
    assert_eq!(fd.size, p["size"].as_u64().unwrap(), "{name}");
    assert_eq!(fd.digest, hx(&p["digest"]), "{name}");
    assert_eq!(fd.key.to_vec(), hx(&p["key"]), "{name}");
    assert_eq!(fd.nonce.to_vec(), hx(&p["nonce"]), "{name}");
    assert_eq!(
        u64::from(fd.chunk_size),
        p["chunkSize"].as_u64().unwrap(),
        "{name}"
    );
    let chunks = p["chunks"].as_array().unwrap();
    assert_eq!(fd.chunks.len(), chunks.len(), "{name}");
    for (c, pc) in fd.chunks.iter().zip(chunks) {
        assert_eq!(
            u64::from(c.chunk_no),
            pc["chunkNo"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(c.chunk_size),
            pc["chunkSize"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(c.digest, hx(&pc["digest"]), "{name}");
        let reps = pc["replicas"].as_array().unwrap();
        assert_eq!(c.replicas.len(), reps.len(), "{name}");
        for (r, pr) in c.replicas.iter().zip(reps) {
            assert_eq!(
                r.server.to_string(),
                pr["server"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(r.replica_id, hx(&pr["replicaId"]), "{name}");
            assert_eq!(
                r.replica_key.as_der(),
                hx(&pr["replicaKey"]).as_slice(),
                "{name}"
            );
        }
    }
    match (&fd.redirect, &p["redirect"]) {
        (None, Value::Null) => {}
        (Some(r), pr) => {
            assert_eq!(r.size, pr["size"].as_u64().unwrap(), "{name}");
            assert_eq!(r.digest, hx(&pr["digest"]), "{name}");
        }
        (None, other) => panic!("{name}: expected redirect {other}"),
    }
}

#[test]
fn description_cases_both_directions() {
    let v = vectors();
    let cases = v["descriptions"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for d in cases {
        let name = d["name"].as_str().unwrap();
        let yaml = d["yaml"].as_str().unwrap();
        let fd = FileDescription::from_yaml(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_parsed(&fd, &d["parsed"], name);
        assert_eq!(fd.to_yaml(), yaml, "{name}: YAML must be byte-identical");
        let party = fd.party;
        let valid = ValidFileDescription::from_yaml(yaml, party).unwrap();
        assert_eq!(valid.get(), &fd);
        let other = match party {
            FileParty::Recipient => FileParty::Sender,
            FileParty::Sender => FileParty::Recipient,
        };
        assert_eq!(
            ValidFileDescription::from_yaml(yaml, other),
            Err(DescriptionError::WrongParty {
                expected: other,
                found: party
            })
        );
    }
}

/// The sender and recipient descriptions rebuilt from the upload facts
/// (servers, IDs, key seeds) give exactly the vector YAML.
/// The upload facts of the vector file: its file fields and one copy of
/// each chunk, on the server the vector put it on.
fn vector_upload(v: &Value) -> (UploadedFile, Vec<UploadedChunk>) {
    let f = &v["file"];
    let servers: Vec<ServerAddress> = f["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| ServerAddress::parse(s.as_str().unwrap()).unwrap())
        .collect();
    let sizes: Vec<u32> = f["chunk_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap() as u32)
        .collect();
    let key_of = |x: &Value| ReplicaKey::from_ed25519_seed(&hx(&x["key_seed"]).try_into().unwrap());
    let chunks: Vec<UploadedChunk> = f["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| UploadedChunk {
            chunk_no: r["chunk_no"].as_u64().unwrap() as u32,
            chunk_size: sizes[i],
            digest: hx(&f["chunk_digests_sha256"][i]),
            server: servers[f["chunk_server_index"][i].as_u64().unwrap() as usize].clone(),
            sender_id: hx(&r["sender"]["id"]),
            sender_key: key_of(&r["sender"]),
            recipients: r["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (hx(&x["id"]), key_of(x)))
                .collect(),
        })
        .collect();
    let file = UploadedFile {
        size: f["enc_size"].as_u64().unwrap(),
        digest: hx(&f["encrypted_sha512"]),
        key: hx(&f["key"]).try_into().unwrap(),
        nonce: hx(&f["nonce"]).try_into().unwrap(),
        chunk_size: sizes[0],
        redirect: None,
    };
    (file, chunks)
}

#[test]
fn split_descriptions_rebuilds_the_vectors() {
    let v = vectors();
    let (file, chunks) = vector_upload(&v);
    let (rcvs, snd) = split_descriptions(&file, &chunks).unwrap();
    assert_eq!(rcvs.len(), 2);
    assert_eq!(
        snd.to_yaml(),
        description(&v, "sender")["yaml"].as_str().unwrap()
    );
    assert_eq!(
        rcvs[0].to_yaml(),
        description(&v, "recipient 1")["yaml"].as_str().unwrap()
    );
    assert_eq!(
        rcvs[1].to_yaml(),
        description(&v, "recipient 2")["yaml"].as_str().unwrap()
    );
    for d in rcvs.iter().chain([&snd]) {
        d.clone().validate().unwrap();
    }
    // Uneven recipient lists are refused.
    let mut uneven = chunks.clone();
    uneven[2].recipients.pop();
    assert_eq!(
        split_descriptions(&file, &uneven),
        Err(DescriptionError::RecipientCount {
            chunk_no: 3,
            expected: 2,
            found: 1
        })
    );
}

/// Copies of a chunk on several servers become its replicas, in the order
/// given, in every party's description; the YAML reads back the same and
/// the result is still a valid description of the same file.
#[test]
fn copies_of_a_chunk_become_its_replicas() {
    let v = vectors();
    let (file, chunks) = vector_upload(&v);
    let other =
        ServerAddress::parse("xftp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@localhost:7001")
            .unwrap();
    let mut copies = Vec::new();
    for c in &chunks {
        copies.push(c.clone());
        let mut second = c.clone();
        second.server = other.clone();
        second.sender_id.reverse();
        for r in &mut second.recipients {
            r.0.reverse();
        }
        copies.push(second);
    }
    let (rcvs, snd) = split_descriptions(&file, &copies).unwrap();
    for (d, pick) in rcvs
        .iter()
        .enumerate()
        .map(|(i, d)| (d, Some(i)))
        .chain([(&snd, None)])
    {
        assert_eq!(d.chunks.len(), chunks.len());
        for (fc, c) in d.chunks.iter().zip(&chunks) {
            let id = |copy: &UploadedChunk| match pick {
                Some(i) => copy.recipients[i].0.clone(),
                None => copy.sender_id.clone(),
            };
            let servers: Vec<_> = fc.replicas.iter().map(|r| r.server.clone()).collect();
            assert_eq!(servers, [c.server.clone(), other.clone()]);
            let mut rev = id(c);
            rev.reverse();
            assert_eq!(fc.replicas[0].replica_id, id(c));
            assert_eq!(fc.replicas[1].replica_id, rev);
            assert_eq!(fc.digest, c.digest);
        }
        // YAML groups lines by server (in server order, as the reference
        // writes it), so a chunk's replicas read back in that order: the
        // same replicas, and from then on the same description.
        let back = FileDescription::from_yaml(&d.to_yaml()).unwrap();
        assert_eq!(FileDescription::from_yaml(&back.to_yaml()).unwrap(), back);
        for (b, c) in back.chunks.iter().zip(&d.chunks) {
            let mut want = c.replicas.clone();
            want.sort_by(|x, y| x.server.cmp(&y.server));
            assert_eq!(b.replicas, want);
        }
        back.validate().unwrap();
    }
    // Copies that disagree on the chunk's digest are refused.
    let mut bad = copies.clone();
    bad[3].digest[0] ^= 1;
    assert_eq!(
        split_descriptions(&file, &bad),
        Err(DescriptionError::DifferentSizeOrDigest(2))
    );
}

#[test]
fn validation_cases() {
    let v = vectors();
    let base = FileDescription::from_yaml(description(&v, "recipient 1")["yaml"].as_str().unwrap())
        .unwrap();
    let cases = v["validation"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["case"].as_str().unwrap();
        let mut fd = base.clone();
        match name {
            "valid (recipient 1)" => {}
            "chunk 2 renumbered to 5" => fd.chunks[1].chunk_no = 5,
            "size changed to 999" => fd.size = 999,
            other => panic!("unknown validation case {other:?}"),
        }
        let r = fd.validate();
        match c["result"].as_str() {
            None => assert!(r.is_ok(), "{name}"),
            Some("chunk numbers are not sequential") => {
                assert_eq!(
                    r,
                    Err(DescriptionError::ChunkNumbersNotSequential(4)),
                    "{name}"
                )
            }
            Some("chunks total size is different than file size") => assert_eq!(
                r,
                Err(DescriptionError::TotalSizeMismatch {
                    file: 999,
                    chunks: 655360
                }),
                "{name}"
            ),
            Some(other) => panic!("unknown result {other:?}"),
        }
    }
}

#[test]
fn decode_error_cases() {
    let v = vectors();
    let cases = v["decode_errors"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    for c in cases {
        let r = FileDescription::from_yaml(c["yaml"].as_str().unwrap());
        assert_eq!(c["error"].as_str().unwrap(), "no digest for chunk");
        assert_eq!(r, Err(DescriptionError::NoDigestForChunk(1)));
    }
}

#[test]
fn web_fragment_cases() {
    let v = vectors();
    let cases = v["web_fragments"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["description"].as_str().unwrap();
        let frag = c["fragment"].as_str().unwrap();
        let yaml = c["yaml"].as_str().unwrap();
        assert_eq!(inflate_fragment(frag).unwrap(), yaml, "{name}");
        let fd = decode_fragment(frag).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(fd.get(), &FileDescription::from_yaml(yaml).unwrap());
        // Unpadded and link forms.
        let unpadded = frag.trim_end_matches('=');
        assert_eq!(decode_fragment(unpadded).unwrap(), fd, "{name}");
        assert_eq!(
            decode_web_link(&format!("https://h.example/#{frag}")).unwrap(),
            fd
        );
        assert_eq!(
            decode_web_link(&format!("http://h.example#{unpadded}")).unwrap(),
            fd
        );
        // Our own fragment decodes back to the same YAML.
        let ours = encode_fragment(&fd);
        assert_eq!(inflate_fragment(&ours).unwrap(), yaml, "{name}");
        assert_eq!(decode_fragment(&ours).unwrap(), fd);
        // Link host: first host of chunk 1's first replica, port dropped.
        let link = web_link(&fd).unwrap();
        let host = fd.chunks[0].replicas[0].server.hosts()[0].to_string();
        assert_eq!(link, format!("https://{host}/#{ours}"));
        assert_eq!(decode_web_link(&link).unwrap(), fd);
    }
    let r1 = decode_fragment(cases[0]["fragment"].as_str().unwrap()).unwrap();
    assert!(
        web_link(&r1)
            .unwrap()
            .starts_with("https://xftp1.example.com/#")
    );
}

#[test]
fn web_fragment_error_cases() {
    let v = vectors();
    let cases = v["web_fragment_errors"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    for c in cases {
        let frag = c["fragment"].as_str().unwrap();
        assert!(inflate_fragment(frag).is_ok());
        assert_eq!(
            decode_fragment(frag),
            Err(WebLinkError::Description(
                DescriptionError::ChunkNumbersNotSequential(4)
            ))
        );
    }
}

#[test]
fn web_link_errors() {
    let v = vectors();
    let sender =
        FileDescription::from_yaml(description(&v, "sender")["yaml"].as_str().unwrap()).unwrap();
    // A sender description in a link is refused.
    assert!(matches!(
        decode_fragment(&encode_fragment(&sender)),
        Err(WebLinkError::Description(
            DescriptionError::WrongParty { .. }
        ))
    ));
    assert_eq!(fragment_of("https://host/"), Err(WebLinkError::NoFragment));
    assert_eq!(fragment_of("https://host/#"), Err(WebLinkError::NoFragment));
    assert_eq!(fragment_of("abc"), Ok("abc"));
    assert_eq!(decode_fragment("!!"), Err(WebLinkError::Base64));
    assert_eq!(decode_fragment("AAAA"), Err(WebLinkError::Inflate));
    let mut empty = sender.clone();
    empty.chunks.clear();
    assert_eq!(web_link(&empty), Err(WebLinkError::NoChunks));
    // A deflate bomb stops at the limit instead of allocating.
    let bomb = b64_encode(&miniz_oxide::deflate::compress_to_vec(
        &vec![b'a'; 1 << 20],
        9,
    ));
    assert_eq!(
        inflate_fragment_with_limit(&bomb, 4096),
        Err(WebLinkError::TooLarge(4096))
    );
    assert_eq!(
        inflate_fragment_with_limit(&bomb, 2 << 20).unwrap().len(),
        1 << 20
    );
}

// ----------------------------------------------------------- reader rules

const FIXTURE_NAME: &str =
    "upstream fixture tests/fixtures/file_description.yaml (2 replicas per chunk)";

fn fixture() -> String {
    description(&vectors(), FIXTURE_NAME)["yaml"]
        .as_str()
        .unwrap()
        .to_string()
}

fn err(yaml: &str) -> DescriptionError {
    FileDescription::from_yaml(yaml).expect_err("must fail")
}

#[test]
fn reader_rules() {
    let y = fixture();
    // The fixture also validates: 3 × 8mb + 2mb = 26mb.
    ValidFileDescription::from_yaml(&y, FileParty::Recipient).unwrap();

    // Key must be 32 bytes.
    let short_key = y.replace("00n8p1tJq5E-SGnHcYTOrS4A9I07gTA_WFD6MTFFFOY=", "YWJj");
    assert_eq!(err(&short_key), DescriptionError::KeyLength(3));
    // Nonce is normalised: short is zero-padded, long is cut.
    let short_nonce = y.replace("dPSF-wrQpDiK_K6sYv0BDBZ9S4dg-jmu", "YWJj");
    let fd = FileDescription::from_yaml(&short_nonce).unwrap();
    assert_eq!(&fd.nonce[..3], b"abc");
    assert!(fd.nonce[3..].iter().all(|&b| b == 0));
    let long = b64_encode(&[7u8; 30]);
    let fd =
        FileDescription::from_yaml(&y.replace("dPSF-wrQpDiK_K6sYv0BDBZ9S4dg-jmu", &long)).unwrap();
    assert_eq!(fd.nonce, [7u8; 24]);
    // Servers must not carry basic auth, and must be xftp.
    let auth = y.replace(
        "xftp://abc=@example2.com",
        "xftp://abc=:secret@example2.com",
    );
    assert_eq!(
        err(&auth),
        DescriptionError::ServerWithBasicAuth("xftp://abc=:secret@example2.com".into())
    );
    let smp = y.replace("xftp://abc=@example2.com", "smp://abc=@example2.com");
    assert!(matches!(err(&smp), DescriptionError::Server { .. }));
    // Replicas of one chunk disagreeing on digest or size.
    let digest = y.replace(
        "  - 3:YWJj:MC4CAQAwBQYDK2VwBCIEIDfEfevydXXfKajz3sRkcQ7RPvfWUPoq6pu1TYHV1DEe\n",
        "  - 3:YWJj:MC4CAQAwBQYDK2VwBCIEIDfEfevydXXfKajz3sRkcQ7RPvfWUPoq6pu1TYHV1DEe:Z2hq\n",
    );
    assert_eq!(err(&digest), DescriptionError::DifferentSizeOrDigest(3));
    let size = y.replace(
        "  - 4:YWJj:MC4CAQAwBQYDK2VwBCIEIDfEfevydXXfKajz3sRkcQ7RPvfWUPoq6pu1TYHV1DEe\n",
        "  - 4:YWJj:MC4CAQAwBQYDK2VwBCIEIDfEfevydXXfKajz3sRkcQ7RPvfWUPoq6pu1TYHV1DEe:Z2hp:4mb\n",
    );
    assert_eq!(err(&size), DescriptionError::DifferentSizeOrDigest(4));
    // A size on one replica and none on another is no conflict (only given values are compared).
    let one_size = y.replacen(
        "  - 1:YWJj:MC4CAQAwBQYDK2VwBCIEIDfEfevydXXfKajz3sRkcQ7RPvfWUPoq6pu1TYHV1DEe\n",
        "  - 1:YWJj:MC4CAQAwBQYDK2VwBCIEIDfEfevydXXfKajz3sRkcQ7RPvfWUPoq6pu1TYHV1DEe:Z2hp:4mb\n",
        1,
    );
    assert_eq!(
        FileDescription::from_yaml(&one_size).unwrap().chunks[0].chunk_size,
        4 << 20
    );
    // Non-sequential chunks and size mismatch are found by validation.
    let gap = y.replace("  - 4:YWJj", "  - 5:YWJj");
    let fd = FileDescription::from_yaml(&gap).unwrap();
    assert_eq!(
        fd.validate(),
        Err(DescriptionError::ChunkNumbersNotSequential(4))
    );
    let total = y.replace("size: 26mb", "size: 27mb");
    assert_eq!(
        ValidFileDescription::from_yaml(&total, FileParty::Recipient),
        Err(DescriptionError::TotalSizeMismatch {
            file: 27 << 20,
            chunks: 26 << 20
        })
    );
    // Party.
    assert_eq!(
        err(&y.replace("party: recipient", "party: bob")),
        DescriptionError::UnknownParty("bob".into())
    );
    assert_eq!(
        err(&y.replace("party: recipient\n", "")),
        DescriptionError::MissingField("party")
    );
    // A bad replica key.
    let bad_key = y.replacen(
        "MC4CAQAwBQYDK2VwBCIEIDfEfevydXXfKajz3sRkcQ7RPvfWUPoq6pu1TYHV1DEe",
        "YWJj",
        1,
    );
    assert_eq!(err(&bad_key), DescriptionError::ReplicaKey);
    assert!(matches!(
        err(&y.replacen(":Z2hp\n", ":Z2hp:xyz\n", 1)),
        DescriptionError::ReplicaLine(_)
    ));
    // Hostile nesting is an error, not a stack overflow.
    for deep in [
        "- ".repeat(100_000) + "a",
        "[".repeat(100_000),
        "{a: ".repeat(100_000),
    ] {
        assert!(matches!(err(&deep), DescriptionError::Yaml(_)));
    }
    // Not YAML / not a mapping.
    assert!(matches!(err("a: [b"), DescriptionError::Yaml(_)));
    assert_eq!(err("- a\n- b\n"), DescriptionError::NotAMapping);
    assert!(matches!(err(""), DescriptionError::Yaml(_)));
}

#[test]
fn reader_follows_data_yaml_scalar_types() {
    let y = fixture();
    // A bare-digit size is a YAML number, which the reference refuses; quoted it is a string.
    let fd = FileDescription::from_yaml(&y).unwrap();
    let mut small = fd.clone();
    small.chunk_size = 1000;
    small.size = 1000;
    small.chunks.truncate(1);
    small.chunks[0].chunk_size = 1000;
    let text = small.to_yaml();
    assert!(text.contains("chunkSize: '1000'\n"), "{text}");
    assert!(text.contains("size: '1000'\n"), "{text}");
    assert_eq!(FileDescription::from_yaml(&text).unwrap(), small);
    assert_eq!(
        err(&text.replace("size: '1000'", "size: 1000")),
        DescriptionError::WrongType {
            field: "size",
            expected: "a string"
        }
    );
    // Data.Yaml reads a plain `yes` as a bool: not a string field.
    assert!(matches!(
        err(&y.replace("digest: YWJj", "digest: yes")),
        DescriptionError::WrongType {
            field: "digest",
            ..
        }
    ));
    assert_eq!(
        FileDescription::from_yaml(&y.replace("digest: YWJj", "digest: !!str yes"))
            .unwrap()
            .digest,
        b64_decode("yes").unwrap()
    );
    // Redirect: the size is an integer, `null` means none.
    let with_null = y.replace("party: recipient\n", "party: recipient\nredirect: null\n");
    assert_eq!(
        FileDescription::from_yaml(&with_null).unwrap().redirect,
        None
    );
    let redirect = y.replace(
        "party: recipient\n",
        "party: recipient\nredirect:\n  digest: YWJj\n  size: 1e3\n",
    );
    assert_eq!(
        FileDescription::from_yaml(&redirect).unwrap().redirect,
        Some(RedirectFileInfo {
            size: 1000,
            digest: b"abc".to_vec()
        })
    );
    for bad in ["'1000'", "-5", "1.5", "abc"] {
        let r = y.replace(
            "party: recipient\n",
            &format!("party: recipient\nredirect:\n  digest: YWJj\n  size: {bad}\n"),
        );
        assert!(
            matches!(
                err(&r),
                DescriptionError::WrongType {
                    field: "redirect.size",
                    ..
                }
            ),
            "{bad}"
        );
    }
    // Unknown keys are ignored, as aeson does.
    FileDescription::from_yaml(&format!("extra: 1\n{y}")).unwrap();
    // No chunks at all.
    let mut none = fd.clone();
    none.chunks.clear();
    assert!(none.to_yaml().contains("\nreplicas: []\n"));
    assert_eq!(FileDescription::from_yaml(&none.to_yaml()).unwrap(), none);
}

#[test]
fn quoting_rule() {
    for s in [
        "1000", "0", "-5", "+5", "1.5", "1e5", "1E-5", "0x1F", "0o17", "true", "True", "TRUE", "y",
        "n", "yes", "No", "ON", "off", "null", "Null", "~", "*",
    ] {
        assert!(yaml_is_special_string(s), "{s}");
        assert_eq!(yaml_scalar_style(s), ScalarStyle::SingleQuoted, "{s}");
    }
    for s in [
        "64kb",
        "0gb",
        "1025mb",
        "tRue",
        "nulls",
        "1.",
        ".5",
        "0x",
        "0xg",
        "0o8",
        "1e",
        "YWJj",
        "abc=",
        "1:YWJj:abc",
        "xftp://abc=@example1.com",
        "-abc",
        "a#b",
        "a:b",
    ] {
        assert!(!yaml_is_special_string(s), "{s}");
        assert_eq!(yaml_scalar_style(s), ScalarStyle::Plain, "{s}");
    }
    // Texts libyaml cannot leave plain.
    for s in [
        "#a", "-", "- a", "a:", "a: b", "a #b", "---x", "&a", "*a", "'a", " a", "a ",
    ] {
        assert_eq!(yaml_scalar_style(s), ScalarStyle::SingleQuoted, "{s:?}");
    }
    for s in ["a\tb", "a\nb", "a\u{1}b", "😀"] {
        assert_eq!(yaml_scalar_style(s), ScalarStyle::DoubleQuoted, "{s:?}");
    }
    // A base64 digest that reads as a number is written quoted and read back.
    let y = fixture().replace("digest: YWJj\n", "digest: '1234'\n");
    let fd = FileDescription::from_yaml(&y).unwrap();
    assert_eq!(fd.digest, b64_decode("1234").unwrap());
    assert_eq!(fd.to_yaml(), y);
}

/// Replica groups are ordered by the reference's server `Ord`, not by text.
#[test]
fn replica_groups_sorted_by_server_ord() {
    let y = fixture();
    let mut fd = FileDescription::from_yaml(&y).unwrap();
    let dom = ServerAddress::parse_lenient("xftp://abc=@a.example.com").unwrap();
    let ip = ServerAddress::parse_lenient("xftp://abc=@9.9.9.9:8443").unwrap();
    let ip_low = ServerAddress::parse_lenient("xftp://abc=@10.0.0.1").unwrap();
    fd.chunks[0].replicas[0].server = dom.clone();
    fd.chunks[1].replicas[0].server = ip.clone();
    fd.chunks[2].replicas[0].server = ip_low.clone();
    let text = fd.to_yaml();
    let servers: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  server: "))
        .collect();
    // IPv4 before domains, IPv4 numerically (9 < 10), then domains by text.
    assert_eq!(
        servers,
        [
            "xftp://abc=@9.9.9.9:8443",
            "xftp://abc=@10.0.0.1",
            "xftp://abc=@a.example.com",
            "xftp://abc=@example2.com",
            "xftp://abc=@example3.com",
            "xftp://abc=@example4.com",
        ]
    );
    // Digest stays on the first replica of each chunk wherever its group lands.
    let back = FileDescription::from_yaml(&text).unwrap();
    back.validate().unwrap();
}

// ----------------------------------------------------------- properties

fn server_pool() -> Vec<ServerAddress> {
    [
        "xftp://abc=@example1.com",
        "xftp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@xftp1.example.com:443",
        "xftp://fu57dXYNNxpNqTSvyCSKjwH0cNO_7vW1HAtLR9WMxfc=@1.2.3.4,abc.onion:5443",
        "xftp://fu57dXYNNxpNqTSvyCSKjwH0cNO_7vW1HAtLR9WMxfc=@[2001:db8::1]",
    ]
    .iter()
    .map(|s| ServerAddress::parse_lenient(s).unwrap())
    .collect()
}

fn bytes(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), min..=max)
}

/// (server index, replica id, key seed)
type ReplicaSpec = (usize, Vec<u8>, [u8; 32]);

fn chunk_strategy() -> impl Strategy<Value = (u32, Vec<u8>, Vec<ReplicaSpec>)> {
    (
        prop_oneof![Just(65536u32), Just(262144), Just(4194304), any::<u32>()],
        bytes(1, 40),
        proptest::collection::vec((0usize..4, bytes(1, 24), any::<[u8; 32]>()), 1..4),
    )
}

fn description_strategy() -> impl Strategy<Value = FileDescription> {
    (
        prop_oneof![Just(FileParty::Recipient), Just(FileParty::Sender)],
        bytes(1, 64),
        any::<[u8; 32]>(),
        any::<[u8; 24]>(),
        prop_oneof![Just(65536u32), Just(262144), any::<u32>()],
        proptest::collection::vec(chunk_strategy(), 0..5),
        proptest::option::of((0u64..=i64::MAX as u64, bytes(1, 64))),
    )
        .prop_map(
            |(party, digest, key, nonce, chunk_size, chunks, redirect)| {
                let pool = server_pool();
                let chunks: Vec<FileChunk> = chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, (size, digest, reps))| {
                        let mut replicas: Vec<FileChunkReplica> = reps
                            .into_iter()
                            .map(|(s, id, seed)| FileChunkReplica {
                                server: pool[s].clone(),
                                replica_id: id,
                                replica_key: ReplicaKey::from_ed25519_seed(&seed),
                            })
                            .collect();
                        // Reading groups replicas by server, so only this order round-trips.
                        replicas.sort_by(|a, b| a.server.cmp(&b.server));
                        FileChunk {
                            chunk_no: i as u32 + 1,
                            chunk_size: size,
                            digest,
                            replicas,
                        }
                    })
                    .collect();
                FileDescription {
                    party,
                    size: chunks.iter().map(|c| u64::from(c.chunk_size)).sum(),
                    digest,
                    key,
                    nonce,
                    chunk_size,
                    chunks,
                    redirect: redirect.map(|(size, digest)| RedirectFileInfo { size, digest }),
                    parity: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn description_round_trips(fd in description_strategy()) {
        let yaml = fd.to_yaml();
        let back = FileDescription::from_yaml(&yaml).map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        prop_assert_eq!(&back, &fd);
        prop_assert_eq!(back.to_yaml(), yaml);
        prop_assert!(fd.clone().validate().is_ok());
        if fd.party == FileParty::Recipient && !fd.chunks.is_empty() {
            let link = web_link(&fd).unwrap();
            prop_assert_eq!(decode_web_link(&link).unwrap().into_inner(), fd);
        }
    }

    #[test]
    fn file_size_round_trips(n in any::<u64>()) {
        prop_assert_eq!(FileSize(n).to_string().parse::<FileSize>(), Ok(FileSize(n)));
    }

    #[test]
    fn file_size_random_text_never_panics(s in "\\PC{0,24}") {
        let _ = s.parse::<FileSize>();
    }

    #[test]
    fn random_yaml_never_panics(s in "\\PC{0,200}") {
        let _ = FileDescription::from_yaml(&s);
    }

    #[test]
    fn mutated_yaml_is_an_error_or_a_description(cut in 0usize..2000, pos in 0usize..2000, byte in 0x20u8..0x7f) {
        let mut y = fixture().into_bytes();
        let cut = cut.min(y.len());
        y.truncate(cut);
        if pos < y.len() { y[pos] = byte; }
        let y = String::from_utf8(y).unwrap();
        if let Ok(fd) = FileDescription::from_yaml(&y) {
            // Whatever is accepted writes out and reads back to itself.
            let again = FileDescription::from_yaml(&fd.to_yaml());
            prop_assert!(again.is_ok());
        }
    }

    #[test]
    fn random_fragments_never_panic(s in "[A-Za-z0-9_=-]{0,200}", raw in bytes(0, 200)) {
        let _ = decode_fragment(&s);
        let _ = decode_web_link(&format!("https://x/#{s}"));
        let _ = decode_fragment(&b64_encode(&raw));
        let _ = decode_fragment(&b64_encode(&miniz_oxide::deflate::compress_to_vec(&raw, 1)));
    }

    #[test]
    fn truncated_fragments_are_errors(cut in 0usize..400) {
        let v = vectors();
        let frag = v["web_fragments"][0]["fragment"].as_str().unwrap();
        let cut = cut.min(frag.len().saturating_sub(8));
        prop_assert!(decode_fragment(&frag[..cut]).is_err());
    }
}

/// A description with parity (our extension): the parity chunks read back
/// exactly, and what the reference's readers see of it is the plain
/// description. Data.Yaml ignores unknown keys and xftp-web reads only
/// unindented `key: value` lines and the `replicas:` block, so the check is:
/// the block is one unindented `parity:` line before `party:` followed by
/// indented lines only, and without it the text is the plain description's.
#[test]
fn parity_block_is_invisible_to_the_reference_readers() {
    let v = vectors();
    let (file, chunks) = vector_upload(&v);
    let n_data = chunks.len();
    let longest = chunks.iter().map(|c| c.chunk_size).max().unwrap();
    // 2 data chunks per group, 1 parity chunk each.
    let groups = n_data.div_ceil(2);
    let parity_chunks: Vec<UploadedChunk> = (0..groups)
        .map(|g| {
            let mut c = chunks[g * 2].clone();
            c.chunk_no = g as u32 + 1;
            c.chunk_size = chunks[g * 2..(g * 2 + 2).min(n_data)]
                .iter()
                .map(|c| c.chunk_size)
                .max()
                .unwrap();
            c.digest = vec![g as u8 + 1; 32];
            c.sender_id.push(0xEE);
            c
        })
        .collect();
    assert!(parity_chunks.iter().any(|c| c.chunk_size == longest));
    let parity = smp_core::file::description::UploadedParity {
        data: 2,
        parity: 1,
        chunks: &parity_chunks,
    };
    let (plain_rcvs, plain_snd) = split_descriptions(&file, &chunks).unwrap();
    let (rcvs, snd) =
        smp_core::file::description::split_descriptions_with_parity(&file, &chunks, Some(parity))
            .unwrap();
    for (with, plain) in rcvs
        .iter()
        .chain([&snd])
        .zip(plain_rcvs.iter().chain([&plain_snd]))
    {
        let yaml = with.to_yaml();
        let back = FileDescription::from_yaml(&yaml).unwrap();
        assert_eq!(&back, with);
        let p = back.clone().validate().unwrap().parity.clone().unwrap();
        assert_eq!((p.data, p.parity, p.chunks.len()), (2, 1, groups));

        let lines: Vec<&str> = yaml.lines().collect();
        let at = lines.iter().position(|l| *l == "parity:").unwrap();
        let end = at
            + 1
            + lines[at + 1..]
                .iter()
                .take_while(|l| l.starts_with("  "))
                .count();
        assert!(lines[end].starts_with("party: "), "{}", lines[end]);
        assert_eq!(lines.iter().filter(|l| l.starts_with("parity")).count(), 1);
        let mut without = lines[..at].to_vec();
        without.extend_from_slice(&lines[end..]);
        assert_eq!(without.join("\n") + "\n", plain.to_yaml());
        // Nothing in the block can be taken for a top-level key by a
        // line reader that strips nothing: every line is indented.
        assert!(lines[at + 1..end].iter().all(|l| l.starts_with("  ")));
    }

    // A parity chunk shorter than its group's longest data chunk, or one
    // missing, does not validate.
    let mut short = rcvs[0].clone();
    let p = short.parity.as_mut().unwrap();
    let g = p
        .chunks
        .iter()
        .position(|c| c.chunk_size == longest)
        .unwrap();
    p.chunks[g].chunk_size = longest / 2;
    assert_eq!(
        short.validate(),
        Err(DescriptionError::ParityChunkSize(g as u32 + 1))
    );
    let mut missing = rcvs[0].clone();
    missing.parity.as_mut().unwrap().chunks.pop();
    assert_eq!(
        missing.validate(),
        Err(DescriptionError::ParityChunks {
            expected: groups,
            found: groups - 1
        })
    );
}
