//! A connection that comes back: after a disconnect it reconnects with
//! backoff and sends `SUB` again for every queue it had subscribed, so the
//! events keep arriving on the same receiver (the reference agent's
//! `reconnectServer` / `resubscribeSMPQueues`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    Backoff, RawMessage, RcvQueue, SmpClient, SmpClientError, SmpClientOptions, SmpEvent, SmpEvents,
};
use crate::address::ServerAddress;
use crate::smp::response::Response;

struct State {
    address: ServerAddress,
    options: SmpClientOptions,
    backoff: Backoff,
    current: StdMutex<Option<SmpClient>>,
    /// Subscribed queues by recipient ID.
    subscriptions: StdMutex<HashMap<Vec<u8>, RcvQueue>>,
    events: mpsc::UnboundedSender<SmpEvent>,
}

impl State {
    fn forward(&self, e: SmpEvent) {
        let _ = self.events.send(e);
    }
}

/// An [`SmpClient`] that reconnects and resubscribes by itself.
pub struct ReconnectingSmpClient {
    state: Arc<State>,
    supervisor: JoinHandle<()>,
}

impl std::fmt::Debug for ReconnectingSmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingSmpClient")
            .finish_non_exhaustive()
    }
}

impl Drop for ReconnectingSmpClient {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl ReconnectingSmpClient {
    /// Connects once (failing if that fails), then keeps the connection up.
    /// Events of every connection, plus `Disconnected`/`Reconnected`, arrive
    /// on the returned receiver.
    pub async fn connect(
        address: ServerAddress,
        options: SmpClientOptions,
        backoff: Backoff,
    ) -> Result<(Self, SmpEvents), SmpClientError> {
        let (client, inner_events) = SmpClient::connect(&address, &options).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            address,
            options,
            backoff,
            current: StdMutex::new(Some(client)),
            subscriptions: StdMutex::new(HashMap::new()),
            events: tx,
        });
        let supervisor = tokio::spawn(supervise(state.clone(), inner_events));
        Ok((Self { state, supervisor }, rx))
    }

    /// The live connection; [`SmpClientError::Closed`] while reconnecting.
    pub fn client(&self) -> Result<SmpClient, SmpClientError> {
        self.state
            .current
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|c| !c.is_closed())
            .ok_or(SmpClientError::Closed)
    }

    /// Subscribes `queue` now and after every reconnect.
    pub async fn subscribe(&self, queue: &RcvQueue) -> Result<Option<RawMessage>, SmpClientError> {
        if let Ok(mut s) = self.state.subscriptions.lock() {
            s.insert(queue.rcv_id.clone(), queue.clone());
        }
        self.client()?.subscribe(queue).await
    }

    /// Stops resubscribing `rcv_id` (the router keeps the current
    /// subscription until the connection ends).
    pub fn forget(&self, rcv_id: &[u8]) {
        if let Ok(mut s) = self.state.subscriptions.lock() {
            s.remove(rcv_id);
        }
    }

    /// How many queues are resubscribed after a reconnect.
    pub fn subscription_count(&self) -> usize {
        self.state.subscriptions.lock().map_or(0, |s| s.len())
    }
}

async fn supervise(state: Arc<State>, mut events: SmpEvents) {
    loop {
        // Forward until this connection ends (its reader reports it, or
        // the client was dropped and the channel closed).
        while let Some(e) = events.recv().await {
            let disconnected = e == SmpEvent::Disconnected;
            state.forward(e);
            if disconnected {
                break;
            }
        }
        if let Ok(mut c) = state.current.lock() {
            *c = None;
        }
        events = reconnect(&state).await;
    }
}

async fn reconnect(state: &State) -> SmpEvents {
    let mut failed = 0;
    loop {
        tokio::time::sleep(state.backoff.delay(failed)).await;
        let (client, events) = match SmpClient::connect(&state.address, &state.options).await {
            Ok(c) => c,
            Err(_) => {
                failed = failed.saturating_add(1);
                continue;
            }
        };
        if let Ok(mut c) = state.current.lock() {
            *c = Some(client.clone());
        }
        let queues: Vec<RcvQueue> = state
            .subscriptions
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for q in &queues {
            match client.subscribe(q).await {
                Ok(Some(m)) => state.forward(SmpEvent::Server {
                    entity_id: q.rcv_id.clone(),
                    response: Response::Msg {
                        msg_id: m.msg_id,
                        body: m.body,
                    },
                }),
                Ok(None) => {}
                Err(e) => {
                    if let Some(error) = e.error_type() {
                        state.forward(SmpEvent::ResubscribeFailed {
                            entity_id: q.rcv_id.clone(),
                            error: error.clone(),
                        });
                    }
                    // A connection error shows up as this connection's
                    // `Disconnected`, and the loop starts over.
                }
            }
        }
        state.forward(SmpEvent::Reconnected);
        return events;
    }
}
