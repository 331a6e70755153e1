//! Malformed and hostile input over real TLS + HTTP/2: a raw client builds
//! request bodies byte by byte (xftp.md §6.3, §6.5, §7.1, §7.2, §8.2). After
//! each case the server must still serve a separate, well-behaved client,
//! and connections that did nothing wrong must stay open.

mod support;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use smp_core::client::xftp::XftpClient;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::encoding::Writer;
use smp_core::encoding::pad::pad;
use smp_core::tls::TlsError;
use smp_core::xftp::command::FileCommand;
use smp_core::xftp::error::{CommandError, XftpErrorType};
use smp_core::xftp::handshake::ClientHandshake;
use smp_core::xftp::response::FileResponse;
use smp_core::xftp::transmission::{authorized_bytes, bare_error_word, encode_batch, encode_block};
use support::*;

const K64: usize = 65536;

fn err(e: XftpErrorType) -> FileResponse {
    FileResponse::Err(e)
}

fn cmd_err(e: CommandError) -> FileResponse {
    FileResponse::Err(XftpErrorType::Cmd(e))
}

/// A block from parts: `auth` is put on the wire as given; `sign` (if any)
/// replaces it with a real signature of the authorized bytes.
fn block_of(
    session_id: &[u8],
    entity_id: &[u8],
    command: &[u8],
    auth: &[u8],
    sign: Option<&PrivateKey>,
) -> Vec<u8> {
    let authorized = authorized_bytes(session_id, b"", entity_id, command).unwrap();
    let sig;
    let auth = match sign {
        Some(k) => {
            sig = k.sign(&authorized).unwrap();
            sig.as_bytes()
        }
        None => auth,
    };
    let mut w = Writer::new();
    w.short(auth).unwrap().raw(&authorized);
    encode_block(&encode_batch(&w.into_vec()).unwrap()).unwrap()
}

/// The server still serves: a fresh client uploads and downloads, and
/// `watcher` (connected before the bad input) still answers PING.
async fn still_serving(server: &Server, watcher: &XftpClient) {
    assert!(!watcher.is_closed(), "an innocent connection was closed");
    watcher
        .ping()
        .await
        .expect("the watcher's connection still works");
    let fresh = server.client().await;
    let c = create_uploaded(&fresh, chunk(K64, 99), 1).await;
    assert_eq!(download(&fresh, &c, 0).await.unwrap(), c.content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_blocks_are_err_block() {
    let env = Env::new();
    let server = env.start_default().await;
    let watcher = server.client().await;
    let raw = server.raw_handshaken().await;
    let ping = raw.block(b"", &FileCommand::Ping, None);

    // Random 16 KiB: not a padded batch.
    let random = chunk(16384, 1);
    assert_eq!(raw.request(random, &[]).await, err(XftpErrorType::Block));
    // Shorter than a block, including an empty body after the handshake.
    for n in [0, 1, 100, 16383] {
        let r = raw.post(Bytes::copy_from_slice(&ping[..n])).await;
        assert_eq!(
            raw.response(&r.body),
            err(XftpErrorType::Block),
            "{n} bytes"
        );
    }
    // Longer: the first 16384 bytes are the block, the rest is ignored.
    assert_eq!(
        raw.request(ping.clone(), &[7; 500]).await,
        FileResponse::Pong
    );
    // Padding: a length past the end, or zero content, is BLOCK ...
    for len in [16383u16, 16382, 0xffff, 0] {
        let mut b = ping.clone();
        b[..2].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            raw.request(b, &[]).await,
            err(XftpErrorType::Block),
            "{len}"
        );
    }
    // ... but the pad bytes themselves are not checked (reference `unPad`).
    let mut b = ping.clone();
    b[1000..].fill(0);
    assert_eq!(raw.request(b, &[]).await, FileResponse::Pong);
    // A batch of two, or of none.
    for count in [0u8, 2] {
        let mut b = ping.clone();
        b[2] = count;
        assert_eq!(raw.request(b, &[]).await, err(XftpErrorType::Block));
    }
    // A transmission shorter than its Large length says.
    let mut b = ping.clone();
    b[4] += 1;
    assert_eq!(raw.request(b, &[]).await, err(XftpErrorType::Block));
    // An auth field of a length no key produces.
    let ping_cmd = b"PING";
    let b = block_of(&raw.session_id, b"", ping_cmd, &[1; 10], None);
    assert_eq!(raw.request(b, &[]).await, err(XftpErrorType::Block));

    assert!(!raw.is_closed(), "bad blocks do not close the connection");
    assert_eq!(raw.ping().await, FileResponse::Pong);
    still_serving(&server, &watcher).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_auth_and_command_errors() {
    let env = Env::new();
    let server = env.start_default().await;
    let watcher = server.client().await;
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(K64, 2), 1).await;
    let raw = server.raw_handshaken().await;
    let sid = &raw.session_id;

    // Another connection's session ID → SESSION (also for a signed command).
    let other = server.raw_handshaken().await;
    assert_ne!(other.session_id, raw.session_id);
    let foreign = other.block(b"", &FileCommand::Ping, None);
    assert_eq!(raw.request(foreign, &[]).await, err(XftpErrorType::Session));
    let foreign = other.block(&c.rids[0], &fget(), Some(&c.rcv[0]));
    assert_eq!(raw.request(foreign, &[]).await, err(XftpErrorType::Session));
    let short_session = block_of(&sid[..31], b"", b"PING", b"", None);
    assert_eq!(
        raw.request(short_session, &[]).await,
        err(XftpErrorType::Session)
    );

    // A signature that does not verify → AUTH: FNEW with a flipped byte,
    // FGET with a flipped byte, and an FGET signed over other bytes.
    let snd = ed25519();
    let fnew = FileCommand::Fnew {
        file: info(&snd, &chunk(K64, 3)),
        rcv_keys: keys(&[&ed25519()]),
        auth: None,
    };
    let mut b = raw.block(b"", &fnew, Some(&snd));
    assert_eq!(b[5], 64, "auth length");
    b[20] ^= 0x40;
    assert_eq!(raw.request(b, &[]).await, err(XftpErrorType::Auth));
    let mut b = raw.block(&c.rids[0], &fget(), Some(&c.rcv[0]));
    b[6] ^= 1;
    assert_eq!(raw.request(b, &[]).await, err(XftpErrorType::Auth));
    // The signature of the right key, but over a different command.
    let fget_bytes = fget().encode().unwrap();
    let ack_sig = {
        let a = authorized_bytes(sid, b"", &c.rids[0], b"FACK").unwrap();
        c.rcv[0].sign(&a).unwrap()
    };
    let b = block_of(sid, &c.rids[0], &fget_bytes, ack_sig.as_bytes(), None);
    assert_eq!(raw.request(b, &[]).await, err(XftpErrorType::Auth));

    // Unknown tag, bad syntax.
    let b = block_of(sid, b"", b"HELO", b"", None);
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::Unknown));
    let b = block_of(sid, &c.rids[0], b"fget", b"", Some(&c.rcv[0]));
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::Unknown));
    let b = block_of(sid, &c.rids[0], b"FGET \x05hello", b"", Some(&c.rcv[0]));
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::Syntax));
    let b = block_of(sid, b"", b"FNEW", b"", Some(&snd));
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::Syntax));
    let mut fnew_bytes = fnew.encode().unwrap();
    fnew_bytes.truncate(fnew_bytes.len() - 10);
    let b = block_of(sid, b"", &fnew_bytes, b"", Some(&snd));
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::Syntax));
    // FNEW whose recipient list is empty.
    let mut w = Writer::new();
    w.raw(b"FNEW ");
    info(&snd, &chunk(K64, 3)).write(&mut w).unwrap();
    w.u8(0).raw(b"0");
    let b = block_of(sid, b"", &w.into_vec(), b"", Some(&snd));
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::Syntax));

    // Credentials (checkCredentials).
    let stranger = ed25519();
    let b = block_of(sid, b"", b"PING", b"", Some(&stranger));
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::HasAuth));
    let b = block_of(sid, &c.rids[0], b"PING", b"", None);
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::HasAuth));
    let b = raw.block(b"", &fnew, None);
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::NoAuth));
    let b = raw.block(&c.sid, &fnew, Some(&snd));
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::HasAuth));
    let b = raw.block(&c.rids[0], &fget(), None);
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::NoAuth));
    let b = raw.block(b"", &FileCommand::Fdel, Some(&c.snd));
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::NoAuth));
    let b = raw.block(&c.rids[0], &FileCommand::Fack, None);
    assert_eq!(raw.request(b, &[]).await, cmd_err(CommandError::NoAuth));

    // None of that changed the file.
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    assert!(!raw.is_closed());
    still_serving(&server, &watcher).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_errors_are_bare_words() {
    let env = Env::new();
    let server = env.start_default().await;
    let watcher = server.client().await;
    let bare = |body: &[u8]| {
        assert_eq!(body.len(), 16384);
        bare_error_word(body).map(str::to_owned)
    };

    // A command before the handshake → HANDSHAKE; nothing changes.
    let raw = server.raw().await;
    let ping = raw.block(b"", &FileCommand::Ping, None);
    let r = raw.post(ping.clone()).await;
    assert_eq!(bare(&r.body).as_deref(), Some("HANDSHAKE"));
    let r = raw.post(chunk(16384, 4)).await;
    assert_eq!(bare(&r.body).as_deref(), Some("HANDSHAKE"));

    // Hello sent; then garbage, wrong key hash, versions outside 1..3, a
    // short block, a second empty hello — each HANDSHAKE, state kept.
    let hello = raw.post(Bytes::new()).await;
    assert!(bare(&hello.body).is_none(), "a server handshake");
    let good = ClientHandshake {
        version: 3,
        key_hash: server.key_hash.to_vec(),
    }
    .encode_block()
    .unwrap();
    let bad_hash = ClientHandshake {
        version: 3,
        key_hash: vec![0; 32],
    }
    .encode_block()
    .unwrap();
    let version = |v| {
        ClientHandshake {
            version: v,
            key_hash: server.key_hash.to_vec(),
        }
        .encode_block()
        .unwrap()
    };
    for (what, body) in [
        ("garbage", chunk(16384, 5)),
        ("zeros", vec![0; 16384]),
        ("wrong key hash", bad_hash),
        ("version 0", version(0)),
        ("version 4", version(4)),
        ("short block", good[..1000].to_vec()),
        ("empty hello again", Vec::new()),
        ("a command", ping.clone()),
        ("padded HANDSHAKE", pad(b"HANDSHAKE", 16384).unwrap()),
    ] {
        let r = raw.post(body).await;
        assert_eq!(bare(&r.body).as_deref(), Some("HANDSHAKE"), "{what}");
    }
    // The client may still complete the handshake, and then works.
    let done = raw.post(good).await;
    assert!(done.body.is_empty());
    assert_eq!(raw.ping().await, FileResponse::Pong);
    // A second client handshake is now a (malformed) command block.
    let again = ClientHandshake {
        version: 3,
        key_hash: server.key_hash.to_vec(),
    }
    .encode_block()
    .unwrap();
    assert_eq!(raw.request(again, &[]).await, err(XftpErrorType::Block));

    // Version 1 and 2 are accepted through the handshake too.
    for v in [1, 2] {
        let raw = server.raw().await;
        raw.post(Bytes::new()).await;
        assert!(raw.post(version(v)).await.body.is_empty(), "version {v}");
        assert_eq!(raw.ping().await, FileResponse::Pong);
    }
    still_serving(&server, &watcher).await;
    server.stop().await;
}

/// An FPUT whose body stops halfway: the connection is cut (`cut_tcp`) or
/// only the stream is reset. The partial file must go, the reservation
/// must be released (the quota fits exactly one chunk), the record must
/// stay, and the upload must succeed when retried. Repeated `rounds` times
/// because a wrong server loses the race only some of the time.
async fn interrupted_upload(cut_tcp: bool, rounds: u8) {
    let env = Env::new();
    let mut s = env.settings();
    s.quota = Some(K64 as u64);
    let server = env.start(s).await;
    let watcher = server.client().await;
    let client = server.client().await;
    let files = env.files_dir();
    let part_len = || {
        std::fs::read_dir(&files)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .map(|e| e.metadata().unwrap().len())
    };
    for round in 0..rounds {
        let c = create(&client, chunk(K64, 6 + round), 1).await;
        let raw = server.raw_handshaken().await;
        let (tx, answer) = raw.post_streaming();
        tx.send(raw.block(&c.sid, &FileCommand::Fput, Some(&c.snd)).into())
            .await
            .unwrap();
        tx.send(Bytes::copy_from_slice(&c.content[..K64 / 2]))
            .await
            .unwrap();
        // The .part file exists once the quota is reserved and the body is
        // being received (its bytes may still sit in the write buffer).
        eventually("the upload is being written", || part_len().is_some()).await;
        if cut_tcp {
            raw.cut();
        } else {
            // Dropping the request resets the stream (RST_STREAM CANCEL).
            answer.abort();
        }
        drop(tx);
        eventually("the partial file is removed", || part_len().is_none()).await;
        assert!(dir_names(&files).is_empty());

        // The record stays, with nothing uploaded, and nothing reserved.
        assert_err(download(&client, &c, 0).await, XftpErrorType::NoFile);
        upload(&client, &c)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the retry must fit the quota: {e:?}"));
        assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
        client.delete_file(&c.sid, &c.snd).await.unwrap();
    }
    still_serving_quota_full(&server, &watcher).await;
    server.stop().await;
}

/// As [`still_serving`] when the quota is used up: PING on both.
async fn still_serving_quota_full(server: &Server, watcher: &XftpClient) {
    assert!(!watcher.is_closed(), "an innocent connection was closed");
    watcher.ping().await.unwrap();
    server.client().await.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_cut_with_the_connection() {
    interrupted_upload(true, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_cut_by_a_stream_reset() {
    interrupted_upload(false, 10).await;
}

/// Two uploads of one chunk at once (issue 14, fault 2): upload A is half
/// sent, upload B of the same chunk on a second connection (a client
/// retrying) sends its request and a little body and is cancelled, then A
/// completes. A's OK must stand for A's bytes: each upload writes its own
/// file, so B can neither truncate nor remove A's. Then the same with both
/// completing: one chunk is kept, and both are answered OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upload_of_the_same_chunk_leaves_the_first_intact() {
    const M4: usize = 4 << 20;
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let files = env.files_dir();
    let parts = || {
        dir_names(&files)
            .iter()
            .filter(|n| n.ends_with(".part"))
            .count()
    };
    for round in 0..3u8 {
        let c = create(&client, chunk(M4, 40 + round), 1).await;
        let (a, b) = (server.raw_handshaken().await, server.raw_handshaken().await);
        let (ta, answer_a) = a.post_streaming();
        ta.send(a.block(&c.sid, &FileCommand::Fput, Some(&c.snd)).into())
            .await
            .unwrap();
        for piece in c.content[..M4 / 2].chunks(K64) {
            ta.send(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        eventually("A is being written", || parts() == 1).await;

        let (tb, answer_b) = b.post_streaming();
        tb.send(b.block(&c.sid, &FileCommand::Fput, Some(&c.snd)).into())
            .await
            .unwrap();
        tb.send(Bytes::copy_from_slice(&c.content[..K64]))
            .await
            .unwrap();
        eventually("B is being written beside A", || parts() == 2).await;
        answer_b.abort();
        drop(tb);
        eventually("B's file is removed", || parts() == 1).await;

        for piece in c.content[M4 / 2..].chunks(K64) {
            ta.send(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        drop(ta);
        let answer = answer_a.await.unwrap().expect("A is answered");
        assert_eq!(a.response(&answer.body), FileResponse::Ok, "round {round}");
        let got = download(&client, &c, 0).await.unwrap();
        assert!(
            got == c.content,
            "round {round}: the stored chunk is not A's bytes"
        );
        assert_eq!(parts(), 0);
    }

    // Both complete: whichever is second finds the chunk stored.
    let c = create(&client, chunk(M4, 50), 1).await;
    let (a, b) = (server.raw_handshaken().await, server.raw_handshaken().await);
    let mut senders = Vec::new();
    for raw in [&a, &b] {
        let (tx, answer) = raw.post_streaming();
        tx.send(raw.block(&c.sid, &FileCommand::Fput, Some(&c.snd)).into())
            .await
            .unwrap();
        for piece in c.content[..M4 - K64].chunks(K64) {
            tx.send(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        senders.push((tx, answer));
    }
    eventually("both are being written", || parts() == 2).await;
    let mut answers = Vec::new();
    for (tx, answer) in senders {
        tx.send(Bytes::copy_from_slice(&c.content[M4 - K64..]))
            .await
            .unwrap();
        drop(tx);
        answers.push(answer);
    }
    for (raw, answer) in [&a, &b].into_iter().zip(answers) {
        let answer = answer.await.unwrap().expect("answered");
        assert_eq!(raw.response(&answer.body), FileResponse::Ok);
    }
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    assert_eq!(parts(), 0, "the second upload's file is gone");
    assert_eq!(
        dir_names(&files).len(),
        4,
        "one file per chunk: {:?}",
        dir_names(&files)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_upload_is_size() {
    let env = Env::new();
    let server = env.start_default().await;
    let watcher = server.client().await;
    let client = server.client().await;
    let c = create(&client, chunk(K64, 7), 1).await;
    let raw = server.raw_handshaken().await;
    // The chunk followed by 1 MiB more, in one buffer and frame by frame.
    let mut body = raw.block(&c.sid, &FileCommand::Fput, Some(&c.snd));
    body.extend_from_slice(&c.content);
    body.extend_from_slice(&chunk(1 << 20, 8));
    assert_eq!(
        raw.response(&raw.post(body.clone()).await.body),
        err(XftpErrorType::Size)
    );
    let frames = body.chunks(10_000).map(Bytes::copy_from_slice).collect();
    assert_eq!(
        raw.response(&raw.post_frames(frames).await.body),
        err(XftpErrorType::Size)
    );
    assert!(dir_names(&env.files_dir()).is_empty());
    assert_err(download(&client, &c, 0).await, XftpErrorType::NoFile);
    upload(&client, &c).await.unwrap();
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    still_serving(&server, &watcher).await;
    server.stop().await;
}

#[derive(Debug, Clone)]
enum Input {
    /// 16384 random bytes.
    Random(Vec<u8>),
    /// A random body of any length up to a block and a bit.
    AnyLength(Vec<u8>),
    /// A valid signed FNEW block with bytes of its content XORed.
    Mutated(Vec<(usize, u8)>),
}

/// `n` pseudo-random bytes from `seed` (generating them byte by byte with
/// proptest is slow in debug builds).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn random_blocks_get_err_and_harm_no_one() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = Env::new();
    let (server, watcher, raw, file) = rt.block_on(async {
        let server = env.start_default().await;
        let watcher = server.client().await;
        let raw = server.raw_handshaken().await;
        let c = create_uploaded(&watcher, chunk(K64, 9), 1).await;
        (server, watcher, raw, c)
    });
    let snd = ed25519();
    let fnew = FileCommand::Fnew {
        file: info(&snd, &chunk(K64, 10)),
        rcv_keys: keys(&[&ed25519()]),
        auth: None,
    };
    let valid = raw.block(b"", &fnew, Some(&snd));
    let content_len = usize::from(u16::from_be_bytes([valid[0], valid[1]])) + 2;

    let strategy = prop_oneof![
        any::<u64>().prop_map(|seed| Input::Random(noise(16384, seed))),
        (0..17000usize, any::<u64>()).prop_map(|(n, seed)| Input::AnyLength(noise(n, seed))),
        proptest::collection::vec((0..content_len, 1..=255u8), 1..6).prop_map(Input::Mutated),
    ];
    let config = Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&strategy, |input| {
            let body = match input {
                Input::Random(b) | Input::AnyLength(b) => b,
                Input::Mutated(flips) => {
                    let mut b = valid.clone();
                    for (i, x) in flips {
                        b[i] ^= x;
                    }
                    b
                }
            };
            let resp = rt.block_on(raw.post(body));
            prop_assert_eq!(resp.body.len(), 16384);
            let decoded =
                smp_core::xftp::transmission::decode_response_block(&resp.body, &raw.session_id);
            let t = decoded.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert!(
                matches!(t.response, Ok(FileResponse::Err(_))),
                "not an ERR: {:?}",
                t.response
            );
            prop_assert!(!raw.is_closed());
            Ok(())
        })
        .unwrap();

    rt.block_on(async {
        assert_eq!(raw.ping().await, FileResponse::Pong);
        assert_eq!(download(&watcher, &file, 0).await.unwrap(), file.content);
        still_serving(&server, &watcher).await;
        drop(raw);
        drop(watcher);
        server.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alpn_is_version_1_without_handshake() {
    let env = Env::new();
    let server = env.start_default().await;
    let watcher = server.client().await;
    let raw = RawConn::connect(&server, None).await.unwrap();
    assert_eq!(raw.alpn, None);
    // No handshake: an empty body is a 0-byte block.
    let r = raw.post(Bytes::new()).await;
    assert_eq!(raw.response(&r.body), err(XftpErrorType::Block));
    assert_eq!(raw.ping().await, FileResponse::Pong);

    // Signed commands work on version 1.
    let content = chunk(K64, 11);
    let snd = PrivateKey::generate(KeyAlgorithm::Ed448);
    let rcv = ed25519();
    let fnew = FileCommand::Fnew {
        file: info(&snd, &content),
        rcv_keys: keys(&[&rcv]),
        auth: None,
    };
    let FileResponse::SndIds {
        sender_id,
        recipient_ids,
    } = raw.command(b"", &fnew, Some(&snd)).await
    else {
        panic!("SIDS expected");
    };
    let put = raw.block(&sender_id, &FileCommand::Fput, Some(&snd));
    assert_eq!(raw.request(put, &content).await, FileResponse::Ok);
    // A handshaken client downloads it.
    let c = Chunk {
        content,
        snd,
        sid: sender_id,
        rcv: vec![rcv],
        rids: recipient_ids,
    };
    assert_eq!(download(&watcher, &c, 0).await.unwrap(), c.content);
    // No session key on version 1: an X25519 authenticator cannot verify.
    let x_rcv = PrivateKey::generate(KeyAlgorithm::X25519);
    let add = FileCommand::Fadd {
        rcv_keys: keys(&[&x_rcv]),
    };
    let ids = match raw.command(&c.sid, &add, Some(&c.snd)).await {
        FileResponse::RcvIds { recipient_ids } => recipient_ids,
        other => panic!("RIDS expected, got {other:?}"),
    };
    let b = block_of(&raw.session_id, &ids[0], b"FACK", &[9; 80], None);
    assert_eq!(raw.request(b, &[]).await, err(XftpErrorType::Auth));
    raw.command(&c.sid, &FileCommand::Fdel, Some(&c.snd)).await;
    still_serving(&server, &watcher).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_the_server_does_not_offer_fails_the_tls_handshake() {
    let env = Env::new();
    let server = env.start_default().await;
    let watcher = server.client().await;
    for alpn in [&b"foo/1"[..], b"smp/1", b"h3"] {
        // The server refuses with no_application_protocol; what the client
        // reports (the alert or the closed socket) is rustls's business.
        let r = RawConn::connect(&server, Some(alpn)).await;
        assert!(
            matches!(r, Err(TlsError::Handshake(_) | TlsError::Io(_))),
            "{alpn:?}: the TLS handshake must fail"
        );
    }
    // `h2` without SNI: every request gets an empty 200 and no processing.
    let h2 = RawConn::connect(&server, Some(b"h2")).await.unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert!(h2.post(Bytes::new()).await.body.is_empty());
    let ping = h2.block(b"", &FileCommand::Ping, None);
    assert!(h2.post(ping).await.body.is_empty());
    // `http/1.1` is the XFTP handshake path, like `xftp/1`.
    let h1 = RawConn::connect(&server, Some(b"http/1.1")).await.unwrap();
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    h1.handshake(&server.key_hash).await;
    assert_eq!(h1.ping().await, FileResponse::Pong);
    still_serving(&server, &watcher).await;
    server.stop().await;
}
