//! The SimpleGo device: text messaging with any SimpleX contact and files
//! onto its AES-256-GCM encrypted SD card (`design/device.md`).
//!
//! The core is `no_std` + `alloc`: the device's event loop ([`app`]) over
//! the board traits of [`hal`], the message history on the card, what the
//! device makes of chat messages, the console's commands and what is shown.
//! The `std` feature adds the host board (`simplego-device`), whose
//! messaging port is the agent runtime of smp-core with its store beside
//! the card image, and whose fetcher is device-sync's XFTP loop.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod app;
pub mod chat;
pub mod console;
pub mod hal;
pub mod history;
#[cfg(feature = "std")]
pub mod host;
pub mod ui;
