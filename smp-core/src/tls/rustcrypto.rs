//! A rustls crypto provider made of RustCrypto crates only, so that TLS runs
//! where ring cannot be built (bare-metal RISC-V and Xtensa). It carries what
//! SimpleX TLS needs and nothing more: TLS 1.3 with CHACHA20-POLY1305-SHA256
//! (the only suite the reference offers) and AES-128-GCM-SHA256 (which our
//! servers also accept), X25519, and Ed25519/Ed448 certificate signatures.
//!
//! Randomness comes from one process-wide generator seeded by the board
//! ([`seed`]): rustls wants a `'static` source, and a device has one TRNG.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::Mac;
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter,
    Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload, Tls13AeadAlgorithm,
    UnsupportedOperationError, make_tls13_aad,
};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{
    ActiveKeyExchange, CipherSuiteCommon, CryptoProvider, GetRandomFailed, KeyProvider,
    SecureRandom, SharedSecret, SupportedKxGroup, WebPkiSupportedAlgorithms, hash, hmac as rhmac,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, Error, NamedGroup, ProtocolVersion,
    SignatureScheme, SupportedCipherSuite, Tls13CipherSuite,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::ed448::{ED448, ED25519};

const TAG_LEN: usize = 16;

/// The provider, with the given suites (client preference order).
pub fn provider(suites: &[SupportedCipherSuite]) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: suites.to_vec(),
        kx_groups: vec![&X25519 as &dyn SupportedKxGroup],
        signature_verification_algorithms: ALGORITHMS,
        secure_random: &Generator,
        key_provider: &NoKeys,
    })
}

/// Ed448 first, as the reference prefers it.
pub static ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[ED448, ED25519],
    mapping: &[
        (SignatureScheme::ED448, &[ED448]),
        (SignatureScheme::ED25519, &[ED25519]),
    ],
};

// ---- randomness ----

/// ChaCha20 keystream with fast key erasure: every draw also replaces the
/// key, so a state read later reveals nothing drawn before it.
static STATE: spin::Mutex<Option<Zeroizing<[u8; 32]>>> = spin::Mutex::new(None);

/// Mixes board entropy into the generator; the first call makes it usable.
/// Until then every handshake fails (rustls reports `GetRandomFailed`).
pub fn seed(entropy: &[u8; 32]) {
    let mut state = STATE.lock();
    let mut h = Sha256::new();
    if let Some(old) = state.as_ref() {
        h.update(&old[..]);
    }
    h.update(entropy);
    *state = Some(Zeroizing::new(h.finalize().into()));
}

/// Fills `buf` from the generator; false if it was never seeded.
pub fn fill(buf: &mut [u8]) -> bool {
    let mut state = STATE.lock();
    let Some(key) = state.as_mut() else {
        return false;
    };
    let mut c = ChaCha20::new((&**key).into(), &[0u8; 12].into());
    let mut next = Zeroizing::new([0u8; 32]);
    c.apply_keystream(&mut next[..]);
    buf.fill(0);
    c.apply_keystream(buf);
    **key = *next;
    true
}

#[derive(Debug)]
struct Generator;

impl SecureRandom for Generator {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        fill(buf).then_some(()).ok_or(GetRandomFailed)
    }
}

#[derive(Debug)]
struct NoKeys;

impl KeyProvider for NoKeys {
    /// SimpleX clients authenticate inside the protocol, never with a TLS
    /// client certificate, so the engine never loads one.
    fn load_private_key(&self, _: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, Error> {
        Err(Error::General(
            "TLS client certificates are not used".into(),
        ))
    }
}

// ---- key exchange ----

#[derive(Debug)]
struct X25519Group;

static X25519: X25519Group = X25519Group;

impl SupportedKxGroup for X25519Group {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut scalar = Zeroizing::new([0u8; 32]);
        if !fill(&mut scalar[..]) {
            return Err(GetRandomFailed.into());
        }
        let public = x25519_dalek::x25519(*scalar, x25519_dalek::X25519_BASEPOINT_BYTES);
        Ok(Box::new(X25519Exchange { scalar, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

struct X25519Exchange {
    scalar: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer
            .try_into()
            .map_err(|_| Error::from(rustls::PeerMisbehaved::InvalidKeyShare))?;
        let shared = Zeroizing::new(x25519_dalek::x25519(*self.scalar, peer));
        // A low-order peer point gives all zeros: no secret was agreed.
        if shared.iter().all(|&b| b == 0) {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

// ---- hashing ----

struct Sha256Hash;

impl hash::Hash for Sha256Hash {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(Sha256Context(Sha256::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&Sha256::digest(data))
    }

    fn output_len(&self) -> usize {
        32
    }

    fn algorithm(&self) -> hash::HashAlgorithm {
        hash::HashAlgorithm::SHA256
    }
}

struct Sha256Context(Sha256);

impl hash::Context for Sha256Context {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize())
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(Sha256Context(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

struct HmacSha256;

impl rhmac::Hmac for HmacSha256 {
    fn with_key(&self, key: &[u8]) -> Box<dyn rhmac::Key> {
        // HMAC takes keys of any length.
        Box::new(HmacKey(
            hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length"),
        ))
    }

    fn hash_output_len(&self) -> usize {
        32
    }
}

struct HmacKey(hmac::Hmac<Sha256>);

impl rhmac::Key for HmacKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rhmac::Tag {
        let mut m = self.0.clone();
        m.update(first);
        for part in middle {
            m.update(part);
        }
        m.update(last);
        rhmac::Tag::new(&m.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        32
    }
}

// ---- record protection ----

/// TLS 1.3 CHACHA20-POLY1305-SHA256.
pub static TLS13_CHACHA20_POLY1305_SHA256: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            hash_provider: &Sha256Hash,
            confidentiality_limit: u64::MAX,
        },
        hkdf_provider: &HkdfUsingHmac(&HmacSha256),
        aead_alg: &Aead::Chacha,
        quic: None,
    });

/// TLS 1.3 AES-128-GCM-SHA256 (RFC 8446's mandatory suite).
pub static TLS13_AES_128_GCM_SHA256: SupportedCipherSuite =
    SupportedCipherSuite::Tls13(&Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS13_AES_128_GCM_SHA256,
            hash_provider: &Sha256Hash,
            confidentiality_limit: 1 << 24,
        },
        hkdf_provider: &HkdfUsingHmac(&HmacSha256),
        aead_alg: &Aead::Aes128,
        quic: None,
    });

enum Aead {
    Chacha,
    Aes128,
}

enum Cipher {
    Chacha(ChaCha20Poly1305),
    Aes128(Box<Aes128Gcm>),
}

impl Aead {
    fn cipher(&self, key: &AeadKey) -> Cipher {
        // rustls hands over keys of `key_len()` bytes.
        match self {
            Self::Chacha => Cipher::Chacha(ChaCha20Poly1305::new_from_slice(key.as_ref()).unwrap()),
            Self::Aes128 => {
                Cipher::Aes128(Box::new(Aes128Gcm::new_from_slice(key.as_ref()).unwrap()))
            }
        }
    }
}

impl Tls13AeadAlgorithm for Aead {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Protect {
            cipher: self.cipher(&key),
            iv,
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Protect {
            cipher: self.cipher(&key),
            iv,
        })
    }

    fn key_len(&self) -> usize {
        match self {
            Self::Chacha => 32,
            Self::Aes128 => 16,
        }
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok(match self {
            Self::Chacha => ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
            Self::Aes128 => ConnectionTrafficSecrets::Aes128Gcm { key, iv },
        })
    }
}

struct Protect {
    cipher: Cipher,
    iv: Iv,
}

impl MessageEncrypter for Protect {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(total);
        let buf = payload.as_mut();
        let tag = match &self.cipher {
            Cipher::Chacha(c) => c
                .encrypt_inout_detached((&nonce).into(), &aad, buf.into())
                .map(<[u8; TAG_LEN]>::from),
            Cipher::Aes128(c) => c
                .encrypt_inout_detached((&nonce).into(), &aad, buf.into())
                .map(<[u8; TAG_LEN]>::from),
        }
        .map_err(|_| Error::EncryptError)?;
        payload.extend_from_slice(&tag);
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            // TLS 1.3 records carry the legacy 1.2 version (RFC 8446 §5.1).
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + TAG_LEN
    }
}

impl MessageDecrypter for Protect {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        let len = payload.len();
        if len < TAG_LEN {
            return Err(Error::DecryptError);
        }
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(len);
        let (body, tag) = payload.split_at_mut(len - TAG_LEN);
        let tag: &[u8] = tag;
        let tag = tag.try_into().map_err(|_| Error::DecryptError)?;
        match &self.cipher {
            Cipher::Chacha(c) => c.decrypt_inout_detached((&nonce).into(), &aad, body.into(), tag),
            Cipher::Aes128(c) => c.decrypt_inout_detached((&nonce).into(), &aad, body.into(), tag),
        }
        .map_err(|_| Error::DecryptError)?;
        payload.truncate(len - TAG_LEN);
        msg.into_tls13_unpadded_message()
    }
}
