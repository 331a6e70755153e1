//! SMP relay versions 6..18 and what each one changes on the wire.
//!
//! Every version-dependent rule is a function of the negotiated version so
//! that encoders and decoders never compare raw numbers themselves. The
//! reference only ever checks `v >= feature`, so 13 behaves as 12.

pub use crate::xftp::handshake::VersionRange;

/// A negotiated SMP relay version.
pub type Version = u16;

/// Create a queue without subscribing (`NEW … S|C`); session ID on the wire.
pub const INITIAL_VERSION: Version = 6;
/// Handshake carries a signed session key; session ID implied; X25519 authenticators.
pub const AUTH_CMDS_VERSION: Version = 7;
/// Private message routing (`PRXY`, `PFWD`, `RFWD`).
pub const SENDING_PROXY_VERSION: Version = 8;
/// `SKEY` and the `sndSecure` flag in `NEW`/`IDS`.
pub const SND_AUTH_KEY_VERSION: Version = 9;
/// `DELD` event (written as `END` below).
pub const DELETED_EVENT_VERSION: Version = 10;
/// Transport block encryption.
pub const ENCRYPTED_BLOCK_VERSION: Version = 11;
/// `ERR BLOCKED` (written as `ERR AUTH` below).
pub const BLOCKED_ENTITY_VERSION: Version = 12;
/// `proxyServer` flag in the client hello.
pub const PROXY_SERVER_HANDSHAKE_VERSION: Version = 14;
/// Short links: queue data in `NEW`, queue mode and link ID in `IDS`.
pub const SHORT_LINKS_VERSION: Version = 15;
/// Service certificates: `serviceSig` field, `SOK`, service ID in `IDS`.
pub const SERVICE_CERTS_VERSION: Version = 16;
/// Notifier credentials in `NEW`/`IDS`.
pub const NEW_NTF_CREDS_VERSION: Version = 17;
/// Client notices in `ERR BLOCKED`.
pub const CLIENT_NOTICES_VERSION: Version = 18;

pub const MIN_VERSION: Version = INITIAL_VERSION;
pub const CURRENT_VERSION: Version = CLIENT_NOTICES_VERSION;

/// Offered by the server when any ALPN was negotiated, and by clients.
pub const SUPPORTED_RANGE: VersionRange = match VersionRange::new(MIN_VERSION, CURRENT_VERSION) {
    Some(r) => r,
    None => panic!("static range"),
};
/// Offered by the server when the client sent no ALPN.
pub const LEGACY_SERVER_RANGE: VersionRange = match VersionRange::new(MIN_VERSION, MIN_VERSION) {
    Some(r) => r,
    None => panic!("static range"),
};
/// Cap applied by a proxy to the range it reports in `PKEY`, so that
/// forwarded traffic does not reveal the client's version.
pub const PROXIED_RANGE: VersionRange = match VersionRange::new(SENDING_PROXY_VERSION, 17) {
    Some(r) => r,
    None => panic!("static range"),
};

/// Whether the session ID is left off the wire (only signed).
pub const fn implies_session_id(v: Version) -> bool {
    v >= AUTH_CMDS_VERSION
}

/// Whether the handshake carries keys for authenticated encryption.
pub const fn has_auth_keys(v: Version) -> bool {
    v >= AUTH_CMDS_VERSION
}

/// Whether an authorized transmission carries the `Maybe serviceSig` field.
pub const fn has_service_sig(v: Version) -> bool {
    v >= SERVICE_CERTS_VERSION
}

/// Whether the client hello carries the `proxyServer` flag.
pub const fn has_proxy_flag(v: Version) -> bool {
    v >= PROXY_SERVER_HANDSHAKE_VERSION
}

/// Whether the client hello carries `Maybe clientService`.
pub const fn has_client_service(v: Version) -> bool {
    v >= SERVICE_CERTS_VERSION
}

/// `blockEncryption`: on iff v ≥ 11, the client sent its key and is not a proxy.
pub const fn block_encryption(v: Version, client_key_sent: bool, proxy_server: bool) -> bool {
    v >= ENCRYPTED_BLOCK_VERSION && client_key_sent && !proxy_server
}

/// `maxMessageLength`: the longest `SEND` body accepted at `v`.
pub const fn max_message_length(v: Version) -> usize {
    if v >= ENCRYPTED_BLOCK_VERSION {
        16048
    } else if v >= SENDING_PROXY_VERSION {
        16064
    } else {
        16088
    }
}

/// Whether `DELD` is written as itself (else as `END`).
pub const fn has_deleted_event(v: Version) -> bool {
    v >= DELETED_EVENT_VERSION
}

/// Whether `ERR BLOCKED` is written as itself (else as `ERR AUTH`).
pub const fn has_blocked(v: Version) -> bool {
    v >= BLOCKED_ENTITY_VERSION
}

/// Whether `ERR BLOCKED` keeps its client notice.
pub const fn has_client_notices(v: Version) -> bool {
    v >= CLIENT_NOTICES_VERSION
}

/// Whether `SOK` is written as itself (else as `OK`).
pub const fn has_sok(v: Version) -> bool {
    v >= SERVICE_CERTS_VERSION
}

/// The `NEW`/`IDS` tail grammar in force at a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewBand {
    /// 6–8: optional `A` + password, subMode; `IDS` has three fields.
    Legacy,
    /// 9–14: `Maybe BasicAuth`, subMode, `sndSecure`.
    SndSecure,
    /// 15: queue request data / queue mode and link ID.
    ShortLinks,
    /// 16: as 15, `IDS` adds the service ID.
    Services,
    /// 17+: notifier credentials.
    NtfCreds,
}

pub const fn new_band(v: Version) -> NewBand {
    if v >= NEW_NTF_CREDS_VERSION {
        NewBand::NtfCreds
    } else if v >= SERVICE_CERTS_VERSION {
        NewBand::Services
    } else if v >= SHORT_LINKS_VERSION {
        NewBand::ShortLinks
    } else if v >= SND_AUTH_KEY_VERSION {
        NewBand::SndSecure
    } else {
        NewBand::Legacy
    }
}
