//! Retrying with exponential backoff, and a per-server handle that
//! reconnects when the connection dropped (the reference's `withRetry` /
//! `withReconnect`).

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;

use super::{XftpClient, XftpClientError, XftpClientOptions};
use crate::address::ServerAddress;

/// Delay before attempt `n + 1`: `initial × 2ⁿ`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// The reference's background reconnect starts at 5 s and grows to 60 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `failed` (0-based).
    pub fn delay(&self, failed: u32) -> Duration {
        let factor = 1u32.checked_shl(failed.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Runs `op` up to `attempts` times, sleeping with `backoff` between
/// attempts, as long as the error [`is_retryable`](XftpClientError::is_retryable).
/// Zero attempts is [`XftpClientError::NoAttempts`].
pub async fn retry<T, F, Fut>(
    attempts: u32,
    backoff: Backoff,
    mut op: F,
) -> Result<T, XftpClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, XftpClientError>>,
{
    let mut failed = 0;
    loop {
        if failed >= attempts {
            return Err(XftpClientError::NoAttempts);
        }
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && failed + 1 < attempts => {
                tracing::debug!("XFTP retrying after: {e}");
                tokio::time::sleep(backoff.delay(failed)).await;
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One server's connection, made on first use and remade after it broke.
/// Concurrent callers share the connection; only one connects at a time.
#[derive(Debug)]
pub struct ReconnectingClient {
    address: ServerAddress,
    options: XftpClientOptions,
    backoff: Backoff,
    current: Mutex<Option<XftpClient>>,
}

impl ReconnectingClient {
    pub fn new(address: ServerAddress, options: XftpClientOptions, backoff: Backoff) -> Self {
        Self {
            address,
            options,
            backoff,
            current: Mutex::new(None),
        }
    }

    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    /// The live connection, connecting if there is none or it closed.
    pub async fn client(&self) -> Result<XftpClient, XftpClientError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *current = None;
        let c = XftpClient::connect(&self.address, self.options).await?;
        *current = Some(c.clone());
        Ok(c)
    }

    /// Whether a live connection is open now (a request would not have to
    /// connect first).
    pub async fn is_connected(&self) -> bool {
        let current = self.current.lock().await;
        current.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// Drops `client` as the shared connection, unless another caller has
    /// already replaced it.
    pub async fn invalidate(&self, client: &XftpClient) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| c.same_connection(client)) {
            *current = None;
        }
    }

    /// [`retry`] where each attempt gets a connection; after an error that
    /// leaves the connection unusable the next attempt reconnects.
    pub async fn retry<T, F, Fut>(&self, attempts: u32, mut op: F) -> Result<T, XftpClientError>
    where
        F: FnMut(XftpClient) -> Fut,
        Fut: Future<Output = Result<T, XftpClientError>>,
    {
        let mut failed = 0;
        loop {
            if failed >= attempts {
                return Err(XftpClientError::NoAttempts);
            }
            let result = match self.client().await {
                Ok(client) => {
                    let r = op(client.clone()).await;
                    if let Err(e) = &r
                        && (e.needs_reconnect() || client.is_closed())
                    {
                        self.invalidate(&client).await;
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && failed + 1 < attempts => {
                    tracing::debug!("XFTP retrying after: {e}");
                    tokio::time::sleep(self.backoff.delay(failed)).await;
                    failed += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
