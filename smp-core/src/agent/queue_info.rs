//! Queue addresses as agents exchange them inside their messages: the
//! reply queue a joining party offers (`SMPQueueInfo`, one agreed client
//! version, unlike the version *range* of [`QueueUri`]) and the bare
//! "which send queue" address used by queue rotation (`SndQAddr`).
//!
//! ```text
//! SMPQueueInfo = u16 clientVersion ‖ server ‖ short(senderId) ‖ short(dh DER) ‖ modeTail
//!   modeTail: v ≥ 4: 'M' | 'C' (no Maybe tag), nothing when unknown
//!             v = 3: 'T' for a messaging queue, else nothing
//!             v = 2: nothing
//!   v = 1: server is the legacy single host: short(host) ‖ short(port) ‖ short(keyHash)
//! SndQAddr     = server ‖ short(senderId)
//! server       = NonEmpty(short host) ‖ short(port text) ‖ short(keyHash)
//! ```
//! Parsing reads the mode the same way for every version (a mode byte, else
//! a `T`/`F` flag, else unknown), as the reference does.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use crate::address::{KeyHash, Scheme, ServerAddress, TransportHost};
use crate::crypto::keys::PublicKey;
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::smp::command::{QueueMode, RelayServer};
use crate::smp::queue_uri::{
    self, QueueUri, QueueUriError, SHORT_LINKS_CLIENT_VERSION, SND_AUTH_KEY_CLIENT_VERSION,
};
use crate::smp::version::VersionRange;

/// The first binary client version (`initialSMPClientVersion`), whose queue
/// infos carry a single-host server.
pub const INITIAL_CLIENT_VERSION: u16 = 1;

/// Hosts that version-1 peers name alone but that also have an onion
/// address (`extraSMPServerHosts`); decoding adds it, as the reference does.
const EXTRA_SMP_SERVER_HOSTS: [(&str, &str); 6] = [
    (
        "smp4.simplex.im",
        "o5vmywmrnaxalvz6wi3zicyftgio6psuvyniis6gco6bp6ekl4cqj4id.onion",
    ),
    (
        "smp5.simplex.im",
        "jjbyvoemxysm7qxap7m5d5m35jzv5qq6gnlv7s4rsn7tdwwmuqciwpid.onion",
    ),
    (
        "smp6.simplex.im",
        "bylepyau3ty4czmn77q4fglvperknl4bi2eb2fdy2bh4jxtf32kf73yd.onion",
    ),
    (
        "smp8.simplex.im",
        "beccx4yfxxbvyhqypaavemqurytl6hozr47wfc7uuecacjqdvwpw2xid.onion",
    ),
    (
        "smp9.simplex.im",
        "jssqzccmrcws6bhmn77vgmhfjmhwlyr3u7puw4erkyoosywgl67slqqd.onion",
    ),
    (
        "smp10.simplex.im",
        "rb2pbttocvnbrngnwziclp2f4ckjq65kebafws6g4hy22cdaiv5dwjqd.onion",
    ),
];

/// A queue address at one agreed SMP client version, as a joining party
/// sends its reply queue (`AgentConnInfoReply`) or a rotating sender its
/// new queue (`QKEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmpQueueInfo {
    /// The agreed SMP client version (1..4); it decides the tail encoding.
    pub client_version: u16,
    pub server: ServerAddress,
    pub sender_id: Vec<u8>,
    /// X25519 key for the per-queue e2e layer: the recipient's in a reply
    /// queue, the sender's new one in `QKEY`.
    pub dh_key: PublicKey,
    pub queue_mode: Option<QueueMode>,
}

impl SmpQueueInfo {
    /// The queue of a URI at the version both sides agreed on (`toVersionT`).
    pub fn from_uri(uri: &QueueUri, client_version: u16) -> Self {
        Self {
            client_version,
            server: uri.server.clone(),
            sender_id: uri.sender_id.clone(),
            dh_key: uri.dh_key.clone(),
            queue_mode: uri.queue_mode,
        }
    }

    /// The same queue offered with a version range (`toVersionRangeT`).
    pub fn to_uri(&self, client_versions: VersionRange) -> QueueUri {
        QueueUri {
            client_versions,
            server: self.server.clone(),
            sender_id: self.sender_id.clone(),
            dh_key: self.dh_key.clone(),
            queue_mode: self.queue_mode,
        }
    }

    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        let v = self.client_version;
        w.u16(v);
        if v <= INITIAL_CLIENT_VERSION {
            write_legacy_server(w, &self.server)?;
            w.short(&self.sender_id)?.short(&self.dh_key.to_der())?;
            return Ok(());
        }
        queue_uri::write_address(w, &self.server, &self.sender_id, &self.dh_key)?;
        if v >= SHORT_LINKS_CLIENT_VERSION {
            if let Some(m) = self.queue_mode {
                w.u8(m.byte());
            }
        } else if v >= SND_AUTH_KEY_CLIENT_VERSION && queue_uri::sender_can_secure(self.queue_mode)
        {
            w.bool(true);
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    /// Reads one queue info from a larger structure (`smpP`).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, QueueUriError> {
        let client_version = r.u16()?;
        let server = if client_version > INITIAL_CLIENT_VERSION {
            RelayServer::read(r)?.to_address()?
        } else {
            read_legacy_server(r)?
        };
        let (sender_id, dh_key) = queue_uri::read_sender_and_key(r)?;
        let queue_mode = queue_uri::read_queue_mode(r);
        Ok(Self {
            client_version,
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

/// `legacyEncodeServer`: only the first host.
fn write_legacy_server(w: &mut Writer, server: &ServerAddress) -> Result<(), EncodeError> {
    let host = server.hosts()[0].to_string();
    let port = server.port().map(|p| p.to_string()).unwrap_or_default();
    w.short(host.as_bytes())?
        .short(port.as_bytes())?
        .short(server.key_hash().as_bytes())?;
    Ok(())
}

/// `legacyServerP` followed by `updateSMPServerHosts`.
fn read_legacy_server(r: &mut Reader<'_>) -> Result<ServerAddress, QueueUriError> {
    let host = r.short()?;
    let port = r.short()?;
    let key_hash = r.short()?.to_vec();
    // One host in the list form reuses the server reader's checks.
    let relay = RelayServer {
        hosts: vec![
            core::str::from_utf8(host)
                .map_err(|_| DecodeError::Invalid("host"))?
                .into(),
        ],
        port: core::str::from_utf8(port)
            .map_err(|_| DecodeError::Invalid("port"))?
            .into(),
        key_hash,
    };
    if relay.hosts[0].is_empty() {
        return Err(DecodeError::Invalid("empty host").into());
    }
    if !relay.port.bytes().all(|c| c.is_ascii_digit()) {
        return Err(DecodeError::Invalid("port").into());
    }
    let server = relay.to_address()?;
    let extra = EXTRA_SMP_SERVER_HOSTS
        .iter()
        .find(|(h, _)| *h == relay.hosts[0])
        .map(|(_, onion)| TransportHost::parse(onion))
        .transpose()?;
    Ok(match extra {
        Some(onion) => ServerAddress::new(
            Scheme::Smp,
            vec![server.hosts()[0].clone(), onion],
            server.port(),
            KeyHash::new(server.key_hash().as_bytes().to_vec()),
        )?,
        None => server,
    })
}

/// The address of a send queue without its keys (`SndQAddr`): which queue
/// a rotation message or `A_QCONT` is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SndQAddr {
    pub server: ServerAddress,
    pub sender_id: Vec<u8>,
}

impl SndQAddr {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        RelayServer::from_address(&self.server).write(w)?;
        w.short(&self.sender_id)?;
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, QueueUriError> {
        let server = RelayServer::read(r)?.to_address()?;
        let sender_id = r.short()?.to_vec();
        Ok(Self { server, sender_id })
    }

    pub fn decode(b: &[u8]) -> Result<Self, QueueUriError> {
        let mut r = Reader::new(b);
        let a = Self::read(&mut r)?;
        r.end()?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::KeyAlgorithm;

    fn info(v: u16, host: &str, mode: Option<QueueMode>) -> SmpQueueInfo {
        SmpQueueInfo {
            client_version: v,
            server: ServerAddress::new(
                Scheme::Smp,
                vec![TransportHost::parse(host).unwrap()],
                None,
                KeyHash::new(vec![7; 32]),
            )
            .unwrap(),
            sender_id: vec![1, 2, 3],
            dh_key: PublicKey::from_raw(KeyAlgorithm::X25519, &[9; 32]).unwrap(),
            queue_mode: mode,
        }
    }

    #[test]
    fn version_one_adds_the_known_onion_host() {
        let q = info(1, "smp4.simplex.im", None);
        let enc = q.encode().unwrap();
        let back = SmpQueueInfo::decode(&enc).unwrap();
        assert_eq!(back.server.hosts().len(), 2);
        assert!(back.server.hosts()[1].is_onion());
        // Encoding again keeps only the first host.
        assert_eq!(back.encode().unwrap(), enc);
    }

    #[test]
    fn refuses_a_wrong_key_and_truncation() {
        let q = info(4, "a.example", Some(QueueMode::Messaging));
        let enc = q.encode().unwrap();
        for n in 0..enc.len() - 1 {
            assert!(SmpQueueInfo::decode(&enc[..n]).is_err(), "{n}");
        }
        let mut ed = q.clone();
        ed.dh_key = crate::crypto::PrivateKey::from_raw(KeyAlgorithm::Ed25519, &[1; 32])
            .unwrap()
            .public_key();
        assert_eq!(
            SmpQueueInfo::decode(&ed.encode().unwrap()),
            Err(QueueUriError::DhKey)
        );
    }
}
