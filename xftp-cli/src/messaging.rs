//! The messaging commands: invitations, contact addresses, joining, text
//! messages, files sent to a contact, and `listen`. They speak the chat
//! protocol (the JSON the SimpleX apps send) over the agent runtime of
//! `smp_core::client::agent`, with the profile from [`crate::profile`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use smp_core::address::ServerAddress;
use smp_core::chat::{
    ChatEvent, ChatMessage, FileDescrAssembler, FileInvitation, MsgContainer, MsgContent,
    Profile as ChatProfile, SUPPORTED_CHAT_VRANGE, SharedMsgId, file_descr_events,
    parse_chat_messages,
};
use smp_core::client::agent::runtime::{Agent, AgentOptions, Notice};
use smp_core::client::agent::store::{ConnId, StoredConnection};
use smp_core::client::smp::SmpClientOptions;
use smp_core::crypto::random_array;
use tokio::time::Instant;

use crate::error::CliError;
use crate::pool::TransferOptions;
use crate::progress::Progress;
use crate::{profile, recv, send, servers};

/// Descriptions bigger than this are refused while reassembling.
const MAX_DESCRIPTION: usize = 512 * 1024;

fn runtime_err(e: smp_core::client::agent::runtime::RuntimeError) -> CliError {
    use smp_core::client::agent::runtime::RuntimeError as R;
    use smp_core::client::smp::SmpClientError as S;
    match e {
        R::Link(l) => CliError::BadLink(l),
        R::Smp(s @ (S::Connect(_) | S::Tls(_) | S::Timeout(_) | S::Closed | S::Address(_))) => {
            CliError::RouterUnreachable(s.to_string())
        }
        e => CliError::Messaging(e.to_string()),
    }
}

fn shared_id() -> SharedMsgId {
    SharedMsgId(random_array::<12>().to_vec())
}

fn chat(event: ChatEvent, with_id: bool) -> Vec<u8> {
    ChatMessage::new(SUPPORTED_CHAT_VRANGE, with_id.then(shared_id), event).encode()
}

/// Opens the profile (creating it with defaults) and its agent; new
/// invitations and addresses get short links unless `full_links`.
async fn open_agent_with(
    dir: Option<&Path>,
    full_links: bool,
) -> Result<(Agent, String), CliError> {
    let dir = profile::profile_dir(dir)?;
    let (store, p) = profile::open_or_create_profile(&dir)?;
    let me = ChatProfile::new(&p.display_name);
    let opts = AgentOptions {
        hold_acks: false,
        sent_notices: false,
        smp: SmpClientOptions::default(),
        pq: true,
        conn_info: ChatMessage::profile_info(&me),
        contact_info: ChatMessage::contact_request(&me),
        private_routing: true,
        legacy_queues: false,
        link_data: (!full_links).then(|| smp_core::chat::short_link_data(&me)),
    };
    let mut agent = Agent::with_store(store, opts).map_err(runtime_err)?;
    agent.start().await.map_err(runtime_err)?;
    Ok((agent, p.display_name))
}

async fn open_agent(dir: Option<&Path>) -> Result<(Agent, String), CliError> {
    open_agent_with(dir, false).await
}

fn parse_router(s: Option<&str>) -> Result<Option<ServerAddress>, CliError> {
    s.map(|s| {
        let s = profile::parse_smp_server(s)?;
        ServerAddress::parse(&s).map_err(|e| CliError::BadServer(s.clone(), e.to_string()))
    })
    .transpose()
}

/// The name a contact is shown by.
fn contact_name(c: &StoredConnection) -> String {
    c.local_name
        .clone()
        .or_else(|| c.peer_display_name.clone())
        .unwrap_or_else(|| format!("#{}", c.id.0))
}

/// `xftp invite`: prints a one-time invitation link.
pub async fn invite(dir: Option<&Path>, smp: Option<&str>, full: bool) -> Result<String, CliError> {
    let router = parse_router(smp)?;
    let (mut agent, _) = open_agent_with(dir, full).await?;
    let (_, link) = agent.invite(router.as_ref()).await.map_err(runtime_err)?;
    Ok(link)
}

/// `xftp address`: the profile's contact address, made on first use.
pub async fn address(
    dir: Option<&Path>,
    smp: Option<&str>,
    full: bool,
) -> Result<String, CliError> {
    let router = parse_router(smp)?;
    let (mut agent, _) = open_agent_with(dir, full).await?;
    agent.address(router.as_ref()).await.map_err(runtime_err)
}

/// `xftp connect LINK`.
pub async fn connect(
    dir: Option<&Path>,
    link: &str,
    name: Option<&str>,
    smp: Option<&str>,
) -> Result<(), CliError> {
    let router = parse_router(smp)?;
    let (mut agent, _) = open_agent(dir).await?;
    if let Some(n) = name {
        profile::parse_display_name(n)?;
        if agent.store().connection_by_name(n).ok().flatten().is_some() {
            return Err(CliError::Messaging(format!(
                "a contact named {n} exists already"
            )));
        }
    }
    agent
        .connect(link, name, router.as_ref())
        .await
        .map_err(runtime_err)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    agent.drain_outbox(deadline).await.map_err(runtime_err)?;
    Ok(())
}

/// `xftp contacts`: one line per connection.
pub async fn contacts(dir: Option<&Path>) -> Result<Vec<String>, CliError> {
    let dir = profile::profile_dir(dir)?;
    let (store, _) = profile::open_or_create_profile(&dir)?;
    let mut lines = Vec::new();
    for c in store
        .connections()
        .map_err(|e| CliError::Messaging(e.to_string()))?
    {
        if c.status == "address" {
            continue;
        }
        lines.push(format!("{}\t{}", contact_name(&c), c.status));
    }
    Ok(lines)
}

fn find_contact(agent: &Agent, name: &str) -> Result<ConnId, CliError> {
    match agent.store().connection_by_name(name) {
        Ok(Some(c)) => Ok(c.id),
        Ok(None) => Err(CliError::Messaging(format!("no contact named {name}"))),
        Err(e) => Err(CliError::Messaging(e.to_string())),
    }
}

/// `xftp msg NAME TEXT`.
pub async fn msg(dir: Option<&Path>, name: &str, text: &str) -> Result<(), CliError> {
    let (mut agent, _) = open_agent(dir).await?;
    let id = find_contact(&agent, name)?;
    let body = chat(
        ChatEvent::MsgNew(MsgContainer::simple(MsgContent::Text {
            text: text.to_string(),
        })),
        true,
    );
    agent.send(id, &body).await.map_err(runtime_err)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    if !agent.drain_outbox(deadline).await.map_err(runtime_err)? {
        return Err(CliError::Messaging(
            "the message is saved but the router did not take it yet; it is sent the next time xftp runs"
                .into(),
        ));
    }
    Ok(())
}

/// `xftp send FILE --to NAME`: uploads as `xftp send` does, then sends the
/// file offer and the recipient description to the contact.
pub async fn send_to(
    dir: Option<&Path>,
    name: &str,
    opts: send::SendOptions,
    part_size: usize,
    progress: &Progress,
) -> Result<usize, CliError> {
    let (mut agent, _) = open_agent(dir).await?;
    let id = find_contact(&agent, name)?;
    let tmp = tempfile::tempdir_in(&opts.tmp_dir)
        .map_err(|e| CliError::io("creating a temporary directory", e))?;
    let opts = send::SendOptions {
        out_dir: tmp.path().to_path_buf(),
        recipients: 1,
        ..opts
    };
    let out = send::send_file(&opts, progress).await?;
    let descr_path = out
        .recipient_descriptions
        .first()
        .ok_or_else(|| CliError::Messaging("no recipient description was made".into()))?;
    let text = std::fs::read_to_string(descr_path)
        .map_err(|e| CliError::io(format!("reading {}", descr_path.display()), e))?;
    let file_name = opts
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let size = std::fs::metadata(&opts.file)
        .map_err(|e| CliError::io(format!("reading {}", opts.file.display()), e))?
        .len();
    let msg_id = shared_id();
    let mut container = MsgContainer::simple(MsgContent::File {
        text: String::new(),
    });
    container.file = Some(FileInvitation::xftp(&file_name, size));
    let offer = ChatMessage::new(
        SUPPORTED_CHAT_VRANGE,
        Some(msg_id.clone()),
        ChatEvent::MsgNew(container),
    )
    .encode();
    agent.send(id, &offer).await.map_err(runtime_err)?;
    let parts = file_descr_events(&msg_id, &text, part_size);
    let count = parts.len();
    for ev in parts {
        let part = ChatMessage::new(SUPPORTED_CHAT_VRANGE, Some(shared_id()), ev).encode();
        agent.send(id, &part).await.map_err(runtime_err)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    if !agent.drain_outbox(deadline).await.map_err(runtime_err)? {
        return Err(CliError::Messaging(
            "the file is uploaded and its offer saved, but the router did not take it yet; it is sent the next time xftp runs"
                .into(),
        ));
    }
    Ok(count)
}

/// A file offer whose description parts are still arriving.
struct Pending {
    conn: ConnId,
    name: String,
    size: u64,
    assembler: FileDescrAssembler,
    /// Inbox items kept open until the file is saved.
    items: Vec<smp_core::client::agent::store::InboxId>,
}

/// `xftp listen`: processes events until the timeout (forever without).
pub async fn listen(
    dir: Option<&Path>,
    timeout: Option<u64>,
    files: &Path,
    transfer: TransferOptions,
    tmp_dir: PathBuf,
    out: &mut dyn std::io::Write,
) -> Result<(), CliError> {
    let (mut agent, _) = open_agent(dir).await?;
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
    let mut pending: Vec<(Vec<u8>, Pending)> = Vec::new();
    loop {
        let Some((iid, conn, notice)) = agent.next(deadline).await.map_err(runtime_err)? else {
            return Ok(());
        };
        let who = agent
            .store()
            .connection(conn)
            .ok()
            .flatten()
            .map(|c| contact_name(&c))
            .unwrap_or_else(|| format!("#{}", conn.0));
        // Open items of a file in progress stay in the inbox until the file
        // is saved; items of a finished file are marked done with it.
        let mut keep_open = false;
        match notice {
            Notice::Connected => {
                let _ = writeln!(out, "{who} connected");
            }
            Notice::PeerInfo(_) | Notice::Received(_) | Notice::Sent { .. } => {}
            Notice::Skipped(why) => {
                let _ = writeln!(out, "{who}: a message was skipped ({why})");
            }
            Notice::Message { body, .. } => {
                for m in parse_chat_messages(&body) {
                    let Ok(m) = m else {
                        let _ = writeln!(out, "{who}: a message could not be read");
                        continue;
                    };
                    match m.event {
                        ChatEvent::MsgNew(c) => match c.file {
                            Some(f) if f.is_xftp() => {
                                let descr = f
                                    .file_descr
                                    .clone()
                                    .unwrap_or_else(smp_core::chat::FileDescr::placeholder);
                                match (
                                    m.msg_id,
                                    FileDescrAssembler::from_offer(&descr, MAX_DESCRIPTION),
                                ) {
                                    (Some(id), Ok(a)) => {
                                        keep_open = true;
                                        pending.push((
                                            id.0,
                                            Pending {
                                                conn,
                                                name: f.file_name.clone(),
                                                size: f.file_size,
                                                assembler: a,
                                                items: vec![iid],
                                            },
                                        ));
                                    }
                                    _ => {
                                        let _ =
                                            writeln!(out, "{who}: a file offer could not be read");
                                    }
                                }
                            }
                            _ => {
                                let _ = writeln!(out, "{who}: {}", c.content.display_text());
                            }
                        },
                        ChatEvent::MsgFileDescr { msg_id, file_descr } => {
                            let Some(pos) = pending
                                .iter()
                                .position(|(id, p)| id == &msg_id.0 && p.conn == conn)
                            else {
                                let _ =
                                    writeln!(out, "{who}: a file description for an unknown file");
                                continue;
                            };
                            keep_open = true;
                            let p = &mut pending[pos].1;
                            p.items.push(iid);
                            match p.assembler.push(&file_descr) {
                                Ok(true) => {
                                    let (_, p) = pending.remove(pos);
                                    let done =
                                        receive(&p, files, &transfer, &tmp_dir, &who, out).await;
                                    if let Err(e) = done {
                                        let _ = writeln!(
                                            out,
                                            "{who}: receiving {} failed: {e}",
                                            p.name
                                        );
                                    }
                                    for i in p.items {
                                        agent.done(i).map_err(runtime_err)?;
                                    }
                                    continue;
                                }
                                Ok(false) => {}
                                Err(e) => {
                                    let (_, p) = pending.remove(pos);
                                    let _ = writeln!(out, "{who}: file {} refused: {e}", p.name);
                                    for i in p.items {
                                        agent.done(i).map_err(runtime_err)?;
                                    }
                                }
                            }
                        }
                        ChatEvent::Info(_) | ChatEvent::Ok | ChatEvent::Contact(_) => {}
                        other => {
                            let _ = writeln!(out, "{who}: ({} not shown)", other.tag());
                        }
                    }
                }
            }
        }
        let _ = out.flush();
        if !keep_open {
            agent.done(iid).map_err(runtime_err)?;
        }
    }
}

async fn receive(
    p: &Pending,
    files: &Path,
    transfer: &TransferOptions,
    tmp_dir: &Path,
    who: &str,
    out: &mut dyn std::io::Write,
) -> Result<(), CliError> {
    let text = p
        .assembler
        .text()
        .ok_or_else(|| CliError::Messaging("the description is incomplete".into()))?;
    let tmp = tempfile::tempdir_in(tmp_dir)
        .map_err(|e| CliError::io("creating a temporary directory", e))?;
    let path = tmp.path().join("rcv.xftp");
    std::fs::write(&path, text).map_err(|e| CliError::io("writing the description", e))?;
    std::fs::create_dir_all(files)
        .map_err(|e| CliError::io(format!("creating {}", files.display()), e))?;
    let progress = Progress::new(crate::progress::Mode::Hidden);
    let outcome = recv::receive_file(
        &recv::RecvOptions {
            source: recv::DescriptionSource::File(path),
            out: Some(files.to_path_buf()),
            transfer: *transfer,
            resume: true,
        },
        &progress,
    )
    .await?;
    let _ = writeln!(
        out,
        "{who} sent {} ({} bytes) -> {}",
        p.name,
        outcome.size,
        outcome.path.display()
    );
    let _ = p.size;
    Ok(())
}

/// Resolves the XFTP servers for `send --to` as plain `send` does.
pub fn xftp_servers(
    list: Option<&str>,
) -> Result<Vec<smp_core::address::ServerWithAuth>, CliError> {
    servers::resolve_servers(list)
}
