//! JSON as simplex-chat's aeson writes it, and typed field access for the
//! parsers.
//!
//! Receivers parse JSON, so key order and escaping never matter for interop;
//! they matter for byte-exact tests and for signatures over re-encoded
//! bodies. aeson writes every object built as a `Value` with its keys sorted,
//! no whitespace, raw UTF-8, and escapes only `"`, `\` and control
//! characters (`\n`, `\r`, `\t` by name, the rest as lowercase `\u00XX`).
//! serde_json differs (it names `\b` and `\f`), hence our own writer.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use serde_json::{Map, Value};

use super::{ChatError, FieldProblem};

/// A JSON object as the parsers receive it.
pub type Object = Map<String, Value>;

/// Appends `v` in aeson's compact form with object keys sorted.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// Appends an object with its keys sorted by code point, as aeson's
/// `KeyMap` orders them (whatever order the map itself keeps).
pub fn write_object(out: &mut Vec<u8>, map: &Object) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Appends a quoted string with aeson's escapes.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    // Multi-byte UTF-8 sequences only contain bytes >= 0x80, so escaping
    // byte by byte never splits a character.
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Integers as digits; aeson's `Scientific` also prints integral floats
/// without a fraction. Other floats use serde_json's shortest form (aeson
/// may differ there; no chat field we type is fractional).
fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    let mut s = String::new();
    if let Some(i) = n.as_i64() {
        let _ = write!(s, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(s, "{u}");
    } else if let Some(f) = n.as_f64() {
        if let Some(i) = integral(f).filter(|i| i.unsigned_abs() < 1_000_000_000_000_000) {
            let _ = write!(s, "{i}");
        } else {
            let _ = write!(s, "{n}");
        }
    }
    out.extend_from_slice(s.as_bytes());
}

/// The float as an integer when it is one (core has no `f64::fract`).
fn integral(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; anything from it up does not fit, and
    // NaN and the infinities fall outside the range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&f) {
        return None;
    }
    let i = f as i64;
    (i as f64 == f).then_some(i)
}

/// Parses one JSON document (surrounding whitespace allowed, as aeson's
/// `eitherDecodeStrict'` allows).
pub fn parse(bytes: &[u8]) -> Result<Value, ChatError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let mut s = String::new();
        let _ = write!(s, "{e}");
        ChatError::Json(s)
    })
}

fn problem(field: &'static str, problem: FieldProblem) -> ChatError {
    ChatError::Field { field, problem }
}

/// The value as an object, or a typed error naming `what`.
pub fn as_object<'a>(v: &'a Value, what: &'static str) -> Result<&'a Object, ChatError> {
    v.as_object()
        .ok_or(problem(what, FieldProblem::WrongType("object")))
}

/// `o .: key` — present and not null.
pub fn required<'a>(o: &'a Object, key: &'static str) -> Result<&'a Value, ChatError> {
    match o.get(key) {
        None | Some(Value::Null) => Err(problem(key, FieldProblem::Missing)),
        Some(v) => Ok(v),
    }
}

/// `o .:? key` — absent and null both mean nothing.
pub fn optional<'a>(o: &'a Object, key: &'static str) -> Option<&'a Value> {
    match o.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

pub fn string_of(v: &Value, key: &'static str) -> Result<String, ChatError> {
    v.as_str()
        .map(String::from)
        .ok_or(problem(key, FieldProblem::WrongType("string")))
}

pub fn req_str(o: &Object, key: &'static str) -> Result<String, ChatError> {
    string_of(required(o, key)?, key)
}

pub fn opt_str(o: &Object, key: &'static str) -> Result<Option<String>, ChatError> {
    optional(o, key).map(|v| string_of(v, key)).transpose()
}

pub fn bool_of(v: &Value, key: &'static str) -> Result<bool, ChatError> {
    v.as_bool()
        .ok_or(problem(key, FieldProblem::WrongType("boolean")))
}

pub fn req_bool(o: &Object, key: &'static str) -> Result<bool, ChatError> {
    bool_of(required(o, key)?, key)
}

pub fn opt_bool(o: &Object, key: &'static str) -> Result<Option<bool>, ChatError> {
    optional(o, key).map(|v| bool_of(v, key)).transpose()
}

/// An integer; aeson also accepts integral floats such as `5.0`.
pub fn i64_of(v: &Value, key: &'static str) -> Result<i64, ChatError> {
    let n = v
        .as_number()
        .ok_or(problem(key, FieldProblem::WrongType("number")))?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    n.as_f64()
        .and_then(integral)
        .ok_or(problem(key, FieldProblem::OutOfRange))
}

pub fn req_i64(o: &Object, key: &'static str) -> Result<i64, ChatError> {
    i64_of(required(o, key)?, key)
}

pub fn opt_i64(o: &Object, key: &'static str) -> Result<Option<i64>, ChatError> {
    optional(o, key).map(|v| i64_of(v, key)).transpose()
}

/// A non-negative integer that fits `T`.
pub fn req_unsigned<T: TryFrom<i64>>(o: &Object, key: &'static str) -> Result<T, ChatError> {
    T::try_from(req_i64(o, key)?).map_err(|_| problem(key, FieldProblem::OutOfRange))
}

pub fn opt_object(o: &Object, key: &'static str) -> Result<Option<Object>, ChatError> {
    optional(o, key)
        .map(|v| as_object(v, key).cloned())
        .transpose()
}

/// The object without the keys a typed parser has taken, so that fields
/// this crate does not model survive a parse/encode round trip.
pub fn rest(o: &Object, taken: &[&str]) -> Object {
    o.iter()
        .filter(|(k, _)| !taken.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Inserts `key: value` when there is a value (aeson's `.=?`).
pub fn put_opt(o: &mut Object, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        o.insert(String::from(key), v);
    }
}

pub fn put(o: &mut Object, key: &str, v: Value) {
    o.insert(String::from(key), v);
}
