//! The agent store: permissions, the profile lock, atomic step commits,
//! dedupe, outbox/inbox order, names, and everything surviving a reopen.
#![cfg(feature = "agent")]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use smp_core::client::agent::store::*;
use zeroize::Zeroizing;

const CHILD_ENV: &str = "AGENT_STORE_TEST_CHILD_DIR";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn send(snd_id: &[u8], body: &[u8]) -> OutboxItem {
    OutboxItem {
        queue: QueueRef {
            server: "smp://a@h".into(),
            snd_id: snd_id.to_vec(),
        },
        body: body.to_vec(),
        sender_key: Some(Zeroizing::new(b"der-key".to_vec())),
        notify: true,
    }
}

fn processed(msg_id: &[u8]) -> ProcessedMsg {
    ProcessedMsg {
        server: "smp://a@h".into(),
        rcv_id: b"rcv1".to_vec(),
        msg_id: msg_id.to_vec(),
    }
}

#[test]
fn creates_private_dir_and_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a").join("profile");
    let s = Store::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
    assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
    assert_eq!(s.dir(), dir);
    drop(s);

    // A database file someone widened is narrowed again.
    std::fs::set_permissions(dir.join(DB_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(&dir).unwrap());
    assert_eq!(mode(&dir.join(DB_FILE)), 0o600);

    // A directory others can write is refused, and left alone.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(Store::open(&dir), Err(StoreError::Permissions(_))));
    assert_eq!(mode(&dir), 0o777);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(Store::open(&dir).unwrap());

    // Not a directory.
    let f = t.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    assert!(matches!(Store::open(&f), Err(StoreError::Permissions(_))));
}

#[test]
fn not_a_database_is_corrupt() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(DB_FILE), vec![0x55u8; 8192]).unwrap();
    assert!(matches!(Store::open(&dir), Err(StoreError::Corrupt(_))));
}

/// Run only as the child of `lock_excludes_other_processes`: opening the
/// profile the parent holds must fail with `Locked`.
#[test]
fn child_tries_to_open() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    match Store::open(Path::new(&dir)) {
        Err(StoreError::Locked) => println!("CHILD-LOCKED"),
        Err(e) => println!("CHILD-ERROR {e}"),
        Ok(_) => println!("CHILD-OPENED"),
    }
}

fn child_open(dir: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_tries_to_open",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lock_excludes_other_processes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    let s = Store::open(&dir).unwrap();
    assert!(matches!(Store::open(&dir), Err(StoreError::Locked)));
    let out = child_open(&dir);
    assert!(out.contains("CHILD-LOCKED"), "{out}");
    drop(s);
    // Released with the store.
    let out = child_open(&dir);
    assert!(out.contains("CHILD-OPENED"), "{out}");
    drop(Store::open(&dir).unwrap());
}

#[test]
fn profile_survives_reopen() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(t.path()).unwrap();
    assert_eq!(s.profile().unwrap(), None);
    let mut p = Profile {
        display_name: "alice".into(),
        smp_servers: vec!["smp://b@h2".into(), "smp://a@h1".into()],
        created_at: 1_700_000_000,
    };
    s.set_profile(&p).unwrap();
    drop(s);
    let mut s = Store::open(t.path()).unwrap();
    assert_eq!(s.profile().unwrap().as_ref(), Some(&p));
    p.display_name = "Alice B".into();
    p.smp_servers = vec!["smp://c@h3".into()];
    s.set_profile(&p).unwrap();
    drop(s);
    assert_eq!(Store::open(t.path()).unwrap().profile().unwrap(), Some(p));
}

#[test]
fn connections_names_and_ambiguity() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(t.path()).unwrap();
    let a = s.create_connection(Some("bob"), b"state-a").unwrap();
    let b = s.create_connection(None, b"state-b").unwrap();
    let c = s.create_connection(None, b"state-c").unwrap();
    assert!(a < b && b < c);

    let got = s.connection(a).unwrap().unwrap();
    assert_eq!(got.local_name.as_deref(), Some("bob"));
    assert_eq!(got.state.as_slice(), b"state-a");
    assert_eq!(got.status, "new");
    assert!(
        !format!("{got:?}").contains("state-a"),
        "Debug hides the state"
    );

    s.set_names(b, None, Some("Bob")).unwrap();
    s.set_names(c, None, Some("carol")).unwrap();
    s.set_status(c, "ready").unwrap();
    assert_eq!(s.connection_by_name("bob").unwrap().unwrap().id, a);
    assert_eq!(s.connection_by_name("Bob").unwrap().unwrap().id, b);
    assert_eq!(s.connection_by_name("nobody").unwrap(), None);

    // A local name wins over a peer's name.
    s.set_names(a, Some("carol"), None).unwrap();
    assert_eq!(s.connection_by_name("carol").unwrap().unwrap().id, a);
    // Two peers with the same display name.
    s.set_names(a, None, Some("Bob")).unwrap();
    assert!(matches!(
        s.connection_by_name("Bob"),
        Err(StoreError::Ambiguous(n)) if n == "Bob"
    ));
    // Two local names alike are ambiguous too.
    s.set_names(a, Some("x"), None).unwrap();
    s.set_names(b, Some("x"), None).unwrap();
    assert!(matches!(
        s.connection_by_name("x"),
        Err(StoreError::Ambiguous(_))
    ));

    assert!(matches!(
        s.set_status(ConnId(999), "x"),
        Err(StoreError::NotFound)
    ));
    s.delete_connection(b).unwrap();
    assert!(matches!(s.delete_connection(b), Err(StoreError::NotFound)));
    drop(s);

    let mut s = Store::open(t.path()).unwrap();
    let all = s.connections().unwrap();
    assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), vec![a, c]);
    assert_eq!(all[1].status, "ready");
    assert_eq!(all[1].peer_display_name.as_deref(), Some("carol"));
    // Ids are not reused after a delete.
    let d = s.create_connection(None, b"").unwrap();
    assert!(d > c);
}

#[test]
fn commit_writes_everything_and_dedupes_across_reopen() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(t.path()).unwrap();
    let conn = s.create_connection(None, b"s0").unwrap();
    s.commit(&Commit {
        conn,
        state: b"s1",
        processed: Some(processed(b"m1")),
        outbox: vec![send(b"q1", b"first"), send(b"q2", b"second")],
        inbox: vec![InboxItem {
            kind: "msg".into(),
            body: b"hello".to_vec(),
        }],
    })
    .unwrap();
    drop(s);

    let mut s = Store::open(t.path()).unwrap();
    assert_eq!(s.connection(conn).unwrap().unwrap().state.as_slice(), b"s1");
    assert!(s.is_processed("smp://a@h", b"rcv1", b"m1").unwrap());
    assert!(!s.is_processed("smp://a@h", b"rcv1", b"m2").unwrap());
    assert!(!s.is_processed("smp://a@h", b"rcv2", b"m1").unwrap());
    assert!(!s.is_processed("smp://b@h", b"rcv1", b"m1").unwrap());

    // Committing the same message again is refused and changes nothing.
    let again = s.commit(&Commit {
        conn,
        state: b"s2",
        processed: Some(processed(b"m1")),
        outbox: vec![send(b"q3", b"dup")],
        inbox: vec![],
    });
    assert!(
        matches!(again, Err(StoreError::AlreadyProcessed)),
        "{again:?}"
    );
    assert_eq!(s.connection(conn).unwrap().unwrap().state.as_slice(), b"s1");
    assert_eq!(s.outbox().unwrap().len(), 2);

    // A user command: no processed mark.
    s.commit(&Commit {
        conn,
        state: b"s3",
        processed: None,
        outbox: vec![send(b"q1", b"third")],
        inbox: vec![],
    })
    .unwrap();

    let inbox = s.inbox_take().unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].1, conn);
    assert_eq!(inbox[0].2.body, b"hello");
    // Not taken away until done.
    assert_eq!(s.inbox_take().unwrap().len(), 1);
    s.inbox_done(inbox[0].0).unwrap();
    assert!(s.inbox_take().unwrap().is_empty());
    assert!(matches!(
        s.inbox_done(inbox[0].0),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn outbox_order_and_removal_across_reopen() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(t.path()).unwrap();
    let c1 = s.create_connection(None, b"").unwrap();
    let c2 = s.create_connection(None, b"").unwrap();
    for (i, c) in [c1, c2, c1, c2, c1].into_iter().enumerate() {
        let mut item = send(b"q", format!("body{i}").as_bytes());
        if i == 1 {
            item.sender_key = None;
            item.notify = false;
        }
        s.commit(&Commit {
            conn: c,
            state: b"",
            processed: None,
            outbox: vec![item],
            inbox: vec![],
        })
        .unwrap();
    }
    let out = s.outbox().unwrap();
    let bodies: Vec<_> = out.iter().map(|o| o.2.body.clone()).collect();
    assert_eq!(
        bodies,
        ["body0", "body1", "body2", "body3", "body4"].map(|b| b.as_bytes().to_vec())
    );
    assert_eq!(out[1].1, c2);
    assert_eq!(out[1].2.sender_key, None);
    assert!(!out[1].2.notify);
    assert_eq!(
        out[0].2.sender_key.as_deref().map(Vec::as_slice),
        Some(&b"der-key"[..])
    );
    assert!(!format!("{:?}", out[0].2).contains("100, 101, 114"));
    s.outbox_done(out[0].0).unwrap();
    s.outbox_done(out[3].0).unwrap();
    drop(s);

    let mut s = Store::open(t.path()).unwrap();
    let left: Vec<_> = s.outbox().unwrap().into_iter().map(|o| o.2.body).collect();
    assert_eq!(
        left,
        ["body1", "body2", "body4"].map(|b| b.as_bytes().to_vec())
    );
    // Deleting a connection drops its pending sends.
    s.delete_connection(c1).unwrap();
    let left: Vec<_> = s.outbox().unwrap().into_iter().map(|o| o.1).collect();
    assert_eq!(left, vec![c2]);
}

#[test]
fn failed_commit_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(t.path()).unwrap();
    let conn = s.create_connection(None, b"before").unwrap();
    // The second send has an empty queue id, which the schema refuses:
    // the state update, processed mark, first send and inbox item before
    // it must all be rolled back.
    let r = s.commit(&Commit {
        conn,
        state: b"after",
        processed: Some(processed(b"m1")),
        outbox: vec![send(b"q1", b"ok"), send(b"", b"bad")],
        inbox: vec![InboxItem {
            kind: "msg".into(),
            body: b"x".to_vec(),
        }],
    });
    assert!(matches!(r, Err(StoreError::Sqlite(_))), "{r:?}");
    // A bad inbox item (empty kind), the last thing written.
    let r = s.commit(&Commit {
        conn,
        state: b"after",
        processed: Some(processed(b"m1")),
        outbox: vec![send(b"q1", b"ok")],
        inbox: vec![InboxItem {
            kind: String::new(),
            body: b"x".to_vec(),
        }],
    });
    assert!(r.is_err());
    // An unknown connection.
    let r = s.commit(&Commit {
        conn: ConnId(12345),
        state: b"after",
        processed: Some(processed(b"m1")),
        outbox: vec![send(b"q1", b"ok")],
        inbox: vec![],
    });
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    drop(s);

    let s = Store::open(t.path()).unwrap();
    assert_eq!(
        s.connection(conn).unwrap().unwrap().state.as_slice(),
        b"before"
    );
    assert!(!s.is_processed("smp://a@h", b"rcv1", b"m1").unwrap());
    assert!(s.outbox().unwrap().is_empty());
    assert!(s.inbox_take().unwrap().is_empty());
}

#[test]
fn processed_marks_are_pruned_per_queue() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(t.path()).unwrap();
    let conn = s.create_connection(None, b"").unwrap();
    let n = PROCESSED_KEEP_PER_QUEUE as usize + 5;
    for i in 0..n {
        s.commit(&Commit {
            conn,
            state: b"",
            processed: Some(processed(format!("m{i}").as_bytes())),
            outbox: vec![],
            inbox: vec![],
        })
        .unwrap();
    }
    // Another queue's mark is untouched by this queue's pruning.
    let other = ProcessedMsg {
        rcv_id: b"rcv2".to_vec(),
        ..processed(b"m0")
    };
    assert!(
        !s.is_processed(&other.server, &other.rcv_id, &other.msg_id)
            .unwrap()
    );
    assert!(!s.is_processed("smp://a@h", b"rcv1", b"m0").unwrap());
    assert!(!s.is_processed("smp://a@h", b"rcv1", b"m4").unwrap());
    assert!(s.is_processed("smp://a@h", b"rcv1", b"m5").unwrap());
    let last = format!("m{}", n - 1);
    assert!(
        s.is_processed("smp://a@h", b"rcv1", last.as_bytes())
            .unwrap()
    );
}

#[test]
fn rcv_queues_survive_reopen() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(t.path()).unwrap();
    let c1 = s.create_connection(None, b"").unwrap();
    let c2 = s.create_connection(None, b"").unwrap();
    let q = |rcv: &[u8], mode| RcvQueueRecord {
        server: "smp://a@h".into(),
        rcv_id: rcv.to_vec(),
        snd_id: b"snd".to_vec(),
        rcv_auth_key_der: Zeroizing::new(b"auth-der".to_vec()),
        rcv_dh_key_der: Zeroizing::new(b"dh-der".to_vec()),
        server_dh_key_der: b"srv-dh".to_vec(),
        mode,
    };
    s.add_rcv_queue(c1, &q(b"r1", Some(b'M'))).unwrap();
    s.add_rcv_queue(c2, &q(b"r2", None)).unwrap();
    // The same queue twice is refused.
    assert!(s.add_rcv_queue(c2, &q(b"r1", None)).is_err());
    // A queue for no connection too.
    assert!(s.add_rcv_queue(ConnId(999), &q(b"r3", None)).is_err());
    drop(s);

    let mut s = Store::open(t.path()).unwrap();
    let all = s.rcv_queues().unwrap();
    assert_eq!(all, vec![(c1, q(b"r1", Some(b'M'))), (c2, q(b"r2", None))]);
    assert!(!format!("{:?}", all[0].1).contains("100, 104"));
    assert_eq!(s.rcv_queue_conn("smp://a@h", b"r2").unwrap(), Some(c2));
    assert_eq!(s.rcv_queue_conn("smp://b@h", b"r2").unwrap(), None);
    s.delete_rcv_queue("smp://a@h", b"r2").unwrap();
    assert!(matches!(
        s.delete_rcv_queue("smp://a@h", b"r2"),
        Err(StoreError::NotFound)
    ));
    s.delete_connection(c1).unwrap();
    assert!(s.rcv_queues().unwrap().is_empty());
}

/// A short invitation's sender key is stored before `LKEY`, so a join cut
/// off after it runs again with the key the queue is secured with.
#[test]
fn short_link_sender_keys_survive_reopen_until_forgotten() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Store::open(t.path()).unwrap();
    let k1 = s.short_link_sender_key(b"link-1", b"key-a").unwrap();
    assert_eq!(k1.as_slice(), b"key-a");
    drop(s);
    let mut s = Store::open(t.path()).unwrap();
    let again = s.short_link_sender_key(b"link-1", b"key-b").unwrap();
    assert_eq!(again.as_slice(), b"key-a", "the first key stays");
    let other = s.short_link_sender_key(b"link-2", b"key-c").unwrap();
    assert_eq!(other.as_slice(), b"key-c");
    s.forget_short_link_key(b"link-1").unwrap();
    let fresh = s.short_link_sender_key(b"link-1", b"key-d").unwrap();
    assert_eq!(fresh.as_slice(), b"key-d");
}
