//! Command semantics: what each verified XFTP command does to the store,
//! the chunk files and the store log, and what it answers (xftp.md §8.2).

use crate::chunk_files::ChunkFiles;
use crate::server::{SessionContext, Upload};
use crate::stats::Stats;
use crate::store::FileStore;
use crate::store_log::{StoreLog, StoreLogRecord};
use bytes::Bytes;
use futures_util::Stream;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey, PublicKey};
use smp_core::crypto::secretbox::{CbNonce, SbStream};
use smp_core::xftp::command::{BasicAuth, FileCommand, FileParty};
use smp_core::xftp::error::XftpErrorType;
use smp_core::xftp::response::FileResponse;
use smp_core::xftp::transmission::{
    ServerTransmission, decode_request_block, dummy_verify, encode_response_block, verify_auth,
};
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Chunk sizes the reference server accepts.
pub const ALLOWED_CHUNK_SIZES: [u32; 4] = smp_core::file::chunks::SERVER_CHUNK_SIZES;

/// Size of generated sender and recipient IDs.
pub const FILE_ID_SIZE: usize = 16;

/// What the handler answers: a block, or a block followed by a stream.
pub enum Reply {
    Block(Vec<u8>),
    Stream {
        block: Vec<u8>,
        body: Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>,
    },
}

/// Settings that change what commands do.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allowed_chunk_sizes: Vec<u32>,
    pub new_files: bool,
    pub create_password: Option<BasicAuth>,
    pub upload_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allowed_chunk_sizes: ALLOWED_CHUNK_SIZES.to_vec(),
            new_files: true,
            create_password: None,
            upload_timeout: Duration::from_secs(300),
        }
    }
}

pub struct Handler {
    pub store: Mutex<FileStore>,
    pub log: Option<Mutex<StoreLog>>,
    pub files: ChunkFiles,
    pub stats: Stats,
    pub policy: Policy,
}
