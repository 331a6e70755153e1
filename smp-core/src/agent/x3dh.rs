//! The parameters two parties exchange to start a double ratchet
//! (`E2ERatchetParams`, `RatchetKEM` params in `Crypto/Ratchet.hs`): two X448
//! keys each and, from e2e version 3, an optional sntrup761 proposal or
//! acceptance.
//!
//! ```text
//! E2eParams (binary)    = u16 version ‖ short(key1 DER) ‖ short(key2 DER) [‖ Maybe KemParams if version ≥ 3]
//! E2eParamsUri (binary) = u16 min ‖ u16 max ‖ short(key1) ‖ short(key2) [‖ Maybe KemParams if max ≥ 3]
//! KemParams             = 'P' ‖ Large(pk) | 'A' ‖ Large(ct) ‖ Large(pk)
//! ```

use alloc::vec::Vec;

use super::version::PQ_RATCHET_E2E_VERSION;
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::xftp::handshake::VersionRange;

/// The KEM part of a party's parameters or of a ratchet header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KemParams {
    /// "Here is my encapsulation key" (`RKParamsProposed`).
    Proposed { public: Vec<u8> },
    /// "Here is a ciphertext to your key, and my next key" (`RKParamsAccepted`).
    Accepted {
        ciphertext: Vec<u8>,
        public: Vec<u8>,
    },
}

impl KemParams {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Self::Proposed { public } => {
                w.u8(b'P').large(public)?;
            }
            Self::Accepted { ciphertext, public } => {
                w.u8(b'A').large(ciphertext)?.large(public)?;
            }
        }
        Ok(())
    }
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            b'P' => Ok(Self::Proposed {
                public: r.large()?.to_vec(),
            }),
            b'A' => Ok(Self::Accepted {
                ciphertext: r.large()?.to_vec(),
                public: r.large()?.to_vec(),
            }),
            _ => Err(DecodeError::Invalid("KEM params tag")),
        }
    }
    /// The public key this party offers for the next encapsulation.
    pub fn public(&self) -> &[u8] {
        match self {
            Self::Proposed { public } | Self::Accepted { public, .. } => public,
        }
    }
}

fn write_maybe_kem(w: &mut Writer, kem: &Option<KemParams>) -> Result<(), EncodeError> {
    w.maybe(kem.as_ref(), |w, k| k.write(w))?;
    Ok(())
}

fn read_maybe_kem(r: &mut Reader<'_>) -> Result<Option<KemParams>, DecodeError> {
    r.maybe(KemParams::read)
}

/// Reads a shortString X448 public key in DER.
pub fn read_x448(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
    PublicKey::from_der_as(KeyAlgorithm::X448, r.short()?)
        .map_err(|_| DecodeError::Invalid("X448 key"))
}

/// Writes a public key as a shortString of its DER.
pub fn write_key(w: &mut Writer, key: &PublicKey) -> Result<(), EncodeError> {
    w.short(&key.to_der())?;
    Ok(())
}

/// One party's ratchet parameters at an agreed e2e version
/// (`E2ERatchetParams`), as sent in a confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eParams {
    pub version: u16,
    pub key1: PublicKey,
    pub key2: PublicKey,
    pub kem: Option<KemParams>,
}

impl E2eParams {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u16(self.version);
        write_key(w, &self.key1)?;
        write_key(w, &self.key2)?;
        if self.version >= PQ_RATCHET_E2E_VERSION {
            write_maybe_kem(w, &self.kem)?;
        }
        Ok(())
    }
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_vec())
    }
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u16()?;
        let key1 = read_x448(r)?;
        let key2 = read_x448(r)?;
        let kem = if version >= PQ_RATCHET_E2E_VERSION {
            read_maybe_kem(r)?
        } else {
            None
        };
        Ok(Self {
            version,
            key1,
            key2,
            kem,
        })
    }
}

/// The link creator's parameters with its supported e2e range
/// (`E2ERatchetParamsUri`), as in an invitation link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eParamsUri {
    pub versions: VersionRange,
    pub key1: PublicKey,
    pub key2: PublicKey,
    pub kem: Option<KemParams>,
}

impl E2eParamsUri {
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        self.versions.write(w);
        write_key(w, &self.key1)?;
        write_key(w, &self.key2)?;
        if self.versions.max() >= PQ_RATCHET_E2E_VERSION {
            write_maybe_kem(w, &self.kem)?;
        }
        Ok(())
    }
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (min, max) = (r.u16()?, r.u16()?);
        let versions =
            VersionRange::new(min, max).ok_or(DecodeError::Invalid("e2e version range"))?;
        let key1 = read_x448(r)?;
        let key2 = read_x448(r)?;
        let kem = if max >= PQ_RATCHET_E2E_VERSION {
            read_maybe_kem(r)?
        } else {
            None
        };
        Ok(Self {
            versions,
            key1,
            key2,
            kem,
        })
    }
}
