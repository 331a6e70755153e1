//! An XFTP server: holds encrypted file chunks for senders and recipients,
//! speaking the reference's protocol over TLS 1.3 and HTTP/2.
//!
//! The command semantics are a function of the store and the request
//! (`handler`); `server` only moves blocks and bodies between sockets and
//! the chunk files.

pub mod app;
pub mod chunk_files;
pub mod cli;
pub mod config;
pub mod control;
pub mod handler;
pub mod server;
pub mod stats;
pub mod store;
pub mod store_log;
pub mod web;
