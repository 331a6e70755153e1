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

use zeroize::Zeroizing;

use super::version::PQ_RATCHET_E2E_VERSION;
use crate::crypto::CryptoError;
use crate::crypto::kem::{self, KemKeyPair, KemSecret};
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
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

/// Where the ratchet gets fresh keys. Real use draws them from a CSPRNG
/// ([`RngEntropy`]); the vectors replay recorded ones, in the order the
/// reference asks for them (KEM material before the new X448 key in a DH
/// step).
pub trait RatchetEntropy {
    fn x448_key(&mut self) -> PrivateKey;
    fn kem_keypair(&mut self) -> Result<KemKeyPair, CryptoError>;
    fn kem_encapsulate(&mut self, public: &[u8]) -> Result<(Vec<u8>, KemSecret), CryptoError>;
}

/// Entropy from a cryptographic random generator.
pub struct RngEntropy<R>(pub R);

impl<R: rand_core::CryptoRng> RatchetEntropy for RngEntropy<R> {
    fn x448_key(&mut self) -> PrivateKey {
        PrivateKey::generate_with(KeyAlgorithm::X448, &mut self.0)
    }
    fn kem_keypair(&mut self) -> Result<KemKeyPair, CryptoError> {
        kem::generate(&mut self.0)
    }
    fn kem_encapsulate(&mut self, public: &[u8]) -> Result<(Vec<u8>, KemSecret), CryptoError> {
        kem::encapsulate(public, &mut self.0)
    }
}

/// Entropy from the operating system.
#[cfg(feature = "std")]
pub fn os_entropy() -> RngEntropy<OsRng> {
    RngEntropy(OsRng)
}

/// A `CryptoRng` over the OS generator (getrandom), for [`RngEntropy`].
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRng;

#[cfg(feature = "std")]
impl rand_core::TryRng for OsRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from_le_bytes(crate::crypto::random_array()))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from_le_bytes(crate::crypto::random_array()))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        crate::crypto::random_bytes(dst);
        Ok(())
    }
}

#[cfg(feature = "std")]
impl rand_core::TryCryptoRng for OsRng {}

/// A KEM secret this party agreed with the peer's key (`RatchetKEMAccepted`).
#[derive(Clone, PartialEq, Eq)]
pub struct KemAccepted {
    /// The peer's encapsulation key we encapsulated to.
    pub peer_public: Vec<u8>,
    pub shared: KemSecret,
    /// The ciphertext we send so the peer recovers `shared`.
    pub ciphertext: Vec<u8>,
}

impl core::fmt::Debug for KemAccepted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KemAccepted(<secret>)")
    }
}

/// The private half of a party's KEM parameters (`PrivRKEMParams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivKem {
    Proposed(KemKeyPair),
    Accepted {
        ciphertext: Vec<u8>,
        shared: KemSecret,
        keys: KemKeyPair,
    },
}

impl PrivKem {
    fn keys(&self) -> &KemKeyPair {
        match self {
            Self::Proposed(k) | Self::Accepted { keys: k, .. } => k,
        }
    }
}

/// What a party does with KEM when it makes its parameters (`UseKEM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UseKem {
    Propose,
    /// Accept the peer's proposal: encapsulate to this key.
    Accept(Vec<u8>),
}

/// A party's private X3DH keys (and KEM state) kept until the ratchet starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eKeys {
    pub key1: PrivateKey,
    pub key2: PrivateKey,
    pub kem: Option<PrivKem>,
}

/// `generateE2EParams`: two fresh X448 keys and, from e2e v3 when asked, a
/// KEM key pair (and an encapsulation to the peer's key when accepting).
pub fn generate_e2e_params(
    version: u16,
    use_kem: Option<UseKem>,
    ent: &mut impl RatchetEntropy,
) -> Result<(E2eKeys, E2eParams), CryptoError> {
    let key1 = ent.x448_key();
    let key2 = ent.x448_key();
    let (kem_pub, kem_priv) = match use_kem {
        Some(use_kem) if version >= PQ_RATCHET_E2E_VERSION => {
            let keys = ent.kem_keypair()?;
            match use_kem {
                UseKem::Propose => (
                    Some(KemParams::Proposed {
                        public: keys.public.clone(),
                    }),
                    Some(PrivKem::Proposed(keys)),
                ),
                UseKem::Accept(peer) => {
                    let (ciphertext, shared) = ent.kem_encapsulate(&peer)?;
                    (
                        Some(KemParams::Accepted {
                            ciphertext: ciphertext.clone(),
                            public: keys.public.clone(),
                        }),
                        Some(PrivKem::Accepted {
                            ciphertext,
                            shared,
                            keys,
                        }),
                    )
                }
            }
        }
        _ => (None, None),
    };
    let params = E2eParams {
        version,
        key1: key1.public_key(),
        key2: key2.public_key(),
        kem: kem_pub,
    };
    Ok((
        E2eKeys {
            key1,
            key2,
            kem: kem_priv,
        },
        params,
    ))
}

/// What X3DH gives the ratchet (`RatchetInitParams`).
#[derive(Clone, PartialEq, Eq)]
pub struct RatchetInit {
    /// Joiner's key1 ‖ creator's key1, raw (112 bytes).
    pub assoc_data: Vec<u8>,
    pub root_key: [u8; 32],
    /// The joiner's first sending header key.
    pub snd_header_key: [u8; 32],
    /// The joiner's first "next receiving" header key.
    pub rcv_next_header_key: [u8; 32],
    pub kem_accepted: Option<KemAccepted>,
}

impl core::fmt::Debug for RatchetInit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RatchetInit(<secret>)")
    }
}

/// X3DH failures (`CERatchetKEMState` and bad keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X3dhError {
    #[error("KEM parameters do not fit this party's KEM state")]
    KemState,
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

/// The HKDF of X3DH and the ratchet, split into three 32-byte keys (`hkdf3`).
pub(crate) fn hkdf3(salt: &[u8], ikm: &[u8], info: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let hk = hkdf::Hkdf::<sha2::Sha512>::new(Some(salt), ikm);
    let mut out = Zeroizing::new([0u8; 96]);
    // 96 bytes is far below HKDF-SHA512's 255 × 64 limit.
    hk.expand(info, &mut out[..]).expect("96-byte HKDF output");
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let mut c = [0u8; 32];
    a.copy_from_slice(&out[..32]);
    b.copy_from_slice(&out[32..64]);
    c.copy_from_slice(&out[64..]);
    (a, b, c)
}

fn x3dh_output(
    ad_first: &PublicKey,
    ad_second: &PublicKey,
    dhs: [&[u8; 56]; 3],
    kem_accepted: Option<KemAccepted>,
) -> RatchetInit {
    let mut assoc_data = Vec::with_capacity(112);
    assoc_data.extend_from_slice(ad_first.raw());
    assoc_data.extend_from_slice(ad_second.raw());
    let mut ikm = Zeroizing::new(Vec::with_capacity(3 * 56 + 32));
    for d in dhs {
        ikm.extend_from_slice(d);
    }
    if let Some(k) = &kem_accepted {
        ikm.extend_from_slice(&k.shared[..]);
    }
    let (hk, nhk, rk) = hkdf3(&[0u8; 64], &ikm, b"SimpleXX3DH");
    RatchetInit {
        assoc_data,
        root_key: rk,
        snd_header_key: hk,
        rcv_next_header_key: nhk,
        kem_accepted,
    }
}

/// `pqX3dhSnd`, the joining party: own keys against the link's parameters.
/// Returns the KEM key pair the ratchet keeps, if any.
pub fn x3dh_joiner(
    own: &E2eKeys,
    peer: &E2eParams,
) -> Result<(RatchetInit, Option<KemKeyPair>), X3dhError> {
    let (keys, accepted) = match &own.kem {
        Some(own_kem) if peer.version >= PQ_RATCHET_E2E_VERSION => match (own_kem, &peer.kem) {
            (
                PrivKem::Accepted {
                    ciphertext,
                    shared,
                    keys,
                },
                Some(KemParams::Proposed { public }),
            ) => (
                Some(keys.clone()),
                Some(KemAccepted {
                    peer_public: public.clone(),
                    shared: shared.clone(),
                    ciphertext: ciphertext.clone(),
                }),
            ),
            (PrivKem::Proposed(keys), _) => (Some(keys.clone()), None),
            _ => return Err(X3dhError::KemState),
        },
        _ => (None, None),
    };
    let dh1 = own.key2.dh_x448(&peer.key1)?;
    let dh2 = own.key1.dh_x448(&peer.key2)?;
    let dh3 = own.key2.dh_x448(&peer.key2)?;
    let init = x3dh_output(
        &own.key1.public_key(),
        &peer.key1,
        [&dh1, &dh2, &dh3],
        accepted,
    );
    Ok((init, keys))
}

/// `pqX3dhRcv`, the link creator: own link keys against the joiner's
/// parameters from its confirmation.
pub fn x3dh_creator(
    own: &E2eKeys,
    peer: &E2eParams,
) -> Result<(RatchetInit, Option<KemKeyPair>), X3dhError> {
    let kem = match &peer.kem {
        Some(KemParams::Accepted { ciphertext, public })
            if peer.version >= PQ_RATCHET_E2E_VERSION =>
        {
            match &own.kem {
                Some(PrivKem::Proposed(keys)) => {
                    let shared = kem::decapsulate(&keys.secret, ciphertext)?;
                    Some((
                        keys.clone(),
                        KemAccepted {
                            peer_public: public.clone(),
                            shared,
                            ciphertext: ciphertext.clone(),
                        },
                    ))
                }
                _ => return Err(X3dhError::KemState),
            }
        }
        _ => None,
    };
    let dh1 = own.key1.dh_x448(&peer.key2)?;
    let dh2 = own.key2.dh_x448(&peer.key1)?;
    let dh3 = own.key2.dh_x448(&peer.key2)?;
    let (keys, accepted) = match kem {
        Some((k, a)) => (Some(k), Some(a)),
        None => (None, None),
    };
    let init = x3dh_output(
        &peer.key1,
        &own.key1.public_key(),
        [&dh1, &dh2, &dh3],
        accepted,
    );
    Ok((init, keys))
}

impl E2eKeys {
    /// The KEM key pair, whatever state it is in.
    pub fn kem_keys(&self) -> Option<&KemKeyPair> {
        self.kem.as_ref().map(PrivKem::keys)
    }
}
