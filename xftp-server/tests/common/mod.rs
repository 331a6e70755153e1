//! Shared by the acceptance tests: the real `xftp-server` binary in
//! temporary directories, a deterministic generator for chunk contents and
//! sizes, and small client helpers. Every child process is killed when its
//! guard is dropped, so a failing assertion never leaves a server running.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smp_core::address::ServerAddress;
use smp_core::client::xftp::{XftpClient, XftpClientError, XftpClientOptions};
use smp_core::crypto::keys::PrivateKey;

pub const BIN: &str = env!("CARGO_BIN_EXE_xftp-server");

/// SplitMix64: small, deterministic, good enough to pick sizes and bytes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for piece in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            piece.copy_from_slice(&v[..piece.len()]);
        }
    }
}

/// The bytes of a chunk, a function of its seed (so a test can keep seeds
/// instead of megabytes and regenerate them to compare).
pub fn chunk_bytes(seed: u64, size: u32) -> Vec<u8> {
    let mut v = vec![0u8; size as usize];
    Rng::new(seed).fill(&mut v);
    v
}

/// The runtime the tests that drive the binary use: two workers, like the
/// machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A free loopback port at the moment of asking.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Client deadlines short enough that a dead server is noticed quickly.
pub fn test_client_options() -> XftpClientOptions {
    XftpClientOptions {
        connect_timeout: Duration::from_secs(3),
        handshake_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(20),
        chunk_timeout: Duration::from_secs(20),
        per_kib: Duration::from_millis(5),
    }
}

/// Connects, retrying while the server is still starting (the banner,
/// including `Listening on port`, is printed before the store log is
/// replayed and the socket is bound, as in the reference).
pub async fn connect_retry(addr: &ServerAddress, within: Duration) -> XftpClient {
    let deadline = Instant::now() + within;
    loop {
        match XftpClient::connect(addr, test_client_options()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("could not connect within {within:?}: {e}"),
        }
    }
}

/// One chunk as the tests track it.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub seed: u64,
    pub size: u32,
    /// SHA-256 of [`Chunk::bytes`].
    pub digest: Vec<u8>,
    pub sid: Vec<u8>,
    pub rid: Vec<u8>,
    pub snd: PrivateKey,
    pub rcv: PrivateKey,
}

impl Chunk {
    pub fn bytes(&self) -> Vec<u8> {
        chunk_bytes(self.seed, self.size)
    }
}

/// Downloads a chunk; `Ok(bytes)` only when the client accepted it (tag and
/// digest checked by the client).
pub async fn download(client: &XftpClient, c: &Chunk) -> Result<Vec<u8>, XftpClientError> {
    let mut out = Vec::with_capacity(c.size as usize);
    client
        .download_chunk(&c.rid, &c.rcv, c.size, &c.digest, &mut out)
        .await
        .map(|()| out)
}

/// Whether `bytes` are this chunk's bytes (by SHA-256, which is much
/// cheaper than regenerating them in a debug build).
pub fn same_bytes(c: &Chunk, bytes: &[u8]) -> bool {
    bytes.len() == c.size as usize && smp_core::crypto::digest::sha256(bytes).as_slice() == c.digest
}

/// A server installation made by `xftp-server init` in a temporary
/// directory, listening on a free port, with its `[FILES] path` created.
pub struct BinEnv {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub cfg: PathBuf,
    pub log: PathBuf,
    pub files: PathBuf,
    pub port: u16,
    pub fingerprint: String,
    pub init_stdout: String,
    /// Runs `init` and `start` under this umask (via `sh`) when set.
    umask: Option<&'static str>,
}

/// `xftp-server` itself, or through `sh` with a umask of its own, behind
/// `prefix` (a command that execs the rest, such as `prlimit … --`).
fn server_command(umask: Option<&str>, prefix: &[&str]) -> Command {
    let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    if let Some(mask) = umask {
        argv.extend([
            "sh".into(),
            "-c".into(),
            format!("umask {mask}; exec \"$0\" \"$@\""),
        ]);
    }
    argv.push(BIN.into());
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

impl BinEnv {
    /// `init -p <files> -q <quota>` plus `extra` (init makes the files
    /// directory); the port is written into the INI.
    pub fn init(quota: &str, extra: &[&str]) -> Self {
        Self::init_with_umask(quota, extra, None)
    }

    pub fn init_with_umask(quota: &str, extra: &[&str], umask: Option<&'static str>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let cfg = root.join("etc");
        let log = root.join("var");
        let files = root.join("files");
        let mut args = vec!["init", "-p", files.to_str().unwrap(), "-q", quota];
        args.extend_from_slice(extra);
        let out = server_command(umask, &[])
            .args(&args)
            .env("XFTP_SERVER_CFG_PATH", &cfg)
            .env("XFTP_SERVER_LOG_PATH", &log)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let init_stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "init failed: {init_stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fingerprint = init_stdout
            .lines()
            .find_map(|l| l.strip_prefix("Fingerprint: "))
            .expect("init prints the fingerprint")
            .to_string();
        let env = BinEnv {
            _tmp: tmp,
            root,
            cfg,
            log,
            files,
            port: free_port(),
            fingerprint,
            init_stdout,
            umask,
        };
        env.edit_ini("port = 443\n", &format!("port = {}\n", env.port));
        env
    }

    pub fn ini(&self) -> PathBuf {
        self.cfg.join("file-server.ini")
    }

    pub fn edit_ini(&self, from: &str, to: &str) {
        let text = fs::read_to_string(self.ini()).unwrap();
        assert!(text.contains(from), "{from:?} not in the INI");
        fs::write(self.ini(), text.replacen(from, to, 1)).unwrap();
    }

    pub fn store_log(&self) -> PathBuf {
        self.log.join("file-server-store.log")
    }

    pub fn stats_backup(&self) -> PathBuf {
        self.log.join("file-server-stats.log")
    }

    pub fn address(&self) -> ServerAddress {
        format!("xftp://{}@127.0.0.1:{}", self.fingerprint, self.port)
            .parse()
            .unwrap()
    }

    /// `xftp-server start` as a child process.
    pub fn start(&self) -> ServerProc {
        self.start_behind(&[])
    }

    /// `start` behind a command that execs it (`prlimit --nofile=… --`).
    pub fn start_behind(&self, prefix: &[&str]) -> ServerProc {
        let mut child = server_command(self.umask, prefix)
            .arg("start")
            .env("XFTP_SERVER_CFG_PATH", &self.cfg)
            .env("XFTP_SERVER_LOG_PATH", &self.log)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let text = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => text
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        ServerProc {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// Names in the files directory.
    pub fn chunk_files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.files)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

/// A running `xftp-server start`; killed (SIGKILL) on drop if still running.
pub struct ServerProc {
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl ServerProc {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stdout has a line starting with `prefix`; panics (with
    /// the output so far) after `within` or if the process exits first.
    pub fn wait_line(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with(prefix))
            {
                return l.clone();
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "server exited ({status}) before printing {prefix:?}\nstdout: {:?}\nstderr: {}",
                    self.stdout_lines(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix:?} within {within:?}\nstdout: {:?}\nstderr: {}",
                self.stdout_lines(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap()
    }

    /// SIGTERM, then waits up to `within` for the exit; panics if it does
    /// not exit in time (the guard then kills it).
    pub fn terminate(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        // SAFETY: kill(2) with our own child's PID and a valid signal.
        let r = unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        assert_eq!(r, 0, "kill(SIGTERM) failed");
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return (status, t0.elapsed());
            }
            assert!(
                t0.elapsed() < within,
                "server did not exit within {within:?} of SIGTERM\nstdout: {:?}\nstderr: {}",
                self.stdout_lines(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lines of a text file (each must end with `\n`).
pub fn read_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} has an unterminated last line",
        path.display()
    );
    text.lines().map(str::to_owned).collect()
}

/// FNEW for a chunk of `size` bytes made from `seed`, one recipient.
pub async fn create(client: &XftpClient, seed: u64, size: u32) -> Result<Chunk, XftpClientError> {
    use smp_core::crypto::keys::KeyAlgorithm;
    let snd = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let rcv = PrivateKey::generate(KeyAlgorithm::Ed25519);
    let digest = smp_core::crypto::digest::sha256(&chunk_bytes(seed, size)).to_vec();
    let info = smp_core::xftp::command::FileInfo {
        snd_key: snd.public_key(),
        size,
        digest: digest.clone(),
    };
    let (sid, rids) = client
        .create_file(&snd, info, vec![rcv.public_key()], None)
        .await?;
    Ok(Chunk {
        seed,
        size,
        digest,
        sid,
        rid: rids.into_iter().next().unwrap(),
        snd,
        rcv,
    })
}

/// FPUT of the chunk's bytes.
pub async fn upload(client: &XftpClient, c: &Chunk) -> Result<(), XftpClientError> {
    client
        .upload_chunk(&c.sid, &c.snd, std::io::Cursor::new(c.bytes()), c.size)
        .await
}
