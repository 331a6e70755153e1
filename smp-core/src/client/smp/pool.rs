//! One connection per router, shared by every queue on it: the pool
//! connects on first use, hands out the same [`SmpClient`] afterwards, and
//! connects again once a connection has closed. Events of all connections
//! arrive on one receiver, tagged with their router.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use super::{SmpClient, SmpClientError, SmpClientOptions, SmpEvent};
use crate::address::ServerAddress;

/// Events of every pooled connection, with the router they came from.
pub type PoolEvents = mpsc::UnboundedReceiver<(ServerAddress, SmpEvent)>;

type Slot = Arc<Mutex<Option<SmpClient>>>;

pub struct SmpClientPool {
    options: SmpClientOptions,
    /// By router address; a closed client is replaced on the next use.
    /// One lock per router, so that a router that is slow to answer (or
    /// down, waiting for the connect timeout) holds up no other.
    clients: std::sync::Mutex<HashMap<ServerAddress, Slot>>,
    events: mpsc::UnboundedSender<(ServerAddress, SmpEvent)>,
}

impl std::fmt::Debug for SmpClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmpClientPool").finish_non_exhaustive()
    }
}

impl SmpClientPool {
    /// `options` apply to every router (`socket_addr` is ignored: each
    /// router is dialled at its own address).
    pub fn new(options: SmpClientOptions) -> (Self, PoolEvents) {
        let (tx, rx) = mpsc::unbounded_channel();
        let options = SmpClientOptions {
            socket_addr: None,
            ..options
        };
        (
            Self {
                options,
                clients: std::sync::Mutex::new(HashMap::new()),
                events: tx,
            },
            rx,
        )
    }

    /// The connection to `router`, opened if there is none (or it closed).
    /// Concurrent callers for one router wait for the same connection.
    pub async fn client(&self, router: &ServerAddress) -> Result<SmpClient, SmpClientError> {
        let slot = self.slot(router);
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let (client, mut events) = SmpClient::connect(router, &self.options).await?;
        let (tx, addr) = (self.events.clone(), router.clone());
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if tx.send((addr.clone(), e)).is_err() {
                    return;
                }
            }
        });
        *slot = Some(client.clone());
        Ok(client)
    }

    fn slot(&self, router: &ServerAddress) -> Slot {
        // A poisoned map only means another thread panicked while holding
        // it; the map itself is always whole.
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(router.clone()).or_default().clone()
    }

    /// How many routers have an open connection.
    pub async fn open_connections(&self) -> usize {
        let slots: Vec<Slot> = {
            let map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            map.values().cloned().collect()
        };
        let mut n = 0;
        for s in slots {
            if s.lock().await.as_ref().is_some_and(|c| !c.is_closed()) {
                n += 1;
            }
        }
        n
    }
}
