//! What the device shows. Its `Display` is the console's line for each
//! event (the host board prints it; the end-to-end stories read it); a
//! device with a screen may render the same events differently.
//!
//! Names of contacts and files here are already made safe to show; ids,
//! keys and router messages never are shown.

use core::fmt;

/// One thing to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiEvent<'a> {
    /// The device's contact address (a screen shows its QR code too).
    Address(&'a str),
    Ready,
    Invitation(&'a str),
    Connected {
        who: &'a str,
    },
    Text {
        who: &'a str,
        text: &'a str,
    },
    /// A contact's message that was not used, in words.
    Refused {
        who: &'a str,
        why: &'a str,
    },
    Skipped {
        who: &'a str,
        why: &'a str,
    },
    Offered {
        who: &'a str,
        name: &'a str,
        size: u64,
    },
    /// A file that will not be fetched, in words.
    FileRefused {
        who: &'a str,
        name: &'a str,
        why: &'a str,
    },
    Receiving {
        who: &'a str,
        name: &'a str,
        size: u64,
    },
    /// Shown at every tenth of a download.
    Progress {
        name: &'a str,
        percent: u64,
    },
    /// On the card under `base` (device-sync's name for it).
    Received {
        who: &'a str,
        name: &'a str,
        size: u64,
        base: &'a str,
    },
    Interrupted {
        who: &'a str,
        name: &'a str,
    },
    /// The job failed for good (`failure`, device-sync's reason) and was
    /// removed from the card.
    FileRemoved {
        who: &'a str,
        name: &'a str,
        failure: &'a str,
    },
    FileFailed {
        who: &'a str,
        name: &'a str,
        why: &'a str,
    },
    /// One line of `/contacts`.
    Contact {
        name: &'a str,
        status: &'a str,
    },
    /// One line of `/files`: device-sync's base name, the state, the
    /// content length and the file's name (`-` when unknown).
    File {
        base: &'a str,
        state: &'a str,
        len: &'a str,
        name: &'a str,
    },
    /// One line of `/routers`; the default takes new queues.
    Router {
        addr: &'a str,
        default: bool,
    },
    RouterDown(&'a str),
    RouterUp(&'a str),
    /// A reply to a command: help, a usage error, a failure, in words.
    Note(&'a str),
}

impl fmt::Display for UiEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(a) => write!(f, "address: {a}"),
            Self::Ready => f.write_str("ready"),
            Self::Invitation(l) => write!(f, "invitation: {l}"),
            Self::Connected { who } => write!(f, "{who} connected"),
            Self::Text { who, text } => write!(f, "{who}: {text}"),
            Self::Refused { who, why } => write!(f, "{who}: {why}"),
            Self::Skipped { who, why } => write!(f, "{who}: a message was skipped ({why})"),
            Self::Offered { who, name, size } => write!(f, "{who} offers {name} ({size} bytes)"),
            Self::FileRefused { who, name, why } => {
                write!(f, "{who}: file {name} refused: {why}")
            }
            Self::Receiving { who, name, size } => {
                write!(f, "{who}: receiving {name} ({size} bytes)")
            }
            Self::Progress { name, percent } => write!(f, "{name}: {percent}%"),
            Self::Received {
                who,
                name,
                size,
                base,
            } => write!(f, "{who} sent {name} ({size} bytes): on the card as {base}"),
            Self::Interrupted { who, name } => write!(
                f,
                "{who}: {name} is interrupted (its servers cannot be reached); it resumes at the next start"
            ),
            Self::FileRemoved { who, name, failure } => {
                write!(f, "{who}: {name} failed ({failure}) and was removed")
            }
            Self::FileFailed { who, name, why } => write!(f, "{who}: {name} failed: {why}"),
            Self::Contact { name, status } => write!(f, "{name}\t{status}"),
            Self::File {
                base,
                state,
                len,
                name,
            } => write!(f, "{base}\t{state}\t{len}\t{name}"),
            Self::Router { addr, default } => {
                write!(f, "router {addr}")?;
                if *default {
                    f.write_str(" (default: new queues go here)")?;
                }
                Ok(())
            }
            Self::RouterDown(r) => write!(f, "router {r} cannot be reached; retrying"),
            Self::RouterUp(r) => write!(f, "router {r} is reachable again"),
            Self::Note(s) => f.write_str(s),
        }
    }
}
