//! The SimpleGo device: text messaging with any SimpleX contact and files
//! onto its AES-256-GCM encrypted SD card (`design/device.md`).
//!
//! The core is `no_std` + `alloc`: the message history on the card, what
//! the device makes of chat messages, and the console's commands. The
//! `std` feature adds the host board (`simplego-device`), which runs the
//! agent runtime of smp-core with its store beside the card image.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod chat;
pub mod console;
pub mod history;
#[cfg(feature = "std")]
pub mod host;
