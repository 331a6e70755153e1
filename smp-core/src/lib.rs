//! The shared core of the SimpleGo transport stack: everything needed to speak
//! SimpleX's SMP and XFTP protocols byte-for-byte like the reference
//! implementation (simplexmq).
//!
//! The IO-free part (encodings, crypto, file crypto, descriptions, addresses,
//! protocol types) builds with `--no-default-features` under `no_std` + `alloc`
//! so that firmware can use it; the `std` feature adds TLS and YAML parsing.
#![cfg_attr(not(feature = "std"), no_std)]
// The libsodium backend (crypto::backend::sodium) is the only place allowed
// unsafe, to call its C API.
#![cfg_attr(not(feature = "sodium"), forbid(unsafe_code))]
#![cfg_attr(feature = "sodium", deny(unsafe_code))]

extern crate alloc;

#[cfg(feature = "std")]
pub mod accept;
pub mod address;
pub mod agent;
pub mod chat;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "std")]
pub mod client;
pub mod crypto;
pub mod encoding;
pub mod file;
#[cfg(feature = "std")]
pub mod ini;
#[cfg(feature = "std")]
pub mod log_file;
#[cfg(feature = "std")]
pub mod metrics_http;
#[cfg(feature = "std")]
pub mod qr;
pub mod smp;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "std")]
pub mod transport;
pub mod xftp;
