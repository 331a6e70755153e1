//! The job's heap, counted by this binary's global allocator (its own test
//! binary: the counters are process-wide). Everything the test harness
//! needs is allocated before the baseline, and the body is streamed in
//! 16 KiB pieces through one reused buffer, so what grows past the
//! baseline is the job (plus one network piece). The budget is 64 KiB, and
//! the peak must not grow with the file size.

mod support;

use device_sync::blockdev::{Coalesce, FileDisk};
use device_sync::card::Card;
use device_sync::job::{ChunkDone, Job};
use support::*;

#[global_allocator]
static A: device_sync::heap::CountingAlloc = device_sync::heap::CountingAlloc;

const PIECE: usize = 16 * 1024;

/// Downloads `p` onto a fresh card image; returns the heap peak above the
/// baseline taken after the card is mounted and the data prepared.
fn peak_of(p: &Published, dir: &std::path::Path) -> usize {
    let img = dir.join(format!("card{}.img", p.content.len()));
    device_sync::image::create(&img, 256 << 20).unwrap();
    let mut card = Card::init(Coalesce::new(FileDisk::open(&img).unwrap())).unwrap();
    let mut rng = TestRng(9);
    let mut piece = vec![0u8; PIECE];
    let base = device_sync::heap::reset_peak();

    let mut job = Job::create(&mut card, &device_keys(), &p.desc, &mut rng).unwrap();
    loop {
        let entry = job.next_chunk(&mut card).unwrap().unwrap();
        job.begin(&mut card, entry, &mut rng).unwrap();
        let req = job.fget_request(0, SESSION, None, &mut rng).unwrap();
        let (block, mut s, chunk) = serve(p, &req);
        job.response(&mut card, &block, SESSION).unwrap();
        drop((block, req));
        for c in chunk.chunks(PIECE) {
            let b = &mut piece[..c.len()];
            b.copy_from_slice(c);
            s.encrypt(b);
            job.body(&mut card, b).unwrap();
        }
        let mut tag = s.tag();
        job.body(&mut card, &mut tag).unwrap();
        if job.end_body(&mut card).unwrap() == ChunkDone::Verified {
            break;
        }
    }
    job.close(&mut card).unwrap();
    let peak = device_sync::heap::peak() - base;
    drop(card.into_device());
    peak
}

#[test]
fn the_job_stays_within_64_kib_whatever_the_file_size() {
    let t = tempfile::tempdir().unwrap();
    let small = publish(content(1 << 20, 1), 1);
    let big = publish(content(20 << 20, 2), 1);
    let p_small = peak_of(&small, t.path());
    let p_big = peak_of(&big, t.path());
    eprintln!("heap peak: 1 MiB file {p_small} B, 20 MiB file {p_big} B");
    assert!(p_big <= 64 * 1024, "20 MiB download peaked at {p_big} B");
    assert!(
        p_big.abs_diff(p_small) <= 4 * 1024,
        "peak grows with the file: {p_small} B for 1 MiB, {p_big} B for 20 MiB"
    );
}
