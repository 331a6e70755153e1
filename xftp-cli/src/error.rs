//! Errors of the client library, and the exit code each maps to.

use std::io;
use std::path::PathBuf;

use smp_core::address::ServerAddress;
use smp_core::client::agent::store::StoreError;
use smp_core::client::xftp::XftpClientError;
use smp_core::file::description::{DescriptionError, FileParty};
use smp_core::file::stream::StreamError;
use smp_core::file::weblink::WebLinkError;
use smp_core::xftp::error::XftpErrorType;

/// Exit codes of the `xftp` binary, one per kind of failure a person can act on.
/// Scripts written for the reference only test for non-zero; all of these are.
pub mod exit {
    /// Anything else: local I/O, bad arguments, server refusals not listed below.
    pub const FAILURE: i32 = 1;
    /// A server could not be reached (TCP, TLS, timeouts).
    pub const UNREACHABLE: i32 = 3;
    /// The server's identity does not match the fingerprint in its address.
    pub const FINGERPRINT: i32 = 4;
    /// The server answered AUTH: the file expired, was deleted or the key is wrong.
    pub const AUTH: i32 = 5;
    /// A chunk or the file failed its digest, size or authentication check.
    pub const CORRUPT: i32 = 6;
    /// A sender description given to `recv`, or a recipient one to `del`.
    pub const WRONG_PARTY: i32 = 7;
    /// No space left on the local device.
    pub const NO_SPACE: i32 = 8;
    /// The source file is larger than the 1 GiB limit.
    pub const TOO_LARGE: i32 = 9;
    /// The description or link cannot be read or is invalid.
    pub const BAD_DESCRIPTION: i32 = 10;
}

/// Which operation a server error happened in, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Connect,
    Create,
    Upload,
    Download,
    Ack,
    Delete,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Connect => "connecting to",
            Op::Create => "creating a chunk on",
            Op::Upload => "uploading a chunk to",
            Op::Download => "downloading a chunk from",
            Op::Ack => "acknowledging a chunk on",
            Op::Delete => "deleting a chunk on",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("Files bigger than 1gb are not supported ({path}: {size} bytes)")]
    FileTooLarge { path: PathBuf, size: u64 },
    #[error("Failed to parse file description: {0}")]
    Description(DescriptionError),
    #[error("Invalid web link: {0}")]
    WebLink(WebLinkError),
    #[error(
        "incorrect XFTP party: this is a {found} description, this command needs a {expected} description"
    )]
    WrongParty {
        expected: FileParty,
        found: FileParty,
    },
    #[error("no XFTP servers configured")]
    NoServers,
    #[error("invalid server {0:?}: {1}")]
    BadServer(String, String),
    #[error("{op} {server} failed: {source}")]
    Server {
        op: Op,
        server: String,
        #[source]
        source: XftpClientError,
    },
    #[error("File digest mismatch: the downloaded file is corrupted")]
    FileDigest,
    #[error("File size mismatch: expected {expected} bytes, got {found}")]
    FileSize { expected: u64, found: u64 },
    #[error("Error decrypting file: {0}")]
    Decrypt(StreamError),
    #[error("Redirect chain too long")]
    RedirectChain,
    #[error("redirect description does not match its redirect size and digest")]
    RedirectMismatch,
    #[error("File IO error: \"File already exists\": {0}")]
    OutputExists(PathBuf),
    #[error(
        "the profile {0} is in use by another xftp process; wait for it to finish or use another --profile"
    )]
    ProfileInUse(PathBuf),
    #[error("profile {dir}: {source}")]
    Store {
        dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("no profile directory: $HOME is not set; use --profile DIR or set XFTP_PROFILE")]
    NoProfileDir,
    #[error("invalid display name {0:?}: {1}")]
    BadDisplayName(String, String),
    /// A messaging command failed (the runtime's words).
    #[error("{0}")]
    Messaging(String),
    #[error("the connection link is not valid: {0}")]
    BadLink(String),
    #[error("the SMP router cannot be reached: {0}")]
    RouterUnreachable(String),
    #[error("{copies} copies of each chunk need {copies} servers; {servers} given")]
    TooFewServers { copies: usize, servers: usize },
    #[error("{}: {why}; remove it, or use --no-resume to start afresh", path.display())]
    ResumeState { path: PathBuf, why: String },
    #[error("{} is the state of another send ({what}): run the same command again, or use --no-resume to start afresh", path.display())]
    ResumeMismatch { path: PathBuf, what: String },
    #[error("another xftp recv is receiving this file into {}", .0.display())]
    ReceiveInProgress(PathBuf),
    #[error("parity: {0}")]
    Parity(smp_core::file::parity::ParityError),
    #[error("chunk {chunk_no}: fewer than {copies} of the servers are reachable")]
    TooFewReachable { chunk_no: u32, copies: usize },
    /// Every replica of a chunk failed; `details` names each server and why.
    #[error("chunk {chunk_no} could not be downloaded from any of its {tried} servers:\n{details}")]
    ChunkUnavailable {
        chunk_no: u32,
        tried: usize,
        details: String,
        /// The exit code of the last replica's error.
        code: i32,
    },
    /// A data chunk is lost and its parity group cannot be rebuilt.
    #[error(
        "chunk {chunk_no} is lost and cannot be rebuilt: its group has {have} of the {need} chunks needed; missing:\n{missing}"
    )]
    Unrecoverable {
        chunk_no: u32,
        have: usize,
        need: usize,
        /// One line per missing chunk of the group, with its servers.
        missing: String,
        code: i32,
    },
    #[error("{failed} of {total} chunk copies could not be deleted:\n{details}")]
    DeletePartial {
        failed: usize,
        total: usize,
        details: String,
        /// The error of the first failed chunk, for the exit code.
        #[source]
        first: Box<CliError>,
    },
}

impl CliError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub fn server(op: Op, server: &ServerAddress, source: XftpClientError) -> Self {
        Self::Server {
            op,
            server: server.to_string(),
            source,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Io { source, .. } => io_code(source),
            Self::FileTooLarge { .. } => exit::TOO_LARGE,
            Self::Description(DescriptionError::WrongParty { .. }) => exit::WRONG_PARTY,
            Self::Description(_) | Self::WebLink(_) => exit::BAD_DESCRIPTION,
            Self::WrongParty { .. } => exit::WRONG_PARTY,
            Self::NoServers | Self::BadServer(..) | Self::TooFewServers { .. } => exit::FAILURE,
            Self::ChunkUnavailable { code, .. } | Self::Unrecoverable { code, .. } => *code,
            Self::TooFewReachable { .. } => exit::UNREACHABLE,
            Self::Parity(_)
            | Self::ResumeState { .. }
            | Self::ResumeMismatch { .. }
            | Self::ReceiveInProgress(_) => exit::FAILURE,
            Self::Server { source, .. } => client_code(source),
            Self::FileDigest | Self::FileSize { .. } => exit::CORRUPT,
            Self::Decrypt(StreamError::Io(e)) => io_code(e),
            Self::Decrypt(_) => exit::CORRUPT,
            Self::RedirectChain | Self::RedirectMismatch => exit::BAD_DESCRIPTION,
            Self::OutputExists(_) => exit::FAILURE,
            Self::ProfileInUse(_)
            | Self::Store { .. }
            | Self::NoProfileDir
            | Self::BadDisplayName(..)
            | Self::Messaging(_) => exit::FAILURE,
            Self::BadLink(_) => exit::BAD_DESCRIPTION,
            Self::RouterUnreachable(_) => exit::UNREACHABLE,
            Self::DeletePartial { first, .. } => first.exit_code(),
        }
    }

    /// A hint for the person reading the error, when there is one.
    pub fn hint(&self) -> Option<&'static str> {
        match self.exit_code() {
            exit::UNREACHABLE => Some("check the server address and your network, then retry"),
            exit::FINGERPRINT => Some(
                "the server presented a different identity than its address names: check the key hash before '@'",
            ),
            exit::AUTH => Some(
                "the file has expired, was deleted by its sender, or was already received with this description",
            ),
            exit::CORRUPT => Some("a server returned corrupted data; nothing was saved"),
            exit::NO_SPACE => {
                Some("free some disk space (or pick another --tmp / output directory)")
            }
            _ => None,
        }
    }
}

fn io_code(e: &io::Error) -> i32 {
    if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        exit::NO_SPACE
    } else {
        exit::FAILURE
    }
}

fn client_code(e: &XftpClientError) -> i32 {
    if e.is_identity_mismatch() {
        return exit::FINGERPRINT;
    }
    match e {
        XftpClientError::Sink(io) | XftpClientError::Source(io) => return io_code(io),
        _ => {}
    }
    match e.xftp_error() {
        Some(XftpErrorType::Auth) | Some(XftpErrorType::Blocked(_)) => exit::AUTH,
        Some(XftpErrorType::Digest | XftpErrorType::Crypto | XftpErrorType::Size) => exit::CORRUPT,
        _ if e.is_retryable() || matches!(e, XftpClientError::Tls(_)) => exit::UNREACHABLE,
        _ => exit::FAILURE,
    }
}
