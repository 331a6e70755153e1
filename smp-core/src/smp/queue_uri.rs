//! The SMP queue URI given to a sender out of band (`SMPQueueUri`), in its
//! text form (inside invitation links) and its binary form (inside agent
//! messages).
//!
//! ```text
//! text   = server "/" b64url(senderId) "#/?" query
//!   query = "v=" clientVRange "&dh=" b64url(X25519 DER) ["&q=m"|"&q=c"] ["&k=s"] ["&srv=" hosts]
//!   values URL-escaped ('=' → %3D, ',' → %2C); "k=s" only for a messaging queue with min < 4;
//!   below client version 2 only the first host is in the authority, the others in "srv"
//! binary = u16 min ‖ u16 max ‖ server ‖ short(senderId) ‖ short(dh DER) ‖ tail
//!   tail: min ≥ 4: the mode byte 'M'|'C' (no Maybe tag), nothing when unknown;
//!         min ≥ 3, or max ≥ 3 and a messaging queue: sndSecure 'T'|'F'; else nothing
//! ```
//! The versions are SMP *client* versions (1..4), not relay versions.
//! Parsing also takes the older shapes the reference reads: the key right
//! after `#` (version 1), unknown query parameters, and `k=s` without `q`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::str::FromStr;

use super::command::{QueueMode, RelayServer};
use super::version::VersionRange;
use crate::address::{AddressError, ServerAddress, TransportHost, b64_token_len};
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::encoding::string::{b64_decode, b64_encode};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};

/// Client version that put all hosts into the authority (`srvHostnamesSMPClientVersion`).
pub const SRV_HOSTNAMES_CLIENT_VERSION: u16 = 2;
/// Client version that knows sender-secured queues (`sndAuthKeySMPClientVersion`).
pub const SND_AUTH_KEY_CLIENT_VERSION: u16 = 3;
/// Client version with queue modes (`shortLinksSMPClientVersion`).
pub const SHORT_LINKS_CLIENT_VERSION: u16 = 4;
/// The client versions current clients put into URIs.
pub const SUPPORTED_CLIENT_RANGE: VersionRange = match VersionRange::new(1, 4) {
    Some(r) => r,
    None => panic!("static range"),
};

/// Why a queue URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueUriError {
    #[error("server address: {0}")]
    Server(#[from] AddressError),
    #[error("expected '/' after the server address")]
    MissingSlash,
    #[error("sender ID is missing or not base64url")]
    SenderId,
    #[error("expected '#' after the sender ID")]
    MissingHash,
    #[error("missing or invalid version range (v=)")]
    Version,
    #[error("missing or invalid X25519 key (dh=)")]
    DhKey,
    #[error("invalid extra hosts (srv=)")]
    Hosts,
    #[error("invalid URL escape in the query")]
    Escape,
    #[error("unexpected text at the end")]
    Trailing,
    #[error("binary form: {0}")]
    Decode(#[from] DecodeError),
}

/// A queue address with the client versions the recipient supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUri {
    /// SMP client versions (1..4).
    pub client_versions: VersionRange,
    pub server: ServerAddress,
    pub sender_id: Vec<u8>,
    /// The recipient's X25519 key for the end-to-end per-queue layer.
    pub dh_key: PublicKey,
    pub queue_mode: Option<QueueMode>,
}

/// `senderCanSecure`: only messaging queues may be secured by the sender.
pub fn sender_can_secure(m: Option<QueueMode>) -> bool {
    m == Some(QueueMode::Messaging)
}

/// The part every binary queue address shares (`SMPQueueUri`, `SMPQueueInfo`,
/// and with the key left out `SndQAddr`): `server ‖ short(senderId) ‖ short(dh DER)`.
pub(crate) fn write_address(
    w: &mut Writer,
    server: &ServerAddress,
    sender_id: &[u8],
    dh_key: &PublicKey,
) -> Result<(), EncodeError> {
    RelayServer::from_address(server).write(w)?;
    w.short(sender_id)?.short(&dh_key.to_der())?;
    Ok(())
}

/// Reads `short(senderId) ‖ short(X25519 DER)` after a server.
pub(crate) fn read_sender_and_key(
    r: &mut Reader<'_>,
) -> Result<(Vec<u8>, PublicKey), QueueUriError> {
    let sender_id = r.short()?.to_vec();
    let dh_key = PublicKey::from_der_as(KeyAlgorithm::X25519, r.short()?)
        .map_err(|_| QueueUriError::DhKey)?;
    Ok((sender_id, dh_key))
}

/// `queueModeP`: a mode byte if present, else an optional `T`/`F` flag
/// (older encoders), else unknown. Never fails, as in the reference.
pub(crate) fn read_queue_mode(r: &mut Reader<'_>) -> Option<QueueMode> {
    let mode = match r.peek()? {
        b @ (b'M' | b'C') => QueueMode::from_byte(b),
        b'T' => Some(QueueMode::Messaging),
        b'F' => Some(QueueMode::Contact),
        _ => return None,
    };
    // The byte was seen by `peek`, so taking it cannot fail.
    let _ = r.u8();
    mode
}

/// `VersionRange` string form: `"3"` when min = max, else `"1-4"`.
fn write_range(s: &mut String, r: &VersionRange) {
    if r.min() == r.max() {
        let _ = write!(s, "{}", r.min());
    } else {
        let _ = write!(s, "{}-{}", r.min(), r.max());
    }
}

fn parse_range(s: &str) -> Option<VersionRange> {
    let num = |t: &str| {
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse::<u16>().ok())
            .flatten()
    };
    match s.split_once('-') {
        Some((a, b)) => VersionRange::new(num(a)?, num(b)?),
        None => {
            let v = num(s)?;
            VersionRange::new(v, v)
        }
    }
}

/// http-types `urlEncode True` of a text value.
fn url_escape(out: &mut String, v: &str) {
    crate::encoding::url::escape_into(out, v.as_bytes());
}

/// http-types `urlDecode True` (`+` is a space); a bad escape is refused.
fn url_unescape(s: &str) -> Result<String, QueueUriError> {
    let b = crate::encoding::url::unescape(s).ok_or(QueueUriError::Escape)?;
    String::from_utf8(b).map_err(|_| QueueUriError::Escape)
}

/// `parseSimpleQuery`: pairs split on `&` or `;`, the name at the first `=`.
fn parse_query(q: &str) -> Result<Vec<(String, String)>, QueueUriError> {
    q.split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((url_unescape(k)?, url_unescape(v)?))
        })
        .collect()
}

fn decode_dh_key(text: &str) -> Result<PublicKey, QueueUriError> {
    let der = b64_decode(text).map_err(|_| QueueUriError::DhKey)?;
    PublicKey::from_der_as(KeyAlgorithm::X25519, &der).map_err(|_| QueueUriError::DhKey)
}

fn hosts_text(hosts: &[TransportHost]) -> String {
    let mut s = String::new();
    for (i, h) in hosts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{h}");
    }
    s
}

impl QueueUri {
    /// The text form (`strEncode`).
    pub fn to_uri_string(&self) -> String {
        let vr = &self.client_versions;
        let legacy = vr.min() < SRV_HOSTNAMES_CLIENT_VERSION;
        let mut s = String::new();
        if legacy {
            // Old clients read one host; the others go into "srv".
            let first = ServerAddress::new(
                self.server.scheme(),
                self.server.hosts()[..1].to_vec(),
                self.server.port(),
                self.server.key_hash().clone(),
            )
            .unwrap_or_else(|_| self.server.clone());
            let _ = write!(s, "{first}");
        } else {
            let _ = write!(s, "{}", self.server);
        }
        s.push('/');
        s.push_str(&b64_encode(&self.sender_id));
        s.push_str("#/?");
        let mut params: Vec<(&str, String)> = Vec::new();
        let mut v = String::new();
        write_range(&mut v, vr);
        params.push(("v", v));
        params.push(("dh", b64_encode(&self.dh_key.to_der())));
        match self.queue_mode {
            Some(QueueMode::Messaging) => params.push(("q", "m".to_string())),
            Some(QueueMode::Contact) => params.push(("q", "c".to_string())),
            None => {}
        }
        if sender_can_secure(self.queue_mode) && vr.min() < SHORT_LINKS_CLIENT_VERSION {
            params.push(("k", "s".to_string()));
        }
        if legacy && self.server.hosts().len() > 1 {
            params.push(("srv", hosts_text(&self.server.hosts()[1..])));
        }
        for (i, (k, v)) in params.iter().enumerate() {
            if i > 0 {
                s.push('&');
            }
            url_escape(&mut s, k);
            s.push('=');
            url_escape(&mut s, v);
        }
        s
    }

    /// Parses the text form (`strP`, whole input).
    pub fn parse(s: &str) -> Result<Self, QueueUriError> {
        let sep = s.find("://").map_or(0, |i| i + 3);
        let slash = s[sep..]
            .find('/')
            .map(|i| sep + i)
            .ok_or(QueueUriError::MissingSlash)?;
        let server = ServerAddress::parse_lenient(&s[..slash])?;
        let mut rest = &s[slash + 1..];
        let n = b64_token_len(rest.as_bytes());
        if n == 0 {
            return Err(QueueUriError::SenderId);
        }
        let sender_id = b64_decode(&rest[..n]).map_err(|_| QueueUriError::SenderId)?;
        rest = &rest[n..];
        rest = rest.strip_prefix('/').unwrap_or(rest);
        rest = rest.strip_prefix('#').ok_or(QueueUriError::MissingHash)?;

        // Versioned: [key] ["/"] "?" query; else the bare key (version 1).
        let n = b64_token_len(rest.as_bytes());
        let after_key = &rest[n..];
        let after_key = after_key.strip_prefix('/').unwrap_or(after_key);
        let (versions, dh_key, extra_hosts, queue_mode) =
            if let Some(query) = after_key.strip_prefix('?') {
                if query.contains([' ', '#']) {
                    return Err(QueueUriError::Trailing);
                }
                let params = parse_query(query)?;
                let get = |name: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                };
                let versions = get("v")
                    .and_then(parse_range)
                    .ok_or(QueueUriError::Version)?;
                let dh_key = if n > 0 {
                    decode_dh_key(&rest[..n])?
                } else {
                    decode_dh_key(get("dh").ok_or(QueueUriError::DhKey)?)?
                };
                let hosts = match get("srv") {
                    Some(h) => h
                        .split(',')
                        .map(TransportHost::parse)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| QueueUriError::Hosts)?,
                    None => Vec::new(),
                };
                let mode = match get("q") {
                    Some("m") => Some(QueueMode::Messaging),
                    Some("c") => Some(QueueMode::Contact),
                    _ if get("k") == Some("s") => Some(QueueMode::Messaging),
                    _ => None,
                };
                (versions, dh_key, hosts, mode)
            } else {
                if n == 0 || n != rest.len() {
                    return Err(QueueUriError::DhKey);
                }
                let one = VersionRange::new(1, 1).ok_or(QueueUriError::Version)?;
                (one, decode_dh_key(rest)?, Vec::new(), None)
            };
        let server = if extra_hosts.is_empty() {
            server
        } else {
            let mut hosts = server.hosts().to_vec();
            hosts.extend(extra_hosts);
            ServerAddress::new(
                server.scheme(),
                hosts,
                server.port(),
                server.key_hash().clone(),
            )?
        };
        Ok(Self {
            client_versions: versions,
            server,
            sender_id,
            dh_key,
            queue_mode,
        })
    }

    /// The binary form (`smpEncode`).
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        let vr = &self.client_versions;
        vr.write(w);
        write_address(w, &self.server, &self.sender_id, &self.dh_key)?;
        let snd_secure = sender_can_secure(self.queue_mode);
        if vr.min() >= SHORT_LINKS_CLIENT_VERSION {
            if let Some(m) = self.queue_mode {
                w.u8(m.byte());
            }
        } else if vr.min() >= SND_AUTH_KEY_CLIENT_VERSION
            || (vr.max() >= SND_AUTH_KEY_CLIENT_VERSION && snd_secure)
        {
            w.bool(snd_secure);
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    /// Reads the binary form from a larger structure (`smpP`): after the
    /// key a mode byte is taken if present, else a `T`/`F` flag if present.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, QueueUriError> {
        let min = r.u16()?;
        let max = r.u16()?;
        let client_versions =
            VersionRange::new(min, max).ok_or(DecodeError::Invalid("version range"))?;
        let server = RelayServer::read(r)?.to_address()?;
        let (sender_id, dh_key) = read_sender_and_key(r)?;
        let queue_mode = read_queue_mode(r);
        Ok(Self {
            client_versions,
            server,
            sender_id,
            dh_key,
            queue_mode,
        })
    }

    /// The binary form as a whole input.
    pub fn decode(b: &[u8]) -> Result<Self, QueueUriError> {
        let mut r = Reader::new(b);
        let q = Self::read(&mut r)?;
        r.end()?;
        Ok(q)
    }
}

impl fmt::Display for QueueUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri_string())
    }
}

impl FromStr for QueueUri {
    type Err = QueueUriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::KeyHash;

    /// The X25519 key of the reference's ConnectionRequestTests.
    const DH_B64: &str = "MCowBQYDK2VuAyEAjiswwI3O_NlS8Fk3HJUW870EY2bAwmttMBsvRB9eV3o=";
    const DH_ESC: &str = "MCowBQYDK2VuAyEAjiswwI3O_NlS8Fk3HJUW870EY2bAwmttMBsvRB9eV3o%3D";

    fn dh() -> PublicKey {
        decode_dh_key(DH_B64).unwrap()
    }

    fn server(port: Option<u16>) -> ServerAddress {
        ServerAddress::new(
            crate::address::Scheme::Smp,
            alloc::vec![TransportHost::Domain("smp.simplex.im".into())],
            port,
            KeyHash::new(alloc::vec![0xd7, 0x6d, 0xf8, 0xfb]),
        )
        .unwrap()
    }

    fn uri(min: u16, max: u16, port: Option<u16>, mode: Option<QueueMode>) -> QueueUri {
        QueueUri {
            client_versions: VersionRange::new(min, max).unwrap(),
            server: server(port),
            sender_id: alloc::vec![0xdf, 0x8e, 0x7a, 0xfb],
            dh_key: dh(),
            queue_mode: mode,
        }
    }

    #[test]
    fn prints_like_the_reference() {
        // ConnectionRequestTests "should serialize SMP queue URIs".
        assert_eq!(
            uri(1, 2, None, None).to_uri_string(),
            alloc::format!("smp://1234-w==@smp.simplex.im/3456-w==#/?v=1-2&dh={DH_ESC}")
        );
        assert_eq!(
            uri(1, 2, Some(5223), None).to_uri_string(),
            alloc::format!("smp://1234-w==@smp.simplex.im:5223/3456-w==#/?v=1-2&dh={DH_ESC}")
        );
        // A single version prints as one number.
        assert_eq!(
            uri(1, 1, Some(5223), None).to_uri_string(),
            alloc::format!("smp://1234-w==@smp.simplex.im:5223/3456-w==#/?v=1&dh={DH_ESC}")
        );
    }

    #[test]
    fn queue_mode_and_legacy_sender_secure_flag() {
        let m = uri(1, 4, None, Some(QueueMode::Messaging)).to_uri_string();
        assert!(
            m.ends_with(&alloc::format!("v=1-4&dh={DH_ESC}&q=m&k=s")),
            "{m}"
        );
        let m4 = uri(4, 4, None, Some(QueueMode::Messaging)).to_uri_string();
        assert!(m4.ends_with(&alloc::format!("v=4&dh={DH_ESC}&q=m")), "{m4}");
        let c = uri(2, 4, None, Some(QueueMode::Contact)).to_uri_string();
        assert!(c.ends_with(&alloc::format!("v=2-4&dh={DH_ESC}&q=c")), "{c}");
        for q in [m, m4, c] {
            assert_eq!(QueueUri::parse(&q).unwrap().to_uri_string(), q);
        }
        // Legacy links carry only k=s.
        let legacy =
            alloc::format!("smp://1234-w==@smp.simplex.im/3456-w==#/?v=1-3&dh={DH_B64}&k=s");
        assert_eq!(
            QueueUri::parse(&legacy).unwrap().queue_mode,
            Some(QueueMode::Messaging)
        );
    }

    #[test]
    fn parses_the_reference_examples() {
        // ConnectionRequestTests "should parse SMP queue URIs".
        let q = QueueUri::parse(&alloc::format!(
            "smp://1234-w==@smp.simplex.im/3456-w==#/?v=1-2&dh={DH_B64}"
        ))
        .unwrap();
        assert_eq!(q, uri(1, 2, None, None));
        let q = QueueUri::parse(&alloc::format!(
            "smp://1234-w==@smp.simplex.im/3456-w==#{DH_B64}"
        ))
        .unwrap();
        assert_eq!(q, uri(1, 1, None, None));
        let q = QueueUri::parse(&alloc::format!(
            "smp://1234-w==@smp.simplex.im:5223/3456-w==#{DH_B64}"
        ))
        .unwrap();
        assert_eq!(q, uri(1, 1, Some(5223), None));
        let q = QueueUri::parse(&alloc::format!(
            "smp://1234-w==@smp.simplex.im:5223/3456-w==#{DH_B64}/?v=1-2&extra_param=abc"
        ))
        .unwrap();
        assert_eq!(q, uri(1, 2, Some(5223), None));
        let q = QueueUri::parse(&alloc::format!(
            "smp://1234-w==@smp.simplex.im:5223/3456-w==#/?extra_param=abc&v=1&dh={DH_B64}"
        ))
        .unwrap();
        assert_eq!(q, uri(1, 1, Some(5223), None));
        let q = QueueUri::parse(&alloc::format!(
            "smp://1234-w==@smp.simplex.im:5223/3456-w==#{DH_B64}/?v=1&extra_param=abc"
        ))
        .unwrap();
        assert_eq!(q, uri(1, 1, Some(5223), None));
        // Escaped and unescaped keys read the same.
        let q = QueueUri::parse(&alloc::format!(
            "smp://1234-w==@smp.simplex.im/3456-w==#/?v=1-2&dh={DH_ESC}"
        ))
        .unwrap();
        assert_eq!(q, uri(1, 2, None, None));
    }

    #[test]
    fn legacy_extra_hosts_go_to_srv() {
        let mut q = uri(1, 4, None, None);
        q.server =
            ServerAddress::parse_lenient("smp://1234-w==@a.example,b.example,c.onion").unwrap();
        let s = q.to_uri_string();
        assert_eq!(
            s,
            alloc::format!(
                "smp://1234-w==@a.example/3456-w==#/?v=1-4&dh={DH_ESC}&srv=b.example%2Cc.onion"
            )
        );
        assert_eq!(QueueUri::parse(&s).unwrap(), q);
        // From client version 2 all hosts stay in the authority.
        q.client_versions = VersionRange::new(2, 4).unwrap();
        let s = q.to_uri_string();
        assert!(s.starts_with("smp://1234-w==@a.example,b.example,c.onion/3456-w==#/?v=2-4&dh="));
        assert_eq!(QueueUri::parse(&s).unwrap(), q);
    }

    #[test]
    fn refuses_broken_uris() {
        for bad in [
            "smp://1234-w==@smp.simplex.im",
            "smp://1234-w==@smp.simplex.im/3456-w==",
            &alloc::format!("smp://1234-w==@smp.simplex.im/3456-w==#/?dh={DH_B64}"),
            "smp://1234-w==@smp.simplex.im/3456-w==#/?v=1-4",
            &alloc::format!("smp://1234-w==@smp.simplex.im/3456-w==#/?v=4-1&dh={DH_B64}"),
            &alloc::format!("smp://1234-w==@smp.simplex.im/3456-w==#/?v=1-4&dh={DH_B64}#x"),
            // An Ed25519 key is not a DH key.
            "smp://1234-w==@smp.simplex.im/3456-w==#/?v=1-4&dh=MCowBQYDK2VwAyEAjiswwI3O_NlS8Fk3HJUW870EY2bAwmttMBsvRB9eV3o=",
            &alloc::format!("smp://1234-w==@smp.simplex.im/3456-w==#/?v=1-4&dh={DH_B64}%2"),
        ] {
            assert!(QueueUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binary_tail_by_client_version() {
        let head = |q: &QueueUri| {
            let mut w = Writer::new();
            q.client_versions.write(&mut w);
            RelayServer::from_address(&q.server).write(&mut w).unwrap();
            w.short(&q.sender_id)
                .unwrap()
                .short(&q.dh_key.to_der())
                .unwrap();
            w.into_vec()
        };
        let cases: [(u16, u16, Option<QueueMode>, &[u8]); 7] = [
            (4, 4, Some(QueueMode::Messaging), b"M"),
            (4, 4, Some(QueueMode::Contact), b"C"),
            (4, 4, None, b""),
            (3, 4, Some(QueueMode::Contact), b"F"),
            (1, 4, Some(QueueMode::Messaging), b"T"),
            (1, 4, Some(QueueMode::Contact), b""),
            (1, 2, Some(QueueMode::Messaging), b""),
        ];
        for (min, max, mode, tail) in cases {
            let q = uri(min, max, Some(5223), mode);
            let mut want = head(&q);
            want.extend_from_slice(tail);
            let enc = q.encode().unwrap();
            assert_eq!(enc, want, "{min}-{max} {mode:?}");
            let back = QueueUri::decode(&enc).unwrap();
            let expect_mode = if tail.is_empty() { None } else { mode };
            assert_eq!(back.queue_mode, expect_mode, "{min}-{max} {mode:?}");
            assert_eq!(back.server, q.server);
            assert_eq!(back.sender_id, q.sender_id);
        }
        // Exact bytes of the head: range, hosts, port text, key hash, ids.
        let enc = uri(1, 2, Some(5223), None).encode().unwrap();
        assert_eq!(&enc[..4], &[0, 1, 0, 2]);
        assert_eq!(&enc[4..20], b"\x01\x0esmp.simplex.im");
        assert_eq!(&enc[20..25], b"\x045223");
        assert_eq!(&enc[25..30], &[4, 0xd7, 0x6d, 0xf8, 0xfb]);
        assert_eq!(&enc[30..35], &[4, 0xdf, 0x8e, 0x7a, 0xfb]);
        assert_eq!(enc[35], 44);
    }
}
