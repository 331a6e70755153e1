//! The operator's installer (`scripts/install.sh`) and the systemd units
//! (`dist/systemd`), in a throwaway root: users, directories and modes as
//! README says, paths in the configuration as the installed system sees
//! them, the same tree and the same identities after a second run, and
//! units that `systemd-analyze verify` accepts with an exposure under 3.0.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use simplego_tests::bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// Whether this test can run here: it creates users and chowns, so it needs
/// root; CI runs as root and must not skip it.
fn root_or_skip() -> bool {
    let id = Command::new("id").arg("-u").output().unwrap();
    let root = String::from_utf8_lossy(&id.stdout).trim() == "0";
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the installer test as root"
        );
        eprintln!("skipped: the installer test needs root");
    }
    root
}

/// A root with just the account files `useradd --prefix` edits, and the
/// system's own units for `systemd-analyze --root` to resolve targets.
fn throwaway_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    for (name, text, mode) in [
        ("passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644),
        ("group", "root:x:0:\n", 0o644),
        ("shadow", "root:*:19000:0:99999:7:::\n", 0o600),
        ("gshadow", "root:*::\n", 0o600),
    ] {
        let p = etc.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let units = dir.path().join("usr/lib/systemd");
    std::fs::create_dir_all(&units).unwrap();
    let st = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(&units)
        .status()
        .unwrap();
    assert!(st.success(), "copying the system's units");
    dir
}

/// A throwaway root the installer has run in once; `None` when this test
/// cannot run here (see [`root_or_skip`]).
fn installed() -> Option<tempfile::TempDir> {
    if !root_or_skip() {
        return None;
    }
    let dir = throwaway_root();
    install(dir.path());
    Some(dir)
}

fn install(root: &Path) -> Output {
    let bins = bin("smp-server").parent().unwrap().to_path_buf();
    bin("xftp-server");
    let out = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg("--root")
        .arg(root)
        .arg("--bin")
        .arg(&bins)
        .args(["--fqdn", "relay.example.org", "--xftp-quota", "1gb"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every path under the root (but the copied system units) with its mode,
/// owner, group and, for files, contents.
fn tree(root: &Path) -> BTreeMap<String, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == "usr/lib/systemd" {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else if m.file_type().is_symlink() {
            std::fs::read_link(&p)
                .unwrap()
                .to_string_lossy()
                .as_bytes()
                .to_vec()
        } else {
            Vec::new()
        };
        out.insert(rel, (m.mode() & 0o7777, m.uid(), m.gid(), content));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

fn uid(root: &Path, user: &str) -> u32 {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap_or_else(|| panic!("no user {user} in {passwd}"));
    assert!(
        line.ends_with(":/usr/sbin/nologin"),
        "{user} cannot log in: {line}"
    );
    line.split(':').nth(2).unwrap().parse().unwrap()
}

#[test]
fn installer_sets_up_both_services_and_a_second_run_changes_nothing() {
    let Some(dir) = installed() else { return };
    let root = dir.path();
    let t = tree(root);
    let (smp, xftp) = (uid(root, "smp"), uid(root, "xftp"));
    let expect = |path: &str, mode: u32, owner: u32| {
        let (m, u, _, _) = t
            .get(path)
            .unwrap_or_else(|| panic!("{path} not installed"));
        assert_eq!((*m, *u), (mode, owner), "{path}: mode {m:o}, owner {u}");
    };
    for d in ["etc/opt/simplex", "var/opt/simplex"] {
        expect(d, 0o700, smp);
    }
    for d in ["etc/opt/simplex-xftp", "var/opt/simplex-xftp", "srv/xftp"] {
        expect(d, 0o700, xftp);
    }
    for f in ["ca.key", "server.key", "smp-server.ini"] {
        expect(&format!("etc/opt/simplex/{f}"), 0o600, smp);
    }
    for f in ["ca.key", "server.key", "file-server.ini"] {
        expect(&format!("etc/opt/simplex-xftp/{f}"), 0o600, xftp);
    }
    for b in ["smp-server", "xftp-server"] {
        expect(&format!("usr/local/bin/{b}"), 0o755, 0);
        expect(&format!("etc/systemd/system/{b}.service"), 0o644, 0);
        assert!(
            t.contains_key(&format!(
                "etc/systemd/system/multi-user.target.wants/{b}.service"
            )),
            "{b} is enabled"
        );
    }
    for (b, cfg) in [
        ("smp-server", "/etc/opt/simplex"),
        ("xftp-server", "/etc/opt/simplex-xftp"),
    ] {
        for page in [
            format!("usr/local/share/man/man1/{b}.1"),
            format!("usr/local/share/man/man1/{b}-init.1"),
            format!("usr/local/share/man/man1/{b}-start.1"),
            format!("usr/local/share/bash-completion/completions/{b}"),
            format!("usr/local/share/zsh/site-functions/_{b}"),
            format!("usr/local/share/fish/vendor_completions.d/{b}.fish"),
        ] {
            expect(&page, 0o644, 0);
            assert!(!t[&page].3.is_empty(), "{page} is empty");
        }
        // The pages name the installed directories, not the throwaway root.
        let init = String::from_utf8(t[&format!("usr/local/share/man/man1/{b}-init.1")].3.clone())
            .unwrap()
            .replace("\\-", "-");
        assert!(init.contains(cfg), "{b}-init.1 does not name {cfg}");
        assert!(!init.contains(&*root.to_string_lossy()), "{b}-init.1");
    }
    let ini = String::from_utf8(t["etc/opt/simplex-xftp/file-server.ini"].3.clone()).unwrap();
    assert!(ini.contains("\npath = /srv/xftp\n"), "{ini}");
    assert!(
        !ini.contains(&*root.to_string_lossy()),
        "the configuration names the installed paths, not the throwaway root"
    );

    // Again: the same tree, the same identities, and it says it kept them.
    let again = install(root);
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        said.contains("keeping the SMP router's existing identity"),
        "{said}"
    );
    assert!(
        said.contains("keeping the XFTP server's existing identity"),
        "{said}"
    );
    let t2 = tree(root);
    for (path, v) in &t {
        assert_eq!(t2.get(path), Some(v), "{path} changed on the second run");
    }
    assert_eq!(t2.len(), t.len(), "the second run added files");

    // An identity without its configuration is still never replaced.
    std::fs::remove_file(root.join("etc/opt/simplex/smp-server.ini")).unwrap();
    install(root);
    assert_eq!(
        std::fs::read(root.join("etc/opt/simplex/ca.key")).unwrap(),
        t["etc/opt/simplex/ca.key"].3,
        "the CA key stays"
    );
}

#[test]
fn units_verify_and_are_sandboxed() {
    let Some(dir) = installed() else { return };
    let root = dir.path();
    let units = [
        "/etc/systemd/system/smp-server.service",
        "/etc/systemd/system/xftp-server.service",
    ];
    let out = Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .arg("verify")
        .args(units)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
    for unit in units {
        let out = Command::new("systemd-analyze")
            .arg(format!("--root={}", root.display()))
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in {text}"));
        eprintln!("{unit}: exposure {level}");
        assert!(level < 3.0, "{unit}: exposure {level}");
    }
}
