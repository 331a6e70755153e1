//! SimpleGo routers in their own processes: the test binary re-run with
//! [`ROUTER_ENV`] set runs only its `router_child` test, which calls
//! [`child_main`]. Each router keeps its identity, queue store log and
//! message journal in a directory the parent chose, so it can be killed
//! (SIGKILL) and started again on the same port with the same address,
//! its queues and its undelivered messages.
//!
//! Every test binary that uses [`Router`] needs
//! `#[test] fn router_child() { support::routers::child_main() }`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::tls::ServerIdentity;

/// The router's directory (identity files, store log, message journal).
pub const ROUTER_ENV: &str = "XFTP_TEST_ROUTER_DIR";
/// The port to listen on (0 or unset: any free port).
pub const PORT_ENV: &str = "XFTP_TEST_ROUTER_PORT";

/// Not a test of its own: the body of a router child process. Returns at
/// once in a normal test run (without [`ROUTER_ENV`]).
pub fn child_main() {
    let Ok(dir) = std::env::var(ROUTER_ENV) else {
        return;
    };
    let port: u16 = std::env::var(PORT_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = PathBuf::from(dir);
        let identity = ServerIdentity::load(&dir).unwrap();
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = smp_server::app::Settings::new(identity.clone(), listen);
        s.store_log = Some(dir.join("smp-server-store.log"));
        s.messages = Some(dir.join("smp-server-messages.log"));
        let srv = smp_server::app::start(s).await.unwrap();
        println!(
            "READY smp://{}@127.0.0.1:{}",
            identity.fingerprint_b64(),
            srv.addr().port()
        );
        // Runs until the parent closes stdin (or kills the process).
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await;
        srv.stop().await;
    });
}

/// A router child process.
pub struct Router {
    child: Option<Child>,
    /// `smp://FINGERPRINT@127.0.0.1:PORT`, the same across restarts.
    pub address: String,
    port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Starts a router child on `port` (0: any) with the files in `dir`;
/// returns the child and the address it printed, or `None` if it ended
/// before it was ready (e.g. the port was not free yet). The child
/// returned is reaped by [`Router`].
#[allow(clippy::zombie_processes)]
fn spawn(dir: &Path, port: u16) -> Option<(Child, String)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "router_child", "--nocapture", "--test-threads=1"])
        .env(ROUTER_ENV, dir)
        .env(PORT_ENV, port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The harness may print the test name on the same line first.
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        if let Some(i) = line.find("READY ") {
            return Some((child, line[i + 6..].trim().to_string()));
        }
    }
}

impl Router {
    /// A fresh router: new identity, empty store, any free port.
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        ServerIdentity::init(&dir, KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
        let (child, address) = spawn(&dir, 0).expect("router child ended before READY");
        let port = address.rsplit(':').next().unwrap().parse().unwrap();
        Self {
            child: Some(child),
            address,
            port,
            dir,
            _tmp: tmp,
        }
    }

    /// Kills the router process at once (SIGKILL: nothing is saved at
    /// stop; what it keeps is what it wrote as it went).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the router (if running) and starts it again on the same port
    /// with the same identity and files.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((child, address)) = spawn(&self.dir, self.port) {
                assert_eq!(address, self.address, "the restarted router's address");
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the router did not start again on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            drop(c.stdin.take());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
