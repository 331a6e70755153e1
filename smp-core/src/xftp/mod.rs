//! XFTP protocol types, IO-free: commands, responses, errors, transmissions
//! and blocks, the handshake, and the FGET body encryption.
//!
//! Byte-compatible with simplexmq (`Simplex.FileTransfer.Protocol` and
//! `Simplex.FileTransfer.Transport`); where the xftp-web client differs, the
//! Haskell behaviour is followed.

pub mod command;
pub mod error;
pub mod fget;
pub mod handshake;
pub mod response;
pub mod transmission;

pub use command::{BasicAuth, FileCommand, FileInfo, FileParty};
pub use error::{BlockingInfo, BlockingReason, ClientNotice, CommandError, XftpErrorType};
pub use handshake::{ClientHandshake, ClientHello, ServerHandshake, VersionRange};
pub use response::FileResponse;
pub use transmission::{AuthKey, TransmissionAuth};

/// Size of every XFTP block (`xftpBlockSize`).
pub const XFTP_BLOCK_SIZE: usize = crate::encoding::pad::BLOCK_SIZE;
