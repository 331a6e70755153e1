//! The control port (`[TRANSPORT] control_port`): a line protocol on
//! 127.0.0.1 for the operator, as the reference's `runCPServer`.
//!
//! ```text
//! auth <password>      role from control_port_admin_password / _user_password
//! stats-rts            runtime statistics (see `stats_rts`)
//! delete <b64u rid>    delete the file of this recipient ID, as FDEL
//! block <b64u rid> reason=spam|content[,notice=<json>]
//! help, quit, empty line
//! ```

use crate::handler::Handler;
use crate::store::FileId;
use smp_core::encoding::string::b64_decode;
use smp_core::xftp::command::BasicAuth;
use smp_core::xftp::error::{BlockingInfo, XftpErrorType};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A line longer than this ends the session (no command comes close).
const MAX_LINE: u64 = 64 * 1024;

/// What the control port needs: where to listen and the two passwords.
#[derive(Clone)]
pub struct ControlSettings {
    /// Always a loopback address (127.0.0.1 in production, port 0 in tests).
    pub listen: SocketAddr,
    pub admin_password: Option<BasicAuth>,
    pub user_password: Option<BasicAuth>,
}

impl std::fmt::Debug for ControlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSettings")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// A session's role (`CPClientRole`), printed as the reference shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    None,
    User,
    Admin,
}

impl Role {
    pub fn show(self) -> &'static str {
        match self {
            Self::None => "CPRNone",
            Self::User => "CPRUser",
            Self::Admin => "CPRAdmin",
        }
    }
}

/// One parsed line (`ControlProtocol`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    Auth(BasicAuth),
    StatsRts,
    Delete(Vec<u8>),
    Block(Vec<u8>, BlockingInfo),
    Help,
    Quit,
    Skip,
}

/// Parses a line (without its line end) as the reference's `strDecode`
/// does: the command word up to the first space, its arguments, and
/// nothing after them. Errors are attoparsec-style messages.
pub fn parse(line: &[u8]) -> Result<ControlCommand, String> {
    let (word, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, &line[line.len()..]),
    };
    let no_args = |c: ControlCommand| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err("endOfInput".to_string())
        }
    };
    match word {
        b"auth" => {
            let arg = space_arg(rest)?;
            if arg.is_empty() || arg.contains(&b' ') {
                return Err(if arg.is_empty() {
                    "Failed reading: empty password".into()
                } else {
                    "endOfInput".into()
                });
            }
            BasicAuth::new(arg)
                .map(ControlCommand::Auth)
                .ok_or_else(|| "Failed reading: invalid password".into())
        }
        b"stats-rts" => no_args(ControlCommand::StatsRts),
        b"delete" => {
            let arg = space_arg(rest)?;
            let (id, tail) = split_word(arg);
            if !tail.is_empty() {
                return Err("endOfInput".into());
            }
            Ok(ControlCommand::Delete(entity_id(id)?))
        }
        b"block" => {
            let arg = space_arg(rest)?;
            let (id, tail) = split_word(arg);
            let id = entity_id(id)?;
            let info = space_arg(tail)?;
            let info = BlockingInfo::decode(info)
                .ok_or_else(|| "Failed reading: invalid blocking info".to_string())?;
            Ok(ControlCommand::Block(id, info))
        }
        b"help" => no_args(ControlCommand::Help),
        b"quit" => no_args(ControlCommand::Quit),
        b"" => no_args(ControlCommand::Skip),
        _ => Err("Failed reading: bad ControlProtocol command".into()),
    }
}

/// `_strP`: one space, then the argument.
fn space_arg(rest: &[u8]) -> Result<&[u8], String> {
    rest.strip_prefix(b" ")
        .ok_or_else(|| "not enough input".to_string())
}

fn split_word(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b' ') {
        Some(i) => (&b[..i], &b[i..]),
        None => (b, &b[b.len()..]),
    }
}

fn entity_id(text: &[u8]) -> Result<Vec<u8>, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| b64_decode(t).ok())
        .ok_or_else(|| "Failed reading: invalid base64url".to_string())
}

/// Serves the control port until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    settings: Arc<ControlSettings>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!("control port accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (settings, handler, shutdown) = (settings.clone(), handler.clone(), shutdown.clone());
        tokio::spawn(async move {
            let (r, w) = tcp.into_split();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = session(r, w, &settings, &handler) => {
                    if let Err(e) = r {
                        tracing::debug!("control port session ended: {e}");
                    }
                }
            }
        });
    }
}

/// One control-port session, from the greeting to `quit` or end of input.
pub async fn session<R, W>(
    reader: R,
    mut writer: W,
    settings: &ControlSettings,
    handler: &Handler,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(reader);
    writer
        .write_all(b"XFTP server control port\n'help' for supported commands\n")
        .await?;
    let mut role = Role::None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            writer.write_all(b"error: line too long\n").await?;
            return Ok(());
        }
        let mut text: &[u8] = &line;
        if let Some(t) = text.strip_suffix(b"\n") {
            text = t;
        }
        if let Some(t) = text.strip_suffix(b"\r") {
            text = t;
        }
        let cmd = parse(text);
        if let Ok(c) = &cmd {
            log_command(c);
        }
        let answer = match cmd {
            Err(e) => format!("error: {e}"),
            Ok(ControlCommand::Quit) => return writer.flush().await,
            Ok(ControlCommand::Skip) => continue,
            Ok(ControlCommand::Help) => "commands: stats-rts, delete, help, quit".into(),
            Ok(ControlCommand::Auth(password)) => auth(&mut role, settings, &password),
            Ok(ControlCommand::StatsRts) => stats_rts(handler),
            Ok(ControlCommand::Delete(id)) => match role {
                Role::None => "AUTH".into(),
                _ => outcome(delete(handler, &id).await),
            },
            Ok(ControlCommand::Block(id, info)) => match role {
                Role::None => "AUTH".into(),
                _ => outcome(block(handler, &id, info).await),
            },
        };
        writer.write_all(answer.as_bytes()).await?;
        writer.write_all(b"\n").await?;
    }
}

/// The reference logs each command line; ours logs only the command word,
/// because the arguments are file IDs (and passwords are never logged).
fn log_command(c: &ControlCommand) {
    let word = match c {
        ControlCommand::StatsRts => "stats-rts",
        ControlCommand::Delete(_) => "delete",
        ControlCommand::Block(..) => "block",
        ControlCommand::Auth(_)
        | ControlCommand::Help
        | ControlCommand::Quit
        | ControlCommand::Skip => return,
    };
    tracing::warn!("ControlPort: {word}");
}

/// `controlPortAuth`: admin first, then user; the first role sticks.
fn auth(role: &mut Role, settings: &ControlSettings, password: &BasicAuth) -> String {
    let matches = |p: &Option<BasicAuth>| p.as_ref().is_some_and(|p| p.ct_eq(password.as_bytes()));
    // Both comparisons always run, so timing does not tell which matched.
    let (admin, user) = (
        matches(&settings.admin_password),
        matches(&settings.user_password),
    );
    let new_role = if admin {
        Role::Admin
    } else if user {
        Role::User
    } else {
        Role::None
    };
    match *role {
        Role::None => {
            *role = new_role;
            format!("Current role is {}", new_role.show())
        }
        r if r == new_role => format!("Current role is {}", r.show()),
        r => format!("Current role is {}, start new session to change.", r.show()),
    }
}

fn file_id(id: &[u8]) -> Result<FileId, XftpErrorType> {
    FileId::try_from(id).map_err(|_| XftpErrorType::Auth)
}

async fn delete(handler: &Handler, rid: &[u8]) -> Result<(), XftpErrorType> {
    let sid = handler.sender_of(&file_id(rid)?)?;
    handler.delete(&sid).await
}

async fn block(handler: &Handler, rid: &[u8], info: BlockingInfo) -> Result<(), XftpErrorType> {
    handler.block(&file_id(rid)?, info).await
}

/// `ok`, or `error: <error>` with the error as on the wire (`AUTH`,
/// `FILE_IO`, …).
fn outcome(r: Result<(), XftpErrorType>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("error: {}", String::from_utf8_lossy(&e.encode())),
    }
}

/// The reference prints GHC's runtime statistics here. This server is not
/// a GHC program; it answers with what it has instead: the number of file
/// records and the storage in use, on one line.
fn stats_rts(handler: &Handler) -> String {
    let (files, used) = handler.with_store(|s| (s.file_count(), s.used_storage()));
    format!("not a GHC runtime: files={files} used_storage={used}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse(b""), Ok(ControlCommand::Skip));
        assert_eq!(parse(b"help"), Ok(ControlCommand::Help));
        assert_eq!(parse(b"quit"), Ok(ControlCommand::Quit));
        assert_eq!(parse(b"stats-rts"), Ok(ControlCommand::StatsRts));
        assert_eq!(
            parse(b"auth pwd"),
            Ok(ControlCommand::Auth(BasicAuth::new(b"pwd").unwrap()))
        );
        assert_eq!(
            parse(b"delete AAEC"),
            Ok(ControlCommand::Delete(vec![0, 1, 2]))
        );
        assert!(matches!(
            parse(b"block AAEC reason=spam"),
            Ok(ControlCommand::Block(_, _))
        ));
        assert_eq!(
            parse(b"nope"),
            Err("Failed reading: bad ControlProtocol command".into())
        );
        assert_eq!(parse(b"help me"), Err("endOfInput".into()));
        assert!(parse(b"delete").is_err());
        assert!(parse(b"delete AAEC x").is_err());
        assert!(parse(b"block AAEC reason=other").is_err());
        assert!(parse(b"auth a:b").is_err());
    }
}
