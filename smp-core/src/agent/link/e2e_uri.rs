//! The text form of the link creator's ratchet parameters, the `e2e=` value
//! of an invitation (`instance StrEncoding (E2ERatchetParamsUri s a)`):
//!
//! ```text
//! "v=" e2eVRange "&x3dh=" b64(key1 DER) "," b64(key2 DER) ["&kem_ct=" b64(ct)] ["&kem_key=" b64(pk)]
//! ```
//!
//! It is rendered without escaping; the link escapes it once as a whole.
//! KEM parameters exist only when the range reaches e2e version 3.

use alloc::string::String;
use alloc::vec::Vec;

use super::LinkError;
use super::query::{Query, parse_range, write_range};
use crate::agent::version::PQ_RATCHET_E2E_VERSION;
use crate::agent::x3dh::{E2eParamsUri, KemParams};
use crate::crypto::keys::{KeyAlgorithm, PublicKey};
use crate::encoding::string::{b64_decode, b64_encode};

fn x448_key(text: &str) -> Result<PublicKey, LinkError> {
    let der = b64_decode(text).map_err(|_| LinkError::E2eKey)?;
    PublicKey::from_der_as(KeyAlgorithm::X448, &der).map_err(|_| LinkError::E2eKey)
}

fn kem_bytes(text: &str) -> Result<Vec<u8>, LinkError> {
    b64_decode(text).map_err(|_| LinkError::E2eKem)
}

impl E2eParamsUri {
    /// The unescaped text form, as it sits inside an invitation's `e2e=`.
    pub fn to_uri_string(&self) -> String {
        let mut s = String::from("v=");
        write_range(&mut s, &self.versions);
        s.push_str("&x3dh=");
        s.push_str(&b64_encode(&self.key1.to_der()));
        s.push(',');
        s.push_str(&b64_encode(&self.key2.to_der()));
        if self.versions.max() >= PQ_RATCHET_E2E_VERSION {
            match &self.kem {
                Some(KemParams::Proposed { public }) => {
                    s.push_str("&kem_key=");
                    s.push_str(&b64_encode(public));
                }
                Some(KemParams::Accepted { ciphertext, public }) => {
                    s.push_str("&kem_ct=");
                    s.push_str(&b64_encode(ciphertext));
                    s.push_str("&kem_key=");
                    s.push_str(&b64_encode(public));
                }
                None => {}
            }
        }
        s
    }

    /// Parses the text form. Parameters may come in any order and unknown
    /// ones are ignored; below e2e version 3 KEM parameters are ignored too,
    /// as the reference does. Both keys must be X448.
    pub fn parse_uri(s: &str) -> Result<Self, LinkError> {
        if s.contains([' ', '\n']) {
            return Err(LinkError::Trailing);
        }
        let q = Query::parse(s)?;
        let versions = q
            .get_str("v")?
            .ok_or(LinkError::E2eVersion)
            .and_then(|v| parse_range(v).ok_or(LinkError::E2eVersion))?;
        let keys = q.get_str("x3dh")?.ok_or(LinkError::E2eKey)?;
        let (k1, k2) = keys.split_once(',').ok_or(LinkError::E2eKey)?;
        if k2.contains(',') {
            return Err(LinkError::E2eKey);
        }
        let (key1, key2) = (x448_key(k1)?, x448_key(k2)?);
        let kem = if versions.max() >= PQ_RATCHET_E2E_VERSION {
            match q.get_str("kem_key")? {
                None => None,
                Some(pk) => {
                    let public = kem_bytes(pk)?;
                    Some(match q.get_str("kem_ct")? {
                        None => KemParams::Proposed { public },
                        Some(ct) => KemParams::Accepted {
                            ciphertext: kem_bytes(ct)?,
                            public,
                        },
                    })
                }
            }
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
