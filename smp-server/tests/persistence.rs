//! Persistence: a restart keeps queues and messages; the `smp-server`
//! binary killed with SIGKILL at random moments while messages are sent and
//! acknowledged loses no acknowledged message or queue, and delivers none
//! twice after its ACK.

mod support;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::smp::message::RcvMsgBody;
use smp_core::smp::{Command, ErrorType, Response};
use smp_core::tls::ServerIdentity;
use support::*;

#[tokio::test]
async fn restart_keeps_queues_messages_and_keys() {
    let env = Env::new();
    let srv = smp_server::app::start(env.persistent_settings())
        .await
        .unwrap();
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    let sk = ed25519();
    assert_eq!(
        c.cmd(&q.ids.snd_id, &Command::Skey(sk.public_key()), Some(&sk))
            .await,
        Ok(Response::Ok)
    );
    for b in [b"m1", b"m2", b"m3"] {
        assert_eq!(
            c.cmd(&q.ids.snd_id, &send_cmd(b), Some(&sk)).await,
            Ok(Response::Ok)
        );
    }
    let r = c
        .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
        .await
        .unwrap();
    let (id, _) = open_msg(&q, &r);
    assert_eq!(c.rcv(&q, &Command::Ack(id)).await, Ok(Response::Ok));
    let gone = c.new_queue().await;
    assert_eq!(c.rcv(&gone, &Command::Del).await, Ok(Response::Ok));
    drop(c);
    srv.stop().await;

    let srv = smp_server::app::start(env.persistent_settings())
        .await
        .unwrap();
    let mut c = env.client(&srv, 18).await;
    // Still secured: an unsigned SEND is refused.
    assert_eq!(c.snd(&q, b"x").await, Err(ErrorType::Auth));
    let mut bodies = Vec::new();
    loop {
        let r = c
            .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
            .await
            .unwrap();
        if r == Response::Ok {
            break;
        }
        let (id, m) = open_msg(&q, &r);
        bodies.push(body_of(&m).to_vec());
        c.rcv(&q, &Command::Ack(id)).await.unwrap();
    }
    assert_eq!(bodies, vec![b"m2".to_vec(), b"m3".to_vec()]);
    assert_eq!(c.rcv(&gone, &Command::Get).await, Err(ErrorType::Auth));
    srv.stop().await;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Bin {
    dir: tempfile::TempDir,
    port: u16,
    identity: ServerIdentity,
}

impl Bin {
    fn cmd(&self) -> Proc {
        let mut p = Proc::new(env!("CARGO_BIN_EXE_smp-server"));
        p.env("SMP_SERVER_CFG_PATH", self.dir.path().join("cfg"))
            .env("SMP_SERVER_LOG_PATH", self.dir.path().join("log"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        p
    }

    fn init() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut b = Self {
            dir,
            port,
            identity: ServerIdentity::generate(KeyAlgorithm::Ed25519, "x")
                .unwrap()
                .0,
        };
        let st = b
            .cmd()
            .args(["init", "--no-password", "-y"])
            .status()
            .unwrap();
        assert!(st.success());
        let ini = b.dir.path().join("cfg/smp-server.ini");
        let text = std::fs::read_to_string(&ini).unwrap();
        let text = text.replace("port = 5223,443", &format!("port = {port}"));
        std::fs::write(&ini, text).unwrap();
        b.identity = ServerIdentity::load(&b.dir.path().join("cfg")).unwrap();
        b
    }

    fn start(&self) -> Child {
        let mut cmd = self.cmd();
        cmd.arg("start");
        self.start_with(cmd)
    }

    /// Spawns `cmd` (a `start`, perhaps behind a wrapper) and waits until
    /// the router listens.
    fn start_with(&self, mut cmd: Proc) -> Child {
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "router did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

fn first_response(c: &RawClient, content: &[u8]) -> Result<Response, ErrorType> {
    let items = smp_core::smp::transmission::parse_batch(content).unwrap();
    smp_core::smp::transmission::decode_response_transmission(items[0], c.version, &c.session_id)
        .unwrap()
        .response
}

fn kill9(c: &mut Child) {
    // SAFETY: plain FFI call with a valid pid of our own child; no memory involved.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGKILL);
    }
    let _ = c.wait();
}

fn log_dir_has(dir: &Path, name: &str) -> bool {
    dir.join("log").join(name).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loop_loses_no_acknowledged_message() {
    let bin = Bin::init();
    let mut child = bin.start();
    let kh = bin.identity.fingerprint();
    let mut c = RawClient::connect(bin.addr(), kh, Hello::v(18))
        .await
        .unwrap();
    let q = c.new_queue().await;
    drop(c);
    let mut sent_ok: HashSet<Vec<u8>> = HashSet::new();
    let mut acked: HashSet<Vec<u8>> = HashSet::new();
    let mut seq = 0u32;
    for round in 0..8u64 {
        let deadline = Instant::now() + Duration::from_millis(150 + (round * 37) % 200);
        let mut snd = RawClient::connect(bin.addr(), kh, Hello::v(18))
            .await
            .unwrap();
        let mut rcv = RawClient::connect(bin.addr(), kh, Hello::v(7))
            .await
            .unwrap();
        // Send and read until the deadline, then kill mid-stream: the
        // last command's response may never arrive.
        let killer = {
            let pid = child.id();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline.into()).await;
                // SAFETY: FFI kill of our own child process by pid.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            })
        };
        loop {
            seq += 1;
            let body = format!("m{seq}").into_bytes();
            let t = snd.encode(&corr(), &q.ids.snd_id, &send_cmd(&body), None);
            snd.send(&[t]).await;
            match tokio::time::timeout(Duration::from_secs(2), snd.reader.read_content()).await {
                Ok(Ok(Some(Ok(content)))) => {
                    // Only OK counts: a full queue answers QUOTA.
                    if first_response(&snd, &content) == Ok(Response::Ok) {
                        sent_ok.insert(body);
                    }
                }
                _ => break,
            }
            if seq.is_multiple_of(3) {
                let g = rcv.encode(&corr(), &q.ids.rcv_id, &Command::Get, Some(&q.rcv_key));
                rcv.send(&[g]).await;
                let Ok(Ok(Some(Ok(content)))) =
                    tokio::time::timeout(Duration::from_secs(2), rcv.reader.read_content()).await
                else {
                    break;
                };
                if let Ok(resp @ Response::Msg { .. }) = first_response(&rcv, &content) {
                    let (id, m) = open_msg(&q, &resp);
                    let a = rcv.encode(&corr(), &q.ids.rcv_id, &Command::Ack(id), Some(&q.rcv_key));
                    rcv.send(&[a]).await;
                    match tokio::time::timeout(Duration::from_secs(2), rcv.reader.read_content())
                        .await
                    {
                        Ok(Ok(Some(Ok(c)))) if first_response(&rcv, &c) == Ok(Response::Ok) => {
                            // Quota markers carry no body of ours.
                            if let RcvMsgBody::Message { body, .. } = m {
                                acked.insert(body);
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
        killer.await.unwrap();
        kill9(&mut child);
        child = bin.start();
    }
    // Drain what is left and check it against what was acknowledged.
    let mut c = RawClient::connect(bin.addr(), kh, Hello::v(18))
        .await
        .unwrap();
    let mut left: HashSet<Vec<u8>> = HashSet::new();
    loop {
        let r = c
            .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
            .await
            .unwrap();
        if r == Response::Ok {
            break;
        }
        let (id, m) = open_msg(&q, &r);
        if let RcvMsgBody::Message { body, .. } = m {
            assert!(!acked.contains(&body), "a message came back after its ACK");
            assert!(left.insert(body), "a message was delivered twice");
        }
        c.rcv(&q, &Command::Ack(id)).await.unwrap();
    }
    for b in &sent_ok {
        assert!(
            acked.contains(b) || left.contains(b),
            "acknowledged SEND lost: {}",
            String::from_utf8_lossy(b)
        );
    }
    assert!(
        sent_ok.len() > 20,
        "the loop sent too little to mean anything"
    );
    assert!(log_dir_has(bin.dir.path(), "smp-server-store.log"));
    kill9(&mut child);
}

#[tokio::test]
async fn a_used_queue_records_its_day_once() {
    let env = Env::new();
    let srv = smp_server::app::start(env.persistent_settings())
        .await
        .unwrap();
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    let rid_b64 = smp_core::encoding::string::b64_encode(&q.ids.rcv_id);
    // Pretend the queue was last used long ago.
    srv.router
        .lock()
        .store
        .get_mut(&q.ids.rcv_id)
        .unwrap()
        .rec
        .updated_at = Some(86400);
    for _ in 0..3 {
        assert!(c.rcv(&q, &Command::Get).await.is_ok());
    }
    srv.stop().await;
    let log = std::fs::read_to_string(env.store_log()).unwrap();
    let times: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("TIME {rid_b64} ")))
        .collect();
    assert_eq!(times.len(), 1, "{log}");
    let day: i64 = times[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(day % 86400, 0);
    assert!(day > 86400);
}

#[tokio::test]
async fn the_message_journal_is_rewritten_before_it_grows_large() {
    let env = Env::new();
    let mut s = env.persistent_settings();
    s.journal_compact_bytes = 200_000;
    let srv = smp_server::app::start(s).await.unwrap();
    let mut c = env.client(&srv, 18).await;
    let q = c.new_queue().await;
    let mut biggest = 0;
    for i in 0..300u32 {
        let mut body = vec![0u8; 4000];
        body[..4].copy_from_slice(&i.to_be_bytes());
        assert_eq!(c.snd(&q, &body).await, Ok(Response::Ok));
        if i < 295 {
            let r = c.rcv(&q, &Command::Get).await.unwrap();
            let (id, _) = open_msg(&q, &r);
            assert_eq!(c.rcv(&q, &Command::Ack(id)).await, Ok(Response::Ok));
        }
        biggest = biggest.max(std::fs::metadata(env.messages()).unwrap().len());
    }
    // 300 messages of ~5.4 KB lines were written; the file never held them all.
    assert!(
        biggest < 200_000 + 20_000,
        "journal grew to {biggest} bytes"
    );
    drop(c);
    srv.stop().await;
    let srv = smp_server::app::start(env.persistent_settings())
        .await
        .unwrap();
    let mut c = env.client(&srv, 18).await;
    let mut left = Vec::new();
    loop {
        let r = c.rcv(&q, &Command::Get).await.unwrap();
        if r == Response::Ok {
            break;
        }
        let (id, m) = open_msg(&q, &r);
        left.push(u32::from_be_bytes(body_of(&m)[..4].try_into().unwrap()));
        c.rcv(&q, &Command::Ack(id)).await.unwrap();
    }
    assert_eq!(left, (295..300).collect::<Vec<u32>>());
    srv.stop().await;
}

/// Every message waiting in `q`, read with GET and acknowledged.
async fn drain(c: &mut RawClient, q: &TestQueue) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    loop {
        let r = c
            .cmd(&q.ids.rcv_id, &Command::Get, Some(&q.rcv_key))
            .await
            .unwrap();
        if r == Response::Ok {
            return bodies;
        }
        let (id, m) = open_msg(q, &r);
        bodies.push(body_of(&m).to_vec());
        assert_eq!(c.rcv(q, &Command::Ack(id)).await, Ok(Response::Ok));
    }
}

/// Sets the router's file-size limit (its "free disk") while it runs.
fn set_fsize(child: &Child, limit: &str) {
    let st = Proc::new("prlimit")
        .args([
            "--pid",
            &child.id().to_string(),
            &format!("--fsize={limit}:"),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "prlimit");
}

/// Issue 14's crash-consistency test for the SMP message log: in each
/// round the "disk" (RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail with
/// EFBIG as on a full disk) runs out at a random point among 60 sends,
/// then is freed, more sends succeed, the router is SIGKILLed and
/// restarted: the queue holds exactly the acknowledged messages, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_and_frees_at_random_points_loses_no_acknowledged_message() {
    let bin = Bin::init();
    let start_ignoring_xfsz = || {
        let mut cmd = Proc::new("sh");
        cmd.args(["-c", "trap '' XFSZ; exec \"$0\" start"])
            .arg(env!("CARGO_BIN_EXE_smp-server"))
            .env("SMP_SERVER_CFG_PATH", bin.dir.path().join("cfg"))
            .env("SMP_SERVER_LOG_PATH", bin.dir.path().join("log"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        bin.start_with(cmd)
    };
    let journal = bin.dir.path().join("log/smp-server-messages.log");
    let kh = bin.identity.fingerprint();
    let mut child = start_ignoring_xfsz();
    let mut c = RawClient::connect(bin.addr(), kh, Hello::v(18))
        .await
        .unwrap();
    let q = c.new_queue().await;
    drop(c);
    let mut seed = 0x5eed_u64;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..4 {
        let mut snd = RawClient::connect(bin.addr(), kh, Hello::v(18))
            .await
            .unwrap();
        let used = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
        set_fsize(&child, &(used + 200 + rnd(4000)).to_string());
        let mut acknowledged = Vec::new();
        let mut refused = 0;
        for i in 0..60 {
            let body = vec![b'a' + (i % 26) as u8; 200 + rnd(800) as usize];
            match snd.snd(&q, &body).await {
                Ok(Response::Ok) => acknowledged.push(body),
                _ => refused += 1,
            }
        }
        assert!(refused > 0, "round {round}: the disk filled up");
        set_fsize(&child, "unlimited");
        for i in 0..10u8 {
            let body = format!("after the disk was freed {round} {i}").into_bytes();
            assert_eq!(snd.snd(&q, &body).await, Ok(Response::Ok), "round {round}");
            acknowledged.push(body);
        }
        drop(snd);
        kill9(&mut child);
        child = start_ignoring_xfsz();
        let mut rcv = RawClient::connect(bin.addr(), kh, Hello::v(18))
            .await
            .unwrap();
        let got = drain(&mut rcv, &q).await;
        assert_eq!(
            got.len(),
            acknowledged.len(),
            "round {round}: {refused} refused"
        );
        assert!(
            got == acknowledged,
            "round {round}: order or content differs"
        );
    }
    kill9(&mut child);
}
