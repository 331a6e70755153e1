//! A file encrypted as `xftp send` does, its recipient description, and an
//! FGET "server" in memory that answers the job's request blocks, so the
//! job logic is tested without sockets (the end-to-end tests use real
//! servers).
#![allow(dead_code)]

use std::collections::HashMap;

use device_sync::job::{ChunkDone, DeviceKeys, Entropy, Job, JobError};
use device_sync::storage::FileStore;
use sha2::{Digest, Sha256, Sha512};
use smp_core::address::ServerAddress;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::crypto::secretbox::{CbNonce, SbKey, SbStream};
use smp_core::file::crypto::{FilePlan, encrypt_bytes};
use smp_core::file::description::{
    FileChunk, FileChunkReplica, FileDescription, FileParty, ReplicaKey,
};
use smp_core::file::header::FileHeader;
use smp_core::xftp::command::FileCommand;
use smp_core::xftp::error::XftpErrorType;
use smp_core::xftp::fget::fget_stream;
use smp_core::xftp::response::FileResponse;
use smp_core::xftp::transmission::{decode_request_block, encode_response_block};
use zeroize::Zeroizing;

/// A deterministic generator (tests replay exactly).
pub struct TestRng(pub u64);

impl Entropy for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
    }
}

pub fn device_keys() -> DeviceKeys {
    DeviceKeys {
        files_mk: Zeroizing::new([0x42; 32]),
        device_id: [0x17; 16],
        key_id: 1,
    }
}

pub fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub const SESSION: &[u8] = &[9; 32];

/// One stored chunk on the fake servers.
pub struct StoredChunk {
    pub bytes: Vec<u8>,
}

/// The encrypted file, its description and what the servers hold.
pub struct Published {
    pub content: Vec<u8>,
    pub desc: FileDescription,
    /// Recipient id → chunk bytes.
    pub chunks: HashMap<Vec<u8>, Vec<u8>>,
}

pub fn server(n: u8) -> ServerAddress {
    ServerAddress::parse(&format!(
        "xftp://{}@127.0.0.{}:443",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", n
    ))
    .unwrap()
}

/// Encrypts `content` as `report.bin` and spreads each chunk over
/// `replicas` fake servers.
pub fn publish(content: Vec<u8>, replicas: usize) -> Published {
    let header = FileHeader::new("report.bin");
    let plan = FilePlan::new(&header, content.len() as u64).unwrap();
    let key = SbKey([3; 32]);
    let nonce = CbNonce([4; 24]);
    let enc = encrypt_bytes(&key, &nonce, &header, &content, plan.enc_size).unwrap();
    let mut chunks = HashMap::new();
    let mut descs = Vec::new();
    let mut off = 0usize;
    for (i, &size) in plan.chunk_sizes.iter().enumerate() {
        let bytes = enc[off..off + size as usize].to_vec();
        off += size as usize;
        let mut reps = Vec::new();
        for r in 0..replicas {
            let id = vec![(i * 16 + r) as u8 + 1; 24];
            let seed = [(i * 16 + r) as u8 + 100; 32];
            chunks.insert(id.clone(), bytes.clone());
            reps.push(FileChunkReplica {
                server: server(r as u8 + 1),
                replica_id: id,
                replica_key: ReplicaKey::from_ed25519_seed(&seed),
            });
        }
        descs.push(FileChunk {
            chunk_no: i as u32 + 1,
            chunk_size: size,
            digest: Sha256::digest(&bytes).to_vec(),
            replicas: reps,
        });
    }
    Published {
        content,
        desc: FileDescription {
            party: FileParty::Recipient,
            size: plan.enc_size,
            digest: Sha512::digest(&enc).to_vec(),
            key: key.0,
            nonce: nonce.0,
            chunk_size: plan.chunk_sizes[0],
            chunks: descs,
            redirect: None,
            parity: None,
        },
        chunks,
    }
}

/// How the fake server misbehaves for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// One body byte flipped (bad transit tag).
    Flip(usize),
    /// The body ends after this many bytes.
    Cut(usize),
    /// `ERR AUTH` (expired or deleted).
    Auth,
}

/// The server side of one FGET: the `FILE` response block, the transit
/// stream keyed for the requester and the stored chunk it asks for.
pub fn serve<'a>(p: &'a Published, request: &[u8]) -> (Vec<u8>, SbStream, &'a [u8]) {
    let t = decode_request_block(request, SESSION).unwrap();
    let FileCommand::Fget { rcv_dh_key } = t.command else {
        panic!("not an FGET");
    };
    let srv = PrivateKey::from_raw(KeyAlgorithm::X25519, &[77; 32]).unwrap();
    let nonce = CbNonce([5; 24]);
    let block = encode_response_block(
        SESSION,
        b"",
        t.raw.entity_id,
        &FileResponse::File {
            srv_dh_key: srv.public_key(),
            nonce,
        },
        2,
    )
    .unwrap();
    let stream = fget_stream(&rcv_dh_key, &srv, &nonce).unwrap();
    (block, stream, &p.chunks[t.raw.entity_id])
}

/// The server's answer to a request block: response block and body.
pub fn answer(p: &Published, request: &[u8], fault: Fault) -> (Vec<u8>, Vec<u8>) {
    if fault == Fault::Auth {
        let t = decode_request_block(request, SESSION).unwrap();
        let b = encode_response_block(
            SESSION,
            b"",
            t.raw.entity_id,
            &FileResponse::Err(XftpErrorType::Auth),
            2,
        )
        .unwrap();
        return (b, Vec::new());
    }
    let (block, mut stream, chunk) = serve(p, request);
    let mut body = chunk.to_vec();
    stream.encrypt(&mut body);
    body.extend_from_slice(&stream.tag());
    match fault {
        Fault::Flip(i) => {
            let n = body.len();
            body[i % n] ^= 0x40;
        }
        Fault::Cut(n) => body.truncate(n),
        _ => {}
    }
    (block, body)
}

/// Fetches one chunk attempt from replica `k`, feeding the body in pieces
/// of `piece` bytes.
pub fn fetch_chunk<S: FileStore>(
    job: &mut Job<S>,
    store: &mut S,
    p: &Published,
    k: usize,
    fault: Fault,
    piece: usize,
    rng: &mut TestRng,
) -> Result<ChunkDone, JobError> {
    let entry = job.next_chunk(store)?.expect("a chunk to fetch");
    job.begin(store, entry, rng)?;
    let req = job.fget_request(k, SESSION, None, rng)?;
    let (block, body) = answer(p, &req, fault);
    job.response(store, &block, SESSION)?;
    for c in body.chunks(piece) {
        let mut c = c.to_vec();
        job.body(store, &mut c)?;
    }
    job.end_body(store)
}

/// Fetches every chunk with no faults.
pub fn fetch_all<S: FileStore>(
    job: &mut Job<S>,
    store: &mut S,
    p: &Published,
    rng: &mut TestRng,
) -> Result<(), JobError> {
    loop {
        if let ChunkDone::Verified = fetch_chunk(job, store, p, 0, Fault::None, 7_001, rng)? {
            return Ok(());
        }
    }
}
