//! Which servers to use, and which chunk goes to which server.
//!
//! Servers come from, in order of precedence: `-s "srv1;srv2"`, the
//! `XFTP_SERVERS` environment variable (same syntax), the config file
//! `$XFTP_CONFIG` or `$XDG_CONFIG_HOME/xftp/servers` (`~/.config/xftp/servers`):
//! one server per line, `#` starts a comment line), else the reference's presets.

use std::path::PathBuf;

use smp_core::address::ServerWithAuth;
use smp_core::crypto::random_bytes;

use crate::error::CliError;

/// The reference's `defaultXFTPServers` (simplexmq Presets.hs).
pub const PRESET_SERVERS: [&str; 6] = [
    "xftp://da1aH3nOT-9G8lV7bWamhxpDYdJ1xmW7j3JpGaDR5Ug=@xftp1.simplex.im,blisztokwh6alt5oem45f2eksm2xdowxszmhjesntcyolmhutoon7sid.onion",
    "xftp://5vog2Imy1ExJB_7zDZrkV1KDWi96jYFyy9CL6fndBVw=@xftp2.simplex.im,jk6jybnel5hin2am5omd7g3hyvb4tfkyl7ea4vx5ldi7gpvz5ogqtcqd.onion",
    "xftp://PYa32DdYNFWi0uZZOprWQoQpIk5qyjRJ3EF7bVpbsn8=@xftp3.simplex.im,pqhchr4bpkzef5wra4hnmzvppn5j5mjrpzkh5ixx6mhylnxxd6lmwnad.onion",
    "xftp://k_GgQl40UZVV0Y4BX9ZTyMVqX5ZewcLW0waQIl7AYDE=@xftp4.simplex.im,q2lrjgiyo2efyweksavwxh3dlsrxetaxjztde2x5nateugrtrwzvmdid.onion",
    "xftp://-bIo6o8wuVc4wpZkZD3tH-rCeYaeER_0lz1ffQcSJDs=@xftp5.simplex.im,2kikdbdhlrluburwt6q6rnoxvezcm2ifx2hj463jlunkeftlzm7hf3qd.onion",
    "xftp://6nSvtY9pJn6PXWTAIMNl95E1Kk1vD7FM2TeOA64CFLg=@xftp6.simplex.im,tg3fmu6houq7vfqlsipm2qqzhtpgxesnuydqozx3khojxydhs53sbbyd.onion",
];

/// The environment variable holding a `;`-separated server list.
pub const SERVERS_ENV: &str = "XFTP_SERVERS";
/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "XFTP_CONFIG";

/// Parses a `;`-separated list (the reference's `-s` syntax); each server
/// may carry `:password` basic auth.
pub fn parse_server_list(list: &str) -> Result<Vec<ServerWithAuth>, CliError> {
    let servers = list
        .split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with('#'))
        .map(|s| ServerWithAuth::parse(s).map_err(|e| CliError::BadServer(s.into(), e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(CliError::NoServers);
    }
    Ok(servers)
}

/// The config file path: `$XFTP_CONFIG`, else `$XDG_CONFIG_HOME/xftp/servers`,
/// else `~/.config/xftp/servers`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CONFIG_ENV) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("xftp").join("servers"))
}

/// The servers to send to: `-s` first, then the environment, then the
/// config file, then the presets.
pub fn resolve_servers(cli: Option<&str>) -> Result<Vec<ServerWithAuth>, CliError> {
    if let Some(list) = cli {
        return parse_server_list(list);
    }
    if let Ok(list) = std::env::var(SERVERS_ENV)
        && !list.trim().is_empty()
    {
        return parse_server_list(&list);
    }
    if let Some(path) = config_path() {
        match std::fs::read_to_string(&path) {
            Ok(text) => return parse_server_list(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::io(format!("reading {}", path.display()), e)),
        }
    }
    parse_server_list(&PRESET_SERVERS.join(";"))
}

fn random_below(n: usize) -> usize {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// Assigns each of `chunks` chunks a server index in `0..servers`.
///
/// The servers are visited in a random order, round-robin: each server gets
/// `chunks / servers` or one more, so with two or more servers no single
/// server holds every chunk of a multi-chunk file (the reference picks a
/// server uniformly at random per chunk, which can put them all on one).
pub fn plan_chunks(chunks: usize, servers: usize) -> Vec<usize> {
    let order = shuffled(servers);
    (0..chunks).map(|i| order[i % servers]).collect()
}

fn shuffled(servers: usize) -> Vec<usize> {
    assert!(servers > 0, "no servers to plan for");
    let mut order: Vec<usize> = (0..servers).collect();
    for i in (1..servers).rev() {
        order.swap(i, random_below(i + 1));
    }
    order
}

/// The servers of data and parity chunks under `--parity K:M`: the chunks
/// of a group (its data chunks, then its M parity chunks) go round the
/// servers in a random order, so they are all on different servers when
/// there are at least K+M, and losing any M servers loses at most M chunks
/// of each group. Returns the server of each data chunk and of each parity
/// chunk (numbered as in the description).
pub fn plan_parity_chunks(
    chunks: usize,
    data: usize,
    parity: usize,
    servers: usize,
) -> (Vec<usize>, Vec<usize>) {
    let order = shuffled(servers);
    let (mut data_plan, mut parity_plan) = (Vec::new(), Vec::new());
    let mut at = 0;
    for first in (0..chunks).step_by(data.max(1)) {
        let in_group = data.min(chunks - first);
        for _ in 0..in_group {
            data_plan.push(order[at % servers]);
            at += 1;
        }
        for _ in 0..parity {
            parity_plan.push(order[at % servers]);
            at += 1;
        }
    }
    (data_plan, parity_plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_chunks_are_on_different_servers_when_there_are_enough() {
        for (chunks, k, m, servers) in [(10, 4, 2, 6), (9, 4, 2, 6), (7, 3, 1, 4), (25, 10, 4, 14)]
        {
            let (d, p) = plan_parity_chunks(chunks, k, m, servers);
            assert_eq!(d.len(), chunks);
            assert_eq!(p.len(), chunks.div_ceil(k) * m);
            for g in 0..chunks.div_ceil(k) {
                let mut on: Vec<usize> = d[g * k..((g + 1) * k).min(chunks)].to_vec();
                on.extend_from_slice(&p[g * m..(g + 1) * m]);
                let n = on.len();
                on.sort_unstable();
                on.dedup();
                assert_eq!(on.len(), n, "group {g} of {chunks}/{k}:{m} over {servers}");
            }
        }
        // Fewer servers than a group has chunks: still every server used.
        let (d, p) = plan_parity_chunks(8, 4, 2, 3);
        let mut all: Vec<usize> = d.into_iter().chain(p).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, [0, 1, 2]);
    }

    #[test]
    fn spreads_over_every_server() {
        for servers in 1..6 {
            for chunks in 0..40 {
                let plan = plan_chunks(chunks, servers);
                assert_eq!(plan.len(), chunks);
                let mut counts = vec![0usize; servers];
                for &s in &plan {
                    counts[s] += 1;
                }
                let (min, max) = (counts.iter().min(), counts.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{counts:?}");
                if servers >= 2 && chunks >= 2 {
                    assert!(counts.iter().all(|&c| c < chunks), "{counts:?}");
                }
            }
        }
    }

    #[test]
    fn presets_parse() {
        let s = parse_server_list(&PRESET_SERVERS.join(";")).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].server.to_string(), PRESET_SERVERS[0]);
    }

    #[test]
    fn list_syntax() {
        assert!(matches!(parse_server_list(" ; "), Err(CliError::NoServers)));
        assert!(matches!(
            parse_server_list("not a server"),
            Err(CliError::BadServer(..))
        ));
        let s = parse_server_list(&format!(
            "{};\n# comment\n{}",
            PRESET_SERVERS[1], PRESET_SERVERS[2]
        ))
        .unwrap();
        assert_eq!(s.len(), 2);
    }
}
