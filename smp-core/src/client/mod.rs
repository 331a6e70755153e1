//! Async network clients (tokio) built on the IO-free protocol modules.

pub mod smp;
pub mod xftp;
