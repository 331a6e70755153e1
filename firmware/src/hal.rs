//! What the device's code needs from its board (design/device.md §3).
//!
//! The card is device-sync's [`FileStore`] and randomness its [`Entropy`],
//! so that downloads and the history share one card and one CSPRNG. The
//! SMP side is one port, [`Messaging`]: the router sessions, the agent's
//! connections and its store of protocol state (NVS on a device). XFTP
//! fetching is another, [`Fetcher`], which drives a device-sync job over
//! the network. The host board fills both with smp-core's std clients;
//! everything above them — what is stored, shown, acknowledged and
//! fetched, and in which order — is [`crate::app`], in the `no_std` core.
//!
//! The async methods are called from one task on one core, so no `Send`
//! bounds are asked for (the card's volume manager is not `Send` either).

use alloc::string::String;
use alloc::vec::Vec;

pub use device_sync::job::Entropy;
pub use device_sync::storage::FileStore;

use device_sync::format::journal::Failure;
use device_sync::job::Job;

/// The pieces of a board, as the device's code uses them.
pub trait Board {
    type Card: FileStore;
    type Messaging: Messaging;
    type Fetcher: Fetcher<Self::Card>;
    type Clock: Clock;
    type Entropy: Entropy;
    type Ui: Ui;
}

/// Wall time for the history's timestamps.
pub trait Clock {
    /// Unix seconds; `None` while the board has no time (before SNTP).
    fn unix_time(&self) -> Option<u64>;
}

/// One thing the user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A console line, as typed.
    Line(String),
    /// Stop (power button, SIGTERM).
    Stop,
}

/// Display and keyboard.
pub trait Ui {
    fn show(&mut self, e: &crate::ui::UiEvent<'_>);
    /// What the user did since the last call, if anything; never waits,
    /// so that typing cannot hold up the routers.
    fn poll_input(&mut self) -> Option<Input>;
}

/// A contact as the agent knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: u64,
    /// The local name, else the one the contact gave, else `#id`.
    pub name: String,
    /// The agent's connection status (`address` for the device's own).
    pub status: String,
}

impl Contact {
    /// The device's contact address, not a contact.
    pub fn is_address(&self) -> bool {
        self.status == "address"
    }
}

/// What the agent hands over about a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected,
    /// A message that could not be used, in words.
    Skipped(String),
    /// A chat body with the sender's agent message id (the same id when it
    /// is delivered again after a reset).
    Message {
        msg_id: i64,
        body: Vec<u8>,
    },
    /// A chat body we sent, with our agent message id: handed back by
    /// [`Messaging::send`] through the inbox, committed with the send, so
    /// that it reaches the card even if the device stops right after.
    Sent {
        msg_id: i64,
        body: Vec<u8>,
    },
    /// Something the device does not act on (profiles, receipts).
    Other,
}

/// One item of the agent's inbox. It comes again after a reset until it
/// is released or kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub item: u64,
    pub contact: u64,
    pub event: Event,
}

/// The SMP side: router sessions, the agent and its durable state.
#[allow(async_fn_in_trait)]
pub trait Messaging {
    type Error: core::fmt::Display + core::fmt::Debug;
    /// The next inbox item, waiting at most `wait_ms` for the routers.
    async fn next(&mut self, wait_ms: u32) -> Result<Option<Delivery>, Self::Error>;
    /// The item is handled: its router message may be acknowledged and the
    /// item forgotten.
    fn release(&mut self, item: u64) -> Result<(), Self::Error>;
    /// The item stays in the durable state (it comes again at the next
    /// start), but its router message may be acknowledged.
    fn keep(&mut self, item: u64) -> Result<(), Self::Error>;
    /// Sends a chat body; returns our agent message id once it is durable.
    /// The body comes back as an [`Event::Sent`] item.
    async fn send(&mut self, contact: u64, body: &[u8]) -> Result<i64, Self::Error>;
    /// The device's contact address (made on first use).
    async fn address(&mut self) -> Result<String, Self::Error>;
    /// A new one-time invitation link.
    async fn invite(&mut self) -> Result<String, Self::Error>;
    /// Joins an invitation or an address.
    async fn connect(&mut self, link: &str) -> Result<(), Self::Error>;
    fn contacts(&self) -> Result<Vec<Contact>, Self::Error>;
    fn contact(&self, id: u64) -> Option<Contact>;
    /// The contact with this name (not the address).
    fn contact_named(&self, name: &str) -> Option<Contact>;
    /// The routers that cannot be reached now, as `host:port`.
    fn down_routers(&self) -> Vec<String>;
    /// The device's routers (full addresses), the default first.
    fn routers(&self) -> Vec<String>;
    /// Replaces them, durably; new queues go to the first.
    fn set_routers(&mut self, list: &[String]) -> Result<(), Self::Error>;
}

/// Why a fetch stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    /// The file's servers cannot be reached now; the job is kept and a
    /// later fetch resumes it.
    Unreachable,
    /// The job failed for good (the journal says why) and was removed.
    Failed(Failure),
    /// Anything else, in words.
    Other(String),
}

/// The XFTP side: drives a job on the card, a chunk at a time, so that
/// the device handles its messages between chunks.
#[allow(async_fn_in_trait)]
pub trait Fetcher<S: FileStore> {
    /// Fetches and commits the job's next chunk (trying its replicas);
    /// `Ok(true)` once the file is verified. `progress` gets
    /// `(bytes done, total)`.
    async fn chunk(
        &mut self,
        card: &mut S,
        job: &mut Job<S>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<bool, FetchFailure>;
}
