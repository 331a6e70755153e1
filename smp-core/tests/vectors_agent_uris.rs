//! `vectors/agent/uris.json`: full connection links, queue URIs, e2e
//! parameters and short links, byte-exact in both directions; and short-link
//! resolution with data built here (the file has no short-link data vectors).

mod support;

use serde_json::Value;
use smp_core::address::{Scheme, ServerAddress, TransportHost};
use smp_core::agent::link::{
    ConnLinkData, ConnReqData, ConnectionMode, ConnectionRequest, ContactType,
    FIXED_DATA_PADDED_LEN, FixedLinkData, LinkError, LinkKey, LinkQueryCommand, OwnerAuth,
    OwnerError, ShortLink, ShortLinkScheme, ShortLinkType, USER_DATA_PADDED_LEN, UserContactData,
    UserLinkData, contact_link_kdf, decrypt_link_data, encrypt_link_blob, invitation_link_kdf,
    seal_link_data,
};
use smp_core::agent::x3dh::{E2eParamsUri, KemParams};
use smp_core::crypto::{CbNonce, KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::encoding::{Reader, Writer};
use smp_core::smp::command::QueueMode;
use smp_core::smp::queue_uri::QueueUri;
use support::{agent, cases, hex, str_of};

fn inputs() -> Value {
    agent("uris.json")["reference_test_inputs"].clone()
}

fn range_of(v: &Value) -> (u16, u16) {
    (v[0].as_u64().unwrap() as u16, v[1].as_u64().unwrap() as u16)
}

fn input_hosts(inp: &Value) -> Vec<TransportHost> {
    inp["server_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| TransportHost::parse(str_of(h)).unwrap())
        .collect()
}

/// The reference test's queue: every field but versions and mode is fixed.
fn check_reference_queue(q: &QueueUri, inp: &Value, name: &str) {
    // The chat's old file invitation names one host only.
    let hosts = input_hosts(inp);
    let hosts = if name.starts_with("old invitation") {
        &hosts[..1]
    } else {
        &hosts[..]
    };
    assert_eq!(q.server.hosts(), hosts, "{name}: hosts");
    let port = q.server.port().map(|p| p.to_string());
    let expect_port = if name.contains("no port") {
        None
    } else {
        Some(str_of(&inp["server_port"]).to_string())
    };
    assert_eq!(port, expect_port, "{name}: port");
    assert_eq!(
        q.server.key_hash().as_bytes(),
        hex(&inp["server_keyhash"]),
        "{name}: key hash"
    );
    assert_eq!(q.sender_id, hex(&inp["sender_id"]), "{name}: sender id");
    assert_eq!(
        q.dh_key.to_der(),
        hex(&inp["queue_dh_x25519_der"]),
        "{name}: dh key"
    );
}

/// Percent-decoding for the one vector that is an escaped value on its own.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn reference_test_cases() {
    let v = agent("uris.json");
    let inp = inputs();
    let both_keys = hex(&inp["e2e_x448_der_both_keys"]);
    let mut seen = [0usize; 4];
    for c in cases(&v, "reference_test_cases") {
        let name = str_of(&c["name"]);
        let enc = str_of(&c["encoded"]);
        if enc.starts_with("smp://") {
            seen[0] += 1;
            let q = QueueUri::parse(enc).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_reference_queue(&q, &inp, name);
            let mode = if name.contains("messaging") || name.contains("2-4") {
                Some(QueueMode::Messaging)
            } else if name.contains("contact") {
                Some(QueueMode::Contact)
            } else {
                None
            };
            assert_eq!(q.queue_mode, mode, "{name}: mode");
            assert_eq!(q.to_uri_string(), enc, "{name}");
        } else if enc.starts_with("v%3D") {
            seen[1] += 1;
            let e2e = E2eParamsUri::parse_uri(&percent_decode(enc)).unwrap();
            assert_eq!((e2e.versions.min(), e2e.versions.max()), (1, 1), "{name}");
            assert_eq!(e2e.key1.to_der(), both_keys, "{name}: key1");
            assert_eq!(e2e.key2.to_der(), both_keys, "{name}: key2");
            assert_eq!(e2e.kem, None);
            assert_eq!(percent_encode(&e2e.to_uri_string()), enc, "{name}");
        } else if enc.contains("/invitation#") || enc.contains("/contact#") {
            seen[2] += 1;
            let cr = ConnectionRequest::parse(enc).unwrap_or_else(|e| panic!("{name}: {e}"));
            let data = cr.data();
            let queues = if name.contains("two queues") { 2 } else { 1 };
            assert_eq!(data.queues.len(), queues, "{name}: queues");
            for q in &data.queues {
                check_reference_queue(q, &inp, name);
            }
            let client_data = name.contains("client data").then(|| "{}".to_string());
            assert_eq!(data.client_data, client_data, "{name}: data");
            match &cr {
                ConnectionRequest::Invitation { e2e, .. } => {
                    assert!(name.contains("invitation"), "{name}");
                    assert_eq!(e2e.key1.to_der(), both_keys, "{name}: key1");
                    assert_eq!(e2e.key2.to_der(), both_keys, "{name}: key2");
                }
                ConnectionRequest::Contact(_) => assert!(name.contains("contact"), "{name}"),
            }
            assert_eq!(cr.to_link_string().unwrap(), enc, "{name}");
            // The binary form round-trips too, except that a queue without a
            // mode reads back as a contact queue (`ConnReqUriData` `smpP`).
            let bin = cr.encode().unwrap();
            let back = ConnectionRequest::decode(&bin).unwrap();
            let mut patched = cr.clone();
            for q in &mut patched.data_mut().queues {
                q.queue_mode.get_or_insert(QueueMode::Contact);
            }
            assert_eq!(back, patched, "{name}: binary");
            assert_eq!(back.encode().unwrap(), bin, "{name}: binary again");
        } else {
            seen[3] += 1;
            let l = ShortLink::parse(enc).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(l.link_key.0.to_vec(), hex(&inp["link_key"]), "{name}: key");
            let letter = name.split("type ").nth(1).unwrap().as_bytes()[0];
            match &l.link_type {
                ShortLinkType::Invitation { link_id } => {
                    assert_eq!(letter, b'i', "{name}");
                    assert_eq!(*link_id, hex(&inp["invitation_link_id"]), "{name}: id");
                }
                ShortLinkType::Contact(ct) => {
                    assert_eq!(ct.byte(), letter.to_ascii_uppercase(), "{name}")
                }
            }
            let scheme = if enc.starts_with("simplex:") {
                ShortLinkScheme::Simplex
            } else {
                ShortLinkScheme::Server
            };
            assert_eq!(l.scheme, scheme, "{name}");
            if name.contains("preset") {
                assert_eq!(l.server.hosts(), &input_hosts(&inp)[..1], "{name}");
                assert_eq!(l.server.port(), None, "{name}");
                assert!(l.server.key_hash().as_bytes().is_empty(), "{name}");
            } else {
                assert_eq!(l.server.hosts(), input_hosts(&inp), "{name}");
                assert_eq!(l.server.port(), Some(5223), "{name}");
                assert_eq!(l.server.key_hash().as_bytes(), hex(&inp["server_keyhash"]));
            }
            assert_eq!(l.to_link_string(), enc, "{name}");
            // Binary form (as in relay lists) keeps everything but the scheme.
            let mut w = Writer::new();
            l.write(&mut w).unwrap();
            let bytes = w.into_vec();
            let mut r = Reader::new(&bytes);
            let back = ShortLink::read(&mut r).unwrap();
            r.end().unwrap();
            assert_eq!(
                ShortLink {
                    scheme: l.scheme,
                    ..back
                },
                l,
                "{name}: binary"
            );
        }
    }
    assert_eq!(seen, [6, 1, 6, 8], "cases by kind");
}

fn queue_of(v: &Value) -> (QueueUri, Option<QueueMode>) {
    let (min, max) = range_of(&v["client_version_range"]);
    let mode = match str_of(&v["queue_mode"]) {
        "M" => Some(QueueMode::Messaging),
        "C" => Some(QueueMode::Contact),
        m => panic!("mode {m}"),
    };
    let q = QueueUri {
        client_versions: smp_core::xftp::handshake::VersionRange::new(min, max).unwrap(),
        server: ServerAddress::parse_lenient(str_of(&v["server"])).unwrap(),
        sender_id: hex(&v["sender_id"]),
        dh_key: PublicKey::from_der_as(KeyAlgorithm::X25519, &hex(&v["dh_public_der"])).unwrap(),
        queue_mode: mode,
    };
    (q, mode)
}

/// The link each own_links case describes, built from its fields alone.
fn own_link_from_fields(c: &Value) -> ConnectionRequest {
    let (q, _) = queue_of(&c["queue"]);
    let (min, max) = range_of(&c["agent_version_range"]);
    let data = ConnReqData {
        agent_versions: smp_core::xftp::handshake::VersionRange::new(min, max).unwrap(),
        queues: vec![q],
        client_data: None,
    };
    if c["e2e"].is_null() {
        return ConnectionRequest::Contact(data);
    }
    let e = &c["e2e"];
    let (emin, emax) = range_of(&e["version_range"]);
    let key = |f: &str| PublicKey::from_der_as(KeyAlgorithm::X448, &hex(&e[f])).unwrap();
    let kem = if e["kem"].is_null() {
        None
    } else {
        assert_eq!(str_of(&e["kem"]["type"]), "proposed");
        Some(KemParams::Proposed {
            public: hex(&e["kem"]["kem_public_key"]),
        })
    };
    ConnectionRequest::Invitation {
        data,
        e2e: E2eParamsUri {
            versions: smp_core::xftp::handshake::VersionRange::new(emin, emax).unwrap(),
            key1: key("key1_der"),
            key2: key("key2_der"),
            kem,
        },
    }
}

#[test]
fn own_links_text_and_binary() {
    let v = agent("uris.json");
    for c in cases(&v, "own_links") {
        let name = str_of(&c["name"]);
        let link = str_of(&c["link"]);
        let binary = hex(&c["binary"]);
        assert_eq!(link.len() as u64, c["length"].as_u64().unwrap(), "{name}");
        let built = own_link_from_fields(c);
        // Encoders, from the fields.
        assert_eq!(built.to_link_string().unwrap(), link, "{name}: text");
        assert_eq!(built.encode().unwrap(), binary, "{name}: binary");
        assert_eq!(
            built.first_queue().unwrap().to_uri_string(),
            str_of(&c["queue_uri"]),
            "{name}: queue URI"
        );
        assert_eq!(
            built.first_queue().unwrap().sender_id,
            smp_core::encoding::string::b64_decode(str_of(&c["queue"]["sender_id_b64url"]))
                .unwrap()
        );
        match (built.e2e(), c["e2e_params_uri"].as_str()) {
            (Some(e), Some(s)) => {
                assert_eq!(e.to_uri_string(), s, "{name}: e2e");
                assert_eq!(E2eParamsUri::parse_uri(s).unwrap(), *e, "{name}: e2e parse");
            }
            (None, None) => {}
            _ => panic!("{name}: e2e presence"),
        }
        // Parsers, back to the fields.
        assert_eq!(
            ConnectionRequest::parse(link).unwrap(),
            built,
            "{name}: parse"
        );
        assert_eq!(
            ConnectionRequest::decode(&binary).unwrap(),
            built,
            "{name}: decode"
        );
    }
}

#[test]
fn link_parse_cases() {
    let v = agent("uris.json");
    for c in cases(&v, "link_parse_cases") {
        let note = str_of(&c["note"]);
        let cr =
            ConnectionRequest::parse(str_of(&c["input"])).unwrap_or_else(|e| panic!("{note}: {e}"));
        let vr = cr.data().agent_versions;
        assert_eq!(
            (vr.min(), vr.max()),
            range_of(&c["agent_version_range"]),
            "{note}"
        );
        assert_eq!(
            cr.to_link_string().unwrap(),
            str_of(&c["canonical"]),
            "{note}"
        );
    }
}

#[test]
fn queue_uri_parse_cases() {
    let v = agent("uris.json");
    for c in cases(&v, "queue_uri_parse_cases") {
        let note = str_of(&c["note"]);
        let q = QueueUri::parse(str_of(&c["input"])).unwrap_or_else(|e| panic!("{note}: {e}"));
        assert_eq!(q.to_uri_string(), str_of(&c["canonical"]), "{note}");
    }
}

fn own_link(i: usize) -> String {
    str_of(&cases(&agent("uris.json"), "own_links")[i]["link"]).to_string()
}

#[test]
fn malformed_links_are_refused_with_their_reason() {
    let inv = own_link(0);
    let contact = own_link(2);
    let err = |s: &str| ConnectionRequest::parse(s).unwrap_err();
    assert_eq!(
        err(&inv.replacen("v=2-7&", "", 1)),
        LinkError::MissingVersion
    );
    assert_eq!(err(&inv.replacen("v=2-7", "v=7-2", 1)), LinkError::Version);
    assert_eq!(err(&inv.replacen("v=2-7", "v=x", 1)), LinkError::Version);
    let no_smp = {
        let start = inv.find("&smp=").unwrap();
        let end = inv.find("&e2e=").unwrap();
        format!("{}{}", &inv[..start], &inv[end..])
    };
    assert_eq!(err(&no_smp), LinkError::NoQueues);
    assert_eq!(
        err(&inv.replacen("&smp=smp", "&smp=&x=smp", 1)),
        LinkError::NoQueues
    );
    let no_e2e = &inv[..inv.find("&e2e=").unwrap()];
    assert_eq!(err(no_e2e), LinkError::MissingE2e);
    assert_eq!(
        err(&inv.replacen("/invitation", "/group", 1)),
        LinkError::Mode
    );
    assert_eq!(
        err(&inv.replacen("simplex:", "http:", 1)),
        LinkError::Scheme
    );
    assert_eq!(err(&inv.replacen("#/?", "?", 1)), LinkError::MissingQuery);
    assert_eq!(err(&format!("{inv}%2")), LinkError::Escape);
    assert_eq!(err(&inv.replacen("%3A", "%G1", 1)), LinkError::Escape);
    assert_eq!(err(&format!("{inv} x")), LinkError::Trailing);
    // Bad base64 in the queue's sender ID and in an x3dh key.
    assert!(matches!(
        err(&inv.replacen("%2F1De06x", "%2F%21De06x", 1)),
        LinkError::Queue(_)
    ));
    assert_eq!(
        err(&inv.replacen("x3dh%3DMEIw", "x3dh%3D%21EIw", 1)),
        LinkError::E2eKey
    );
    // One x3dh key only.
    let one_key = {
        let k = inv.find("%2CMEIw").unwrap();
        inv[..k].to_string()
    };
    assert_eq!(err(&one_key), LinkError::E2eKey);
    assert_eq!(
        err(&inv.replacen("e2e=v%3D2-3", "e2e=v%3Dz", 1)),
        LinkError::E2eVersion
    );
    // An empty queue between separators.
    assert!(matches!(
        err(&contact.replacen("&smp=smp", "&smp=%3Bsmp", 1)),
        LinkError::Queue(_)
    ));
    // Binary form: no queues, unknown mode, cut short, trailing bytes.
    let bin = ConnectionRequest::parse(&contact)
        .unwrap()
        .encode()
        .unwrap();
    let mut none = bin[..5].to_vec();
    none.push(0);
    assert_eq!(
        ConnectionRequest::decode(&none).unwrap_err(),
        LinkError::NoQueues
    );
    let mut bad_mode = bin.clone();
    bad_mode[0] = b'X';
    assert!(matches!(
        ConnectionRequest::decode(&bad_mode),
        Err(LinkError::Decode(_))
    ));
    assert!(ConnectionRequest::decode(&bin[..bin.len() - 1]).is_err());
    let mut longer = bin.clone();
    longer.push(b'!');
    assert!(ConnectionRequest::decode(&longer).is_err());
}

#[test]
fn client_data_and_kem_ciphertext_round_trip() {
    let mut cr = ConnectionRequest::parse(&own_link(0)).unwrap();
    cr.data_mut().client_data = Some("{\"a\": \"b c;d&e\"}".to_string());
    let s = cr.to_link_string().unwrap();
    assert!(
        s.ends_with("&data=%7B%22a%22%3A%20%22b%20c%3Bd%26e%22%7D"),
        "{s}"
    );
    assert_eq!(ConnectionRequest::parse(&s).unwrap(), cr);
    assert_eq!(
        ConnectionRequest::decode(&cr.encode().unwrap()).unwrap(),
        cr
    );
    // A '+' reads as a space, as http-types decodes queries.
    let plus = s.replace("%20", "+");
    assert_eq!(ConnectionRequest::parse(&plus).unwrap(), cr);
    // kem_ct is written before kem_key and read back; ignored below version 3.
    let ConnectionRequest::Invitation { e2e, .. } = &mut cr else {
        panic!()
    };
    e2e.kem = Some(KemParams::Accepted {
        ciphertext: vec![1, 2, 3],
        public: vec![4, 5, 6],
    });
    let t = e2e.to_uri_string();
    assert!(t.ends_with("&kem_ct=AQID&kem_key=BAUG"), "{t}");
    assert_eq!(E2eParamsUri::parse_uri(&t).unwrap(), *e2e);
    let v2 = t.replacen("v=2-3", "v=2", 1);
    assert_eq!(E2eParamsUri::parse_uri(&v2).unwrap().kem, None);
}

#[test]
fn malformed_short_links() {
    let base = "https://smp.simplex.im/a#MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
    let err = |s: &str| ShortLink::parse(s).unwrap_err();
    assert_eq!(err(&base.replace("/a#", "/x#")), LinkError::ShortLinkType);
    assert_eq!(err(&base.replace("https:", "ftp:")), LinkError::Scheme);
    assert_eq!(
        err("simplex:/a#MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"),
        LinkError::NoServer
    );
    assert_eq!(err(&base.replace("#MDEy", "#!DEy")), LinkError::Base64);
    assert_eq!(err(&format!("{base}!")), LinkError::Trailing);
    assert_eq!(err(&base.replace("ZWY", "")), LinkError::LinkKeyLength(30));
    assert_eq!(err(&format!("{base}?p=99999")), LinkError::Server);
    assert_eq!(err(&format!("{base}?c=%21")), LinkError::Server);
    assert_eq!(err(&format!("{base}?h=%GG")), LinkError::Escape);
    // An invitation without its link ID.
    assert_eq!(err(&base.replace("/a#", "/i#")), LinkError::Base64);
    // Upper-case contact types are read too, and written in lower case.
    let g = ShortLink::parse(&base.replace("/a#", "/G#")).unwrap();
    assert_eq!(g.link_type, ShortLinkType::Contact(ContactType::Group));
    assert_eq!(g.to_link_string(), base.replace("/a#", "/g#"));
}

// ---- short-link resolution with data built here ----

fn ed25519(label: &str) -> PrivateKey {
    use sha2::Digest;
    let seed = sha2::Sha256::digest(format!("agent-vectors/{label}").as_bytes());
    PrivateKey::from_raw(KeyAlgorithm::Ed25519, &seed).unwrap()
}

fn nonce(n: u8) -> CbNonce {
    CbNonce([n; 24])
}

/// HKDF-SHA512 with an empty salt, written out from RFC 5869 so that the
/// library's derivation is checked against an independent one.
fn rfc5869(ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    use sha2::{Digest, Sha512};
    fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut k = [0u8; 128];
        k[..key.len()].copy_from_slice(key);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha512::new()
            .chain_update(&ipad)
            .chain_update(msg)
            .finalize();
        Sha512::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .to_vec()
    }
    let prk = hmac(&[], ikm);
    let (mut t, mut out, mut i) = (Vec::new(), Vec::new(), 1u8);
    while out.len() < len {
        let mut m = t.clone();
        m.extend_from_slice(info);
        m.push(i);
        t = hmac(&prk, &m);
        out.extend_from_slice(&t);
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn link_key_derivations() {
    let k = LinkKey(hex(&inputs()["link_key"]).try_into().unwrap());
    let okm = rfc5869(&k.0, b"SimpleXContactLink", 56);
    let (id, sb) = contact_link_kdf(&k);
    assert_eq!(id.to_vec(), okm[..24]);
    assert_eq!(sb.0.to_vec(), okm[24..]);
    assert_eq!(
        invitation_link_kdf(&k).0.to_vec(),
        rfc5869(&k.0, b"SimpleXInvLink", 32)
    );
    let contact = ShortLink::parse(str_of(
        &cases(&agent("uris.json"), "reference_test_cases")[13]["encoded"],
    ))
    .unwrap();
    let q = contact.query();
    assert_eq!(q.command, LinkQueryCommand::Lget);
    assert_eq!(q.link_id, okm[..24]);
    let inv = ShortLink::parse(str_of(
        &cases(&agent("uris.json"), "reference_test_cases")[15]["encoded"],
    ))
    .unwrap();
    let q = inv.query();
    assert_eq!(q.command, LinkQueryCommand::Lkey);
    assert_eq!(q.link_id, hex(&inputs()["invitation_link_id"]));
    assert_eq!(q.key, invitation_link_kdf(&inv.link_key));
}

/// A link creator's side: the fixed data, the link, and the server's two blobs.
struct Published {
    link: ShortLink,
    fixed: FixedLinkData,
    user: ConnLinkData,
    enc_fixed: Vec<u8>,
    enc_user: Vec<u8>,
    sender_id: Vec<u8>,
}

fn publish(
    conn_req: ConnectionRequest,
    user: ConnLinkData,
    root: &PrivateKey,
    fixed_signer: &PrivateKey,
    user_signer: &PrivateKey,
    link_key_override: Option<LinkKey>,
) -> Published {
    let fixed = FixedLinkData {
        agent_versions: conn_req.data().agent_versions,
        root_key: root.public_key(),
        conn_req,
        entity_id: Some(b"group-1".to_vec()),
    };
    let link_key = link_key_override.unwrap_or_else(|| fixed.link_key().unwrap());
    let q = fixed.conn_req.first_queue().unwrap().clone();
    let link_type = match fixed.conn_req.mode() {
        ConnectionMode::Invitation => ShortLinkType::Invitation {
            link_id: vec![7; 24],
        },
        ConnectionMode::Contact => ShortLinkType::Contact(ContactType::Contact),
    };
    let link = ShortLink {
        scheme: ShortLinkScheme::Simplex,
        link_type,
        server: q.server.clone(),
        link_key,
    };
    let key = link.query().key;
    let enc_fixed = encrypt_link_blob(
        &key,
        &nonce(1),
        fixed_signer,
        &fixed.encode().unwrap(),
        FIXED_DATA_PADDED_LEN,
    )
    .unwrap();
    let enc_user = encrypt_link_blob(
        &key,
        &nonce(2),
        user_signer,
        &user.encode().unwrap(),
        USER_DATA_PADDED_LEN,
    )
    .unwrap();
    assert_eq!(enc_fixed.len(), 2048);
    assert_eq!(enc_user.len(), 13824);
    Published {
        link,
        fixed,
        user,
        enc_fixed,
        enc_user,
        sender_id: q.sender_id,
    }
}

fn contact_user_data(owners: Vec<OwnerAuth>) -> ConnLinkData {
    let relay = ShortLink::parse(str_of(
        &cases(&agent("uris.json"), "reference_test_cases")[13]["encoded"],
    ))
    .unwrap();
    ConnLinkData::Contact {
        agent_versions: smp_core::agent::version::AGENT_VERSIONS,
        data: UserContactData {
            direct: true,
            owners,
            relays: vec![ShortLink {
                scheme: ShortLinkScheme::Server,
                ..relay
            }],
            // Over 254 bytes: the 0xFF ‖ Large form.
            user_data: UserLinkData(vec![b'x'; 300]),
        },
    }
}

fn resolve(p: &Published) -> Result<smp_core::agent::link::ResolvedLink, LinkError> {
    p.link.resolve(&p.sender_id, &p.enc_fixed, &p.enc_user)
}

#[test]
fn contact_link_resolves_and_every_check_bites() {
    let root = ed25519("link-root");
    let other = ed25519("link-other");
    let contact = ConnectionRequest::parse(&own_link(2)).unwrap();
    let user = contact_user_data(vec![]);
    let p = publish(contact.clone(), user.clone(), &root, &root, &root, None);
    let r = resolve(&p).unwrap();
    assert_eq!(r.fixed, p.fixed);
    assert_eq!(r.user, p.user);
    assert_eq!(r.fixed.entity_id.as_deref(), Some(&b"group-1"[..]));

    // Wrong hash: data encrypted for a link key that is not its hash.
    let wrong = publish(
        contact.clone(),
        user.clone(),
        &root,
        &root,
        &root,
        Some(LinkKey([9; 32])),
    );
    assert_eq!(resolve(&wrong).unwrap_err(), LinkError::DataHash);
    // Fixed data signed by another key.
    let bad_fixed = publish(contact.clone(), user.clone(), &root, &other, &root, None);
    assert_eq!(resolve(&bad_fixed).unwrap_err(), LinkError::FixedSignature);
    // User data signed by a key that is neither root nor owner.
    let bad_user = publish(contact.clone(), user.clone(), &root, &root, &other, None);
    assert_eq!(resolve(&bad_user).unwrap_err(), LinkError::UserSignature);
    // The server answered for another queue.
    let mut wrong_id = publish(contact.clone(), user.clone(), &root, &root, &root, None);
    wrong_id.sender_id[0] ^= 1;
    assert_eq!(resolve(&wrong_id).unwrap_err(), LinkError::DifferentAddress);
    // The link names a host the queue does not have (same key).
    let mut wrong_host = publish(contact.clone(), user.clone(), &root, &root, &root, None);
    wrong_host.link.server = ServerAddress::new(
        Scheme::Smp,
        vec![TransportHost::parse("smp.mallory.example").unwrap()],
        None,
        wrong_host.link.server.key_hash().clone(),
    )
    .unwrap();
    assert_eq!(
        resolve(&wrong_host).unwrap_err(),
        LinkError::DifferentAddress
    );
    // Tampered ciphertext, and a blob too short for its nonce.
    let mut tampered = publish(contact.clone(), user.clone(), &root, &root, &root, None);
    tampered.enc_user[100] ^= 1;
    assert_eq!(resolve(&tampered).unwrap_err(), LinkError::Decrypt);
    assert_eq!(
        p.link
            .resolve(&p.sender_id, &p.enc_fixed[..10], &p.enc_user)
            .unwrap_err(),
        LinkError::Decrypt
    );
    // An invitation link cannot open contact data.
    let mut as_inv = publish(contact.clone(), user.clone(), &root, &root, &root, None);
    as_inv.link.link_type = ShortLinkType::Invitation { link_id: vec![1] };
    assert_eq!(resolve(&as_inv).unwrap_err(), LinkError::Decrypt);
    let key = contact_link_kdf(&p.link.link_key).1;
    assert_eq!(
        decrypt_link_data(
            ConnectionMode::Invitation,
            &p.link.link_key,
            &key,
            &p.enc_fixed,
            &p.enc_user
        )
        .unwrap_err(),
        LinkError::DataMode
    );

    // A link with more of the server record (a port) replaces the queue's.
    let mut with_port = publish(contact, user, &root, &root, &root, None);
    let s = &with_port.link.server;
    with_port.link.server = ServerAddress::new(
        Scheme::Smp,
        s.hosts().to_vec(),
        Some(5223),
        s.key_hash().clone(),
    )
    .unwrap();
    let r = resolve(&with_port).unwrap();
    assert_eq!(
        r.fixed.conn_req.first_queue().unwrap().server,
        with_port.link.server
    );
    assert_ne!(r.fixed, with_port.fixed);
}

#[test]
fn contact_link_owners() {
    let root = ed25519("link-root");
    let owner1 = ed25519("link-owner-1");
    let owner2 = ed25519("link-owner-2");
    let stranger = ed25519("link-stranger");
    let contact = ConnectionRequest::parse(&own_link(2)).unwrap();
    let auth = |id: &[u8], k: &PrivateKey, by: &PrivateKey| {
        OwnerAuth::new(id.to_vec(), k.public_key(), by).unwrap()
    };
    // owner1 by root, owner2 by owner1; owner2 signs the user data.
    let chain = vec![auth(b"o1", &owner1, &root), auth(b"o2", &owner2, &owner1)];
    let p = publish(
        contact.clone(),
        contact_user_data(chain),
        &root,
        &root,
        &owner2,
        None,
    );
    let r = resolve(&p).unwrap();
    let ConnLinkData::Contact { data, .. } = &r.user else {
        panic!()
    };
    assert_eq!(data.owners.len(), 2);
    assert_eq!(data.user_data.0.len(), 300);

    let bad = |owners: Vec<OwnerAuth>| {
        let p = publish(
            contact.clone(),
            contact_user_data(owners),
            &root,
            &root,
            &root,
            None,
        );
        resolve(&p).unwrap_err()
    };
    // Authorised by a key outside the chain.
    assert_eq!(
        bad(vec![auth(b"o1", &owner1, &stranger)]),
        LinkError::Owners(OwnerError::Unauthorized("bzE".into()))
    );
    // Authorised by a later owner only.
    assert_eq!(
        bad(vec![
            auth(b"o2", &owner2, &owner1),
            auth(b"o1", &owner1, &root)
        ]),
        LinkError::Owners(OwnerError::Unauthorized("bzI".into()))
    );
    assert_eq!(
        bad(vec![auth(b"o1", &root, &root)]),
        LinkError::Owners(OwnerError::RootKey("bzE".into()))
    );
    assert_eq!(
        bad(vec![
            auth(b"o1", &owner1, &root),
            auth(b"o1", &owner2, &root)
        ]),
        LinkError::Owners(OwnerError::Duplicate("bzE".into()))
    );
}

#[test]
fn invitation_link_resolves() {
    let root = ed25519("link-root");
    let inv = ConnectionRequest::parse(&own_link(1)).unwrap();
    let user = ConnLinkData::Invitation {
        agent_versions: smp_core::agent::version::AGENT_VERSIONS,
        user_data: UserLinkData(b"{\"profile\":{}}".to_vec()),
    };
    let p = publish(inv, user, &root, &root, &root, None);
    assert_eq!(p.link.query().command, LinkQueryCommand::Lkey);
    let r = resolve(&p).unwrap();
    assert_eq!(r.fixed, p.fixed);
    assert_eq!(r.user, p.user);
    // The full link inside keeps its sntrup761 key.
    assert!(r.fixed.conn_req.e2e().unwrap().kem.is_some());
    // Invitation user data may only be signed by the root key.
    let owner = ed25519("link-owner-1");
    let inv = ConnectionRequest::parse(&own_link(0)).unwrap();
    let p = publish(inv, p.user.clone(), &root, &root, &owner, None);
    assert_eq!(resolve(&p).unwrap_err(), LinkError::UserSignature);
    // Text round trip of the generated link.
    let s = p.link.to_link_string();
    assert_eq!(ShortLink::parse(&s).unwrap(), p.link, "{s}");
}

#[test]
fn oversized_data_and_wrong_signing_key_are_refused() {
    let root = ed25519("link-root");
    let key = invitation_link_kdf(&LinkKey([1; 32]));
    let big = vec![0u8; FIXED_DATA_PADDED_LEN];
    assert_eq!(
        encrypt_link_blob(&key, &nonce(1), &root, &big, FIXED_DATA_PADDED_LEN).unwrap_err(),
        LinkError::DataTooLarge {
            len: FIXED_DATA_PADDED_LEN + 65,
            padded: FIXED_DATA_PADDED_LEN
        }
    );
    let x25519 = PrivateKey::from_raw(KeyAlgorithm::X25519, &[3; 32]).unwrap();
    assert_eq!(
        encrypt_link_blob(&key, &nonce(1), &x25519, b"x", FIXED_DATA_PADDED_LEN).unwrap_err(),
        LinkError::SigningKey
    );
}

#[test]
fn fixed_data_ignores_trailing_bytes_and_keeps_entity_id() {
    let root = ed25519("link-root");
    let fixed = FixedLinkData {
        agent_versions: smp_core::agent::version::AGENT_VERSIONS,
        root_key: root.public_key(),
        conn_req: ConnectionRequest::parse(&own_link(2)).unwrap(),
        entity_id: None,
    };
    let b = fixed.encode().unwrap();
    assert_eq!(FixedLinkData::decode(&b).unwrap(), fixed);
    let with_id = FixedLinkData {
        entity_id: Some(vec![1, 2, 3]),
        ..fixed.clone()
    };
    let mut b = with_id.encode().unwrap();
    assert_eq!(b[b.len() - 4..], [3, 1, 2, 3]);
    b.extend_from_slice(b"future");
    assert_eq!(FixedLinkData::decode(&b).unwrap(), with_id);
    // ConnLinkData tails are ignored as well.
    let user = contact_user_data(vec![]);
    let mut u = user.encode().unwrap();
    u.extend_from_slice(b"future");
    assert_eq!(ConnLinkData::decode(&u).unwrap(), user);
}

/// The data a new short link is created with (`seal_link_data`) resolves
/// back to its request through the same checks as any other link.
#[test]
fn sealed_link_data_resolves_to_its_request() {
    let root = ed25519("link-root");
    for (req, user) in [
        (
            ConnectionRequest::parse(&own_link(1)).unwrap(),
            ConnLinkData::Invitation {
                agent_versions: smp_core::agent::version::AGENT_VERSIONS,
                user_data: UserLinkData(b"{\"profile\":{}}".to_vec()),
            },
        ),
        (
            ConnectionRequest::parse(&own_link(2)).unwrap(),
            contact_user_data(vec![]),
        ),
    ] {
        let sealed = seal_link_data(&req, &user, &root, (&nonce(1), &nonce(2))).unwrap();
        assert_eq!(sealed.enc_fixed.len(), 2048);
        assert_eq!(sealed.enc_user.len(), 13824);
        let q = req.first_queue().unwrap().clone();
        let link_type = match req.mode() {
            ConnectionMode::Invitation => {
                assert_eq!(sealed.link_id, None, "the router picks an invitation's ID");
                ShortLinkType::Invitation {
                    link_id: vec![9; 24],
                }
            }
            ConnectionMode::Contact => {
                assert_eq!(sealed.link_id, Some(contact_link_kdf(&sealed.link_key).0));
                ShortLinkType::Contact(ContactType::Contact)
            }
        };
        let link = ShortLink {
            scheme: ShortLinkScheme::Server,
            link_type,
            server: q.server.clone(),
            link_key: sealed.link_key,
        };
        if let Some(id) = sealed.link_id {
            assert_eq!(link.query().link_id, id.to_vec());
        }
        let r = link
            .resolve(&q.sender_id, &sealed.enc_fixed, &sealed.enc_user)
            .unwrap();
        assert_eq!(r.fixed.conn_req, req);
        assert_eq!(r.fixed.root_key, root.public_key());
        assert_eq!(r.fixed.entity_id, None);
        assert_eq!(r.user, user);
        // Another sender ID in the router's answer is another queue.
        assert_eq!(
            link.resolve(b"other", &sealed.enc_fixed, &sealed.enc_user)
                .unwrap_err(),
            LinkError::DifferentAddress
        );
    }
    // The user data must be for the request's mode.
    let inv = ConnectionRequest::parse(&own_link(1)).unwrap();
    assert_eq!(
        seal_link_data(
            &inv,
            &contact_user_data(vec![]),
            &root,
            (&nonce(1), &nonce(2))
        )
        .unwrap_err(),
        LinkError::DataMode
    );
}

/// Links to preset routers name only the host; the opener restores the
/// rest from its list, and only a host on the list is restored.
#[test]
fn shortened_links_restore_from_known_routers() {
    let full = ServerAddress::parse(
        "smp://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=@smp.example.net:5224",
    )
    .unwrap();
    let mut link = ShortLink {
        scheme: ShortLinkScheme::Server,
        link_type: ShortLinkType::Contact(ContactType::Contact),
        server: full.clone(),
        link_key: LinkKey([5; 32]),
    };
    link.shorten(&[]);
    assert_eq!(link.server, full, "not a preset: kept whole");
    link.shorten(std::slice::from_ref(&full));
    let text = link.to_link_string();
    assert_eq!(
        text,
        "https://smp.example.net/a#BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU"
    );
    let mut parsed = ShortLink::parse(&text).unwrap();
    assert!(parsed.is_shortened());
    let other =
        ServerAddress::parse("smp://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=@smp.other.net")
            .unwrap();
    assert!(!parsed.restore_server(std::slice::from_ref(&other)));
    assert!(parsed.restore_server(&[other, full.clone()]));
    assert_eq!(parsed.server, full);
    assert_eq!(parsed.link_key, LinkKey([5; 32]));
}
