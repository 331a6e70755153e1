//! Async network clients (tokio) built on the IO-free protocol modules.

#[cfg(feature = "agent")]
pub mod agent;
pub mod smp;
pub mod xftp;
