//! The SimpleX double ratchet (`Crypto/Ratchet.hs`): Signal's double ratchet
//! with header encryption over X448, HKDF-SHA512 and AES-256-GCM with 16-byte
//! IVs, plus the optional sntrup761 KEM mixed into every DH step (PQDR).
//!
//! ```text
//! EncRatchetMessage = large_v(EncMessageHeader) ‖ bodyTag(16) ‖ Tail(body)
//! EncMessageHeader  = u16 ehVersion ‖ headerIV(16) ‖ headerTag(16) ‖ large_v(headerCiphertext)
//! MsgHeader         = u16 maxVersion ‖ short(X448 DER) [‖ Maybe KemParams if v ≥ 3] ‖ u32 PN ‖ u32 Ns
//! large_v           = u16 length from e2e v3, one byte below; read back by the first byte (< 32 → u16)
//! ```
//!
//! Naming: the link creator starts with [`Ratchet::init_creator`] (the
//! reference's `initRcvRatchet`), the joiner with [`Ratchet::init_joiner`]
//! (`initSndRatchet`). Decryption never mutates in place: it returns the new
//! state and the change to the skipped keys, which the caller must persist
//! even when the body failed, exactly as the reference does — a receiver that
//! rolls back desynchronises from its peer.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use zeroize::{Zeroize, Zeroizing};

use super::version::{E2E_VERSIONS, PQ_RATCHET_E2E_VERSION};
use super::x3dh::{KemAccepted, KemParams, RatchetEntropy, RatchetInit, hkdf3};
use crate::crypto::CryptoError;
use crate::crypto::aead::{self, IV_SIZE, TAG_SIZE};
use crate::crypto::kem::{self, KemKeyPair};
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};

/// `maxSkip`: message keys one step may derive ahead of the chain.
pub const MAX_SKIP: u32 = 512;
/// Padded header without PQ support, or below e2e v3.
pub const HEADER_LEN: usize = 88;
/// Padded header with PQ support (room for a KEM accept).
pub const PQ_HEADER_LEN: usize = 2310;

/// `paddedHeaderLen`.
pub const fn padded_header_len(version: u16, pq_support: bool) -> usize {
    if pq_support && version >= PQ_RATCHET_E2E_VERSION {
        PQ_HEADER_LEN
    } else {
        HEADER_LEN
    }
}

/// Ratchet failures, named as the reference's `CryptoError`s they mirror.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatchetError {
    /// No header key opens the header (`CERatchetHeader`).
    #[error("no ratchet header key decrypts this message")]
    Header,
    /// The header or message does not parse (`CryptoHeaderError`).
    #[error("malformed ratchet message: {0}")]
    Malformed(DecodeError),
    /// This message was already received (`CERatchetDuplicateMessage`).
    #[error("duplicate message")]
    Duplicate,
    /// A message older than the last one received (`CERatchetEarlierMessage`).
    #[error("message is {0} messages earlier than the last one received")]
    Earlier(u32),
    /// Too many messages skipped in one step (`CERatchetTooManySkipped`).
    #[error("{0} skipped messages exceed the limit")]
    TooManySkipped(u32),
    /// The state cannot do this (`CERatchetState`), e.g. send before any
    /// message was received by the link creator.
    #[error("ratchet state does not allow this")]
    State,
    /// A KEM accept without our own KEM key (`CERatchetKEMState`).
    #[error("KEM parameters do not fit the ratchet's KEM state")]
    KemState,
    /// The body does not authenticate (`A_CRYPTO DECRYPT_AES`).
    #[error("message body does not decrypt")]
    Body,
    /// The plaintext does not fit the padded length (`CryptoLargeMsgError`).
    #[error("message of {len} bytes does not fit {padded} padded bytes")]
    TooLarge { len: usize, padded: usize },
    #[error("crypto: {0}")]
    Crypto(CryptoError),
}

impl From<DecodeError> for RatchetError {
    fn from(e: DecodeError) -> Self {
        Self::Malformed(e)
    }
}

impl From<CryptoError> for RatchetError {
    fn from(e: CryptoError) -> Self {
        Self::Crypto(e)
    }
}

impl From<EncodeError> for RatchetError {
    fn from(_: EncodeError) -> Self {
        Self::State
    }
}

type Key = [u8; 32];

/// A message key and its IV (`MessageKey`).
#[derive(Clone, PartialEq, Eq, Zeroize)]
pub struct MessageKey {
    pub key: Key,
    pub iv: [u8; IV_SIZE],
}

impl core::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MessageKey(<secret>)")
    }
}

/// `chainKdf`: next chain key, message key, message IV, header IV.
pub fn chain_kdf(ck: &Key) -> (Key, MessageKey, [u8; IV_SIZE]) {
    let (ck2, mk, ivs) = hkdf3(&[], ck, b"SimpleXChainRatchet");
    let mut iv = [0u8; IV_SIZE];
    let mut header_iv = [0u8; IV_SIZE];
    iv.copy_from_slice(&ivs[..16]);
    header_iv.copy_from_slice(&ivs[16..]);
    (ck2, MessageKey { key: mk, iv }, header_iv)
}

/// `rootKdf`: next root key, chain key, next header key.
pub fn root_kdf(rk: &Key, dh_out: &[u8], kem_secret: Option<&[u8; 32]>) -> (Key, Key, Key) {
    let mut ikm = Zeroizing::new(dh_out.to_vec());
    if let Some(ss) = kem_secret {
        ikm.extend_from_slice(ss);
    }
    hkdf3(rk, &ikm, b"SimpleXRootRatchet")
}

/// Skipped message keys, by header key then message number
/// (`SkippedMsgKeys`). Kept apart from [`Ratchet`] because the reference
/// persists them as rows, changed by [`SkippedDiff`]s.
pub type SkippedKeys = BTreeMap<Key, BTreeMap<u32, MessageKey>>;

/// How one decryption changed the skipped keys (`SkippedMsgDiff`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkippedDiff {
    None,
    /// A stored key was used (deleted even if the body then failed).
    Remove {
        header_key: Key,
        n: u32,
    },
    Add(SkippedKeys),
}

impl SkippedDiff {
    /// Applies the change (`applySMDiff`).
    pub fn apply(self, keys: &mut SkippedKeys) {
        match self {
            Self::None => {}
            Self::Remove { header_key, n } => {
                if let Some(m) = keys.get_mut(&header_key) {
                    m.remove(&n);
                    if m.is_empty() {
                        keys.remove(&header_key);
                    }
                }
            }
            Self::Add(add) => {
                for (hk, mks) in add {
                    keys.entry(hk).or_default().extend(mks);
                }
            }
        }
    }
}

/// The KEM state of a ratchet (`RatchetKEM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatchetKem {
    pub own: KemKeyPair,
    pub accepted: Option<KemAccepted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SndChain {
    dhrr: PublicKey,
    ck: Key,
    hk: Key,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RcvChain {
    ck: Key,
    hk: Key,
}

/// One side's ratchet state. Secrets are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Ratchet {
    /// Encodings used when sending (`current`).
    current: u16,
    max_supported: u16,
    ad: Vec<u8>,
    dhrs: PrivateKey,
    /// Cached: an X448 base multiplication per message would dominate.
    dhrs_pub: PublicKey,
    kem: Option<RatchetKem>,
    /// Large headers; once on, never off (`rcSupportKEM`).
    support_kem: bool,
    /// Use KEM in the next DH step (`rcEnableKEM`).
    enable_kem: bool,
    snd_kem: bool,
    rcv_kem: bool,
    rk: Key,
    snd: Option<SndChain>,
    rcv: Option<RcvChain>,
    ns: u32,
    nr: u32,
    pn: u32,
    nhks: Key,
    nhkr: Key,
}

impl Drop for Ratchet {
    fn drop(&mut self) {
        self.rk.zeroize();
        self.nhks.zeroize();
        self.nhkr.zeroize();
        if let Some(s) = &mut self.snd {
            s.ck.zeroize();
            s.hk.zeroize();
        }
        if let Some(r) = &mut self.rcv {
            r.ck.zeroize();
            r.hk.zeroize();
        }
    }
}

impl core::fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ratchet")
            .field("version", &(self.current, self.max_supported))
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("pn", &self.pn)
            .field("pq", &(self.support_kem, self.enable_kem))
            .finish_non_exhaustive()
    }
}

/// A decoded ratchet header (`MsgHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgHeader {
    pub max_version: u16,
    pub dh: PublicKey,
    pub kem: Option<KemParams>,
    pub pn: u32,
    pub ns: u32,
}

impl MsgHeader {
    /// `encodeMsgHeader` at the sender's current version.
    pub fn encode(&self, version: u16) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.u16(self.max_version).short(&self.dh.to_der())?;
        if version >= PQ_RATCHET_E2E_VERSION {
            w.maybe(self.kem.as_ref(), |w, k| k.write(w))?;
        }
        w.u32(self.pn).u32(self.ns);
        Ok(w.into_vec())
    }
    /// `msgHeaderP ehVersion`: trailing bytes are ignored, as the reference's
    /// parser does.
    pub fn decode(version: u16, b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let max_version = r.u16()?;
        let dh = PublicKey::from_der_as(KeyAlgorithm::X448, r.short()?)
            .map_err(|_| DecodeError::Invalid("ratchet key is not X448"))?;
        let kem = if version >= PQ_RATCHET_E2E_VERSION {
            r.maybe(KemParams::read)?
        } else {
            None
        };
        Ok(Self {
            max_version,
            dh,
            kem,
            pn: r.u32()?,
            ns: r.u32()?,
        })
    }
}

/// `encodeLarge`: a u16 length from e2e v3, one byte before.
fn write_large_v(w: &mut Writer, version: u16, b: &[u8]) -> Result<(), EncodeError> {
    if version >= PQ_RATCHET_E2E_VERSION {
        w.large(b)?;
    } else {
        w.short(b)?;
    }
    Ok(())
}

/// `largeP`: fields are longer than 31 bytes, so a first byte below 32 must
/// be the high byte of a u16 length.
fn read_large_v<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    match r.peek() {
        Some(b) if b < 32 => r.large(),
        _ => r.short(),
    }
}

/// The encrypted header (`EncMessageHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncMessageHeader {
    pub version: u16,
    pub iv: [u8; IV_SIZE],
    pub tag: [u8; TAG_SIZE],
    pub body: Vec<u8>,
}

impl EncMessageHeader {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.u16(self.version).raw(&self.iv).raw(&self.tag);
        write_large_v(&mut w, self.version, &self.body)?;
        Ok(w.into_vec())
    }
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        Ok(Self {
            version: r.u16()?,
            iv: r.array()?,
            tag: r.array()?,
            body: read_large_v(&mut r)?.to_vec(),
        })
    }
}

/// An encrypted ratchet message (`EncRatchetMessage`), header still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncRatchetMessage<'a> {
    pub header: &'a [u8],
    pub tag: [u8; TAG_SIZE],
    pub body: &'a [u8],
}

impl<'a> EncRatchetMessage<'a> {
    pub fn decode(b: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let header = read_large_v(&mut r)?;
        let tag = r.array()?;
        Ok(Self {
            header,
            tag,
            body: r.tail(),
        })
    }
    pub fn encode(&self, version: u16) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(self.header.len() + self.body.len() + 18);
        write_large_v(&mut w, version, self.header)?;
        w.raw(&self.tag).raw(self.body);
        Ok(w.into_vec())
    }
}

/// The outcome of a decryption whose state change must be kept
/// (`DecryptResult`): the new state and skipped-key change apply even when
/// `plaintext` is an error.
#[derive(Debug)]
pub struct Decrypted {
    pub plaintext: Result<Vec<u8>, RatchetError>,
    pub ratchet: Ratchet,
    pub skipped: SkippedDiff,
    pub path: DecryptPath,
}

/// Which key opened a message: worth logging when a peer misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptPath {
    /// The current receiving chain.
    Same,
    /// The next header key: a DH ratchet step was taken.
    Advance,
    /// A stored skipped message key.
    Skipped,
}

use DecryptPath as Step;

impl Ratchet {
    /// The link creator's ratchet (`initRcvRatchet`): `own_key2` is its
    /// second X3DH key, which becomes its first ratchet key. It can send only
    /// after the first received message.
    pub fn init_creator(
        e2e_version: u16,
        own_key2: PrivateKey,
        init: RatchetInit,
        kem_keys: Option<KemKeyPair>,
        pq_support: bool,
    ) -> Self {
        let RatchetInit {
            assoc_data,
            root_key,
            snd_header_key,
            rcv_next_header_key,
            kem_accepted,
        } = init;
        Self {
            current: e2e_version,
            max_supported: E2E_VERSIONS.max().max(e2e_version),
            ad: assoc_data,
            dhrs_pub: own_key2.public_key(),
            dhrs: own_key2,
            kem: kem_keys.map(|own| RatchetKem {
                own,
                accepted: kem_accepted,
            }),
            support_kem: pq_support,
            enable_kem: pq_support,
            snd_kem: false,
            rcv_kem: false,
            rk: root_key,
            snd: None,
            rcv: None,
            ns: 0,
            nr: 0,
            pn: 0,
            nhks: rcv_next_header_key,
            nhkr: snd_header_key,
        }
    }

    /// The joiner's ratchet (`initSndRatchet`): `peer_key2` is the creator's
    /// second X3DH key, `own_ratchet_key` a fresh X448 key.
    pub fn init_joiner(
        e2e_version: u16,
        peer_key2: PublicKey,
        own_ratchet_key: PrivateKey,
        init: RatchetInit,
        kem_keys: Option<KemKeyPair>,
    ) -> Result<Self, RatchetError> {
        let RatchetInit {
            assoc_data,
            root_key,
            snd_header_key,
            rcv_next_header_key,
            kem_accepted,
        } = init;
        let dh = own_ratchet_key.dh_x448(&peer_key2)?;
        let (rk, cks, nhks) = root_kdf(
            &root_key,
            &dh[..],
            kem_accepted.as_ref().map(|k| &*k.shared),
        );
        let pq_on = kem_keys.is_some();
        Ok(Self {
            current: e2e_version,
            max_supported: E2E_VERSIONS.max().max(e2e_version),
            ad: assoc_data,
            dhrs_pub: own_ratchet_key.public_key(),
            dhrs: own_ratchet_key,
            snd_kem: kem_accepted.is_some(),
            kem: kem_keys.map(|own| RatchetKem {
                own,
                accepted: kem_accepted,
            }),
            support_kem: pq_on,
            enable_kem: pq_on,
            rcv_kem: false,
            rk,
            snd: Some(SndChain {
                dhrr: peer_key2,
                ck: cks,
                hk: snd_header_key,
            }),
            rcv: None,
            ns: 0,
            nr: 0,
            pn: 0,
            nhks,
            nhkr: rcv_next_header_key,
        })
    }

    /// The e2e version used for sending.
    pub fn version(&self) -> u16 {
        self.current
    }
    /// Whether headers are PQ-sized (`rcSupportKEM`).
    pub fn pq_support(&self) -> bool {
        self.support_kem
    }
    /// Whether PQ is in use for the next steps (`rcEnableKEM`).
    pub fn pq_enabled(&self) -> bool {
        self.enable_kem
    }
    /// Whether the current sending / receiving chains mixed in a KEM secret.
    pub fn pq_chains(&self) -> (bool, bool) {
        (self.snd_kem, self.rcv_kem)
    }
    pub fn can_send(&self) -> bool {
        self.snd.is_some()
    }
    /// The associated data both sides bind every message to.
    pub fn assoc_data(&self) -> &[u8] {
        &self.ad
    }
    /// Message counters (Ns, Nr, PN).
    pub fn counters(&self) -> (u32, u32, u32) {
        (self.ns, self.nr, self.pn)
    }

    /// Encrypts one message padded to `padded_len` (`rcEncryptHeader` +
    /// `rcEncryptMsg`). `pq` switches PQ on or off from this message on;
    /// `None` keeps the state's choice. The state changes only on success.
    pub fn encrypt(
        &mut self,
        msg: &[u8],
        padded_len: usize,
        pq: Option<bool>,
    ) -> Result<Vec<u8>, RatchetError> {
        if msg.len() + 2 > padded_len {
            return Err(RatchetError::TooLarge {
                len: msg.len(),
                padded: padded_len,
            });
        }
        let snd = self.snd.as_ref().ok_or(RatchetError::State)?;
        let (ck2, mk, header_iv) = chain_kdf(&snd.ck);
        let v = self.current;
        let enable = pq.unwrap_or(self.enable_kem);
        let support = self.support_kem || (v >= PQ_RATCHET_E2E_VERSION && enable);
        let max_version = E2E_VERSIONS.max().max(if pq == Some(true) {
            PQ_RATCHET_E2E_VERSION
        } else {
            v
        });
        let header = MsgHeader {
            max_version,
            dh: self.dhrs_pub.clone(),
            kem: self.kem.as_ref().map(|k| match &k.accepted {
                None => KemParams::Proposed {
                    public: k.own.public.clone(),
                },
                Some(a) => KemParams::Accepted {
                    ciphertext: a.ciphertext.clone(),
                    public: k.own.public.clone(),
                },
            }),
            pn: self.pn,
            ns: self.ns,
        };
        let (htag, hbody) = aead::encrypt_padded(
            &snd.hk,
            &header_iv,
            padded_header_len(v, support),
            &self.ad,
            &header.encode(v)?,
        )?;
        let em_header = EncMessageHeader {
            version: v,
            iv: header_iv,
            tag: htag,
            body: hbody,
        }
        .encode()?;
        let mut body_ad = Vec::with_capacity(self.ad.len() + em_header.len());
        body_ad.extend_from_slice(&self.ad);
        body_ad.extend_from_slice(&em_header);
        let (tag, body) = aead::encrypt_padded(&mk.key, &mk.iv, padded_len, &body_ad, msg)?;
        let out = EncRatchetMessage {
            header: &em_header,
            tag,
            body: &body,
        }
        .encode(v)?;
        // Commit the new state only now that everything succeeded.
        if let Some(s) = &mut self.snd {
            s.ck = ck2;
        }
        self.ns += 1;
        self.support_kem = support;
        self.enable_kem = enable;
        self.max_supported = max_version;
        if let (Some(false), Some(k)) = (pq, &mut self.kem) {
            k.accepted = None;
        }
        Ok(out)
    }

    /// Decrypts one message (`rcDecrypt`). `Err` means the state is
    /// unchanged (no header key opens it, it does not parse, or the KEM state
    /// does not fit); otherwise [`Decrypted`] holds the new state to keep.
    pub fn decrypt(
        &self,
        skipped: &SkippedKeys,
        msg: &[u8],
        ent: &mut impl RatchetEntropy,
    ) -> Result<Decrypted, RatchetError> {
        let enc = EncRatchetMessage::decode(msg)?;
        let enc_header = EncMessageHeader::decode(enc.header)?;
        // Skipped keys first (`decryptSkipped`).
        for (hk, mks) in skipped {
            let header = match self.decrypt_header(hk, &enc_header) {
                Err(RatchetError::Header) => continue,
                Err(e) => return Err(e),
                Ok(h) => h,
            };
            return match mks.get(&header.ns) {
                Some(mk) => Ok(Decrypted {
                    plaintext: self.decrypt_body(mk, &enc),
                    ratchet: self.clone(),
                    skipped: SkippedDiff::Remove {
                        header_key: *hk,
                        n: header.ns,
                    },
                    path: DecryptPath::Skipped,
                }),
                None => {
                    let step = if self.rcv.as_ref().is_some_and(|r| &r.hk == hk) {
                        Step::Same
                    } else if hk == &self.nhkr {
                        Step::Advance
                    } else {
                        return Err(RatchetError::Header);
                    };
                    self.decrypt_with(step, header, &enc, ent)
                }
            };
        }
        let (step, header) = match &self.rcv {
            Some(r) => match self.decrypt_header(&r.hk, &enc_header) {
                Ok(h) => (Step::Same, h),
                Err(RatchetError::Header) => {
                    (Step::Advance, self.decrypt_header(&self.nhkr, &enc_header)?)
                }
                Err(e) => return Err(e),
            },
            None => (Step::Advance, self.decrypt_header(&self.nhkr, &enc_header)?),
        };
        self.decrypt_with(step, header, &enc, ent)
    }

    /// [`Ratchet::decrypt`] that applies the state change in place.
    pub fn decrypt_in_place(
        &mut self,
        skipped: &mut SkippedKeys,
        msg: &[u8],
        ent: &mut impl RatchetEntropy,
    ) -> Result<Vec<u8>, RatchetError> {
        let d = self.decrypt(skipped, msg, ent)?;
        *self = d.ratchet;
        d.skipped.apply(skipped);
        d.plaintext
    }

    fn decrypt_header(&self, hk: &Key, eh: &EncMessageHeader) -> Result<MsgHeader, RatchetError> {
        let plain = aead::decrypt_padded(hk, &eh.iv, &self.ad, &eh.body, &eh.tag)
            .map_err(|_| RatchetError::Header)?;
        Ok(MsgHeader::decode(eh.version, &plain)?)
    }

    fn decrypt_body(
        &self,
        mk: &MessageKey,
        enc: &EncRatchetMessage<'_>,
    ) -> Result<Vec<u8>, RatchetError> {
        let mut ad = Vec::with_capacity(self.ad.len() + enc.header.len());
        ad.extend_from_slice(&self.ad);
        ad.extend_from_slice(enc.header);
        aead::decrypt_padded(&mk.key, &mk.iv, &ad, enc.body, &enc.tag).map_err(|e| match e {
            CryptoError::AuthFailed => RatchetError::Body,
            e => RatchetError::Crypto(e),
        })
    }

    /// `decryptRcMessage`.
    fn decrypt_with(
        &self,
        step: Step,
        header: MsgHeader,
        enc: &EncRatchetMessage<'_>,
        ent: &mut impl RatchetEntropy,
    ) -> Result<Decrypted, RatchetError> {
        let mut rc = self.clone();
        if header.max_version > rc.current {
            rc.current = rc.current.max(header.max_version.min(rc.max_supported));
        }
        let mut added = SkippedKeys::new();
        if let Step::Advance = step {
            // Unlike the skip in the new chain below, a failure here is
            // thrown: the state stays as it was.
            merge(&mut added, rc.skip_message_keys(header.pn)?);
            rc.ratchet_step(&header, ent)?;
        }
        let diff = |added: SkippedKeys| {
            if added.is_empty() {
                SkippedDiff::None
            } else {
                SkippedDiff::Add(added)
            }
        };
        match rc.skip_message_keys(header.ns) {
            Err(e) => Ok(Decrypted {
                plaintext: Err(e),
                ratchet: rc,
                skipped: diff(added),
                path: step,
            }),
            Ok(keys) => {
                merge(&mut added, keys);
                let Some(rcv) = &mut rc.rcv else {
                    return Ok(Decrypted {
                        plaintext: Err(RatchetError::State),
                        ratchet: rc,
                        skipped: diff(added),
                        path: step,
                    });
                };
                let (ck2, mk, _) = chain_kdf(&rcv.ck);
                rcv.ck = ck2;
                rc.nr += 1;
                let plaintext = self.decrypt_body(&mk, enc);
                Ok(Decrypted {
                    plaintext,
                    ratchet: rc,
                    skipped: diff(added),
                    path: step,
                })
            }
        }
    }

    /// `skipMessageKeys`: derives and returns the keys `Nr..until-1` of the
    /// receiving chain.
    fn skip_message_keys(&mut self, until: u32) -> Result<SkippedKeys, RatchetError> {
        let Some(rcv) = &mut self.rcv else {
            return Ok(SkippedKeys::new());
        };
        let nr = self.nr;
        if nr > until.saturating_add(1) {
            return Err(RatchetError::Earlier(nr - until - 1));
        }
        if until.checked_add(1) == Some(nr) {
            return Err(RatchetError::Duplicate);
        }
        if nr.saturating_add(MAX_SKIP) < until {
            return Err(RatchetError::TooManySkipped(until + 1 - nr));
        }
        let mut out = SkippedKeys::new();
        if nr == until {
            return Ok(out);
        }
        let mut mks = BTreeMap::new();
        let mut ck = rcv.ck;
        for n in nr..until {
            let (ck2, mk, _) = chain_kdf(&ck);
            mks.insert(n, mk);
            ck = ck2;
        }
        rcv.ck = ck;
        self.nr = until;
        out.insert(rcv.hk, mks);
        Ok(out)
    }

    /// The DH ratchet step with its KEM part (`ratchetStep`, `pqRatchetStep`).
    fn ratchet_step(
        &mut self,
        header: &MsgHeader,
        ent: &mut impl RatchetEntropy,
    ) -> Result<(), RatchetError> {
        let pq_allowed = self.enable_kem && self.current >= PQ_RATCHET_E2E_VERSION;
        let (ss_rcv, ss_snd, kem2) = match &header.kem {
            None => match &self.kem {
                None if pq_allowed => (
                    None,
                    None,
                    Some(RatchetKem {
                        own: ent.kem_keypair()?,
                        accepted: None,
                    }),
                ),
                _ => (None, None, None),
            },
            Some(params) => {
                let ss_rcv = match params {
                    KemParams::Proposed { .. } => None,
                    KemParams::Accepted { ciphertext, .. } => match &self.kem {
                        None => return Err(RatchetError::KemState),
                        Some(k) => Some(kem::decapsulate(&k.own.secret, ciphertext)?),
                    },
                };
                if pq_allowed {
                    let peer = params.public().to_vec();
                    let (ciphertext, shared) = ent.kem_encapsulate(&peer)?;
                    let own = ent.kem_keypair()?;
                    let snd = shared.clone();
                    (
                        ss_rcv,
                        Some(snd),
                        Some(RatchetKem {
                            own,
                            accepted: Some(KemAccepted {
                                peer_public: peer,
                                shared,
                                ciphertext,
                            }),
                        }),
                    )
                } else {
                    (ss_rcv, None, None)
                }
            }
        };
        let new_dhrs = ent.x448_key();
        let dh1 = self.dhrs.dh_x448(&header.dh)?;
        let (rk1, ckr, nhkr) = root_kdf(&self.rk, &dh1[..], ss_rcv.as_deref());
        let dh2 = new_dhrs.dh_x448(&header.dh)?;
        let (rk2, cks, nhks) = root_kdf(&rk1, &dh2[..], ss_snd.as_deref());
        let enable = ss_snd.is_some() || ss_rcv.is_some() || kem2.is_some();
        self.support_kem = self.support_kem || (self.current >= PQ_RATCHET_E2E_VERSION && enable);
        self.enable_kem = enable;
        self.snd_kem = ss_snd.is_some();
        self.rcv_kem = ss_rcv.is_some();
        self.kem = kem2;
        self.dhrs_pub = new_dhrs.public_key();
        self.dhrs = new_dhrs;
        self.rk = rk2;
        self.snd = Some(SndChain {
            dhrr: header.dh.clone(),
            ck: cks,
            hk: self.nhks,
        });
        self.rcv = Some(RcvChain {
            ck: ckr,
            hk: self.nhkr,
        });
        self.pn = self.ns;
        self.ns = 0;
        self.nr = 0;
        self.nhks = nhks;
        self.nhkr = nhkr;
        Ok(())
    }
}

fn merge(into: &mut SkippedKeys, from: SkippedKeys) {
    for (hk, mks) in from {
        into.entry(hk).or_default().extend(mks);
    }
}

/// Version of our own storage format for ratchet state (the reference
/// stores JSON in its database; this is not a wire format).
const STATE_FORMAT: u8 = 1;

fn read_key(r: &mut Reader<'_>) -> Result<Key, DecodeError> {
    r.array()
}

/// A stored KEM key pair (shared with the connection's storage format).
pub(crate) fn write_kem_pair(w: &mut Writer, k: &KemKeyPair) -> Result<(), EncodeError> {
    w.large(&k.public)?.large(&k.secret)?;
    Ok(())
}

pub(crate) fn read_kem_pair(r: &mut Reader<'_>) -> Result<KemKeyPair, DecodeError> {
    let public = r.large()?.to_vec();
    let secret = r.large()?.to_vec();
    KemKeyPair::from_parts(public, secret).map_err(|_| DecodeError::Invalid("stored KEM key pair"))
}

impl Ratchet {
    /// The whole state, to be stored before the message that changed it is
    /// acknowledged. Contains secrets: keep it encrypted or in a 0600 file.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, EncodeError> {
        let mut w = Writer::with_capacity(256);
        w.u8(STATE_FORMAT).u16(self.current).u16(self.max_supported);
        // The public half is stored too: deriving it is an X448 base
        // multiplication, which would otherwise run at every load.
        w.large(&self.ad)?
            .short(self.dhrs.raw())?
            .short(self.dhrs_pub.raw())?;
        w.maybe(self.kem.as_ref(), |w, k| {
            write_kem_pair(w, &k.own)?;
            w.maybe(k.accepted.as_ref(), |w, a| {
                w.large(&a.peer_public)?
                    .raw(&a.shared[..])
                    .large(&a.ciphertext)?;
                Ok(())
            })?;
            Ok(())
        })?;
        let flags = u8::from(self.support_kem)
            | (u8::from(self.enable_kem) << 1)
            | (u8::from(self.snd_kem) << 2)
            | (u8::from(self.rcv_kem) << 3);
        w.u8(flags).raw(&self.rk);
        w.maybe(self.snd.as_ref(), |w, s| {
            w.short(s.dhrr.raw())?.raw(&s.ck).raw(&s.hk);
            Ok(())
        })?;
        w.maybe(self.rcv.as_ref(), |w, c| {
            w.raw(&c.ck).raw(&c.hk);
            Ok(())
        })?;
        w.u32(self.ns)
            .u32(self.nr)
            .u32(self.pn)
            .raw(&self.nhks)
            .raw(&self.nhkr);
        Ok(Zeroizing::new(w.into_vec()))
    }

    /// Reads a state written by [`Ratchet::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8()? != STATE_FORMAT {
            return Err(DecodeError::Invalid("unknown ratchet state format"));
        }
        let current = r.u16()?;
        let max_supported = r.u16()?;
        let ad = r.large()?.to_vec();
        let dhrs = PrivateKey::from_raw(KeyAlgorithm::X448, r.short()?)
            .map_err(|_| DecodeError::Invalid("stored ratchet key"))?;
        let dhrs_pub = PublicKey::from_raw(KeyAlgorithm::X448, r.short()?)
            .map_err(|_| DecodeError::Invalid("stored ratchet public key"))?;
        let kem = r.maybe(|r| {
            let own = read_kem_pair(r)?;
            let accepted = r.maybe(|r| {
                let peer_public = r.large()?.to_vec();
                let shared = Zeroizing::new(r.array()?);
                let ciphertext = r.large()?.to_vec();
                Ok(KemAccepted {
                    peer_public,
                    shared,
                    ciphertext,
                })
            })?;
            Ok(RatchetKem { own, accepted })
        })?;
        let flags = r.u8()?;
        let rk = read_key(&mut r)?;
        let snd = r.maybe(|r| {
            let dhrr = PublicKey::from_raw(KeyAlgorithm::X448, r.short()?)
                .map_err(|_| DecodeError::Invalid("stored peer ratchet key"))?;
            Ok(SndChain {
                dhrr,
                ck: read_key(r)?,
                hk: read_key(r)?,
            })
        })?;
        let rcv = r.maybe(|r| {
            Ok(RcvChain {
                ck: read_key(r)?,
                hk: read_key(r)?,
            })
        })?;
        let rc = Self {
            current,
            max_supported,
            ad,
            dhrs_pub,
            dhrs,
            kem,
            support_kem: flags & 1 != 0,
            enable_kem: flags & 2 != 0,
            snd_kem: flags & 4 != 0,
            rcv_kem: flags & 8 != 0,
            rk,
            snd,
            rcv,
            ns: r.u32()?,
            nr: r.u32()?,
            pn: r.u32()?,
            nhks: read_key(&mut r)?,
            nhkr: read_key(&mut r)?,
        };
        r.end()?;
        Ok(rc)
    }
}

/// Encodes skipped keys for storage: count, then header key, number,
/// message key and IV per entry.
pub fn encode_skipped(keys: &SkippedKeys) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::new();
    let n: usize = keys.values().map(BTreeMap::len).sum();
    w.u32(n as u32);
    for (hk, mks) in keys {
        for (n, mk) in mks {
            w.raw(hk).u32(*n).raw(&mk.key).raw(&mk.iv);
        }
    }
    Zeroizing::new(w.into_vec())
}

/// Reads what [`encode_skipped`] wrote.
pub fn decode_skipped(b: &[u8]) -> Result<SkippedKeys, DecodeError> {
    let mut r = Reader::new(b);
    let n = r.u32()?;
    let mut keys = SkippedKeys::new();
    for _ in 0..n {
        let hk = read_key(&mut r)?;
        let msg_n = r.u32()?;
        let mk = MessageKey {
            key: read_key(&mut r)?,
            iv: r.array()?,
        };
        keys.entry(hk).or_default().insert(msg_n, mk);
    }
    r.end()?;
    Ok(keys)
}
