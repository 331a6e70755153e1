//! The version numbers negotiated per connection (agent.md §1). The agreed
//! version is always the highest one both ranges contain.

use crate::xftp::handshake::VersionRange;

const fn range(min: u16, max: u16) -> VersionRange {
    match VersionRange::new(min, max) {
        Some(r) => r,
        None => panic!("static range"),
    }
}

/// Reply queue inside the first confirmation (`duplexHandshakeSMPAgentVersion`).
pub const DUPLEX_HANDSHAKE_AGENT_VERSION: u16 = 2;
/// Ratchet re-synchronisation (`ratchetSyncSMPAgentVersion`).
pub const RATCHET_SYNC_AGENT_VERSION: u16 = 3;
/// `A_RCVD` receipts (`deliveryRcptsSMPAgentVersion`).
pub const DELIVERY_RECEIPTS_AGENT_VERSION: u16 = 4;
/// PQ ratchet and its smaller paddings (`pqdrSMPAgentVersion`).
pub const PQDR_AGENT_VERSION: u16 = 5;
/// Sender auth keys (`sndAuthKeySMPAgentVersion`).
pub const SND_AUTH_KEY_AGENT_VERSION: u16 = 6;
/// Ratchet kept from the confirmation on (`ratchetOnConfSMPAgentVersion`).
pub const RATCHET_ON_CONF_AGENT_VERSION: u16 = 7;
/// `supportedSMPAgentVRange`.
pub const AGENT_VERSIONS: VersionRange = range(2, 7);

/// KDF in X3DH (`kdfX3DHE2EEncryptVersion`).
pub const KDF_X3DH_E2E_VERSION: u16 = 2;
/// PQ ratchet and 2-byte lengths (`pqRatchetE2EEncryptVersion`).
pub const PQ_RATCHET_E2E_VERSION: u16 = 3;
/// `supportedE2EEncryptVRange`.
pub const E2E_VERSIONS: VersionRange = range(2, 3);

/// Whether a connection can use the PQ ratchet (`versionPQSupport_`): agent
/// ≥ 5 and e2e ≥ 3 agreed.
pub const fn pq_supported(agent_version: u16, e2e_version: u16) -> bool {
    agent_version >= PQDR_AGENT_VERSION && e2e_version >= PQ_RATCHET_E2E_VERSION
}
