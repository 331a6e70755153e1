//! The two DER shapes keys travel in: SubjectPublicKeyInfo and PKCS#8.
//!
//! Only the curve algorithms SimpleX uses exist here, and their DER is tiny
//! and fixed, so a small TLV reader is clearer than a general ASN.1 stack.
//! Encoders write exactly what the reference writes (PKCS#8 v0, no optional
//! fields); decoders also accept PKCS#8 v1 with attributes and a public key.

use super::CryptoError;
use super::keys::KeyAlgorithm;
use alloc::vec::Vec;

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

fn oid_arc(alg: KeyAlgorithm) -> u8 {
    match alg {
        KeyAlgorithm::X25519 => 110,
        KeyAlgorithm::X448 => 111,
        KeyAlgorithm::Ed25519 => 112,
        KeyAlgorithm::Ed448 => 113,
    }
}

fn alg_from_arc(arc: u8) -> Option<KeyAlgorithm> {
    Some(match arc {
        110 => KeyAlgorithm::X25519,
        111 => KeyAlgorithm::X448,
        112 => KeyAlgorithm::Ed25519,
        113 => KeyAlgorithm::Ed448,
        _ => return None,
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

/// One DER element: tag, length, contents.
pub fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 4);
    out.push(tag);
    put_len(&mut out, contents.len());
    out.extend_from_slice(contents);
    out
}

/// A BIT STRING with no unused bits: `03 len 00 ‖ bytes`.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(bytes.len() + 1);
    bits.push(0);
    bits.extend_from_slice(bytes);
    tlv(BIT_STRING, &bits)
}

/// An X.509 `Time` for seconds since the Unix epoch: UTCTime up to 2049,
/// GeneralizedTime after (RFC 5280 §4.1.2.5).
pub fn time(unix: i64) -> Vec<u8> {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let hms = alloc::format!("{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60);
    if (1950..2050).contains(&y) {
        tlv(
            UTC_TIME,
            alloc::format!("{:02}{m:02}{d:02}{hms}", y % 100).as_bytes(),
        )
    } else {
        tlv(
            GENERALIZED_TIME,
            alloc::format!("{y:04}{m:02}{d:02}{hms}").as_bytes(),
        )
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `SEQUENCE { OID 1.3.101.x }` — no NULL parameter, as the reference writes it.
pub fn algorithm_identifier(alg: KeyAlgorithm) -> Vec<u8> {
    tlv(SEQUENCE, &[OID, 3, 0x2b, 0x65, oid_arc(alg)])
}

pub fn encode_spki(alg: KeyAlgorithm, key: &[u8]) -> Vec<u8> {
    let mut body = algorithm_identifier(alg);
    body.extend_from_slice(&bit_string(key));
    tlv(SEQUENCE, &body)
}

pub fn encode_pkcs8(alg: KeyAlgorithm, key: &[u8]) -> Vec<u8> {
    let mut body = tlv(INTEGER, &[0]);
    body.extend_from_slice(&algorithm_identifier(alg));
    body.extend_from_slice(&tlv(OCTET_STRING, &tlv(OCTET_STRING, key)));
    tlv(SEQUENCE, &body)
}

/// A cursor over DER elements.
pub struct DerReader<'a> {
    buf: &'a [u8],
}

impl<'a> DerReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }
    /// Reads one element, returning (tag, contents, whole element bytes).
    pub fn element(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), CryptoError> {
        let short = CryptoError::Der("truncated element");
        let (&tag, rest) = self.buf.split_first().ok_or(short.clone())?;
        let (&l0, mut rest) = rest.split_first().ok_or(short.clone())?;
        let len = if l0 < 0x80 {
            l0 as usize
        } else {
            let n = (l0 & 0x7f) as usize;
            if n == 0 || n > 3 || rest.len() < n {
                return Err(CryptoError::Der("bad length"));
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | b as usize;
            }
            if len < 0x80 || (n > 1 && len < (1 << (8 * (n - 1)))) {
                return Err(CryptoError::Der("non-minimal length"));
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(short);
        }
        let header = self.buf.len() - rest.len();
        let whole = &self.buf[..header + len];
        let contents = &rest[..len];
        self.buf = &rest[len..];
        Ok((tag, contents, whole))
    }
    pub fn expect(&mut self, want: u8) -> Result<&'a [u8], CryptoError> {
        let (tag, contents, _) = self.element()?;
        if tag != want {
            return Err(CryptoError::Der("unexpected tag"));
        }
        Ok(contents)
    }
    pub fn finish(&self) -> Result<(), CryptoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CryptoError::Der("trailing data"))
        }
    }
}

fn read_algorithm(r: &mut DerReader<'_>) -> Result<KeyAlgorithm, CryptoError> {
    let mut alg = DerReader::new(r.expect(SEQUENCE)?);
    let oid = alg.expect(OID)?;
    alg.finish()?;
    match oid {
        [0x2b, 0x65, arc] => alg_from_arc(*arc).ok_or(CryptoError::Der("unknown key algorithm")),
        _ => Err(CryptoError::Der("unknown key algorithm")),
    }
}

/// Parses a SubjectPublicKeyInfo into (algorithm, raw key bytes).
pub fn decode_spki(der: &[u8]) -> Result<(KeyAlgorithm, &[u8]), CryptoError> {
    let mut outer = DerReader::new(der);
    let mut spki = DerReader::new(outer.expect(SEQUENCE)?);
    outer.finish()?;
    let alg = read_algorithm(&mut spki)?;
    let bits = spki.expect(BIT_STRING)?;
    spki.finish()?;
    match bits.split_first() {
        Some((0, key)) if key.len() == alg.public_len() => Ok((alg, key)),
        Some((0, _)) => Err(CryptoError::Der("wrong public key length")),
        _ => Err(CryptoError::Der("bad BIT STRING")),
    }
}

/// Parses PKCS#8 (v0, or v1 with optional attributes and public key) into
/// (algorithm, raw private key bytes).
pub fn decode_pkcs8(der: &[u8]) -> Result<(KeyAlgorithm, &[u8]), CryptoError> {
    let mut outer = DerReader::new(der);
    let mut p = DerReader::new(outer.expect(SEQUENCE)?);
    outer.finish()?;
    match p.expect(INTEGER)? {
        [0] | [1] => {}
        _ => return Err(CryptoError::Der("unsupported PKCS#8 version")),
    }
    let alg = read_algorithm(&mut p)?;
    let mut wrapped = DerReader::new(p.expect(OCTET_STRING)?);
    let key = wrapped.expect(OCTET_STRING)?;
    wrapped.finish()?;
    if key.len() != alg.private_len() {
        return Err(CryptoError::Der("wrong private key length"));
    }
    // Optional [0] attributes, then optional [1] public key.
    if p.peek_tag() == Some(0xa0) {
        p.element()?;
    }
    if matches!(p.peek_tag(), Some(0x81) | Some(0xa1)) {
        p.element()?;
    }
    p.finish()?;
    Ok((alg, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_000), (2022, 1, 8));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(time(0), tlv(0x17, b"700101000000Z"));
        assert_eq!(time(2_524_608_000), tlv(0x18, b"20500101000000Z"));
    }
}
