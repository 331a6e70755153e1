//! The host board: the device's event loop ([`crate::app`]) on a PC. The
//! SD card is an image file (device-sync's card layer over embedded-sdmmc),
//! the key store is the 0600 key file beside it (the stand-in for eFuse and
//! NVS keys), the messaging port is smp-core's agent runtime with its
//! SQLite store in `IMAGE.nvs/` (the stand-in for NVS) over the OS's TCP
//! and rustls, the fetcher is device-sync's XFTP loop, and the console is
//! stdin and stdout.
//!
//! The agent holds each router `ACK` until the app releases or keeps the
//! inbox item (`hold_acks`), so a text reaches the card before its router
//! may forget it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use device_sync::host::{
    self as board, CardSetupError, FetchError, FetchOptions, Fetched, HostCard, OsEntropy,
    XftpFetch,
};
use device_sync::job::{Job, JobError};
use smp_core::address::ServerAddress;
use smp_core::chat::{ChatMessage, Profile as ChatProfile};
use smp_core::client::agent::runtime::{Agent, AgentOptions, Notice, RuntimeError};
use smp_core::client::agent::store::{
    ConnId, InboxId, Profile, Store, StoreError, StoredConnection,
};
use smp_core::client::smp::SmpClientOptions;
use tokio::time::Instant;

use crate::app::{App, AppError, Parts, history_no};
use crate::hal::{
    Board, Clock, Contact, Delivery, Event, FetchFailure, Fetcher, Input, Messaging, Ui,
};
use crate::history::{Direction, History, HistoryError};
use crate::ui::UiEvent;

/// Why the host board stopped or refused, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("{0}")]
    Card(#[from] CardSetupError),
    #[error("device state in {0}: {1}")]
    Store(PathBuf, StoreError),
    #[error("the device in {0} is running already (its state is locked)")]
    Running(PathBuf),
    #[error("{0} has no device; run simplego-device init first")]
    NoDevice(PathBuf),
    #[error("{0} holds a device already")]
    Exists(PathBuf),
    #[error("bad router address {0}: {1}")]
    BadRouter(String, String),
    #[error("{0}")]
    Routers(String),
    #[error("bad name {0:?}: use 1 to 64 characters without spaces, commas or quotes")]
    BadName(String),
    #[error("{0}")]
    Agent(#[from] RuntimeError),
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("console: {0}")]
    Console(std::io::Error),
}

impl From<AppError<RuntimeError>> for BoardError {
    fn from(e: AppError<RuntimeError>) -> Self {
        match e {
            AppError::History(e) => BoardError::History(e),
            AppError::Messaging(e) => BoardError::Agent(e),
        }
    }
}

/// The device's protocol state beside the image: `IMAGE.nvs`.
pub fn state_dir(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".nvs");
    PathBuf::from(p)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn store_err(dir: &Path, e: StoreError) -> BoardError {
    match e {
        StoreError::Locked => BoardError::Running(dir.to_path_buf()),
        e => BoardError::Store(dir.to_path_buf(), e),
    }
}

fn parse_routers(list: &[String]) -> Result<Vec<String>, BoardError> {
    list.iter()
        .map(|s| {
            ServerAddress::parse(s)
                .map(|a| a.to_string())
                .map_err(|e| BoardError::BadRouter(s.clone(), e.to_string()))
        })
        .collect()
}

fn smp_routers(list: &[String]) -> Result<Vec<String>, BoardError> {
    crate::app::smp_routers(list).map_err(BoardError::Routers)
}

fn check_name(name: &str) -> Result<(), BoardError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '"' | '\''));
    if ok {
        Ok(())
    } else {
        Err(BoardError::BadName(name.to_string()))
    }
}

/// What `init` made.
#[derive(Debug)]
pub struct Created {
    pub keys: PathBuf,
    pub state: PathBuf,
}

/// `simplego-device init`: the card image with its marker, the key file and
/// the device state with its name and routers.
pub fn init(image: &Path, size: u64, name: &str, smp: &[String]) -> Result<Created, BoardError> {
    check_name(name)?;
    let routers = if smp.is_empty() {
        smp_core::smp::presets::default_addresses()
    } else {
        smp_routers(smp)?
    };
    let state = state_dir(image);
    if state.exists() {
        return Err(BoardError::Exists(state));
    }
    let keys = board::default_key_path(image);
    board::init_card(image, size, &keys)?;
    let mut store = Store::open(&state).map_err(|e| store_err(&state, e))?;
    store
        .set_profile(&Profile {
            display_name: name.to_string(),
            smp_servers: routers,
            created_at: now(),
        })
        .map_err(|e| store_err(&state, e))?;
    Ok(Created { keys, state })
}

/// What `run` was asked for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replaces the device's routers (kept for later runs) when not empty.
    pub smp: Vec<String>,
    /// Only fetch files from these XFTP servers; any when empty.
    pub xftp: Vec<String>,
    /// Show the address as a QR code (on a terminal).
    pub qr: bool,
}

/// The host board's parts.
pub struct HostBoard;

impl Board for HostBoard {
    type Card = HostCard;
    type Messaging = AgentPort;
    type Fetcher = XftpFetcher;
    type Clock = SystemClock;
    type Entropy = OsEntropy;
    type Ui = Console;
}

fn contact_name(c: &StoredConnection) -> String {
    c.local_name
        .clone()
        .or_else(|| c.peer_display_name.clone())
        .unwrap_or_else(|| format!("#{}", c.id.0))
}

fn contact_of(c: &StoredConnection) -> Contact {
    Contact {
        id: c.id.0 as u64,
        name: contact_name(c),
        status: c.status.clone(),
    }
}

/// The messaging port: smp-core's agent runtime over the OS's TCP and
/// rustls, its state in SQLite beside the image.
pub struct AgentPort {
    agent: Agent,
    state: PathBuf,
}

impl AgentPort {
    /// Opens the device state and connects to the routers.
    pub async fn open(image: &Path, opts: &RunOptions) -> Result<AgentPort, BoardError> {
        let state = state_dir(image);
        if !state.exists() {
            return Err(BoardError::NoDevice(image.to_path_buf()));
        }
        let mut store = Store::open(&state).map_err(|e| store_err(&state, e))?;
        let mut profile = store
            .profile()
            .map_err(|e| store_err(&state, e))?
            .ok_or_else(|| BoardError::NoDevice(image.to_path_buf()))?;
        if !opts.smp.is_empty() {
            profile.smp_servers = smp_routers(&opts.smp)?;
            store
                .set_profile(&profile)
                .map_err(|e| store_err(&state, e))?;
        }
        let me = ChatProfile::new(&profile.display_name);
        let agent_opts = AgentOptions {
            // A message is acknowledged once it is on the card.
            hold_acks: true,
            // A sent text is written to the card from the inbox.
            sent_notices: true,
            smp: SmpClientOptions::default(),
            pq: true,
            conn_info: ChatMessage::profile_info(&me),
            contact_info: ChatMessage::contact_request(&me),
            private_routing: true,
            legacy_queues: false,
            link_data: Some(smp_core::chat::short_link_data(&me)),
        };
        let mut agent = Agent::with_store(store, agent_opts)?;
        agent.start().await?;
        Ok(AgentPort { agent, state })
    }
}

impl Messaging for AgentPort {
    type Error = RuntimeError;

    async fn next(&mut self, wait_ms: u32) -> Result<Option<Delivery>, RuntimeError> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.into());
        let Some((iid, conn, n)) = self.agent.next(Some(deadline)).await? else {
            return Ok(None);
        };
        let event = match n {
            Notice::Connected => Event::Connected,
            Notice::Skipped(why) => Event::Skipped(why),
            Notice::Message { msg_id, body, .. } => Event::Message { msg_id, body },
            Notice::Sent { msg_id, body } => Event::Sent { msg_id, body },
            Notice::PeerInfo(_) | Notice::Received(_) => Event::Other,
        };
        Ok(Some(Delivery {
            item: iid.0 as u64,
            contact: conn.0 as u64,
            event,
        }))
    }

    fn release(&mut self, item: u64) -> Result<(), RuntimeError> {
        self.agent.done(InboxId(item as i64))
    }

    fn keep(&mut self, item: u64) -> Result<(), RuntimeError> {
        self.agent.keep(InboxId(item as i64))
    }

    async fn send(&mut self, contact: u64, body: &[u8]) -> Result<i64, RuntimeError> {
        self.agent.send(ConnId(contact as i64), body).await
    }

    async fn address(&mut self) -> Result<String, RuntimeError> {
        self.agent.address(None).await
    }

    async fn invite(&mut self) -> Result<String, RuntimeError> {
        Ok(self.agent.invite(None).await?.1)
    }

    async fn connect(&mut self, link: &str) -> Result<(), RuntimeError> {
        self.agent.connect(link, None, None).await?;
        // The join goes out now, not at the next turn of the loop.
        let _ = self
            .agent
            .drain_outbox(Instant::now() + Duration::from_secs(10))
            .await;
        Ok(())
    }

    fn contacts(&self) -> Result<Vec<Contact>, RuntimeError> {
        let list = self.agent.store().connections().map_err(|e| {
            tracing::warn!("device state in {}: {e}", self.state.display());
            RuntimeError::from(e)
        })?;
        Ok(list.iter().map(contact_of).collect())
    }

    fn contact(&self, id: u64) -> Option<Contact> {
        let c = self.agent.store().connection(ConnId(id as i64)).ok()??;
        Some(contact_of(&c))
    }

    fn contact_named(&self, name: &str) -> Option<Contact> {
        let c = self.agent.store().connection_by_name(name).ok()??;
        (c.status != "address").then(|| contact_of(&c))
    }

    fn routers(&self) -> Vec<String> {
        self.agent
            .routers()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn set_routers(&mut self, list: &[String]) -> Result<(), RuntimeError> {
        self.agent.set_routers(list)
    }

    fn down_routers(&self) -> Vec<String> {
        self.agent
            .unreachable()
            .iter()
            .map(|r| format!("{}:{}", r.preferred_host(), r.effective_port()))
            .collect()
    }
}

/// The XFTP port: device-sync's fetch loop with smp-core's client, its
/// connections kept from chunk to chunk.
pub struct XftpFetcher(XftpFetch);

impl Default for XftpFetcher {
    fn default() -> Self {
        XftpFetcher(XftpFetch::new(FetchOptions::default()))
    }
}

impl Fetcher<HostCard> for XftpFetcher {
    async fn chunk(
        &mut self,
        card: &mut HostCard,
        job: &mut Job<HostCard>,
        mut progress: &mut dyn FnMut(u64, u64),
    ) -> Result<bool, FetchFailure> {
        match self.0.chunk(card, job, &mut progress).await {
            Ok(f) => Ok(f == Fetched::Done),
            Err(FetchError::Unreachable { .. }) => Err(FetchFailure::Unreachable),
            Err(FetchError::Job(JobError::Failed(f))) => Err(FetchFailure::Failed(f)),
            Err(e) => Err(FetchFailure::Other(e.to_string())),
        }
    }
}

/// The OS's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_time(&self) -> Option<u64> {
        u64::try_from(now()).ok().filter(|t| *t > 0)
    }
}

/// stdin and stdout, and the signals that stop the device.
pub struct Console {
    input: tokio::sync::mpsc::UnboundedReceiver<String>,
    stop: Arc<AtomicBool>,
    qr: bool,
}

impl Ui for Console {
    fn show(&mut self, e: &UiEvent<'_>) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{e}");
        let _ = out.flush();
        drop(out);
        if let UiEvent::Address(a) = e
            && self.qr
        {
            smp_core::qr::print_on_terminal(a);
        }
    }

    fn poll_input(&mut self) -> Option<Input> {
        if self.stop.load(Ordering::SeqCst) {
            return Some(Input::Stop);
        }
        self.input.try_recv().ok().map(Input::Line)
    }
}

/// The console on a thread of its own (stdin blocks).
fn console() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line.clone()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// `simplego-device run`: until `/quit`, SIGTERM or SIGINT.
pub async fn run(image: &Path, opts: &RunOptions) -> Result<(), BoardError> {
    let stop = Arc::new(AtomicBool::new(false));
    for kind in [
        tokio::signal::unix::SignalKind::terminate(),
        tokio::signal::unix::SignalKind::interrupt(),
    ] {
        let mut s = tokio::signal::unix::signal(kind).map_err(BoardError::Console)?;
        let stop = stop.clone();
        tokio::spawn(async move {
            s.recv().await;
            stop.store(true, Ordering::SeqCst);
        });
    }
    let state = state_dir(image);
    if !state.exists() {
        return Err(BoardError::NoDevice(image.to_path_buf()));
    }
    let xftp = parse_routers(&opts.xftp)?;
    let keys = board::load_keys(&board::default_key_path(image)).map_err(CardSetupError::from)?;
    let card = board::open_card(image, &keys)?;
    let messaging = AgentPort::open(image, opts).await?;
    let parts = Parts::<HostBoard> {
        card,
        messaging,
        fetcher: XftpFetcher::default(),
        clock: SystemClock,
        entropy: OsEntropy,
        ui: Console {
            input: console(),
            stop,
            qr: opts.qr,
        },
    };
    let mut app = App::new(parts, keys, xftp);
    // Short waits keep the console and the signals responsive; a wait is
    // only on the routers' event channel, so stopping between waits never
    // cuts a message in half.
    app.run(100).await?;
    let parts = app.close()?;
    drop(parts.card.into_device());
    Ok(())
}

/// `simplego-device history`: the stored messages of one contact, or of all.
pub fn history(image: &Path, name: Option<&str>) -> Result<Vec<String>, BoardError> {
    let state = state_dir(image);
    if !state.exists() {
        return Err(BoardError::NoDevice(image.to_path_buf()));
    }
    let keys = board::load_keys(&board::default_key_path(image)).map_err(CardSetupError::from)?;
    let mut card = board::open_card(image, &keys)?;
    let store = Store::open(&state).map_err(|e| store_err(&state, e))?;
    let mut lines = Vec::new();
    let contacts = store.connections().map_err(|e| store_err(&state, e))?;
    for c in contacts.iter().filter(|c| c.status != "address") {
        let who = contact_name(c);
        if name.is_some_and(|n| n != who) {
            continue;
        }
        let n = history_no(c.id.0 as u64);
        if !card.exists(&crate::history::file_name(n)).unwrap_or(false) {
            continue;
        }
        let mut h = History::open(&mut card, &keys.files_mk, &keys.device_id, n)?;
        let all = h.read_all(&mut card);
        h.close(&mut card)?;
        for e in all? {
            lines.push(match e.direction {
                Direction::Received => format!("{who}: {}", e.text),
                Direction::Sent => format!("> {who}: {}", e.text),
            });
        }
    }
    drop(card.into_device());
    Ok(lines)
}
