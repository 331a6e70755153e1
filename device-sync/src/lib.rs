//! Fetches XFTP files onto a SimpleGo device's SD card, encrypted with
//! AES-256-GCM, resumable after a power cut at any byte, in bounded RAM
//! (`design/device.md`).
//!
//! The core is `no_std` + `alloc` and does no IO of its own: the card is a
//! blocking [`embedded_sdmmc::BlockDevice`], and the network is fed to the
//! fetch state machine as bytes. The `std` feature adds the host tool's
//! file-backed card.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod blockdev;
pub mod card;
pub mod catalog;
pub mod format;
#[cfg(feature = "std")]
pub mod heap;
#[cfg(feature = "std")]
pub mod host;
#[cfg(feature = "std")]
pub mod image;
pub mod job;
pub mod storage;
