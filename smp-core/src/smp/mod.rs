//! SMP (SimpleX Messaging Protocol) types, IO-free: versions, handshake,
//! transmissions and batches, commands, responses, errors, transport block
//! encryption, the message encryption layers and private message routing.
//!
//! Byte-compatible with simplexmq 6.5.5 (relay versions 6..18); where the
//! prose spec and the Haskell code differ, the code is followed.

pub mod block_crypto;
pub mod command;
pub mod error;
pub mod handshake;
pub mod message;
pub mod presets;
pub mod proxy;
pub mod queue_uri;
pub mod response;
pub mod session;
pub mod store_log;
pub mod transmission;
pub mod version;

pub use command::{Command, NewQueue, QueueLinkData, QueueMode, QueueReqData, SubscriptionMode};
pub use error::{ErrorType, ProxyError, TransportError};
pub use handshake::{CertChainPubKey, ClientHello, ServerHello};
pub use presets::{PresetRouter, preset_routers};
pub use queue_uri::QueueUri;
pub use response::{QueueIds, Response};
pub use version::{Version, VersionRange};
