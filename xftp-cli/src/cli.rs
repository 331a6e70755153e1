//! The `xftp` command line: argument parsing, output and exit codes around
//! the library. [`main`] is the whole program; `src/main.rs` only calls it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::pool::TransferOptions;
use crate::progress::{Progress, pad_item};
use crate::recv::{DescriptionSource, RecvOptions, load_description, receive_file};
use crate::send::{SendOptions, send_file};
use crate::{CLIENT_VERSION, CliError, messaging, profile, servers};
use clap::{Parser, Subcommand};
use smp_core::file::description::{FileParty, FileSize};

#[derive(Parser)]
#[command(
    name = "xftp",
    about = "Send and receive files via SimpleX XFTP servers",
    disable_version_flag = true,
    after_help = "Servers: -s \"srv1;srv2\", else $XFTP_SERVERS (same syntax), else the file \
$XFTP_CONFIG or $XDG_CONFIG_HOME/xftp/servers (~/.config/xftp/servers; one server per line, \
'#' comments), else the SimpleX preset servers.\n\nExit codes: 0 ok, 1 other failure, \
3 server unreachable, 4 server fingerprint mismatch, 5 file expired or deleted (AUTH), \
6 corrupted data (digest/size/auth tag), 7 wrong description party, 8 no space left, \
9 file larger than 1gb, 10 invalid description or link.\n\nProfile (messaging commands): \
--profile DIR, else $XFTP_PROFILE, else ~/.simplego."
)]
struct Cli {
    /// Print the client version
    #[arg(short = 'v', long = "version")]
    version: bool,
    /// Profile directory for the messaging commands (default: $XFTP_PROFILE, else ~/.simplego)
    #[arg(long = "profile", value_name = "DIR", global = true)]
    profile: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `K:M`, both at least 1, at most 256 together.
fn parse_parity(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?}: expected K:M, e.g. 4:2 (M parity chunks per K data chunks)");
    let (k, m) = s.split_once(':').ok_or_else(bad)?;
    let (k, m) = (k.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    smp_core::file::description::Parity::check_scheme(k, m).map_err(|e| e.to_string())?;
    Ok((k, m))
}

#[derive(Subcommand)]
enum Command {
    /// Send file
    Send {
        /// File to send
        file: PathBuf,
        /// Directory to save file descriptions (default: current directory)
        dir: Option<PathBuf>,
        /// Number of recipients
        #[arg(short = 'n', value_name = "COUNT", default_value_t = 1)]
        recipients: usize,
        /// Semicolon-separated list of XFTP server(s) to use (each server can have more than one hostname)
        #[arg(short = 's', long = "servers", value_name = "SERVER")]
        servers: Option<String>,
        /// Keep each chunk on this many different servers (recv uses any one)
        #[arg(long = "replicas", value_name = "R", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        replicas: u16,
        /// Add M Reed–Solomon parity chunks to every K data chunks, each on another
        /// server, so that any K of a group's K+M chunks rebuild it
        #[arg(long = "parity", value_name = "K:M", value_parser = parse_parity)]
        parity: Option<(u16, u16)>,
        /// Start afresh even if an interrupted send of this file left its state
        /// (DIR/NAME.xftp-send-state) behind
        #[arg(long = "no-resume")]
        no_resume: bool,
        /// Send the file to this contact over SMP instead of writing descriptions
        #[arg(long = "to", value_name = "NAME")]
        to: Option<String>,
        /// Characters per x.msg.file.descr part with --to (the apps use 14000;
        /// smaller values exercise multi-part descriptions in tests)
        #[arg(long = "descr-part-size", hide = true, default_value_t = smp_core::chat::XFTP_DESCR_PART_SIZE)]
        descr_part_size: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Receive file
    Recv {
        /// File description file or web link (https://…#…)
        description: String,
        /// Directory to save the file (default: ~/Downloads), or the file path
        dir: Option<PathBuf>,
        /// Delete the file description after the file is received, without asking
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        /// Download the whole file again even if an interrupted receive of it
        /// kept its part, and keep nothing if this one fails
        #[arg(long = "no-resume")]
        no_resume: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Delete file from server(s)
    Del {
        /// Sender file description file (snd.xftp.private)
        description: PathBuf,
        /// Delete the file description after the file is deleted, without asking
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Show file description
    Info {
        /// File description file
        description: PathBuf,
    },
    /// Show the messaging profile, creating it on first use, or change it
    #[command(
        after_help = "The profile is created on first use with your login name and the \
enabled preset SMP routers. --smp replaces the whole router list; give it once per router.\n\
Only one xftp process can use a profile at a time."
    )]
    Profile {
        /// Set the display name peers see
        #[arg(long = "name", value_name = "NAME")]
        name: Option<String>,
        /// SMP router for new queues (smp://KEYHASH@HOST[:PORT]); repeat for several
        #[arg(long = "smp", value_name = "ADDR")]
        smp: Vec<String>,
    },
    /// Print a one-time invitation link for a new contact
    #[command(
        after_help = "Give the link to the other person (any SimpleX app or xftp). \
The connection completes when both sides run `xftp listen` (or open their app)."
    )]
    Invite {
        /// SMP router for this connection's queue (default: the profile's first)
        #[arg(long = "smp", value_name = "ADDR")]
        smp: Option<String>,
        /// Print the full link instead of a short one (for apps older than v6.4)
        #[arg(long)]
        full: bool,
    },
    /// Print the profile's long-term contact address, creating it on first use
    #[command(
        after_help = "Anyone with the address can ask to connect; `xftp listen` accepts \
every request."
    )]
    Address {
        /// SMP router for the address queue (default: the profile's first)
        #[arg(long = "smp", value_name = "ADDR")]
        smp: Option<String>,
        /// Print the full link instead of a short one (for apps older than v6.4);
        /// an address made this way keeps a full link
        #[arg(long)]
        full: bool,
    },
    /// Join an invitation link or a contact address
    Connect {
        /// A short link (https://HOST/i#… or /a#…) or a full one (simplex:/invitation#…,
        /// simplex:/contact#…, or their https://simplex.chat form)
        link: String,
        /// Local name of the contact (default: the display name the peer sends)
        #[arg(long = "name", value_name = "NAME")]
        name: Option<String>,
        /// SMP router for this connection's queue (default: the profile's first)
        #[arg(long = "smp", value_name = "ADDR")]
        smp: Option<String>,
    },
    /// List contacts and their connection state
    Contacts,
    /// Send a text message to a contact
    Msg {
        /// The contact's name (as `xftp contacts` shows it)
        name: String,
        /// The message
        text: String,
    },
    /// Process events: complete connections, print messages, download offered files
    Listen {
        /// Stop after this many seconds (default: run until interrupted)
        #[arg(long = "timeout", value_name = "SECS")]
        timeout: Option<u64>,
        /// Where offered files are saved (default: the current directory)
        #[arg(long = "files", value_name = "DIR")]
        files: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Generate file with random data
    #[command(hide = true)]
    Rand {
        /// File path
        file: PathBuf,
        /// File size (bytes/kb/mb/gb)
        size: FileSize,
    },
    #[command(flatten)]
    Docs(smp_core::cli::Docs),
}

#[derive(clap::Args)]
struct Common {
    /// Number of attempts for each network request
    #[arg(short = 'r', long = "retry", value_name = "RETRY", default_value_t = 3)]
    retry: u32,
    /// Directory for temporary files (default: system temp directory)
    #[arg(long = "tmp", value_name = "TMP")]
    tmp: Option<PathBuf>,
    /// Verbose output: progress on separate lines and debug logs on stderr
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
}

impl Common {
    fn transfer(&self) -> TransferOptions {
        TransferOptions {
            retries: self.retry,
            ..TransferOptions::default()
        }
    }
    fn tmp_dir(&self) -> PathBuf {
        self.tmp.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// Runs `xftp` with `args` (the first is the program name).
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // The reference exits 1 on option errors, 0 for --help.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if cli.version {
        println!("{CLIENT_VERSION}");
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        let _ = <Cli as clap::CommandFactory>::command().print_help();
        return ExitCode::from(1);
    };
    if let Command::Docs(docs) = &command {
        return match docs.run(<Cli as clap::CommandFactory>::command()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let verbose = match &command {
        Command::Send { common, .. }
        | Command::Recv { common, .. }
        | Command::Del { common, .. } => common.verbose,
        _ => false,
    };
    if verbose {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "debug,h2=info,hyper=info,rustls=info".into()),
            )
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    report(rt.block_on(run(command, verbose, cli.profile)))
}

/// Prints an error with its causes and hint; the exit code for a result.
fn report(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            let msg = e.to_string();
            eprintln!("\nError: {msg}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                let cause = s.to_string();
                if !msg.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                }
                src = s.source();
            }
            if let Some(h) = e.hint() {
                eprintln!("Hint: {h}");
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// `xftp profile`.
fn run_profile(
    dir: Option<&std::path::Path>,
    name: Option<String>,
    smp: Vec<String>,
) -> Result<(), CliError> {
    let dir = profile::profile_dir(dir)?;
    let out = profile::update_profile(&dir, &profile::ProfileChanges { name, smp })?;
    let mut o = std::io::stdout().lock();
    if out.created {
        let _ = writeln!(o, "Profile created: {}", out.dir.display());
    }
    for l in profile::profile_lines(&out.profile) {
        let _ = writeln!(o, "{l}");
    }
    Ok(())
}

async fn run(
    command: Command,
    verbose: bool,
    profile_dir: Option<PathBuf>,
) -> Result<(), CliError> {
    let progress = Progress::for_terminal(verbose);
    match command {
        Command::Send {
            file,
            dir,
            recipients,
            servers: list,
            replicas,
            parity,
            no_resume,
            to,
            descr_part_size,
            common,
        } => {
            if let Some(name) = to {
                let opts = SendOptions {
                    file,
                    out_dir: PathBuf::from("."),
                    recipients: 1,
                    servers: servers::resolve_servers(list.as_deref())?,
                    replicas: usize::from(replicas),
                    parity,
                    resume: !no_resume,
                    tmp_dir: common.tmp_dir(),
                    transfer: common.transfer(),
                };
                let part = descr_part_size.clamp(100, smp_core::chat::XFTP_DESCR_PART_SIZE);
                let parts =
                    messaging::send_to(profile_dir.as_deref(), &name, opts, part, &progress)
                        .await?;
                progress.end_items();
                println!("File sent to {name} (description in {parts} parts)");
                return Ok(());
            }
            let opts = SendOptions {
                file,
                out_dir: dir.unwrap_or_else(|| PathBuf::from(".")),
                recipients,
                servers: servers::resolve_servers(list.as_deref())?,
                replicas: usize::from(replicas),
                parity,
                resume: !no_resume,
                tmp_dir: common.tmp_dir(),
                transfer: common.transfer(),
            };
            let out = send_file(&opts, &progress).await?;
            progress.end_items();
            let mut o = std::io::stdout().lock();
            let _ = writeln!(
                o,
                "Sender file description: {}",
                out.sender_description.display()
            );
            let _ = writeln!(o, "Pass file descriptions to the recipient(s):");
            for p in &out.recipient_descriptions {
                let _ = writeln!(o, "{}", p.display());
            }
            let _ = writeln!(o, "\nWeb link:\n{}", out.web_link);
            Ok(())
        }
        Command::Recv {
            description,
            dir,
            yes,
            no_resume,
            common,
        } => {
            let source = DescriptionSource::parse(&description);
            let opts = RecvOptions {
                source: source.clone(),
                out: dir,
                transfer: common.transfer(),
                resume: !no_resume,
            };
            let out = receive_file(&opts, &progress).await?;
            for (server, e) in &out.failed_servers {
                eprintln!("Server failed: {server}: {e}; its chunks came from other replicas");
            }
            for e in &out.ack_failures {
                eprintln!("Warning: the file was received, but {e}");
            }
            print_item(
                &progress,
                &format!("File downloaded: {}", out.path.display()),
            );
            if let DescriptionSource::File(path) = source {
                remove_description(&path, yes)?;
            }
            Ok(())
        }
        Command::Del {
            description,
            yes,
            common,
        } => {
            let source = DescriptionSource::File(description.clone());
            crate::del::delete_file(&source, common.transfer()).await?;
            print_item(&progress, "File deleted!");
            remove_description(&description, yes)
        }
        Command::Info { description } => {
            let source = DescriptionSource::File(description);
            let desc = match load_description(&source, FileParty::Recipient) {
                Err(CliError::WrongParty { .. }) => load_description(&source, FileParty::Sender)?,
                other => other?,
            };
            for l in crate::info::info_lines(&desc) {
                println!("{l}");
            }
            Ok(())
        }
        Command::Profile { name, smp } => run_profile(profile_dir.as_deref(), name, smp),
        Command::Invite { smp, full } => {
            let link = messaging::invite(profile_dir.as_deref(), smp.as_deref(), full).await?;
            println!("{link}");
            smp_core::qr::print_on_terminal(&link);
            Ok(())
        }
        Command::Address { smp, full } => {
            let link = messaging::address(profile_dir.as_deref(), smp.as_deref(), full).await?;
            println!("{link}");
            smp_core::qr::print_on_terminal(&link);
            Ok(())
        }
        Command::Connect { link, name, smp } => {
            messaging::connect(
                profile_dir.as_deref(),
                &link,
                name.as_deref(),
                smp.as_deref(),
            )
            .await?;
            println!("Connection requested; run `xftp listen` to complete it");
            Ok(())
        }
        Command::Contacts => {
            for l in messaging::contacts(profile_dir.as_deref()).await? {
                println!("{l}");
            }
            Ok(())
        }
        Command::Msg { name, text } => messaging::msg(profile_dir.as_deref(), &name, &text).await,
        Command::Listen {
            timeout,
            files,
            common,
        } => {
            let mut out = std::io::stdout();
            messaging::listen(
                profile_dir.as_deref(),
                timeout,
                &files.unwrap_or_else(|| PathBuf::from(".")),
                common.transfer(),
                common.tmp_dir(),
                &mut out,
            )
            .await
        }
        Command::Rand { file, size } => {
            random_file(&file, size.0)?;
            println!("File created: {}", file.display());
            Ok(())
        }
        // Answered in main, without a runtime.
        Command::Docs(_) => Ok(()),
    }
}

/// A final item printed as the reference does (`printNoNewLine`), also
/// when progress bars were shown.
fn print_item(progress: &Progress, text: &str) {
    let mut o = std::io::stdout().lock();
    match progress.mode() {
        crate::progress::Mode::Plain { newline: true } => {
            let _ = writeln!(o, "{}", pad_item(text));
        }
        _ => {
            let _ = write!(o, "{}", pad_item(text));
        }
    }
    let _ = o.flush();
}

/// The reference's step after `recv` and `del`: delete the description
/// (`-y`), or ask.
fn remove_description(path: &std::path::Path, yes: bool) -> Result<(), CliError> {
    let delete = yes || {
        let mut o = std::io::stdout().lock();
        loop {
            let _ = write!(
                o,
                "\nFile description {} can't be used again. Delete it (Y/n): ",
                path.display()
            );
            let _ = o.flush();
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                // End of input: keep the description.
                Ok(0) | Err(_) => {
                    let _ = writeln!(o);
                    break false;
                }
                Ok(_) => match line.trim() {
                    "" | "y" | "Y" => break true,
                    "n" | "N" => break false,
                    _ => continue,
                },
            }
        }
    };
    if delete {
        std::fs::remove_file(path)
            .map_err(|e| CliError::io(format!("deleting {}", path.display()), e))?;
        println!("\nFile description {} is deleted.", path.display());
    }
    Ok(())
}

/// `xftp rand`: random bytes in 1 MiB pieces.
fn random_file(path: &std::path::Path, size: u64) -> Result<(), CliError> {
    let io = |e| CliError::io(format!("writing {}", path.display()), e);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        smp_core::crypto::random_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).map_err(io)?;
        left -= n as u64;
    }
    f.flush().map_err(io)?;
    Ok(())
}
