//! The SimpleX agent layer above SMP queues (simplexmq `Agent/`,
//! `Crypto/Ratchet.hs`): connection links, the per-queue and agent
//! envelopes, X3DH and the double ratchet with its sntrup761 extension, and
//! agent messages. Everything here is IO-free; randomness comes from the
//! caller so that state machines stay testable and firmware can use them.

pub mod connection;
pub mod envelope;
pub mod link;
pub mod message;
pub mod queue_info;
pub mod ratchet;
pub mod version;
pub mod x3dh;
