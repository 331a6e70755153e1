//! Files that survive lost servers: `xftp send --replicas` against real
//! `xftp-server` processes, servers killed under the recipient.

use std::collections::BTreeSet;
use std::path::Path;

use simplego_tests::{XftpServer, run_xftp, server_list, write_file};
use smp_core::file::description::FileDescription;

fn description(path: &Path) -> FileDescription {
    FileDescription::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn two_replicas_survive_any_one_lost_server() {
    let mut servers: Vec<XftpServer> = (0..3).map(|_| XftpServer::start()).collect();
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("profile");
    let src = work.path().join("report.bin");
    write_file(&src, (17 << 20) + 12_345, 12);
    let list = server_list(&servers);
    let sent = run_xftp(
        &profile,
        &[
            "send",
            src.to_str().unwrap(),
            work.path().to_str().unwrap(),
            "-n",
            "4",
            "-s",
            &list,
            "--replicas",
            "2",
        ],
    );
    assert!(sent.status.success(), "send: {}", text(&sent.stderr));
    let dir = work.path().join("report.bin.xftp");

    // Every chunk is on two different servers, and the servers hold
    // exactly those copies.
    let snd = description(&dir.join("snd.xftp.private"));
    assert!(snd.chunks.len() >= 5, "{} chunks", snd.chunks.len());
    for c in &snd.chunks {
        let on: BTreeSet<_> = c.replicas.iter().map(|r| r.server.to_string()).collect();
        assert_eq!(on.len(), 2, "chunk {} on {on:?}", c.chunk_no);
    }
    let stored: usize = servers.iter().map(XftpServer::stored_chunks).sum();
    assert_eq!(stored, 2 * snd.chunks.len());
    let info = run_xftp(&profile, &["info", dir.join("rcv1.xftp").to_str().unwrap()]);
    assert!(
        text(&info.stdout).contains("Replicas: each chunk on 2 servers"),
        "{}",
        text(&info.stdout)
    );

    // Any one server gone: the file still arrives whole, and recv names
    // the server that failed when it had to go round it.
    let original = std::fs::read(&src).unwrap();
    for (lost, server) in servers.iter_mut().enumerate() {
        server.stop();
        let rcv = dir.join(format!("rcv{}.xftp", lost + 1));
        let first_somewhere = description(&rcv)
            .chunks
            .iter()
            .any(|c| c.replicas[0].server.to_string() == server.address);
        let out = work.path().join(format!("out{lost}.bin"));
        let got = run_xftp(
            &profile,
            &["recv", rcv.to_str().unwrap(), out.to_str().unwrap(), "-y"],
        );
        let err = text(&got.stderr);
        assert!(got.status.success(), "server {lost} stopped: {err}");
        assert!(std::fs::read(&out).unwrap() == original, "bytes differ");
        if first_somewhere {
            assert!(
                err.contains(&format!("Server failed: {}", server.address)),
                "{err}"
            );
        }
        server.resume();
    }

    // Two servers gone: a chunk whose copies were both on them is named,
    // with the servers tried, and nothing is saved.
    servers[0].stop();
    servers[1].stop();
    let out = work.path().join("out-two-lost.bin");
    let got = run_xftp(
        &profile,
        &[
            "recv",
            dir.join("rcv4.xftp").to_str().unwrap(),
            out.to_str().unwrap(),
            "-y",
        ],
    );
    let err = text(&got.stderr);
    assert_eq!(got.status.code(), Some(3), "{err}");
    assert!(
        err.contains("could not be downloaded from any of its 2 servers"),
        "{err}"
    );
    assert!(err.contains(&servers[0].address) && err.contains(&servers[1].address));
    assert!(!out.exists());
    servers[0].resume();
    servers[1].resume();

    // del removes every copy on every server.
    let del = run_xftp(
        &profile,
        &["del", dir.join("snd.xftp.private").to_str().unwrap(), "-y"],
    );
    assert!(del.status.success(), "del: {}", text(&del.stderr));
    let left: Vec<usize> = servers.iter().map(XftpServer::stored_chunks).collect();
    assert_eq!(left, [0, 0, 0]);
}

#[test]
fn more_replicas_than_servers_is_refused_before_anything_is_sent() {
    let servers: Vec<XftpServer> = (0..2).map(|_| XftpServer::start()).collect();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("small.bin");
    write_file(&src, 100_000, 3);
    let got = run_xftp(
        &work.path().join("profile"),
        &[
            "send",
            src.to_str().unwrap(),
            work.path().to_str().unwrap(),
            "-s",
            &server_list(&servers),
            "--replicas",
            "3",
        ],
    );
    assert_eq!(got.status.code(), Some(1));
    assert!(
        text(&got.stderr).contains("3 copies of each chunk need 3 servers; 2 given"),
        "{}",
        text(&got.stderr)
    );
    assert_eq!(
        servers.iter().map(XftpServer::stored_chunks).sum::<usize>(),
        0
    );
    assert!(!work.path().join("small.bin.xftp").exists());
}

/// The servers holding each chunk of parity group `g` (0-based): its data
/// chunks, then its parity chunks.
fn group_servers(d: &FileDescription, g: usize) -> (Vec<String>, Vec<String>) {
    let p = d.parity.as_ref().expect("a parity description");
    let on = |c: &smp_core::file::description::FileChunk| c.replicas[0].server.to_string();
    let data = d.chunks[p.group_data(g, d.chunks.len())]
        .iter()
        .map(on)
        .collect();
    let parity = p.chunks[p.group_parity(g)].iter().map(on).collect();
    (data, parity)
}

#[test]
fn parity_4_2_survives_any_two_lost_servers_of_six() {
    let mut servers: Vec<XftpServer> = (0..6).map(|_| XftpServer::start()).collect();
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("profile");
    let src = work.path().join("album.bin");
    // 9 data chunks of 4 MiB and smaller: groups of 4, 4 and 1.
    write_file(&src, (35 << 20) + 777, 21);
    let original = std::fs::read(&src).unwrap();
    let sent = run_xftp(
        &profile,
        &[
            "send",
            src.to_str().unwrap(),
            work.path().to_str().unwrap(),
            "-n",
            "6",
            "-s",
            &server_list(&servers),
            "--parity",
            "4:2",
        ],
    );
    assert!(sent.status.success(), "send: {}", text(&sent.stderr));
    let dir = work.path().join("album.bin.xftp");
    let rcv = |n: usize| dir.join(format!("rcv{n}.xftp"));
    let d = description(&rcv(1));
    let p = d.parity.clone().unwrap();
    let groups = d.chunks.len().div_ceil(4);
    assert!(groups >= 3, "{} data chunks", d.chunks.len());
    assert_eq!(p.chunks.len(), groups * 2);
    // Each group's chunks on six different servers; the servers hold
    // every data and parity chunk once.
    for g in 0..groups {
        let (data, parity) = group_servers(&d, g);
        let mut all: Vec<_> = data.iter().chain(&parity).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "group {g}");
    }
    let stored: usize = servers.iter().map(XftpServer::stored_chunks).sum();
    assert_eq!(stored, d.chunks.len() + p.chunks.len());
    let info = text(&run_xftp(&profile, &["info", rcv(1).to_str().unwrap()]).stdout);
    assert!(
        info.contains("Parity: 2 Reed–Solomon chunks per 4 data chunks"),
        "{info}"
    );

    // Readers that skip the parity block (the reference CLI and xftp-web
    // ignore the key) get the plain description, which downloads.
    let yaml = std::fs::read_to_string(rcv(1)).unwrap();
    let lines: Vec<&str> = yaml.lines().collect();
    let at = lines.iter().position(|l| *l == "parity:").unwrap();
    let end = at
        + 1
        + lines[at + 1..]
            .iter()
            .take_while(|l| l.starts_with("  "))
            .count();
    let plain = [&lines[..at], &lines[end..]].concat().join("\n") + "\n";
    let plain_path = work.path().join("plain.xftp");
    std::fs::write(&plain_path, plain).unwrap();
    assert!(description(&plain_path).parity.is_none());
    let out = work.path().join("plain.bin");
    let got = run_xftp(
        &profile,
        &[
            "recv",
            plain_path.to_str().unwrap(),
            out.to_str().unwrap(),
            "-y",
        ],
    );
    assert!(got.status.success(), "{}", text(&got.stderr));
    assert!(std::fs::read(&out).unwrap() == original);

    // Two servers gone, in several combinations: two data chunks of one
    // group, a data and a parity chunk, both parity chunks of a group.
    let addresses: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
    let index = |addr: &str| addresses.iter().position(|a| a == addr).unwrap();
    let (data0, parity0) = group_servers(&d, 0);
    let (data1, parity1) = group_servers(&d, 1);
    let cases = [
        [index(&data0[0]), index(&data0[1])],
        [index(&data1[2]), index(&parity1[0])],
        [index(&parity0[0]), index(&parity0[1])],
        [index(&data0[3]), index(&data1[0])],
    ];
    for (n, lost) in cases.iter().enumerate() {
        if lost[0] == lost[1] {
            continue;
        }
        for &i in lost {
            servers[i].stop();
        }
        let out = work.path().join(format!("out{n}.bin"));
        let got = run_xftp(
            &profile,
            &[
                "recv",
                rcv(n + 2).to_str().unwrap(),
                out.to_str().unwrap(),
                "-y",
            ],
        );
        assert!(
            got.status.success(),
            "servers {lost:?} lost: {}",
            text(&got.stderr)
        );
        assert!(
            std::fs::read(&out).unwrap() == original,
            "servers {lost:?}: bytes differ"
        );
        for &i in lost {
            servers[i].resume();
        }
    }

    // Three data servers of one group gone: that group cannot be rebuilt,
    // and the error says what is missing.
    let three = [index(&data0[0]), index(&data0[1]), index(&data0[2])];
    for &i in &three {
        servers[i].stop();
    }
    let out = work.path().join("three-lost.bin");
    let got = run_xftp(
        &profile,
        &[
            "recv",
            rcv(6).to_str().unwrap(),
            out.to_str().unwrap(),
            "-y",
        ],
    );
    let err = text(&got.stderr);
    assert_eq!(got.status.code(), Some(3), "{err}");
    assert!(
        err.contains("cannot be rebuilt: its group has 3 of the 4 chunks needed"),
        "{err}"
    );
    for s in &data0[..3] {
        assert!(err.contains(s.as_str()), "{err}");
    }
    assert!(!out.exists());
    for &i in &three {
        servers[i].resume();
    }

    // del removes the data and the parity chunks.
    let del = run_xftp(
        &profile,
        &["del", dir.join("snd.xftp.private").to_str().unwrap(), "-y"],
    );
    assert!(del.status.success(), "del: {}", text(&del.stderr));
    assert_eq!(
        servers.iter().map(XftpServer::stored_chunks).sum::<usize>(),
        0
    );
}
