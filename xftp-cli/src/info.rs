//! `xftp info`: what a description says, in the reference's lines.

use std::collections::BTreeMap;

use smp_core::address::ServerAddress;
use smp_core::file::description::{FileDescription, FileParty, FileSize};

/// `Recipient file description` / `Sender file description`,
/// `File download size: <size>`, `File server(s):`, then
/// `<server>: <size stored there>` per server in the reference's order.
pub fn info_lines(desc: &FileDescription) -> Vec<String> {
    let mut lines = vec![
        match desc.party {
            FileParty::Recipient => "Recipient file description",
            FileParty::Sender => "Sender file description",
        }
        .to_string(),
        format!("File download size: {}", FileSize(desc.size)),
        "File server(s):".to_string(),
    ];
    let mut per_server: BTreeMap<ServerAddress, u64> = BTreeMap::new();
    for chunk in &desc.chunks {
        for r in &chunk.replicas {
            *per_server.entry(r.server.clone()).or_default() += u64::from(chunk.chunk_size);
        }
    }
    for (server, size) in per_server {
        lines.push(format!("{server}: {}", FileSize(size)));
    }
    lines
}
