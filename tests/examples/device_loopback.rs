//! The main job on loopback: two SimpleGo routers and two XFTP servers
//! start on 127.0.0.1, a host-board device is made and run, `xftp` (as
//! "alice") joins the device's contact address and sends it a text and a
//! file, the device stores both on its encrypted SD card image, and the
//! file is taken off the card with `device-sync extract` and compared.
//!
//! `cargo run -p simplego-tests --example device_loopback [FILE]`
//! (a 4 MiB sample file when none is given).

use std::path::PathBuf;

use simplego_tests::*;

fn step(what: &str) {
    println!("==> {what}");
}

fn show(out: &str) {
    for l in out.lines() {
        println!("    {l}");
    }
}

fn main() {
    let t = tempfile::tempdir().expect("a temporary directory");
    let file = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => {
            let p = t.path().join("report.pdf");
            write_file(&p, 4 << 20, 7);
            p
        }
    };
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name in UTF-8")
        .to_string();
    let size = std::fs::metadata(&file).expect("the file to send").len();

    step("starting two SimpleGo routers and two XFTP servers on 127.0.0.1");
    let (r1, r2) = (SmpRouter::start(), SmpRouter::start());
    let (x1, x2) = (XftpServer::start(), XftpServer::start());
    for a in [&r1.address, &r2.address, &x1.address, &x2.address] {
        println!("    {a}");
    }

    step("simplego-device init and run (card image, key file, device state)");
    let mut dev = Device::create(t.path(), "device", &[&r1.address]);
    println!("    card image {}", dev.image.display());

    step("xftp (alice, on the other router) joins the device's address");
    let alice = t.path().join("alice");
    show(&xftp(
        &alice,
        &["profile", "--name", "alice", "--smp", &r2.address],
    ));
    show(&xftp(&alice, &["connect", &dev.address()]));
    listen_for(&alice, "device connected");
    dev.wait_for("alice connected");

    step("xftp sends a text and the file to the device");
    show(&xftp(&alice, &["msg", "device", "hello from alice"]));
    let servers = format!("{};{}", x1.address, x2.address);
    show(&xftp(
        &alice,
        &[
            "send",
            file.to_str().expect("a UTF-8 path"),
            "--to",
            "device",
            "-s",
            &servers,
        ],
    ));
    dev.wait_for("alice: hello from alice");
    dev.wait_for(&format!(
        "alice sent {name} ({size} bytes): on the card as F"
    ));

    step("the device stops (SIGTERM); what it printed:");
    dev.stop();
    show(&dev.before.join("\n"));

    step("simplego-device history: the text, from the card");
    let history = dev.history();
    show(&history.join("\n"));
    assert!(
        history.iter().any(|l| l == "alice: hello from alice"),
        "the text is not in the card's history"
    );

    step("device-sync ls and extract: the file, from the card");
    let img = dev.image.to_str().expect("a UTF-8 path");
    let ls = run("device-sync", &["ls", img]);
    show(&String::from_utf8_lossy(&ls.stdout));
    let out = t.path().join("extracted");
    let r = run(
        "device-sync",
        &["extract", img, &name, out.to_str().expect("a UTF-8 path")],
    );
    show(&String::from_utf8_lossy(&r.stdout));
    assert!(r.status.success(), "device-sync extract failed: {r:?}");
    let same = std::fs::read(&out).expect("the extracted file")
        == std::fs::read(&file).expect("the sent file");
    assert!(same, "the extracted file differs from the one sent");
    println!("==> OK: {name} ({size} bytes) came off the card identical");
}
