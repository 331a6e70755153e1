//! The SimpleGo device's stories, end to end: `smp-server`s, `xftp-server`s,
//! `xftp`, `simplego-device` and `device-sync` as real processes on
//! 127.0.0.1.

use std::path::Path;

use simplego_tests::*;

fn profile(dir: &Path, name: &str, router: &SmpRouter) {
    xftp(dir, &["profile", "--name", name, "--smp", &router.address]);
}

/// `device-sync extract` of `name` from the stopped device's card gives
/// the bytes of `original`.
fn assert_extracts(dev: &Device, name: &str, original: &Path) {
    let out = original.with_extension("extracted");
    let img = dev.image.to_str().unwrap();
    let r = run(
        "device-sync",
        &["extract", img, name, out.to_str().unwrap()],
    );
    assert!(r.status.success(), "{r:?}");
    assert!(std::fs::read(&out).unwrap() == std::fs::read(original).unwrap());
}

/// `who` (an xftp profile) connects to the device's address and both see
/// the other connected.
fn connect_to_device(who: &Path, who_name: &str, dev: &Device, dev_name: &str) {
    xftp(who, &["connect", &dev.address()]);
    listen_for(who, &format!("{dev_name} connected"));
    dev.wait_for(&format!("{who_name} connected"));
}

#[test]
fn text_both_ways_by_address_and_by_invitation() {
    let (r1, r2) = (SmpRouter::start(), SmpRouter::start());
    let t = tempfile::tempdir().unwrap();
    let mut dev = Device::create(t.path(), "dev", &[&r1.address]);
    let (alice, bob) = (t.path().join("alice"), t.path().join("bob"));
    profile(&alice, "alice", &r2);
    profile(&bob, "bob", &r2);

    // The CLI joins the device's contact address.
    connect_to_device(&alice, "alice", &dev, "dev");
    xftp(&alice, &["msg", "dev", "hello device"]);
    dev.wait_for("alice: hello device");
    dev.type_line("/msg alice hello alice");
    listen_for(&alice, "dev: hello alice");

    // The device joins the CLI's invitation.
    let link = xftp(&bob, &["invite"]);
    dev.type_line(&format!("/connect {}", link.lines().next().unwrap()));
    listen_for(&bob, "dev connected");
    dev.wait_for("bob connected");
    xftp(&bob, &["msg", "dev", "hi from bob"]);
    dev.wait_for("bob: hi from bob");
    dev.type_line("/msg bob hi bob");
    listen_for(&bob, "dev: hi bob");

    dev.type_line("/contacts");
    dev.wait_for("alice\tconnected");
    dev.wait_for("bob\tconnected");
    dev.type_line("/msg carol hello");
    dev.wait_for("no contact named carol");

    // The routers are changed on the device: new queues go to r2 now.
    let port = r2.address.rsplit(':').next().unwrap().to_string();
    let r2_port = format!(":{port}");
    let r2_default = |dev: &Device| {
        dev.wait_line("r2 as the default router", |l| {
            l.starts_with("router ")
                && l.ends_with(&format!("{r2_port} (default: new queues go here)"))
        })
    };
    dev.type_line(&format!("/routers {} {}", r2.address, r1.address));
    r2_default(&dev);
    dev.type_line("/invite");
    let invitation = dev.wait_line("an invitation", |l| l.starts_with("invitation: "));
    // The invitation's queue is on r2: its short link names r2's port.
    assert!(invitation.contains(&format!("p={port}")), "{invitation}");

    dev.stop();
    let h = dev.history();
    for want in [
        "alice: hello device",
        "> alice: hello alice",
        "bob: hi from bob",
        "> bob: hi bob",
    ] {
        assert_eq!(h.iter().filter(|l| *l == want).count(), 1, "{want}: {h:?}");
    }
    // The change is kept across a restart.
    dev.start();
    dev.type_line("/routers");
    r2_default(&dev);
    dev.stop();
}

#[test]
fn a_file_sent_to_the_device_is_extracted_from_its_card() {
    let (r1, r2) = (SmpRouter::start(), SmpRouter::start());
    let (x1, x2) = (XftpServer::start(), XftpServer::start());
    let t = tempfile::tempdir().unwrap();
    let mut dev = Device::create(t.path(), "dev", &[&r1.address]);
    let alice = t.path().join("alice");
    profile(&alice, "alice", &r2);
    connect_to_device(&alice, "alice", &dev, "dev");

    let file = t.path().join("report.pdf");
    write_file(&file, 5 << 20, 3);
    let servers = format!("{};{}", x1.address, x2.address);
    xftp(
        &alice,
        &[
            "send",
            file.to_str().unwrap(),
            "--to",
            "dev",
            "-s",
            &servers,
            "--descr-part-size",
            "1000",
        ],
    );
    xftp(&alice, &["msg", "dev", "the report is on its way"]);
    dev.wait_for("alice offers report.pdf (5242880 bytes)");
    let done = dev.wait_for("alice sent report.pdf (5242880 bytes): on the card as F");
    dev.wait_for("alice: the report is on its way");
    assert!(dev.output().iter().any(|l| l == "report.pdf: 100%"));
    dev.type_line("/files");
    dev.wait_line("the file in /files", |l| {
        l.contains("\tcomplete\t5242880\treport.pdf")
    });
    dev.stop();

    // device-sync finds the card key beside the image.
    let img = dev.image.to_str().unwrap();
    assert_extracts(&dev, "report.pdf", &file);
    let r = run("device-sync", &["verify", img]);
    assert!(r.status.success(), "{r:?}");
    let base = done.rsplit(' ').next().unwrap();
    let ls = String::from_utf8_lossy(&run("device-sync", &["ls", img]).stdout).into_owned();
    assert!(ls.contains(base) && ls.contains("report.pdf"), "{ls}");
    assert!(
        dev.history()
            .contains(&"alice: the report is on its way".to_string())
    );
}

#[test]
fn a_kill_9_loses_no_message_and_the_download_resumes() {
    let (r1, r2) = (SmpRouter::start(), SmpRouter::start());
    let x1 = XftpServer::start();
    let t = tempfile::tempdir().unwrap();
    let mut dev = Device::create(t.path(), "dev", &[&r1.address]);
    let alice = t.path().join("alice");
    profile(&alice, "alice", &r2);
    connect_to_device(&alice, "alice", &dev, "dev");

    // Messages arriving while the device is killed and started again.
    for n in 0..12 {
        xftp(&alice, &["msg", "dev", &format!("m{n:02}")]);
    }
    dev.wait_for("alice: m02");
    dev.kill9();
    for n in 12..20 {
        xftp(&alice, &["msg", "dev", &format!("m{n:02}")]);
    }
    dev.start();
    dev.wait_for("alice: m19");

    // A download cut by a kill -9, resumed after the restart.
    let file = t.path().join("big.bin");
    write_file(&file, 24 << 20, 9);
    xftp(
        &alice,
        &[
            "send",
            file.to_str().unwrap(),
            "--to",
            "dev",
            "-s",
            &x1.address,
        ],
    );
    dev.wait_line("progress past the first chunk", |l| {
        l.starts_with("big.bin: ") && !l.ends_with(" 0%")
    });
    dev.kill9();
    dev.start();
    dev.wait_for("alice sent big.bin (25165824 bytes): on the card as F");
    dev.stop();

    let h = dev.history();
    let got: Vec<&str> = h.iter().map(String::as_str).collect();
    let want: Vec<String> = (0..20).map(|n| format!("alice: m{n:02}")).collect();
    assert_eq!(got, want, "every message once, in order");

    assert_extracts(&dev, "big.bin", &file);
}

#[test]
fn two_devices_talk_through_two_routers() {
    let (r1, r2) = (SmpRouter::start(), SmpRouter::start());
    let t = tempfile::tempdir().unwrap();
    let mut d1 = Device::create(t.path(), "one", &[&r1.address]);
    let mut d2 = Device::create(t.path(), "two", &[&r2.address]);
    d1.type_line("/invite");
    let l = d1.wait_line("an invitation", |l| l.starts_with("invitation: "));
    d2.type_line(&format!("/connect {}", &l["invitation: ".len()..]));
    d1.wait_for("two connected");
    d2.wait_for("one connected");
    d1.type_line("/msg two hello two");
    d2.wait_for("one: hello two");
    d2.type_line("/msg one hello one");
    d1.wait_for("two: hello one");
    d1.stop();
    d2.stop();
    assert_eq!(d1.history(), ["> two: hello two", "two: hello one"]);
    assert_eq!(d2.history(), ["one: hello two", "> one: hello one"]);
}

#[test]
fn a_router_down_is_retried_and_the_others_keep_working() {
    let (mut r1, r2, r3) = (SmpRouter::start(), SmpRouter::start(), SmpRouter::start());
    let t = tempfile::tempdir().unwrap();
    // r1 first: the address and the first contact's queue live there.
    let mut dev = Device::create(t.path(), "dev", &[&r1.address, &r2.address]);
    let (alice, bob) = (t.path().join("alice"), t.path().join("bob"));
    profile(&alice, "alice", &r3);
    profile(&bob, "bob", &r3);
    connect_to_device(&alice, "alice", &dev, "dev");
    xftp(&alice, &["msg", "dev", "before"]);
    dev.wait_for("alice: before");

    r1.kill();
    let port = r1.address.rsplit(':').next().unwrap().to_string();
    dev.wait_for(&format!(
        "router 127.0.0.1:{port} cannot be reached; retrying"
    ));

    // A new contact's queue goes to the router that is up, and sending
    // goes through it as the private-routing proxy.
    dev.type_line("/invite");
    let l = dev.wait_line("an invitation", |l| l.starts_with("invitation: "));
    xftp(&bob, &["connect", &l["invitation: ".len()..]]);
    listen_for(&bob, "dev connected");
    dev.wait_for("bob connected");
    xftp(&bob, &["msg", "dev", "hi while r1 is down"]);
    dev.wait_for("bob: hi while r1 is down");
    dev.type_line("/msg bob hi bob");
    listen_for(&bob, "dev: hi bob");
    dev.type_line("/msg alice still here");
    listen_for(&alice, "dev: still here");

    // Back: the device reconnects by itself and gets alice's queue again.
    r1.resume();
    dev.wait_for(&format!("router 127.0.0.1:{port} is reachable again"));
    xftp(&alice, &["msg", "dev", "after"]);
    dev.wait_for("alice: after");
    dev.stop();
    let h = dev.history();
    for want in [
        "alice: before",
        "bob: hi while r1 is down",
        "> bob: hi bob",
        "> alice: still here",
        "alice: after",
    ] {
        assert_eq!(h.iter().filter(|l| *l == want).count(), 1, "{want}: {h:?}");
    }
}
