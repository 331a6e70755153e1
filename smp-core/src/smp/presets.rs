//! The preset SMP routers (`presets/smp-servers.json`, compiled in): the
//! SimpleX Chat and Flux operators' lists and the SimpleGo network, with
//! `smp.simplego.dev` as the default.
//!
//! A router whose certificate fingerprint is not published yet is listed
//! but stays disabled and has no address: connecting to it without a
//! pinned identity would trust whoever answers.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::address::{AddressError, KeyHash, Scheme, ServerAddress, TransportHost};
use crate::encoding::string::b64_decode;

const PRESETS_JSON: &str = include_str!("../../presets/smp-servers.json");

/// Why a preset router cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresetError {
    #[error("router {0} has no published certificate fingerprint; it cannot be used until one is")]
    NoFingerprint(String),
    #[error("router {0} is disabled")]
    Disabled(String),
    #[error("preset list: {0}")]
    Malformed(&'static str),
    #[error("preset address: {0}")]
    Address(#[from] AddressError),
}

/// One router of the preset list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetRouter {
    pub operator: String,
    pub host: String,
    pub port: u16,
    /// `None` when no fingerprint is published.
    pub address: Option<ServerAddress>,
    /// Always `false` without an address.
    pub enabled: bool,
}

impl PresetRouter {
    /// The pinned address, refused when the fingerprint is unknown.
    pub fn server_address(&self) -> Result<&ServerAddress, PresetError> {
        self.address
            .as_ref()
            .ok_or_else(|| PresetError::NoFingerprint(self.host.clone()))
    }

    /// The address of an enabled router, for choosing where to connect.
    pub fn usable_address(&self) -> Result<&ServerAddress, PresetError> {
        let a = self.server_address()?;
        if self.enabled {
            Ok(a)
        } else {
            Err(PresetError::Disabled(self.host.clone()))
        }
    }
}

/// Builds an `smp://` address from a host, port and base64url fingerprint;
/// an empty or missing fingerprint is refused rather than left unpinned.
pub fn router_address(
    host: &str,
    port: u16,
    fingerprint: Option<&str>,
) -> Result<ServerAddress, PresetError> {
    let fp = fingerprint
        .filter(|f| !f.is_empty())
        .ok_or_else(|| PresetError::NoFingerprint(host.to_string()))?;
    let kh = b64_decode(fp).map_err(|_| AddressError::InvalidKeyHash)?;
    if kh.len() != 32 {
        return Err(AddressError::KeyHashLength(kh.len()).into());
    }
    let port = (port != Scheme::Smp.default_port()).then_some(port);
    Ok(ServerAddress::new(
        Scheme::Smp,
        alloc::vec![TransportHost::parse(host)?],
        port,
        KeyHash::new(kh),
    )?)
}

/// All preset routers, in file order.
pub fn preset_routers() -> Vec<PresetRouter> {
    // The file is part of the crate and checked by the tests.
    parse_presets(PRESETS_JSON).unwrap_or_default()
}

/// The default router (`smp.simplego.dev`).
pub fn default_router() -> Option<PresetRouter> {
    let json = json::parse(PRESETS_JSON).ok()?;
    let host = json.get("default")?.as_str()?;
    preset_routers().into_iter().find(|r| r.host == host)
}

/// The addresses a new profile or device starts with: every usable preset
/// router, the default one first and the rest in preset order.
pub fn default_addresses() -> Vec<String> {
    let default = default_router().filter(|r| r.enabled).map(|r| r.host);
    let mut routers = preset_routers();
    // A stable sort keeps the preset order of the rest.
    routers.sort_by_key(|r| Some(&r.host) != default.as_ref());
    routers
        .iter()
        .filter_map(|r| r.usable_address().ok())
        .map(ToString::to_string)
        .collect()
}

fn parse_presets(text: &str) -> Result<Vec<PresetRouter>, PresetError> {
    let bad = PresetError::Malformed;
    let json = json::parse(text).map_err(|_| bad("not JSON"))?;
    let servers = json
        .get("servers")
        .and_then(json::Value::as_array)
        .ok_or(bad("no servers"))?;
    servers
        .iter()
        .map(|s| {
            let field = |k| s.get(k).and_then(json::Value::as_str);
            let operator = field("operator").ok_or(bad("operator"))?.to_string();
            let host = field("host").ok_or(bad("host"))?.to_string();
            let port = s
                .get("port")
                .and_then(json::Value::as_u16)
                .ok_or(bad("port"))?;
            let address = match router_address(&host, port, field("fingerprint")) {
                Ok(a) => Some(a),
                Err(PresetError::NoFingerprint(_)) => None,
                Err(e) => return Err(e),
            };
            let enabled =
                s.get("enabled").and_then(json::Value::as_bool) == Some(true) && address.is_some();
            Ok(PresetRouter {
                operator,
                host,
                port,
                address,
                enabled,
            })
        })
        .collect()
}

/// Just enough JSON for the preset file (no_std, no dependency).
mod json {
    use alloc::string::String;
    use alloc::vec::Vec;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(String),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(o) => o.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_bool(&self) -> Option<bool> {
            match self {
                Value::Bool(b) => Some(*b),
                _ => None,
            }
        }
        pub fn as_u16(&self) -> Option<u16> {
            match self {
                Value::Number(n) => n.parse().ok(),
                _ => None,
            }
        }
        pub fn as_array(&self) -> Option<&[Value]> {
            match self {
                Value::Array(a) => Some(a),
                _ => None,
            }
        }
    }

    pub fn parse(s: &str) -> Result<Value, ()> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i == p.b.len() { Ok(v) } else { Err(()) }
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> Result<(), ()> {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(())
            }
        }
        fn lit(&mut self, word: &str, v: Value) -> Result<Value, ()> {
            if self.b[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                Err(())
            }
        }
        fn value(&mut self) -> Result<Value, ()> {
            self.ws();
            match *self.b.get(self.i).ok_or(())? {
                b'n' => self.lit("null", Value::Null),
                b't' => self.lit("true", Value::Bool(true)),
                b'f' => self.lit("false", Value::Bool(false)),
                b'"' => self.string().map(Value::String),
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    if self.eat(b']').is_ok() {
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        if self.eat(b',').is_err() {
                            self.eat(b']')?;
                            return Ok(Value::Array(items));
                        }
                    }
                }
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    if self.eat(b'}').is_ok() {
                        return Ok(Value::Object(fields));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        fields.push((k, self.value()?));
                        if self.eat(b',').is_err() {
                            self.eat(b'}')?;
                            return Ok(Value::Object(fields));
                        }
                    }
                }
                c if c == b'-' || c.is_ascii_digit() => {
                    let start = self.i;
                    while self.b.get(self.i).is_some_and(|c| {
                        matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    }) {
                        self.i += 1;
                    }
                    let n = core::str::from_utf8(&self.b[start..self.i]).map_err(|_| ())?;
                    Ok(Value::Number(n.into()))
                }
                _ => Err(()),
            }
        }
        fn hex4(&mut self) -> Result<u32, ()> {
            let h = self.b.get(self.i..self.i + 4).ok_or(())?;
            self.i += 4;
            u32::from_str_radix(core::str::from_utf8(h).map_err(|_| ())?, 16).map_err(|_| ())
        }
        fn string(&mut self) -> Result<String, ()> {
            if self.b.get(self.i) != Some(&b'"') {
                return Err(());
            }
            self.i += 1;
            let mut out = String::new();
            loop {
                let start = self.i;
                while self.b.get(self.i).is_some_and(|&c| c != b'"' && c != b'\\') {
                    self.i += 1;
                }
                out.push_str(core::str::from_utf8(&self.b[start..self.i]).map_err(|_| ())?);
                match self.b.get(self.i) {
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        let e = *self.b.get(self.i + 1).ok_or(())?;
                        self.i += 2;
                        let c = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let mut u = self.hex4()?;
                                if (0xd800..0xdc00).contains(&u) {
                                    if !self.b[self.i..].starts_with(b"\\u") {
                                        return Err(());
                                    }
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xdc00..0xe000).contains(&lo) {
                                        return Err(());
                                    }
                                    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                                }
                                char::from_u32(u).ok_or(())?
                            }
                            _ => return Err(()),
                        };
                        out.push(c);
                    }
                    _ => return Err(()),
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_values() {
            let v =
                parse(r#" {"a": [1, -2.5e3, true, false, null], "b": "x\"\u00e9\ud83d\ude00"} "#)
                    .unwrap();
            assert_eq!(v.get("b").unwrap().as_str(), Some("x\"é😀"));
            assert_eq!(v.get("a").unwrap().as_array().unwrap().len(), 5);
            for bad in ["{", "[1,]", "{\"a\" 1}", "\"\\x\"", "1 2", "{\"a\":1,}"] {
                assert!(parse(bad).is_err(), "{bad}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_complete_and_consistent() {
        let routers = preset_routers();
        assert_eq!(routers.len(), 30);
        assert_eq!(parse_presets(PRESETS_JSON).unwrap(), routers);
        let count = |op: &str| routers.iter().filter(|r| r.operator == op).count();
        assert_eq!(count("SimpleX Chat"), 14);
        assert_eq!(count("Flux"), 6);
        assert_eq!(count("SimpleGo"), 10);
        assert_eq!(routers.iter().filter(|r| r.enabled).count(), 18);
        // Each address equals the one written in the file.
        let json = json::parse(PRESETS_JSON).unwrap();
        for (r, j) in routers
            .iter()
            .zip(json.get("servers").unwrap().as_array().unwrap())
        {
            let written = j.get("address").and_then(json::Value::as_str);
            let ours = r.address.as_ref().map(ToString::to_string);
            assert_eq!(ours.as_deref(), written, "{}", r.host);
        }
    }

    #[test]
    fn default_is_simplego() {
        let d = default_router().unwrap();
        assert_eq!(d.host, "smp.simplego.dev");
        assert!(d.enabled);
        assert_eq!(
            d.usable_address().unwrap().to_string(),
            "smp://7qw4hvuS-PvTHbotgtg_xiwrhFUk_s1q2upUQrGIWow=@smp.simplego.dev"
        );
    }

    #[test]
    fn routers_without_fingerprint_refuse() {
        let routers = preset_routers();
        let unpinned: Vec<_> = routers.iter().filter(|r| r.address.is_none()).collect();
        assert_eq!(unpinned.len(), 9);
        for r in unpinned {
            assert!(!r.enabled);
            assert_eq!(
                r.usable_address(),
                Err(PresetError::NoFingerprint(r.host.clone()))
            );
            assert!(r.host.ends_with(".simplego.dev"));
        }
        // Pinned but switched off by the operator.
        let smp4 = routers
            .iter()
            .find(|r| r.host == "smp4.simplex.im")
            .unwrap();
        assert!(smp4.server_address().is_ok());
        assert_eq!(
            smp4.usable_address(),
            Err(PresetError::Disabled("smp4.simplex.im".into()))
        );
        assert_eq!(
            router_address("smp1.simplego.dev", 5223, None),
            Err(PresetError::NoFingerprint("smp1.simplego.dev".into()))
        );
        assert!(router_address("h", 5223, Some("")).is_err());
        assert!(router_address("h", 5223, Some("AAAA")).is_err());
        assert_eq!(
            router_address(
                "h.example",
                443,
                Some("7qw4hvuS-PvTHbotgtg_xiwrhFUk_s1q2upUQrGIWow=")
            )
            .unwrap()
            .to_string(),
            "smp://7qw4hvuS-PvTHbotgtg_xiwrhFUk_s1q2upUQrGIWow=@h.example:443"
        );
    }
}
