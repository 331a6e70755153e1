//! Whole files through the streaming encryption and back: the sizes around
//! every chunk boundary, a 100 MiB file, and tampering anywhere.

use smp_core::crypto::secretbox::{CbNonce, SbKey};
use smp_core::file::chunks::{FILE_OVERHEAD, SERVER_CHUNK_SIZES};
use smp_core::file::crypto::FileCryptoError;
use smp_core::file::header::FileHeader;
use smp_core::file::stream::{StreamError, decrypt_file, encrypt_file, encrypt_file_by_chunk};
use std::io::Read;

/// Deterministic content that is not a short repeating pattern.
struct Content {
    state: u64,
    left: u64,
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.state = self
                .state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.state >> 56) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn content(len: u64) -> Content {
    Content {
        state: len,
        left: len,
    }
}

fn roundtrip(len: u64) -> Vec<u8> {
    let header = FileHeader::new("report.pdf");
    let key = SbKey([7; 32]);
    let nonce = CbNonce([9; 24]);
    let mut enc = Vec::new();
    let ef = encrypt_file(content(len), len, &header, &key, &nonce, &mut enc).unwrap();
    assert_eq!(enc.len() as u64, ef.enc_size);
    assert_eq!(
        ef.chunk_sizes.iter().map(|&s| s as u64).sum::<u64>(),
        ef.enc_size
    );
    assert!(
        ef.chunk_sizes
            .iter()
            .all(|s| SERVER_CHUNK_SIZES.contains(s))
    );
    let mut out = Vec::new();
    let (h, digest) = decrypt_file(&enc[..], ef.enc_size, &key, &nonce, &mut out).unwrap();
    assert_eq!(h, header);
    assert_eq!(digest, ef.digest);
    let mut want = Vec::new();
    content(len).read_to_end(&mut want).unwrap();
    assert!(
        out == want,
        "content differs after a round trip of {len} bytes"
    );
    enc
}

#[test]
fn sizes_around_every_chunk_boundary() {
    let header_len = FileHeader::new("report.pdf").encode().unwrap().len() as u64;
    let mut sizes = vec![0u64, 1];
    for &chunk in &SERVER_CHUNK_SIZES {
        // Content sizes whose payload lands exactly on, just under and just over a chunk size.
        let exact = chunk as u64 - FILE_OVERHEAD - header_len;
        sizes.extend([exact - 1, exact, exact + 1]);
        // And the raw chunk sizes themselves.
        sizes.extend([chunk as u64 - 1, chunk as u64, chunk as u64 + 1]);
    }
    for len in sizes {
        roundtrip(len);
    }
}

#[test]
fn hundred_mib_round_trip_and_tamper() {
    let len = 100 * 1024 * 1024;
    let mut enc = roundtrip(len);
    let key = SbKey([7; 32]);
    let nonce = CbNonce([9; 24]);
    let mid = enc.len() / 2;
    enc[mid] ^= 0x01;
    let err = decrypt_file(&enc[..], enc.len() as u64, &key, &nonce, std::io::sink()).unwrap_err();
    assert!(
        matches!(err, StreamError::Crypto(FileCryptoError::AuthTag)),
        "{err}"
    );
}

#[test]
fn one_flipped_byte_anywhere_fails() {
    let len = 70_000u64;
    let enc = roundtrip(len);
    let key = SbKey([7; 32]);
    let nonce = CbNonce([9; 24]);
    // Length field, header, content, padding and tag, plus a spread of others.
    let mut positions: Vec<usize> = (0..40).collect();
    positions.extend((0..enc.len()).step_by(997));
    positions.extend(enc.len() - 40..enc.len());
    for pos in positions {
        for bit in [0x01u8, 0x80] {
            let mut bad = enc.clone();
            bad[pos] ^= bit;
            let r = decrypt_file(&bad[..], bad.len() as u64, &key, &nonce, std::io::sink());
            assert!(
                r.is_err(),
                "flipping bit {bit:#x} of byte {pos} went unnoticed"
            );
        }
    }
}

#[test]
fn truncated_or_extended_files_fail() {
    let enc = roundtrip(1000);
    let key = SbKey([7; 32]);
    let nonce = CbNonce([9; 24]);
    for cut in [1, 15, 16, 17, 1000] {
        let short = &enc[..enc.len() - cut];
        let r = decrypt_file(short, enc.len() as u64, &key, &nonce, std::io::sink());
        assert!(r.is_err(), "file cut by {cut} bytes was accepted");
    }
    let mut long = enc.clone();
    long.push(0);
    let r = decrypt_file(&long[..], enc.len() as u64, &key, &nonce, std::io::sink());
    assert!(r.is_err(), "a trailing byte was accepted");
    let wrong_key = decrypt_file(
        &enc[..],
        enc.len() as u64,
        &SbKey([8; 32]),
        &nonce,
        std::io::sink(),
    );
    assert!(wrong_key.is_err());
}

#[test]
fn a_source_that_changes_size_is_refused() {
    let header = FileHeader::new("x");
    let r = encrypt_file(
        content(10),
        11,
        &header,
        &SbKey([1; 32]),
        &CbNonce([2; 24]),
        std::io::sink(),
    );
    assert!(matches!(r, Err(StreamError::SourceChanged { .. })));
    let r = encrypt_file(
        content(12),
        11,
        &header,
        &SbKey([1; 32]),
        &CbNonce([2; 24]),
        std::io::sink(),
    );
    assert!(matches!(r, Err(StreamError::SourceChanged { .. })));
}

/// Counts what reached the writer, so a callback can see how much of the
/// file was written when it was told a chunk is ready.
struct Tally(std::sync::Arc<std::sync::atomic::AtomicU64>, Vec<u8>);

impl std::io::Write for Tally {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        self.0
            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_chunk_is_reported_once_its_bytes_are_written() {
    // 9 MiB: three chunks whose edges fall inside the 1 MiB pieces.
    let len = 9 << 20;
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut seen = Vec::new();
    let ef = encrypt_file_by_chunk(
        content(len),
        len,
        &FileHeader::new("big.bin"),
        &SbKey([3; 32]),
        &CbNonce([4; 24]),
        std::io::BufWriter::with_capacity(1 << 20, Tally(written.clone(), Vec::new())),
        |i, digest| {
            seen.push((i, digest, written.load(std::sync::atomic::Ordering::SeqCst)));
            true
        },
    )
    .unwrap();
    assert_eq!(seen.len(), ef.chunk_sizes.len());
    let mut end = 0u64;
    for (k, (i, digest, at)) in seen.iter().enumerate() {
        end += u64::from(ef.chunk_sizes[k]);
        assert_eq!(*i, k, "chunks come in order");
        assert_eq!(*digest, ef.chunk_digests[k]);
        // Flushed through the BufWriter exactly to the chunk's end: the
        // chunk can be read back, and later chunks are not waited for.
        assert_eq!(
            *at, end,
            "chunk {k} announced with {at} of {end} bytes written"
        );
    }
}

#[test]
fn a_consumer_that_stops_stops_the_encryption() {
    let len = 9 << 20;
    let mut calls = 0;
    let r = encrypt_file_by_chunk(
        content(len),
        len,
        &FileHeader::new("big.bin"),
        &SbKey([3; 32]),
        &CbNonce([4; 24]),
        std::io::sink(),
        |_, _| {
            calls += 1;
            false
        },
    );
    assert!(matches!(r, Err(StreamError::Io(_))), "{r:?}");
    assert_eq!(calls, 1);
}

/// The chunk sizes and digests of an encrypted file, as a description has them.
fn cut(enc: &[u8], sizes: &[u32]) -> Vec<[u8; 32]> {
    let mut at = 0;
    sizes
        .iter()
        .map(|&s| {
            let d = smp_core::crypto::digest::sha256(&enc[at..at + s as usize]);
            at += s as usize;
            d
        })
        .collect()
}

/// An interrupted decryption resumes from each of its checkpoints: the
/// content written so far replays into the same cipher and hash state, and
/// the rest of the file decrypts to the same content, header and digest.
#[test]
fn a_decryption_resumes_from_every_checkpoint() {
    use smp_core::file::stream::{Resumed, decrypt_chunks, replay_file};
    let header = FileHeader::new("notes.txt");
    let (key, nonce) = (SbKey([3; 32]), CbNonce([5; 24]));
    let len = (9 << 20) + 12_345;
    let mut enc = Vec::new();
    let ef = encrypt_file(content(len), len, &header, &key, &nonce, &mut enc).unwrap();
    let digests = cut(&enc, &ef.chunk_sizes);
    let mut want = Vec::new();
    content(len).read_to_end(&mut want).unwrap();

    let mut checkpoints = Vec::new();
    let mut out = Vec::new();
    let start = Resumed::start(&key, &nonce, ef.enc_size).unwrap();
    let (h, d) = decrypt_chunks(start, &enc[..], &ef.chunk_sizes, &mut out, |i, cp| {
        checkpoints.push((i, cp));
        Ok(())
    })
    .unwrap();
    assert_eq!((h, d, &out), (header.clone(), ef.digest, &want));
    // Every chunk but the last (it holds the tag) gives one.
    assert_eq!(checkpoints.len(), ef.chunk_sizes.len() - 1);
    for (i, cp) in &checkpoints {
        let mut resumed_out = want[..cp.content as usize].to_vec();
        let r = replay_file(
            &want[..cp.content as usize],
            cp,
            &key,
            &nonce,
            &ef.chunk_sizes,
            &digests,
        )
        .unwrap();
        assert_eq!(r.chunks_done(), i + 1);
        let done = cp.encrypted_len() as usize;
        let (h, d) = decrypt_chunks(
            r,
            &enc[done..],
            &ef.chunk_sizes,
            &mut resumed_out,
            |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!(h, header);
        assert_eq!(d, ef.digest);
        assert!(resumed_out == want, "resumed from chunk {}", i + 1);
    }
}

/// Kept content that changed is caught at the chunk it changed in, before
/// anything is downloaded; a checkpoint off a chunk boundary is refused.
#[test]
fn a_replay_of_changed_content_names_the_chunk() {
    use smp_core::file::stream::{Resumed, decrypt_chunks, replay_file};
    let header = FileHeader::new("notes.txt");
    let (key, nonce) = (SbKey([3; 32]), CbNonce([5; 24]));
    let len = 6 << 20;
    let mut enc = Vec::new();
    let ef = encrypt_file(content(len), len, &header, &key, &nonce, &mut enc).unwrap();
    let digests = cut(&enc, &ef.chunk_sizes);
    let mut want = Vec::new();
    content(len).read_to_end(&mut want).unwrap();
    let mut last = None;
    let start = Resumed::start(&key, &nonce, ef.enc_size).unwrap();
    decrypt_chunks(
        start,
        &enc[..],
        &ef.chunk_sizes,
        std::io::sink(),
        |_, cp| {
            last = Some(cp);
            Ok(())
        },
    )
    .unwrap();
    let cp = last.expect("a checkpoint");
    assert!(ef.chunk_sizes.len() >= 3);
    let mut changed = want[..cp.content as usize].to_vec();
    // A byte in the second chunk's content.
    let at = ef.chunk_sizes[0] as usize + 10;
    changed[at] ^= 1;
    let e = replay_file(&changed[..], &cp, &key, &nonce, &ef.chunk_sizes, &digests)
        .err()
        .unwrap();
    assert!(
        matches!(e, StreamError::ReplayMismatch { chunk: 1 }),
        "{e:?}"
    );
    // Too little content kept.
    let short = &want[..cp.content as usize - 1];
    let e = replay_file(short, &cp, &key, &nonce, &ef.chunk_sizes, &digests)
        .err()
        .unwrap();
    assert!(matches!(e, StreamError::ReplayMismatch { .. }), "{e:?}");
    let mut off = cp.clone();
    off.content -= 1;
    let e = replay_file(&want[..], &off, &key, &nonce, &ef.chunk_sizes, &digests)
        .err()
        .unwrap();
    assert!(matches!(e, StreamError::ReplayBoundary), "{e:?}");
}
