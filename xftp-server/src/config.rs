//! `file-server.ini`: the parser, the typed server configuration and the text
//! written by `init`.
//!
//! The parser reproduces `ini` 0.4.1 (the version the reference pins), quirks
//! included, so that a file means the same thing to both servers: an
//! operator's existing file must keep working unchanged, and a file that the
//! reference would silently truncate is truncated here too.

use std::path::{Path, PathBuf};

use smp_core::file::description::FileSize;
use smp_core::xftp::command::BasicAuth;

pub use smp_core::ini::{Ini, read_hs_int};

/// Name of the configuration file inside the configuration directory.
pub const INI_FILE: &str = "file-server.ini";
/// Reference default for `[STORE_LOG] expire_files_hours`.
pub const DEFAULT_EXPIRE_FILES_HOURS: i64 = 48;
/// Reference default for `[TRANSPORT] port`, and the port clients assume.
pub const DEFAULT_PORT: u16 = 443;
/// Reference defaults for `[INACTIVE_CLIENTS]` (only written commented out).
pub const DEFAULT_INACTIVE_TTL: i64 = 21600;
pub const DEFAULT_INACTIVE_CHECK_INTERVAL: i64 = 3600;
/// Host printed in the address when `[TRANSPORT] host` is absent.
pub const HOSTNAMES_PLACEHOLDER: &str = "<hostnames>";

// ---------------------------------------------------------------------------
// Typed configuration
// ---------------------------------------------------------------------------

/// Why `file-server.ini` cannot be used; the messages are the reference's
/// where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no key {key} in section {section}")]
    MissingKey {
        section: &'static str,
        key: &'static str,
    },
    #[error("invalid INI setting {key}: {value}")]
    InvalidSetting { key: &'static str, value: String },
    /// The value is not echoed: it is a password.
    #[error(
        "invalid INI setting {key}: a password must be non-empty printable ASCII without spaces, '@', ':' or '/'"
    )]
    InvalidPassword { key: &'static str },
    #[error("Invalid store_files value: {0}")]
    InvalidStoreFiles(String),
    #[error("Use ISO3166 2-letter code for {0}")]
    InvalidCountry(&'static str),
}

/// `[STORE_LOG] store_files`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFiles {
    Memory,
    /// PostgreSQL; parsed so that it can be refused with a clear message.
    Database,
}

/// `[INACTIVE_CLIENTS]` when `disconnect = on`; seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InactiveClients {
    pub ttl: i64,
    pub check_interval: i64,
}

/// `[WEB]`: kept so that the server can act on it or refuse it explicitly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    pub static_path: Option<PathBuf>,
    /// Unparsable ports are absent, as in the reference (`readMaybe`).
    pub http: Option<u16>,
    pub https: Option<u16>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl WebConfig {
    /// The reference enables SNI/browser mode only when both are set.
    pub fn credentials(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

/// `[INFORMATION]`, raw texts. The reference validates them only when
/// `source_code` is set, because only then is the information page built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Information {
    pub source_code: Option<String>,
    /// Every other key of the section that the reference reads, in file order
    /// of [`Information::KEYS`].
    pub fields: Vec<(&'static str, String)>,
}

impl Information {
    pub const KEYS: &'static [&'static str] = &[
        "usage_conditions",
        "condition_amendments",
        "server_country",
        "operator",
        "operator_country",
        "website",
        "admin_simplex",
        "admin_email",
        "admin_pgp",
        "admin_pgp_fingerprint",
        "complaints_simplex",
        "complaints_email",
        "complaints_pgp",
        "complaints_pgp_fingerprint",
        "hosting",
        "hosting_country",
        "hosting_type",
    ];

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything the server reads from `file-server.ini`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub information: Information,
    /// `[STORE_LOG] enable`; absent means off (only `init` writes `on`).
    pub store_log: bool,
    pub store_files: StoreFiles,
    /// `[STORE_LOG] expire_files_hours`; expiry cannot be disabled.
    pub expire_files_hours: i64,
    pub log_stats: bool,
    /// Seconds; absent or unparsable means no metrics file (reference `readMaybe`).
    pub prometheus_interval: Option<u64>,
    /// Our addition (the reference has no such key and ignores it): serve
    /// the same metrics over HTTP at `http://127.0.0.1:<port>/metrics`.
    pub prometheus_port: Option<u16>,
    pub allow_new_files: bool,
    pub create_password: Option<BasicAuth>,
    pub control_port_admin_password: Option<BasicAuth>,
    pub control_port_user_password: Option<BasicAuth>,
    /// Only printed in the server address; never used for binding.
    pub host: Option<String>,
    pub port: u16,
    pub log_tls_errors: bool,
    pub control_port: Option<u16>,
    /// Chunk directory; neither `init` nor `start` creates it.
    pub files_path: PathBuf,
    pub storage_quota: Option<FileSize>,
    pub inactive_clients: Option<InactiveClients>,
    pub web: WebConfig,
    /// `[LIMITS]`: ours; the reference has no such section and ignores it.
    pub limits: LimitsConfig,
}

/// `[LIMITS]`: bounds on what clients may hold, whatever they send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    pub streams_per_connection: u32,
    pub concurrent_uploads: usize,
    pub upload_stall_secs: u64,
    pub max_connections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            streams_per_connection: crate::server::DEFAULT_STREAMS_PER_CONNECTION,
            concurrent_uploads: crate::handler::DEFAULT_CONCURRENT_UPLOADS,
            upload_stall_secs: crate::handler::DEFAULT_UPLOAD_STALL.as_secs(),
            max_connections: crate::server::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// A positive whole number under `[LIMITS] key`, or `default`.
fn limit(ini: &Ini, key: &'static str, default: u64) -> Result<u64, ConfigError> {
    ini.positive("LIMITS", key)
        .map(|n| n.map_or(default, u64::from))
        .map_err(|v| invalid(key, v))
}

impl ServerConfig {
    /// Reads and validates every key the reference reads, with its defaults.
    pub fn from_ini(ini: &Ini) -> Result<Self, ConfigError> {
        let information = read_information(ini)?;
        let store_files = match ini.get("STORE_LOG", "store_files").unwrap_or("memory") {
            "memory" => StoreFiles::Memory,
            "database" => StoreFiles::Database,
            other => return Err(ConfigError::InvalidStoreFiles(other.to_string())),
        };
        let expire_files_hours = match ini.get("STORE_LOG", "expire_files_hours") {
            None => DEFAULT_EXPIRE_FILES_HOURS,
            Some(v) => read_hs_int(v)
                .filter(|h| h.checked_mul(3600).is_some())
                .ok_or_else(|| invalid("expire_files_hours", v))?,
        };
        let inactive_clients = if on_off(ini, "INACTIVE_CLIENTS", "disconnect")? == Some(true) {
            Some(InactiveClients {
                ttl: strict_int(ini, "INACTIVE_CLIENTS", "ttl")?,
                check_interval: strict_int(ini, "INACTIVE_CLIENTS", "check_interval")?,
            })
        } else {
            None
        };
        let port_text = strict(ini, "TRANSPORT", "port")?;
        let port = parse_port(port_text).ok_or_else(|| invalid("port", port_text))?;
        let control_port = ini
            .get("TRANSPORT", "control_port")
            .map(|v| parse_port(v).ok_or_else(|| invalid("control_port", v)))
            .transpose()?;
        let storage_quota = ini
            .get("FILES", "storage_quota")
            .map(|v| {
                v.parse::<FileSize>()
                    .map_err(|_| invalid("storage_quota", v))
            })
            .transpose()?;
        let d = LimitsConfig::default();
        let limits = LimitsConfig {
            streams_per_connection: limit(
                ini,
                "streams_per_connection",
                d.streams_per_connection.into(),
            )? as u32,
            concurrent_uploads: limit(ini, "concurrent_uploads", d.concurrent_uploads as u64)?
                as usize,
            upload_stall_secs: limit(ini, "upload_stall_timeout", d.upload_stall_secs)?,
            max_connections: limit(ini, "max_connections", d.max_connections as u64)? as usize,
        };
        Ok(ServerConfig {
            information,
            store_log: on_off(ini, "STORE_LOG", "enable")? == Some(true),
            store_files,
            expire_files_hours,
            log_stats: on_off(ini, "STORE_LOG", "log_stats")? == Some(true),
            prometheus_interval: ini
                .get("STORE_LOG", "prometheus_interval")
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok()),
            prometheus_port: match ini.get("STORE_LOG", "prometheus_port") {
                None => None,
                Some(v) => Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| invalid("prometheus_port", v))?,
                ),
            },
            allow_new_files: on_off(ini, "AUTH", "new_files")?.unwrap_or(true),
            create_password: password(ini, "create_password")?,
            control_port_admin_password: password(ini, "control_port_admin_password")?,
            control_port_user_password: password(ini, "control_port_user_password")?,
            host: ini.get("TRANSPORT", "host").map(str::to_string),
            port,
            log_tls_errors: on_off(ini, "TRANSPORT", "log_tls_errors")?.unwrap_or(false),
            control_port,
            files_path: PathBuf::from(strict(ini, "FILES", "path")?),
            storage_quota,
            inactive_clients,
            web: WebConfig {
                static_path: ini.get("WEB", "static_path").map(PathBuf::from),
                http: ini.get("WEB", "http").and_then(parse_port),
                https: ini.get("WEB", "https").and_then(parse_port),
                cert: ini.get("WEB", "cert").map(PathBuf::from),
                key: ini.get("WEB", "key").map(PathBuf::from),
            },
            limits,
        })
    }

    /// Parses INI text and reads the configuration from it.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::from_ini(&Ini::parse(text))
    }

    /// File time-to-live in seconds (validated not to overflow).
    pub fn file_ttl_secs(&self) -> i64 {
        self.expire_files_hours.saturating_mul(3600)
    }

    /// The host shown in the server address.
    pub fn address_host(&self) -> &str {
        self.host.as_deref().unwrap_or(HOSTNAMES_PLACEHOLDER)
    }
}

/// Decimal digits only: Rust's `u16::from_str` would also take a `+`.
fn parse_port(v: &str) -> Option<u16> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn invalid(key: &'static str, value: &str) -> ConfigError {
    ConfigError::InvalidSetting {
        key,
        value: value.to_string(),
    }
}

fn strict<'a>(
    ini: &'a Ini,
    section: &'static str,
    key: &'static str,
) -> Result<&'a str, ConfigError> {
    ini.get(section, key)
        .ok_or(ConfigError::MissingKey { section, key })
}

fn strict_int(ini: &Ini, section: &'static str, key: &'static str) -> Result<i64, ConfigError> {
    let v = strict(ini, section, key)?;
    read_hs_int(v).ok_or_else(|| invalid(key, v))
}

/// `iniOnOff`: only the exact words `on` and `off`.
fn on_off(ini: &Ini, section: &str, key: &'static str) -> Result<Option<bool>, ConfigError> {
    match ini.get(section, key) {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(v) => Err(invalid(key, v)),
    }
}

/// `strDecode` of `BasicAuth` from the UTF-8 bytes of the value; empty is refused.
fn password(ini: &Ini, key: &'static str) -> Result<Option<BasicAuth>, ConfigError> {
    match ini.get("AUTH", key) {
        None => Ok(None),
        Some(v) => BasicAuth::new(v.as_bytes())
            .filter(|_| !v.is_empty())
            .map(Some)
            .ok_or(ConfigError::InvalidPassword { key }),
    }
}

fn read_information(ini: &Ini) -> Result<Information, ConfigError> {
    let info = Information {
        source_code: ini.get("INFORMATION", "source_code").map(str::to_string),
        fields: Information::KEYS
            .iter()
            .filter_map(|&k| ini.get("INFORMATION", k).map(|v| (k, v.to_string())))
            .collect(),
    };
    if info.source_code.is_some() {
        for key in ["server_country", "operator_country", "hosting_country"] {
            let valid =
                |v: &str| v.chars().count() == 2 && v.chars().all(|c| c.is_ascii_alphabetic());
            if info.get(key).is_some_and(|v| !valid(v)) {
                return Err(ConfigError::InvalidCountry(key));
            }
        }
        if let Some(v) = info.get("hosting_type") {
            // strP takes the text up to the first space; strDecode then
            // requires the rest to be empty.
            if !matches!(v, "virtual" | "dedicated" | "colocation" | "owned") {
                return Err(invalid("hosting_type", v));
            }
        }
    }
    Ok(info)
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// `showTTL`: seconds in the largest unit that divides them exactly
/// (the default 48 hours prints as `2 days`).
pub fn show_ttl(secs: i64) -> String {
    let (mins, s) = (secs.div_euclid(60), secs.rem_euclid(60));
    let (hours, m) = (mins.div_euclid(60), mins.rem_euclid(60));
    let (days, h) = (hours.div_euclid(24), hours.rem_euclid(24));
    if s != 0 {
        format!("{secs} seconds")
    } else if m != 0 {
        format!("{mins} minutes")
    } else if h != 0 {
        format!("{hours} hours")
    } else {
        format!("{days} days")
    }
}

/// Values `init` puts into the INI it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitValues {
    pub enable_store_log: bool,
    /// `--fqdn`, else `--ip`, else [`HOSTNAMES_PLACEHOLDER`] for 127.0.0.1.
    pub host: String,
    pub files_path: PathBuf,
    pub quota: FileSize,
    pub web_static_path: PathBuf,
    /// Only for the commented `[WEB] cert`/`key` examples.
    pub cfg_dir: PathBuf,
}

fn on_off_text(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The INI written by `init`: the reference's sections, keys and defaults
/// (so either server reads it unchanged); the comments are ours.
pub fn init_ini_text(v: &InitValues) -> String {
    let web_crt = v.cfg_dir.join("web.crt");
    let web_key = v.cfg_dir.join("web.key");
    format!(
        "\
[INFORMATION]
# The server is licensed under AGPLv3: if you change its source code, you must
# offer the changed source to the people who use the server, and put its
# address here (it is shown on the server information page).
# source_code = https://github.com/simplex-chat/simplexmq

# Optional public details about the server; leave out any of them.
# Country codes are ISO 3166 two-letter codes.
# server_country = XX
# operator = name of the organisation or person running the server
# operator_country = XX
# website =
# admin_simplex = SimpleX contact address
# admin_email =
# complaints_simplex = SimpleX contact address
# complaints_email =
# hosting = name of the hosting provider
# hosting_country = XX
# hosting_type = virtual

[STORE_LOG]
# File records live in memory. With the store log on, every change is also
# appended to a log file that is replayed (and compacted) at start, so that
# files survive a restart.
enable = {store_log}

# Where file records are kept: `memory` or `database` (PostgreSQL).
store_files = memory

# PostgreSQL settings, used only with `store_files = database`.
# db_connection = postgresql://xftp@/xftp_server_store
# db_schema = xftp_server
# db_pool_size = 10

# With a database, also append its changes to the store log.
# db_store_log = off

# Delete files this many hours after they were uploaded.
expire_files_hours = {expire}

log_stats = off

# Seconds between writes of the Prometheus metrics file.
# prometheus_interval = 60

# Serve the same metrics at http://127.0.0.1:<port>/metrics (loopback only;
# not a reference key, the reference ignores it).
# prometheus_port = 9100

[AUTH]
# `off` refuses all new uploads while existing files can still be downloaded,
# e.g. while the server is being retired.
new_files = on

# Require this password for uploads. Senders put it into the server address,
# xftp://fingerprint:password@host; recipients never need it.
# Allowed: printable ASCII except spaces, '@', ':' and '/'.
# create_password = your-upload-password

# control_port_admin_password =
# control_port_user_password =

[TRANSPORT]
# Only used to print the server address; the server listens on all addresses.
host = {host}
port = {port}
log_tls_errors = off
# control_port = 5226

[FILES]
path = {files_path}
storage_quota = {quota}

[INACTIVE_CLIENTS]
# Disconnect clients idle for `ttl` seconds, checking every `check_interval` seconds.
disconnect = off
# ttl = {ttl}
# check_interval = {check}

[WEB]
# Directory for the generated server information site.
static_path = {static_path}

# Serve that site over HTTP on this port.
# http = 8000

# A certificate and key for browsers connecting to the XFTP port.
# cert = {web_crt}
# key = {web_key}
",
        store_log = on_off_text(v.enable_store_log),
        expire = DEFAULT_EXPIRE_FILES_HOURS,
        host = v.host,
        port = DEFAULT_PORT,
        files_path = v.files_path.display(),
        quota = v.quota,
        ttl = DEFAULT_INACTIVE_TTL,
        check = DEFAULT_INACTIVE_CHECK_INTERVAL,
        static_path = v.web_static_path.display(),
        web_crt = web_crt.display(),
        web_key = web_key.display(),
    )
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// The configuration and log directories and the files the reference keeps in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPaths {
    pub cfg_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl ServerPaths {
    pub const CFG_ENV: &'static str = "XFTP_SERVER_CFG_PATH";
    pub const LOG_ENV: &'static str = "XFTP_SERVER_LOG_PATH";
    pub const DEFAULT_CFG_DIR: &'static str = "/etc/opt/simplex-xftp";
    pub const DEFAULT_LOG_DIR: &'static str = "/var/opt/simplex-xftp";

    /// From the environment; an empty variable counts as unset (`getEnvPath`).
    pub fn from_env() -> Self {
        let get = |name: &str, default: &str| match std::env::var_os(name) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => PathBuf::from(default),
        };
        ServerPaths {
            cfg_dir: get(Self::CFG_ENV, Self::DEFAULT_CFG_DIR),
            log_dir: get(Self::LOG_ENV, Self::DEFAULT_LOG_DIR),
        }
    }

    pub fn ini_file(&self) -> PathBuf {
        self.cfg_dir.join(INI_FILE)
    }
    pub fn ca_key_file(&self) -> PathBuf {
        self.cfg_dir.join("ca.key")
    }
    pub fn ca_crt_file(&self) -> PathBuf {
        self.cfg_dir.join("ca.crt")
    }
    pub fn fingerprint_file(&self) -> PathBuf {
        self.cfg_dir.join("fingerprint")
    }
    pub fn store_log_file(&self) -> PathBuf {
        self.log_dir.join("file-server-store.log")
    }
    /// Daily CSV statistics (only with `log_stats = on`).
    pub fn stats_daily_file(&self) -> PathBuf {
        self.log_dir.join("file-server-stats.daily.log")
    }
    /// Statistics backup restored at start (only with `log_stats = on`).
    pub fn stats_backup_file(&self) -> PathBuf {
        self.log_dir.join("file-server-stats.log")
    }
    pub fn metrics_file(&self) -> PathBuf {
        self.log_dir.join("xftp-server-metrics.txt")
    }
    pub fn default_web_static_path(&self) -> PathBuf {
        self.log_dir.join("www")
    }
}
