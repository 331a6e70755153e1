//! The real binary in temporary directories: init, start (up to the point
//! where the network server takes over), delete, help and version.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use smp_core::encoding::string::b64_encode;
use smp_core::file::description::FileSize;
use smp_core::tls::{ServerIdentity, load_fingerprint};
use xftp_server::cli::{self, StartConfig, VERSION_LINE};
use xftp_server::config::{ServerConfig, ServerPaths};

const BIN: &str = env!("CARGO_BIN_EXE_xftp-server");

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cfg: PathBuf,
    log: PathBuf,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Env {
            cfg: root.join("etc").join("xftp"),
            log: root.join("var").join("xftp"),
            root,
            _tmp: tmp,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("XFTP_SERVER_CFG_PATH", &self.cfg)
            .env("XFTP_SERVER_LOG_PATH", &self.log)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn files(&self) -> PathBuf {
        self.root.join("files")
    }

    fn init(&self, extra: &[&str]) -> Output {
        let files = self.files();
        let mut args = vec!["init", "-p", files.to_str().unwrap(), "-q", "10gb"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn ini(&self) -> PathBuf {
        self.cfg.join("file-server.ini")
    }

    fn edit_ini(&self, from: &str, to: &str) {
        let text = fs::read_to_string(self.ini()).unwrap();
        assert!(text.contains(from), "{from:?} not in the INI");
        fs::write(self.ini(), text.replacen(from, to, 1)).unwrap();
    }

    fn paths(&self) -> ServerPaths {
        ServerPaths {
            cfg_dir: self.cfg.clone(),
            log_dir: self.log.clone(),
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn fingerprint_of(env: &Env) -> String {
    b64_encode(&load_fingerprint(&env.cfg.join("ca.crt")).unwrap())
}

// --- version and help ------------------------------------------------------

#[test]
fn version_flag() {
    let env = Env::new();
    for flag in ["-v", "--version"] {
        let o = env.run(&[flag]);
        assert_eq!(code(&o), 0);
        assert_eq!(stdout(&o), format!("{VERSION_LINE}\n"));
    }
    assert!(VERSION_LINE.starts_with("SimpleX XFTP server v"));
}

#[test]
fn help_for_every_command() {
    let env = Env::new();
    for args in [
        &["--help"][..],
        &["-h"],
        &["init", "--help"],
        &["start", "--help"],
        &["delete", "--help"],
        &["help", "init"],
    ] {
        let o = env.run(args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage: xftp-server"), "{args:?}");
    }
    let o = env.run(&["init", "--help"]);
    let text = stdout(&o);
    for opt in [
        "--path",
        "--quota",
        "--ip",
        "--fqdn",
        "--sign-algorithm",
        "--disable-store-log",
        "--store-log",
        "--web-path",
    ] {
        assert!(text.contains(opt), "init help lacks {opt}");
    }
    // The resolved directories appear, as in the reference.
    assert!(text.contains(env.cfg.to_str().unwrap()));
    let o = env.run(&["start", "--help"]);
    assert!(stdout(&o).contains(env.ini().to_str().unwrap()));
}

#[test]
fn no_command_or_bad_options_exit_1() {
    let env = Env::new();
    assert_eq!(code(&env.run(&[])), 1);
    assert_eq!(code(&env.run(&["frobnicate"])), 1);
    assert_eq!(code(&env.run(&["init"])), 1);
    assert_eq!(
        code(&env.run(&["init", "-p", "/x"])),
        1,
        "quota is required"
    );
    assert_eq!(
        code(&env.run(&["init", "-q", "1gb"])),
        1,
        "path is required"
    );
    assert_eq!(code(&env.run(&["init", "-p", "/x", "-q", "1GB"])), 1);
    assert_eq!(
        code(&env.run(&["init", "-p", "/x", "-q", "1gb", "-a", "ed448"])),
        1
    );
    assert_eq!(
        code(&env.run(&["init", "-p", "/x", "-q", "1gb", "--disable-store-log", "-l"])),
        1
    );
    assert_eq!(
        code(&env.run(&["start", "--confirm-migrations", "sideways"])),
        1
    );
    assert!(!env.cfg.exists() && !env.log.exists(), "nothing created");
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let o = Command::new(BIN)
        .args(["init", "--help"])
        .env("XFTP_SERVER_CFG_PATH", "")
        .env("XFTP_SERVER_LOG_PATH", "")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains("creates /etc/opt/simplex-xftp and /var/opt/simplex-xftp directories"),
        "{}",
        stdout(&o)
    );
}

// --- init ------------------------------------------------------------------

#[test]
fn init_creates_identity_fingerprint_and_ini() {
    let env = Env::new();
    let o = env.init(&[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let fp = fingerprint_of(&env);
    let ini = env.ini();
    let ca_key = env.cfg.join("ca.key");
    let expected = format!(
        "Server initialized, you can modify configuration in {ini}.\n\
         Run `xftp-server start` to start server.\n\
         ----------\n\
         You should store CA private key securely and delete it from the server.\n\
         If server TLS credential is compromised this key can be used to sign a new one, keeping the same server identity and established connections.\n\
         CA private key location:\n\
         {ca_key}\n\
         ----------\n\
         {VERSION_LINE}\n\
         Fingerprint: {fp}\n\
         Server address: xftp://{fp}@<hostnames>\n",
        ini = ini.display(),
        ca_key = ca_key.display(),
    );
    assert_eq!(stdout(&o), expected);

    assert_eq!(
        fs::read_to_string(env.cfg.join("fingerprint")).unwrap(),
        format!("{fp}\n")
    );
    // The INI can hold the upload and control-port passwords.
    for key in ["ca.key", "server.key", "file-server.ini"] {
        assert_eq!(mode(&env.cfg.join(key)), 0o600, "{key}");
    }
    for f in ["ca.crt", "server.crt", "fingerprint"] {
        let m = mode(&env.cfg.join(f));
        assert_eq!(m & 0o600, 0o600, "{f} readable and writable by its owner");
        assert_eq!(m & 0o022, 0, "{f} not writable by others");
    }
    for d in [&env.cfg, &env.log] {
        assert!(d.is_dir());
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    assert!(ServerIdentity::load(&env.cfg).is_ok());
    assert!(
        env.files().is_dir(),
        "init creates [FILES] path (the reference does not, and its start then fails)"
    );

    let c = ServerConfig::parse(&fs::read_to_string(&ini).unwrap()).unwrap();
    assert!(c.store_log);
    assert_eq!(c.files_path, env.files());
    assert_eq!(c.storage_quota, Some(FileSize(10 << 30)));
    assert_eq!(c.host.as_deref(), Some("<hostnames>"));
    assert_eq!(c.port, 443);
    assert_eq!(c.web.static_path, Some(env.log.join("www")));
}

/// `init` makes the files directory (0700), keeps one the operator made,
/// and refuses a path that is a file, with a hint naming the option.
#[test]
fn init_creates_the_files_directory_or_says_what_to_do() {
    let env = Env::new();
    assert!(!env.files().exists());
    assert_eq!(code(&env.init(&[])), 0);
    let mode = fs::metadata(env.files()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the files directory is the server's alone");

    let mine = Env::new();
    fs::create_dir(mine.files()).unwrap();
    fs::set_permissions(mine.files(), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(mine.files().join("keep"), b"x").unwrap();
    assert_eq!(code(&mine.init(&[])), 0);
    assert_eq!(
        fs::metadata(mine.files()).unwrap().permissions().mode() & 0o777,
        0o750,
        "an existing directory is the operator's"
    );
    assert!(mine.files().join("keep").exists());

    let file = Env::new();
    fs::write(file.files(), b"not a directory").unwrap();
    let o = file.init(&[]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("is not a directory: choose another path for the files (-p)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn init_options_reach_the_ini_and_certificates() {
    let env = Env::new();
    let web = env.root.join("site");
    let o = env.init(&[
        "--fqdn",
        "xftp.example.com",
        "--ip",
        "10.1.2.3",
        "-a",
        "ED25519",
        "--disable-store-log",
        "--web-path",
        web.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let fp = fingerprint_of(&env);
    assert!(stdout(&o).ends_with(&format!("Server address: xftp://{fp}@xftp.example.com\n")));
    let c = ServerConfig::parse(&fs::read_to_string(env.ini()).unwrap()).unwrap();
    assert!(!c.store_log);
    assert_eq!(c.host.as_deref(), Some("xftp.example.com"));
    assert_eq!(c.web.static_path, Some(web));
    // An Ed25519 PKCS#8 key is 48 DER bytes (64 base64 characters); Ed448 is 73.
    let key = fs::read_to_string(env.cfg.join("ca.key")).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(body.len(), 64, "{key}");

    let env = Env::new();
    let o = env.init(&["--ip", "10.1.2.3"]);
    assert_eq!(code(&o), 0);
    let fp = fingerprint_of(&env);
    assert!(stdout(&o).ends_with(&format!("Server address: xftp://{fp}@10.1.2.3\n")));
    let key = fs::read_to_string(env.cfg.join("ca.key")).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(body.len(), 100, "ED448 is the default: {key}");
}

#[test]
fn init_twice_refuses_and_keeps_the_identity() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    let fp = fingerprint_of(&env);
    let o = env.init(&[]);
    assert_eq!(code(&o), 1);
    assert_eq!(
        stdout(&o),
        format!(
            "Error: server is already initialized ({} exists).\nRun `xftp-server start`.\n",
            env.ini().display()
        )
    );
    assert_eq!(fingerprint_of(&env), fp);
}

#[test]
fn init_refuses_non_empty_directories_without_deleting_anything() {
    for which in ["cfg", "log"] {
        let env = Env::new();
        let dir = if which == "cfg" { &env.cfg } else { &env.log };
        fs::create_dir_all(dir).unwrap();
        let precious = dir.join("precious.txt");
        fs::write(&precious, "keep me").unwrap();
        let o = env.init(&[]);
        assert_eq!(code(&o), 1, "{which}");
        assert!(
            stdout(&o).contains(&format!("Error: directory {} is not empty.", dir.display())),
            "{}",
            stdout(&o)
        );
        assert_eq!(fs::read_to_string(&precious).unwrap(), "keep me");
        assert!(!env.ini().exists());
        assert!(!env.cfg.join("ca.key").exists());
    }
    // Existing but empty directories are fine.
    let env = Env::new();
    fs::create_dir_all(&env.cfg).unwrap();
    fs::create_dir_all(&env.log).unwrap();
    assert_eq!(code(&env.init(&[])), 0);
}

// --- start -----------------------------------------------------------------

#[test]
fn start_without_ini() {
    let env = Env::new();
    let o = env.run(&["start"]);
    assert_eq!(code(&o), 1);
    assert_eq!(
        stdout(&o),
        format!(
            "Error: server is not initialized ({} does not exist).\nRun `xftp-server init`.\n",
            env.ini().display()
        )
    );
}

/// Runs `start` until it prints `Listening on port`, then stops it: the
/// banner is complete at that point whether or not a network server is
/// wired in behind it.
fn start_banner(env: &Env) -> Vec<String> {
    let mut child = env
        .cmd(&["start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let done = line.starts_with("Listening on port");
            lines.push(line);
            if done {
                break;
            }
        }
        let _ = tx.send(lines);
    });
    let lines = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    lines.expect("start printed its banner")
}

#[test]
fn start_banner_after_init() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    let fp = fingerprint_of(&env);
    env.edit_ini("port = 443", "port = 18443");
    let expected = vec![
        VERSION_LINE.to_string(),
        format!("Fingerprint: {fp}"),
        format!("Server address: xftp://{fp}@<hostnames>:18443"),
        "Warning: server source code is not specified.".into(),
        "Add 'source_code' property to [INFORMATION] section of INI file.".into(),
        format!(
            "Store log: {}",
            env.log.join("file-server-store.log").display()
        ),
        "expiring files after 2 days".into(),
        "not expiring inactive clients".into(),
        "Uploading new files allowed.".into(),
        "Listening on port 18443...".into(),
    ];
    assert_eq!(start_banner(&env), expected);
}

#[test]
fn start_banner_reflects_the_settings() {
    let env = Env::new();
    assert_eq!(
        code(&env.init(&["--disable-store-log", "-n", "files.example.org"])),
        0
    );
    let fp = fingerprint_of(&env);
    env.edit_ini("port = 443", "port = 18444");
    env.edit_ini(
        "# source_code = https://github.com/simplex-chat/simplexmq",
        "source_code = https://example.org/fork",
    );
    env.edit_ini("expire_files_hours = 48", "expire_files_hours = 36");
    env.edit_ini(
        "disconnect = off",
        "disconnect = on\nttl = 600\ncheck_interval = 60",
    );
    env.edit_ini(
        "# create_password = your-upload-password",
        "create_password = pw",
    );
    let banner = start_banner(&env);
    assert_eq!(
        banner[2..],
        [
            format!("Server address: xftp://{fp}@files.example.org:18444"),
            "Server source code: https://example.org/fork".into(),
            "Store log disabled.".into(),
            "expiring files after 36 hours".into(),
            "expiring clients inactive for 600 seconds every 60 seconds".into(),
            "Uploading new files requires password.".into(),
            "Listening on port 18444...".into(),
        ]
    );

    env.edit_ini("new_files = on", "new_files = off");
    let banner = start_banner(&env);
    assert!(banner.contains(&"Uploading new files NOT allowed.".to_string()));
}

#[test]
fn start_with_port_443_omits_it_from_the_address() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    let config = ServerConfig::parse(&fs::read_to_string(env.ini()).unwrap()).unwrap();
    let banner = cli::start_banner("FP=", &config, &env.paths());
    assert_eq!(banner[2], "Server address: xftp://FP=@<hostnames>");
    assert_eq!(banner.last().unwrap(), "Listening on port 443...");
}

#[test]
fn start_refuses_a_changed_fingerprint() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    fs::write(
        env.cfg.join("fingerprint"),
        format!("{}\n", b64_encode(&[7u8; 32])),
    )
    .unwrap();
    let o = env.run(&["start"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "Stored fingerprint is invalid.\n");

    // A CA certificate replaced after init is noticed the same way.
    let env = Env::new();
    let other = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    assert_eq!(code(&other.init(&[])), 0);
    fs::copy(other.cfg.join("ca.crt"), env.cfg.join("ca.crt")).unwrap();
    let o = env.run(&["start"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "Stored fingerprint is invalid.\n");
}

#[test]
fn start_refuses_a_missing_fingerprint_file() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    fs::remove_file(env.cfg.join("fingerprint")).unwrap();
    let o = env.run(&["start"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("fingerprint"), "{}", stderr(&o));
}

#[test]
fn start_reports_ini_errors_before_printing_anything() {
    let cases = [
        (
            "enable = on",
            "enable = yes",
            "invalid INI setting enable: yes",
        ),
        (
            "port = 443",
            "port = 443 # https",
            "invalid INI setting port: 443 # https",
        ),
        (
            "port = 443",
            "port = 5223,443",
            "invalid INI setting port: 5223,443",
        ),
        (
            "port = 443",
            "prt = 443",
            "no key port in section TRANSPORT",
        ),
        ("\npath = ", "\npth = ", "no key path in section FILES"),
        (
            "expire_files_hours = 48",
            "expire_files_hours = two days",
            "invalid INI setting expire_files_hours: two days",
        ),
        (
            "storage_quota = 10gb",
            "storage_quota = 10 GB",
            "invalid INI setting storage_quota: 10 GB",
        ),
        (
            "store_files = memory",
            "store_files = disk",
            "Invalid store_files value: disk",
        ),
        // A stray line hides every later section, as with the reference.
        ("[AUTH]", "oops\n[AUTH]", "no key port in section TRANSPORT"),
    ];
    for (from, to, message) in cases {
        let env = Env::new();
        assert_eq!(code(&env.init(&[])), 0);
        env.edit_ini(from, to);
        let o = env.run(&["start"]);
        assert_eq!(code(&o), 1, "{to}");
        assert!(stderr(&o).contains(message), "{to}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{to}");
    }
}

#[test]
fn start_refuses_unsupported_modes_clearly() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    env.edit_ini("store_files = memory", "store_files = database");
    let o = env.run(&["start"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).starts_with(
        "Error: server binary is compiled without support for PostgreSQL database.\n"
    ));

    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    env.edit_ini("# cert = ", "cert = ");
    env.edit_ini("# key = ", "key = ");
    let o = env.run(&["start"]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).starts_with("invalid credential"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn start_hands_the_checked_config_to_the_callback() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    let paths = env.paths();
    let args = cli::parse_args(&paths, ["xftp-server", "start"]).unwrap();
    let mut got: Option<StartConfig> = None;
    let status = cli::run(&paths, args, |cfg| {
        got = Some(cfg);
        Ok(())
    });
    assert_eq!(status, std::process::ExitCode::SUCCESS);
    let cfg = got.expect("callback called");
    assert_eq!(cfg.paths, paths);
    assert_eq!(cfg.config.files_path, env.files());
    assert_eq!(cfg.identity.fingerprint_b64(), fingerprint_of(&env));

    let args = cli::parse_args(&paths, ["xftp-server", "start"]).unwrap();
    let status = cli::run(&paths, args, |_| Err("bind failed".into()));
    assert_eq!(status, std::process::ExitCode::FAILURE);

    // No INI: the callback is never called.
    let other = Env::new();
    let args = cli::parse_args(&other.paths(), ["xftp-server", "start"]).unwrap();
    let status = cli::run(&other.paths(), args, |_| panic!("must not start"));
    assert_eq!(status, std::process::ExitCode::FAILURE);
}

#[test]
fn start_loads_web_credentials() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    let (_, web) =
        smp_core::tls::ServerIdentity::generate(smp_core::tls::KeyAlgorithm::Ed25519, "localhost")
            .unwrap();
    std::fs::write(
        env.cfg.join("web.crt"),
        format!("{}{}", web.server_crt, web.ca_crt),
    )
    .unwrap();
    std::fs::write(env.cfg.join("web.key"), web.server_key.as_bytes()).unwrap();
    env.edit_ini("# cert = ", "cert = ");
    env.edit_ini("# key = ", "key = ");
    let paths = env.paths();
    let args = cli::parse_args(&paths, ["xftp-server", "start"]).unwrap();
    let mut got: Option<StartConfig> = None;
    let status = cli::run(&paths, args, |cfg| {
        got = Some(cfg);
        Ok(())
    });
    assert_eq!(status, std::process::ExitCode::SUCCESS);
    let web_credential = got.expect("started").web_credential.expect("loaded");
    assert_eq!(web_credential.chain().len(), 2);

    // A key that is not the certificate's: invalid credential, exit 1.
    std::fs::write(env.cfg.join("web.key"), web.ca_key.as_bytes()).unwrap();
    let o = env.run(&["start"]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).starts_with("invalid credential"),
        "{}",
        stdout(&o)
    );
}

// --- delete ----------------------------------------------------------------

const DELETE_PROMPT: &str = "WARNING: deleting the server will make all queues inaccessible, because the server identity (certificate fingerprint) will change.\nTHIS CANNOT BE UNDONE!\nContinue (Y/n): ";

#[test]
fn delete_needs_exactly_capital_y() {
    let env = Env::new();
    assert_eq!(code(&env.init(&[])), 0);
    for answer in [&b"n\n"[..], b"y\n", b"yes\n", b"Y \n", b" Y\n", b"\n", b""] {
        let o = env.run_with_input(&["delete"], answer);
        assert_eq!(code(&o), 1, "{answer:?}");
        assert_eq!(stdout(&o), format!("{DELETE_PROMPT}Server NOT deleted\n"));
        assert!(env.ini().exists() && env.cfg.join("ca.key").exists() && env.log.exists());
    }
    let o = env.run_with_input(&["delete"], b"Y\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{DELETE_PROMPT}Deleted configuration and log files\n")
    );
    assert!(!env.cfg.exists() && !env.log.exists());
    // Nothing to delete is not an error, and init works again afterwards.
    let o = env.run_with_input(&["delete"], b"Y\n");
    assert_eq!(code(&o), 0);
    assert_eq!(code(&env.init(&[])), 0);
}
