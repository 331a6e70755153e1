//! The harness of the end-to-end stories: every program runs as its own
//! process, built from this workspace, talking over 127.0.0.1 only.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// How long a story waits for something to show before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

static BUILD: Once = Once::new();

/// The path of one of the workspace's binaries, built first (once per
/// process) so that a story never runs an old build. From a test the build
/// is `cargo test --workspace --no-run`: the very build `cargo test
/// --workspace` has just made (so a no-op there), where a narrower
/// `cargo build` would pick other features and rebuild the dependencies.
/// From an example it is `cargo build --workspace --bins`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> or target/<profile>/examples/<example>
    let from = exe.parent().unwrap();
    let profile_dir = from.parent().unwrap().to_path_buf();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        if from.file_name().is_some_and(|n| n == "examples") {
            c.args(["build", "--workspace", "--bins", "--quiet"]);
        } else {
            c.args(["test", "--workspace", "--no-run", "--quiet"]);
        }
        c.current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            c.arg("--release");
        }
        let st = c.status().expect("running cargo build");
        assert!(st.success(), "building the binaries failed");
    });
    let p = profile_dir.join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// The device's heap bound: what the host board may allocate at its peak
/// (the agent runtime with tokio, rustls and the XFTP client included;
/// SQLite allocates outside it). README's RAM section gives the figures.
pub const DEVICE_HEAP_BOUND: usize = 2 << 20;

/// A free loopback port at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let t = std::fs::read_to_string(path).unwrap();
    assert!(t.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, t.replacen(from, to, 1)).unwrap();
}

/// Sends SIGTERM (through kill(1): no unsafe here).
pub fn sigterm(child: &Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// `smp-server` as an operator runs it, on a free port.
pub struct SmpRouter {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    pub address: String,
}

impl SmpRouter {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Self::cmd(dir.path())
            .args(["init", "--no-password", "--ip", "127.0.0.1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "smp-server init: {out:?}");
        let port = free_port();
        edit(
            &dir.path().join("cfg/smp-server.ini"),
            "port = 5223,443",
            &format!("port = {port}"),
        );
        let id = smp_core::tls::ServerIdentity::load(&dir.path().join("cfg")).unwrap();
        let address = format!("smp://{}@127.0.0.1:{port}", id.fingerprint_b64());
        let mut r = SmpRouter {
            dir,
            child: None,
            port,
            address,
        };
        r.resume();
        r
    }

    fn cmd(dir: &Path) -> Command {
        let mut c = Command::new(bin("smp-server"));
        c.env("SMP_SERVER_CFG_PATH", dir.join("cfg"))
            .env("SMP_SERVER_LOG_PATH", dir.join("log"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Starts it (again, with the same identity, port and files).
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        self.child = Some(Self::cmd(self.dir.path()).arg("start").spawn().unwrap());
        wait_port(self.port);
    }

    /// Kills it at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SmpRouter {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The servers as `-s` takes them: addresses joined by `;`.
pub fn server_list(servers: &[XftpServer]) -> String {
    servers
        .iter()
        .map(|s| s.address.as_str())
        .collect::<Vec<_>>()
        .join(";")
}

/// `xftp-server` as an operator runs it, on a free port; it can be
/// stopped and started again on the same files and port.
pub struct XftpServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    pub address: String,
}

impl XftpServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        let out = Self::command(dir.path())
            .args(["init", "-p", files.to_str().unwrap(), "-q", "1gb"])
            .output()
            .unwrap();
        assert!(out.status.success(), "xftp-server init: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let fp = text
            .lines()
            .find_map(|l| l.strip_prefix("Fingerprint: "))
            .expect("init prints the fingerprint")
            .to_string();
        std::fs::create_dir_all(&files).unwrap();
        let port = free_port();
        edit(
            &dir.path().join("etc/file-server.ini"),
            "port = 443\n",
            &format!("port = {port}\n"),
        );
        let mut s = XftpServer {
            dir,
            child: None,
            port,
            address: format!("xftp://{fp}@127.0.0.1:{port}"),
        };
        s.resume();
        s
    }

    fn command(dir: &Path) -> Command {
        let mut c = Command::new(bin("xftp-server"));
        c.env("XFTP_SERVER_CFG_PATH", dir.join("etc"))
            .env("XFTP_SERVER_LOG_PATH", dir.join("var"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// Starts the server (again) and waits until it listens.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Self::command(self.dir.path())
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_port(self.port);
    }

    /// Kills the server (SIGKILL: a machine that vanished) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How many chunk files the server holds on disk.
    pub fn stored_chunks(&self) -> usize {
        fn count(dir: &Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() { count(&p) } else { 1 }
                    })
                    .sum()
            })
        }
        count(&self.dir.path().join("files"))
    }
}

impl Drop for XftpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `xftp` with this profile; asserts success and returns stdout.
pub fn xftp(profile: &Path, args: &[&str]) -> String {
    let out = run_xftp(profile, args);
    assert!(
        out.status.success(),
        "xftp {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn run_xftp(profile: &Path, args: &[&str]) -> Output {
    xftp_command(profile, args).output().unwrap()
}

/// `xftp` started in the background with its output discarded, to be
/// killed part-way.
pub fn spawn_xftp(profile: &Path, args: &[&str]) -> Child {
    xftp_command(profile, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `xftp` with this profile, blind to the caller's server settings.
fn xftp_command(profile: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("xftp"));
    c.arg("--profile")
        .arg(profile)
        .args(args)
        .env_remove("XFTP_SERVERS")
        .env_remove("XFTP_CONFIG")
        .stdin(Stdio::null());
    c
}

/// Runs `xftp listen` until its output has `want` (or fails).
pub fn listen_for(profile: &Path, want: &str) -> String {
    let mut all = String::new();
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        all.push_str(&xftp(profile, &["listen", "--timeout", "2"]));
        if all.contains(want) {
            return all;
        }
    }
    panic!("xftp listen never printed {want:?}; it printed:\n{all}");
}

/// Runs a workspace binary to completion.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A `simplego-device run` process with its console on pipes.
pub struct Device {
    pub image: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    /// The thread collecting `lines`: joined after the process exits, so
    /// its last lines are in before they are looked at.
    reader: Option<std::thread::JoinHandle<()>>,
    /// Lines of earlier runs of this device.
    pub before: Vec<String>,
}

impl Device {
    /// `simplego-device init` in `dir`, then `run`.
    pub fn create(dir: &Path, name: &str, routers: &[&str]) -> Self {
        let image = dir.join(format!("{name}.img"));
        let mut args = vec!["init", "--sd", image.to_str().unwrap(), "--size", "64M"];
        args.extend(["--name", name]);
        for r in routers {
            args.extend(["--smp", r]);
        }
        let out = run("simplego-device", &args);
        assert!(out.status.success(), "simplego-device init: {out:?}");
        let mut d = Device {
            image,
            child: None,
            stdin: None,
            lines: Default::default(),
            reader: None,
            before: Vec::new(),
        };
        d.start();
        d
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let mut child = Command::new(bin("simplego-device"))
            .args(["run", "--sd", self.image.to_str().unwrap()])
            .env(
                "RUST_LOG",
                std::env::var("DEVICE_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        self.reader = Some(std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                sink.lock().unwrap().push(l);
            }
        }));
        self.lines = lines;
        self.child = Some(child);
        self.wait_for("ready");
    }

    /// What this run printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a line of this run that satisfies `f`; returns it.
    pub fn wait_line(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(l) = self.output().into_iter().find(|l| f(l)) {
                return l;
            }
            if Instant::now() > deadline {
                panic!(
                    "the device never printed {what}; it printed:\n{}",
                    self.output().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for(&self, want: &str) -> String {
        self.wait_line(want, |l| l.contains(want))
    }

    /// The device's contact address, as printed at start.
    pub fn address(&self) -> String {
        let l = self.wait_line("its address", |l| l.starts_with("address: "));
        l["address: ".len()..].to_string()
    }

    /// Types a console command.
    pub fn type_line(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    /// SIGKILL: what the device had not written is lost.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.join_reader();
            self.before.extend(self.output());
        }
    }

    /// SIGTERM; asserts a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm(&c);
            let st = c.wait().unwrap();
            assert!(st.success(), "the device's exit on SIGTERM: {st}");
            self.join_reader();
            let out = self.output();
            let peak: usize = out
                .iter()
                .find_map(|l| l.strip_prefix("heap peak: "))
                .and_then(|l| l.strip_suffix(" bytes"))
                .and_then(|n| n.parse().ok())
                .expect("the device prints its heap peak when it stops");
            eprintln!("device heap peak: {peak} bytes");
            assert!(
                peak <= DEVICE_HEAP_BOUND,
                "the device's heap peaked at {peak} bytes (bound {DEVICE_HEAP_BOUND})"
            );
            self.before.extend(out);
        }
    }

    /// Waits until the exited process's output is all read (its pipe
    /// closed with it; a child it left holding the pipe is not waited for).
    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !r.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }

    /// `simplego-device history` (the device must be stopped).
    pub fn history(&self) -> Vec<String> {
        let out = run(
            "simplego-device",
            &["history", "--sd", self.image.to_str().unwrap()],
        );
        assert!(out.status.success(), "simplego-device history: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Deterministic, non-repeating test content.
pub fn write_file(path: &Path, len: usize, seed: u32) {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    std::fs::write(path, v).unwrap();
}
