//! The messaging profile: which directory holds it, its defaults, and
//! `xftp profile`.
//!
//! A profile is one directory (`--profile DIR`, else `$XFTP_PROFILE`, else
//! `~/.simplego`) holding the agent store ([`smp_core::client::agent::store`]):
//! the display name, the SMP routers new queues go to, and later the
//! connections. Only one process can use a profile at a time.

use std::path::{Path, PathBuf};

use smp_core::address::{Scheme, ServerWithAuth};
use smp_core::client::agent::store::{Profile, Store, StoreError};

use crate::error::CliError;

/// The environment variable naming the profile directory.
pub const PROFILE_ENV: &str = "XFTP_PROFILE";
/// The profile directory under `$HOME` when none is given.
pub const DEFAULT_PROFILE_DIR: &str = ".simplego";
/// The display name when the login name is unknown or unusable.
pub const FALLBACK_DISPLAY_NAME: &str = "user";
/// Display names longer than this (in characters) are refused.
pub const MAX_DISPLAY_NAME: usize = 100;

/// The profile directory: `--profile`, else `$XFTP_PROFILE` (if not
/// empty), else `~/.simplego`.
pub fn profile_dir(cli: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(d) = cli {
        return Ok(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os(PROFILE_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(DEFAULT_PROFILE_DIR))
        .ok_or(CliError::NoProfileDir)
}

/// Checks a display name as a peer will see it; returns it trimmed.
pub fn parse_display_name(name: &str) -> Result<String, CliError> {
    let bad = |why: &str| CliError::BadDisplayName(name.to_string(), why.to_string());
    let n = name.trim();
    if n.is_empty() {
        return Err(bad("it is empty"));
    }
    if n.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    // Chat clients address contacts and groups as `@name` and `#name`.
    if n.starts_with(['@', '#']) {
        return Err(bad("it must not start with '@' or '#'"));
    }
    if n.chars().count() > MAX_DISPLAY_NAME {
        return Err(bad("it is longer than 100 characters"));
    }
    Ok(n.to_string())
}

/// The login name (`$USER`, else `$LOGNAME`) if it is a valid display
/// name, else "user".
pub fn default_display_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find_map(|n| parse_display_name(&n).ok())
        .unwrap_or_else(|| FALLBACK_DISPLAY_NAME.to_string())
}

/// The enabled preset routers (`smp_core::smp::presets`): the preset
/// default router first, then the others in preset order.
pub fn default_smp_servers() -> Vec<String> {
    smp_core::smp::presets::default_addresses()
}

/// Parses an SMP router address as `-s` parses XFTP servers (a password
/// is allowed), and returns its canonical text.
pub fn parse_smp_server(s: &str) -> Result<String, CliError> {
    let a = ServerWithAuth::parse(s.trim())
        .map_err(|e| CliError::BadServer(s.to_string(), e.to_string()))?;
    if a.server.scheme() != Scheme::Smp {
        return Err(CliError::BadServer(
            s.to_string(),
            "an SMP router address starts with smp://".to_string(),
        ));
    }
    Ok(a.to_string())
}

fn store_err(dir: &Path, e: StoreError) -> CliError {
    match e {
        StoreError::Locked => CliError::ProfileInUse(dir.to_path_buf()),
        e => CliError::Store {
            dir: dir.to_path_buf(),
            source: e,
        },
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Opens the profile in `dir`, creating it with the defaults (login name,
/// enabled preset routers) on first use. The [`Store`] keeps the profile
/// locked until it is dropped.
pub fn open_or_create_profile(dir: &Path) -> Result<(Store, Profile), CliError> {
    open_profile(dir).map(|(s, p, _)| (s, p))
}

/// [`open_or_create_profile`], also telling whether it was just created.
fn open_profile(dir: &Path) -> Result<(Store, Profile, bool), CliError> {
    let mut store = Store::open(dir).map_err(|e| store_err(dir, e))?;
    if let Some(p) = store.profile().map_err(|e| store_err(dir, e))? {
        return Ok((store, p, false));
    }
    let p = Profile {
        display_name: default_display_name(),
        smp_servers: default_smp_servers(),
        created_at: now(),
    };
    store.set_profile(&p).map_err(|e| store_err(dir, e))?;
    Ok((store, p, true))
}

/// What `xftp profile` was asked to change.
#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    pub name: Option<String>,
    /// Replaces the router list when not empty.
    pub smp: Vec<String>,
}

/// The outcome of `xftp profile`.
#[derive(Debug, Clone)]
pub struct ProfileOutcome {
    pub dir: PathBuf,
    pub profile: Profile,
    pub created: bool,
}

/// `xftp profile`: validates every change before opening anything, then
/// creates the profile if needed and applies them.
pub fn update_profile(dir: &Path, changes: &ProfileChanges) -> Result<ProfileOutcome, CliError> {
    let name = changes
        .name
        .as_deref()
        .map(parse_display_name)
        .transpose()?;
    let mut smp = Vec::new();
    for s in &changes.smp {
        let a = parse_smp_server(s)?;
        if !smp.contains(&a) {
            smp.push(a);
        }
    }
    let (mut store, mut profile, created) = open_profile(dir)?;
    let before = profile.clone();
    if let Some(n) = name {
        profile.display_name = n;
    }
    if !smp.is_empty() {
        profile.smp_servers = smp;
    }
    if profile != before {
        store.set_profile(&profile).map_err(|e| store_err(dir, e))?;
    }
    Ok(ProfileOutcome {
        dir: dir.to_path_buf(),
        profile,
        created,
    })
}

/// What `xftp profile` prints: the name, then one router per line, a
/// router password shown only as present.
pub fn profile_lines(p: &Profile) -> Vec<String> {
    let mut lines = vec![format!("Display name: {}", p.display_name)];
    if p.smp_servers.is_empty() {
        lines.push("SMP routers: none".to_string());
    }
    for s in &p.smp_servers {
        let shown = match ServerWithAuth::parse(s) {
            Ok(a) if a.auth.is_some() => format!("{} (with password)", a.server),
            _ => s.clone(),
        };
        lines.push(format!("SMP router: {shown}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(parse_display_name("  Alice B ").unwrap(), "Alice B");
        for bad in ["", "   ", "a\nb", "@bob", "#group", &"x".repeat(101)] {
            assert!(
                matches!(parse_display_name(bad), Err(CliError::BadDisplayName(..))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn smp_addresses() {
        let ok = "smp://0YuTwO05YJWS8rkjn9eLJDjQhFKvIYd8d4xG8X1blIU=@smp8.simplex.im";
        assert_eq!(parse_smp_server(ok).unwrap(), ok);
        let with_pw = "smp://0YuTwO05YJWS8rkjn9eLJDjQhFKvIYd8d4xG8X1blIU=:secret@h.example";
        assert_eq!(parse_smp_server(with_pw).unwrap(), with_pw);
        let lines = profile_lines(&Profile {
            display_name: "a".into(),
            smp_servers: vec![with_pw.into()],
            created_at: 0,
        });
        assert!(!lines.join("\n").contains("secret"), "{lines:?}");
        for bad in [
            "nonsense",
            "xftp://0YuTwO05YJWS8rkjn9eLJDjQhFKvIYd8d4xG8X1blIU=@smp8.simplex.im",
            "smp://short@h",
        ] {
            assert!(
                matches!(parse_smp_server(bad), Err(CliError::BadServer(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn presets_are_enabled_smp_addresses() {
        let d = default_smp_servers();
        assert!(d[0].ends_with("@smp.simplego.dev"), "{d:?}");
        assert!(d.len() > 1);
        for a in &d {
            assert_eq!(&parse_smp_server(a).unwrap(), a);
        }
    }
}
