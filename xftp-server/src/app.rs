//! Putting the server together: the store replayed from its log, orphans
//! swept, the listener, the expiry and statistics tasks, and an orderly
//! stop. `start` is what tests use in-process; `run` is `xftp-server start`.

use crate::chunk_files;
use crate::cli::{StartConfig, StartError};
use crate::control::{self, ControlSettings};
use crate::handler::{Handler, Policy};
use crate::server::{Inactive, Limits, Transport, WebMode, serve};
use crate::stats::{
    FileServerStats, FileServerStatsData, RTS_OPTIONS_ENV, prometheus_metrics, secs_until_daily_log,
};
use crate::store::FileStore;
use crate::store_log::open_store_log;
use smp_core::log_file;
use smp_core::tls::ServerIdentity;
use smp_core::xftp::command::BasicAuth;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The reference checks for expired files every 2 hours.
pub const EXPIRE_CHECK_INTERVAL: Duration = Duration::from_secs(2 * 3600);
/// Pause between expired files in the periodic pass, as the reference.
const EXPIRE_PAUSE: Duration = Duration::from_millis(100);

/// Everything a server needs, independent of how it was configured.
pub struct Settings {
    pub identity: ServerIdentity,
    pub listen: SocketAddr,
    pub files_dir: PathBuf,
    /// `None`: no store log (nothing survives a restart).
    pub store_log: Option<PathBuf>,
    pub quota: Option<u64>,
    pub file_ttl: Duration,
    pub expire_interval: Duration,
    pub allow_new_files: bool,
    pub create_password: Option<BasicAuth>,
    pub allowed_chunk_sizes: Vec<u32>,
    pub upload_timeout: Duration,
    /// Daily CSV and the backup restored at start (`log_stats = on`).
    pub stats_files: Option<StatsFiles>,
    /// Prometheus text file and how often it is rewritten.
    pub metrics: Option<(PathBuf, Duration)>,
    /// Where to serve the metrics over HTTP (`GET /metrics`).
    pub metrics_listen: Option<SocketAddr>,
    /// Browser mode for SNI clients (`[WEB] cert`/`key`, `static_path`).
    pub web: Option<WebMode>,
    /// The operator's line protocol (`[TRANSPORT] control_port`).
    pub control: Option<ControlSettings>,
    /// Connection bounds (`[INACTIVE_CLIENTS]`).
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct StatsFiles {
    pub daily: PathBuf,
    pub backup: PathBuf,
}

impl Settings {
    /// Reference defaults around an identity and a chunk directory.
    pub fn new(identity: ServerIdentity, listen: SocketAddr, files_dir: PathBuf) -> Self {
        Self {
            identity,
            listen,
            files_dir,
            store_log: None,
            quota: None,
            file_ttl: Duration::from_secs(48 * 3600),
            expire_interval: EXPIRE_CHECK_INTERVAL,
            allow_new_files: true,
            create_password: None,
            allowed_chunk_sizes: smp_core::file::chunks::SERVER_CHUNK_SIZES.to_vec(),
            upload_timeout: Duration::from_secs(300),
            stats_files: None,
            metrics: None,
            metrics_listen: None,
            web: None,
            control: None,
            limits: Limits::default(),
        }
    }

    /// From a checked `file-server.ini` (the web credential is loaded by
    /// `cli::check_start`).
    pub fn from_start_config(cfg: StartConfig) -> Self {
        let c = &cfg.config;
        let listen = SocketAddr::from(([0, 0, 0, 0], c.port));
        let mut s = Self::new(cfg.identity.clone(), listen, c.files_path.clone());
        s.store_log = c.store_log.then(|| cfg.paths.store_log_file());
        s.quota = c.storage_quota.map(|q| q.0);
        s.file_ttl = Duration::from_secs(c.expire_files_hours as u64 * 3600);
        s.allow_new_files = c.allow_new_files;
        s.create_password = c.create_password.clone();
        s.stats_files = c.log_stats.then(|| StatsFiles {
            daily: cfg.paths.stats_daily_file(),
            backup: cfg.paths.stats_backup_file(),
        });
        s.metrics = c
            .prometheus_interval
            .filter(|&n| n > 0)
            .map(|n| (cfg.paths.metrics_file(), Duration::from_secs(n)));
        s.metrics_listen = c
            .prometheus_port
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        s.web = cfg.web_credential.clone().map(|credential| WebMode {
            credential,
            static_path: c.web.static_path.clone(),
        });
        s.limits.streams_per_connection = c.limits.streams_per_connection;
        s.limits.concurrent_uploads = c.limits.concurrent_uploads;
        s.limits.upload_stall = Duration::from_secs(c.limits.upload_stall_secs);
        s.limits.max_connections = c.limits.max_connections;
        s.limits.inactive = c.inactive_clients.as_ref().map(|i| Inactive {
            ttl: Duration::from_secs(i.ttl.max(0) as u64),
            // A zero interval would check in a busy loop.
            check_interval: Duration::from_secs(i.check_interval.max(1) as u64),
        });
        s.control = c.control_port.map(|p| ControlSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], p)),
            admin_password: c.control_port_admin_password.clone(),
            user_password: c.control_port_user_password.clone(),
        });
        s
    }
}

/// A server running on the current tokio runtime.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The metrics endpoint, when one was asked for.
    pub metrics_addr: Option<SocketAddr>,
    /// The control port, when one was asked for.
    pub control_addr: Option<SocketAddr>,
    pub handler: Arc<Handler>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    stats_backup: Option<PathBuf>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish, saves statistics.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(path) = &self.stats_backup {
            let text = self.handler.stats.snapshot().encode_backup();
            if let Err(e) = log_file::write_public(path, text.as_bytes()) {
                tracing::error!("could not save statistics: {e}");
            }
        }
    }
}

/// Starts a server: replays and compacts the store log, removes chunk files
/// no record owns, binds, and spawns the serving and housekeeping tasks.
pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
    let mut store = FileStore::new(settings.quota);
    let log = match &settings.store_log {
        Some(path) => {
            let (log, report) = open_store_log(path, &mut store)?;
            if report.parse_errors + report.rejected > 0 || report.torn_tail {
                tracing::warn!(
                    "store log: {} lines skipped as unreadable, {} refused, torn last line: {}",
                    report.parse_errors,
                    report.rejected,
                    report.torn_tail
                );
            }
            Some(log)
        }
        None => None,
    };
    store.reset_used_storage();
    if let Some(q) = settings.quota {
        println!(
            "Total / available storage: {q} / {}",
            q as i64 - store.used_storage()
        );
    }
    if settings.files_dir.is_dir() {
        let removed = if settings.store_log.is_some() {
            chunk_files::sweep_orphans(&settings.files_dir, &store.stored_paths()).await?
        } else {
            chunk_files::sweep_partials(&settings.files_dir).await?
        };
        if removed > 0 {
            tracing::info!("removed {removed} chunk files that no record owns");
        }
    }

    let stats = FileServerStats::new(SystemTime::now());
    let mut stats_backup = None;
    if let Some(files) = &settings.stats_files {
        if let Ok(text) = std::fs::read(&files.backup) {
            let data = FileServerStatsData::decode_backup(&text).map_err(|e| {
                format!("invalid statistics backup {}: {e}", files.backup.display())
            })?;
            let (count, size) = (
                store.files().filter(|f| f.path.is_some()).count(),
                store.used_storage(),
            );
            stats.restore(&data, count as i64, size);
            let _ = std::fs::rename(&files.backup, files.backup.with_extension("log.bak"));
        }
        stats_backup = Some(files.backup.clone());
    }

    let mut policy = Policy::new(settings.files_dir.clone());
    policy.allow_new_files = settings.allow_new_files;
    policy.create_password = settings.create_password.clone();
    policy.allowed_chunk_sizes = settings.allowed_chunk_sizes.clone();
    policy.upload_timeout = settings.upload_timeout;
    policy.upload_stall = settings.limits.upload_stall;
    policy.upload_slots = Arc::new(tokio::sync::Semaphore::new(
        settings.limits.concurrent_uploads.max(1),
    ));
    let handler = Arc::new(Handler::new(store, log, stats, policy));
    let mut transport = Transport::new(
        &settings.identity,
        settings.identity.leaf_key().clone(),
        settings.web.clone(),
    )?;
    transport.limits = settings.limits.clone();
    let transport = Arc::new(transport);

    let listener = TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(serve(
        listener,
        transport,
        handler.clone(),
        shutdown.clone(),
    ))];

    // One expiry pass now (no pauses), then every interval.
    handler.expire(settings.file_ttl, Duration::ZERO).await;
    tasks.push(tokio::spawn(every(
        shutdown.clone(),
        settings.expire_interval,
        {
            let (h, ttl) = (handler.clone(), settings.file_ttl);
            move || {
                let h = h.clone();
                async move {
                    h.expire(ttl, EXPIRE_PAUSE).await;
                }
            }
        },
    )));
    if let Some((path, interval)) = settings.metrics.clone() {
        tasks.push(tokio::spawn(every(shutdown.clone(), interval, {
            let h = handler.clone();
            move || {
                let (h, path) = (h.clone(), path.clone());
                async move {
                    let text = metrics_text(&h);
                    let written = tokio::task::spawn_blocking(move || {
                        log_file::write_public(&path, text.as_bytes())
                    })
                    .await;
                    if let Ok(Err(e)) = written {
                        tracing::warn!("could not write metrics: {e}");
                    }
                }
            }
        })));
    }
    if let Some(files) = settings.stats_files.clone() {
        tasks.push(tokio::spawn(daily_stats(
            shutdown.clone(),
            handler.clone(),
            files.daily,
        )));
    }
    let mut metrics_addr = None;
    if let Some(listen) = settings.metrics_listen {
        let listener = TcpListener::bind(listen).await?;
        metrics_addr = Some(listener.local_addr()?);
        let (h, s) = (handler.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            smp_core::metrics_http::serve(listener, move || metrics_text(&h), s.cancelled_owned())
                .await
        }));
    }
    let mut control_addr = None;
    if let Some(cp) = settings.control.clone() {
        if !cp.listen.ip().is_loopback() {
            return Err("the control port listens on a loopback address only".into());
        }
        let listener = TcpListener::bind(cp.listen).await?;
        control_addr = Some(listener.local_addr()?);
        tasks.push(tokio::spawn(control::serve(
            listener,
            Arc::new(cp),
            handler.clone(),
            shutdown.clone(),
        )));
    }
    Ok(RunningServer {
        addr,
        metrics_addr,
        control_addr,
        handler,
        shutdown,
        tasks,
        stats_backup,
    })
}

/// Runs `f` every `interval` (first after one interval) until shutdown.
async fn every<F, Fut>(shutdown: CancellationToken, interval: Duration, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => f().await,
        }
    }
}

/// Appends one CSV line at every 00:00 UTC.
async fn daily_stats(shutdown: CancellationToken, handler: Arc<Handler>, path: PathBuf) {
    loop {
        let wait = Duration::from_secs(secs_until_daily_log(SystemTime::now()).max(1));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {
                let line = handler.stats.daily_line(SystemTime::now());
                let appended = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(&path)
                    .await;
                match appended {
                    Ok(mut f) => {
                        use tokio::io::AsyncWriteExt;
                        if let Err(e) = f.write_all(format!("{line}\n").as_bytes()).await {
                            tracing::warn!("could not write daily statistics: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("could not open daily statistics: {e}"),
                }
            }
        }
    }
}

fn metrics_text(handler: &Handler) -> String {
    let rts = std::env::var(RTS_OPTIONS_ENV).ok();
    prometheus_metrics(
        &handler.stats.snapshot(),
        SystemTime::now(),
        env!("CARGO_PKG_VERSION"),
        rts.as_deref(),
    )
}

/// `xftp-server start`: serves until SIGTERM or SIGINT, then stops in order.
pub fn run(cfg: StartConfig) -> Result<(), StartError> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Handlers first: a SIGTERM during start-up (the banner is already
        // out) must stop the server in order, not kill it.
        let signalled = termination_signal();
        let settings = Settings::from_start_config(cfg);
        if let Some(files) = &settings.stats_files {
            println!("server stats log enabled: {}", files.daily.display());
        }
        if let Some((path, every)) = &settings.metrics {
            println!(
                "Prometheus metrics saved every {} seconds to {}",
                every.as_secs(),
                path.display()
            );
        }
        if let Some(addr) = &settings.metrics_listen {
            println!("Prometheus metrics served at http://{addr}/metrics");
        }
        let server = start(settings).await?;
        signalled.await;
        println!("stopping server...");
        server.stop().await;
        Ok(())
    })
}

/// Registers for SIGTERM and SIGINT now; the future resolves on either.
fn termination_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
