//! One reconnecting connection per server, with a bound on the requests in
//! flight to each, and a mark for servers found unreachable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use smp_core::address::ServerAddress;
use smp_core::client::xftp::{Backoff, ReconnectingClient, XftpClientOptions};
use tokio::sync::Semaphore;

/// Transfer settings shared by send, recv and del.
#[derive(Debug, Clone, Copy)]
pub struct TransferOptions {
    /// Attempts per request (`-r`, the reference's default is 3).
    pub retries: u32,
    /// Requests in flight to one server at a time.
    pub per_server_in_flight: usize,
    pub client: XftpClientOptions,
    pub backoff: Backoff,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            retries: 3,
            per_server_in_flight: 4,
            client: XftpClientOptions::default(),
            backoff: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(10),
            },
        }
    }
}

pub struct ServerConn {
    pub client: ReconnectingClient,
    pub slots: Semaphore,
    unreachable: AtomicBool,
    /// Failed to answer a single attempt: skipped while the chunk can be
    /// had elsewhere, tried with every retry when it cannot.
    suspect: AtomicBool,
}

impl ServerConn {
    pub fn address(&self) -> &ServerAddress {
        self.client.address()
    }
    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }
    pub fn mark_unreachable(&self) {
        self.unreachable.store(true, Ordering::Relaxed);
    }
    pub fn is_suspect(&self) -> bool {
        self.suspect.load(Ordering::Relaxed)
    }
    pub fn mark_suspect(&self) {
        self.suspect.store(true, Ordering::Relaxed);
    }
    /// Clears the mark; whether it was set.
    pub fn clear_suspect(&self) -> bool {
        self.suspect.swap(false, Ordering::Relaxed)
    }
}

pub struct Pool {
    options: TransferOptions,
    conns: Mutex<HashMap<ServerAddress, Arc<ServerConn>>>,
}

impl Pool {
    pub fn new(options: TransferOptions) -> Self {
        Self {
            options,
            conns: Mutex::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> &TransferOptions {
        &self.options
    }

    pub fn get(&self, address: &ServerAddress) -> Arc<ServerConn> {
        let mut conns = self.conns.lock().expect("pool lock");
        conns
            .entry(address.clone())
            .or_insert_with(|| {
                Arc::new(ServerConn {
                    client: ReconnectingClient::new(
                        address.clone(),
                        self.options.client,
                        self.options.backoff,
                    ),
                    slots: Semaphore::new(self.options.per_server_in_flight.max(1)),
                    unreachable: AtomicBool::new(false),
                    suspect: AtomicBool::new(false),
                })
            })
            .clone()
    }
}
