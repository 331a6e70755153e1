//! The console's commands, as typed (the host board reads them from stdin;
//! a device's keyboard gives the same lines).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/msg NAME TEXT`
    Msg { to: String, text: String },
    /// `/contacts`
    Contacts,
    /// `/files`
    Files,
    /// `/invite`: a new one-time invitation link.
    Invite,
    /// `/connect LINK`
    Connect { link: String },
    /// `/address`: the device's contact address again.
    Address,
    /// `/routers [ADDR…|presets]`: shows the device's routers, or replaces
    /// them (the first is where new queues go).
    Routers { set: Vec<String> },
    /// `/quit`
    Quit,
    /// `/help`
    Help,
}

/// Why a line is not a command, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error("unknown command {0}; /help lists them")]
    Unknown(String),
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// What `/help` shows.
pub const HELP: &str = "/msg NAME TEXT, /contacts, /files, /invite, /connect LINK, /address, /routers [ADDR…|presets], /quit";

impl Command {
    /// Parses one line; `Ok(None)` for a blank one.
    pub fn parse(line: &str) -> Result<Option<Command>, ConsoleError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim_start()),
            None => (line, ""),
        };
        let none = |c: Command, usage| {
            if rest.is_empty() {
                Ok(Some(c))
            } else {
                Err(ConsoleError::Usage(usage))
            }
        };
        match word {
            "/msg" => {
                let Some((to, text)) = rest.split_once(char::is_whitespace) else {
                    return Err(ConsoleError::Usage("/msg NAME TEXT"));
                };
                let text = text.trim();
                if text.is_empty() {
                    return Err(ConsoleError::Usage("/msg NAME TEXT"));
                }
                Ok(Some(Command::Msg {
                    to: to.to_string(),
                    text: text.to_string(),
                }))
            }
            "/connect" => {
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    return Err(ConsoleError::Usage("/connect LINK"));
                }
                Ok(Some(Command::Connect {
                    link: rest.to_string(),
                }))
            }
            "/routers" => Ok(Some(Command::Routers {
                set: rest.split_whitespace().map(ToString::to_string).collect(),
            })),
            "/contacts" => none(Command::Contacts, "/contacts"),
            "/files" => none(Command::Files, "/files"),
            "/invite" => none(Command::Invite, "/invite"),
            "/address" => none(Command::Address, "/address"),
            "/quit" => none(Command::Quit, "/quit"),
            "/help" => none(Command::Help, "/help"),
            w => Err(ConsoleError::Unknown(w.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_typed() {
        assert_eq!(
            Command::parse("/msg alice hello  there ").unwrap(),
            Some(Command::Msg {
                to: "alice".into(),
                text: "hello  there".into()
            })
        );
        assert_eq!(Command::parse("  ").unwrap(), None);
        assert_eq!(Command::parse("/quit").unwrap(), Some(Command::Quit));
        assert_eq!(
            Command::parse("/connect https://smp.example/a#x").unwrap(),
            Some(Command::Connect {
                link: "https://smp.example/a#x".into()
            })
        );
        assert_eq!(
            Command::parse("/msg alice"),
            Err(ConsoleError::Usage("/msg NAME TEXT"))
        );
        assert_eq!(
            Command::parse("/contacts now"),
            Err(ConsoleError::Usage("/contacts"))
        );
        assert_eq!(
            Command::parse("hello"),
            Err(ConsoleError::Unknown("hello".into()))
        );
        assert_eq!(
            Command::parse("/routers").unwrap(),
            Some(Command::Routers { set: vec![] })
        );
        assert_eq!(
            Command::parse("/routers smp://a@x smp://b@y").unwrap(),
            Some(Command::Routers {
                set: vec!["smp://a@x".into(), "smp://b@y".into()]
            })
        );
        assert_eq!(
            Command::parse("/connect a b"),
            Err(ConsoleError::Usage("/connect LINK"))
        );
    }
}
