//! The card layer over real FAT32 images: embedded-sdmmc through our checks,
//! cross-checked with Linux's fsck.fat and mtools.

mod linux_tools;

use std::path::Path;

use device_sync::blockdev::{
    Block, BlockDevice, BlockIdx, Coalesce, Counting, CutMode, DiskError, Durable, FileDisk,
    PowerCut, RamDisk,
};
use device_sync::card::{Card, CardError, OpenMode};
use device_sync::image;

const MIB: u64 = 1 << 20;
/// The smallest card we format (512-byte clusters): fills up fast.
const SMALL: u64 = 40 * MIB;

/// Deterministic test bytes (no RNG dependency, different per seed).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn read_all<D: BlockDevice + Durable>(card: &mut Card<D>, name: &str) -> Vec<u8> {
    let f = card.open(name, OpenMode::ReadOnly).unwrap();
    let len = card.len(f).unwrap() as usize;
    let mut buf = vec![0; len + 100];
    let n = card.read_at(f, 0, &mut buf).unwrap();
    assert_eq!(n, len, "read_at stops at the end of the file");
    buf.truncate(n);
    card.close(f).unwrap();
    buf
}

/// Both Linux tools accept the image and `mdir` lists `names` in
/// /SIMPLEGO/FILES.
fn linux_tools_accept(img: &Path, names: &[&str]) {
    let listing = linux_tools::check(img, false);
    if listing.is_empty() {
        return;
    }
    for n in names {
        assert!(
            linux_tools::lists(&listing, n),
            "mdir does not list {n}:\n{listing}"
        );
    }
}

fn ram_to_file(disk: &RamDisk, path: &Path) {
    std::fs::write(path, disk.image()).unwrap();
}

#[test]
fn file_image_256mib_roundtrip_and_linux_tools() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("card.img");
    image::create(&img, 256 * MIB).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 256 * MIB);

    // Mount before init: no directories yet.
    let disk = FileDisk::open(&img).unwrap();
    let (e, disk) = match Card::mount_or_give_back(Coalesce::new(disk)) {
        Err(x) => x,
        Ok(_) => panic!("mounted an uninitialised card"),
    };
    assert!(matches!(e, CardError::NotInitialised), "{e}");

    let mut card = Card::init(disk).unwrap();
    let data = pattern(MIB as usize, 1);
    let f = card.open("F1A2B3C4.SGF", OpenMode::CreateNew).unwrap();
    let mut off = 0;
    for (i, step) in [1usize, 511, 513, 4095, 7777, 65_537, 3]
        .iter()
        .cycle()
        .enumerate()
    {
        if off == data.len() {
            break;
        }
        let n = (*step + i).min(data.len() - off);
        card.write_at(f, off as u64, &data[off..off + n]).unwrap();
        off += n;
    }
    assert_eq!(card.len(f).unwrap(), MIB);
    // Overwrite a middle range that straddles blocks and clusters.
    let mut want = data.clone();
    let patch = pattern(10_000, 2);
    want[300_001..310_001].copy_from_slice(&patch);
    card.write_at(f, 300_001, &patch).unwrap();
    assert_eq!(card.len(f).unwrap(), MIB, "overwrite keeps the length");
    // Writing past the end is refused; at the end appends.
    assert!(matches!(
        card.write_at(f, MIB + 1, b"x"),
        Err(CardError::BadOffset)
    ));
    card.flush(f).unwrap();
    card.sync().unwrap();
    card.close(f).unwrap();

    let g = card.open("F1A2B3C4.SGJ", OpenMode::CreateNew).unwrap();
    card.write_at(g, 0, &[7u8; 1024]).unwrap();
    card.close(g).unwrap();
    let h = card.open("CARD.SGC", OpenMode::CreateNew).unwrap();
    card.write_at(h, 0, &[1u8; 512]).unwrap();
    card.close(h).unwrap();
    assert!(matches!(
        card.open("CARD.SGC", OpenMode::CreateNew),
        Err(CardError::Exists)
    ));
    drop(card.into_device().into_inner());

    // Remount (a fresh VolumeManager): contents, list, delete.
    let mut card = Card::mount(Coalesce::new(FileDisk::open(&img).unwrap())).unwrap();
    assert!(
        read_all(&mut card, "F1A2B3C4.SGF") == want,
        "content differs after remount"
    );
    let mut list = card.list().unwrap();
    list.sort();
    assert_eq!(
        list,
        vec![
            ("CARD.SGC".to_string(), 512),
            ("F1A2B3C4.SGF".to_string(), MIB),
            ("F1A2B3C4.SGJ".to_string(), 1024)
        ]
    );
    card.delete("F1A2B3C4.SGJ").unwrap();
    assert!(!card.exists("F1A2B3C4.SGJ").unwrap());
    assert!(matches!(
        card.delete("F1A2B3C4.SGJ"),
        Err(CardError::NotFound)
    ));
    assert!(matches!(
        card.open("NOPE.SGF", OpenMode::ReadOnly),
        Err(CardError::NotFound)
    ));
    let f = card.open("F1A2B3C4.SGF", OpenMode::ReadWrite).unwrap();
    assert!(matches!(card.delete("F1A2B3C4.SGF"), Err(CardError::Open)));
    card.close(f).unwrap();
    drop(card.into_device());

    linux_tools_accept(&img, &["CARD.SGC", "F1A2B3C4.SGF"]);
}

#[test]
fn exists_and_handles() {
    let mut card = Card::init(RamDisk::formatted(SMALL).unwrap()).unwrap();
    let f = card.open("A.SGF", OpenMode::CreateNew).unwrap();
    assert!(matches!(
        card.open("A.SGF", OpenMode::CreateNew),
        Err(CardError::Exists)
    ));
    assert!(matches!(
        card.open("a.sgf", OpenMode::CreateNew),
        Err(CardError::BadName)
    ));
    card.close(f).unwrap();
    assert!(matches!(card.len(f), Err(CardError::BadHandle)));
    let r = card.open("A.SGF", OpenMode::ReadOnly).unwrap();
    assert!(matches!(
        card.write_at(r, 0, b"x"),
        Err(CardError::ReadOnly)
    ));
    card.close(r).unwrap();
    assert!(card.exists("A.SGF").unwrap());
    // init on an initialised card is a mount.
    let mut card = Card::init(card.into_device()).unwrap();
    assert_eq!(card.list().unwrap(), vec![("A.SGF".to_string(), 0)]);
    // Six files open at once (SGF + SGJ + history, twice), not seven.
    let ids: Vec<_> = (0..6)
        .map(|i| {
            card.open(&format!("F{i}.SGF"), OpenMode::CreateNew)
                .unwrap()
        })
        .collect();
    assert!(matches!(
        card.open("F6.SGF", OpenMode::CreateNew),
        Err(CardError::TooManyOpen)
    ));
    for f in ids {
        card.close(f).unwrap();
    }
}

#[test]
fn full_card_reports_full_and_stays_usable() {
    let mut card = Card::init(Coalesce::new(RamDisk::formatted(SMALL).unwrap())).unwrap();
    let chunk = pattern(64 << 10, 3);
    let f = card.open("BIG.SGF", OpenMode::CreateNew).unwrap();
    let mut off = 0u64;
    let err = loop {
        match card.write_at(f, off, &chunk) {
            Ok(()) => off += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(off < SMALL, "wrote more than the card holds");
    };
    assert!(matches!(err, CardError::Full), "{err}");
    assert!(off > 30 * MIB, "card full too early: {off}");
    let _ = card.close(f);
    let disk = card.into_device();

    let mut card = Card::mount(disk).unwrap();
    assert_eq!(card.list().unwrap().len(), 1);
    // Whatever length got recorded reads back as written.
    let got = read_all(&mut card, "BIG.SGF");
    assert!(got.len() as u64 >= off);
    for (i, c) in got
        .chunks(chunk.len())
        .take((off / chunk.len() as u64) as usize)
        .enumerate()
    {
        assert!(c == &chunk[..c.len()], "chunk {i} differs");
    }
    // Delete frees the clusters: the same amount fits again.
    card.delete("BIG.SGF").unwrap();
    let f = card.open("AGAIN.SGF", OpenMode::CreateNew).unwrap();
    let mut again = 0u64;
    while again < off {
        card.write_at(f, again, &chunk).unwrap();
        again += chunk.len() as u64;
    }
    card.close(f).unwrap();
    let disk = card.into_device().into_inner();

    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("small.img");
    ram_to_file(&disk, &img);
    linux_tools_accept(&img, &["AGAIN.SGF"]);
}

/// The same file operations, with and without Coalesce under the card.
fn write_workload<D: BlockDevice + Durable>(dev: D) -> D
where
    D::Error: std::fmt::Debug,
{
    let mut card = Card::init(dev).unwrap();
    let f = card.open("F0000001.SGF", OpenMode::CreateNew).unwrap();
    let data = pattern(2 * MIB as usize, 4);
    for (i, c) in data.chunks(4096).enumerate() {
        card.write_at(f, (i * 4096) as u64, c).unwrap();
        if i % 64 == 63 {
            card.flush(f).unwrap();
            card.sync().unwrap();
        }
    }
    card.write_at(f, 12_345, &pattern(3000, 5)).unwrap();
    card.close(f).unwrap();
    card.sync().unwrap();
    card.into_device()
}

/// Whole-file comparison in 1 MiB pieces (the images are sparse 4 GiB).
fn same_files(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0; MIB as usize], vec![0; MIB as usize]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
        if n == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
    }
}

#[test]
fn coalesce_same_bytes_far_fewer_writes() {
    // 4 GiB sparse images: 32 KiB clusters as on real cards. With small
    // clusters every data block is followed by FAT writes and there is
    // nothing to coalesce.
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("plain.img"), dir.path().join("coal.img"));
    image::create(&pa, 4 << 30).unwrap();
    image::create(&pb, 4 << 30).unwrap();
    let plain = write_workload(Counting::new(FileDisk::open(&pa).unwrap()));
    let coal = write_workload(Coalesce::new(Counting::new(FileDisk::open(&pb).unwrap())));
    let (pc, cc) = (plain.counts(), coal.inner().counts());
    drop((plain, coal));
    assert!(same_files(&pa, &pb), "Coalesce changed the resulting bytes");
    assert_eq!(
        pc.blocks_written, pc.write_calls,
        "embedded-sdmmc: one block per call"
    );
    assert!(
        cc.write_calls * 8 < pc.write_calls,
        "plain {pc:?} vs coalesced {cc:?}"
    );
    assert!(cc.blocks_written <= pc.blocks_written);
    let per_mib = |c: u64| c / 2;
    eprintln!(
        "write calls per MiB: plain {}, coalesced {}",
        per_mib(pc.write_calls),
        per_mib(cc.write_calls)
    );
}

#[test]
fn coalesce_reads_see_pending_and_sync_pushes() {
    let dev = Coalesce::with_run(Counting::new(RamDisk::new(64)), 4);
    let mut b = [Block::new(), Block::new()];
    b[0].contents.fill(0xAA);
    b[1].contents.fill(0xBB);
    dev.write(&b, BlockIdx(10)).unwrap();
    assert_eq!(dev.pending(), 2);
    assert_eq!(dev.inner().counts().write_calls, 0);
    // A read that does not overlap leaves the run alone.
    let mut r = [Block::new()];
    dev.read(&mut r, BlockIdx(3)).unwrap();
    assert_eq!(dev.pending(), 2);
    // An overlapping read sees the pending data.
    dev.read(&mut r, BlockIdx(11)).unwrap();
    assert!(r[0].contents.iter().all(|&x| x == 0xBB));
    assert_eq!(dev.pending(), 0);
    assert_eq!(dev.inner().counts().write_calls, 1);
    assert_eq!(dev.inner().counts().blocks_written, 2);
    // A gap pushes; a full run pushes; sync pushes and reaches the inner sync.
    dev.write(&b[..1], BlockIdx(20)).unwrap();
    dev.write(&b[..1], BlockIdx(30)).unwrap();
    assert_eq!(dev.inner().counts().write_calls, 2);
    dev.write(&b, BlockIdx(31)).unwrap();
    dev.write(&b, BlockIdx(33)).unwrap();
    assert_eq!(
        dev.inner().counts().write_calls,
        3,
        "run of 4 pushed when full"
    );
    assert_eq!(dev.pending(), 1);
    dev.sync().unwrap();
    assert_eq!(dev.pending(), 0);
    assert_eq!(dev.inner().counts().syncs, 1);
    let img = dev.into_inner().into_inner().into_image();
    assert!(img[34 * 512..35 * 512].iter().all(|&x| x == 0xBB));
}

#[test]
fn power_cut_modes() {
    let mk = |mode| PowerCut::new(RamDisk::new(8), 1, mode);
    let mut blocks = [Block::new(), Block::new()];
    blocks[0].contents.fill(1);
    blocks[1].contents.fill(2);
    for (mode, torn) in [
        (CutMode::FailStop, 0usize),
        (CutMode::TearLast { keep: 100 }, 100),
    ] {
        let d = mk(mode);
        assert!(matches!(
            d.write(&blocks, BlockIdx(2)),
            Err(DiskError::PoweredOff)
        ));
        assert!(d.is_cut());
        assert!(d.write(&blocks, BlockIdx(5)).is_err(), "off after the cut");
        assert!(d.sync().is_err());
        let mut r = [Block::new()];
        d.read(&mut r, BlockIdx(2)).unwrap();
        assert!(r[0].contents.iter().all(|&x| x == 1), "budget applied");
        d.read(&mut r, BlockIdx(3)).unwrap();
        assert!(r[0].contents[..torn].iter().all(|&x| x == 2));
        assert!(r[0].contents[torn..].iter().all(|&x| x == 0));
        let img = d.into_inner().into_image();
        assert!(img[5 * 512..].iter().all(|&x| x == 0));
    }
}

/// Marker + two files, flushed and synced as the job will: returns the
/// step reached (1 after A is durable).
fn cut_scenario<D: BlockDevice + Durable>(
    card: &mut Card<D>,
    step: &mut u32,
) -> Result<(), CardError<D::Error>> {
    let a = pattern(20_000, 6);
    let f = card.open("A.SGF", OpenMode::CreateNew)?;
    for (i, c) in a.chunks(4096).enumerate() {
        card.write_at(f, (i * 4096) as u64, c)?;
    }
    card.flush(f)?;
    card.close(f)?;
    card.sync()?;
    *step = 1;
    let g = card.open("B.SGJ", OpenMode::CreateNew)?;
    card.write_at(g, 0, &[9u8; 1024])?;
    card.flush(g)?;
    card.sync()?;
    for round in 0..4u8 {
        card.write_at(g, u64::from(round % 2) * 512, &[round; 512])?;
        card.sync()?;
    }
    card.close(g)?;
    card.delete("A.SGF")?;
    card.sync()?;
    Ok(())
}

#[test]
fn power_cut_sweep_never_panics_and_keeps_synced_data() {
    let base = {
        let card = Card::init(RamDisk::formatted(SMALL).unwrap()).unwrap();
        card.into_device().into_image()
    };
    // Block writes of the whole scenario, to sweep the cut over them.
    let total = {
        let mut card = Card::mount(Counting::new(RamDisk::from_image(base.clone()))).unwrap();
        let mut step = 0;
        cut_scenario(&mut card, &mut step).unwrap();
        card.into_device().counts().blocks_written
    };
    assert!(total > 50, "scenario too small: {total}");
    let (mut mounted, mut failed) = (0, 0);
    for mode in [CutMode::FailStop, CutMode::TearLast { keep: 37 }] {
        for budget in (0..=total).step_by(((total / 120) as usize).max(1)) {
            let dev = PowerCut::new(RamDisk::from_image(base.clone()), budget, mode);
            let mut card = Card::mount(Coalesce::new(dev)).unwrap();
            let mut step = 0;
            let r = cut_scenario(&mut card, &mut step);
            let cut_during = card.with_device(|d| d.inner().is_cut());
            assert_eq!(r.is_err(), cut_during, "budget {budget}: {r:?}");
            let dev = card.into_device().into_inner();
            // Reboot on the disk as the cut left it.
            match Card::mount(dev.into_inner()) {
                Ok(mut card) => {
                    mounted += 1;
                    let list = card.list().unwrap();
                    for (name, _) in &list {
                        if let Ok(f) = card.open(name, OpenMode::ReadOnly) {
                            let mut buf = vec![0; 30_000];
                            let _ = card.read_at(f, 0, &mut buf);
                            let _ = card.close(f);
                        }
                    }
                    if step == 1 && card.exists("A.SGF").unwrap() {
                        assert!(
                            read_all(&mut card, "A.SGF") == pattern(20_000, 6),
                            "synced file damaged at budget {budget} ({mode:?})"
                        );
                    }
                }
                Err(_) => failed += 1,
            }
        }
    }
    eprintln!("power-cut sweep over {total} block writes: {mounted} mounted, {failed} refused");
    assert!(mounted > 0);
}

/// Finds the 32-byte directory entry `name11` (11-byte 8.3 form) with the
/// directory attribute and zeroes its start cluster, as a torn make_dir
/// leaves it.
fn tear_dir_entry(disk: &RamDisk, name11: &[u8; 11]) {
    disk.with_image(|img| {
        let at = (0..img.len() / 32)
            .map(|i| i * 32)
            .find(|&o| &img[o..o + 11] == name11 && img[o + 11] & 0x10 != 0)
            .expect("directory entry");
        img[at + 20..at + 22].fill(0);
        img[at + 26..at + 28].fill(0);
    });
}

#[test]
fn torn_mkdir_needs_repair_not_root() {
    for name in [b"FILES      ", b"SIMPLEGO   "] {
        let disk = Card::init(RamDisk::formatted(SMALL).unwrap())
            .unwrap()
            .into_device();
        tear_dir_entry(&disk, name);
        let (e, disk) = match Card::mount_or_give_back(disk) {
            Err(x) => x,
            Ok(_) => panic!("mounted a torn directory"),
        };
        assert!(matches!(e, CardError::NeedsRepair), "{e}");
        // Init must not "repair" by creating directories elsewhere.
        let before = disk.image();
        let (e, disk) = match Card::init_or_give_back(disk) {
            Err(x) => x,
            Ok(_) => panic!("init used a torn directory"),
        };
        assert!(matches!(e, CardError::NeedsRepair), "{e}");
        assert!(before == disk.image(), "init wrote to a torn card");
    }
}

#[test]
fn garbage_images_give_errors_not_panics() {
    assert!(matches!(
        Card::mount(RamDisk::new(100_000)),
        Err(CardError::BadFormat(_))
    ));
    assert!(matches!(
        Card::mount(RamDisk::new(0)),
        Err(CardError::BadFormat(_))
    ));
    assert!(Card::mount(RamDisk::from_image(pattern(8 * MIB as usize, 7))).is_err());
    let good = {
        let mut card = Card::init(RamDisk::formatted(SMALL).unwrap()).unwrap();
        for i in 0..3 {
            let f = card
                .open(&format!("F{i}.SGF"), OpenMode::CreateNew)
                .unwrap();
            card.write_at(f, 0, &pattern(3000 * (i + 1), i as u32))
                .unwrap();
            card.close(f).unwrap();
        }
        card.into_device().into_image()
    };
    // The metadata area: MBR, boot sector, FSInfo, the start of both FATs,
    // and the first clusters (root, SIMPLEGO, FILES, file data).
    let fat_blocks = 2048 + 32..2048 + 32 + 4;
    let meta: Vec<usize> = [0usize, 2048, 2049]
        .into_iter()
        .chain(fat_blocks.clone())
        .chain(fat_blocks.map(|b| b + 621))
        .collect();
    let mut rng = 0x1234_5678u32;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let data_start = {
        let b = &good[2048 * 512..];
        let reserved = u16::from_le_bytes([b[14], b[15]]) as usize;
        let fat = u32::from_le_bytes([b[36], b[37], b[38], b[39]]) as usize;
        2048 + reserved + 2 * fat
    };
    let mut outcomes = [0u32; 2];
    for _ in 0..400 {
        let mut img = good.clone();
        for _ in 0..1 + next() % 8 {
            let blk = if next() % 2 == 0 {
                meta[next() as usize % meta.len()]
            } else {
                data_start + next() as usize % 8
            };
            let at = blk * 512 + next() as usize % 512;
            img[at] = next() as u8;
        }
        match Card::mount(RamDisk::from_image(img)) {
            Ok(mut card) => {
                outcomes[0] += 1;
                if let Ok(list) = card.list() {
                    for (name, _) in list {
                        if let Ok(f) = card.open(&name, OpenMode::ReadWrite) {
                            let mut buf = vec![0; 20_000];
                            let _ = card.read_at(f, 0, &mut buf);
                            let _ = card.write_at(f, 0, b"overwrite");
                            let _ = card.close(f);
                        }
                        let _ = card.delete(&name);
                    }
                }
                if let Ok(f) = card.open("NEW.SGF", OpenMode::CreateNew) {
                    let _ = card.write_at(f, 0, &[1; 5000]);
                    let _ = card.close(f);
                }
            }
            Err(_) => outcomes[1] += 1,
        }
    }
    eprintln!(
        "corrupted images: {} mounted, {} refused",
        outcomes[0], outcomes[1]
    );
}

#[test]
fn image_sizes() {
    assert_eq!(image::cluster_size(256 * MIB).unwrap(), 2048);
    assert_eq!(image::cluster_size(4 << 30).unwrap(), 32 << 10);
    assert_eq!(image::cluster_size(32 << 30).unwrap(), 32 << 10);
    assert_eq!(image::cluster_size(SMALL).unwrap(), 512);
    let e = image::cluster_size(16 * MIB).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    assert!(image::create(dir.path().join("x.img"), 8 * MIB).is_err());
    // A 4 GiB image stays sparse and mounts as FAT32.
    let img = dir.path().join("big.img");
    image::create(&img, 4 << 30).unwrap();
    let card = Card::init(FileDisk::open(&img).unwrap()).unwrap();
    drop(card.into_device());
    linux_tools_accept(&img, &[]);
}
