//! What the benches share: the run size, a cheap byte source, a counting
//! sink and peak RSS from /proc.
#![allow(dead_code)]

use std::io::{self, Read, Write};

pub const PIECE: usize = 1 << 20;

/// `BENCH_QUICK=1`: every bench sized to finish in under a minute.
pub fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Bytes per run: `BENCH_MIB` MiB; else 1 GiB, or 128 MiB when quick.
pub fn size() -> u64 {
    std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick() { 128 } else { 1024 })
        << 20
}

/// Rounds per figure (the best is kept): 2, or 1 with `BENCH_QUICK`.
pub fn rounds() -> usize {
    if quick() { 1 } else { 2 }
}

/// A bench target: the figure must be at least or at most this.
#[derive(Clone, Copy)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Reported for context, no target.
    None,
}

/// Prints one figure as every bench does: name, value, target, met or not.
pub fn figure(name: &str, value: f64, unit: &str, goal: Goal) {
    let (target, met) = match goal {
        Goal::AtLeast(t) => (format!(">= {t}"), Some(value >= t)),
        Goal::AtMost(t) => (format!("<= {t}"), Some(value <= t)),
        Goal::None => (String::from("-"), None),
    };
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "",
    };
    let value = if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    };
    println!("{name:<48} {value:>9} {unit:<8} target {target:<8} {verdict}");
}

/// Non-repeating bytes that cost almost nothing to produce, so the source
/// does not weigh on the figures.
pub struct Source {
    left: u64,
    block: Vec<u8>,
    counter: u64,
}

impl Source {
    pub fn new(len: u64) -> Self {
        Self {
            left: len,
            block: (0..PIECE).map(|i| (i * 131 % 251) as u8).collect(),
            counter: 0,
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left).min(PIECE as u64) as usize;
        buf[..n].copy_from_slice(&self.block[..n]);
        if n >= 8 {
            buf[..8].copy_from_slice(&self.counter.to_le_bytes());
        }
        self.counter += 1;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Discards bytes, counting them.
pub struct Count(pub u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `kB` line of `/proc/<pid>/status` (`None` = this process).
fn status_kib(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident memory (VmHWM) of a process, in KiB; `None` = this one.
pub fn peak_rss_kib(pid: Option<u32>) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Current resident set (`VmRSS`) of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(Some(pid), "VmRSS:")
}

/// A benchmark's server process: prints `READY <fields…>` once serving and
/// serves until its stdin closes. `spawn_ready` starts one (this bench
/// binary again, with `args`) and returns it with those fields.
pub fn announce_ready(fields: &str) {
    println!("READY {fields}");
    let _ = std::io::stdout().flush();
}

/// Blocks until stdin closes (the parent bench is done with this process).
pub fn wait_for_stdin_eof() {
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}

pub fn spawn_ready(args: &[String]) -> (std::process::Child, Vec<String>) {
    spawn_ready_with_env(args, &[])
}

/// [`spawn_ready`] with extra environment variables for the child.
pub fn spawn_ready_with_env(
    args: &[String],
    env: &[(&str, &str)],
) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fields: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
    assert!(!fields.is_empty(), "server process did not start");
    (child, fields)
}

// ---- SMP routers in child processes ----

use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smp_core::address::ServerAddress;
use smp_core::client::smp::{
    CreateQueueOptions, RawMessage, SmpClient, SmpClientError, SmpClientOptions, SmpEvent,
    SmpEvents,
};
use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::smp::ErrorType;
use smp_core::smp::Response;
use smp_core::smp::message::RcvMsgBody;
use smp_core::tls::ServerIdentity;

/// The body of a router child process (`--router [RELAY_HOST=PORT]`):
/// prints `READY <port> <fingerprint>` and serves until stdin closes.
pub fn router_child(relay: Option<&str>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed25519, "127.0.0.1").unwrap();
        let mut s =
            smp_server::app::Settings::new(identity.clone(), "127.0.0.1:0".parse().unwrap());
        if let Some((host, port)) = relay.and_then(|r| r.split_once('=')) {
            let addr = SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap()));
            s.proxy.resolve.insert(host.to_string(), addr);
        }
        let server = smp_server::app::start(s).await.unwrap();
        announce_ready(&format!(
            "{} {}",
            server.addr().port(),
            identity.fingerprint_b64()
        ));
        tokio::task::spawn_blocking(wait_for_stdin_eof)
            .await
            .unwrap();
        server.stop().await;
    });
}

/// A router child process (this bench binary run with `--router`).
pub struct Router {
    pub child: Child,
    pub port: u16,
    pub fingerprint: String,
}

impl Router {
    pub fn spawn(relay: Option<String>) -> Self {
        Self::spawn_on(relay, smp_core::crypto::backend::Backend::build_default())
    }

    /// A router whose XSalsa20-Poly1305 runs on `backend`.
    pub fn spawn_on(relay: Option<String>, backend: smp_core::crypto::backend::Backend) -> Self {
        let mut args = vec!["--router".to_string()];
        args.extend(relay);
        let (child, fields) =
            spawn_ready_with_env(&args, &[("SMP_CORE_CRYPTO_BACKEND", backend.name())]);
        Self {
            child,
            port: fields[0].parse().unwrap(),
            fingerprint: fields[1].clone(),
        }
    }

    pub fn address(&self, host: &str) -> ServerAddress {
        ServerAddress::parse(&format!("smp://{}@{host}:{}", self.fingerprint, self.port)).unwrap()
    }

    pub async fn connect(&self) -> (SmpClient, SmpEvents) {
        let opts = SmpClientOptions {
            socket_addr: Some(SocketAddr::from(([127, 0, 0, 1], self.port))),
            ..SmpClientOptions::default()
        };
        SmpClient::connect(&self.address("127.0.0.1"), &opts)
            .await
            .unwrap()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Raw SEND→MSG messages per second: `total` messages of `body_len` bytes
/// from one sender per queue over `queues` queues to one subscriber that
/// opens and ACKs each message; `proxy` routes every SEND through the
/// proxy router. A sender that meets QUOTA waits 5 ms, as an agent waits
/// for the queue to drain.
pub async fn throughput(
    relay: &Router,
    proxy: Option<&Router>,
    queues: usize,
    total: usize,
    body_len: usize,
) -> f64 {
    let (rcv, mut events) = relay.connect().await;
    let mut qs = Vec::new();
    for _ in 0..queues {
        qs.push(Arc::new(
            rcv.create_queue(&CreateQueueOptions::default())
                .await
                .unwrap(),
        ));
    }
    let (snd, _) = match proxy {
        Some(p) => p.connect().await,
        None => relay.connect().await,
    };
    let session = match proxy {
        Some(_) => Some(
            snd.proxy_session(&relay.address("relay.bench"), None)
                .await
                .unwrap(),
        ),
        None => None,
    };
    let per_queue = total / queues;
    let received = Arc::new(AtomicUsize::new(0));
    let by_id: std::collections::HashMap<Vec<u8>, Arc<_>> =
        qs.iter().map(|q| (q.rcv_id.clone(), q.clone())).collect();
    let start = Instant::now();
    let reader = {
        let (rcv, received) = (rcv.clone(), received.clone());
        tokio::spawn(async move {
            while received.load(Ordering::Relaxed) < per_queue * queues {
                let Some(SmpEvent::Server {
                    entity_id,
                    response: Response::Msg { msg_id, body },
                }) = events.recv().await
                else {
                    continue;
                };
                let q = by_id[&entity_id].clone();
                let (rcv, received) = (rcv.clone(), received.clone());
                tokio::spawn(async move {
                    // Messages are opened as a client would; quota markers
                    // are acknowledged but not counted. The ACK's reply may
                    // be the next message.
                    let mut next = Some(RawMessage { msg_id, body });
                    while let Some(m) = next {
                        if let Ok(RcvMsgBody::Message { .. }) = q.decrypt(&m) {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        next = rcv.ack(&q, &m.msg_id).await.unwrap();
                    }
                });
            }
        })
    };
    let mut senders = Vec::new();
    for q in &qs {
        let (snd, q, session) = (snd.clone(), q.clone(), session.clone());
        senders.push(tokio::spawn(async move {
            let body = vec![0x42u8; body_len];
            for _ in 0..per_queue {
                loop {
                    let r = match &session {
                        Some(s) => snd.proxy_send(s, &q.snd_id, None, false, &body).await,
                        None => snd.send(&q.snd_id, None, false, &body).await,
                    };
                    match r {
                        Ok(()) => break,
                        // A full queue (128): wait for the recipient, as an
                        // agent waits for QCONT.
                        Err(SmpClientError::Protocol(ErrorType::Quota))
                        | Err(SmpClientError::Relay(ErrorType::Quota)) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("send: {e}"),
                    }
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    // The last messages may come as ACK replies, not events: poll the count.
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < per_queue * queues {
        assert!(
            Instant::now() < deadline,
            "only {} of {} messages arrived",
            received.load(Ordering::Relaxed),
            per_queue * queues
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = (per_queue * queues) as f64 / start.elapsed().as_secs_f64();
    reader.abort();
    rate
}

/// User and system CPU seconds a process has used so far (`None` = this
/// one), from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: Option<u32>) -> (f64, f64) {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    // utime and stime, fields 14 and 15 of the line.
    (get(11), get(12))
}

// ---- the `xftp` command in child processes, XFTP servers in this one ----

use smp_core::crypto::backend::Backend;

/// The body of an `xftp` child (`--as-xftp ARGS…`): runs the `xftp`
/// binary's code, reports its peak RSS on stderr and exits. Returns
/// whether this process was such a child.
pub fn run_as_xftp(args: &[String]) -> bool {
    let Some(i) = args.iter().position(|a| a == "--as-xftp") else {
        return false;
    };
    let code =
        xftp_cli::cli::main(std::iter::once(args[0].clone()).chain(args[i + 1..].iter().cloned()));
    let (user, system) = cpu_seconds(None);
    eprintln!("PEAK_RSS_KIB {}", peak_rss_kib(None));
    eprintln!("CPU_SECONDS {}", user + system);
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// What one `xftp` child took.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    pub secs: f64,
    /// The child's peak RSS.
    pub rss_kib: u64,
    /// CPU seconds of the child and of this process (the servers) while
    /// it ran.
    pub cpu: f64,
    /// CPU seconds of the child alone.
    pub client_cpu: f64,
}

/// Runs `xftp ARGS` in a child on `backend`.
pub async fn xftp(args: &[&str], backend: Backend) -> Ran {
    let t = Instant::now();
    let (user, system) = cpu_seconds(None);
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--as-xftp")
        .args(args)
        .env("SMP_CORE_CRYPTO_BACKEND", backend.name())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("cannot start the xftp child");
    let secs = t.elapsed().as_secs_f64();
    let (user2, system2) = cpu_seconds(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "xftp {} failed: {}\n{stderr}",
        args[0],
        String::from_utf8_lossy(&out.stdout)
    );
    let reported = |key: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("the child reports {key}"))
    };
    let client_cpu: f64 = reported("CPU_SECONDS ").parse().unwrap();
    Ran {
        secs,
        rss_kib: reported("PEAK_RSS_KIB ").parse().unwrap(),
        cpu: client_cpu + (user2 - user) + (system2 - system),
        client_cpu,
    }
}

/// What the benches that run `xftp` children start with: a scratch
/// directory and a source file of [`size`] bytes in it.
pub struct XftpBench {
    pub work: tempfile::TempDir,
    pub src: std::path::PathBuf,
    pub len: u64,
}

impl XftpBench {
    /// Prints what is measured; `None` when this process is an `xftp`
    /// child (which has then run) or was only asked to list benches.
    pub fn start(what: &str, servers: usize) -> Option<Self> {
        let args: Vec<String> = std::env::args().collect();
        if run_as_xftp(&args) || args.iter().any(|a| a == "--list") {
            return None;
        }
        let len = size();
        println!(
            "{what} over {} MiB on loopback, {servers} servers ({} cores)",
            len >> 20,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let work = work_dir();
        let src = work.path().join("bench.bin");
        write_source(&src, len);
        Some(Self { work, src, len })
    }
}

/// A scratch directory on /dev/shm where there is one, so disks do not
/// weigh on the figures.
pub fn work_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// A file of `len` bytes from [`Source`].
pub fn write_source(path: &std::path::Path, len: u64) {
    let mut f = io::BufWriter::new(std::fs::File::create(path).unwrap());
    io::copy(&mut Source::new(len), &mut f).unwrap();
    f.flush().unwrap();
}

/// Whether two files hold the same bytes, read a piece at a time.
pub fn same_content(a: &std::path::Path, b: &std::path::Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; PIECE], vec![0u8; PIECE]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
        if fb.read_exact(&mut bb[..na]).is_err() || ba[..na] != bb[..na] {
            return false;
        }
    }
}

/// `n` XFTP servers on this runtime, storing under `dir/serverI`; returns
/// them with their `xftp://` addresses.
pub async fn start_xftp_servers(
    dir: &std::path::Path,
    n: usize,
) -> (Vec<xftp_server::app::RunningServer>, Vec<String>) {
    let (mut servers, mut addresses) = (Vec::new(), Vec::new());
    for i in 0..n {
        let files = dir.join(format!("server{i}")).join("files");
        std::fs::create_dir_all(&files).unwrap();
        let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
        let s = xftp_server::app::Settings::new(
            identity.clone(),
            "127.0.0.1:0".parse().unwrap(),
            files,
        );
        let server = xftp_server::app::start(s).await.unwrap();
        addresses.push(format!(
            "xftp://{}@127.0.0.1:{}",
            identity.fingerprint_b64(),
            server.addr.port()
        ));
        servers.push(server);
    }
    (servers, addresses)
}
