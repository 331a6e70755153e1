//! The contact profile sent in `x.info` and `x.contact` (`Profile`,
//! agent.md §6.2).

use alloc::string::String;

use serde_json::Value;

use super::ChatError;
use super::json::{Object, as_object, opt_object, opt_str, put, put_opt, req_str, rest};

const TYPED: &[&str] = &[
    "displayName",
    "fullName",
    "shortDescr",
    "image",
    "contactLink",
    "preferences",
    "peerType",
];

/// A user's profile as the apps exchange it. Fields this crate does not
/// model (and future ones) are kept in `extra`, so a received profile
/// re-encodes with everything the peer sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub display_name: String,
    /// Required on the wire even when empty (the reference parser fails
    /// without it, agent.md §9 item 18).
    pub full_name: String,
    pub short_descr: Option<String>,
    /// A `data:image/...;base64,...` URI.
    pub image: Option<String>,
    /// The user's contact address link, as text.
    pub contact_link: Option<String>,
    /// Chat preferences (`Preferences`), kept as JSON.
    pub preferences: Option<Object>,
    pub peer_type: Option<String>,
    pub extra: Object,
}

impl Profile {
    /// The smallest valid profile: a display name and an empty full name.
    pub fn new(display_name: &str) -> Self {
        Self {
            display_name: String::from(display_name),
            ..Self::default()
        }
    }

    pub fn from_json(v: &Value) -> Result<Self, ChatError> {
        let o = as_object(v, "profile")?;
        Ok(Self {
            display_name: req_str(o, "displayName")?,
            full_name: req_str(o, "fullName")?,
            short_descr: opt_str(o, "shortDescr")?,
            image: opt_str(o, "image")?,
            contact_link: opt_str(o, "contactLink")?,
            preferences: opt_object(o, "preferences")?,
            peer_type: opt_str(o, "peerType")?,
            extra: rest(o, TYPED),
        })
    }

    pub fn to_json(&self) -> Value {
        let mut o = self.extra.clone();
        put(
            &mut o,
            "displayName",
            Value::String(self.display_name.clone()),
        );
        put(&mut o, "fullName", Value::String(self.full_name.clone()));
        put_opt(
            &mut o,
            "shortDescr",
            self.short_descr.clone().map(Value::String),
        );
        put_opt(&mut o, "image", self.image.clone().map(Value::String));
        put_opt(
            &mut o,
            "contactLink",
            self.contact_link.clone().map(Value::String),
        );
        put_opt(
            &mut o,
            "preferences",
            self.preferences.clone().map(Value::Object),
        );
        put_opt(
            &mut o,
            "peerType",
            self.peer_type.clone().map(Value::String),
        );
        Value::Object(o)
    }
}

/// What the apps put in a short link's user data for a contact address or
/// an invitation (`ContactShortLinkData`): the profile, so the link can be
/// previewed before joining, without a welcome message and not a business.
pub fn short_link_data(profile: &Profile) -> alloc::vec::Vec<u8> {
    let mut o = Object::new();
    put(&mut o, "profile", profile.to_json());
    put(&mut o, "business", Value::Bool(false));
    let mut out = alloc::vec::Vec::new();
    super::json::write_object(&mut out, &o);
    out
}

/// The profile in a short link's user data, to show who a link is from.
pub fn short_link_profile(data: &[u8]) -> Result<Profile, ChatError> {
    let v = super::json::parse(data)?;
    let o = as_object(&v, "short link data")?;
    Profile::from_json(super::json::required(o, "profile")?)
}

#[cfg(test)]
mod short_link_tests {
    use super::*;

    #[test]
    fn short_link_data_is_the_apps_json() {
        let p = Profile::new("alice");
        let b = short_link_data(&p);
        assert_eq!(
            core::str::from_utf8(&b).unwrap(),
            r#"{"business":false,"profile":{"displayName":"alice","fullName":""}}"#
        );
        assert_eq!(short_link_profile(&b).unwrap(), p);
        assert!(short_link_profile(br#"{"business":false}"#).is_err());
    }
}
