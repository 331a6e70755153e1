//! The device's event loop: what it stores, shows, acknowledges and
//! fetches, on any [`Board`].
//!
//! A received text is written to its contact's history on the card (and
//! synced) before its inbox item is released, and only a released item's
//! router message is acknowledged. After a reset the item comes again and
//! the history recognises it by its message id, so every message is on the
//! card exactly once. A file offer and its description parts are kept in
//! the durable state until the file is on the card; their router messages
//! may go at once, so the rest of the description can come. An offer whose
//! servers cannot be reached stays kept and is fetched again (resumed) at
//! the next start.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use device_sync::catalog;
use device_sync::format::journal::JobState;
use device_sync::job::DeviceKeys;
use smp_core::file::description::{FileParty, ValidFileDescription};
use smp_core::file::header::safe_file_name;

use crate::chat::{Chats, Step, text_message};
use crate::console::{Command, HELP};
use crate::hal::{
    Board, Clock, Contact, Delivery, Event, FetchFailure, Fetcher, Input, Messaging, Ui,
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
    /// Only files on these XFTP servers are fetched; any when empty.
    xftp: Vec<String>,
    /// The routers last shown as down.
    down: Vec<String>,
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

    /// One turn of the loop: router changes, what was typed, then at most
    /// one inbox item (waiting up to `wait_ms`). `false` once stopped.
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
        let next = self.parts.messaging.next(wait_ms).await;
        if let Some(d) = next.map_err(AppError::Messaging)? {
            let item = d.item;
            let r = if self.deliver(d).await? {
                self.parts.messaging.release(item)
            } else {
                self.parts.messaging.keep(item)
            };
            r.map_err(AppError::Messaging)?;
        }
        Ok(true)
    }

    /// Closes the card's files and gives the parts back.
    pub fn close(mut self) -> Result<Parts<B>, B> {
        self.close_history()?;
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
            Event::Message { msg_id, body } => (msg_id, body),
        };
        let seen = self.history(contact)?.has_received(msg_id);
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
                    if self.fetch(&who, &name, size, &description).await? {
                        for i in items {
                            self.parts
                                .messaging
                                .release(i)
                                .map_err(AppError::Messaging)?;
                        }
                    } else {
                        // Kept: the offer comes again at the next start
                        // and the fetch resumes.
                        release = false;
                    }
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

    /// Fetches a file onto the card, showing progress. Returns whether the
    /// offer is settled (on the card, or refused or failed for good, which
    /// is shown); `false` when its servers cannot be reached now.
    async fn fetch(&mut self, who: &str, name: &str, size: u64, text: &str) -> Result<bool, B> {
        let shown = safe_file_name(name);
        let refused = |app: &mut Self, why: &str| {
            app.show(&UiEvent::FileRefused {
                who,
                name: &shown,
                why,
            })
        };
        let desc = match ValidFileDescription::from_yaml(text, FileParty::Recipient) {
            Ok(d) => d,
            Err(e) => {
                refused(self, &format!("its description is not valid ({e})"));
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
                refused(
                    self,
                    "it is on XFTP servers this device was not given (--xftp)",
                );
                return Ok(true);
            }
        }
        self.close_history()?;
        let p = &mut self.parts;
        let mut job = match catalog::job_for(&mut p.card, &self.keys, &desc, &mut p.entropy) {
            Ok(j) => j,
            Err(e) => {
                let why = format!("could not be started: {e}");
                self.show(&UiEvent::Note(&format!("{who}: file {shown} {why}")));
                return Ok(true);
            }
        };
        self.show(&UiEvent::Receiving {
            who,
            name: &shown,
            size,
        });
        let r = if job.state() == JobState::Fetching {
            let mut last = u64::MAX;
            let Parts {
                card, fetcher, ui, ..
            } = &mut self.parts;
            let mut progress = |d: u64, t: u64| {
                let percent = (d * 100).checked_div(t).unwrap_or(100);
                if last == u64::MAX || percent / 10 != last / 10 {
                    last = percent;
                    ui.show(&UiEvent::Progress {
                        name: &shown,
                        percent,
                    });
                }
            };
            fetcher.fetch(card, &mut job, &mut progress).await
        } else {
            Ok(())
        };
        let base = job.names().base.clone();
        let _ = job.close(&mut self.parts.card);
        match r {
            Ok(()) => self.show(&UiEvent::Received {
                who,
                name: &shown,
                size,
                base: &base,
            }),
            Err(FetchFailure::Unreachable) => {
                self.show(&UiEvent::Interrupted { who, name: &shown });
                return Ok(false);
            }
            Err(FetchFailure::Failed(f)) => self.show(&UiEvent::FileRemoved {
                who,
                name: &shown,
                failure: &format!("{f:?}"),
            }),
            Err(FetchFailure::Other(why)) => self.show(&UiEvent::FileFailed {
                who,
                name: &shown,
                why: &why,
            }),
        }
        Ok(true)
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
            Command::Msg { to, text } => {
                let Some(c) = self.parts.messaging.contact_named(&to) else {
                    self.show(&UiEvent::Note(&format!("no contact named {to}")));
                    return Ok(true);
                };
                self.send(&c, text).await?;
            }
        }
        Ok(true)
    }

    async fn send(&mut self, c: &Contact, text: String) -> Result<(), B> {
        let body = text_message(&text, &mut self.parts.entropy);
        match self.parts.messaging.send(c.id, &body).await {
            Ok(msg_id) => {
                let e = Entry {
                    direction: Direction::Sent,
                    status: 0,
                    time: self.now(),
                    msg_id,
                    text,
                };
                self.store_entry(history_no(c.id), &e)
            }
            Err(e) => {
                self.show(&UiEvent::Note(&format!("/msg failed: {e}")));
                Ok(())
            }
        }
    }

    fn list_files(&mut self) -> Result<(), B> {
        self.close_history()?;
        let list = catalog::list(&mut self.parts.card, &self.keys)
            .map_err(|e| AppError::History(HistoryError::Storage(e)))?;
        for f in list {
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
