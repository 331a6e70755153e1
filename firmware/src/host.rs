//! The host board: the device's code on a PC. The SD card is an image file
//! (device-sync's card layer over embedded-sdmmc), the key store is the
//! 0600 key file beside it (the stand-in for eFuse and NVS keys), the
//! protocol state lives in the agent's SQLite store in `IMAGE.nvs/` (the
//! stand-in for NVS), the network is the OS's TCP with rustls, and the
//! console is stdin and stdout.
//!
//! A received text goes into the agent's inbox in the same transaction as
//! the ratchet step; it is written to the card and synced before the inbox
//! item is released, and only then does the router get its `ACK` (the
//! agent holds it, as the reference's agent leaves it to the chat). After a
//! reset the item comes again and the history recognises it by its message
//! id, so every message is on the card exactly once. File offers and their
//! description parts stay in the device state until the file is on the
//! card; their `ACK`s go at once, so the rest of the description can come.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use device_sync::catalog;
use device_sync::format::journal::JobState;
use device_sync::host::{
    self as board, CardSetupError, FetchError, FetchOptions, HostCard, OsEntropy, run_job,
};
use device_sync::job::{DeviceKeys, JobError};
use smp_core::address::ServerAddress;
use smp_core::chat::{ChatMessage, Profile as ChatProfile};
use smp_core::client::agent::runtime::{Agent, AgentOptions, Notice, RuntimeError};
use smp_core::client::agent::store::{
    ConnId, InboxId, Profile, Store, StoreError, StoredConnection,
};
use smp_core::client::smp::SmpClientOptions;
use smp_core::file::description::{FileParty, ValidFileDescription};
use smp_core::file::header::safe_file_name;
use tokio::time::Instant;

use crate::chat::{Chats, Step, text_message};
use crate::console::{Command, HELP};
use crate::history::{Direction, Entry, History, HistoryError};

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
    #[error("bad name {0:?}: use 1 to 64 characters without spaces, commas or quotes")]
    BadName(String),
    #[error("{0}")]
    Agent(#[from] RuntimeError),
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("console: {0}")]
    Console(std::io::Error),
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
        parse_routers(smp)?
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

/// An open device: the card, its keys, the agent and what is in progress.
pub struct Device {
    image: PathBuf,
    keys: DeviceKeys,
    card: HostCard,
    agent: Agent,
    chats: Chats,
    /// The history open last (the card allows few open files).
    history: Option<(u32, History<HostCard>)>,
    /// Inbox items of files whose descriptions are still arriving, by
    /// (contact, offer id): released once the file is on the card.
    open_items: HashMap<(u32, Vec<u8>), Vec<InboxId>>,
    xftp: Vec<String>,
    out: Box<dyn Write>,
}

fn contact_name(c: &StoredConnection) -> String {
    c.local_name
        .clone()
        .or_else(|| c.peer_display_name.clone())
        .unwrap_or_else(|| format!("#{}", c.id.0))
}

fn contact_no(id: ConnId) -> u32 {
    (id.0 as u64 & 0x0fff_ffff) as u32
}

impl Device {
    /// Opens the card and the state and connects to the routers.
    pub async fn open(image: &Path, opts: &RunOptions) -> Result<Device, BoardError> {
        let state = state_dir(image);
        if !state.exists() {
            return Err(BoardError::NoDevice(image.to_path_buf()));
        }
        let keys =
            board::load_keys(&board::default_key_path(image)).map_err(CardSetupError::from)?;
        let card = board::open_card(image, &keys)?;
        let mut store = Store::open(&state).map_err(|e| store_err(&state, e))?;
        let mut profile = store
            .profile()
            .map_err(|e| store_err(&state, e))?
            .ok_or_else(|| BoardError::NoDevice(image.to_path_buf()))?;
        if !opts.smp.is_empty() {
            profile.smp_servers = parse_routers(&opts.smp)?;
            store
                .set_profile(&profile)
                .map_err(|e| store_err(&state, e))?;
        }
        let me = ChatProfile::new(&profile.display_name);
        let agent_opts = AgentOptions {
            // A message is acknowledged once it is on the card.
            hold_acks: true,
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
        Ok(Device {
            image: image.to_path_buf(),
            keys,
            card,
            agent,
            chats: Chats::new(),
            history: None,
            open_items: HashMap::new(),
            xftp: parse_routers(&opts.xftp)?,
            out: Box::new(std::io::stdout()),
        })
    }

    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    /// The device's contact address (made on first use).
    pub async fn address(&mut self) -> Result<String, BoardError> {
        Ok(self.agent.address(None).await?)
    }

    fn name_of(&self, id: ConnId) -> String {
        self.agent
            .store()
            .connection(id)
            .ok()
            .flatten()
            .map(|c| contact_name(&c))
            .unwrap_or_else(|| format!("#{}", id.0))
    }

    fn history(&mut self, contact: u32) -> Result<&mut History<HostCard>, BoardError> {
        if self.history.as_ref().is_some_and(|(c, _)| *c != contact)
            && let Some((_, h)) = self.history.take()
        {
            h.close(&mut self.card)?;
        }
        if self.history.is_none() {
            let h = History::open(
                &mut self.card,
                &self.keys.files_mk,
                &self.keys.device_id,
                contact,
            )?;
            self.history = Some((contact, h));
        }
        Ok(&mut self.history.as_mut().expect("opened above").1)
    }

    /// Appends to a contact's history; on the card once this returns.
    fn store_entry(&mut self, contact: u32, e: &Entry) -> Result<(), BoardError> {
        self.history(contact)?;
        let (_, h) = self.history.as_mut().expect("opened above");
        Ok(h.append(&mut self.card, e, &mut OsEntropy)?)
    }

    fn close_history(&mut self) -> Result<(), BoardError> {
        if let Some((_, h)) = self.history.take() {
            h.close(&mut self.card)?;
        }
        Ok(())
    }

    /// Handles one notice; returns whether its inbox item may be released.
    async fn notice(&mut self, iid: InboxId, conn: ConnId, n: Notice) -> Result<bool, BoardError> {
        let who = self.name_of(conn);
        let contact = contact_no(conn);
        match n {
            Notice::Connected => self.say(&format!("{who} connected")),
            Notice::Skipped(why) => self.say(&format!("{who}: a message was skipped ({why})")),
            Notice::PeerInfo(_) | Notice::Received(_) => {}
            Notice::Message { msg_id, body, .. } => {
                let seen = self.history(contact)?.has_received(msg_id);
                let mut release = true;
                for step in self.chats.receive(contact, &body) {
                    match step {
                        Step::Text(text) => {
                            if !seen {
                                let e = Entry {
                                    direction: Direction::Received,
                                    status: 0,
                                    time: now(),
                                    msg_id,
                                    text: text.clone(),
                                };
                                self.store_entry(contact, &e)?;
                                self.say(&format!("{who}: {text}"));
                            }
                        }
                        Step::Offered { file, name, size } => {
                            release = false;
                            self.open_items
                                .entry((contact, file))
                                .or_default()
                                .push(iid);
                            self.say(&format!(
                                "{who} offers {} ({size} bytes)",
                                safe_file_name(&name)
                            ));
                        }
                        Step::Part { file } => {
                            release = false;
                            self.open_items
                                .entry((contact, file))
                                .or_default()
                                .push(iid);
                        }
                        Step::Fetch {
                            file,
                            name,
                            size,
                            description,
                        } => {
                            let items =
                                self.open_items.remove(&(contact, file)).unwrap_or_default();
                            if self.fetch(&who, &name, size, &description).await? {
                                for i in items {
                                    self.agent.done(i)?;
                                }
                            } else {
                                // Kept in the inbox: the offer comes again
                                // at the next start and the fetch resumes.
                                release = false;
                            }
                        }
                        Step::Ignored(_) => {}
                        Step::Refused(why) => self.say(&format!("{who}: {why}")),
                    }
                }
                return Ok(release);
            }
        }
        Ok(true)
    }

    /// Fetches a file onto the card, showing progress. Returns whether the
    /// offer is settled (on the card, or refused or failed for good, which
    /// is shown); `false` when its servers cannot be reached now, so the
    /// offer stays in the inbox and the fetch resumes at the next start,
    /// as it does after a reset.
    async fn fetch(
        &mut self,
        who: &str,
        name: &str,
        size: u64,
        text: &str,
    ) -> Result<bool, BoardError> {
        let shown = safe_file_name(name);
        let desc = match ValidFileDescription::from_yaml(text, FileParty::Recipient) {
            Ok(d) => d,
            Err(e) => {
                self.say(&format!(
                    "{who}: file {shown} refused: its description is not valid ({e})"
                ));
                return Ok(true);
            }
        };
        if !self.xftp.is_empty() {
            let foreign = desc
                .chunks
                .iter()
                .flat_map(|c| &c.replicas)
                .any(|r| !self.xftp.contains(&r.server.to_string()));
            if foreign {
                self.say(&format!(
                    "{who}: file {shown} refused: it is on XFTP servers this device was not given (--xftp)"
                ));
                return Ok(true);
            }
        }
        self.close_history()?;
        let mut job = match board::job_for(&mut self.card, &self.keys, &desc) {
            Ok(j) => j,
            Err(e) => {
                self.say(&format!("{who}: file {shown} could not be started: {e}"));
                return Ok(true);
            }
        };
        self.say(&format!("{who}: receiving {shown} ({size} bytes)"));
        let r = if job.state() == JobState::Fetching {
            let mut last = u64::MAX;
            let out = &mut self.out;
            run_job(
                &mut self.card,
                &mut job,
                &FetchOptions::default(),
                |d, t| {
                    let pct = (d * 100).checked_div(t).unwrap_or(100);
                    if pct / 10 != last / 10 || last == u64::MAX {
                        last = pct;
                        let _ = writeln!(out, "{shown}: {pct}%");
                        let _ = out.flush();
                    }
                },
            )
            .await
        } else {
            Ok(())
        };
        let base = job.names().base.clone();
        let _ = job.close(&mut self.card);
        match r {
            Ok(()) => self.say(&format!(
                "{who} sent {shown} ({size} bytes): on the card as {base}"
            )),
            Err(FetchError::Unreachable { .. }) => {
                self.say(&format!(
                    "{who}: {shown} is interrupted (its servers cannot be reached); it resumes at the next start"
                ));
                return Ok(false);
            }
            Err(FetchError::Job(JobError::Failed(f))) => {
                self.say(&format!("{who}: {shown} failed ({f:?}) and was removed"))
            }
            Err(e) => self.say(&format!("{who}: {shown} failed: {e}")),
        }
        Ok(true)
    }

    async fn command(&mut self, c: Command) -> Result<bool, BoardError> {
        match c {
            Command::Quit => return Ok(false),
            Command::Help => self.say(HELP),
            Command::Contacts => {
                let list = self
                    .agent
                    .store()
                    .connections()
                    .map_err(|e| store_err(&self.image, e))?;
                for c in list.iter().filter(|c| c.status != "address") {
                    self.say(&format!("{}\t{}", contact_name(c), c.status));
                }
            }
            Command::Files => {
                self.close_history()?;
                let list = catalog::list(&mut self.card, &self.keys)
                    .map_err(|e| BoardError::History(HistoryError::Storage(e)))?;
                for f in list {
                    match f {
                        Ok(f) => {
                            let state = match f.state {
                                JobState::Fetching => {
                                    format!("fetching {}/{}", f.chunks_done, f.chunks)
                                }
                                JobState::Verified | JobState::Acked => "complete".into(),
                                JobState::Failed => "failed".into(),
                            };
                            let name = f
                                .header
                                .as_ref()
                                .map(|h| safe_file_name(&h.file_name))
                                .unwrap_or_else(|| "-".into());
                            let len = f.content_len.map_or("-".into(), |n| n.to_string());
                            self.say(&format!("{}\t{state}\t{len}\t{name}", f.base));
                        }
                        Err((base, e)) => self.say(&format!("{base}\tunreadable ({e})")),
                    }
                }
            }
            Command::Invite => match self.agent.invite(None).await {
                Ok((_, link)) => self.say(&format!("invitation: {link}")),
                Err(e) => self.say(&format!("/invite failed: {e}")),
            },
            Command::Address => {
                let a = self.address().await?;
                self.say(&format!("address: {a}"));
            }
            Command::Connect { link } => match self.agent.connect(&link, None, None).await {
                Ok(_) => {
                    let _ = self
                        .agent
                        .drain_outbox(Instant::now() + Duration::from_secs(10))
                        .await;
                    self.say("connecting; the contact shows up once it accepts");
                }
                Err(e) => self.say(&format!("/connect failed: {e}")),
            },
            Command::Msg { to, text } => {
                let found = self.agent.store().connection_by_name(&to).ok().flatten();
                let Some(c) = found.filter(|c| c.status != "address") else {
                    self.say(&format!("no contact named {to}"));
                    return Ok(true);
                };
                let body = text_message(&text, &mut OsEntropy);
                match self.agent.send(c.id, &body).await {
                    Ok(msg_id) => {
                        let e = Entry {
                            direction: Direction::Sent,
                            status: 0,
                            time: now(),
                            msg_id,
                            text,
                        };
                        self.store_entry(contact_no(c.id), &e)?;
                    }
                    Err(e) => self.say(&format!("/msg failed: {e}")),
                }
            }
        }
        Ok(true)
    }

    /// Shows routers that went down or came back since `shown`.
    fn report_routers(&mut self, shown: &mut Vec<ServerAddress>) {
        let now = self.agent.unreachable();
        for r in now.iter().filter(|r| !shown.contains(r)) {
            self.say(&format!(
                "router {}:{} cannot be reached; retrying",
                r.preferred_host(),
                r.effective_port()
            ));
        }
        for r in shown.iter().filter(|r| !now.contains(r)) {
            let line = format!(
                "router {}:{} is reachable again",
                r.preferred_host(),
                r.effective_port()
            );
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
        *shown = now;
    }

    /// Closes the card's files and the store.
    pub fn close(mut self) -> Result<(), BoardError> {
        self.close_history()?;
        drop(self.card.into_device());
        Ok(())
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

fn print_qr(link: &str) {
    if !std::io::stdout().is_terminal() {
        return;
    }
    if let Ok(code) = qrcode::QrCode::new(link.as_bytes()) {
        let s = code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build();
        println!("{s}");
    }
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
    let mut dev = Device::open(image, opts).await?;
    let address = dev.address().await?;
    dev.say(&format!("address: {address}"));
    if opts.qr {
        print_qr(&address);
    }
    dev.say("ready");
    let mut input = console();
    let mut down: Vec<ServerAddress> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        dev.report_routers(&mut down);
        while let Ok(line) = input.try_recv() {
            match Command::parse(&line) {
                Ok(Some(c)) => {
                    if !dev.command(c).await? {
                        stop.store(true, Ordering::SeqCst);
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => dev.say(&e.to_string()),
            }
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Short waits keep the console and the signals responsive; the
        // wait itself is only on the routers' event channel, so stopping
        // between waits never cuts a message in half.
        let deadline = Instant::now() + Duration::from_millis(100);
        if let Some((iid, conn, n)) = dev.agent.next(Some(deadline)).await? {
            if dev.notice(iid, conn, n).await? {
                dev.agent.done(iid)?;
            } else {
                // Held in the device state (the NVS stand-in) until the
                // file is on the card; its router message may go.
                dev.agent.keep(iid)?;
            }
        }
    }
    dev.close()
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
        let n = contact_no(c.id);
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
