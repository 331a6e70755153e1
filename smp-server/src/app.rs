//! Putting the router together: the queue store replayed from its log, the
//! message journal restored, listeners on every port, expiry and stats
//! tasks, and an orderly stop that saves what the reference saves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smp_core::accept::{AcceptBackoff, ConnectionSlots};
use smp_core::log_file;
use smp_core::tls::{self, SMP_SERVER_ALPN, ServerIdentity};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::handler::{Policy, Router, State};
use crate::persist::{self, MessageJournal, Persistence};
use crate::proxy::ProxyAgent;
use crate::session::{ServerCtx, serve};
use crate::stats::Stats;

/// `expireMessagesThread` runs every 2 hours.
pub const EXPIRE_CHECK_INTERVAL: Duration = Duration::from_secs(2 * 3600);
/// `expire_messages_days` default.
pub const DEFAULT_MSG_TTL: Duration = Duration::from_secs(21 * 86400);
/// TLS must finish within this (`tlsSetupTimeout`).
pub const TLS_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// Everything a router needs, independent of how it was configured.
pub struct Settings {
    pub identity: ServerIdentity,
    pub listen: Vec<SocketAddr>,
    /// Queue store log; `None` keeps queues in memory only.
    pub store_log: Option<PathBuf>,
    /// Message journal (`smp-server-messages.log`); `None`: memory only.
    pub messages: Option<PathBuf>,
    /// Undelivered notifications saved at stop (`smp-server-ntfs.log`).
    pub ntfs: Option<PathBuf>,
    pub allow_new_queues: bool,
    pub create_password: Option<Zeroizing<Vec<u8>>>,
    pub msg_ttl: Option<Duration>,
    pub expire_interval: Duration,
    /// Counters saved at stop and restored at start.
    pub stats_file: Option<PathBuf>,
    /// Prometheus text file and how often it is rewritten.
    pub metrics_file: Option<(PathBuf, Duration)>,
    /// Prometheus over HTTP (`GET /metrics`) on this address.
    pub metrics_listen: Option<SocketAddr>,
    /// How the proxy reaches relays (tests point hosts at loopback).
    pub proxy: crate::proxy::ProxySettings,
    /// `[INACTIVE_CLIENTS]`: idle connections without subscriptions close.
    pub inactive_ttl: Option<Duration>,
    /// `[LIMITS] max_connections`: more are closed as soon as accepted.
    pub max_connections: usize,
    /// Journal growth that triggers its rewrite with the live messages.
    pub journal_compact_bytes: u64,
}

impl Settings {
    pub fn new(identity: ServerIdentity, listen: SocketAddr) -> Self {
        Self {
            identity,
            listen: vec![listen],
            store_log: None,
            messages: None,
            ntfs: None,
            allow_new_queues: true,
            create_password: None,
            msg_ttl: Some(DEFAULT_MSG_TTL),
            expire_interval: EXPIRE_CHECK_INTERVAL,
            stats_file: None,
            metrics_file: None,
            metrics_listen: None,
            proxy: Default::default(),
            inactive_ttl: Some(Duration::from_secs(21600)),
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS,
            journal_compact_bytes: persist::JOURNAL_COMPACT_BYTES,
        }
    }
}

/// A router running on the current tokio runtime.
pub struct RunningServer {
    /// One address per listening port, in `Settings::listen` order.
    pub addrs: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub router: Arc<Router>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    messages: Option<PathBuf>,
    ntfs: Option<PathBuf>,
    stats_file: Option<PathBuf>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Stops accepting and saves messages and counters.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let st = self.router.lock();
        if let Some(path) = &self.messages
            && let Err(e) = persist::write_messages(path, &st.store)
        {
            tracing::error!("could not save messages: {}", e.kind());
        }
        if let Some(path) = &self.ntfs
            && let Err(e) = persist::write_ntfs(path, &st.ntf_pending)
        {
            tracing::error!("could not save notifications: {}", e.kind());
        }
        drop(st);
        self.router.persist.sync();
        if let Some(path) = &self.stats_file
            && let Err(e) =
                log_file::write_public(path, self.router.stats.to_file_text().as_bytes())
        {
            tracing::error!("could not save statistics: {}", e.kind());
        }
    }
}

pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
    let mut state = State::default();
    let mut persistence = match &settings.store_log {
        Some(path) => {
            let (log, report) = persist::open_store_log(path, &mut state.store)?;
            if report.parse_errors + report.rejected > 0 || report.torn_tail {
                tracing::warn!(
                    "store log: {} lines unreadable, {} refused, torn last line: {}",
                    report.parse_errors,
                    report.rejected,
                    report.torn_tail
                );
            }
            Persistence::with_log(log)
        }
        None => Persistence::none(),
    };
    if let Some(path) = &settings.messages {
        let (journal, n) = MessageJournal::open(path, &mut state.store)?;
        tracing::info!("restored {n} messages");
        persistence.set_journal(journal);
    }
    if let Some(path) = &settings.ntfs {
        let cutoff = crate::handler::now_secs() - crate::handler::NTF_TTL_SECS;
        let n = persist::read_ntfs(path, &state.store, cutoff, &mut state.ntf_pending)?;
        tracing::info!("restored {n} notifications");
    }
    let stats = Stats::default();
    if let Some(path) = &settings.stats_file
        && let Ok(text) = std::fs::read_to_string(path)
    {
        stats.load_file_text(&text);
    }
    let policy = Policy {
        allow_new_queues: settings.allow_new_queues,
        create_password: settings.create_password.clone(),
    };
    let mut router = Router::new(state, policy, persistence, stats);
    router.journal_compact_bytes = settings.journal_compact_bytes;
    let router = Arc::new(router);
    if let Some(ttl) = settings.msg_ttl {
        // `expire_messages_on_start`.
        let n = router.expire_messages(ttl.as_secs() as i64);
        router.stats.msgs_expired(n as u64);
    }
    let tls_config = Arc::new(
        tls::server_config(&settings.identity, SMP_SERVER_ALPN)
            .map_err(|e| StartError(e.to_string()))?,
    );
    let ctx = Arc::new(ServerCtx {
        router: router.clone(),
        identity: settings.identity.clone(),
        cert_chain: settings
            .identity
            .chain()
            .iter()
            .map(|c| c.to_vec())
            .collect(),
        proxy: Arc::new(ProxyAgent::new(settings.proxy.clone(), router.clone())),
        inactive_ttl: settings.inactive_ttl,
    });
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut addrs = Vec::new();
    // One limit across every listening port.
    let slots = ConnectionSlots::new(settings.max_connections);
    for l in &settings.listen {
        let listener = TcpListener::bind(l).await?;
        addrs.push(listener.local_addr()?);
        tasks.push(tokio::spawn(accept_loop(
            listener,
            tls_config.clone(),
            ctx.clone(),
            slots.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(ttl) = settings.msg_ttl {
        let (r, s, every) = (router.clone(), shutdown.clone(), settings.expire_interval);
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let n = r.expire_messages(ttl.as_secs() as i64);
                r.stats.msgs_expired(n as u64);
            }
        }));
    }
    if let Some((path, every)) = settings.metrics_file.clone() {
        let (r, s) = (router.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let (p, text) = (path.clone(), r.stats.prometheus());
                let written = tokio::task::spawn_blocking(move || {
                    log_file::write_public(&p, text.as_bytes())
                })
                .await;
                if let Ok(Err(e)) = written {
                    tracing::warn!("could not write metrics: {}", e.kind());
                }
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        }));
    }
    let mut metrics_addr = None;
    if let Some(l) = settings.metrics_listen {
        let listener = TcpListener::bind(l).await?;
        metrics_addr = Some(listener.local_addr()?);
        let (r, s) = (router.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            smp_core::metrics_http::serve(
                listener,
                move || r.stats.prometheus(),
                s.cancelled_owned(),
            )
            .await
        }));
    }
    Ok(RunningServer {
        addrs,
        metrics_addr,
        router,
        shutdown,
        tasks,
        messages: settings.messages.clone(),
        ntfs: settings.ntfs.clone(),
        stats_file: settings.stats_file.clone(),
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    ctx: Arc<ServerCtx>,
    slots: ConnectionSlots,
    shutdown: CancellationToken,
) {
    let tracker = tokio_util::task::TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        // The peer address is dropped here: it is never stored or logged.
        let sock = match accepted {
            Ok((sock, _)) => {
                backoff.succeeded();
                sock
            }
            Err(e) => {
                // Out of descriptors the listener stays ready: wait, or spin.
                let wait = backoff.failed(&e);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let Some(slot) = slots.take() else {
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let (cfg, ctx, s) = (tls_config.clone(), ctx.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _slot = slot;
            let Ok(Ok(tls)) = tokio::time::timeout(TLS_TIMEOUT, tls::accept(sock, &cfg)).await
            else {
                return;
            };
            tokio::select! {
                _ = s.cancelled() => {}
                _ = serve(ctx, tls) => {}
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

impl Settings {
    /// From a checked `smp-server.ini` and its directories.
    pub fn from_start_config(cfg: &crate::cli::StartConfig) -> Self {
        let c = &cfg.config;
        let mut s = Self::new(
            cfg.identity.clone(),
            SocketAddr::from(([0, 0, 0, 0], crate::config::DEFAULT_PORT)),
        );
        s.listen = c
            .ports
            .iter()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], *p)))
            .collect();
        s.store_log = c
            .enable_store_log
            .then(|| cfg.paths.log(persist::STORE_LOG_FILE));
        s.messages = c
            .restore_messages
            .then(|| cfg.paths.log(persist::MESSAGES_FILE));
        s.ntfs = c
            .restore_messages
            .then(|| cfg.paths.log(persist::NTFS_FILE));
        s.allow_new_queues = c.new_queues;
        s.create_password = c.create_password.clone();
        s.msg_ttl = Some(Duration::from_secs(
            c.expire_messages_days.max(0) as u64 * 86400,
        ));
        s.stats_file = Some(cfg.paths.log("smp-server-stats.log"));
        s.inactive_ttl = c.inactive_ttl;
        s.max_connections = c.max_connections;
        s.metrics_file = c.prometheus_interval.filter(|n| *n > 0).map(|n| {
            (
                cfg.paths.log("smp-server-metrics.txt"),
                Duration::from_secs(n as u64),
            )
        });
        s.metrics_listen = c
            .prometheus_port
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        s
    }
}

/// `smp-server start`: serves until SIGTERM or SIGINT, then stops cleanly.
pub fn run(cfg: crate::cli::StartConfig) -> Result<(), String> {
    let settings = Settings::from_start_config(&cfg);
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // Registered before the port opens: a SIGTERM as soon as clients
        // can connect still stops the router in order.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        let server = start(settings).await.map_err(|e| e.0)?;
        for a in &server.addrs {
            println!("Listening on port {}", a.port());
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping");
        server.stop().await;
        Ok(())
    })
}
