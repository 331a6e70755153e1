//! `xftp info`: what a description says, in the reference's lines.

use std::collections::BTreeMap;

use smp_core::address::ServerAddress;
use smp_core::file::description::{FileDescription, FileParty, FileSize};

/// `Recipient file description` / `Sender file description`,
/// `File download size: <size>`, `File server(s):`, then
/// `<server>: <size stored there>` per server in the reference's order;
/// a file kept on several servers or with parity says so before the
/// server list, which counts parity chunks too.
pub fn info_lines(desc: &FileDescription) -> Vec<String> {
    let mut lines = vec![
        match desc.party {
            FileParty::Recipient => "Recipient file description",
            FileParty::Sender => "Sender file description",
        }
        .to_string(),
        format!("File download size: {}", FileSize(desc.size)),
    ];
    let counts = desc.chunks.iter().map(|c| c.replicas.len());
    let (least, most) = (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0));
    if most > 1 {
        lines.push(if least == most {
            format!("Replicas: each chunk on {most} servers")
        } else {
            format!("Replicas: each chunk on {least} to {most} servers")
        });
    }
    if let Some(p) = &desc.parity {
        lines.push(format!(
            "Parity: {} Reed–Solomon chunks per {} data chunks ({} parity chunks, {} stored)",
            p.parity,
            p.data,
            p.chunks.len(),
            FileSize(p.chunks.iter().map(|c| u64::from(c.chunk_size)).sum()),
        ));
    }
    lines.push("File server(s):".to_string());
    let mut per_server: BTreeMap<ServerAddress, u64> = BTreeMap::new();
    let parity = desc.parity.iter().flat_map(|p| &p.chunks);
    for chunk in desc.chunks.iter().chain(parity) {
        for r in &chunk.replicas {
            *per_server.entry(r.server.clone()).or_default() += u64::from(chunk.chunk_size);
        }
    }
    for (server, size) in per_server {
        lines.push(format!("{server}: {}", FileSize(size)));
    }
    lines
}
