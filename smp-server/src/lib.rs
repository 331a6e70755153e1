//! The SimpleGo router: an SMP router compatible with SimpleX's reference
//! server (simplexmq 6.5.5), relay versions 6–18, with private message
//! routing as proxy and as relay.

pub mod app;
pub mod cli;
pub mod config;
pub mod handler;
pub mod persist;
pub mod proxy;
pub mod session;
pub mod stats;
pub mod store;
