//! XFTP commands (client → server), `FileCommand` in simplexmq.
//!
//! Wire form: the tag, then (for commands with arguments) one space and the
//! binary-encoded arguments with no further separators. The decoder follows
//! `parseProtocol`: an unknown tag is `CMD UNKNOWN`; bad or trailing
//! arguments are `CMD SYNTAX`.

use super::error::{CommandError, XftpErrorType};
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use alloc::vec::Vec;

/// Which side of a file a command comes from; selects the key that verifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileParty {
    Sender,
    Recipient,
}

/// `FileInfo` in FNEW: the sender's auth key, the chunk size and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub snd_key: PublicKey,
    pub size: u32,
    pub digest: Vec<u8>,
}

impl FileInfo {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.short(&self.snd_key.to_der())?;
        w.u32(self.size);
        w.short(&self.digest)?;
        Ok(())
    }
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let snd_key = read_auth_key(r)?;
        let size = r.u32()?;
        let digest = r.short()?.to_vec();
        Ok(Self {
            snd_key,
            size,
            digest,
        })
    }
}

/// Server basic-auth password (`BasicAuth`). The charset rule keeps a
/// password usable inside a server address.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth(Vec<u8>);

impl core::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("BasicAuth(<secret>)")
    }
}

impl BasicAuth {
    /// Accepts bytes the reference's `basicAuth` accepts: printable
    /// Latin-1, not a space, not `@`, `:` or `/` (so `0x21..=0x7e` and
    /// `0xa1..=0xff` except the soft hyphen `0xad`, minus those three).
    pub fn new(b: &[u8]) -> Option<Self> {
        let valid = |c: u8| {
            matches!(c, 0x21..=0x7e | 0xa1..=0xff) && !matches!(c, b'@' | b':' | b'/' | 0xad)
        };
        b.iter().all(|&c| valid(c)).then(|| Self(b.to_vec()))
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Constant-time comparison, for a server checking the password.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.as_slice().ct_eq(other))
    }
}

/// A command as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommand {
    /// Register a chunk: sender key, size, digest; the recipients' auth keys.
    Fnew {
        file: FileInfo,
        rcv_keys: Vec<PublicKey>,
        auth: Option<BasicAuth>,
    },
    /// Add recipients to a chunk.
    Fadd {
        rcv_keys: Vec<PublicKey>,
    },
    /// Upload the chunk; its bytes follow the block in the request body.
    Fput,
    /// Delete the chunk.
    Fdel,
    /// Download the chunk, encrypted to this fresh X25519 key.
    Fget {
        rcv_dh_key: PublicKey,
    },
    /// Acknowledge a download (deletes the recipient).
    Fack,
    Ping,
}

/// Auth keys (`APublicAuthKey`) may be Ed25519, Ed448 or X25519.
fn read_auth_key(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
    let k = PublicKey::from_der(r.short()?).map_err(|_| DecodeError::Invalid("public key"))?;
    if k.algorithm() == KeyAlgorithm::X448 {
        return Err(DecodeError::Invalid("X448 is not an auth key"));
    }
    Ok(k)
}

/// The fresh X25519 key of FGET and FILE (any other key is a syntax error).
pub(super) fn read_dh_key(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
    PublicKey::from_der_as(KeyAlgorithm::X25519, r.short()?)
        .map_err(|_| DecodeError::Invalid("X25519 key"))
}

/// Splits command or response bytes at the first space: the tag, and a
/// reader over the rest (which, if present, starts with that space).
pub(super) fn split_tag(b: &[u8]) -> (&[u8], Reader<'_>) {
    let n = b.iter().position(|&c| c == b' ').unwrap_or(b.len());
    let (tag, params) = b.split_at(n);
    (tag, Reader::new(params))
}

/// Malformed arguments, in a command or a response, are `CMD SYNTAX`.
pub(super) fn syntax(_: DecodeError) -> XftpErrorType {
    XftpErrorType::Cmd(CommandError::Syntax)
}

fn write_keys(w: &mut Writer, keys: &[PublicKey]) -> Result<(), EncodeError> {
    w.non_empty(keys, |w, k| w.short(&k.to_der()).map(|_| ()))?;
    Ok(())
}

impl FileCommand {
    pub fn tag(&self) -> &'static str {
        match self {
            Self::Fnew { .. } => "FNEW",
            Self::Fadd { .. } => "FADD",
            Self::Fput => "FPUT",
            Self::Fdel => "FDEL",
            Self::Fget { .. } => "FGET",
            Self::Fack => "FACK",
            Self::Ping => "PING",
        }
    }

    pub fn party(&self) -> FileParty {
        match self {
            Self::Fnew { .. } | Self::Fadd { .. } | Self::Fput | Self::Fdel => FileParty::Sender,
            Self::Fget { .. } | Self::Fack | Self::Ping => FileParty::Recipient,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.raw(self.tag().as_bytes());
        match self {
            Self::Fnew {
                file,
                rcv_keys,
                auth,
            } => {
                w.raw(b" ");
                file.write(&mut w)?;
                write_keys(&mut w, rcv_keys)?;
                w.maybe(auth.as_ref(), |w, a| w.short(a.as_bytes()).map(|_| ()))?;
            }
            Self::Fadd { rcv_keys } => {
                w.raw(b" ");
                write_keys(&mut w, rcv_keys)?;
            }
            Self::Fget { rcv_dh_key } => {
                w.raw(b" ");
                w.short(&rcv_dh_key.to_der())?;
            }
            Self::Fput | Self::Fdel | Self::Fack | Self::Ping => {}
        }
        Ok(w.into_vec())
    }

    /// Parses the command bytes of a transmission.
    pub fn decode(b: &[u8]) -> Result<Self, XftpErrorType> {
        let (tag, mut r) = split_tag(b);
        let cmd = match tag {
            b"FNEW" => {
                r.space().map_err(syntax)?;
                let file = FileInfo::read(&mut r).map_err(syntax)?;
                let rcv_keys = r.non_empty(read_auth_key).map_err(syntax)?;
                let auth = r
                    .maybe(|r| BasicAuth::new(r.short()?).ok_or(DecodeError::Invalid("basic auth")))
                    .map_err(syntax)?;
                Self::Fnew {
                    file,
                    rcv_keys,
                    auth,
                }
            }
            b"FADD" => {
                r.space().map_err(syntax)?;
                Self::Fadd {
                    rcv_keys: r.non_empty(read_auth_key).map_err(syntax)?,
                }
            }
            b"FGET" => {
                r.space().map_err(syntax)?;
                let rcv_dh_key = read_dh_key(&mut r).map_err(syntax)?;
                Self::Fget { rcv_dh_key }
            }
            b"FPUT" => Self::Fput,
            b"FDEL" => Self::Fdel,
            b"FACK" => Self::Fack,
            b"PING" => Self::Ping,
            _ => return Err(XftpErrorType::Cmd(CommandError::Unknown)),
        };
        r.end().map_err(syntax)?;
        Ok(cmd)
    }

    /// `checkCredentials` for commands: whether the transmission's
    /// authorization and entity ID fit the command.
    pub fn check_credentials(&self, has_auth: bool, entity_id: &[u8]) -> Result<(), XftpErrorType> {
        let err = |e| Err(XftpErrorType::Cmd(e));
        match self {
            Self::Fnew { .. } if !has_auth => err(CommandError::NoAuth),
            Self::Fnew { .. } if !entity_id.is_empty() => err(CommandError::HasAuth),
            Self::Fnew { .. } => Ok(()),
            Self::Ping if has_auth || !entity_id.is_empty() => err(CommandError::HasAuth),
            Self::Ping => Ok(()),
            _ if !has_auth || entity_id.is_empty() => err(CommandError::NoAuth),
            _ => Ok(()),
        }
    }
}
