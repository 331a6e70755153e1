//! The operator's command line: `init`, `start`, `delete` and `-v`, with the
//! reference's options, messages and exit codes.
//!
//! `start` does everything up to the point where sockets are opened (checks,
//! banner) and then hands a [`StartConfig`] to a callback, so that this module
//! does not depend on the network server.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use smp_core::encoding::string::b64_encode;
use smp_core::file::description::FileSize;
use smp_core::tls::{KeyAlgorithm, ServerIdentity, load_fingerprint};

use crate::config::{
    HOSTNAMES_PLACEHOLDER, InitValues, ServerConfig, ServerPaths, StoreFiles, init_ini_text,
    show_ttl,
};

/// Printed by `-v` and at the top of `init`/`start` output. The reference
/// prints `v<simplexmq version> / <commit>`; we name our own build instead.
pub const VERSION_LINE: &str = concat!(
    "SimpleX XFTP server v",
    env!("CARGO_PKG_VERSION"),
    " / SimpleGo"
);

/// The reference's messages name `file-server`, a command that does not
/// exist under that name (its users have been misled by it): ours name
/// the binary that is run.
const EXECUTABLE_NAME: &str = "xftp-server";

/// Why the callback could not run the server.
pub type StartError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What `start` hands to the network server once every check has passed.
#[derive(Debug, Clone)]
pub struct StartConfig {
    pub config: ServerConfig,
    /// Configuration and log directories; the store log, statistics and
    /// metrics file names are methods of [`ServerPaths`].
    pub paths: ServerPaths,
    /// `server.crt` + `ca.crt` + `server.key` from the configuration
    /// directory, already checked against the stored fingerprint.
    pub identity: ServerIdentity,
    /// `[WEB] cert` + `key`, loaded: browser mode for SNI clients.
    pub web_credential: Option<crate::web::WebCredential>,
}

#[derive(Debug, Parser)]
#[command(
    name = "xftp-server",
    before_help = VERSION_LINE,
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Show version
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Initialize server - creates the configuration and log directories and configuration files
    Init(InitOptions),
    /// Start server
    Start(StartOptions),
    /// Delete configuration and log files
    Delete,
    #[command(flatten)]
    Docs(smp_core::cli::Docs),
}

/// Certificate signature algorithm (`-a`), spelled as in the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignAlgorithm(pub KeyAlgorithm);

fn parse_sign_algorithm(s: &str) -> Result<SignAlgorithm, String> {
    match s {
        "ED448" => Ok(SignAlgorithm(KeyAlgorithm::Ed448)),
        "ED25519" => Ok(SignAlgorithm(KeyAlgorithm::Ed25519)),
        _ => Err("expected ED25519 or ED448".into()),
    }
}

fn parse_quota(s: &str) -> Result<FileSize, String> {
    s.parse::<FileSize>().map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct InitOptions {
    /// Disable store log for persistence (enabled by default)
    #[arg(long = "disable-store-log", conflicts_with = "store_log")]
    pub disable_store_log: bool,
    /// Enable store log for persistence (DEPRECATED, enabled by default)
    #[arg(short = 'l', long = "store-log")]
    pub store_log: bool,
    /// Signature algorithm used for TLS certificates: ED25519, ED448
    #[arg(short = 'a', long = "sign-algorithm", value_name = "ALG", default_value = "ED448", value_parser = parse_sign_algorithm)]
    pub sign_algorithm: SignAlgorithm,
    /// Server IP address, used as Common Name for TLS online certificate if FQDN is not supplied
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub ip: String,
    /// Server FQDN used as Common Name for TLS online certificate
    #[arg(short = 'n', long, value_name = "FQDN")]
    pub fqdn: Option<String>,
    /// Path to the directory to store files
    #[arg(short = 'p', long = "path", value_name = "PATH")]
    pub path: PathBuf,
    /// File storage quota (e.g. 100gb)
    #[arg(short = 'q', long = "quota", value_name = "QUOTA", value_parser = parse_quota)]
    pub quota: FileSize,
    /// Directory to store generated static site with server information
    #[arg(long = "web-path", value_name = "PATH")]
    pub web_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfirmMigrations {
    Up,
    Down,
}

#[derive(Debug, Args)]
pub struct StartOptions {
    /// Confirm PostgreSQL database migration: up, down (accepted for
    /// compatibility; this server has no database mode)
    #[arg(long = "confirm-migrations", value_name = "CONFIRM_MIGRATIONS")]
    pub confirm_migrations: Option<ConfirmMigrations>,
}

/// The clap command with the resolved directories in the help texts, as the
/// reference shows them.
pub fn command(paths: &ServerPaths) -> clap::Command {
    let ini = paths.ini_file();
    Cli::command()
        .mut_subcommand("init", |c| {
            c.about(format!(
                "Initialize server - creates {} and {} directories and configuration files",
                paths.cfg_dir.display(),
                paths.log_dir.display()
            ))
        })
        .mut_subcommand("start", |c| {
            c.about(format!("Start server (configuration: {})", ini.display()))
        })
}

/// Parses the arguments (the first one is the program name).
pub fn parse_args<I, T>(paths: &ServerPaths, args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command(paths).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// Prints a clap outcome; help exits 0, usage errors 1 (as optparse-applicative).
pub fn clap_exit(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}

/// A failed command: the message and where the reference prints it.
#[derive(Debug)]
struct Exit {
    message: String,
    stdout: bool,
}

impl Exit {
    /// Reference `exitError`: printed on stdout.
    fn stdout(message: impl Into<String>) -> Self {
        Exit {
            message: message.into(),
            stdout: true,
        }
    }
    fn stderr(message: impl Into<String>) -> Self {
        Exit {
            message: message.into(),
            stdout: false,
        }
    }
}

/// Writes a line to stdout; a closed stdout must not turn into a panic.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn warn(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// Runs a parsed command line. `start` is called only by the `start`
/// command, after its checks and banner; its error ends the process with 1.
pub fn run<F>(paths: &ServerPaths, cli: Cli, start: F) -> ExitCode
where
    F: FnOnce(StartConfig) -> Result<(), StartError>,
{
    if cli.version {
        say(VERSION_LINE);
        return ExitCode::SUCCESS;
    }
    let result = match cli.command {
        Some(Command::Init(opts)) => init(paths, &opts),
        Some(Command::Start(_)) => prepare_start(paths)
            .and_then(|cfg| start(cfg).map_err(|e| Exit::stderr(format!("Error: {e}")))),
        Some(Command::Delete) => delete(paths, &mut io::stdin().lock()),
        // The directories in force appear in the pages, as in --help.
        Some(Command::Docs(d)) => d
            .run(command(paths))
            .map_err(|e| Exit::stderr(format!("Error: {e}"))),
        None => {
            let _ = command(paths).print_help();
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.stdout {
                say(&e.message);
            } else {
                warn(&e.message);
            }
            ExitCode::FAILURE
        }
    }
}

fn server_address(fingerprint: &str, host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("xftp://{fingerprint}@{host}:{p}"),
        None => format!("xftp://{fingerprint}@{host}"),
    }
}

fn service_info(fingerprint: &str, address: &str) -> [String; 3] {
    [
        VERSION_LINE.to_string(),
        format!("Fingerprint: {fingerprint}"),
        format!("Server address: {address}"),
    ]
}

fn ca_key_warning(paths: &ServerPaths) -> String {
    format!(
        "----------\n\
         You should store CA private key securely and delete it from the server.\n\
         If server TLS credential is compromised this key can be used to sign a new one, \
         keeping the same server identity and established connections.\n\
         CA private key location:\n\
         {}\n\
         ----------",
        paths.ca_key_file().display()
    )
}

/// Refuses a directory that has anything in it.
///
/// The reference empties both directories before `init`. With a mistyped
/// path or environment variable that deletes unrelated data without a
/// prompt, so we refuse instead and let the operator decide.
fn require_empty_dir(dir: &Path) -> Result<(), Exit> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Exit::stdout(format!(
            "Error: cannot use directory {}: {e}.",
            dir.display()
        ))),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Exit::stdout(format!(
                "Error: directory {} is not empty.\n\
                 The reference server would delete its contents on init; this one refuses.\n\
                 Move the files away (or run `{EXECUTABLE_NAME} delete`) and try again.",
                dir.display()
            ))),
        },
    }
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Exit> {
    let fail = |e: io::Error| Exit::stderr(format!("Error: cannot write {}: {e}.", path.display()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    f.write_all(contents).map_err(fail)?;
    f.sync_all().map_err(fail)
}

fn init(paths: &ServerPaths, opts: &InitOptions) -> Result<(), Exit> {
    let ini = paths.ini_file();
    if ini.is_file() {
        return Err(Exit::stdout(format!(
            "Error: server is already initialized ({} exists).\nRun `{EXECUTABLE_NAME} start`.",
            ini.display()
        )));
    }
    require_empty_dir(&paths.cfg_dir)?;
    require_empty_dir(&paths.log_dir)?;
    for dir in [&paths.cfg_dir, &paths.log_dir] {
        fs::DirBuilder::new()
            .recursive(true)
            // Keys, passwords and the store log: the owner's alone.
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Exit::stderr(format!(
                    "Error: cannot create directory {}: {e}.",
                    dir.display()
                ))
            })?;
    }
    // The files directory: created 0700 like the others (the reference
    // leaves it to the operator, and `start` then fails); one that exists
    // is the operator's and is kept as it is.
    match fs::metadata(&opts.path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Exit::stdout(format!(
                "Error: {} is not a directory: choose another path for the files (-p).",
                opts.path.display()
            )));
        }
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&opts.path)
            .map_err(|e| {
                Exit::stderr(format!(
                    "Error: cannot create the files directory {}: {e}.
Create it with `mkdir -m 0700 -p {}` and run init again.",
                    opts.path.display(),
                    opts.path.display()
                ))
            })?,
    }
    let cn = opts.fqdn.as_deref().unwrap_or(&opts.ip);
    let identity =
        ServerIdentity::init(&paths.cfg_dir, opts.sign_algorithm.0, cn).map_err(|e| {
            Exit::stderr(format!(
                "Error: cannot create the server certificates: {e}."
            ))
        })?;
    let fingerprint = identity.fingerprint_b64();
    write_new_file(
        &paths.fingerprint_file(),
        format!("{fingerprint}\n").as_bytes(),
        0o644,
    )?;
    let host = match (&opts.fqdn, opts.ip.as_str()) {
        (Some(fqdn), _) => fqdn.clone(),
        (None, "127.0.0.1") => HOSTNAMES_PLACEHOLDER.to_string(),
        (None, ip) => ip.to_string(),
    };
    let text = init_ini_text(&InitValues {
        enable_store_log: !opts.disable_store_log,
        host: host.clone(),
        files_path: opts.path.clone(),
        quota: opts.quota,
        web_static_path: opts
            .web_path
            .clone()
            .unwrap_or_else(|| paths.default_web_static_path()),
        cfg_dir: paths.cfg_dir.clone(),
    });
    // It can hold the upload and control-port passwords.
    write_new_file(&ini, text.as_bytes(), 0o600)?;
    say(&format!(
        "Server initialized, you can modify configuration in {}.\nRun `{EXECUTABLE_NAME} start` to start server.",
        ini.display()
    ));
    say(&ca_key_warning(paths));
    let address = server_address(&fingerprint, &host, None);
    for line in service_info(&fingerprint, &address) {
        say(&line);
    }
    // The apps add a server by scanning its address; with the host still
    // to be filled in there is nothing to scan.
    if host != HOSTNAMES_PLACEHOLDER {
        smp_core::qr::print_on_terminal(&address);
    }
    Ok(())
}

/// Reads and checks everything `start` needs, then prints the banner.
fn prepare_start(paths: &ServerPaths) -> Result<StartConfig, Exit> {
    let ini = paths.ini_file();
    if !ini.is_file() {
        return Err(Exit::stdout(format!(
            "Error: server is not initialized ({} does not exist).\nRun `{EXECUTABLE_NAME} init`.",
            ini.display()
        )));
    }
    let bytes = fs::read(&ini)
        .map_err(|e| Exit::stderr(format!("Error: cannot read {}: {e}.", ini.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Exit::stderr(format!("Error: {} is not UTF-8 text.", ini.display())))?;
    let config = ServerConfig::parse(&text)
        .map_err(|e| Exit::stderr(format!("Error: {e} (in {}).", ini.display())))?;

    let fingerprint = check_saved_fingerprint(paths)?;

    if config.store_files == StoreFiles::Database {
        return Err(Exit::stdout(
            "Error: server binary is compiled without support for PostgreSQL database.\n\
             This server keeps file records in memory and in the store log: set `store_files = memory`.",
        ));
    }
    // Reference `loadServerCredential`: `invalid credential`, exit 1.
    let web_credential = match config.web.credentials() {
        None => None,
        Some((cert, key)) => Some(
            crate::web::WebCredential::load(cert, key)
                .map_err(|e| Exit::stdout(format!("invalid credential: {e}")))?,
        ),
    };
    let identity = ServerIdentity::load(&paths.cfg_dir).map_err(|e| {
        Exit::stderr(format!(
            "Error: invalid credential in {}: {e}.",
            paths.cfg_dir.display()
        ))
    })?;

    for line in start_banner(&fingerprint, &config, paths) {
        say(&line);
    }
    for line in start_warnings(&config) {
        warn(&line);
    }
    Ok(StartConfig {
        config,
        paths: paths.clone(),
        identity,
        web_credential,
    })
}

/// `checkSavedFingerprint`: the first line of `fingerprint` must be the
/// base64url SHA-256 of `ca.crt`, so a replaced CA is noticed.
fn check_saved_fingerprint(paths: &ServerPaths) -> Result<String, Exit> {
    let file = paths.fingerprint_file();
    let saved = fs::read(&file)
        .map_err(|e| Exit::stderr(format!("Error: cannot read {}: {e}.", file.display())))?;
    let saved_line = saved.split(|&b| b == b'\n').next().unwrap_or_default();
    let ca = paths.ca_crt_file();
    let actual = load_fingerprint(&ca).map_err(|e| {
        Exit::stderr(format!(
            "Error: cannot read the CA certificate {}: {e}.",
            ca.display()
        ))
    })?;
    let actual = b64_encode(&actual);
    if saved_line != actual.as_bytes() {
        return Err(Exit::stdout("Stored fingerprint is invalid."));
    }
    Ok(actual)
}

/// The lines `start` prints before listening, in the reference's order.
pub fn start_banner(fingerprint: &str, config: &ServerConfig, paths: &ServerPaths) -> Vec<String> {
    let port = (config.port != crate::config::DEFAULT_PORT).then_some(config.port);
    let mut lines: Vec<String> = service_info(
        fingerprint,
        &server_address(fingerprint, config.address_host(), port),
    )
    .into();
    match &config.information.source_code {
        Some(url) => lines.push(format!("Server source code: {url}")),
        None => {
            lines.push("Warning: server source code is not specified.".into());
            lines.push("Add 'source_code' property to [INFORMATION] section of INI file.".into());
        }
    }
    lines.push(if config.store_log {
        format!("Store log: {}", paths.store_log_file().display())
    } else {
        "Store log disabled.".into()
    });
    lines.push(format!(
        "expiring files after {}",
        show_ttl(config.file_ttl_secs())
    ));
    lines.push(match config.inactive_clients {
        Some(c) => format!(
            "expiring clients inactive for {} seconds every {} seconds",
            c.ttl, c.check_interval
        ),
        None => "not expiring inactive clients".into(),
    });
    lines.push(
        match (config.allow_new_files, &config.create_password) {
            (false, _) => "Uploading new files NOT allowed.",
            (true, Some(_)) => "Uploading new files requires password.",
            (true, None) => "Uploading new files allowed.",
        }
        .into(),
    );
    lines.push(format!("Listening on port {}...", config.port));
    lines
}

/// Settings this server accepts but does not act on; said once at start
/// (on stderr, where the reference logs) rather than ignored silently.
pub fn start_warnings(config: &ServerConfig) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(p) = &config.web.static_path {
        w.push(if config.web.credentials().is_some() {
            format!(
                "Warning: [WEB] static_path = {} is served as it is to SNI GET requests: this server does not generate the server information site.",
                p.display()
            )
        } else {
            format!(
                "Warning: [WEB] static_path = {} is ignored: this server does not generate the server information site, and without [WEB] cert and key there are no SNI GET requests to serve it to.",
                p.display()
            )
        });
    }
    if config.web.http.is_some() || config.web.https.is_some() {
        w.push(
            "Warning: [WEB] http/https are ignored: this server has no embedded web server.".into(),
        );
    }
    if !config.files_path.is_dir() {
        w.push(format!(
            "Warning: [FILES] path {} is not a directory; uploads will fail until it is created.",
            config.files_path.display()
        ));
    }
    w
}

/// `delete`: only the exact answer `Y` deletes.
fn delete(paths: &ServerPaths, input: &mut dyn BufRead) -> Result<(), Exit> {
    {
        let mut out = io::stdout().lock();
        let _ = write!(
            out,
            "WARNING: deleting the server will make all queues inaccessible, because the server identity (certificate fingerprint) will change.\n\
             THIS CANNOT BE UNDONE!\n\
             Continue (Y/n): "
        );
        let _ = out.flush();
    }
    let mut answer = String::new();
    // End of input or unreadable input counts as "no".
    let _ = input.read_line(&mut answer);
    if answer.strip_suffix('\n').unwrap_or(&answer) != "Y" {
        return Err(Exit::stdout("Server NOT deleted"));
    }
    for dir in [&paths.cfg_dir, &paths.log_dir] {
        if dir.is_dir() {
            fs::remove_dir_all(dir).map_err(|e| {
                Exit::stderr(format!("Error: cannot delete {}: {e}.", dir.display()))
            })?;
        }
    }
    say("Deleted configuration and log files");
    Ok(())
}
