//! The card marker (`/SIMPLEGO/FILES/CARD.SGC`, device.md §4.1), written
//! last at card init: `"SGC1" ‖ card_id(16) ‖ key_id u32 ‖ 0 ‖
//! HMAC-SHA256(Kc, 0..496)[..16]`. A marker this device cannot verify means
//! another device's card (or another master key): such a card is not
//! written to.

use super::keys::{card_key, mac16, mac16_ok};
use super::{BLOCK, FormatError};

const MAGIC: &[u8; 4] = b"SGC1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardMarker {
    pub card_id: [u8; 16],
    pub key_id: u32,
}

impl CardMarker {
    pub fn encode(&self, files_mk: &[u8; 32], device_id: &[u8; 16]) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..4].copy_from_slice(MAGIC);
        b[4..20].copy_from_slice(&self.card_id);
        b[20..24].copy_from_slice(&self.key_id.to_be_bytes());
        let k = card_key(files_mk, &self.card_id, device_id);
        let tag = mac16(&k, &b[..496]);
        b[496..].copy_from_slice(&tag);
        b
    }

    pub fn decode(
        b: &[u8],
        files_mk: &[u8; 32],
        device_id: &[u8; 16],
    ) -> Result<Self, FormatError> {
        if b.len() != BLOCK || &b[..4] != MAGIC {
            return Err(FormatError::Magic("card marker"));
        }
        let mut card_id = [0u8; 16];
        card_id.copy_from_slice(&b[4..20]);
        let k = card_key(files_mk, &card_id, device_id);
        if !mac16_ok(&k, &b[..496], &b[496..]) {
            return Err(FormatError::Mac("card marker"));
        }
        Ok(Self {
            card_id,
            key_id: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_device_or_key_cannot_verify() {
        let m = CardMarker {
            card_id: [1; 16],
            key_id: 0,
        };
        let b = m.encode(&[2; 32], &[3; 16]);
        assert_eq!(CardMarker::decode(&b, &[2; 32], &[3; 16]).unwrap(), m);
        assert!(CardMarker::decode(&b, &[2; 32], &[4; 16]).is_err());
        assert!(CardMarker::decode(&b, &[5; 32], &[3; 16]).is_err());
        let mut t = b;
        t[21] ^= 1;
        assert!(CardMarker::decode(&t, &[2; 32], &[3; 16]).is_err());
    }
}
