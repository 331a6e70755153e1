//! `xftp del`: delete every copy of every chunk of a file with the sender
//! description.

use std::sync::Arc;

use smp_core::crypto::keys::PrivateKey;
use smp_core::file::description::{DescriptionError, FileParty};
use tokio::task::JoinSet;

use crate::error::{CliError, Op};
use crate::pool::{Pool, TransferOptions};
use crate::recv::{DescriptionSource, load_description};

/// Deletes every chunk copy it can (concurrently, with retries) and reports
/// the ones it could not; returns the number of copies deleted.
pub async fn delete_file(
    source: &DescriptionSource,
    transfer: TransferOptions,
) -> Result<usize, CliError> {
    let desc = load_description(source, FileParty::Sender)?;
    let pool = Arc::new(Pool::new(transfer));
    let mut tasks = JoinSet::new();
    // Parity chunks have numbers of their own: `(is parity, number)`.
    let data = desc.chunks.iter().map(|c| ((false, c.chunk_no), c));
    let parity = desc
        .parity
        .iter()
        .flat_map(|p| &p.chunks)
        .map(|c| ((true, c.chunk_no), c));
    let copies = data
        .chain(parity)
        .flat_map(|(no, c)| c.replicas.iter().map(move |r| (no, r)));
    let mut total = 0;
    for (chunk_no, replica) in copies {
        total += 1;
        let replica = replica.clone();
        let pool = pool.clone();
        tasks.spawn(async move {
            let conn = pool.get(&replica.server);
            let _slot = conn.slots.acquire().await.expect("semaphore never closed");
            let r = async {
                let key = PrivateKey::from_der(replica.replica_key.as_der())
                    .map_err(|_| CliError::Description(DescriptionError::ReplicaKey))?;
                let (key, id) = (&key, &replica.replica_id);
                conn.client
                    .retry(pool.options().retries, |c| async move {
                        c.delete_file(id, key).await
                    })
                    .await
                    .map_err(|e| CliError::server(Op::Delete, &replica.server, e))
            }
            .await;
            (chunk_no, r)
        });
    }
    let mut failed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((_, Ok(()))) => {}
            Ok((n, Err(e))) => failed.push((n, e)),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    if failed.is_empty() {
        return Ok(total);
    }
    failed.sort_by_key(|(n, _)| *n);
    let details = failed
        .iter()
        .map(|((parity, n), e)| {
            let kind = if *parity { "parity chunk" } else { "chunk" };
            format!("  {kind} {n}: {e}")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let count = failed.len();
    let first = failed
        .into_iter()
        .next()
        .map(|(_, e)| e)
        .expect("non-empty");
    Err(CliError::DeletePartial {
        failed: count,
        total,
        details,
        first: Box::new(first),
    })
}
