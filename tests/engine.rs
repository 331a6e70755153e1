//! The device's network path without an OS against a real `smp-server`
//! process: smp-core's TLS engine (rustls unbuffered over RustCrypto) and
//! its sans-IO SMP session, driven over a plain TCP socket on 127.0.0.1.
//! Its own test binary: the heap counter is process-wide, and what the
//! session allocates is the device's RAM figure for one router.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use simplego_tests::SmpRouter;
use smp_core::address::ServerAddress;
use smp_core::crypto::keys::{KeyAlgorithm, PrivateKey};
use smp_core::encoding::pad::BLOCK_SIZE;
use smp_core::smp::session::{self, ClientParams, ClientSession};
use smp_core::smp::version::SUPPORTED_RANGE;
use smp_core::smp::{Command, Response};
use smp_core::tls::engine::Client;
use smp_core::tls::{ALPN_SMP, rustcrypto};

#[global_allocator]
static A: device_sync::heap::CountingAlloc = device_sync::heap::CountingAlloc;

/// The heap one router session may take at its peak (README, RAM; 101 KiB
/// measured): the 18 KiB record buffer, a 16 KiB block in and out on the
/// TLS and on the SMP layer, rustls' handshake state.
const SESSION_HEAP_BOUND: usize = 120 * 1024;

/// Moves bytes until the engine holds `n` bytes of plaintext.
fn pump(tls: &mut Client, sock: &mut TcpStream, n: usize) {
    loop {
        flush(tls, sock);
        if tls.plaintext().len() >= n {
            return;
        }
        let got = sock.read(tls.read_buf()).unwrap();
        assert!(got > 0, "the router closed the connection");
        tls.received(got).unwrap();
    }
}

fn flush(tls: &mut Client, sock: &mut TcpStream) {
    sock.write_all(tls.outgoing()).unwrap();
    let n = tls.outgoing().len();
    tls.sent(n);
}

fn next_block(tls: &mut Client, sock: &mut TcpStream) -> Vec<u8> {
    pump(tls, sock, BLOCK_SIZE);
    let block = tls.plaintext()[..BLOCK_SIZE].to_vec();
    tls.consume(BLOCK_SIZE);
    block
}

#[test]
fn an_smp_session_over_the_os_free_tls_engine() {
    let router = SmpRouter::start();
    let addr = ServerAddress::parse(&router.address).unwrap();
    let key_hash: [u8; 32] = addr.key_hash().as_bytes().try_into().unwrap();
    let mut seed = [0u8; 32];
    smp_core::crypto::random_bytes(&mut seed);
    rustcrypto::seed(&seed);

    let base = device_sync::heap::reset_peak();
    let mut sock = TcpStream::connect(("127.0.0.1", addr.effective_port())).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut tls = Client::connect(key_hash, ALPN_SMP, now).unwrap();
    assert_eq!(tls.outgoing()[0], 22, "a ClientHello record goes first");

    // The router speaks first: its hello carries our tls-unique.
    let hello = next_block(&mut tls, &mut sock);
    assert_eq!(tls.alpn(), Some(ALPN_SMP));
    let tls_id = tls.session_id().unwrap().0;
    let leaf = tls.peer_certificates().unwrap()[0].to_vec();
    let agreed = session::agree(
        &hello,
        &tls_id,
        &leaf,
        ClientParams {
            key_hash: &key_hash,
            versions: SUPPORTED_RANGE,
            session_key: Some(PrivateKey::generate(KeyAlgorithm::X25519)),
            proxy_server: false,
        },
    )
    .unwrap();
    drop(hello);
    assert!(agreed.cipher.is_some(), "a current router encrypts blocks");
    tls.write(&agreed.reply).unwrap();
    let mut smp = ClientSession::new(&tls_id, agreed);
    assert_eq!(smp.version(), SUPPORTED_RANGE.max());

    // Two commands in one encrypted block; each answer echoes its corrId.
    let ping1 = smp.command(b"c1", b"", &Command::Ping, None).unwrap();
    let ping2 = smp.command(b"c2", b"", &Command::Ping, None).unwrap();
    let blocks = smp.seal(&[ping1, ping2]).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].len(), BLOCK_SIZE);
    tls.write(&blocks[0]).unwrap();
    drop(blocks);
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let block = next_block(&mut tls, &mut sock);
        answers.extend(smp.open(&block).unwrap());
    }
    let mut corr: Vec<_> = answers.iter().map(|a| a.corr_id.clone()).collect();
    corr.sort();
    assert_eq!(corr, [b"c1".to_vec(), b"c2".to_vec()]);
    for a in &answers {
        assert_eq!(a.response, Ok(Response::Pong));
    }

    // Later blocks stay in step with the router's chains.
    for i in 0..3u8 {
        let corr = [b'd', b'0' + i];
        let t = smp.command(&corr, b"", &Command::Ping, None).unwrap();
        tls.write(&smp.seal(&[t]).unwrap()[0]).unwrap();
        let answer = smp.open(&next_block(&mut tls, &mut sock)).unwrap();
        assert_eq!(answer[0].corr_id, corr);
        assert_eq!(answer[0].response, Ok(Response::Pong));
    }

    tls.close().unwrap();
    flush(&mut tls, &mut sock);
    drop((tls, smp));
    let peak = device_sync::heap::peak() - base;
    let left = device_sync::heap::current().saturating_sub(base);
    eprintln!("router session heap peak: {peak} B ({left} B left after it)");
    assert!(peak <= SESSION_HEAP_BOUND, "peaked at {peak} B");
}
