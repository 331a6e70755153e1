//! The agent runtime's durable side (std + SQLite, feature `agent`).

pub mod runtime;
pub mod store;
