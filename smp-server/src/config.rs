//! `smp-server.ini`: the typed configuration read with the reference's INI
//! semantics ([`smp_core::ini`]), its directories, and the text `init` writes.
//! Section and key names are the reference's, so an operator's existing file
//! keeps its meaning.

use std::path::PathBuf;

use smp_core::ini::{Ini, read_hs_int};
use zeroize::Zeroizing;

pub const INI_FILE: &str = "smp-server.ini";
pub const DEFAULT_PORT: u16 = 5223;
pub const DEFAULT_MSG_EXPIRE_DAYS: i64 = 21;

/// Where the router keeps its files (`SMP_SERVER_CFG_PATH`,
/// `SMP_SERVER_LOG_PATH`, defaults as the reference's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPaths {
    pub cfg_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl ServerPaths {
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(d), PathBuf::from)
        };
        Self {
            cfg_dir: var("SMP_SERVER_CFG_PATH", "/etc/opt/simplex"),
            log_dir: var("SMP_SERVER_LOG_PATH", "/var/opt/simplex"),
        }
    }
    pub fn cfg(&self, name: &str) -> PathBuf {
        self.cfg_dir.join(name)
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.log_dir.join(name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The reference's `strictIni`: a required key is missing.
    #[error("no key \"{key}\" in section \"{section}\"")]
    Missing {
        section: &'static str,
        key: &'static str,
    },
    #[error("invalid value {value:?} of \"{key}\"")]
    Invalid { key: &'static str, value: String },
    #[error(
        "store_queues = database needs PostgreSQL, which this router does not have: use `store_queues = memory` with the store log"
    )]
    Database,
    #[error(
        "store_messages = journal is the reference's directory store, which this router does not read: export the messages with the reference (`smp-server journal export`) and set `store_messages = memory`"
    )]
    Journal,
}

/// The settings the router uses, as read from the file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: Option<String>,
    pub ports: Vec<u16>,
    pub enable_store_log: bool,
    /// Messages persisted (journal, restored at start).
    pub restore_messages: bool,
    pub expire_messages_days: i64,
    pub expire_messages_on_start: bool,
    pub new_queues: bool,
    pub create_password: Option<Zeroizing<Vec<u8>>>,
    pub log_stats: bool,
    pub prometheus_interval: Option<i64>,
    /// Our addition: serve the metrics over HTTP on 127.0.0.1:<port>.
    pub prometheus_port: Option<u16>,
    pub control_port: Option<u16>,
    /// `[INACTIVE_CLIENTS]` ttl when `disconnect = on`.
    pub inactive_ttl: Option<std::time::Duration>,
    /// `[LIMITS] max_connections` (ours; the reference has no such key).
    pub max_connections: usize,
}

/// Default `[LIMITS] max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;

fn on_off(ini: &Ini, section: &str, key: &'static str) -> Result<Option<bool>, ConfigError> {
    match ini.get(section, key) {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(v) => Err(ConfigError::Invalid {
            key,
            value: v.into(),
        }),
    }
}

fn int(ini: &Ini, section: &str, key: &'static str) -> Result<Option<i64>, ConfigError> {
    ini.get(section, key)
        .map(|v| {
            read_hs_int(v).ok_or_else(|| ConfigError::Invalid {
                key,
                value: v.into(),
            })
        })
        .transpose()
}

fn port(v: &str, key: &'static str) -> Result<u16, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::Invalid {
        key,
        value: v.into(),
    })
}

impl ServerConfig {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let ini = Ini::parse(text);
        let store = "STORE_LOG";
        let enable_store_log = on_off(&ini, store, "enable")?.unwrap_or(true);
        match ini.get(store, "store_queues") {
            None | Some("memory") => {}
            Some("database") => return Err(ConfigError::Database),
            Some(v) => {
                return Err(ConfigError::Invalid {
                    key: "store_queues",
                    value: v.into(),
                });
            }
        }
        match ini.get(store, "store_messages") {
            None | Some("memory") => {}
            Some("journal") | Some("database") => return Err(ConfigError::Journal),
            Some(v) => {
                return Err(ConfigError::Invalid {
                    key: "store_messages",
                    value: v.into(),
                });
            }
        }
        let ports = ini
            .get("TRANSPORT", "port")
            .ok_or(ConfigError::Missing {
                section: "TRANSPORT",
                key: "port",
            })?
            .split(',')
            .map(|p| port(p, "port"))
            .collect::<Result<Vec<_>, _>>()?;
        let create_password = match ini.get("AUTH", "create_password") {
            None => None,
            Some(p) => match smp_core::smp::command::BasicAuth::new(p.as_bytes()) {
                Some(_) => Some(Zeroizing::new(p.as_bytes().to_vec())),
                None => {
                    return Err(ConfigError::Invalid {
                        key: "create_password",
                        value: "<hidden>".into(),
                    });
                }
            },
        };
        let inactive_ttl = if on_off(&ini, "INACTIVE_CLIENTS", "disconnect")?.unwrap_or(false) {
            let ttl = int(&ini, "INACTIVE_CLIENTS", "ttl")?.ok_or(ConfigError::Missing {
                section: "INACTIVE_CLIENTS",
                key: "ttl",
            })?;
            Some(std::time::Duration::from_secs(ttl.max(1) as u64))
        } else {
            None
        };
        let max_connections = ini
            .positive("LIMITS", "max_connections")
            .map_err(|v| ConfigError::Invalid {
                key: "max_connections",
                value: v.into(),
            })?
            .map_or(DEFAULT_MAX_CONNECTIONS, |n| n as usize);
        Ok(Self {
            inactive_ttl,
            max_connections,
            host: ini.get("TRANSPORT", "host").map(str::to_string),
            ports,
            enable_store_log,
            restore_messages: on_off(&ini, store, "restore_messages")?.unwrap_or(enable_store_log),
            expire_messages_days: int(&ini, store, "expire_messages_days")?
                .unwrap_or(DEFAULT_MSG_EXPIRE_DAYS),
            expire_messages_on_start: on_off(&ini, store, "expire_messages_on_start")?
                .unwrap_or(true),
            new_queues: on_off(&ini, "AUTH", "new_queues")?.unwrap_or(true),
            create_password,
            log_stats: on_off(&ini, store, "log_stats")?.unwrap_or(false),
            prometheus_interval: int(&ini, store, "prometheus_interval")?,
            prometheus_port: ini
                .get(store, "prometheus_port")
                .map(|v| port(v, "prometheus_port"))
                .transpose()?,
            control_port: ini
                .get("TRANSPORT", "control_port")
                .map(|v| port(v, "control_port"))
                .transpose()?,
        })
    }
}

/// What `init` puts into the file.
pub struct InitValues {
    pub enable_store_log: bool,
    pub log_stats: bool,
    pub host: String,
    pub password: Option<String>,
}

/// The file `init` writes: the reference's sections and keys with our own
/// comments. Options this router does not implement are left commented out.
pub fn init_ini_text(v: &InitValues) -> String {
    let on = |b: bool| if b { "on" } else { "off" };
    let mut s = String::new();
    s.push_str(
        "[INFORMATION]\n\
         # The AGPLv3 license asks you to publish any change you make to the router's\n\
         # source code; put the address of your source here if you changed it.\n\
         # source_code = https://github.com/saschadaemgen/SimpleGo\n\n",
    );
    s.push_str(
        "[STORE_LOG]\n# Keep queue records in an append-only log, compacted at every start.\n",
    );
    s.push_str(&format!("enable = {}\n\n", on(v.enable_store_log)));
    s.push_str(
        "# Queues live in memory (with the log above); PostgreSQL is not supported.\n\
         store_queues = memory\n\n\
         # Messages live in memory; with restore_messages every change is also\n\
         # appended to smp-server-messages.log, so a crash loses no accepted message.\n\
         store_messages = memory\n",
    );
    s.push_str(&format!(
        "restore_messages = {}\n\n",
        on(v.enable_store_log)
    ));
    s.push_str(&format!(
        "# Undelivered messages are removed after this many days.\n\
         expire_messages_days = {DEFAULT_MSG_EXPIRE_DAYS}\n\
         expire_messages_on_start = on\n\n"
    ));
    s.push_str(&format!(
        "# Daily statistics file.\nlog_stats = {}\n\n\
         # Rewrite smp-server-metrics.txt (Prometheus text) every N seconds.\n\
         # prometheus_interval = 60\n\
         # Also serve those metrics at http://127.0.0.1:<port>/metrics.\n\
         # prometheus_port = 9090\n\n",
        on(v.log_stats)
    ));
    s.push_str(
        "[AUTH]\n\
         # Turn off to stop new queues from being created (e.g. before retiring the router).\n\
         new_queues = on\n\n\
         # Password for creating queues and for using this router as a proxy. Clients put\n\
         # it into the address: smp://fingerprint:password@host. Share it only with the\n\
         # people who may create queues here; senders never need it.\n",
    );
    match &v.password {
        Some(p) => s.push_str(&format!("create_password = {p}\n\n")),
        None => {
            s.push_str("# create_password = <printable ASCII without spaces, '@', ':' or '/'>\n\n")
        }
    }
    s.push_str(&format!(
        "[TRANSPORT]\n\
         # Only used to print the router's address.\n\
         host = {}\n\
         # One or more ports, comma-separated.\n\
         port = {DEFAULT_PORT},443\n\
         log_tls_errors = off\n\
         websockets = off\n",
        v.host
    ));
    s.push('\n');
    s.push_str(
        "[INACTIVE_CLIENTS]\n\
         # Connections with no subscriptions and no traffic are closed after ttl seconds.\n\
         disconnect = on\n\
         ttl = 21600\n\
         check_interval = 3600\n",
    );
    s
}
