//! The pure-Rust backend: RustCrypto's `salsa20` and `poly1305`.

use super::XSalsa20Poly1305;
use poly1305::Poly1305;
use poly1305::universal_hash::{Block, KeyInit, UniversalHash};
use salsa20::XSalsa20;
use salsa20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use zeroize::{Zeroize, Zeroizing};

/// XSalsa20-Poly1305 through RustCrypto; the HSalsa20 subkey is wiped on
/// drop (`Zeroizing`), the one-time Poly1305 key as soon as it is loaded.
pub struct RustCrypto {
    cipher: XSalsa20,
    mac: Poly1305,
    /// Poly1305 takes whole 16-byte blocks; the rest waits here.
    partial: [u8; 16],
    partial_len: usize,
    /// The HSalsa20 subkey and nonce, to rebuild the cipher in a copy
    /// (salsa20's `XSalsa20` is not `Clone`; it is seekable).
    subkey: Zeroizing<[u8; 32]>,
    nonce: [u8; 24],
}

impl Clone for RustCrypto {
    fn clone(&self) -> Self {
        let mut cipher = XSalsa20::new((&*self.subkey).into(), (&self.nonce).into());
        cipher.seek(self.cipher.current_pos::<u64>());
        Self {
            cipher,
            mac: self.mac.clone(),
            partial: self.partial,
            partial_len: self.partial_len,
            subkey: self.subkey.clone(),
            nonce: self.nonce,
        }
    }
}

impl RustCrypto {
    fn mac_update(&mut self, mut data: &[u8]) {
        if self.partial_len > 0 {
            let n = (16 - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + n].copy_from_slice(&data[..n]);
            self.partial_len += n;
            data = &data[n..];
            if self.partial_len < 16 {
                return;
            }
            let block = Block::<Poly1305>::from(self.partial);
            self.mac.update(core::slice::from_ref(&block));
            self.partial_len = 0;
        }
        let (blocks, rest) = Block::<Poly1305>::slice_as_chunks(data);
        self.mac.update(blocks);
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
    }
}

impl XSalsa20Poly1305 for RustCrypto {
    fn new(secret: &[u8; 32], nonce: &[u8; 24]) -> Self {
        let mut k1 =
            salsa20::hsalsa::<salsa20::cipher::consts::U10>(secret.into(), &Default::default());
        let mut cipher = XSalsa20::new(&k1, nonce.into());
        let mut subkey = Zeroizing::new([0u8; 32]);
        subkey.copy_from_slice(&k1);
        k1.zeroize();
        let mut poly_key = Zeroizing::new([0u8; 32]);
        cipher.apply_keystream(&mut poly_key[..]);
        let mac = Poly1305::new((&*poly_key).into());
        Self {
            cipher,
            mac,
            partial: [0; 16],
            partial_len: 0,
            subkey,
            nonce: *nonce,
        }
    }

    fn encrypt(&mut self, buf: &mut [u8]) {
        self.cipher.apply_keystream(buf);
        self.mac_update(buf);
    }

    fn decrypt(&mut self, buf: &mut [u8]) {
        self.mac_update(buf);
        self.cipher.apply_keystream(buf);
    }

    fn tag(self) -> [u8; 16] {
        let partial = self.partial;
        self.mac
            .compute_unpadded(&partial[..self.partial_len])
            .into()
    }
}
