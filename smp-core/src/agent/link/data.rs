//! The data behind a short link and the IO-free half of resolving it
//! (agent.md §2.3, `Crypto/ShortLink.hs`, `getConnShortLink'`).
//!
//! ```text
//! contact:    linkId(24) ‖ k(32) = HKDF-SHA512("", linkKey, "SimpleXContactLink", 56); send LGET on linkId
//! invitation: k = HKDF-SHA512("", linkKey, "SimpleXInvLink", 32); send LKEY <sender key> on the link's ID
//! answer LNK senderId (encFixed, encUser), each blob = nonce(24) ‖ secretbox(k, nonce, pad(short(sig) ‖ data, L))
//!   L = 2008 for fixed data, 13784 for user data
//! FixedLinkData = agentVRange ‖ short(root Ed25519 DER) ‖ ConnectionRequest ‖ [short(entityId)] ‖ ignored
//! ConnLinkData  = 'I' ‖ agentVRange ‖ UserLinkData ‖ ignored
//!               | 'C' ‖ agentVRange ‖ Bool direct ‖ list OwnerAuth ‖ list ShortLink ‖ UserLinkData ‖ ignored
//! OwnerAuth     = short(short(ownerId) ‖ short(owner Ed25519 DER) ‖ short(sig) ‖ ignored)
//! UserLinkData  = short(bytes) if ≤ 254 bytes, else 0xFF ‖ Large(bytes)
//! ```
//!
//! Checks, in the reference's order: both blobs decrypt, both parse, the
//! link key is SHA3-256 of the fixed data, the fixed data is signed by its
//! root key, the user data by the root key (or, for contacts, by an owner
//! whose chain of authorisations leads to the root key), and finally the
//! server's answer belongs to the queue in the fixed data.

use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use sha2::Sha512;
use sha3::{Digest, Sha3_256};

use super::short::{LinkKey, ShortLink, ShortLinkType};
use super::{ConnectionMode, ConnectionRequest, LinkError};
use crate::crypto::CryptoError;
use crate::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey, Signature};
use crate::crypto::secretbox::{CbNonce, NONCE_SIZE, SbKey, cb_decrypt, cb_encrypt};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::xftp::handshake::VersionRange;

/// Fixed data fills a 2048-byte box with its nonce and tag.
pub const FIXED_DATA_PADDED_LEN: usize = 2008;
/// User data fills a 13824-byte box with its nonce and tag.
pub const USER_DATA_PADDED_LEN: usize = 13784;

fn hkdf(ikm: &[u8], info: &[u8], out: &mut [u8]) {
    // The lengths used here (32, 56) are far below HKDF-SHA512's limit.
    let _ = Hkdf::<Sha512>::new(Some(&[]), ikm).expand(info, out);
}

/// A contact link's entity ID on the server and its data key
/// (`contactShortLinkKdf`): the ID is derived, so the link needs no ID.
pub fn contact_link_kdf(link_key: &LinkKey) -> ([u8; 24], SbKey) {
    let mut okm = [0u8; 56];
    hkdf(&link_key.0, b"SimpleXContactLink", &mut okm);
    let mut id = [0u8; 24];
    id.copy_from_slice(&okm[..24]);
    let mut k = [0u8; 32];
    k.copy_from_slice(&okm[24..]);
    okm.fill(0);
    (id, SbKey(k))
}

/// An invitation link's data key (`invShortLinkKdf`).
pub fn invitation_link_kdf(link_key: &LinkKey) -> SbKey {
    let mut k = [0u8; 32];
    hkdf(&link_key.0, b"SimpleXInvLink", &mut k);
    SbKey(k)
}

/// Which command fetches the link data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkQueryCommand {
    /// `LGET`: read a contact link's data; it can be read any number of times.
    Lget,
    /// `LKEY <Ed25519 sender key>`: read an invitation's data and secure its
    /// queue with that key at once, so the invitation works only once. The
    /// caller generates the key and keeps it as the connection's sender key.
    Lkey,
}

/// What to send to the link's server and how to open the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkQuery {
    pub command: LinkQueryCommand,
    /// The entity ID to send the command on.
    pub link_id: Vec<u8>,
    /// The key both answer blobs are encrypted with.
    pub key: SbKey,
}

fn read_ed25519(r: &mut Reader<'_>) -> Result<PublicKey, DecodeError> {
    PublicKey::from_der_as(KeyAlgorithm::Ed25519, r.short()?)
        .map_err(|_| DecodeError::Invalid("Ed25519 key"))
}

fn read_signature(r: &mut Reader<'_>) -> Result<Signature, DecodeError> {
    match Signature::from_bytes(r.short()?) {
        Ok(s @ Signature::Ed25519(_)) => Ok(s),
        _ => Err(DecodeError::Invalid("Ed25519 signature")),
    }
}

fn read_range(r: &mut Reader<'_>) -> Result<VersionRange, DecodeError> {
    let (min, max) = (r.u16()?, r.u16()?);
    VersionRange::new(min, max).ok_or(DecodeError::Invalid("version range"))
}

/// The application's part of the link data (the chat puts JSON here).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserLinkData(pub Vec<u8>);

impl UserLinkData {
    /// A short string when it fits, else `0xFF ‖ Large`.
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        if self.0.len() <= 254 {
            w.short(&self.0)?;
        } else {
            w.u8(0xFF).large(&self.0)?;
        }
        Ok(())
    }
    /// A `0xFF` first byte means a `Large` follows; if that does not parse,
    /// the reference falls back to a 255-byte short string, and so do we.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.peek() == Some(0xFF) {
            let mut attempt = r.clone();
            attempt.u8()?;
            if let Ok(b) = attempt.large() {
                *r = attempt;
                return Ok(Self(b.to_vec()));
            }
        }
        Ok(Self(r.short()?.to_vec()))
    }
}

/// A key allowed to sign a contact link's user data besides the root key
/// (group owners), authorised by the root key or an earlier owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerAuth {
    /// Application-defined, unique in the list (the chat's member ID).
    pub owner_id: Vec<u8>,
    pub owner_key: PublicKey,
    /// Signature over `owner_id ‖ DER(owner_key)` by the authorising key.
    pub signature: Signature,
}

impl OwnerAuth {
    /// Authorises `owner_key` for `owner_id` with `signing_key` (`newOwnerAuth`).
    pub fn new(
        owner_id: Vec<u8>,
        owner_key: PublicKey,
        signing_key: &PrivateKey,
    ) -> Result<Self, CryptoError> {
        let signature = signing_key.sign(&Self::signed_bytes(&owner_id, &owner_key))?;
        Ok(Self {
            owner_id,
            owner_key,
            signature,
        })
    }
    fn signed_bytes(owner_id: &[u8], key: &PublicKey) -> Vec<u8> {
        let mut m = owner_id.to_vec();
        m.extend_from_slice(&key.to_der());
        m
    }
    fn signed_by(&self, key: &PublicKey) -> bool {
        key.verify(
            &Self::signed_bytes(&self.owner_id, &self.owner_key),
            &self.signature,
        )
    }
    /// Wrapped in a short string so that later fields can be added.
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        let mut inner = Writer::new();
        inner
            .short(&self.owner_id)?
            .short(&self.owner_key.to_der())?
            .short(self.signature.as_bytes())?;
        w.short(&inner.into_vec())?;
        Ok(())
    }
    /// Bytes after the three fields inside the wrapper are ignored: they are
    /// room for later extensions.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut inner = Reader::new(r.short()?);
        Ok(Self {
            owner_id: inner.short()?.to_vec(),
            owner_key: read_ed25519(&mut inner)?,
            signature: read_signature(&mut inner)?,
        })
    }
}

fn b64_id(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// Why a contact link's owner list was refused (`validateLinkOwners`); the
/// owner is named by its base64url ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("owner key for ID {0} matches root key")]
    RootKey(String),
    #[error("duplicate owner key or ID {0}")]
    Duplicate(String),
    #[error("invalid authorization of owner ID {0}")]
    Unauthorized(String),
}

/// Checks that each owner is authorised by the root key or by an owner
/// before it in the list, and that no ID or key repeats.
pub fn validate_link_owners(root_key: &PublicKey, owners: &[OwnerAuth]) -> Result<(), OwnerError> {
    for (i, o) in owners.iter().enumerate() {
        let prev = &owners[..i];
        if &o.owner_key == root_key {
            return Err(OwnerError::RootKey(b64_id(&o.owner_id)));
        }
        if prev
            .iter()
            .any(|p| p.owner_id == o.owner_id || p.owner_key == o.owner_key)
        {
            return Err(OwnerError::Duplicate(b64_id(&o.owner_id)));
        }
        if !(o.signed_by(root_key) || prev.iter().any(|p| o.signed_by(&p.owner_key))) {
            return Err(OwnerError::Unauthorized(b64_id(&o.owner_id)));
        }
    }
    Ok(())
}

/// A contact link's changeable data (`UserContactData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserContactData {
    /// Whether joining through the request in the fixed data is allowed.
    pub direct: bool,
    /// Extra keys that may sign changes of this data.
    pub owners: Vec<OwnerAuth>,
    /// Chat relays that take requests for this address.
    pub relays: Vec<ShortLink>,
    pub user_data: UserLinkData,
}

impl UserContactData {
    /// `direct ‖ owners ‖ relays ‖ user data`.
    pub fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.bool(self.direct);
        w.list(&self.owners, |w, o| o.write(w))?;
        w.list(&self.relays, |w, l| l.write(w))?;
        self.user_data.write(w)
    }
    /// Reads to the end of the input: later fields are ignored.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let direct = r.bool()?;
        let owners = r.list(OwnerAuth::read)?;
        let relays = r.list(|r| {
            let l = ShortLink::read(r)?;
            if l.is_invitation() {
                return Err(DecodeError::Invalid("relay link is not a contact link"));
            }
            Ok(l)
        })?;
        let user_data = UserLinkData::read(r)?;
        r.tail();
        Ok(Self {
            direct,
            owners,
            relays,
            user_data,
        })
    }
}

/// The signed, changeable part of the link data (`ConnLinkData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnLinkData {
    Invitation {
        agent_versions: VersionRange,
        user_data: UserLinkData,
    },
    Contact {
        agent_versions: VersionRange,
        data: UserContactData,
    },
}

impl ConnLinkData {
    /// Must match the link's and the fixed data's mode.
    pub fn mode(&self) -> ConnectionMode {
        match self {
            Self::Invitation { .. } => ConnectionMode::Invitation,
            Self::Contact { .. } => ConnectionMode::Contact,
        }
    }
    /// The application's bytes, whatever the mode.
    pub fn user_data(&self) -> &UserLinkData {
        match self {
            Self::Invitation { user_data, .. } => user_data,
            Self::Contact { data, .. } => &data.user_data,
        }
    }
    /// The bytes the user-data signature covers.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.u8(self.mode().byte());
        match self {
            Self::Invitation {
                agent_versions,
                user_data,
            } => {
                agent_versions.write(&mut w);
                user_data.write(&mut w)?;
            }
            Self::Contact {
                agent_versions,
                data,
            } => {
                agent_versions.write(&mut w);
                data.write(&mut w)?;
            }
        }
        Ok(w.into_vec())
    }
    /// Parses the whole input; bytes after the known fields are ignored.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let d = match ConnectionMode::read(&mut r)? {
            ConnectionMode::Invitation => {
                let agent_versions = read_range(&mut r)?;
                let user_data = UserLinkData::read(&mut r)?;
                Self::Invitation {
                    agent_versions,
                    user_data,
                }
            }
            ConnectionMode::Contact => Self::Contact {
                agent_versions: read_range(&mut r)?,
                data: UserContactData::read(&mut r)?,
            },
        };
        Ok(d)
    }
}

/// The part of the link data that never changes (`FixedLinkData`); the
/// link key is its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedLinkData {
    pub agent_versions: VersionRange,
    /// Signs the fixed data and, normally, the user data.
    pub root_key: PublicKey,
    pub conn_req: ConnectionRequest,
    /// Application-defined ID of what the link is for (a group, say).
    pub entity_id: Option<Vec<u8>>,
}

impl FixedLinkData {
    /// The bytes that are hashed into the link key and signed by the root key.
    pub fn encode(&self) -> Result<Vec<u8>, LinkError> {
        let mut w = Writer::new();
        self.agent_versions.write(&mut w);
        w.short(&self.root_key.to_der())?;
        self.conn_req.write(&mut w)?;
        if let Some(id) = &self.entity_id {
            w.short(id)?;
        }
        Ok(w.into_vec())
    }
    /// Parses the whole input. The entity ID is taken if a short string
    /// follows; anything after it is ignored.
    pub fn decode(b: &[u8]) -> Result<Self, LinkError> {
        let mut r = Reader::new(b);
        let agent_versions = read_range(&mut r)?;
        let root_key = read_ed25519(&mut r)?;
        let conn_req = ConnectionRequest::read(&mut r)?;
        let mut attempt = r.clone();
        let entity_id = attempt.short().ok().map(<[u8]>::to_vec);
        Ok(Self {
            agent_versions,
            root_key,
            conn_req,
            entity_id,
        })
    }
    /// The link key of a link to this data.
    pub fn link_key(&self) -> Result<LinkKey, LinkError> {
        Ok(link_key_of(&self.encode()?))
    }
}

fn link_key_of(fixed: &[u8]) -> LinkKey {
    LinkKey(Sha3_256::digest(fixed).into())
}

/// Signs `data` and encrypts it into one answer blob (`encryptData`):
/// `nonce ‖ secretbox(key, nonce, pad(short(sig) ‖ data, padded_len))`.
/// The nonce must be fresh and random; it is a parameter to keep this IO-free.
pub fn encrypt_link_blob(
    key: &SbKey,
    nonce: &CbNonce,
    signing_key: &PrivateKey,
    data: &[u8],
    padded_len: usize,
) -> Result<Vec<u8>, LinkError> {
    let sig = signing_key.sign(data).map_err(|_| LinkError::SigningKey)?;
    let mut w = Writer::with_capacity(66 + data.len());
    w.short(sig.as_bytes())?.raw(data);
    let signed = w.into_vec();
    let boxed =
        cb_encrypt(&key.0, nonce, &signed, padded_len).map_err(|_| LinkError::DataTooLarge {
            len: signed.len(),
            padded: padded_len,
        })?;
    let mut out = nonce.0.to_vec();
    out.extend_from_slice(&boxed);
    Ok(out)
}

/// Link data ready for `NEW` (or `LSET`): both blobs and the link's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedLinkData {
    pub link_key: LinkKey,
    /// The entity ID the data is stored under: derived from the key for a
    /// contact link; `None` for an invitation, whose ID the router assigns.
    pub link_id: Option<[u8; 24]>,
    pub enc_fixed: Vec<u8>,
    pub enc_user: Vec<u8>,
}

/// Builds, signs and encrypts the data behind a new short link to
/// `conn_req` (`encodeSignLinkData` + `encryptLinkData`). `root` signs both
/// parts; its public key goes into the fixed data. The nonces must be fresh
/// and random.
pub fn seal_link_data(
    conn_req: &ConnectionRequest,
    user: &ConnLinkData,
    root: &PrivateKey,
    nonces: (&CbNonce, &CbNonce),
) -> Result<SealedLinkData, LinkError> {
    if conn_req.mode() != user.mode() {
        return Err(LinkError::DataMode);
    }
    let fixed = FixedLinkData {
        agent_versions: crate::agent::version::AGENT_VERSIONS,
        root_key: root.public_key(),
        conn_req: conn_req.clone(),
        entity_id: None,
    }
    .encode()?;
    let link_key = link_key_of(&fixed);
    let (link_id, key) = match conn_req.mode() {
        ConnectionMode::Invitation => (None, invitation_link_kdf(&link_key)),
        ConnectionMode::Contact => {
            let (id, key) = contact_link_kdf(&link_key);
            (Some(id), key)
        }
    };
    let user = user.encode()?;
    Ok(SealedLinkData {
        enc_fixed: encrypt_link_blob(&key, nonces.0, root, &fixed, FIXED_DATA_PADDED_LEN)?,
        enc_user: encrypt_link_blob(&key, nonces.1, root, &user, USER_DATA_PADDED_LEN)?,
        link_key,
        link_id,
    })
}

/// Opens one blob into its signature and the signed bytes.
fn decrypt_blob(key: &SbKey, blob: &[u8]) -> Result<(Signature, Vec<u8>), LinkError> {
    if blob.len() < NONCE_SIZE {
        return Err(LinkError::Decrypt);
    }
    let (nonce, ct) = blob.split_at(NONCE_SIZE);
    let plain =
        cb_decrypt(&key.0, &CbNonce::normalize(nonce), ct).map_err(|_| LinkError::Decrypt)?;
    let mut r = Reader::new(&plain);
    let sig = read_signature(&mut r).map_err(LinkError::Data)?;
    Ok((sig, r.tail().to_vec()))
}

/// Opens and checks both blobs of a link's data (`decryptLinkData`) for a
/// link of `mode`; the address check is [`ShortLink::resolve`]'s.
pub fn decrypt_link_data(
    mode: ConnectionMode,
    link_key: &LinkKey,
    key: &SbKey,
    enc_fixed: &[u8],
    enc_user: &[u8],
) -> Result<(FixedLinkData, ConnLinkData), LinkError> {
    let (sig1, fd) = decrypt_blob(key, enc_fixed)?;
    let (sig2, md) = decrypt_blob(key, enc_user)?;
    let fixed = FixedLinkData::decode(&fd).map_err(|e| match e {
        LinkError::Decode(d) => LinkError::Data(d),
        other => other,
    })?;
    let user = ConnLinkData::decode(&md).map_err(LinkError::Data)?;
    if fixed.conn_req.mode() != mode || user.mode() != mode {
        return Err(LinkError::DataMode);
    }
    if link_key_of(&fd) != *link_key {
        return Err(LinkError::DataHash);
    }
    if !fixed.root_key.verify(&fd, &sig1) {
        return Err(LinkError::FixedSignature);
    }
    let signed_by = |k: &PublicKey| k.verify(&md, &sig2);
    match &user {
        ConnLinkData::Invitation { .. } => {
            if !signed_by(&fixed.root_key) {
                return Err(LinkError::UserSignature);
            }
        }
        ConnLinkData::Contact { data, .. } => {
            validate_link_owners(&fixed.root_key, &data.owners)?;
            if !(signed_by(&fixed.root_key) || data.owners.iter().any(|o| signed_by(&o.owner_key)))
            {
                return Err(LinkError::UserSignature);
            }
        }
    }
    Ok((fixed, user))
}

/// A resolved short link: what the server stored, checked against the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLink {
    /// Its request's first queue has the link's server when the two
    /// records differ only beyond the host (port, key hash).
    pub fixed: FixedLinkData,
    pub user: ConnLinkData,
}

impl ShortLink {
    /// What to send to the server to fetch this link's data.
    pub fn query(&self) -> LinkQuery {
        match &self.link_type {
            ShortLinkType::Invitation { link_id } => LinkQuery {
                command: LinkQueryCommand::Lkey,
                link_id: link_id.clone(),
                key: invitation_link_kdf(&self.link_key),
            },
            ShortLinkType::Contact(_) => {
                let (id, key) = contact_link_kdf(&self.link_key);
                LinkQuery {
                    command: LinkQueryCommand::Lget,
                    link_id: id.to_vec(),
                    key,
                }
            }
        }
    }

    /// Checks the server's `LNK sender_id (enc_fixed, enc_user)` answer: the
    /// data must decrypt and verify, its request's first queue must have
    /// `sender_id`, and the link's first host must be one of that queue's
    /// hosts. If the server records still differ, the link's replaces the
    /// queue's, as the reference does; restore a shortened link's server
    /// first (`restoreShortLink`), or the queue loses its key hash.
    pub fn resolve(
        &self,
        sender_id: &[u8],
        enc_fixed: &[u8],
        enc_user: &[u8],
    ) -> Result<ResolvedLink, LinkError> {
        let mode = if self.is_invitation() {
            ConnectionMode::Invitation
        } else {
            ConnectionMode::Contact
        };
        let LinkQuery { key, .. } = self.query();
        let (mut fixed, user) = decrypt_link_data(mode, &self.link_key, &key, enc_fixed, enc_user)?;
        let queue = fixed
            .conn_req
            .data_mut()
            .queues
            .first_mut()
            .ok_or(LinkError::NoQueues)?;
        let host = &self.server.hosts()[0];
        if !queue.server.hosts().contains(host) || queue.sender_id != sender_id {
            return Err(LinkError::DifferentAddress);
        }
        if queue.server != self.server {
            queue.server = self.server.clone();
        }
        Ok(ResolvedLink { fixed, user })
    }
}
