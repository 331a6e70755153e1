//! `xftp send`: encrypt a file in one streaming pass into a temporary file,
//! upload its chunks concurrently over the servers, write the descriptions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smp_core::address::{ServerAddress, ServerWithAuth};
use smp_core::client::xftp::XftpClientError;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::chunks::MAX_FILE_SIZE;
use smp_core::file::description::{ReplicaKey, UploadedChunk, UploadedFile, split_descriptions};
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{ChunkSpec, EncryptedFile, chunk_specs, encrypt_file};
use smp_core::file::weblink::web_link;
use smp_core::xftp::command::{BasicAuth, FileInfo};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::task::JoinSet;

use crate::error::{CliError, Op, exit};
use crate::pool::{Pool, ServerConn, TransferOptions};
use crate::progress::{Bar, Progress};
use crate::servers::plan_chunks;
use crate::{CountingReader, unique_combine};

pub struct SendOptions {
    pub file: PathBuf,
    /// Where `<name>.xftp/` is created (the reference's `DIR`, default `.`).
    pub out_dir: PathBuf,
    /// Number of recipient descriptions (`-n`).
    pub recipients: usize,
    pub servers: Vec<ServerWithAuth>,
    /// Directory for the temporary encrypted file (`--tmp`).
    pub tmp_dir: PathBuf,
    pub transfer: TransferOptions,
}

#[derive(Debug)]
pub struct SendOutcome {
    /// `<DIR>/<name>.xftp`
    pub dir: PathBuf,
    pub sender_description: PathBuf,
    pub recipient_descriptions: Vec<PathBuf>,
    pub web_link: String,
    /// The server of each chunk, in chunk order.
    pub chunk_servers: Vec<ServerAddress>,
}

/// Sends `opts.file`; see the module docs.
pub async fn send_file(opts: &SendOptions, progress: &Progress) -> Result<SendOutcome, CliError> {
    if opts.servers.is_empty() {
        return Err(CliError::NoServers);
    }
    let recipients = opts.recipients.max(1);
    let meta = std::fs::metadata(&opts.file)
        .map_err(|e| CliError::io(format!("reading {}", opts.file.display()), e))?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(CliError::FileTooLarge {
            path: opts.file.clone(),
            size: meta.len(),
        });
    }
    let name = opts
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());

    // 1. Encrypt and hash in one streaming pass into a temporary file, which
    //    is removed when this function returns, whatever happens.
    progress.item("Encrypting file...");
    let tmp = tempfile::Builder::new()
        .prefix("xftp.encrypted")
        .tempfile_in(&opts.tmp_dir)
        .map_err(|e| CliError::io(format!("creating a file in {}", opts.tmp_dir.display()), e))?;
    let key = SbKey::generate();
    let nonce = CbNonce::generate();
    let encrypted = {
        let bar = progress.bar("encrypting", meta.len(), None);
        let src = std::fs::File::open(&opts.file)
            .map_err(|e| CliError::io(format!("opening {}", opts.file.display()), e))?;
        let dst = tmp
            .as_file()
            .try_clone()
            .map_err(|e| CliError::io("temporary file", e))?;
        let header = FileHeader::new(name.clone());
        let len = meta.len();
        // Blocking, on purpose: nothing else runs while the file is encrypted.
        let result = encrypt_file(
            CountingReader::new(src, |n| bar.inc(n)),
            len,
            &header,
            &key,
            &nonce,
            std::io::BufWriter::with_capacity(1 << 20, dst),
        );
        bar.finish();
        result.map_err(|e| match e {
            smp_core::file::stream::StreamError::Io(io) => {
                CliError::io(format!("encrypting {}", opts.file.display()), io)
            }
            other => CliError::Decrypt(other),
        })?
    };
    tracing::debug!(
        "encrypted {} bytes into {} chunks of {} bytes",
        meta.len(),
        encrypted.chunk_sizes.len(),
        encrypted.enc_size
    );

    // 2. Upload.
    progress.item("Uploading file...");
    let pool = Arc::new(Pool::new(opts.transfer));
    let uploaded = upload_chunks(
        &pool,
        &opts.servers,
        tmp.path(),
        &encrypted,
        recipients,
        progress,
    )
    .await?;
    drop(tmp);
    progress.item("File uploaded!");

    // 3. Descriptions.
    let file = UploadedFile {
        size: encrypted.enc_size,
        digest: encrypted.digest.to_vec(),
        key: key.0,
        nonce: nonce.0,
        chunk_size: encrypted.chunk_sizes[0],
        redirect: None,
    };
    let chunk_servers = uploaded.iter().map(|c| c.server.clone()).collect();
    let (rcv, snd) = split_descriptions(&file, &uploaded).map_err(CliError::Description)?;
    let link = web_link(&rcv[0]).map_err(CliError::WebLink)?;
    let dir = unique_combine(&opts.out_dir, &format!("{name}.xftp"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
    let mut recipient_descriptions = Vec::with_capacity(rcv.len());
    for (i, d) in rcv.iter().enumerate() {
        let p = dir.join(format!("rcv{}.xftp", i + 1));
        write_private(&p, d.to_yaml().as_bytes())?;
        recipient_descriptions.push(p);
    }
    let sender_description = dir.join("snd.xftp.private");
    write_private(&sender_description, snd.to_yaml().as_bytes())?;
    Ok(SendOutcome {
        dir,
        sender_description,
        recipient_descriptions,
        web_link: link,
        chunk_servers,
    })
}

/// Descriptions hold private keys: owner-only on Unix.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let res = o
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes));
    res.map_err(|e| CliError::io(format!("writing {}", path.display()), e))
}

struct Job {
    path: PathBuf,
    spec: ChunkSpec,
    chunk_no: u32,
    digest: [u8; 32],
    recipients: usize,
}

/// Uploads every chunk, spread by [`plan_chunks`], several at a time per
/// server. A chunk whose server is unreachable after the retries moves to
/// the next reachable server; the upload fails when none is left.
async fn upload_chunks(
    pool: &Arc<Pool>,
    servers: &[ServerWithAuth],
    path: &Path,
    encrypted: &EncryptedFile,
    recipients: usize,
    progress: &Progress,
) -> Result<Vec<UploadedChunk>, CliError> {
    let specs = chunk_specs(encrypted);
    let plan = plan_chunks(specs.len(), servers.len());
    let conns: Arc<Vec<(Arc<ServerConn>, Option<BasicAuth>)>> = Arc::new(
        servers
            .iter()
            .map(|s| {
                let auth = s
                    .auth
                    .as_ref()
                    .and_then(|a| BasicAuth::new(a.as_str().as_bytes()));
                (pool.get(&s.server), auth)
            })
            .collect(),
    );
    let bar = progress.bar("uploading", encrypted.enc_size, Some("Uploaded"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut tasks = JoinSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let job = Job {
            path: path.to_path_buf(),
            spec: *spec,
            chunk_no: i as u32 + 1,
            digest: encrypted.chunk_digests[i],
            recipients,
        };
        let conns = conns.clone();
        let first = plan[i];
        let retries = pool.options().retries;
        let tx = tx.clone();
        tasks.spawn(async move {
            let r = upload_with_failover(&conns, first, &job, retries).await;
            if r.is_ok() {
                let _ = tx.send(u64::from(job.spec.size));
            }
            r
        });
    }
    drop(tx);
    let mut done = Vec::with_capacity(specs.len());
    let result = collect(&mut tasks, &mut rx, &bar, &mut done).await;
    if result.is_err() {
        tasks.abort_all();
    }
    result?;
    bar.finish();
    done.sort_by_key(|c| c.chunk_no);
    Ok(done)
}

async fn collect(
    tasks: &mut JoinSet<Result<UploadedChunk, CliError>>,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    bar: &Bar<'_>,
    done: &mut Vec<UploadedChunk>,
) -> Result<(), CliError> {
    loop {
        tokio::select! {
            Some(n) = rx.recv() => bar.chunk_done(n),
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(c))) => done.push(c),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            },
        }
    }
    while let Ok(n) = rx.try_recv() {
        bar.chunk_done(n);
    }
    Ok(())
}

async fn upload_with_failover(
    conns: &[(Arc<ServerConn>, Option<BasicAuth>)],
    first: usize,
    job: &Job,
    retries: u32,
) -> Result<UploadedChunk, CliError> {
    let mut last = None;
    for k in 0..conns.len() {
        let (conn, auth) = &conns[(first + k) % conns.len()];
        if conn.is_unreachable() {
            continue;
        }
        match upload_one(conn, auth.clone(), job, retries).await {
            Ok(c) => return Ok(c),
            Err(e) if e.exit_code() == exit::UNREACHABLE => {
                tracing::warn!("{e}; chunk {} moves to another server", job.chunk_no);
                conn.mark_unreachable();
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(CliError::NoServers))
}

async fn upload_one(
    conn: &ServerConn,
    auth: Option<BasicAuth>,
    job: &Job,
    retries: u32,
) -> Result<UploadedChunk, CliError> {
    let _slot = conn.slots.acquire().await.expect("semaphore never closed");
    let server = conn.address();
    let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let rcv: Vec<PrivateKey> = (0..job.recipients)
        .map(|_| PrivateKey::generate(KeyAlgorithm::Ed25519))
        .collect();
    let info = FileInfo {
        snd_key: snd.public_key(),
        size: job.spec.size,
        digest: job.digest.to_vec(),
    };
    let (snd_ref, rcv_ref, info_ref, auth_ref) = (&snd, &rcv, &info, &auth);
    let (sender_id, recipient_ids) = conn
        .client
        .retry(retries, |c| async move {
            c.create_file(
                snd_ref,
                info_ref.clone(),
                rcv_ref.iter().map(PrivateKey::public_key).collect(),
                auth_ref.clone(),
            )
            .await
        })
        .await
        .map_err(|e| CliError::server(Op::Create, server, e))?;
    let sid = &sender_id;
    conn.client
        .retry(retries, |c| async move {
            let mut f = tokio::fs::File::open(&job.path)
                .await
                .map_err(XftpClientError::Source)?;
            f.seek(std::io::SeekFrom::Start(job.spec.offset))
                .await
                .map_err(XftpClientError::Source)?;
            let reader =
                tokio::io::BufReader::with_capacity(64 << 10, f).take(u64::from(job.spec.size));
            c.upload_chunk(sid, snd_ref, reader, job.spec.size).await
        })
        .await
        .map_err(|e| CliError::server(Op::Upload, server, e))?;
    tracing::debug!("chunk {} uploaded to {server}", job.chunk_no);
    let key = |k: &PrivateKey| ReplicaKey::from_der(&k.to_der()).map_err(CliError::Description);
    Ok(UploadedChunk {
        chunk_no: job.chunk_no,
        chunk_size: job.spec.size,
        digest: job.digest.to_vec(),
        server: server.clone(),
        sender_id,
        sender_key: key(&snd)?,
        recipients: recipient_ids
            .into_iter()
            .zip(&rcv)
            .map(|(id, k)| Ok((id, key(k)?)))
            .collect::<Result<_, CliError>>()?,
    })
}
