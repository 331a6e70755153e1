//! The operator's command line: `init`, `start`, `delete`, with the
//! reference's option names, directories and address format.

use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use smp_core::encoding::string::b64_encode;
use smp_core::tls::{KeyAlgorithm, ServerIdentity, load_fingerprint};

use crate::config::{DEFAULT_PORT, INI_FILE, InitValues, ServerConfig, ServerPaths, init_ini_text};

pub const VERSION_LINE: &str = concat!("SimpleGo SMP router v", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Parser)]
#[command(name = "smp-server", before_help = VERSION_LINE, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the configuration, the TLS identity and the directories.
    Init(InitOptions),
    /// Run the router.
    Start,
    /// Delete the configuration and all data (asks first).
    Delete {
        /// Do not ask.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    #[command(flatten)]
    Docs(smp_core::cli::Docs),
}

/// The clap command with the directories in force (the environment
/// variables honoured) in its help texts.
pub fn command(paths: &ServerPaths) -> clap::Command {
    let (cfg, log) = (paths.cfg_dir.display(), paths.log_dir.display());
    Cli::command()
        .mut_subcommand("init", |c| {
            c.about(format!(
                "Create the configuration ({cfg}), the TLS identity and the data directory ({log})."
            ))
        })
        .mut_subcommand("start", |c| {
            c.about(format!(
                "Run the router (configuration: {}).",
                paths.cfg(INI_FILE).display()
            ))
        })
        .mut_subcommand("delete", |c| {
            c.about(format!(
                "Delete {cfg} and {log}: the configuration and all data (asks first)."
            ))
        })
}

/// Parses the arguments (the first one is the program name).
pub fn parse_args<I, T>(paths: &ServerPaths, args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command(paths).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "UPPER")]
pub enum SignAlgorithm {
    Ed25519,
    Ed448,
}

#[derive(Debug, Args)]
pub struct InitOptions {
    /// Keep queues in memory only (no store log).
    #[arg(long = "disable-store-log")]
    pub disable_store_log: bool,
    /// Write daily statistics.
    #[arg(short = 's', long = "daily-stats")]
    pub daily_stats: bool,
    #[arg(
        short = 'a',
        long = "sign-algorithm",
        value_enum,
        default_value = "ED25519"
    )]
    pub sign_algorithm: SignAlgorithm,
    /// The address clients use, when no domain name is given.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: String,
    /// The router's domain name (also the certificate's CN).
    #[arg(short = 'n', long)]
    pub fqdn: Option<String>,
    /// Password for creating queues (default: a random one).
    #[arg(long, conflicts_with = "no_password")]
    pub password: Option<String>,
    /// Anyone may create queues.
    #[arg(long = "no-password")]
    pub no_password: bool,
    /// Non-interactive (accepted for compatibility; init never asks).
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// The address clients configure: `smp://fp[:password]@host[:port]`.
pub fn server_address(fp: &str, password: Option<&str>, host: &str, port: u16) -> String {
    let auth = password.map(|p| format!(":{p}")).unwrap_or_default();
    if port == DEFAULT_PORT {
        format!("smp://{fp}{auth}@{host}")
    } else {
        format!("smp://{fp}{auth}@{host}:{port}")
    }
}

/// Runs the command; `start` is called with the checked configuration.
pub fn run<F>(paths: &ServerPaths, cli: Cli, start: F) -> ExitCode
where
    F: FnOnce(StartConfig) -> Result<(), String>,
{
    let r = match cli.command {
        Command::Init(o) => init(paths, &o),
        Command::Start => prepare_start(paths).and_then(start),
        Command::Delete { yes } => delete(paths, yes, &mut io::stdin().lock()),
        Command::Docs(d) => d.run(command(paths)).map_err(|e| e.to_string()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn empty_or_missing(dir: &Path) -> Result<(), String> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot use {}: {e}", dir.display())),
        Ok(mut it) => match it.next() {
            None => Ok(()),
            // The reference empties it; a mistyped path would lose data, so we refuse.
            Some(_) => Err(format!(
                "{} is not empty; move its files away or run `smp-server delete` first",
                dir.display()
            )),
        },
    }
}

fn create_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn init(paths: &ServerPaths, o: &InitOptions) -> Result<(), String> {
    let ini = paths.cfg(INI_FILE);
    if ini.exists() {
        return Err(format!(
            "the router is already initialized ({} exists); run `smp-server start`",
            ini.display()
        ));
    }
    empty_or_missing(&paths.cfg_dir)?;
    empty_or_missing(&paths.log_dir)?;
    for d in [&paths.cfg_dir, &paths.log_dir] {
        fs::DirBuilder::new()
            .recursive(true)
            // The config holds keys and passwords, the logs queue secrets and
            // message bodies: nobody else lists or opens them.
            .mode(0o700)
            .create(d)
            .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let alg = match o.sign_algorithm {
        SignAlgorithm::Ed25519 => KeyAlgorithm::Ed25519,
        SignAlgorithm::Ed448 => KeyAlgorithm::Ed448,
    };
    let host = o.fqdn.clone().unwrap_or_else(|| o.ip.clone());
    let identity = ServerIdentity::init(&paths.cfg_dir, alg, &host)
        .map_err(|e| format!("cannot create the TLS identity: {e}"))?;
    let fp = identity.fingerprint_b64();
    create_file(&paths.cfg("fingerprint"), &format!("{fp}\n"), 0o644)?;
    let password = match (&o.password, o.no_password) {
        (Some(p), _) => {
            smp_core::smp::command::BasicAuth::new(p.as_bytes())
                .ok_or("the password must be printable ASCII without spaces, '@', ':' or '/'")?;
            Some(p.clone())
        }
        (None, true) => None,
        (None, false) => Some(b64_encode(&smp_core::crypto::random_array::<32>())),
    };
    let text = init_ini_text(&InitValues {
        enable_store_log: !o.disable_store_log,
        log_stats: o.daily_stats,
        host: host.clone(),
        password: password.clone(),
    });
    // The file may hold the password: readable by the owner only.
    create_file(&ini, &text, 0o600)?;
    say(&format!(
        "Router initialized; the configuration is {}.",
        ini.display()
    ));
    say(&format!(
        "Keep the CA key ({}) somewhere safe, off this machine: with it you can issue a new\n\
         TLS certificate later and keep the same router identity.",
        paths.cfg("ca.key").display()
    ));
    say(&format!("Fingerprint: {fp}"));
    let address = server_address(&fp, password.as_deref(), &host, DEFAULT_PORT);
    say(&format!("Server address: {address}"));
    // The apps add a router by scanning its address.
    smp_core::qr::print_on_terminal(&address);
    Ok(())
}

/// What `start` hands to the runner.
pub struct StartConfig {
    pub config: ServerConfig,
    pub paths: ServerPaths,
    pub identity: ServerIdentity,
}

fn prepare_start(paths: &ServerPaths) -> Result<StartConfig, String> {
    let ini = paths.cfg(INI_FILE);
    let text = fs::read_to_string(&ini).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!(
                "the router is not initialized ({} is missing); run `smp-server init`",
                ini.display()
            )
        } else {
            format!("cannot read {}: {e}", ini.display())
        }
    })?;
    let config = ServerConfig::parse(&text).map_err(|e| format!("{e} (in {})", ini.display()))?;
    let saved = fs::read_to_string(paths.cfg("fingerprint"))
        .map_err(|e| format!("cannot read the fingerprint file: {e}"))?;
    let actual =
        load_fingerprint(&paths.cfg("ca.crt")).map_err(|e| format!("cannot read ca.crt: {e}"))?;
    let actual = b64_encode(&actual);
    if saved.lines().next() != Some(actual.as_str()) {
        return Err("the stored fingerprint does not match ca.crt".into());
    }
    let identity = ServerIdentity::load(&paths.cfg_dir)
        .map_err(|e| format!("invalid TLS identity in {}: {e}", paths.cfg_dir.display()))?;
    let host = config.host.clone().unwrap_or_else(|| "<hostnames>".into());
    say(VERSION_LINE);
    say(&format!("Fingerprint: {actual}"));
    say(&format!(
        "Server address: {}",
        server_address(
            &actual,
            config
                .create_password
                .as_ref()
                .and_then(|p| std::str::from_utf8(p).ok()),
            &host,
            config.ports.first().copied().unwrap_or(DEFAULT_PORT)
        )
    ));
    let store = if config.enable_store_log {
        format!(
            "store log {}",
            paths.log(crate::persist::STORE_LOG_FILE).display()
        )
    } else {
        "memory only (no store log)".into()
    };
    say(&format!("Queues: {store}"));
    say(&format!(
        "Messages: {}, expire after {} days",
        if config.restore_messages {
            "journaled"
        } else {
            "memory only"
        },
        config.expire_messages_days
    ));
    say(&format!(
        "Creating new queues {}",
        match (config.new_queues, &config.create_password) {
            (false, _) => "is disabled",
            (true, Some(_)) => "requires the password",
            (true, None) => "is allowed to everyone",
        }
    ));
    for c in identity.chain() {
        if !(256..=65535).contains(&c.len()) {
            let _ = writeln!(
                io::stderr().lock(),
                "Warning: a certificate of {} bytes: SimpleGo devices find certificates by their \
                 2-byte DER length and need 256..65535 bytes.",
                c.len()
            );
        }
    }
    if config.log_stats {
        let _ = writeln!(
            io::stderr().lock(),
            "Warning: log_stats is on, but daily CSV statistics are not written by this router; \
             counters are in smp-server-stats.log and the metrics."
        );
    }
    if config.control_port.is_some() {
        let _ = writeln!(
            io::stderr().lock(),
            "Warning: control_port is set, but this router has no control port; ignored."
        );
    }
    Ok(StartConfig {
        config,
        paths: paths.clone(),
        identity,
    })
}

fn delete(paths: &ServerPaths, yes: bool, input: &mut dyn BufRead) -> Result<(), String> {
    if !yes {
        say(&format!(
            "WARNING: this deletes the router's identity, configuration and data in {} and {}.\n\
             Clients will lose every queue here. Continue (y/N)?",
            paths.cfg_dir.display(),
            paths.log_dir.display()
        ));
        let mut line = String::new();
        let _ = input.read_line(&mut line);
        if line.trim() != "y" {
            say("Not deleted.");
            return Ok(());
        }
    }
    for d in [&paths.cfg_dir, &paths.log_dir] {
        match fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot delete {}: {e}", d.display())),
        }
    }
    say("Deleted.");
    Ok(())
}
