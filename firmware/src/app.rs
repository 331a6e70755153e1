//! The device's event loop: what it stores, shows, acknowledges and
//! fetches, on any [`Board`].
//!
//! A received text is written to its contact's history on the card (and
//! synced) before its inbox item is released, and only a released item's
//! router message is acknowledged. After a reset the item comes again and
//! the history recognises it by its message id, so every message is on the
//! card exactly once. A file offer and its description parts are kept in
//! the durable state until the file is on the card; their router messages
//! may go at once, so the rest of the description can come. A download
//! goes a chunk per turn of the loop, so messages keep arriving (and being
//! stored and acknowledged) while a file comes in; further offers wait
//! their turn. An offer whose servers cannot be reached stays kept and is
//! fetched again (resumed) at the next start.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use device_sync::catalog;
use device_sync::format::journal::JobState;
use device_sync::job::{DeviceKeys, Job};
use smp_core::address::{Scheme, ServerAddress};
use smp_core::file::description::{FileParty, ValidFileDescription};
use smp_core::file::header::safe_file_name;
use smp_core::smp::presets::default_addresses;

use crate::chat::{Chats, MAX_PENDING, Step, sent_texts, text_message};
use crate::console::{Command, HELP};
use crate::hal::{
    Board, Clock, Contact, Delivery, Event, FetchFailure, Fetcher, FileStore, Input, Messaging, Ui,
};
use crate::history::{Direction, Entry, History, HistoryError};
use crate::ui::UiEvent;

/// Why the device stopped.
#[derive(Debug, thiserror::Error)]
pub enum AppError<E> {
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("{0}")]
    Messaging(E),
}

type Result<T, B> =
    core::result::Result<T, AppError<<<B as Board>::Messaging as Messaging>::Error>>;

/// Description text of the files waiting for the current download, at
/// most (a file's is a few KB; more waits for the next start).
pub const MAX_WAITING_TEXT: usize = 256 * 1024;

/// Inbox items taken after a send while looking for its notice, at most.
const CATCH_UP: usize = 64;

/// The file being fetched.
struct Download<S: FileStore> {
    job: Job<S>,
    who: String,
    /// The file's name, safe to show.
    name: String,
    size: u64,
    /// The offer's inbox items, released once the file is settled.
    items: Vec<u64>,
    /// The percentage last shown.
    shown: u64,
}

/// A complete offer waiting for the current download.
struct Waiting {
    who: String,
    name: String,
    size: u64,
    description: String,
    items: Vec<u64>,
}

/// A board's parts, handed to the device.
pub struct Parts<B: Board> {
    pub card: B::Card,
    pub messaging: B::Messaging,
    pub fetcher: B::Fetcher,
    pub clock: B::Clock,
    pub entropy: B::Entropy,
    pub ui: B::Ui,
}

/// The running device.
pub struct App<B: Board> {
    parts: Parts<B>,
    keys: DeviceKeys,
    chats: Chats,
    /// The history open last (the card allows few open files).
    history: Option<(u32, History<B::Card>)>,
    /// Inbox items of files whose descriptions are still arriving, by
    /// (contact, offer id): released once the file is on the card.
    open_items: BTreeMap<(u32, Vec<u8>), Vec<u64>>,
    download: Option<Download<B::Card>>,
    waiting: VecDeque<Waiting>,
    /// Only files on these XFTP servers are fetched; any when empty.
    xftp: Vec<String>,
    /// The routers last shown as down.
    down: Vec<String>,
}

/// SMP router addresses as typed, checked and written out in full; why
/// not, in words.
pub fn smp_routers(list: &[String]) -> core::result::Result<Vec<String>, String> {
    list.iter()
        .map(|s| match ServerAddress::parse(s) {
            Ok(a) if a.scheme() == Scheme::Smp => Ok(a.to_string()),
            Ok(_) => Err(format!("{s} is not an SMP router (smp://…)")),
            Err(e) => Err(format!("{s} is not a router address ({e})")),
        })
        .collect()
}

/// A contact's history file number (contact ids are never reused).
pub fn history_no(contact: u64) -> u32 {
    (contact & 0x0fff_ffff) as u32
}

impl<B: Board> App<B> {
    pub fn new(parts: Parts<B>, keys: DeviceKeys, xftp: Vec<String>) -> Self {
        App {
            parts,
            keys,
            chats: Chats::new(),
            history: None,
            open_items: BTreeMap::new(),
            download: None,
            waiting: VecDeque::new(),
            xftp,
            down: Vec::new(),
        }
    }

    /// Shows the address and runs until the user stops the device.
    pub async fn run(&mut self, wait_ms: u32) -> Result<(), B> {
        let address = self.messaging_address().await?;
        self.show(&UiEvent::Address(&address));
        self.show(&UiEvent::Ready);
        while self.step(wait_ms).await? {}
        Ok(())
    }

    async fn messaging_address(&mut self) -> Result<String, B> {
        self.parts
            .messaging
            .address()
            .await
            .map_err(AppError::Messaging)
    }

    /// One turn of the loop: router changes, what was typed, at most one
    /// inbox item (waiting up to `wait_ms` when no file is coming in), and
    /// one chunk of the current download. `false` once stopped.
    pub async fn step(&mut self, wait_ms: u32) -> Result<bool, B> {
        self.report_routers();
        while let Some(input) = self.parts.ui.poll_input() {
            match input {
                Input::Stop => return Ok(false),
                Input::Line(line) => match Command::parse(&line) {
                    Ok(Some(c)) => {
                        if !self.command(c).await? {
                            return Ok(false);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => self.show(&UiEvent::Note(&e.to_string())),
                },
            }
        }
        let wait = if self.download.is_some() { 0 } else { wait_ms };
        let next = self.parts.messaging.next(wait).await;
        if let Some(d) = next.map_err(AppError::Messaging)? {
            self.handle(d).await?;
        }
        self.fetch_turn().await?;
        Ok(true)
    }

    /// Closes the card's files and gives the parts back.
    pub fn close(mut self) -> Result<Parts<B>, B> {
        self.close_history()?;
        if let Some(d) = self.download.take() {
            // Its journal is committed chunk by chunk; nothing is lost.
            let _ = d.job.close(&mut self.parts.card);
        }
        Ok(self.parts)
    }

    pub fn parts(&self) -> &Parts<B> {
        &self.parts
    }

    fn show(&mut self, e: &UiEvent<'_>) {
        self.parts.ui.show(e);
    }

    fn name_of(&self, contact: u64) -> String {
        self.parts
            .messaging
            .contact(contact)
            .map(|c| c.name)
            .unwrap_or_else(|| format!("#{contact}"))
    }

    fn now(&self) -> i64 {
        self.parts.clock.unix_time().map_or(0, |t| t as i64)
    }

    fn history(&mut self, contact: u32) -> Result<&mut History<B::Card>, B> {
        if self.history.as_ref().is_some_and(|(c, _)| *c != contact) {
            self.close_history()?;
        }
        let card = &mut self.parts.card;
        if self.history.is_none() {
            let h = History::open(card, &self.keys.files_mk, &self.keys.device_id, contact)?;
            self.history = Some((contact, h));
        }
        match &mut self.history {
            Some((_, h)) => Ok(h),
            None => unreachable!("opened above"),
        }
    }

    /// Appends to a contact's history; on the card once this returns.
    fn store_entry(&mut self, contact: u32, e: &Entry) -> Result<(), B> {
        self.history(contact)?;
        if let Some((_, h)) = &mut self.history {
            h.append(&mut self.parts.card, e, &mut self.parts.entropy)?;
        }
        Ok(())
    }

    fn close_history(&mut self) -> Result<(), B> {
        if let Some((_, h)) = self.history.take() {
            h.close(&mut self.parts.card)?;
        }
        Ok(())
    }

    /// Handles one inbox item, then releases or keeps it.
    async fn handle(&mut self, d: Delivery) -> Result<(), B> {
        let item = d.item;
        let r = if self.deliver(d).await? {
            self.parts.messaging.release(item)
        } else {
            self.parts.messaging.keep(item)
        };
        r.map_err(AppError::Messaging)
    }

    /// Handles one inbox item; returns whether it may be released (else it
    /// is kept).
    async fn deliver(&mut self, d: Delivery) -> Result<bool, B> {
        let who = self.name_of(d.contact);
        let contact = history_no(d.contact);
        let (msg_id, body) = match d.event {
            Event::Connected => {
                self.show(&UiEvent::Connected { who: &who });
                return Ok(true);
            }
            Event::Skipped(why) => {
                self.show(&UiEvent::Skipped {
                    who: &who,
                    why: &why,
                });
                return Ok(true);
            }
            Event::Other => return Ok(true),
            Event::Sent { msg_id, body } => {
                if !self.history(contact)?.has(Direction::Sent, msg_id) {
                    for text in sent_texts(&body) {
                        let e = Entry {
                            direction: Direction::Sent,
                            status: 0,
                            time: self.now(),
                            msg_id,
                            text,
                        };
                        self.store_entry(contact, &e)?;
                    }
                }
                return Ok(true);
            }
            Event::Message { msg_id, body } => (msg_id, body),
        };
        let seen = self.history(contact)?.has(Direction::Received, msg_id);
        let mut release = true;
        for step in self.chats.receive(contact, &body) {
            match step {
                Step::Text(text) => {
                    if !seen {
                        let e = Entry {
                            direction: Direction::Received,
                            status: 0,
                            time: self.now(),
                            msg_id,
                            text,
                        };
                        self.store_entry(contact, &e)?;
                        self.show(&UiEvent::Text {
                            who: &who,
                            text: &e.text,
                        });
                    }
                }
                Step::Offered { file, name, size } => {
                    release = false;
                    self.open_items
                        .entry((contact, file))
                        .or_default()
                        .push(d.item);
                    self.show(&UiEvent::Offered {
                        who: &who,
                        name: &safe_file_name(&name),
                        size,
                    });
                }
                Step::Part { file } => {
                    release = false;
                    self.open_items
                        .entry((contact, file))
                        .or_default()
                        .push(d.item);
                }
                Step::Fetch {
                    file,
                    name,
                    size,
                    description,
                } => {
                    let items = self.open_items.remove(&(contact, file)).unwrap_or_default();
                    let w = Waiting {
                        who: who.clone(),
                        name,
                        size,
                        description,
                        items,
                    };
                    // Held until the file is settled (or, if it cannot be
                    // started now, until the next start).
                    release = self.offer(w, d.item)? && release;
                }
                Step::Ignored(_) => {}
                Step::Refused(why) => self.show(&UiEvent::Refused {
                    who: &who,
                    why: &why,
                }),
            }
        }
        Ok(release)
    }

    /// Takes a complete offer whose description arrived with the inbox
    /// item `current`: refused at once when its description is unusable,
    /// else started or put in line. Returns whether `current` may be
    /// released now (the offer is settled; its other items are released
    /// here); otherwise `current` joins the offer's items.
    fn offer(&mut self, mut w: Waiting, current: u64) -> Result<bool, B> {
        let Some(desc) = self.check(&w) else {
            self.release_all(&w.items)?;
            return Ok(true);
        };
        if self.download.is_none() {
            return self.start(w, &desc, Some(current));
        }
        w.items.push(current);
        let queued: usize = self.waiting.iter().map(|q| q.description.len()).sum();
        if self.waiting.len() < MAX_PENDING && queued + w.description.len() <= MAX_WAITING_TEXT {
            self.waiting.push_back(w);
        } else {
            let shown = safe_file_name(&w.name);
            self.show(&UiEvent::Note(&format!(
                "{}: file {shown} waits for the next start (too many files in line)",
                w.who
            )));
        }
        Ok(false)
    }

    /// The offer's description, or `None` (shown) when it is refused.
    fn check(&mut self, w: &Waiting) -> Option<ValidFileDescription> {
        let shown = safe_file_name(&w.name);
        let why = match ValidFileDescription::from_yaml(&w.description, FileParty::Recipient) {
            Err(e) => format!("its description is not valid ({e})"),
            Ok(d) => {
                let foreign = !self.xftp.is_empty()
                    && d.chunks
                        .iter()
                        .flat_map(|c| &c.replicas)
                        .any(|r| !self.xftp.contains(&r.server.to_string()));
                if !foreign {
                    return Some(d);
                }
                "it is on XFTP servers this device was not given (--xftp)".to_string()
            }
        };
        self.show(&UiEvent::FileRefused {
            who: &w.who,
            name: &shown,
            why: &why,
        });
        None
    }

    fn release_all(&mut self, items: &[u64]) -> Result<(), B> {
        for &i in items {
            self.parts
                .messaging
                .release(i)
                .map_err(AppError::Messaging)?;
        }
        Ok(())
    }

    /// Opens (or resumes) the job for an offer. When that settles it (it
    /// cannot be started, or it is on the card already) the offer's items
    /// are released and `true` returned (`current`, if any, is the
    /// caller's to release); else it becomes the current download, holding
    /// its items and `current`.
    fn start(
        &mut self,
        mut w: Waiting,
        desc: &ValidFileDescription,
        current: Option<u64>,
    ) -> Result<bool, B> {
        let shown = safe_file_name(&w.name);
        self.close_history()?;
        let p = &mut self.parts;
        let job = match catalog::job_for(&mut p.card, &self.keys, desc, &mut p.entropy) {
            Ok(j) => j,
            Err(e) => {
                let line = format!("{}: file {shown} could not be started: {e}", w.who);
                self.show(&UiEvent::Note(&line));
                self.release_all(&w.items)?;
                return Ok(true);
            }
        };
        self.show(&UiEvent::Receiving {
            who: &w.who,
            name: &shown,
            size: w.size,
        });
        if job.state() != JobState::Fetching {
            // Fetched before a reset: settled from the journal.
            let r = match job.state() {
                JobState::Failed => Err(FetchFailure::Failed(job.failure())),
                _ => Ok(true),
            };
            let base = job.names().base.clone();
            let _ = job.close(&mut self.parts.card);
            self.show_outcome(&w.who, &shown, w.size, &base, &r);
            self.release_all(&w.items)?;
            return Ok(true);
        }
        w.items.extend(current);
        self.download = Some(Download {
            job,
            who: w.who,
            name: shown,
            size: w.size,
            items: w.items,
            shown: u64::MAX,
        });
        Ok(false)
    }

    fn show_outcome(
        &mut self,
        who: &str,
        name: &str,
        size: u64,
        base: &str,
        r: &core::result::Result<bool, FetchFailure>,
    ) {
        self.show(&match r {
            Ok(_) => UiEvent::Received {
                who,
                name,
                size,
                base,
            },
            Err(FetchFailure::Unreachable) => UiEvent::Interrupted { who, name },
            Err(FetchFailure::Failed(f)) => {
                let failure = format!("{f:?}");
                return self.show(&UiEvent::FileRemoved {
                    who,
                    name,
                    failure: &failure,
                });
            }
            Err(FetchFailure::Other(why)) => UiEvent::FileFailed { who, name, why },
        });
    }

    /// Fetches one chunk of the current download.
    async fn fetch_turn(&mut self) -> Result<(), B> {
        let Some(d) = &mut self.download else {
            return Ok(());
        };
        let Parts {
            card, fetcher, ui, ..
        } = &mut self.parts;
        let (name, last) = (&d.name, &mut d.shown);
        let mut progress = |done: u64, total: u64| {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            if *last == u64::MAX || percent / 10 != *last / 10 {
                *last = percent;
                ui.show(&UiEvent::Progress { name, percent });
            }
        };
        let r = fetcher.chunk(card, &mut d.job, &mut progress).await;
        if r == Ok(false) {
            return Ok(());
        }
        let Some(d) = self.download.take() else {
            return Ok(());
        };
        let base = d.job.names().base.clone();
        let _ = d.job.close(&mut self.parts.card);
        self.show_outcome(&d.who, &d.name, d.size, &base, &r);
        // An interrupted offer stays kept: it comes again at the next start
        // and the fetch resumes.
        if r != Err(FetchFailure::Unreachable) {
            self.release_all(&d.items)?;
        }
        // The next offer in line.
        while self.download.is_none() {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            match self.check(&w) {
                Some(desc) => {
                    self.start(w, &desc, None)?;
                }
                None => self.release_all(&w.items)?,
            }
        }
        Ok(())
    }

    /// Runs one console command; `false` for `/quit`.
    async fn command(&mut self, c: Command) -> Result<bool, B> {
        match c {
            Command::Quit => return Ok(false),
            Command::Help => self.show(&UiEvent::Note(HELP)),
            Command::Contacts => {
                let list = self
                    .parts
                    .messaging
                    .contacts()
                    .map_err(AppError::Messaging)?;
                for c in list.iter().filter(|c| !c.is_address()) {
                    self.show(&UiEvent::Contact {
                        name: &c.name,
                        status: &c.status,
                    });
                }
            }
            Command::Files => self.list_files()?,
            Command::Invite => match self.parts.messaging.invite().await {
                Ok(link) => self.show(&UiEvent::Invitation(&link)),
                Err(e) => self.show(&UiEvent::Note(&format!("/invite failed: {e}"))),
            },
            Command::Address => {
                let a = self.messaging_address().await?;
                self.show(&UiEvent::Address(&a));
            }
            Command::Connect { link } => match self.parts.messaging.connect(&link).await {
                Ok(()) => self.show(&UiEvent::Note(
                    "connecting; the contact shows up once it accepts",
                )),
                Err(e) => self.show(&UiEvent::Note(&format!("/connect failed: {e}"))),
            },
            Command::Routers { set } => self.routers(&set)?,
            Command::Msg { to, text } => {
                let Some(c) = self.parts.messaging.contact_named(&to) else {
                    self.show(&UiEvent::Note(&format!("no contact named {to}")));
                    return Ok(true);
                };
                self.send(&c, &text).await?;
            }
        }
        Ok(true)
    }

    async fn send(&mut self, c: &Contact, text: &str) -> Result<(), B> {
        let body = text_message(text, &mut self.parts.entropy);
        let id = match self.parts.messaging.send(c.id, &body).await {
            Ok(id) => id,
            Err(e) => {
                self.show(&UiEvent::Note(&format!("/msg failed: {e}")));
                return Ok(());
            }
        };
        // It reaches the card when the agent hands it back (Event::Sent):
        // take the inbox up to it now, in order, so that the history has
        // it before the next command (a /quit, say).
        for _ in 0..CATCH_UP {
            let next = self.parts.messaging.next(0).await;
            let Some(d) = next.map_err(AppError::Messaging)? else {
                break;
            };
            let mine =
                d.contact == c.id && matches!(d.event, Event::Sent { msg_id, .. } if msg_id == id);
            self.handle(d).await?;
            if mine {
                break;
            }
        }
        Ok(())
    }

    /// `/routers`: shows them, or replaces them with `set` (`presets`:
    /// the SimpleGo presets, smp.simplego.dev first).
    fn routers(&mut self, set: &[String]) -> Result<(), B> {
        if !set.is_empty() {
            let list = if set == ["presets"] {
                default_addresses()
            } else {
                match smp_routers(set) {
                    Ok(l) => l,
                    Err(why) => {
                        self.show(&UiEvent::Note(&format!("/routers: {why}")));
                        return Ok(());
                    }
                }
            };
            if let Err(e) = self.parts.messaging.set_routers(&list) {
                self.show(&UiEvent::Note(&format!("/routers failed: {e}")));
                return Ok(());
            }
        }
        for (i, r) in self.parts.messaging.routers().iter().enumerate() {
            self.show(&UiEvent::Router {
                addr: r,
                default: i == 0,
            });
        }
        Ok(())
    }

    fn list_files(&mut self) -> Result<(), B> {
        self.close_history()?;
        let list = catalog::list(&mut self.parts.card, &self.keys)
            .map_err(|e| AppError::History(HistoryError::Storage(e)))?;
        // The current download's files are open for writing: it is shown
        // from its job.
        let active = self.download.as_ref().map(|d| {
            let (done, all) = d.job.chunks();
            (d.job.names().base.clone(), done, all, d.name.clone())
        });
        for f in list {
            let base = match &f {
                Ok(f) => &f.base,
                Err((base, _)) => base,
            };
            if let Some((b, done, all, name)) = &active
                && b == base
            {
                self.show(&UiEvent::File {
                    base: b,
                    state: &format!("fetching {done}/{all}"),
                    len: "-",
                    name,
                });
                continue;
            }
            match f {
                Ok(f) => {
                    let state = match f.state {
                        JobState::Fetching => format!("fetching {}/{}", f.chunks_done, f.chunks),
                        JobState::Verified | JobState::Acked => "complete".into(),
                        JobState::Failed => "failed".into(),
                    };
                    let name = f
                        .header
                        .as_ref()
                        .map(|h| safe_file_name(&h.file_name))
                        .unwrap_or_else(|| "-".into());
                    let len = f.content_len.map_or("-".into(), |n| n.to_string());
                    self.show(&UiEvent::File {
                        base: &f.base,
                        state: &state,
                        len: &len,
                        name: &name,
                    });
                }
                Err((base, e)) => {
                    self.show(&UiEvent::Note(&format!("{base}\tunreadable ({e})")));
                }
            }
        }
        Ok(())
    }

    /// Shows routers that went down or came back since the last turn.
    fn report_routers(&mut self) {
        let now = self.parts.messaging.down_routers();
        for r in now.iter().filter(|r| !self.down.contains(r)) {
            self.parts.ui.show(&UiEvent::RouterDown(r));
        }
        for r in self.down.iter().filter(|r| !now.contains(r)) {
            self.parts.ui.show(&UiEvent::RouterUp(r));
        }
        self.down = now;
    }
}
