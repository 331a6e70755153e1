//! Transport block encryption (v ≥ 11, client sent its key, not a proxy).
//!
//! ```text
//! (ck1, ck2) = HKDF-SHA512(salt = sessionId, ikm = sessSecret, "SimpleXSbChainInit", 64)
//! server: send ck1, receive ck2; client: the mirror image
//! per block: out = HKDF-SHA512(salt = "", ikm = ck, "SimpleXSbChain", 88)
//!            ck' = out[0..32], key = out[32..64], nonce = out[64..88]
//! block = sbEncrypt(key, nonce, content, 16368)  = 16-byte tag ‖ ciphertext
//! ```
//! Each direction's chain advances once per block, also when a block fails
//! to decrypt (the reference reports that as `TELargeMsg` ⇒ `ERR BLOCK`).

use crate::crypto::CryptoError;
use crate::crypto::digest::Sha512;
use crate::crypto::secretbox::{self, CbNonce, TAG_SIZE};
use crate::encoding::pad::BLOCK_SIZE;
use alloc::vec::Vec;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The plaintext each encrypted block pads its content to.
pub const PADDED_CONTENT_SIZE: usize = BLOCK_SIZE - TAG_SIZE;

const INIT_INFO: &[u8] = b"SimpleXSbChainInit";
const STEP_INFO: &[u8] = b"SimpleXSbChain";

/// HKDF-SHA512 (`hkdf salt ikm info`), output length at most 255·64.
pub fn hkdf_sha512(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    hkdf::Hkdf::<Sha512>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| CryptoError::BadKey("HKDF output length"))
}

/// One direction's chain key; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct ChainKey([u8; 32]);

impl core::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ChainKey(<secret>)")
    }
}

/// The key and nonce of one block.
pub struct BlockKey {
    pub key: Zeroizing<[u8; 32]>,
    pub nonce: CbNonce,
}

impl ChainKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// `sbcInit`: `(ck1, ck2)`; the server sends with `ck1`.
    pub fn init(session_id: &[u8], sess_secret: &[u8; 32]) -> (ChainKey, ChainKey) {
        let mut out = Zeroizing::new([0u8; 64]);
        // 64 bytes is always a valid HKDF-SHA512 length.
        let _ = hkdf_sha512(session_id, sess_secret, INIT_INFO, &mut out[..]);
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        a.copy_from_slice(&out[..32]);
        b.copy_from_slice(&out[32..]);
        (Self(a), Self(b))
    }
    /// `sbcHkdf`: advances the chain and returns this block's key and nonce.
    pub fn step(&mut self) -> BlockKey {
        let mut out = Zeroizing::new([0u8; 88]);
        let _ = hkdf_sha512(b"", &self.0, STEP_INFO, &mut out[..]);
        self.0.copy_from_slice(&out[..32]);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&out[32..64]);
        BlockKey {
            key,
            nonce: CbNonce::normalize(&out[64..88]),
        }
    }
}

/// Why a block could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockCryptoError {
    #[error("block must be exactly {BLOCK_SIZE} bytes")]
    Size,
    #[error("content does not fit an encrypted block: {0}")]
    Encrypt(CryptoError),
    /// The reference's `TELargeMsg`; the session answers `ERR BLOCK`.
    #[error("block does not decrypt")]
    Decrypt,
}

/// Both chains of one session side.
#[derive(Debug, Clone)]
pub struct BlockCipher {
    send: ChainKey,
    receive: ChainKey,
}

impl BlockCipher {
    /// `sessSecret` = X25519(client hello key, server session private key).
    pub fn server(session_id: &[u8], sess_secret: &[u8; 32]) -> Self {
        let (ck1, ck2) = ChainKey::init(session_id, sess_secret);
        Self {
            send: ck1,
            receive: ck2,
        }
    }
    pub fn client(session_id: &[u8], sess_secret: &[u8; 32]) -> Self {
        let (ck1, ck2) = ChainKey::init(session_id, sess_secret);
        Self {
            send: ck2,
            receive: ck1,
        }
    }
    /// Encrypts a batch into one 16384-byte block.
    pub fn encrypt_block(&mut self, content: &[u8]) -> Result<Vec<u8>, BlockCryptoError> {
        seal_block(&mut self.send, content)
    }
    /// Decrypts one block to its batch content.
    pub fn decrypt_block(&mut self, block: &[u8]) -> Result<Vec<u8>, BlockCryptoError> {
        open_block(&mut self.receive, block)
    }
    /// The two directions apart, for a reader and a writer on separate tasks.
    pub fn split(self) -> (BlockSealer, BlockOpener) {
        (BlockSealer(self.send), BlockOpener(self.receive))
    }
}

fn seal_block(chain: &mut ChainKey, content: &[u8]) -> Result<Vec<u8>, BlockCryptoError> {
    let k = chain.step();
    secretbox::cb_encrypt(&k.key, &k.nonce, content, PADDED_CONTENT_SIZE)
        .map_err(BlockCryptoError::Encrypt)
}

fn open_block(chain: &mut ChainKey, block: &[u8]) -> Result<Vec<u8>, BlockCryptoError> {
    if block.len() != BLOCK_SIZE {
        return Err(BlockCryptoError::Size);
    }
    let k = chain.step();
    secretbox::cb_decrypt(&k.key, &k.nonce, block).map_err(|_| BlockCryptoError::Decrypt)
}

/// The sending direction of a [`BlockCipher`].
#[derive(Debug, Clone)]
pub struct BlockSealer(ChainKey);

impl BlockSealer {
    pub fn encrypt_block(&mut self, content: &[u8]) -> Result<Vec<u8>, BlockCryptoError> {
        seal_block(&mut self.0, content)
    }
}

/// The receiving direction of a [`BlockCipher`].
#[derive(Debug, Clone)]
pub struct BlockOpener(ChainKey);

impl BlockOpener {
    pub fn decrypt_block(&mut self, block: &[u8]) -> Result<Vec<u8>, BlockCryptoError> {
        open_block(&mut self.0, block)
    }
}
