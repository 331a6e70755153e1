//! `xftp send` / `xftp recv` through three real servers on 127.0.0.1, run
//! as the reference's CLI tests run it: the binary, its stdout and exit status.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_every_size_round_trip() {
    let servers = Servers::start(3).await;
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let sizes = [0usize, 1, 65535, 65536, 65537, 5 << 20, 100 << 20];
    for (i, &size) in sizes.iter().enumerate() {
        let src_dir = work.path().join(format!("src{i}"));
        let rcv_dir = work.path().join(format!("rcv{i}"));
        std::fs::create_dir(&src_dir).unwrap();
        std::fs::create_dir(&rcv_dir).unwrap();
        let name = format!("file{size}.bin");
        let src = src_dir.join(&name);
        write_file(&src, size, i as u32);
        let tmp_arg = format!("--tmp={}", p(&tmp));
        let run = xftp(&[
            "send",
            p(&src),
            p(&src_dir),
            "-s",
            &servers.list(),
            &tmp_arg,
        ])
        .await;
        check_send_output(&run, &src_dir, &name, 1);
        let rcv1 = src_dir.join(format!("{name}.xftp/rcv1.xftp"));

        // info: the reference's four-or-more lines, every chunk accounted for.
        let info = xftp(&["info", p(&rcv1)]).await;
        assert_eq!(info.status, 0, "{}", info.stderr);
        let lines: Vec<&str> = info.stdout.lines().collect();
        assert_eq!(lines[0], "Recipient file description");
        assert!(lines[1].starts_with("File download size: "));
        assert_eq!(lines[2], "File server(s):");
        assert!(lines.len() > 3 && lines.len() <= 6, "{lines:?}");
        // Spreading: every multi-chunk file (all but 0 and 1 bytes here)
        // lands on at least two servers.
        if size > 1 {
            assert!(lines.len() >= 5, "all chunks on one server: {lines:?}");
        }

        let run = xftp(&["recv", p(&rcv1), p(&rcv_dir), &tmp_arg, "-y"]).await;
        assert_eq!(run.status, 0, "recv {size}: {}\n{}", run.stdout, run.stderr);
        let lines: Vec<&str> = run.stdout.split('\n').collect();
        assert!(
            lines[0].starts_with("Downloading file..."),
            "{:?}",
            lines[0]
        );
        assert!(lines[0].contains("Decrypting file..."), "{:?}", lines[0]);
        let saved = rcv_dir.join(&name);
        assert!(
            lines[0].ends_with(&format!("File downloaded: {}\r", saved.display())),
            "{:?}",
            lines[0]
        );
        assert_eq!(
            lines[1],
            format!("File description {} is deleted.", rcv1.display())
        );
        assert!(!rcv1.exists());
        assert!(
            std::fs::read(&saved).unwrap() == std::fs::read(&src).unwrap(),
            "{size} bytes: content differs"
        );
        // Nothing left in --tmp, no temporary file next to the output.
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&rcv_dir).unwrap().count(), 1);
        std::fs::remove_file(&saved).unwrap();
        std::fs::remove_file(&src).unwrap();
    }
    servers.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_link_is_accepted_by_recv() {
    let servers = Servers::start(2).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("linked.txt");
    write_file(&src, 300_000, 7);
    let run = xftp(&["send", p(&src), p(work.path()), "-s", &servers.list()]).await;
    let link = check_send_output(&run, work.path(), "linked.txt", 1);
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let run = xftp(&["recv", &link, p(&out)]).await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    // Link input: nothing follows the download item (no description to delete).
    assert!(run.stdout.ends_with("\r"), "{:?}", run.stdout);
    assert_eq!(
        std::fs::read(out.join("linked.txt")).unwrap(),
        std::fs::read(&src).unwrap()
    );
    // The same name again: saved as linked_1.txt? No: the link's recipient
    // has acknowledged every chunk, so the server refuses it (AUTH).
    let again = xftp(&["recv", &link, p(&out)]).await;
    assert_eq!(again.status, 5, "{}\n{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("AUTH"), "{}", again.stderr);
    servers.stop_all().await;
}
