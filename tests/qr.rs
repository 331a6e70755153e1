//! Both servers' `init`, run on a terminal (a pty from `script`), draw
//! their address as a QR code; decoded back here, it is the address they
//! print. In a pipe they draw nothing.

use std::path::Path;
use std::process::Command;

use simplego_tests::bin;

/// Reads a code drawn with half blocks back into text: each character is
/// two modules, one above the other. Tries both colourings (a terminal may
/// draw the light modules or the dark ones).
fn decode(drawing: &[&str]) -> Option<String> {
    let rows: Vec<Vec<char>> = drawing.iter().map(|l| l.chars().collect()).collect();
    let width = rows.iter().map(Vec::len).max()?;
    let height = rows.len() * 2;
    let module = |x: usize, y: usize| -> bool {
        let c = rows[y / 2].get(x).copied().unwrap_or(' ');
        match c {
            '█' => true,
            '▀' => y.is_multiple_of(2),
            '▄' => !y.is_multiple_of(2),
            _ => false,
        }
    };
    const SCALE: usize = 4;
    for filled_is_dark in [true, false] {
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(width * SCALE, height * SCALE, |x, y| {
                if module(x / SCALE, y / SCALE) == filled_is_dark {
                    0
                } else {
                    255
                }
            });
        for grid in img.detect_grids() {
            if let Ok((_, text)) = grid.decode() {
                return Some(text);
            }
        }
    }
    None
}

/// Runs `cmd` with a pty as its terminal; returns what it printed there.
fn on_terminal(cmd: &str, env: &[(&str, &Path)]) -> String {
    let mut c = Command::new("script");
    c.args(["-qec", cmd, "/dev/null"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{cmd}: {text}");
    text
}

fn address_and_code(output: &str) -> (String, Option<String>) {
    let lines: Vec<&str> = output.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Server address: "))
        .unwrap_or_else(|| panic!("no address in {output}"));
    let address = lines[at]["Server address: ".len()..].trim().to_string();
    let drawing: Vec<&str> = lines[at + 1..]
        .iter()
        .copied()
        .take_while(|l| !l.is_empty() && l.chars().all(|c| "█▀▄ ".contains(c)))
        .collect();
    let code = if drawing.is_empty() {
        None
    } else {
        decode(&drawing)
    };
    (address, code)
}

#[test]
fn smp_init_draws_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = (dir.path().join("etc"), dir.path().join("var"));
    let exe = bin("smp-server");
    let out = on_terminal(
        &format!("'{}' init --yes --fqdn relay.example.org", exe.display()),
        &[("SMP_SERVER_CFG_PATH", &cfg), ("SMP_SERVER_LOG_PATH", &log)],
    );
    let (address, code) = address_and_code(&out);
    assert!(address.starts_with("smp://") && address.ends_with("@relay.example.org"));
    assert_eq!(code.as_deref(), Some(address.as_str()), "{out}");

    // In a pipe: the address, no drawing.
    let piped = Command::new(&exe)
        .args(["init", "--yes"])
        .env("SMP_SERVER_CFG_PATH", dir.path().join("etc2"))
        .env("SMP_SERVER_LOG_PATH", dir.path().join("var2"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&piped.stdout);
    assert!(text.contains("Server address: smp://"), "{text}");
    assert!(!text.contains('█') && !text.contains('▀'), "{text}");
}

#[test]
fn xftp_init_draws_its_address_once_it_has_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let exe = bin("xftp-server");
    let run = |name: &str, host: &str| {
        let root = dir.path().join(name);
        on_terminal(
            &format!(
                "'{}' init -p '{}' -q 1gb {host}",
                exe.display(),
                root.join("files").display()
            ),
            &[
                ("XFTP_SERVER_CFG_PATH", &root.join("etc")),
                ("XFTP_SERVER_LOG_PATH", &root.join("var")),
            ],
        )
    };
    let out = run("named", "--fqdn files.example.org");
    let (address, code) = address_and_code(&out);
    assert!(address.starts_with("xftp://") && address.ends_with("@files.example.org"));
    assert_eq!(code.as_deref(), Some(address.as_str()), "{out}");

    // Without a host the address holds `<hostnames>`: nothing to scan.
    let out = run("unnamed", "");
    let (address, code) = address_and_code(&out);
    assert!(address.ends_with("@<hostnames>"), "{address}");
    assert_eq!(code, None, "{out}");
}
