//! Real xftp-servers on 127.0.0.1 (fresh identities, temp dirs) and a way
//! to run the real `xftp` binary against them.
#![allow(dead_code)]

pub mod routers;

use std::path::{Path, PathBuf};
use std::process::Output;

use smp_core::crypto::keys::KeyAlgorithm;
use smp_core::tls::ServerIdentity;
use xftp_server::app::{RunningServer, Settings, start};

pub struct TestServer {
    pub address: String,
    pub files: PathBuf,
    pub handle: Option<RunningServer>,
}

pub struct Servers {
    pub dir: tempfile::TempDir,
    pub servers: Vec<TestServer>,
}

impl Servers {
    pub async fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut servers = Vec::new();
        for i in 0..n {
            let d = dir.path().join(format!("server{i}"));
            let files = d.join("files");
            std::fs::create_dir_all(&files).unwrap();
            let (identity, _) = ServerIdentity::generate(KeyAlgorithm::Ed448, "127.0.0.1").unwrap();
            let mut s = Settings::new(
                identity.clone(),
                "127.0.0.1:0".parse().unwrap(),
                files.clone(),
            );
            s.store_log = Some(d.join("file-server-store.log"));
            let handle = start(s).await.unwrap();
            let address = format!(
                "xftp://{}@127.0.0.1:{}",
                identity.fingerprint_b64(),
                handle.addr.port()
            );
            servers.push(TestServer {
                address,
                files,
                handle: Some(handle),
            });
        }
        Self { dir, servers }
    }

    /// The `-s` argument for all servers.
    pub fn list(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.address.as_str())
            .collect::<Vec<_>>()
            .join(";")
    }

    pub async fn stop(&mut self, i: usize) {
        if let Some(h) = self.servers[i].handle.take() {
            h.stop().await;
        }
    }

    /// Chunk files stored on server `i` (complete ones, not `.part`).
    pub fn chunk_files(&self, i: usize) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.servers[i].files)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with(".part"))
            .collect();
        v.sort();
        v
    }

    pub async fn stop_all(mut self) {
        for i in 0..self.servers.len() {
            self.stop(i).await;
        }
    }
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `xftp` binary with no terminal, an empty stdin, and no
/// server configuration from the environment.
pub async fn xftp(args: &[&str]) -> Run {
    let out: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_xftp"))
        .args(args)
        .env_remove("XFTP_SERVERS")
        .env_remove("XFTP_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Deterministic, non-repeating test content.
pub fn write_file(path: &Path, len: usize, seed: u32) {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
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

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Checks the reference's `send` output contract and returns the web link.
pub fn check_send_output(run: &Run, out_dir: &Path, name: &str, n: usize) -> String {
    assert_eq!(run.status, 0, "send failed: {}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.split('\n').collect();
    assert!(lines[0].starts_with("Encrypting file..."), "{:?}", lines[0]);
    assert!(lines[0].contains("Uploading file..."), "{:?}", lines[0]);
    assert!(lines[0].contains("File uploaded!"), "{:?}", lines[0]);
    let dir = out_dir.join(format!("{name}.xftp"));
    assert_eq!(
        lines[1],
        format!(
            "Sender file description: {}",
            dir.join("snd.xftp.private").display()
        )
    );
    assert_eq!(lines[2], "Pass file descriptions to the recipient(s):");
    for i in 0..n {
        assert_eq!(
            lines[3 + i],
            dir.join(format!("rcv{}.xftp", i + 1)).display().to_string()
        );
    }
    assert_eq!(lines[3 + n], "");
    assert_eq!(lines[4 + n], "Web link:");
    assert!(
        lines[5 + n].starts_with("https://127.0.0.1/#"),
        "{:?}",
        lines[5 + n]
    );
    lines[5 + n].to_string()
}
