//! The control port (xftp.md §8.9) and blocking (§8.5): roles, delete,
//! block → BLOCKED for version-3 sessions and AUTH for version 1, the
//! blocked chunk removed and its storage given back, FDEL on a blocked
//! file, the block surviving a restart through the store log.

mod support;

use smp_core::encoding::string::b64_encode;
use smp_core::xftp::command::{BasicAuth, FileCommand};
use smp_core::xftp::error::{BlockingInfo, BlockingReason, ClientNotice, XftpErrorType};
use smp_core::xftp::response::FileResponse;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use xftp_server::app::Settings;
use xftp_server::control::ControlSettings;

const K64: usize = 65536;

fn with_control(mut s: Settings, admin: Option<&str>, user: Option<&str>) -> Settings {
    let pw = |p: Option<&str>| p.map(|p| BasicAuth::new(p.as_bytes()).unwrap());
    s.control = Some(ControlSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_password: pw(admin),
        user_password: pw(user),
    });
    s
}

struct Control {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Control {
    async fn connect(server: &Server) -> Self {
        let addr = server.running.control_addr.expect("control port");
        assert!(addr.ip().is_loopback());
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Self {
            r: BufReader::new(r),
            w,
        };
        assert_eq!(c.line().await.as_deref(), Some("XFTP server control port"));
        assert_eq!(
            c.line().await.as_deref(),
            Some("'help' for supported commands")
        );
        c
    }

    /// The next line, or `None` at end of input.
    async fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = tokio::time::timeout(PATIENCE, self.r.read_line(&mut s))
            .await
            .expect("control port answers in time")
            .unwrap();
        (n > 0).then(|| s.strip_suffix('\n').expect("a whole line").to_string())
    }

    async fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).await.unwrap();
        self.w.write_all(b"\r\n").await.unwrap();
    }

    async fn ask(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await.expect("an answer")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_help_and_errors() {
    let env = Env::new();
    let server = env
        .start(with_control(env.settings(), Some("adm"), Some("usr")))
        .await;

    let mut c = Control::connect(&server).await;
    assert_eq!(
        c.ask("help").await,
        "commands: stats-rts, delete, help, quit"
    );
    assert_eq!(
        c.ask("nope").await,
        "error: Failed reading: bad ControlProtocol command"
    );
    assert_eq!(c.ask("help me").await, "error: endOfInput");
    // No role: delete and block are refused before anything is looked up.
    assert_eq!(c.ask("delete AAAAAAAAAAAAAAAAAAAAAA==").await, "AUTH");
    assert_eq!(
        c.ask("block AAAAAAAAAAAAAAAAAAAAAA== reason=spam").await,
        "AUTH"
    );
    // A wrong password leaves the role unset, so it can be retried.
    assert_eq!(c.ask("auth wrong").await, "Current role is CPRNone");
    assert_eq!(c.ask("auth usr").await, "Current role is CPRUser");
    assert_eq!(
        c.ask("auth adm").await,
        "Current role is CPRUser, start new session to change."
    );
    assert_eq!(c.ask("auth usr").await, "Current role is CPRUser");
    // With a role, an unknown ID is the store's answer.
    assert_eq!(
        c.ask("delete AAAAAAAAAAAAAAAAAAAAAA==").await,
        "error: AUTH"
    );
    // Empty lines are skipped without an answer.
    c.send("").await;
    let stats = c.ask("stats-rts").await;
    assert!(
        stats.starts_with("not a GHC runtime: files=0 used_storage=0"),
        "{stats}"
    );
    c.send("quit").await;
    assert_eq!(c.line().await, None, "quit closes the connection");

    let mut c = Control::connect(&server).await;
    assert_eq!(c.ask("auth adm").await, "Current role is CPRAdmin");
    server.stop().await;

    // No passwords configured: every auth gives no role.
    let server = env.start(with_control(env.settings(), None, None)).await;
    let mut c = Control::connect(&server).await;
    assert_eq!(c.ask("auth adm").await, "Current role is CPRNone");
    assert_eq!(c.ask("delete AAAAAAAAAAAAAAAAAAAAAA==").await, "AUTH");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_recipient_id() {
    let env = Env::new();
    let server = env
        .start(with_control(env.settings(), Some("adm"), Some("usr")))
        .await;
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(K64, 1), 1).await;
    let path = env.files_dir().join(b64_encode(&c.sid));
    assert!(path.exists());

    let mut cp = Control::connect(&server).await;
    assert_eq!(cp.ask("auth usr").await, "Current role is CPRUser");
    // Sender IDs are not accepted: the argument is a recipient ID.
    assert_eq!(
        cp.ask(&format!("delete {}", b64_encode(&c.sid))).await,
        "error: AUTH"
    );
    assert!(path.exists());
    assert_eq!(
        cp.ask(&format!("delete {}", b64_encode(&c.rids[0]))).await,
        "ok"
    );
    assert!(!path.exists(), "the chunk file is removed");
    assert_err(download(&client, &c, 0).await, XftpErrorType::Auth);
    assert_eq!(
        cp.ask(&format!("delete {}", b64_encode(&c.rids[0]))).await,
        "error: AUTH"
    );
    assert_eq!(server.running.handler.stats.snapshot().files_deleted, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_answers_blocked_and_survives_a_restart() {
    let env = Env::new();
    let settings = || {
        let mut s = with_control(env.settings(), Some("adm"), None);
        s.store_log = Some(env.store_log());
        s.quota = Some(4 * K64 as u64);
        s
    };
    let server = env.start(settings()).await;
    let client = server.client().await;
    let c = create_uploaded(&client, chunk(K64, 2), 2).await;
    let other = create_uploaded(&client, chunk(K64, 3), 1).await;
    let path = env.files_dir().join(b64_encode(&c.sid));
    let used = || server.running.handler.with_store(|s| s.used_storage());
    assert_eq!(used(), 2 * K64 as i64);

    let mut cp = Control::connect(&server).await;
    assert_eq!(cp.ask("auth adm").await, "Current role is CPRAdmin");
    assert_eq!(
        cp.ask(&format!("block {} reason=spam", b64_encode(&c.rids[1])))
            .await,
        "ok"
    );
    assert!(!path.exists(), "the blocked chunk is removed");
    assert_eq!(used(), K64 as i64, "its storage is given back");
    let spam = BlockingInfo {
        reason: BlockingReason::Spam,
        notice: None,
    };

    // Version 3 (our client): BLOCKED on every ID, also the sender's FDEL.
    assert_err(download(&client, &c, 0).await, XftpErrorType::Blocked(spam));
    assert_err(download(&client, &c, 1).await, XftpErrorType::Blocked(spam));
    assert_err(
        client.delete_file(&c.sid, &c.snd).await,
        XftpErrorType::Blocked(spam),
    );
    // Version 1 (no ALPN, no handshake): AUTH instead.
    let v1 = RawConn::connect(&server, None).await.unwrap();
    assert_eq!(v1.alpn, None);
    assert_eq!(
        v1.command(&c.rids[0], &fget(), Some(&c.rcv[0])).await,
        FileResponse::Err(XftpErrorType::Auth)
    );
    assert_eq!(
        v1.command(&c.sid, &FileCommand::Fdel, Some(&c.snd)).await,
        FileResponse::Err(XftpErrorType::Auth)
    );
    // The other file is untouched.
    assert_eq!(
        download(&client, &other, 0).await.expect("download"),
        other.content
    );
    // Blocking again succeeds and logs again, now with a notice.
    assert_eq!(
        cp.ask(&format!(
            "block {} reason=content,notice={{\"ttl\":3600}}",
            b64_encode(&c.rids[0])
        ))
        .await,
        "ok"
    );
    assert_eq!(used(), K64 as i64, "storage is given back only once");
    assert_eq!(
        cp.ask("block AAAAAAAAAAAAAAAAAAAAAA== reason=spam").await,
        "error: AUTH"
    );
    assert_eq!(
        cp.ask(&format!("block {} reason=nope", b64_encode(&c.rids[0])))
            .await,
        "error: Failed reading: invalid blocking info"
    );
    assert_eq!(server.running.handler.stats.snapshot().files_blocked, 2);
    server.stop().await;

    let log = std::fs::read_to_string(env.store_log()).unwrap();
    let fblk: Vec<&str> = log.lines().filter(|l| l.starts_with("FBLK ")).collect();
    assert_eq!(
        fblk,
        vec![
            format!("FBLK {} reason=spam", b64_encode(&c.sid)),
            format!(
                "FBLK {} reason=content,notice={{\"ttl\":3600}}",
                b64_encode(&c.sid)
            ),
        ]
    );

    // Restart: the log is replayed, the block is still in force.
    let server = env.start(settings()).await;
    let client = server.client().await;
    let content = BlockingInfo {
        reason: BlockingReason::Content,
        notice: Some(ClientNotice { ttl: Some(3600) }),
    };
    assert_err(
        download(&client, &c, 1).await,
        XftpErrorType::Blocked(content),
    );
    assert_err(
        client.delete_file(&c.sid, &c.snd).await,
        XftpErrorType::Blocked(content),
    );
    assert_eq!(
        server.running.handler.with_store(|s| s.used_storage()),
        2 * K64 as i64,
        "at start every record counts, blocked ones too (reference quirk)"
    );
    // The control port's delete still works on a blocked file.
    let mut cp = Control::connect(&server).await;
    assert_eq!(cp.ask("auth adm").await, "Current role is CPRAdmin");
    assert_eq!(
        cp.ask(&format!("delete {}", b64_encode(&c.rids[0]))).await,
        "ok"
    );
    assert_err(download(&client, &c, 1).await, XftpErrorType::Auth);
    assert_eq!(
        download(&client, &other, 0).await.expect("download"),
        other.content
    );
    server.stop().await;
}
