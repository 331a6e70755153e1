//! Every XFTP command against a real server over TLS + HTTP/2 on loopback:
//! the success path and each error the reference defines (xftp.md §7.2,
//! §8.2, scenarios of §11.2). `HAS_FILE` is defined but never sent by the
//! reference server, so nothing here can provoke it.

mod support;

use bytes::Bytes;
use smp_core::client::xftp::XftpClientError;
use smp_core::crypto::digest::sha256;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::encoding::string::b64_encode;
use smp_core::xftp::command::{BasicAuth, FileCommand, FileInfo};
use smp_core::xftp::error::XftpErrorType::{Auth, Digest, FileIo, NoFile, Quota, Size};
use smp_core::xftp::response::FileResponse;
use support::*;

const K64: usize = 65536;

fn chunk_path(env: &Env, sid: &[u8]) -> std::path::PathBuf {
    env.files_dir().join(b64_encode(sid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fnew_with_one_and_several_recipients() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;

    let one = create(&client, chunk(K64, 1), 1).await;
    assert_eq!(one.rids.len(), 1);
    assert_ne!(one.rids[0], one.sid);

    let three = create_uploaded(&client, chunk(K64, 2), 3).await;
    assert_eq!(three.rids.len(), 3);
    let mut ids = vec![three.sid.clone(), one.sid.clone(), one.rids[0].clone()];
    ids.extend(three.rids.iter().cloned());
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "all IDs are distinct");
    // Recipient IDs come in key order: each works only with its own key.
    for i in 0..3 {
        assert_eq!(download(&client, &three, i).await.unwrap(), three.content);
    }
    let swapped = client
        .download_chunk(
            &three.rids[0],
            &three.rcv[1],
            three.size(),
            &sha256(&three.content),
            &mut Vec::new(),
        )
        .await;
    assert_err(swapped, Auth);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fnew_create_password() {
    let env = Env::new();
    let mut s = env.settings();
    s.create_password = Some(BasicAuth::new(b"pwd").unwrap());
    let server = env.start(s).await;
    let client = server.client().await;
    let content = chunk(K64, 3);
    let snd = ed25519();
    let rcv = ed25519();
    let fnew = |auth: Option<&[u8]>| {
        client.create_file(
            &snd,
            info(&snd, &content),
            keys(&[&rcv]),
            auth.map(|a| BasicAuth::new(a).unwrap()),
        )
    };
    assert_err(fnew(None).await, Auth);
    assert_err(fnew(Some(b"wrong")).await, Auth);
    assert_err(fnew(Some(b"pwdx")).await, Auth);
    let (sid, rids) = fnew(Some(b"pwd")).await.unwrap();
    client
        .upload_chunk(
            &sid,
            &snd,
            std::io::Cursor::new(content.clone()),
            K64 as u32,
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    client
        .download_chunk(&rids[0], &rcv, K64 as u32, &sha256(&content), &mut out)
        .await
        .unwrap();
    assert_eq!(out, content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fnew_refused_when_new_files_are_off() {
    let env = Env::new();
    let mut s = env.settings();
    s.allow_new_files = false;
    s.create_password = Some(BasicAuth::new(b"pwd").unwrap());
    let server = env.start(s).await;
    let client = server.client().await;
    let content = chunk(K64, 4);
    let snd = ed25519();
    for auth in [Some(&b"pwd"[..]), None] {
        let r = client
            .create_file(
                &snd,
                info(&snd, &content),
                keys(&[&ed25519()]),
                auth.map(|a| BasicAuth::new(a).unwrap()),
            )
            .await;
        assert_err(r, Auth);
    }
    // Everything else still works.
    client.ping().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fnew_without_configured_password_accepts_any_auth() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let content = chunk(K64, 5);
    let snd = ed25519();
    let rcv = ed25519();
    let (sid, rids) = client
        .create_file(
            &snd,
            info(&snd, &content),
            keys(&[&rcv]),
            Some(BasicAuth::new(b"any").unwrap()),
        )
        .await
        .unwrap();
    let c = Chunk {
        content,
        snd,
        sid,
        rcv: vec![rcv],
        rids,
    };
    upload(&client, &c).await.unwrap();
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fnew_size_must_be_allowed() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let snd = ed25519();
    // 96 KiB (scenario 13) and 128 KiB (only the reference's test config).
    for size in [96 * 1024, 128 * 1024, 1, 0, 4 * 1024 * 1024 + 1] {
        let info = FileInfo {
            snd_key: snd.public_key(),
            size,
            digest: vec![0; 32],
        };
        let r = client
            .create_file(&snd, info, keys(&[&ed25519()]), None)
            .await;
        assert_err(r, Size);
    }
    for size in [64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024] {
        let info = FileInfo {
            snd_key: snd.public_key(),
            size,
            digest: vec![0; 32],
        };
        client
            .create_file(&snd, info, keys(&[&ed25519()]), None)
            .await
            .unwrap_or_else(|e| panic!("{size}: {e:?}"));
    }
    server.stop().await;

    // The reference's test configuration allows 128 KiB; a custom list is obeyed.
    let mut s = env.settings();
    s.allowed_chunk_sizes = vec![128 * 1024];
    let server = env.start(s).await;
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(128 * 1024, 6), 1).await;
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    let r = client
        .create_file(&snd, info(&snd, &chunk(K64, 7)), keys(&[&ed25519()]), None)
        .await;
    assert_err(r, Size);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fadd_before_and_after_upload() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let mut c = create(&client, chunk(K64, 8), 1).await;
    let (r2, r3) = (ed25519(), ed25519());
    let before = client
        .add_recipients(&c.sid, &c.snd, keys(&[&r2, &r3]))
        .await
        .unwrap();
    assert_eq!(before.len(), 2);
    upload(&client, &c).await.unwrap();
    let r4 = ed25519();
    let after = client
        .add_recipients(&c.sid, &c.snd, keys(&[&r4]))
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    c.rids.extend(before.into_iter().chain(after));
    c.rcv.extend([r2, r3, r4]);
    // Each recipient on its own connection (scenario 6).
    for i in 0..4 {
        let own = server.client().await;
        assert_eq!(download(&own, &c, i).await.unwrap(), c.content, "r{i}");
    }
    // The keys were bound in order: r2's ID does not accept r3's key.
    let mut wrong = Chunk { ..c };
    wrong.rcv.swap(1, 2);
    assert_err(download(&client, &wrong, 1).await, Auth);
    // FADD with a recipient ID, or signed by a recipient, is refused.
    assert_err(
        client
            .add_recipients(&wrong.rids[0], &wrong.snd, keys(&[&ed25519()]))
            .await,
        Auth,
    );
    assert_err(
        client
            .add_recipients(&wrong.sid, &wrong.rcv[0], keys(&[&ed25519()]))
            .await,
        Auth,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fput_stores_the_chunk_and_a_retry_keeps_it() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(K64, 9), 1).await;
    // Scenario 2: the chunk file is <files>/<b64u(senderId)> with the bytes.
    let path = chunk_path(&env, &c.sid);
    assert_eq!(path.file_name().unwrap().len(), 24);
    assert_eq!(std::fs::read(&path).unwrap(), c.content);
    assert_eq!(dir_names(&env.files_dir()).len(), 1);

    // Scenario 14: a second FPUT with other bytes of the same size is OK and
    // changes nothing.
    let other = chunk(K64, 10);
    client
        .upload_chunk(&c.sid, &c.snd, std::io::Cursor::new(other), K64 as u32)
        .await
        .unwrap();
    upload(&client, &c).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), c.content);
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);

    // A retried upload whose body is short is still SIZE (the body must be
    // consumed exactly), and the content stays.
    let raw = server.raw_handshaken().await;
    let mut body = raw.block(&c.sid, &FileCommand::Fput, Some(&c.snd));
    body.extend_from_slice(&c.content[..K64 - 1]);
    let r = raw.post(body).await;
    assert_eq!(raw.response(&r.body), FileResponse::Err(Size));
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fput_wrong_digest_then_the_sender_retries() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let c = create(&client, chunk(K64, 11), 1).await;
    // Corrupted in transit: DIGEST, nothing kept.
    let mut corrupted = c.content.clone();
    corrupted[1000] ^= 1;
    let r = client
        .upload_chunk(&c.sid, &c.snd, std::io::Cursor::new(corrupted), K64 as u32)
        .await;
    assert_err(r, Digest);
    assert!(dir_names(&env.files_dir()).is_empty(), "no partial file");
    assert_err(download(&client, &c, 0).await, NoFile);
    // The record stays: the right bytes are accepted on the same sender ID.
    upload(&client, &c).await.unwrap();
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);

    // Scenario 3: a digest with `_wrong` appended (38 bytes) is accepted by
    // FNEW, and the upload then fails with DIGEST.
    let snd = ed25519();
    let mut digest = sha256(&c.content).to_vec();
    digest.extend_from_slice(b"_wrong");
    let info = FileInfo {
        snd_key: snd.public_key(),
        size: K64 as u32,
        digest,
    };
    let (sid, _) = client
        .create_file(&snd, info, keys(&[&ed25519()]), None)
        .await
        .unwrap();
    let r = client
        .upload_chunk(
            &sid,
            &snd,
            std::io::Cursor::new(c.content.clone()),
            K64 as u32,
        )
        .await;
    assert_err(r, Digest);

    // Scenario 4: the client expects another digest → its own DIGEST error.
    let wrong = client
        .download_chunk(&c.rids[0], &c.rcv[0], c.size(), &[0; 32], &mut Vec::new())
        .await;
    assert!(
        matches!(wrong, Err(XftpClientError::ChunkDigest)),
        "{wrong:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fput_body_of_the_wrong_size() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let c = create(&client, chunk(K64, 12), 1).await;
    let raw = server.raw_handshaken().await;
    let block = || Bytes::from(raw.block(&c.sid, &FileCommand::Fput, Some(&c.snd)));
    let body = |n: usize| Bytes::from(chunk(n, 12));
    let cases: Vec<(&str, Vec<Bytes>)> = vec![
        ("no body", vec![block()]),
        ("one byte short", vec![block(), body(K64 - 1)]),
        ("one block short", vec![block(), body(K64 - 16384)]),
        ("one byte long", vec![block(), body(K64 + 1)]),
        ("a block long", vec![block(), body(K64 + 16384)]),
        // The right bytes, then more in a DATA frame of their own.
        (
            "one byte long, own frame",
            vec![block(), body(K64), body(1)],
        ),
        (
            "a block long, own frame",
            vec![block(), body(K64), body(16384)],
        ),
    ];
    for (what, frames) in cases {
        let r = raw.post_frames(frames).await;
        assert_eq!(raw.response(&r.body), FileResponse::Err(Size), "{what}");
        assert!(
            dir_names(&env.files_dir()).is_empty(),
            "{what}: no file left"
        );
        assert_err(download(&client, &c, 0).await, NoFile);
    }
    // The right size in any framing is accepted.
    let (head, tail) = c.content.split_at(1000);
    let r = raw
        .post_frames(vec![
            block(),
            Bytes::copy_from_slice(head),
            Bytes::copy_from_slice(tail),
        ])
        .await;
    assert_eq!(raw.response(&r.body), FileResponse::Ok);
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fput_beyond_the_quota() {
    let env = Env::new();
    let mut s = env.settings();
    s.quota = Some(2 * K64 as u64);
    let server = env.start(s).await;
    let client = server.client().await;
    // Scenario 15: two chunks fill the quota.
    let c1 = create_uploaded(&client, chunk(K64, 13), 1).await;
    let c2 = create_uploaded(&client, chunk(K64, 14), 1).await;
    assert_eq!(download(&client, &c1, 0).await.unwrap(), c1.content);
    assert_eq!(download(&client, &c2, 0).await.unwrap(), c2.content);
    // Scenario 16: FNEW reserves nothing; FPUT does, and is refused.
    let c3 = create(&client, chunk(K64, 15), 1).await;
    assert_err(upload(&client, &c3).await, Quota);
    assert_err(upload(&client, &c3).await, Quota);
    assert_eq!(dir_names(&env.files_dir()).len(), 2);
    // A retried FPUT of an uploaded chunk needs no quota.
    upload(&client, &c2).await.unwrap();
    // Scenario 17: deleting frees the space for the same sender ID.
    client.delete_file(&c1.sid, &c1.snd).await.unwrap();
    upload(&client, &c3).await.unwrap();
    assert_eq!(download(&client, &c3, 0).await.unwrap(), c3.content);
    let c4 = create(&client, chunk(K64, 16), 1).await;
    assert_err(upload(&client, &c4).await, Quota);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fput_without_the_files_directory() {
    let env = Env::new();
    let mut s = env.settings();
    let missing = env.dir.path().join("not-created");
    s.files_dir = missing.clone();
    let server = env.start(s).await;
    let client = server.client().await;
    let c = create(&client, chunk(K64, 17), 1).await;
    assert_err(upload(&client, &c).await, FileIo);
    assert_err(upload(&client, &c).await, FileIo);
    // The record and the quota are intact: once the directory exists the
    // same sender ID uploads.
    std::fs::create_dir(&missing).unwrap();
    upload(&client, &c).await.unwrap();
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    assert_eq!(dir_names(&missing), vec![b64_encode(&c.sid)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fget_before_upload_and_by_two_recipients() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let c = create(&client, chunk(K64, 18), 2).await;
    assert_err(download(&client, &c, 0).await, NoFile);
    assert_err(download(&client, &c, 1).await, NoFile);
    upload(&client, &c).await.unwrap();
    let (a, b) = (server.client().await, server.client().await);
    let (d0, d1) = tokio::join!(download(&a, &c, 0), download(&b, &c, 1));
    assert_eq!(d0.unwrap(), c.content);
    assert_eq!(d1.unwrap(), c.content);
    // Downloading again works until acknowledged.
    assert_eq!(download(&a, &c, 0).await.unwrap(), c.content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fack_removes_only_that_recipient() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(K64, 19), 2).await;
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    client.ack_file(&c.rids[0], &c.rcv[0]).await.unwrap();
    // Scenario 10: the chunk is still on disk, unchanged.
    assert_eq!(std::fs::read(chunk_path(&env, &c.sid)).unwrap(), c.content);
    // Scenarios 11, 12.
    assert_err(download(&client, &c, 0).await, Auth);
    assert_err(client.ack_file(&c.rids[0], &c.rcv[0]).await, Auth);
    // The other recipient is unaffected; FACK works without a download too.
    let other = server.client().await;
    assert_eq!(download(&other, &c, 1).await.unwrap(), c.content);
    // FACK signed by the sender, or with the sender ID, is refused.
    assert_err(other.ack_file(&c.rids[1], &c.snd).await, Auth);
    assert_err(other.ack_file(&c.sid, &c.rcv[1]).await, Auth);
    other.ack_file(&c.rids[1], &c.rcv[1]).await.unwrap();
    assert_err(download(&other, &c, 1).await, Auth);
    // The sender still owns the chunk.
    client.delete_file(&c.sid, &c.snd).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fdel_makes_every_id_unknown() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(K64, 20), 2).await;
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    // FDEL by a recipient (key or ID) is refused and deletes nothing.
    assert_err(client.delete_file(&c.sid, &c.rcv[0]).await, Auth);
    assert_err(client.delete_file(&c.rids[0], &c.rcv[0]).await, Auth);
    assert_err(client.delete_file(&c.rids[0], &c.snd).await, Auth);
    assert!(chunk_path(&env, &c.sid).exists());

    client.delete_file(&c.sid, &c.snd).await.unwrap();
    // Scenario 7: the chunk file is gone.
    assert!(dir_names(&env.files_dir()).is_empty());
    // Scenarios 8, 9 and every other command on every ID.
    assert_err(download(&client, &c, 0).await, Auth);
    assert_err(download(&client, &c, 1).await, Auth);
    assert_err(client.ack_file(&c.rids[1], &c.rcv[1]).await, Auth);
    assert_err(client.delete_file(&c.sid, &c.snd).await, Auth);
    assert_err(upload(&client, &c).await, Auth);
    assert_err(
        client
            .add_recipients(&c.sid, &c.snd, keys(&[&ed25519()]))
            .await,
        Auth,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    for _ in 0..3 {
        client.ping().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_the_other_party_and_unknown_ids_are_auth() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(K64, 21), 1).await;
    let (sid, rid) = (&c.sid, &c.rids[0]);

    // Sender commands with the recipient ID, with either key.
    for key in [&c.snd, &c.rcv[0]] {
        let put = client
            .upload_chunk(rid, key, std::io::Cursor::new(c.content.clone()), c.size())
            .await;
        assert_err(put, Auth);
        assert_err(client.delete_file(rid, key).await, Auth);
        assert_err(
            client.add_recipients(rid, key, keys(&[&ed25519()])).await,
            Auth,
        );
    }
    // Recipient commands with the sender ID, with either key.
    for key in [&c.snd, &c.rcv[0]] {
        let get = client
            .download_chunk(sid, key, c.size(), &sha256(&c.content), &mut Vec::new())
            .await;
        assert_err(get, Auth);
        assert_err(client.ack_file(sid, key).await, Auth);
    }
    // Unknown IDs: random 16 bytes, and IDs of other lengths.
    for unknown in [vec![7u8; 16], vec![1u8; 5], vec![2u8; 24]] {
        assert_err(client.delete_file(&unknown, &c.snd).await, Auth);
        assert_err(client.ack_file(&unknown, &c.rcv[0]).await, Auth);
        let get = client
            .download_chunk(&unknown, &c.rcv[0], c.size(), &[0; 32], &mut Vec::new())
            .await;
        assert_err(get, Auth);
    }
    // Nothing was harmed.
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_by_the_wrong_key_are_auth() {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let c = create(&client, chunk(K64, 22), 1).await;
    let stranger = ed25519();
    let stranger448 = PrivateKey::generate(KeyAlgorithm::Ed448);

    // FNEW signed by a key other than the one it carries.
    let r = client
        .create_file(
            &stranger,
            info(&c.snd, &c.content),
            keys(&[&ed25519()]),
            None,
        )
        .await;
    assert_err(r, Auth);
    for key in [&stranger, &stranger448, &c.rcv[0]] {
        let put = client
            .upload_chunk(
                &c.sid,
                key,
                std::io::Cursor::new(c.content.clone()),
                c.size(),
            )
            .await;
        assert_err(put, Auth);
        assert_err(
            client
                .add_recipients(&c.sid, key, keys(&[&ed25519()]))
                .await,
            Auth,
        );
        assert_err(client.delete_file(&c.sid, key).await, Auth);
    }
    upload(&client, &c).await.unwrap();
    for key in [&stranger, &stranger448, &c.snd] {
        let get = client
            .download_chunk(
                &c.rids[0],
                key,
                c.size(),
                &sha256(&c.content),
                &mut Vec::new(),
            )
            .await;
        assert_err(get, Auth);
        assert_err(client.ack_file(&c.rids[0], key).await, Auth);
    }
    // The rightful keys still work.
    assert_eq!(download(&client, &c, 0).await.unwrap(), c.content);
    client.ack_file(&c.rids[0], &c.rcv[0]).await.unwrap();
    client.delete_file(&c.sid, &c.snd).await.unwrap();
    server.stop().await;
}

/// A chunk whose sender and recipient keys are of the given algorithms.
async fn roundtrip_with_keys(snd_alg: KeyAlgorithm, rcv_alg: KeyAlgorithm, seed: u8) {
    let env = Env::new();
    let server = env.start_default().await;
    let client = server.client().await;
    let content = chunk(K64, seed);
    let snd = PrivateKey::generate(snd_alg);
    let rcv = PrivateKey::generate(rcv_alg);
    let (sid, rids) = client
        .create_file(&snd, info(&snd, &content), keys(&[&rcv]), None)
        .await
        .unwrap();
    let c = Chunk {
        content,
        snd,
        sid,
        rcv: vec![rcv],
        rids,
    };
    upload(&client, &c).await.unwrap();
    let extra = PrivateKey::generate(rcv_alg);
    let more = client
        .add_recipients(&c.sid, &c.snd, keys(&[&extra]))
        .await
        .unwrap();
    // On another connection (another session key for X25519).
    let other = server.client().await;
    assert_eq!(download(&other, &c, 0).await.unwrap(), c.content);
    let mut out = Vec::new();
    other
        .download_chunk(&more[0], &extra, c.size(), &sha256(&c.content), &mut out)
        .await
        .unwrap();
    assert_eq!(out, c.content);
    // A key of the same algorithm that is not the file's is refused.
    let wrong = PrivateKey::generate(rcv_alg);
    let r = other
        .download_chunk(&c.rids[0], &wrong, c.size(), &[0; 32], &mut Vec::new())
        .await;
    assert_err(r, Auth);
    other.ack_file(&c.rids[0], &c.rcv[0]).await.unwrap();
    client.delete_file(&c.sid, &c.snd).await.unwrap();
    assert!(dir_names(&env.files_dir()).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed448_keys() {
    roundtrip_with_keys(KeyAlgorithm::Ed448, KeyAlgorithm::Ed448, 23).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x25519_keys_with_the_crypto_box_authenticator() {
    roundtrip_with_keys(KeyAlgorithm::Ed25519, KeyAlgorithm::X25519, 24).await;
    roundtrip_with_keys(KeyAlgorithm::X25519, KeyAlgorithm::X25519, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_acknowledged_state() {
    let env = Env::new();
    let settings = || {
        let mut s = env.settings();
        s.store_log = Some(env.store_log());
        s
    };
    let server = env.start(settings()).await;
    let client = server.client().await;
    // kept: two recipients, uploaded.
    let kept = create_uploaded(&client, chunk(K64, 26), 2).await;
    // deleted: uploaded, then FDEL.
    let deleted = create_uploaded(&client, chunk(K64, 27), 1).await;
    client
        .delete_file(&deleted.sid, &deleted.snd)
        .await
        .unwrap();
    // acked: recipient 0 acknowledged, recipient 1 not.
    let acked = create_uploaded(&client, chunk(K64, 28), 2).await;
    client
        .ack_file(&acked.rids[0], &acked.rcv[0])
        .await
        .unwrap();
    // pending: created, not uploaded; added: FADD after upload.
    let pending = create(&client, chunk(K64, 29), 1).await;
    let mut added = create_uploaded(&client, chunk(K64, 30), 1).await;
    let late = ed25519();
    added.rids.extend(
        client
            .add_recipients(&added.sid, &added.snd, keys(&[&late]))
            .await
            .unwrap(),
    );
    added.rcv.push(late);
    drop(client);
    server.stop().await;

    let server = env.start(settings()).await;
    let client = server.client().await;
    for i in 0..2 {
        assert_eq!(download(&client, &kept, i).await.unwrap(), kept.content);
    }
    assert_err(download(&client, &deleted, 0).await, Auth);
    assert_err(client.delete_file(&deleted.sid, &deleted.snd).await, Auth);
    assert_err(download(&client, &acked, 0).await, Auth);
    assert_eq!(download(&client, &acked, 1).await.unwrap(), acked.content);
    assert_eq!(download(&client, &added, 1).await.unwrap(), added.content);
    assert_err(download(&client, &pending, 0).await, NoFile);
    upload(&client, &pending).await.unwrap();
    assert_eq!(
        download(&client, &pending, 0).await.unwrap(),
        pending.content
    );
    let mut want: Vec<String> = [&kept, &acked, &added, &pending]
        .iter()
        .map(|c| b64_encode(&c.sid))
        .collect();
    want.sort();
    assert_eq!(dir_names(&env.files_dir()), want);
    drop(client);
    server.stop().await;

    // A server without the store log knows nothing (scenario 21).
    let server = env.start_default().await;
    let client = server.client().await;
    assert_err(download(&client, &kept, 0).await, Auth);
    drop(client);
    server.stop().await;
    // ... and the log still does (the files were not swept: they are owned).
    let server = env.start(settings()).await;
    let client = server.client().await;
    assert_eq!(download(&client, &kept, 1).await.unwrap(), kept.content);
    server.stop().await;
}
